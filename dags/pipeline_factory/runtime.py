"""The platform's runtime settings, as the stack hands them to every Airflow component.

ETLSTACK_RUNTIME is JSON written by the Pulumi program (infra/etlstack/airflow_settings.py)
from the model in pipeline_factory/contract.py; this reads it with the same model and
turns what is wrong with it into a message that names the key and the fix.
"""

from __future__ import annotations

import functools
import os

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from pipeline_factory.contract import (
    ENV,
    TARGETS,
    DockerSettings,
    KubernetesSettings,
    PipelineNotDeployed,
    Runtime,
    RuntimeSettingsError,
    cpu_cores,
    memory_bytes,
    nano_cpus,
)

__all__ = [
    "ENV",
    "DockerSettings",
    "KubernetesSettings",
    "PipelineNotDeployed",
    "Runtime",
    "RuntimeSettingsError",
    "cpu_cores",
    "load",
    "memory_bytes",
    "nano_cpus",
    "parse",
]


def _message(error: ErrorDetails) -> str:
    """What is wrong, by its JSON key, and what fixes it."""
    loc = error["loc"]
    key = ".".join(str(part) for part in loc)
    value = error.get("input")
    if error["type"] == "json_invalid":
        return f"{ENV} is not valid JSON: {error.get('ctx', {}).get('error', error['msg'])}"
    if error["type"] == "target_settings_missing":
        key = str(error.get("ctx", {}).get("target"))
    elif not loc:
        return f"{ENV} must be a JSON object"
    elif key == "artifactsPromoted":
        return f"{ENV} artifactsPromoted must be true or false"
    missing = error["type"] in ("missing", "target_settings_missing") or value in (None, "")
    if loc[:1] == ("pipelineImages",) and (len(loc) > 1 or not missing):
        return f"{ENV} pipelineImages must map pipeline names to image refs"
    if missing:
        return f"{ENV} has no {key}; the platform sets it, redeploy"
    if key == "target":
        return f"{ENV} target {value!r} is not one of {list(TARGETS)}"
    return f"{ENV} {key} is malformed ({error['msg']}); the platform sets it, redeploy"


# Every DAG parse reads the same value for each of its tasks (the factory and the
# cluster policy both ask): validated once per value. A Runtime is frozen.
@functools.lru_cache(maxsize=8)
def parse(raw: str) -> Runtime:
    try:
        runtime = Runtime.model_validate_json(raw)
    except ValidationError as error:
        # The first problem, in the order of the contract's keys.
        raise RuntimeSettingsError(_message(error.errors()[0])) from None
    cpu_cores(runtime.cpu)
    memory_bytes(runtime.memory)
    return runtime


def load() -> Runtime:
    """The runtime of the Airflow component parsing the DAG (read at each parse)."""
    raw = os.environ.get(ENV)
    if not raw:
        raise RuntimeSettingsError(
            f"{ENV} is not set: DAGs built with pipeline_factory parse only where the platform "
            "runs them. To parse locally, export it (see docs/pipelines-and-dags.md)"
        )
    return parse(raw)
