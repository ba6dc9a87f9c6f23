"""Pipeline tasks as containers on the Docker target, launched through the API proxy."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from functools import cached_property
from typing import Any, Protocol
from urllib.parse import quote, urlencode

from airflow.providers.docker.exceptions import DockerContainerFailedException
from airflow.providers.docker.operators.docker import DockerOperator
from airflow.sdk import BaseHook, Context

from pipeline_factory.contract import DockerSettings
from pipeline_factory.refusal import ExpectRefusal


def warehouse_url(conn_id: str) -> str:
    """The warehouse as a postgresql:// URL, from the Airflow connection `conn_id`."""
    conn = BaseHook.get_connection(conn_id)
    credentials = quote(conn.login or "", safe="")
    if conn.password:
        credentials += ":" + quote(conn.password, safe="")
    query = urlencode(conn.extra_dejson) if conn.extra_dejson else ""
    return f"postgresql://{credentials}@{conn.host}:{conn.port or 5432}/{conn.schema or ''}" + (
        f"?{query}" if query else ""
    )


class _TaskLog(Protocol):
    def info(self, message: Any, /, *args: Any) -> Any: ...


class _ConfinedClient:
    """The Docker API client, adding the platform's confinement to every container,
    naming it as the Docker API proxy requires, and keeping the containers that failed.

    DockerOperator turns `cpus` into CPU *shares*, a relative weight that limits
    nothing; a real limit needs NanoCpus. It has no parameter for that, nor for a
    process limit, dropping capabilities, forbidding privilege gains (setuid binaries in
    the image), the container's own cgroup namespace or a log of bounded type, so these
    are added where it builds the host config. The proxy refuses a create without them.

    The proxy reaches only containers named as task containers (the stack's prefix and
    32 hex digits), so each container gets such a name, and the operator is handed that
    name as the container's "Id" for every later call (attach, start, wait, remove).

    Its auto_remove="success" removes the container whatever its exit status (the
    removal is in a `finally`); a failed one is kept here instead, for `docker logs`
    and `docker inspect`, until platform_housekeeping removes it after
    housekeeping.failedTaskContainers.
    """

    def __init__(
        self, client: Any, nano_cpus: int, settings: DockerSettings, log: _TaskLog | None = None
    ) -> None:
        from docker.types import LogConfig

        self._client = client
        self._log: _TaskLog = log or logging.getLogger(__name__)
        self._name_prefix = settings.task_container_prefix
        self._failed: set[str] = set()
        self._confinement = {
            "nano_cpus": nano_cpus,
            "pids_limit": settings.pids_limit,
            "cap_drop": ["ALL"],
            "security_opt": ["no-new-privileges"],
            "cgroupns": "private",
            "log_config": LogConfig(
                type=LogConfig.types.JSON,
                config={
                    "max-size": str(settings.log_max_bytes),
                    "max-file": str(settings.log_max_files),
                },
            ),
        }

    def create_host_config(self, **kwargs: Any) -> Any:
        return self._client.create_host_config(**{**kwargs, **self._confinement})

    def create_container(self, *args: Any, **kwargs: Any) -> Any:
        name = f"{self._name_prefix}{uuid.uuid4().hex}"
        created = self._client.create_container(*args, **{**kwargs, "name": name})
        return {**created, "Id": name}

    def wait(self, container: Any, *args: Any, **kwargs: Any) -> Any:
        result = self._client.wait(container, *args, **kwargs)
        if result.get("StatusCode"):
            self._failed.add(_container_id(container))
            # DockerOperator reports only the exit status (137 is any SIGKILL) and then
            # removes the container, failed or not: say now, while it exists, when it
            # was the memory limit, so the task log names the fix.
            info = self._client.inspect_container(container)
            if info["State"].get("OOMKilled"):
                limit = int(info["HostConfig"].get("Memory") or 0) >> 20
                raise DockerContainerFailedException(
                    f"the task container was killed for exceeding its memory limit of {limit} "
                    "MiB (OOMKilled, exit status 137); lower the task's memory use or raise "
                    "airflow.taskResources.memory"
                )
        return result

    def remove_container(self, container: Any, *args: Any, **kwargs: Any) -> Any:
        if _container_id(container) in self._failed:
            self._log.info(
                "The failed task container %s is kept for inspection (docker logs, docker "
                "inspect); platform_housekeeping removes it after housekeeping.failedTaskContainers",
                _container_id(container),
            )
            return None
        return self._client.remove_container(container, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def _container_id(container: Any) -> str:
    return str(container["Id"] if isinstance(container, dict) else container)


class ConfinedDockerOperator(DockerOperator):
    """A DockerOperator whose containers get a hard CPU limit and no privileges."""

    # The command names a script inside the image (run_<task>.sh), not a template
    # file next to the DAG, which DockerOperator would otherwise look for.
    template_ext: Sequence[str] = ()

    def __init__(self, *, nano_cpus: int, docker_settings: DockerSettings, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.nano_cpus = nano_cpus
        self.docker_settings = docker_settings

    @cached_property
    def cli(self) -> Any:
        # One client per task: it remembers which of its containers failed.
        return _ConfinedClient(self.hook.api_client, self.nano_cpus, self.docker_settings, self.log)


class PipelineDockerOperator(ConfinedDockerOperator):
    """Runs one pipeline task; hands it WAREHOUSE_URL, read when the task runs.

    The URL comes from the Airflow connection (AIRFLOW_CONN_WAREHOUSE on the scheduler)
    and goes to the container as a private environment variable: it is never part of
    the DAG, the rendered template fields or the task log.
    """

    def __init__(self, *, warehouse_conn_id: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.warehouse_conn_id = warehouse_conn_id

    def execute(self, context: Context) -> Any:
        self._private_environment = {
            **self._private_environment,
            "WAREHOUSE_URL": warehouse_url(self.warehouse_conn_id),
        }
        return super().execute(context)


class RefusedDockerOperator(ExpectRefusal, ConfinedDockerOperator):
    """A container the Docker API proxy must refuse to create."""

    def __init__(self, *, refused_because: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.refused_because = refused_because
