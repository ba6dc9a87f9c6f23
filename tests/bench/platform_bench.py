"""What the platform benchmarks share: benchmark DAGs, timed runs, the raw-Docker baseline.

Benchmark DAGs are generated and copied into the running dag-processor and
scheduler (as the end-to-end run does with its broken DAG), not shipped in dags/:
a 50-task fan-out in every user's DAG list would be noise, and the factory call they
make is exactly the one a pipeline DAG makes.
"""

from __future__ import annotations

import io
import json
import os
import re
import resource
import subprocess
import tarfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from harness import AirflowAPI, Platform, log

from pipeline_factory import TASK_GID, TASK_UID
from tests.support.polling import until

DAGS_FOLDER = "/opt/airflow/dags"
POOL = "pipeline_tasks"
TASK_USER = f"{TASK_UID}:{TASK_GID}"
# The platform smoke test's one task: starts, checks its confinement, reaches the warehouse.
PIPELINE = "platform-smoke"
TASK = "check"
# Where DAG files are parsed (dag-processor) and where tasks parse them again (scheduler).
PARSERS = ("airflow-dag-processor", "airflow-scheduler")
# How often the benchmarks look again: their figures are timed by this polling.
POLL_SECONDS = 0.25


def dag_source(dag_id: str, tasks: int) -> str:
    return f'''"""Benchmark DAG: {tasks} independent runs of {PIPELINE}'s {TASK} task."""

from datetime import UTC, datetime

from airflow.sdk import DAG

from pipeline_factory import pipeline_task

with DAG(
    dag_id={dag_id!r},
    schedule=None,
    start_date=datetime(2024, 1, 1, tzinfo=UTC),
    catchup=False,
    tags=["benchmark"],
):
    for index in range({tasks}):
        pipeline_task({PIPELINE!r}, {TASK!r}, task_id=f"{TASK}_{{index:02d}}")
'''


def put_file(container: Any, directory: str, name: str, text: str) -> None:
    data = text.encode()
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    # Sub-second (PAX): the dag-processor compares it with when it last parsed the file.
    info.mtime = time.time()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        archive.addfile(info, io.BytesIO(data))
    assert container.put_archive(directory, buffer.getvalue())


def deliver(platform: Platform, name: str, text: str) -> float:
    """Copy a DAG file into the parsing containers; returns when it landed (monotonic)."""
    for suffix in PARSERS:
        put_file(platform.container(suffix), DAGS_FOLDER, name, text)
    return time.monotonic()


def task_ids(airflow: AirflowAPI, dag_id: str) -> set[str]:
    return {t["task_id"] for t in airflow.get(f"/api/v2/dags/{dag_id}/tasks")["tasks"]}


def wait_for_dag(airflow: AirflowAPI, dag_id: str, tasks: set[str], timeout: float) -> float:
    """Wait until the API shows `dag_id` with exactly `tasks`; returns when (monotonic)."""
    until(
        lambda: task_ids(airflow, dag_id) == tasks,
        timeout=timeout,
        interval=POLL_SECONDS,
        what=f"{dag_id} with {len(tasks)} tasks",
        retry_on=(Exception,),  # e.g. 404 until the DAG exists
    )
    return time.monotonic()


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


@dataclass
class TimedRun:
    """One triggered run, timed by the client (trigger to success observed)."""

    run_id: str
    seconds: float
    run: dict[str, Any]
    tasks: list[dict[str, Any]]

    def span(self, start: str, end: str) -> float:
        """Seconds between two timestamps Airflow recorded (first task start, last end)."""
        starts = [_time(t.get(start)) for t in self.tasks]
        ends = [_time(t.get(end)) for t in self.tasks]
        first = min(s for s in starts if s)
        last = max(e for e in ends if e)
        return (last - first).total_seconds()


def timed_run(airflow: AirflowAPI, dag_id: str, timeout: float = 900) -> TimedRun:
    airflow.patch(f"/api/v2/dags/{dag_id}", {"is_paused": False})
    started = time.monotonic()
    run_id = str(
        airflow.post(f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": None})["dag_run_id"]
    )

    def finished() -> dict[str, Any] | None:
        run = airflow.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")
        return dict(run) if run["state"] in ("success", "failed") else None

    run = until(
        finished,
        timeout=timeout,
        interval=POLL_SECONDS,
        what=f"{dag_id} run {run_id} finished",
        retry_on=(Exception,),
    )
    seconds = time.monotonic() - started
    tasks = airflow.task_instances(dag_id, run_id)
    states = {t["task_id"]: t["state"] for t in tasks}
    assert run["state"] == "success" and set(states.values()) == {"success"}, (
        f"{dag_id} run {run_id}: {states}\n" + first_failure(airflow, dag_id, run_id, tasks)
    )
    log.info("%s run %s succeeded in %.1fs", dag_id, run_id, seconds)
    return TimedRun(run_id, seconds, run, tasks)


@dataclass(frozen=True)
class RawTask:
    """The same task as the platform launches it, for `docker run` by hand."""

    image: str
    network: str
    user: str
    memory: str
    cpus: str
    warehouse_url: str

    def argv(self, name: str) -> list[str]:
        return [
            "docker",
            "run",
            "--rm",
            "--name",
            name,
            "--network",
            self.network,
            "--user",
            self.user,
            "--memory",
            self.memory,
            "--cpus",
            self.cpus,
            "--cap-drop",
            "ALL",
            "--security-opt",
            "no-new-privileges",
            "--env",
            "WAREHOUSE_URL",
            self.image,
            f"run_{TASK}.sh",
        ]

    def run(self, name: str) -> float:
        """Run it to completion; the seconds it took. WAREHOUSE_URL never reaches argv."""
        started = time.monotonic()
        result = subprocess.run(
            self.argv(name),
            env={**os.environ, "WAREHOUSE_URL": self.warehouse_url},
            capture_output=True,
            text=True,
            check=False,
        )
        seconds = time.monotonic() - started
        assert result.returncode == 0, f"docker run {name}: {result.stderr[-1000:]}"
        assert "platform smoke test passed" in result.stdout, result.stdout[-1000:]
        return seconds


def first_failure(
    airflow: AirflowAPI, dag_id: str, run_id: str, tasks: list[dict[str, Any]]
) -> str:
    """The end of the log of the first task attempt that failed (a retried or failed task),
    for the message of a benchmark that stops on it."""
    for task in tasks:
        if task["state"] != "success" or task["try_number"] > 1:
            text = airflow.task_log(dag_id, run_id, task["task_id"], 1)
            return f"{task['task_id']}, attempt 1:\n{text[-3000:]}"
    return ""


def raw_task(platform: Platform) -> RawTask:
    """The task container's settings, from the scheduler's own runtime settings."""
    env = platform.env("airflow-scheduler")
    runtime = json.loads(env["ETLSTACK_RUNTIME"])
    memory = str(runtime["taskResources"]["memory"])
    units = {"Ki": "k", "Mi": "m", "Gi": "g"}
    for suffix, docker_suffix in units.items():
        if memory.endswith(suffix):
            memory = memory.removesuffix(suffix) + docker_suffix
    cpu = str(runtime["taskResources"]["cpu"])
    cpus = str(int(cpu.removesuffix("m")) / 1000) if cpu.endswith("m") else cpu
    return RawTask(
        image=str(runtime["pipelineImages"][PIPELINE]),
        network=str(runtime["docker"]["network"]),
        user=TASK_USER,
        memory=memory,
        cpus=cpus,
        warehouse_url=env["AIRFLOW_CONN_WAREHOUSE"],
    )


def dockerd_log() -> Path:
    """The running Docker Engine's log, whatever started it: the file its stderr goes to.

    Fails, saying why, when no engine runs here or its log is not a file this can read
    (journald, say): a benchmark that cannot see the daemon's errors must not pass.
    """
    found = subprocess.run(["pgrep", "-x", "dockerd"], capture_output=True, text=True)
    pids = found.stdout.split()
    assert len(pids) == 1, (
        f"expected one dockerd process on this machine, found {len(pids)}: the benchmarks "
        "read the engine's errors from its log (tests/e2e/engine.sh start runs one)"
    )
    target = os.readlink(f"/proc/{pids[0]}/fd/2")
    assert target.startswith("/") and Path(target).is_file(), (
        f"dockerd (pid {pids[0]}) writes its log to {target!r}, not to a file: run it with "
        "its output in a file (tests/e2e/engine.sh does) for the benchmarks to read its errors"
    )
    return Path(target)


# Logged at error level when the engine's disk-usage report (GET /system/df: the
# housekeeping's disk_usage job, the year benchmark's checkpoints) lists a container that
# is removed before its size is computed. The report goes on without that size; nothing
# the platform asked for failed.
DISK_REPORT_RACE = "Failed to compute size of container rootfs"


def daemon_errors(since: int) -> list[str]:
    """The errors the running engine logged after byte `since` of its log, but for a disk
    report racing a container's removal."""
    path = dockerd_log()
    with path.open("rb") as stream:
        stream.seek(since)
        text = stream.read().decode(errors="replace")
    return [
        line
        for line in text.splitlines()
        if ("level=error" in line or "level=fatal" in line) and DISK_REPORT_RACE not in line
    ]


# The platform's Airflow components, and what it adds on a task's path.
PLATFORM_AIRFLOW = (
    "airflow-api-server",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
)
DOCKER_API_PROXY = "docker-api-proxy"


def platform_airflow(platform: Platform) -> list[Any]:
    """The containers that run the platform's Airflow, and its Docker API proxy."""
    return [platform.container(name) for name in (*PLATFORM_AIRFLOW, DOCKER_API_PROXY)]


# cgroup v1 (this machine): every container's CPU accounting under one parent, which
# keeps counting what removed containers used.
CONTAINERS_CGROUP = Path("/sys/fs/cgroup/cpuacct/docker")
DAEMONS = ("dockerd", "containerd")


def _cgroup_seconds(path: Path) -> float:
    usage = path / "cpuacct.usage"
    assert usage.is_file(), (
        f"no CPU accounting at {usage}: the benchmarks read the containers' CPU from cgroup "
        "v1's cpuacct, which the Docker Engine here (cgroupfs driver) keeps per container"
    )
    return int(usage.read_text()) / 1e9


METADATA_DATABASE_ACTIVITY = (
    "SELECT xact_commit + xact_rollback, tup_returned + tup_fetched "
    "FROM pg_stat_database WHERE datname = 'airflow'"
)


def metadata_database_activity(platform: Platform) -> tuple[int, int]:
    """Transactions and rows read on Airflow's database so far, by all its clients."""
    with platform.metadata_database() as connection, connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(METADATA_DATABASE_ACTIVITY)
        transactions, rows = cursor.fetchone()
    connection.close()
    return int(transactions), int(rows)


def cpu_seconds(container: Any) -> float:
    """The CPU a container has used so far, from its cgroup's accounting."""
    return _cgroup_seconds(CONTAINERS_CGROUP / container.id)


def _process_seconds(name: str) -> float:
    found = subprocess.run(["pgrep", "-x", name], capture_output=True, text=True)
    pids = found.stdout.split()
    assert pids, f"no {name} process on this machine"
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        # utime and stime, fields 14 and 15 of /proc/<pid>/stat (after the command's parens).
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / ticks
    return total


@dataclass(frozen=True)
class Cpu:
    """CPU seconds used so far: by each container that runs Airflow (and, for the
    platform, its Docker API proxy), by every container (task containers included, removed
    ones too), by the Docker daemon, and by this process's children (the docker CLI)."""

    airflow_components: dict[str, float]
    containers: float
    daemon: float
    client: float

    @property
    def airflow(self) -> float:
        return sum(self.airflow_components.values())

    def per_task(self, since: Cpu, tasks: int) -> dict[str, float]:
        airflow = self.airflow - since.airflow
        return {
            "Airflow (and proxy)": airflow / tasks,
            **{
                # Which component of the orchestration the CPU goes to.
                f"  of which {component}": (seconds - since.airflow_components[component]) / tasks
                for component, seconds in self.airflow_components.items()
            },
            "task container": (self.containers - since.containers - airflow) / tasks,
            "Docker daemon": (self.daemon - since.daemon) / tasks,
            "docker CLI": (self.client - since.client) / tasks,
        }


def _component(container: Any) -> str:
    """An Airflow container's component: etlstack-e2e-airflow-scheduler and the peer's
    etlstack-e2e-peer-scheduler are both the scheduler."""
    return re.sub(r"^etlstack-[a-z0-9]+-(airflow-|peer-)?", "", container.name)


def cpu(airflow_containers: list[Any]) -> Cpu:
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return Cpu(
        airflow_components={_component(c): cpu_seconds(c) for c in airflow_containers},
        containers=_cgroup_seconds(CONTAINERS_CGROUP),
        daemon=sum(_process_seconds(name) for name in DAEMONS),
        client=children.ru_utime + children.ru_stime,
    )


def elapsed(start: str | None, end: str | None) -> float:
    """Seconds between two timestamps Airflow recorded."""
    first, last = _time(start), _time(end)
    assert first and last, (start, end)
    return (last - first).total_seconds()
