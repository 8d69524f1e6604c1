"""The notification dispatcher thread: takes alert notifications off a queue and delivers them per channel.

Only the `log` channel is delivered so far: it writes each notification to
the `oculus.notify` logger. Any other channel name is logged once as not
delivered, because notification channels (apprise) are not built yet.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime

# The log channel writes here; the logger name is part of the documented log format.
log = logging.getLogger("oculus.notify")

STOP = object()
LOG_CHANNEL = "log"
_LEVELS = {"info": logging.INFO, "warn": logging.WARNING, "error": logging.ERROR, "critical": logging.CRITICAL}


@dataclass
class Notification:
    """One alert notification: a rule instance fired (or fired again) or resolved."""

    rule: str
    instance: str
    state: str          # firing or resolved
    severity: str
    message: str
    ts: datetime
    value: float | None = None
    labels: dict = field(default_factory=dict)
    channels: tuple = (LOG_CHANNEL,)
    reason: str | None = None  # "repeat" or "cooldown over" for a notification without a state change


class NotificationDispatcher:
    """Consumes `notifications` on its own thread; start(), then stop() after the producers have stopped."""

    def __init__(self, notifications: queue.Queue):
        self.queue = notifications
        self.delivered = 0
        self._undelivered_channels: set = set()
        self._thread = threading.Thread(target=self._run, name="oculus-notify", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout: float) -> bool:
        """Deliver what is queued, then stop; return False when the thread did not stop within `timeout`."""
        deadline = time.monotonic() + timeout
        try:
            self.queue.put(STOP, timeout=max(0.0, timeout))
        except queue.Full:
            log.error("notification dispatcher stop request not queued: queue still full after %.1fs", timeout)
            return False
        self._thread.join(max(0.0, deadline - time.monotonic()))
        if self._thread.is_alive():
            log.error("notification dispatcher did not stop within %.1fs; %d notifications still queued",
                      timeout, self.queue.qsize())
            return False
        return True

    def _run(self) -> None:
        while True:
            item = self.queue.get()
            if item is STOP:
                return
            try:
                self.deliver(item)
            except Exception:  # one broken notification must not end delivery of the others
                log.exception("notification delivery failed rule=%s", getattr(item, "rule", "?"))

    def deliver(self, notification: Notification) -> None:
        for channel in notification.channels:
            if channel == LOG_CHANNEL:
                self._log(notification)
            elif channel not in self._undelivered_channels:
                self._undelivered_channels.add(channel)
                log.warning("notification channel %s is not delivered: this version of Oculus sends "
                            "notifications to the log channel only rule=%s", channel, notification.rule)
        self.delivered += 1

    def _log(self, notification: Notification) -> None:
        level = _LEVELS.get(notification.severity, logging.WARNING) if notification.state == "firing" else logging.INFO
        suffix = f" ({notification.reason})" if notification.reason else ""
        log.log(level, "alert %s%s rule=%s instance=%s severity=%s value=%s message=%s",
                notification.state, suffix, notification.rule, notification.instance or "-",
                notification.severity, notification.value, notification.message)
