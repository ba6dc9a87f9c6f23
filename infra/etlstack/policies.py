"""The platform's security rules as Pulumi policies (CrossGuard), for `--policy-pack`.

The pack (infra/policy_pack) only assembles these; keeping them in an importable
module lets the unit tests run each one against the rendered stacks and against
broken copies, without the Pulumi CLI. Every rule reads the resource's inputs as
the engine hands them to the analyzer: camelCase keys, secrets already unwrapped.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
)

# Where each workload kind keeps its pod spec.
POD_SPEC_PATHS: dict[str, tuple[str, ...]] = {
    "kubernetes:core/v1:Pod": ("spec",),
    "kubernetes:core/v1:PodTemplate": ("template", "spec"),
    "kubernetes:core/v1:ReplicationController": ("spec", "template", "spec"),
    "kubernetes:apps/v1:Deployment": ("spec", "template", "spec"),
    "kubernetes:apps/v1:StatefulSet": ("spec", "template", "spec"),
    "kubernetes:apps/v1:DaemonSet": ("spec", "template", "spec"),
    "kubernetes:apps/v1:ReplicaSet": ("spec", "template", "spec"),
    "kubernetes:batch/v1:Job": ("spec", "template", "spec"),
    "kubernetes:batch/v1:CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}
CLUSTER_WIDE_RBAC = {
    "kubernetes:rbac.authorization.k8s.io/v1:ClusterRole",
    "kubernetes:rbac.authorization.k8s.io/v1:ClusterRoleBinding",
}
ROLE = "kubernetes:rbac.authorization.k8s.io/v1:Role"
ROLE_BINDING = "kubernetes:rbac.authorization.k8s.io/v1:RoleBinding"
CONFIG_MAP = "kubernetes:core/v1:ConfigMap"
PVC = "kubernetes:core/v1:PersistentVolumeClaim"
SERVICE_ACCOUNT = "kubernetes:core/v1:ServiceAccount"
NAMESPACE = "kubernetes:core/v1:Namespace"
# Verbs that let a holder give itself more than it has.
ESCALATING_VERBS = {"bind", "escalate", "impersonate"}
# ConfigMap keys that name a credential, and values that carry one.
SECRET_KEY_NAME = re.compile(
    r"PASSWORD|PASSWD|SECRET|TOKEN|FERNET|PRIVATE_KEY|SQL_ALCHEMY_CONN|CREDENTIAL", re.I
)
URL_WITH_PASSWORD = re.compile(r"[a-z][a-z0-9+.-]*://[^/\s:@]+:[^/\s@]+@", re.I)
PRIVATE_KEY_PEM = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")
POSTGRES_LABEL = ("app.kubernetes.io/name", "postgres")


def _get(value: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def _list(value: Any) -> Sequence[Any]:
    return value if isinstance(value, Sequence) and not isinstance(value, str) else []


def pod_spec(resource_type: str, props: Mapping[str, Any]) -> Mapping[str, Any] | None:
    path = POD_SPEC_PATHS.get(resource_type)
    if path is None:
        return None
    spec = _get(props, *path)
    return spec if isinstance(spec, Mapping) else None


def containers(spec: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    for key in ("initContainers", "containers", "ephemeralContainers"):
        for container in _list(spec.get(key)):
            if isinstance(container, Mapping):
                yield container


def _effective(spec: Mapping[str, Any], container: Mapping[str, Any], key: str) -> Any:
    """A container's setting, falling back to the pod's, as the kubelet applies them."""
    own = _get(container, "securityContext", key)
    return own if own is not None else _get(spec, "securityContext", key)


def _name(args: ResourceValidationArgs) -> str:
    return str(_get(args.props, "metadata", "name") or args.name)


PodCheck = Callable[[Mapping[str, Any], Mapping[str, Any]], str | None]


def _container_policy(
    name: str, description: str, check: PodCheck, level: EnforcementLevel
) -> ResourceValidationPolicy:
    """A policy that applies `check(pod_spec, container)` to every container of every workload."""

    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        spec = pod_spec(args.resource_type, args.props)
        if spec is None:
            return
        for container in containers(spec):
            problem = check(spec, container)
            if problem:
                report_violation(
                    f"{args.resource_type.rsplit(':', 1)[-1]} {_name(args)!r}, container "
                    f"{container.get('name')!r}: {problem}",
                    None,
                )

    return ResourceValidationPolicy(
        name=name, description=description, validate=validate, enforcement_level=level
    )


def _non_root(spec: Mapping[str, Any], container: Mapping[str, Any]) -> str | None:
    if _effective(spec, container, "runAsNonRoot") is not True:
        return "set securityContext.runAsNonRoot: true (on the pod or the container)"
    if _effective(spec, container, "runAsUser") == 0:
        return "runAsUser is 0 (root)"
    return None


def _no_escalation(_spec: Mapping[str, Any], container: Mapping[str, Any]) -> str | None:
    if _get(container, "securityContext", "privileged") is True:
        return "runs privileged"
    if _get(container, "securityContext", "allowPrivilegeEscalation") is not False:
        return "set securityContext.allowPrivilegeEscalation: false"
    return None


def _drop_all(_spec: Mapping[str, Any], container: Mapping[str, Any]) -> str | None:
    capabilities = _get(container, "securityContext", "capabilities") or {}
    if "ALL" not in _list(capabilities.get("drop")):
        return "set securityContext.capabilities.drop: [ALL]"
    if _list(capabilities.get("add")):
        return f"adds capabilities {list(_list(capabilities.get('add')))}"
    return None


def _seccomp(spec: Mapping[str, Any], container: Mapping[str, Any]) -> str | None:
    profile = _effective(spec, container, "seccompProfile") or {}
    if _get(profile, "type") != "RuntimeDefault":
        return "set securityContext.seccompProfile.type: RuntimeDefault"
    return None


def _read_only_root(_spec: Mapping[str, Any], container: Mapping[str, Any]) -> str | None:
    if _get(container, "securityContext", "readOnlyRootFilesystem") is not True:
        return "set securityContext.readOnlyRootFilesystem: true (emptyDirs for scratch paths)"
    return None


def _no_host_ports(_spec: Mapping[str, Any], container: Mapping[str, Any]) -> str | None:
    bound = [p.get("hostPort") for p in _list(container.get("ports")) if p.get("hostPort")]
    return f"binds host ports {bound}" if bound else None


def _validate_host_namespaces(
    args: ResourceValidationArgs, report_violation: ReportViolation
) -> None:
    spec = pod_spec(args.resource_type, args.props)
    if spec is None:
        return
    for key in ("hostNetwork", "hostPID", "hostIPC", "hostUsers"):
        value = spec.get(key)
        if (key == "hostUsers" and value is True) or (key != "hostUsers" and value):
            report_violation(f"{_name(args)!r} shares the node's namespaces ({key})", None)
    for volume in _list(spec.get("volumes")):
        if isinstance(volume, Mapping) and volume.get("hostPath") is not None:
            report_violation(
                f"{_name(args)!r} mounts a hostPath volume {volume.get('name')!r}", None
            )


def _validate_cluster_wide_rbac(
    args: ResourceValidationArgs, report_violation: ReportViolation
) -> None:
    if args.resource_type in CLUSTER_WIDE_RBAC:
        report_violation(
            f"{args.resource_type.rsplit(':', 1)[-1]} {_name(args)!r} grants access cluster-wide; "
            "use a Role and RoleBinding in the namespace that needs it",
            None,
        )
    elif args.resource_type == ROLE_BINDING and _get(args.props, "roleRef", "kind") != "Role":
        report_violation(
            f"RoleBinding {_name(args)!r} binds a ClusterRole; bind a Role of the namespace", None
        )


def _grants(rule: Mapping[str, Any], resource: str) -> bool:
    groups = _list(rule.get("apiGroups"))
    resources = _list(rule.get("resources"))
    core = "" in groups or "*" in groups
    return core and (resource in resources or "*" in resources)


def _roles(args: ResourceValidationArgs) -> Iterator[Mapping[str, Any]]:
    if args.resource_type in (ROLE, "kubernetes:rbac.authorization.k8s.io/v1:ClusterRole"):
        for rule in _list(args.props.get("rules")):
            if isinstance(rule, Mapping):
                yield rule


def _validate_no_secret_access(
    args: ResourceValidationArgs, report_violation: ReportViolation
) -> None:
    for rule in _roles(args):
        if _grants(rule, "secrets"):
            report_violation(
                f"{_name(args)!r} grants {list(_list(rule.get('verbs')))} on secrets; pods get "
                "secret values through secretKeyRef, which needs no RBAC",
                None,
            )


def _validate_no_wildcards(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    for rule in _roles(args):
        verbs = set(_list(rule.get("verbs")))
        for field in ("apiGroups", "resources", "verbs"):
            if "*" in _list(rule.get(field)):
                report_violation(f"{_name(args)!r} uses '*' in {field}; list what is needed", None)
        if verbs & ESCALATING_VERBS:
            report_violation(
                f"{_name(args)!r} grants {sorted(verbs & ESCALATING_VERBS)}, which escalate privileges",
                None,
            )


def _validate_config_maps(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if args.resource_type != CONFIG_MAP:
        return
    for key, value in (args.props.get("data") or {}).items():
        text = value if isinstance(value, str) else ""
        if SECRET_KEY_NAME.search(key):
            report_violation(
                f"ConfigMap {_name(args)!r} key {key!r} names a credential; put it in a Secret",
                None,
            )
        elif URL_WITH_PASSWORD.search(text) or PRIVATE_KEY_PEM.search(text):
            report_violation(
                f"ConfigMap {_name(args)!r} key {key!r} holds a credential; put it in a Secret",
                None,
            )
    if args.props.get("binaryData"):
        report_violation(
            f"ConfigMap {_name(args)!r} has binaryData, which cannot be checked; use a Secret", None
        )


def _validate_postgres_data(
    args: ResourceValidationArgs, report_violation: ReportViolation
) -> None:
    if args.resource_type != PVC:
        return
    key, value = POSTGRES_LABEL
    if _get(args.props, "metadata", "labels", key) == value and not args.opts.protect:
        report_violation(
            f"PersistentVolumeClaim {_name(args)!r} holds the database and is not protected; "
            "declare it with protect=True (and retain_on_delete=True)",
            None,
        )


def _validate_service_accounts(
    args: ResourceValidationArgs, report_violation: ReportViolation
) -> None:
    if (
        args.resource_type == SERVICE_ACCOUNT
        and args.props.get("automountServiceAccountToken") is not False
    ):
        report_violation(
            f"ServiceAccount {_name(args)!r} mounts its API token into every pod; set "
            "automountServiceAccountToken: false and opt in per pod where it is needed",
            None,
        )


def _validate_namespaces(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if args.resource_type != NAMESPACE:
        return
    level = _get(args.props, "metadata", "labels", "pod-security.kubernetes.io/enforce")
    if level != "restricted":
        report_violation(
            f"Namespace {_name(args)!r} does not enforce the restricted Pod Security Standard; "
            "label it pod-security.kubernetes.io/enforce: restricted",
            None,
        )


MANDATORY = EnforcementLevel.MANDATORY


def _resource_policy(
    name: str,
    description: str,
    validate: Callable[[ResourceValidationArgs, ReportViolation], None],
    level: EnforcementLevel = MANDATORY,
) -> ResourceValidationPolicy:
    return ResourceValidationPolicy(
        name=name, description=description, validate=validate, enforcement_level=level
    )


def all_policies() -> list[ResourceValidationPolicy]:
    return [
        _container_policy(
            "pods-run-as-non-root", "Every container runs as a non-root user.", _non_root, MANDATORY
        ),
        _container_policy(
            "no-privilege-escalation",
            "No container is privileged or may gain privileges.",
            _no_escalation,
            MANDATORY,
        ),
        _container_policy(
            "drop-all-capabilities", "Every container drops all capabilities.", _drop_all, MANDATORY
        ),
        _container_policy(
            "seccomp-runtime-default",
            "Every container runs under the RuntimeDefault seccomp profile.",
            _seccomp,
            MANDATORY,
        ),
        _container_policy(
            "read-only-root-filesystem",
            "Containers run on a read-only root filesystem where the process allows it.",
            _read_only_root,
            EnforcementLevel.ADVISORY,
        ),
        _container_policy(
            "no-host-ports", "No container binds a port on the node.", _no_host_ports, MANDATORY
        ),
        _resource_policy(
            "no-host-namespaces",
            "No pod shares the node's network, PID or IPC namespace or mounts its filesystem.",
            _validate_host_namespaces,
        ),
        _resource_policy(
            "no-cluster-wide-rbac",
            "RBAC is namespaced: no ClusterRole, no ClusterRoleBinding, no binding of a ClusterRole.",
            _validate_cluster_wide_rbac,
        ),
        _resource_policy(
            "no-secrets-access-in-roles",
            "No role grants access to Secrets.",
            _validate_no_secret_access,
        ),
        _resource_policy(
            "no-wildcard-or-escalating-rbac",
            "Roles list resources and verbs explicitly and grant no bind/escalate/impersonate.",
            _validate_no_wildcards,
        ),
        _resource_policy(
            "no-secrets-in-configmaps",
            "ConfigMaps hold no credential; those go in Secrets.",
            _validate_config_maps,
        ),
        _resource_policy(
            "postgres-data-protected",
            "The database's PersistentVolumeClaim is protected from deletion.",
            _validate_postgres_data,
        ),
        _resource_policy(
            "service-accounts-no-default-token",
            "ServiceAccounts do not mount an API token unless a pod asks for it.",
            _validate_service_accounts,
        ),
        _resource_policy(
            "namespaces-enforce-restricted",
            "Namespaces enforce the restricted Pod Security Standard.",
            _validate_namespaces,
        ),
    ]


POLICY_PACK_NAME = "etlstack-security"
