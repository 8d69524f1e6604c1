"""Build the dashboard's view model from the latest table and the last hour of samples."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from urllib.parse import quote

from oculus.collectors import registry
from oculus.storage import queries, utc_now

PANELS = (
    ("net", "Network"),
    ("crypto", "Crypto"),
    ("stock", "Stocks"),
    ("pred", "Prediction markets"),
    ("custom", "Custom"),
)
SPARK_WINDOW = timedelta(hours=1)
SPARK_BUCKET_SECONDS = 60
SPARK_WIDTH, SPARK_HEIGHT = 120, 28
# Sparklines are recomputed at most this often. One pixel of a sparkline is 30 s wide, and their query was half
# of a render at 1,000 symbols (34 of 65 ms), which runs up to once a second while a dashboard is open.
SPARK_REFRESH = 10.0
# The 24 h trend compares with the last good value in the hour before "24 h ago"; hourly collectors still have one.
DAY = timedelta(hours=24)
DAY_WINDOW = timedelta(hours=1)
UNITS = {"rtt_ms": "ms", "loss_pct": "%"}
LABELS = {"loss_pct": "loss", "status": "status", "rtt_ms": "rtt"}
DEFAULT_INTERVAL = 30.0
FINAL_STATES = ("closed", "resolved")


@dataclass
class Row:
    key: str
    name: str
    kind: str
    target: str
    up: bool
    stale: bool
    ts: datetime
    value: str
    details: list = field(default_factory=list)
    error: str | None = None
    trend: str = ""
    spark: str = ""
    badge: str = ""  # overrides UP/DOWN/STALE, e.g. CLOSED for a settled market
    trend_24h: str = ""
    change_24h: str = ""  # "+2.3 %" against the value 24 h ago
    href: str = ""  # the page of the row's main symbol
    debug_href: str = ""  # the debug page of the collector behind the row


@dataclass
class Panel:
    category: str
    title: str
    rows: list


def iso(ts: datetime | None) -> str:
    return ts.isoformat(timespec="seconds") + "Z" if ts else ""


def format_value(value: float | None, unit: str = "") -> str:
    """Format for reading at a glance: thousands separators, 2 decimals, 4 significant digits below 1."""
    if value is None:
        return "–"
    magnitude = abs(value)
    if value == int(value) and magnitude < 1e15:
        text = f"{int(value):,}"
    elif magnitude >= 1000:
        text = f"{value:,.2f}"
    elif magnitude >= 1:
        text = f"{value:.2f}"
    else:
        text = f"{value:.4g}"
    return f"{text} {unit}".strip()


def trend_arrow(current: float | None, previous: float | None) -> str:
    if current is None or previous is None:
        return ""
    if current == previous:
        return "→"
    return "↑" if current > previous else "↓"


def change_text(current: float | None, reference: float | None) -> str:
    """Return the relative change as "+2.3 %", or "" when there is nothing to compare."""
    if current is None or reference is None:
        return ""
    if reference == 0:
        return "" if current == 0 else "new"
    text = f"{(current - reference) / abs(reference) * 100:+.1f} %"
    return "0.0 %" if text in ("+0.0 %", "-0.0 %") else text


def symbol_href(symbol: str) -> str:
    return "/metrics/" + quote(symbol, safe="")


def collector_href(spec) -> str:
    return f"/collectors/{quote(spec.type, safe='')}/{quote(spec.name, safe='')}" if spec is not None else ""


class SparklineCache:
    """The sparkline points of the last render's symbols, reused for up to SPARK_REFRESH seconds."""

    def __init__(self, refresh: float = SPARK_REFRESH):
        self.refresh = refresh
        self._entry: tuple | None = None  # (symbols, expiry on the monotonic clock, points), replaced whole

    def points(self, cursor, symbols: list[str], now: datetime) -> dict[str, str]:
        entry = self._entry
        if entry is not None and entry[0] == symbols and time.monotonic() < entry[1]:
            return entry[2]
        points = queries.sparkline_points(cursor, symbols, now - SPARK_WINDOW, SPARK_BUCKET_SECONDS, SPARK_WIDTH,
                                          SPARK_HEIGHT)
        self._entry = (symbols, time.monotonic() + self.refresh, points)
        return points


def build_panels(cursor, collectors: list, symbol_owners: dict | None = None,
                 sparklines: SparklineCache | None = None) -> list[Panel]:
    """Group the latest samples into panels: probes per target, market values per symbol."""
    now = utc_now()
    symbol_owners = symbol_owners or {}
    probe_specs = {f"net.{spec.type}.{spec.name}": spec for spec in collectors}

    groups: dict[str, list[dict]] = {}
    for item in queries.latest(cursor):
        key = item["symbol"].rsplit(".", 1)[0] if item["category"] == "net" else item["symbol"]
        groups.setdefault(key, []).append(item)

    spark_symbols = [_primary(items)["symbol"] for items in groups.values()]
    sparks = (sparklines or SparklineCache(refresh=0.0)).points(cursor, spark_symbols, now)
    day_ago = queries.values_before(cursor, spark_symbols, now - DAY, DAY_WINDOW)

    rows_by_category: dict[str, list[Row]] = {}
    for key, items in groups.items():
        primary = _primary(items)
        if items[0]["category"] == "net":
            spec = probe_specs.get(key)
            row = _probe_row(key, items, spec, now)
        else:
            spec = symbol_owners.get(key)
            row = _market_row(items[0], spec, now)
        row.spark = sparks.get(primary["symbol"], "")
        reference = day_ago.get(primary["symbol"])
        row.change_24h = change_text(primary["value"], reference)
        row.trend_24h = "→" if row.change_24h == "0.0 %" else trend_arrow(primary["value"], reference)
        row.href = symbol_href(primary["symbol"])
        row.debug_href = collector_href(spec)
        rows_by_category.setdefault(items[0]["category"], []).append(row)

    titles = dict(PANELS)
    order = [c for c, _ in PANELS] + sorted(set(rows_by_category) - set(titles))
    return [Panel(c, titles.get(c, c.title()), rows_by_category[c]) for c in order if c in rows_by_category]


def _primary(items: list[dict]) -> dict:
    """Return the sample shown large in a row: response time for probes, else the first symbol."""
    return next((i for i in items if i["symbol"].endswith(".rtt_ms")), items[0])


def _error_of(items: list[dict]) -> str | None:
    for item in items:
        if not item["success"] and item.get("tags") and item["tags"].get("error"):
            return item["tags"]["error"]
    return None


def _probe_row(key: str, items: list[dict], spec, now: datetime) -> Row:
    primary = _primary(items)
    newest = max(i["ts"] for i in items)
    interval = spec.interval if spec else DEFAULT_INTERVAL

    details = []
    for item in items:
        if item is primary:
            continue
        metric = item["symbol"].rsplit(".", 1)[-1]
        label = LABELS.get(metric, metric.replace("_", " "))
        details.append((label, format_value(item["value"], UNITS.get(metric, ""))))

    metric = primary["symbol"].rsplit(".", 1)[-1]
    parts = key.split(".")
    return Row(
        key=key,
        name=parts[2] if len(parts) > 2 else key,
        kind=parts[1].upper() if len(parts) > 1 else "",
        target=registry.collector_class(spec.type).describe_target(spec.options) if spec else "",
        up=all(i["success"] for i in items),
        stale=(now - newest).total_seconds() > 2 * interval + 5,
        ts=newest,
        value=format_value(primary["value"], UNITS.get(metric, "")),
        details=details,
        error=_error_of(items),
        trend=trend_arrow(primary["value"], primary.get("prev_value")),
    )


def _market_row(item: dict, spec, now: datetime) -> Row:
    """Build the row of one market symbol: value with unit or currency, stale when the last good value is too old."""
    tags = item.get("tags") or {}
    parts = item["symbol"].split(".")
    if spec is not None:
        stale_after = spec.options.get("stale_after") or 2 * spec.interval + 5
    else:
        stale_after = 2 * DEFAULT_INTERVAL + 5
    last_ok = item.get("last_ok_ts")
    state = str(tags.get("market_state", ""))

    details = [(k, str(tags[k])) for k in ("label", "classification", "session", "source") if tags.get(k)]
    if state:
        details.insert(0, ("state", state))
    unit = tags.get("unit") or tags.get("currency") or ""
    if unit == "probability":
        unit = ""  # a 0-1 probability reads best bare
    return Row(
        key=item["symbol"],
        name=".".join(parts[2:]) if len(parts) > 2 else item["symbol"],
        kind=parts[1].replace("_", " ").upper() if len(parts) > 1 else "",
        target=str(tags.get("question", "")),
        up=bool(item["success"]),
        # A failed sample shows DOWN with its reason; STALE is for a good value that has grown old.
        stale=bool(item["success"]) and state not in FINAL_STATES
        and (last_ok is None or (now - last_ok).total_seconds() > stale_after),
        ts=item["ts"],
        value=format_value(item["value"], str(unit)),
        details=details,
        error=tags.get("error") if not item["success"] else None,
        trend=trend_arrow(item["value"], item.get("prev_value")),
        badge=state.upper() if state in FINAL_STATES else "",
    )
