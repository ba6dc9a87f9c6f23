"""Every object the Kubernetes stacks declare, against the schema of the stack's Kubernetes version.

kubernetes-validate in strict mode: the version's OpenAPI schema, unknown fields refused
(the API server's own admission and semantic checks are not run here). What
`render.write` (what `etlstack render` runs) writes is those same objects.
"""

from __future__ import annotations

import json
from typing import Any

import kubernetes_validate
import pytest
import yaml

from etlstack import render
from tests.unit.kubernetes.stack import (
    Stack,
    airflow_deployment,
)
from tests.unit.kubernetes_helpers import (
    is_kubernetes_object,
    manifest,
)


def test_every_object_validates_strictly_for_the_stacks_kubernetes_version(stack: Stack) -> None:
    assert stack.objects, "the stack declares Kubernetes objects"
    for obj in stack.objects:
        kubernetes_validate.validate(obj, stack.kubernetes.version, strict=True)


def test_strict_validation_catches_an_unknown_field(stack: Stack) -> None:
    broken = json.loads(json.dumps(airflow_deployment(stack, "scheduler")))
    broken["spec"]["template"]["spec"]["containers"][0]["healthCheck"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, stack.kubernetes.version, strict=True)


def test_render_writes_exactly_the_validated_objects(stack: Stack, tmp_path: Any) -> None:
    """`render.write` writes one file per validated object, equal to it, a Secret's values masked."""
    out = tmp_path / "render"
    written = [p for p in render.write(stack.evaluation, out) if p.parent.name == "kubernetes"]
    assert len(written) == len(stack.objects)
    for resource in stack.evaluation.resources:
        if not is_kubernetes_object(resource):
            continue
        kind = resource.type.split(":")[-1]
        on_disk = yaml.safe_load((out / "kubernetes" / f"{kind}-{resource.name}.yaml").read_text())
        expected = manifest(resource, stack.evaluation)
        if kind == "Secret":
            # Same keys, every value masked.
            real = expected.pop("stringData")
            assert on_disk.pop("stringData") == dict.fromkeys(real, render.SECRET_PLACEHOLDER)
        assert on_disk == expected, resource.name
