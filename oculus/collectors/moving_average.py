"""Simple moving averages of daily crypto closes: MA30, MA60 or any N days.

A daily close is the price at 00:00 UTC, stored as crypto.close_1d.<asset>_<quote>
with the sample stamped at that midnight. Each run averages the last N closes
up to the newest completed midnight, in DuckDB over the stored closes. When
the stored history is too short (first run, retention, downtime), the
collector backfills from CoinGecko's market_chart (one completed download
per asset and UTC day at most) and emits the fetched closes so that they get
stored.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from oculus.collectors import coingecko
from oculus.collectors.base import Reading
from oculus.collectors.market import MarketCollector, market_fields
from oculus.collectors.provider import PERMANENT, TRANSIENT, ProviderError, number, utc_from_unix
from oculus.config.schema import REQUIRED, Field, Invalid
from oculus.config.values import reveal
from oculus.logs import RateLimitedLog

log = logging.getLogger(__name__)

DAY = timedelta(days=1)
DAY_MS = 86_400_000
# A price sampled at most this long after (CoinGecko hourly points) or before (stored
# crypto.price samples) a midnight counts as that midnight's close.
CLOSE_TOLERANCE = timedelta(hours=1)
# Keyless and Demo CoinGecko access reaches back 365 days; older market_chart data needs a paid key.
MAX_WINDOW = 365

_CURRENCY = re.compile(r"[a-z]{2,10}")


def quote_currency(value):
    value = reveal(value)
    if isinstance(value, str) and _CURRENCY.fullmatch(value.lower()):
        return value.lower()
    raise Invalid(f"expected a currency code such as usd or eur, got {value!r}")


def window_list(value):
    """Moving-average lengths in days: a list of whole numbers from 2 to MAX_WINDOW, without repeats."""
    items = value if isinstance(value, list) else [value]
    windows = []
    for item in items:
        item = reveal(item)
        if isinstance(item, str) and item.strip().isdigit():
            item = int(item)
        if isinstance(item, bool) or not isinstance(item, int) or not 2 <= item <= MAX_WINDOW:
            raise Invalid(f"expected window lengths in days from 2 to {MAX_WINDOW}, such as [30, 60], got {value!r}")
        if item in windows:
            raise Invalid(f"window {item} is listed twice")
        windows.append(item)
    if not windows:
        raise Invalid("expected at least one window length, such as [30, 60]")
    return sorted(windows)


def midnight(moment: datetime) -> datetime:
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


def daily_closes(prices: list) -> dict[datetime, float]:
    """Turn market_chart `prices` ([[unix ms, price], ...]) into {midnight: close}.

    The last point is always CoinGecko's live price, never a completed day, so
    it is dropped. A midnight's close is the first point at or after it, within
    CLOSE_TOLERANCE: exact midnights for interval=daily, the first hourly point
    otherwise. A midnight before the first point is outside the window and gets
    no close, even when a later point of that day exists.
    """
    points = []
    for point in prices[:-1]:
        if not isinstance(point, list) or len(point) != 2 or not isinstance(point[0], int):
            raise ProviderError(TRANSIENT, f"CoinGecko: unexpected market_chart point {point!r}")
        value = number(point[1])
        if value is not None:
            points.append((point[0], value))
    points.sort()

    closes: dict[datetime, float] = {}
    tolerance_ms = CLOSE_TOLERANCE // timedelta(milliseconds=1)
    for ms, value in points:
        day_ms = ms - ms % DAY_MS
        if day_ms < points[0][0] or ms - day_ms > tolerance_ms:
            continue
        day = utc_from_unix(day_ms // 1000)
        closes.setdefault(day, value)
    return closes


def moving_averages(closes: dict[datetime, float], ends: list[datetime], windows: list[int]) -> dict:
    """Return {(end, n): (count, mean)} over the closes in the n days up to and including `end`."""
    result = {}
    for end in ends:
        for days in windows:
            values = [closes[end - i * DAY] for i in range(days) if end - i * DAY in closes]
            result[(end, days)] = (len(values), sum(values) / len(values) if values else None)
    return result


# Closes in (since, until] from storage, merged with closes this collector keeps in memory
# (`extra`), averaged per window and end day. A day stored twice (two collectors, or a
# backfill after a restart) is averaged, so it still counts once.
_AVERAGES_SQL = """
    WITH stored AS (
        SELECT ts, avg(value) AS value
        FROM metrics
        WHERE symbol = $symbol AND success AND value IS NOT NULL
          AND ts = date_trunc('day', ts) AND ts > $since AND ts <= $until
        GROUP BY ts
    ),
    extra AS (
        SELECT unnest($extra_ts::TIMESTAMP[]) AS ts, unnest($extra_values::DOUBLE[]) AS value
    ),
    closes AS (
        SELECT ts, value FROM stored
        UNION ALL
        SELECT ts, value FROM extra
        WHERE ts > $since AND ts <= $until AND ts NOT IN (SELECT ts FROM stored)
    )
    SELECT ends.end_ts, windows.days, count(closes.value), avg(closes.value)
    FROM (SELECT unnest($ends::TIMESTAMP[]) AS end_ts) AS ends
    CROSS JOIN (SELECT unnest($windows::INTEGER[]) AS days) AS windows
    LEFT JOIN closes ON closes.ts <= ends.end_ts AND closes.ts > ends.end_ts - to_days(windows.days)
    GROUP BY ends.end_ts, windows.days
"""

_STORED_DAYS_SQL = """
    SELECT DISTINCT ts FROM metrics
    WHERE symbol = $symbol AND success AND value IS NOT NULL
      AND ts = date_trunc('day', ts) AND ts > $since AND ts <= $until
"""

_LAST_PRICE_SQL = """
    SELECT arg_max(value, ts), arg_max(tags->>'source', ts)
    FROM metrics
    WHERE symbol = $symbol AND success AND value IS NOT NULL AND ts >= $since AND ts < $until
"""


@dataclass
class _Asset:
    ticker: str
    coin_id: str
    pair: str                                   # "btc_usd", the symbol suffix
    closes: dict = field(default_factory=dict)  # midnight -> close this instance fetched or derived
    backfill_day: datetime | None = None        # midnight of the day of the last completed backfill
    backfill_error: ProviderError | None = None  # a permanent error from that backfill


class MovingAverageCollector(MarketCollector):
    TYPE = "moving_average"
    CATEGORY = "crypto"
    PROVIDER = coingecko.PROVIDER  # the same Provider, and so the same backoff, as the crypto collector
    DEFAULT_INTERVAL = 3600.0  # polling faster spends the shared free-tier rate limit for nothing
    FIELDS = (
        Field("assets", coingecko.assets, REQUIRED,
              "Assets to average: a list of well-known tickers such as [btc, eth], "
              "or a mapping of ticker to CoinGecko id such as {btc: bitcoin}."),
        Field("quote", quote_currency, "usd", "Quote currency (CoinGecko vs_currency), such as usd or eur."),
        Field("windows", window_list, [30, 60],
              f"Moving-average lengths in days (2 to {MAX_WINDOW}); each emits crypto.ma<N>.<asset>_<quote>."),
        # The averages are stamped at the midnight of their last close, so up to a day old is normal.
        *market_fields(coingecko.PROVIDER, coingecko.DEFAULT_URL, 26 * 3600.0),
    )

    def __init__(self, spec):
        super().__init__(spec)
        self.clock = time.time  # unix seconds; tests replace it
        quote = self.options["quote"]
        self.assets = [_Asset(ticker, coin_id, f"{ticker}_{quote}")
                       for ticker, coin_id in self.options["assets"].items()]
        self.windows = self.options["windows"]
        self._db_log = RateLimitedLog(log, 300.0)

    @classmethod
    def describe_target(cls, options: dict) -> str:
        return ", ".join(options["assets"].values())

    def symbols(self) -> list[str]:
        return [symbol for asset in self.assets for symbol in self._ma_symbols(asset) + [self._close_symbol(asset)]]

    def failed(self, error: str, **tags) -> list[Reading]:
        # A failed close would be stamped at the run's time, not at a midnight, so only the averages fail.
        return [Reading(symbol, None, False, error, dict(tags))
                for asset in self.assets for symbol in self._ma_symbols(asset)]

    def _ma_symbols(self, asset: _Asset) -> list[str]:
        return [f"crypto.ma{days}.{asset.pair}" for days in self.windows]

    def _close_symbol(self, asset: _Asset) -> str:
        return f"crypto.close_1d.{asset.pair}"

    def _tags(self, source: str) -> dict:
        currency = self.options["quote"].upper()
        return {"unit": currency, "currency": currency, "source": source}

    # -- one run -----------------------------------------------------------

    def collect(self, deadline: float) -> list[Reading]:
        today = midnight(utc_from_unix(self.clock()))
        readings = []
        for asset in self.assets:
            readings.extend(self._collect_asset(asset, today, deadline))
        return readings

    def _collect_asset(self, asset: _Asset, today: datetime, deadline: float) -> list[Reading]:
        """Average from stored and held closes; backfill when they fall short and today's backfill is not done."""
        oldest = today - (self.windows[-1] + 1) * DAY
        asset.closes = {day: value for day, value in asset.closes.items() if day > oldest}
        ends = [today, today - DAY]

        derived = self._derive_close(asset, today)
        if derived is not None:
            asset.closes[today] = derived.value
        averages = self._averages(asset, ends)
        complete_today = all(averages[(today, days)][0] == days for days in self.windows)

        if not complete_today and asset.backfill_day != today:
            return self._backfill(asset, today, deadline, derived)
        readings = [derived] if derived is not None else []
        if not complete_today and asset.backfill_error is not None:
            return readings + self._failed_averages(asset, asset.backfill_error)
        source = "database" if self.reader is not None else "coingecko"
        return readings + self._average_readings(asset, averages, ends, source)

    def _backfill(self, asset: _Asset, today: datetime, deadline: float, derived: Reading | None) -> list[Reading]:
        """Fetch max(windows) days of closes from CoinGecko, emit the ones not stored yet and average them."""
        readings = []
        try:
            fetched = self._fetch_closes(asset, deadline)
        except ProviderError as error:
            if error.kind == PERMANENT:
                asset.backfill_day, asset.backfill_error = today, error
            if derived is not None:
                readings.append(derived)
            return readings + self._failed_averages(asset, error)
        asset.backfill_day, asset.backfill_error = today, None

        # CoinGecko adds a midnight's point a little after midnight; a derived close fills in meanwhile.
        fetched = {day: value for day, value in fetched.items() if day <= today}
        if today not in fetched and derived is not None:
            fetched[today] = derived.value
            readings.append(derived)
        stored = self._stored_days(asset, min(fetched, default=today) - DAY, today)
        stored.update(reading.ts for reading in readings)
        tags = self._tags("coingecko")
        readings += [Reading(self._close_symbol(asset), value, tags=dict(tags), ts=day)
                     for day, value in sorted(fetched.items()) if day not in stored]

        asset.closes = fetched
        ends = [today, today - DAY]
        averages = moving_averages(fetched, ends, self.windows)
        return readings + self._average_readings(asset, averages, ends, "coingecko", backfilled=True)

    def _fetch_closes(self, asset: _Asset, deadline: float) -> dict[datetime, float]:
        params = {"vs_currency": self.options["quote"], "days": str(self.windows[-1]), "interval": "daily"}
        try:
            response = self.provider.get(f"/api/v3/coins/{asset.coin_id}/market_chart", deadline, params)
        except ProviderError as error:
            if error.kind != PERMANENT:
                raise
            raise ProviderError(PERMANENT, f"CoinGecko rejected the market_chart request for coin id "
                                f"{asset.coin_id!r} ({error.message}); check assets.{asset.ticker} "
                                "in the config") from None
        body = response.json()
        prices = body.get("prices") if isinstance(body, dict) else None
        if not isinstance(prices, list):
            raise ProviderError(TRANSIENT, f"CoinGecko: market_chart for {asset.coin_id!r} has no prices list")
        closes = daily_closes(prices)
        self.provider.succeeded()
        return closes

    # -- averages ----------------------------------------------------------

    def _average_readings(self, asset: _Asset, averages: dict, ends: list[datetime], source: str,
                          backfilled: bool = False) -> list[Reading]:
        """Build one reading per window, as of the newest end day whose window has every close."""
        readings = []
        for days in self.windows:
            end = next((end for end in ends if averages[(end, days)][0] == days), None)
            symbol = f"crypto.ma{days}.{asset.pair}"
            if end is None:
                count = averages[(ends[0], days)][0]
                reason = f"not enough history for MA{days}: {count} of {days} daily closes up to {ends[0]:%Y-%m-%d}"
                if backfilled:
                    reason += f" (CoinGecko returned fewer days for {asset.coin_id!r})"
                readings.append(Reading(symbol, None, False, reason, {"error_kind": TRANSIENT}))
                continue
            tags = {**self._tags(source), "window_days": days}
            readings.append(Reading(symbol, averages[(end, days)][1], tags=tags, ts=end))
        return readings

    def _failed_averages(self, asset: _Asset, error: ProviderError) -> list[Reading]:
        return self.failed_from(error, self._ma_symbols(asset))

    def _averages(self, asset: _Asset, ends: list[datetime]) -> dict:
        """Compute the averages over stored plus held closes in DuckDB, or over the held ones without a database."""
        since = ends[-1] - self.windows[-1] * DAY
        params = {
            "symbol": self._close_symbol(asset), "since": since, "until": ends[0],
            "extra_ts": list(asset.closes), "extra_values": list(asset.closes.values()),
            "ends": ends, "windows": self.windows,
        }
        rows = self._query(_AVERAGES_SQL, params)
        if rows is None:
            return moving_averages(asset.closes, ends, self.windows)
        return {(end, days): (count, mean) for end, days, count, mean in rows}

    def _stored_days(self, asset: _Asset, since: datetime, until: datetime) -> set:
        rows = self._query(_STORED_DAYS_SQL, {"symbol": self._close_symbol(asset), "since": since, "until": until})
        return {row[0] for row in rows or []}

    def _derive_close(self, asset: _Asset, today: datetime) -> Reading | None:
        """Derive today's close from the last stored crypto.price sample before midnight, unless a close is stored."""
        if today in asset.closes or today in self._stored_days(asset, today - DAY, today):
            return None
        price_symbol = f"crypto.price.{asset.pair}"
        rows = self._query(_LAST_PRICE_SQL, {"symbol": price_symbol, "since": today - CLOSE_TOLERANCE,
                                             "until": today})
        if not rows or rows[0][0] is None:
            return None
        value, source = rows[0]
        tags = {**self._tags(source or "oculus"), "derived_from": price_symbol}
        return Reading(self._close_symbol(asset), float(value), tags=tags, ts=today)

    def _query(self, sql: str, params: dict) -> list | None:
        """Run a read query on the runtime's read cursor; None without a database or when the query fails."""
        if self.reader is None:
            return None
        import duckdb  # only here, so that loading a config does not import DuckDB

        try:
            return self.reader().execute(sql, params).fetchall()
        except duckdb.Error as exc:
            self._db_log.warning(self.name, "moving-average history query failed, using closes held in memory "
                                 "collector=%s error=%s", self.spec.key, exc)
            return None
