"""The warehouse connection and the tables this pipeline owns."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg2
from psycopg2.extensions import connection as Connection

__all__ = ["ConfigurationError", "Connection", "connect", "ensure_schema", "warehouse_url"]

STAGING = "weather_staging"
FINAL = "weather"

# Every task creates what it needs, so a fresh warehouse needs no separate migration
# step and re-running any task is safe.
_SCHEMA = f"""
CREATE SCHEMA IF NOT EXISTS {STAGING};
CREATE SCHEMA IF NOT EXISTS {FINAL};

CREATE TABLE IF NOT EXISTS {STAGING}.raw_stations (
    source_row integer PRIMARY KEY,
    station_id text, name text, latitude text, longitude text, elevation_m text
);
CREATE TABLE IF NOT EXISTS {STAGING}.raw_observations (
    source_row integer PRIMARY KEY,
    station_id text, observed_at text, temperature_f text,
    relative_humidity_pct text, wind_speed_mph text, precipitation_in text
);
CREATE TABLE IF NOT EXISTS {STAGING}.stations (
    station_id text PRIMARY KEY,
    name text NOT NULL,
    latitude double precision NOT NULL,
    longitude double precision NOT NULL,
    elevation_m double precision NOT NULL
);
CREATE TABLE IF NOT EXISTS {STAGING}.rejected_observations (
    source_row integer PRIMARY KEY,
    reason text NOT NULL
);
CREATE TABLE IF NOT EXISTS {STAGING}.daily_summary (
    station_id text NOT NULL,
    day date NOT NULL,
    readings integer NOT NULL,
    temperature_min_c numeric(5, 2) NOT NULL,
    temperature_max_c numeric(5, 2) NOT NULL,
    temperature_mean_c numeric(5, 2) NOT NULL,
    humidity_mean_pct numeric(5, 2) NOT NULL,
    wind_speed_max_ms numeric(5, 2) NOT NULL,
    precipitation_mm numeric(7, 2) NOT NULL,
    PRIMARY KEY (station_id, day)
);

CREATE TABLE IF NOT EXISTS {FINAL}.stations (
    station_id text PRIMARY KEY,
    name text NOT NULL,
    latitude double precision NOT NULL,
    longitude double precision NOT NULL,
    elevation_m double precision NOT NULL
);
CREATE TABLE IF NOT EXISTS {FINAL}.daily_summary (
    station_id text NOT NULL REFERENCES {FINAL}.stations (station_id),
    day date NOT NULL,
    readings integer NOT NULL,
    temperature_min_c numeric(5, 2) NOT NULL,
    temperature_max_c numeric(5, 2) NOT NULL,
    temperature_mean_c numeric(5, 2) NOT NULL,
    humidity_mean_pct numeric(5, 2) NOT NULL,
    wind_speed_max_ms numeric(5, 2) NOT NULL,
    precipitation_mm numeric(7, 2) NOT NULL,
    loaded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (station_id, day)
);
"""


class ConfigurationError(Exception):
    """The task's environment is incomplete; the message says what to set."""


def warehouse_url() -> str:
    url = os.environ.get("WAREHOUSE_URL", "")
    if not url:
        raise ConfigurationError(
            "WAREHOUSE_URL is not set: the platform passes the warehouse database URL "
            "(postgresql://user:password@host:port/database) to every task"
        )
    if not url.startswith(("postgresql://", "postgres://")):
        raise ConfigurationError("WAREHOUSE_URL must be a postgresql:// URL")
    return url


@contextmanager
def connect(url: str) -> Iterator[Connection]:
    """A connection whose work commits as one transaction, or not at all."""
    conn = psycopg2.connect(url, application_name="weather-pipeline")
    try:
        with conn:
            ensure_schema(conn)
            yield conn
    finally:
        conn.close()


def ensure_schema(conn: Connection) -> None:
    with conn.cursor() as cur:
        # Held until the task commits: tasks of overlapping runs take turns instead
        # of racing to create tables or replacing staging data under each other.
        cur.execute("SELECT pg_advisory_xact_lock(hashtext('weather-schema'))")
        cur.execute(_SCHEMA)
