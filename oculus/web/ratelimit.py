"""A token bucket per client, for endpoints that are expensive to serve."""

from __future__ import annotations

import math
import threading
import time


class TokenBuckets:
    """Allow each client `rate` requests a second on average, and bursts of up to `burst`.

    Clients idle long enough to have a full bucket again are forgotten once
    more than `max_clients` are tracked, so the table cannot grow without bound.
    """

    def __init__(self, rate: float, burst: int, max_clients: int = 10_000, clock=time.monotonic):
        self.rate = rate
        self.burst = burst
        self.max_clients = max_clients
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # client -> (tokens, time of last update)
        self._lock = threading.Lock()

    def acquire(self, client: str) -> float:
        """Take one token for `client`; return 0 on success, else the seconds until a token is free."""
        now = self._clock()
        with self._lock:
            tokens, updated = self._buckets.get(client, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - updated) * self.rate)
            if tokens >= 1.0:
                self._buckets[client] = (tokens - 1.0, now)
                self._forget_idle(now)
                return 0.0
            self._buckets[client] = (tokens, now)
            return (1.0 - tokens) / self.rate

    def _forget_idle(self, now: float) -> None:
        if len(self._buckets) <= self.max_clients:
            return
        refill_time = self.burst / self.rate
        for client, (_, updated) in list(self._buckets.items()):
            if now - updated >= refill_time:
                del self._buckets[client]


def retry_after_header(wait_seconds: float) -> str:
    """Retry-After takes whole seconds; round up so a client that obeys it is never rejected again."""
    return str(max(1, math.ceil(wait_seconds)))
