"""Replay stored history through the live evaluator to show when rules would have fired and resolved.

The backtest steps a simulated clock through the range at alerting.interval
and calls the same Evaluator.evaluate as the rule thread, so `for`, cooldown,
repeat and windows behave as they do live. Latest values are read from
`samples` as of the simulated time rather than from the `latest` table. The
user's database is never written: it is opened read-only, or copied first
when a running Oculus has it open.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime, timedelta

import duckdb

from oculus.config.values import format_duration
from oculus.rules.data import quoted_catalog
from oculus.rules.evaluator import Evaluator
from oculus.rules.symbols import Freshness
from oculus.storage import utc_now

SHOWN_STATES = ("firing", "resolved")
# Simulated passes whose data is read with one pair of queries; larger chunks join more rows at once.
CHUNK = 360
_LOCK_HOLDER = re.compile(r"\(PID (?P<pid>\d+)\)")


class BacktestError(RuntimeError):
    """The backtest cannot run; the message states why and what to do."""


@dataclass
class Replay:
    start: datetime
    end: datetime
    passes: int
    transitions: list


def open_history(path: str, say) -> tuple[object, str | None]:
    """Open the database read-only, or a copy of it when another process has it open; return (connection, tempdir)."""
    if not os.path.exists(path):
        raise BacktestError(f"database {path} does not exist; pass the file Oculus writes with --db-path")
    try:
        return _connect(path), None
    except duckdb.IOException as exc:
        holder = _LOCK_HOLDER.search(str(exc))
        if holder is None:
            raise BacktestError(f"cannot open database {path}: {exc}") from None
        pid = holder.group("pid")

    # DuckDB lets one process write a file. A running Oculus has that lock, so replay from a copy.
    directory = tempfile.mkdtemp(prefix="oculus-backtest-")
    copy = os.path.join(directory, os.path.basename(path))
    shutil.copy2(path, copy)
    if os.path.exists(path + ".wal"):
        shutil.copy2(path + ".wal", copy + ".wal")
    say(f"database {path} is in use by PID {pid}; replaying from a copy in {directory}")
    try:
        # The copy is opened read-write so DuckDB can replay the copied WAL into it; the original is untouched.
        connection = duckdb.connect(copy)
    except duckdb.Error as exc:
        shutil.rmtree(directory, ignore_errors=True)
        raise BacktestError(f"cannot open the copy of {path} (it may have changed while it was copied; "
                            f"try again): {exc}") from None
    return connection, directory


def _connect(path: str):
    connection = duckdb.connect(path, read_only=True)
    connection.execute("SET TimeZone = 'UTC'")
    return connection


# Views that hide rows after the simulated time from SQL rules. Temporary objects come first in DuckDB's
# search path, so an SQL rule's "FROM metrics" reads these. alert_state is not replayed and stays as stored.
_HISTORY_VIEWS = """
    CREATE OR REPLACE TEMP VIEW samples AS SELECT * FROM {catalog}.main.samples WHERE ts <= getvariable('oculus_now');
    CREATE OR REPLACE TEMP VIEW metrics AS SELECT * FROM {catalog}.main.metrics WHERE ts <= getvariable('oculus_now');
    CREATE OR REPLACE TEMP VIEW events AS SELECT * FROM {catalog}.main.events WHERE ts <= getvariable('oculus_now');
    CREATE OR REPLACE TEMP VIEW latest AS
        SELECT symbol, arg_max(category, ts) AS category, max(ts) AS ts, arg_max(value, ts) AS value,
               arg_max(success, ts) AS success, arg_max(duration_ms, ts) AS duration_ms, arg_max(tags, ts) AS tags,
               NULL::DOUBLE AS prev_value, NULL::TIMESTAMP AS prev_ts, max(ts) FILTER (WHERE success) AS last_ok_ts
        FROM {catalog}.main.samples WHERE ts <= getvariable('oculus_now') GROUP BY symbol;
"""


def _set_history_time(cursor, now: datetime) -> None:
    cursor.execute("SET VARIABLE oculus_now = ?::TIMESTAMP", [now])


def replay(config, cursor, since: float, rule_names: list | None = None, end: datetime | None = None) -> Replay:
    """Evaluate the rules every alerting.interval over the `since` seconds before `end` (default now)."""
    rules = [rule for rule in config.rules if rule_names is None or rule.name in rule_names]
    cursor.execute("SET TimeZone = 'UTC'")
    end = end or utc_now()
    start = end - timedelta(seconds=since)
    step = timedelta(seconds=config.alerting.interval)
    if any(rule.kind == "sql" for rule in rules):
        _set_history_time(cursor, start)
        cursor.execute(_HISTORY_VIEWS.format(catalog=quoted_catalog(cursor)))
    evaluator = Evaluator(rules, config.alerting, Freshness(config.alerting.no_data_after, config.collectors),
                          from_history=True, before_sql=_set_history_time)

    times = []
    now = start
    while now <= end:
        times.append(now)
        now += step
    transitions = []
    for first in range(0, len(times), CHUNK):
        chunk = times[first:first + CHUNK]
        snapshots = evaluator.reader.read_many(cursor, chunk) if evaluator.simple else [None] * len(chunk)
        for now, snapshot in zip(chunk, snapshots, strict=True):
            transitions.extend(evaluator.evaluate(cursor, now, snapshot).transitions)
    return Replay(start, end, len(times), transitions)


def format_transition(transition) -> str:
    value = "-" if transition.value is None else f"{transition.value:.10g}"
    state = transition.state if transition.previous != transition.state else f"{transition.state}({transition.reason})"
    note = "" if transition.notify else "  [not notified: " + (transition.reason or "") + "]"
    instance = f" {transition.instance}" if transition.instance else ""
    return (f"{transition.ts.isoformat(sep=' ', timespec='seconds')}  {transition.rule}{instance}  {state}  "
            f"value={value}  {transition.message}{note}")


def transition_json(transition) -> str:
    return json.dumps({
        "ts": transition.ts.isoformat(timespec="milliseconds") + "Z", "rule": transition.rule,
        "instance": transition.instance, "from": transition.previous, "to": transition.state,
        "value": transition.value, "notify": transition.notify, "reason": transition.reason,
        "message": transition.message,
    })


def run_backtest(config, db_path: str, since: float, rule_names: list | None, as_json: bool, out, err) -> int:
    """The `oculus rules test` command: print each firing and resolve; return the exit code."""
    missing = [name for name in rule_names or [] if name not in {rule.name for rule in config.rules}]
    if missing:
        known = ", ".join(rule.name for rule in config.rules) or "none"
        err(f"no rule named {', '.join(missing)} in {config.source}; rules: {known}")
        return 2
    if not config.rules:
        err(f"{config.source} has no rules to test")
        return 2
    try:
        connection, copy_directory = open_history(db_path, err)
    except BacktestError as exc:
        err(str(exc))
        return 1

    try:
        result = replay(config, connection.cursor(), since, rule_names)
    finally:
        connection.close()
        if copy_directory:
            shutil.rmtree(copy_directory, ignore_errors=True)

    shown = [t for t in result.transitions if t.state in SHOWN_STATES]
    err(f"replayed {len(rule_names or config.rules)} rule(s) from {result.start:%Y-%m-%d %H:%M:%S} to "
        f"{result.end:%Y-%m-%d %H:%M:%S} UTC every {format_duration(config.alerting.interval)} "
        f"({result.passes} passes)")
    for transition in shown:
        out(transition_json(transition) if as_json else format_transition(transition))
    if not as_json:
        fired = sum(1 for t in shown if t.state == "firing" and t.previous != "firing")
        out(f"{fired} firing(s), {sum(1 for t in shown if t.state == 'resolved')} resolve(s)")
    return 0
