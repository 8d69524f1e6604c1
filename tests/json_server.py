"""A loopback HTTP server whose replies a test sets per path, for the json_api collector tests."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

NOT_FOUND = (404, {"Content-Type": "application/json"}, b'{"error": "no reply set for this path"}')


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):
        pass

    def _answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        server: JsonServer = self.server
        server.requests.append({"method": self.command, "path": self.path, "headers": dict(self.headers),
                                "body": body})
        status, headers, payload = server.replies.get(self.path.split("?")[0], NOT_FOUND)
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_PATCH = _answer


class JsonServer(ThreadingHTTPServer):
    """HTTP server on 127.0.0.1 that replies to each path as set by reply() and records every request."""

    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.replies: dict = {}
        self.requests: list[dict] = []
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def reply(self, path: str, body, status: int = 200, headers: dict | None = None) -> "JsonServer":
        """Set the reply to `path`: a dict or list body is sent as JSON, a str or bytes body as is."""
        if isinstance(body, (dict, list)):
            payload = json.dumps(body).encode()
            headers = {"Content-Type": "application/json", **(headers or {})}
        else:
            payload = body.encode() if isinstance(body, str) else body
        self.replies[path] = (status, headers or {}, payload)
        return self

    def start(self) -> "JsonServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
