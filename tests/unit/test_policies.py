"""The policy pack, run offline the way `pulumi preview --policy-pack` runs it.

Each rendered resource is handed to every policy as the analyzer would hand it
(camelCase inputs, secrets unwrapped, resource options such as protect): the stacks
as declared must pass, and a broken copy of each rule's subject must be reported.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pulumi_policy import (
    PolicyCustomTimeouts,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
)
from pulumi_policy.deserialize import deserialize_properties
from pulumi_policy.proxy import unknown_checking_proxy

from etlstack import policies, render
from tests.support.stacks import KUBERNETES_STACKS, PROJECT_ROOT, evaluate


@dataclass
class Subject:
    """A resource as the analyzer sees it."""

    type: str
    name: str
    props: dict[str, Any]
    protect: bool


def subjects(evaluation: render.Evaluation) -> list[Subject]:
    return [
        Subject(
            type=r.type,
            name=r.name,
            props=deserialize_properties(r.inputs),
            protect=r.protect,
        )
        for r in evaluation.resources
        if r.custom
    ]


def violations(policy: ResourceValidationPolicy, subject: Subject) -> list[str]:
    found: list[str] = []
    args = ResourceValidationArgs(
        subject.type,
        unknown_checking_proxy(subject.props),
        f"urn:pulumi:test::etlstack::{subject.type}::{subject.name}",
        subject.name,
        PolicyResourceOptions(subject.protect, [], None, [], PolicyCustomTimeouts(0, 0, 0), []),
        None,
        config={},
    )

    def report(message: str, urn: str | None = None) -> None:
        found.append(message)

    validators = policy.validate if isinstance(policy.validate, list) else [policy.validate]
    for validate in validators:
        assert validate is not None
        validate(args, report)
    return found


POLICIES = {p.name: p for p in policies.all_policies()}


@pytest.fixture(scope="module", params=KUBERNETES_STACKS)
def stack_subjects(request: pytest.FixtureRequest) -> list[Subject]:
    return subjects(evaluate(request.param))


def test_the_pack_has_a_policy_for_each_rule() -> None:
    assert set(POLICIES) == {
        "pods-run-as-non-root",
        "no-privilege-escalation",
        "drop-all-capabilities",
        "seccomp-runtime-default",
        "read-only-root-filesystem",
        "no-host-ports",
        "no-host-namespaces",
        "no-cluster-wide-rbac",
        "no-secrets-access-in-roles",
        "no-wildcard-or-escalating-rbac",
        "no-secrets-in-configmaps",
        "postgres-data-protected",
        "service-accounts-no-default-token",
        "namespaces-enforce-restricted",
    }


def test_the_stacks_pass_every_policy(stack_subjects: list[Subject]) -> None:
    kinds = {s.type.rsplit(":", 1)[-1] for s in stack_subjects}
    # The rules have something to check: workloads, RBAC, ConfigMaps, the claim.
    assert {
        "Deployment",
        "StatefulSet",
        "Job",
        "Role",
        "ConfigMap",
        "PersistentVolumeClaim",
    } <= kinds
    reported = {
        (name, subject.name): found
        for name, policy in POLICIES.items()
        for subject in stack_subjects
        if (found := violations(policy, subject))
    }
    assert reported == {}


def _subject(subjects_: list[Subject], type_suffix: str, name: str) -> Subject:
    (found,) = [s for s in subjects_ if s.type.endswith(type_suffix) and s.name == name]
    return copy.deepcopy(found)


def _pod(subject: Subject) -> dict[str, Any]:
    path = policies.POD_SPEC_PATHS[subject.type]
    value: Any = subject.props
    for key in path:
        value = value[key]
    return value


def _first_container(subject: Subject) -> dict[str, Any]:
    return _pod(subject)["containers"][0]


def _init_container(subject: Subject) -> dict[str, Any]:
    return _pod(subject)["initContainers"][0]


Breakage = Callable[[list[Subject]], Subject]


def _scheduler(subjects_: list[Subject]) -> Subject:
    return _subject(subjects_, ":Deployment", "etlstack-scheduler")


def _run_as_root(subjects_: list[Subject]) -> Subject:
    broken = _scheduler(subjects_)
    _first_container(broken)["securityContext"]["runAsNonRoot"] = False
    return broken


def _root_uid_on_init_container(subjects_: list[Subject]) -> Subject:
    broken = _scheduler(subjects_)
    _init_container(broken)["securityContext"]["runAsUser"] = 0
    return broken


def _no_non_root_anywhere(subjects_: list[Subject]) -> Subject:
    broken = _subject(subjects_, ":StatefulSet", "etlstack-postgres")
    del _pod(broken)["securityContext"]["runAsNonRoot"]
    del _first_container(broken)["securityContext"]["runAsNonRoot"]
    return broken


def _escalation(subjects_: list[Subject]) -> Subject:
    broken = _subject(subjects_, ":Job", "etlstack-migrations")
    del _first_container(broken)["securityContext"]["allowPrivilegeEscalation"]
    return broken


def _privileged(subjects_: list[Subject]) -> Subject:
    broken = _subject(subjects_, ":Deployment", "etlstack-api-server")
    _first_container(broken)["securityContext"]["privileged"] = True
    return broken


def _capabilities_kept(subjects_: list[Subject]) -> Subject:
    broken = _subject(subjects_, ":StatefulSet", "etlstack-postgres")
    _first_container(broken)["securityContext"]["capabilities"] = {"drop": ["NET_RAW"]}
    return broken


def _capability_added(subjects_: list[Subject]) -> Subject:
    broken = _scheduler(subjects_)
    _first_container(broken)["securityContext"]["capabilities"]["add"] = ["NET_ADMIN"]
    return broken


def _seccomp_unconfined(subjects_: list[Subject]) -> Subject:
    broken = _scheduler(subjects_)
    _first_container(broken)["securityContext"]["seccompProfile"] = {"type": "Unconfined"}
    return broken


def _no_seccomp(subjects_: list[Subject]) -> Subject:
    broken = _scheduler(subjects_)
    del _pod(broken)["securityContext"]["seccompProfile"]
    for container in (_first_container(broken), _init_container(broken)):
        del container["securityContext"]["seccompProfile"]
    return broken


def _writable_root(subjects_: list[Subject]) -> Subject:
    broken = _scheduler(subjects_)
    _first_container(broken)["securityContext"]["readOnlyRootFilesystem"] = False
    return broken


def _host_port(subjects_: list[Subject]) -> Subject:
    broken = _subject(subjects_, ":Deployment", "etlstack-api-server")
    _first_container(broken)["ports"][0]["hostPort"] = 8080
    return broken


def _host_network(subjects_: list[Subject]) -> Subject:
    broken = _scheduler(subjects_)
    _pod(broken)["hostNetwork"] = True
    return broken


def _host_path(subjects_: list[Subject]) -> Subject:
    broken = _scheduler(subjects_)
    _pod(broken)["volumes"].append({"name": "sock", "hostPath": {"path": "/var/run"}})
    return broken


def _cluster_role(subjects_: list[Subject]) -> Subject:
    role = _subject(subjects_, ":Role", "etlstack-rbac-pod-launcher")
    role.type = "kubernetes:rbac.authorization.k8s.io/v1:ClusterRole"
    role.props["kind"] = "ClusterRole"
    return role


def _cluster_role_binding(subjects_: list[Subject]) -> Subject:
    binding = _subject(subjects_, ":RoleBinding", "etlstack-rbac-pod-launcher-binding")
    binding.type = "kubernetes:rbac.authorization.k8s.io/v1:ClusterRoleBinding"
    return binding


def _binding_of_cluster_role(subjects_: list[Subject]) -> Subject:
    binding = _subject(subjects_, ":RoleBinding", "etlstack-rbac-pod-launcher-binding")
    binding.props["roleRef"] = {**binding.props["roleRef"], "kind": "ClusterRole", "name": "admin"}
    return binding


def _secrets_in_role(subjects_: list[Subject]) -> Subject:
    role = _subject(subjects_, ":Role", "etlstack-rbac-pod-launcher")
    role.props["rules"].append({"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]})
    return role


def _wildcard_resources(subjects_: list[Subject]) -> Subject:
    role = _subject(subjects_, ":Role", "etlstack-rbac-pod-launcher")
    role.props["rules"][0]["resources"] = ["*"]
    return role


def _escalating_verb(subjects_: list[Subject]) -> Subject:
    role = _subject(subjects_, ":Role", "etlstack-rbac-pod-launcher")
    role.props["rules"].append(
        {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles"], "verbs": ["escalate"]}
    )
    return role


def _password_in_config_map(subjects_: list[Subject]) -> Subject:
    config_map = _subject(subjects_, ":ConfigMap", "etlstack-airflow-config")
    config_map.props["data"]["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = "postgresql://a:b@db/airflow"
    return config_map


def _credential_url_in_config_map(subjects_: list[Subject]) -> Subject:
    config_map = _subject(subjects_, ":ConfigMap", "etlstack-airflow-config")
    config_map.props["data"]["WAREHOUSE"] = "postgresql://warehouse:hunter2@postgres:5432/warehouse"
    return config_map


def _unprotected_database_claim(subjects_: list[Subject]) -> Subject:
    claim = _subject(subjects_, ":PersistentVolumeClaim", "etlstack-postgres-data")
    claim.protect = False
    return claim


def _token_by_default(subjects_: list[Subject]) -> Subject:
    account = _subject(subjects_, ":ServiceAccount", "etlstack-rbac-pipeline-task")
    del account.props["automountServiceAccountToken"]
    return account


def _namespace_not_restricted(subjects_: list[Subject]) -> Subject:
    namespace = _subject(subjects_, ":Namespace", "etlstack-namespaces-etlstack-pipelines")
    namespace.props["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] = "baseline"
    return namespace


BREAKAGES: list[tuple[str, Breakage]] = [
    ("pods-run-as-non-root", _run_as_root),
    ("pods-run-as-non-root", _root_uid_on_init_container),
    ("pods-run-as-non-root", _no_non_root_anywhere),
    ("no-privilege-escalation", _escalation),
    ("no-privilege-escalation", _privileged),
    ("drop-all-capabilities", _capabilities_kept),
    ("drop-all-capabilities", _capability_added),
    ("seccomp-runtime-default", _seccomp_unconfined),
    ("seccomp-runtime-default", _no_seccomp),
    ("read-only-root-filesystem", _writable_root),
    ("no-host-ports", _host_port),
    ("no-host-namespaces", _host_network),
    ("no-host-namespaces", _host_path),
    ("no-cluster-wide-rbac", _cluster_role),
    ("no-cluster-wide-rbac", _cluster_role_binding),
    ("no-cluster-wide-rbac", _binding_of_cluster_role),
    ("no-secrets-access-in-roles", _secrets_in_role),
    ("no-wildcard-or-escalating-rbac", _wildcard_resources),
    ("no-wildcard-or-escalating-rbac", _escalating_verb),
    ("no-secrets-in-configmaps", _password_in_config_map),
    ("no-secrets-in-configmaps", _credential_url_in_config_map),
    ("postgres-data-protected", _unprotected_database_claim),
    ("service-accounts-no-default-token", _token_by_default),
    ("namespaces-enforce-restricted", _namespace_not_restricted),
]


@pytest.mark.parametrize(
    ("policy", "breakage"), BREAKAGES, ids=[b.__name__.strip("_") for _, b in BREAKAGES]
)
def test_each_violation_is_reported_by_its_policy(
    stack_subjects: list[Subject], policy: str, breakage: Breakage
) -> None:
    broken = breakage(stack_subjects)
    assert violations(POLICIES[policy], broken), f"{policy} missed {breakage.__name__}"


def test_a_broken_copy_trips_only_its_rule(stack_subjects: list[Subject]) -> None:
    broken = _run_as_root(stack_subjects)
    tripped = {name for name, policy in POLICIES.items() if violations(policy, broken)}
    assert tripped == {"pods-run-as-non-root"}


def test_only_the_pack_entry_point_builds_the_pack() -> None:
    # Building a PolicyPack starts a server and blocks: importing the rules must not.
    module = Path(policies.__file__)
    assert "PolicyPack(" not in module.read_text()
    pack = PROJECT_ROOT / "infra" / "policy_pack"
    main = (pack / "__main__.py").read_text()
    assert "PolicyPack(name=POLICY_PACK_NAME" in main and "all_policies()" in main
    assert (pack / "PulumiPolicy.yaml").is_file()
