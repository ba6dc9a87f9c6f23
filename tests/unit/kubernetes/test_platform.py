"""The provider every Kubernetes object goes through, and the namespace each names (platform.py)."""

from __future__ import annotations

from etlstack import render
from tests.unit.kubernetes.stack import (
    Stack,
)
from tests.unit.kubernetes_helpers import (
    is_kubernetes_object,
)

CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PersistentVolume"}


def test_one_explicit_provider_bound_to_the_configured_context(stack: Stack) -> None:
    providers = stack.evaluation.by_type("pulumi:providers:kubernetes")
    assert len(providers) == 1
    (provider,) = providers
    assert provider.inputs["context"] == stack.kubernetes.context
    for resource in stack.evaluation.resources:
        if is_kubernetes_object(resource):
            assert resource.provider.rsplit("::", 1)[0] == provider.urn, resource.name


def test_namespaced_objects_name_their_namespace_themselves(stack: Stack) -> None:
    for resource in stack.evaluation.resources:
        if not is_kubernetes_object(resource):
            continue
        metadata = render.reveal(resource.inputs["metadata"])
        assert metadata.get("name"), f"{resource.name} has a fixed name"
        if resource.inputs["kind"] in CLUSTER_SCOPED:
            assert "namespace" not in metadata
        else:
            assert metadata.get("namespace") in (stack.platform, stack.pipelines), resource.name
