"""The crypto collector against the recorded CoinGecko, Coinbase and Binance replies on 127.0.0.1."""

from __future__ import annotations

import time
from datetime import datetime
from decimal import Decimal

import pytest

from oculus.collectors import provider as provider_module
from oculus.collectors.provider import PERMANENT, ProviderError
from oculus.config import ConfigError
from tests.crypto_support import build_collector, fake_backoff, query_of, reroute

BTC_UPDATED = datetime(2026, 3, 18, 21, 4, 1)
ETH_UPDATED = datetime(2026, 3, 18, 21, 4, 15)


@pytest.fixture(autouse=True)
def fresh_providers(monkeypatch):
    """Give every test its own providers, so no backoff leaks from one test into the next."""
    monkeypatch.setattr(provider_module, "_providers", {})


def crypto(tmp_path, fixture_api, **settings):
    config = {"type": "crypto", "base_url": fixture_api.base_url("coingecko"),
              "coinbase_url": fixture_api.base_url("coinbase"),
              "binance_url": fixture_api.base_url("binance"), **settings}
    return build_collector(tmp_path, config)


def by_symbol(readings) -> dict:
    return {reading.symbol: reading for reading in readings}


def collect(collector) -> dict:
    return by_symbol(collector.collect(time.monotonic() + 5))


# -- CoinGecko ---------------------------------------------------------------

def test_simple_price_ok_records_prices(tmp_path, fixture_api):
    fixture_api.use("coingecko/simple_price_ok")
    readings = collect(crypto(tmp_path, fixture_api, assets=["btc", "eth"]))

    btc, eth = readings["crypto.price.btc_usd"], readings["crypto.price.eth_usd"]
    assert btc.success and eth.success
    assert btc.value == float(Decimal("67012.48211379"))
    assert eth.value == float(Decimal("3487.1936275"))
    assert btc.ts == BTC_UPDATED
    assert eth.ts == ETH_UPDATED
    assert btc.tags == {"unit": "USD", "currency": "USD", "source": "coingecko", "coin_id": "bitcoin"}


def test_simple_price_ok_records_changes(tmp_path, fixture_api):
    fixture_api.use("coingecko/simple_price_ok")
    readings = collect(crypto(tmp_path, fixture_api, assets=["btc", "eth"]))

    btc, eth = readings["crypto.change_24h_pct.btc_usd"], readings["crypto.change_24h_pct.eth_usd"]
    assert btc.value == float(Decimal("-1.8472390651837"))
    assert eth.value == float(Decimal("2.4173358812662"))
    assert btc.tags["unit"] == "%"
    assert btc.ts == BTC_UPDATED


def test_simple_price_ok_sends_one_request(tmp_path, fixture_api):
    fixture_api.use("coingecko/simple_price_ok")
    collector = crypto(tmp_path, fixture_api, assets={"btc": "bitcoin", "eth": "ethereum"})
    readings = collector.collect(time.monotonic() + 5)

    requests = fixture_api.requests_to("coingecko")
    assert len(requests) == 1
    assert query_of(requests[0]) == {"ids": "bitcoin,ethereum", "vs_currencies": "usd",
                                     "include_24hr_change": "true", "include_last_updated_at": "true"}
    assert [r.symbol for r in readings] == collector.symbols()
    assert fixture_api.requests_to("coinbase") == []


def test_simple_price_unknown_id_fails_permanently(tmp_path, fixture_api):
    fixture_api.use("coingecko/simple_price_unknown_id")
    collector = crypto(tmp_path, fixture_api, assets={"fake": "notarealcoin-xyz"}, fallback="none")
    readings = collect(collector)

    for symbol in ("crypto.price.fake_usd", "crypto.change_24h_pct.fake_usd"):
        assert not readings[symbol].success
        assert readings[symbol].value is None
        assert 'unknown id "notarealcoin-xyz"' in readings[symbol].error
        assert "fix assets.fake" in readings[symbol].error
        assert readings[symbol].tags["error_kind"] == PERMANENT
    assert collector.provider.backoff.remaining() == 0


PARTIAL_ASSETS = {"btc": "bitcoin", "eth": "ethereum", "shib": "shiba-inu",
                  "zombie": "zombie-chain", "fake": "notarealcoin-xyz"}


def test_simple_price_partial_keeps_good_assets(tmp_path, fixture_api):
    fixture_api.use("coingecko/simple_price_partial")
    readings = collect(crypto(tmp_path, fixture_api, assets=PARTIAL_ASSETS, fallback="none"))

    assert readings["crypto.price.btc_usd"].value == float(Decimal("67012.48211379"))
    assert readings["crypto.change_24h_pct.btc_usd"].success
    assert readings["crypto.price.eth_usd"].value == float(Decimal("3487.1936275"))
    assert readings["crypto.price.shib_usd"].value == float(Decimal("0.00001284"))
    assert readings["crypto.price.shib_usd"].ts == datetime(2026, 3, 18, 21, 3, 10)


def test_simple_price_partial_null_change_is_missing(tmp_path, fixture_api):
    fixture_api.use("coingecko/simple_price_partial")
    change = collect(crypto(tmp_path, fixture_api, assets=PARTIAL_ASSETS, fallback="none"))[
        "crypto.change_24h_pct.eth_usd"]

    assert not change.success
    assert change.value is None
    assert change.error == "CoinGecko: no 24h change for ethereum in usd"
    assert change.tags["error_kind"] == "missing"


def test_simple_price_partial_fails_bad_ids(tmp_path, fixture_api):
    fixture_api.use("coingecko/simple_price_partial")
    readings = collect(crypto(tmp_path, fixture_api, assets=PARTIAL_ASSETS, fallback="none"))

    zombie, fake = readings["crypto.price.zombie_usd"], readings["crypto.price.fake_usd"]
    assert not zombie.success
    assert zombie.error == "CoinGecko: no usd price for zombie-chain"
    assert not readings["crypto.change_24h_pct.zombie_usd"].success
    assert not fake.success
    assert 'unknown id "notarealcoin-xyz"' in fake.error


def test_simple_price_rate_limited_fails_every_symbol(tmp_path, fixture_api):
    fixture_api.use("coingecko/simple_price_rate_limited")
    collector = crypto(tmp_path, fixture_api, assets=["btc", "eth"], fallback="none")
    fake_backoff(collector.provider)
    readings = collector.collect(time.monotonic() + 5)

    assert len(readings) == 4
    for reading in readings:
        assert not reading.success
        assert reading.tags["error_kind"] == "rate_limited"
        assert "rate limited (HTTP 429)" in reading.error


def test_simple_price_rate_limited_waits_retry_after(tmp_path, fixture_api):
    fixture_api.use("coingecko/simple_price_rate_limited")
    collector = crypto(tmp_path, fixture_api, assets=["btc", "eth"], fallback="none")
    clock = fake_backoff(collector.provider)
    collector.collect(time.monotonic() + 5)

    assert collector.provider.backoff.remaining() == 60
    clock.now += 59
    second = collector.collect(time.monotonic() + 5)
    assert len(fixture_api.requests_to("coingecko")) == 1
    assert "backing off for 1s" in second[0].error
    clock.now += 1
    collector.collect(time.monotonic() + 5)
    assert len(fixture_api.requests_to("coingecko")) == 2


# -- Coinbase fallback -------------------------------------------------------

def coingecko_down(fixture_api, ids: str = "bitcoin", quotes: str = "usd") -> str:
    return reroute(fixture_api, "coingecko/simple_price_rate_limited", ids=ids, vs_currencies=quotes)


def test_coinbase_spot_ok_replaces_price(tmp_path, fixture_api):
    fixture_api.use(coingecko_down(fixture_api), "coinbase/spot_btc_usd_ok")
    collector = crypto(tmp_path, fixture_api, assets=["btc"])
    fake_backoff(collector.provider)
    price = collect(collector)["crypto.price.btc_usd"]

    assert price.success
    assert price.value == float(Decimal("67009.865"))
    assert price.ts is None
    assert price.tags["source"] == "coinbase"
    assert price.tags["unit"] == "USD"
    assert "rate limited (HTTP 429)" in price.tags["primary_error"]
    assert fixture_api.requests_to("coinbase")[0]["path"] == "/v2/prices/BTC-USD/spot"


def test_coinbase_fallback_leaves_change_failed(tmp_path, fixture_api):
    fixture_api.use(coingecko_down(fixture_api), "coinbase/spot_btc_usd_ok")
    collector = crypto(tmp_path, fixture_api, assets=["btc"])
    fake_backoff(collector.provider)
    change = collect(collector)["crypto.change_24h_pct.btc_usd"]

    assert not change.success
    assert change.tags["error_kind"] == "rate_limited"
    assert change.tags["source"] == "coingecko"


def test_coinbase_fallback_for_one_asset(tmp_path, fixture_api):
    batch = reroute(fixture_api, "coingecko/simple_price_partial", ids="ethereum,zombie-chain")
    zombie_spot = reroute(fixture_api, "coinbase/spot_btc_usd_ok", path="/v2/prices/ZOMBIE-USD/spot")
    fixture_api.use(batch, zombie_spot)
    readings = collect(crypto(tmp_path, fixture_api, assets={"eth": "ethereum", "zombie": "zombie-chain"}))

    # The replayed reply names BTC-USD for the ZOMBIE-USD request, so the pair check must reject it.
    assert readings["crypto.price.eth_usd"].tags["source"] == "coingecko"
    zombie = readings["crypto.price.zombie_usd"]
    assert not zombie.success
    assert zombie.error == ("CoinGecko: no usd price for zombie-chain; "
                            "fallback Coinbase: requested ZOMBIE-USD, got BTC-USD")
    assert len(fixture_api.requests_to("coinbase")) == 1


def test_coinbase_spot_pair_mismatch_fails(tmp_path, fixture_api):
    eur_spot = reroute(fixture_api, "coinbase/spot_btc_usd_ok", path="/v2/prices/BTC-EUR/spot")
    fixture_api.use(coingecko_down(fixture_api, quotes="eur"), eur_spot)
    collector = crypto(tmp_path, fixture_api, assets=["btc"], quotes=["eur"])
    fake_backoff(collector.provider)
    price = collect(collector)["crypto.price.btc_eur"]

    assert not price.success
    assert price.error.endswith("fallback Coinbase: requested BTC-EUR, got BTC-USD")


def test_coinbase_spot_invalid_pair_fails(tmp_path, fixture_api):
    fixture_api.use("coingecko/simple_price_unknown_id", "coinbase/spot_invalid_pair")
    collector = crypto(tmp_path, fixture_api, assets={"foo": "notarealcoin-xyz"})
    coinbase = collector.provider_for("Coinbase", fixture_api.base_url("coinbase"))
    fake_backoff(coinbase)
    price = collect(collector)["crypto.price.foo_usd"]

    assert not price.success
    assert 'unknown id "notarealcoin-xyz"' in price.error
    assert price.error.endswith("fallback Coinbase: HTTP 404: Invalid base currency")
    assert price.tags["fallback_error_kind"] == PERMANENT
    assert coinbase.backoff.remaining() == 0


def test_coinbase_spot_rate_limited_backs_off(tmp_path, fixture_api):
    fixture_api.use(coingecko_down(fixture_api), "coinbase/spot_rate_limited")
    collector = crypto(tmp_path, fixture_api, assets=["btc"])
    fake_backoff(collector.provider)
    coinbase = collector.provider_for("Coinbase", fixture_api.base_url("coinbase"))
    fake_backoff(coinbase, base=5.0)
    price = collect(collector)["crypto.price.btc_usd"]

    assert not price.success
    assert price.tags["fallback_error_kind"] == "rate_limited"
    # No Retry-After on this reply, so the first exponential step (base 5 s) applies.
    assert coinbase.backoff.remaining() == 5
    assert collector.provider.backoff.remaining() == 60


def test_fallback_skipped_after_deadline(tmp_path, fixture_api):
    fixture_api.use("coinbase/spot_btc_usd_ok")
    collector = crypto(tmp_path, fixture_api, assets=["btc"])
    fake_backoff(collector.provider)
    collector.provider.backoff.failure("HTTP 503", 60)
    price = by_symbol(collector.collect(time.monotonic() - 1))["crypto.price.btc_usd"]

    assert not price.success
    assert price.error == "CoinGecko: backing off for 1m after HTTP 503; no time left to ask coinbase"
    assert fixture_api.requests == []


# -- Binance fallback --------------------------------------------------------

def test_binance_ticker_ok_records_usdt_as_usd(tmp_path, fixture_api):
    fixture_api.use(coingecko_down(fixture_api), "binance/ticker_price_ok")
    collector = crypto(tmp_path, fixture_api, assets=["btc"], fallback="binance")
    fake_backoff(collector.provider)
    price = collect(collector)["crypto.price.btc_usd"]

    assert price.success
    assert price.value == float(Decimal("67018.42"))
    assert price.ts is None
    assert price.tags["source"] == "binance"
    assert price.tags["quote_source"] == "usdt"
    assert price.tags["currency"] == "USD"


def test_binance_ticker_illegal_chars_avoided(tmp_path, fixture_api):
    fixture_api.use(coingecko_down(fixture_api), "binance/ticker_price_illegal_chars", "binance/ticker_price_ok")
    collector = crypto(tmp_path, fixture_api, assets=["BTC"], fallback="binance")
    fake_backoff(collector.provider)
    price = collect(collector)["crypto.price.btc_usd"]

    assert price.success
    assert query_of(fixture_api.requests_to("binance")[0]) == {"symbol": "BTCUSDT"}


def test_binance_ticker_illegal_chars_is_permanent(fixture_api):
    fixture_api.use("binance/ticker_price_illegal_chars")
    binance = provider_module.Provider("Binance", fixture_api.base_url("binance"))
    with pytest.raises(ProviderError) as raised:
        binance.get("/api/v3/ticker/price", time.monotonic() + 5, params={"symbol": "btcusdt"})

    assert raised.value.kind == PERMANENT
    assert "Illegal characters in parameter 'symbol'" in raised.value.message
    assert binance.backoff.remaining() == 0


def test_binance_ticker_invalid_symbol_fails(tmp_path, fixture_api):
    fixture_api.use("coingecko/simple_price_unknown_id", "binance/ticker_price_invalid_symbol")
    collector = crypto(tmp_path, fixture_api, assets={"foobar": "notarealcoin-xyz"}, fallback="binance")
    binance = collector.provider_for("Binance", fixture_api.base_url("binance"))
    price = collect(collector)["crypto.price.foobar_usd"]

    assert not price.success
    assert price.error.endswith("fallback Binance: HTTP 400: Invalid symbol.")
    assert price.tags["fallback_error_kind"] == PERMANENT
    assert binance.backoff.remaining() == 0


def test_binance_ticker_rate_limited_backs_off(tmp_path, fixture_api):
    fixture_api.use(coingecko_down(fixture_api), "binance/ticker_price_rate_limited")
    collector = crypto(tmp_path, fixture_api, assets=["btc"], fallback="binance")
    fake_backoff(collector.provider)
    binance = collector.provider_for("Binance", fixture_api.base_url("binance"))
    clock = fake_backoff(binance)
    price = collect(collector)["crypto.price.btc_usd"]

    assert not price.success
    assert price.tags["fallback_error_kind"] == "rate_limited"
    assert binance.backoff.remaining() == 23
    clock.now += 10
    again = collect(collector)["crypto.price.btc_usd"]
    assert "Binance: backing off for 13s" in again.error
    assert len(fixture_api.requests_to("binance")) == 1


# -- configuration -----------------------------------------------------------

def test_config_unknown_ticker_is_named(tmp_path):
    with pytest.raises(ConfigError) as raised:
        build_collector(tmp_path, {"type": "crypto", "assets": ["btc", "pepe"]})

    message = str(raised.value)
    assert "collectors[0].assets" in message
    assert 'unknown ticker "pepe"' in message
    assert "{pepe: <coingecko-id>}" in message


@pytest.mark.parametrize("settings, expected", [
    ({"assets": {"btc": "bitcoin", "xbt": "bitcoin"}}, 'both map to the CoinGecko id "bitcoin"'),
    ({"assets": ["btc", "btc"]}, 'ticker "btc" is listed twice'),
    ({"assets": {"btc_x": "bitcoin"}}, "expected a ticker of 1 to 20 letters or digits"),
    ({"assets": []}, "expected at least one ticker"),
    ({"assets": ["btc"], "quotes": ["usd", "usd"]}, 'quote currency "usd" is listed twice'),
    ({"assets": ["btc"], "fallback": "kraken"}, "expected one of none, binance, coinbase"),
])
def test_config_rejects_bad_setting(tmp_path, settings, expected):
    with pytest.raises(ConfigError) as raised:
        build_collector(tmp_path, {"type": "crypto", **settings})

    assert expected in str(raised.value)


def test_config_defaults(tmp_path):
    collector = build_collector(tmp_path, {"type": "crypto", "assets": ["btc", "sol"]})

    assert collector.name == "crypto"
    assert collector.options["assets"] == {"btc": "bitcoin", "sol": "solana"}
    assert collector.options["quotes"] == ["usd"]
    assert collector.options["fallback"] == "coinbase"
    assert collector.options["base_url"] == "https://api.coingecko.com"
    assert collector.symbols() == ["crypto.price.btc_usd", "crypto.change_24h_pct.btc_usd",
                                   "crypto.price.sol_usd", "crypto.change_24h_pct.sol_usd"]
