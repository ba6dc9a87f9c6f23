"""DAG delivery: from a DAG file changing in the running platform to the new version
being parsed and runnable (shown by the REST API with its new structure, then run).

Files are copied into the running dag-processor and scheduler, as the end-to-end run
does. (A deploy bakes DAGs into the Airflow image instead: see the image rebuild
benchmark.) The baseline is parsing the same file in the dag-processor's container.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.bench import platform_bench as bench
from tests.bench import report

DAG_ID = "bench_delivery"
CHANGES = 3
PARSE = """
import sys, time
sys.path.insert(0, {folder!r})  # as Airflow does for the DAGs folder
from airflow.dag_processing.dagbag import DagBag
started = time.perf_counter()
bag = DagBag({path!r})
assert not bag.import_errors, bag.import_errors
print(time.perf_counter() - started)
"""


def _parse_seconds(platform: Any, path: str) -> float:
    result = platform.container("airflow-dag-processor").exec_run(
        ["python3", "-c", PARSE.format(path=path, folder=bench.DAGS_FOLDER)]
    )
    output = bytes(result.output).decode(errors="replace")
    assert result.exit_code == 0, output[-2000:]
    return float(output.strip().splitlines()[-1])


def _expected(tasks: int) -> set[str]:
    return {f"{bench.TASK}_{index:02d}" for index in range(tasks)}


@pytest.mark.bench
def test_dag_delivery(platform: Any) -> None:
    env = platform.env("airflow-dag-processor")
    refresh = env.get("AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL", "300 (Airflow's default)")
    min_interval = env.get("AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL", "30 (default)")
    name = f"{DAG_ID}.py"

    landed = bench.deliver(platform, name, bench.dag_source(DAG_ID, 1))
    new_file = bench.wait_for_dag(platform.airflow, DAG_ID, _expected(1), 900) - landed

    changed = []
    for change in range(CHANGES):
        tasks = change + 2
        # The API shows a DAG as soon as it is stored, a moment before the processor
        # records the parse as finished; a change must come after that to look newer.
        time.sleep(3)
        landed = bench.deliver(platform, name, bench.dag_source(DAG_ID, tasks))
        seen = bench.wait_for_dag(platform.airflow, DAG_ID, _expected(tasks), 900)
        changed.append(seen - landed)

    run = bench.timed_run(platform.airflow, DAG_ID)
    assert {t["task_id"] for t in run.tasks} == _expected(CHANGES + 1), "ran an old version"

    parse = [_parse_seconds(platform, f"{bench.DAGS_FOLDER}/{name}") for _ in range(3)]
    report.record(
        "dag_delivery",
        "DAG delivery into the running platform",
        {
            "new DAG file to shown by the API, s": new_file,
            "changed DAG file to new structure shown by the API, median s": report.median(changed),
            "changed: samples, s": ", ".join(f"{s:.1f}" for s in changed),
            "baseline: parsing the file in the dag-processor, median s": report.median(parse),
            "then a run of the new version, trigger to success, s": run.seconds,
            "dag_processor.refresh_interval (folder scan for new files), s": refresh,
            "dag_processor.min_file_process_interval (re-parse unchanged files), s": min_interval,
        },
        notes="A new file waits for the dag-processor's next scan of the DAGs folder "
        "(refresh_interval, so anywhere from 0 to 30 s); a changed file waits for the next "
        "re-parse of that file (min_file_process_interval), so a change shows up about one "
        "interval after it lands. The parse baseline excludes importing Airflow, which the "
        "processor has done.",
    )
