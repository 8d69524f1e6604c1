"""The single writer thread: the only code that writes to DuckDB.

Collectors, the rule engine and the web layer put work on one bounded
queue.Queue; this thread batches samples by count and by time and inserts them
column-wise, which is orders of magnitude faster than one INSERT per row.
"""

from __future__ import annotations

import json
import logging
import math
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import duckdb

from oculus.logs import RateLimitedLog
from oculus.storage import buffers
from oculus.storage.database import Database, utc_now
from oculus.storage.rollups import SAMPLES_DELETED_MARK, RollupFolder, record_mark

log = logging.getLogger(__name__)

STOP = object()
SEVERITIES = ("info", "warn", "error", "critical")
# Symbols of this kind (crypto.close_1d.<pair>) are exempt from raw-sample retention.
LONG_LIVED_KIND = "close_1d"
# Failed inserts are retried with the next batch; past this many rows (or one batch, if larger) the oldest
# are dropped and counted. 100,000 samples of an HTTP probe take about 30 MB of Python objects (an estimate).
MAX_HELD_ROWS = 100_000
# After this many failed flushes in a row, rows are inserted one by one and the failing ones dropped.
SALVAGE_AFTER = 3
# A writer that has not flushed for this long (or ten flush intervals, if longer) is not keeping up.
STALL_SECONDS = 10.0
# Rows committed since the last checkpoint live in the WAL and in memory. DuckDB checkpoints on its own
# only once the WAL reaches checkpoint_threshold (16 MiB by default), which a steady stream of probe results
# takes minutes to fill, so the writer checkpoints this often to keep both small.
CHECKPOINT_EVERY = 60.0
# Time between two walks of DuckDB's eviction queues (buffers.py). At 1,000 targets every 5 s, about 190
# dead entries a second pile up in between.
RELEASE_BUFFERS_EVERY = 60.0


@dataclass(slots=True)
class Event:
    kind: str        # alert, error, system, audit
    severity: str    # info, warn, error, critical
    message: str
    source: str | None = None
    payload: dict | None = None
    ts: datetime = field(default_factory=utc_now)


class Command:
    """A function run on the writer's connection between batches, with its result handed back."""

    def __init__(self, function: Callable, description: str):
        self.function = function
        self.description = description
        self.done = threading.Event()
        self.result = None
        self.error: BaseException | None = None

    def wait(self, timeout: float):
        if not self.done.wait(timeout):
            raise TimeoutError(f"writer did not run {self.description} within {timeout:g}s")
        if self.error is not None:
            raise self.error
        return self.result


@dataclass
class WriterStats:
    samples_written: int = 0
    events_written: int = 0
    batches: int = 0
    last_batch_size: int = 0
    max_batch_size: int = 0
    insert_failures: int = 0
    rows_dropped: int = 0
    queue_full: int = 0
    items_rejected: int = 0
    last_flush_monotonic: float = field(default_factory=time.monotonic)


class Writer:
    """Owns the write connection; start(), then put() from any thread, then stop()."""

    def __init__(self, database: Database, queue_size: int, batch_size: int, flush_interval: float):
        self.database = database
        self.queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.stats = WriterStats()
        self._thread = threading.Thread(target=self._run, name="oculus-writer", daemon=True)
        self._samples: list = []
        self._events: list[Event] = []
        self._failed_flushes = 0
        self._rows_since_checkpoint = 0
        self._last_checkpoint = time.monotonic()
        self._last_release = time.monotonic()
        self._memory_limit = ""  # as SET memory_limit takes it, or empty while buffer releases are off
        self._pin_cursor = None  # the second connection buffers.release() needs
        self._checkpoint_log = RateLimitedLog(log, 600.0)
        self._full_log = RateLimitedLog(log, 60.0)
        self._error_log = RateLimitedLog(log, 60.0)
        self.rollups = RollupFolder()

    # -- producer side -----------------------------------------------------

    def put(self, item, timeout: float = 1.0) -> bool:
        """Queue samples (a list), an Event or a Command; wait up to `timeout` for room.

        Returns False when the queue stayed full: the item is then dropped,
        counted in stats.queue_full and logged (rate-limited).
        """
        try:
            self.queue.put(item, timeout=timeout)
            return True
        except queue.Full:
            self.stats.queue_full += 1
            self._full_log.warning("queue-full", "write queue full, item dropped capacity=%d dropped_total=%d",
                                   self.queue.maxsize, self.stats.queue_full)
            return False

    def run_command(self, function: Callable, description: str, timeout: float = 30.0):
        """Run `function(connection)` on the writer thread and return its result."""
        command = Command(function, description)
        if not self.put(command, timeout=timeout):
            raise TimeoutError(f"write queue stayed full; {description} was not queued")
        return command.wait(timeout)

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout: float) -> bool:
        """Ask the thread to drain the queue and flush, then wait; return False if it did not stop."""
        deadline = time.monotonic() + timeout
        try:
            self.queue.put(STOP, timeout=max(0.0, timeout))
        except queue.Full:
            log.error("writer stop request not queued: queue still full after %.1fs", timeout)
            return False
        self._thread.join(max(0.0, deadline - time.monotonic()))
        if self._thread.is_alive():
            log.error("writer thread did not stop within %.1fs; %d items still queued",
                      timeout, self.queue.qsize())
            return False
        return True

    def lagging_reason(self) -> str | None:
        """Return why the writer is not keeping up, or None when it is."""
        if not self.is_alive():
            return "writer thread is not running"
        if self.queue.qsize() >= 0.9 * self.queue.maxsize:
            return f"write queue is {self.queue.qsize()}/{self.queue.maxsize} full"
        # The writer flushes at least once per flush_interval, even with nothing to insert, so a long
        # silence means it is stuck in one step, such as a Command that does not return.
        idle = time.monotonic() - self.stats.last_flush_monotonic
        if idle > max(STALL_SECONDS, 10 * self.flush_interval):
            if self.queue.qsize():
                return f"writer has not flushed for {idle:.0f}s with {self.queue.qsize()} items queued"
            return f"writer has not finished a step for {idle:.0f}s"
        return None

    # -- writer thread -----------------------------------------------------

    def _run(self) -> None:
        log.info("writer started batch_size=%d flush_interval=%.3fs", self.batch_size, self.flush_interval)
        next_flush = time.monotonic() + self.flush_interval
        self.rollups.load(self.database.connection)
        self._start_buffer_releases()
        while True:
            timeout = max(0.0, next_flush - time.monotonic())
            try:
                item = self.queue.get(timeout=timeout)
            except queue.Empty:
                item = None

            try:
                if item is STOP:
                    self._drain_remaining()
                    self._flush()
                    self._fold_rollups(end=utc_now())
                    break
                if item is not None:
                    self._accept(item)
                if len(self._samples) >= self.batch_size or time.monotonic() >= next_flush:
                    self._flush()
                    next_flush = time.monotonic() + self.flush_interval
                if self.rollups.due():
                    self._fold_rollups()
                self._checkpoint_if_due()
                self._release_buffers_if_due()
            except Exception:  # the only writer must survive any bad item; the error is logged
                self.stats.insert_failures += 1
                self._error_log.error("writer-loop", "writer error, batch held for retry")
                log.debug("writer traceback", exc_info=True)
                next_flush = time.monotonic() + self.flush_interval
        self._stop_buffer_releases()
        log.info("writer stopped samples_written=%d batches=%d", self.stats.samples_written, self.stats.batches)

    def _drain_remaining(self) -> None:
        while True:
            try:
                item = self.queue.get_nowait()
            except queue.Empty:
                return
            if item is not STOP:
                self._accept(item)

    def _accept(self, item) -> None:
        if isinstance(item, list):
            self._samples.extend(item)
        elif isinstance(item, Event):
            if item.severity not in SEVERITIES or not item.kind or not item.message:
                # One bad event must not block every later batch in the same transaction.
                self.stats.items_rejected += 1
                log.error("event rejected: severity must be one of %s, got %r kind=%r",
                          ", ".join(SEVERITIES), item.severity, item.kind)
                return
            self._events.append(item)
        elif isinstance(item, Command):
            # Earlier samples go in first, so a command (backup, retention) sees them.
            self._flush()
            self._execute(item)
        else:
            log.error("writer received an unknown item type=%s; ignored", type(item).__name__)

    def _execute(self, command: Command) -> None:
        try:
            command.result = command.function(self.database.connection)
        except Exception as exc:  # handed back to the caller, never kills the writer
            command.error = exc
            log.error("writer command failed command=%r error=%s", command.description, exc)
        finally:
            command.done.set()

    def _checkpoint_if_due(self) -> None:
        """Write committed rows from memory to the database file every CHECKPOINT_EVERY seconds."""
        if not self._rows_since_checkpoint or time.monotonic() - self._last_checkpoint < CHECKPOINT_EVERY:
            return
        self._last_checkpoint = time.monotonic()
        try:
            self.database.connection.execute("CHECKPOINT")
        except duckdb.Error as exc:
            # For example a full disk. The rows stay committed in the WAL, and the writer tries again later.
            self._checkpoint_log.warning("checkpoint", "checkpoint failed, retried in %.0fs error=%s",
                                         CHECKPOINT_EVERY, exc)
            return
        self._rows_since_checkpoint = 0

    def _start_buffer_releases(self) -> None:
        try:
            self._pin_cursor = self.database.new_cursor()
            # fetchall(), not fetchone(): an unfinished result keeps its transaction open, and then every
            # CHECKPOINT fails with "other write transactions active" (duckdb 2.0.1).
            self._memory_limit = (f"{self.database.memory_limit}B" if self.database.memory_limit else
                                  self._pin_cursor.execute("SELECT current_setting('memory_limit')").fetchall()[0][0])
        except duckdb.Error as exc:
            log.warning("DuckDB buffer releases are off, so RSS may grow for hours under load error=%s", exc)

    def _release_buffers_if_due(self) -> None:
        """Drop the dead entries of DuckDB's eviction queues every RELEASE_BUFFERS_EVERY seconds."""
        if not self._memory_limit or time.monotonic() - self._last_release < RELEASE_BUFFERS_EVERY:
            return
        self._last_release = time.monotonic()
        try:
            outcome = release_buffers(self.database.connection, self._pin_cursor, self._memory_limit)
        except duckdb.Error as exc:
            self._error_log.error("release", "releasing DuckDB buffers failed, retried in %.0fs error=%s",
                                  RELEASE_BUFFERS_EVERY, exc)
            return
        if outcome == buffers.Outcome.SKIPPED:
            log.debug("DuckDB buffer release skipped: the query held open kept too little memory")
        elif outcome == buffers.Outcome.ACCEPTED:
            # For a moment the limit was 1 KiB, and a query on another thread may have failed. Never risk it again.
            self._memory_limit = ""
            log.warning("DuckDB accepted a 1 KiB memory limit for a moment; buffer releases are off until restart")

    def _stop_buffer_releases(self) -> None:
        if self._pin_cursor is not None:
            try:
                self._pin_cursor.close()
            except duckdb.Error:
                pass
            self._pin_cursor = None

    def _fold_rollups(self, end: datetime | None = None) -> None:
        try:
            self.rollups.fold(self.database.connection, end)
        except duckdb.Error as exc:  # the samples are stored; the next pass folds them
            self._error_log.error("rollups", "folding samples into rollups failed, retried next pass error=%s", exc)

    def _flush(self) -> None:
        if not self._samples and not self._events:
            self.stats.last_flush_monotonic = time.monotonic()
            return
        samples, events = self._samples, self._events
        try:
            self._insert(samples, events)
        except (duckdb.Error, TypeError, ValueError) as exc:
            self.stats.insert_failures += 1
            self._failed_flushes += 1
            self._error_log.error("insert", "insert failed, %d samples held for retry error=%s", len(samples), exc)
            if self._failed_flushes >= SALVAGE_AFTER:
                # A batch that keeps failing may hold one bad row: store the good rows one by one.
                samples, events = self._salvage(samples, events)
            else:
                self._drop_excess()
                return
        self._failed_flushes = 0
        self._samples, self._events = [], []
        self.stats.samples_written += len(samples)
        self._rows_since_checkpoint += len(samples) + len(events)
        self.stats.events_written += len(events)
        self.stats.batches += 1
        self.stats.last_batch_size = len(samples)
        self.stats.max_batch_size = max(self.stats.max_batch_size, len(samples))
        self.stats.last_flush_monotonic = time.monotonic()

    def _drop_excess(self) -> None:
        limit = max(MAX_HELD_ROWS, self.batch_size)
        for rows, kind in ((self._samples, "samples"), (self._events, "events")):
            if len(rows) > limit:
                dropped = len(rows) - limit
                del rows[:dropped]
                self.stats.rows_dropped += dropped
                log.error("dropped %d %s after repeated insert failures", dropped, kind)

    def _salvage(self, samples: list, events: list[Event]) -> tuple[list, list]:
        """Insert rows one at a time; drop (and count) the rows DuckDB rejects. Returns the stored rows."""
        stored_samples, stored_events = [], []
        for sample in samples:
            if self._try_insert([sample], []):
                stored_samples.append(sample)
        for event in events:
            if self._try_insert([], [event]):
                stored_events.append(event)
        dropped = len(samples) - len(stored_samples) + len(events) - len(stored_events)
        self.stats.rows_dropped += dropped
        log.error("dropped %d rows the database rejected repeatedly; stored %d", dropped,
                  len(stored_samples) + len(stored_events))
        return stored_samples, stored_events

    def _try_insert(self, samples: list, events: list) -> bool:
        try:
            self._insert(samples, events)
            return True
        except (duckdb.Error, TypeError, ValueError) as exc:
            log.error("row rejected by the database error=%s row=%r", exc, (samples or events)[0])
            return False

    def _insert(self, samples: list, events: list[Event]) -> None:
        conn = self.database.connection
        conn.execute("BEGIN TRANSACTION")
        try:
            if samples:
                _insert_samples(conn, samples, self.rollups)
            if events:
                insert_events(conn, events)
            conn.execute("COMMIT")
        except duckdb.Error:
            conn.execute("ROLLBACK")
            raise


def release_buffers(conn, pin_cursor, memory_limit: str) -> str:
    """Drop the staging table, then DuckDB's dead buffer entries (buffers.release); return its Outcome."""
    # Dropped, the staging table leaves no rows that the release would evict to the temp directory.
    conn.execute("DROP TABLE IF EXISTS writer_batch")
    return buffers.release(conn, pin_cursor, memory_limit)


def _clean(value):
    """Store NaN, infinity and non-numbers as NULL so every reader gets valid JSON."""
    if type(value) is float:  # the common case, without the cost of a call to float()
        return value if math.isfinite(value) else None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


_encode_tags = json.JSONEncoder(default=str, separators=(",", ":")).encode
# Most runs repeat the same tags ({"status": 200}), so their JSON text is cached by content.
_tags_cache: dict = {}
TAGS_CACHE_SIZE = 4096


def _tags_json(tags: dict) -> str | None:
    if not tags:
        return None
    try:
        # The value types are part of the key because True == 1 == 1.0 would otherwise share JSON text. One flat
        # tuple of the items, then their types, is unambiguous and quicker to build than a pair of tuples.
        key = (*tags.items(), *map(type, tags.values()))
        text = _tags_cache.get(key)
    except TypeError:  # a list or dict value cannot be hashed; such tags are encoded every time
        return _encode_tags(tags)
    if text is None:
        if len(_tags_cache) >= TAGS_CACHE_SIZE:
            _tags_cache.clear()
        text = _tags_cache[key] = _encode_tags(tags)
    return text


def _columns(samples: list) -> list:
    """Return the parameters of _STAGE_SAMPLES: one list per sample column, then one per run column.

    The samples of one collector run share their ts, category and duration,
    so each distinct (ts, category, duration_ms) goes in once and every
    sample carries the index of its run. Converting Python objects is the
    costly step of an insert, and an index costs half as much as a timestamp.
    """
    run_ts, run_category, run_duration, sample_run = [], [], [], []
    runs: dict = {}
    previous = None
    for sample in samples:
        # Identity first: a run's samples share the very same objects, so most samples skip the dict.
        if (previous is not None and sample.ts is previous.ts and sample.category is previous.category
                and sample.duration_ms is previous.duration_ms):
            sample_run.append(sample_run[-1])
        else:
            key = (sample.ts, sample.category, sample.duration_ms)
            index = runs.get(key)
            if index is None:
                index = runs[key] = len(run_ts)
                run_ts.append(sample.ts)
                run_category.append(sample.category)
                run_duration.append(sample.duration_ms)
            sample_run.append(index)
        previous = sample
    return [
        sample_run,
        [s.symbol for s in samples],
        [_clean(s.value) for s in samples],
        [bool(s.success) for s in samples],
        [_tags_json(s.tags) for s in samples],
        run_ts,
        run_category,
        run_duration,
    ]


# Each batch is converted from Python lists into the TEMP table writer_batch once, and samples and latest are
# then filled from it in SQL. Converting Python objects is the costly step of an insert, so this saves
# converting the newest rows a second time for latest. A TEMP table belongs to the writer's connection alone.
#
# It is replaced with every batch instead of filled and emptied, because DuckDB keeps the deleted rows of a
# TEMP table in memory. An INSERT and DELETE of 400 rows, 6,000 times over, left 35 MiB more RSS than
# replacing the table did, and took twice as long (duckdb 2.0.1).
#
# Each sample looks up its run's ts, category and duration_ms by index in the run lists. Timed alone on 2 cores
# with a 5,000-sample batch of 50 runs, this statement took about 9 ms, against 15 ms when it joined the
# samples to the unnested run lists (duckdb 2.0.1).
_STAGE_SAMPLES = """
    CREATE OR REPLACE TEMP TABLE writer_batch AS
    SELECT position::INTEGER AS position, ($6::TIMESTAMP[])[run_index + 1] AS ts,
           ($7::VARCHAR[])[run_index + 1] AS category, symbol, value, success,
           ($8::DOUBLE[])[run_index + 1] AS duration_ms, tags
    FROM (
        SELECT unnest(range(len($1))) AS position, unnest($1::INTEGER[]) AS run_index,
               unnest($2::VARCHAR[]) AS symbol, unnest($3::DOUBLE[]) AS value, unnest($4::BOOLEAN[]) AS success,
               unnest($5::VARCHAR[])::JSON AS tags
    )
"""


def _insert_samples(conn, samples: list, rollups: RollupFolder) -> None:
    """Insert `samples`, update `latest` and merge late samples into the rollups; call inside the transaction."""
    columns = _columns(samples)
    conn.execute(_STAGE_SAMPLES, columns)
    conn.execute("""
        INSERT INTO samples (ts, category, symbol, value, success, duration_ms, tags)
        SELECT ts, category, symbol, value, success, duration_ms, tags FROM writer_batch ORDER BY position
    """)
    _upsert_latest(conn)
    # columns[5] is the runs' ts list (see _columns). Every sample's ts is in it, and it is far shorter.
    run_timestamps = columns[5]
    rollups.merge_late(conn, min(run_timestamps), max(run_timestamps))


def _upsert_latest(conn) -> None:
    """Keep the newest sample per symbol, and the one before it for trend arrows.

    Within a batch, the newest sample is the one with the latest ts (the later one in the batch on a tie),
    and the previous one is the next in that order. One MERGE computes the batch's newest rows once and
    updates or inserts them. For a batch of 2,000 symbols, an UPDATE and an INSERT of the missing symbols
    from a TEMP table of those rows took about 20 % longer, and INSERT ... ON CONFLICT several times longer
    than those two (duckdb 2.0.1).
    """
    conn.execute(f"""
        MERGE INTO latest
        USING ({_NEWEST_PER_SYMBOL}) AS batch ON latest.symbol = batch.symbol
        -- A backfilled or late sample is history, not the newest value.
        WHEN MATCHED AND batch.ts >= latest.ts THEN UPDATE SET
            prev_value = CASE WHEN batch.prev_ts IS NOT NULL THEN batch.prev_value ELSE latest.value END,
            prev_ts    = coalesce(batch.prev_ts, latest.ts),
            last_ok_ts = greatest(batch.last_ok_ts, latest.last_ok_ts),
            category = batch.category, ts = batch.ts, value = batch.value,
            success = batch.success, duration_ms = batch.duration_ms, tags = batch.tags
        WHEN NOT MATCHED THEN INSERT
            (symbol, category, ts, value, success, duration_ms, tags, prev_value, prev_ts, last_ok_ts)
            VALUES (batch.symbol, batch.category, batch.ts, batch.value, batch.success, batch.duration_ms,
                    batch.tags, batch.prev_value, batch.prev_ts, batch.last_ok_ts)
    """)


# The positions of the newest two rows per symbol, ordered by (ts, position), joined back to their rows.
# A grouped arg_max took about half the time of the same result from window functions (row_number, lead)
# on a 5,000-row batch of 2,000 symbols (duckdb 2.0.1).
_NEWEST_PER_SYMBOL = """
    WITH newest AS (
        SELECT symbol, arg_max(position, (ts, position), 2) AS positions,
               max(ts) FILTER (WHERE success) AS last_ok_ts
        FROM writer_batch
        GROUP BY symbol
    )
    SELECT batch_row.symbol, batch_row.category, batch_row.ts, batch_row.value, batch_row.success,
           batch_row.duration_ms, batch_row.tags,
           previous.value AS prev_value, previous.ts AS prev_ts, newest.last_ok_ts
    FROM newest
    JOIN writer_batch AS batch_row ON batch_row.position = newest.positions[1]
    LEFT JOIN writer_batch AS previous ON previous.position = newest.positions[2]
"""


def insert_events(conn, events: list[Event]) -> None:
    """Insert `events`; call only on the writer thread, inside its transaction or a Command."""
    conn.execute("""
        INSERT INTO events (ts, kind, severity, source, message, payload)
        SELECT unnest($1::TIMESTAMP[]), unnest($2::VARCHAR[]), unnest($3::VARCHAR[]),
               unnest($4::VARCHAR[]), unnest($5::VARCHAR[]), unnest($6::VARCHAR[])::JSON
    """, [
        [e.ts for e in events], [e.kind for e in events], [e.severity for e in events],
        [e.source for e in events], [e.message for e in events],
        [json.dumps(e.payload, default=str) if e.payload is not None else None for e in events],
    ])


def apply_retention(conn, samples_cutoff: datetime, events_cutoff: datetime) -> tuple[int, int]:
    """Delete samples and events older than the cutoffs; return how many rows went."""
    # Daily closes (one row per asset and day) outlive raw retention: moving averages need months of them.
    samples = conn.execute(
        f"DELETE FROM samples WHERE ts < ? AND symbol NOT LIKE '%.{LONG_LIVED_KIND}.%'", [samples_cutoff]
    ).fetchone()[0]
    events = conn.execute("DELETE FROM events WHERE ts < ?", [events_cutoff]).fetchone()[0]
    record_mark(conn, SAMPLES_DELETED_MARK, samples_cutoff)
    if samples or events:
        # A checkpoint lets DuckDB reuse the freed blocks, so the file stops growing.
        conn.execute("CHECKPOINT")
    return samples, events


def retention_command(retention: float, events_retention: float):
    def run(conn):
        now = utc_now()
        samples, events = apply_retention(conn, now - timedelta(seconds=retention),
                                          now - timedelta(seconds=events_retention))
        log.info("retention applied samples_deleted=%d events_deleted=%d", samples, events)
        return samples, events
    return run
