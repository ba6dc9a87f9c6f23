"""Load: publish the staged summaries to the warehouse tables people query.

One transaction, upserts keyed by station and day: re-running a day replaces it,
and readers never see half a load.
"""

from __future__ import annotations

from weather.warehouse import FINAL, STAGING, Connection

SUMMARY_COLUMNS = (
    "readings",
    "temperature_min_c",
    "temperature_max_c",
    "temperature_mean_c",
    "humidity_mean_pct",
    "wind_speed_max_ms",
    "precipitation_mm",
)


class LoadError(Exception):
    """Nothing valid to publish."""


def load(conn: Connection) -> dict[str, int]:
    columns = ", ".join(SUMMARY_COLUMNS)
    updates = ", ".join(f"{c} = excluded.{c}" for c in SUMMARY_COLUMNS)
    with conn.cursor() as cur:
        cur.execute(f"SELECT count(*) FROM {STAGING}.daily_summary")
        (staged,) = cur.fetchone() or (0,)
        if not staged:
            raise LoadError("staging holds no daily summaries: run the transform task first")
        cur.execute(
            f"""
            INSERT INTO {FINAL}.stations (station_id, name, latitude, longitude, elevation_m)
            SELECT station_id, name, latitude, longitude, elevation_m FROM {STAGING}.stations
            ON CONFLICT (station_id) DO UPDATE SET name = excluded.name,
                latitude = excluded.latitude, longitude = excluded.longitude,
                elevation_m = excluded.elevation_m
            """
        )
        stations = cur.rowcount
        cur.execute(
            f"""
            INSERT INTO {FINAL}.daily_summary (station_id, day, {columns})
            SELECT station_id, day, {columns} FROM {STAGING}.daily_summary
            ON CONFLICT (station_id, day) DO UPDATE SET {updates}, loaded_at = now()
            """
        )
        days = cur.rowcount
    return {"stations": stations, "days": days}
