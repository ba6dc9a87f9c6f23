"""RBAC on the Kubernetes target, decided offline as the API server would decide it.

The allowed side is the list of API calls KubernetesPodOperator makes (each tied to
where the installed cncf-kubernetes provider makes it, so a provider upgrade that
drops or renames one shows up here); the denied side is everything a compromised
scheduler must not be able to do with its token.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from airflow.providers.cncf import kubernetes as cncf_kubernetes

from etlstack import render
from tests.unit.kubernetes_helpers import (
    KUBERNETES_STACKS,
    RbacAuthorizer,
    Request,
    evaluate,
    manifests,
    of_kind,
)

PROVIDER = Path(str(cncf_kubernetes.__file__)).parent

# (provider file, client call made there, the request it becomes)
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

LAUNCHERS = ("airflow-scheduler", "airflow-triggerer")
NON_LAUNCHERS = ("airflow-api-server", "airflow-dag-processor", "airflow-migrations")


def _in(namespace: str, request: Request) -> Request:
    return Request(
        request.verb,
        request.resource,
        namespace,
        api_group=request.api_group,
        subresource=request.subresource,
        name=request.name,
    )


def forbidden_requests(platform: str, pipelines: str) -> list[Request]:
    """What no platform service account may do: Secrets, workloads, RBAC, other namespaces."""
    return [
        *(Request(verb, "secrets", pipelines) for verb in ("get", "list", "watch", "create")),
        *(Request(verb, "secrets", platform) for verb in ("get", "list", "watch")),
        Request("get", "configmaps", pipelines),
        Request("create", "pods", pipelines, subresource="exec"),
        Request("get", "pods", pipelines, subresource="exec"),
        Request("create", "pods", pipelines, subresource="attach"),
        Request("create", "pods", pipelines, subresource="portforward"),
        Request("create", "pods", pipelines, subresource="ephemeralcontainers"),
        Request("patch", "pods", pipelines, subresource="ephemeralcontainers"),
        Request("create", "deployments", pipelines, api_group="apps"),
        Request("create", "jobs", pipelines, api_group="batch"),
        Request("create", "serviceaccounts", pipelines),
        Request("create", "serviceaccounts", pipelines, subresource="token"),
        Request("create", "roles", pipelines, api_group="rbac.authorization.k8s.io"),
        Request("create", "rolebindings", pipelines, api_group="rbac.authorization.k8s.io"),
        Request("update", "networkpolicies", pipelines, api_group="networking.k8s.io"),
        Request("create", "persistentvolumeclaims", pipelines),
        Request("update", "pods", pipelines),
        Request("deletecollection", "pods", pipelines),
        # The platform's own namespace, another namespace, and the cluster itself.
        Request("create", "pods", platform),
        Request("list", "pods", platform),
        Request("delete", "pods", platform),
        Request("create", "pods", "default"),
        Request("create", "pods", "kube-system"),
        Request("list", "pods", None),
        Request("list", "namespaces", None),
        Request("list", "nodes", None),
        Request("create", "clusterrolebindings", None, api_group="rbac.authorization.k8s.io"),
        Request("list", "secrets", None),
    ]


@pytest.fixture(scope="module", params=KUBERNETES_STACKS)
def stack(request: pytest.FixtureRequest) -> tuple[render.Evaluation, list[dict[str, Any]]]:
    evaluation = evaluate(request.param)
    return evaluation, manifests(evaluation)


def test_each_listed_call_is_made_by_the_installed_provider() -> None:
    for path, call, _ in OPERATOR_CALLS:
        assert call in (PROVIDER / path).read_text(), f"{path} no longer calls {call}"


def test_launchers_may_make_every_operator_call_in_the_pipelines_namespace(
    stack: tuple[render.Evaluation, list[dict[str, Any]]],
) -> None:
    evaluation, objects = stack
    kubernetes = evaluation.config.kubernetes
    authorizer = RbacAuthorizer(objects)
    for account in LAUNCHERS:
        for _, call, request in OPERATOR_CALLS:
            assert authorizer.allowed(
                kubernetes.namespace, account, _in(kubernetes.pipelines_namespace, request)
            ), f"{account} may not {request.verb} {request.resource} ({call})"


def test_launchers_may_do_nothing_else(
    stack: tuple[render.Evaluation, list[dict[str, Any]]],
) -> None:
    evaluation, objects = stack
    kubernetes = evaluation.config.kubernetes
    authorizer = RbacAuthorizer(objects)
    for account in LAUNCHERS:
        for request in forbidden_requests(kubernetes.namespace, kubernetes.pipelines_namespace):
            assert not authorizer.allowed(kubernetes.namespace, account, request), (
                f"{account} may {request.verb} {request.resource}/{request.subresource} "
                f"in {request.namespace}"
            )


def test_a_same_named_account_elsewhere_gets_nothing(
    stack: tuple[render.Evaluation, list[dict[str, Any]]],
) -> None:
    evaluation, objects = stack
    kubernetes = evaluation.config.kubernetes
    authorizer = RbacAuthorizer(objects)
    create = Request("create", "pods", kubernetes.pipelines_namespace)
    for namespace in (kubernetes.pipelines_namespace, "default"):
        assert not authorizer.allowed(namespace, "airflow-scheduler", create)


def test_other_accounts_can_make_no_request(
    stack: tuple[render.Evaluation, list[dict[str, Any]]],
) -> None:
    evaluation, objects = stack
    kubernetes = evaluation.config.kubernetes
    authorizer = RbacAuthorizer(objects)
    accounts = [(kubernetes.namespace, a) for a in NON_LAUNCHERS]
    accounts.append((kubernetes.pipelines_namespace, "pipeline-task"))
    requests = [
        *(_in(kubernetes.pipelines_namespace, r) for _, _, r in OPERATOR_CALLS),
        *forbidden_requests(kubernetes.namespace, kubernetes.pipelines_namespace),
    ]
    for namespace, account in accounts:
        for request in requests:
            assert not authorizer.allowed(namespace, account, request), (
                namespace,
                account,
                request,
            )


def test_nothing_is_cluster_wide_and_no_rule_names_secrets(
    stack: tuple[render.Evaluation, list[dict[str, Any]]],
) -> None:
    _, objects = stack
    assert not of_kind(objects, "ClusterRole")
    assert not of_kind(objects, "ClusterRoleBinding")
    for binding in of_kind(objects, "RoleBinding"):
        assert binding["roleRef"]["kind"] == "Role"
    for role in of_kind(objects, "Role"):
        for rule in role["rules"]:
            assert "secrets" not in rule["resources"]
            assert "*" not in rule["resources"] + rule["verbs"] + rule["apiGroups"]


def test_the_role_lives_in_the_pipelines_namespace_only(
    stack: tuple[render.Evaluation, list[dict[str, Any]]],
) -> None:
    evaluation, objects = stack
    pipelines = evaluation.config.kubernetes.pipelines_namespace
    for obj in (*of_kind(objects, "Role"), *of_kind(objects, "RoleBinding")):
        assert obj["metadata"]["namespace"] == pipelines


def test_task_pods_account_mounts_no_token(
    stack: tuple[render.Evaluation, list[dict[str, Any]]],
) -> None:
    evaluation, objects = stack
    pipelines = evaluation.config.kubernetes.pipelines_namespace
    (account,) = [
        o
        for o in of_kind(objects, "ServiceAccount")
        if o["metadata"]["name"] == "pipeline-task" and o["metadata"]["namespace"] == pipelines
    ]
    assert account["automountServiceAccountToken"] is False


def test_the_evaluator_grants_what_a_binding_grants_and_nothing_more() -> None:
    """The evaluator itself, on hand-written objects with known answers."""
    role = {
        "kind": "Role",
        "metadata": {"name": "r", "namespace": "a"},
        "rules": [{"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get"]}],
    }
    cluster_role = {
        "kind": "ClusterRole",
        "metadata": {"name": "c"},
        "rules": [{"apiGroups": ["apps"], "resources": ["*"], "verbs": ["list"]}],
    }
    bind_role = {
        "kind": "RoleBinding",
        "metadata": {"name": "b", "namespace": "a"},
        "roleRef": {"kind": "Role", "name": "r"},
        "subjects": [{"kind": "ServiceAccount", "name": "sa", "namespace": "x"}],
    }
    bind_cluster_role_in_b = {
        "kind": "RoleBinding",
        "metadata": {"name": "b2", "namespace": "b"},
        "roleRef": {"kind": "ClusterRole", "name": "c"},
        "subjects": [{"kind": "Group", "name": "system:serviceaccounts:x"}],
    }
    authorizer = RbacAuthorizer([role, cluster_role, bind_role, bind_cluster_role_in_b])
    assert authorizer.allowed("x", "sa", Request("get", "pods", "a"))
    assert authorizer.allowed("x", "sa", Request("get", "pods", "a", subresource="log"))
    assert not authorizer.allowed("x", "sa", Request("get", "pods", "a", subresource="exec"))
    assert not authorizer.allowed("x", "sa", Request("list", "pods", "a"))
    assert not authorizer.allowed("x", "sa", Request("get", "pods", "b"))
    assert not authorizer.allowed("y", "sa", Request("get", "pods", "a"))
    assert authorizer.allowed("x", "other", Request("list", "deployments", "b", api_group="apps"))
    assert not authorizer.allowed(
        "x", "other", Request("list", "deployments", "a", api_group="apps")
    )
    assert not authorizer.allowed(
        "x", "other", Request("list", "deployments", None, api_group="apps")
    )
    cluster_binding = {
        "kind": "ClusterRoleBinding",
        "metadata": {"name": "cb"},
        "roleRef": {"kind": "ClusterRole", "name": "c"},
        "subjects": [{"kind": "ServiceAccount", "name": "sa", "namespace": "x"}],
    }
    everywhere = RbacAuthorizer([cluster_role, cluster_binding])
    assert everywhere.allowed("x", "sa", Request("list", "deployments", None, api_group="apps"))
    assert everywhere.allowed("x", "sa", Request("list", "deployments", "q", api_group="apps"))
