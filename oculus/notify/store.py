"""The deliveries table: pending rows from the rule engine, attempt outcomes from the channel workers.

Every write here runs on the writer thread, inside a writer Command, because
the writer is the only code that writes to DuckDB. Each outcome also becomes
an `events` row of kind "notification", which the web layer shows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta

from oculus.notify.notification import Notification
from oculus.storage import utc_now
from oculus.storage.writer import Event, insert_events

PENDING, RETRYING, DELIVERED, FAILED = "pending", "retrying", "delivered", "failed"
OPEN_STATUSES = (PENDING, RETRYING)
EVENT_KIND = "notification"
_EVENT_SEVERITY = {DELIVERED: "info", RETRYING: "warn", FAILED: "error", PENDING: "info"}

_COLUMNS = ("id", "notification", "channel", "rule", "instance", "state", "severity", "status", "attempts",
            "created_at", "updated_at", "next_attempt", "last_error", "content")
_TYPES = ("VARCHAR", "VARCHAR", "VARCHAR", "VARCHAR", "VARCHAR", "VARCHAR", "VARCHAR", "VARCHAR", "INTEGER",
          "TIMESTAMP", "TIMESTAMP", "TIMESTAMP", "VARCHAR", "VARCHAR")

# One statement for new rows and updates, so an outcome is stored even when the pending row never was
# (the rule engine queues a notification whose save timed out).
_UPSERT = f"""
    INSERT INTO deliveries ({', '.join(_COLUMNS)})
    SELECT {', '.join(f'unnest(${i + 1}::{kind}[])' + ('::JSON' if name == 'content' else '')
                     for i, (name, kind) in enumerate(zip(_COLUMNS, _TYPES, strict=True)))}
    ON CONFLICT (id) DO UPDATE SET
        status = excluded.status, attempts = excluded.attempts, updated_at = excluded.updated_at,
        next_attempt = excluded.next_attempt, last_error = excluded.last_error
"""


@dataclass
class Delivery:
    """One notification on its way to one channel."""

    notification: Notification
    channel: str
    status: str = PENDING
    attempts: int = 0
    created_at: datetime | None = None
    next_attempt: datetime | None = None  # None: send when the batch window closes
    last_error: str | None = None

    @property
    def id(self) -> str:
        return self.notification.delivery_id(self.channel)


def pending_deliveries(notifications: list[Notification], now: datetime) -> list[Delivery]:
    """Return one pending delivery per notification and channel."""
    return [Delivery(n, channel, created_at=now) for n in notifications for channel in n.channels]


def insert_pending(conn, deliveries: list[Delivery], now: datetime) -> None:
    """Store `deliveries` as they are; call on the writer thread, inside its transaction or a Command."""
    _upsert(conn, [_row(d, now) for d in deliveries])


def _upsert(conn, rows: list[tuple]) -> None:
    if rows:
        conn.execute(_UPSERT, [list(column) for column in zip(*rows, strict=True)])


def outcome_command(deliveries: list[Delivery], now: datetime, detail: dict):
    """Return a writer command that stores the new status of `deliveries` and one event per delivery.

    `detail` carries what the events report besides the delivery, such as retry_in. The rows are built
    now, because the worker changes the Delivery objects again before the writer runs the command.
    """
    rows = [_row(d, now) for d in deliveries]
    events = [outcome_event(d, now, detail) for d in deliveries]

    def store(conn) -> int:
        conn.execute("BEGIN TRANSACTION")
        try:
            _upsert(conn, rows)
            insert_events(conn, events)
            conn.execute("COMMIT")
        except Exception:
            conn.execute("ROLLBACK")
            raise
        return len(rows)

    return store


def outcome_event(delivery: Delivery, now: datetime, detail: dict) -> Event:
    """Return the `events` row of one attempt's outcome for one delivery."""
    n = delivery.notification
    label = f"{n.rule}{' ' + n.instance if n.instance else ''} {n.state}"
    if delivery.status == DELIVERED:
        text = f"{label}: delivered to {delivery.channel}"
    elif delivery.status == RETRYING:
        text = (f"{label}: not delivered to {delivery.channel} (attempt {delivery.attempts}), "
                f"retrying in {detail.get('retry_in', 0):g}s: {delivery.last_error}")
    else:
        text = f"{label}: failed to deliver to {delivery.channel} after {delivery.attempts} attempt(s): " \
               f"{delivery.last_error}"
    payload = {
        "rule": n.rule, "instance": n.instance, "state": n.state, "severity": n.severity, "channel": delivery.channel,
        "delivery": delivery.id, "notification": n.id, "status": delivery.status, "attempt": delivery.attempts,
        "error": delivery.last_error, **detail,
    }
    return Event(EVENT_KIND, _EVENT_SEVERITY[delivery.status], text, "notify", payload, now)


def load_open(cursor) -> list[Delivery]:
    """Return every delivery that is still pending or retrying, oldest first."""
    rows = cursor.execute("""
        SELECT channel, status, attempts, created_at, next_attempt, last_error, content FROM deliveries
        WHERE status IN ('pending', 'retrying') ORDER BY created_at, id
    """).fetchall()
    deliveries = []
    for channel, status, attempts, created_at, next_attempt, last_error, content in rows:
        notification = Notification.from_dict(json.loads(content))
        deliveries.append(Delivery(notification, channel, status, attempts, created_at, next_attempt, last_error))
    return deliveries


def prune_command(retention: float):
    """Return a writer command that deletes finished deliveries older than `retention` seconds."""

    def prune(conn) -> int:
        cutoff = utc_now() - timedelta(seconds=retention)
        return conn.execute("DELETE FROM deliveries WHERE status IN ('delivered', 'failed') AND updated_at < ?",
                            [cutoff]).fetchone()[0]

    return prune


def _row(delivery: Delivery, now: datetime) -> tuple:
    n = delivery.notification
    return (delivery.id, n.id, delivery.channel, n.rule, n.instance, n.state, n.severity, delivery.status,
            delivery.attempts, delivery.created_at or now, now, delivery.next_attempt, delivery.last_error,
            json.dumps(n.to_dict(), default=str))
