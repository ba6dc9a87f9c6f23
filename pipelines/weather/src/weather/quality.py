"""Check: the published data is fit for use, or the run fails and says why.

Each rule is a query returning the offending rows; a rule passes when it returns
none. The rules look at what `load` published, compared with what this run staged.
"""

from __future__ import annotations

from dataclasses import dataclass

from weather.warehouse import FINAL, STAGING, Connection

# A feed that loses more than this share of its rows is broken, even if the rest
# of it looks fine.
MAX_REJECTED_SHARE = 0.05
# Fewer readings than this in a day and the daily figures mean little.
MIN_READINGS_PER_DAY = 4


@dataclass(frozen=True)
class Rule:
    name: str
    sql: str


RULES = (
    Rule(
        "published data exists",
        f"SELECT 'no rows' WHERE NOT EXISTS (SELECT 1 FROM {FINAL}.daily_summary)",
    ),
    Rule(
        "every staged day is published unchanged",
        f"""
        SELECT s.station_id || ' ' || s.day FROM {STAGING}.daily_summary s
        LEFT JOIN {FINAL}.daily_summary f USING (station_id, day)
        WHERE f.station_id IS NULL
           OR (s.readings, s.temperature_min_c, s.temperature_max_c, s.temperature_mean_c,
               s.humidity_mean_pct, s.wind_speed_max_ms, s.precipitation_mm)
              IS DISTINCT FROM
              (f.readings, f.temperature_min_c, f.temperature_max_c, f.temperature_mean_c,
               f.humidity_mean_pct, f.wind_speed_max_ms, f.precipitation_mm)
        """,
    ),
    Rule(
        "every station has every day in its range",
        f"""
        SELECT station_id || ': ' || (max(day) - min(day) + 1 - count(*)) || ' missing days'
        FROM {FINAL}.daily_summary GROUP BY station_id
        HAVING count(*) <> max(day) - min(day) + 1
        """,
    ),
    Rule(
        "min <= mean <= max temperature",
        f"""
        SELECT station_id || ' ' || day || ': min ' || temperature_min_c || ', mean '
               || temperature_mean_c || ', max ' || temperature_max_c
        FROM {FINAL}.daily_summary
        WHERE NOT (temperature_min_c <= temperature_mean_c
                   AND temperature_mean_c <= temperature_max_c)
        """,
    ),
    Rule(
        "values within physical limits",
        f"""
        SELECT station_id || ' ' || day FROM {FINAL}.daily_summary
        WHERE temperature_min_c < -60 OR temperature_max_c > 60
           OR humidity_mean_pct NOT BETWEEN 0 AND 100
           OR wind_speed_max_ms < 0 OR precipitation_mm < 0
        """,
    ),
    Rule(
        f"at least {MIN_READINGS_PER_DAY} readings per day",
        f"""
        SELECT station_id || ' ' || day || ': ' || readings || ' readings'
        FROM {FINAL}.daily_summary
        WHERE readings < {MIN_READINGS_PER_DAY}
        """,
    ),
    Rule(
        f"at most {MAX_REJECTED_SHARE:.0%} of source rows rejected",
        f"""
        SELECT rejected || ' of ' || landed || ' rows rejected'
        FROM (SELECT (SELECT count(*) FROM {STAGING}.rejected_observations) AS rejected,
                     (SELECT count(*) FROM {STAGING}.raw_observations) AS landed) counts
        WHERE rejected > landed * {MAX_REJECTED_SHARE}
        """,
    ),
)


class DataQualityError(Exception):
    """Published data broke at least one rule; the message lists each one."""


def violations(conn: Connection) -> dict[str, list[str]]:
    """Rule name -> offending rows, for the rules that do not hold."""
    broken: dict[str, list[str]] = {}
    with conn.cursor() as cur:
        for rule in RULES:
            cur.execute(rule.sql)
            rows = [str(row[0]) for row in cur.fetchall()]
            if rows:
                broken[rule.name] = rows
    return broken


def check(conn: Connection) -> dict[str, int]:
    broken = violations(conn)
    if broken:
        lines = [
            f"- {name}: {len(rows)} violation(s), e.g. {', '.join(rows[:3])}"
            for name, rows in broken.items()
        ]
        raise DataQualityError(f"{len(broken)} of {len(RULES)} rules broken:\n" + "\n".join(lines))
    with conn.cursor() as cur:
        cur.execute(f"SELECT count(*) FROM {FINAL}.daily_summary")
        (days,) = cur.fetchone() or (0,)
    return {"rules": len(RULES), "days": days}
