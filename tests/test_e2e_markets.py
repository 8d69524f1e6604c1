"""End to end: Oculus as a subprocess, every market collector pointed at the fixture server."""

from __future__ import annotations


import pytest

from tests.servers import OculusProcess, free_port, http_get, oculus_command, wait_for

FIXTURES = (
    "coingecko/simple_price_ok",
    "coingecko/coins_markets_ok",
    "coingecko/market_chart_daily_60d",
    "alternative_me/fng_latest_ok",
    "coinmetrics/asset_metrics_mvrv_ok",
    "yahoo/chart_aapl_5d_ok",
    "polymarket_gamma/markets_by_slug_ok",
    "polymarket_clob/midpoint_ok",
    "coinbase/spot_btc_usd_ok",
)

# symbol -> value the fixture README says a collector must record
EXPECTED = {
    "crypto.price.btc_usd": 67012.48211379,
    "crypto.price.eth_usd": 3487.1936275,
    "crypto.change_24h_pct.btc_usd": -1.8472390651837,
    "crypto.sentiment.fng": 27.0,
    "crypto.mvrv.btc": 1.79864120553307,
    "crypto.sentiment.altseason": 9 / 13 * 100,
    "stock.price.aapl": 214.37,
    "pred.poly.fed-cut.yes": 0.535,
    "pred.poly.fed-cut.mid": 0.535,
    "custom.coinbase_spot.btc": 67009.865,
}
# The fixture history ends on 2026-03-18, so against today's clock the averages must fail with a reason
# rather than average stale closes (tests/test_moving_average.py checks the values with a fixed clock).
EXPECTED_FAILURES = {
    "crypto.ma30.btc_usd": "not enough history for MA30",
    "crypto.ma60.btc_usd": "not enough history for MA60",
}
CATEGORIES = {"crypto", "stock", "pred", "custom"}


def market_config(fixture_api) -> str:
    url = fixture_api.base_url
    return f"""
collectors:
  - type: crypto
    assets: [btc, eth]
    base_url: {url("coingecko")}
    fallback: none
    interval: 2s
  - type: fear_greed
    base_url: {url("alternative_me")}
    interval: 2s
  - type: mvrv
    base_url: {url("coinmetrics")}
    interval: 2s
  - type: altseason
    top: 20
    base_url: {url("coingecko")}
    interval: 2s
  - type: moving_average
    assets: [btc]
    base_url: {url("coingecko")}
    interval: 2s
  - type: stock
    symbols: [AAPL]
    fallback: none
    base_url: {url("yahoo")}
    interval: 2s
  - type: polymarket
    name: fed-cut
    slug: fed-rate-cut-by-june-30-2026
    base_url: {url("polymarket_gamma")}
    clob_url: {url("polymarket_clob")}
    interval: 2s
  - type: json_api
    name: coinbase_spot
    url: {url("coinbase")}/v2/prices/BTC-USD/spot
    values:
      btc: {{path: "$.data.amount", unit: USD}}
    interval: 2s
"""


@pytest.fixture
def markets_oculus(tmp_path, fixture_api):
    fixture_api.use(*FIXTURES)
    config = tmp_path / "markets.yaml"
    config.write_text(market_config(fixture_api), encoding="utf-8")
    port = free_port()
    process = OculusProcess(oculus_command(config, port, tmp_path / "oculus.duckdb"), tmp_path, port).start()
    yield process
    process.stop()


def latest_by_symbol(process) -> dict:
    body = http_get(process.url + "/api/metrics?limit=10000").json()
    latest = {}
    for sample in body["samples"]:  # newest first
        latest.setdefault(sample["symbol"], sample)
    return latest


def wait_for_symbols(process, symbols) -> dict:
    """Poll /api/metrics until every symbol has a sample; return the newest sample per symbol."""
    def check():
        latest = latest_by_symbol(process)
        return latest if set(symbols) <= set(latest) else None

    return wait_for(check, timeout=20, what=f"samples of {sorted(symbols)} in /api/metrics")


def test_markets_reach_api(markets_oculus):
    latest = wait_for_symbols(markets_oculus, EXPECTED)

    failed = {symbol: latest[symbol]["tags"].get("error") for symbol in EXPECTED if not latest[symbol]["success"]}
    assert failed == {}
    for symbol, value in EXPECTED.items():
        assert latest[symbol]["value"] == pytest.approx(value, rel=1e-9), symbol


def test_markets_stale_history_fails(markets_oculus):
    latest = wait_for_symbols(markets_oculus, EXPECTED_FAILURES)

    for symbol, reason in EXPECTED_FAILURES.items():
        assert latest[symbol]["success"] is False, symbol
        assert reason in latest[symbol]["tags"]["error"], symbol


def test_markets_reach_dashboard(markets_oculus):
    wait_for_symbols(markets_oculus, EXPECTED)
    html = http_get(markets_oculus.url + "/").text

    for category in CATEGORIES:
        assert f'data-category="{category}"' in html, category
    assert "67,012.48 USD" in html
    assert 'data-symbol="pred.poly.fed-cut.yes"' in html
