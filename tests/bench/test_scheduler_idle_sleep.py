"""What the scheduler's idle sleep costs and buys, each value measured in the same run.

`[scheduler] scheduler_idle_sleep_time` is how long the scheduler loop sleeps when it
has nothing to do (Airflow's default: 1 s; the platform's: 0.25 s). A triggered run waits for the next loop to
be started, and a finished task for the next loop to close its run, so a lone task pays
up to that sleep twice; an idle platform pays for one loop per sleep, in the
scheduler's CPU and in queries on the metadata database.

The platform's scheduler is measured as deployed; for each other value, a copy of it
(same image, environment, volumes, networks, user and confinement) runs with that value
while the platform's own is paused. For each: the median time of one task (trigger to
success seen) and, over an idle minute, the scheduler's CPU and the metadata database's
transactions.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import PurePosixPath
from typing import Any

import pytest

from tests.bench import peers, report
from tests.bench import platform_bench as bench

SETTING = "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME"
# Airflow's default, and halfway to the platform's 0.25 s.
VALUES = ("1", "0.5")
ROUNDS = 5
IDLE_SECONDS = 60


@contextlib.contextmanager
def _scheduler_copy(platform: Any, value: str) -> Iterator[Any]:
    """A copy of the platform's scheduler with `value` for the setting, its own paused."""
    source = platform.container("airflow-scheduler")
    host = source.attrs["HostConfig"]
    networks = source.attrs["NetworkSettings"]["Networks"]
    environment = [
        pair for pair in source.attrs["Config"]["Env"] if not pair.startswith(f"{SETTING}=")
    ]
    copy = platform.client.containers.create(
        source.image,
        source.attrs["Config"]["Cmd"],
        name=f"{source.name}-idle-sleep-{value.replace('.', '-')}",
        hostname=source.attrs["Config"]["Hostname"],
        user=source.attrs["Config"]["User"],
        environment=[*environment, f"{SETTING}={value}"],
        volumes=host["Binds"],
        cap_drop=host["CapDrop"],
        security_opt=host["SecurityOpt"],
    )
    # The benchmark's DAG files were copied into the running scheduler, not baked in.
    dags, _ = source.get_archive(bench.DAGS_FOLDER)
    copy.put_archive(str(PurePosixPath(bench.DAGS_FOLDER).parent), b"".join(dags))
    # Created on the default bridge; on the scheduler's own networks instead, under its
    # aliases (the Docker API proxy is reached on one of them).
    platform.client.networks.get("bridge").disconnect(copy)
    for name, endpoint in networks.items():
        aliases = [a for a in endpoint.get("Aliases") or [] if a != source.id[:12]]
        platform.client.networks.get(name).connect(copy, aliases=aliases)
    try:
        with peers.paused([source]):
            copy.start()
            yield copy
    finally:
        copy.remove(force=True)


def _measure(platform: Any, dag_id: str, scheduler: Any) -> dict[str, float]:
    # The first run waits for the scheduler to start; the rounds after it are measured.
    bench.timed_run(platform.airflow, dag_id)
    seconds = [bench.timed_run(platform.airflow, dag_id).seconds for _ in range(ROUNDS)]
    time.sleep(5)  # the last run's loose ends (its run closed, its process reaped)
    cpu_before, transactions_before = (
        bench.cpu_seconds(scheduler),
        bench.metadata_database_activity(platform)[0],
    )
    started = time.monotonic()
    time.sleep(IDLE_SECONDS)
    minutes = (time.monotonic() - started) / 60
    return {
        "one task, median s": report.median(seconds),
        "scheduler CPU s per idle minute": (bench.cpu_seconds(scheduler) - cpu_before) / minutes,
        "metadata database transactions per idle minute": (
            bench.metadata_database_activity(platform)[0] - transactions_before
        )
        / minutes,
    }


@pytest.mark.bench
def test_scheduler_idle_sleep(platform: Any, bench_dags: dict[str, str]) -> None:
    dag_id = bench_dags["overhead"]
    deployed = platform.env("airflow-scheduler")[SETTING]
    results = {deployed: _measure(platform, dag_id, platform.container("airflow-scheduler"))}
    for value in VALUES:
        with _scheduler_copy(platform, value) as scheduler:
            results[value] = _measure(platform, dag_id, scheduler)

    figures = {
        f"idle sleep {value} s: {figure}": number
        for value, measured in results.items()
        for figure, number in measured.items()
    }
    report.record(
        "scheduler_idle_sleep",
        "The scheduler's idle sleep: one task's time against the idle cost",
        figures,
        notes=f"`{SETTING}`. The deployed value is measured on the platform's scheduler; "
        "each other value on a copy of it, with the platform's own paused. One task: "
        f"median of {ROUNDS} runs of the task-overhead DAG. Idle: {IDLE_SECONDS} s with "
        "nothing running, from the scheduler container's CPU accounting and "
        "pg_stat_database for the `airflow` database (all of its clients, not only the "
        "scheduler).",
    )
