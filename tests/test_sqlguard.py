"""The read-only SQL guard shared by SQL rules and POST /api/query, on a real DuckDB file."""

from __future__ import annotations

import pytest

from oculus.collectors.base import Sample
from oculus.storage import Database, utc_now
from oculus.storage.sqlguard import QueryFailed, QueryTimeout, UnsafeQuery, run_read_only
from oculus.storage.writer import Writer


@pytest.fixture
def cursor(db_path):
    database = Database(db_path)
    database.open()
    writer = Writer(database, 100, 100, 0.05)
    writer.start()
    now = utc_now()
    writer.put([Sample(now, "crypto", f"crypto.price.c{i}_usd", float(i), True, 1.0, {}) for i in range(30)])
    writer.stop(5.0)
    yield database.reader()
    database.close()


REJECTED = [
    ("SELECT * FROM read_csv('/etc/passwd')", "table function read_csv() is not allowed"),
    ("SELECT * FROM read_text('/etc/passwd')", "table function read_text() is not allowed"),
    ("SELECT * FROM '/etc/passwd'", 'reading "/etc/passwd" is not allowed'),
    ("FROM 'data.parquet'", 'reading "data.parquet" is not allowed'),
    ("SELECT (SELECT content FROM read_text('/etc/passwd'))", "table function read_text() is not allowed"),
    ("SELECT * FROM metrics, LATERAL (SELECT * FROM read_csv('/etc/passwd'))", "read_csv() is not allowed"),
    ("SELECT * FROM glob('/etc/*')", "table function glob() is not allowed"),
    ("SELECT * FROM query('SELECT 1')", "table function query() is not allowed"),
    ("SELECT * FROM duckdb_settings()", "table function duckdb_settings() is not allowed"),
    ("SELECT getenv('HOME')", "function getenv() is not allowed"),
    ("DESCRIBE '/etc/passwd'", 'reading "/etc/passwd" is not allowed'),
    ("SUMMARIZE SELECT * FROM read_csv('/etc/passwd')", "read_csv() is not allowed"),
    ("SELECT * FROM information_schema.tables", 'reading "tables" is not allowed'),
    ("COPY metrics TO '/tmp/out.csv'", "only SELECT queries are allowed, got COPY"),
    ("ATTACH '/tmp/other.duckdb'", "only SELECT queries are allowed, got ATTACH"),
    ("INSTALL httpfs", "only SELECT queries are allowed"),
    ("LOAD httpfs", "only SELECT queries are allowed"),
    ("SET enable_external_access = true", "only SELECT queries are allowed, got SET"),
    ("PRAGMA version", "only SELECT queries are allowed, got PRAGMA"),
    ("CREATE TABLE copy AS SELECT * FROM metrics", "only SELECT queries are allowed, got CREATE"),
    ("DELETE FROM samples", "only SELECT queries are allowed, got DELETE"),
    ("SELECT 1; DROP TABLE samples", "send exactly one statement, got 2"),
    ("EXPLAIN ANALYZE SELECT 1", "EXPLAIN ANALYZE runs the query"),
    ("WITH \"a/b\" AS (SELECT 1) SELECT * FROM \"a/b\"", "a CTE name must be a plain identifier"),
    ("", "the query is empty"),
]


@pytest.mark.parametrize(("sql", "message"), REJECTED)
def test_guard_rejects(cursor, sql, message):
    with pytest.raises(UnsafeQuery) as error:
        run_read_only(cursor, sql)
    assert message in str(error.value)


def test_guard_rejection_runs_nothing(cursor):
    with pytest.raises(UnsafeQuery):
        run_read_only(cursor, "SELECT 1; DELETE FROM samples")
    assert cursor.execute("SELECT count(*) FROM samples").fetchone()[0] == 30


ALLOWED = [
    ("SELECT count(*) FROM metrics", [(30,)]),
    ("WITH top AS (SELECT max(value) AS v FROM metrics) SELECT v FROM top", [(29.0,)]),
    ("SELECT count(*) FROM main.latest", [(30,)]),
    ("SELECT count(*) FROM range(5)", [(5,)]),
    ("FROM metrics SELECT count(*)", [(30,)]),
]


@pytest.mark.parametrize(("sql", "rows"), ALLOWED)
def test_guard_allows(cursor, sql, rows):
    assert run_read_only(cursor, sql).rows == rows


def test_guard_explain_allowed(cursor):
    result = run_read_only(cursor, "EXPLAIN SELECT * FROM metrics")
    assert result.columns == ["explain_key", "explain_value"]


def test_guard_binds_named_params(cursor):
    result = run_read_only(cursor, "SELECT value FROM metrics WHERE symbol = $symbol",
                           {"symbol": "crypto.price.c7_usd"})
    assert result.rows == [(7.0,)]


def test_guard_param_is_not_sql(cursor):
    result = run_read_only(cursor, "SELECT count(*) FROM metrics WHERE symbol = $s",
                           {"s": "x' OR '1'='1"})
    assert result.rows == [(0,)]


def test_guard_caps_rows(cursor):
    result = run_read_only(cursor, "SELECT * FROM metrics", max_rows=10)
    assert len(result.rows) == 10
    assert result.truncated is True


def test_guard_not_truncated_at_cap(cursor):
    result = run_read_only(cursor, "SELECT * FROM metrics", max_rows=30)
    assert result.truncated is False


def test_guard_interrupts_slow_query(cursor):
    with pytest.raises(QueryTimeout) as error:
        run_read_only(cursor, "SELECT count(*) FROM range(10000000000000) a, range(1000) b", timeout=0.5)
    assert "longer than 0.5 s" in str(error.value)


def test_guard_cursor_usable_after_timeout(cursor):
    with pytest.raises(QueryTimeout):
        run_read_only(cursor, "SELECT count(*) FROM range(10000000000000) a, range(1000) b", timeout=0.3)
    assert run_read_only(cursor, "SELECT count(*) FROM metrics").rows == [(30,)]


def test_guard_reports_duckdb_error(cursor):
    with pytest.raises(QueryFailed) as error:
        run_read_only(cursor, "SELECT no_such_column FROM metrics")
    assert "no_such_column" in str(error.value)
    assert "\n" not in str(error.value)
