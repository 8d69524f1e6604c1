"""JSON routes beyond /api/metrics and the Prometheus exposition, on a Runtime seeded with every category."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families

from oculus.storage import utc_now
from oculus.web.openapi import openapi_document
from tests.servers import http_get
from tests.test_web import ISO_UTC, assert_error_shape, start_runtime
from tests.web_support import FAILING_ERROR, FAILING_SYMBOL, SECRET_HEADER, SHOWCASE_RULES, get_json, run_showcase

@pytest.fixture(scope="module")
def runtime(tmp_path_factory):
    yield from run_showcase(tmp_path_factory)


@pytest.fixture(scope="module")
def url(runtime):
    return runtime.web.url


# -- /api/metrics pagination ----------------------------------------------------


def test_metrics_pages_do_not_overlap(url):
    first = get_json(f"{url}/api/metrics?category=crypto&limit=50")
    second = get_json(f"{url}/api/metrics?category=crypto&limit=50&offset={first['next_offset']}")
    assert first["next_offset"] == 50
    keys = {(s["symbol"], s["ts"]) for s in first["samples"]}
    assert keys.isdisjoint({(s["symbol"], s["ts"]) for s in second["samples"]})
    assert second["offset"] == 50


def test_metrics_last_page_no_next(url):
    body = get_json(f"{url}/api/metrics?symbol=crypto.price.btc_usd&limit=10000")
    assert body["next_offset"] is None


# -- /api/metrics/{symbol} --------------------------------------------------------


def test_symbol_latest_and_series(url):
    body = get_json(f"{url}/api/metrics/crypto.price.btc_usd?since=24h")
    assert body["symbol"] == "crypto.price.btc_usd"
    assert body["category"] == "crypto"
    assert body["latest"]["success"] is True
    assert ISO_UTC.match(body["latest"]["ts"])
    assert body["step"] == 300
    assert 280 <= len(body["series"]) <= 290
    assert body["stats"]["min"] <= body["stats"]["avg"] <= body["stats"]["max"]
    assert body["stats"]["failure_rate"] == 0


def test_symbol_step_downsamples(url):
    body = get_json(f"{url}/api/metrics/crypto.price.btc_usd?since=24h&step=1h")
    assert body["step"] == 3600
    assert 24 <= len(body["series"]) <= 25
    assert sum(point["count"] for point in body["series"]) == body["stats"]["count"]
    for point in body["series"]:
        assert ISO_UTC.match(point["ts"])
        assert datetime.fromisoformat(point["ts"][:-1]).minute == 0, "buckets start on the hour"
        assert point["min"] <= point["avg"] <= point["max"]


def test_symbol_since_until_window(url):
    until = (utc_now() - timedelta(hours=2)).replace(microsecond=0)
    since = until - timedelta(hours=1)
    body = get_json(f"{url}/api/metrics/stock.price.aapl?since={since.isoformat()}Z&until={until.isoformat()}Z&step=5m")
    assert body["since"] == since.isoformat(timespec="milliseconds") + "Z"
    assert body["until"] == until.isoformat(timespec="milliseconds") + "Z"
    assert body["stats"]["count"] == 12


def test_symbol_failure_rate(url):
    body = get_json(f"{url}/api/metrics/{FAILING_SYMBOL}?since=24h")
    assert body["stats"]["failures"] == 2
    assert body["stats"]["failure_rate"] == pytest.approx(2 / body["stats"]["count"])
    assert body["latest"]["success"] is False
    assert body["latest"]["tags"]["error"] == FAILING_ERROR


def test_symbol_unknown_404(url):
    assert_error_shape(http_get(f"{url}/api/metrics/net.http.nothing.rtt_ms"), 404, "not_found")


# -- /api/rules, /api/alerts, /api/collectors ----------------------------------------


def test_alerts_active_default(url):
    body = get_json(f"{url}/api/alerts")
    assert [(a["rule"], a["state"]) for a in body["alerts"]] == [("btc_high", "firing"), ("shop_slow", "pending")]
    firing = body["alerts"][0]
    assert firing["severity"] == "critical"
    assert 14 * 60 <= firing["duration_seconds"] <= 20 * 60
    assert firing["delivery"]["outcome"] == "sent to log"
    assert ISO_UTC.match(firing["fired_at"])


@pytest.mark.parametrize("state, rules", [("firing", ["btc_high"]), ("resolved", ["billing_down"]),
                                          ("all", ["btc_high", "shop_slow", "billing_down"])])
def test_alerts_state_filter(url, state, rules):
    assert [a["rule"] for a in get_json(f"{url}/api/alerts?state={state}")["alerts"]] == rules


def test_alerts_resolved_duration(url):
    resolved = get_json(f"{url}/api/alerts?state=resolved")["alerts"][0]
    assert resolved["duration_seconds"] == 30 * 60


def test_alerts_events_newest_first(url):
    events = get_json(f"{url}/api/alerts")["events"]
    assert [event["source"] for event in events] == ["btc_high", "billing_down"]
    assert events[0]["payload"]["state"] == "firing"


def test_rules_from_alert_state(url):
    rules = {rule["name"]: rule for rule in get_json(f"{url}/api/rules")["rules"]}
    assert set(rules) == {"btc_high", "shop_slow", "billing_down"}
    assert rules["btc_high"]["state"] == "firing"
    assert rules["btc_high"]["value"] == 97_100.0
    assert ISO_UTC.match(rules["btc_high"]["last_eval"])


def test_rule_detail_history(url):
    rule = get_json(f"{url}/api/rules/billing_down")
    assert rule["state"] == "resolved"
    assert [event["message"] for event in rule["history"]] == ["billing_down resolved"]
    assert len(rule["instances"]) == 1


def test_rules_listed_from_config(tmp_path):
    runtime = start_runtime(tmp_path, rules=SHOWCASE_RULES)
    try:
        body = get_json(f"{runtime.web.url}/api/rules")
    finally:
        runtime.stop()
    names = [rule["name"] for rule in body["rules"]]
    assert names == [rule["name"] for rule in SHOWCASE_RULES]
    kinds = {rule["name"]: rule["kind"] for rule in body["rules"]}
    assert kinds["billing_down"] == "sql"
    assert kinds["btc_high"] == "simple"
    expressions = {rule["name"]: rule["expression"] for rule in body["rules"]}
    assert expressions["btc_high"] == "crypto.price.btc_usd > 95000"


def test_collectors_status_and_errors(url):
    collectors = {item["key"]: item for item in get_json(f"{url}/api/collectors")["collectors"]}
    broken = collectors["http:broken"]
    assert broken["status"] == "failing"
    assert broken["last_error"] == "expected status 200-299, got 500"
    assert broken["runs"] >= 1
    assert broken["skipped_runs"] == 0
    assert ISO_UTC.match(broken["last_run"])
    assert broken["symbols"] == ["net.http.broken.rtt_ms", "net.http.broken.status"]


def test_collectors_config_masks_secret(url):
    shop = {item["key"]: item for item in get_json(f"{url}/api/collectors")["collectors"]}["http:shop"]
    assert shop["config"]["headers"] == {"Authorization": "<secret>"}
    assert SECRET_HEADER not in http_get(f"{url}/api/collectors").text


# -- OpenAPI --------------------------------------------------------------------


def test_openapi_lists_every_api_route(runtime):
    document = get_json(f"{runtime.web.url}/api/openapi.json")
    routes = {(route.method.lower(), re.sub(r"<(\w+)>", r"{\1}", route.rule))
              for route in runtime.web.app.routes if route.rule.startswith("/api/")}
    documented = {(method, path) for path, item in document["paths"].items() for method in item}
    assert routes == documented


def test_openapi_error_codes_cover_bad_requests():
    from tests.test_web import BAD_API_REQUESTS

    codes = set(openapi_document()["components"]["schemas"]["Error"]["properties"]["error"]["properties"]["code"]
                ["enum"])
    used = {code for cases in BAD_API_REQUESTS.values() for _, _, _, code in cases}
    assert used <= codes


# -- Prometheus exposition ---------------------------------------------------------


def exposition_samples(url: str) -> list:
    """Return the samples of GET /metrics, parsed by prometheus_client's own parser."""
    response = http_get(url + "/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    return [sample for family in text_string_to_metric_families(response.text) for sample in family.samples]


def find_sample(samples: list, metric: str, **labels):
    matches = [s for s in samples if s.name == metric and all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(matches) == 1, f"{len(matches)} samples of {metric} with {labels}"
    return matches[0]


def test_exposition_symbol_value(url):
    sample = find_sample(exposition_samples(url), "oculus_symbol_value", symbol="crypto.price.btc_usd")
    assert sample.labels == {"symbol": "crypto.price.btc_usd", "category": "crypto", "unit": "USD",
                             "tag_team": "", "tag_tier_1": ""}
    assert 90_000 < sample.value < 100_000


def test_exposition_symbol_success(url):
    samples = exposition_samples(url)
    assert find_sample(samples, "oculus_symbol_success", symbol="net.http.broken.status").value == 0
    assert find_sample(samples, "oculus_symbol_success", symbol="crypto.price.btc_usd").value == 1


def test_exposition_tags_from_collector_config(url):
    sample = find_sample(exposition_samples(url), "oculus_symbol_value", symbol="net.http.shop.rtt_ms")
    assert sample.labels["tag_team"] == "web"
    assert sample.labels["tag_tier_1"] == "yes"


def test_exposition_failed_value_absent(url):
    samples = exposition_samples(url)
    assert not [s for s in samples if s.name == "oculus_symbol_value" and s.labels["symbol"] == FAILING_SYMBOL]


@pytest.mark.parametrize("name, labels", [
    ("oculus_write_queue_length", {}),
    ("oculus_write_queue_capacity", {}),
    ("oculus_samples_written_total", {}),
    ("oculus_insert_failures_total", {}),
    ("oculus_write_queue_full_total", {}),
    ("oculus_collector_runs_total", {"collector": "http:broken", "type": "http", "name": "broken"}),
    ("oculus_collector_failures_total", {"collector": "http:broken"}),
    ("oculus_collector_skipped_runs_total", {"collector": "http:broken"}),
    ("oculus_collector_last_run_timestamp_seconds", {"collector": "http:broken"}),
    ("oculus_alert_instances", {"state": "firing"}),
    ("oculus_queries_active", {}),
    ("oculus_build_info", {}),
])
def test_exposition_self_metric(url, name, labels):
    find_sample(exposition_samples(url), name, **labels)


def test_exposition_counts_match_runtime(url, runtime):
    samples = exposition_samples(url)
    assert find_sample(samples, "oculus_alert_instances", state="firing").value == 1
    assert find_sample(samples, "oculus_collector_failures_total", collector="http:broken").value >= 1
    written = find_sample(samples, "oculus_samples_written_total").value
    assert 0 < written <= runtime.writer.stats.samples_written


def test_exposition_notification_hook(url):
    from oculus.selfmetrics import record_notification

    record_notification("log", "sent")
    assert 'oculus_notifications_total{channel="log",outcome="sent"}' in http_get(url + "/metrics").text


