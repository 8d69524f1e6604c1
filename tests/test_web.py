"""Routes of oculus.web.app, requested over HTTP from a real Runtime (DuckDB file, writer, waitress)."""

from __future__ import annotations

import fnmatch
import logging
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml

from oculus import __version__
from oculus.collectors.base import Sample
from oculus.config import load_config
from oculus.runtime import Runtime
from oculus.storage import utc_now
from tests.servers import ProbeTargetServer, closed_port, http_get, listening_socket, wait_for

ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "[::1]"}
ERROR_PHRASE_500 = "expected status 200-299, got 500"
SECRET_TEXT = "disk quota exceeded for /srv/private/token=abc123"

# (symbol, category, age in minutes before BASE, value) seeded into the API runtime.
API_SEEDS = [
    ("net.http.api.rtt_ms", "net", 5, 12.5),
    ("net.http.api.rtt_ms", "net", 30, 14.0),
    ("net.http.api.rtt_ms", "net", 90, 11.0),
    ("net.http.api.status", "net", 5, 200.0),
    ("net.http.api_v2.rtt_ms", "net", 25, 30.0),
    ("net.http.apiv3.rtt_ms", "net", 35, 31.0),
    ("net.tcp.db.rtt_ms", "net", 15, 1.5),
    ("net.tcp.db.rtt_ms", "net", 150, 1.7),
    ("crypto.price.btc_usd", "crypto", 20, 97000.0),
    ("crypto.price.btc_usd", "crypto", 120, 96000.0),
]
# Seed times are whole minutes, so their ISO strings are exact. BASE is at most 59 s before the seeding.
BASE = utc_now().replace(second=0, microsecond=0)


# -- helpers -----------------------------------------------------------------


def start_runtime(directory: Path, collectors: list[dict] | None = None, server: dict | None = None,
                  env: dict | None = None, rules: list[dict] | None = None) -> Runtime:
    """Start a Runtime on a new DuckDB file in `directory`, serving on a free loopback port."""
    config = {
        "server": {"bind": "127.0.0.1", "port": 0, "threads": 4, **(server or {})},
        "database": {"path": str(directory / "oculus.duckdb")},
        "runtime": {"flush_interval": "50ms", "shutdown_timeout": "1s"},
        "collectors": collectors or [],
    }
    if rules:
        config["rules"] = rules
    config_path = directory / "oculus.yaml"
    config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
    runtime = Runtime(load_config(str(config_path), env=env or {}), str(config_path))
    runtime.start()
    return runtime


def seed(runtime: Runtime, samples: list[Sample]) -> None:
    """Write samples through the runtime's writer and wait until they are inserted."""
    runtime.writer.put(samples)
    # A command runs only after the writer has flushed every item queued before it.
    runtime.writer.run_command(lambda connection: None, "flush seeded samples", timeout=10.0)


def sample(symbol: str, ts: datetime, value: float | None = 1.0, success: bool = True, tags=None) -> Sample:
    return Sample(ts=ts, category=symbol.split(".")[0], symbol=symbol, value=value, success=success,
                  duration_ms=1.0, tags=tags or {})


def iso_ms(ts: datetime) -> str:
    return ts.isoformat(timespec="milliseconds") + "Z"


def seeded(predicate) -> list[tuple[str, str]]:
    """Return (symbol, ts) of the API seeds matching predicate(symbol, category, age), newest first."""
    rows = [(symbol, BASE - timedelta(minutes=age)) for symbol, category, age, _ in API_SEEDS
            if predicate(symbol, category, age)]
    rows.sort(key=lambda row: (-row[1].timestamp(), row[0]))
    return [(symbol, iso_ms(ts)) for symbol, ts in rows]


def returned(response) -> list[tuple[str, str]]:
    return [(item["symbol"], item["ts"]) for item in response.json()["samples"]]


def assert_error_shape(response, status: int, code: str, context: str = "") -> None:
    """Check one API error response: status, JSON content type and {"error": {"code", "message"}}."""
    where = f" ({context})" if context else ""
    assert response.status == status, f"status{where}: {response.text}"
    assert response.headers.get("content-type", "").startswith("application/json"), f"content type{where}"
    body = response.json()
    assert set(body) == {"error"}, f"top-level keys{where}: {body}"
    assert set(body["error"]) == {"code", "message"}, f"error keys{where}: {body}"
    assert body["error"]["code"] == code, f"error code{where}: {body}"
    assert isinstance(body["error"]["message"], str) and body["error"]["message"], f"message{where}: {body}"


def row_html(page: str, key: str) -> str:
    """Return the dashboard markup from the row of `key` up to the next row."""
    start = page.find(f'data-symbol="{key}"')
    assert start >= 0, f"no dashboard row for {key}"
    end = page.find('data-symbol="', start + 1)
    return page[start:end] if end >= 0 else page[start:]


def latest_sample(base_url: str, symbol: str) -> dict | None:
    samples = http_get(f"{base_url}/api/metrics?symbol={symbol}&limit=1").json()["samples"]
    return samples[0] if samples else None


# -- fixtures ----------------------------------------------------------------


@pytest.fixture(scope="module")
def api_runtime(tmp_path_factory):
    """A runtime with no collectors, holding only API_SEEDS."""
    runtime = start_runtime(tmp_path_factory.mktemp("api"))
    seed(runtime, [sample(symbol, BASE - timedelta(minutes=age), value)
                   for symbol, _, age, value in API_SEEDS])
    yield runtime
    runtime.stop()


@pytest.fixture(scope="module")
def api_url(api_runtime):
    return api_runtime.web.url


@pytest.fixture
def bare_runtime(tmp_path):
    runtime = start_runtime(tmp_path)
    yield runtime
    runtime.stop()


@pytest.fixture(scope="module")
def target_server():
    server = ProbeTargetServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def dashboard_runtime(tmp_path_factory, target_server):
    """A runtime probing loopback targets (up, 500, refused, HTML in the error), plus seeded history."""
    collectors = [
        {"type": "http", "name": "ok_site", "url": f"{target_server.url}/ok", "interval": "1s", "timeout": "2s"},
        {"type": "http", "name": "error_site", "url": f"{target_server.url}/error", "interval": "1s",
         "timeout": "2s"},
        {"type": "tcp", "name": "closed_port", "host": "127.0.0.1", "port": closed_port(), "interval": "1s",
         "timeout": "2s"},
        {"type": "http", "name": "escape_check", "url": f"{target_server.url}/ok", "interval": "1s",
         "timeout": "2s", "body_match": "<script>alert(1)</script>"},
    ]
    runtime = start_runtime(tmp_path_factory.mktemp("dashboard"), collectors)
    now = utc_now()
    seed(runtime, [
        # Three one-minute buckets of history draw a sparkline; the newest sample is fresh.
        sample("net.http.history.rtt_ms", now - timedelta(seconds=250), 10.0),
        sample("net.http.history.rtt_ms", now - timedelta(seconds=130), 30.0),
        sample("net.http.history.rtt_ms", now - timedelta(seconds=10), 20.0),
        sample("net.tcp.single.rtt_ms", now - timedelta(seconds=5), 3.0),
        sample("net.tcp.old_target.rtt_ms", now - timedelta(minutes=10), 4.0),
    ])
    url = runtime.web.url
    for symbol in ("net.http.ok_site.status", "net.http.error_site.status", "net.tcp.closed_port.rtt_ms",
                   "net.http.escape_check.status"):
        wait_for(lambda symbol=symbol: latest_sample(url, symbol), timeout=15.0, what=f"first sample of {symbol}")
    yield runtime
    runtime.stop()


@pytest.fixture(scope="module")
def dashboard_page(dashboard_runtime) -> str:
    response = http_get(dashboard_runtime.web.url + "/")
    assert response.status == 200, response.text
    return response.text


# -- health ------------------------------------------------------------------


def test_healthz_status_200(api_url):
    assert http_get(api_url + "/healthz").status == 200


def test_healthz_json_body(api_url):
    response = http_get(api_url + "/healthz")
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == {"status": "ok", "version": __version__}


def test_readyz_200_when_running(api_url):
    response = http_get(api_url + "/readyz")
    assert response.status == 200, response.text
    assert response.json()["status"] == "ready"
    assert "reasons" not in response.json()


def test_readyz_503_when_writer_stopped(bare_runtime):
    assert bare_runtime.writer.stop(5.0), "writer did not stop"

    response = http_get(bare_runtime.web.url + "/readyz")

    assert response.status == 503, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["status"] == "not ready"
    assert isinstance(body["reasons"], list)
    assert "writer thread is not running" in body["reasons"]


# -- /api/metrics filters ----------------------------------------------------


def test_metrics_symbol_exact(api_url):
    response = http_get(api_url + "/api/metrics?symbol=net.tcp.db.rtt_ms")
    assert response.status == 200, response.text
    assert returned(response) == seeded(lambda symbol, category, age: symbol == "net.tcp.db.rtt_ms")


@pytest.mark.parametrize("pattern", [
    "net.http.api.*",
    "*.rtt_ms",
    "crypto.*",
    # "_" is literal: it must not match the "v" of net.http.apiv3 the way SQL LIKE would.
    "net.http.api_*",
])
def test_metrics_symbol_wildcard(api_url, pattern):
    response = http_get(f"{api_url}/api/metrics?symbol={pattern}")
    assert response.status == 200, response.text
    assert returned(response) == seeded(lambda symbol, category, age: fnmatch.fnmatchcase(symbol, pattern))


@pytest.mark.parametrize("category", ["net", "crypto", "stock"])
def test_metrics_category(api_url, category):
    response = http_get(f"{api_url}/api/metrics?category={category}")
    assert response.status == 200, response.text
    assert returned(response) == seeded(lambda symbol, seed_category, age: seed_category == category)


def _since_hour_ago(style: str) -> str:
    """BASE minus 60 minutes, written in `style` as it appears in the query string."""
    moment = (BASE - timedelta(minutes=60)).replace(tzinfo=timezone.utc)
    if style == "Z":
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    if style == "encoded +00:00":
        return moment.isoformat().replace("+", "%2B")
    if style == "unencoded +00:00":
        return moment.isoformat()
    if style == "encoded +02:00":
        return moment.astimezone(timezone(timedelta(hours=2))).isoformat().replace("+", "%2B")
    if style == "-05:00":
        return moment.astimezone(timezone(timedelta(hours=-5))).isoformat()
    raise ValueError(style)


@pytest.mark.parametrize("style", ["Z", "encoded +00:00", "unencoded +00:00", "encoded +02:00", "-05:00"])
def test_metrics_since_iso(api_url, style):
    response = http_get(f"{api_url}/api/metrics?since={_since_hour_ago(style)}")
    assert response.status == 200, response.text
    assert returned(response) == seeded(lambda symbol, category, age: age <= 60)


@pytest.mark.parametrize("style", ["Z", "unencoded +00:00", "encoded +02:00"])
def test_metrics_until_iso(api_url, style):
    # `until` is exclusive, and no sample sits exactly at 60 minutes.
    response = http_get(f"{api_url}/api/metrics?until={_since_hour_ago(style)}")
    assert response.status == 200, response.text
    assert returned(response) == seeded(lambda symbol, category, age: age > 60)


def test_metrics_since_and_until(api_url):
    since = (BASE - timedelta(minutes=40)).isoformat() + "Z"
    until = (BASE - timedelta(minutes=10)).isoformat() + "Z"
    response = http_get(f"{api_url}/api/metrics?since={since}&until={until}")
    assert response.status == 200, response.text
    assert returned(response) == seeded(lambda symbol, category, age: 10 < age <= 40)


@pytest.mark.parametrize("duration, max_age", [("1h", 60), ("45m", 45), ("1h40m", 100), ("3h", 180)])
def test_metrics_since_duration(api_url, duration, max_age):
    # Seeds sit at least 5 minutes from each window edge, so the seconds since BASE do not matter.
    response = http_get(f"{api_url}/api/metrics?since={duration}")
    assert response.status == 200, response.text
    assert returned(response) == seeded(lambda symbol, category, age: age < max_age)


def test_metrics_limit(api_url):
    response = http_get(api_url + "/api/metrics?limit=3")
    assert response.status == 200, response.text
    assert returned(response) == seeded(lambda *_: True)[:3]
    assert response.json()["count"] == 3
    assert response.json()["limit"] == 3


def test_metrics_newest_first(api_url):
    timestamps = [ts for _, ts in returned(http_get(api_url + "/api/metrics"))]
    assert len(timestamps) == len(API_SEEDS)
    assert timestamps == sorted(timestamps, reverse=True)


def test_metrics_timestamps_utc_z(api_url):
    samples = http_get(api_url + "/api/metrics").json()["samples"]
    assert samples, "no samples returned"
    for item in samples:
        assert ISO_UTC.match(item["ts"]), f"not ISO 8601 UTC with Z: {item['ts']}"


def test_metrics_sample_fields(api_url):
    item = http_get(api_url + "/api/metrics?symbol=net.http.api.status").json()["samples"][0]
    assert item["category"] == "net"
    assert item["value"] == 200.0
    assert item["success"] is True


# -- /api errors -------------------------------------------------------------


@pytest.mark.parametrize("parameter, value", [
    ("since", "yesterday"),
    ("since", "2026-13-01T00:00:00Z"),
    ("since", "1 hour"),
    ("since", "-1h"),
    ("until", "soon"),
    ("until", "12:00"),
])
def test_metrics_invalid_time_400(api_url, parameter, value):
    response = http_get(f"{api_url}/api/metrics?{parameter}={value.replace(' ', '%20')}")
    assert_error_shape(response, 400, "invalid_parameter")
    assert response.json()["error"]["message"].startswith(f"{parameter}:")


@pytest.mark.parametrize("value", ["0", "-1", "abc", "10001", "1.5", "1e3"])
def test_metrics_invalid_limit_400(api_url, value):
    response = http_get(f"{api_url}/api/metrics?limit={value}")
    assert_error_shape(response, 400, "invalid_parameter")
    assert response.json()["error"]["message"].startswith("limit:")


@pytest.mark.parametrize("value", ["1000000d", "99999999999999999999h", "0001-01-01T00:00:00%2B01:00",
                                   "9999-12-31T23:59:59-01:00"])
def test_metrics_since_out_of_range(api_url, value):
    response = http_get(f"{api_url}/api/metrics?since={value}")
    assert_error_shape(response, 400, "invalid_parameter")


def test_metrics_query_decoded_utf8(api_url):
    response = http_get(f"{api_url}/api/metrics?since=%C3%A4")
    assert response.json()["error"]["message"].endswith('got "ä"')


def test_api_unknown_path_404(api_url):
    assert_error_shape(http_get(api_url + "/api/no-such-endpoint"), 404, "not_found")


# Bad requests for every /api/ route: (method, path and query, expected status, expected code).
# A new route fails test_api_routes_reject_bad_input until it has an entry here.
BAD_API_REQUESTS = {
    "/api/metrics": [
        ("GET", "/api/metrics?since=not-a-time", 400, "invalid_parameter"),
        ("GET", "/api/metrics?until=not-a-time", 400, "invalid_parameter"),
        ("GET", "/api/metrics?limit=none", 400, "invalid_parameter"),
        ("DELETE", "/api/metrics", 405, "method_not_allowed"),
        ("POST", "/api/metrics", 405, "method_not_allowed"),
        ("GET", "/api/metrics?offset=-1", 400, "invalid_parameter"),
    ],
    "/api/metrics/<symbol>": [
        ("GET", "/api/metrics/net.http.api.rtt_ms?since=not-a-time", 400, "invalid_parameter"),
        ("GET", "/api/metrics/net.http.api.rtt_ms?step=0s", 400, "invalid_parameter"),
        ("GET", "/api/metrics/net.http.api.rtt_ms?since=7d&step=1s", 400, "invalid_parameter"),
        ("GET", "/api/metrics/net.http.api.rtt_ms?since=1h&until=2h", 400, "invalid_parameter"),
        ("GET", "/api/metrics/no.such.symbol", 404, "not_found"),
        ("DELETE", "/api/metrics/net.http.api.rtt_ms", 405, "method_not_allowed"),
    ],
    "/api/query": [
        ("POST", "/api/query", 403, "query_disabled"),
        ("GET", "/api/query", 405, "method_not_allowed"),
    ],
    "/api/rules": [
        ("POST", "/api/rules", 405, "method_not_allowed"),
    ],
    "/api/rules/<name>": [
        ("GET", "/api/rules/no_such_rule", 404, "not_found"),
        ("GET", "/api/rules/no_such_rule?limit=0", 400, "invalid_parameter"),
        ("PUT", "/api/rules/no_such_rule", 405, "method_not_allowed"),
    ],
    "/api/alerts": [
        ("GET", "/api/alerts?state=burning", 400, "invalid_parameter"),
        ("GET", "/api/alerts?limit=none", 400, "invalid_parameter"),
        ("POST", "/api/alerts", 405, "method_not_allowed"),
    ],
    "/api/collectors": [
        ("DELETE", "/api/collectors", 405, "method_not_allowed"),
    ],
    "/api/openapi.json": [
        ("POST", "/api/openapi.json", 405, "method_not_allowed"),
    ],
    "/api/export": [
        ("GET", "/api/export", 403, "export_disabled"),
        ("POST", "/api/export", 405, "method_not_allowed"),
    ],
    "/api/backup": [
        ("POST", "/api/backup", 403, "backup_disabled"),
        ("GET", "/api/backup", 405, "method_not_allowed"),
    ],
}


def test_api_routes_reject_bad_input(api_runtime):
    rules = sorted({route.rule for route in api_runtime.web.app.routes if route.rule.startswith("/api/")})
    assert rules, "the app has no /api/ routes"

    for rule in rules:
        assert rule in BAD_API_REQUESTS, f"no bad-input case for {rule}; add one to BAD_API_REQUESTS"
        for method, path, status, code in BAD_API_REQUESTS[rule]:
            response = http_get(api_runtime.web.url + path, method=method)
            assert_error_shape(response, status, code, f"{method} {path}")


def test_route_exception_500_hides_text(bare_runtime, caplog):
    @bare_runtime.web.app.get("/api/test-raises")
    def raises():
        raise RuntimeError(SECRET_TEXT)

    with caplog.at_level(logging.ERROR):
        response = http_get(bare_runtime.web.url + "/api/test-raises")

    assert_error_shape(response, 500, "internal_error")
    assert SECRET_TEXT not in response.text
    assert "RuntimeError" not in response.text
    assert "Traceback" not in response.text
    assert SECRET_TEXT in caplog.text, "the exception is missing from the server log"


# -- dashboard ---------------------------------------------------------------


def test_dashboard_html_page(dashboard_runtime):
    response = http_get(dashboard_runtime.web.url + "/")
    assert response.status == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "<html" in response.text


def test_dashboard_network_panel(dashboard_page):
    assert 'data-category="net"' in dashboard_page
    assert "Network" in dashboard_page


@pytest.mark.parametrize("key", ["net.http.ok_site", "net.http.error_site", "net.tcp.closed_port",
                                 "net.http.escape_check"])
def test_dashboard_target_name(dashboard_page, key):
    assert key.rsplit(".", 1)[1] in row_html(dashboard_page, key)


def test_dashboard_up_badge(dashboard_page):
    row = row_html(dashboard_page, "net.http.ok_site")
    assert ">UP<" in row
    assert ">DOWN<" not in row


@pytest.mark.parametrize("key, phrase", [
    ("net.http.error_site", ERROR_PHRASE_500),
    ("net.tcp.closed_port", "connection refused"),
])
def test_dashboard_down_badge(dashboard_page, key, phrase):
    row = row_html(dashboard_page, key)
    assert ">DOWN<" in row
    assert phrase in row


def test_dashboard_target_url(dashboard_page, target_server):
    assert f"{target_server.url}/ok" in row_html(dashboard_page, "net.http.ok_site")


def test_dashboard_escapes_error_text(dashboard_page):
    row = row_html(dashboard_page, "net.http.escape_check")
    assert "<script>alert(1)</script>" not in dashboard_page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in row


def test_dashboard_sparkline_polyline(dashboard_page):
    row = row_html(dashboard_page, "net.http.history")
    points = re.search(r'<polyline[^>]*points="([^"]+)"', row)
    assert points, "no sparkline polyline for three minutes of samples"
    assert len(points.group(1).split()) == 3


def test_dashboard_no_sparkline_single_sample(dashboard_page):
    assert "<polyline" not in row_html(dashboard_page, "net.tcp.single")


def test_dashboard_stale_badge(dashboard_page):
    row = row_html(dashboard_page, "net.tcp.old_target")
    assert ">STALE<" in row
    assert ">UP<" not in row


def test_dashboard_fresh_not_stale(dashboard_page):
    assert ">STALE<" not in row_html(dashboard_page, "net.http.history")


def test_dashboard_time_iso_utc(dashboard_page):
    times = re.findall(r'<time[^>]*datetime="([^"]+)"', dashboard_page)
    assert times, "no <time> elements"
    for value in times:
        assert ISO_UTC.match(value), f"not ISO 8601 UTC with Z: {value}"


def test_dashboard_no_collectors_state(bare_runtime):
    page = http_get(bare_runtime.web.url + "/").text
    assert "No collectors configured" in page
    assert "Waiting for the first samples" not in page


def test_dashboard_waiting_state(tmp_path):
    # The target accepts connections and never sends a response, so no sample arrives before the 10 s timeout.
    silent = listening_socket()
    runtime = start_runtime(tmp_path, [{"type": "http", "name": "silent", "interval": "30s", "timeout": "10s",
                                        "url": f"http://127.0.0.1:{silent.getsockname()[1]}/"}])
    try:
        page = http_get(runtime.web.url + "/").text
    finally:
        runtime.stop()
        silent.close()  # resets the held connection, so the probe thread ends at once
    assert "Waiting for the first samples" in page
    assert "No collectors configured" not in page


def test_dashboard_keeps_newest_after_backfill(bare_runtime):
    newest = utc_now().replace(microsecond=0) - timedelta(seconds=5)
    seed(bare_runtime, [sample("net.tcp.backfilled.rtt_ms", newest, 2.0)])
    seed(bare_runtime, [sample("net.tcp.backfilled.rtt_ms", newest - timedelta(minutes=20), 9.0)])

    row = row_html(http_get(bare_runtime.web.url + "/").text, "net.tcp.backfilled")

    assert f'datetime="{newest.isoformat()}Z"' in row


# -- partial, static files, external references --------------------------------


def test_partial_is_fragment(dashboard_runtime):
    response = http_get(dashboard_runtime.web.url + "/partials/metrics")
    assert response.status == 200
    assert "<html" not in response.text.lower()
    assert "<!doctype" not in response.text.lower()
    assert "<head" not in response.text.lower()


def test_partial_contains_rows(dashboard_runtime):
    text = http_get(dashboard_runtime.web.url + "/partials/metrics").text
    assert 'data-symbol="net.http.ok_site"' in text
    assert 'data-symbol="net.http.error_site"' in text


def test_partial_not_cached(dashboard_runtime):
    response = http_get(dashboard_runtime.web.url + "/partials/metrics")
    assert "no-store" in response.headers.get("cache-control", "")


def test_dashboard_polls_partial(dashboard_page):
    assert 'hx-get="/partials/metrics"' in dashboard_page


def test_static_css_served(dashboard_runtime, dashboard_page):
    assert 'href="/static/oculus.css"' in dashboard_page
    response = http_get(dashboard_runtime.web.url + "/static/oculus.css")
    assert response.status == 200
    assert response.headers["content-type"].startswith("text/css")
    assert len(response.body) > 1000


def test_static_htmx_served(dashboard_runtime, dashboard_page):
    match = re.search(r'<script src="(/static/vendor/htmx[^"]*\.js)"', dashboard_page)
    assert match, "the page does not load a vendored htmx file"
    response = http_get(dashboard_runtime.web.url + match.group(1))
    assert response.status == 200
    assert "javascript" in response.headers["content-type"]
    assert b"htmx" in response.body


@pytest.mark.parametrize("path", ["/static/../pyproject.toml", "/static/%2e%2e/pyproject.toml",
                                  "/static/..%2fpyproject.toml"])
def test_static_rejects_traversal(dashboard_runtime, path):
    response = http_get(dashboard_runtime.web.url + path)
    assert response.status in (403, 404), response.status
    assert b"[project]" not in response.body


def test_dashboard_no_external_urls(dashboard_page):
    hosts = set(re.findall(r"https?://([^/\"'\s<>]+?)(?::\d+)?(?=[/\"'\s<>]|$)", dashboard_page))
    assert hosts, "expected at least the loopback target URLs in the page"
    assert hosts <= LOOPBACK_HOSTS, f"external hosts referenced: {sorted(hosts - LOOPBACK_HOSTS)}"
