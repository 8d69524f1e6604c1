"""Read and write alert_state; the writes run as a Command on the single writer thread."""

from __future__ import annotations

import json

from oculus.notify.store import insert_pending
from oculus.rules.state import AlertInstance
from oculus.storage.writer import Event, insert_events

COLUMNS = ("rule", "instance", "state", "severity", "labels", "value", "no_data", "active_since", "fired_at",
           "resolved_at", "last_eval", "last_notified", "message")
_TYPES = ("VARCHAR", "VARCHAR", "VARCHAR", "VARCHAR", "VARCHAR", "DOUBLE", "BOOLEAN", "TIMESTAMP", "TIMESTAMP",
          "TIMESTAMP", "TIMESTAMP", "TIMESTAMP", "VARCHAR")

_UPSERT = f"""
    INSERT INTO alert_state ({', '.join(COLUMNS)})
    SELECT {', '.join(f'unnest(${i + 1}::{kind}[])' + ('::JSON' if name == 'labels' else '')
                     for i, (name, kind) in enumerate(zip(COLUMNS, _TYPES, strict=True)))}
    ON CONFLICT (rule, instance) DO UPDATE SET
        {', '.join(f'{name} = excluded.{name}' for name in COLUMNS[2:])}
"""


def load_alerts(cursor) -> list[AlertInstance]:
    """Return every stored alert instance."""
    rows = cursor.execute(f"SELECT {', '.join(COLUMNS)} FROM alert_state").fetchall()
    alerts = []
    for row in rows:
        values = dict(zip(COLUMNS, row, strict=True))
        values["labels"] = json.loads(values["labels"]) if values["labels"] else {}
        alerts.append(AlertInstance(**values))
    return alerts


def save_command(alerts: list[AlertInstance], events: list[Event], deleted: list[tuple],
                 deliveries: list | None = None, now=None):
    """Return a writer command that stores `alerts`, `events` and pending `deliveries` and deletes `deleted`
    in one transaction, so a stored state change always comes with its pending notifications."""

    def save(conn) -> int:
        conn.execute("BEGIN TRANSACTION")
        try:
            if alerts:
                conn.execute(_UPSERT, _columns(alerts))
            if events:
                insert_events(conn, events)
            if deliveries:
                insert_pending(conn, deliveries, now)
            for rule, instance in deleted:
                conn.execute("DELETE FROM alert_state WHERE rule = ? AND instance = ?", [rule, instance])
            conn.execute("COMMIT")
        except Exception:
            conn.execute("ROLLBACK")
            raise
        return len(alerts)

    return save


def _columns(alerts: list[AlertInstance]) -> list[list]:
    columns = []
    for name in COLUMNS:
        if name == "labels":
            columns.append([json.dumps(a.labels, default=str) if a.labels else None for a in alerts])
        else:
            columns.append([getattr(a, name) for a in alerts])
    return columns
