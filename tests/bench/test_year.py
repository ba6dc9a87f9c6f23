"""A year of a small team's schedule, compressed: with housekeeping, does everything that
grows with each run level off?

Two platforms, one after the other, each deployed fresh under a stack name of its own and
removed afterwards: one with housekeeping, one with platform_housekeeping paused. On
each, a simulated day lasts DAY_SECONDS of real time: every day a run of a daily
pipeline DAG (one task of the platform-smoke pipeline: a container that reaches the
warehouse); every other week a run of platform_memory_limit, which fails by design and leaves
its failed task containers behind, as real failures do; on the first platform,
platform_housekeeping as often as it can finish (a run at a time, at most daily). The
retention settings are the defaults (30 days of task logs, 90 of run history, 7 of
failed containers) and backups weekly, kept 14 days, each scaled to the compressed day,
so "older than 30 days" means what it would in a year.

The daily DAG has one task, not the weather pipeline's four in sequence: a weather run
takes about 25 s here and runs one at a time, so a year of it would take hours.

Every CHECKPOINT_DAYS both platforms are measured the same way: Airflow's database (size
and rows), the task logs' volume, the failed task containers kept, Docker's disk use,
the registry and the backups. The figures, a table and a plot go to BENCHMARKS.md and
docs/year.png.

It asserts what the platform promises, not times: every daily run succeeded, every
housekeeping run succeeded, the Docker daemon logged no error, and with housekeeping each per-run figure stops growing once
its retention period has passed, while without it the same figure keeps growing; the
sizes on disk (Airflow's database, Docker's disk use) stay in the band they reached in the
middle of the year. What grew most on disk in the second half is listed with the figures.
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import Platform, log, platform_applier, start_platform

from pipeline_factory.housekeeping import engine_disk_report
from tests.bench import platform_bench as bench
from tests.bench import report
from tests.support.polling import until
from tests.support.ports import free_port

DAYS = int(os.environ.get("YEAR_DAYS", "365"))
# Two seconds keep this 2-core machine ahead of the schedule: at 1.5 the runs queued up.
DAY_SECONDS = float(os.environ.get("YEAR_DAY_SECONDS", "2"))
FAILING_EVERY_DAYS = 14
CHECKPOINT_DAYS = 30
DAILY = "bench_year_daily"
FAILING = "platform_memory_limit"
HOUSEKEEPING = "platform_housekeeping"
PLOT = report.PROJECT_ROOT / "docs" / "year.png"
# Rows Airflow adds with every run, and what `airflow db clean` removes.
TABLES = ("dag_run", "task_instance", "task_instance_history", "log", "job", "xcom")
# The figures that grow with each run unless something removes them.
PER_RUN = (
    "rows: dag_run",
    "rows: task_instance",
    "rows: log",
    "task logs, KiB",
    "failed task containers",
)
# Sizes on disk, which files and free space make noisy: they level off when they stay in
# the band they reached in the middle of the year.
SIZES = ("Airflow database, MiB", "Docker disk (images, containers, volumes), MiB")
DATABASE_PARTS = """
    SELECT c.relname, pg_relation_size(c.oid) FROM pg_class c
    WHERE c.relkind IN ('r', 'i', 't', 'm') AND NOT c.relisshared
"""


def _days(days: float) -> str:
    """A duration setting of `days` simulated days."""
    return f"{max(1, round(days * DAY_SECONDS))}s"


RETENTION = {"taskLogs": _days(30), "metadata": _days(90), "failedTaskContainers": _days(7)}
BACKUPS = {"every": _days(7), "keep": _days(14)}
SETTINGS = {"housekeeping": RETENTION, "postgres": {"backups": BACKUPS}}


def _du_kib(platform: Platform, suffix: str, path: str) -> int:
    result = platform.container(suffix).exec_run(["du", "-sk", path])
    assert result.exit_code == 0, result.output
    return int(result.output.split()[0])


def _measure(platform: Platform, usage: dict[str, Any]) -> dict[str, float]:
    figures: dict[str, float] = {}
    connection = platform.airflow_database()
    with connection, connection.cursor() as cursor:
        cursor.execute("SELECT pg_database_size('airflow')")
        figures["Airflow database, MiB"] = cursor.fetchone()[0] / 2**20
        for table in TABLES:
            cursor.execute(f"SELECT count(*) FROM {table}")
            figures[f"rows: {table}"] = cursor.fetchone()[0]
    connection.close()
    figures["task logs, KiB"] = _du_kib(platform, "airflow-scheduler", "/opt/airflow/logs")
    figures["failed task containers"] = len(
        platform.client.containers.list(
            all=True, filters={"label": "org.etlstack.pipeline", "status": "exited"}
        )
    )
    figures["Docker disk (images, containers, volumes), MiB"] = (
        usage["LayersSize"]
        + sum(c.get("SizeRw") or 0 for c in usage["Containers"])
        + sum((v.get("UsageData") or {}).get("Size", 0) for v in usage["Volumes"])
    ) / 2**20
    figures["registry, MiB"] = _du_kib(platform, "registry", "/var/lib/registry") / 1024
    figures["backups, MiB"] = _du_kib(platform, "postgres-backup", "/backups") / 1024
    return figures


def _parts(platform: Platform, usage: dict[str, Any]) -> dict[str, float]:
    """Where the disk goes, in KiB: each relation of Airflow's database (its catalogs
    included), each container's writable layer and each volume."""
    connection = platform.airflow_database()
    with connection, connection.cursor() as cursor:
        cursor.execute(DATABASE_PARTS)
        parts = {f"database: {name}": size / 1024 for name, size in cursor.fetchall()}
    connection.close()
    for container in usage["Containers"]:
        parts[f"container: {container['Names'][0].lstrip('/')}"] = (
            container.get("SizeRw") or 0
        ) / 1024
    for volume in usage["Volumes"]:
        parts[f"volume: {volume['Name']}"] = (volume.get("UsageData") or {}).get("Size", 0) / 1024
    return parts


def _growth(before: dict[str, float], after: dict[str, float], top: int = 8) -> str:
    """The parts that grew most from `before` to `after`, as a markdown list."""
    grown = sorted(((after[name] - before.get(name, 0.0), name) for name in after), reverse=True)[
        :top
    ]
    return "\n".join(f"- {name}: +{kib:.0f} KiB" for kib, name in grown if kib > 0) or "- none"


def _in_flight(platform: Platform, dag_id: str) -> bool:
    runs = platform.airflow.get(f"/api/v2/dags/{dag_id}/dagRuns?state=queued&state=running")
    return bool(runs["total_entries"])


def _year(
    platform: Platform, housekeeping: bool
) -> tuple[list[dict[str, float]], list[dict[str, float]], list[str]]:
    """Run the compressed year; the figures and the parts of the disk at each checkpoint,
    and the daily run ids."""
    airflow = platform.airflow
    bench.deliver(platform, f"{DAILY}.py", bench.dag_source(DAILY, 1))
    for dag_id in (DAILY, FAILING, HOUSEKEEPING):
        path = f"/api/v2/dags/{dag_id}"
        until(
            functools.partial(airflow.get, path),
            timeout=300,
            interval=5,
            what=f"DAG {dag_id} stored",
            retry_on=(Exception,),
        )
    # It is active from its first deploy; without housekeeping it must not run at all.
    airflow.patch(f"/api/v2/dags/{HOUSEKEEPING}", {"is_paused": not housekeeping})
    checkpoints: list[dict[str, float]] = []
    parts: list[dict[str, float]] = []
    daily_runs: list[str] = []
    started = time.monotonic()
    for day in range(1, DAYS + 1):
        time.sleep(max(0.0, started + day * DAY_SECONDS - time.monotonic()))
        daily_runs.append(airflow.trigger(DAILY))
        if day % FAILING_EVERY_DAYS == 0:
            airflow.trigger(FAILING)
        if housekeeping and not _in_flight(platform, HOUSEKEEPING):
            airflow.trigger(HOUSEKEEPING)
        if day % CHECKPOINT_DAYS == 0 or day == DAYS:
            # A failed run stays in the history for 90 days, longer than a checkpoint.
            failed = airflow.get(f"/api/v2/dags/{DAILY}/dagRuns?state=failed")
            assert failed["total_entries"] == 0, failed["dag_runs"][:3]
            # The housekeeping's disk_usage job may be making the engine's one report.
            usage = dict(engine_disk_report(platform.client))
            checkpoints.append({"day": day, **_measure(platform, usage)})
            parts.append(_parts(platform, usage))
            log.info("day %d: %s", day, checkpoints[-1])
    return checkpoints, parts, daily_runs


def _all_finished(platform: Platform, dag_id: str) -> list[dict[str, Any]]:
    def finished() -> list[dict[str, Any]] | None:
        runs = platform.airflow.get(f"/api/v2/dags/{dag_id}/dagRuns?limit=1000")["dag_runs"]
        return runs if all(r["state"] in ("success", "failed") for r in runs) else None

    return until(finished, timeout=1800, interval=10, what=f"every {dag_id} run finished")


@contextlib.contextmanager
def _platform(engine: Any, project: Path, name: str) -> Iterator[Platform]:
    ports = {"airflow": free_port(), "registry": free_port(), "postgres": free_port()}
    applier, overrides = platform_applier(engine, project, "local", name, ports, settings=SETTINGS)
    applier.destroy()
    try:
        yield start_platform(engine, applier, overrides)
    finally:
        applier.destroy()


def _table(legs: dict[str, list[dict[str, float]]]) -> str:
    metrics = [key for key in next(iter(legs.values()))[0] if key != "day"]
    lines = ["| day | " + " | ".join(f"{m} ({leg})" for m in metrics for leg in legs) + " |"]
    lines.append("|---" * (1 + len(metrics) * len(legs)) + "|")
    for index, point in enumerate(next(iter(legs.values()))):
        cells = [
            f"{legs[leg][index][metric]:.0f}"
            if legs[leg][index][metric] >= 10
            else f"{legs[leg][index][metric]:.2f}"
            for metric in metrics
            for leg in legs
        ]
        lines.append(f"| {point['day']:.0f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _plot(legs: dict[str, list[dict[str, float]]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = [key for key in next(iter(legs.values()))[0] if key != "day"]
    columns = 4
    rows = -(-len(metrics) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4 * columns, 3 * rows), squeeze=False)
    for axis, metric in zip(axes.flat, metrics, strict=False):
        for leg, points in legs.items():
            axis.plot([p["day"] for p in points], [p[metric] for p in points], label=leg)
        axis.set_title(metric, fontsize=9)
        axis.set_xlabel("simulated day")
        axis.legend(fontsize=7)
    for axis in list(axes.flat)[len(metrics) :]:
        axis.set_visible(False)
    figure.tight_layout()
    figure.savefig(PLOT, dpi=90)


def _middle(points: list[dict[str, float]], metric: str) -> list[float]:
    """The figure in the middle of the year, once every retention period (90 days at
    most) has passed."""
    return [p[metric] for p in points if 0.4 * DAYS <= p["day"] <= 0.7 * DAYS]


def _level(points: list[dict[str, float]], metric: str) -> tuple[float, float]:
    """The figure's highest in the middle of the year, and the figure at the end."""
    return max(_middle(points, metric)), points[-1][metric]


@pytest.mark.bench
def test_a_year_levels_off_with_housekeeping(engine: Any, project: Path) -> None:
    assert DAYS >= 300, "YEAR_DAYS must be at least 300: retention periods reach 90 days"
    legs: dict[str, list[dict[str, float]]] = {}
    growth: dict[str, str] = {}
    for leg, housekeeping in (("with housekeeping", True), ("without", False)):
        name = "year-housekept" if housekeeping else "year-unkept"
        with _platform(engine, project, name) as platform:
            since = bench.dockerd_log().stat().st_size
            legs[leg], parts, daily_runs = _year(platform, housekeeping)
            middle = next(i for i, p in enumerate(legs[leg]) if p["day"] >= 0.4 * DAYS)
            growth[leg] = _growth(parts[middle], parts[-1])
            states = {r["dag_run_id"]: r["state"] for r in _all_finished(platform, DAILY)}
            # Runs housekeeping removed from the history are gone: they had finished.
            assert {states[run] for run in daily_runs if run in states} == {"success"}
            if housekeeping:
                kept = _all_finished(platform, HOUSEKEEPING)
                assert kept and {r["state"] for r in kept} == {"success"}, kept
            errors = bench.daemon_errors(since)
            assert not errors, f"the Docker daemon logged errors ({leg}):\n" + "\n".join(
                errors[:20]
            )

    for metric in PER_RUN:
        settled, end = _level(legs["with housekeeping"], metric)
        # The slack: one failing run's two containers, kept for their 7 days.
        assert end <= 1.3 * settled + 2, (
            f"{metric} still grows with housekeeping: {settled} -> {end}"
        )
        start = next(p for p in legs["without"] if p["day"] >= 0.4 * DAYS)[metric]
        end = legs["without"][-1][metric]
        assert end >= 1.5 * start, f"{metric} did not grow without housekeeping: {start} -> {end}"

    for metric in SIZES:
        band = _middle(legs["with housekeeping"], metric)
        end = legs["with housekeeping"][-1][metric]
        assert end <= max(band) + (max(band) - min(band)), (
            f"{metric} still grows with housekeeping: {min(band)}..{max(band)} in the middle "
            f"of the year, {end} at its end; what grew:\n{growth['with housekeeping']}"
        )

    _plot(legs)
    final = {leg: points[-1] for leg, points in legs.items()}
    report.record(
        "year",
        f"A year of daily runs, compressed ({DAYS} days of {DAY_SECONDS:g} s)",
        {
            f"{metric} after a year ({leg})": value
            for leg, figures in final.items()
            for metric, value in figures.items()
            if metric != "day"
        },
        notes=(
            "Every 30 simulated days, both platforms measured the same way; the retention "
            "settings are the defaults scaled to the compressed day "
            f"({RETENTION}, backups {BACKUPS}). "
            "Housekeeping ran as often as it could finish. The registry does not change: no "
            "pipeline was updated.\n\n"
            + _table(legs)
            + "\n\n![a year, with and without housekeeping](docs/year.png)"
            + "".join(
                f"\n\nWhat grew most on disk from day {0.4 * DAYS:.0f} to the end ({leg}):\n"
                + grown
                for leg, grown in growth.items()
            )
        ),
    )
