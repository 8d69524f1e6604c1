"""A loopback HTTP server that replays the recorded market API fixtures in tests/fixtures/apis.

Each provider is served under its own prefix, so a collector's base_url is
``server.base_url("coingecko")``. A test picks the scenarios it wants with
``use("coingecko/simple_price_rate_limited", ...)``: a request is answered by
the first active fixture whose method, path and query match it (query order
does not matter; Stooq's literal '+' also matches its decoded space).
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

# Recorded response shapes of the public market APIs (synthetic values); README.md there says what a
# collector must record for each case, NOTES.md explains each API's traps.
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "apis"


def load_index() -> list[dict]:
    with open(FIXTURES / "index.json", encoding="utf-8") as handle:
        return json.load(handle)["fixtures"]


def fixture_ids() -> list[str]:
    return [f"{entry['provider']}/{entry['case']}" for entry in load_index()]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):
        pass

    def do_GET(self):
        server: FixtureServer = self.server
        provider, _, rest = self.path.lstrip("/").partition("/")
        path_and_query = "/" + rest
        server.requests.append({"provider": provider, "path": path_and_query, "headers": dict(self.headers)})
        entry = server.match(provider, "GET", path_and_query)
        if entry is None:
            body = json.dumps({"error": f"no active fixture for {provider} {path_and_query}"}).encode()
            self._reply(404, {"Content-Type": "application/json"}, body)
            return
        meta = json.loads((FIXTURES / entry["headers_file"]).read_text(encoding="utf-8"))
        body = (FIXTURES / entry["body_file"]).read_bytes()
        self._reply(meta["status"], meta.get("headers", {}), body)

    def _reply(self, status: int, headers: dict, body: bytes) -> None:
        self.send_response(status)
        for name, value in headers.items():
            if name.lower() not in ("content-length", "transfer-encoding", "content-encoding", "connection"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _query_pairs(raw_query: str) -> set:
    """Query parameters as a set of (name, value); a bare flag such as Stooq's 'h' has value ''."""
    pairs = set()
    for part in raw_query.split("&") if raw_query else []:
        name, _, value = part.partition("=")
        pairs.add((unquote(name), unquote(value).replace("+", " ")))
    return pairs


class FixtureServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.index = {f"{e['provider']}/{e['case']}": e for e in load_index()}
        self.active: list[dict] = []
        self.requests: list[dict] = []
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def base_url(self, provider: str) -> str:
        return f"{self.url}/{provider}"

    def use(self, *fixture_ids: str) -> "FixtureServer":
        """Serve exactly these fixtures (replacing any chosen before)."""
        self.active = [self.index[fixture_id] for fixture_id in fixture_ids]
        return self

    def match(self, provider: str, method: str, path_and_query: str) -> dict | None:
        split = urlsplit(path_and_query)
        asked = _query_pairs(split.query)
        for entry in self.active:
            request = entry["request"]
            if entry["provider"] != provider or request["method"] != method or request["path"] != split.path:
                continue
            wanted = {(k, str(v).replace("+", " ")) for k, v in request.get("query", {}).items()}
            if wanted == asked:
                return entry
        return None

    def requests_to(self, provider: str) -> list[dict]:
        return [r for r in self.requests if r["provider"] == provider]

    def start(self) -> "FixtureServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


