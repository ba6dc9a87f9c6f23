"""The transform's logic, without a database or Airflow."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime
from typing import cast

import pytest
from weather.extract import OBSERVATION_COLUMNS, STATION_COLUMNS, read_feed
from weather.transform import (
    Reading,
    TransformError,
    clean_observations,
    daily_summaries,
    fahrenheit_to_celsius,
    inches_to_mm,
    mph_to_ms,
    parse_stations,
)

STATIONS = {"KSEA", "KDEN"}


def approx(value: float) -> float:
    """pytest.approx, typed as the float it compares equal to, to stand in a field."""
    return cast(float, pytest.approx(value))


def row(number: int, station: str = "KSEA", at: str = "2024-01-01T00:00:00Z", **values: str):
    measures = {
        "temperature_f": "50.0",
        "relative_humidity_pct": "80",
        "wind_speed_mph": "10.0",
        "precipitation_in": "0.10",
    }
    measures.update(values)
    return (number, station, at, *measures.values())


def test_unit_conversions() -> None:
    assert fahrenheit_to_celsius(32) == 0
    assert fahrenheit_to_celsius(212) == pytest.approx(100)
    assert fahrenheit_to_celsius(-40) == pytest.approx(-40)
    assert mph_to_ms(10) == pytest.approx(4.4704)
    assert inches_to_mm(1) == pytest.approx(25.4)


def test_clean_converts_to_metric() -> None:
    readings, rejections = clean_observations([row(2, temperature_f="68.0")], STATIONS)
    assert rejections == []
    assert readings == [
        Reading(
            station_id="KSEA",
            observed_at=datetime(2024, 1, 1, tzinfo=UTC),
            temperature_c=approx(20.0),
            humidity_pct=80.0,
            wind_speed_ms=approx(4.4704),
            precipitation_mm=approx(2.54),
        )
    ]


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (row(3, station="KXYZ"), "unknown station 'KXYZ'"),
        (row(3, at="2024-02-30T00:00:00Z"), "unparseable timestamp"),
        (row(3, temperature_f=""), "missing temperature_f"),
        (row(3, temperature_f="-999.0"), "sensor error value in temperature_f"),
        (row(3, temperature_f="warm"), "temperature_f is not a number"),
        (row(3, relative_humidity_pct="104"), "relative_humidity_pct 104.0 outside"),
        (row(3, wind_speed_mph="-3.0"), "wind_speed_mph -3.0 outside"),
        (row(3, precipitation_in="nan"), "sensor error value in precipitation_in"),
        (row(3, at="2024-01-01T03:00:00Z"), "duplicate of row 2"),
    ],
)
def test_clean_rejects_bad_rows_with_reason(bad: tuple[object, ...], reason: str) -> None:
    good = row(2, at="2024-01-01T03:00:00Z")
    readings, rejections = clean_observations([bad, good], STATIONS)
    assert [r.observed_at for r in readings] == [datetime(2024, 1, 1, 3, tzinfo=UTC)]
    assert len(rejections) == 1
    assert rejections[0].source_row == 3
    assert reason in rejections[0].reason


def test_daily_summary_per_station_and_utc_day() -> None:
    readings, _ = clean_observations(
        [
            row(2, at="2024-01-01T00:00:00Z", temperature_f="32.0", precipitation_in="0.10"),
            row(3, at="2024-01-01T12:00:00Z", temperature_f="50.0", precipitation_in="0.20"),
            row(4, at="2024-01-01T23:59:59Z", temperature_f="41.0", wind_speed_mph="20.0"),
            row(5, at="2024-01-02T00:00:00Z", temperature_f="14.0"),
            row(6, station="KDEN", at="2024-01-01T06:00:00Z", temperature_f="23.0"),
        ],
        STATIONS,
    )
    summaries = {(s.station_id, s.day): s for s in daily_summaries(readings)}
    assert sorted(summaries) == [
        ("KDEN", date(2024, 1, 1)),
        ("KSEA", date(2024, 1, 1)),
        ("KSEA", date(2024, 1, 2)),
    ]
    first = summaries[("KSEA", date(2024, 1, 1))]
    assert first.readings == 3
    assert (first.temperature_min_c, first.temperature_max_c) == (0.0, 10.0)
    assert first.temperature_mean_c == 5.0
    assert first.wind_speed_max_ms == round(mph_to_ms(20.0), 2)
    assert first.precipitation_mm == round(25.4 * 0.10 * 2 + 25.4 * 0.20, 2)
    assert summaries[("KSEA", date(2024, 1, 2))].temperature_mean_c == -10.0


def test_stations_are_reference_data() -> None:
    good = (2, "KSEA", "Seattle", "47.4", "-122.3", "131.7")
    assert parse_stations([good])[0].elevation_m == 131.7
    with pytest.raises(TransformError, match="more than once"):
        parse_stations([good, (3, *good[1:])])
    with pytest.raises(TransformError, match="line 2: coordinates out of range"):
        parse_stations([(2, "KSEA", "Seattle", "147.4", "-122.3", "131.7")])
    with pytest.raises(TransformError, match="line 2"):
        parse_stations([(2, "KSEA", "Seattle", "north", "-122.3", "131.7")])


def test_shipped_feed_cleans_to_complete_days() -> None:
    stations = parse_stations(read_feed("stations.csv", STATION_COLUMNS))
    raw = read_feed("observations.csv", OBSERVATION_COLUMNS)
    readings, rejections = clean_observations(raw, {s.station_id for s in stations})
    # The feed carries one example of each kind of dirt, and nothing else is dropped.
    assert len(readings) + len(rejections) == len(raw)
    assert len(rejections) == 6
    days = Counter(s.station_id for s in daily_summaries(readings))
    assert days == {s.station_id: 14 for s in stations}
