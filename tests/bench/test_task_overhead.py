"""Task overhead: one pipeline task through the platform, through the talk's own setup,
and with `docker run`.

The platform path is what a user gets: trigger through the REST API, the scheduler
queues the task, the LocalExecutor starts Airflow's task runner, which parses the DAG
file and launches the container through the Docker API proxy (DockerOperator), waits
for it and reports back; the run is done when the API says success. The talk's setup
(peers.py) does the same on the same Airflow image with the socket mounted, launching
from a PythonOperator with the Docker SDK, or from a plain DockerOperator. The baseline
is the same image, command, user, limits, network and WAREHOUSE_URL with `docker run`.

CPU per task comes from the containers' CPU accounting over all rounds of a way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.bench import peers, report
from tests.bench import platform_bench as bench

ROUNDS = 5
PLATFORM, DOCKER_RUN = peers.PLATFORM, peers.DOCKER_RUN


@pytest.mark.bench
def test_task_overhead(platform: Any, bench_dags: dict[str, str], peer: peers.Peer) -> None:
    raw = bench.raw_task(platform)
    counter = iter(range(1000))

    def docker_run() -> bench.TimedRun | float:
        return raw.run(f"bench-overhead-{next(counter)}")

    def through(airflow: Any, dag_id: str) -> Callable[[], bench.TimedRun | float]:
        return lambda: bench.timed_run(airflow, dag_id)

    ways = peers.ways(
        platform,
        peer,
        docker_run=docker_run,
        through=through,
        platform_dag=bench_dags["overhead"],
        tasks=1,
    )

    seconds: dict[str, list[float]] = {}
    cpu: dict[str, dict[str, float]] = {}
    breakdown: dict[str, list[float]] = {"queued": [], "waiting": [], "task": []}
    for way, measured in ways.items():
        with measured.context:
            # One first: image layers in the page cache, the DAG parsed once by a task.
            measured.run()
            before = bench.cpu(measured.airflow)
            samples = [measured.run() for _ in range(ROUNDS)]
            cpu[way] = bench.cpu(measured.airflow).per_task(before, ROUNDS)
        seconds[way] = [s.seconds if isinstance(s, bench.TimedRun) else s for s in samples]
        if way == PLATFORM:
            for run in samples:
                ti = run.tasks[0]
                breakdown["queued"].append(
                    bench.elapsed(run.run.get("queued_at"), ti.get("queued_when"))
                )
                breakdown["waiting"].append(
                    bench.elapsed(ti.get("queued_when"), ti.get("start_date"))
                )
                breakdown["task"].append(bench.elapsed(ti.get("start_date"), ti.get("end_date")))

    medians = {way: report.median(samples) for way, samples in seconds.items()}
    figures: dict[str, Any] = {
        "through the platform (trigger to success seen), median s": medians[PLATFORM],
        "docker run of the same container, median s": medians[DOCKER_RUN],
        "ratio": medians[PLATFORM] / medians[DOCKER_RUN],
        "overhead, median s": medians[PLATFORM] - medians[DOCKER_RUN],
        "  run created to task queued, median s": report.median(breakdown["queued"]),
        "  task queued to task started, median s": report.median(breakdown["waiting"]),
        "  task started to task ended (runner + container), median s": report.median(
            breakdown["task"]
        ),
    }
    for way in (peers.RAW_SOCKET, peers.DOCKER_OPERATOR):
        figures[f"talk's setup, {way}, median s"] = medians[way]
        figures[f"platform / talk's setup ({way})"] = medians[PLATFORM] / medians[way]
        figures[f"talk's setup ({way}) / docker run"] = medians[way] / medians[DOCKER_RUN]
    for way, parts in cpu.items():
        for part, value in parts.items():
            figures[f"CPU s per task, {way}: {part}"] = value
    figures["rounds"] = ROUNDS
    for way, samples in seconds.items():
        figures[f"samples, {way}, s"] = ", ".join(f"{s:.1f}" for s in samples)
    figures["plot"] = {
        "Airflow task": medians[PLATFORM],
        "talk: raw socket": medians[peers.RAW_SOCKET],
        "talk: DockerOperator": medians[peers.DOCKER_OPERATOR],
        "docker run": medians[DOCKER_RUN],
    }
    report.record(
        "task_overhead",
        "Task overhead: one task through Airflow vs the talk's setup vs docker run",
        figures,
        notes="Each way's figure is what a user waits: REST trigger to the run's success "
        "as the REST API reports it (polled every 0.25 s), or `docker run` to its exit. "
        "The platform's breakdown comes from the timestamps Airflow records for the run "
        "and its task instance. The talk's setup is the platform's own Airflow image and "
        "settings with the socket mounted and no proxy, factory or policy (tests/bench/"
        "peers.py); while one Airflow is measured the other is paused. CPU per task is "
        "from the containers' cgroup accounting (Airflow's containers, for the platform "
        "with its proxy; the task container; dockerd and containerd; the docker CLI).",
    )
