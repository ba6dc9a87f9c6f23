"""What the DAG tests share: the DAGs folder on the path and each stack's real runtime.

The runtime settings are not made up here: they are the ETLSTACK_RUNTIME value the
program declares for each stack's Airflow components, read from the evaluated stack.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from airflow.dag_processing.dagbag import DagBag

from etlstack import render
from tests.support.stacks import PROJECT_ROOT, STACKS, evaluate

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


def runtime_of(evaluated: render.Evaluation) -> str:
    """The one ETLSTACK_RUNTIME value every Airflow component of the evaluated stack gets."""
    found: set[str] = set()
    for resource in evaluated.resources:
        _runtime_values(render.reveal(resource.inputs), found)
    assert len(found) == 1, f"{evaluated.stack}: expected one ETLSTACK_RUNTIME, found {len(found)}"
    return found.pop()


@functools.cache
def stack_runtime(stack: str) -> str:
    return runtime_of(evaluate(stack))


def stack_images(stack: str) -> dict[str, str]:
    return dict(json.loads(stack_runtime(stack))["pipelineImages"])


def parse(folder: Path) -> DagBag:
    """The DAGs of `folder` as Airflow's DagBag reads them, configured as the image configures it."""
    safe_mode = dockerfile_env("AIRFLOW__CORE__DAG_DISCOVERY_SAFE_MODE") == "True"
    return DagBag(dag_folder=str(folder), safe_mode=safe_mode)


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
