"""The altseason collector against the recorded CoinGecko /coins/markets replies on 127.0.0.1."""

from __future__ import annotations

import time
from datetime import datetime
from decimal import Decimal

import pytest

from oculus.collectors import provider as provider_module
from oculus.collectors.provider import PERMANENT
from oculus.config import ConfigError
from tests.crypto_support import build_collector, fake_backoff, query_of, reroute

TOP_QUERY = {"vs_currency": "usd", "order": "market_cap_desc", "per_page": "20", "page": "1",
             "sparkline": "false", "price_change_percentage": "7d,30d"}
PARTIAL_BASKET = {"flt": "freshly-listed-token", "qlc": "quiet-legacy-coin"}


@pytest.fixture(autouse=True)
def fresh_providers(monkeypatch):
    monkeypatch.setattr(provider_module, "_providers", {})


def altseason(tmp_path, fixture_api, **settings):
    config = {"type": "altseason", "base_url": fixture_api.base_url("coingecko"), **settings}
    return build_collector(tmp_path, config)


def collect(collector) -> dict:
    return {reading.symbol: reading for reading in collector.collect(time.monotonic() + 5)}


def with_benchmark(fixture_api, case: str, ids: str) -> str:
    """Replay a recorded ids= reply for the request the collector sends.

    The collector always adds bitcoin (the benchmark) to ids and requests both
    windows; the recorded requests do not, but their replies are the same.
    """
    return reroute(fixture_api, case, ids=f"bitcoin,{ids}", price_change_percentage="7d,30d")


# -- top coins ---------------------------------------------------------------

def test_coins_markets_ok_30d_ratio(tmp_path, fixture_api):
    fixture_api.use("coingecko/coins_markets_ok")
    collector = altseason(tmp_path, fixture_api, top=20)
    readings = collector.collect(time.monotonic() + 5)

    [ratio] = readings
    assert ratio.symbol == "crypto.sentiment.altseason"
    assert ratio.success
    assert ratio.value == pytest.approx(100 * 9 / 13)
    assert round(ratio.value, 2) == 69.23
    assert ratio.tags["candidates"] == 13
    assert ratio.tags["beating"] == 9
    assert ratio.tags["window"] == "30d"
    assert ratio.tags["btc_change_pct"] == float(Decimal("-9.871017975877"))
    assert ratio.ts == datetime(2026, 3, 18, 21, 4, 20, 70000)


def test_coins_markets_ok_7d_ratio(tmp_path, fixture_api):
    fixture_api.use("coingecko/coins_markets_ok")
    ratio = collect(altseason(tmp_path, fixture_api, top=20, window="7d"))["crypto.sentiment.altseason"]

    assert ratio.value == pytest.approx(100 * 11 / 13)
    assert round(ratio.value, 2) == 84.62
    assert ratio.tags["beating"] == 11
    assert ratio.tags["altseason_30d"] == 69.23


def test_coins_markets_ok_request(tmp_path, fixture_api):
    fixture_api.use("coingecko/coins_markets_ok")
    collect(altseason(tmp_path, fixture_api, top=20))

    assert query_of(fixture_api.requests_to("coingecko")[0]) == TOP_QUERY


def test_coins_markets_ok_config_exclude(tmp_path, fixture_api):
    fixture_api.use("coingecko/coins_markets_ok")
    ratio = collect(altseason(tmp_path, fixture_api, top=20, exclude=["ethereum"]))["crypto.sentiment.altseason"]

    assert ratio.tags["candidates"] == 12
    assert ratio.tags["beating"] == 8


# -- a fixed basket ----------------------------------------------------------

def test_coins_markets_partial_keeps_price(tmp_path, fixture_api):
    fixture_api.use(with_benchmark(fixture_api, "coingecko/coins_markets_partial",
                                   "freshly-listed-token,quiet-legacy-coin"))
    readings = collect(altseason(tmp_path, fixture_api, assets=PARTIAL_BASKET, window="7d"))

    fresh = readings["crypto.change_7d_pct.flt_usd"]
    assert fresh.success
    assert fresh.value == float(Decimal("18.2207701913"))
    assert fresh.tags["price"] == float(Decimal("0.04122"))
    assert fresh.ts == datetime(2026, 3, 18, 21, 3, 56, 118000)


def test_coins_markets_partial_null_30d_is_missing(tmp_path, fixture_api):
    fixture_api.use(with_benchmark(fixture_api, "coingecko/coins_markets_partial",
                                   "freshly-listed-token,quiet-legacy-coin"))
    fresh = collect(altseason(tmp_path, fixture_api, assets=PARTIAL_BASKET))["crypto.change_30d_pct.flt_usd"]

    assert not fresh.success
    assert fresh.value is None
    assert fresh.error == ("CoinGecko: no 30d change for freshly-listed-token "
                           "(listed less than 30d ago?); left out of the ratio")
    assert fresh.tags["price"] == float(Decimal("0.04122"))


def test_coins_markets_partial_null_price_fails(tmp_path, fixture_api):
    fixture_api.use(with_benchmark(fixture_api, "coingecko/coins_markets_partial",
                                   "freshly-listed-token,quiet-legacy-coin"))
    legacy = collect(altseason(tmp_path, fixture_api, assets=PARTIAL_BASKET))["crypto.change_30d_pct.qlc_usd"]

    assert not legacy.success
    assert legacy.error == ("CoinGecko: no current price for quiet-legacy-coin "
                            "(inactive or delisted?); left out of the ratio")
    assert legacy.ts is None


def test_coins_markets_partial_ratio_needs_benchmark(tmp_path, fixture_api):
    fixture_api.use(with_benchmark(fixture_api, "coingecko/coins_markets_partial",
                                   "freshly-listed-token,quiet-legacy-coin"))
    ratio = collect(altseason(tmp_path, fixture_api, assets=PARTIAL_BASKET))["crypto.sentiment.altseason"]

    assert not ratio.success
    assert ratio.error == "CoinGecko: bitcoin, the benchmark, is missing from the response"


def test_coins_markets_unknown_ids_fails(tmp_path, fixture_api):
    fixture_api.use(with_benchmark(fixture_api, "coingecko/coins_markets_unknown_ids", "notarealcoin-xyz"))
    collector = altseason(tmp_path, fixture_api, assets={"fake": "notarealcoin-xyz"})
    readings = collect(collector)

    fake = readings["crypto.change_30d_pct.fake_usd"]
    assert not fake.success
    assert fake.error == ('CoinGecko: unknown id "notarealcoin-xyz" (no row returned for it); '
                          "fix assets.fake in the config")
    assert fake.tags["error_kind"] == PERMANENT
    assert not readings["crypto.sentiment.altseason"].success
    assert collector.provider.backoff.remaining() == 0


def test_basket_request_adds_benchmark(tmp_path, fixture_api):
    fixture_api.use(with_benchmark(fixture_api, "coingecko/coins_markets_unknown_ids", "notarealcoin-xyz"))
    collector = altseason(tmp_path, fixture_api, assets={"fake": "notarealcoin-xyz"})
    collect(collector)

    assert query_of(fixture_api.requests_to("coingecko")[0]) == {
        "vs_currency": "usd", "ids": "bitcoin,notarealcoin-xyz", "price_change_percentage": "7d,30d"}
    assert collector.symbols() == ["crypto.sentiment.altseason", "crypto.change_30d_pct.fake_usd"]


# -- shared CoinGecko backoff ------------------------------------------------

def test_crypto_rate_limit_pauses_altseason(tmp_path, fixture_api):
    fixture_api.use("coingecko/simple_price_rate_limited", "coingecko/coins_markets_ok")
    crypto = build_collector(tmp_path, {"type": "crypto", "assets": ["btc", "eth"], "fallback": "none",
                                        "base_url": fixture_api.base_url("coingecko")})
    fake_backoff(crypto.provider)
    crypto.collect(time.monotonic() + 5)
    ratio = collect(altseason(tmp_path, fixture_api, top=20))["crypto.sentiment.altseason"]

    assert not ratio.success
    assert ratio.tags["error_kind"] == "rate_limited"
    assert ratio.error.startswith("CoinGecko: backing off for 1m")
    assert [r["path"].split("?")[0] for r in fixture_api.requests_to("coingecko")] == ["/api/v3/simple/price"]


# -- configuration -----------------------------------------------------------

@pytest.mark.parametrize("settings, expected", [
    ({"assets": ["btc", "eth"]}, "assets: remove bitcoin: it is the benchmark"),
    ({"assets": ["eth"], "exclude": ["tether"]}, "exclude: exclude applies to the top coins only"),
    ({"window": "90d"}, "expected one of 7d, 30d"),
    ({"top": 251}, "expected a number <= 250"),
])
def test_config_rejects_bad_setting(tmp_path, settings, expected):
    with pytest.raises(ConfigError) as raised:
        build_collector(tmp_path, {"type": "altseason", **settings})

    assert expected in str(raised.value)


def test_config_defaults(tmp_path):
    collector = build_collector(tmp_path, {"type": "altseason"})

    assert collector.options["top"] == 50
    assert collector.options["window"] == "30d"
    assert collector.options["assets"] is None
    assert collector.symbols() == ["crypto.sentiment.altseason"]
