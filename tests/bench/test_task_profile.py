"""Where one task's time goes, profiled on the running platform.

py-spy samples the scheduler's container from the host, its whole process tree, while
single-task runs go through the platform one after another; tests/bench/profile.py sorts
the samples of the tasks' processes into phases (DAG file parse, each kind of Docker API
call through the proxy, the supervisor's work...). The scheduler's own part (run created
to task queued, queued to started) comes from the timestamps Airflow records.

The same run measures, in the scheduler's container, what one import the task process
makes for every task costs: the cluster policy, as it is and with the Kubernetes
operator it imported before it stopped doing so.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from tests.bench import platform_bench as bench
from tests.bench import profile, report

ROUNDS = 10
# Samples a second: py-spy follows every process of the scheduler (16 LocalExecutor
# workers among them); at 50 it fell behind on this 2-core machine.
RATE = 25
PY_SPY = Path(sys.executable).with_name("py-spy")
# What a task process has loaded before it parses a DAG file: Airflow's SDK.
IMPORT_SECONDS = """
import sys, time
import airflow.sdk
sys.path.insert(0, "/opt/airflow/dags")
started = time.perf_counter()
for module in sys.argv[1:]:
    __import__(module)
print(time.perf_counter() - started)
"""
KUBERNETES_OPERATOR = "airflow.providers.cncf.kubernetes.operators.pod"


def _import_seconds(scheduler: Any, *modules: str) -> float:
    """Median wall seconds to import `modules` in a fresh interpreter in the scheduler's
    container that has loaded airflow.sdk, as a task process has."""
    samples = []
    for _ in range(5):
        result = scheduler.exec_run(["python3", "-c", IMPORT_SECONDS, *modules])
        output = bytes(result.output).decode(errors="replace")
        assert result.exit_code == 0, output[-2000:]
        samples.append(float(output.strip().splitlines()[-1]))
    return report.median(samples)


@pytest.mark.bench
def test_where_a_task_spends_its_time(platform: Any, bench_dags: dict[str, str]) -> None:
    assert PY_SPY.is_file(), f"{PY_SPY} is missing: `make venv` installs py-spy"
    dag_id = bench_dags["overhead"]
    bench.timed_run(platform.airflow, dag_id)
    scheduler = platform.container("airflow-scheduler")
    with tempfile.TemporaryDirectory(prefix="bench-profile-") as folder:
        output = Path(folder) / "samples.txt"
        pid = str(scheduler.attrs["State"]["Pid"])
        record = ["record", "--pid", pid, "--subprocesses", "--nonblocking", "--rate", str(RATE)]
        spy = subprocess.Popen(
            [str(PY_SPY), *record, "--format", "raw", "--output", str(output)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        time.sleep(3)  # attached to every process before the first run
        runs = [bench.timed_run(platform.airflow, dag_id) for _ in range(ROUNDS)]
        spy.send_signal(signal.SIGINT)
        log = spy.communicate(timeout=120)[0]
        assert output.is_file(), f"py-spy wrote no samples:\n{log[-2000:]}"
        counted = profile.phases(profile.parse(output.read_text().splitlines()))

    # The profile saw the tasks: their parse and their Docker API calls.
    assert (
        counted["task: DAG file parse"]
        and counted["task: Docker API, other calls (create, start, inspect, remove)"]
    ), counted
    per_task = {phase: samples / RATE / ROUNDS for phase, samples in counted.most_common()}

    def median_between(start: str, end: str) -> float:
        return report.median(
            [bench.elapsed(r.tasks[0].get(start), r.tasks[0].get(end)) for r in runs]
        )

    queued = report.median(
        [bench.elapsed(r.run.get("queued_at"), r.tasks[0].get("queued_when")) for r in runs]
    )
    figures: dict[str, Any] = {
        "trigger to success seen, median s": report.median([r.seconds for r in runs]),
        "scheduler: run created to task queued, median s": queued,
        "scheduler: task queued to task started, median s": median_between(
            "queued_when", "start_date"
        ),
        "task started to task ended, median s": median_between("start_date", "end_date"),
        **{f"{phase}, s per task": seconds for phase, seconds in per_task.items()},
        "import of the cluster policy in a task process, s": _import_seconds(
            scheduler, "pipeline_factory.policy"
        ),
        "the same with the Kubernetes operator it imported before, s": _import_seconds(
            scheduler, "pipeline_factory.policy", KUBERNETES_OPERATOR
        ),
        "rounds": ROUNDS,
        "samples a second": RATE,
    }
    report.record(
        "task_profile",
        "Where one task's time goes (py-spy on the scheduler's processes)",
        figures,
        notes="Phases are py-spy samples of the task's two processes (the LocalExecutor "
        "worker that supervises it and the task process it forks) divided by the rate and "
        "the rounds. Seen from the host, the container's processes show py-spy no idle "
        "state, so a phase counts waiting as well as running: it is wall time, and the "
        "supervisor's time overlaps the task process's. tests/bench/profile.py has the "
        "rules that name each phase.",
    )
