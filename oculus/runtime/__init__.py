"""Wiring and lifecycle: database, writer, scheduler and web server, signals and reload."""

from __future__ import annotations

import logging
import os
import queue
import signal
import threading
import time

from oculus import __version__
from oculus.config import Config, ConfigError, load_config
from oculus.logs import setup_logging
from oculus.runtime.scheduler import CollectorScheduler
from oculus.runtime.systemd import SystemdSupervisor
from oculus.storage import Database, DatabaseOpenError
from oculus.storage.rollups import rollup_retention_command
from oculus.storage.writer import Command, Event, Writer, retention_command

log = logging.getLogger(__name__)

RETENTION_EVERY = 3600.0


class StartupError(RuntimeError):
    """A problem that stops Oculus from starting; the message is shown as is."""


class Runtime:
    def __init__(self, config: Config, config_path: str | None = None, flags: dict | None = None):
        self.config = config
        self.config_path = config_path
        self.flags = dict(flags or {})
        # A reload must keep the port picked for "--port 0", or the self-probes would move.
        self.flags["port"] = config.server.port
        self.database = Database(config.database.path, config.database.memory_limit)
        self.writer: Writer | None = None
        self.scheduler: CollectorScheduler | None = None
        self.rule_engine = None
        # Alert notifications from the rule engine to the dispatcher; kept across reloads.
        self.notifications: queue.Queue = queue.Queue(maxsize=config.alerting.notify_queue_size)
        self.notifier = None
        self.web = None
        self.systemd: SystemdSupervisor | None = None
        self.started_at = time.time()
        self._stop_requested = threading.Event()
        self._reload_requested = threading.Event()

    # -- start -------------------------------------------------------------

    def start(self) -> None:
        """Open the database, then start the writer, the web server and the scheduler."""
        runtime = self.config.runtime
        try:
            self.database.open()
        except DatabaseOpenError as exc:
            raise StartupError(str(exc)) from None
        self.writer = Writer(self.database, runtime.queue_size, runtime.batch_size, runtime.flush_interval)
        self.writer.start()
        self._queue_retention()
        self._start_rules()

        from oculus.web.server import WebServer

        self.web = WebServer(self, self.config.server)
        self.web.start()

        self.scheduler = CollectorScheduler(runtime.workers, self.writer.put, self.database.reader)
        self.scheduler.set_collectors(self.config.collectors)
        self.scheduler.every(RETENTION_EVERY, self._queue_retention)
        self.scheduler.start()

        self.record_event("system", "info", f"Oculus {__version__} started",
                          {"config": self.config.source, "collectors": len(self.config.collectors)})
        log.info("oculus started version=%s pid=%d config=%s collectors=%d rules=%d dashboard=%s",
                 __version__, os.getpid(), self.config.source, len(self.config.collectors), len(self.config.rules),
                 self.web.url)
        self.systemd = SystemdSupervisor.from_environment(self)
        if self.systemd is not None:
            self.systemd.start()

    def _start_rules(self) -> None:
        """Start the notification dispatcher and the rule thread; both need the writer running."""
        from oculus.notify import NotificationDispatcher
        from oculus.rules.engine import RuleEngine

        if self.notifier is None:
            self.notifier = NotificationDispatcher(self.notifications, self.config.channels, self.base_url,
                                                   self.writer, self.database)
            self.notifier.start()
        else:
            self.notifier.reconfigure(self.config.channels, self.base_url)
        self.rule_engine = RuleEngine(self.config, self.database, self.writer, self.notifications)
        self.rule_engine.start()

    @property
    def base_url(self) -> str:
        """Address that notification links start with: notifications.base_url, else this instance's own."""
        return self.config.notifications.base_url or self.config.self_url

    def _stop_rules(self, timeout: float) -> bool:
        engine, self.rule_engine = self.rule_engine, None
        return engine is None or engine.stop(timeout)

    def _queue_retention(self) -> None:
        from oculus.notify.store import prune_command

        database = self.config.database
        self.writer.put(Command(retention_command(database.retention, database.events_retention), "retention"))
        self.writer.put(Command(rollup_retention_command(database.rollups_1m_retention, database.rollups_1h_retention),
                                "rollup retention"))
        # Finished deliveries are kept as long as the events that report them.
        self.writer.put(Command(prune_command(database.events_retention), "deliveries retention"))

    def record_event(self, kind: str, severity: str, message: str, payload: dict | None = None) -> None:
        if self.writer is not None:
            self.writer.put(Event(kind, severity, message, "oculus", payload))

    # -- health ------------------------------------------------------------

    def readiness(self) -> tuple[bool, dict]:
        """Return (ready, details) for /readyz."""
        reasons = []
        if not self.database.is_open:
            reasons.append("database is not open")
        elif self.database.schema_version == 0:
            reasons.append("migrations have not run")
        if self.writer is None:
            reasons.append("writer has not started")
        else:
            lagging = self.writer.lagging_reason()
            if lagging:
                reasons.append(lagging)
        if self.scheduler is None or not self.scheduler.is_alive():
            reasons.append("scheduler is not running")
        engine = self.rule_engine
        if engine is not None and not engine.is_alive():
            reasons.append("rule thread is not running")
        notifier = self.notifier
        notify_health = notifier.health() if notifier is not None else None
        if notify_health is not None and not notify_health["running"]:
            reasons.append("notification dispatcher is not running")

        details = {"database": self.database.path, "schema_version": self.database.schema_version}
        if self.writer is not None:
            stats = self.writer.stats
            details.update(queue_length=self.writer.queue.qsize(), queue_capacity=self.writer.queue.maxsize,
                           queue_full_total=stats.queue_full, samples_written=stats.samples_written,
                           insert_failures=stats.insert_failures)
        if engine is not None:
            details["rules"] = engine.health()
        if notify_health is not None:
            details["notifications"] = notify_health
        if reasons:
            details["reasons"] = reasons
        return not reasons, details

    # -- signals and main loop ---------------------------------------------

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, lambda *_: self._stop_requested.set())
        signal.signal(signal.SIGINT, lambda *_: self._stop_requested.set())
        if hasattr(signal, "SIGHUP"):
            signal.signal(signal.SIGHUP, lambda *_: self._reload_requested.set())

    def request_stop(self) -> None:
        self._stop_requested.set()

    def wait(self) -> None:
        """Block until a stop is requested, performing reloads as they are asked for."""
        while not self._stop_requested.wait(0.2):
            if self._reload_requested.is_set():
                self._reload_requested.clear()
                self.reload()

    # -- reload ------------------------------------------------------------

    def reload(self) -> bool:
        """Re-read the config; apply it when valid, else keep the running one."""
        log.info("reloading config source=%s", self.config_path or "<embedded default>")
        try:
            new = load_config(self.config_path, flags=self.flags)
        except ConfigError as exc:
            for problem in exc.problems:
                log.error("config reload rejected, keeping the running config: %s", problem)
            self.record_event("system", "error", "config reload rejected",
                              {"problems": [str(p) for p in exc.problems]})
            return False

        for warning in new.warnings:
            log.warning("%s", warning)
        for section in ("server", "database", "runtime"):
            if vars(getattr(new, section)) != vars(getattr(self.config, section)):
                log.warning("config section %s changed; it takes effect after a restart", section)
        setup_logging(new.logging.level, new.logging.format)
        self.scheduler.set_collectors(new.collectors)
        new.server, new.database, new.runtime = self.config.server, self.config.database, self.config.runtime
        # The old rule thread stores its last pass before it stops, so the new one resumes from that state.
        self._stop_rules(timeout=max(5.0, 2 * self.config.alerting.interval))
        self.config = new
        self._start_rules()
        self.record_event("system", "info", "config reloaded",
                          {"collectors": len(new.collectors), "rules": len(new.rules)})
        log.info("config reloaded collectors=%d rules=%d", len(new.collectors), len(new.rules))
        return True

    # -- stop --------------------------------------------------------------

    def stop(self) -> bool:
        """Stop dispatching, drain the queue, flush and close; return True on a clean stop."""
        budget = self.config.runtime.shutdown_timeout
        deadline = time.monotonic() + budget
        log.info("stopping: draining the write queue timeout=%.1fs", budget)
        clean = True
        if self.systemd is not None:
            self.systemd.stopping()

        if self.scheduler is not None:
            self.scheduler.stop(timeout=min(3.0, budget / 3))
        if self.web is not None:
            self.web.stop()  # before the database closes, so no request meets a closed cursor
        # The rule thread stores its last pass through the writer, so it stops before the writer drains.
        if not self._stop_rules(timeout=max(1.0, min(5.0, budget / 3))):
            clean = False
        if self.notifier is not None:
            # A send in progress is not waited for: its delivery stays open and goes out after the next start.
            self.notifier.stop(timeout=max(1.0, min(3.0, budget / 4)))
        if self.writer is not None:
            self.record_event("system", "info", "Oculus stopping")
            clean = self.writer.stop(max(0.5, deadline - time.monotonic())) and clean
        if clean:
            self.database.close()
        log.info("oculus stopped clean=%s", clean)
        return clean


def run(config: Config, config_path: str | None, flags: dict) -> int:
    """Run Oculus in the foreground until SIGTERM or SIGINT; return the exit code."""
    runtime = Runtime(config, config_path, flags)
    runtime.install_signal_handlers()
    try:
        runtime.start()
    except StartupError as exc:
        log.error("%s", exc)
        runtime.stop()
        return 1
    runtime.wait()
    return 0 if runtime.stop() else 1
