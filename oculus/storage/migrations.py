"""Versioned schema migrations, applied in order at start-up.

Append new migrations; never edit one that has shipped, because databases in
the field already carry its version number.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

MIGRATIONS: list[tuple[int, str, str]] = [
    (1, "samples, latest values and events", """
        CREATE TABLE samples (
            ts          TIMESTAMP NOT NULL,   -- UTC
            category    VARCHAR   NOT NULL,
            symbol      VARCHAR   NOT NULL,
            value       DOUBLE,               -- NULL when nothing could be measured
            success     BOOLEAN   NOT NULL,
            duration_ms DOUBLE,
            tags        JSON
        );

        -- The relation users query; the physical layout behind it may change.
        CREATE VIEW metrics AS
            SELECT ts, category, symbol, value, success, duration_ms, tags FROM samples;

        -- Latest sample per symbol, maintained by the writer so the dashboard never scans history.
        CREATE TABLE latest (
            symbol      VARCHAR PRIMARY KEY,
            category    VARCHAR   NOT NULL,
            ts          TIMESTAMP NOT NULL,
            value       DOUBLE,
            success     BOOLEAN   NOT NULL,
            duration_ms DOUBLE,
            tags        JSON,
            prev_value  DOUBLE,
            prev_ts     TIMESTAMP,
            last_ok_ts  TIMESTAMP
        );

        CREATE SEQUENCE events_id;
        CREATE TABLE events (
            id       BIGINT PRIMARY KEY DEFAULT nextval('events_id'),
            ts       TIMESTAMP NOT NULL,
            kind     VARCHAR   NOT NULL,   -- alert, error, system, audit
            severity VARCHAR   NOT NULL CHECK (severity IN ('info', 'warn', 'error', 'critical')),
            source   VARCHAR,
            message  VARCHAR   NOT NULL,
            payload  JSON
        );
    """),
    (2, "alert state per rule instance", """
        -- One row per rule instance: a simple rule has one instance (instance = ''); an SQL rule has one
        -- per distinct set of non-numeric result columns (instance = those columns as JSON).
        -- Written only by the writer, so a restart resumes every pending or firing alert.
        CREATE TABLE alert_state (
            rule          VARCHAR   NOT NULL,
            instance      VARCHAR   NOT NULL,
            state         VARCHAR   NOT NULL CHECK (state IN ('inactive', 'pending', 'firing', 'resolved')),
            severity      VARCHAR   NOT NULL CHECK (severity IN ('info', 'warn', 'error', 'critical')),
            labels        JSON,                 -- columns or symbols that identify the instance
            value         DOUBLE,               -- last evaluated value, NULL when there was no data
            no_data       BOOLEAN   NOT NULL DEFAULT false,
            active_since  TIMESTAMP,            -- when the condition started to hold (start of pending)
            fired_at      TIMESTAMP,
            resolved_at   TIMESTAMP,
            last_eval     TIMESTAMP NOT NULL,
            last_notified TIMESTAMP,
            message       VARCHAR,
            PRIMARY KEY (rule, instance)
        );
    """),
    (3, "notification deliveries", """
        -- One row per notification and channel. The rule engine inserts it as pending in the same
        -- transaction as the alert state change; the dispatcher updates it after each attempt, so what
        -- was not sent when the process stopped is sent after it starts again.
        CREATE TABLE deliveries (
            id           VARCHAR   PRIMARY KEY,   -- notification id ':' channel
            notification VARCHAR   NOT NULL,      -- shared by the channels of one notification
            channel      VARCHAR   NOT NULL,
            rule         VARCHAR   NOT NULL,
            instance     VARCHAR   NOT NULL,
            state        VARCHAR   NOT NULL,      -- firing or resolved
            severity     VARCHAR   NOT NULL,
            status       VARCHAR   NOT NULL CHECK (status IN ('pending', 'retrying', 'delivered', 'failed')),
            attempts     INTEGER   NOT NULL DEFAULT 0,
            created_at   TIMESTAMP NOT NULL,      -- UTC, like every timestamp here
            updated_at   TIMESTAMP NOT NULL,
            next_attempt TIMESTAMP,               -- earliest time of the next attempt while retrying
            last_error   VARCHAR,                 -- short phrase such as "HTTP 500", secrets masked
            content      JSON      NOT NULL       -- the notification, to rebuild the message after a restart
        );
    """),
    (4, "rollups and watermarks", """
        -- Per-symbol aggregates of each minute and each hour, kept long after raw samples are deleted
        -- (database.rollups_1m_retention and rollups_1h_retention). The writer folds the raw samples into both.
        CREATE TABLE rollups_1m (
            symbol      VARCHAR   NOT NULL,
            bucket      TIMESTAMP NOT NULL,   -- start of the minute, UTC
            count       INTEGER   NOT NULL,   -- samples, failed ones included
            failures    INTEGER   NOT NULL,   -- samples with success = false
            value_count INTEGER   NOT NULL,   -- successful samples with a value; min, max, sum, last are over these
            min         DOUBLE,
            max         DOUBLE,
            sum         DOUBLE,
            last        DOUBLE,               -- value of the newest of those samples
            last_ts     TIMESTAMP             -- and its time
        );
        CREATE TABLE rollups_1h (           -- the same columns; bucket is the start of the hour
            symbol VARCHAR NOT NULL, bucket TIMESTAMP NOT NULL, count INTEGER NOT NULL, failures INTEGER NOT NULL,
            value_count INTEGER NOT NULL, min DOUBLE, max DOUBLE, sum DOUBLE, last DOUBLE, last_ts TIMESTAMP
        );

        CREATE VIEW metrics_1m AS
            SELECT bucket AS ts, split_part(symbol, '.', 1) AS category, symbol,
                   sum / nullif(value_count, 0) AS avg, min, max, last, count, failures
            FROM rollups_1m;
        CREATE VIEW metrics_1h AS
            SELECT bucket AS ts, split_part(symbol, '.', 1) AS category, symbol,
                   sum / nullif(value_count, 0) AS avg, min, max, last, count, failures
            FROM rollups_1h;

        -- Named times: "<table>.deleted_before" (retention has deleted the older rows) and
        -- "rollups.complete_before" (the raw samples before it are in the rollups).
        CREATE TABLE watermarks (
            name VARCHAR   PRIMARY KEY,
            ts   TIMESTAMP NOT NULL
        );

        -- Roll up the samples already stored, up to the current minute, so charts of older ranges start full.
        INSERT INTO watermarks VALUES ('rollups.complete_before', time_bucket(INTERVAL 1 MINUTE, now()::TIMESTAMP));
        INSERT INTO rollups_1m
            SELECT symbol, time_bucket(INTERVAL 1 MINUTE, ts), count(*), count(*) FILTER (WHERE NOT success),
                   count(value) FILTER (WHERE success), min(value) FILTER (WHERE success),
                   max(value) FILTER (WHERE success), sum(value) FILTER (WHERE success),
                   arg_max(value, (ts, rowid)) FILTER (WHERE success AND value IS NOT NULL),
                   max(ts) FILTER (WHERE success AND value IS NOT NULL)
            FROM samples
            WHERE ts < (SELECT ts FROM watermarks)
            GROUP BY ALL ORDER BY 2;
        INSERT INTO rollups_1h
            SELECT symbol, time_bucket(INTERVAL 1 HOUR, bucket), sum(count), sum(failures), sum(value_count),
                   min(min), max(max), sum(sum), arg_max(last, last_ts), max(last_ts)
            FROM rollups_1m GROUP BY ALL ORDER BY 2;
    """),
]


def current_version(conn) -> int:
    conn.execute("""
        CREATE TABLE IF NOT EXISTS schema_migrations (
            version    INTEGER PRIMARY KEY,
            name       VARCHAR NOT NULL,
            applied_at TIMESTAMP NOT NULL DEFAULT (now() AT TIME ZONE 'UTC')
        )
    """)
    row = conn.execute("SELECT max(version) FROM schema_migrations").fetchone()
    return row[0] or 0


def migrate(conn) -> int:
    """Apply every migration newer than the database's version; return the final version."""
    version = current_version(conn)
    latest = MIGRATIONS[-1][0]
    if version > latest:
        raise RuntimeError(
            f"the database is at schema version {version}, newer than this Oculus knows ({latest}); "
            "run a newer Oculus or restore a backup"
        )
    for number, name, sql in MIGRATIONS:
        if number <= version:
            continue
        conn.execute("BEGIN TRANSACTION")
        try:
            conn.execute(sql)
            conn.execute("INSERT INTO schema_migrations (version, name) VALUES (?, ?)", [number, name])
            conn.execute("COMMIT")
        except Exception:
            conn.execute("ROLLBACK")
            raise
        log.info("applied migration version=%d name=%r", number, name)
        version = number
    return version
