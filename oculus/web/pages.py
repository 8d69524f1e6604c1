"""HTML pages: dashboard and its live partial, symbol charts, collector debug views, alerts, rules, SQL console."""

from __future__ import annotations

import gzip
import json
import threading
import time
from datetime import timedelta

import bottle

from oculus.storage import queries, utc_now
from oculus.web import alerts, symbols, targets
from oculus.web.dashboard import UNITS, SparklineCache, build_panels, format_value
from oculus.web.jsonapi import to_json

RECENT_ON_SYMBOL_PAGE = 10
# How long a rendered dashboard is reused while the writer commits nothing new. Staleness badges
# and times are at most this much behind, well under the 2 s refresh.
DASHBOARD_TTL = 1.0


def format_seconds(seconds: float | None) -> str:
    """Format a duration for reading: 45 s, 12 min, 3 h 5 min, 2 d 4 h."""
    if seconds is None:
        return "–"
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min"
    if seconds < 86400:
        hours, minutes = divmod(seconds // 60, 60)
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(seconds // 3600, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def delivery_text(alert: dict) -> str:
    """Summarize how an alert's notification went: the outcome the notifier reported, or whether it was sent."""
    outcome = alert["delivery"]["outcome"]
    if outcome is not None:
        return outcome if isinstance(outcome, str) else json.dumps(outcome, default=str)
    return "notified" if alert["delivery"]["last_notified"] else "not notified"


class Rendered:
    """A rendered page, with its gzip form made on first request."""

    def __init__(self, html: str):
        self.body = html.encode("utf-8")
        self._gzipped: bytes | None = None

    def gzipped(self) -> bytes:
        if self._gzipped is None:
            # Level 5 shrinks the 2 MB partial of 1,000 symbols to 180 KB in about 16 ms (bench/dashboard.py data).
            self._gzipped = gzip.compress(self.body, compresslevel=5, mtime=0)
        return self._gzipped


class RenderCache:
    """Reuse a rendered page for up to `ttl` seconds while its key (what it was built from) is unchanged.

    Every open dashboard requests the partial every 2 s, and with 1,000 symbols one render takes
    tens of milliseconds, so concurrent viewers share one render rather than each paying for it.
    While one request renders, the others get the previous page instead of waiting for it.
    """

    def __init__(self, ttl: float = DASHBOARD_TTL):
        self.ttl = ttl
        self._lock = threading.Lock()
        self._entry: tuple | None = None  # (key, expiry on the monotonic clock, Rendered), replaced whole

    def get(self, key, build) -> Rendered:
        entry = self._entry
        if entry is not None and entry[0] == key and time.monotonic() < entry[1]:
            return entry[2]
        if entry is not None and not self._lock.acquire(blocking=False):
            return entry[2]  # another request is rendering; this page is at most one render older
        if entry is None:
            self._lock.acquire()
        try:
            entry = self._entry
            if entry is None or entry[0] != key or time.monotonic() >= entry[1]:
                rendered = Rendered(build())
                entry = (key, time.monotonic() + self.ttl, rendered)
                self._entry = entry
            return entry[2]
        finally:
            self._lock.release()


def send_rendered(rendered: Rendered) -> bytes:
    response = bottle.response
    response.content_type = "text/html; charset=utf-8"
    response.set_header("Cache-Control", "no-store")
    response.set_header("Vary", "Accept-Encoding")
    if "gzip" in bottle.request.headers.get("Accept-Encoding", ""):
        response.set_header("Content-Encoding", "gzip")
        return rendered.gzipped()
    return rendered.body


def install_pages(app: bottle.Bottle, runtime, render, query_endpoint) -> None:
    reader = runtime.database.reader
    partial_cache, page_cache = RenderCache(), RenderCache()
    sparklines = SparklineCache()

    def dashboard_key() -> tuple:
        """Return what the dashboard is built from: committed batches, the config and the symbols' owners."""
        writer, scheduler = runtime.writer, runtime.scheduler
        return (writer.stats.batches if writer is not None else 0, id(runtime.config),
                len(scheduler.symbol_owners) if scheduler is not None else 0)

    def render_partial() -> str:
        owners = runtime.scheduler.symbol_owners if runtime.scheduler is not None else {}
        panels = build_panels(reader(), runtime.config.collectors, owners, sparklines)
        return render("partials/metrics", panels=panels, collector_count=len(runtime.config.collectors))

    def partial() -> Rendered:
        return partial_cache.get(dashboard_key(), render_partial)

    @app.get("/")
    def index():
        metrics = partial()
        page = page_cache.get((dashboard_key(), metrics), lambda: render(
            "dashboard", metrics_html=metrics.body.decode("utf-8"), config_source=runtime.config.source))
        return send_rendered(page)

    @app.get("/partials/metrics")
    def metrics_partial():
        return send_rendered(partial())

    @app.get("/metrics/<symbol>")
    def symbol_page(symbol):
        range_name = bottle.request.query.getunicode("range") or symbols.DEFAULT_RANGE
        if range_name not in symbols.RANGES:
            range_name = symbols.DEFAULT_RANGE
        now = utc_now()
        since = now - timedelta(seconds=symbols.RANGES[range_name])
        step = symbols.default_step(symbols.RANGES[range_name])
        cursor = reader()
        detail = symbols.symbol_detail(cursor, symbol, since, now, step)
        if detail is None:
            bottle.response.status = 404
            return render("symbol_missing", title=symbol, symbol=symbol)

        owners = runtime.scheduler.symbol_owners if runtime.scheduler is not None else {}
        spec = owners.get(symbol)
        recent = queries.recent_samples(cursor, [symbol], RECENT_ON_SYMBOL_PAGE)
        chart = {"ts": [point["ts"] for point in detail["series"]],
                 "avg": [point["avg"] for point in detail["series"]],
                 "min": [point["min"] for point in detail["series"]],
                 "max": [point["max"] for point in detail["series"]]}
        return render("symbol", title=symbol, detail=detail, range_name=range_name, ranges=list(symbols.RANGES),
                      spec=spec, recent=recent, related=alerts.alerts_for_symbol(cursor, symbol),
                      chart_json=to_json(chart).replace("</", "<\\/"), unit=_unit(symbol, detail["latest"]))

    @app.get("/collectors")
    def collectors_page():
        return render("collectors", title="Collectors", collectors=targets.list_collectors(runtime))

    @app.get("/collectors/<kind>/<name>")
    def collector_page(kind, name):
        spec = targets.find_spec(runtime, kind, name)
        if spec is None:
            bottle.response.status = 404
            return render("collector_missing", title=f"{kind}:{name}", key=f"{kind}:{name}")
        detail = targets.collector_detail(runtime, reader(), spec)
        return render("collector", title=spec.key, detail=detail, config_json=_pretty(detail["config"]))

    @app.get("/alerts")
    def alerts_page():
        listing = alerts.list_alerts(reader(), "all", 200)
        active = [alert for alert in listing["alerts"] if alert["state"] in ("firing", "pending")]
        resolved = [alert for alert in listing["alerts"] if alert["state"] == "resolved"][:50]
        return render("alerts", title="Alerts", active=active, resolved=resolved, events=listing["events"][:50],
                      rule_count=len(alerts.list_rules(runtime, reader())))

    @app.get("/rules")
    def rules_page():
        return render("rules", title="Rules", rules=alerts.list_rules(runtime, reader()))

    @app.get("/query")
    def query_page():
        return render("query", title="SQL console", enabled=query_endpoint.enabled,
                      max_rows=query_endpoint.limits.max_rows, timeout=query_endpoint.limits.timeout)


def _unit(symbol: str, latest: dict | None) -> str:
    tags = (latest or {}).get("tags") or {}
    unit = str(tags.get("unit") or tags.get("currency") or UNITS.get(symbol.rsplit(".", 1)[-1], ""))
    return "" if unit == "probability" else unit


def _pretty(value) -> str:
    return json.dumps(value, indent=2, default=str)


TEMPLATE_HELPERS = {"format_value": format_value, "format_seconds": format_seconds, "delivery_text": delivery_text}
