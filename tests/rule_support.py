"""A rule engine on a real DuckDB file and writer, driven by a simulated clock, for the rule tests."""

from __future__ import annotations

import json
import queue
from datetime import datetime, timedelta
from pathlib import Path

from oculus.collectors.base import Sample
from oculus.config import load_config
from oculus.rules.engine import RuleEngine
from oculus.storage import Database
from oculus.storage.writer import Writer

T0 = datetime(2026, 3, 1, 12, 0, 0)


def at(seconds: float) -> datetime:
    """Return T0 plus `seconds`."""
    return T0 + timedelta(seconds=seconds)


def load_rules_config(directory: Path, text: str, db_path: Path | None = None):
    path = directory / "rules.yaml"
    path.write_text(text, encoding="utf-8")
    flags = {"path": str(db_path)} if db_path is not None else None
    return load_config(str(path), env={}, flags=flags)


class RuleHarness:
    """Database, writer and rule engine in process; samples and passes are placed at simulated times."""

    def __init__(self, directory: Path, config_text: str):
        self.directory = directory
        self.config_text = config_text
        self.db_path = directory / "oculus.duckdb"
        self.config = load_rules_config(directory, config_text, self.db_path)
        self.database = Database(str(self.db_path))
        self.database.open()
        self.writer = Writer(self.database, 10_000, 10_000, 0.05)
        self.writer.start()
        self.notifications: queue.Queue = queue.Queue(maxsize=1000)
        self.engine = self.new_engine()

    def new_engine(self) -> RuleEngine:
        return RuleEngine(self.config, self.database, self.writer, self.notifications)

    def restart(self) -> None:
        """Replace the engine by a new one that has only the stored state, as after a process restart."""
        self.engine = self.new_engine()

    def sample(self, symbol: str, seconds: float, value, success: bool = True) -> None:
        category = symbol.split(".")[0]
        self.writer.run_command(lambda conn: None, "flush")  # earlier samples first, so `latest` stays ordered
        self.writer.put([Sample(at(seconds), category, symbol, value, success, 1.0, {})])
        self.writer.run_command(lambda conn: None, "flush")

    def run(self, seconds: float):
        """Run one pass at T0 + `seconds`; return its transitions as (rule, from, to, notify) tuples."""
        result = self.engine.run_pass(at(seconds))
        return [(t.rule, t.previous, t.state, t.notify) for t in result.transitions]

    def notified(self) -> list[tuple]:
        """Return and forget the queued notifications as (rule, state, reason, message) tuples."""
        items = []
        while True:
            try:
                item = self.notifications.get_nowait()
            except queue.Empty:
                return items
            items.append((item.rule, item.state, item.reason, item.message))

    def stored_state(self, rule: str, instance: str = "") -> dict:
        cursor = self.database.reader()
        row = cursor.execute("SELECT state, value, no_data, active_since, fired_at, resolved_at, last_eval, "
                             "last_notified, labels FROM alert_state WHERE rule = ? AND instance = ?",
                             [rule, instance]).fetchone()
        if row is None:
            return {}
        names = ("state", "value", "no_data", "active_since", "fired_at", "resolved_at", "last_eval",
                 "last_notified", "labels")
        return dict(zip(names, row, strict=True))

    def alert_events(self, rule: str | None = None) -> list[dict]:
        cursor = self.database.reader()
        rows = cursor.execute("SELECT ts, severity, message, payload FROM events WHERE kind = 'alert' "
                              "ORDER BY id").fetchall()
        events = [{**json.loads(payload), "ts": ts, "severity": severity, "message": message}
                  for ts, severity, message, payload in rows]
        return [event for event in events if rule is None or event["rule"] == rule]

    def close(self) -> None:
        self.writer.stop(5.0)
        self.database.close()
