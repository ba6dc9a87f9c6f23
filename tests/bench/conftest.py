"""Benchmarks run on the platform the end-to-end session deploys, and write BENCHMARKS.md
once the session is over.

The end-to-end fixtures (engine, project, platform, example_dag, smoke_dag) are loaded from
tests/e2e/conftest.py under a name of their own, so benchmarks and end-to-end tests
share one way of deploying. `make bench` selects only benchmarks, so one platform is
deployed per session.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.bench import report

_E2E_CONFTEST = Path(__file__).resolve().parent.parent / "e2e" / "conftest.py"
_spec = importlib.util.spec_from_file_location("etlstack_bench_e2e_fixtures", _E2E_CONFTEST)
assert _spec and _spec.loader
_e2e = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = _e2e
_spec.loader.exec_module(_e2e)

engine = _e2e.engine
project = _e2e.project
platform = _e2e.platform
example_dag = _e2e.example_dag
smoke_dag = _e2e.smoke_dag


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    # Only a session that ran benchmarks rewrites BENCHMARKS.md (not `make test`).
    ran_benchmarks = any(item.get_closest_marker("bench") for item in session.items)
    if ran_benchmarks and report.RESULTS.exists():
        report.write_markdown()


OVERHEAD_DAG = "bench_task_overhead"
BURST_DAG = "bench_burst"
BURST_TASKS = 50


@pytest.fixture(scope="session")
def bench_dags(platform: Any) -> dict[str, str]:
    """The benchmark DAGs, delivered into the running platform and parsed."""
    from tests.bench import platform_bench as bench

    dags = {OVERHEAD_DAG: 1, BURST_DAG: BURST_TASKS}
    for dag_id, tasks in dags.items():
        bench.deliver(platform, f"{dag_id}.py", bench.dag_source(dag_id, tasks))
    for dag_id, tasks in dags.items():
        expected = {f"{bench.TASK}_{index:02d}" for index in range(tasks)}
        # A new file is found at the dag-processor's next scan of the folder.
        bench.wait_for_dag(platform.airflow, dag_id, expected, timeout=900)
    return {"overhead": OVERHEAD_DAG, "burst": BURST_DAG}


@pytest.fixture(scope="session")
def peer(platform: Any) -> Iterator[Any]:
    """The talk's own setup beside the platform (peers.py), with one-task and burst DAGs
    for each of its two ways of launching; paused until a benchmark measures it."""
    from tests.bench import peers

    dags = [
        peers.PeerDag(way, tasks)
        for way in (peers.RAW_SOCKET, peers.DOCKER_OPERATOR)
        for tasks in (1, BURST_TASKS)
    ]
    with peers.peer_airflow(platform, dags) as started:
        yield started
