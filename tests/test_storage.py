"""Storage: migrations, the single writer, retention and read queries, on real DuckDB files."""

from __future__ import annotations

import json
import logging
import math
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from oculus.collectors.base import Sample
from oculus.storage import Database, DatabaseLockedError, queries, utc_now
from oculus.storage.migrations import MIGRATIONS
from oculus.storage import writer as writer_module
from oculus.storage.writer import Event, Writer, retention_command
from tests.servers import wait_for

KNOWN_VERSION = MIGRATIONS[-1][0]
SYMBOL = "net.tcp.db.rtt_ms"
# A fixed origin for the query tests, so every expected timestamp is exact.
T0 = datetime(2026, 1, 1, 12, 0, 0)


def make_sample(symbol: str = SYMBOL, value=1.0, *, ts: datetime | None = None, success: bool = True,
                category: str = "net", tags: dict | None = None) -> Sample:
    if tags is None:
        tags = {"target": "127.0.0.1:5432"}
    return Sample(ts or utc_now(), category, symbol, value, success, 2.5, tags)


def count_rows(database: Database, table: str) -> int:
    return database.reader().execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def latest_row(database: Database, symbol: str) -> dict:
    rows = [row for row in queries.latest(database.reader()) if row["symbol"] == symbol]
    assert len(rows) == 1, f"expected one latest row for {symbol}, got {rows}"
    return rows[0]


@pytest.fixture
def database(db_path):
    database = Database(db_path)
    database.open()
    yield database
    database.close()


@pytest.fixture
def start_writer(database):
    """Start writers on the test database; each is stopped before the database closes."""
    writers = []

    def start(batch_size: int = 1000, flush_interval: float = 60.0, queue_size: int = 1000) -> Writer:
        writer = Writer(database, queue_size, batch_size, flush_interval)
        writer.start()
        writers.append(writer)
        return writer

    yield start
    for writer in writers:
        if writer.is_alive():
            writer.stop(5.0)


# -- migrations ------------------------------------------------------------


@pytest.mark.parametrize("name, kind", [
    ("samples", "BASE TABLE"),
    ("latest", "BASE TABLE"),
    ("events", "BASE TABLE"),
    ("schema_migrations", "BASE TABLE"),
    ("metrics", "VIEW"),
])
def test_migrations_create_relation(database, name, kind):
    rows = database.reader().execute(
        "SELECT table_type FROM information_schema.tables WHERE table_name = ?", [name]).fetchall()
    assert rows == [(kind,)]


def test_migrations_reopen_is_idempotent(db_path):
    first = Database(db_path)
    first.open()
    first.connection.execute("INSERT INTO samples VALUES (?, 'net', ?, 1.0, true, 2.0, NULL)", [T0, SYMBOL])
    first.close()

    second = Database(db_path)
    second.open()
    versions = second.connection.execute("SELECT version FROM schema_migrations ORDER BY version").fetchall()
    samples = second.connection.execute("SELECT count(*) FROM samples").fetchone()[0]
    second.close()

    assert second.schema_version == KNOWN_VERSION
    assert versions == [(number,) for number, _, _ in MIGRATIONS]
    assert samples == 1


def test_migrations_reject_newer_schema(db_path):
    database = Database(db_path)
    database.open()
    database.connection.execute("INSERT INTO schema_migrations (version, name) VALUES (99, 'from the future')")
    database.close()

    newer = Database(db_path)
    with pytest.raises(RuntimeError) as raised:
        newer.open()

    message = str(raised.value)
    assert "schema version 99" in message
    assert f"({KNOWN_VERSION})" in message, "the message should name the version this Oculus knows"
    assert newer.path in message
    assert not newer.is_open


# -- writer ----------------------------------------------------------------


def test_writer_batch_reaches_metrics(database, start_writer):
    writer = start_writer()
    ts = utc_now()
    writer.put([make_sample(value=12.5, ts=ts), make_sample("net.tcp.db.loss", 0.0, ts=ts, success=False)])
    assert writer.stop(5.0)

    cursor = database.reader().execute("SELECT * FROM metrics ORDER BY symbol DESC")
    columns = [d[0] for d in cursor.description]
    rows = [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]

    assert {"ts", "category", "symbol", "value", "success", "duration_ms", "tags"} <= set(columns)
    assert len(rows) == 2
    assert rows[0]["ts"] == ts
    assert rows[0]["category"] == "net"
    assert rows[0]["symbol"] == SYMBOL
    assert rows[0]["value"] == 12.5
    assert rows[0]["success"] is True
    assert rows[0]["duration_ms"] == 2.5
    assert json.loads(rows[0]["tags"]) == {"target": "127.0.0.1:5432"}
    assert rows[1]["success"] is False
    assert writer.stats.samples_written == 2


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf], ids=["nan", "inf", "-inf"])
def test_writer_stores_nonfinite_as_null(database, start_writer, value):
    writer = start_writer()
    writer.put([make_sample(value=value)])
    assert writer.stop(5.0)

    stored = database.reader().execute("SELECT value FROM samples").fetchall()
    assert stored == [(None,)]
    assert latest_row(database, SYMBOL)["value"] is None


def test_writer_flushes_at_batch_size(database, start_writer):
    writer = start_writer(batch_size=5, flush_interval=60.0)

    writer.put([make_sample(value=float(i)) for i in range(4)])
    time.sleep(0.3)
    assert count_rows(database, "samples") == 0, "4 of 5 samples should wait for the batch or the interval"

    writer.put([make_sample(value=4.0)])
    wait_for(lambda: count_rows(database, "samples") == 5, timeout=5.0, what="a full batch inserted")
    assert writer.stats.batches == 1


def test_writer_flushes_after_interval(database, start_writer):
    writer = start_writer(batch_size=1000, flush_interval=0.2)
    writer.put([make_sample(value=float(i)) for i in range(3)])

    wait_for(lambda: count_rows(database, "samples") == 3, timeout=5.0, what="a partial batch inserted")
    # The writer updates its statistics just after the commit that made the rows visible.
    assert wait_for(lambda: writer.stats.last_batch_size == 3, timeout=5.0, what="batch statistics updated")


def test_writer_checkpoints_wal(database, start_writer, monkeypatch):
    monkeypatch.setattr(writer_module, "CHECKPOINT_EVERY", 0.2)
    wal = Path(database.path + ".wal")
    reader = database.reader()
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM samples").fetchall()  # an open read transaction does not block it
    writer = start_writer(flush_interval=0.05)

    writer.put([make_sample(value=float(i)) for i in range(100)])

    wait_for(lambda: writer.stats.samples_written == 100, timeout=5.0, what="100 samples written")
    wait_for(lambda: not wal.exists() or wal.stat().st_size == 0, timeout=5.0, what="the WAL checkpointed")
    reader.execute("COMMIT")
    assert count_rows(database, "samples") == 100


def test_writer_checkpoint_without_memory_limit(database, start_writer, monkeypatch, caplog):
    # Without database.memory_limit the writer reads DuckDB's limit on its second cursor at start; a
    # transaction left open there made every CHECKPOINT fail with "other write transactions active".
    monkeypatch.setattr(writer_module, "CHECKPOINT_EVERY", 0.2)
    caplog.set_level(logging.WARNING, logger="oculus.storage.writer")
    writer = start_writer(batch_size=10, flush_interval=0.05)

    for index in range(6):
        writer.put([make_sample(value=float(index))])
        time.sleep(0.1)
    wait_for(lambda: writer.stats.samples_written == 6, timeout=5.0, what="6 samples written")
    time.sleep(0.3)
    assert writer.stop(5.0)

    failures = [record.getMessage() for record in caplog.records if "checkpoint failed" in record.getMessage()]
    assert failures == []


def test_memory_limit_bounds_cached_blocks(db_path):
    limit = 16 * 2**20
    database = Database(db_path, memory_limit=limit)
    database.open()
    connection = database.connection
    try:
        assert connection.execute("SELECT current_setting('memory_limit')").fetchone()[0] == "16.0 MiB"
        # About 20 MiB of table blocks without a limit: more than the limit, so DuckDB must evict some.
        for _ in range(8):
            connection.execute("INSERT INTO samples (ts, category, symbol, value, success) "
                               "SELECT now() + to_seconds(range), 'net', 'net.tcp.t' || (range % 1000) || '.rtt_ms', "
                               "random(), true FROM range(250000)")
            connection.execute("CHECKPOINT")
        cached = connection.execute("SELECT memory_usage_bytes FROM duckdb_memory() WHERE tag = 'BASE_TABLE'")
        assert cached.fetchone()[0] <= limit

        groups = connection.execute("SELECT count(DISTINCT symbol), count(*) FROM samples").fetchone()
        assert groups == (1000, 2_000_000), "a query over more data than the limit must still run"
    finally:
        database.close()


def write_two_batches(writer: Writer, first: list, second: list) -> None:
    """Put `first`, wait until the writer has inserted it, put `second`, then stop the writer."""
    writer.put(first)
    wait_for(lambda: writer.stats.batches == 1, timeout=5.0, what="first batch inserted")
    writer.put(second)
    assert writer.stop(5.0)


def test_latest_tracks_previous_across_batches(database, start_writer):
    writer = start_writer(batch_size=1)
    t1 = utc_now()
    t2 = t1 + timedelta(seconds=1)

    write_two_batches(writer, [make_sample(value=10.0, ts=t1)], [make_sample(value=20.0, ts=t2)])

    row = latest_row(database, SYMBOL)
    assert row["value"] == 20.0
    assert row["ts"] == t2
    assert row["prev_value"] == 10.0
    assert row["prev_ts"] == t1
    assert count_rows(database, "latest") == 1


def test_latest_tracks_previous_within_batch(database, start_writer):
    writer = start_writer()
    t1 = utc_now()
    t2, t3 = t1 + timedelta(seconds=1), t1 + timedelta(seconds=2)
    writer.put([
        make_sample(value=1.0, ts=t1),
        make_sample("net.tcp.cache.rtt_ms", 7.0, ts=t1),
        make_sample(value=2.0, ts=t2),
        make_sample(value=3.0, ts=t3),
    ])
    assert writer.stop(5.0)

    row = latest_row(database, SYMBOL)
    other = latest_row(database, "net.tcp.cache.rtt_ms")
    assert row["value"] == 3.0
    assert row["prev_value"] == 2.0
    assert row["prev_ts"] == t2
    assert other["prev_value"] is None
    assert other["prev_ts"] is None
    assert count_rows(database, "latest") == 2


def test_latest_ignores_late_sample(database, start_writer):
    writer = start_writer(batch_size=1)
    t1 = utc_now()
    t2 = t1 + timedelta(seconds=1)

    write_two_batches(writer, [make_sample(value=20.0, ts=t2)],
                      [make_sample(value=10.0, ts=t1), make_sample("net.tcp.cache.rtt_ms", 7.0, ts=t1)])

    row = latest_row(database, SYMBOL)
    assert row["value"] == 20.0
    assert row["ts"] == t2
    assert row["prev_value"] is None
    assert row["prev_ts"] is None
    assert latest_row(database, "net.tcp.cache.rtt_ms")["value"] == 7.0
    assert count_rows(database, "samples") == 3


def test_latest_last_ok_ignores_failures(database, start_writer):
    writer = start_writer(batch_size=1)
    t1 = utc_now()
    t2 = t1 + timedelta(seconds=1)

    # SYMBOL fails in a later batch, the cache symbol fails within one batch, and the queue symbol never succeeds.
    writer.put([make_sample(value=5.0, ts=t1)])
    wait_for(lambda: writer.stats.batches == 1, timeout=5.0, what="first batch inserted")
    writer.put([make_sample(value=None, ts=t2, success=False)])
    writer.put([make_sample("net.tcp.cache.rtt_ms", 1.0, ts=t1),
                make_sample("net.tcp.cache.rtt_ms", None, ts=t2, success=False),
                make_sample("net.tcp.queue.rtt_ms", None, ts=t2, success=False)])
    assert writer.stop(5.0)

    assert latest_row(database, SYMBOL)["success"] is False
    assert latest_row(database, SYMBOL)["last_ok_ts"] == t1
    assert latest_row(database, "net.tcp.cache.rtt_ms")["last_ok_ts"] == t1
    assert latest_row(database, "net.tcp.queue.rtt_ms")["last_ok_ts"] is None


def test_writer_stores_event(database, start_writer):
    writer = start_writer()
    event = Event("system", "warn", "disk almost full", source="test", payload={"free_mb": 12})
    writer.put(event)
    assert writer.stop(5.0)

    rows = database.reader().execute(
        "SELECT ts, kind, severity, source, message, payload::VARCHAR FROM events").fetchall()
    assert rows == [(event.ts, "system", "warn", "test", "disk almost full", '{"free_mb": 12}')]
    assert writer.stats.events_written == 1


def test_command_runs_on_writer_thread(start_writer):
    writer = start_writer()
    writer.put([make_sample(value=float(i)) for i in range(3)])

    def count_samples(connection):
        return threading.current_thread().name, connection.execute("SELECT count(*) FROM samples").fetchone()[0]

    thread_name, count = writer.run_command(count_samples, "count samples", timeout=5.0)
    assert thread_name == "oculus-writer"
    assert count == 3, "a command should see the samples queued before it"


def test_command_error_keeps_writer(database, start_writer):
    writer = start_writer()

    with pytest.raises(duckdb.CatalogException):
        writer.run_command(lambda connection: connection.execute("SELECT * FROM no_such_table"),
                           "broken query", timeout=5.0)

    assert writer.is_alive()
    writer.put([make_sample()])
    assert writer.stop(5.0)
    assert count_rows(database, "samples") == 1


def test_stop_drains_queue(database):
    writer = Writer(database, queue_size=1000, batch_size=10_000, flush_interval=60.0)
    for i in range(50):
        writer.put([make_sample(value=float(i)), make_sample("net.tcp.cache.rtt_ms", float(i))])
    writer.put(Event("system", "info", "queued before stop"))

    writer.start()
    assert writer.stop(5.0)
    assert count_rows(database, "samples") == 100
    assert count_rows(database, "events") == 1


def test_put_full_queue_returns_false(database):
    writer = Writer(database, queue_size=2, batch_size=10, flush_interval=60.0)  # never started

    assert writer.put([make_sample()], timeout=0.01)
    assert writer.put([make_sample()], timeout=0.01)
    assert not writer.put([make_sample()], timeout=0.01)
    assert writer.stats.queue_full == 1


def test_writer_invalid_event_spares_samples(database, start_writer):
    writer = start_writer(batch_size=1, flush_interval=0.05)
    writer.put(Event("system", "warning", "severity outside info, warn, error, critical"))
    writer.put([make_sample()])
    writer.stop(5.0)

    assert count_rows(database, "samples") == 1


def test_retention_deletes_only_old_rows(database, start_writer):
    writer = start_writer()
    now = utc_now()
    recent_sample, recent_event = now - timedelta(hours=1), now - timedelta(days=1)
    writer.put([make_sample(ts=now - timedelta(days=8)), make_sample(ts=recent_sample)])
    writer.put(Event("alert", "error", "old alert", ts=now - timedelta(days=100)))
    writer.put(Event("alert", "error", "recent alert", ts=recent_event))

    deleted = writer.run_command(retention_command(7 * 86400.0, 90 * 86400.0), "retention", timeout=5.0)
    samples = database.reader().execute("SELECT ts FROM samples").fetchall()
    events = database.reader().execute("SELECT ts FROM events").fetchall()

    assert deleted == (1, 1)
    assert samples == [(recent_sample,)]
    assert events == [(recent_event,)]


# -- read queries ----------------------------------------------------------

QUERY_ROWS = [  # (seconds after T0, category, symbol)
    (0, "net", "net.tcp.db.rtt_ms"),
    (10, "net", "net.http.api.status"),
    (20, "crypto", "crypto.price.btc_usd"),
    (30, "net", "net.tcp.db_replica.rtt_ms"),
    (40, "net", "net.tcp.dbxreplica.rtt_ms"),
    (50, "net", "net.tcp.db.rtt_ms"),
]


@pytest.fixture
def query_database(database, start_writer):
    writer = start_writer()
    writer.put([make_sample(symbol, float(offset), ts=T0 + timedelta(seconds=offset), category=category)
                for offset, category, symbol in QUERY_ROWS])
    assert writer.stop(5.0)
    return database


@pytest.mark.parametrize("filters, expected", [
    ({}, [50, 40, 30, 20, 10, 0]),
    ({"symbol": "net.tcp.db.rtt_ms"}, [50, 0]),
    ({"symbol": "net.tcp.*"}, [50, 40, 30, 0]),
    ({"symbol": "net.tcp.db_*"}, [30]),
    ({"symbol": "*.status"}, [10]),
    ({"category": "crypto"}, [20]),
    ({"since": T0 + timedelta(seconds=30)}, [50, 40, 30]),
    ({"until": T0 + timedelta(seconds=20)}, [10, 0]),
    ({"category": "net", "since": T0 + timedelta(seconds=5), "until": T0 + timedelta(seconds=45)}, [40, 30, 10]),
    ({"limit": 2}, [50, 40]),
], ids=["all", "symbol-exact", "symbol-wildcard", "underscore-literal", "leading-wildcard", "category",
        "since-inclusive", "until-exclusive", "combined", "limit"])
def test_queries_samples_filters(query_database, filters, expected):
    rows = queries.samples(query_database.reader(), **filters)
    offsets = [int((row["ts"] - T0).total_seconds()) for row in rows]
    assert offsets == expected


# -- file lock -------------------------------------------------------------

HOLDER_SCRIPT = """
import pathlib, sys, time
import duckdb
connection = duckdb.connect(sys.argv[1])
pathlib.Path(sys.argv[2]).touch()
time.sleep(30)
"""


def test_locked_file_names_path_and_pid(db_path, tmp_path):
    ready = tmp_path / "holder-ready"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER_SCRIPT, db_path, str(ready)],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: ready.exists() or holder.poll() is not None, timeout=15.0, what="holder process started")
        assert ready.exists(), f"holder process failed: {holder.stderr.read().decode(errors='replace')}"

        database = Database(db_path)
        with pytest.raises(DatabaseLockedError) as raised:
            database.open()
    finally:
        holder.kill()
        holder.wait(5.0)
        holder.stderr.close()

    message = str(raised.value)
    assert database.path in message
    assert f"PID {holder.pid}" in message


def test_writer_salvages_batch_with_bad_row(database, start_writer):
    writer = start_writer(flush_interval=0.05)
    bad = make_sample("net.tcp.bad.rtt_ms", ts="not a timestamp")

    writer.put([make_sample(value=1.0), bad, make_sample(value=2.0)])

    assert wait_for(lambda: count_rows(database, "samples") == 2, timeout=10)
    assert writer.stats.rows_dropped == 1
    assert writer.is_alive()


@pytest.mark.parametrize(("batch_size", "kept"), [(4, 10), (25, 25)])
def test_writer_held_rows_limit(database, monkeypatch, batch_size, kept):
    monkeypatch.setattr(writer_module, "MAX_HELD_ROWS", 10)
    writer = Writer(database, 100, batch_size, 1.0)  # not started: _drop_excess runs on this thread
    writer._samples = [make_sample(value=float(index)) for index in range(30)]

    writer._drop_excess()

    assert len(writer._samples) == kept
    assert writer._samples[0].value == float(30 - kept), "the oldest samples are dropped first"
    assert writer.stats.rows_dropped == 30 - kept


def test_retention_keeps_daily_closes(database, start_writer):
    writer = start_writer()
    old = utc_now() - timedelta(days=60)
    writer.put([make_sample("crypto.close_1d.btc_usd", 70000.0, ts=old, category="crypto"),
                make_sample("crypto.price.btc_usd", 70000.0, ts=old, category="crypto")])

    writer.run_command(retention_command(7 * 86400.0, 90 * 86400.0), "retention", timeout=5.0)
    symbols = database.reader().execute("SELECT symbol FROM samples").fetchall()

    assert symbols == [("crypto.close_1d.btc_usd",)]
