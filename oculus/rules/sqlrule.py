"""SQL rules: prepare the query at config load, run it read-only, turn result rows into alert instances.

Every run goes through oculus.storage.sqlguard.run_read_only, so a rule can
only SELECT from Oculus's relations, has a timeout, and gets its parameters
bound. Calls of now() (and its synonyms) are rewritten into the bound
parameter $oculus_now, so the query reads the evaluation pass's clock: the
same instant as the simple rules live, and the simulated time in a backtest.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone

import duckdb

from oculus.storage.migrations import migrate
from oculus.storage.sqlguard import (
    QueryFailed, UnsafeQuery, check_read_only, clean_error, run_read_only, walk_tree,
)

CLOCK_PARAMETER = "oculus_now"
# Functions that read the current time. DuckDB parses a bare current_timestamp as a column reference.
_CLOCK_FUNCTIONS = {"now", "get_current_timestamp", "transaction_timestamp", "current_timestamp"}
_DATE_FUNCTIONS = {"today", "current_date"}
_NUMERIC_TYPES = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER",
                  "UBIGINT", "UHUGEINT", "FLOAT", "DOUBLE", "DECIMAL", "REAL")


class SqlRuleError(ValueError):
    """An SQL rule that cannot run; `key` is the rule setting to fix (sql or params)."""

    def __init__(self, message: str, key: str | None = None):
        super().__init__(message)
        self.key = key


@dataclass
class PreparedQuery:
    """A checked query, with its clock calls bound to $oculus_now and the types of its result columns."""

    sql: str
    params: dict
    columns: list
    numeric: list  # one bool per column
    uses_clock: bool

    def bind(self, now: datetime) -> dict:
        params = dict(self.params)
        if self.uses_clock:
            params[CLOCK_PARAMETER] = now.replace(tzinfo=timezone.utc)
        return params


def schema_database():
    """Return an in-memory DuckDB connection with Oculus's tables and views, to prepare SQL rules on."""
    connection = duckdb.connect(":memory:")
    connection.execute("SET TimeZone = 'UTC'")
    migrate(connection)
    return connection


def prepare(connection, sql: str, params: dict) -> PreparedQuery:
    """Check `sql` with the read-only guard and bind it on the empty schema; raise SqlRuleError.

    DESCRIBE binds the query (tables, columns, parameters, types) without
    running it, so a query that would be slow on real data is not run here.
    """
    if CLOCK_PARAMETER in params:
        raise SqlRuleError(f"params.{CLOCK_PARAMETER} is reserved for the evaluation time; rename it", "params")
    cursor = connection.cursor()
    try:
        _check_parameters(cursor, sql, params)
        bound_sql, uses_clock = bind_clock(cursor, sql)
        prepared = PreparedQuery(bound_sql, dict(params), [], [], uses_clock)
        check_read_only(cursor, bound_sql)
        described = cursor.execute(f"DESCRIBE {bound_sql}", prepared.bind(datetime(2000, 1, 1)) or None).fetchall()
    except UnsafeQuery as exc:
        raise SqlRuleError(f"unsafe query: {exc}") from None
    except QueryFailed as exc:
        raise SqlRuleError(f"invalid query: {exc}") from None
    except duckdb.Error as exc:
        raise SqlRuleError(f"invalid query: {clean_error(exc)}", _failing_key(str(exc))) from None
    finally:
        cursor.close()
    prepared.columns = [row[0] for row in described]
    prepared.numeric = [_is_numeric(row[1]) for row in described]
    return prepared


def _check_parameters(cursor, sql: str, params: dict) -> None:
    """Raise SqlRuleError when params and the query's $names differ, naming the parameter."""
    tree = _parse_tree(cursor, sql)
    if tree is None:
        return
    used = {node.get("identifier") for node in walk_tree(tree) if node.get("class") == "PARAMETER"}
    for name in sorted(used - set(params), key=str):
        if str(name).isdigit():
            raise SqlRuleError(f"write parameters by name ($threshold), not by position (${name} or ?)")
        raise SqlRuleError(f"the query uses ${name}, but params has no value for {name}", "params")
    for name in sorted(set(params) - used):
        raise SqlRuleError(f"params.{name} is not used in the query; write ${name} where it belongs or remove it",
                           "params")


def _parse_tree(cursor, sql: str) -> dict | None:
    try:
        tree = json.loads(cursor.execute("SELECT json_serialize_sql(?)", [sql]).fetchone()[0])
    except duckdb.Error:
        return None
    return None if tree.get("error") else tree


def _failing_key(message: str) -> str:
    return "params" if "parameter" in message.lower() else "sql"


def _is_numeric(type_name: str) -> bool:
    return type_name.upper().startswith(_NUMERIC_TYPES)


def bind_clock(cursor, sql: str) -> tuple[str, bool]:
    """Return `sql` with now(), current_timestamp, today() and current_date reading $oculus_now.

    The rewrite works on DuckDB's own parse tree (json_serialize_sql) and turns
    it back into SQL with json_deserialize_sql, so quoted text is never touched.
    A query that DuckDB cannot parse is returned unchanged for the guard to reject.
    """
    tree = _parse_tree(cursor, sql)
    if tree is None:
        return sql, False
    clock = _template_node(cursor, f"SELECT ${CLOCK_PARAMETER}")
    date = _template_node(cursor, f"SELECT CAST(${CLOCK_PARAMETER} AS DATE)")
    replaced = _replace_clock(tree, clock, date)
    if not replaced:
        return sql, False
    rewritten = cursor.execute("SELECT json_deserialize_sql(?)", [json.dumps(tree)]).fetchone()[0]
    return rewritten, True


def _template_node(cursor, sql: str) -> dict:
    tree = json.loads(cursor.execute("SELECT json_serialize_sql(?)", [sql]).fetchone()[0])
    return tree["statements"][0]["node"]["select_list"][0]


def _clock_kind(node: dict) -> str | None:
    if node.get("class") == "FUNCTION" and not node.get("arguments"):
        name = str(node.get("function_name", "")).lower()
    elif node.get("class") == "COLUMN_REF" and len(node.get("column_names", [])) == 1:
        name = str(node["column_names"][0]).lower()
    else:
        return None
    if name in _CLOCK_FUNCTIONS:
        return "clock"
    if name in _DATE_FUNCTIONS:
        return "date"
    return None


def _original_name(node: dict) -> str:
    if node.get("class") == "COLUMN_REF":
        return node["column_names"][0]
    return f"{node.get('function_name')}()"


def _replace_clock(tree, clock: dict, date: dict) -> int:
    """Replace clock calls in place, iteratively; return how many were replaced."""
    replaced = 0
    stack = [tree]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            children = item.items()
        elif isinstance(item, list):
            children = enumerate(item)
        else:
            continue
        for key, child in children:
            kind = _clock_kind(child) if isinstance(child, dict) else None
            if kind is not None:
                node = dict(clock if kind == "clock" else date)
                # Keep the column name that the original expression would have had.
                node["alias"] = child.get("alias") or _original_name(child)
                item[key] = node
                replaced += 1
            elif isinstance(child, (dict, list)):
                stack.append(child)
    return replaced


@dataclass
class SqlRow:
    """One result row of an SQL rule: its identity, labels, numeric value and every column for the message."""

    instance: str
    labels: dict
    value: float | None
    fields: dict


def run(cursor, prepared: PreparedQuery, now: datetime, timeout: float, max_rows: int) -> tuple[list, bool]:
    """Run the query at `now`; return (rows as SqlRow, truncated). Raises the sqlguard errors."""
    result = run_read_only(cursor, prepared.sql, prepared.bind(now), timeout=timeout, max_rows=max_rows)
    numeric = [_is_numeric(name) for name in result.types]
    rows = [_row(result.columns, numeric, values) for values in result.rows]
    return rows, result.truncated


def _row(columns: list, numeric: list, values: tuple) -> SqlRow:
    labels = {name: _label(value) for name, is_number, value in zip(columns, numeric, values, strict=True)
              if not is_number}
    numbers = [value for is_number, value in zip(numeric, values, strict=True) if is_number and value is not None]
    fields = {name: (float(value) if is_number and value is not None else value)
              for name, is_number, value in zip(columns, numeric, values, strict=True)}
    instance = json.dumps(labels, sort_keys=True, separators=(",", ":")) if labels else ""
    return SqlRow(instance, labels, float(numbers[0]) if numbers else None, fields)


def _label(value) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)
