"""One symbol over a time range: latest sample, downsampled series and summary, for its page and its API route."""

from __future__ import annotations

from datetime import datetime, timedelta

from oculus.storage import queries, rollups
from oculus.web.jsonapi import ApiError

RANGES = {"1h": 3600, "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400, "365d": 365 * 86400}
DEFAULT_RANGE = "1h"
# Bucket widths a chart picks from: the smallest that keeps the series at or under TARGET_POINTS.
NICE_STEPS = (1, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)
TARGET_POINTS = 400
MAX_POINTS = 10_000


def default_step(span_seconds: float) -> int:
    return next((step for step in NICE_STEPS if span_seconds / step <= TARGET_POINTS), NICE_STEPS[-1])


def resolve_window(since: datetime | None, until: datetime | None, step: float | None,
                   now: datetime) -> tuple[datetime, datetime, int]:
    """Fill in defaults (the last hour, a step giving about TARGET_POINTS buckets) and check the window."""
    until = until or now
    since = since or until - timedelta(seconds=RANGES[DEFAULT_RANGE])
    if since >= until:
        raise ApiError(400, "invalid_parameter", "since: must be earlier than until")
    span = (until - since).total_seconds()
    step_seconds = int(step) if step else default_step(span)
    if span / step_seconds > MAX_POINTS:
        raise ApiError(400, "invalid_parameter",
                       f"step: {step_seconds} s would give {int(span / step_seconds)} points for this range; "
                       f"choose a step of at least {int(span // MAX_POINTS) + 1} s (at most {MAX_POINTS} points)")
    return since, until, step_seconds


def symbol_detail(cursor, symbol: str, since: datetime, until: datetime, step_seconds: int) -> dict | None:
    """Return latest, stats and series of `symbol`, or None when it has never been sampled.

    Raw samples are read while they cover `since`; older ranges read the 1-minute or 1-hour rollups,
    and the step is then rounded up to whole rollup buckets.
    """
    latest = queries.latest_of(cursor, symbol)
    resolution, step_seconds = rollups.pick_resolution(cursor, since, step_seconds)
    if resolution is None:
        points, stats = queries.series(cursor, symbol, since, until, step_seconds)
    else:
        points, stats = rollups.rollup_series(cursor, resolution, symbol, since, until, step_seconds)
    if latest is None and not stats["count"]:
        return None
    stats["failure_rate"] = stats["failures"] / stats["count"] if stats["count"] else None
    return {
        "symbol": symbol,
        "category": latest["category"] if latest else symbol.split(".")[0],
        "latest": _public_latest(latest),
        "since": since,
        "until": until,
        "step": step_seconds,
        "resolution": resolution.name if resolution else "raw",
        "stats": stats,
        "series": points,
    }


def _public_latest(row: dict | None) -> dict | None:
    if row is None:
        return None
    return {key: row[key] for key in ("ts", "value", "success", "duration_ms", "tags", "prev_value", "prev_ts",
                                      "last_ok_ts")}
