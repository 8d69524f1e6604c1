"""Long-term rollups: per-symbol 1-minute and 1-hour aggregates that outlive the raw samples.

A rollup row holds, for one symbol and one minute or hour: count, failures,
and min, max, sum and last over the successful samples with a value; avg is
sum / value_count. Readers use the metrics_1m and metrics_1h views.

The writer thread maintains both tables (RollupFolder). About once a minute it
aggregates the raw samples of the minutes that have ended since its last pass
into rollups_1m, merges those rows into rollups_1h, and moves the watermark
"rollups.complete_before" forward, all in one transaction. A batch holding
samples older than the watermark (a late or backfilled sample) is merged into
both tables in the transaction that inserts it. So every committed sample is
counted exactly once, and the hot path of a normal batch costs one comparison.
Merging every batch instead lowered the writer's throughput from about 78,000
to about 58,000 samples/s, measured like bench/ingest.py (2,000 symbols, the
default batch settings, one machine).

The watermarks table also records how far retention has deleted each
relation. The chart and /api/metrics/{symbol} read raw samples while they
cover the requested range, and the finest rollup that covers it otherwise.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from oculus.storage.database import utc_now

log = logging.getLogger(__name__)

# Time between two folding passes of the writer.
FOLD_EVERY = 60.0
# A pass folds only minutes that ended at least this long ago, because samples are stamped when collected and
# reach the database up to a flush interval later. Later ones still count, through the merge path.
FOLD_GRACE = 30.0
COMPLETE_MARK = "rollups.complete_before"


@dataclass(frozen=True)
class Resolution:
    name: str      # as written in the API and the CLI: "1m" or "1h"
    table: str
    view: str
    seconds: int

    @property
    def deleted_mark(self) -> str:
        return f"{self.table}.deleted_before"


MINUTE = Resolution("1m", "rollups_1m", "metrics_1m", 60)
HOUR = Resolution("1h", "rollups_1h", "metrics_1h", 3600)
RESOLUTIONS = {resolution.name: resolution for resolution in (MINUTE, HOUR)}
SAMPLES_DELETED_MARK = "samples.deleted_before"

# Minute aggregates of raw samples in [$start, $end). Of two samples with the same ts, the one inserted later
# is the last, as in the latest table.
_FOLD_MINUTES = """
    INSERT INTO rollups_1m
    SELECT symbol,
           time_bucket(INTERVAL 1 MINUTE, ts) AS bucket,
           count(*), count(*) FILTER (WHERE NOT success),
           count(value) FILTER (WHERE success),
           min(value) FILTER (WHERE success), max(value) FILTER (WHERE success), sum(value) FILTER (WHERE success),
           arg_max(value, (ts, rowid)) FILTER (WHERE success AND value IS NOT NULL),
           max(ts) FILTER (WHERE success AND value IS NOT NULL)
    FROM samples
    WHERE ts >= $start AND ts < $end
    GROUP BY ALL
    ORDER BY bucket
"""

# Hour aggregates of the minute rows in [$start, $end).
_MINUTES_AS_HOURS = """
    SELECT symbol, time_bucket(INTERVAL 1 HOUR, bucket) AS bucket, sum(count) AS count, sum(failures) AS failures,
           sum(value_count) AS value_count, min(min) AS min, max(max) AS max, sum(sum) AS sum,
           arg_max(last, last_ts) AS last, max(last_ts) AS last_ts
    FROM rollups_1m
    WHERE bucket >= $start AND bucket < $end
    GROUP BY ALL
"""

# Aggregates of the rows of the writer's staged batch (writer_batch) older than $before.
_LATE_BATCH_ROWS = """
    SELECT symbol,
           time_bucket(INTERVAL {seconds} SECOND, ts) AS bucket,
           count(*) AS count,
           count(*) FILTER (WHERE NOT success) AS failures,
           count(value) FILTER (WHERE success) AS value_count,
           min(value) FILTER (WHERE success) AS min,
           max(value) FILTER (WHERE success) AS max,
           sum(value) FILTER (WHERE success) AS sum,
           arg_max(value, (ts, position)) FILTER (WHERE success AND value IS NOT NULL) AS last,
           max(ts) FILTER (WHERE success AND value IS NOT NULL) AS last_ts
    FROM writer_batch
    WHERE ts < $before
    GROUP BY ALL
"""

# Both statements limit the rollup table to the buckets from $low to $high, so DuckDB's min/max zone maps on
# bucket skip the rest of a table of millions of rows.
_MERGE_EXISTING = """
    UPDATE {table} AS r SET
        count = r.count + d.count,
        failures = r.failures + d.failures,
        value_count = r.value_count + d.value_count,
        min = least(r.min, d.min),
        max = greatest(r.max, d.max),
        sum = CASE WHEN d.value_count = 0 THEN r.sum WHEN r.value_count = 0 THEN d.sum ELSE r.sum + d.sum END,
        last = CASE WHEN d.last_ts >= r.last_ts OR r.last_ts IS NULL THEN coalesce(d.last, r.last) ELSE r.last END,
        last_ts = greatest(r.last_ts, d.last_ts)
    FROM ({delta}) AS d
    WHERE r.bucket >= $low AND r.bucket <= $high AND r.symbol = d.symbol AND r.bucket = d.bucket
"""

_INSERT_NEW = """
    INSERT INTO {table}
    SELECT d.* FROM ({delta}) AS d
    ANTI JOIN (SELECT symbol, bucket FROM {table} WHERE bucket >= $low AND bucket <= $high) AS r
        USING (symbol, bucket)
"""


def _merge(conn, table: str, delta: str, params: dict) -> None:
    conn.execute(_MERGE_EXISTING.format(table=table, delta=delta), params)
    conn.execute(_INSERT_NEW.format(table=table, delta=delta), params)


def floor_time(ts: datetime, seconds: int) -> datetime:
    """Return the start of the `seconds`-wide bucket holding `ts`, counted from the Unix epoch."""
    return ts - timedelta(seconds=(ts - datetime(1970, 1, 1)).total_seconds() % seconds)


class RollupFolder:
    """Keeps both rollup tables up to date; every method runs on the writer thread."""

    def __init__(self, every: float = FOLD_EVERY, grace: float = FOLD_GRACE):
        self.every = every
        self.grace = grace
        self.complete_before: datetime | None = None
        self._next_fold = time.monotonic() + every

    def load(self, conn) -> None:
        self.complete_before = marks(conn).get(COMPLETE_MARK)

    def merge_late(self, conn, first_ts: datetime, last_ts: datetime) -> None:
        """Merge the staged batch's samples older than the watermark; call inside the batch's transaction."""
        if self.complete_before is None or first_ts >= self.complete_before:
            return
        for resolution in (MINUTE, HOUR):
            delta = _LATE_BATCH_ROWS.format(seconds=resolution.seconds)
            _merge(conn, resolution.table, delta, {"before": self.complete_before,
                                                   "low": floor_time(first_ts, resolution.seconds),
                                                   "high": min(last_ts, self.complete_before)})

    def due(self) -> bool:
        return time.monotonic() >= self._next_fold

    def fold(self, conn, end: datetime | None = None) -> int:
        """Fold the minutes from the watermark to `end` (default: those ended FOLD_GRACE ago); return minute rows.

        Runs its own transaction, so call it between batches.
        """
        self._next_fold = time.monotonic() + self.every
        end = floor_time(end or utc_now() - timedelta(seconds=self.grace), MINUTE.seconds)
        start = self.complete_before
        if start is None:
            # The migration sets the watermark, so it is missing only when its row was deleted: start at the
            # oldest raw sample.
            start = conn.execute("SELECT min(ts) FROM samples").fetchone()[0]
            start = floor_time(start, MINUTE.seconds) if start is not None else end
        if end <= start:
            return 0
        conn.execute("BEGIN TRANSACTION")
        try:
            rows = conn.execute(_FOLD_MINUTES, {"start": start, "end": end}).fetchone()[0]
            params = {"start": start, "end": end, "low": floor_time(start, HOUR.seconds), "high": end}
            _merge(conn, HOUR.table, _MINUTES_AS_HOURS, params)
            record_mark(conn, COMPLETE_MARK, end)
            conn.execute("COMMIT")
        except Exception:
            conn.execute("ROLLBACK")
            raise
        self.complete_before = end
        return rows


# -- watermarks and retention ------------------------------------------------------------


def marks(conn) -> dict[str, datetime]:
    """Return every watermark by name."""
    return dict(conn.execute("SELECT name, ts FROM watermarks").fetchall())


def record_mark(conn, name: str, ts: datetime) -> None:
    """Set the watermark `name` to `ts`, unless it is later already: a watermark never moves back."""
    conn.execute("""
        INSERT INTO watermarks (name, ts) VALUES (?, ?)
        ON CONFLICT (name) DO UPDATE SET ts = greatest(watermarks.ts, excluded.ts)
    """, [name, ts])


def apply_rollup_retention(conn, minute_cutoff: datetime, hour_cutoff: datetime) -> tuple[int, int]:
    """Delete rollup rows whose bucket starts before the cutoffs; return how many rows went."""
    deleted = []
    for resolution, cutoff in ((MINUTE, minute_cutoff), (HOUR, hour_cutoff)):
        count = conn.execute(f"DELETE FROM {resolution.table} WHERE bucket < ?", [cutoff]).fetchone()[0]
        record_mark(conn, resolution.deleted_mark, cutoff)
        deleted.append(count)
    if any(deleted):
        # A checkpoint lets DuckDB reuse the freed blocks, so the file stops growing.
        conn.execute("CHECKPOINT")
    return deleted[0], deleted[1]


def rollup_retention_command(minute_retention: float, hour_retention: float):
    """Return a writer Command function that applies the rollup retention periods, in seconds."""
    def run(conn):
        now = utc_now()
        minutes, hours = apply_rollup_retention(conn, now - timedelta(seconds=minute_retention),
                                                now - timedelta(seconds=hour_retention))
        log.info("rollup retention applied rows_deleted_1m=%d rows_deleted_1h=%d", minutes, hours)
        return minutes, hours
    return run


# -- reading ---------------------------------------------------------------------------


def pick_resolution(cursor, since: datetime, step_seconds: int) -> tuple[Resolution | None, int]:
    """Return the source that covers a range starting at `since`, and the step to read it with.

    None means raw samples. A rollup's step is rounded up to a whole number of its buckets.
    """
    known = marks(cursor)
    if since >= known.get(SAMPLES_DELETED_MARK, datetime.min):
        return None, step_seconds
    minute_step = math.ceil(step_seconds / MINUTE.seconds) * MINUTE.seconds
    if minute_step < HOUR.seconds and since >= known.get(MINUTE.deleted_mark, datetime.min):
        return MINUTE, minute_step
    return HOUR, math.ceil(step_seconds / HOUR.seconds) * HOUR.seconds


def rollup_series(cursor, resolution: Resolution, symbol: str, since: datetime, until: datetime,
                  step_seconds: int) -> tuple[list[dict], dict]:
    """Return per-step rows and a summary of one symbol from a rollup, in the shape of queries.series.

    `step_seconds` must be a multiple of the rollup's bucket width. The range is widened to whole
    buckets, so the first step may include samples from up to one bucket before `since`. The newest
    minutes, up to about two, are not folded yet and so are missing. first_ts is the start of the
    first bucket with data and last_ts the newest successful sample.
    """
    cursor.execute(f"""
        SELECT time_bucket(to_seconds($step::BIGINT), bucket, TIMESTAMP '1970-01-01') AS step_start,
               sum(sum) / nullif(sum(value_count), 0) AS avg,
               min(min) AS min,
               max(max) AS max,
               sum(count)::BIGINT AS count,
               sum(failures)::BIGINT AS failures,
               min(bucket) AS first_ts,
               max(last_ts) AS last_ts,
               grouping(step_start) AS is_total
        FROM {resolution.table}
        WHERE symbol = $symbol AND bucket >= $since AND bucket < $until
        GROUP BY GROUPING SETS ((step_start), ())
        ORDER BY is_total, step_start
    """, {"step": step_seconds, "symbol": symbol, "since": floor_time(since, resolution.seconds), "until": until})
    names = [column[0] for column in cursor.description]
    summary = {"count": 0, "failures": 0, "min": None, "max": None, "avg": None, "first_ts": None, "last_ts": None}
    points = []
    for values in cursor.fetchall():
        row = dict(zip(names, values, strict=True))
        if row["is_total"]:
            if row["count"] is not None:
                summary = {key: row[key] for key in summary}
        else:
            points.append({"ts": row["step_start"], **{key: row[key] for key in ("avg", "min", "max", "count",
                                                                                     "failures")}})
    return points, summary
