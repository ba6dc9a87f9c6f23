"""Burst: a DAG fanning out to 50 short tasks on one host, against the same 50
containers started directly with the same concurrency cap (the pipeline pool's slots).

Every task must succeed and the Docker daemon must log no error while it runs: the
pool is what keeps a burst from overwhelming the daemon.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.bench import platform_bench as bench
from tests.bench import report
from tests.bench.conftest import BURST_TASKS


@pytest.mark.bench
def test_burst_of_fifty_tasks(platform: Any, bench_dags: dict[str, str]) -> None:
    dag_id = bench_dags["burst"]
    slots = int(platform.airflow.get(f"/api/v2/pools/{bench.POOL}")["slots"])
    raw = bench.raw_task(platform)
    log_path = bench.dockerd_log()

    since = log_path.stat().st_size
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=slots) as pool:
        list(pool.map(raw.run, (f"bench-burst-{index:02d}" for index in range(BURST_TASKS))))
    direct = time.monotonic() - started
    direct_errors = bench.daemon_errors(since)

    since = log_path.stat().st_size
    run = bench.timed_run(platform.airflow, dag_id, timeout=1800)
    platform_errors = bench.daemon_errors(since)
    assert len(run.tasks) == BURST_TASKS
    assert {t["state"] for t in run.tasks} == {"success"}
    assert {t["try_number"] for t in run.tasks} == {1}, "a task needed a retry"
    assert not platform_errors, "the Docker daemon logged errors during the burst:\n" + "\n".join(
        platform_errors[:20]
    )

    report.record(
        "burst",
        f"Burst: {BURST_TASKS} tasks, {slots} at a time",
        {
            "through the platform (trigger to success seen), s": run.seconds,
            f"{BURST_TASKS} x docker run, {slots} at a time, s": direct,
            "ratio": run.seconds / direct,
            "first task start to last task end (Airflow's timestamps), s": run.span(
                "start_date", "end_date"
            ),
            "tasks per minute through the platform": BURST_TASKS / run.seconds * 60,
            "tasks per minute with docker run": BURST_TASKS / direct * 60,
            "tasks succeeded on their first try": BURST_TASKS,
            "daemon errors (platform / docker run)": f"{len(platform_errors)} / "
            f"{len(direct_errors)}",
            "plot": {"Airflow DAG": run.seconds, "docker run": direct},
        },
        notes=f"The cap is the pool `{bench.POOL}` (airflow.pipelineTaskSlots); the baseline "
        f"runs {slots} `docker run` at a time from a thread pool. Each task is the smoke "
        "test's check (starts confined, reaches the warehouse, exits).",
    )
