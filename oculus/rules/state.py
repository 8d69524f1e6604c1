"""The alert lifecycle of one rule instance: inactive → pending → firing → resolved.

`step` is a pure function of the instance, the condition's result and the
pass's clock, so tests drive it with any clock. It returns the transitions,
each of which becomes an `events` row and, when `notify` is set, a notification.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

INACTIVE, PENDING, FIRING, RESOLVED = "inactive", "pending", "firing", "resolved"


@dataclass
class AlertInstance:
    """One row of alert_state: a simple rule has one instance (""), an SQL rule one per result identity."""

    rule: str
    instance: str = ""
    state: str = INACTIVE
    severity: str = "warn"
    labels: dict = field(default_factory=dict)
    value: float | None = None
    no_data: bool = False
    active_since: datetime | None = None
    fired_at: datetime | None = None
    resolved_at: datetime | None = None
    last_eval: datetime | None = None
    last_notified: datetime | None = None
    message: str | None = None
    fields: dict = field(default_factory=dict, repr=False)  # last SQL result row, for messages; not stored

    @property
    def firing_notified(self) -> bool:
        """Whether the current (or last) firing episode has been notified; cooldown can delay it."""
        return self.last_notified is not None and self.fired_at is not None and self.last_notified >= self.fired_at


@dataclass
class Transition:
    """A state change, or a repeated or delayed notification of a firing alert (previous == state)."""

    rule: str
    instance: str
    previous: str
    state: str
    ts: datetime
    notify: bool
    reason: str | None = None
    value: float | None = None
    labels: dict = field(default_factory=dict)
    severity: str = "warn"
    message: str = ""
    channels: tuple = ()
    started_at: datetime | None = None  # when the alert (last) started firing


def step(alert: AlertInstance, holds: bool, now: datetime, rule) -> list[Transition]:
    """Advance `alert` by one evaluation whose condition result is `holds`; return the transitions."""
    alert.last_eval = now
    alert.severity = rule.severity
    if holds:
        return _holds(alert, now, rule)
    return _cleared(alert, now, rule)


def _transition(alert: AlertInstance, previous: str, now: datetime, notify: bool, reason: str | None = None):
    return Transition(alert.rule, alert.instance, previous, alert.state, now, notify, reason, alert.value,
                      dict(alert.labels), alert.severity, started_at=alert.fired_at)


def _holds(alert: AlertInstance, now: datetime, rule) -> list[Transition]:
    if alert.state in (INACTIVE, RESOLVED):
        previous = alert.state
        alert.active_since = now
        if rule.for_ > 0:
            alert.state = PENDING
            return [_transition(alert, previous, now, notify=False)]
        return [_fire(alert, previous, now, rule)]

    if alert.state == PENDING:
        if (now - alert.active_since).total_seconds() >= rule.for_:
            return [_fire(alert, PENDING, now, rule)]
        return []

    # Still firing: send a notification that cooldown held back, or a repeat.
    if not _cooldown_over(alert, now, rule):
        return []
    if not alert.firing_notified:
        alert.last_notified = now
        return [_transition(alert, FIRING, now, notify=True, reason="cooldown over")]
    if rule.repeat and (now - alert.last_notified).total_seconds() >= rule.repeat:
        alert.last_notified = now
        return [_transition(alert, FIRING, now, notify=True, reason="repeat")]
    return []


def _fire(alert: AlertInstance, previous: str, now: datetime, rule) -> Transition:
    alert.state = FIRING
    alert.fired_at = now
    alert.resolved_at = None
    notify = _cooldown_over(alert, now, rule)
    if notify:
        alert.last_notified = now
    return _transition(alert, previous, now, notify, None if notify else "cooldown")


def _cleared(alert: AlertInstance, now: datetime, rule) -> list[Transition]:
    if alert.state == PENDING:
        alert.state = INACTIVE
        alert.active_since = None
        return [_transition(alert, PENDING, now, notify=False)]
    if alert.state != FIRING:
        return []

    # A resolve is notified only when its firing was, so notifications always come in pairs.
    notify = rule.notify_resolved and alert.firing_notified
    alert.state = RESOLVED
    alert.resolved_at = now
    alert.active_since = None
    if notify:
        alert.last_notified = now
    reason = None if notify else ("notify_resolved is false" if not rule.notify_resolved else "firing not notified")
    return [_transition(alert, FIRING, now, notify, reason)]


def _cooldown_over(alert: AlertInstance, now: datetime, rule) -> bool:
    return alert.last_notified is None or (now - alert.last_notified).total_seconds() >= rule.cooldown
