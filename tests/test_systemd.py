"""The sd_notify exchange with systemd, against a datagram socket each test binds itself (no systemd needed)."""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid

import pytest

from oculus.runtime.systemd import NotifySocket, watchdog_timeout
from oculus.storage import writer as writer_module
from oculus.storage.writer import Command
from tests.servers import OculusProcess, free_port, oculus_command, wait_for
from tests.test_web import start_runtime

# WATCHDOG_USEC for the tests: keep-alives every 0.2 s.
WATCHDOG_USEC = 400_000


class NotifyListener:
    """A bound Unix datagram socket that records every message with its arrival time on the monotonic clock."""

    def __init__(self, address: str):
        self.address = address
        self.messages: list[tuple[float, str]] = []
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._socket.bind("\0" + address[1:] if address.startswith("@") else address)
        self._socket.settimeout(0.1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while not self._stop.is_set():
            try:
                data = self._socket.recv(4096)
            except socket.timeout:
                continue
            self.messages.append((time.monotonic(), data.decode("utf-8")))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2.0)
        self._socket.close()

    def lines(self, since: float = 0.0) -> list[str]:
        """Return every KEY=VALUE line received after `since`, in order."""
        return [line for at, text in list(self.messages) if at >= since for line in text.split("\n")]

    def wait_for_line(self, line: str, timeout: float = 10.0, since: float = 0.0) -> float:
        """Wait until `line` arrives after `since`; return its arrival time."""
        def arrival():
            return next((at for at, text in list(self.messages) if at >= since and line in text.split("\n")), None)
        return wait_for(arrival, timeout=timeout, interval=0.02, what=f"{line} on the notify socket")


@pytest.fixture
def listener(tmp_path):
    listener = NotifyListener(str(tmp_path / "notify.sock"))
    yield listener
    listener.close()


@pytest.fixture
def notified_runtime(tmp_path, listener, monkeypatch):
    """Start a Runtime as systemd would with Type=notify and WatchdogSec=, and stop it at teardown if still running."""
    monkeypatch.setenv("NOTIFY_SOCKET", listener.address)
    monkeypatch.setenv("WATCHDOG_USEC", str(WATCHDOG_USEC))
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    runtime = start_runtime(tmp_path)
    yield runtime
    if runtime.database.is_open:
        runtime.stop()


def test_notify_ready_watchdog_stopping(notified_runtime, listener):
    ready_at = listener.wait_for_line("READY=1")
    assert notified_runtime.readiness()[0], "READY=1 was sent before /readyz would return 200"
    status = next(line for line in listener.lines() if line.startswith("STATUS="))
    assert status.startswith("STATUS=ready, 0 collectors, 0 rules")

    time.sleep(1.0)
    pings = listener.lines(since=ready_at).count("WATCHDOG=1")
    assert pings >= 3, f"expected a keep-alive every 0.2 s, got {pings} in 1 s"

    assert notified_runtime.stop()
    stopping_at = listener.wait_for_line("STOPPING=1", timeout=2.0)
    time.sleep(0.5)
    assert "WATCHDOG=1" not in listener.lines(since=stopping_at)


def test_watchdog_stops_while_writer_wedged(notified_runtime, listener, monkeypatch):
    monkeypatch.setattr(writer_module, "STALL_SECONDS", 1.0)
    listener.wait_for_line("WATCHDOG=1")
    release = threading.Event()

    notified_runtime.writer.put(Command(lambda connection: release.wait(20.0), "wedge the writer"))
    # The writer counts as stuck after STALL_SECONDS; allow one more keep-alive interval for the last ping.
    time.sleep(1.0 + 0.3)
    withheld_from = time.monotonic()
    time.sleep(1.5)

    assert "WATCHDOG=1" not in listener.lines(since=withheld_from), "keep-alives continued with a wedged writer"
    assert "writer has not finished a step" in notified_runtime.systemd.unhealthy_reason()

    release.set()
    listener.wait_for_line("WATCHDOG=1", timeout=3.0, since=time.monotonic())


def test_notify_abstract_namespace():
    address = f"@oculus-test-{uuid.uuid4().hex}"
    listener = NotifyListener(address)
    try:
        notify = NotifySocket(address)
        assert notify.send("READY=1", "STATUS=ready")
        listener.wait_for_line("STATUS=ready", timeout=2.0)
        assert listener.lines() == ["READY=1", "STATUS=ready"]
        notify.close()
    finally:
        listener.close()


def test_notify_socket_relative_path_rejected():
    with pytest.raises(ValueError, match="absolute path or start with @"):
        NotifySocket("notify.sock")


def test_notify_missing_socket_returns_false(tmp_path):
    notify = NotifySocket(str(tmp_path / "absent.sock"))
    assert notify.send("READY=1") is False
    notify.close()


@pytest.mark.parametrize("environ, expected", [
    ({}, None),
    ({"WATCHDOG_USEC": "30000000"}, 30.0),
    ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "4242"}, 30.0),
    ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),
    ({"WATCHDOG_USEC": "0"}, None),
    ({"WATCHDOG_USEC": "soon"}, None),
], ids=["unset", "set", "this-pid", "other-pid", "zero", "not-a-number"])
def test_watchdog_timeout_from_environment(environ, expected):
    assert watchdog_timeout(environ, 4242) == expected


def test_process_notifies_ready_and_stopping(tmp_path, listener):
    config = tmp_path / "oculus.yaml"
    config.write_text("runtime:\n  flush_interval: 100ms\n", encoding="utf-8")
    env = {key: value for key, value in os.environ.items() if not key.startswith(("OCULUS_", "WATCHDOG_"))}
    env["NOTIFY_SOCKET"] = listener.address
    port = free_port()
    oculus = OculusProcess(oculus_command(config, port, tmp_path / "oculus.duckdb"), tmp_path, port, env=env)
    try:
        oculus.start(timeout=20.0)
        listener.wait_for_line("READY=1")
        assert oculus.stop() == 0, oculus.output()
    finally:
        oculus.kill()
    listener.wait_for_line("STOPPING=1", timeout=2.0)
    assert "WATCHDOG=1" not in listener.lines(), "keep-alives were sent without WATCHDOG_USEC"
