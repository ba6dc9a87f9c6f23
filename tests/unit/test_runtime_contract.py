"""ETLSTACK_RUNTIME has one definition (dags/pipeline_factory/contract.py), and the
program's value for every stack is exactly that model's serialization.

The producer is the Pulumi program (`airflow_settings.runtime_settings`), read here
from each evaluated stack; the reader is the DAG factory's `parse`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from pipeline_factory import contract
from pipeline_factory.runtime import RuntimeSettingsError, parse
from tests.support.stacks import STACKS
from tests.unit.dag_helpers import stack_runtime


@pytest.mark.parametrize("stack", STACKS)
def test_the_program_writes_what_the_reader_reads(stack: str) -> None:
    raw = stack_runtime(stack)
    runtime = parse(raw)
    # Nothing the reader ignores, nothing it fills in with a default.
    assert runtime.dump() == json.loads(raw)
    assert runtime.target in contract.TARGETS


def test_the_program_builds_it_with_the_same_model() -> None:
    stack_runtime(STACKS[0])
    producer = sys.modules["etlstack_runtime_contract"]
    assert Path(str(producer.__file__)).resolve() == Path(str(contract.__file__)).resolve()


def _without(value: dict[str, Any], path: str) -> dict[str, Any]:
    *parents, key = path.split(".")
    inner = value
    for parent in parents:
        inner = inner[parent]
    del inner[key]
    return value


@pytest.mark.parametrize(
    ("stack", "key"),
    [
        ("local", "target"),
        ("local", "pipelineImages"),
        ("local", "taskResources"),
        ("local", "taskResources.cpu"),
        ("local", "taskResources.memory"),
        ("local", "pool"),
        ("local", "docker"),
        ("local", "docker.url"),
        ("local", "docker.network"),
        ("local", "docker.warehouseConnId"),
        ("dev", "kubernetes"),
        ("dev", "kubernetes.namespace"),
        ("dev", "kubernetes.serviceAccount"),
        ("dev", "kubernetes.imagePullSecret"),
        ("dev", "kubernetes.warehouseSecret"),
    ],
)
def test_a_missing_key_is_named_with_the_fix(stack: str, key: str) -> None:
    value = _without(json.loads(stack_runtime(stack)), key)
    with pytest.raises(RuntimeSettingsError) as missing:
        parse(json.dumps(value))
    assert str(missing.value) == f"ETLSTACK_RUNTIME has no {key}; the platform sets it, redeploy"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"artifactsPromoted": "yes"}, "artifactsPromoted must be true or false"),
        ({"pipelineImages": ["weather"]}, "pipelineImages must map pipeline names to image refs"),
        ({"pipelineImages": {"weather": ""}}, "pipelineImages must map pipeline names"),
        ({"taskResources": {"cpu": "1 cpu", "memory": "1Gi"}}, "is not a CPU quantity"),
        ({"taskResources": {"cpu": "1", "memory": "1gb"}}, "is not a memory quantity"),
    ],
)
def test_a_malformed_value_is_named(change: dict[str, Any], message: str) -> None:
    value = {**json.loads(stack_runtime("local")), **change}
    with pytest.raises(RuntimeSettingsError, match=message):
        parse(json.dumps(value))
