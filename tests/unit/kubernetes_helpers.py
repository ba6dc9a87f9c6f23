"""Offline stand-ins for what a cluster would check: manifests, RBAC and NetworkPolicies.

No API server runs here, so the tests rebuild each object the program declares and
decide, from the rendered objects alone, RBAC requests (a model of the API server's
RBAC authorizer) and connections (a model of the NetworkPolicy semantics a CNI
enforces). Each model has known-answer tests of its own, on hand-written objects:
tests/unit/test_kubernetes_helpers.py. What each leaves out is said in its docstring.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from etlstack import render

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


def claims(spec: Mapping[str, Any]) -> dict[str, str]:
    """The claims a pod spec mounts: volume name -> claim name."""
    return {
        v["name"]: v["persistentVolumeClaim"]["claimName"]
        for v in spec.get("volumes") or []
        if "persistentVolumeClaim" in v
    }


def pod_labels(obj: Mapping[str, Any]) -> dict[str, str]:
    if obj["kind"] == "Pod":
        return dict(obj["metadata"].get("labels") or {})
    template = obj["spec"]["jobTemplate"]["spec"] if obj["kind"] == "CronJob" else obj["spec"]
    return dict(template["template"]["metadata"].get("labels") or {})


def all_containers(spec: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [*spec.get("initContainers", []), *spec.get("containers", [])]


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
    """A label selector, as metav1.LabelSelector: every requirement must hold; {} selects all."""
    if selector is None:
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values")
        if operator == "In":
            holds = key in labels and labels[key] in values
        elif operator == "NotIn":
            holds = key not in labels or labels[key] not in values
        elif operator == "Exists":
            holds = key in labels
        elif operator == "DoesNotExist":
            holds = key not in labels
        else:
            raise ValueError(f"not a label selector operator: {operator!r}")
        if not holds:
            return False
    return True


def _ports_match(ports: Sequence[Mapping[str, Any]] | None, port: int, protocol: str) -> bool:
    """No ports: every port. Otherwise one entry must name the protocol (default TCP) and
    the port, or a range from `port` to `endPort`, or leave the port out (every port)."""
    if not ports:
        return True
    for entry in ports:
        if entry.get("protocol", "TCP") != protocol:
            continue
        first = entry.get("port")
        if isinstance(first, str):
            # A named port resolves against the destination's container ports,
            # which an Endpoint does not carry.
            raise NotImplementedError(f"named port {first!r}: the model takes numbers only")
        if first is None or first <= port <= entry.get("endPort", first):
            return True
    return False


class NetworkPolicies:
    """Decides connections from the rendered NetworkPolicies, by the NetworkPolicy API's rules.

    A connection needs the source's egress and the destination's ingress allowed. A
    pod no policy selects for a direction is open in that direction; once any policy
    selects it, only what one of their rules allows gets through. A policy's types
    are its `policyTypes`, or Ingress (plus Egress if it has egress rules). In a peer,
    `namespaceSelector` and `podSelector` together must both match; peers of a rule,
    rules of a policy and selecting policies add up. A namespace's labels are those
    of the Namespace objects given, plus `kubernetes.io/metadata.name`.

    Not modelled: an `ipBlock` never matches a pod (the API leaves pod IPs in an
    ipBlock to the implementation), named ports are refused, and addresses outside
    the pod network (`Endpoint.ip`) are subject to no policy of their own.
    """

    def __init__(self, objects: Sequence[Mapping[str, Any]]) -> None:
        self.policies = of_kind(objects, "NetworkPolicy")
        self.namespace_labels = {
            n["metadata"]["name"]: dict(n["metadata"].get("labels") or {})
            for n in of_kind(objects, "Namespace")
        }

    def _labels_of_namespace(self, namespace: str) -> dict[str, str]:
        return {
            **self.namespace_labels.get(namespace, {}),
            "kubernetes.io/metadata.name": namespace,
        }

    def _peer_matches(
        self, peer: Mapping[str, Any], policy_namespace: str, other: Endpoint
    ) -> bool:
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
            if not _selects(peer["namespaceSelector"], self._labels_of_namespace(other.namespace)):
                return False
        elif other.namespace != policy_namespace:
            return False
        if "podSelector" in peer:
            return _selects(peer["podSelector"], other.labels or {})
        return True

    @staticmethod
    def _types(policy: Mapping[str, Any]) -> list[str]:
        spec = policy["spec"]
        if "policyTypes" in spec:
            return list(spec["policyTypes"])
        return ["Ingress", "Egress"] if "egress" in spec else ["Ingress"]

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
            and direction in self._types(p)
        ]
        if not selecting:
            return True
        key, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
        for policy in selecting:
            for rule in policy["spec"].get(key) or []:
                peers = rule.get(peers_key)
                peer_ok = not peers or any(
                    self._peer_matches(peer, policy["metadata"]["namespace"], other)
                    for peer in peers
                )
                if peer_ok and _ports_match(rule.get("ports"), port, protocol):
                    return True
        return False

    def allowed(
        self, source: Endpoint, destination: Endpoint, port: int, protocol: str = "TCP"
    ) -> bool:
        """Whether `source` may open a connection to `destination` on `port`/`protocol`."""
        return self._side(source, "Egress", destination, port, protocol) and self._side(
            destination, "Ingress", source, port, protocol
        )
