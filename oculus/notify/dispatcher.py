"""The notification dispatcher: takes notifications off the rule engine's queue and hands them to channel workers.

The rule engine stores each notification's deliveries as pending in the same
transaction as the alert state. At start the dispatcher loads the deliveries
that were still open when the process stopped, so each is sent once after a
restart. Outcomes go back through the writer as deliveries updates and
`events` rows of kind "notification".
"""

from __future__ import annotations

import logging
import queue
import threading
import time

from oculus.config import ChannelSpec, log_channel
from oculus.notify.channels import Channel, ChannelError, Outcome, build_channel
from oculus.notify.notification import LOG_CHANNEL, Notification
from oculus.notify.store import FAILED, Delivery, load_open, outcome_command, pending_deliveries
from oculus.notify.worker import ChannelWorker
from oculus.selfmetrics import record_notification
from oculus.storage import utc_now
from oculus.storage.writer import Command

log = logging.getLogger(__name__)

STOP = object()
# Maximum wait for the writer to store a log delivery before its line is written anyway.
RECORD_TIMEOUT = 2.0


class BrokenChannel(Channel):
    """Stands in for a channel whose settings apprise rejected: every delivery fails with that reason."""

    def __init__(self, spec: ChannelSpec, reason: str):
        super().__init__(spec, "")
        self.reason = reason

    def send(self, notifications: list[Notification]) -> Outcome:
        return Outcome(False, self.reason, permanent=True)


class NotificationDispatcher:
    """Consumes `notifications` on its own thread; start(), then stop() after the producers have stopped.

    Without `channels` only the log channel exists; without `writer` and `database` nothing is stored,
    which suits tests of the delivery alone.
    """

    def __init__(self, notifications: queue.Queue, channels: dict[str, ChannelSpec] | None = None,
                 base_url: str = "", writer=None, database=None, clock=utc_now):
        self.queue = notifications
        self.channels = channels or {LOG_CHANNEL: log_channel()}
        self.base_url = base_url
        self.writer = writer
        self.database = database
        self.clock = clock
        self.delivered = 0
        self.workers: dict[str, ChannelWorker] = {}
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="oculus-notify", daemon=True)

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> None:
        """Build the channel workers, give them the deliveries still open in the database, start the threads."""
        self.workers = self._build_workers(self.channels)
        restored = self._load_open()
        if restored:
            log.info("open notification deliveries loaded count=%d", len(restored))
            self._hand_over(restored)
        for worker in self.workers.values():
            worker.start()
        self._thread.start()

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout: float) -> bool:
        """Hand over what is queued, then stop the workers; return False when a thread did not stop in time."""
        deadline = time.monotonic() + timeout
        try:
            self.queue.put(STOP, timeout=max(0.0, timeout))
        except queue.Full:
            log.error("notification dispatcher stop request not queued: queue still full after %.1fs", timeout)
            return False
        self._thread.join(max(0.0, deadline - time.monotonic()))
        stopped = not self._thread.is_alive()
        for worker in self._current_workers():
            stopped = worker.stop(max(0.0, deadline - time.monotonic())) and stopped
        if not stopped:
            log.error("notification dispatcher did not stop within %.1fs; open deliveries are sent after the "
                      "next start", timeout)
        return stopped

    def reconfigure(self, channels: dict[str, ChannelSpec], base_url: str, timeout: float = 5.0) -> None:
        """Apply a reloaded config: new workers take over the open deliveries of the old ones."""
        with self._lock:
            old, self.channels, self.base_url = self.workers, channels, base_url
            open_deliveries = []
            deadline = time.monotonic() + timeout
            for worker in old.values():
                worker.stop(max(0.0, deadline - time.monotonic()))
                open_deliveries += worker.pending()
            self.workers = self._build_workers(channels)
            for worker in self.workers.values():
                worker.start()
        self._hand_over(open_deliveries)

    def _current_workers(self) -> list[ChannelWorker]:
        with self._lock:
            return list(self.workers.values())

    def _build_workers(self, channels: dict[str, ChannelSpec]) -> dict[str, ChannelWorker]:
        workers = {}
        for name, spec in channels.items():
            try:
                channel = build_channel(spec, self.base_url)
            except ChannelError as exc:
                log.error("notification channel not usable, its deliveries fail channel=%s error=%s", name, exc)
                channel = BrokenChannel(spec, str(exc))
            workers[name] = ChannelWorker(channel, self._record, self.clock)
        return workers

    def _load_open(self) -> list[Delivery]:
        if self.database is None:
            return []
        try:
            return load_open(self.database.reader())
        except Exception as exc:  # a damaged row must not stop Oculus; the deliveries are then not resent
            log.error("open notification deliveries could not be loaded error=%s", exc)
            return []

    # -- intake --------------------------------------------------------------

    def _run(self) -> None:
        while True:
            item = self.queue.get()
            if item is STOP:
                return
            try:
                self.deliver(item)
            except Exception:  # one broken notification must not end delivery of the others
                log.exception("notification not handed to its channels rule=%s", getattr(item, "rule", "?"))

    def deliver(self, notification: Notification) -> None:
        """Hand one notification to the workers of its channels."""
        self._hand_over(pending_deliveries([notification], self.clock()))
        self.delivered += 1

    def _hand_over(self, deliveries: list[Delivery]) -> None:
        with self._lock:
            workers = dict(self.workers)
        by_channel: dict[str, list[Delivery]] = {}
        for delivery in deliveries:
            by_channel.setdefault(delivery.channel, []).append(delivery)
        for channel, items in by_channel.items():
            worker = workers.get(channel)
            if worker is not None:
                worker.add(items)
                continue
            # The config no longer has this channel (a reload or restart removed it).
            for delivery in items:
                delivery.status, delivery.last_error = FAILED, f'channel "{channel}" is not configured'
            log.error("notification not delivered: channel is not configured channel=%s alerts=%d",
                      channel, len(items))
            self._record(items, {"permanent": True}, False)

    # -- outcomes ------------------------------------------------------------

    def _record(self, deliveries: list[Delivery], detail: dict, wait: bool) -> None:
        """Store the outcome of `deliveries` through the writer and count it in the self-metrics."""
        for delivery in deliveries:
            record_notification(delivery.channel, delivery.status)
        if self.writer is None:
            return
        command = outcome_command(deliveries, self.clock(), detail)
        if not wait:
            self.writer.put(Command(command, "notification outcome"))
            return
        try:
            self.writer.run_command(command, "notification outcome", timeout=RECORD_TIMEOUT)
        except Exception as exc:  # the notification still goes out; the outcome is then missing in the database
            log.error("notification outcome not stored error=%s", exc)

    # -- health --------------------------------------------------------------

    def health(self) -> dict:
        """Return the dispatcher's health for /readyz: threads alive, queue length, open deliveries per channel."""
        workers = self._current_workers()
        return {
            "running": self.is_alive() and all(worker.is_alive() for worker in workers),
            "queued": self.queue.qsize(),
            "channels": {worker.spec.name: {"open": len(worker.pending()), "running": worker.is_alive(),
                                            "last_error": worker.last_error} for worker in workers},
        }
