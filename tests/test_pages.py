"""The HTML pages on a Runtime seeded with every category, alert states and events."""

from __future__ import annotations

import gzip
import json
import re
import threading
from datetime import timedelta

import pytest

from oculus.storage import Database, utc_now
from oculus.web.dashboard import SparklineCache, change_text
from oculus.web.pages import RenderCache, format_seconds
from tests.servers import http_get, http_request
from tests.test_web import row_html, start_runtime
from tests.web_support import SECRET_HEADER, SHOWCASE, SHOWCASE_RULES, get_json, run_showcase


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    for runtime in run_showcase(tmp_path_factory):
        yield runtime.web.url


# -- pages ----------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/partials/metrics", "/metrics/crypto.price.btc_usd",
                                  "/metrics/crypto.price.btc_usd?range=7d", "/metrics/net.http.shop.rtt_ms?range=24h",
                                  "/collectors", "/collectors/http/shop", "/collectors/http/broken", "/alerts",
                                  "/rules", "/query"])
def test_page_renders(url, path):
    response = http_get(url + path)
    assert response.status == 200, response.text
    assert response.headers["content-type"].startswith("text/html")
    assert "Traceback" not in response.text


@pytest.mark.parametrize("category", ["net", "crypto", "stock", "pred", "custom"])
def test_dashboard_panel_per_category(url, category):
    assert f'data-category="{category}"' in http_get(url + "/").text


@pytest.mark.parametrize("symbol", [s for s in SHOWCASE if not s.endswith((".status", ".loss_pct"))])
def test_dashboard_links_symbol_page(url, symbol):
    page = http_get(url + "/").text
    assert f'href="/metrics/{symbol}"' in page


def test_dashboard_links_collector_debug(url):
    row = row_html(http_get(url + "/").text, "net.http.broken")
    assert 'href="/collectors/http/broken"' in row


def test_dashboard_24h_change(url):
    row = row_html(http_get(url + "/").text, "crypto.price.btc_usd")
    current = get_json(f"{url}/api/metrics?symbol=crypto.price.btc_usd&limit=1")["samples"][0]["value"]
    day_ago = get_json(f"{url}/api/metrics?symbol=crypto.price.btc_usd&until=24h&limit=1")["samples"][0]["value"]
    expected = change_text(current, day_ago)
    assert expected not in ("", "0.0 %")
    arrow = "↑" if current > day_ago else "↓"
    assert re.search(rf"data-change-24h[^>]*>{arrow} {re.escape(expected)} 24h<", row), row


def test_symbol_page_chart_data(url):
    page = http_get(url + "/metrics/crypto.price.btc_usd?range=24h").text
    data = json.loads(re.search(r'<script type="application/json" id="chart-data">(.*?)</script>', page, re.S)
                      .group(1))
    assert len(data["ts"]) == len(data["avg"]) == len(data["min"]) == len(data["max"])
    assert len(data["ts"]) > 200
    assert '/static/vendor/uplot-1.6.32.iife.min.js' in page


def test_symbol_page_stats_and_alerts(url):
    page = http_get(url + "/metrics/crypto.price.btc_usd?range=24h").text
    assert 'data-stat="failure rate">0.0 %<' in page
    assert "btc_high" in page
    assert "BTC above 95,000: 97,100" in page


def test_symbol_page_unknown_404(url):
    response = http_get(url + "/metrics/no.such.symbol")
    assert response.status == 404
    assert "No data for no.such.symbol" in response.text


def test_symbol_page_bad_range_defaults(url):
    page = http_get(url + "/metrics/crypto.price.btc_usd?range=forever").text
    assert re.search(r'bg-sky-500/20[^"]*"\s+data-range="1h"', page)


def test_collector_page_debug_view(url):
    page = http_get(url + "/collectors/http/broken").text
    assert "expected status 200-299, got 500" in page
    assert 'data-status>failing<' in page
    assert "&quot;url&quot;: &quot;" in page


def test_collector_page_masks_secret(url):
    page = http_get(url + "/collectors/http/shop").text
    assert "&lt;secret&gt;" in page
    assert SECRET_HEADER not in page


def test_collector_page_unknown_404(url):
    response = http_get(url + "/collectors/http/nothing")
    assert response.status == 404
    assert "No collector http:nothing" in response.text


def test_alerts_page_lists_states(url):
    page = http_get(url + "/alerts").text
    for rule in ("btc_high", "shop_slow", "billing_down"):
        assert f'data-alert="{rule}"' in page
    assert "sent to log" in page


def test_alerts_page_empty_state(tmp_path):
    runtime = start_runtime(tmp_path)
    try:
        page = http_get(runtime.web.url + "/alerts").text
        rules = http_get(runtime.web.url + "/rules").text
        collectors = http_get(runtime.web.url + "/collectors").text
    finally:
        runtime.stop()
    assert "No rules configured" in page
    assert "No rules configured" in rules
    assert "No collectors configured" in collectors


def test_rules_page_lists_config_rules(tmp_path):
    runtime = start_runtime(tmp_path, rules=SHOWCASE_RULES)
    try:
        page = http_get(f"{runtime.web.url}/rules").text
    finally:
        runtime.stop()
    for rule in SHOWCASE_RULES:
        assert f'data-rule="{rule["name"]}"' in page
    assert "crypto.price.btc_usd &gt; 95000" in page


def test_query_page_console_with_token(tmp_path):
    runtime = start_runtime(tmp_path, server={"api_token": "page-token"})
    try:
        page = http_get(f"{runtime.web.url}/query").text
    finally:
        runtime.stop()
    assert 'id="sql"' in page
    assert 'id="token"' in page
    assert "page-token" not in page


def test_query_page_has_console(url):
    page = http_get(url + "/query").text
    assert "The SQL console is disabled" in page  # this runtime has no token


# -- helpers --------------------------------------------------------------------


@pytest.mark.parametrize("current, reference, text", [
    (110.0, 100.0, "+10.0 %"), (90.0, 100.0, "-10.0 %"), (100.0, 100.0, "0.0 %"), (100.001, 100.0, "0.0 %"),
    (5.0, 0.0, "new"), (0.0, 0.0, ""), (1.0, None, ""), (-50.0, -100.0, "+50.0 %"),
])
def test_change_text(current, reference, text):
    assert change_text(current, reference) == text


@pytest.mark.parametrize("seconds, text", [(None, "–"), (5, "5 s"), (125, "2 min"), (3600, "1 h"),
                                           (3900, "1 h 5 min"), (86400 * 2, "2 d"), (90000, "1 d 1 h")])
def test_format_seconds(seconds, text):
    assert format_seconds(seconds) == text


# -- render cache -------------------------------------------------------------------


def test_render_cache_reuses_within_ttl():
    cache = RenderCache(ttl=60.0)
    builds = []
    first = cache.get("k", lambda: builds.append(1) or "<p>one</p>")
    second = cache.get("k", lambda: builds.append(2) or "<p>two</p>")
    assert first is second
    assert builds == [1]


def test_render_cache_rebuilds_on_new_key():
    cache = RenderCache(ttl=60.0)
    cache.get("k1", lambda: "<p>one</p>")
    assert cache.get("k2", lambda: "<p>two</p>").body == b"<p>two</p>"


def test_render_cache_rebuilds_after_ttl():
    cache = RenderCache(ttl=0.0)
    cache.get("k", lambda: "<p>one</p>")
    assert cache.get("k", lambda: "<p>two</p>").body == b"<p>two</p>"


def test_render_cache_serves_previous_while_rendering():
    cache = RenderCache(ttl=60.0)
    cache.get("k1", lambda: "<p>old</p>")
    rendering, release = threading.Event(), threading.Event()

    def slow_build():
        rendering.set()
        release.wait(5)
        return "<p>new</p>"

    renderer = threading.Thread(target=cache.get, args=("k2", slow_build))
    renderer.start()
    assert rendering.wait(5)
    during = cache.get("k2", lambda: "<p>not built</p>")
    release.set()
    renderer.join(5)
    assert during.body == b"<p>old</p>"
    assert cache.get("k2", lambda: "<p>not built</p>").body == b"<p>new</p>"


def test_dashboard_gzip_when_accepted(url):
    plain = http_request(url + "/partials/metrics")
    compressed = http_request(url + "/partials/metrics", headers={"Accept-Encoding": "gzip"})
    assert compressed.headers["content-encoding"] == "gzip"
    assert "accept-encoding" in compressed.headers["vary"].lower()
    assert "content-encoding" not in plain.headers
    assert gzip.decompress(compressed.body).decode("utf-8").count('data-symbol="') == plain.text.count('data-symbol="')


# -- sparkline cache ----------------------------------------------------------------


@pytest.fixture
def spark_cursor(tmp_path):
    database = Database(str(tmp_path / "spark.duckdb"))
    database.open()
    yield database.connection
    database.close()


def add_spark_samples(cursor, symbol: str, values: list[float]) -> None:
    """Insert one sample a minute, the newest a minute ago, so each value is its own sparkline bucket."""
    now = utc_now()
    for age, value in enumerate(reversed(values), start=1):
        cursor.execute("INSERT INTO samples (ts, category, symbol, value, success) VALUES (?, 'net', ?, ?, true)",
                       [now - timedelta(minutes=age), symbol, value])


def test_sparkline_cache_reuses_within_refresh(spark_cursor):
    cache = SparklineCache(refresh=60.0)
    add_spark_samples(spark_cursor, "net.tcp.a.rtt_ms", [1.0, 2.0, 3.0])
    first = cache.points(spark_cursor, ["net.tcp.a.rtt_ms"], utc_now())
    add_spark_samples(spark_cursor, "net.tcp.a.rtt_ms", [9.0])

    second = cache.points(spark_cursor, ["net.tcp.a.rtt_ms"], utc_now())

    assert second is first


def test_sparkline_cache_recomputes_new_symbols(spark_cursor):
    cache = SparklineCache(refresh=60.0)
    add_spark_samples(spark_cursor, "net.tcp.a.rtt_ms", [1.0, 2.0, 3.0])
    add_spark_samples(spark_cursor, "net.tcp.b.rtt_ms", [3.0, 2.0, 1.0])
    cache.points(spark_cursor, ["net.tcp.a.rtt_ms"], utc_now())

    points = cache.points(spark_cursor, ["net.tcp.a.rtt_ms", "net.tcp.b.rtt_ms"], utc_now())

    assert set(points) == {"net.tcp.a.rtt_ms", "net.tcp.b.rtt_ms"}


def test_sparkline_cache_recomputes_after_refresh(spark_cursor):
    cache = SparklineCache(refresh=0.0)
    add_spark_samples(spark_cursor, "net.tcp.a.rtt_ms", [1.0, 2.0, 3.0])
    first = cache.points(spark_cursor, ["net.tcp.a.rtt_ms"], utc_now())
    add_spark_samples(spark_cursor, "net.tcp.a.rtt_ms", [1.0, 2.0, 3.0, 2.0, 1.0])

    second = cache.points(spark_cursor, ["net.tcp.a.rtt_ms"], utc_now())

    assert second["net.tcp.a.rtt_ms"] != first["net.tcp.a.rtt_ms"]
