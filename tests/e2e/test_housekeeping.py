"""platform_housekeeping on the deployed platform: each job runs through the real proxy,
against the real database and volumes, removes what is past its retention period and
keeps the rest.

The session's stack keeps failed task containers for a second (conftest.py), so that the
ones a run fails here are already past it; every other retention period is the default.
"""

from __future__ import annotations

import io
import json
import tarfile
from datetime import datetime

import docker.errors
import pytest
from harness import Platform

pytestmark = pytest.mark.e2e

HOUSEKEEPING = "platform_housekeeping"
FAILING = "platform_memory_limit"
LOGS = "/opt/airflow/logs"


def _sh(platform: Platform, suffix: str, script: str) -> str:
    result = platform.container(suffix).exec_run(["sh", "-c", script])
    assert result.exit_code == 0, result.output.decode(errors="replace")
    return str(result.output.decode(errors="replace"))


def _failed_task_containers(platform: Platform) -> list[str]:
    network = platform.env("airflow-scheduler")["ETLSTACK_RUNTIME"]
    pipelines_network = json.loads(network)["docker"]["network"]
    return [
        c.name
        for c in platform.client.containers.list(
            all=True,
            filters={
                "label": "org.etlstack.pipeline",
                "status": "exited",
                "network": pipelines_network,
            },
        )
    ]


def _retired_image(platform: Platform) -> str:
    """An image of the stack's registry that no deployed pipeline uses, as an earlier
    version leaves on the host."""
    deployed = json.loads(platform.env("airflow-scheduler")["ETLSTACK_RUNTIME"])["pipelineImages"]
    registry = next(iter(deployed.values())).split("/", 1)[0]
    tag = f"{registry}/etlstack/pipelines/retired:1"
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as archive:
        dockerfile = b"FROM scratch\nLABEL org.etlstack.test=retired\n"
        entry = tarfile.TarInfo("Dockerfile")
        entry.size = len(dockerfile)
        archive.addfile(entry, io.BytesIO(dockerfile))
    context.seek(0)
    # rm: no intermediate container is left behind on the engine.
    platform.client.images.build(fileobj=context, custom_context=True, tag=tag, rm=True)
    return tag


def test_housekeeping_removes_what_is_past_retention_and_keeps_the_rest(
    platform: Platform,
) -> None:
    airflow = platform.airflow
    old_log = f"{LOGS}/dag_id=retired/run_id=old/task_id=t/attempt=1.log"
    new_log = f"{LOGS}/dag_id=current/run_id=new/task_id=t/attempt=1.log"
    _sh(
        platform,
        "airflow-scheduler",
        f"mkdir -p $(dirname {old_log}) $(dirname {new_log}) && echo old > {old_log} "
        f"&& touch -d '60 days ago' {old_log} && echo new > {new_log}",
    )
    failing = airflow.trigger(FAILING)
    assert airflow.wait_run(FAILING, failing)["state"] == "failed"
    failed = _failed_task_containers(platform)
    assert failed, "the failed run left no task container to inspect"
    retired = _retired_image(platform)
    deployed = json.loads(platform.env("airflow-scheduler")["ETLSTACK_RUNTIME"])["pipelineImages"]

    run_id = airflow.trigger(HOUSEKEEPING)
    platform.assert_succeeded(HOUSEKEEPING, run_id, airflow.wait_run(HOUSEKEEPING, run_id))

    listing = _sh(platform, "airflow-scheduler", f"find {LOGS} -type f")
    assert old_log not in listing and new_log in listing
    assert not set(failed) & set(_failed_task_containers(platform))
    with pytest.raises(docker.errors.ImageNotFound):
        platform.client.images.get(retired)
    for reference in deployed.values():
        platform.client.images.get(reference)

    def task_log(task_id: str) -> str:
        return airflow.task_log(HOUSEKEEPING, run_id, task_id, 1)

    assert "airflow db clean" in task_log("metadata")
    with platform.airflow_database() as connection, connection.cursor() as cursor:
        cursor.execute("SELECT last_vacuum FROM pg_stat_user_tables WHERE relname = 'dag_run'")
        (vacuumed,) = cursor.fetchone()
    connection.close()
    run = airflow.get(f"/api/v2/dags/{HOUSEKEEPING}/dagRuns/{run_id}")
    assert vacuumed and vacuumed >= datetime.fromisoformat(run["start_date"]), (
        "the metadata job did not VACUUM Airflow's database after cleaning it"
    )
    assert "Removed 1 log files" in task_log("task_logs")
    assert f"Removed {len(failed)} failed task containers" in task_log("failed_task_containers")
    assert "The registry's volume" in task_log("disk_usage")
    assert "Newest complete backup:" in task_log("backups")
