"""One thread per channel: collect deliveries for the batch window, send them as one message, retry, record.

A slow or rate-limited service therefore delays only its own channel. All
timing goes through `step(now)`, which the thread calls with the clock and
tests call with any time they like.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime, timedelta

from oculus.notify.channels import Channel, Outcome
from oculus.notify.store import DELIVERED, FAILED, RETRYING, Delivery
from oculus.storage import utc_now

log = logging.getLogger(__name__)

# Alerts in one message at most: a longer list would pass the message size limit of chat services.
MAX_BATCH = 50
# Maximum wait between two retries, whatever retry_delay and the attempt count give.
MAX_RETRY_DELAY = 3600.0
# The thread wakes at least this often, so a changed clock cannot leave it asleep for long.
MAX_IDLE = 60.0
# Ids of finished deliveries remembered, so the same delivery handed over twice is sent once.
FINISHED_IDS = 10_000

# Stores the outcome of deliveries: (deliveries, event details, wait until the writer has stored it).
Recorder = Callable[[list[Delivery], dict, bool], None]


class ChannelWorker:
    """Owns the open deliveries of one channel; add() from any thread, start(), then stop()."""

    def __init__(self, channel: Channel, record: Recorder, clock=utc_now):
        self.channel = channel
        self.spec = channel.spec
        self.record = record
        self.clock = clock
        self.last_error: str | None = None
        self._due: dict[str, datetime] = {}
        self._deliveries: dict[str, Delivery] = {}
        self._finished: OrderedDict[str, None] = OrderedDict()
        self._window_closes: datetime | None = None
        self._hold_until: datetime | None = None
        self._changed = False
        self._stopping = False
        self._condition = threading.Condition()
        self._thread = threading.Thread(target=self._run, name=f"oculus-notify-{self.spec.name}", daemon=True)

    # -- producer side -----------------------------------------------------

    def add(self, deliveries: list[Delivery], now: datetime | None = None) -> None:
        """Take `deliveries`; a new one waits for the open batch window, a restored one for its next attempt."""
        now = now or self.clock()
        with self._condition:
            for delivery in deliveries:
                if delivery.id in self._deliveries or delivery.id in self._finished:
                    continue  # already held or sent, such as a delivery restored and queued again
                self._deliveries[delivery.id] = delivery
                self._due[delivery.id] = delivery.next_attempt or self._batch_due(delivery, now)
            self._changed = True
            self._condition.notify()

    def _batch_due(self, delivery: Delivery, now: datetime) -> datetime:
        if delivery.attempts:
            return now  # restored after a restart without a retry time: try again at once
        if self._window_closes is None or self._window_closes <= now:
            self._window_closes = now + timedelta(seconds=self.spec.batch)
        return self._window_closes

    def pending(self) -> list[Delivery]:
        with self._condition:
            return list(self._deliveries.values())

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout: float) -> bool:
        """Stop after the send in progress; return False when the thread is still sending after `timeout`.

        A local channel (log) first sends what is due. Remote channels send nothing more: their open
        deliveries stay in the deliveries table and go out after the next start.
        """
        with self._condition:
            self._stopping = True
            self._condition.notify()
        if self._thread.is_alive():
            self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        while True:
            wait = self.step(self.clock())
            with self._condition:
                if self._stopping:
                    if self.channel.local:
                        self._send_due(self.clock())
                    return
                if not self._changed and wait != 0:
                    self._condition.wait(MAX_IDLE if wait is None else min(wait, MAX_IDLE))
                self._changed = False

    # -- one step ----------------------------------------------------------

    def step(self, now: datetime) -> float | None:
        """Send what is due at `now`; return seconds until something is due next, or None when nothing is open."""
        with self._condition:
            if self._hold_until is not None and now < self._hold_until:
                return (self._hold_until - now).total_seconds()
            due = self._take_due(now)
            if not due:
                return min(((at - now).total_seconds() for at in self._due.values()), default=None)
        self._send(due, now)
        return 0.0

    def _send_due(self, now: datetime) -> None:
        due = self._take_due(now)
        if due:
            self._send(due, now)

    def _take_due(self, now: datetime) -> list[Delivery]:
        """Remove and return up to MAX_BATCH due deliveries, oldest first; call with the lock held."""
        ready = sorted((at, delivery_id) for delivery_id, at in self._due.items() if at <= now)[:MAX_BATCH]
        taken = []
        for _, delivery_id in ready:
            del self._due[delivery_id]
            taken.append(self._deliveries.pop(delivery_id))
            self._finished[delivery_id] = None
        while len(self._finished) > FINISHED_IDS:
            self._finished.popitem(last=False)
        return taken

    def _send(self, deliveries: list[Delivery], now: datetime) -> None:
        if self.channel.local:
            # Writing to the log cannot fail, so "delivered" is stored first (waiting up to RECORD_TIMEOUT).
            # A process killed right after the log line then does not write it again after a restart.
            self._delivered(deliveries, wait=True)
            self._call_channel(deliveries)
            return
        started = time.monotonic()
        outcome = self._call_channel(deliveries)
        finished = now + timedelta(seconds=time.monotonic() - started)
        if outcome.delivered:
            self._delivered(deliveries)
        else:
            self._not_delivered(deliveries, outcome, finished)

    def _call_channel(self, deliveries: list[Delivery]) -> Outcome:
        try:
            return self.channel.send([d.notification for d in deliveries])
        except Exception as exc:  # a bug in one channel must not end its worker; the delivery is retried
            log.error("notification channel raised an error channel=%s error=%s", self.spec.name,
                      self.channel.mask(f"{type(exc).__name__}: {exc}"))
            log.debug("channel traceback", exc_info=True)
            return Outcome(False, f"internal error: {type(exc).__name__}")

    def _delivered(self, deliveries: list[Delivery], wait: bool = False) -> None:
        for delivery in deliveries:
            delivery.status, delivery.attempts, delivery.last_error = DELIVERED, delivery.attempts + 1, None
            delivery.next_attempt = None
        self.last_error = None
        if not self.channel.local:
            log.info("notification delivered channel=%s alerts=%d", self.spec.name, len(deliveries))
        self.record(deliveries, {}, wait)

    def _not_delivered(self, deliveries: list[Delivery], outcome: Outcome, now: datetime) -> None:
        self.last_error = outcome.error
        retrying, failed = [], []
        for delivery in deliveries:
            delivery.attempts += 1
            delivery.last_error = outcome.error
            if outcome.permanent or delivery.attempts > self.spec.retries:
                delivery.status, delivery.next_attempt = FAILED, None
                failed.append(delivery)
            else:
                delay = outcome.retry_after if outcome.retry_after is not None else self.backoff(delivery.attempts)
                delivery.status, delivery.next_attempt = RETRYING, now + timedelta(seconds=delay)
                retrying.append(delivery)

        if outcome.retry_after is not None:
            # A rate limit covers the whole channel, not only the message that met it.
            with self._condition:
                self._hold_until = now + timedelta(seconds=outcome.retry_after)
        if retrying:
            delay = (retrying[0].next_attempt - now).total_seconds()
            log.warning("notification not delivered, will retry channel=%s alerts=%d attempt=%d retry_in=%.1fs "
                        "error=%s", self.spec.name, len(retrying), retrying[0].attempts, delay, outcome.error)
            self.record(retrying, {"retry_in": round(delay, 3), "permanent": False}, False)
            with self._condition:
                for delivery in retrying:
                    self._finished.pop(delivery.id, None)
            self.add(retrying, now)
        if failed:
            log.error("notification failed, giving up channel=%s alerts=%d attempts=%d permanent=%s error=%s",
                      self.spec.name, len(failed), failed[0].attempts, outcome.permanent, outcome.error)
            self.record(failed, {"permanent": outcome.permanent}, False)

    def backoff(self, attempts: int) -> float:
        """Return the wait after the `attempts`-th failed attempt: retry_delay, doubled after each further one."""
        return min(self.spec.retry_delay * 2 ** (attempts - 1), MAX_RETRY_DELAY)
