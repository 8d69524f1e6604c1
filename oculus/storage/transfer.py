"""Backups and exports of the DuckDB file, for the web routes and for the CLI.

Exports are SQL built here from bound parameters over Oculus's own relations,
on a code path separate from the read-only guard of POST /api/query, which
stays as strict as it is. A backup is a copy of one MVCC snapshot: the writer
thread opens the snapshot between two batches (pin_snapshot, run as a writer
Command), so it contains every sample committed before the request and nothing
half-written. The copy itself then runs on the caller's thread while the
writer goes on inserting.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime

import duckdb

from oculus.storage.database import CONNECT_CONFIG, DatabaseLockedError, DatabaseOpenError, lock_holder_pid
from oculus.storage.rollups import RESOLUTIONS
from oculus.storage.writer import Command

EXPORT_FORMATS = ("parquet", "csv")
EXPORT_RESOLUTIONS = ("raw",) + tuple(RESOLUTIONS)
RAW_COLUMNS = ("ts", "category", "symbol", "value", "success", "duration_ms", "tags")
ROLLUP_COLUMNS = ("ts", "category", "symbol", "avg", "min", "max", "last", "count", "failures")
MEDIA_TYPES = {"parquet": "application/vnd.apache.parquet", "csv": "text/csv; charset=utf-8"}
# Parquet readers of every engine named in the docs (DuckDB, pandas with pyarrow, Spark, Trino) read zstd.
_COPY_OPTIONS = {"parquet": "FORMAT parquet, COMPRESSION zstd", "csv": "FORMAT csv, HEADER"}


class TransferError(RuntimeError):
    """A backup or export could not be written; the message explains why."""


class DatabaseMissingError(DatabaseOpenError):
    """No database file exists at the path."""


@dataclass(frozen=True)
class ExportSelection:
    """Rows to export: a time range, symbols (exact names or * patterns; none means all) and a resolution."""

    since: datetime | None = None
    until: datetime | None = None
    symbols: tuple[str, ...] = ()
    resolution: str = "raw"


def export_query(selection: ExportSelection) -> tuple[str, dict]:
    """Return the SELECT of an export and its parameters; no value is pasted into the SQL text."""
    if selection.resolution == "raw":
        relation, columns = "metrics", RAW_COLUMNS
    else:
        relation, columns = RESOLUTIONS[selection.resolution].view, ROLLUP_COLUMNS
    where, params = [], {}
    if selection.since is not None:
        where.append("ts >= $since")
        params["since"] = selection.since
    if selection.until is not None:
        where.append("ts < $until")
        params["until"] = selection.until
    if selection.symbols:
        where.append(_symbol_condition(selection.symbols, params))
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    return f"SELECT {', '.join(columns)} FROM {relation} {clause} ORDER BY ts, symbol", params


def _symbol_condition(symbols: tuple[str, ...], params: dict) -> str:
    exact = [symbol for symbol in symbols if "*" not in symbol]
    patterns = [symbol for symbol in symbols if "*" in symbol]
    terms = []
    if exact:
        terms.append("symbol IN (SELECT unnest($symbols::VARCHAR[]))")
        params["symbols"] = exact
    for index, pattern in enumerate(patterns):
        terms.append(f"symbol LIKE $pattern{index} ESCAPE '\\'")
        params[f"pattern{index}"] = (pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
                                     .replace("*", "%"))
    return f"({' OR '.join(terms)})"


def export_to_file(cursor, selection: ExportSelection, file_format: str, path: str) -> int:
    """Write the selected rows to `path` as Parquet or CSV; return how many rows were written."""
    sql, params = export_query(selection)
    copy = f"COPY ({sql}) TO {_literal(path)} ({_COPY_OPTIONS[file_format]})"
    return cursor.execute(copy, params).fetchone()[0]


# -- backups ---------------------------------------------------------------------


def pin_snapshot(connection):
    """Open a transaction on a new cursor and read from it, which fixes its snapshot; return the cursor.

    Run this as a writer Command. DuckDB starts a transaction's snapshot at its first read, not at BEGIN.
    """
    cursor = connection.cursor()
    cursor.execute("BEGIN TRANSACTION")
    cursor.execute("SELECT count(*) FROM schema_migrations").fetchone()
    return cursor


class Snapshot:
    """A snapshot requested from the writer thread; abandon() releases it if the caller stops waiting."""

    def __init__(self):
        self._lock = threading.Lock()
        self._abandoned = False
        self.cursor = None

    def pin(self, connection):
        """Run as a writer Command: pin the snapshot unless the caller has given up already."""
        with self._lock:
            if not self._abandoned:
                self.cursor = pin_snapshot(connection)
            return self.cursor

    def abandon(self) -> None:
        with self._lock:
            self._abandoned = True
            if self.cursor is not None:
                self.cursor.execute("ROLLBACK")
                self.cursor.close()
                self.cursor = None


def snapshot_from_writer(writer, timeout: float):
    """Return a cursor whose open transaction sees what the writer had committed when it ran the request.

    Raises TimeoutError when the writer does not get to the request within `timeout` seconds.
    """
    snapshot = Snapshot()
    command = Command(snapshot.pin, "backup snapshot")
    if not writer.put(command, timeout=timeout):
        raise TimeoutError(f"the write queue stayed full for {timeout:g}s")
    try:
        return command.wait(timeout)
    except TimeoutError:
        # A snapshot pinned after this point would stay open and stop every checkpoint, so release it.
        snapshot.abandon()
        raise


def copy_snapshot(cursor, target_path: str) -> None:
    """Copy every table, view and sequence that `cursor`'s open transaction sees into a new file, then commit.

    COPY FROM DATABASE reads through the transaction, so rows committed after the snapshot stay out.
    """
    source = cursor.execute("SELECT current_database()").fetchone()[0]
    alias = f"oculus_backup_{uuid.uuid4().hex}"
    cursor.execute(f"ATTACH {_literal(target_path)} AS {alias}")
    try:
        cursor.execute(f"COPY FROM DATABASE {_identifier(source)} TO {alias}")
        cursor.execute("COMMIT")
    except duckdb.Error:
        cursor.execute("ROLLBACK")
        raise
    finally:
        cursor.execute(f"DETACH {alias}")


def open_file_read_only(path: str):
    """Return an in-memory connection with the DuckDB file at `path` attached read-only as its default database.

    For backups and exports while no Oculus runs on the file; the in-memory database lets a backup attach
    a writable target next to the read-only source. Raises DatabaseLockedError when a process has locked the
    file, DatabaseOpenError when it is missing or not a DuckDB database.
    """
    if not os.path.exists(path):
        raise DatabaseMissingError(f"no database at {path}")
    connection = duckdb.connect(config=CONNECT_CONFIG)
    try:
        connection.execute(f"ATTACH {_literal(path)} AS oculus_source (READ_ONLY)")
        connection.execute("USE oculus_source")
    except duckdb.Error as exc:
        connection.close()
        pid = lock_holder_pid(exc)
        if pid is not None:
            raise DatabaseLockedError(f"database {path} is in use by PID {pid}") from None
        raise DatabaseOpenError(f"cannot open database {path}: {exc}") from None
    return connection


def backup_file(source_path: str, target_path: str) -> None:
    """Copy the database at `source_path` into a new file at `target_path`, with no Oculus running on it."""
    connection = open_file_read_only(source_path)
    try:
        with _replacing(target_path) as partial:
            connection.execute("BEGIN TRANSACTION")
            copy_snapshot(connection, partial)
    finally:
        connection.close()


def export_file(source_path: str, selection: ExportSelection, file_format: str, target_path: str) -> int:
    """Export from the database at `source_path`, with no Oculus running on it; return the row count."""
    connection = open_file_read_only(source_path)
    try:
        with _replacing(target_path) as partial:
            return export_to_file(connection, selection, file_format, partial)
    finally:
        connection.close()


@contextlib.contextmanager
def _replacing(target_path: str):
    """Yield a path next to `target_path` to write, and rename it to `target_path` once the block succeeds."""
    work = tempfile.mkdtemp(prefix=".oculus-partial-", dir=os.path.dirname(os.path.abspath(target_path)))
    try:
        partial = os.path.join(work, os.path.basename(target_path))
        try:
            yield partial
        except duckdb.Error as exc:
            raise TransferError(str(exc)) from None
        os.replace(partial, target_path)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def describe_database(path: str) -> dict:
    """Return the schema version and row counts of a backup, which also proves that it opens."""
    with duckdb.connect(path, read_only=True, config=CONNECT_CONFIG) as connection:
        version = connection.execute("SELECT max(version) FROM schema_migrations").fetchone()[0]
        counts = {table: connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                  for table in ("samples", "events", "rollups_1m", "rollups_1h")
                  if _has_table(connection, table)}
    return {"schema_version": version, "rows": counts}


def _has_table(connection, name: str) -> bool:
    return connection.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = ? AND database_name = "
                              "current_database()", [name]).fetchone()[0] > 0


def _literal(text: str) -> str:
    """Quote a file name as an SQL string literal; COPY and ATTACH take no parameter for it."""
    return "'" + text.replace("'", "''") + "'"


def _identifier(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        return '"' + name.replace('"', '""') + '"'
    return name
