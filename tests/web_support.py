"""Seeded data of every category, alert states and alert events, for the page, API and browser tests."""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta

from oculus.collectors.base import Sample
from oculus.storage import Database, utc_now
from oculus.storage.writer import Event, Writer
from tests.servers import ProbeTargetServer, http_get, wait_for

# symbol -> (base value, amplitude, tags); one sample every 5 minutes for 26 hours, so the 24 h trend has a reference.
SHOWCASE = {
    "net.http.shop.rtt_ms": (120.0, 40.0, {}),
    "net.http.shop.status": (200.0, 0.0, {}),
    "net.tcp.postgres.rtt_ms": (1.8, 0.6, {}),
    "net.ping.gateway.rtt_ms": (4.0, 1.5, {}),
    "net.ping.gateway.loss_pct": (0.0, 0.0, {}),
    "crypto.price.btc_usd": (97_000.0, 2_500.0, {"currency": "USD", "source": "coingecko"}),
    "crypto.price.eth_usd": (3_400.0, 150.0, {"currency": "USD", "source": "coingecko"}),
    "crypto.sentiment.fng": (62.0, 8.0, {"unit": "index", "classification": "Greed"}),
    "stock.price.aapl": (231.5, 4.0, {"currency": "USD", "session": "regular"}),
    "stock.index.spx": (6_050.0, 40.0, {"unit": "index", "session": "regular"}),
    "pred.poly.fed-cut.yes": (0.41, 0.05, {"unit": "probability", "question": "Fed rate cut by June 30?"}),
    "custom.ev_chargers.stations": (64_210.0, 30.0, {"unit": "stations"}),
}
FAILING_SYMBOL = "net.http.billing.rtt_ms"
FAILING_ERROR = "expected status 200-299, got 503"
HISTORY = timedelta(hours=26)
STEP = timedelta(minutes=5)


def showcase_samples(now: datetime) -> list[Sample]:
    """Samples of every category over HISTORY, plus a probe whose last two samples failed."""
    samples = []
    count = int(HISTORY / STEP)
    for index in range(count, -1, -1):
        ts = now - index * STEP
        for position, (symbol, (base, amplitude, tags)) in enumerate(SHOWCASE.items()):
            value = base + amplitude * math.sin(index / 9.0 + position)
            samples.append(Sample(ts, symbol.split(".")[0], symbol, round(value, 4), True, 12.0, dict(tags)))
        failed = index < 2
        samples.append(Sample(ts, "net", FAILING_SYMBOL, None if failed else 80.0, not failed, 30.0,
                              {"error": FAILING_ERROR} if failed else {}))
    return samples


def alert_rows(now: datetime) -> list[tuple]:
    """alert_state rows: one firing, one pending, one resolved."""
    return [
        ("btc_high", "", "firing", "critical", json.dumps({"symbol": "crypto.price.btc_usd"}), 97_100.0, False,
         now - timedelta(minutes=20), now - timedelta(minutes=15), None, now, now - timedelta(minutes=15),
         "BTC above 95,000: 97,100"),
        ("shop_slow", "", "pending", "warn", json.dumps({"symbol": "net.http.shop.rtt_ms"}), 158.0, False,
         now - timedelta(seconds=40), None, None, now, None, "shop answers in 158 ms"),
        ("billing_down", "", "resolved", "error", json.dumps({"symbol": FAILING_SYMBOL}), 80.0, False,
         now - timedelta(hours=3), now - timedelta(hours=3), now - timedelta(hours=2, minutes=30),
         now - timedelta(minutes=1), now - timedelta(hours=2, minutes=30), "billing is back"),
    ]


def alert_events(now: datetime) -> list[Event]:
    return [
        Event("alert", "critical", "btc_high firing: BTC above 95,000: 97,100", "btc_high",
              {"rule": "btc_high", "state": "firing", "symbol": "crypto.price.btc_usd", "delivery": "sent to log"},
              now - timedelta(minutes=15)),
        Event("alert", "error", "billing_down resolved", "billing_down",
              {"rule": "billing_down", "state": "resolved", "symbol": FAILING_SYMBOL},
              now - timedelta(hours=2, minutes=30)),
    ]


SHOWCASE_RULES = [
    {"name": "btc_high", "condition": "crypto.price.btc_usd > 95000", "severity": "critical"},
    {"name": "shop_slow", "condition": "net.http.shop.rtt_ms > 150", "for": "1m"},
    {"name": "billing_down", "sql": "SELECT symbol FROM latest WHERE NOT success", "severity": "error"},
    {"name": "aapl_below_100", "condition": "stock.price.aapl < 100"},
]


def _insert_alert_rows(rows: list[tuple]):
    def insert(connection):
        connection.executemany("INSERT INTO alert_state VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    return insert


def seed_showcase(writer: Writer, now: datetime | None = None) -> None:
    """Write the showcase through `writer` and wait until it is stored."""
    now = now or utc_now()
    writer.put(showcase_samples(now), timeout=10.0)
    for event in alert_events(now):
        writer.put(event, timeout=10.0)
    writer.run_command(_insert_alert_rows(alert_rows(now)), "seed alert_state", timeout=30.0)


def seed_file(path: str) -> None:
    """Create a DuckDB file at `path` holding the showcase, for an Oculus process started on it afterwards."""
    database = Database(path)
    database.open()
    writer = Writer(database, 1000, 5000, 0.05)
    writer.start()
    try:
        seed_showcase(writer)
    finally:
        writer.stop(10.0)
        database.close()


SECRET_HEADER = "Bearer s3cret-header-value"


def run_showcase(tmp_path_factory):
    """Yield a Runtime with the showcase, a working and a failing collector, and no rules.

    Without rules the rule engine leaves the seeded alert rows as they are.
    """
    from tests.test_web import start_runtime

    target = ProbeTargetServer().start()
    collectors = [
        {"type": "http", "name": "shop", "url": f"{target.url}/ok", "interval": "1s", "timeout": "2s",
         "headers": {"Authorization": "${SHOP_TOKEN}"}, "tags": {"team": "web", "tier-1": "yes"}},
        {"type": "http", "name": "broken", "url": f"{target.url}/error", "interval": "1s", "timeout": "2s"},
    ]
    runtime = start_runtime(tmp_path_factory.mktemp("showcase"), collectors, env={"SHOP_TOKEN": SECRET_HEADER})
    try:
        seed_showcase(runtime.writer)
        wait_for(lambda: runtime.scheduler.states["http:broken"].runs >= 1, timeout=15.0, what="a run of broken")
        yield runtime
    finally:
        runtime.stop()
        target.stop()


def get_json(url: str):
    """GET `url` and return its JSON body, checking the status and the content type."""
    response = http_get(url)
    assert response.status == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    return response.json()
