"""Release of DuckDB's dead buffer entries, on real DuckDB files."""

from __future__ import annotations

import pytest

from oculus.storage import Database, buffers
from oculus.storage import writer as writer_module
from oculus.storage.buffers import Outcome
from oculus.storage.writer import Writer
from tests.servers import wait_for

LIMIT = 64 * 2**20
LIMIT_SETTING = f"{LIMIT}B"


@pytest.fixture
def database(db_path):
    database = Database(db_path, memory_limit=LIMIT)
    database.open()
    yield database
    database.close()


@pytest.fixture
def pin_cursor(database):
    cursor = database.new_cursor()
    yield cursor
    cursor.close()


def dead_entries(cursor) -> int:
    return cursor.execute("SELECT sum(dead_nodes) FROM duckdb_eviction_queues()").fetchone()[0]


def memory_limit(cursor) -> str:
    return cursor.execute("SELECT current_setting('memory_limit')").fetchone()[0]


def allocator_bytes(cursor) -> int:
    return cursor.execute("SELECT memory_usage_bytes FROM duckdb_memory() WHERE tag = 'ALLOCATOR'").fetchone()[0]


def make_dead_entries(cursor) -> None:
    """Run hash joins and aggregates, whose temporary buffers leave dead entries behind."""
    for _ in range(20):
        cursor.execute("""
            SELECT a.k % 7, count(*) FROM range(20000) a(k) JOIN range(20000) b(k) ON a.k = b.k GROUP BY ALL
        """).fetchall()


def test_release_drops_dead_entries(database, pin_cursor):
    connection = database.connection
    make_dead_entries(connection)
    before = dead_entries(connection)

    outcome = buffers.release(connection, pin_cursor, LIMIT_SETTING)

    assert before > 200
    assert outcome == Outcome.RELEASED
    assert dead_entries(connection) < before / 10


def test_release_keeps_memory_limit(database, pin_cursor):
    buffers.release(database.connection, pin_cursor, LIMIT_SETTING)

    assert memory_limit(database.connection) == "64.0 MiB"


def test_release_closes_pinning_query(database, pin_cursor):
    buffers.release(database.connection, pin_cursor, LIMIT_SETTING)

    assert allocator_bytes(database.connection) < buffers.MIN_PINNED_BYTES
    database.connection.execute("CHECKPOINT")  # no read transaction is left open


def test_release_after_reopen_is_rejected(db_path):
    # With nothing cached or pinned, DuckDB reaches a 1 KiB limit and would accept it without the open query.
    Database(db_path, memory_limit=LIMIT).open()
    database = Database(db_path, memory_limit=LIMIT)
    database.open()
    pin_cursor = database.new_cursor()
    try:
        outcomes = [buffers.release(database.connection, pin_cursor, LIMIT_SETTING) for _ in range(5)]
    finally:
        pin_cursor.close()
        database.close()

    assert outcomes == [Outcome.RELEASED] * 5


def test_release_skips_without_pinned_memory(database, pin_cursor, monkeypatch):
    monkeypatch.setattr(buffers, "PIN_QUERY", "SELECT 1")
    make_dead_entries(database.connection)
    before = dead_entries(database.connection)

    outcome = buffers.release(database.connection, pin_cursor, LIMIT_SETTING)

    assert outcome == Outcome.SKIPPED
    assert dead_entries(database.connection) >= before
    assert memory_limit(database.connection) == "64.0 MiB"


def test_writer_releases_buffers(database, monkeypatch):
    monkeypatch.setattr(writer_module, "RELEASE_BUFFERS_EVERY", 0.1)
    make_dead_entries(database.connection)
    writer = Writer(database, 100, 100, 0.05)
    writer.start()
    try:
        wait_for(lambda: dead_entries(database.reader()) < 100, timeout=5.0, what="dead entries released")
        assert memory_limit(database.reader()) == "64.0 MiB"
    finally:
        writer.stop(5.0)
