"""Burst: a DAG fanning out to 50 short tasks on one host, through the platform, through
the talk's own setup (peers.py), and as the same 50 containers started directly, each
with the same concurrency cap (the pipeline pool's slots).

Every task must succeed on its first try and the Docker daemon must log no error while
it runs: the pool is what keeps a burst from overwhelming the daemon.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.bench import peers, report
from tests.bench import platform_bench as bench
from tests.bench.conftest import BURST_TASKS

PLATFORM, DOCKER_RUN = peers.PLATFORM, peers.DOCKER_RUN


@pytest.mark.bench
def test_burst_of_fifty_tasks(platform: Any, bench_dags: dict[str, str], peer: peers.Peer) -> None:
    slots = int(platform.airflow.get(f"/api/v2/pools/{bench.POOL}")["slots"])
    raw = bench.raw_task(platform)

    def docker_run() -> float:
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=slots) as pool:
            names = (f"bench-burst-{index:02d}" for index in range(BURST_TASKS))
            list(pool.map(raw.run, names))
        return time.monotonic() - started

    def through(airflow: Any, dag_id: str) -> Any:
        def run() -> bench.TimedRun:
            timed = bench.timed_run(airflow, dag_id, timeout=1800)
            assert len(timed.tasks) == BURST_TASKS
            assert {t["state"] for t in timed.tasks} == {"success"}
            assert {t["try_number"] for t in timed.tasks} == {1}, (
                "a task needed a retry: "
                + bench.first_failure(airflow, dag_id, timed.run_id, timed.tasks)
            )
            return timed

        return run

    ways = peers.ways(
        platform,
        peer,
        docker_run=docker_run,
        through=through,
        platform_dag=bench_dags["burst"],
        tasks=BURST_TASKS,
    )

    seconds: dict[str, float] = {}
    cpu: dict[str, dict[str, float]] = {}
    errors: dict[str, list[str]] = {}
    span = 0.0
    for way, measured in ways.items():
        with measured.context:
            since = bench.dockerd_log().stat().st_size
            before = bench.cpu(measured.airflow)
            result = measured.run()
            cpu[way] = bench.cpu(measured.airflow).per_task(before, BURST_TASKS)
            errors[way] = bench.daemon_errors(since)
        seconds[way] = result.seconds if isinstance(result, bench.TimedRun) else result
        if way == PLATFORM:
            span = result.span("start_date", "end_date")
    for way, found in errors.items():
        assert not found, f"the Docker daemon logged errors during the burst ({way}):\n" + (
            "\n".join(found[:20])
        )

    figures: dict[str, Any] = {
        "through the platform (trigger to success seen), s": seconds[PLATFORM],
        f"{BURST_TASKS} x docker run, {slots} at a time, s": seconds[DOCKER_RUN],
        "ratio": seconds[PLATFORM] / seconds[DOCKER_RUN],
        "first task start to last task end (Airflow's timestamps), s": span,
    }
    for way in (peers.RAW_SOCKET, peers.DOCKER_OPERATOR):
        figures[f"talk's setup, {way}, s"] = seconds[way]
        figures[f"platform / talk's setup ({way})"] = seconds[PLATFORM] / seconds[way]
        figures[f"talk's setup ({way}) / docker run"] = seconds[way] / seconds[DOCKER_RUN]
    for way, value in seconds.items():
        figures[f"tasks per minute, {way}"] = BURST_TASKS / value * 60
    for way, parts in cpu.items():
        for part, value in parts.items():
            figures[f"CPU s per task, {way}: {part}"] = value
    figures["tasks succeeded on their first try, each way"] = BURST_TASKS
    figures["daemon errors, each way"] = 0
    figures["plot"] = {
        "Airflow DAG": seconds[PLATFORM],
        "talk: raw socket": seconds[peers.RAW_SOCKET],
        "talk: DockerOperator": seconds[peers.DOCKER_OPERATOR],
        "docker run": seconds[DOCKER_RUN],
    }
    report.record(
        "burst",
        f"Burst: {BURST_TASKS} tasks, {slots} at a time",
        figures,
        notes=f"The cap is the pool `{bench.POOL}` (airflow.pipelineTaskSlots), which the "
        f"talk's setup gets too; the baseline runs {slots} `docker run` at a time from a "
        "thread pool. Each task is the smoke test's check (starts confined, reaches the "
        "warehouse, exits). CPU per task as in the task-overhead benchmark.",
    )
