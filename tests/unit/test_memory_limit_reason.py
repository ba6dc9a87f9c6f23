"""A task container killed by its memory limit is named as such; other failures are not;
and a failed container is kept for inspection.

DockerOperator reports only the exit status (137 is any SIGKILL) and removes the
container either way, so the factory's client says why when the container exits, and
keeps it when it failed.
"""

from __future__ import annotations

from unittest import mock

import pytest
from airflow.providers.docker.exceptions import DockerContainerFailedException

from pipeline_factory.contract import DockerSettings
from pipeline_factory.docker_operators import _ConfinedClient

LIMIT = 512 * 1024 * 1024
SETTINGS = DockerSettings(
    url="tcp://docker-api-proxy:2375",
    network="etlstack-local-pipelines",
    warehouse_conn_id="warehouse",
    api_version="1.41",
    task_container_prefix="etlstack-local-task-",
    pids_limit=1024,
    log_max_bytes=10_000_000,
    log_max_files=3,
)


def _engine(status: int, oom_killed: bool) -> mock.Mock:
    engine = mock.Mock()
    engine.wait.return_value = {"Error": None, "StatusCode": status}
    engine.inspect_container.return_value = {
        "State": {"OOMKilled": oom_killed, "ExitCode": status},
        "HostConfig": {"Memory": LIMIT},
    }
    return engine


def test_a_container_killed_by_its_memory_limit_is_named_as_such() -> None:
    client = _ConfinedClient(_engine(137, oom_killed=True), nano_cpus=10**9, settings=SETTINGS)
    with pytest.raises(DockerContainerFailedException) as failure:
        client.wait("c0ffee")
    message = str(failure.value)
    assert "killed for exceeding its memory limit of 512 MiB" in message
    assert "OOMKilled, exit status 137" in message
    assert "airflow.taskResources.memory" in message


@pytest.mark.parametrize(("status", "inspected"), [(0, False), (1, True), (137, True)])
def test_other_exits_are_left_to_dockeroperator(status: int, inspected: bool) -> None:
    engine = _engine(status, oom_killed=False)
    assert (
        _ConfinedClient(engine, nano_cpus=10**9, settings=SETTINGS).wait("c0ffee")["StatusCode"]
        == status
    )
    assert engine.inspect_container.called is inspected


@pytest.mark.parametrize(("status", "removed"), [(0, True), (1, False), (137, False)])
def test_a_failed_container_is_kept_for_inspection_a_successful_one_removed(
    status: int, removed: bool
) -> None:
    engine = _engine(status, oom_killed=False)
    client = _ConfinedClient(engine, nano_cpus=10**9, settings=SETTINGS)
    client.wait("c0ffee")
    # What DockerOperator's auto_remove="success" does after every run, failed or not.
    client.remove_container("c0ffee")
    assert engine.remove_container.called is removed
