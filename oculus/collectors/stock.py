"""Stock and index quotes from Yahoo's chart API, with Stooq's CSV quotes as the fallback.

Yahoo returns one symbol per request. Symbols whose Yahoo request fails for a
reason that can heal (rate limit, timeout, outage, bot page) are fetched from
Stooq in one request; a symbol Yahoo rejects as unknown is a config error and
gets no fallback.
"""

from __future__ import annotations

import csv
import re
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from urllib.parse import quote as url_quote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from oculus.collectors.base import Reading
from oculus.collectors.market import MarketCollector, base_url, market_fields
from oculus.collectors.provider import PERMANENT, RATE_LIMITED, TRANSIENT, ProviderError, number, utc_from_unix
from oculus.config.schema import Field, Invalid, choice, symbol_name
from oculus.config.values import format_duration, reveal

# Yahoo's per-IP block lasts minutes and comes without Retry-After, so its backoff starts at a minute.
YAHOO_BACKOFF_BASE = 60.0
STOOQ_HEADER = ["Symbol", "Date", "Time", "Open", "High", "Low", "Close", "Volume"]
# Stooq stamps quotes with its server's local time.
STOOQ_ZONE = "Europe/Warsaw"
# Stooq names of common Yahoo indices; others need a stooq_symbols entry to get a fallback.
STOOQ_INDICES = {"^GSPC": "^spx", "^DJI": "^dji", "^IXIC": "^ndq", "^N225": "^nkx"}
SESSIONS = ("pre", "regular", "post")

_TICKER = re.compile(r"[A-Z0-9][A-Z0-9.=-]*")
_YAHOO_INDEX = re.compile(r"\^?[A-Z0-9][A-Z0-9.=-]*")
_STOOQ_SYMBOL = re.compile(r"\^?[a-z0-9][a-z0-9._-]*")


def tickers(value):
    """Parse a list of Yahoo tickers such as [AAPL, MSFT, BRK-B]."""
    items = value if isinstance(value, list) else [value]
    result = []
    for item in items:
        item = reveal(item)
        ticker = item.strip().upper() if isinstance(item, str) else None
        if not ticker or not _TICKER.fullmatch(ticker):
            raise Invalid(f"expected Yahoo tickers such as [AAPL, MSFT] (indices go under indices), got {item!r}")
        if ticker in result:
            raise Invalid(f"ticker {ticker} is listed twice")
        result.append(ticker)
    return result


def index_symbols(value):
    """Parse a mapping of index name (used in symbols) to Yahoo symbol, such as {spx: "^GSPC"}."""
    if not isinstance(value, dict):
        raise Invalid(f'expected a mapping of names to Yahoo index symbols such as {{spx: "^GSPC"}}, got {value!r}')
    result = {}
    for name, symbol in value.items():
        name = symbol_name(reveal(name))
        symbol = reveal(symbol)
        if not isinstance(symbol, str) or not _YAHOO_INDEX.fullmatch(symbol.strip().upper()):
            raise Invalid(f'expected a Yahoo symbol such as "^GSPC" for {name!r}, got {symbol!r}')
        result[name] = symbol.strip().upper()
    return result


def stooq_symbols(value):
    """Parse a mapping of Yahoo symbol to Stooq symbol, such as {"^VIX": "^vix"}."""
    if not isinstance(value, dict):
        raise Invalid(f'expected a mapping of Yahoo symbols to Stooq symbols such as {{"^VIX": "^vix"}}, got {value!r}')
    result = {}
    for yahoo, stooq in value.items():
        stooq = reveal(stooq)
        if not isinstance(stooq, str) or not _STOOQ_SYMBOL.fullmatch(stooq.strip().lower()):
            raise Invalid(f"expected a Stooq symbol such as aapl.us or ^spx for {yahoo!r}, got {stooq!r}")
        result[str(reveal(yahoo)).strip().upper()] = stooq.strip().lower()
    return result


def ticker_name(ticker: str) -> str:
    """Return the symbol part for a ticker: lower case, with '.' and '=' as '_' because dots separate symbol parts."""
    return re.sub(r"[.=]", "_", ticker.lower())


@dataclass(frozen=True)
class Target:
    symbol: str        # stock.price.aapl or stock.index.spx
    yahoo: str         # AAPL, ^GSPC
    stooq: str | None  # aapl.us, ^spx; None when Stooq has no known name for it
    setting: str       # the config key that lists it, for error messages

    @property
    def is_index(self) -> bool:
        return self.symbol.startswith("stock.index.")


@dataclass
class Quote:
    price: float
    ts: datetime
    currency: str | None
    session: str
    stale: bool
    source: str
    label: str | None = None


def trading_session(periods: dict, now: float) -> str:
    """pre, regular or post when `now` (unix seconds) falls in that period of currentTradingPeriod, else closed."""
    for name in SESSIONS:
        period = periods.get(name) or {}
        start, end = period.get("start"), period.get("end")
        if isinstance(start, int) and isinstance(end, int) and start <= now < end:
            return name
    return "closed"


def is_stale(periods: dict, session: str, quote_ts: datetime) -> bool:
    """True unless the session is regular and the quote is from this regular session."""
    start = (periods.get("regular") or {}).get("start")
    if session != "regular" or not isinstance(start, int):
        return True
    return quote_ts < utc_from_unix(start)


def parse_chart(body, ticker: str, now: float) -> tuple[Quote, dict]:
    """Read the quote from a chart response; return it with meta.currentTradingPeriod.

    Raises ProviderError: permanent for chart.error (unknown or delisted
    symbol), transient for a body without a usable price.
    """
    chart = body.get("chart") if isinstance(body, dict) else None
    if not isinstance(chart, dict):
        raise ProviderError(TRANSIENT, f"yahoo: the response for {ticker} has no chart object")
    error = chart.get("error")
    if error:
        detail = (error.get("description") or error.get("code")) if isinstance(error, dict) else error
        raise ProviderError(PERMANENT, f"yahoo: {detail}")
    results = chart.get("result")
    result = results[0] if isinstance(results, list) and results and isinstance(results[0], dict) else None
    meta = result.get("meta") if result else None
    if not isinstance(meta, dict):
        raise ProviderError(TRANSIENT, f"yahoo: the response for {ticker} has no chart result")

    price = number(meta.get("regularMarketPrice"))
    market_time = meta.get("regularMarketTime")
    ts = utc_from_unix(market_time) if isinstance(market_time, int) else None
    if price is None:
        price, ts = last_bar_close(result, meta)
    if ts is None:
        raise ProviderError(TRANSIENT, f"yahoo: the response for {ticker} has no regularMarketTime")

    periods = meta.get("currentTradingPeriod") if isinstance(meta.get("currentTradingPeriod"), dict) else {}
    session = trading_session(periods, now)
    quote = Quote(price, ts, meta.get("currency"), session, is_stale(periods, session, ts), "yahoo",
                  meta.get("shortName") or meta.get("longName"))
    return quote, periods


def last_bar_close(result: dict, meta: dict) -> tuple[float, datetime]:
    """Return the close of the newest daily bar that has one, for a meta without regularMarketPrice.

    Bars with a null close (a missing day) are skipped. The bar is stamped at
    its session open. Bar prices are float32 values printed as doubles, so they
    are rounded to meta.priceHint decimals.
    """
    quotes = (result.get("indicators") or {}).get("quote") or [{}]
    closes = (quotes[0].get("close") or []) if isinstance(quotes[0], dict) else []
    bars = [(stamp, close) for stamp, close in zip(result.get("timestamp") or [], closes, strict=False)
            if close is not None and isinstance(stamp, int)]
    if not bars:
        raise ProviderError(TRANSIENT, "yahoo: the response has neither regularMarketPrice nor a daily close")
    stamp, close = bars[-1]
    hint = meta.get("priceHint")
    digits = hint if isinstance(hint, int) and 0 <= hint <= 8 else 4
    return round(number(close), digits), utc_from_unix(stamp)


def parse_stooq(text: str) -> dict[str, dict]:
    """Rows of a Stooq CSV quote keyed by upper-case Symbol; raises ProviderError for anything but that CSV."""
    lines = text.splitlines()
    if not lines or [name.strip() for name in lines[0].split(",")] != STOOQ_HEADER:
        raise ProviderError(TRANSIENT, f"stooq: expected the CSV header {','.join(STOOQ_HEADER)}, "
                            f"got {lines[0][:80] if lines else 'an empty body'!r}")
    return {row["Symbol"].strip().upper(): row for row in csv.DictReader(lines) if row.get("Symbol")}


def stooq_time(date: str, clock: str) -> datetime:
    """Naive UTC from Stooq's Date and Time columns, which are Europe/Warsaw local time."""
    local = datetime.fromisoformat(f"{date.strip()}T{clock.strip()}").replace(tzinfo=ZoneInfo(STOOQ_ZONE))
    return local.astimezone(timezone.utc).replace(tzinfo=None)


class StockCollector(MarketCollector):
    TYPE = "stock"
    CATEGORY = "stock"
    PROVIDER = "yahoo"
    DEFAULT_INTERVAL = 60.0  # polling faster spends the shared free-tier rate limit for nothing
    BROWSER_LIKE = True
    FIELDS = (
        Field("symbols", tickers, [], "Yahoo tickers to quote, such as [AAPL, MSFT]; each emits stock.price.<ticker>."),
        Field("indices", index_symbols, {},
              'Indices to quote: a mapping of name to Yahoo symbol, such as {spx: "^GSPC"}; '
              "each emits stock.index.<name>."),
        Field("fallback", choice("stooq", "none"), "stooq",
              "Source asked when Yahoo fails for a reason that can heal: stooq, or none."),
        Field("stooq_symbols", stooq_symbols, {},
              "Stooq symbols for the fallback, keyed by Yahoo symbol, where the default "
              "(<ticker>.us, or the built-in index names) is wrong or missing."),
        *market_fields("Yahoo Finance chart", "https://query1.finance.yahoo.com", 3600.0),
        Field("stooq_base_url", base_url, "https://stooq.com",
              "Base URL of Stooq, the fallback quote source; point it at a proxy or a test server."),
    )

    def __init__(self, spec):
        super().__init__(spec)
        self.clock = time.time  # unix seconds; tests replace it
        self.targets = self.targets_from(self.options)
        self._periods: dict[str, dict] = {}  # Yahoo symbol -> the last currentTradingPeriod Yahoo returned

    @classmethod
    def targets_from(cls, options: dict) -> list[Target]:
        overrides = options["stooq_symbols"]
        targets = []
        for ticker in options["symbols"]:
            default = None if re.search(r"[.=]", ticker) else f"{ticker.lower()}.us"
            targets.append(Target(f"stock.price.{ticker_name(ticker)}", ticker,
                                  overrides.get(ticker, default), "symbols"))
        for name, symbol in options["indices"].items():
            targets.append(Target(f"stock.index.{name}", symbol,
                                  overrides.get(symbol, STOOQ_INDICES.get(symbol)), f"indices.{name}"))
        return targets

    @classmethod
    def check_options(cls, values):
        problems = []
        if not values["symbols"] and not values["indices"]:
            problems.append((None, "set symbols or indices (or both); there is nothing to quote"))
        targets = cls.targets_from(values)
        names = [target.symbol for target in targets]
        for symbol in sorted({name for name in names if names.count(name) > 1}):
            problems.append(("symbols", f"two tickers map to the same symbol {symbol}"))
        listed = {target.yahoo for target in targets}
        for yahoo in values["stooq_symbols"]:
            if yahoo not in listed:
                problems.append(("stooq_symbols", f"{yahoo} is not listed in symbols or indices"))
        return problems

    @classmethod
    def describe_target(cls, options: dict) -> str:
        return ", ".join(target.yahoo for target in cls.targets_from(options))

    def symbols(self) -> list[str]:
        return [target.symbol for target in self.targets]

    @property
    def provider(self):
        """Return the shared Yahoo Provider, its backoff starting at YAHOO_BACKOFF_BASE."""
        provider = super().provider
        provider.backoff.base = max(provider.backoff.base, YAHOO_BACKOFF_BASE)
        return provider

    @property
    def stooq_provider(self):
        return self.provider_for("stooq", self.options["stooq_base_url"])

    # -- one run -----------------------------------------------------------

    def collect(self, deadline: float) -> list[Reading]:
        now = self.clock()
        readings = []
        fallback: list[tuple[Target, ProviderError]] = []
        for target in self.targets:
            try:
                readings.append(self._reading(target, self._from_yahoo(target, deadline, now)))
            except ProviderError as error:
                if error.kind == PERMANENT:
                    readings.append(self._failed(target, error, f"; check {target.setting} in the config"))
                elif self.options["fallback"] == "none":
                    readings.append(self._failed(target, error))
                elif target.stooq is None:
                    readings.append(self._failed(target, error, "; Stooq has no symbol for it, so there is no "
                                                 "fallback (add one under stooq_symbols)"))
                else:
                    fallback.append((target, error))
        if fallback:
            readings.extend(self._from_stooq(fallback, deadline, now))
        return readings

    def _reading(self, target: Target, quote: Quote) -> Reading:
        tags = {"source": quote.source, "session": quote.session, "stale_quote": quote.stale, "ticker": target.yahoo}
        if target.is_index:
            tags["unit"] = "index"
        elif quote.currency:
            tags["unit"] = quote.currency
        if quote.currency:
            tags["currency"] = quote.currency
        if quote.label:
            tags["label"] = quote.label
        return Reading(target.symbol, quote.price, tags=tags, ts=quote.ts)

    def _failed(self, target: Target, error: ProviderError, advice: str = "") -> Reading:
        return Reading(target.symbol, None, False, error.message + advice, {"error_kind": error.kind})

    # -- Yahoo -------------------------------------------------------------

    def _from_yahoo(self, target: Target, deadline: float, now: float) -> Quote:
        if time.monotonic() >= deadline:
            raise ProviderError(TRANSIENT, f"yahoo: the run reached its timeout before {target.yahoo} was requested")
        provider = self.provider
        response = provider.get(f"/v8/finance/chart/{url_quote(target.yahoo, safe='')}", deadline,
                                {"interval": "1d", "range": "5d"})
        result, periods = parse_chart(response.json(), target.yahoo, now)
        provider.succeeded()
        self._periods[target.yahoo] = periods
        return result

    # -- Stooq -------------------------------------------------------------

    def _from_stooq(self, pending: list[tuple[Target, ProviderError]], deadline: float, now: float) -> list[Reading]:
        """Quote every pending target with one Stooq request; each failure names both sources' errors."""
        def failed(target, yahoo_error, stooq_error):
            message = f"{yahoo_error.message}; Stooq fallback failed: {stooq_error.message}"
            return Reading(target.symbol, None, False, message, {"error_kind": stooq_error.kind})

        try:
            rows = self._stooq_rows([target.stooq for target, _ in pending], deadline, now)
        except ProviderError as error:
            return [failed(target, yahoo_error, error) for target, yahoo_error in pending]

        readings = []
        for target, yahoo_error in pending:
            try:
                readings.append(self._reading(target, self._stooq_quote(target, rows, now)))
            except ProviderError as error:
                readings.append(failed(target, yahoo_error, error))
        return readings

    def _stooq_rows(self, symbols: list[str], deadline: float, now: float) -> dict[str, dict]:
        if time.monotonic() >= deadline:
            raise ProviderError(TRANSIENT, "stooq: the run reached its timeout before Stooq was requested")
        provider = self.stooq_provider
        # Stooq wants a literal '+' between symbols and a bare 'h' flag, which requests' params cannot express.
        joined = "+".join(url_quote(symbol, safe="") for symbol in symbols)
        response = provider.get(f"/q/l/?s={joined}&f=sd2t2ohlcv&h&e=csv", deadline)
        try:
            rows = parse_stooq(response.text)
        except ProviderError:
            self._check_quota(provider, response.text, now)
            raise
        provider.succeeded()
        return rows

    def _check_quota(self, provider, text: str, now: float) -> None:
        """Pause Stooq until the next UTC day when the body is its one-line daily-quota message."""
        lines = text.strip().splitlines()
        if len(lines) != 1 or lines[0].strip().lower() == "no data":
            return
        until_midnight = 86400 - now % 86400
        provider.pause(f"daily quota used up ({lines[0].strip()[:80]!r})", until_midnight)
        raise ProviderError(RATE_LIMITED, f"stooq: daily quota used up ({lines[0].strip()[:80]!r}); "
                            f"next call in {format_duration(until_midnight)}, after 00:00 UTC")

    def _stooq_quote(self, target: Target, rows: dict[str, dict], now: float) -> Quote:
        row = rows.get(target.stooq.upper())
        if row is None:
            raise ProviderError(TRANSIENT, f"stooq: the response has no row for {target.stooq}")
        try:
            price = number(row.get("Close"))
            ts = stooq_time(row.get("Date") or "", row.get("Time") or "")
        except ZoneInfoNotFoundError:
            raise ProviderError(TRANSIENT, f"stooq: the time zone database has no {STOOQ_ZONE}; "
                                "install the tzdata package") from None
        except ValueError:
            price = None
        if price is None:
            raise ProviderError(PERMANENT, f"stooq: unknown symbol {target.stooq} (N/D); "
                                f"set stooq_symbols.{target.yahoo} in the config")

        # Stooq sends no session data, so the trading day Yahoo last returned gives the session while that day lasts.
        periods = self._periods.get(target.yahoo, {})
        day_start = (periods.get("pre") or {}).get("start")
        day_end = (periods.get("post") or {}).get("end")
        if isinstance(day_start, int) and isinstance(day_end, int) and day_start <= now < day_end:
            session = trading_session(periods, now)
        else:
            session = "unknown"
        currency = "USD" if target.stooq.endswith(".us") else None
        return Quote(price, ts, currency, session, is_stale(periods, session, ts), "stooq")
