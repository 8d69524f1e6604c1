"""Run user-written SQL read-only: one SELECT over Oculus's relations, bounded in time and rows.

DuckDB reads local files from SQL by default (read_csv('/etc/passwd'), or
simply FROM '/etc/passwd'), and Oculus itself needs file access for backups
and exports, so access cannot be switched off database-wide. Instead the
query is parsed by DuckDB itself (json_serialize_sql) and every table
reference, table function and function call in the parse tree is checked
against allow and deny lists before the query runs. A keyword filter would
miss quoted file names and functions hidden in subqueries; the parse tree
does not.
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass, field

import duckdb

# Relations a query may read; anything else, including a quoted file name, is rejected.
ALLOWED_TABLES = frozenset({"metrics", "metrics_1m", "metrics_1h", "events", "latest", "samples", "alert_state"})
# Table functions that only generate rows.
ALLOWED_TABLE_FUNCTIONS = frozenset({"range", "generate_series", "unnest"})
# Scalar functions that read the host environment or the database's configuration.
DENIED_FUNCTIONS = frozenset({"getenv", "current_setting", "read_text", "read_blob"})
_CTE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class UnsafeQuery(ValueError):
    """The SQL is not a single read-only SELECT over the allowed relations."""


class QueryTimeout(TimeoutError):
    """The query ran past its time limit and was interrupted."""


class QueryFailed(ValueError):
    """DuckDB rejected the query (syntax, unknown column, bad parameter ...)."""


class QueryOutOfMemory(QueryFailed):
    """The query needed more memory than DuckDB's memory_limit allows."""


@dataclass
class QueryResult:
    columns: list
    rows: list
    truncated: bool
    elapsed_ms: float
    types: list = field(default_factory=list)  # DuckDB type name of each column, such as "DOUBLE"


def check_read_only(cursor, sql: str) -> None:
    """Raise UnsafeQuery unless `sql` is exactly one SELECT (or EXPLAIN SELECT) over allowed relations."""
    if not isinstance(sql, str) or not sql.strip():
        raise UnsafeQuery("the query is empty; send one SELECT statement")
    try:
        statements = cursor.extract_statements(sql)
    except duckdb.Error as exc:
        raise QueryFailed(clean_error(exc)) from None
    if len(statements) != 1:
        raise UnsafeQuery(f"send exactly one statement, got {len(statements)}")

    kind = statements[0].type
    body = sql
    if kind == duckdb.StatementType.EXPLAIN:
        match = re.match(r"\s*explain\s+(?!analyze\b)(.*)$", sql, flags=re.IGNORECASE | re.DOTALL)
        if match is None:
            raise UnsafeQuery("EXPLAIN ANALYZE runs the query; use plain EXPLAIN or SELECT")
        body = match.group(1)
    elif kind != duckdb.StatementType.SELECT:
        raise UnsafeQuery(f"only SELECT queries are allowed, got {kind.name}")

    tree = json.loads(cursor.execute("SELECT json_serialize_sql(?)", [body]).fetchone()[0])
    if tree.get("error"):
        raise UnsafeQuery(f"only SELECT queries are allowed: {tree.get('error_message')}")
    _check_tree(tree, _cte_names(tree))


def _cte_names(tree) -> set:
    names = set()
    for node in walk_tree(tree):
        cte_map = node.get("cte_map")
        if isinstance(cte_map, dict):
            for entry in cte_map.get("map", []):
                name = entry.get("key", "")
                if not _CTE_NAME.fullmatch(name):
                    raise UnsafeQuery(f'a CTE name must be a plain identifier, got "{name}"')
                names.add(name.lower())
    return names


def _check_tree(tree, cte_names: set) -> None:
    for node in walk_tree(tree):
        node_type = node.get("type")
        if node_type == "BASE_TABLE":
            name = node.get("table_name", "")
            qualified = node.get("schema_name", "") not in ("", "main") or node.get("catalog_name")
            if qualified or (name.lower() not in ALLOWED_TABLES and name.lower() not in cte_names):
                allowed = ", ".join(sorted(ALLOWED_TABLES))
                raise UnsafeQuery(f'reading "{name}" is not allowed; query one of: {allowed}')
        elif node_type == "TABLE_FUNCTION":
            function = node.get("function") or {}
            name = str(function.get("function_name", "")).lower()
            if name not in ALLOWED_TABLE_FUNCTIONS:
                raise UnsafeQuery(f"table function {name}() is not allowed; only "
                                  f"{', '.join(sorted(ALLOWED_TABLE_FUNCTIONS))} may be used in FROM")
        elif node.get("class") == "FUNCTION":
            name = str(node.get("function_name", "")).lower()
            if name in DENIED_FUNCTIONS:
                raise UnsafeQuery(f"function {name}() is not allowed in queries")


def walk_tree(value):
    """Yield every dict in a parsed JSON tree, depth first, without recursion limits."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            yield item
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def run_read_only(cursor, sql: str, params: dict | list | None = None, *,
                  timeout: float = 5.0, max_rows: int = 1000) -> QueryResult:
    """Check `sql`, run it on `cursor` with bound `params`, interrupt it after `timeout` seconds.

    Returns at most `max_rows` rows, and `truncated` is true when more existed.
    Raises UnsafeQuery, QueryFailed, QueryOutOfMemory or QueryTimeout.
    """
    check_read_only(cursor, sql)
    timed_out = threading.Event()

    def interrupt() -> None:
        timed_out.set()
        cursor.interrupt()

    timer = threading.Timer(timeout, interrupt)
    timer.daemon = True
    started = time.perf_counter()
    timer.start()
    try:
        cursor.execute(sql, params or None)
        rows = cursor.fetchmany(max_rows + 1)
        columns = [column[0] for column in (cursor.description or [])]
        types = [str(column[1]) for column in (cursor.description or [])]
    except duckdb.Error as exc:
        if timed_out.is_set():
            raise QueryTimeout(f"the query ran longer than {timeout:g} s and was stopped") from None
        if isinstance(exc, duckdb.OutOfMemoryException):
            # DuckDB's own hints name SET statements, which the guard rejects, so they are left out.
            first_line = clean_error(exc).split(" Possible solutions:")[0]
            raise QueryOutOfMemory(f"{first_line}; aggregate in SQL, narrow the time range or raise "
                                   "database.memory_limit in the config") from None
        raise QueryFailed(clean_error(exc)) from None
    finally:
        timer.cancel()
    elapsed_ms = (time.perf_counter() - started) * 1000
    return QueryResult(columns, rows[:max_rows], len(rows) > max_rows, elapsed_ms, types)


def clean_error(exc: Exception) -> str:
    """DuckDB's message without the trailing caret diagram, on one line."""
    text = str(exc).split("\n\nLINE ")[0]
    return " ".join(text.split())
