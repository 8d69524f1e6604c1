"""json_api collector: JSON paths, secrets, failures and backoff, against loopback servers."""

from __future__ import annotations

import json
import time

import pytest
import yaml

from oculus.collectors import json_api, registry
from oculus.collectors.json_api import JsonPath, PathNotFound, compile_path, resolve, to_number
from oculus.collectors.provider import PERMANENT, RATE_LIMITED, TRANSIENT, Backoff
from oculus.config import ConfigError, load_config
from tests.json_server import JsonServer

PRICES = {
    "data": {"price": "67018.42000000", "volume": 1234.5, "healthy": True, "note": "fine", "missing": None},
    "items": [{"v": 1}, {"v": 2}, {"v": 3}],
    "odd.key": {"with space": 7},
}


@pytest.fixture
def api():
    server = JsonServer().start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def fresh_backoffs():
    yield
    json_api._backoffs.clear()


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def load(tmp_path, env=None, **spec):
    spec = {"type": "json_api", "name": "prices", **spec}
    path = tmp_path / "oculus.yaml"
    path.write_text(yaml.safe_dump({"collectors": [spec]}), encoding="utf-8")
    return load_config(str(path), env=env or {})


def make_collector(tmp_path, env=None, **spec):
    return registry.create(load(tmp_path, env, **spec).collectors[0])


def by_symbol(readings) -> dict:
    return {reading.symbol: reading for reading in readings}


def collect(collector) -> dict:
    return by_symbol(collector.collect(time.monotonic() + 5))


# -- JSON paths ------------------------------------------------------------


@pytest.mark.parametrize("path, value", [
    ("$.data.volume", 1234.5),
    ("$.data.price", "67018.42000000"),
    ("$.items[1].v", 2),
    ("$.items[-1].v", 3),
    ("$['odd.key']['with space']", 7),
    ('$["odd.key"]["with space"]', 7),
    ("$.data['healthy']", True),
])
def test_path_resolves(path, value):
    assert resolve(json.loads(json.dumps(PRICES)), compile_path(path)) == value


def test_path_root_is_document():
    assert resolve([1, 2], compile_path("$")) == [1, 2]


@pytest.mark.parametrize("path, message", [
    ("$.data.nope", "$.data has no member 'nope'"),
    ("$.items[3].v", "$.items has 3 elements, so no index 3"),
    ("$.data[0]", "$.data is an object, not an array"),
    ("$.items.v", "$.items is an array, not an object"),
    ("$['odd.key'].x", "$['odd.key'] has no member 'x'"),
])
def test_path_not_found_says_where(path, message):
    with pytest.raises(PathNotFound) as raised:
        resolve(PRICES, compile_path(path))

    assert str(raised.value) == message


@pytest.mark.parametrize("path", ["data.price", "$.data..price", "$.items[x]", "$[", "$.a b['c"])
def test_path_invalid_rejected(path):
    with pytest.raises(ValueError):
        compile_path(path)


def test_path_keeps_text():
    assert compile_path("$.a[0]['b c']") == JsonPath("$.a[0]['b c']", ("a", 0, "b c"))


@pytest.mark.parametrize("value, scale, expected", [
    ("1.284e-05", "1", 0.00001284),
    ("67018.42000000", "1", 67018.42),
    (7, "0.001", 0.007),
    (True, "1", 1.0),
    (False, "1", 0.0),
])
def test_to_number_converts_exactly(value, scale, expected):
    from decimal import Decimal

    assert to_number(value, Decimal(scale)) == expected


@pytest.mark.parametrize("value, message", [
    (None, "is null, not a number"),
    ("fine", "is the string 'fine', not a number"),
    ({"a": 1}, "is an object, not a number"),
    ("NaN", "is 'NaN', not a finite number"),
])
def test_to_number_rejects_non_numbers(value, message):
    from decimal import Decimal

    with pytest.raises(ValueError) as raised:
        to_number(value, Decimal(1))

    assert str(raised.value) == message


# -- collecting ------------------------------------------------------------


def test_values_recorded_from_one_request(tmp_path, api):
    api.reply("/v1/prices", PRICES)
    collector = make_collector(tmp_path, url=f"{api.url}/v1/prices?currency=usd", values={
        "btc": {"path": "$.data.price", "unit": "USD"},
        "volume_k": {"path": "$.data.volume", "scale": 0.001},
        "third": "$.items[2].v",
        "healthy": "$.data.healthy",
    })
    readings = collect(collector)

    assert readings["custom.prices.btc"].value == 67018.42
    assert readings["custom.prices.btc"].tags["unit"] == "USD"
    assert readings["custom.prices.btc"].tags["source"] == "127.0.0.1"
    assert readings["custom.prices.volume_k"].value == 1.2345
    assert readings["custom.prices.third"].value == 3.0
    assert readings["custom.prices.healthy"].value == 1.0
    assert all(r.success for r in readings.values())
    assert [r["path"] for r in api.requests] == ["/v1/prices?currency=usd"]


def test_symbols_listed_before_run(tmp_path, api):
    collector = make_collector(tmp_path, url=f"{api.url}/v1/prices", values={"a": "$.x", "b": "$.y"})

    assert collector.symbols() == ["custom.prices.a", "custom.prices.b"]


def test_missing_path_fails_that_field_only(tmp_path, api):
    api.reply("/v1/prices", PRICES)
    collector = make_collector(tmp_path, url=f"{api.url}/v1/prices", values={
        "btc": "$.data.price", "gone": "$.data.gone", "empty": "$.data.missing", "text": "$.data.note"})
    readings = collect(collector)

    assert readings["custom.prices.btc"].success
    assert readings["custom.prices.gone"].success is False
    assert readings["custom.prices.gone"].error == "no value at $.data.gone: $.data has no member 'gone'"
    assert readings["custom.prices.empty"].error == "the value at $.data.missing is null, not a number"
    assert readings["custom.prices.text"].error == "the value at $.data.note is the string 'fine', not a number"


def test_plain_text_body_fails_run(tmp_path, api):
    api.reply("/v1/prices", "Exceeded the daily hits limit", headers={"Content-Type": "text/plain"})
    collector = make_collector(tmp_path, url=f"{api.url}/v1/prices", values={"a": "$.a", "b": "$.b"})
    readings = collector.collect(time.monotonic() + 5)

    assert len(readings) == 2
    assert not any(r.success for r in readings)
    assert readings[0].error == "expected JSON, got text: 'Exceeded the daily hits limit'"


def test_html_body_fails_run_and_backs_off(tmp_path, api):
    api.reply("/v1/prices", "<!DOCTYPE html><html><body>Checking your browser</body></html>",
              headers={"Content-Type": "text/html"})
    collector = make_collector(tmp_path, url=f"{api.url}/v1/prices", values={"a": "$.a"})
    collector.provider.backoff = Backoff(clock=FakeClock())
    readings = collector.collect(time.monotonic() + 5)

    assert "an HTML page" in readings[0].error
    assert readings[0].tags["error_kind"] == TRANSIENT
    assert collector.provider.backoff.remaining() == 5.0


def test_rate_limited_honours_retry_after(tmp_path, api):
    api.reply("/v1/prices", {"error": "slow down"}, status=429, headers={"Retry-After": "42"})
    collector = make_collector(tmp_path, url=f"{api.url}/v1/prices", values={"a": "$.a"})
    clock = FakeClock()
    collector.provider.backoff = Backoff(clock=clock)
    first = collector.collect(time.monotonic() + 5)
    clock.now += 41
    second = collector.collect(time.monotonic() + 5)

    assert first[0].tags["error_kind"] == RATE_LIMITED
    assert "backing off for 1s" in second[0].error
    assert len(api.requests) == 1


def test_server_error_backs_off(tmp_path, api):
    api.reply("/v1/prices", "internal error", status=503)
    collector = make_collector(tmp_path, url=f"{api.url}/v1/prices", values={"a": "$.a"})
    collector.provider.backoff = Backoff(clock=FakeClock())
    readings = collector.collect(time.monotonic() + 5)

    assert "HTTP 503" in readings[0].error
    assert collector.provider.backoff.remaining() == 5.0


def test_not_found_fails_without_backoff(tmp_path, api):
    collector = make_collector(tmp_path, url=f"{api.url}/v1/nothing", values={"a": "$.a"})
    readings = collector.collect(time.monotonic() + 5)

    assert readings[0].tags["error_kind"] == PERMANENT
    assert "HTTP 404: no reply set for this path" in readings[0].error
    assert collector.provider.backoff.remaining() == 0


def test_backoff_survives_reload(tmp_path, api):
    api.reply("/v1/prices", {"error": "slow down"}, status=429, headers={"Retry-After": "60"})
    first = make_collector(tmp_path, url=f"{api.url}/v1/prices", values={"a": "$.a"})
    first.collect(time.monotonic() + 5)
    reloaded = make_collector(tmp_path, url=f"{api.url}/v1/prices", values={"a": "$.a"})
    readings = reloaded.collect(time.monotonic() + 5)

    assert "backing off" in readings[0].error
    assert len(api.requests) == 1


# -- requests: method, headers, body, secrets -------------------------------


def test_secret_header_sent_revealed(tmp_path, api):
    api.reply("/v1/prices", PRICES)
    collector = make_collector(tmp_path, env={"API_TOKEN": "s3cr3t-token-value"}, url=f"{api.url}/v1/prices",
                               headers={"Authorization": "Bearer ${API_TOKEN}", "X-Plain": "yes"},
                               values={"btc": "$.data.price"})
    readings = collect(collector)

    assert api.requests[0]["headers"]["Authorization"] == "Bearer s3cr3t-token-value"
    assert api.requests[0]["headers"]["X-Plain"] == "yes"
    assert "s3cr3t" not in json.dumps(readings["custom.prices.btc"].tags)


def test_secret_echoed_in_error_masked(tmp_path, api):
    api.reply("/v1/prices", {"error": "token s3cr3t-token-value is invalid"}, status=401)
    collector = make_collector(tmp_path, env={"API_TOKEN": "s3cr3t-token-value"}, url=f"{api.url}/v1/prices",
                               headers={"Authorization": "Bearer ${API_TOKEN}"}, values={"btc": "$.data.price"})
    readings = collector.collect(time.monotonic() + 5)

    assert "s3cr3t" not in readings[0].error
    assert "token <secret> is invalid" in readings[0].error


def test_secret_masked_in_public_settings(tmp_path, api):
    config = load(tmp_path, env={"API_TOKEN": "s3cr3t-token-value"}, url=f"{api.url}/v1/prices",
                  headers={"Authorization": "Bearer ${API_TOKEN}"}, values={"btc": "$.data.price"})
    public = config.collectors[0].public_dict()

    assert public["headers"]["Authorization"] == "<secret>"
    assert "s3cr3t" not in repr(config.collectors[0].options)


def test_secret_url_not_shown(tmp_path, api):
    api.reply("/v1/prices", PRICES)
    config = load(tmp_path, env={"PRICE_URL": f"{api.url}/v1/prices?key=abcdef123"}, url="${PRICE_URL}",
                  values={"btc": "$.data.price"})
    collector = registry.create(config.collectors[0])
    readings = collect(collector)

    assert readings["custom.prices.btc"].value == 67018.42
    assert readings["custom.prices.btc"].tags["source"] == "json_api"
    assert collector.describe_target(collector.options) == "GET <secret>"


def test_post_mapping_body_sent_as_json(tmp_path, api):
    api.reply("/v1/query", PRICES)
    collector = make_collector(tmp_path, env={"API_TOKEN": "s3cr3t-token-value"}, url=f"{api.url}/v1/query",
                               method="post", body={"query": "prices", "token": "${API_TOKEN}", "ids": [1, 2]},
                               values={"btc": "$.data.price"})
    readings = collect(collector)

    request = api.requests[0]
    assert request["method"] == "POST"
    assert request["headers"]["Content-Type"] == "application/json"
    assert json.loads(request["body"]) == {"query": "prices", "token": "s3cr3t-token-value", "ids": [1, 2]}
    assert readings["custom.prices.btc"].success


def test_string_body_sent_as_is(tmp_path, api):
    api.reply("/v1/query", PRICES)
    collector = make_collector(tmp_path, url=f"{api.url}/v1/query", method="put", body="a=1&b=2",
                               headers={"Content-Type": "application/x-www-form-urlencoded"},
                               values={"btc": "$.data.price"})
    collect(collector)

    assert api.requests[0]["method"] == "PUT"
    assert api.requests[0]["body"] == b"a=1&b=2"


# -- against the recorded market fixtures -----------------------------------


SIMPLE_PRICE = ("/api/v3/simple/price?ids=bitcoin,ethereum,shiba-inu,zombie-chain,notarealcoin-xyz"
                "&vs_currencies=usd&include_24hr_change=true&include_last_updated_at=true")


def test_fixture_partial_prices(tmp_path, fixture_api):
    fixture_api.use("coingecko/simple_price_partial")
    collector = make_collector(tmp_path, url=fixture_api.base_url("coingecko") + SIMPLE_PRICE, values={
        "btc": "$.bitcoin.usd", "shib": "$['shiba-inu'].usd", "eth_change": "$.ethereum.usd_24h_change",
        "zombie": "$['zombie-chain'].usd"})
    readings = collect(collector)

    assert readings["custom.prices.btc"].success
    assert readings["custom.prices.shib"].value == 0.00001284
    assert readings["custom.prices.eth_change"].error == "the value at $.ethereum.usd_24h_change is null, not a number"
    assert readings["custom.prices.zombie"].error == ("no value at $['zombie-chain'].usd: "
                                                      "$['zombie-chain'] has no member 'usd'")


def test_fixture_rate_limited(tmp_path, fixture_api):
    fixture_api.use("coingecko/simple_price_rate_limited")
    url = (fixture_api.base_url("coingecko") + "/api/v3/simple/price?ids=bitcoin,ethereum&vs_currencies=usd"
           "&include_24hr_change=true&include_last_updated_at=true")
    collector = make_collector(tmp_path, url=url, values={"btc": "$.bitcoin.usd"})
    collector.provider.backoff = Backoff(clock=FakeClock())
    readings = collector.collect(time.monotonic() + 5)

    assert readings[0].tags["error_kind"] == RATE_LIMITED
    assert collector.provider.backoff.remaining() == 60.0


def test_fixture_plain_text_quota(tmp_path, fixture_api):
    fixture_api.use("stooq/quote_daily_limit")
    url = fixture_api.base_url("stooq") + "/q/l/?s=aapl.us&f=sd2t2ohlcv&h&e=csv"
    readings = make_collector(tmp_path, url=url, values={"close": "$[0].close"}).collect(time.monotonic() + 5)

    assert readings[0].success is False
    assert readings[0].error == "expected JSON, got text: 'Exceeded the daily hits limit'"


# -- settings --------------------------------------------------------------


@pytest.mark.parametrize("values, message", [
    ({"btc": "data.price"}, 'values: btc: invalid JSON path "data.price": a path starts with "$"'),
    ({"btc": {"path": "$.a", "scale": "x"}}, "values: btc: expected a number for scale, got 'x'"),
    ({"btc": {"scale": 2}}, 'values: btc: missing required key "path"'),
    ({"btc": {"path": "$.a", "units": "USD"}}, 'values: btc: unknown key "units"; known keys: path, scale, unit'),
    ({"BTC.usd": "$.a"}, "values: field name 'BTC.usd': expected lower-case letters"),
    ({}, "values: expected a mapping of field names to JSON paths"),
])
def test_invalid_values_rejected(tmp_path, values, message):
    with pytest.raises(ConfigError) as raised:
        load(tmp_path, url="http://127.0.0.1:1/x", values=values)

    assert message in str(raised.value)


def test_missing_values_rejected(tmp_path):
    with pytest.raises(ConfigError) as raised:
        load(tmp_path, url="http://127.0.0.1:1/x")

    assert 'missing required key "values"' in str(raised.value)
