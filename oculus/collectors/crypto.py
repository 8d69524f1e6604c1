"""Crypto spot prices and 24 h changes from CoinGecko, with Coinbase or Binance as a price fallback.

One CoinGecko /simple/price request covers every asset and quote currency.
When CoinGecko fails for the whole batch, or returns no price for one asset,
that asset's price is asked from the fallback exchange instead, one request
per asset. The 24 h change comes only from CoinGecko, so it has no fallback.
"""

from __future__ import annotations

import logging
import re
import time

from oculus.collectors import coingecko
from oculus.collectors.base import Reading
from oculus.collectors.market import MarketCollector, base_url, market_fields
from oculus.collectors.provider import PERMANENT, TRANSIENT, ProviderError, number, utc_from_unix
from oculus.config.schema import REQUIRED, Field, Invalid, choice
from oculus.config.values import reveal

log = logging.getLogger(__name__)

# Error kinds beyond the provider's permanent, transient and rate_limited.
MISSING = "missing"  # the source replied without this value

_QUOTE = re.compile(r"[a-z]{2,10}")


def quotes(value) -> list[str]:
    """Parse `quotes`: one currency code or a list of them, such as usd or [usd, eur]."""
    items = value if isinstance(value, list) else [value]
    result = []
    for item in items:
        item = reveal(item)
        code = item.strip().lower() if isinstance(item, str) else None
        if code is None or not _QUOTE.fullmatch(code):
            raise Invalid(f"expected quote currency codes such as usd or [usd, eur], got {item!r}")
        if code in result:
            raise Invalid(f'quote currency "{code}" is listed twice')
        result.append(code)
    if not result:
        raise Invalid("expected at least one quote currency, such as [usd]")
    return result


class CryptoCollector(MarketCollector):
    """Price and 24 h change per asset and quote currency.

    Emits crypto.price.<asset>_<quote> and crypto.change_24h_pct.<asset>_<quote>.
    """

    TYPE = "crypto"
    CATEGORY = "crypto"
    PROVIDER = coingecko.PROVIDER
    DEFAULT_INTERVAL = 60.0  # polling faster spends the shared free-tier rate limit for nothing
    FIELDS = (
        Field("assets", coingecko.assets, REQUIRED,
              "Assets to price: a list of well-known tickers such as [btc, eth], "
              "or a mapping of ticker to CoinGecko id such as {btc: bitcoin, pepe: pepe}."),
        Field("quotes", quotes, ["usd"], "Quote currencies, such as [usd, eur]."),
        Field("fallback", choice("none", "binance", "coinbase"), "coinbase",
              "Exchange that supplies a price CoinGecko does not return: coinbase, binance or none."),
        Field("coinbase_url", base_url, "https://api.coinbase.com", "Base URL of the Coinbase API (fallback)."),
        Field("binance_url", base_url, "https://api.binance.com", "Base URL of the Binance spot API (fallback)."),
    ) + market_fields(coingecko.PROVIDER, coingecko.DEFAULT_URL, 600.0)

    @classmethod
    def describe_target(cls, options: dict) -> str:
        pairs = [f"{asset}_{quote}" for asset in options["assets"] for quote in options["quotes"]]
        return f"CoinGecko: {', '.join(pairs)}"

    def pairs(self) -> list[tuple[str, str, str]]:
        """(ticker, CoinGecko id, quote) for every price this collector records, in config order."""
        return [(asset, coin, quote) for asset, coin in self.options["assets"].items()
                for quote in self.options["quotes"]]

    def symbols(self) -> list[str]:
        names = []
        for asset, _, quote in self.pairs():
            names += [price_symbol(asset, quote), change_symbol(asset, quote)]
        return names

    def collect(self, deadline: float) -> list[Reading]:
        try:
            body = self._fetch_simple_price(deadline)
        except ProviderError as error:
            return self._readings_without_coingecko(error, deadline)

        readings = []
        for asset, coin, quote in self.pairs():
            entry = body.get(coin)
            readings.append(self._price_reading(asset, coin, quote, entry, deadline))
            readings.append(_change_reading(asset, coin, quote, entry))
        return readings

    def _fetch_simple_price(self, deadline: float) -> dict:
        params = {
            "ids": ",".join(self.options["assets"].values()),
            "vs_currencies": ",".join(self.options["quotes"]),
            "include_24hr_change": "true",
            "include_last_updated_at": "true",
        }
        body = self.provider.get("/api/v3/simple/price", deadline, params=params).json()
        if not isinstance(body, dict):
            raise ProviderError(TRANSIENT, f"CoinGecko: expected an object keyed by coin id, "
                                f"got a JSON {type(body).__name__}")
        self.provider.succeeded()
        return body

    def _readings_without_coingecko(self, error: ProviderError, deadline: float) -> list[Reading]:
        """Record every 24 h change as failed and ask the fallback for every price."""
        readings = []
        for asset, _, quote in self.pairs():
            readings.append(self._fallback_reading(asset, quote, error.message, error.kind, deadline))
            readings.append(Reading(change_symbol(asset, quote), None, False, error.message,
                                    {"error_kind": error.kind, "source": "coingecko"}))
        return readings

    # -- price -------------------------------------------------------------

    def _price_reading(self, asset: str, coin: str, quote: str, entry, deadline: float) -> Reading:
        problem, kind = _coingecko_problem(asset, coin, quote, entry)
        if problem is None:
            try:
                price = number(entry.get(quote))
            except ValueError as exc:
                problem, kind = f"CoinGecko: invalid {quote} price for {coin}: {exc}", TRANSIENT
        if problem is not None:
            return self._fallback_reading(asset, quote, problem, kind, deadline)

        tags = {"unit": quote.upper(), "currency": quote.upper(), "source": "coingecko", "coin_id": coin}
        return Reading(price_symbol(asset, quote), price, True, None, tags, _updated_at(entry))

    def _fallback_reading(self, asset: str, quote: str, problem: str, kind: str, deadline: float) -> Reading:
        """Ask the fallback exchange for a price CoinGecko did not give; both errors go into a failure."""
        symbol = price_symbol(asset, quote)
        method = self.options["fallback"]
        if method == "none":
            return Reading(symbol, None, False, problem, {"error_kind": kind, "source": "coingecko"})
        if time.monotonic() >= deadline:
            return Reading(symbol, None, False, f"{problem}; no time left to ask {method}",
                           {"error_kind": kind, "source": "coingecko"})

        fetch = self._coinbase_price if method == "coinbase" else self._binance_price
        try:
            price, tags = fetch(asset, quote, deadline)
        except ProviderError as error:
            log.debug("fallback failed collector=%s symbol=%s source=%s error=%s",
                      self.name, symbol, method, error.message)
            return Reading(symbol, None, False, f"{problem}; fallback {error.message}",
                           {"error_kind": kind, "fallback_error_kind": error.kind, "source": method})
        log.debug("fallback used collector=%s symbol=%s source=%s", self.name, symbol, method)
        return Reading(symbol, price, True, None, {**tags, "primary_error": problem})

    def _coinbase_price(self, asset: str, quote: str, deadline: float) -> tuple[float, dict]:
        """GET /v2/prices/BASE-QUOTE/spot; the reply must name the requested pair."""
        base, currency = asset.upper(), quote.upper()
        provider = self.provider_for("Coinbase", self.options["coinbase_url"])
        body = provider.get(f"/v2/prices/{base}-{currency}/spot", deadline).json()

        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, dict):
            raise ProviderError(TRANSIENT, "Coinbase: the response has no data object")
        # Old Coinbase bugs returned quotes in another currency than the one requested.
        if data.get("base") != base or data.get("currency") != currency:
            raise ProviderError(TRANSIENT, f"Coinbase: requested {base}-{currency}, "
                                f"got {data.get('base')}-{data.get('currency')}")
        price = _required_number(data.get("amount"), f"Coinbase: amount for {base}-{currency}")
        provider.succeeded()
        return price, {"unit": currency, "currency": currency, "source": "coinbase"}

    def _binance_price(self, asset: str, quote: str, deadline: float) -> tuple[float, dict]:
        """GET /api/v3/ticker/price?symbol=BASEQUOTE; a USD price is read from the USDT pair.

        Binance's spot market quotes against USDT, not USD, so for quote usd
        the BTCUSDT price is recorded under crypto.price.btc_usd, tagged
        quote_source=usdt, which keeps the series continuous for rules and
        charts. This assumes 1 USDT = 1 USD. USDT usually trades within a few
        tenths of a percent of USD (an estimate), more only when it loses its peg.
        """
        pair_quote = "USDT" if quote == "usd" else quote.upper()
        pair = asset.upper() + pair_quote  # Binance rejects lower-case symbols (error -1100)
        provider = self.provider_for("Binance", self.options["binance_url"])
        body = provider.get("/api/v3/ticker/price", deadline, params={"symbol": pair}).json()

        if not isinstance(body, dict) or body.get("symbol") != pair:
            got = body.get("symbol") if isinstance(body, dict) else type(body).__name__
            raise ProviderError(TRANSIENT, f"Binance: requested {pair}, got {got}")
        price = _required_number(body.get("price"), f"Binance: price for {pair}")
        provider.succeeded()

        tags = {"unit": quote.upper(), "currency": quote.upper(), "source": "binance"}
        if pair_quote == "USDT":
            tags["quote_source"] = "usdt"
        return price, tags


# -- helpers ---------------------------------------------------------------

def price_symbol(asset: str, quote: str) -> str:
    return f"crypto.price.{asset}_{quote}"


def change_symbol(asset: str, quote: str) -> str:
    return f"crypto.change_24h_pct.{asset}_{quote}"


def _coingecko_problem(asset: str, coin: str, quote: str, entry) -> tuple[str | None, str | None]:
    """Return (error, kind) when CoinGecko's entry for `coin` has no usable `quote` price."""
    if entry is None:
        # CoinGecko leaves unknown ids out of the object (HTTP 200, no error).
        return (f'CoinGecko: unknown id "{coin}" (no data returned for it); '
                f"fix assets.{asset} in the config"), PERMANENT
    if not isinstance(entry, dict) or entry.get(quote) is None:
        return f"CoinGecko: no {quote} price for {coin}", MISSING
    return None, None


def _change_reading(asset: str, coin: str, quote: str, entry) -> Reading:
    symbol = change_symbol(asset, quote)
    problem, kind = _coingecko_problem(asset, coin, quote, entry)
    if problem is not None:
        return Reading(symbol, None, False, problem, {"error_kind": kind, "source": "coingecko"})

    try:
        change = number(entry.get(f"{quote}_24h_change"))
    except ValueError as exc:
        return Reading(symbol, None, False, f"CoinGecko: invalid 24h change for {coin}: {exc}",
                       {"error_kind": TRANSIENT, "source": "coingecko"})
    if change is None:
        # CoinGecko documents a null change as the sign of a stale price; it is missing, not 0 %.
        return Reading(symbol, None, False, f"CoinGecko: no 24h change for {coin} in {quote}",
                       {"error_kind": MISSING, "source": "coingecko"}, _updated_at(entry))
    tags = {"unit": "%", "currency": quote.upper(), "source": "coingecko", "coin_id": coin}
    return Reading(symbol, change, True, None, tags, _updated_at(entry))


def _updated_at(entry: dict):
    """Return the source time of a CoinGecko entry (last_updated_at, unix seconds), or None."""
    try:
        seconds = number(entry.get("last_updated_at"))
    except ValueError:
        return None
    return utc_from_unix(seconds) if seconds is not None else None


def _required_number(value, field_label: str) -> float:
    try:
        parsed = number(value)
    except ValueError as exc:
        raise ProviderError(TRANSIENT, f"{field_label} is invalid: {exc}") from None
    if parsed is None:
        raise ProviderError(TRANSIENT, f"{field_label} is missing")
    return parsed
