"""The scheduler thread: dispatches collector runs to a bounded worker pool.

It only dispatches. A run whose previous run is still going is skipped and
counted, so one slow target never delays the others or piles up threads.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

import schedule

from oculus.collectors import registry
from oculus.collectors.base import Reading, Sample
from oculus.logs import RateLimitedLog
from oculus.runtime.pool import WorkerPool
from oculus.storage import utc_now

log = logging.getLogger(__name__)

# The scheduler wakes at least this often, so stop requests and clock jumps are seen quickly.
MAX_SLEEP = 0.25
# The scheduler sleeps at least this long between wake-ups, so a run may start up to this late. Each
# wake-up scans every job (about 0.3 ms at 1,000 jobs), and waking for each run due a few milliseconds
# apart cost a fifth of a core at 1,000 targets every 5 s.
MIN_SLEEP = 0.02
# The clock-jump check scans every job too, so it runs at most once per this many seconds.
CLOCK_CHECK_EVERY = 1.0
# First runs are spread over at least START_SPREAD seconds, to avoid one burst at start-up. With more
# than START_SPREAD * START_RATE collectors they are spread further, up to the shortest interval, so
# at most START_RATE first runs start per second. The schedule keeps these offsets, so the spread
# also keeps the steady load even instead of repeating the burst every interval.
START_SPREAD = 2.0
START_RATE = 100.0


@dataclass
class CollectorState:
    """Run statistics of one collector, read by the web layer."""

    runs: int = 0
    failures: int = 0
    skipped: int = 0
    running: bool = False
    last_run: datetime | None = None
    last_duration_ms: float | None = None
    last_error: str | None = None


class CollectorScheduler:
    def __init__(self, workers: int, submit_samples, reader=None):
        self.reader = reader  # returns the calling thread's read cursor, for collectors that read history
        self.pool = WorkerPool(workers)
        self.submit_samples = submit_samples
        self.collectors: dict = {}          # key -> Collector
        self.symbol_owners: dict = {}       # symbol -> CollectorSpec, for the dashboard
        self.states: dict = {}              # key -> CollectorState
        self._schedule = schedule.Scheduler()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="oculus-scheduler", daemon=True)
        self._skip_log = RateLimitedLog(log, 60.0)
        self._error_log = RateLimitedLog(log, 60.0)
        self._periodic: list = []
        self._clock_checked = 0.0

    # -- configuration -----------------------------------------------------

    def set_collectors(self, specs: list) -> None:
        """Replace the collector set; unchanged collectors keep their statistics."""
        created = {spec.key: registry.create(spec) for spec in specs}
        owners = {}
        for collector in created.values():
            collector.reader = self.reader
            for symbol in _declared_symbols(collector):
                owners[symbol] = collector.spec
        with self._lock:
            old = self.collectors
            self.collectors = created
            self.symbol_owners = owners
            self.states = {key: self.states.get(key, CollectorState()) for key in created}
            self._schedule.clear("collector")
            now = datetime.now()
            spread = min(max(START_SPREAD, len(specs) / START_RATE),
                         min((s.interval for s in specs), default=START_SPREAD))
            for index, spec in enumerate(specs):
                job = self._schedule.every(spec.interval).seconds.do(self._dispatch, spec.key).tag("collector")
                job.next_run = now + timedelta(seconds=spread * index / max(1, len(specs)))
        for collector in old.values():
            collector.close()
        log.info("collectors scheduled count=%d", len(specs))

    def every(self, seconds: float, function) -> None:
        """Run a short housekeeping `function` on the scheduler thread every `seconds`."""
        with self._lock:
            self._schedule.every(seconds).seconds.do(function).tag("housekeeping")

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout: float) -> None:
        """Stop dispatching, then wait up to `timeout` for runs in progress."""
        self._stop.set()
        self._thread.join(timeout)
        for _, (_, state) in self.pool.shutdown():
            state.running = False  # queued behind busy workers and never started
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(s.running for s in self.states.values()):
            time.sleep(0.05)
        still_running = [key for key, s in self.states.items() if s.running]
        if still_running:
            log.warning("stopped with collector runs in progress: %s", ", ".join(still_running))
        for collector in self.collectors.values():
            collector.close()

    def _loop(self) -> None:
        while not self._stop.is_set():
            idle = None
            try:
                with self._lock:
                    if time.monotonic() - self._clock_checked >= CLOCK_CHECK_EVERY:
                        self._recover_from_clock_jump()
                        self._clock_checked = time.monotonic()
                    self._schedule.run_pending()
                    idle = self._schedule.idle_seconds
            except Exception:  # a failed job must not end scheduling for every collector
                log.exception("scheduled job failed")
            self._stop.wait(MAX_SLEEP if idle is None else min(MAX_SLEEP, max(MIN_SLEEP, idle)))

    def _recover_from_clock_jump(self) -> None:
        # schedule plans with the local wall clock, so a clock set back (NTP step, DST end)
        # would otherwise hold every job until the clock catches up.
        now = datetime.now()
        for job in self._schedule.jobs:
            period = timedelta(**{job.unit: job.interval})
            if job.next_run is not None and job.next_run - now > period + timedelta(seconds=1):
                job.next_run = now

    # -- runs --------------------------------------------------------------

    def _dispatch(self, key: str) -> None:
        collector = self.collectors.get(key)
        state = self.states.get(key)
        if collector is None or state is None:
            return
        if state.running:
            state.skipped += 1
            self._skip_log.warning(key, "collector run skipped, previous run still in progress "
                                   "collector=%s skipped_total=%d", key, state.skipped)
            return
        state.running = True
        try:
            self.pool.submit(self.run_once, collector, state)
        except RuntimeError:  # pool shut down during stop
            state.running = False

    def run_once(self, collector, state: CollectorState) -> list[Sample]:
        """Run one collection, store its samples and update `state`; never raises."""
        try:
            return self._collect(collector, state)
        finally:
            state.running = False

    def _collect(self, collector, state: CollectorState) -> list[Sample]:
        spec = collector.spec
        ts = utc_now()
        started = time.monotonic()
        try:
            readings = collector.collect(started + spec.timeout)
        except Exception as exc:  # a broken collector becomes failed samples, not a dead thread
            self._error_log.error(spec.key, "collector raised collector=%s error=%s: %s",
                                  spec.key, type(exc).__name__, exc)
            log.debug("collector traceback collector=%s", spec.key, exc_info=True)
            readings = _failed_readings(collector, f"collector error: {type(exc).__name__}: {exc}")
        duration_ms = (time.monotonic() - started) * 1000

        samples = []
        for reading in readings:
            _reject_non_number(reading)
            # Symbols found only at run time (a Polymarket event's options) get their owner here.
            self.symbol_owners.setdefault(reading.symbol, spec)
            tags = {**spec.tags, **reading.tags}
            if reading.error:
                tags["error"] = reading.error
            samples.append(Sample(reading.ts or ts, collector.CATEGORY, reading.symbol, reading.value,
                                  reading.success, duration_ms, tags))
        self.submit_samples(samples)

        errors = [r.error for r in readings if not r.success and r.error]
        state.runs += 1
        state.last_run = ts
        state.last_duration_ms = duration_ms
        state.last_error = errors[0] if errors else None
        if errors:
            state.failures += 1
        return samples


def _declared_symbols(collector) -> list[str]:
    """Return the symbols the collector declares; none for a collector that only learns them during a run."""
    try:
        return list(collector.symbols())
    except Exception:  # symbols() of a plugin may fail; the dashboard then falls back to defaults
        log.warning("collector cannot list its symbols collector=%s", collector.spec.key, exc_info=True)
        return []


def _failed_readings(collector, error: str) -> list:
    """Failed readings for every symbol; none when the collector cannot even list its symbols."""
    try:
        return collector.failed(error)
    except Exception:  # a plugin's symbols() may raise too; the run is still counted as failed
        log.warning("collector cannot list its symbols collector=%s", collector.spec.key, exc_info=True)
        return [Reading(f"{collector.CATEGORY}.{collector.TYPE or 'plugin'}.{collector.spec.name}.error",
                        None, False, error)]


def _reject_non_number(reading: Reading) -> None:
    """Turn a value that is not a number into a failed reading, so it is never stored as a silent NULL."""
    value = reading.value
    if value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)):
        return
    reading.error = f"collector returned a non-number value {value!r:.40}"
    reading.value = None
    reading.success = False
