"""Read queries used by the web layer; each takes a read cursor."""

from __future__ import annotations

import json
from datetime import datetime

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
            since: datetime | None = None, until: datetime | None = None, limit: int = 1000) -> list[dict]:
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
        ORDER BY ts DESC, symbol LIMIT ?
    """, params + [limit])
    return _dicts(cursor, cursor.fetchall())
