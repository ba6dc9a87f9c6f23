"""What the DAG tests share: the DAGs folder on the path and each stack's real runtime.

The runtime settings are not made up here: they are the ETLSTACK_RUNTIME value the
program declares for each stack's Airflow components, read from the evaluated stack.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from etlstack import render
from tests.conftest import PROJECT_ROOT, STACKS, stack_overrides

DAGS = PROJECT_ROOT / "dags"
RUNTIME_ENV = "ETLSTACK_RUNTIME"
# The stacks that build their images and DAGs from this repository. A stack that
# deploys promoted artifacts (prod) runs the DAGs inside its promoted Airflow image,
# not the ones in dags/: promotion keeps those consistent (tests/unit/test_promote.py).
BUILDING_STACKS = [
    stack
    for stack in STACKS
    if "etlstack:artifacts" not in render.stack_file_config(PROJECT_ROOT, stack)[0]
]


def _runtime_values(value: Any, found: set[str]) -> None:
    if isinstance(value, str) and value.startswith(f"{RUNTIME_ENV}="):
        found.add(value.split("=", 1)[1])
    elif isinstance(value, dict):
        if value.get("name") == RUNTIME_ENV and isinstance(value.get("value"), str):
            found.add(value["value"])
        if isinstance(value.get(RUNTIME_ENV), str):
            found.add(value[RUNTIME_ENV])
        for item in value.values():
            _runtime_values(item, found)
    elif isinstance(value, list):
        for item in value:
            _runtime_values(item, found)


@functools.cache
def evaluation(stack: str) -> render.Evaluation:
    return render.evaluate(stack, PROJECT_ROOT, overrides=stack_overrides(stack))


@functools.cache
def stack_runtime(stack: str) -> str:
    """The one ETLSTACK_RUNTIME value every Airflow component of `stack` gets."""
    found: set[str] = set()
    for resource in evaluation(stack).resources:
        _runtime_values(render.reveal(resource.inputs), found)
    assert len(found) == 1, f"{stack}: expected one ETLSTACK_RUNTIME value, found {len(found)}"
    return found.pop()


def stack_images(stack: str) -> dict[str, str]:
    return dict(json.loads(stack_runtime(stack))["pipelineImages"])


def dockerfile_env(name: str) -> str:
    """A variable the Airflow image sets (ENV), as the image sets it."""
    text = (PROJECT_ROOT / "airflow_image" / "Dockerfile").read_text().replace("\\\n", " ")
    for line in text.splitlines():
        if line.startswith("ENV "):
            for word in line.split()[1:]:
                key, _, value = word.partition("=")
                if key == name:
                    return value.strip('"')
    raise KeyError(f"airflow_image/Dockerfile sets no {name}")
