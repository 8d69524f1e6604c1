"""The fear_greed collector against the recorded alternative.me replies on 127.0.0.1."""

from __future__ import annotations

import time
from datetime import datetime

import pytest

from oculus.collectors import provider as provider_module
from oculus.collectors.fear_greed import FearGreedValue, parse_fng
from oculus.collectors.provider import ProviderError
from tests.crypto_support import build_collector, fake_backoff, query_of
from tests.servers import closed_port


@pytest.fixture(autouse=True)
def fresh_providers(monkeypatch):
    monkeypatch.setattr(provider_module, "_providers", {})


def fear_greed(tmp_path, fixture_api):
    return build_collector(tmp_path, {"type": "fear_greed", "base_url": fixture_api.base_url("alternative_me")})


def test_fng_latest_ok_records_value(tmp_path, fixture_api):
    fixture_api.use("alternative_me/fng_latest_ok")
    collector = fear_greed(tmp_path, fixture_api)
    [reading] = collector.collect(time.monotonic() + 5)

    assert reading.symbol == "crypto.sentiment.fng"
    assert reading.success
    assert reading.value == 27
    assert isinstance(reading.value, int)
    assert reading.ts == datetime(2026, 3, 18)
    assert reading.tags["classification"] == "Fear"
    assert reading.tags["time_until_update_s"] == 10523
    assert query_of(fixture_api.requests_to("alternative_me")[0]) == {"limit": "1"}


def test_fng_history_ok_parses_newest_first(fixture_api):
    fixture_api.use("alternative_me/fng_history_ok")
    alternative_me = provider_module.Provider("alternative.me", fixture_api.base_url("alternative_me"))
    response = alternative_me.get("/fng/", time.monotonic() + 5, params={"limit": "3"})

    assert parse_fng(response.json()) == [
        FearGreedValue(27, "Fear", datetime(2026, 3, 18), 10523.0),
        FearGreedValue(19, "Extreme Fear", datetime(2026, 3, 17), None),
        FearGreedValue(24, "Extreme Fear", datetime(2026, 3, 16), None),
    ]


def test_fng_empty_data_fails(tmp_path, fixture_api):
    fixture_api.use("alternative_me/fng_empty_data")
    collector = fear_greed(tmp_path, fixture_api)
    [reading] = collector.collect(time.monotonic() + 5)

    assert not reading.success
    assert reading.value is None
    assert reading.error == "alternative.me: the response has no data (empty data array)"
    assert collector.provider.backoff.remaining() == 0


def test_fng_metadata_error_raises():
    body = {"name": "Fear and Greed Index", "data": [], "metadata": {"error": "Service unavailable"}}
    with pytest.raises(ProviderError) as raised:
        parse_fng(body)

    assert raised.value.message == "alternative.me: Service unavailable"


def test_fng_refused_connection_backs_off(tmp_path):
    url = f"http://127.0.0.1:{closed_port()}"
    collector = build_collector(tmp_path, {"type": "fear_greed", "base_url": url})
    fake_backoff(collector.provider)
    [reading] = collector.collect(time.monotonic() + 5)

    assert not reading.success
    assert reading.tags["error_kind"] == "transient"
    assert "connection refused" in reading.error
    assert collector.provider.backoff.remaining() == 5
