"""Network collectors (http, tcp, ping) against real servers on 127.0.0.1.

Each collector is built the way Oculus builds it: a YAML file goes through
load_config, and registry.create turns the spec into a collector. Sample
fields are checked through CollectorScheduler.run_once, the runtime's path.
"""

from __future__ import annotations

import base64
import socket
import ssl
import threading
import time
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace
from unittest import mock

import icmplib
import pytest
import yaml

from oculus.collectors import http_transport, registry
from oculus.collectors.base import Collector
from oculus.collectors.http import HttpCollector
from oculus.collectors.ping import PingCollector
from oculus.collectors.tcp import TcpCollector
from oculus.config import ConfigError, load_config
from oculus.runtime.scheduler import CollectorScheduler, CollectorState
from tests.servers import BodyRecordingServer, ProbeTargetServer

# 4 labels of 63 characters make 255 characters, over the 253-character limit of a DNS name.
# glibc's resolver rejects the name while building the query, so no packet is sent. With glibc 2.36,
# strace of getaddrinfo on this name shows no AF_INET or AF_INET6 socket at all.
LONG_HOST = ".".join(["a" * 63] * 4)
# Python's idna codec rejects an empty label before any resolver runs, so this name sends nothing either.
EMPTY_LABEL_HOST = "db..example"
USER_TAGS = {"team": "infra"}
# Seconds a timed-out run may last past its timeout. The margin is wide because the tests check
# that a run ends near its timeout, not at an exact time.
TIMEOUT_SLACK = 2.0


def has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


# -- helpers ---------------------------------------------------------------


PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy",
                   "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


@pytest.fixture(autouse=True)
def without_proxy(monkeypatch):
    """Remove proxy variables, because the HTTP probe honors them and would send probes off this host."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def make_collector(tmp_path):
    """Build a collector from one `collectors:` entry via load_config, and close it after the test.

    `cls` replaces registry.create, for test doubles that reuse a real spec.
    """
    created = []

    def make(entry: dict, env: dict | None = None, cls=None):
        entry = {"name": "probe", "tags": dict(USER_TAGS), **entry}
        path = tmp_path / f"oculus-{len(created)}.yaml"
        path.write_text(yaml.safe_dump({"collectors": [entry]}), encoding="utf-8")
        spec = load_config(str(path), env=env or {}).collectors[0]
        collector = cls(spec) if cls else registry.create(spec)
        created.append(collector)
        return collector

    yield make
    for collector in created:
        collector.close()


@pytest.fixture
def scheduler():
    """A scheduler that is never started. Its submit function records every batch in `.batches`."""
    batches = []
    scheduler = CollectorScheduler(workers=1, submit_samples=batches.append)
    scheduler.batches = batches
    yield scheduler
    scheduler.pool.shutdown()


def run_once(scheduler, collector) -> list:
    """Run one collection through the runtime and return the samples it submitted."""
    scheduler.batches.clear()
    scheduler.run_once(collector, CollectorState())
    assert len(scheduler.batches) == 1, "run_once must submit exactly one batch"
    return scheduler.batches[0]


def collect(collector) -> list:
    """Call collect() with the deadline the runtime gives: now plus the configured timeout."""
    return collector.collect(time.monotonic() + collector.spec.timeout)


def collect_bounded(collector, limit: float):
    """Run collect() on a daemon thread and wait at most `limit` seconds.

    Return (readings, elapsed seconds), where readings is None if the run had not
    ended. A probe that overruns its deadline then fails the test after
    `limit` instead of holding it, and its thread ends with the server's reply.
    """
    result = []
    started = time.monotonic()
    thread = threading.Thread(target=lambda: result.append(collect(collector)), daemon=True)
    thread.start()
    thread.join(limit)
    return (result[0] if result else None), time.monotonic() - started


def config_error(tmp_path, entry: dict) -> str:
    """Load a config whose only collector is `entry`, and return the ConfigError's message."""
    path = tmp_path / "oculus.yaml"
    path.write_text(yaml.safe_dump({"collectors": [entry]}), encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(str(path), env={})
    return str(caught.value)


def header_values(request, name: str) -> list[str]:
    """Return the values of header `name`, in any letter case, of a request a ProbeTargetServer recorded."""
    return [value for key, value in request[2].items() if key.lower() == name.lower()]


def by_metric(readings) -> dict:
    """Map the last symbol part (rtt_ms, status, loss_pct) to its reading."""
    return {reading.symbol.rsplit(".", 1)[1]: reading for reading in readings}


@pytest.fixture
def body_server():
    server = BodyRecordingServer().start()
    yield server
    server.stop()


# -- samples through the runtime -------------------------------------------

SAMPLE_CASES = [
    pytest.param(lambda t: {"type": "http", "url": f"{t.url}/ok"},
                 ["net.http.probe.rtt_ms", "net.http.probe.status"], None, id="http_ok"),
    pytest.param(lambda t: {"type": "http", "url": f"{t.url}/error"},
                 ["net.http.probe.rtt_ms", "net.http.probe.status"], "expected status 200-299, got 500",
                 id="http_500"),
    pytest.param(lambda t: {"type": "tcp", "host": "127.0.0.1", "port": t.open_port},
                 ["net.tcp.probe.rtt_ms"], None, id="tcp_open"),
    pytest.param(lambda t: {"type": "tcp", "host": "127.0.0.1", "port": t.refused_port},
                 ["net.tcp.probe.rtt_ms"], "connection refused", id="tcp_refused"),
    pytest.param(lambda t: {"type": "ping", "host": "127.0.0.1"},
                 ["net.ping.probe.rtt_ms", "net.ping.probe.loss_pct"], None, id="ping_ok"),
]


@pytest.fixture
def targets(http_target, open_port, refused_port):
    return SimpleNamespace(url=http_target.url, open_port=open_port, refused_port=refused_port)


@pytest.mark.parametrize(("entry", "symbols", "error"), SAMPLE_CASES)
def test_sample_fields(make_collector, scheduler, targets, entry, symbols, error):
    samples = run_once(scheduler, make_collector(entry(targets)))
    utc_now = datetime.now(timezone.utc).replace(tzinfo=None)

    assert [s.symbol for s in samples] == symbols
    assert {s.category for s in samples} == {"net"}
    assert {s.success for s in samples} == {error is None}
    assert [s.tags.get("error") for s in samples] == [error] * len(samples)
    assert [s.tags.get("team") for s in samples] == ["infra"] * len(samples)
    assert min(s.duration_ms for s in samples) > 0
    assert {s.ts.tzinfo for s in samples} == {None}
    assert max(abs(s.ts - utc_now) for s in samples) < timedelta(seconds=30), "ts must be UTC, not local time"


def test_sample_tags_merged(make_collector, scheduler, http_target):
    samples = run_once(scheduler, make_collector({"type": "http", "url": f"{http_target.url}/ok"}))

    assert [s.tags for s in samples] == [{"team": "infra", "status": 200}] * 2


class CrashingHttpCollector(HttpCollector):
    def collect(self, deadline):
        raise RuntimeError("probe crashed")


class SymbolLessCollector(Collector):
    """A plugin-style collector that forgot symbols() and crashes in collect()."""

    TYPE = "http"

    def collect(self, deadline):
        raise RuntimeError("probe crashed")


def test_run_once_collector_raises(make_collector, scheduler, http_target):
    collector = make_collector({"type": "http", "url": f"{http_target.url}/ok"}, cls=CrashingHttpCollector)

    samples = run_once(scheduler, collector)

    assert [s.symbol for s in samples] == ["net.http.probe.rtt_ms", "net.http.probe.status"]
    assert {s.success for s in samples} == {False}
    assert {s.tags["error"] for s in samples} == {"collector error: RuntimeError: probe crashed"}


def test_run_once_collector_raises_state(make_collector, scheduler, http_target):
    collector = make_collector({"type": "http", "url": f"{http_target.url}/ok"}, cls=CrashingHttpCollector)
    state = CollectorState()

    scheduler.run_once(collector, state)

    assert state.failures == 1
    assert state.last_error == "collector error: RuntimeError: probe crashed"
    assert state.running is False


def test_run_once_symbols_raise(make_collector, scheduler, http_target):
    collector = make_collector({"type": "http", "url": f"{http_target.url}/ok"}, cls=SymbolLessCollector)
    state = CollectorState()

    scheduler.run_once(collector, state)

    assert state.failures == 1


# -- http --------------------------------------------------------------------

STATUS_CASES = [
    pytest.param("/ok", {}, True, 200, None, id="200_default"),
    pytest.param("/error", {}, False, 500, "expected status 200-299, got 500", id="500_default"),
    pytest.param("/error", {"expect_status": "200-299"}, False, 500, "expected status 200-299, got 500",
                 id="500_range_2xx"),
    pytest.param("/error", {"expect_status": "500-599"}, True, 500, None, id="500_range_5xx"),
    pytest.param("/error", {"expect_status": 500}, True, 500, None, id="500_single"),
    pytest.param("/error", {"expect_status": [200, 500]}, True, 500, None, id="500_list"),
    pytest.param("/error", {"expect_status": ["200-299", 500]}, True, 500, None, id="500_mixed_list"),
    pytest.param("/redirect", {}, True, 200, None, id="redirect_followed"),
    pytest.param("/redirect", {"follow_redirects": False}, False, 302, "expected status 200-299, got 302",
                 id="redirect_not_followed"),
    pytest.param("/redirect", {"follow_redirects": False, "expect_status": [302]}, True, 302, None,
                 id="redirect_302_expected"),
]


@pytest.mark.parametrize(("path", "options", "success", "status", "error"), STATUS_CASES)
def test_http_status(make_collector, http_target, path, options, success, status, error):
    readings = by_metric(collect(make_collector({"type": "http", "url": http_target.url + path, **options})))

    assert readings["status"].value == status
    assert readings["status"].success is success
    assert readings["status"].error == error
    assert readings["rtt_ms"].success is success
    assert readings["rtt_ms"].value > 0


BODY_CASES = [
    pytest.param({"body_match": "version 1.2.3"}, True, None, id="match_found"),
    pytest.param({"body_match": "maintenance"}, False, "body does not contain 'maintenance'", id="match_missing"),
    pytest.param({"body_regex": r"version \d+\.\d+\.\d+$"}, True, None, id="regex_match"),
    pytest.param({"body_regex": "^down"}, False, "body does not match /^down/", id="regex_no_match"),
]


@pytest.mark.parametrize(("options", "success", "error"), BODY_CASES)
def test_http_body(make_collector, http_target, options, success, error):
    readings = collect(make_collector({"type": "http", "url": f"{http_target.url}/body", **options}))

    assert [r.success for r in readings] == [success, success]
    assert [r.error for r in readings] == [error, error]


def test_http_timeout(make_collector, http_target):
    collector = make_collector({"type": "http", "url": f"{http_target.url}/slow", "timeout": "500ms"})

    readings, elapsed = collect_bounded(collector, 0.5 + TIMEOUT_SLACK)

    assert elapsed < 0.5 + TIMEOUT_SLACK
    assert [r.success for r in readings] == [False, False]
    assert readings[0].error.startswith("timed out"), readings[0].error


def test_http_timeout_message(make_collector, http_target):
    collector = make_collector({"type": "http", "url": f"{http_target.url}/slow", "timeout": "1s"})

    readings, _ = collect_bounded(collector, 1 + TIMEOUT_SLACK)

    assert readings[0].error == "timed out after 1s"


def test_http_trickle_deadline(make_collector, http_target):
    collector = make_collector({"type": "http", "url": f"{http_target.url}/trickle",
                                "body_match": "xxx", "timeout": "500ms"})

    readings, elapsed = collect_bounded(collector, 0.5 + TIMEOUT_SLACK)

    assert elapsed < 0.5 + TIMEOUT_SLACK
    assert readings[0].error.startswith("timed out"), readings[0].error


def test_http_head(make_collector, http_target):
    readings = collect(make_collector({"type": "http", "url": f"{http_target.url}/ok", "method": "HEAD"}))

    assert http_target.requests[-1][0] == "HEAD"
    assert readings[0].success is True


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_http_reuses_connection(make_collector, http_target, method):
    collector = make_collector({"type": "http", "url": f"{http_target.url}/ok", "method": method})

    collect(collector)
    collect(collector)

    assert len(http_target.clients) == 2
    assert http_target.clients[1] == http_target.clients[0], "the second run opened a new connection"


def test_http_post_body(make_collector, body_server):
    collector = make_collector({"type": "http", "url": f"{body_server.url}/ok", "method": "post",
                                "body": '{"check": "oculus"}'})

    readings = collect(collector)

    assert body_server.requests[-1][0] == "POST"
    assert body_server.bodies == [b'{"check": "oculus"}']
    assert readings[0].success is True


def test_http_env_header(make_collector, scheduler, http_target):
    token = "token-5f3a9c"
    collector = make_collector({"type": "http", "url": f"{http_target.url}/error",
                                "headers": {"Authorization": "Bearer ${PROBE_TOKEN}"}},
                               env={"PROBE_TOKEN": token})

    samples = run_once(scheduler, collector)

    assert http_target.requests[-1][2]["Authorization"] == f"Bearer {token}"
    assert "error" in samples[0].tags, "the /error response must produce an error message to search"
    assert token not in repr([s.tags for s in samples])


def test_http_refused(make_collector, refused_port):
    readings = collect(make_collector({"type": "http", "url": f"http://127.0.0.1:{refused_port}/"}))

    assert [r.success for r in readings] == [False, False]
    assert [r.error for r in readings] == ["connection refused", "connection refused"]


def test_http_verify_tls_false(make_collector, http_target):
    collector = make_collector({"type": "http", "url": f"{http_target.url}/ok", "verify_tls": False})

    assert collector.options["verify_tls"] is False


def test_http_user_agent(make_collector, http_target):
    collect(make_collector({"type": "http", "url": f"{http_target.url}/ok"}))

    assert http_target.requests[-1][2]["User-Agent"].startswith("Oculus/")


def test_http_too_many_redirects(make_collector, http_target):
    readings = collect(make_collector({"type": "http", "url": f"{http_target.url}/loop"}))

    assert [r.error for r in readings] == ["too many redirects (more than 30)"] * 2
    assert len(http_target.requests) == 31, "one request and 30 redirects, then the run stops"


def test_http_gzip_body_match(make_collector, http_target):
    readings = collect(make_collector({"type": "http", "url": f"{http_target.url}/gzip",
                                       "body_match": "version 1.2.3"}))

    assert readings[0].success is True, readings[0].error
    assert "gzip" in http_target.requests[-1][2]["Accept-Encoding"]


def test_http_reuses_connection_after_body_match(make_collector, http_target):
    collector = make_collector({"type": "http", "url": f"{http_target.url}/body", "body_match": "healthy"})

    collect(collector)
    collect(collector)

    assert http_target.clients[1] == http_target.clients[0], "the second run opened a new connection"


def test_http_header_replaces_default(make_collector, http_target):
    collect(make_collector({"type": "http", "url": f"{http_target.url}/ok", "headers": {"user-agent": "probe/1"}}))

    assert header_values(http_target.requests[-1], "User-Agent") == ["probe/1"]


def test_http_url_credentials(make_collector, http_target):
    url = http_target.url.replace("http://", "http://probe:p%40ss@")

    collect(make_collector({"type": "http", "url": f"{url}/ok"}))

    expected = "Basic " + base64.b64encode(b"probe:p@ss").decode()
    assert header_values(http_target.requests[-1], "Authorization") == [expected]


def test_http_url_credentials_beyond_latin1(make_collector, http_target):
    url = http_target.url.replace("http://", "http://j%E2%82%AC:pw@")  # the user name is "j€"

    readings = collect(make_collector({"type": "http", "url": f"{url}/ok"}))

    assert readings[0].success is True, readings[0].error
    expected = "Basic " + base64.b64encode(b"j?:pw").decode()
    assert header_values(http_target.requests[-1], "Authorization") == [expected]


def test_http_post_302_becomes_get(make_collector, body_server):
    collector = make_collector({"type": "http", "url": f"{body_server.url}/redirect", "method": "post",
                                "body": "payload", "headers": {"Content-Type": "text/plain"}})

    readings = collect(collector)

    assert [(method, path) for method, path, _ in body_server.requests] == [("POST", "/redirect"), ("GET", "/ok")]
    assert header_values(body_server.requests[1], "Content-Type") == []
    assert readings[0].success is True, readings[0].error


def test_http_post_307_keeps_body(make_collector, body_server):
    collector = make_collector({"type": "http", "url": f"{body_server.url}/redirect-307", "method": "post",
                                "body": "payload"})

    collect(collector)

    assert [(method, path) for method, path, _ in body_server.requests] == [("POST", "/redirect-307"),
                                                                           ("POST", "/ok")]
    assert body_server.bodies == [b"payload", b"payload"]


def test_http_redirect_drops_credentials(make_collector, http_target, body_server):
    collector = make_collector({"type": "http", "url": f"{http_target.url}/to?{body_server.url}/ok",
                                "headers": {"Authorization": "Bearer token-1"}})

    readings = collect(collector)

    assert readings[0].success is True, readings[0].error
    assert header_values(http_target.requests[-1], "Authorization") == ["Bearer token-1"]
    assert header_values(body_server.requests[-1], "Authorization") == []


def test_http_redirect_same_host_keeps_credentials(make_collector, http_target):
    collect(make_collector({"type": "http", "url": f"{http_target.url}/redirect",
                            "headers": {"Authorization": "Bearer token-1"}}))

    assert [path for _, path, _ in http_target.requests] == ["/redirect", "/ok"]
    assert header_values(http_target.requests[-1], "Authorization") == ["Bearer token-1"]


def test_http_trickled_body_ends_at_deadline(make_collector, http_target):
    collector = make_collector({"type": "http", "url": f"{http_target.url}/trickle", "timeout": "500ms"})

    readings, elapsed = collect_bounded(collector, 0.5 + TIMEOUT_SLACK)

    assert elapsed < 0.5 + TIMEOUT_SLACK
    assert readings[0].success is True, "the status arrived in time; the unread body only costs the connection"


def test_http_redirect_hops_share_deadline(make_collector, http_target):
    collector = make_collector({"type": "http", "url": f"{http_target.url}/to?{http_target.url}/slow",
                                "timeout": "500ms"})

    readings, elapsed = collect_bounded(collector, 0.5 + TIMEOUT_SLACK)

    assert elapsed < 0.5 + TIMEOUT_SLACK
    assert readings[0].error.startswith("timed out"), readings[0].error


@pytest.mark.parametrize("url", [
    "http://[::1/",
    "http://127.0.0.1:99999/",
    "http://127.0.0.1:abc/",
    "http://127.0.0.1:0/",
    "http://:80/",
    "http://a b/",
])
def test_http_url_rejected(tmp_path, url):
    message = config_error(tmp_path, {"type": "http", "name": "probe", "url": url})

    assert "collectors[0].url" in message
    assert "expected an http:// or https:// URL" in message


@pytest.mark.parametrize(("headers", "message"), [
    ({"X Probe": "1"}, "invalid header name 'X Probe'"),
    ({"X-Probe:": "1"}, "invalid header name 'X-Probe:'"),
    ({"X-Probe": "a\r\nX-Injected: 1"}, "the value of header 'X-Probe' contains a line break"),
])
def test_http_header_rejected(tmp_path, headers, message):
    error = config_error(tmp_path, {"type": "http", "name": "probe", "url": "http://127.0.0.1:9/", "headers": headers})

    assert message in error
    assert "collectors[0].headers" in error


def test_http_upper_case_scheme(make_collector, http_target):
    url = http_target.url.replace("http://", "HTTP://")

    readings = collect(make_collector({"type": "http", "url": f"{url}/ok"}))

    assert readings[0].success is True, readings[0].error


# -- http through a proxy from the environment ---------------------------------
# The proxy is a ProbeTargetServer: it records the absolute URL of each proxied request and returns 404,
# so the host in the probe's URL is never looked up or contacted.


def test_http_env_proxy(make_collector, http_target, monkeypatch):
    monkeypatch.setenv("http_proxy", http_target.url)

    readings = collect(make_collector({"type": "http", "url": "http://probe.invalid/ok"}))

    assert http_target.requests[-1][1] == "http://probe.invalid/ok"
    assert by_metric(readings)["status"].value == 404


def test_http_no_proxy(make_collector, http_target, monkeypatch):
    proxy = ProbeTargetServer().start()
    try:
        monkeypatch.setenv("http_proxy", proxy.url)
        monkeypatch.setenv("no_proxy", "127.0.0.1")

        readings = collect(make_collector({"type": "http", "url": f"{http_target.url}/ok"}))
    finally:
        proxy.stop()

    assert readings[0].success is True, readings[0].error
    assert proxy.requests == []


def test_http_proxy_credentials(make_collector, http_target, monkeypatch):
    port = http_target.server_address[1]
    monkeypatch.setenv("http_proxy", f"http://probe:p%40ss@127.0.0.1:{port}")

    collect(make_collector({"type": "http", "url": "http://probe.invalid/ok"}))

    expected = "Basic " + base64.b64encode(b"probe:p@ss").decode()
    assert header_values(http_target.requests[-1], "Proxy-Authorization") == [expected]


def test_http_proxy_refused(make_collector, refused_port, monkeypatch):
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{refused_port}")

    readings = collect(make_collector({"type": "http", "url": "http://probe.invalid/ok"}))

    assert readings[0].error == "proxy failed: connection refused"


def test_http_socks_proxy_unsupported(make_collector, refused_port, monkeypatch):
    monkeypatch.setenv("http_proxy", f"socks5://127.0.0.1:{refused_port}")

    readings = collect(make_collector({"type": "http", "url": "http://probe.invalid/ok"}))

    assert {r.success for r in readings} == {False}
    assert "socks5://127.0.0.1" in readings[0].error
    assert "use an http:// or https:// proxy" in readings[0].error


def test_http_proxy_without_scheme(make_collector, http_target, monkeypatch):
    monkeypatch.setenv("http_proxy", f"127.0.0.1:{http_target.server_address[1]}")

    collect(make_collector({"type": "http", "url": "http://probe.invalid/ok"}))

    assert http_target.requests[-1][1] == "http://probe.invalid/ok"


def test_http_proxy_invalid_port(make_collector, monkeypatch):
    monkeypatch.setenv("http_proxy", "http://user:secret@127.0.0.1:notaport")

    readings = collect(make_collector({"type": "http", "url": "http://probe.invalid/ok"}))

    assert {r.success for r in readings} == {False}
    assert "fix http_proxy, https_proxy or all_proxy" in readings[0].error
    assert "secret" not in readings[0].error


# -- https against a loopback server with a certificate from a test CA --------


@pytest.fixture
def certificate_authority(monkeypatch):
    trustme = pytest.importorskip("trustme")
    for name in http_transport.CA_BUNDLE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return trustme.CA()


@pytest.fixture
def https_target(certificate_authority):
    """A function that starts an HTTPS ProbeTargetServer with a certificate for `hostname` and returns its URL."""
    servers = []

    def start(hostname: str = "127.0.0.1") -> str:
        server = ProbeTargetServer()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        certificate_authority.issue_cert(hostname).configure_cert(context)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        servers.append(server.start())
        return f"https://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def trusted_test_ca(certificate_authority, tmp_path, monkeypatch):
    path = tmp_path / "test-ca.pem"
    certificate_authority.cert_pem.write_to_path(str(path))
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(path))
    return certificate_authority


def test_https_untrusted_ca(make_collector, https_target):
    readings = collect(make_collector({"type": "http", "url": f"{https_target()}/ok"}))

    assert readings[0].error == "TLS error: certificate verification failed"


def test_https_ca_bundle_from_env(make_collector, https_target, trusted_test_ca):
    readings = by_metric(collect(make_collector({"type": "http", "url": f"{https_target()}/ok"})))

    assert readings["status"].value == 200
    assert readings["status"].success is True, readings["status"].error


def test_https_wrong_host(make_collector, https_target, trusted_test_ca):
    url = https_target("localhost")

    readings = collect(make_collector({"type": "http", "url": f"{url}/ok"}))

    assert readings[0].error == "TLS error: certificate verification failed"


def test_https_missing_ca_bundle(make_collector, https_target, http_target, monkeypatch, tmp_path):
    missing = tmp_path / "missing.pem"
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(missing))
    http_transport.tls_context.cache_clear()

    https_readings = collect(make_collector({"type": "http", "url": f"{https_target()}/ok"}))
    http_readings = collect(make_collector({"type": "http", "url": f"{http_target.url}/ok"}))

    assert https_readings[0].success is False
    assert f"REQUESTS_CA_BUNDLE={missing}" in https_readings[0].error
    assert "fix or unset that variable" in https_readings[0].error
    assert http_readings[0].success is True, http_readings[0].error


def test_http_redirect_to_https_trusted(make_collector, http_target, https_target, trusted_test_ca):
    readings = collect(make_collector({"type": "http", "url": f"{http_target.url}/to?{https_target()}/ok"}))

    assert readings[0].success is True, readings[0].error


def test_http_redirect_to_https_untrusted(make_collector, http_target, https_target):
    readings = collect(make_collector({"type": "http", "url": f"{http_target.url}/to?{https_target()}/ok"}))

    assert readings[0].error == "TLS error: certificate verification failed"


def test_https_verify_tls_false(make_collector, https_target):
    readings = by_metric(collect(make_collector({"type": "http", "url": f"{https_target()}/ok",
                                                 "verify_tls": False})))

    assert readings["status"].success is True, readings["status"].error


# -- tcp ---------------------------------------------------------------------


def test_tcp_open(make_collector, open_port):
    readings = collect(make_collector({"type": "tcp", "host": "127.0.0.1", "port": open_port}))

    assert readings[0].success is True
    assert readings[0].value > 0
    assert readings[0].tags["address"] == "127.0.0.1"


def test_tcp_refused(make_collector, refused_port):
    readings = collect(make_collector({"type": "tcp", "host": "127.0.0.1", "port": refused_port}))

    assert readings[0].success is False
    assert readings[0].error == "connection refused"


def test_tcp_deadline_passed(make_collector, open_port):
    collector = make_collector({"type": "tcp", "host": "127.0.0.1", "port": open_port})

    readings = collector.collect(time.monotonic() - 1)

    assert readings[0].success is False
    assert readings[0].error.startswith("timed out"), readings[0].error


# -- ping --------------------------------------------------------------------


@pytest.mark.parametrize("host", [
    "127.0.0.1",
    pytest.param("::1", marks=pytest.mark.skipif(not has_ipv6_loopback(), reason="host has no IPv6 loopback (::1)")),
])
def test_ping_loopback(make_collector, host):
    readings = by_metric(collect(make_collector({"type": "ping", "host": host})))

    assert readings["rtt_ms"].success is True
    assert readings["rtt_ms"].value > 0
    assert readings["loss_pct"].value == 0
    assert readings["loss_pct"].tags["address"] == host


def deny_icmp_socket(address, *args, privileged=True, **kwargs):
    raise icmplib.SocketPermissionError(privileged)


def test_ping_permission_hint(make_collector, scheduler):
    collector = make_collector({"type": "ping", "host": "127.0.0.1"})

    # The tests run as root, where icmplib opens raw sockets, so the permission denial cannot happen
    # for real and is simulated at the icmplib seam.
    with mock.patch("icmplib.ping", autospec=True, side_effect=deny_icmp_socket) as ping:
        samples = run_once(scheduler, collector)
    error = samples[0].tags["error"]

    assert [call.kwargs["privileged"] for call in ping.call_args_list] == [True, False]
    assert {s.success for s in samples} == {False}
    assert "root" in error
    assert "CAP_NET_RAW" in error
    assert "net.ipv4.ping_group_range" in error


# -- shared by every network collector ---------------------------------------

DNS_CASES = [
    pytest.param({"type": "tcp", "host": LONG_HOST, "port": 80}, f"DNS lookup failed for {LONG_HOST}", id="tcp"),
    pytest.param({"type": "ping", "host": LONG_HOST}, f"DNS lookup failed for {LONG_HOST}", id="ping"),
    pytest.param({"type": "http", "url": f"http://{LONG_HOST}/"}, "DNS lookup failed", id="http"),
]


@pytest.mark.parametrize(("entry", "prefix"), DNS_CASES)
def test_dns_failure(make_collector, scheduler, entry, prefix):
    samples = run_once(scheduler, make_collector(entry))

    assert {s.success for s in samples} == {False}
    assert samples[0].tags["error"].startswith(prefix), samples[0].tags["error"]


def _empty_label_xfail(where: str):
    return ()


@pytest.mark.parametrize("entry", [
    pytest.param({"type": "tcp", "host": EMPTY_LABEL_HOST, "port": 80}, id="tcp",
                 marks=_empty_label_xfail("TcpCollector.collect catches OSError, but getaddrinfo raises UnicodeError")),
    pytest.param({"type": "ping", "host": EMPTY_LABEL_HOST}, id="ping",
                 marks=_empty_label_xfail("PingCollector.collect: icmplib lets getaddrinfo's UnicodeError through")),
    pytest.param({"type": "http", "url": f"http://{EMPTY_LABEL_HOST}/"}, id="http",
                 marks=_empty_label_xfail("HttpCollector.collect: urllib3 raises LocationParseError, "
                                          "which is not a requests.RequestException")),
])
def test_empty_label_host(make_collector, entry):
    readings = collect(make_collector(entry))

    assert {r.success for r in readings} == {False}


# -- registry ----------------------------------------------------------------


def test_registry_types():
    assert {"http", "ping", "tcp"} <= set(registry.known_types())


@pytest.mark.parametrize(("type_name", "cls"), [
    ("http", HttpCollector),
    ("ping", PingCollector),
    ("tcp", TcpCollector),
])
def test_registry_class(type_name, cls):
    assert registry.collector_class(type_name) is cls
