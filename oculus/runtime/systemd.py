"""systemd integration: readiness, status, watchdog and stop notifications over $NOTIFY_SOCKET.

The sd_notify protocol (sd_notify(3), systemd.service(5)) is one datagram of
newline-separated KEY=VALUE lines sent to the Unix socket named by
NOTIFY_SOCKET; a leading "@" names a socket in Linux's abstract namespace.
Oculus sends READY=1 once /readyz would return 200, STATUS= with a one-line
summary, WATCHDOG=1 at half the WATCHDOG_USEC interval while the writer and
the scheduler are alive and the writer keeps up, and STOPPING=1 when it
starts to shut down. A wedged writer therefore stops the keep-alives, and
systemd restarts the service once WatchdogSec= has passed.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Mapping

from oculus.logs import RateLimitedLog

log = logging.getLogger(__name__)

# Time between two STATUS= updates; one is sent only when the text changed.
STATUS_EVERY = 5.0
# Time between two readiness checks until READY=1 has been sent.
READY_POLL = 0.2


class NotifySocket:
    """A datagram socket that sends sd_notify messages to one address."""

    def __init__(self, address: str):
        if address.startswith("@"):
            self.target = "\0" + address[1:]
        elif address.startswith("/"):
            self.target = address
        else:
            raise ValueError(f"NOTIFY_SOCKET must be an absolute path or start with @ for the abstract "
                             f"namespace, got {address!r}")
        self.address = address
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._socket.setblocking(False)
        self._error_log = RateLimitedLog(log, 60.0)

    def send(self, *lines: str) -> bool:
        """Send `lines` as one message; return False when sending failed."""
        try:
            self._socket.sendto("\n".join(lines).encode("utf-8"), self.target)
            return True
        except OSError as exc:
            self._error_log.warning("notify-send", "systemd notification not sent socket=%s error=%s",
                                    self.address, exc.strerror or exc)
            return False

    def close(self) -> None:
        self._socket.close()


def watchdog_timeout(environ: Mapping[str, str], pid: int) -> float | None:
    """Return the watchdog timeout in seconds, or None when systemd expects no keep-alives from `pid`."""
    text = environ.get("WATCHDOG_USEC", "")
    if not text:
        return None
    owner = environ.get("WATCHDOG_PID", "")
    if owner and owner != str(pid):
        return None  # the variable was inherited from a parent that systemd watches
    try:
        microseconds = int(text)
    except ValueError:
        log.warning("ignoring WATCHDOG_USEC=%r: expected a whole number of microseconds", text)
        return None
    return microseconds / 1e6 if microseconds > 0 else None


class SystemdSupervisor:
    """Report the runtime's state to systemd from its own thread."""

    def __init__(self, runtime, notify: NotifySocket, watchdog: float | None):
        self.runtime = runtime
        self.notify = notify
        self.watchdog = watchdog
        self.ready_sent = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="oculus-systemd", daemon=True)
        self._last_status = ""
        self._withheld_reason: str | None = None

    @classmethod
    def from_environment(cls, runtime, environ: Mapping[str, str] | None = None) -> SystemdSupervisor | None:
        """Return a supervisor when NOTIFY_SOCKET is set, which is when systemd started Oculus with Type=notify."""
        environ = os.environ if environ is None else environ
        address = environ.get("NOTIFY_SOCKET", "")
        if not address:
            return None
        try:
            notify = NotifySocket(address)
        except ValueError as exc:
            log.warning("systemd notifications off: %s", exc)
            return None
        return cls(runtime, notify, watchdog_timeout(environ, os.getpid()))

    def start(self) -> None:
        self._thread.start()
        log.info("systemd notifications on socket=%s watchdog=%s", self.notify.address,
                 f"{self.watchdog:g}s" if self.watchdog else "off")

    def stopping(self) -> None:
        """Send STOPPING=1 and end the thread, so no keep-alive follows the stop notice."""
        self._stop.set()
        self._thread.join(2.0)
        self.notify.send("STOPPING=1", "STATUS=stopping: draining the write queue")
        self.notify.close()

    # -- thread --------------------------------------------------------------

    def _run(self) -> None:
        next_ping = next_status = time.monotonic()
        while not self._stop.is_set():
            now = time.monotonic()
            if not self.ready_sent:
                self._send_ready_when_ready()
            if self.watchdog and now >= next_ping:
                self._ping_when_healthy()
                next_ping = now + self.watchdog / 2
            if self.ready_sent and now >= next_status:
                self._send_status()
                next_status = now + STATUS_EVERY
            wake = min(next_ping if self.watchdog else next_status, next_status)
            if not self.ready_sent:
                wake = min(wake, now + READY_POLL)
            self._stop.wait(max(0.0, wake - time.monotonic()))

    def _send_ready_when_ready(self) -> None:
        ready, _ = self.runtime.readiness()
        if ready:
            status = self.status_line()
            self.ready_sent = self.notify.send("READY=1", f"STATUS={status}")
            self._last_status = status
            log.info("sent READY=1 to systemd")

    def _send_status(self) -> None:
        status = self.status_line()
        if status != self._last_status and self.notify.send(f"STATUS={status}"):
            self._last_status = status

    def _ping_when_healthy(self) -> None:
        reason = self.unhealthy_reason()
        if reason is None:
            if self._withheld_reason is not None:
                log.info("systemd watchdog keep-alives resumed")
            self._withheld_reason = None
            self.notify.send("WATCHDOG=1")
        elif reason != self._withheld_reason:
            self._withheld_reason = reason
            log.warning("systemd watchdog keep-alive withheld, so systemd restarts Oculus if this lasts "
                        "WatchdogSec: %s", reason)

    # -- state -----------------------------------------------------------------

    def unhealthy_reason(self) -> str | None:
        """Return why the writer or the scheduler is not working, or None while both are."""
        writer, scheduler = self.runtime.writer, self.runtime.scheduler
        if writer is None:
            return "writer has not started"
        lagging = writer.lagging_reason()
        if lagging:
            return lagging
        if scheduler is None or not scheduler.is_alive():
            return "scheduler is not running"
        return None

    def status_line(self) -> str:
        """Summarize the runtime in one line for `systemctl status`."""
        runtime = self.runtime
        ready, details = runtime.readiness()
        state = "ready" if ready else "not ready: " + "; ".join(details.get("reasons", []))
        parts = [state, f"{len(runtime.config.collectors)} collectors", f"{len(runtime.config.rules)} rules"]
        if runtime.writer is not None:
            stats, queue = runtime.writer.stats, runtime.writer.queue
            parts += [f"{stats.samples_written} samples written", f"queue {queue.qsize()}/{queue.maxsize}"]
        return ", ".join(parts).replace("\n", " ")
