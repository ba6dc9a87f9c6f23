"""The platform's runtime settings, as the stack hands them to every Airflow component.

ETLSTACK_RUNTIME is JSON written by the Pulumi program (infra/etlstack/airflow_settings.py):
the target, the pinned image of every pipeline the stack deploys, the pool, the task
limits and the target's launch settings. Nothing secret is in it.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

ENV = "ETLSTACK_RUNTIME"
TARGETS = ("docker", "kubernetes")


class RuntimeSettingsError(ValueError):
    """ETLSTACK_RUNTIME is missing or malformed; the message says which key and how."""


class PipelineNotDeployed(LookupError):
    """A DAG names a pipeline the stack does not deploy."""


@dataclass(frozen=True)
class DockerSettings:
    url: str
    network: str
    warehouse_conn_id: str


@dataclass(frozen=True)
class KubernetesSettings:
    namespace: str
    service_account: str
    image_pull_secret: str
    warehouse_secret: str


@dataclass(frozen=True)
class Runtime:
    target: str
    pipeline_images: Mapping[str, str]
    pool: str
    cpu: str
    memory: str
    # True where the stack deploys artifacts promoted from another stack (prod) instead
    # of building them from the repository it runs from.
    promoted: bool = False
    docker: DockerSettings | None = None
    kubernetes: KubernetesSettings | None = None

    def image(self, pipeline: str) -> str:
        """The pinned image of `pipeline`, or a clear failure when it is not deployed."""
        try:
            return self.pipeline_images[pipeline]
        except KeyError:
            deployed = ", ".join(sorted(self.pipeline_images)) or "none"
            if self.promoted:
                fix = (
                    "the DAGs and the pipeline images must come from one release: promote "
                    "again from the stack that ran them (etlstack promote dev prod) instead "
                    "of editing etlstack:artifacts by hand"
                )
            else:
                fix = (
                    f"there is no folder pipelines/{pipeline}/ in this release. Fix the "
                    f"pipeline name in the DAG, or create the pipeline: etlstack new-pipeline "
                    f"{pipeline}"
                )
            raise PipelineNotDeployed(
                f"this DAG uses pipeline {pipeline!r}, which this stack does not deploy "
                f"(deployed pipelines: {deployed}); {fix}"
            ) from None


def cpu_cores(quantity: str) -> float:
    """A Kubernetes CPU quantity ("1", "0.5", "500m") in cores."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(m?)", quantity)
    if not match or float(match.group(1)) == 0:
        raise RuntimeSettingsError(
            f"{ENV} taskResources.cpu {quantity!r} is not a CPU quantity such as '1' or '500m'"
        )
    return float(match.group(1)) / (1000 if match.group(2) else 1)


_MEMORY_UNITS = {
    "": 1,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
}


def memory_bytes(quantity: str) -> int:
    """A Kubernetes memory quantity ("512Mi", "1G", "1048576") in bytes."""
    match = re.fullmatch(r"(\d+)(Ki|Mi|Gi|Ti|k|M|G|T)?", quantity)
    if not match or int(match.group(1)) == 0:
        raise RuntimeSettingsError(
            f"{ENV} taskResources.memory {quantity!r} is not a memory quantity such as '512Mi'"
        )
    return int(match.group(1)) * _MEMORY_UNITS[match.group(2) or ""]


def _require(value: Mapping[str, Any], key: str, where: str = "") -> Any:
    if key not in value or value[key] in (None, ""):
        raise RuntimeSettingsError(f"{ENV} has no {where}{key}; the platform sets it, redeploy")
    return value[key]


def parse(raw: str) -> Runtime:
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as error:
        raise RuntimeSettingsError(f"{ENV} is not valid JSON: {error}") from None
    if not isinstance(value, dict):
        raise RuntimeSettingsError(f"{ENV} must be a JSON object")
    target = _require(value, "target")
    if target not in TARGETS:
        raise RuntimeSettingsError(f"{ENV} target {target!r} is not one of {list(TARGETS)}")
    images = _require(value, "pipelineImages")
    if not isinstance(images, dict) or not all(isinstance(v, str) and v for v in images.values()):
        raise RuntimeSettingsError(f"{ENV} pipelineImages must map pipeline names to image refs")
    resources = _require(value, "taskResources")
    promoted = value.get("artifactsPromoted", False)
    if not isinstance(promoted, bool):
        raise RuntimeSettingsError(f"{ENV} artifactsPromoted must be true or false")
    runtime = Runtime(
        promoted=promoted,
        target=target,
        pipeline_images=dict(images),
        pool=_require(value, "pool"),
        cpu=str(_require(resources, "cpu", "taskResources.")),
        memory=str(_require(resources, "memory", "taskResources.")),
    )
    cpu_cores(runtime.cpu)
    memory_bytes(runtime.memory)
    settings = _require(value, target)
    if target == "docker":
        return replace(
            runtime,
            docker=DockerSettings(
                url=_require(settings, "url", "docker."),
                network=_require(settings, "network", "docker."),
                warehouse_conn_id=_require(settings, "warehouseConnId", "docker."),
            ),
        )
    return replace(
        runtime,
        kubernetes=KubernetesSettings(
            namespace=_require(settings, "namespace", "kubernetes."),
            service_account=_require(settings, "serviceAccount", "kubernetes."),
            image_pull_secret=_require(settings, "imagePullSecret", "kubernetes."),
            warehouse_secret=_require(settings, "warehouseSecret", "kubernetes."),
        ),
    )


def load() -> Runtime:
    """The runtime of the Airflow component parsing the DAG (read at each parse)."""
    raw = os.environ.get(ENV)
    if not raw:
        raise RuntimeSettingsError(
            f"{ENV} is not set: DAGs built with pipeline_factory parse only where the platform "
            "runs them. To parse locally, export it (see docs/pipelines-and-dags.md)"
        )
    return parse(raw)
