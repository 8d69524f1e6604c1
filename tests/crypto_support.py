"""Helpers for the crypto collector tests: build collectors from YAML, reroute fixtures, fake clocks."""

from __future__ import annotations

import copy
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

import yaml

from oculus.collectors import registry
from oculus.collectors.provider import Backoff
from oculus.config import load_config

# The synthetic "now" of the crypto fixtures: 2026-03-18T21:04:37Z.
FIXTURE_NOW = 1773867877.0


def build_collector(tmp_path, settings: dict):
    """Write one collector entry to a config file, load it with the real loader and create the collector."""
    path = tmp_path / "oculus.yaml"
    path.write_text(yaml.safe_dump({"collectors": [settings]}, sort_keys=False), encoding="utf-8")
    config = load_config(str(path), env={})
    return registry.create(config.collectors[0])


def reroute(server, case: str, path: str | None = None, **query) -> str:
    """Register a copy of fixture `case` for another path or query; return its id for use().

    The recorded requests differ from what a collector sends in a few places
    (for example the collector always adds page_size or the benchmark coin),
    while the recorded reply is still the one to test against.
    """
    entry = copy.deepcopy(server.index[case])
    if path is not None:
        entry["request"]["path"] = path
    entry["request"].setdefault("query", {}).update(query)
    rerouted = f"{case}@{len(server.index)}"
    server.index[rerouted] = entry
    return rerouted


def query_of(request: dict) -> dict:
    """The query of a request recorded by the fixture server, as a dict of decoded values."""
    return dict(parse_qsl(urlsplit(request["path"]).query, keep_blank_values=True))


class FakeClock:
    """A monotonic clock that only moves when a test moves it."""

    def __init__(self, start: float = 1000.0):
        self.now = start

    def __call__(self) -> float:
        return self.now


def fake_backoff(provider, base: float = 5.0) -> FakeClock:
    """Give `provider` a fresh Backoff on a fake clock; return the clock."""
    clock = FakeClock()
    provider.backoff = Backoff(base=base, clock=clock, wall_clock=lambda: FIXTURE_NOW)
    return clock


class _JsonHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):
        pass

    def do_GET(self):
        body = self.server.body
        self.server.paths.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class JsonServer(ThreadingHTTPServer):
    """A loopback server that returns one JSON body to every GET, for response variants."""

    daemon_threads = True

    def __init__(self, payload):
        super().__init__(("127.0.0.1", 0), _JsonHandler)
        self.body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.paths: list[str] = []
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def __enter__(self) -> "JsonServer":
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.shutdown()
        self.server_close()
