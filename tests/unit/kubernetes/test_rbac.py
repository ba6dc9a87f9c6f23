"""RBAC on the Kubernetes target (rbac.py), decided offline by a model of the API server's
RBAC authorizer.

The allowed side is the list of API calls KubernetesPodOperator makes (each tied to
where the installed cncf-kubernetes provider makes it, so a provider upgrade that
drops or renames one shows up here); the denied side is a list of what a compromised
scheduler must not be able to do with its token. The decisions come from the RBAC
model in tests/unit/kubernetes_helpers.py (known-answer tests in
tests/unit/test_kubernetes_helpers.py).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from airflow.providers.cncf import kubernetes as cncf_kubernetes

from etlstack import render
from tests.support.stacks import KUBERNETES_STACKS, evaluate
from tests.unit.kubernetes_helpers import RbacAuthorizer, Request, manifests, of_kind

PROVIDER = Path(str(cncf_kubernetes.__file__)).parent

# (provider file, client call made there, the request it becomes in the pipelines' namespace)
OPERATOR_CALLS: list[tuple[str, str, Request]] = [
    ("utils/pod_manager.py", "create_namespaced_pod", Request("create", "pods", "")),
    ("utils/pod_manager.py", "read_namespaced_pod", Request("get", "pods", "")),
    ("operators/pod.py", "list_namespaced_pod", Request("list", "pods", "")),
    ("hooks/kubernetes.py", "list_namespaced_pod", Request("watch", "pods", "")),
    ("operators/pod.py", "patch_namespaced_pod", Request("patch", "pods", "")),
    ("operators/pod.py", "delete_namespaced_pod", Request("delete", "pods", "")),
    ("hooks/kubernetes.py", "delete_namespaced_pod", Request("delete", "pods", "")),
    (
        "utils/pod_manager.py",
        "read_namespaced_pod_log",
        Request("get", "pods", "", subresource="log"),
    ),
    ("utils/pod_manager.py", "list_namespaced_event", Request("list", "events", "")),
    ("hooks/kubernetes.py", "list_namespaced_event", Request("watch", "events", "")),
]
OPERATOR_CALL_IDS = [f"{path}:{call}:{request.verb}" for path, call, request in OPERATOR_CALLS]

LAUNCHERS = ("airflow-scheduler", "airflow-triggerer")
NON_LAUNCHERS = ("airflow-api-server", "airflow-dag-processor", "airflow-migrations")

# Stand-ins for the stack's namespaces, replaced by the evaluated stack's own.
PLATFORM = "<platform>"
PIPELINES = "<pipelines>"

# What no platform service account may do: Secrets, workloads, RBAC, other namespaces.
FORBIDDEN: list[Request] = [
    *(Request(verb, "secrets", PIPELINES) for verb in ("get", "list", "watch", "create")),
    *(Request(verb, "secrets", PLATFORM) for verb in ("get", "list", "watch")),
    Request("get", "configmaps", PIPELINES),
    Request("create", "pods", PIPELINES, subresource="exec"),
    Request("get", "pods", PIPELINES, subresource="exec"),
    Request("create", "pods", PIPELINES, subresource="attach"),
    Request("create", "pods", PIPELINES, subresource="portforward"),
    Request("create", "pods", PIPELINES, subresource="ephemeralcontainers"),
    Request("patch", "pods", PIPELINES, subresource="ephemeralcontainers"),
    Request("create", "deployments", PIPELINES, api_group="apps"),
    Request("create", "jobs", PIPELINES, api_group="batch"),
    Request("create", "serviceaccounts", PIPELINES),
    Request("create", "serviceaccounts", PIPELINES, subresource="token"),
    Request("create", "roles", PIPELINES, api_group="rbac.authorization.k8s.io"),
    Request("create", "rolebindings", PIPELINES, api_group="rbac.authorization.k8s.io"),
    Request("update", "networkpolicies", PIPELINES, api_group="networking.k8s.io"),
    Request("create", "persistentvolumeclaims", PIPELINES),
    Request("update", "pods", PIPELINES),
    Request("deletecollection", "pods", PIPELINES),
    # The platform's own namespace, another namespace, and the cluster itself.
    Request("create", "pods", PLATFORM),
    Request("list", "pods", PLATFORM),
    Request("delete", "pods", PLATFORM),
    Request("create", "pods", "default"),
    Request("create", "pods", "kube-system"),
    Request("list", "pods", None),
    Request("list", "namespaces", None),
    Request("list", "nodes", None),
    Request("create", "clusterrolebindings", None, api_group="rbac.authorization.k8s.io"),
    Request("list", "secrets", None),
]


def _request_id(request: Request) -> str:
    resource = (
        f"{request.resource}/{request.subresource}" if request.subresource else request.resource
    )
    group = f"{request.api_group}/" if request.api_group else ""
    return f"{request.verb} {group}{resource} in {request.namespace or 'the cluster'}"


FORBIDDEN_IDS = [_request_id(r) for r in FORBIDDEN]


class Stack:
    """An evaluated Kubernetes stack, its RBAC objects and its two namespaces."""

    def __init__(self, evaluation: render.Evaluation) -> None:
        self.evaluation = evaluation
        self.objects: list[dict[str, Any]] = manifests(evaluation)
        self.authorizer = RbacAuthorizer(self.objects)
        self.platform = evaluation.config.kubernetes.namespace
        self.pipelines = evaluation.config.kubernetes.pipelines_namespace

    def namespace(self, name: str | None) -> str | None:
        """`name`, or this stack's namespace where `name` is a stand-in for one."""
        return {PLATFORM: self.platform, PIPELINES: self.pipelines}.get(name or "", name)

    def resolve(self, request: Request) -> Request:
        return replace(request, namespace=self.namespace(request.namespace))

    def allowed(self, account: str, request: Request, home: str = PLATFORM) -> bool:
        """Whether service account `home/account` may make `request`."""
        return self.authorizer.allowed(str(self.namespace(home)), account, self.resolve(request))


@pytest.fixture(scope="module", params=KUBERNETES_STACKS)
def stack(request: pytest.FixtureRequest) -> Stack:
    return Stack(evaluate(request.param))


@pytest.mark.parametrize(("path", "call", "request_"), OPERATOR_CALLS, ids=OPERATOR_CALL_IDS)
def test_each_listed_call_is_made_by_the_installed_provider(
    path: str, call: str, request_: Request
) -> None:
    assert call in (PROVIDER / path).read_text(), f"{path} no longer calls {call}"


@pytest.mark.parametrize(("path", "call", "request_"), OPERATOR_CALLS, ids=OPERATOR_CALL_IDS)
@pytest.mark.parametrize("account", LAUNCHERS)
def test_launchers_may_make_every_operator_call_in_the_pipelines_namespace(
    stack: Stack, account: str, path: str, call: str, request_: Request
) -> None:
    in_pipelines = replace(request_, namespace=PIPELINES)
    assert stack.allowed(account, in_pipelines), (
        f"{account} may not {request_.verb} {request_.resource} ({call})"
    )


@pytest.mark.parametrize("request_", FORBIDDEN, ids=FORBIDDEN_IDS)
@pytest.mark.parametrize("account", LAUNCHERS)
def test_launchers_may_do_nothing_else(stack: Stack, account: str, request_: Request) -> None:
    request = stack.resolve(request_)
    assert not stack.allowed(account, request), (
        f"{account} may {request.verb} {request.resource}/{request.subresource} "
        f"in {request.namespace}"
    )


@pytest.mark.parametrize("namespace", [PIPELINES, "default"])
def test_a_same_named_account_elsewhere_gets_nothing(stack: Stack, namespace: str) -> None:
    create = Request("create", "pods", PIPELINES)
    assert not stack.allowed("airflow-scheduler", create, home=namespace)


OTHER_ACCOUNTS = [(PLATFORM, a) for a in NON_LAUNCHERS] + [(PIPELINES, "pipeline-task")]
EVERY_REQUEST = [replace(r, namespace=PIPELINES) for _, _, r in OPERATOR_CALLS] + FORBIDDEN
EVERY_REQUEST_IDS = [*OPERATOR_CALL_IDS, *FORBIDDEN_IDS]


@pytest.mark.parametrize("request_", EVERY_REQUEST, ids=EVERY_REQUEST_IDS)
@pytest.mark.parametrize(
    ("namespace", "account"), OTHER_ACCOUNTS, ids=[a for _, a in OTHER_ACCOUNTS]
)
def test_other_accounts_can_make_no_request(
    stack: Stack, namespace: str, account: str, request_: Request
) -> None:
    request = stack.resolve(request_)
    assert not stack.allowed(account, request, home=namespace), (namespace, account, request)


def test_nothing_is_cluster_wide_and_no_rule_names_secrets(stack: Stack) -> None:
    objects = stack.objects
    assert not of_kind(objects, "ClusterRole")
    assert not of_kind(objects, "ClusterRoleBinding")
    for binding in of_kind(objects, "RoleBinding"):
        assert binding["roleRef"]["kind"] == "Role"
    for role in of_kind(objects, "Role"):
        for rule in role["rules"]:
            assert "secrets" not in rule["resources"]
            assert "*" not in rule["resources"] + rule["verbs"] + rule["apiGroups"]


def test_the_role_lives_in_the_pipelines_namespace_only(stack: Stack) -> None:
    for obj in (*of_kind(stack.objects, "Role"), *of_kind(stack.objects, "RoleBinding")):
        assert obj["metadata"]["namespace"] == stack.pipelines


def test_task_pods_account_mounts_no_token(stack: Stack) -> None:
    (account,) = [
        o
        for o in of_kind(stack.objects, "ServiceAccount")
        if o["metadata"]["name"] == "pipeline-task"
        and o["metadata"]["namespace"] == stack.pipelines
    ]
    assert account["automountServiceAccountToken"] is False
