"""What the platform costs when nothing runs: CPU of each component and load on the
metadata database, over one idle minute. This is the price of the scheduler's and
dag-processor's polling intervals (see docs/benchmarks.md).
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.bench import platform_bench as bench
from tests.bench import report

WINDOW = 60
COMPONENTS = (
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-api-server",
    "airflow-triggerer",
    "postgres",
)


PARSE_CPU = """
import sys, time
sys.path.insert(0, "/opt/airflow/dags")  # as Airflow does for the DAGs folder
from airflow.dag_processing.dagbag import DagBag
started = time.process_time()
bag = DagBag(sys.argv[1])
assert not bag.import_errors, bag.import_errors
print(time.process_time() - started)
"""
AIRFLOW_DEFAULT_REPARSE_SECONDS = 30


def _parse_cpu_seconds(platform: Any) -> float:
    """CPU to parse each shipped DAG file once, each in a fresh process as the processor does."""
    processor = platform.container("airflow-dag-processor")
    listing = processor.exec_run(["sh", "-c", "ls /opt/airflow/dags/*.py"])
    files = [
        f
        for f in bytes(listing.output).decode().split()
        if not f.rsplit("/", 1)[-1].startswith("bench_")
    ]
    assert files, "no DAG files in the dag-processor"
    total = 0.0
    for path in files:
        result = processor.exec_run(["python3", "-c", PARSE_CPU, path])
        output = bytes(result.output).decode(errors="replace")
        assert result.exit_code == 0, output[-2000:]
        total += float(output.strip().splitlines()[-1])
    return total


@pytest.mark.bench
def test_idle_cost(platform: Any) -> None:
    running = platform.airflow.get("/api/v2/dags/~/dagRuns?state=running&state=queued")
    assert running["total_entries"] == 0, "the platform is not idle"
    containers = {suffix: platform.container(suffix) for suffix in COMPONENTS}
    cpu_before = {suffix: bench.cpu_seconds(c) for suffix, c in containers.items()}
    db_before = bench.metadata_database_activity(platform)
    started = time.monotonic()
    time.sleep(WINDOW)
    cpu_after = {suffix: bench.cpu_seconds(c) for suffix, c in containers.items()}
    db_after = bench.metadata_database_activity(platform)
    minutes = (time.monotonic() - started) / 60

    figures: dict[str, Any] = {
        f"{suffix}: CPU s per idle minute": (cpu_after[suffix] - cpu_before[suffix]) / minutes
        for suffix in COMPONENTS
    }
    figures["metadata database: transactions per idle minute"] = (
        db_after[0] - db_before[0]
    ) / minutes
    figures["metadata database: rows read per idle minute"] = (db_after[1] - db_before[1]) / minutes
    parse = _parse_cpu_seconds(platform)
    figures["CPU s to parse every shipped DAG file once (each in its own process)"] = parse
    figures[
        f"re-parsing unchanged files every {AIRFLOW_DEFAULT_REPARSE_SECONDS} s "
        "(min_file_process_interval), CPU s per minute"
    ] = parse * 60 / AIRFLOW_DEFAULT_REPARSE_SECONDS
    report.record(
        "idle_cost",
        "Idle cost of the platform (nothing running)",
        figures,
        notes=f"Over {WINDOW} s with no run in flight, from the containers' CPU accounting "
        "and PostgreSQL's pg_stat_database for the `airflow` database (the database's "
        "figure includes the measurement's own two queries). The re-parse rate is the "
        "measured cost of one parse of each file times how often the dag-processor "
        "re-parses unchanged files (Airflow's default, which the platform keeps).",
    )
