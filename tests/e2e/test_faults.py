"""Faults the local platform survives, with nothing lost.

On the deployed session platform (conftest.py): the scheduler crashes in the middle
of a run, PostgreSQL crashes, a task outgrows its memory limit, the registry
restarts. Crashes are SIGKILLs of the container's main process from the host, as
an out-of-memory kill or a segfault would be, so the containers' restart policies
are what bring them back (`docker kill` would count as a deliberate stop).

Each test leaves the platform healthy for the tests after it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker.errors
import pytest
from conftest import E2E_STACK, STACK
from harness import Platform, etlstack, http_status, log, stack_file_as

from etlstack import render
from tests.support.polling import until

pytestmark = pytest.mark.e2e

MEMORY_DAG = "platform_memory_limit"
MEMORY_TASK = "memory_hog"
MANIFEST_TYPES = ", ".join(
    (
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
    )
)


# Any error while waiting counts as "not yet": the component may still be coming back.
COMING_BACK = (Exception,)


def _crash(platform: Platform, suffix: str) -> None:
    """SIGKILL the container's main process and wait for its restart policy to revive it."""
    container = platform.container(suffix)
    container.reload()
    restarts = int(container.attrs["RestartCount"])
    pid = int(container.attrs["State"]["Pid"])
    assert pid > 0, f"{container.name} is not running"
    log.info("crashing %s (SIGKILL to pid %d)", container.name, pid)
    os.kill(pid, signal.SIGKILL)

    def restarted() -> bool:
        container.reload()
        return int(container.attrs["RestartCount"]) > restarts and container.status == "running"

    until(
        restarted,
        timeout=120,
        interval=1,
        what=f"{container.name} restarted by its restart policy",
        retry_on=COMING_BACK,
    )
    _back_in_service(platform)


def _back_in_service(platform: Platform) -> None:
    """Every container healthy, and Airflow's API answering a new login."""
    platform.wait_all_healthy(timeout=300)
    # The api-server may have dropped its connections meanwhile; log in again.
    platform.airflow.token = None
    until(
        lambda: platform.airflow.get("/api/v2/monitor/health"),
        timeout=120,
        interval=2,
        what="Airflow's API answers",
        retry_on=COMING_BACK,
    )


def _history(platform: Platform) -> dict[tuple[str, str, str], tuple[str, int]]:
    """Every task instance of every run: (dag, run, task) -> (state, try number)."""
    answer = platform.airflow.get("/api/v2/dags/~/dagRuns/~/taskInstances?limit=1000")
    assert answer["total_entries"] <= 1000, "more history than one page"
    return {
        (t["dag_id"], t["dag_run_id"], t["task_id"]): (t["state"], int(t["try_number"]))
        for t in answer["task_instances"]
    }


def _runs(platform: Platform) -> dict[tuple[str, str], str]:
    answer = platform.airflow.get("/api/v2/dags/~/dagRuns?limit=1000")
    return {(r["dag_id"], r["dag_run_id"]): r["state"] for r in answer["dag_runs"]}


def _settled(platform: Platform) -> None:
    """Wait until no run is in flight (the example DAG is scheduled @daily)."""
    until(
        lambda: set(_runs(platform).values()) <= {"success", "failed"},
        timeout=600,
        interval=3,
        what="every run finished",
        retry_on=COMING_BACK,
    )


def _task_states(platform: Platform, dag_id: str, run_id: str) -> dict[str, dict[str, Any]]:
    return {t["task_id"]: t for t in platform.airflow.task_instances(dag_id, run_id)}


def _full_log(platform: Platform, dag_id: str, run_id: str, task_id: str, attempt: int) -> str:
    """The task log with every field of every entry (an exception's text is not its event)."""
    answer = platform.airflow.get(
        f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{attempt}"
        "?full_content=true"
    )
    return json.dumps(answer.get("content"))


def _registry_auth(platform: Platform) -> dict[str, str]:
    image = platform.evaluation.by_type("docker:index/image:Image")[0]
    registry = render.reveal(image.inputs["registry"])
    return {"username": registry["username"], "password": registry["password"]}


def _basic(auth: dict[str, str]) -> dict[str, str]:
    token = base64.b64encode(f"{auth['username']}:{auth['password']}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def _head(url: str, headers: dict[str, str]) -> int:
    request = urllib.request.Request(url, headers=headers, method="HEAD")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def _read(url: str, headers: dict[str, str]) -> bytes:
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=60) as answer:
        return bytes(answer.read())


def test_scheduler_crash_mid_run_loses_no_task(platform: Platform, example_dag: str) -> None:
    started = time.monotonic()
    run_id = platform.airflow.trigger(example_dag)

    def running_task() -> str | None:
        states = _task_states(platform, example_dag, run_id)
        return next((task for task, ti in states.items() if ti["state"] == "running"), None)

    killed_in = until(
        running_task,
        timeout=300,
        interval=0.5,
        what=f"a running task of {run_id}",
        retry_on=COMING_BACK,
    )
    _crash(platform, "airflow-scheduler")

    run = platform.airflow.wait_run(example_dag, run_id, timeout=900)
    tasks = _task_states(platform, example_dag, run_id)
    assert run["state"] == "success", {t: ti["state"] for t, ti in tasks.items()}
    assert {ti["state"] for ti in tasks.values()} == {"success"}
    # The task the crash interrupted either finished before it mattered or ran again.
    log.info(
        "scheduler crashed during %s: it ended on try %d; the run succeeded in %.0fs",
        killed_in,
        tasks[killed_in]["try_number"],
        time.monotonic() - started,
    )


def test_task_over_its_memory_limit_is_killed_said_so_and_retried(
    platform: Platform, engine: docker.DockerClient
) -> None:
    since = int(time.time()) - 1
    run_id = platform.airflow.trigger(MEMORY_DAG)
    run = platform.airflow.wait_run(MEMORY_DAG, run_id, timeout=600)
    assert run["state"] == "failed", f"{MEMORY_DAG} was expected to fail: {run['state']}"
    hog = _task_states(platform, MEMORY_DAG, run_id)[MEMORY_TASK]
    assert hog["state"] == "failed"
    assert hog["try_number"] == 2, "the task was not retried exactly once (retries=1)"
    for attempt in (1, 2):
        text = _full_log(platform, MEMORY_DAG, run_id, MEMORY_TASK, attempt)
        assert "memory hog: holding" in text, f"try {attempt} never ran the hog:\n{text[-2000:]}"
        assert "not enforced" not in text, f"try {attempt}: the limit was not enforced"
        assert "killed for exceeding its memory limit" in text, text[-2000:]
        assert "OOMKilled, exit status 137" in text, text[-2000:]
    # The engine agrees: the kernel's OOM killer stopped the task's container on both
    # tries (DockerOperator removes the containers, so the daemon's events tell).
    events = engine.events(
        since=since,
        until=int(time.time()) + 1,
        filters={"type": "container", "event": "oom", "label": f"org.etlstack.task={MEMORY_TASK}"},
        decode=True,
    )
    killed = {event["id"] for event in events}
    assert len(killed) == 2, f"expected two OOM-killed containers, the engine saw {len(killed)}"


def test_postgres_crash_loses_no_history(platform: Platform, example_dag: str) -> None:
    _settled(platform)
    runs_before, history_before = _runs(platform), _history(platform)
    assert history_before, "no history to lose: the fault tests ran nothing before"

    _crash(platform, "postgres")

    # Airflow's view: every run and every try of every task, as before the crash.
    runs_after, history_after = _runs(platform), _history(platform)
    assert {key: runs_after.get(key) for key in runs_before} == runs_before
    assert {key: history_after.get(key) for key in history_before} == history_before
    # And the metadata database's own: a direct query through the published port.
    with platform.metadata_database() as conn, conn.cursor() as cur:
        cur.execute("SELECT datname FROM pg_database WHERE datname = 'warehouse'")
        assert cur.fetchone(), "the warehouse database is gone"
    conn.close()
    # The platform works on: a new run succeeds.
    run_id = platform.airflow.trigger(example_dag)
    assert platform.airflow.wait_run(example_dag, run_id)["state"] == "success"


def test_registry_restart_keeps_every_pushed_image(platform: Platform) -> None:
    registry = str(platform.outputs["registry"])
    auth = _registry_auth(platform)
    artifacts = {k: str(v) for k, v in platform.outputs["artifacts"].items() if k != "dags"}
    assert artifacts, "the platform pushed no images"

    log.info("restarting the registry")
    platform.container("registry").restart(timeout=30)
    until(
        lambda: http_status(f"http://{registry}/v2/", _basic(auth)) == 200,
        timeout=120,
        interval=1,
        what="the registry answers",
        retry_on=COMING_BACK,
    )

    for name, reference in artifacts.items():
        repository, digest = reference.split("@")
        path = repository.split("/", 1)[1]
        raw = _read(
            f"http://{registry}/v2/{path}/manifests/{digest}",
            {**_basic(auth), "Accept": MANIFEST_TYPES},
        )
        assert f"sha256:{hashlib.sha256(raw).hexdigest()}" == digest, f"{name}: manifest changed"
        manifest = json.loads(raw)
        blobs = [manifest["config"]["digest"], *(layer["digest"] for layer in manifest["layers"])]
        for blob in blobs:
            url = f"http://{registry}/v2/{path}/blobs/{blob}"
            assert _head(url, _basic(auth)) == 200, f"{name}: blob {blob} is gone"
        # The content, not only its index: the config blob still hashes to its digest.
        config = _read(f"http://{registry}/v2/{path}/blobs/{blobs[0]}", _basic(auth))
        assert f"sha256:{hashlib.sha256(config).hexdigest()}" == blobs[0], name
        log.info("%s: manifest, config and %d layers still in the registry", name, len(blobs) - 1)


def test_task_logs_survive_the_scheduler_being_replaced(
    platform: Platform, example_run: tuple[str, dict[str, Any]], example_dag: str
) -> None:
    run_id, _ = example_run
    task = platform.airflow.task_instances(example_dag, run_id)[0]
    before = platform.airflow.task_log(example_dag, run_id, task["task_id"], task["try_number"])
    # The task's own log, written by the operator in the scheduler's task process.
    assert "Starting docker container from image" in before, before[-2000:]

    platform.redeploy("airflow-scheduler")
    platform.airflow.token = None

    after = platform.airflow.task_log(example_dag, run_id, task["task_id"], task["try_number"])
    assert after == before


@pytest.fixture
def cli_knows_the_session_stack(project: Path) -> Iterator[None]:
    with stack_file_as(project, STACK, E2E_STACK):
        yield


@pytest.mark.usefixtures("cli_knows_the_session_stack")
def test_a_lost_database_volume_is_restored_from_a_backup(
    platform: Platform,
    project: Path,
    example_dag: str,
    example_run: tuple[str, dict[str, Any]],
) -> None:
    # example_run: the warehouse holds rows to lose and to bring back.
    _settled(platform)
    taken = etlstack(project, "backup", E2E_STACK)
    assert taken.returncode == 0, taken.stderr
    backup = etlstack(project, "backups", E2E_STACK).stdout.split()[-1]
    runs, history, warehouse = _runs(platform), _history(platform), platform.warehouse_content()
    assert history and any(rows for rows, _ in warehouse.values()), "nothing to restore"

    # Work after the backup, which the restore must undo.
    later = platform.airflow.trigger(example_dag)
    platform.assert_succeeded(example_dag, later, platform.airflow.wait_run(example_dag, later))

    platform.lose_volume("postgres", f"etlstack-{E2E_STACK}-postgres-data")
    # A damaged or unknown backup is refused before anything changes.
    refused = etlstack(project, "restore", E2E_STACK, "20200101T000000Z", "--yes")
    assert refused.returncode == 1 and "20200101T000000Z does not exist" in refused.stderr
    # The refused restore did not stop Airflow (a restore does, first). Without its
    # database the scheduler may be crashing and restarting by itself: that is not a stop.
    assert platform.container("airflow-scheduler").status in ("running", "restarting")

    restored = etlstack(project, "restore", E2E_STACK, backup, "--yes")
    assert restored.returncode == 0, restored.stdout + restored.stderr
    _back_in_service(platform)

    assert _runs(platform) == runs
    assert _history(platform) == history
    assert platform.warehouse_content() == warehouse
    run_id = platform.airflow.trigger(example_dag)
    platform.assert_succeeded(example_dag, run_id, platform.airflow.wait_run(example_dag, run_id))
