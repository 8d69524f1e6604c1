"""The stock collector against the recorded Yahoo chart and Stooq CSV replies on 127.0.0.1."""

from __future__ import annotations

import copy
import json
import threading
import time
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

import pytest
import yaml

from oculus.collectors import provider as provider_module
from oculus.collectors import registry
from oculus.collectors.provider import BROWSER_USER_AGENT, Backoff
from oculus.collectors.stock import parse_chart, stooq_time
from oculus.config import ConfigError, load_config
from tests.fixture_api import FIXTURES

# 2026-03-18T20:00:05Z: five seconds after the regular session of the Yahoo fixtures ended.
AFTER_CLOSE = 1773864005.0
YAHOO_AAPL_TIME = datetime(2026, 3, 18, 20, 0, 1)
STOOQ_AAPL_TIME = datetime(2026, 3, 18, 20, 0, 9)  # 21:00:09 in Warsaw (CET)


@pytest.fixture(autouse=True)
def fresh_providers(monkeypatch):
    """Give every test its own providers, so no backoff leaks from one test into the next."""
    monkeypatch.setattr(provider_module, "_providers", {})


class FakeClock:
    """A monotonic clock that only moves when a test moves it."""

    def __init__(self, start: float = 1000.0):
        self.now = start

    def __call__(self) -> float:
        return self.now


def stocks(tmp_path, fixture_api, now: float = AFTER_CLOSE, yahoo_url: str | None = None, **settings):
    """Build a stock collector through the config loader, on a fixed clock."""
    entry = {"type": "stock", "base_url": yahoo_url or fixture_api.base_url("yahoo"),
             "stooq_base_url": fixture_api.base_url("stooq"), **settings}
    path = tmp_path / "oculus.yaml"
    path.write_text(yaml.safe_dump({"collectors": [entry]}, sort_keys=False), encoding="utf-8")
    collector = registry.create(load_config(str(path), env={}).collectors[0])
    collector.clock = lambda: now
    return collector


def collect(collector) -> dict:
    return {reading.symbol: reading for reading in collector.collect(time.monotonic() + 5)}


def fake_backoff(provider) -> FakeClock:
    clock = FakeClock()
    provider.backoff = Backoff(clock=clock, wall_clock=lambda: AFTER_CLOSE)
    return clock


def recorded_body(name: str) -> dict:
    with open(FIXTURES / "yahoo" / name, encoding="utf-8") as handle:
        return json.load(handle)


def reroute(fixture_api, case: str, path: str | None = None, **query) -> str:
    """Register a copy of fixture `case` for another path or query; return its id for use()."""
    entry = copy.deepcopy(fixture_api.index[case])
    if path is not None:
        entry["request"]["path"] = path
    entry["request"]["query"].update(query)
    rerouted = f"{case}@{path or ''}{sorted(query.items())}"
    fixture_api.index[rerouted] = entry
    return rerouted


class _OneBodyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):
        pass

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.server.body)))
        self.end_headers()
        self.wfile.write(self.server.body)


@pytest.fixture
def error_with_200():
    """Start a loopback server that replies to every request with Yahoo's unknown-symbol body and HTTP 200."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _OneBodyHandler)
    server.body = (FIXTURES / "yahoo" / "chart_unknown_symbol.json").read_bytes()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


# -- Yahoo -------------------------------------------------------------------------

def test_aapl_ok_records_price(tmp_path, fixture_api):
    fixture_api.use("yahoo/chart_aapl_5d_ok")
    aapl = collect(stocks(tmp_path, fixture_api, symbols=["AAPL"]))["stock.price.aapl"]

    assert aapl.success, aapl.error
    assert aapl.value == 214.37
    assert aapl.ts == YAHOO_AAPL_TIME
    assert aapl.tags == {"source": "yahoo", "session": "post", "stale_quote": True, "ticker": "AAPL",
                         "unit": "USD", "currency": "USD", "label": "Apple Inc."}


def test_aapl_ok_request_looks_like_browser(tmp_path, fixture_api):
    fixture_api.use("yahoo/chart_aapl_5d_ok")
    collect(stocks(tmp_path, fixture_api, symbols=["aapl"]))

    requests = fixture_api.requests_to("yahoo")
    assert len(requests) == 1
    assert requests[0]["path"] == "/v8/finance/chart/AAPL?interval=1d&range=5d"
    assert requests[0]["headers"]["User-Agent"] == BROWSER_USER_AGENT
    assert fixture_api.requests_to("stooq") == []


@pytest.mark.parametrize(("now", "session", "stale"), [
    (1773830000.0, "pre", True),        # 10:33Z, pre-market 08:00-13:30Z
    (1773850000.0, "regular", False),   # 16:06Z, regular session 13:30-20:00Z
    (AFTER_CLOSE, "post", True),        # 20:00:05Z, after-hours 20:00-00:00Z
    (1773880000.0, "closed", True),     # 00:26Z the next day
])
def test_aapl_ok_session_from_trading_period(tmp_path, fixture_api, now, session, stale):
    fixture_api.use("yahoo/chart_aapl_5d_ok")
    aapl = collect(stocks(tmp_path, fixture_api, now=now, symbols=["AAPL"]))["stock.price.aapl"]

    assert aapl.tags["session"] == session
    assert aapl.tags["stale_quote"] is stale


def test_previous_session_quote_is_stale():
    # At 13:31Z the regular session is open, but the newest trade is from the day before.
    body = recorded_body("chart_aapl_5d_ok.json")
    body["chart"]["result"][0]["meta"]["regularMarketTime"] = 1773777600  # 2026-03-17T20:00:00Z
    quote, _ = parse_chart(body, "AAPL", 1773840660.0)

    assert quote.session == "regular"
    assert quote.stale is True


def test_partial_nulls_uses_meta_price(tmp_path, fixture_api):
    fixture_api.use("yahoo/chart_partial_nulls")
    msft = collect(stocks(tmp_path, fixture_api, symbols=["MSFT"]))["stock.price.msft"]

    assert msft.success, msft.error
    assert msft.value == 397.45
    assert msft.ts == datetime(2026, 3, 18, 20, 0, 2)


def test_partial_nulls_bar_fallback_skips_nulls():
    body = recorded_body("chart_partial_nulls.json")
    result = body["chart"]["result"][0]
    del result["meta"]["regularMarketPrice"]
    result["indicators"]["quote"][0]["close"][-1] = None
    quote, _ = parse_chart(body, "MSFT", AFTER_CLOSE)

    assert quote.price == 394.92  # the fourth bar, rounded to priceHint (2) decimals
    assert quote.ts == datetime(2026, 3, 17, 13, 30)  # stamped at that session's open


def test_unknown_symbol_fails_permanently(tmp_path, fixture_api):
    fixture_api.use("yahoo/chart_unknown_symbol")
    collector = stocks(tmp_path, fixture_api, symbols=["NOTAREALTICKERX"])
    reading = collect(collector)["stock.price.notarealtickerx"]

    assert not reading.success
    assert reading.value is None
    assert reading.tags == {"error_kind": "permanent"}
    assert reading.error == ("yahoo: HTTP 404: No data found; the symbol may be delisted; "
                             "check symbols in the config")
    assert collector.provider.backoff.remaining() == 0
    assert fixture_api.requests_to("stooq") == []


def test_unknown_symbol_with_200_fails_permanently(tmp_path, fixture_api, error_with_200):
    collector = stocks(tmp_path, fixture_api, yahoo_url=error_with_200, indices={"foo": "^NOTREAL"})
    reading = collect(collector)["stock.index.foo"]

    assert not reading.success
    assert reading.tags == {"error_kind": "permanent"}
    assert reading.error == "yahoo: No data found; the symbol may be delisted; check indices.foo in the config"
    assert fixture_api.requests_to("stooq") == []


def test_rate_limited_backs_off_for_minutes(tmp_path, fixture_api):
    fixture_api.use("yahoo/chart_rate_limited")
    collector = stocks(tmp_path, fixture_api, symbols=["AAPL"], fallback="none")
    clock = fake_backoff(collector.provider)
    reading = collect(collector)["stock.price.aapl"]

    assert not reading.success
    assert reading.tags == {"error_kind": "rate_limited"}
    assert reading.error.startswith("yahoo: rate limited (HTTP 429)")
    assert collector.provider.backoff.remaining() == 60.0
    clock.now += 59
    collect(collector)
    assert len(fixture_api.requests_to("yahoo")) == 1


def test_index_uses_encoded_symbol(tmp_path, fixture_api):
    fixture_api.use(reroute(fixture_api, "yahoo/chart_aapl_5d_ok", path="/v8/finance/chart/%5EGSPC"))
    spx = collect(stocks(tmp_path, fixture_api, indices={"spx": "^GSPC"}))["stock.index.spx"]

    assert spx.success, spx.error
    assert spx.value == 214.37  # the AAPL body, served for ^GSPC
    assert spx.tags["unit"] == "index"
    assert spx.tags["ticker"] == "^GSPC"


def test_deadline_passed_sends_nothing(tmp_path, fixture_api):
    fixture_api.use("yahoo/chart_aapl_5d_ok", "stooq/quote_aapl_us_ok")
    collector = stocks(tmp_path, fixture_api, symbols=["AAPL"])
    reading = collector.collect(time.monotonic() - 1)[0]

    assert not reading.success
    assert "reached its timeout before AAPL was requested" in reading.error
    assert fixture_api.requests == []
    assert collector.provider.backoff.remaining() == 0


# -- Stooq fallback ------------------------------------------------------------------

def test_yahoo_429_falls_back_to_stooq(tmp_path, fixture_api):
    fixture_api.use("yahoo/chart_rate_limited", "stooq/quote_aapl_us_ok")
    aapl = collect(stocks(tmp_path, fixture_api, symbols=["AAPL"]))["stock.price.aapl"]

    assert aapl.success, aapl.error
    assert aapl.value == 214.37
    assert aapl.ts == STOOQ_AAPL_TIME
    assert aapl.tags == {"source": "stooq", "session": "unknown", "stale_quote": True, "ticker": "AAPL",
                         "unit": "USD", "currency": "USD"}
    assert len(fixture_api.requests_to("yahoo")) == 1
    assert len(fixture_api.requests_to("stooq")) == 1


def test_stooq_request_format(tmp_path, fixture_api):
    fixture_api.use("yahoo/chart_rate_limited", "stooq/quote_aapl_us_ok")
    collect(stocks(tmp_path, fixture_api, symbols=["AAPL"]))

    assert fixture_api.requests_to("stooq")[0]["path"] == "/q/l/?s=aapl.us&f=sd2t2ohlcv&h&e=csv"


def test_stooq_uses_yahoo_trading_day(tmp_path, fixture_api):
    # Yahoo replied earlier the same day, so its trading periods give the session of the Stooq quote.
    fixture_api.use("yahoo/chart_aapl_5d_ok")
    collector = stocks(tmp_path, fixture_api, now=1773850000.0, symbols=["AAPL"])
    collect(collector)
    fixture_api.use("yahoo/chart_rate_limited", "stooq/quote_aapl_us_ok")
    aapl = collect(collector)["stock.price.aapl"]

    assert aapl.tags["source"] == "stooq"
    assert aapl.tags["session"] == "regular"
    assert aapl.tags["stale_quote"] is False


def test_multi_ok_one_stooq_request(tmp_path, fixture_api):
    fixture_api.use("yahoo/chart_rate_limited", "stooq/quote_multi_ok")
    readings = collect(stocks(tmp_path, fixture_api, symbols=["AAPL", "MSFT"]))

    assert readings["stock.price.aapl"].value == 214.37
    assert readings["stock.price.msft"].value == 397.45
    assert readings["stock.price.msft"].ts == datetime(2026, 3, 18, 20, 0, 11)
    # After the 429 for AAPL, MSFT waits out the backoff instead of asking Yahoo.
    assert len(fixture_api.requests_to("yahoo")) == 1
    stooq = fixture_api.requests_to("stooq")
    assert [request["path"] for request in stooq] == ["/q/l/?s=aapl.us+msft.us&f=sd2t2ohlcv&h&e=csv"]


def test_multi_ok_rows_matched_by_symbol(tmp_path, fixture_api):
    # MSFT comes first in the config and the request, but second in the recorded rows.
    limited = reroute(fixture_api, "yahoo/chart_rate_limited", path="/v8/finance/chart/MSFT")
    multi = reroute(fixture_api, "stooq/quote_multi_ok", s="msft.us+aapl.us")
    fixture_api.use(limited, multi)
    readings = collect(stocks(tmp_path, fixture_api, symbols=["MSFT", "AAPL"]))

    assert readings["stock.price.aapl"].value == 214.37
    assert readings["stock.price.msft"].value == 397.45


def test_stooq_unknown_symbol_fails(tmp_path, fixture_api, refused_port):
    fixture_api.use("stooq/quote_unknown_symbol")
    collector = stocks(tmp_path, fixture_api, yahoo_url=f"http://127.0.0.1:{refused_port}", symbols=["NOTREAL"])
    reading = collect(collector)["stock.price.notreal"]

    assert not reading.success
    assert reading.value is None
    assert reading.tags == {"error_kind": "permanent"}
    assert reading.error.startswith("yahoo: connection refused")
    assert reading.error.endswith("Stooq fallback failed: stooq: unknown symbol notreal.us (N/D); "
                                  "set stooq_symbols.NOTREAL in the config")


def test_stooq_daily_limit_pauses_until_utc_midnight(tmp_path, fixture_api):
    fixture_api.use("yahoo/chart_rate_limited", "stooq/quote_daily_limit")
    collector = stocks(tmp_path, fixture_api, symbols=["AAPL"])
    fake_backoff(collector.stooq_provider)
    reading = collect(collector)["stock.price.aapl"]

    assert not reading.success
    assert reading.tags == {"error_kind": "rate_limited"}
    assert "Stooq fallback failed: stooq: daily quota used up ('Exceeded the daily hits limit')" in reading.error
    assert collector.stooq_provider.backoff.remaining() == 14395.0  # 20:00:05Z to 00:00Z


def test_stooq_daily_limit_not_requested_again(tmp_path, fixture_api):
    fixture_api.use("yahoo/chart_rate_limited", "stooq/quote_daily_limit")
    collector = stocks(tmp_path, fixture_api, symbols=["AAPL"])
    fake_backoff(collector.stooq_provider)
    collect(collector)
    reading = collect(collector)["stock.price.aapl"]

    assert len(fixture_api.requests_to("stooq")) == 1
    assert "Stooq fallback failed: stooq: backing off" in reading.error


def test_index_falls_back_to_stooq_name(tmp_path, fixture_api, refused_port):
    fixture_api.use("stooq/quote_aapl_us_ok")
    collector = stocks(tmp_path, fixture_api, yahoo_url=f"http://127.0.0.1:{refused_port}",
                       indices={"spx": "^GSPC"})
    collect(collector)

    stooq = fixture_api.requests_to("stooq")
    assert len(stooq) == 1
    assert unquote(stooq[0]["path"]) == "/q/l/?s=^spx&f=sd2t2ohlcv&h&e=csv"


def test_index_without_stooq_name_has_no_fallback(tmp_path, fixture_api, refused_port):
    collector = stocks(tmp_path, fixture_api, yahoo_url=f"http://127.0.0.1:{refused_port}",
                       indices={"dax": "^GDAXI"})
    reading = collect(collector)["stock.index.dax"]

    assert not reading.success
    assert "no fallback (add one under stooq_symbols)" in reading.error
    assert fixture_api.requests_to("stooq") == []


@pytest.mark.parametrize(("date", "clock", "expected"), [
    ("2026-03-18", "21:00:09", datetime(2026, 3, 18, 20, 0, 9)),  # CET, UTC+1
    ("2026-05-14", "22:00:05", datetime(2026, 5, 14, 20, 0, 5)),  # CEST, UTC+2
])
def test_stooq_time_is_warsaw_time(date, clock, expected):
    assert stooq_time(date, clock) == expected


def test_missing_zone_data_fails_reading(tmp_path, fixture_api, monkeypatch):
    # Hosts without a time zone database (and without the tzdata package) cannot convert Stooq's times.
    monkeypatch.setattr("oculus.collectors.stock.STOOQ_ZONE", "Nowhere/Missing_Zone")
    fixture_api.use("yahoo/chart_rate_limited", "stooq/quote_aapl_us_ok")
    reading = collect(stocks(tmp_path, fixture_api, symbols=["AAPL"]))["stock.price.aapl"]

    assert not reading.success
    assert reading.error.endswith("the time zone database has no Nowhere/Missing_Zone; install the tzdata package")


# -- configuration ---------------------------------------------------------------------

@pytest.mark.parametrize(("settings", "message"), [
    ({}, "collectors[0]: set symbols or indices (or both); there is nothing to quote"),
    ({"symbols": ["AAPL", "aapl"]}, "collectors[0].symbols: ticker AAPL is listed twice"),
    ({"symbols": ["^GSPC"]}, "collectors[0].symbols: expected Yahoo tickers such as [AAPL, MSFT]"),
    ({"symbols": ["BRK.B", "BRK=B"]},
     "collectors[0].symbols: two tickers map to the same symbol stock.price.brk_b"),
    ({"symbols": ["AAPL"], "stooq_symbols": {"MSFT": "msft.us"}},
     "collectors[0].stooq_symbols: MSFT is not listed in symbols or indices"),
    ({"indices": {"S&P": "^GSPC"}}, "collectors[0].indices: expected a lower-case name"),
])
def test_invalid_config_rejected(tmp_path, fixture_api, settings, message):
    with pytest.raises(ConfigError) as raised:
        stocks(tmp_path, fixture_api, **settings)
    assert message in str(raised.value)


def test_symbols_and_stooq_names(tmp_path, fixture_api):
    collector = stocks(tmp_path, fixture_api, symbols=["AAPL", "BRK-B", "VOD.L"],
                       indices={"spx": "^GSPC", "vix": "^VIX"}, stooq_symbols={"^VIX": "^vix"})

    assert collector.symbols() == ["stock.price.aapl", "stock.price.brk-b", "stock.price.vod_l",
                                   "stock.index.spx", "stock.index.vix"]
    assert [target.stooq for target in collector.targets] == ["aapl.us", "brk-b.us", None, "^spx", "^vix"]
