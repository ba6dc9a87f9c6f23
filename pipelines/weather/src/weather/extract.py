"""Extract: land the source feed in staging exactly as it is, every value as text.

Typing and cleaning belong to `transform`, so a malformed value never stops the
landing step and every source row stays traceable by its row number.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from importlib import resources

from psycopg2.extras import execute_values

from weather.warehouse import STAGING, Connection

STATION_COLUMNS = ("station_id", "name", "latitude", "longitude", "elevation_m")
OBSERVATION_COLUMNS = (
    "station_id",
    "observed_at",
    "temperature_f",
    "relative_humidity_pct",
    "wind_speed_mph",
    "precipitation_in",
)


class SourceError(Exception):
    """The feed itself is unusable (for example its header changed)."""


def read_feed(name: str, columns: Sequence[str]) -> list[tuple[object, ...]]:
    """Rows of a shipped CSV as (source_row, value, ...), with its shape checked."""
    text = resources.files("weather").joinpath("data", name).read_text(encoding="utf-8")
    reader = csv.reader(text.splitlines())
    header = next(reader, None)
    if header is None or tuple(header) != tuple(columns):
        raise SourceError(f"{name}: expected columns {list(columns)}, found {header}")
    rows: list[tuple[object, ...]] = []
    for number, row in enumerate(reader, start=2):
        if len(row) != len(columns):
            raise SourceError(f"{name} line {number}: {len(row)} fields, expected {len(columns)}")
        rows.append((number, *row))
    return rows


def _replace(
    conn: Connection, table: str, columns: Sequence[str], rows: Iterable[tuple[object, ...]]
) -> None:
    with conn.cursor() as cur:
        cur.execute(f"TRUNCATE {STAGING}.{table}")
        execute_values(
            cur,
            f"INSERT INTO {STAGING}.{table} (source_row, {', '.join(columns)}) VALUES %s",
            list(rows),
        )


def extract(conn: Connection) -> dict[str, int]:
    stations = read_feed("stations.csv", STATION_COLUMNS)
    observations = read_feed("observations.csv", OBSERVATION_COLUMNS)
    _replace(conn, "raw_stations", STATION_COLUMNS, stations)
    _replace(conn, "raw_observations", OBSERVATION_COLUMNS, observations)
    return {"stations": len(stations), "observations": len(observations)}
