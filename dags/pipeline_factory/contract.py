"""ETLSTACK_RUNTIME, defined once: what the stack hands every Airflow component.

The Pulumi program builds it (infra/etlstack/airflow_settings.py, `runtime_settings`)
and the DAG factory reads it (pipeline_factory/runtime.py), both with the `Runtime`
model below, so the two sides cannot disagree on a key. The JSON keys are the camelCase
aliases of the fields. Nothing secret is in it.

This module needs nothing but pydantic: the Airflow image has only dags/ on sys.path,
and the Pulumi program loads this one file by its path (importing the pipeline_factory
package would import Airflow).
"""

import re
from typing import Annotated, Any, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveInt,
    StrictBool,
    StringConstraints,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

Target = Literal["docker", "kubernetes"]
TARGETS: tuple[Target, ...] = ("docker", "kubernetes")
# Every setting is a name the platform chose; an empty one is as good as none.
Setting = Annotated[str, StringConstraints(min_length=1)]


ENV = "ETLSTACK_RUNTIME"


class RuntimeSettingsError(ValueError):
    """ETLSTACK_RUNTIME is missing or malformed; the message says which key and how."""


# Parsed here rather than with kubernetes.utils.parse_quantity: importing the kubernetes
# client costs every DAG parse (and every task process) about 0.5 s of CPU, measured.
_CPU = re.compile(r"(\d+(?:\.\d+)?)(m?)")
_MEMORY = re.compile(r"(\d+)(Ki|Mi|Gi|Ti|k|M|G|T)?")
_MEMORY_UNITS = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
_MEMORY_UNITS |= {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


def cpu_cores(quantity: str) -> float:
    """A Kubernetes CPU quantity ("1", "0.5", "500m") in cores."""
    match = _CPU.fullmatch(quantity)
    if not match or float(match.group(1)) == 0:
        raise RuntimeSettingsError(
            f"{ENV} taskResources.cpu {quantity!r} is not a CPU quantity such as '1' or '500m'"
        )
    return float(match.group(1)) / (1000 if match.group(2) else 1)


def nano_cpus(quantity: str) -> int:
    """A Kubernetes CPU quantity in the Docker Engine's unit of a CPU limit (NanoCpus)."""
    return round(cpu_cores(quantity) * 1e9)


def memory_bytes(quantity: str) -> int:
    """A Kubernetes memory quantity ("512Mi", "1G", "1048576") in bytes."""
    match = _MEMORY.fullmatch(quantity)
    if not match or int(match.group(1)) == 0:
        raise RuntimeSettingsError(
            f"{ENV} taskResources.memory {quantity!r} is not a memory quantity such as '512Mi'"
        )
    return int(match.group(1)) * _MEMORY_UNITS[match.group(2) or ""]


class PipelineNotDeployed(LookupError):
    """A DAG names a pipeline the stack does not deploy."""


class _Contract(BaseModel):
    # Keys the reader does not know are ignored, as a newer program may add some.
    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_alias=True,
        validate_by_name=True,
        serialize_by_alias=True,
        frozen=True,
    )


class DockerSettings(_Contract):
    url: Setting
    network: Setting
    warehouse_conn_id: Setting
    # What the Docker API proxy takes of a task container (infra/etlstack/docker/
    # docker_api_proxy.py, TaskContainerRules): the client's API version, the name
    # prefix, the process limit and the log's bounds.
    api_version: Setting
    task_container_prefix: Setting
    pids_limit: PositiveInt
    log_max_bytes: PositiveInt
    log_max_files: PositiveInt
    # The volume of the registry the stack runs (none with an external registry).
    registry_volume: Setting | None = None


class KubernetesSettings(_Contract):
    namespace: Setting
    service_account: Setting
    image_pull_secret: Setting
    warehouse_secret: Setting


class TaskResources(_Contract):
    # Kubernetes quantities; the reader checks them (pipeline_factory/runtime.py).
    # A bare number is a quantity too: 1 reads as "1".
    model_config = ConfigDict(coerce_numbers_to_str=True)

    cpu: Setting
    memory: Setting


class Housekeeping(_Contract):
    """What platform_housekeeping keeps, in seconds (the stack's housekeeping settings), and
    where the backups of the platform's PostgreSQL are, to check the newest is recent."""

    task_logs_seconds: PositiveInt
    metadata_seconds: PositiveInt
    # Airflow 3 keeps its database from task processes (the task runner replaces
    # AIRFLOW__DATABASE__SQL_ALCHEMY_CONN before a task runs): the scheduler holds it as
    # this Airflow connection too, for `airflow db clean`.
    metadata_conn_id: Setting
    failed_task_containers_seconds: PositiveInt
    # Both absent with an external database, which keeps its own backups.
    backups_every_seconds: PositiveInt | None = None
    backups_directory: Setting | None = None


class Runtime(_Contract):
    """The target, the pinned image of every pipeline the stack deploys, the pool, the
    task limits and the target's launch settings (its block, named after the target)."""

    target: Target
    pipeline_images: dict[str, Setting]
    task_resources: TaskResources
    # True where the stack deploys artifacts promoted from another stack (prod) instead
    # of building them from the repository it runs from.
    promoted: StrictBool = Field(default=False, alias="artifactsPromoted")
    pool: Setting
    # The stack accepts tasks that run their own code inside an Airflow component
    # (airflow.allowTasksInAirflow); pipeline_factory/policy.py refuses them otherwise.
    allow_tasks_in_airflow: StrictBool = False
    housekeeping: Housekeeping
    docker: DockerSettings | None = None
    kubernetes: KubernetesSettings | None = None

    @model_validator(mode="after")
    def _has_target_settings(self) -> Self:
        if getattr(self, self.target) is None:
            raise PydanticCustomError(
                "target_settings_missing", "no {target} settings", {"target": self.target}
            )
        return self

    @property
    def cpu(self) -> str:
        return self.task_resources.cpu

    @property
    def memory(self) -> str:
        return self.task_resources.memory

    def dump(self) -> dict[str, Any]:
        """The value of ETLSTACK_RUNTIME as JSON data: aliased keys, the target's block only."""
        return self.model_dump(mode="json", exclude_none=True)

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
