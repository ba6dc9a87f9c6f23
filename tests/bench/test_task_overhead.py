"""Task overhead: one pipeline task through the platform against `docker run` of it.

The platform path is what a user gets: trigger through the REST API, the scheduler
queues the task, the LocalExecutor starts Airflow's task runner, which parses the DAG
file and launches the container through the Docker API proxy (DockerOperator), waits
for it and reports back; the run is done when the API says success. The baseline is
the same image, command, user, limits, network and WAREHOUSE_URL with `docker run`.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.bench import platform_bench as bench
from tests.bench import report

ROUNDS = 5


@pytest.mark.bench
def test_task_overhead(platform: Any, bench_dags: dict[str, str]) -> None:
    dag_id = bench_dags["overhead"]
    raw = bench.raw_task(platform)
    # One of each first: image layers in the page cache, the DAG parsed once by a task.
    raw.run("bench-overhead-warmup")
    bench.timed_run(platform.airflow, dag_id)

    direct = [raw.run(f"bench-overhead-{index}") for index in range(ROUNDS)]
    runs = [bench.timed_run(platform.airflow, dag_id) for _ in range(ROUNDS)]
    through = [run.seconds for run in runs]

    def ti(run: bench.TimedRun) -> dict[str, Any]:
        return run.tasks[0]

    def seconds(run: bench.TimedRun, start: str, end: str) -> float:
        return bench.elapsed(ti(run).get(start), ti(run).get(end))

    queued = [bench.elapsed(run.run.get("queued_at"), ti(run).get("queued_when")) for run in runs]
    waiting = [seconds(run, "queued_when", "start_date") for run in runs]
    task = [seconds(run, "start_date", "end_date") for run in runs]
    platform_median, direct_median = report.median(through), report.median(direct)
    report.record(
        "task_overhead",
        "Task overhead: one task through Airflow vs docker run",
        {
            "through the platform (trigger to success seen), median s": platform_median,
            "docker run of the same container, median s": direct_median,
            "ratio": platform_median / direct_median,
            "overhead, median s": platform_median - direct_median,
            "  run created to task queued, median s": report.median(queued),
            "  task queued to task started, median s": report.median(waiting),
            "  task started to task ended (runner + container), median s": report.median(task),
            "rounds": ROUNDS,
            "samples through the platform, s": ", ".join(f"{s:.1f}" for s in through),
            "samples with docker run, s": ", ".join(f"{s:.1f}" for s in direct),
            "plot": {"Airflow task": platform_median, "docker run": direct_median},
        },
        notes="The platform's figure is what a user waits: REST trigger to the run's "
        "success as the REST API reports it (polled every 0.25 s). The breakdown comes "
        "from the timestamps Airflow records for the run and its task instance.",
    )
