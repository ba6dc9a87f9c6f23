"""A pipeline added with `etlstack new-pipeline`, as a data engineer adds one.

The session's platform is deployed from a copy of the repository to which the new
pipeline was added (conftest.project): its DAG runs on the platform and its rows land
in the warehouse; and the repository's own fast checks pass with it, untouched.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from conftest import GENERATED_PIPELINE
from harness import Platform

pytestmark = pytest.mark.e2e

SCHEMA = GENERATED_PIPELINE.replace("-", "_")


def _expected_totals(project: Path) -> dict[tuple[str, str], Decimal]:
    """The daily totals per category of the records the new pipeline ships, from its CSV."""
    records = project / "pipelines" / GENERATED_PIPELINE / "src" / SCHEMA / "data" / "records.csv"
    totals: dict[tuple[str, str], Decimal] = {}
    with records.open(newline="") as handle:
        for row in csv.DictReader(handle):
            key = (row["day"], row["category"])
            totals[key] = totals.get(key, Decimal(0)) + Decimal(row["amount"])
    return totals


def test_the_new_pipeline_runs_on_the_platform_and_loads_its_rows(
    platform: Platform, project: Path, generated_dag: str
) -> None:
    run_id = platform.airflow.trigger(generated_dag)
    run: dict[str, Any] = platform.airflow.wait_run(generated_dag, run_id)

    platform.assert_succeeded(generated_dag, run_id, run)
    tasks = [t["task_id"] for t in platform.airflow.task_instances(generated_dag, run_id)]
    assert sorted(tasks) == ["check", "extract", "load"]
    with platform.warehouse() as conn, conn.cursor() as cur:
        cur.execute(f'SELECT day::text, category, total FROM "{SCHEMA}".daily_totals')
        rows = {(day, category): total for day, category, total in cur.fetchall()}
    conn.close()
    expected = _expected_totals(project)
    assert expected, "the generated pipeline ships no records"
    assert rows == expected


def test_the_repositorys_fast_checks_pass_with_the_new_pipeline(project: Path) -> None:
    """`make unit` in the repository with the new pipeline, as the data engineer runs it."""
    venv = Path(sys.executable).parent.parent
    stamp = venv / ".installed"
    result = subprocess.run(
        # The project's venv is installed already: -o keeps make from reinstalling it.
        ["make", "unit", f"VENV={venv}", "-o", str(stamp)],
        cwd=project,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        capture_output=True,
        text=True,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    assert GENERATED_PIPELINE in output, "the new pipeline's tests did not run"
