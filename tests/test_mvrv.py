"""The mvrv collector against the recorded Coin Metrics and BGeometrics replies on 127.0.0.1."""

from __future__ import annotations

import time
from datetime import datetime
from decimal import Decimal

import pytest

from oculus.collectors import provider as provider_module
from oculus.collectors.provider import PERMANENT
from tests.crypto_support import JsonServer, build_collector, fake_backoff, query_of, reroute

MVRV_QUERY = {"assets": "btc", "metrics": "CapMVRVCur", "frequency": "1d", "page_size": "7", "paging_from": "end"}
ZSCORE_DAY = datetime(2026, 3, 17)


@pytest.fixture(autouse=True)
def fresh_providers(monkeypatch):
    monkeypatch.setattr(provider_module, "_providers", {})


def mvrv(tmp_path, base_url: str, **settings):
    return build_collector(tmp_path, {"type": "mvrv", "base_url": base_url, **settings})


def collect(collector) -> dict:
    return {reading.symbol: reading for reading in collector.collect(time.monotonic() + 5)}


# -- Coin Metrics ------------------------------------------------------------

def test_asset_metrics_mvrv_ok_takes_last_row(tmp_path, fixture_api):
    fixture_api.use("coinmetrics/asset_metrics_mvrv_ok")
    collector = mvrv(tmp_path, fixture_api.base_url("coinmetrics"))
    readings = collector.collect(time.monotonic() + 5)

    assert [r.symbol for r in readings] == ["crypto.mvrv.btc"]
    assert readings[0].success
    assert readings[0].value == float(Decimal("1.79864120553307"))
    assert readings[0].ts == datetime(2026, 3, 17)
    assert readings[0].tags == {"unit": "ratio", "source": "coinmetrics", "metric": "CapMVRVCur"}
    assert query_of(fixture_api.requests_to("coinmetrics")[0]) == MVRV_QUERY


def test_asset_metrics_forbidden_metric_fails(tmp_path, fixture_api):
    # The recorded 403 is for CapRealUSD, but the collector only requests CapMVRVCur, so replay it there.
    fixture_api.use(reroute(fixture_api, "coinmetrics/asset_metrics_forbidden_metric", metrics="CapMVRVCur"))
    collector = mvrv(tmp_path, fixture_api.base_url("coinmetrics"))
    reading = collect(collector)["crypto.mvrv.btc"]

    assert not reading.success
    assert reading.error == ("Coin Metrics: HTTP 403: Metric 'CapRealUSD' (frequency '1d', asset 'btc') "
                             "is not available with the supplied credentials.")
    assert reading.tags["error_kind"] == PERMANENT
    assert collector.provider.backoff.remaining() == 0


def test_asset_metrics_bad_asset_fails_alone(tmp_path, fixture_api):
    bad_asset = reroute(fixture_api, "coinmetrics/asset_metrics_bad_asset", page_size="7", paging_from="end")
    fixture_api.use(bad_asset, "coinmetrics/asset_metrics_mvrv_ok")
    readings = collect(mvrv(tmp_path, fixture_api.base_url("coinmetrics"), assets=["btcx", "btc"]))

    bad = readings["crypto.mvrv.btcx"]
    assert not bad.success
    assert bad.error == "Coin Metrics: HTTP 400: Bad parameter 'assets'. Value 'btcx' is not supported."
    assert bad.tags["error_kind"] == PERMANENT
    assert readings["crypto.mvrv.btc"].success


def test_asset_metrics_rate_limited_uses_reset_header(tmp_path, fixture_api):
    fixture_api.use("coinmetrics/asset_metrics_rate_limited")
    collector = mvrv(tmp_path, fixture_api.base_url("coinmetrics"))
    # A 1 s base step shows that the wait comes from X-RateLimit-Reset (4 s), not from the backoff.
    clock = fake_backoff(collector.provider, base=1.0)
    reading = collect(collector)["crypto.mvrv.btc"]

    assert not reading.success
    assert reading.tags["error_kind"] == "rate_limited"
    assert collector.provider.backoff.remaining() == 4
    clock.now += 4
    collect(collector)
    assert len(fixture_api.requests_to("coinmetrics")) == 2


def test_asset_metrics_error_with_status_200_fails(tmp_path):
    body = {"error": {"type": "forbidden", "message": "Metric 'CapMVRVCur' is not available."}}
    with JsonServer(body) as server:
        reading = collect(mvrv(tmp_path, server.url))["crypto.mvrv.btc"]

    assert not reading.success
    assert reading.error == "Coin Metrics: forbidden: Metric 'CapMVRVCur' is not available."


def test_asset_metrics_null_last_row_uses_previous(tmp_path):
    body = {"data": [{"asset": "btc", "time": "2026-03-16T00:00:00.000000000Z", "CapMVRVCur": "1.81456338007235"},
                     {"asset": "btc", "time": "2026-03-17T00:00:00.000000000Z", "CapMVRVCur": None}]}
    with JsonServer(body) as server:
        reading = collect(mvrv(tmp_path, server.url))["crypto.mvrv.btc"]

    assert reading.value == float(Decimal("1.81456338007235"))
    assert reading.ts == datetime(2026, 3, 16)


# -- BGeometrics -------------------------------------------------------------

def test_mvrv_zscore_last_ok_records_zscore(tmp_path, fixture_api):
    fixture_api.use("coinmetrics/asset_metrics_mvrv_ok", "bgeometrics/mvrv_zscore_last_ok")
    collector = mvrv(tmp_path, fixture_api.base_url("coinmetrics"), zscore=True,
                     zscore_url=fixture_api.base_url("bgeometrics"))
    readings = collect(collector)

    zscore = readings["crypto.mvrv_z.btc"]
    assert zscore.success
    assert zscore.value == float(Decimal("0.9187"))
    assert zscore.ts == ZSCORE_DAY
    assert zscore.tags["source"] == "bgeometrics"
    assert readings["crypto.mvrv.btc"].success
    assert collector.symbols() == ["crypto.mvrv.btc", "crypto.mvrv_z.btc"]


def test_zscore_off_by_default(tmp_path, fixture_api):
    fixture_api.use("coinmetrics/asset_metrics_mvrv_ok", "bgeometrics/mvrv_zscore_last_ok")
    collector = mvrv(tmp_path, fixture_api.base_url("coinmetrics"), zscore_url=fixture_api.base_url("bgeometrics"))
    collector.collect(time.monotonic() + 5)

    assert collector.symbols() == ["crypto.mvrv.btc"]
    assert fixture_api.requests_to("bgeometrics") == []


LENIENT_VARIANTS = {
    "strings": {"d": "2026-03-17", "unixTs": "1773705600", "mvrvZscore": "0.9187"},
    "one-element list": [{"d": "2026-03-17", "unixTs": 1773705600, "mvrvZscore": 0.9187}],
    "date only": [{"d": "2026-03-17", "mvrvZscore": "0.9187"}],
}


@pytest.mark.parametrize("variant", LENIENT_VARIANTS, ids=list(LENIENT_VARIANTS))
def test_zscore_lenient_variants(tmp_path, fixture_api, variant):
    fixture_api.use("coinmetrics/asset_metrics_mvrv_ok")
    with JsonServer(LENIENT_VARIANTS[variant]) as server:
        collector = mvrv(tmp_path, fixture_api.base_url("coinmetrics"), zscore=True, zscore_url=server.url)
        zscore = collect(collector)["crypto.mvrv_z.btc"]

    assert zscore.success
    assert zscore.value == float(Decimal("0.9187"))
    assert zscore.ts == ZSCORE_DAY
    assert server.paths == ["/v1/mvrv-zscore/last"]


@pytest.mark.parametrize("payload, expected", [
    (b'{"d": "2026-03-17", "unixTs": 1773705600, "mvrvZscore": NaN}',
     "invalid mvrvZscore: expected a finite number, got nan"),
    ({"d": "2026-03-17", "unixTs": 1773705600}, "no mvrvZscore value (got None)"),
    ({"d": "2026-03-17", "mvrvZscore": "n/a"}, "invalid mvrvZscore"),
    ([], "expected one object with mvrvZscore"),
])
def test_zscore_missing_value_fails(tmp_path, fixture_api, payload, expected):
    fixture_api.use("coinmetrics/asset_metrics_mvrv_ok")
    with JsonServer(payload) as server:
        collector = mvrv(tmp_path, fixture_api.base_url("coinmetrics"), zscore=True, zscore_url=server.url)
        readings = collect(collector)

    assert not readings["crypto.mvrv_z.btc"].success
    assert expected in readings["crypto.mvrv_z.btc"].error
    assert readings["crypto.mvrv.btc"].success
