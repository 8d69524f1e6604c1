"""Read queries used by the web layer; each takes a read cursor."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

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


def sparklines(cursor, symbols: list[str], since: datetime, bucket_seconds: int) -> dict[str, list]:
    """Return {symbol: [(bucket_start, avg_value), ...]} of successful samples since `since`."""
    if not symbols:
        return {}
    cursor.execute("""
        SELECT symbol, time_bucket(to_seconds(?::BIGINT), ts) AS bucket, avg(value) AS value
        FROM samples
        WHERE ts >= ? AND success AND value IS NOT NULL AND list_contains(?::VARCHAR[], symbol)
        GROUP BY ALL
        ORDER BY symbol, bucket
    """, [bucket_seconds, since, symbols])
    series: dict[str, list] = {}
    for symbol, bucket, value in cursor.fetchall():
        series.setdefault(symbol, []).append((bucket, value))
    return series


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


def series(cursor, symbol: str, since: datetime, until: datetime, step_seconds: int) -> list[dict]:
    """Return one row per `step_seconds` bucket: avg, min and max of the successful values, count and failures.

    Buckets start at multiples of the step since the Unix epoch, so the same step gives the same buckets.
    """
    cursor.execute("""
        SELECT time_bucket(to_seconds(?::BIGINT), ts, TIMESTAMP '1970-01-01') AS ts,
               avg(value) FILTER (WHERE success) AS avg,
               min(value) FILTER (WHERE success) AS min,
               max(value) FILTER (WHERE success) AS max,
               count(*) AS count,
               count(*) FILTER (WHERE NOT success) AS failures
        FROM samples
        WHERE symbol = ? AND ts >= ? AND ts < ?
        GROUP BY 1
        ORDER BY 1
    """, [step_seconds, symbol, since, until])
    return _dicts(cursor, cursor.fetchall())


def summary(cursor, symbol: str, since: datetime, until: datetime) -> dict:
    """Return count, failures, min, max and avg of one symbol's samples in [since, until)."""
    cursor.execute("""
        SELECT count(*) AS count,
               count(*) FILTER (WHERE NOT success) AS failures,
               min(value) FILTER (WHERE success) AS min,
               max(value) FILTER (WHERE success) AS max,
               avg(value) FILTER (WHERE success) AS avg,
               min(ts) AS first_ts,
               max(ts) AS last_ts
        FROM samples
        WHERE symbol = ? AND ts >= ? AND ts < ?
    """, [symbol, since, until])
    return _dicts(cursor, cursor.fetchall())[0]


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
