"""Transform: type, clean and convert the landed feed, then summarise it per day.

The source reports in US units with the usual dirt of a sensor feed: sentinel
values, gaps, duplicates, impossible readings, stations nobody registered. Bad rows
are not dropped silently: each one is recorded with its reason, and the quality
check fails the run if too many are rejected.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import astuple, dataclass
from datetime import UTC, date, datetime

from psycopg2.extras import execute_values

from weather.warehouse import STAGING, Connection

SENSOR_ERROR = -999.0
TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
# Outside these the reading is a fault, not weather (°F, %, mph, inches per reading).
VALID_RANGES = {
    "temperature_f": (-80.0, 140.0),
    "relative_humidity_pct": (0.0, 100.0),
    "wind_speed_mph": (0.0, 250.0),
    "precipitation_in": (0.0, 20.0),
}


class TransformError(Exception):
    """Reference data is broken; the run cannot produce correct results."""


@dataclass(frozen=True)
class Station:
    station_id: str
    name: str
    latitude: float
    longitude: float
    elevation_m: float


@dataclass(frozen=True)
class Reading:
    station_id: str
    observed_at: datetime
    temperature_c: float
    humidity_pct: float
    wind_speed_ms: float
    precipitation_mm: float


@dataclass(frozen=True)
class Rejection:
    source_row: int
    reason: str


@dataclass(frozen=True)
class DailySummary:
    station_id: str
    day: date
    readings: int
    temperature_min_c: float
    temperature_max_c: float
    temperature_mean_c: float
    humidity_mean_pct: float
    wind_speed_max_ms: float
    precipitation_mm: float


def fahrenheit_to_celsius(value: float) -> float:
    return (value - 32.0) * 5.0 / 9.0


def mph_to_ms(value: float) -> float:
    return value * 0.44704


def inches_to_mm(value: float) -> float:
    return value * 25.4


def parse_stations(rows: Iterable[Sequence[object]]) -> list[Station]:
    """Stations are reference data: one bad row means the feed is wrong, so it fails."""
    stations = []
    for source_row, station_id, name, latitude, longitude, elevation in rows:
        try:
            station = Station(
                str(station_id).strip(),
                str(name).strip(),
                float(str(latitude)),
                float(str(longitude)),
                float(str(elevation)),
            )
        except ValueError as error:
            raise TransformError(f"stations.csv line {source_row}: {error}") from None
        if not station.station_id or not station.name:
            raise TransformError(
                f"stations.csv line {source_row}: station id and name are required"
            )
        if not (-90 <= station.latitude <= 90 and -180 <= station.longitude <= 180):
            raise TransformError(f"stations.csv line {source_row}: coordinates out of range")
        stations.append(station)
    ids = [s.station_id for s in stations]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise TransformError(f"stations.csv lists these stations more than once: {duplicates}")
    return stations


def _measure(field: str, raw: object) -> float:
    text = str(raw or "").strip()
    if not text:
        raise ValueError(f"missing {field}")
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{field} is not a number: {text!r}") from None
    if value == SENSOR_ERROR or math.isnan(value):
        raise ValueError(f"sensor error value in {field}")
    low, high = VALID_RANGES[field]
    if not low <= value <= high:
        raise ValueError(f"{field} {value} outside [{low}, {high}]")
    return value


def clean_observations(
    rows: Iterable[Sequence[object]], station_ids: set[str]
) -> tuple[list[Reading], list[Rejection]]:
    """Typed, metric readings, and the rows that could not become one (with why)."""
    readings: list[Reading] = []
    rejections: list[Rejection] = []
    first_seen: dict[tuple[str, datetime], int] = {}
    for source_row, station_id, observed_at, temperature, humidity, wind, precipitation in sorted(
        rows, key=lambda row: int(str(row[0]))
    ):
        row_number = int(str(source_row))
        station = str(station_id or "").strip()
        try:
            if station not in station_ids:
                raise ValueError(f"unknown station {station!r}")
            try:
                when = datetime.strptime(str(observed_at), TIMESTAMP_FORMAT).replace(tzinfo=UTC)
            except ValueError:
                raise ValueError(f"unparseable timestamp {observed_at!r}") from None
            key = (station, when)
            if key in first_seen:
                raise ValueError(f"duplicate of row {first_seen[key]}")
            reading = Reading(
                station_id=station,
                observed_at=when,
                temperature_c=fahrenheit_to_celsius(_measure("temperature_f", temperature)),
                humidity_pct=_measure("relative_humidity_pct", humidity),
                wind_speed_ms=mph_to_ms(_measure("wind_speed_mph", wind)),
                precipitation_mm=inches_to_mm(_measure("precipitation_in", precipitation)),
            )
        except ValueError as reason:
            rejections.append(Rejection(row_number, str(reason)))
            continue
        first_seen[key] = row_number
        readings.append(reading)
    return readings, rejections


def daily_summaries(readings: Iterable[Reading]) -> list[DailySummary]:
    """One row per station and UTC day, rounded to what the warehouse stores."""
    groups: dict[tuple[str, date], list[Reading]] = defaultdict(list)
    for reading in readings:
        groups[(reading.station_id, reading.observed_at.date())].append(reading)
    summaries = []
    for (station, day), group in sorted(groups.items()):
        temperatures = [r.temperature_c for r in group]
        summaries.append(
            DailySummary(
                station_id=station,
                day=day,
                readings=len(group),
                temperature_min_c=round(min(temperatures), 2),
                temperature_max_c=round(max(temperatures), 2),
                temperature_mean_c=round(sum(temperatures) / len(group), 2),
                humidity_mean_pct=round(sum(r.humidity_pct for r in group) / len(group), 2),
                wind_speed_max_ms=round(max(r.wind_speed_ms for r in group), 2),
                precipitation_mm=round(sum(r.precipitation_mm for r in group), 2),
            )
        )
    return summaries


def _replace(conn: Connection, table: str, rows: Sequence[tuple[object, ...]]) -> None:
    with conn.cursor() as cur:
        cur.execute(f"TRUNCATE {STAGING}.{table}")
        if rows:
            execute_values(cur, f"INSERT INTO {STAGING}.{table} VALUES %s", rows)


def transform(conn: Connection) -> dict[str, int]:
    with conn.cursor() as cur:
        cur.execute(f"SELECT * FROM {STAGING}.raw_stations ORDER BY source_row")
        raw_stations = cur.fetchall()
        cur.execute(f"SELECT * FROM {STAGING}.raw_observations ORDER BY source_row")
        raw_observations = cur.fetchall()
    if not raw_stations or not raw_observations:
        raise TransformError("staging holds no landed feed: run the extract task first")
    stations = parse_stations(raw_stations)
    readings, rejections = clean_observations(raw_observations, {s.station_id for s in stations})
    summaries = daily_summaries(readings)
    _replace(conn, "stations", [astuple(s) for s in stations])
    _replace(conn, "rejected_observations", [astuple(r) for r in rejections])
    _replace(conn, "daily_summary", [astuple(s) for s in summaries])
    return {
        "stations": len(stations),
        "readings": len(readings),
        "rejected": len(rejections),
        "days": len(summaries),
    }
