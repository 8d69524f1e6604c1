"""Open the DuckDB file, apply migrations and hand out read cursors."""

from __future__ import annotations

import logging
import os
import re
import threading
from datetime import datetime, timezone

import duckdb

from oculus.storage.migrations import migrate

log = logging.getLogger(__name__)

# Never fetch or load extensions at run time: Oculus must not download code, and the ones it uses
# (json, parquet, icu) are built into the duckdb wheel.
# DuckDB's allocator background thread cut the RSS of an idle Oculus on the default config by about 8 MiB.
# It measured 98 against 106 MiB, in four runs each of the same start-up as bench/footprint.py.
CONNECT_CONFIG = {"autoinstall_known_extensions": False, "autoload_known_extensions": False,
                  "allocator_background_threads": True}

_LOCK_HOLDER = re.compile(r"Conflicting lock is held in (?P<program>.+?) \(PID (?P<pid>\d+)\)")


def lock_holder_pid(error: Exception) -> str | None:
    """Return the PID that DuckDB names in a lock-conflict error, or None for any other error."""
    match = _LOCK_HOLDER.search(str(error))
    return match.group("pid") if match else None


class DatabaseOpenError(RuntimeError):
    """The DuckDB file cannot be opened or migrated. The message names the cause and what to do."""


class DatabaseLockedError(DatabaseOpenError):
    """Another process holds the DuckDB file."""


def utc_now() -> datetime:
    """Current time as a naive UTC datetime, the form stored in TIMESTAMP columns."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _configure(conn) -> None:
    # TIMESTAMP columns hold UTC; without this, comparisons with now() use the host's zone.
    conn.execute("SET TimeZone = 'UTC'")


class Database:
    """The DuckDB file. The writer thread owns `connection`; everyone else uses reader()."""

    def __init__(self, path: str, memory_limit: int | None = None):
        self.path = os.path.abspath(path)
        self.memory_limit = memory_limit  # bytes; None keeps DuckDB's default of 80% of RAM
        self.connection = None
        self.schema_version = 0
        self._local = threading.local()
        self._cursors: list = []
        self._cursors_lock = threading.Lock()

    def open(self) -> None:
        directory = os.path.dirname(self.path)
        try:
            if directory:
                os.makedirs(directory, exist_ok=True)
        except OSError as exc:
            raise DatabaseOpenError(
                f"cannot create the directory {directory} for database {self.path}: {exc.strerror or exc}; "
                "create it or pass another file with --db-path"
            ) from None
        try:
            config = dict(CONNECT_CONFIG)
            if self.memory_limit:
                config["memory_limit"] = f"{self.memory_limit}B"
            self.connection = duckdb.connect(self.path, config=config)
        except duckdb.IOException as exc:
            match = _LOCK_HOLDER.search(str(exc))
            if match:
                raise DatabaseLockedError(
                    f"database {self.path} is in use by another process "
                    f"(PID {match.group('pid')}, {match.group('program')}); stop that process "
                    "or give this one another file with --db-path"
                ) from None
            if "sqlite" in str(exc).lower():
                raise DatabaseOpenError(f"{self.path} is a SQLite file, not a DuckDB database; "
                                        "pass a DuckDB file (or a new path) with --db-path") from None
            raise DatabaseOpenError(f"cannot open database {self.path}: {exc}") from None
        except duckdb.Error as exc:
            raise DatabaseOpenError(
                f"cannot open database {self.path}: {exc}; check that it is a DuckDB file "
                "written by a compatible duckdb version, or pass another file with --db-path"
            ) from None
        _configure(self.connection)
        try:
            self.schema_version = migrate(self.connection)
        except (RuntimeError, duckdb.Error) as exc:
            self.connection.close()
            self.connection = None
            raise DatabaseOpenError(f"cannot migrate database {self.path}: {exc}") from None
        log.info("database open path=%s schema_version=%d", self.path, self.schema_version)

    @property
    def is_open(self) -> bool:
        return self.connection is not None

    def reader(self):
        """Return this thread's read cursor, creating it on first use."""
        cursor = getattr(self._local, "cursor", None)
        if cursor is None:
            if self.connection is None:
                raise RuntimeError("database is not open")
            cursor = self.connection.cursor()
            _configure(cursor)
            self._local.cursor = cursor
            with self._cursors_lock:
                self._cursors.append(cursor)
        return cursor

    def new_cursor(self):
        """Return a new read cursor that the caller closes, for work that may be interrupted."""
        if self.connection is None:
            raise RuntimeError("database is not open")
        cursor = self.connection.cursor()
        _configure(cursor)
        return cursor

    def close(self) -> None:
        """Checkpoint and close; call only after the writer thread has stopped."""
        if self.connection is None:
            return
        with self._cursors_lock:
            for cursor in self._cursors:
                try:
                    cursor.close()
                except duckdb.Error:
                    pass
            self._cursors.clear()
        try:
            self.connection.execute("CHECKPOINT")
        except duckdb.Error as exc:
            log.error("checkpoint on close failed path=%s error=%s", self.path, exc)
        self.connection.close()
        self.connection = None
        log.info("database closed path=%s", self.path)
