"""Real servers on 127.0.0.1 for the tests: an HTTP server with fixed behaviours and TCP ports."""

from __future__ import annotations

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SLOW_SECONDS = 3.0


class ProbeTargetHandler(BaseHTTPRequestHandler):
    """Paths: /ok, /error (500), /redirect (302 to /ok), /slow (answers after SLOW_SECONDS),
    /body (a known text), /trickle (sends one byte every 0.2 s), /json ({"status": "ok"})."""

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
        path = self.path.split("?")[0]
        if path == "/ok":
            self._send(200, b"ok")
        elif path == "/error":
            self._send(500, b"internal error")
        elif path == "/redirect":
            self._send(302, b"", {"Location": "/ok"})
        elif path == "/slow":
            time.sleep(SLOW_SECONDS)
            self._send(200, b"late")
        elif path == "/body":
            self._send(200, self.BODY, {"Content-Type": "text/plain"})
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
