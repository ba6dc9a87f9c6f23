"""The offline cluster models themselves, on small hand-written objects with known answers.

The RBAC and NetworkPolicy tests of the stacks (tests/unit/kubernetes/) are only as
good as the models in kubernetes_helpers.py that decide them. Each case here is a
request or a connection and what the Kubernetes API's rules say about it: the RBAC
authorizer's for Roles and bindings, and the NetworkPolicy API's for policies.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.unit.kubernetes_helpers import Endpoint, NetworkPolicies, RbacAuthorizer, Request

# --- RBAC -----------------------------------------------------------------------

ROLE = {
    "kind": "Role",
    "metadata": {"name": "r", "namespace": "a"},
    "rules": [{"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get"]}],
}
CLUSTER_ROLE = {
    "kind": "ClusterRole",
    "metadata": {"name": "c"},
    "rules": [{"apiGroups": ["apps"], "resources": ["*"], "verbs": ["list"]}],
}
BIND_ROLE = {
    "kind": "RoleBinding",
    "metadata": {"name": "b", "namespace": "a"},
    "roleRef": {"kind": "Role", "name": "r"},
    "subjects": [{"kind": "ServiceAccount", "name": "sa", "namespace": "x"}],
}
BIND_CLUSTER_ROLE_IN_B = {
    "kind": "RoleBinding",
    "metadata": {"name": "b2", "namespace": "b"},
    "roleRef": {"kind": "ClusterRole", "name": "c"},
    "subjects": [{"kind": "Group", "name": "system:serviceaccounts:x"}],
}
CLUSTER_BINDING = {
    "kind": "ClusterRoleBinding",
    "metadata": {"name": "cb"},
    "roleRef": {"kind": "ClusterRole", "name": "c"},
    "subjects": [{"kind": "ServiceAccount", "name": "sa", "namespace": "x"}],
}
RBAC_OBJECTS = {
    "bindings": [ROLE, CLUSTER_ROLE, BIND_ROLE, BIND_CLUSTER_ROLE_IN_B],
    "cluster-wide": [CLUSTER_ROLE, CLUSTER_BINDING],
}
DEPLOYMENTS = {"resource": "deployments", "api_group": "apps"}

# (objects, account's namespace, account, request, allowed)
RBAC_CASES: dict[str, tuple[str, str, str, Request, bool]] = {
    "a role's rule, in the binding's namespace": (
        "bindings", "x", "sa", Request("get", "pods", "a"), True,
    ),
    "a subresource the rule names": (
        "bindings", "x", "sa", Request("get", "pods", "a", subresource="log"), True,
    ),
    "a subresource the rule does not name": (
        "bindings", "x", "sa", Request("get", "pods", "a", subresource="exec"), False,
    ),
    "a verb the rule does not name": (
        "bindings", "x", "sa", Request("list", "pods", "a"), False,
    ),
    "outside the binding's namespace": (
        "bindings", "x", "sa", Request("get", "pods", "b"), False,
    ),
    "the same account name in another namespace": (
        "bindings", "y", "sa", Request("get", "pods", "a"), False,
    ),
    "a cluster role bound in a namespace, to the account's group": (
        "bindings", "x", "other", Request("list", namespace="b", **DEPLOYMENTS), True,
    ),
    "that cluster role outside the binding's namespace": (
        "bindings", "x", "other", Request("list", namespace="a", **DEPLOYMENTS), False,
    ),
    "that cluster role cluster-wide": (
        "bindings", "x", "other", Request("list", namespace=None, **DEPLOYMENTS), False,
    ),
    "a cluster role binding, cluster-wide": (
        "cluster-wide", "x", "sa", Request("list", namespace=None, **DEPLOYMENTS), True,
    ),
    "a cluster role binding, in any namespace": (
        "cluster-wide", "x", "sa", Request("list", namespace="q", **DEPLOYMENTS), True,
    ),
}  # fmt: skip


@pytest.mark.parametrize(
    ("objects", "namespace", "account", "request_", "expected"),
    RBAC_CASES.values(),
    ids=RBAC_CASES.keys(),
)
def test_the_rbac_model_grants_what_a_binding_grants_and_nothing_more(
    objects: str, namespace: str, account: str, request_: Request, expected: bool
) -> None:
    authorizer = RbacAuthorizer(RBAC_OBJECTS[objects])
    assert authorizer.allowed(namespace, account, request_) is expected


# --- NetworkPolicies ------------------------------------------------------------

WEB = Endpoint("a", {"app": "web"})
DB = Endpoint("a", {"app": "db"})
CLIENT = Endpoint("a", {"app": "client"})
UNLABELLED = Endpoint("a", {})
WEB_IN_B = Endpoint("b", {"app": "web"})
CLIENT_IN_B = Endpoint("b", {"app": "client", "role": "x"})
OUTSIDE = Endpoint(ip="203.0.113.9")
OUTSIDE_ELSEWHERE = Endpoint(ip="198.51.100.1")


def policy(
    namespace: str,
    selects: dict[str, Any],
    types: list[str] | None = None,
    ingress: list[dict[str, Any]] | None = None,
    egress: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {"podSelector": selects}
    if types is not None:
        spec["policyTypes"] = types
    if ingress is not None:
        spec["ingress"] = ingress
    if egress is not None:
        spec["egress"] = egress
    return {
        "kind": "NetworkPolicy",
        "metadata": {"name": "p", "namespace": namespace},
        "spec": spec,
    }


def labels(**pairs: str) -> dict[str, Any]:
    return {"matchLabels": pairs}


def namespace_named(name: str) -> dict[str, Any]:
    return labels(**{"kubernetes.io/metadata.name": name})


EVERYTHING: dict[str, Any] = {}
DB_ONLY = labels(app="db")


@dataclass
class Case:
    policies: list[dict[str, Any]]
    source: Endpoint
    destination: Endpoint
    allowed: bool
    port: int = 5432
    protocol: str = "TCP"
    namespaces: list[dict[str, Any]] = field(default_factory=list)


DENY_INGRESS_IN_A = policy("a", EVERYTHING, ["Ingress"])
DENY_EGRESS_IN_A = policy("a", EVERYTHING, ["Egress"])
# No policyTypes: Ingress, and Egress as it has egress rules.
WEB_EGRESS_TO_B = policy(
    "a", labels(app="web"), egress=[{"to": [{"namespaceSelector": namespace_named("b")}]}]
)


NO_INGRESS = policy("a", EVERYTHING, ingress=[])


def db_from(*peers: dict[str, Any], ports: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Ingress to the db pod from `peers` (on `ports`)."""
    rule: dict[str, Any] = {"from": list(peers)} if peers else {}
    if ports is not None:
        rule["ports"] = ports
    return policy("a", DB_ONLY, ["Ingress"], ingress=[rule])


def expression(key: str, operator: str, *values: str) -> dict[str, Any]:
    found: dict[str, Any] = {"key": key, "operator": operator}
    return {**found, "values": list(values)} if values else found


FROM_WEB = db_from({"podSelector": labels(app="web")})
FROM_CLIENTS = db_from({"podSelector": labels(app="client")})
FROM_B = db_from({"namespaceSelector": namespace_named("b")})
FROM_CLIENTS_IN_B = db_from(
    {"namespaceSelector": namespace_named("b"), "podSelector": labels(app="client")}
)
FROM_B_OR_CLIENTS = db_from(
    {"namespaceSelector": namespace_named("b")}, {"podSelector": labels(app="client")}
)
FROM_CLIENTS_ANYWHERE = db_from(
    {"namespaceSelector": EVERYTHING, "podSelector": labels(app="client")}
)
FROM_NOT_WEB = db_from({"podSelector": {"matchExpressions": [expression("app", "NotIn", "web")]}})
FROM_WEB_BY_IN = db_from({"podSelector": {"matchExpressions": [expression("app", "In", "web")]}})
FROM_ANY_ROLE = db_from(
    {
        "namespaceSelector": EVERYTHING,
        "podSelector": {"matchExpressions": [expression("role", "Exists")]},
    }
)
FROM_NO_ROLE = db_from(
    {
        "namespaceSelector": EVERYTHING,
        "podSelector": {"matchExpressions": [expression("role", "DoesNotExist")]},
    }
)
FROM_DATA_TEAM = db_from({"namespaceSelector": labels(team="data")})
DATA_TEAM_B = {"kind": "Namespace", "metadata": {"name": "b", "labels": {"team": "data"}}}
ON_5432 = db_from(ports=[{"port": 5432}])
ON_8000_TO_8100 = db_from(ports=[{"port": 8000, "endPort": 8100}])
ON_UDP = db_from(ports=[{"protocol": "UDP"}])
FROM_BLOCK = db_from({"ipBlock": {"cidr": "203.0.113.0/24"}})
TO_BLOCK = policy(
    "a",
    EVERYTHING,
    ["Egress"],
    egress=[{"to": [{"ipBlock": {"cidr": "203.0.113.0/24", "except": ["203.0.113.128/25"]}}]}],
)
WEB_TO_DB = policy("a", labels(app="web"), ["Egress"], egress=[{"to": [{"podSelector": DB_ONLY}]}])

NETWORK_CASES: dict[str, Case] = {
    # No policy selects a pod: it is open both ways.
    "no policy: open": Case([], WEB, DB, True),
    # Default deny, per direction and per namespace.
    "deny ingress: another namespace's pod refused": Case([DENY_INGRESS_IN_A], WEB_IN_B, DB, False),
    "deny ingress: the same namespace's pod refused": Case([DENY_INGRESS_IN_A], WEB, DB, False),
    "deny ingress: egress stays open": Case([DENY_INGRESS_IN_A], DB, WEB_IN_B, True),
    "deny ingress: other namespaces untouched": Case(
        [DENY_INGRESS_IN_A], WEB_IN_B, CLIENT_IN_B, True
    ),
    "deny egress: to a pod refused": Case([DENY_EGRESS_IN_A], WEB, WEB_IN_B, False),
    "deny egress: to an address refused": Case([DENY_EGRESS_IN_A], WEB, OUTSIDE, False, port=443),
    "deny egress: ingress stays open": Case([DENY_EGRESS_IN_A], WEB_IN_B, WEB, True),
    # Without policyTypes: Ingress, plus Egress when the policy has egress rules.
    "no types, ingress: []: ingress refused": Case([NO_INGRESS], WEB_IN_B, WEB, False),
    "no types, ingress: []: egress open": Case([NO_INGRESS], WEB, WEB_IN_B, True),
    "no types, egress rules: egress restricted": Case([WEB_EGRESS_TO_B], WEB, DB, False),
    "no types, egress rules: what they allow": Case([WEB_EGRESS_TO_B], WEB, WEB_IN_B, True),
    "no types, egress rules: ingress restricted too": Case([WEB_EGRESS_TO_B], WEB_IN_B, WEB, False),
    # podSelector alone: pods of the policy's namespace; namespaceSelector alone: any pod there.
    "podSelector alone: its namespace's pod": Case([FROM_WEB], WEB, DB, True),
    "podSelector alone: not another namespace's": Case([FROM_WEB], WEB_IN_B, DB, False),
    "namespaceSelector alone: any pod there": Case([FROM_B], CLIENT_IN_B, DB, True),
    "namespaceSelector alone: not elsewhere": Case([FROM_B], WEB, DB, False),
    # Both selectors in one peer: AND.
    "one peer, both selectors: both match": Case([FROM_CLIENTS_IN_B], CLIENT_IN_B, DB, True),
    "one peer, both selectors: only the namespace": Case([FROM_CLIENTS_IN_B], WEB_IN_B, DB, False),
    "one peer, both selectors: only the labels": Case([FROM_CLIENTS_IN_B], CLIENT, DB, False),
    "every namespace, some labels": Case([FROM_CLIENTS_ANYWHERE], CLIENT_IN_B, DB, True),
    # Two peers: OR.
    "two peers: the namespace one": Case([FROM_B_OR_CLIENTS], WEB_IN_B, DB, True),
    "two peers: the labels one": Case([FROM_B_OR_CLIENTS], CLIENT, DB, True),
    "two peers: neither": Case([FROM_B_OR_CLIENTS], WEB, DB, False),
    # Selector expressions.
    "NotIn: another value": Case([FROM_NOT_WEB], CLIENT, DB, True),
    "NotIn: the value": Case([FROM_NOT_WEB], WEB, DB, False),
    "NotIn: no such label": Case([FROM_NOT_WEB], UNLABELLED, DB, True),
    "In: no such label": Case([FROM_WEB_BY_IN], UNLABELLED, DB, False),
    "Exists": Case([FROM_ANY_ROLE], CLIENT_IN_B, DB, True),
    "DoesNotExist": Case([FROM_NO_ROLE], CLIENT_IN_B, DB, False),
    # A namespace's own labels count for a namespaceSelector.
    "a namespace's labels: labelled": Case(
        [FROM_DATA_TEAM], WEB_IN_B, DB, True, namespaces=[DATA_TEAM_B]
    ),
    "a namespace's labels: not labelled": Case([FROM_DATA_TEAM], WEB_IN_B, DB, False),
    # Ports.
    "a rule with ports only: any source, that port": Case([ON_5432], WEB_IN_B, DB, True),
    "a rule with ports only: another port": Case([ON_5432], WEB_IN_B, DB, False, port=22),
    "a port: TCP unless said": Case([ON_5432], WEB, DB, False, protocol="UDP"),
    "a port range: inside": Case([ON_8000_TO_8100], WEB, DB, True, port=8050),
    "a port range: past its end": Case([ON_8000_TO_8100], WEB, DB, False, port=8101),
    "a protocol, no port: every port": Case([ON_UDP], WEB, DB, True, port=53, protocol="UDP"),
    "a protocol, no port: not another protocol": Case([ON_UDP], WEB, DB, False, port=53),
    "an empty rule: everything": Case([db_from()], WEB_IN_B, DB, True),
    # ipBlock, for addresses outside the pod network.
    "ipBlock egress: inside the block": Case([TO_BLOCK], WEB, OUTSIDE, True, port=443),
    "ipBlock egress: in its except": Case(
        [TO_BLOCK], WEB, Endpoint(ip="203.0.113.200"), False, port=443
    ),
    "ipBlock egress: outside the block": Case([TO_BLOCK], WEB, OUTSIDE_ELSEWHERE, False, port=443),
    "ipBlock ingress: from inside the block": Case([FROM_BLOCK], OUTSIDE, DB, True),
    "ipBlock ingress: from outside it": Case([FROM_BLOCK], OUTSIDE_ELSEWHERE, DB, False),
    # Both ends must allow; policies add up; a policy selects in its own namespace only.
    "egress allowed, ingress refused": Case([WEB_TO_DB, DENY_INGRESS_IN_A], WEB, DB, False),
    "egress allowed, ingress allowed": Case([WEB_TO_DB, FROM_WEB], WEB, DB, True),
    "two policies: the first one's source": Case([FROM_WEB, FROM_CLIENTS], WEB, DB, True),
    "two policies: the second one's source": Case([FROM_WEB, FROM_CLIENTS], CLIENT, DB, True),
    "two policies: neither one's": Case([FROM_WEB, FROM_CLIENTS], UNLABELLED, DB, False),
    "a policy in another namespace": Case([policy("b", EVERYTHING, ["Ingress"])], WEB, DB, True),
}


@pytest.mark.parametrize("case", NETWORK_CASES.values(), ids=NETWORK_CASES.keys())
def test_the_network_policy_model_gives_the_apis_answer(case: Case) -> None:
    policies = NetworkPolicies([*case.namespaces, *case.policies])
    assert policies.allowed(case.source, case.destination, case.port, case.protocol) is case.allowed


def test_in_the_model_an_ip_block_never_matches_a_pod() -> None:
    """The API leaves a pod's IP inside an ipBlock to the implementation; the model's
    answer is no, so a policy the stacks rely on must not depend on it."""
    anywhere = policy(
        "a", EVERYTHING, ["Egress"], egress=[{"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}]
    )
    policies = NetworkPolicies([anywhere])
    assert policies.allowed(WEB, OUTSIDE, 443)
    assert not policies.allowed(WEB, WEB_IN_B, 443)


def test_the_network_policy_model_refuses_a_named_port() -> None:
    policies = NetworkPolicies([db_from(ports=[{"port": "postgres"}])])
    with pytest.raises(NotImplementedError, match="named port"):
        policies.allowed(WEB, DB, 5432)
