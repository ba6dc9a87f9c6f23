"""Everything created in a namespace waits for it, through the namespace's own output."""

from __future__ import annotations

import pytest

from etlstack import render
from tests.conftest import PROJECT_ROOT

NAMESPACE = "kubernetes:core/v1:Namespace"


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_every_namespaced_object_depends_on_its_namespace(stack: str) -> None:
    evaluation = render.evaluate(stack, PROJECT_ROOT)
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
