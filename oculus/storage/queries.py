"""Read queries used by the web layer; each takes a read cursor."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from oculus.storage.database import utc_now

SAMPLE_COLUMNS = ("ts", "category", "symbol", "value", "success", "duration_ms", "tags")


def _dicts(cursor, rows) -> list[dict]:
    names = [d[0] for d in cursor.description]
    result = []
    for row in rows:
        item = dict(zip(names, row, strict=True))
        if isinstance(item.get("tags"), str):
            item["tags"] = json.loads(item["tags"])
        result.append(item)
    return result


def latest(cursor) -> list[dict]:
    """Return the latest sample of every symbol, from the table the writer maintains."""
    cursor.execute("""
        SELECT symbol, category, ts, value, success, duration_ms, tags, prev_value, prev_ts, last_ok_ts
        FROM latest ORDER BY category, symbol
    """)
    return _dicts(cursor, cursor.fetchall())


def sparkline_points(cursor, symbols: list[str], since: datetime, bucket_seconds: int,
                     width: float, height: float) -> dict[str, str]:
    """Return {symbol: SVG polyline points} of the per-bucket average of successful samples since `since`.

    x spans `width` over the time from `since` to now, y spans `height` from the minimum (bottom, 2 px
    margin) to the maximum (top), both rounded to whole pixels to keep the page small. Symbols with fewer
    than two buckets are left out. DuckDB computes the points, because building them in Python for 1,000
    symbols took longer than the rest of the page.
    """
    if not symbols:
        return {}
    cursor.execute("""
        WITH buckets AS (
            SELECT symbol, time_bucket(to_seconds($bucket::BIGINT), ts) AS bucket, avg(value) AS value
            FROM samples
            WHERE ts >= $since AND success AND value IS NOT NULL
              AND symbol IN (SELECT unnest($symbols::VARCHAR[]))
            GROUP BY ALL
        ), ranged AS (
            SELECT *, min(value) OVER w AS low, max(value) OVER w AS high, count(*) OVER w AS buckets
            FROM buckets
            WINDOW w AS (PARTITION BY symbol)
        )
        SELECT symbol,
               string_agg(printf('%d,%d',
                                 round(least(greatest(epoch(bucket - $since) / $window * $width, 0), $width))::BIGINT,
                                 round($height - 2 - (value - low) / coalesce(nullif(high - low, 0), 1)
                                       * ($height - 4))::BIGINT),
                          ' ' ORDER BY bucket)
        FROM ranged
        WHERE buckets >= 2
        GROUP BY symbol
    """, {"bucket": bucket_seconds, "since": since, "symbols": symbols,
          "window": (utc_now() - since).total_seconds(), "width": float(width), "height": float(height)})
    return dict(cursor.fetchall())


def samples(cursor, *, symbol: str | None = None, category: str | None = None,
            since: datetime | None = None, until: datetime | None = None, limit: int = 1000,
            offset: int = 0) -> list[dict]:
    """Return samples matching the filters, newest first; `symbol` may contain * wildcards."""
    where, params = [], []
    if symbol:
        if "*" in symbol:
            where.append("symbol LIKE ? ESCAPE '\\'")
            params.append(symbol.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_").replace("*", "%"))
        else:
            where.append("symbol = ?")
            params.append(symbol)
    if category:
        where.append("category = ?")
        params.append(category)
    if since:
        where.append("ts >= ?")
        params.append(since)
    if until:
        where.append("ts < ?")
        params.append(until)
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    cursor.execute(f"""
        SELECT {', '.join(SAMPLE_COLUMNS)} FROM metrics {clause}
        ORDER BY ts DESC, symbol LIMIT ? OFFSET ?
    """, params + [limit, offset])
    return _dicts(cursor, cursor.fetchall())


def latest_of(cursor, symbol: str) -> dict | None:
    """Return the latest-table row of one symbol, or None when it has never been sampled."""
    cursor.execute("""
        SELECT symbol, category, ts, value, success, duration_ms, tags, prev_value, prev_ts, last_ok_ts
        FROM latest WHERE symbol = ?
    """, [symbol])
    rows = _dicts(cursor, cursor.fetchall())
    return rows[0] if rows else None


def values_before(cursor, symbols: list[str], at: datetime, window: timedelta) -> dict[str, float]:
    """Return {symbol: last successful value in (at - window, at]}, for the 24 h trend.

    Only that window is read, so DuckDB's min/max zone maps on ts skip the rest of the history.
    """
    if not symbols:
        return {}
    cursor.execute("""
        SELECT symbol, arg_max(value, ts)
        FROM samples
        WHERE ts > ? AND ts <= ? AND success AND value IS NOT NULL
          AND symbol IN (SELECT unnest(?::VARCHAR[]))
        GROUP BY symbol
    """, [at - window, at, symbols])
    return dict(cursor.fetchall())


def series(cursor, symbol: str, since: datetime, until: datetime, step_seconds: int) -> tuple[list[dict], dict]:
    """Return per-bucket rows and a summary of one symbol's samples in [since, until).

    Each bucket row has ts (its start), avg, min and max of the successful values, count and
    failures; the summary has the same over the whole range plus first_ts and last_ts. Buckets
    start at multiples of the step since the Unix epoch, so the same step gives the same buckets.
    GROUPING SETS computes both in one scan of the range.
    """
    cursor.execute("""
        SELECT bucket,
               avg(value) FILTER (WHERE success) AS avg,
               min(value) FILTER (WHERE success) AS min,
               max(value) FILTER (WHERE success) AS max,
               count(*) AS count,
               count(*) FILTER (WHERE NOT success) AS failures,
               min(ts) AS first_ts,
               max(ts) AS last_ts,
               grouping(bucket) AS is_total
        FROM (
            SELECT time_bucket(to_seconds(?::BIGINT), ts, TIMESTAMP '1970-01-01') AS bucket, ts, value, success
            FROM samples
            WHERE symbol = ? AND ts >= ? AND ts < ?
        )
        GROUP BY GROUPING SETS ((bucket), ())
        ORDER BY is_total, bucket
    """, [step_seconds, symbol, since, until])
    rows = _dicts(cursor, cursor.fetchall())
    summary = {"count": 0, "failures": 0, "min": None, "max": None, "avg": None, "first_ts": None, "last_ts": None}
    points = []
    for row in rows:
        if row.pop("is_total"):
            summary = {key: row[key] for key in summary}
        else:
            points.append({"ts": row["bucket"], **{key: row[key] for key in ("avg", "min", "max", "count",
                                                                                 "failures")}})
    return points, summary


def recent_samples(cursor, symbols: list[str], limit: int) -> list[dict]:
    """Return the newest `limit` samples of any of `symbols`, newest first."""
    if not symbols:
        return []
    cursor.execute(f"""
        SELECT {', '.join(SAMPLE_COLUMNS)} FROM samples
        WHERE symbol IN (SELECT unnest(?::VARCHAR[]))
        ORDER BY ts DESC, symbol LIMIT ?
    """, [symbols, limit])
    return _dicts(cursor, cursor.fetchall())


def recent_errors(cursor, symbols: list[str], since: datetime, limit: int = 20) -> list[dict]:
    """Return the distinct error messages of failed samples since `since`: error, count, first and last ts."""
    if not symbols:
        return []
    cursor.execute("""
        SELECT tags->>'error' AS error, count(*) AS count, min(ts) AS first_ts, max(ts) AS last_ts
        FROM samples
        WHERE ts >= ? AND NOT success AND symbol IN (SELECT unnest(?::VARCHAR[]))
        GROUP BY 1
        ORDER BY last_ts DESC
        LIMIT ?
    """, [since, symbols, limit])
    return _dicts(cursor, cursor.fetchall())


def alert_states(cursor, rule: str | None = None, states: tuple | None = None) -> list[dict]:
    """Return alert_state rows, firing first, then pending, then by last evaluation."""
    where, params = [], []
    if rule is not None:
        where.append("rule = ?")
        params.append(rule)
    if states:
        where.append("state IN (SELECT unnest(?::VARCHAR[]))")
        params.append(list(states))
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    cursor.execute(f"""
        SELECT rule, instance, state, severity, labels, value, no_data, active_since, fired_at, resolved_at,
               last_eval, last_notified, message
        FROM alert_state {clause}
        ORDER BY CASE state WHEN 'firing' THEN 0 WHEN 'pending' THEN 1 WHEN 'resolved' THEN 2 ELSE 3 END,
                 last_eval DESC, rule, instance
    """, params)
    return _rows_with_json(cursor, ("labels",))


def alert_events(cursor, *, rule: str | None = None, mentioning: str | None = None,
                 since: datetime | None = None, limit: int = 100) -> list[dict]:
    """Return events of kind 'alert', newest first.

    `rule` matches the event's source or its payload's "rule" key; `mentioning`
    matches text anywhere in the message or payload, such as a symbol.
    """
    where, params = ["kind = 'alert'"], []
    if rule is not None:
        where.append("(source = ? OR payload->>'rule' = ?)")
        params += [rule, rule]
    if mentioning is not None:
        where.append("(strpos(message, ?) > 0 OR strpos(CAST(payload AS VARCHAR), ?) > 0)")
        params += [mentioning, mentioning]
    if since is not None:
        where.append("ts >= ?")
        params.append(since)
    cursor.execute(f"""
        SELECT id, ts, kind, severity, source, message, payload FROM events
        WHERE {' AND '.join(where)}
        ORDER BY ts DESC, id DESC LIMIT ?
    """, params + [limit])
    return _rows_with_json(cursor, ("payload",))


def alert_states_mentioning(cursor, text: str) -> list[dict]:
    """Return alert_state rows whose labels or message contain `text`, such as a symbol."""
    cursor.execute("""
        SELECT rule, instance, state, severity, labels, value, no_data, active_since, fired_at, resolved_at,
               last_eval, last_notified, message
        FROM alert_state
        WHERE strpos(CAST(labels AS VARCHAR), ?) > 0 OR strpos(instance, ?) > 0 OR strpos(message, ?) > 0
        ORDER BY last_eval DESC
    """, [text, text, text])
    return _rows_with_json(cursor, ("labels",))


def latest_deliveries(cursor) -> list[dict]:
    """Return the newest notification delivery per rule instance and channel, newest first.

    Each row has rule, instance, channel, state (firing or resolved), status (pending, retrying,
    delivered or failed), attempts, last_error and updated_at.
    """
    cursor.execute("""
        SELECT rule, instance, channel, state, status, attempts, last_error, updated_at FROM deliveries
        QUALIFY row_number() OVER (PARTITION BY rule, instance, channel ORDER BY created_at DESC, updated_at DESC) = 1
        ORDER BY updated_at DESC, channel
    """)
    return _dicts(cursor, cursor.fetchall())


def _rows_with_json(cursor, json_columns: tuple) -> list[dict]:
    rows = _dicts(cursor, cursor.fetchall())
    for row in rows:
        for name in json_columns:
            if isinstance(row.get(name), str):
                try:
                    row[name] = json.loads(row[name])
                except ValueError:
                    pass  # keep text that is not JSON as it is
    return rows
