"""Altcoin season: the share of altcoins whose price change beats Bitcoin's over a window.

The usual altcoin season index compares the top coins with BTC over 90 days,
but CoinGecko's /coins/markets offers only 1h, 24h, 7d, 14d, 30d, 200d and 1y
windows, so 30d (default) or 7d serve as a proxy. The common reading is
"altcoin season" at 75 % or more, "Bitcoin season" at 25 % or less.

Stablecoins and wrapped or staked copies of other coins track their peg, not
the market, so they are left out (EXCLUDED_IDS plus the `exclude` setting).
Coins without a change for the window (newly listed) are left out of the
ratio, never counted as 0 %.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from oculus.collectors import coingecko
from oculus.collectors.base import Reading
from oculus.collectors.market import MarketCollector, market_fields
from oculus.collectors.provider import PERMANENT, TRANSIENT, ProviderError, number, utc_from_iso
from oculus.config.schema import Field, choice, integer

SYMBOL = "crypto.sentiment.altseason"
BENCHMARK = "bitcoin"
WINDOWS = ("7d", "30d")
MAX_ASSETS = 99  # CoinGecko returns at most 100 rows (its default per_page) and bitcoin takes one

# CoinGecko ids of stablecoins and of wrapped or staked copies of another coin that rank
# among the top coins by market cap. An id that is not in a response costs nothing.
# NOTE: this is a snapshot and new tokens of both kinds keep appearing; users add them with `exclude`.
EXCLUDED_IDS = frozenset({
    # stablecoins
    "tether", "usd-coin", "ethena-usde", "ethena-staked-usde", "dai", "usds", "first-digital-usd",
    "paypal-usd", "true-usd", "binance-usd", "frax", "usdd", "ripple-usd",
    # wrapped or staked copies
    "wrapped-bitcoin", "staked-ether", "wrapped-steth", "weth", "wrapped-eeth", "coinbase-wrapped-btc",
    "rocket-pool-eth", "binance-peg-weth", "jito-staked-sol", "wrapped-beacon-eth",
    "mantle-staked-ether", "lombard-staked-btc", "solv-btc", "kelp-dao-restaked-eth",
})


def coin_ids(value) -> list[str]:
    items = value if isinstance(value, list) else [value]
    return [coingecko.coin_id(item) for item in items]


@dataclass(frozen=True)
class Coin:
    """One /coins/markets row, reduced to what the ratio needs."""

    id: str
    price: float | None
    changes: dict  # window -> percent change, None when CoinGecko has none
    updated: datetime | None


class AltseasonCollector(MarketCollector):
    """Emits crypto.sentiment.altseason, the percent of candidates that beat BTC over `window`.

    With `assets` set, the candidates are those coins instead of the top
    `top` by market cap, and each also gets crypto.change_<window>_pct.<asset>_usd.
    """

    TYPE = "altseason"
    CATEGORY = "crypto"
    PROVIDER = coingecko.PROVIDER
    DEFAULT_INTERVAL = 3600.0  # polling faster spends the shared free-tier rate limit for nothing
    FIELDS = (
        Field("top", integer(2, 250), 50,
              "How many coins by market cap to fetch as candidates (BTC and excluded coins are then "
              "removed); ignored when assets is set."),
        Field("window", choice(*WINDOWS), "30d", "Period over which each coin's change is compared with BTC's."),
        Field("exclude", coin_ids, [], "CoinGecko ids to leave out besides the built-in stablecoin and "
                                       "wrapped-token list, such as [pax-gold]."),
        Field("assets", coingecko.assets, None,
              "A fixed basket to compare with BTC instead of the top coins: tickers such as [eth, sol] "
              "or a mapping of ticker to CoinGecko id."),
    ) + market_fields(coingecko.PROVIDER, coingecko.DEFAULT_URL, 3 * 3600.0)

    @classmethod
    def check_options(cls, values: dict) -> list[tuple[str | None, str]]:
        basket = values.get("assets") or {}
        problems = []
        if BENCHMARK in basket.values():
            problems.append(("assets", "remove bitcoin: it is the benchmark every asset is compared with"))
        if len(basket) > MAX_ASSETS:
            problems.append(("assets", f"expected at most {MAX_ASSETS} assets, got {len(basket)}"))
        if basket and values.get("exclude"):
            problems.append(("exclude", "exclude applies to the top coins only; with assets set, "
                                        "remove the coins from assets instead"))
        return problems

    @classmethod
    def describe_target(cls, options: dict) -> str:
        if options["assets"]:
            return f"CoinGecko: {', '.join(options['assets'])} vs BTC over {options['window']}"
        return f"CoinGecko: top {options['top']} vs BTC over {options['window']}"

    def symbols(self) -> list[str]:
        basket = self.options["assets"] or {}
        return [SYMBOL] + [change_symbol(asset, self.options["window"]) for asset in basket]

    def collect(self, deadline: float) -> list[Reading]:
        try:
            coins = self._fetch_markets(deadline)
        except ProviderError as error:
            return self.failed_from(error, source="coingecko")

        by_id = {coin.id: coin for coin in coins}
        basket = self.options["assets"]
        if basket:
            candidates = [by_id[coin] for coin in basket.values() if coin in by_id]
        else:
            excluded = EXCLUDED_IDS | set(self.options["exclude"]) | {BENCHMARK}
            candidates = [coin for coin in coins if coin.id not in excluded]

        readings = [self._ratio_reading(by_id.get(BENCHMARK), candidates)]
        for asset, coin_id in (basket or {}).items():
            readings.append(self._candidate_reading(asset, coin_id, by_id.get(coin_id)))
        return readings

    def _fetch_markets(self, deadline: float) -> list[Coin]:
        # Both windows cost one request; the window not chosen goes into a tag.
        params = {"vs_currency": "usd", "price_change_percentage": ",".join(WINDOWS)}
        basket = self.options["assets"]
        if basket:
            params["ids"] = ",".join([BENCHMARK, *basket.values()])
        else:
            params.update(order="market_cap_desc", per_page=str(self.options["top"]), page="1", sparkline="false")
        body = self.provider.get("/api/v3/coins/markets", deadline, params=params).json()
        if not isinstance(body, list):
            raise ProviderError(TRANSIENT, f"CoinGecko: expected a list of coins, got a JSON {type(body).__name__}")
        coins = [_parse_coin(row) for row in body if isinstance(row, dict) and isinstance(row.get("id"), str)]
        self.provider.succeeded()
        return coins

    def _ratio_reading(self, benchmark: Coin | None, candidates: list[Coin]) -> Reading:
        window = self.options["window"]
        ratios = {w: _beating_ratio(benchmark, candidates, w) for w in WINDOWS}
        percent, tags, error = ratios[window]
        if error is not None:
            return Reading(SYMBOL, None, False, error, {"error_kind": "missing", "source": "coingecko",
                                                        "window": window})

        other = next(w for w in WINDOWS if w != window)
        if ratios[other][0] is not None:
            tags[f"altseason_{other}"] = round(ratios[other][0], 2)
        tags.update(unit="%", window=window, source="coingecko")
        return Reading(SYMBOL, percent, True, None, tags, benchmark.updated)

    def _candidate_reading(self, asset: str, coin_id: str, coin: Coin | None) -> Reading:
        window = self.options["window"]
        symbol = change_symbol(asset, window)
        if coin is None:
            return Reading(symbol, None, False, f'CoinGecko: unknown id "{coin_id}" (no row returned for it); '
                           f"fix assets.{asset} in the config", {"error_kind": PERMANENT, "source": "coingecko"})
        if coin.price is None:
            return Reading(symbol, None, False, f"CoinGecko: no current price for {coin_id} "
                           "(inactive or delisted?); left out of the ratio",
                           {"error_kind": "missing", "source": "coingecko"})

        tags = {"price": coin.price, "currency": "USD", "source": "coingecko", "coin_id": coin_id}
        change = coin.changes[window]
        if change is None:
            return Reading(symbol, None, False, f"CoinGecko: no {window} change for {coin_id} "
                           f"(listed less than {window} ago?); left out of the ratio",
                           {**tags, "error_kind": "missing"}, coin.updated)
        return Reading(symbol, change, True, None, {**tags, "unit": "%", "window": window}, coin.updated)


def change_symbol(asset: str, window: str) -> str:
    return f"crypto.change_{window}_pct.{asset}_usd"


def _parse_coin(row: dict) -> Coin:
    """Read one row; a value that is not a number counts as missing, like null."""
    changes = {w: _optional_number(row.get(f"price_change_percentage_{w}_in_currency")) for w in WINDOWS}
    try:
        updated = utc_from_iso(row["last_updated"]) if isinstance(row.get("last_updated"), str) else None
    except ValueError:
        updated = None
    return Coin(row["id"], _optional_number(row.get("current_price")), changes, updated)


def _optional_number(value) -> float | None:
    try:
        return number(value)
    except ValueError:
        return None


def _beating_ratio(benchmark: Coin | None, candidates: list[Coin], window: str):
    """Return (percent, tags, error): the percent of priced candidates whose change beats BTC's."""
    if benchmark is None:
        return None, {}, "CoinGecko: bitcoin, the benchmark, is missing from the response"
    target = benchmark.changes[window]
    if target is None:
        return None, {}, f"CoinGecko: no {window} change for bitcoin, the benchmark"

    counted = [coin for coin in candidates if coin.price is not None and coin.changes[window] is not None]
    if not counted:
        return None, {}, f"no candidate has a current price and a {window} change"
    beating = sum(1 for coin in counted if coin.changes[window] > target)
    tags = {"candidates": len(counted), "beating": beating, "skipped": len(candidates) - len(counted),
            "btc_change_pct": target}
    return 100.0 * beating / len(counted), tags, None
