"""The rule thread: evaluates every rule each interval, stores the result, then queues notifications.

Order matters for "never twice, never lost": a pass's alert_state rows, its
`events` rows and one pending deliveries row per notification and channel are
committed by the writer in one transaction before the notifications are
queued. A process killed in between restarts from the committed state, which
already records "firing", and its dispatcher sends the pending deliveries.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from datetime import datetime

import duckdb

from oculus.logs import RateLimitedLog
from oculus.notify import Notification
from oculus.notify.store import pending_deliveries
from oculus.rules.evaluator import Evaluator, PassResult
from oculus.rules.state import FIRING, PENDING, RESOLVED
from oculus.rules.store import load_alerts, save_command
from oculus.rules.symbols import Freshness
from oculus.storage import utc_now
from oculus.storage.writer import Event

log = logging.getLogger(__name__)

# Longest wait for the writer to store one pass, at least; a slower writer shows in /readyz anyway.
MIN_SAVE_TIMEOUT = 5.0
NOTIFY_STATES = (FIRING, RESOLVED)


class RuleEngine:
    """Owns the evaluator, its thread and the hand-off to the writer and the notification queue."""

    def __init__(self, config, database, writer, notifications: queue.Queue, clock=utc_now):
        self.rules = config.rules
        self.alerting = config.alerting
        self.database = database
        self.writer = writer
        self.notifications = notifications
        self.clock = clock
        self.evaluator = Evaluator(self.rules, self.alerting, Freshness(self.alerting.no_data_after,
                                                                         config.collectors))
        self.passes = 0
        self.last_pass: PassResult | None = None
        self.notifications_dropped = 0
        self._restored = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="oculus-rules", daemon=True)
        self._error_log = RateLimitedLog(log, 60.0)

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout: float) -> bool:
        """Finish the pass in progress and stop; return False when the thread is still running after `timeout`."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        if self._thread.is_alive():
            log.error("rule thread did not stop within %.1fs", timeout)
            return False
        return True

    def _run(self) -> None:
        log.info("rule engine started rules=%d interval=%.1fs", len(self.rules), self.alerting.interval)
        next_pass = time.monotonic()
        while not self._stop.is_set():
            try:
                self.run_pass()
            except Exception:  # the rule thread must outlive any one failed pass; the error is logged
                self._error_log.error("pass", "rule evaluation pass failed")
                log.debug("rule pass traceback", exc_info=True)
            next_pass += self.alerting.interval
            delay = next_pass - time.monotonic()
            if delay < 0:
                # A pass longer than the interval: start the next one now rather than catching up in a burst.
                self._error_log.warning("slow", "rule pass took longer than the interval interval=%.1fs",
                                        self.alerting.interval)
                next_pass = time.monotonic()
                delay = 0.0
            self._stop.wait(delay)
        log.info("rule engine stopped passes=%d", self.passes)

    # -- one pass ------------------------------------------------------------

    def run_pass(self, now: datetime | None = None) -> PassResult:
        """Evaluate every rule at `now` (default: the clock, read once), store the result, queue notifications."""
        cursor = self.database.reader()
        if not self._restored:
            self._restore(cursor)
        now = self.clock() if now is None else now
        result = self.evaluator.evaluate(cursor, now)
        notifications = self._notifications(result)
        self._save(result.changed, [transition_event(t) for t in result.transitions], notifications)
        self._queue(notifications)
        self.passes += 1
        self.last_pass = result
        return result

    def _restore(self, cursor) -> None:
        """Load stored alert instances; resolve those of rules that are no longer configured."""
        try:
            stored = load_alerts(cursor)
        except duckdb.Error as exc:
            raise RuntimeError(f"alert state could not be read: {exc}") from None
        orphans = self.evaluator.restore(stored)
        self._restored = True
        active = [a for a in stored if a.state in (PENDING, FIRING)]
        log.info("alert state loaded instances=%d pending=%d firing=%d", len(stored),
                 sum(a.state == PENDING for a in active), sum(a.state == FIRING for a in active))

        retired = [a for a in orphans if a.state in (PENDING, FIRING)]
        if retired:
            now = self.clock()
            events = []
            for alert in retired:
                previous = alert.state
                alert.state, alert.resolved_at, alert.last_eval = RESOLVED, now, now
                events.append(Event("alert", "info", f"{alert.rule} resolved: the rule was removed from the config",
                                    "rules", {"rule": alert.rule, "instance": alert.instance, "from": previous,
                                              "to": RESOLVED, "notify": False, "reason": "rule removed"}, now))
            log.info("alerts of removed rules resolved count=%d", len(retired))
            self._save(retired, events)

    def _save(self, alerts: list, events: list[Event], notifications: list[Notification] = ()) -> None:
        if not alerts and not events:
            return
        timeout = max(MIN_SAVE_TIMEOUT, self.alerting.interval)
        now = self.clock()
        command = save_command(alerts, events, [], pending_deliveries(list(notifications), now), now)
        try:
            self.writer.run_command(command, "alert state", timeout=timeout)
        except (TimeoutError, duckdb.Error) as exc:
            # Notifications still go out: a missed alert is worse than a rare duplicate after a restart.
            self._error_log.error("save", "alert state not stored error=%s", exc)

    def _notifications(self, result: PassResult) -> list[Notification]:
        notifications = []
        for transition in result.transitions:
            if not transition.notify or transition.state not in NOTIFY_STATES:
                continue
            notifications.append(Notification(transition.rule, transition.instance, transition.state,
                                              transition.severity, transition.message, transition.ts,
                                              transition.value, transition.labels, transition.channels,
                                              transition.reason, transition.started_at))
        return notifications

    def _queue(self, notifications: list[Notification]) -> None:
        for notification in notifications:
            try:
                self.notifications.put_nowait(notification)
            except queue.Full:
                # The pending deliveries are stored, so the next start sends them; this process does not.
                self.notifications_dropped += 1
                self._error_log.error("notify-full", "notification queue full, notification not sent until the "
                                      "next start rule=%s dropped_total=%d", notification.rule,
                                      self.notifications_dropped)

    # -- health --------------------------------------------------------------

    def health(self) -> dict:
        """Return the rule thread's health for /readyz: alive, passes, last pass time and duration."""
        last = self.last_pass
        return {
            "running": self.is_alive(),
            "rules": len(self.rules),
            "passes": self.passes,
            "last_pass": last.now if last else None,
            "last_pass_ms": round(last.duration_ms, 1) if last else None,
            "notifications_dropped": self.notifications_dropped,
        }


def transition_event(transition) -> Event:
    """Return the `events` row (kind alert) of one transition."""
    label = transition.state if transition.previous != transition.state else f"{transition.state} ({transition.reason})"
    severity = transition.severity if transition.state == FIRING else "info"
    payload = {
        "rule": transition.rule, "instance": transition.instance, "labels": transition.labels,
        "from": transition.previous, "to": transition.state, "value": transition.value,
        "severity": transition.severity, "notify": transition.notify, "reason": transition.reason,
        "channels": list(transition.channels),
    }
    return Event("alert", severity, f"{transition.rule} {label}: {transition.message}", "rules", payload,
                 transition.ts)

