"""Polymarket collector against the recorded Gamma and CLOB fixtures, served on loopback."""

from __future__ import annotations

import json
import time
from datetime import datetime
from decimal import Decimal

import pytest

from oculus.collectors import provider as provider_module
from oculus.collectors import registry
from oculus.collectors.polymarket import (
    CLOB,
    BookTop,
    event_state,
    fetch_book,
    fetch_price,
    market_state,
    market_tags,
    parse_book,
    parse_market,
    symbol_safe,
    unique_names,
)
from oculus.collectors.provider import PERMANENT, RATE_LIMITED, Backoff, Provider, ProviderError
from oculus.config import ConfigError, load_config
from oculus.storage import Database

YES_TOKEN = "93685487924957786115334871062273122655459043257576775043883193504347969673289"
CLOSED_YES_TOKEN = "44953322013554258139252115054122469164423398018684507580930470527228916884452"
SYNTHETIC_NOW = 1773867877.0  # 2026-03-18T21:04:37Z, the fixtures' clock


@pytest.fixture(autouse=True)
def fresh_providers():
    yield
    for shared in provider_module._providers.values():
        shared.close()
    provider_module._providers.clear()


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def write_config(tmp_path, fixture_api, name: str, **options) -> str:
    lines = [
        "collectors:",
        "  - type: polymarket",
        f"    name: {name}",
        f"    base_url: {fixture_api.base_url('polymarket_gamma')}",
        f"    clob_url: {fixture_api.base_url('polymarket_clob')}",
    ]
    lines += [f"    {key}: {value}" for key, value in options.items()]
    path = tmp_path / "oculus.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def make_collector(tmp_path, fixture_api, name: str = "fed-rate-cut-by-june-30-2026", **options):
    config = load_config(write_config(tmp_path, fixture_api, name, **options), env={})
    return registry.create(config.collectors[0])


def by_symbol(readings) -> dict:
    return {reading.symbol: reading for reading in readings}


def serve_reply_for(fixture_api, case: str, new_case: str, path: str, query: dict) -> str:
    """Register a recorded reply under another URL (for example the 429 of /price for /midpoint)."""
    entry = dict(fixture_api.index[case])
    entry["case"] = new_case.split("/", 1)[1]
    entry["request"] = {"method": "GET", "path": path, "query": query}
    fixture_api.index[new_case] = entry
    return new_case


def clob_provider(fixture_api) -> Provider:
    return Provider(CLOB, fixture_api.base_url("polymarket_clob"))


# -- Gamma: one market -----------------------------------------------------


def test_slug_ok_records_probabilities(tmp_path, fixture_api):
    fixture_api.use("polymarket_gamma/markets_by_slug_ok", "polymarket_clob/midpoint_ok")
    readings = by_symbol(make_collector(tmp_path, fixture_api, slug="fed-rate-cut-by-june-30-2026")
                         .collect(time.monotonic() + 5))

    yes = readings["pred.poly.fed-rate-cut-by-june-30-2026.yes"]
    no = readings["pred.poly.fed-rate-cut-by-june-30-2026.no"]
    assert yes.success
    assert yes.value == 0.535
    assert no.value == 0.465
    assert yes.tags["unit"] == "probability"
    assert yes.tags["label"] == "Yes"
    assert yes.tags["source"] == "polymarket_gamma"
    assert yes.tags["market_state"] == "open"
    assert yes.tags["question"] == "Fed rate cut by June 30, 2026?"
    assert yes.tags["end_date"] == "2026-06-30T00:00:00Z"


def test_slug_ok_records_volume_and_liquidity(tmp_path, fixture_api):
    fixture_api.use("polymarket_gamma/markets_by_slug_ok", "polymarket_clob/midpoint_ok")
    readings = by_symbol(make_collector(tmp_path, fixture_api, slug="fed-rate-cut-by-june-30-2026")
                         .collect(time.monotonic() + 5))

    volume = readings["pred.poly.fed-rate-cut-by-june-30-2026.volume"]
    liquidity = readings["pred.poly.fed-rate-cut-by-june-30-2026.liquidity"]
    assert volume.value == 4718203.551207
    assert liquidity.value == 188342.30117
    assert volume.tags["currency"] == "USDC"
    assert liquidity.tags["market_state"] == "open"


def test_slug_ok_asks_the_slug_query(tmp_path, fixture_api):
    fixture_api.use("polymarket_gamma/markets_by_slug_ok", "polymarket_clob/midpoint_ok")
    make_collector(tmp_path, fixture_api, slug="fed-rate-cut-by-june-30-2026").collect(time.monotonic() + 5)

    paths = [r["path"] for r in fixture_api.requests_to("polymarket_gamma")]
    assert paths == ["/markets?slug=fed-rate-cut-by-june-30-2026"]


def test_midpoint_ok_records_mid(tmp_path, fixture_api):
    fixture_api.use("polymarket_gamma/markets_by_slug_ok", "polymarket_clob/midpoint_ok")
    collector = make_collector(tmp_path, fixture_api, slug="fed-rate-cut-by-june-30-2026")
    readings = by_symbol(collector.collect(time.monotonic() + 5))

    mid = readings["pred.poly.fed-rate-cut-by-june-30-2026.mid"]
    assert mid.success
    assert mid.value == 0.535
    assert mid.tags["source"] == "polymarket_clob"
    assert mid.tags["label"] == "Yes midpoint"
    assert fixture_api.requests_to("polymarket_clob")[0]["path"] == f"/midpoint?token_id={YES_TOKEN}"
    assert "pred.poly.fed-rate-cut-by-june-30-2026.mid" in collector.symbols()


def test_clob_false_skips_midpoint(tmp_path, fixture_api):
    fixture_api.use("polymarket_gamma/markets_by_slug_ok", "polymarket_clob/midpoint_ok")
    readings = by_symbol(make_collector(tmp_path, fixture_api, slug="fed-rate-cut-by-june-30-2026", clob="false")
                         .collect(time.monotonic() + 5))

    assert "pred.poly.fed-rate-cut-by-june-30-2026.mid" not in readings
    assert fixture_api.requests_to("polymarket_clob") == []


def test_slug_unknown_fails_without_backoff(tmp_path, fixture_api):
    fixture_api.use("polymarket_gamma/markets_by_slug_unknown")
    collector = make_collector(tmp_path, fixture_api, name="missing", slug="no-such-market-slug-2026")
    readings = collector.collect(time.monotonic() + 5)

    assert [r.symbol for r in readings] == ["pred.poly.missing.volume", "pred.poly.missing.liquidity"]
    assert not any(r.success for r in readings)
    assert 'no market with slug "no-such-market-slug-2026"' in readings[0].error
    assert "check the slug in the config" in readings[0].error
    assert readings[0].tags["error_kind"] == PERMANENT
    assert collector.provider.backoff.remaining() == 0


def test_id_ok_records_probabilities(tmp_path, fixture_api):
    fixture_api.use("polymarket_gamma/market_by_id_ok", "polymarket_clob/midpoint_ok")
    readings = by_symbol(make_collector(tmp_path, fixture_api, name="fed", id=604217).collect(time.monotonic() + 5))

    assert readings["pred.poly.fed.yes"].value == 0.535
    assert readings["pred.poly.fed.yes"].tags["market_id"] == "604217"
    assert readings["pred.poly.fed.mid"].value == 0.535
    assert [r["path"] for r in fixture_api.requests_to("polymarket_gamma")] == ["/markets/604217"]


def test_id_not_found_fails_without_backoff(tmp_path, fixture_api):
    fixture_api.use("polymarket_gamma/market_by_id_not_found")
    collector = make_collector(tmp_path, fixture_api, name="gone", id=999999999)
    readings = collector.collect(time.monotonic() + 5)

    assert not any(r.success for r in readings)
    assert "HTTP 404: id not found" in readings[0].error
    assert "check the market id 999999999 in the config" in readings[0].error
    assert readings[0].tags["error_kind"] == PERMANENT
    assert collector.provider.backoff.remaining() == 0


def test_slug_as_id_uses_slug_query(tmp_path, fixture_api):
    fixture_api.use("polymarket_gamma/market_by_id_invalid", "polymarket_gamma/markets_by_slug_ok",
                    "polymarket_clob/midpoint_ok")
    readings = by_symbol(make_collector(tmp_path, fixture_api, name="fed", id="fed-rate-cut-by-june-30-2026")
                         .collect(time.monotonic() + 5))

    paths = [r["path"] for r in fixture_api.requests_to("polymarket_gamma")]
    assert paths == ["/markets?slug=fed-rate-cut-by-june-30-2026"]
    assert readings["pred.poly.fed.yes"].value == 0.535


def test_closed_market_records_final_prices(tmp_path, fixture_api):
    fixture_api.use("polymarket_gamma/market_by_id_closed", "polymarket_clob/book_closed_market")
    readings = by_symbol(make_collector(tmp_path, fixture_api, name="btc60k", id=588014)
                         .collect(time.monotonic() + 5))

    yes = readings["pred.poly.btc60k.yes"]
    assert yes.success
    assert yes.value == 1.0
    assert readings["pred.poly.btc60k.no"].value == 0.0
    assert yes.tags["market_state"] == "resolved"
    assert yes.tags["closed_time"] == "2026-03-02T18:14:07Z"
    assert yes.tags["accepting_orders"] is False
    assert readings["pred.poly.btc60k.liquidity"].value == 0.0
    assert readings["pred.poly.btc60k.volume"].tags["market_state"] == "resolved"
    assert "pred.poly.btc60k.mid" not in readings
    assert fixture_api.requests_to("polymarket_clob") == []


def test_closed_market_not_polled_again(tmp_path, fixture_api):
    fixture_api.use("polymarket_gamma/market_by_id_closed")
    collector = make_collector(tmp_path, fixture_api, name="btc60k", id=588014)
    collector.collect(time.monotonic() + 5)

    assert collector.collect(time.monotonic() + 5) == []
    assert len(fixture_api.requests_to("polymarket_gamma")) == 1
    assert collector.final_state == "resolved"


def test_closed_market_skipped_after_restart(tmp_path, fixture_api, db_path):
    fixture_api.use("polymarket_gamma/market_by_id_closed")
    database = Database(db_path)
    database.open()
    tags = {"market_state": "resolved", "market_id": "588014", "slug": "bitcoin-above-60k-on-march-1-2026"}
    database.connection.execute("INSERT INTO samples VALUES (?, 'pred', 'pred.poly.btc60k.yes', 1.0, true, 5.0, ?)",
                                [datetime(2026, 3, 18, 21, 4, 37), json.dumps(tags)])
    collector = make_collector(tmp_path, fixture_api, name="btc60k", id=588014)
    collector.reader = database.reader
    try:
        readings = collector.collect(time.monotonic() + 5)
    finally:
        database.close()

    assert readings == []
    assert fixture_api.requests_to("polymarket_gamma") == []


def test_stored_final_state_of_other_market_ignored(tmp_path, fixture_api, db_path):
    fixture_api.use("polymarket_gamma/market_by_id_ok", "polymarket_clob/midpoint_ok")
    database = Database(db_path)
    database.open()
    tags = {"market_state": "resolved", "market_id": "588014"}
    database.connection.execute("INSERT INTO samples VALUES (?, 'pred', 'pred.poly.fed.yes', 1.0, true, 5.0, ?)",
                                [datetime(2026, 3, 18, 21, 4, 37), json.dumps(tags)])
    collector = make_collector(tmp_path, fixture_api, name="fed", id=604217)
    collector.reader = database.reader
    try:
        readings = by_symbol(collector.collect(time.monotonic() + 5))
    finally:
        database.close()

    assert readings["pred.poly.fed.yes"].value == 0.535


# -- Gamma: events ---------------------------------------------------------


def test_event_ok_records_each_option(tmp_path, fixture_api):
    fixture_api.use("polymarket_gamma/events_by_slug_ok")
    collector = make_collector(tmp_path, fixture_api, name="fed-april", event="fed-decision-in-april-2026",
                               clob="false")
    readings = by_symbol(collector.collect(time.monotonic() + 5))

    decrease = readings["pred.poly.fed-april.25_bps_decrease"]
    assert decrease.value == 0.215
    assert decrease.tags["label"] == "25 bps decrease"
    assert decrease.tags["event"] == "fed-decision-in-april-2026"
    assert decrease.tags["market_state"] == "open"
    assert readings["pred.poly.fed-april.no_change"].value == 0.765
    assert readings["pred.poly.fed-april.25__bps_increase"].value == 0.0205
    assert sum(r.value for r in readings.values() if r.tags["unit"] == "probability") == pytest.approx(1.0005)


def test_event_ok_records_event_volume(tmp_path, fixture_api):
    fixture_api.use("polymarket_gamma/events_by_slug_ok")
    collector = make_collector(tmp_path, fixture_api, name="fed-april", event="fed-decision-in-april-2026",
                               clob="false")
    readings = by_symbol(collector.collect(time.monotonic() + 5))

    assert readings["pred.poly.fed-april.volume"].value == 6238882.798647
    assert readings["pred.poly.fed-april.liquidity"].value == 238723.07453
    assert readings["pred.poly.fed-april.volume"].tags["question"] == "Fed decision in April 2026?"
    assert set(collector.symbols()) == set(readings)


def test_event_ok_asks_midpoint_per_option(tmp_path, fixture_api):
    fixture_api.use("polymarket_gamma/events_by_slug_ok")
    collector = make_collector(tmp_path, fixture_api, name="fed-april", event="fed-decision-in-april-2026")
    readings = by_symbol(collector.collect(time.monotonic() + 5))

    assert "pred.poly.fed-april.no_change.mid" in readings
    assert len(fixture_api.requests_to("polymarket_clob")) == 3


def test_event_unknown_fails(tmp_path, fixture_api):
    fixture_api.use("polymarket_gamma/events_by_slug_unknown")
    collector = make_collector(tmp_path, fixture_api, name="nothing", event="no-such-event-slug-2026")
    readings = collector.collect(time.monotonic() + 5)

    assert not any(r.success for r in readings)
    assert 'no event with slug "no-such-event-slug-2026"' in readings[0].error
    assert collector.provider.backoff.remaining() == 0


# -- CLOB ------------------------------------------------------------------


def test_price_buy_is_best_bid(fixture_api):
    fixture_api.use("polymarket_clob/price_buy_ok")
    assert fetch_price(clob_provider(fixture_api), YES_TOKEN, "buy", time.monotonic() + 5) == 0.53


def test_price_sell_is_best_ask(fixture_api):
    fixture_api.use("polymarket_clob/price_sell_ok")
    assert fetch_price(clob_provider(fixture_api), YES_TOKEN, "sell", time.monotonic() + 5) == 0.54


def test_book_ok_best_levels(fixture_api):
    fixture_api.use("polymarket_clob/book_ok")
    top = fetch_book(clob_provider(fixture_api), YES_TOKEN, time.monotonic() + 5)

    assert top.best_bid == Decimal("0.53")
    assert top.best_ask == Decimal("0.54")
    assert top.spread == Decimal("0.01")
    assert top.mid == Decimal("0.535")
    assert top.ts == datetime(2026, 3, 18, 21, 4, 32, 204000)
    assert top.last_trade == Decimal("0.53")


@pytest.mark.parametrize("order", ["as sent", "reversed"])
def test_parse_book_ignores_level_order(order):
    bids = [{"price": "0.50", "size": "1"}, {"price": "0.53", "size": "1"}, {"price": "0.51", "size": "1"}]
    asks = [{"price": "0.60", "size": "1"}, {"price": "0.54", "size": "1"}, {"price": "0.57", "size": "1"}]
    if order == "reversed":
        bids, asks = bids[::-1], asks[::-1]
    top = parse_book({"bids": bids, "asks": asks, "timestamp": "1773867872204"})

    assert top == BookTop(Decimal("0.53"), Decimal("0.54"), datetime(2026, 3, 18, 21, 4, 32, 204000), None)


def test_parse_book_empty_side_has_no_mid():
    top = parse_book({"bids": [], "asks": [{"price": "0.54", "size": "1"}]})

    assert top.best_bid is None
    assert top.mid is None


@pytest.mark.parametrize("case, token", [
    ("book_unknown_token", "123456789"),
    ("book_closed_market", CLOSED_YES_TOKEN),
])
def test_book_404_is_permanent_error(fixture_api, case, token):
    fixture_api.use(f"polymarket_clob/{case}")
    provider = clob_provider(fixture_api)
    with pytest.raises(ProviderError) as raised:
        fetch_book(provider, token, time.monotonic() + 5)

    assert raised.value.kind == PERMANENT
    assert "No orderbook exists for the requested token id" in raised.value.message
    assert provider.backoff.remaining() == 0


def test_price_unknown_token_is_permanent_error(fixture_api):
    fixture_api.use("polymarket_clob/price_unknown_token")
    with pytest.raises(ProviderError) as raised:
        fetch_price(clob_provider(fixture_api), "123456789", "buy", time.monotonic() + 5)

    assert raised.value.kind == PERMANENT
    assert "HTTP 404" in raised.value.message


def test_book_missing_token_id_is_permanent_error(fixture_api):
    fixture_api.use("polymarket_clob/book_missing_token_id")
    with pytest.raises(ProviderError) as raised:
        fetch_book(clob_provider(fixture_api), None, time.monotonic() + 5)

    assert raised.value.kind == PERMANENT
    assert "HTTP 400: Invalid token id" in raised.value.message
    assert fixture_api.requests_to("polymarket_clob")[0]["path"] == "/book"


def test_price_rate_limited_backs_off_retry_after(fixture_api):
    fixture_api.use("polymarket_clob/price_rate_limited")
    clock = FakeClock()
    provider = Provider(CLOB, fixture_api.base_url("polymarket_clob"),
                        backoff=Backoff(clock=clock, wall_clock=lambda: SYNTHETIC_NOW))
    with pytest.raises(ProviderError) as raised:
        fetch_price(provider, YES_TOKEN, "buy", time.monotonic() + 5)

    assert raised.value.kind == RATE_LIMITED
    assert provider.backoff.remaining() == 10.0
    clock.now += 9.9
    with pytest.raises(ProviderError):
        fetch_price(provider, YES_TOKEN, "buy", time.monotonic() + 5)
    assert len(fixture_api.requests_to("polymarket_clob")) == 1


def test_midpoint_429_keeps_gamma_values(tmp_path, fixture_api):
    limited = serve_reply_for(fixture_api, "polymarket_clob/price_rate_limited",
                              "polymarket_clob/midpoint_rate_limited", "/midpoint", {"token_id": YES_TOKEN})
    fixture_api.use("polymarket_gamma/markets_by_slug_ok", limited)
    collector = make_collector(tmp_path, fixture_api, name="fed", slug="fed-rate-cut-by-june-30-2026")
    collector.clob.backoff = Backoff(clock=FakeClock(), wall_clock=lambda: SYNTHETIC_NOW)
    readings = by_symbol(collector.collect(time.monotonic() + 5))

    assert readings["pred.poly.fed.yes"].value == 0.535
    assert readings["pred.poly.fed.mid"].success is False
    assert readings["pred.poly.fed.mid"].tags["error_kind"] == RATE_LIMITED
    assert collector.clob.backoff.remaining() == 10.0
    assert collector.provider.backoff.remaining() == 0


def test_clob_backoff_skips_midpoint_only(tmp_path, fixture_api):
    limited = serve_reply_for(fixture_api, "polymarket_clob/price_rate_limited",
                              "polymarket_clob/midpoint_rate_limited", "/midpoint", {"token_id": YES_TOKEN})
    fixture_api.use("polymarket_gamma/markets_by_slug_ok", limited)
    collector = make_collector(tmp_path, fixture_api, name="fed", slug="fed-rate-cut-by-june-30-2026")
    collector.clob.backoff = Backoff(clock=FakeClock(), wall_clock=lambda: SYNTHETIC_NOW)
    collector.collect(time.monotonic() + 5)
    readings = by_symbol(collector.collect(time.monotonic() + 5))

    assert readings["pred.poly.fed.yes"].success
    assert "backing off" in readings["pred.poly.fed.mid"].error
    assert len(fixture_api.requests_to("polymarket_gamma")) == 2
    assert len(fixture_api.requests_to("polymarket_clob")) == 1


def test_midpoint_404_does_not_close_market(tmp_path, fixture_api):
    missing = serve_reply_for(fixture_api, "polymarket_clob/book_unknown_token",
                              "polymarket_clob/midpoint_no_book", "/midpoint", {"token_id": YES_TOKEN})
    fixture_api.use("polymarket_gamma/markets_by_slug_ok", missing)
    collector = make_collector(tmp_path, fixture_api, name="fed", slug="fed-rate-cut-by-june-30-2026")
    readings = by_symbol(collector.collect(time.monotonic() + 5))

    assert "No orderbook exists" in readings["pred.poly.fed.mid"].error
    assert readings["pred.poly.fed.yes"].tags["market_state"] == "open"
    assert collector.final_state is None
    assert collector.collect(time.monotonic() + 5) != []


# -- names and settings ----------------------------------------------------


@pytest.mark.parametrize("label, name", [
    ("Yes", "yes"),
    ("25 bps decrease", "25_bps_decrease"),
    ("25+ bps increase", "25__bps_increase"),
    ("No change", "no_change"),
    ("Real Madrid C.F.", "real_madrid_c_f_"),
    ("Up/Down", "up_down"),
])
def test_symbol_safe_names(label, name):
    assert symbol_safe(label) == name


def test_unique_names_suffix_collisions():
    assert unique_names(["Volume", "A+", "A-", "A%", ""]) == ["volume_1", "a_", "a-", "a__4", "option_5"]


def test_config_needs_one_market(tmp_path, fixture_api):
    path = write_config(tmp_path, fixture_api, "both", slug="a-market", event="an-event")
    with pytest.raises(ConfigError) as raised:
        load_config(path, env={})

    assert "set exactly one of slug, id or event (got slug, event)" in str(raised.value)


def test_config_needs_name(tmp_path):
    path = tmp_path / "oculus.yaml"
    path.write_text("collectors:\n  - type: polymarket\n    slug: a-market\n", encoding="utf-8")
    with pytest.raises(ConfigError) as raised:
        load_config(str(path), env={})

    assert 'missing required key "name"' in str(raised.value)


def test_midpoint_skipped_after_deadline(tmp_path, fixture_api):
    fixture_api.use("polymarket_gamma/markets_by_slug_ok", "polymarket_clob/midpoint_ok")
    collector = make_collector(tmp_path, fixture_api, name="fed", slug="fed-rate-cut-by-june-30-2026")
    collector.clob.backoff = Backoff(clock=FakeClock())
    parsed = parse_market(collector.fetch_market(time.monotonic() + 5))
    reading = collector.midpoint_reading("pred.poly.fed.mid", parsed, market_tags(parsed), time.monotonic() - 1)

    assert reading.error == "not requested: the run reached its timeout first"
    assert fixture_api.requests_to("polymarket_clob") == []
    assert collector.clob.backoff.remaining() == 0


@pytest.mark.parametrize("fields, state", [
    ({"closed": False, "active": True}, "open"),
    ({"closed": True, "active": True}, "closed"),
    ({"closed": True, "umaResolutionStatus": "resolved"}, "resolved"),
    ({"closed": True, "umaResolutionStatuses": '["proposed", "resolved"]'}, "resolved"),
    ({"closed": True, "umaResolutionStatuses": '["proposed"]'}, "closed"),
])
def test_market_state_from_flags(fields, state):
    assert market_state(fields) == state


def test_event_state_needs_every_market_resolved():
    empty = {"outcomes": "[]", "outcomePrices": "[]"}
    resolved = parse_market({"closed": True, "umaResolutionStatus": "resolved", **empty})
    closed = parse_market({"closed": True, **empty})

    assert event_state({"closed": True}, [resolved, resolved]) == "resolved"
    assert event_state({"closed": True}, [resolved, closed]) == "closed"
    assert event_state({"closed": False}, [resolved]) == "open"
