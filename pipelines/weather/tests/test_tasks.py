"""The tasks against a real PostgreSQL, in the order and the way the platform runs them."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from contextlib import closing
from datetime import date
from importlib import resources
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from weather.extract import extract
from weather.load import LoadError, load
from weather.quality import DataQualityError, check
from weather.transform import fahrenheit_to_celsius, transform
from weather.warehouse import connect

PIPELINE = Path(__file__).resolve().parent.parent
# The feed as the installed package ships it (its package data), not the source tree.
FEED = resources.files("weather") / "data"


def run_all(url: str) -> list[dict[str, int]]:
    results = []
    for task in (extract, transform, load, check):
        # One connection per task, as each task is its own container.
        with connect(url) as conn:
            results.append(task(conn))
    return results


def query(url: str, sql: str) -> list[tuple[Any, ...]]:
    # Any: the driver is untyped, and each test knows what its query returns.
    with closing(psycopg2.connect(url)) as conn, conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetchall()


def execute(url: str, sql: str) -> None:
    with closing(psycopg2.connect(url)) as conn, conn, conn.cursor() as cur:
        cur.execute(sql)


def test_pipeline_loads_daily_summaries(warehouse_url: str) -> None:
    extracted, transformed, loaded, checked = run_all(warehouse_url)
    assert extracted == {"stations": 3, "observations": 339}
    assert transformed == {"stations": 3, "readings": 333, "rejected": 6, "days": 42}
    assert loaded == {"stations": 3, "days": 42}
    assert checked["days"] == 42

    per_station = dict(
        query(warehouse_url, "SELECT station_id, count(*) FROM weather.daily_summary GROUP BY 1")
    )
    assert per_station == {"KSEA": 14, "KDEN": 14, "KMIA": 14}

    # One day worked out straight from the CSV, independently of the transform code.
    with (FEED / "observations.csv").open() as feed:
        day = [
            float(r["temperature_f"])
            for r in csv.DictReader(feed)
            if r["station_id"] == "KMIA" and r["observed_at"].startswith("2024-01-07")
        ]
    low, high = query(
        warehouse_url,
        "SELECT temperature_min_c, temperature_max_c FROM weather.daily_summary "
        "WHERE station_id = 'KMIA' AND day = '2024-01-07'",
    )[0]
    assert float(low) == round(fahrenheit_to_celsius(min(day)), 2)
    assert float(high) == round(fahrenheit_to_celsius(max(day)), 2)


def test_rerun_replaces_instead_of_duplicating(warehouse_url: str) -> None:
    run_all(warehouse_url)
    first = query(warehouse_url, "SELECT * FROM weather.daily_summary ORDER BY 1, 2")
    run_all(warehouse_url)
    second = query(warehouse_url, "SELECT * FROM weather.daily_summary ORDER BY 1, 2")
    assert len(second) == 42
    # Same data; only the load timestamp moves.
    assert [r[:-1] for r in first] == [r[:-1] for r in second]


def test_rejected_rows_are_kept_with_their_reason(warehouse_url: str) -> None:
    run_all(warehouse_url)
    reasons = [
        r
        for (r,) in query(warehouse_url, "SELECT reason FROM weather_staging.rejected_observations")
    ]
    assert len(reasons) == 6
    assert any(r.startswith("unknown station 'KXYZ'") for r in reasons)
    assert any(r.startswith("duplicate of row") for r in reasons)


def test_load_before_transform_fails_clearly(warehouse_url: str) -> None:
    with connect(warehouse_url) as conn:
        extract(conn)
    with (
        pytest.raises(LoadError, match="run the transform task first"),
        connect(warehouse_url) as conn,
    ):
        load(conn)


@pytest.mark.parametrize(
    ("corruption", "broken_rules"),
    [
        (
            "UPDATE weather.daily_summary SET temperature_min_c = temperature_max_c + 5 "
            "WHERE station_id = 'KDEN' AND day = '2024-01-03'",
            ["min <= mean <= max temperature", "every staged day is published unchanged"],
        ),
        (
            "DELETE FROM weather.daily_summary WHERE station_id = 'KSEA' AND day = '2024-01-05'",
            ["every station has every day in its range", "every staged day is published unchanged"],
        ),
        (
            "UPDATE weather.daily_summary SET readings = 1 WHERE day = '2024-01-09'",
            ["at least 4 readings per day", "every staged day is published unchanged"],
        ),
        (
            "INSERT INTO weather_staging.rejected_observations "
            "SELECT g, 'synthetic' FROM generate_series(100000, 100020) g",
            ["at most 5% of source rows rejected"],
        ),
        (
            "TRUNCATE weather.daily_summary",
            ["published data exists", "every staged day is published unchanged"],
        ),
    ],
)
def test_check_fails_on_wrong_data(
    warehouse_url: str, corruption: str, broken_rules: list[str]
) -> None:
    run_all(warehouse_url)
    execute(warehouse_url, corruption)
    with pytest.raises(DataQualityError) as failure, connect(warehouse_url) as conn:
        check(conn)
    message = str(failure.value)
    for rule in broken_rules:
        assert f"- {rule}:" in message
    assert message.startswith(f"{len(broken_rules)} of ")


def run_script(task: str, url: str | None) -> subprocess.CompletedProcess[str]:
    # The interpreter running the tests has the pipeline installed, as the image has.
    env = {"PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    if url is not None:
        env["WAREHOUSE_URL"] = url
    return subprocess.run(
        [str(PIPELINE / f"run_{task}.sh")], env=env, capture_output=True, text=True, check=False
    )


def test_run_scripts_are_the_tasks(warehouse_url: str) -> None:
    """What the image runs: each run_<task>.sh, configured only by WAREHOUSE_URL."""
    for task in ("extract", "transform", "load", "check"):
        result = run_script(task, warehouse_url)
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith(f"weather {task} done:")
    assert query(warehouse_url, "SELECT min(day), max(day) FROM weather.daily_summary") == [
        (date(2024, 1, 1), date(2024, 1, 14))
    ]

    execute(
        warehouse_url,
        "UPDATE weather.daily_summary SET humidity_mean_pct = 140 WHERE day = '2024-01-02'",
    )
    failed = run_script("check", warehouse_url)
    assert failed.returncode == 1
    assert "weather check failed: 2 of 7 rules broken" in failed.stderr
    assert "values within physical limits: 3 violation(s)" in failed.stderr


def test_run_script_without_warehouse_is_a_configuration_error() -> None:
    result = run_script("extract", None)
    assert result.returncode == 2
    assert "WAREHOUSE_URL is not set" in result.stderr
