"""Real servers on 127.0.0.1 for the tests: an HTTP server with fixed behaviours and TCP ports."""

from __future__ import annotations

import gzip
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

SLOW_SECONDS = 3.0


class ProbeTargetHandler(BaseHTTPRequestHandler):
    """Paths: /ok, /error (500), /redirect (302 to /ok), /redirect-307 (307 to /ok), /loop (302 to itself),
    /to?URL (302 to URL), /slow (responds after SLOW_SECONDS), /body (a known text), /gzip (the same text
    gzip-encoded), /trickle (sends one byte every 0.2 s), /json ({"status": "ok"})."""

    protocol_version = "HTTP/1.1"
    BODY = b"service healthy: version 1.2.3"

    def log_message(self, format, *args):  # keep test output quiet
        pass

    def _send(self, status: int, body: bytes = b"", headers: dict | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self):
        self.server.requests.append((self.command, self.path, dict(self.headers)))
        self.server.clients.append(self.client_address)
        path = self.path.split("?")[0]
        if path == "/ok":
            self._send(200, b"ok")
        elif path == "/error":
            self._send(500, b"internal error")
        elif path == "/redirect":
            self._send(302, b"", {"Location": "/ok"})
        elif path == "/loop":
            self._send(302, b"", {"Location": "/loop"})
        elif path == "/redirect-307":
            self._send(307, b"", {"Location": "/ok"})
        elif path == "/to":  # 302 to the URL in the query: /to?http://127.0.0.1:8000/ok
            self._send(302, b"", {"Location": self.path.partition("?")[2]})
        elif path == "/slow":
            time.sleep(SLOW_SECONDS)
            self._send(200, b"late")
        elif path == "/body":
            self._send(200, self.BODY, {"Content-Type": "text/plain"})
        elif path == "/gzip":
            self._send(200, gzip.compress(self.BODY), {"Content-Type": "text/plain", "Content-Encoding": "gzip"})
        elif path == "/json":
            self._send(200, b'{"status": "ok"}', {"Content-Type": "application/json"})
        elif path == "/trickle":
            self.send_response(200)
            self.send_header("Content-Length", "100")
            self.end_headers()
            for _ in range(100):
                try:
                    self.wfile.write(b"x")
                    self.wfile.flush()
                except OSError:
                    return
                time.sleep(0.2)
        else:
            self._send(404, b"not found")

    do_HEAD = do_GET
    do_POST = do_GET


class ProbeTargetServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), ProbeTargetHandler)
        self.requests: list = []
        self.clients: list = []  # (host, port) of the connection behind each request
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def start(self) -> "ProbeTargetServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


def listening_socket() -> socket.socket:
    """Return a TCP socket listening on a free loopback port (the kernel completes handshakes)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    return sock


def closed_port() -> int:
    """Return a loopback port that nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def free_port() -> int:
    return closed_port()


class BodyRecordingHandler(ProbeTargetHandler):
    """ProbeTargetHandler that also reads each POST body into `server.bodies`, so tests can check what was sent."""

    def do_POST(self):
        length = int(self.headers.get("Content-Length", 0))
        self.server.bodies.append(self.rfile.read(length))
        self.do_GET()


class BodyRecordingServer(ProbeTargetServer):
    """ProbeTargetServer whose handler records request bodies in `bodies`."""

    def __init__(self):
        super().__init__()
        self.RequestHandlerClass = BodyRecordingHandler
        self.bodies: list[bytes] = []


# -- HTTP client and Oculus subprocess -------------------------------------

# No proxy handler, so an http_proxy variable in the environment cannot divert loopback requests.
_LOOPBACK_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass
class HttpResponse:
    status: int
    headers: dict
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")

    def json(self):
        return json.loads(self.body)


def http_get(url: str, method: str = "GET", timeout: float = 5.0) -> HttpResponse:
    """Send one request and return the response, including 4xx and 5xx ones (never raises for a status).

    The URL is sent as given, so a test can pass characters such as an unencoded "+".
    """
    request = urllib.request.Request(url, method=method)
    try:
        with _LOOPBACK_OPENER.open(request, timeout=timeout) as response:
            return HttpResponse(response.status, {k.lower(): v for k, v in response.headers.items()}, response.read())
    except urllib.error.HTTPError as error:
        with error:
            return HttpResponse(error.code, {k.lower(): v for k, v in error.headers.items()}, error.read())


def http_request(url: str, method: str = "GET", body: bytes | None = None, headers: dict | None = None,
                 timeout: float = 10.0) -> HttpResponse:
    """Send one request with an optional body and headers; return the response whatever its status."""
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with _LOOPBACK_OPENER.open(request, timeout=timeout) as response:
            return HttpResponse(response.status, {k.lower(): v for k, v in response.headers.items()}, response.read())
    except urllib.error.HTTPError as error:
        with error:
            return HttpResponse(error.code, {k.lower(): v for k, v in error.headers.items()}, error.read())


def wait_for(check, timeout: float, interval: float = 0.1, what: str = "condition"):
    """Call `check` until it returns a true value, and return that value. Raise TimeoutError after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what} not met within {timeout:g} s")
        time.sleep(interval)


def system_python() -> str:
    """Return the machine's python3 from PATH, skipping the bin directory of the virtualenv running the tests."""
    venv_bin = (Path(sys.prefix) / "bin").resolve() if sys.prefix != sys.base_prefix else None
    for entry in os.environ.get("PATH", "").split(os.pathsep):
        if not entry or (venv_bin is not None and Path(entry).resolve() == venv_bin):
            continue
        candidate = Path(entry) / "python3"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    raise FileNotFoundError("no python3 on PATH outside the test virtualenv")


class OculusProcess:
    """Oculus run as a subprocess on a loopback port, with its stdout and stderr in `log_path`.

    start() waits until /readyz returns 200. stop() sends SIGTERM and returns the exit code.
    """

    def __init__(self, command: list[str], cwd, port: int, env: dict | None = None):
        self.command = command
        self.cwd = Path(cwd)
        self.port = port
        self.env = env
        self.log_path = self.cwd / "oculus-output.log"
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""

    def start(self, timeout: float = 30.0) -> "OculusProcess":
        with open(self.log_path, "wb") as log_file:
            self.process = subprocess.Popen(self.command, cwd=self.cwd, env=self.env, stdin=subprocess.DEVNULL,
                                            stdout=log_file, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Oculus exited with code {self.process.returncode} before /readyz "
                                   f"returned 200. Its output:\n{self.output()}")
            try:
                if http_get(self.url + "/readyz", timeout=1.0).status == 200:
                    return self
            except OSError:
                pass  # not listening yet
            time.sleep(0.1)
        self.kill()
        raise TimeoutError(f"Oculus did not become ready within {timeout:g} s. Its output:\n{self.output()}")

    def stop(self, timeout: float = 15.0) -> int:
        """Send SIGTERM and return the exit code. Kill the process and raise TimeoutError if it outlives `timeout`."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise TimeoutError(f"Oculus did not exit within {timeout:g} s of SIGTERM") from None

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(5.0)


def oculus_command(config_path, port: int, db_path, *options: str) -> list[str]:
    """Return the command line of `python -m oculus run` on 127.0.0.1:`port`, with JSON log lines."""
    return [sys.executable, "-m", "oculus", "run", "-c", str(config_path), "--bind", "127.0.0.1",
            "--port", str(port), "--db-path", str(db_path), "--log-format", "json", *options]


def json_log_records(output: str) -> list[dict]:
    """Return the JSON log records in `output`, skipping lines that are not JSON objects."""
    records = []
    for line in output.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records
