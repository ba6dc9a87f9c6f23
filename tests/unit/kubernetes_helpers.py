"""Offline stand-ins for what a cluster would check: manifests, RBAC and NetworkPolicies.

No API server runs here, so the tests rebuild each object the program declares,
decide RBAC requests the way the API server's RBAC authorizer does, and decide pod
to pod connections the way a NetworkPolicy implementation does, from the rendered
objects alone.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from etlstack import render

PROJECT_ROOT = Path(__file__).resolve().parents[2]
KUBERNETES_STACKS = ("dev", "prod")


# --- Manifests ------------------------------------------------------------------


def _integral(value: Any) -> Any:
    """Mock inputs carry every number as a float; the API wants integers where integral."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _integral(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_integral(v) for v in value]
    return value


def is_kubernetes_object(resource: render.Resource) -> bool:
    return resource.type.startswith("kubernetes:") and "apiVersion" in resource.inputs


def manifest(resource: render.Resource, evaluation: render.Evaluation) -> dict[str, Any]:
    """The object as the API server would receive it: secrets revealed, integers restored.

    The rendered files replace secret values with a placeholder (a Secret's whole
    stringData); validation needs the real shape, so the values are put back here.
    """
    obj: dict[str, Any] = _integral(render.reveal(resource.inputs))
    # The namespace as the program would send it (the provider's fills a missing one).
    namespace = render.kubernetes_manifest(resource, evaluation)["metadata"].get("namespace")
    if namespace is not None:
        obj.setdefault("metadata", {})["namespace"] = namespace
    return obj


def manifests(evaluation: render.Evaluation) -> list[dict[str, Any]]:
    return [manifest(r, evaluation) for r in evaluation.resources if is_kubernetes_object(r)]


def of_kind(objects: Sequence[Mapping[str, Any]], kind: str) -> list[Mapping[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def named(objects: Sequence[Mapping[str, Any]], kind: str, name: str) -> Mapping[str, Any]:
    found = [o for o in of_kind(objects, kind) if o["metadata"]["name"] == name]
    assert len(found) == 1, f"{len(found)} {kind} named {name!r}"
    return found[0]


POD_SPEC_PATHS = {
    "Pod": ("spec",),
    "Deployment": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}


def pod_spec(obj: Mapping[str, Any]) -> Mapping[str, Any] | None:
    path = POD_SPEC_PATHS.get(obj["kind"])
    if path is None:
        return None
    value: Any = obj
    for key in path:
        value = value[key]
    return value


def pod_labels(obj: Mapping[str, Any]) -> dict[str, str]:
    if obj["kind"] == "Pod":
        return dict(obj["metadata"].get("labels") or {})
    template = obj["spec"]["jobTemplate"]["spec"] if obj["kind"] == "CronJob" else obj["spec"]
    return dict(template["template"]["metadata"].get("labels") or {})


def all_containers(spec: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [*spec.get("initContainers", []), *spec.get("containers", [])]


# --- Evaluating stacks ----------------------------------------------------------


@contextlib.contextmanager
def stack_file_with(
    stack: str, settings: Mapping[str, Any], secrets: Mapping[str, str]
) -> Iterator[None]:
    """Evaluate `stack` as if its file also held `settings` and the encrypted `secrets`.

    Overrides cannot mark a value secret, and a credential in plain text is refused,
    so the stack file itself is what is stood in for.
    """
    original = render.stack_file_config

    def config_with(project_root: Path, name: str) -> tuple[dict[str, str], list[str]]:
        config, secret_keys = original(project_root, name)
        if name == stack:
            for key, value in settings.items():
                config[f"etlstack:{key}"] = (
                    json.dumps(value) if isinstance(value, dict | list) else str(value)
                )
            for key, value in secrets.items():
                config[f"etlstack:{key}"] = value
                secret_keys.append(f"etlstack:{key}")
        return config, secret_keys

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(render, "stack_file_config", config_with)
        yield


def evaluate(stack: str, *, real_secrets: bool = False, **overrides: Any) -> render.Evaluation:
    return render.evaluate(stack, PROJECT_ROOT, overrides=overrides, real_secrets=real_secrets)


# --- RBAC -----------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """One API request, as the RBAC authorizer sees it."""

    verb: str
    resource: str
    namespace: str | None
    api_group: str = ""
    subresource: str | None = None
    name: str | None = None


def _service_account_subjects(namespace: str, name: str) -> list[tuple[str, str, str | None]]:
    """Every subject a service account's token authenticates as: itself and its groups."""
    return [
        ("ServiceAccount", name, namespace),
        ("Group", "system:serviceaccounts", None),
        ("Group", f"system:serviceaccounts:{namespace}", None),
        ("Group", "system:authenticated", None),
        ("User", f"system:serviceaccount:{namespace}:{name}", None),
    ]


def _subject_matches(subject: Mapping[str, Any], who: tuple[str, str, str | None]) -> bool:
    kind, name, namespace = who
    if subject.get("kind") != kind or subject.get("name") != name:
        return False
    return kind != "ServiceAccount" or subject.get("namespace") == namespace


def _rule_allows(rule: Mapping[str, Any], request: Request) -> bool:
    groups = rule.get("apiGroups") or []
    resources = rule.get("resources") or []
    verbs = rule.get("verbs") or []
    names = rule.get("resourceNames") or []
    if rule.get("nonResourceURLs"):
        return False
    wanted = (
        f"{request.resource}/{request.subresource}" if request.subresource else request.resource
    )
    resource_ok = (
        "*" in resources
        or wanted in resources
        or (request.subresource is not None and f"*/{request.subresource}" in resources)
    )
    return (
        ("*" in groups or request.api_group in groups)
        and resource_ok
        and ("*" in verbs or request.verb in verbs)
        and (not names or request.name in names)
    )


class RbacAuthorizer:
    """Decides requests from the rendered Roles, ClusterRoles and their bindings.

    As the API server's RBAC authorizer: a RoleBinding grants its role's rules in the
    binding's namespace only; a ClusterRoleBinding grants a ClusterRole everywhere;
    a RoleBinding may reference a ClusterRole, then only in its own namespace. Only
    what the stack declares counts (a real cluster adds its default roles).
    """

    def __init__(self, objects: Sequence[Mapping[str, Any]]) -> None:
        self.objects = objects

    def _role(self, ref: Mapping[str, Any], namespace: str | None) -> Mapping[str, Any] | None:
        for obj in self.objects:
            if obj["kind"] != ref.get("kind") or obj["metadata"]["name"] != ref.get("name"):
                continue
            if obj["kind"] == "ClusterRole" or obj["metadata"].get("namespace") == namespace:
                return obj
        return None

    def rules_for(self, namespace: str, account: str, request: Request) -> list[Mapping[str, Any]]:
        subjects = _service_account_subjects(namespace, account)
        rules: list[Mapping[str, Any]] = []
        for binding in self.objects:
            if binding["kind"] == "ClusterRoleBinding":
                applies = True
            elif binding["kind"] == "RoleBinding":
                applies = (
                    request.namespace is not None
                    and binding["metadata"].get("namespace") == request.namespace
                )
            else:
                continue
            if not applies or not any(
                _subject_matches(s, who) for s in binding.get("subjects") or [] for who in subjects
            ):
                continue
            role = self._role(binding["roleRef"], binding["metadata"].get("namespace"))
            if role is not None:
                rules.extend(role.get("rules") or [])
        return rules

    def allowed(self, namespace: str, account: str, request: Request) -> bool:
        """Whether service account `namespace/account` may make `request`."""
        return any(_rule_allows(r, request) for r in self.rules_for(namespace, account, request))


# --- NetworkPolicies ------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    """A pod (namespace and labels) or, with `ip`, an address outside the pod network."""

    namespace: str | None = None
    labels: Mapping[str, str] | None = None
    ip: str | None = None


def _selects(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    if selector is None:
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values")
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and labels.get(key) in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


def _namespace_labels(namespace: str) -> dict[str, str]:
    return {"kubernetes.io/metadata.name": namespace}


def _peer_matches(peer: Mapping[str, Any], policy_namespace: str, other: Endpoint) -> bool:
    if "ipBlock" in peer:
        if other.ip is None:
            return False
        block = peer["ipBlock"]
        address = ipaddress.ip_address(other.ip)
        if address not in ipaddress.ip_network(block["cidr"]):
            return False
        return not any(address in ipaddress.ip_network(e) for e in block.get("except") or [])
    if other.ip is not None or other.namespace is None:
        return False
    if "namespaceSelector" in peer:
        if not _selects(peer["namespaceSelector"], _namespace_labels(other.namespace)):
            return False
    elif other.namespace != policy_namespace:
        return False
    if "podSelector" in peer:
        return _selects(peer["podSelector"], other.labels or {})
    return True


def _ports_match(ports: Sequence[Mapping[str, Any]] | None, port: int, protocol: str) -> bool:
    if not ports:
        return True
    return any(
        p.get("protocol", "TCP") == protocol and p.get("port") in (None, port) for p in ports
    )


class NetworkPolicies:
    """Decides connections from the rendered NetworkPolicies, as a CNI enforces them."""

    def __init__(self, objects: Sequence[Mapping[str, Any]]) -> None:
        self.policies = of_kind(objects, "NetworkPolicy")

    def _side(
        self, pod: Endpoint, direction: str, other: Endpoint, port: int, protocol: str
    ) -> bool:
        if pod.ip is not None:
            return True  # outside the cluster's pods: no policy applies
        selecting = [
            p
            for p in self.policies
            if p["metadata"]["namespace"] == pod.namespace
            and _selects(p["spec"]["podSelector"], pod.labels or {})
            and direction in p["spec"].get("policyTypes", ["Ingress"])
        ]
        if not selecting:
            return True
        key, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
        for policy in selecting:
            for rule in policy["spec"].get(key) or []:
                peers = rule.get(peers_key)
                peer_ok = not peers or any(
                    _peer_matches(peer, policy["metadata"]["namespace"], other) for peer in peers
                )
                if peer_ok and _ports_match(rule.get("ports"), port, protocol):
                    return True
        return False

    def allowed(
        self, source: Endpoint, destination: Endpoint, port: int, protocol: str = "TCP"
    ) -> bool:
        return self._side(source, "Egress", destination, port, protocol) and self._side(
            destination, "Ingress", source, port, protocol
        )
