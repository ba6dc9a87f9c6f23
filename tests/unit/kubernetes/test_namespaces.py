"""The two namespaces (namespaces.py): restricted, and waited for by everything created in them."""

from __future__ import annotations

from etlstack import render
from tests.unit.kubernetes.stack import Stack
from tests.unit.kubernetes_helpers import of_kind

NAMESPACE = "kubernetes:core/v1:Namespace"


def test_every_namespaced_object_depends_on_its_namespace(stack: Stack) -> None:
    evaluation = stack.evaluation
    namespaces = {
        render.reveal(r.inputs)["metadata"]["name"]: r.urn for r in evaluation.by_type(NAMESPACE)
    }
    kubernetes = evaluation.config.kubernetes
    assert set(namespaces) == {kubernetes.namespace, kubernetes.pipelines_namespace}
    namespaced = [
        r
        for r in evaluation.resources
        if r.type.startswith("kubernetes:") and (r.inputs.get("metadata") or {}).get("namespace")
    ]
    assert namespaced
    for resource in namespaced:
        namespace = render.reveal(resource.inputs)["metadata"]["namespace"]
        assert namespaces[namespace] in resource.dependencies, resource.name


def test_two_namespaces_enforcing_the_restricted_profile(stack: Stack) -> None:
    namespaces = of_kind(stack.objects, "Namespace")
    assert {n["metadata"]["name"] for n in namespaces} == {stack.platform, stack.pipelines}
    for namespace in namespaces:
        assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
