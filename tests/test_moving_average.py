"""The moving_average collector against the recorded CoinGecko market_chart replies and a real DuckDB file."""

from __future__ import annotations

import copy
import json
import time
from datetime import datetime
from decimal import Decimal

import pytest
import yaml

from oculus.collectors import provider as provider_module
from oculus.collectors import registry
from oculus.collectors.base import Sample
from oculus.collectors.provider import Backoff
from oculus.collectors.moving_average import daily_closes
from oculus.config import ConfigError, load_config
from oculus.runtime.scheduler import CollectorScheduler, CollectorState
from oculus.storage import Database
from oculus.storage.writer import Writer
from tests.fixture_api import FIXTURES

# The synthetic "now" of the CoinGecko fixtures: 2026-03-18T21:04:37Z.
FIXTURE_NOW = 1773867877.0
TODAY = datetime(2026, 3, 18)
MA30 = 71233.378761
MA60 = 75410.919270
LIVE_PRICE = float(Decimal("67012.48211379"))
DAILY_QUERY = {"vs_currency": "usd", "days": "60", "interval": "daily"}


@pytest.fixture(autouse=True)
def fresh_providers(monkeypatch):
    """Give every test its own providers, so no backoff leaks from one test into the next."""
    monkeypatch.setattr(provider_module, "_providers", {})


@pytest.fixture
def database(db_path):
    database = Database(db_path)
    database.open()
    yield database
    database.close()


@pytest.fixture
def writer(database):
    writer = Writer(database, queue_size=1000, batch_size=1000, flush_interval=60.0)
    writer.start()
    yield writer
    assert writer.stop(5.0), "writer thread did not stop"


def averager(tmp_path, fixture_api, now: float = FIXTURE_NOW, **settings):
    """Build a moving_average collector through the config loader, on a fixed clock."""
    entry = {"type": "moving_average", "base_url": fixture_api.base_url("coingecko"),
             "assets": {"btc": "bitcoin"}, **settings}
    path = tmp_path / "oculus.yaml"
    path.write_text(yaml.safe_dump({"collectors": [entry]}, sort_keys=False), encoding="utf-8")
    collector = registry.create(load_config(str(path), env={}).collectors[0])
    collector.clock = lambda: now
    return collector


def collect(collector) -> list:
    return collector.collect(time.monotonic() + 5)


def by_symbol(readings) -> dict:
    """The readings keyed by symbol; closes are left out because there is one per day."""
    return {r.symbol: r for r in readings if not r.symbol.startswith("crypto.close_1d.")}


def closes_of(readings) -> dict:
    return {r.ts: r.value for r in readings if r.symbol == "crypto.close_1d.btc_usd"}


def serve_as_daily(fixture_api, case: str, **query) -> None:
    """Serve fixture `case` in reply to the bitcoin interval=daily request, with `query` changes."""
    entry = copy.deepcopy(fixture_api.index[case])
    entry["request"]["path"] = "/api/v3/coins/bitcoin/market_chart"
    entry["request"]["query"] = {**DAILY_QUERY, **query}
    fixture_api.active = [entry]


def recorded_prices(case: str) -> list:
    with open(FIXTURES / "coingecko" / f"{case}.json", encoding="utf-8") as handle:
        return json.load(handle, parse_float=Decimal)["prices"]


def run_and_store(collector, database, writer) -> list:
    """Run the collector the way the runtime does, then wait until its samples are in the database."""
    collector.reader = database.reader
    scheduler = CollectorScheduler(1, writer.put, database.reader)
    try:
        samples = scheduler.run_once(collector, CollectorState())
    finally:
        scheduler.pool.shutdown()
    writer.run_command(lambda connection: None, "flush", timeout=5.0)
    return samples


def store_price(writer, ts: datetime, value: float) -> None:
    sample = Sample(ts, "crypto", "crypto.price.btc_usd", value, True, 1.0, {"source": "coingecko"})
    writer.put([sample])
    writer.run_command(lambda connection: None, "flush", timeout=5.0)


# -- backfill from CoinGecko ------------------------------------------------------

def test_daily_60d_records_averages(tmp_path, fixture_api):
    fixture_api.use("coingecko/market_chart_daily_60d")
    readings = by_symbol(collect(averager(tmp_path, fixture_api)))

    ma30, ma60 = readings["crypto.ma30.btc_usd"], readings["crypto.ma60.btc_usd"]
    assert ma30.success, ma30.error
    assert ma30.value == pytest.approx(MA30, abs=1e-6)
    assert ma60.value == pytest.approx(MA60, abs=1e-6)
    assert ma30.ts == TODAY
    assert ma60.ts == TODAY
    assert ma30.tags == {"unit": "USD", "currency": "USD", "source": "coingecko", "window_days": 30}


def test_daily_60d_sends_one_daily_request(tmp_path, fixture_api):
    fixture_api.use("coingecko/market_chart_daily_60d")
    collector = averager(tmp_path, fixture_api)
    collect(collector)
    collect(collector)

    requests = fixture_api.requests_to("coingecko")
    assert len(requests) == 1
    assert requests[0]["path"].startswith("/api/v3/coins/bitcoin/market_chart?")
    assert "interval=daily" in requests[0]["path"]


def test_daily_60d_emits_closes_at_midnight(tmp_path, fixture_api):
    fixture_api.use("coingecko/market_chart_daily_60d")
    closes = closes_of(collect(averager(tmp_path, fixture_api)))

    prices = recorded_prices("market_chart_daily_60d")
    assert len(closes) == 61
    assert min(closes) == datetime(2026, 1, 17)
    assert max(closes) == TODAY
    assert closes[datetime(2026, 1, 17)] == float(prices[0][1])
    assert closes[TODAY] == float(prices[-2][1])


def test_daily_60d_excludes_live_point(tmp_path, fixture_api):
    fixture_api.use("coingecko/market_chart_daily_60d")
    readings = collect(averager(tmp_path, fixture_api))
    closes = closes_of(readings)

    assert LIVE_PRICE not in closes.values()
    assert all(ts.time() == datetime.min.time() for ts in closes)
    with_live = (sum(list(closes.values())[-29:]) + LIVE_PRICE) / 30
    assert by_symbol(readings)["crypto.ma30.btc_usd"].value != pytest.approx(with_live, abs=1e-6)


def test_hourly_60d_resampled_to_midnights(tmp_path, fixture_api):
    # CoinGecko returns hourly points when interval=daily is missing (a proxy may drop it).
    serve_as_daily(fixture_api, "coingecko/market_chart_hourly_60d")
    readings = collect(averager(tmp_path, fixture_api))
    averages = by_symbol(readings)
    closes = closes_of(readings)

    assert len(closes) == 60
    assert min(closes) == datetime(2026, 1, 18)
    assert averages["crypto.ma30.btc_usd"].value == pytest.approx(MA30, abs=1e-6)
    assert averages["crypto.ma60.btc_usd"].value == pytest.approx(MA60, abs=1e-6)


def test_hourly_60d_request_matches_recording(tmp_path, fixture_api):
    # The recorded hourly request differs from the daily one only by the missing interval.
    recorded = fixture_api.index["coingecko/market_chart_hourly_60d"]["request"]
    assert recorded["path"] == "/api/v3/coins/bitcoin/market_chart"
    assert {**recorded["query"], "interval": "daily"} == DAILY_QUERY


def test_unknown_coin_fails_permanently(tmp_path, fixture_api):
    fixture_api.use("coingecko/market_chart_unknown_coin")
    collector = averager(tmp_path, fixture_api, assets={"xyz": "notarealcoin-xyz"})
    readings = by_symbol(collect(collector))

    for symbol in ("crypto.ma30.xyz_usd", "crypto.ma60.xyz_usd"):
        assert not readings[symbol].success
        assert readings[symbol].value is None
        assert readings[symbol].tags["error_kind"] == "permanent"
        assert "'notarealcoin-xyz'" in readings[symbol].error
        assert "coin not found" in readings[symbol].error
        assert "check assets.xyz in the config" in readings[symbol].error
    assert collector.provider.backoff.remaining() == 0


def test_unknown_coin_not_requested_again(tmp_path, fixture_api):
    fixture_api.use("coingecko/market_chart_unknown_coin")
    collector = averager(tmp_path, fixture_api, assets={"xyz": "notarealcoin-xyz"})
    collect(collector)
    second = by_symbol(collect(collector))

    assert len(fixture_api.requests_to("coingecko")) == 1
    assert not second["crypto.ma30.xyz_usd"].success
    assert "coin not found" in second["crypto.ma30.xyz_usd"].error


def test_rate_limited_backfill_retried(tmp_path, fixture_api):
    # All CoinGecko endpoints share one limit, so the simple/price 429 reply serves as market_chart's.
    serve_as_daily(fixture_api, "coingecko/simple_price_rate_limited")
    collector = averager(tmp_path, fixture_api)
    clock = [1000.0]
    collector.provider.backoff = Backoff(clock=lambda: clock[0], wall_clock=lambda: FIXTURE_NOW)
    limited = by_symbol(collect(collector))
    delay = collector.provider.backoff.remaining()
    clock[0] += 61
    fixture_api.use("coingecko/market_chart_daily_60d")
    retried = by_symbol(collect(collector))

    assert not limited["crypto.ma30.btc_usd"].success
    assert limited["crypto.ma30.btc_usd"].tags["error_kind"] == "rate_limited"
    assert delay == 60.0
    assert retried["crypto.ma30.btc_usd"].value == pytest.approx(MA30, abs=1e-6)
    assert len(fixture_api.requests_to("coingecko")) == 2


def test_any_window_length(tmp_path, fixture_api):
    fixture_api.use("coingecko/market_chart_daily_60d")
    readings = by_symbol(collect(averager(tmp_path, fixture_api, windows=[60, 7])))

    midnights = [float(price) for _, price in recorded_prices("market_chart_daily_60d")[:-1]]
    assert set(readings) == {"crypto.ma7.btc_usd", "crypto.ma60.btc_usd"}
    assert readings["crypto.ma7.btc_usd"].value == pytest.approx(sum(midnights[-7:]) / 7, rel=1e-12)
    assert readings["crypto.ma60.btc_usd"].value == pytest.approx(MA60, abs=1e-6)
    assert len(fixture_api.requests_to("coingecko")) == 1


def test_short_history_fails_long_window(tmp_path, fixture_api):
    # A coin listed 60 days ago: CoinGecko returns fewer days than requested.
    serve_as_daily(fixture_api, "coingecko/market_chart_daily_60d", days="90")
    readings = by_symbol(collect(averager(tmp_path, fixture_api, windows=[30, 90])))

    assert readings["crypto.ma30.btc_usd"].success
    assert not readings["crypto.ma90.btc_usd"].success
    assert readings["crypto.ma90.btc_usd"].error.startswith(
        "not enough history for MA90: 61 of 90 daily closes up to 2026-03-18")


def test_new_day_backfills_once(tmp_path, fixture_api):
    # Without a database or price samples, a new day needs a new backfill, but only one.
    fixture_api.use("coingecko/market_chart_daily_60d")
    collector = averager(tmp_path, fixture_api)
    collect(collector)
    collector.clock = lambda: FIXTURE_NOW + 3 * 3600  # 2026-03-19T00:04:37Z
    first = by_symbol(collect(collector))
    collector.clock = lambda: FIXTURE_NOW + 5 * 3600
    second = by_symbol(collect(collector))

    assert len(fixture_api.requests_to("coingecko")) == 2
    # The recording has no 2026-03-19 midnight yet, so the averages stay as of 2026-03-18.
    assert first["crypto.ma30.btc_usd"].ts == TODAY
    assert second["crypto.ma30.btc_usd"].ts == TODAY
    assert second["crypto.ma30.btc_usd"].value == pytest.approx(MA30, abs=1e-6)


def test_provider_shared_with_crypto(tmp_path, fixture_api):
    ma = averager(tmp_path, fixture_api)
    path = tmp_path / "crypto.yaml"
    entry = {"type": "crypto", "base_url": fixture_api.base_url("coingecko"), "assets": ["btc"]}
    path.write_text(yaml.safe_dump({"collectors": [entry]}), encoding="utf-8")
    crypto = registry.create(load_config(str(path), env={}).collectors[0])

    assert ma.provider is crypto.provider


@pytest.mark.parametrize(("windows", "message"), [
    ([1], "expected window lengths in days from 2 to 365"),
    ([30, 400], "expected window lengths in days from 2 to 365"),
    ([30, 30], "window 30 is listed twice"),
    ([], "expected at least one window length"),
])
def test_invalid_windows_rejected(tmp_path, fixture_api, windows, message):
    with pytest.raises(ConfigError) as raised:
        averager(tmp_path, fixture_api, windows=windows)
    assert "collectors[0].windows: " + message in str(raised.value)


# -- resampling ------------------------------------------------------------------

def test_resampling_drops_live_point_after_midnight():
    day_ms = 86_400_000
    start = 1773705600000  # 2026-03-17T00:00:00Z
    prices = [[start, Decimal("1")], [start + day_ms + 30_000, Decimal("2")]]

    assert daily_closes(prices) == {datetime(2026, 3, 17): 1.0}


def test_resampling_skips_late_first_point():
    hour_ms = 3_600_000
    start = 1773705600000  # 2026-03-17T00:00:00Z
    prices = [[start - hour_ms, Decimal("9")], [start + 2 * hour_ms, Decimal("1")],
              [start + 3 * hour_ms, Decimal("2")]]

    assert daily_closes(prices) == {}


# -- stored history ----------------------------------------------------------------

def test_stored_closes_replace_backfill(tmp_path, fixture_api, database, writer):
    fixture_api.use("coingecko/market_chart_daily_60d")
    run_and_store(averager(tmp_path, fixture_api), database, writer)
    requests_after_backfill = len(fixture_api.requests_to("coingecko"))

    restarted = averager(tmp_path, fixture_api, now=FIXTURE_NOW + 60)
    samples = {s.symbol: s for s in run_and_store(restarted, database, writer)}

    assert requests_after_backfill == 1
    assert len(fixture_api.requests_to("coingecko")) == 1
    assert samples["crypto.ma30.btc_usd"].value == pytest.approx(MA30, abs=1e-6)
    assert samples["crypto.ma60.btc_usd"].value == pytest.approx(MA60, abs=1e-6)
    assert samples["crypto.ma30.btc_usd"].tags["source"] == "database"
    assert "crypto.close_1d.btc_usd" not in samples


def test_backfill_stores_closes_once(tmp_path, fixture_api, database, writer):
    fixture_api.use("coingecko/market_chart_daily_60d")
    run_and_store(averager(tmp_path, fixture_api), database, writer)
    # A restart on the next day finds too short a history (no 2026-03-19 close) and backfills again.
    run_and_store(averager(tmp_path, fixture_api, now=FIXTURE_NOW + 86400), database, writer)

    rows = database.reader().execute(
        "SELECT count(*), count(DISTINCT ts) FROM metrics WHERE symbol = 'crypto.close_1d.btc_usd'").fetchone()
    assert len(fixture_api.requests_to("coingecko")) == 2
    assert rows == (61, 61)


def test_new_day_close_from_stored_price(tmp_path, fixture_api, database, writer):
    fixture_api.use("coingecko/market_chart_daily_60d")
    run_and_store(averager(tmp_path, fixture_api), database, writer)
    store_price(writer, datetime(2026, 3, 18, 23, 59, 30), 70000.0)

    next_day = averager(tmp_path, fixture_api, now=FIXTURE_NOW + 3 * 3600)  # 2026-03-19T00:04:37Z
    samples = run_and_store(next_day, database, writer)
    close = [s for s in samples if s.symbol == "crypto.close_1d.btc_usd"]
    ma30 = next(s for s in samples if s.symbol == "crypto.ma30.btc_usd")

    midnights = [float(price) for _, price in recorded_prices("market_chart_daily_60d")[:-1]]
    assert len(fixture_api.requests_to("coingecko")) == 1
    assert [(s.ts, s.value) for s in close] == [(datetime(2026, 3, 19), 70000.0)]
    assert close[0].tags["derived_from"] == "crypto.price.btc_usd"
    assert ma30.ts == datetime(2026, 3, 19)
    assert ma30.value == pytest.approx((sum(midnights[-29:]) + 70000.0) / 30, rel=1e-12)


def test_old_price_not_used_as_close(tmp_path, fixture_api, database, writer):
    fixture_api.use("coingecko/market_chart_daily_60d")
    run_and_store(averager(tmp_path, fixture_api), database, writer)
    store_price(writer, datetime(2026, 3, 18, 22, 0, 0), 70000.0)  # two hours before midnight

    next_day = averager(tmp_path, fixture_api, now=FIXTURE_NOW + 3 * 3600)
    samples = run_and_store(next_day, database, writer)

    assert len(fixture_api.requests_to("coingecko")) == 2
    assert 70000.0 not in [s.value for s in samples if s.symbol == "crypto.close_1d.btc_usd"]


def test_gap_in_stored_closes_backfills(tmp_path, fixture_api, database, writer):
    fixture_api.use("coingecko/market_chart_daily_60d")
    run_and_store(averager(tmp_path, fixture_api), database, writer)
    writer.run_command(lambda connection: connection.execute(
        "DELETE FROM samples WHERE symbol = 'crypto.close_1d.btc_usd' AND ts = TIMESTAMP '2026-03-01'"),
        "delete one close", timeout=5.0)

    samples = run_and_store(averager(tmp_path, fixture_api, now=FIXTURE_NOW + 60), database, writer)
    close = [s for s in samples if s.symbol == "crypto.close_1d.btc_usd"]

    assert len(fixture_api.requests_to("coingecko")) == 2
    assert [s.ts for s in close] == [datetime(2026, 3, 1)]


def test_closes_not_in_failed_run(tmp_path, fixture_api):
    collector = averager(tmp_path, fixture_api)
    failed = collector.failed("collector error: boom")

    assert [r.symbol for r in failed] == ["crypto.ma30.btc_usd", "crypto.ma60.btc_usd"]
    assert "crypto.close_1d.btc_usd" in collector.symbols()


def test_stored_closes_used_on_later_day(tmp_path, fixture_api, database, writer):
    # Closes stored on earlier days plus a stored close for today need no request at all.
    fixture_api.use("coingecko/market_chart_daily_60d")
    run_and_store(averager(tmp_path, fixture_api), database, writer)
    today_close = Sample(datetime(2026, 3, 19), "crypto", "crypto.close_1d.btc_usd", 68000.0, True, 1.0, {})
    writer.put([today_close])
    writer.run_command(lambda connection: None, "flush", timeout=5.0)

    samples = run_and_store(averager(tmp_path, fixture_api, now=FIXTURE_NOW + 86400), database, writer)
    ma60 = next(s for s in samples if s.symbol == "crypto.ma60.btc_usd")

    midnights = [float(price) for _, price in recorded_prices("market_chart_daily_60d")[:-1]]
    assert len(fixture_api.requests_to("coingecko")) == 1
    assert ma60.ts == datetime(2026, 3, 19)
    assert ma60.value == pytest.approx((sum(midnights[-59:]) + 68000.0) / 60, rel=1e-12)

