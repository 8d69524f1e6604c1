"""Rollups: the writer's 1-minute and 1-hour aggregates, their migration, retention and how readers pick them."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

import duckdb
import pytest

from oculus.collectors.base import Sample
from oculus.storage import Database, queries, utc_now
from oculus.storage.migrations import MIGRATIONS, migrate
from oculus.storage.rollups import (COMPLETE_MARK, HOUR, MINUTE, SAMPLES_DELETED_MARK, RollupFolder,
                                    apply_rollup_retention, marks, pick_resolution, record_mark, rollup_series)
from oculus.storage.writer import Writer, retention_command

T0 = datetime(2026, 1, 1, 12, 0, 0)
RAW = SAMPLES_DELETED_MARK
MINUTE_DELETED = MINUTE.deleted_mark
COLUMNS = "symbol, bucket, count, failures, value_count, min, max, round(sum, 6), last, last_ts"


def expected_rollups(connection, seconds: int) -> list[tuple]:
    """Aggregate the raw samples table directly: what the rollup table must contain."""
    return connection.execute(f"""
        SELECT symbol, time_bucket(INTERVAL {seconds} SECOND, ts) AS bucket, count(*),
               count(*) FILTER (WHERE NOT success), count(value) FILTER (WHERE success),
               min(value) FILTER (WHERE success), max(value) FILTER (WHERE success),
               round(sum(value) FILTER (WHERE success), 6),
               arg_max(value, ts) FILTER (WHERE success AND value IS NOT NULL),
               max(ts) FILTER (WHERE success AND value IS NOT NULL)
        FROM samples GROUP BY ALL ORDER BY symbol, bucket
    """).fetchall()


def stored_rollups(connection, table: str) -> list[tuple]:
    return connection.execute(f"SELECT {COLUMNS} FROM {table} ORDER BY symbol, bucket").fetchall()


def random_samples(count: int, seed: int) -> list[Sample]:
    """Samples of three symbols over two hours, in random order, with failures and NULL values.

    Timestamps are distinct, so the last value of each bucket is unambiguous.
    """
    generator = random.Random(seed)
    samples = []
    for offset in generator.sample(range(7200 * 1000), count):
        symbol = generator.choice(("net.tcp.a.rtt_ms", "net.tcp.b.rtt_ms", "crypto.price.btc_usd"))
        ts = T0 + timedelta(milliseconds=offset)
        success = generator.random() > 0.1
        value = None if generator.random() < 0.05 else round(generator.uniform(-50, 150), 3)
        samples.append(Sample(ts, symbol.split(".")[0], symbol, value, success, 1.0, {}))
    return samples


@pytest.fixture
def database(db_path):
    database = Database(db_path)
    database.open()
    yield database
    database.close()


def write(database: Database, batches: list[list[Sample]]) -> None:
    """Write each batch as its own flush, so rows of one bucket arrive in several batches."""
    writer = Writer(database, 1000, 100_000, 60.0)
    writer.start()
    try:
        for batch in batches:
            writer.put(batch)
            writer.run_command(lambda connection: None, "flush", timeout=10.0)
    finally:
        assert writer.stop(10.0)


def set_watermark(database: Database, ts: datetime) -> None:
    database.connection.execute("UPDATE watermarks SET ts = ? WHERE name = ?", [ts, COMPLETE_MARK])


@pytest.mark.parametrize("table, seconds", [("rollups_1m", 60), ("rollups_1h", 3600)])
def test_late_samples_merged_per_batch(database, table, seconds):
    samples = random_samples(3000, seed=7)  # two hours on 2026-01-01, before the watermark of a new database
    write(database, [samples[start:start + 250] for start in range(0, len(samples), 250)])

    connection = database.reader()
    assert stored_rollups(connection, table) == expected_rollups(connection, seconds)


def insert_raw(database: Database, samples: list[Sample]) -> None:
    """Insert samples into the samples table directly, as committed rows the writer has not folded yet."""
    database.connection.executemany("INSERT INTO samples (ts, category, symbol, value, success) VALUES (?, ?, ?, ?, ?)",
                                    [(s.ts, s.category, s.symbol, s.value, s.success) for s in samples])


@pytest.mark.parametrize("table, seconds", [("rollups_1m", 60), ("rollups_1h", 3600)])
def test_fold_pass_equals_raw_aggregates(database, table, seconds):
    set_watermark(database, T0)
    samples = random_samples(3000, seed=5)
    insert_raw(database, samples[:1500])
    folder = RollupFolder()
    folder.load(database.connection)

    assert folder.fold(database.connection, end=T0 + timedelta(minutes=70)) > 0
    assert marks(database.reader())[COMPLETE_MARK] == T0 + timedelta(minutes=70)
    # Through the writer: samples before the new watermark are merged, the rest folded when it stops.
    write(database, [samples[1500:]])

    connection = database.reader()
    assert stored_rollups(connection, table) == expected_rollups(connection, seconds)


def test_fold_pass_counts_each_sample_once(database):
    set_watermark(database, T0)
    insert_raw(database, random_samples(600, seed=9))
    folder = RollupFolder()
    folder.load(database.connection)
    for minutes in (10, 10, 45, 130):
        folder.fold(database.connection, end=T0 + timedelta(minutes=minutes))

    connection = database.reader()
    assert connection.execute("SELECT sum(count) FROM rollups_1m").fetchone()[0] == 600
    assert connection.execute("SELECT sum(count) FROM rollups_1h").fetchone()[0] == 600


def test_writer_stop_folds_ended_minutes(database):
    now = utc_now()
    set_watermark(database, now - timedelta(hours=1))
    write(database, [[Sample(now - timedelta(minutes=5), "net", "net.tcp.a.rtt_ms", 4.0, True, 1.0, {})]])

    rows = database.reader().execute("SELECT count, last FROM rollups_1m").fetchall()
    assert rows == [(1, 4.0)]


def test_writer_rollups_late_sample_keeps_last(database):
    newer = Sample(T0 + timedelta(seconds=50), "net", "net.tcp.a.rtt_ms", 2.0, True, 1.0, {})
    older = Sample(T0 + timedelta(seconds=10), "net", "net.tcp.a.rtt_ms", 1.0, True, 1.0, {})
    failed = Sample(T0 + timedelta(seconds=55), "net", "net.tcp.a.rtt_ms", None, False, 1.0, {})
    write(database, [[newer], [older], [failed]])

    row = database.reader().execute("SELECT count, failures, min, max, last, last_ts FROM rollups_1m").fetchall()
    assert row == [(3, 1, 1.0, 2.0, 2.0, newer.ts)]


def test_migration_backfills_rollups(db_path):
    connection = duckdb.connect(db_path)
    connection.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name VARCHAR NOT NULL, "
                       "applied_at TIMESTAMP NOT NULL DEFAULT now())")
    rollup_version = next(number for number, name, _ in MIGRATIONS if name == "rollups and watermarks")
    for number, name, sql in MIGRATIONS:
        if number < rollup_version:
            connection.execute(sql)
            connection.execute("INSERT INTO schema_migrations (version, name) VALUES (?, ?)", [number, name])
    rows = [(s.ts, s.category, s.symbol, s.value, s.success) for s in random_samples(500, seed=3)]
    connection.executemany("INSERT INTO samples (ts, category, symbol, value, success) VALUES (?, ?, ?, ?, ?)", rows)

    migrate(connection)

    assert stored_rollups(connection, "rollups_1m") == expected_rollups(connection, 60)
    assert stored_rollups(connection, "rollups_1h") == expected_rollups(connection, 3600)
    connection.close()


def test_rollup_views_average_and_tie(database):
    write(database, [[Sample(T0, "net", "net.tcp.a.rtt_ms", value, True, 1.0, {}) for value in (1.0, 2.0, 6.0)]])

    row = database.reader().execute("SELECT ts, category, symbol, avg, min, max, last, count, failures "
                                    "FROM metrics_1h").fetchall()
    assert row == [(T0, "net", "net.tcp.a.rtt_ms", 3.0, 1.0, 6.0, 6.0, 3, 0)]


# -- retention and watermarks -------------------------------------------------------


def test_rollup_retention_deletes_old_buckets(database):
    now = utc_now()
    old, recent = now - timedelta(days=40), now - timedelta(days=2)
    write(database, [[Sample(ts, "net", "net.tcp.a.rtt_ms", 1.0, True, 1.0, {}) for ts in (old, recent)]])

    connection = database.connection
    deleted = apply_rollup_retention(connection, now - timedelta(days=30), now - timedelta(days=365))

    assert deleted == (1, 0)
    assert connection.execute("SELECT count(*) FROM rollups_1m").fetchone()[0] == 1
    assert connection.execute("SELECT count(*) FROM rollups_1h").fetchone()[0] == 2
    assert marks(connection)["rollups_1m.deleted_before"] == now - timedelta(days=30)


def test_raw_retention_records_cutoff(database):
    writer = Writer(database, 1000, 1000, 60.0)
    writer.start()
    try:
        writer.run_command(retention_command(7 * 86400.0, 90 * 86400.0), "retention", timeout=5.0)
    finally:
        writer.stop(5.0)

    cutoff = marks(database.reader())[SAMPLES_DELETED_MARK]
    assert abs((utc_now() - timedelta(days=7) - cutoff).total_seconds()) < 60


def test_watermark_never_moves_back(database):
    record_mark(database.connection, SAMPLES_DELETED_MARK, T0)
    record_mark(database.connection, SAMPLES_DELETED_MARK, T0 - timedelta(days=1))
    assert marks(database.reader())[SAMPLES_DELETED_MARK] == T0


# -- reading: which source covers a range -----------------------------------------------


@pytest.mark.parametrize("known, since, step, expected", [
    ({}, T0 - timedelta(days=365), 86400, (None, 86400)),
    ({RAW: T0}, T0, 300, (None, 300)),
    ({RAW: T0}, T0 - timedelta(hours=1), 300, (MINUTE, 300)),
    ({RAW: T0}, T0 - timedelta(hours=1), 90, (MINUTE, 120)),
    ({RAW: T0}, T0 - timedelta(hours=1), 10, (MINUTE, 60)),
    ({RAW: T0}, T0 - timedelta(days=20), 3600, (HOUR, 3600)),
    ({RAW: T0}, T0 - timedelta(days=20), 5000, (HOUR, 7200)),
    ({RAW: T0, MINUTE_DELETED: T0 - timedelta(days=30)}, T0 - timedelta(days=31), 300, (HOUR, 3600)),
    ({RAW: T0, MINUTE_DELETED: T0 - timedelta(days=30)}, T0 - timedelta(days=29), 300, (MINUTE, 300)),
], ids=["nothing-deleted", "raw-covers", "minute", "minute-rounded", "minute-floor", "hour", "hour-rounded",
        "minute-deleted", "minute-kept"])
def test_pick_resolution(database, known, since, step, expected):
    for name, ts in known.items():
        record_mark(database.connection, name, ts)
    assert pick_resolution(database.reader(), since, step) == expected


@pytest.mark.parametrize("resolution, step", [(MINUTE, 300), (MINUTE, 60), (HOUR, 3600), (HOUR, 7200)])
def test_rollup_series_equals_raw_series(database, resolution, step):
    write(database, [random_samples(3000, seed=11)])
    cursor = database.reader()
    since, until = T0, T0 + timedelta(hours=2)

    raw_points, raw_summary = queries.series(cursor, "net.tcp.a.rtt_ms", since, until, step)
    points, summary = rollup_series(cursor, resolution, "net.tcp.a.rtt_ms", since, until, step)

    assert [point["ts"] for point in points] == [point["ts"] for point in raw_points]
    for point, raw in zip(points, raw_points, strict=True):
        assert point["count"] == raw["count"]
        assert point["failures"] == raw["failures"]
        assert point["min"] == raw["min"]
        assert point["max"] == raw["max"]
        assert point["avg"] == pytest.approx(raw["avg"])
    assert summary["count"] == raw_summary["count"]
    assert summary["avg"] == pytest.approx(raw_summary["avg"])


def test_rollup_series_empty_range(database):
    points, summary = rollup_series(database.reader(), HOUR, "net.tcp.a.rtt_ms", T0, T0 + timedelta(hours=3), 3600)
    assert points == []
    assert summary["count"] == 0


# -- charts and /api/metrics/{symbol} ------------------------------------------------------


@pytest.fixture(scope="module")
def aged_runtime(tmp_path_factory):
    """A Runtime holding 20 days of hourly samples of one symbol, whose raw samples retention then cut to 7 days."""
    from tests.test_web import seed, start_runtime

    runtime = start_runtime(tmp_path_factory.mktemp("aged"))
    now = utc_now()
    seed(runtime, [Sample(now - timedelta(hours=hours), "net", "net.tcp.old.rtt_ms", float(hours % 24), True, 1.0, {})
                   for hours in range(1, 20 * 24 + 1)])
    runtime.writer.run_command(retention_command(7 * 86400.0, 90 * 86400.0), "retention", timeout=30.0)
    runtime.seeded_at = now  # the tests derive calendar days from it
    yield runtime
    runtime.stop()


def test_api_symbol_old_range_reads_hour_rollups(aged_runtime):
    from tests.web_support import get_json

    body = get_json(f"{aged_runtime.web.url}/api/metrics/net.tcp.old.rtt_ms?since=30d")

    assert body["resolution"] == "1h"
    assert body["step"] == 7200
    assert body["stats"]["count"] == 20 * 24
    assert sum(point["count"] for point in body["series"]) == 20 * 24
    assert body["stats"]["min"] == 0.0
    assert body["stats"]["max"] == 23.0


def test_api_symbol_recent_range_reads_raw(aged_runtime):
    from tests.web_support import get_json

    body = get_json(f"{aged_runtime.web.url}/api/metrics/net.tcp.old.rtt_ms?since=24h")

    assert body["resolution"] == "raw"
    assert body["stats"]["count"] == 23, "samples 1 to 23 hours old; the 24-hour-old one is just out of range"


def test_symbol_page_365d_range_has_chart_points(aged_runtime):
    import json
    import re

    from tests.servers import http_get

    page = http_get(f"{aged_runtime.web.url}/metrics/net.tcp.old.rtt_ms?range=365d").text

    assert 'data-range="365d"' in page
    chart = json.loads(re.search(r'<script[^>]*id="chart-data"[^>]*>(.*?)</script>', page, re.S).group(1))
    # One point per UTC day that has samples: 21 days, or 20 in the first hour of a day, when the newest
    # sample (one hour old) still falls on the day before.
    days = {(aged_runtime.seeded_at - timedelta(hours=hours)).date() for hours in range(1, 20 * 24 + 1)}
    assert len(chart["ts"]) == len(days), "one point a day"
