"""A task killed by its memory limit says so in its log; other failures stay as they were."""

from __future__ import annotations

from typing import Any
from unittest import mock

import pytest
from airflow.providers.docker.exceptions import DockerContainerFailedException
from airflow.providers.docker.operators.docker import DockerOperator

from pipeline_factory import pipeline_task
from pipeline_factory.runtime import memory_bytes, parse
from tests.unit.dag_helpers import stack_runtime


@pytest.mark.parametrize("oom_killed", [True, False])
def test_a_container_killed_by_its_memory_limit_is_named_as_such(
    oom_killed: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE", "postgresql://w:pw@postgres:5432/warehouse")
    settings = parse(stack_runtime("local"))
    task = pipeline_task("platform-smoke", "memory_hog", runtime=settings)
    engine = mock.Mock()
    engine.inspect_container.return_value = {"State": {"OOMKilled": oom_killed}}

    def killed(operator: Any, context: Any) -> None:
        operator.container = {"Id": "c0ffee"}
        raise DockerContainerFailedException("Docker container failed: {'StatusCode': 137}", ["x"])

    with (
        mock.patch.object(DockerOperator, "execute", killed),
        mock.patch.object(type(task), "cli", engine),
        pytest.raises(DockerContainerFailedException) as failure,
    ):
        task.execute(context={})
    message = str(failure.value)
    if oom_killed:
        assert f"memory limit of {memory_bytes(settings.memory) >> 20} MiB" in message
        assert "OOMKilled, exit status 137" in message
        assert "airflow.taskResources.memory" in message
        engine.inspect_container.assert_called_once_with("c0ffee")
    else:
        assert message == "Docker container failed: {'StatusCode': 137}"
    assert failure.value.logs == ["x"]
