"""What every CoinGecko collector shares: the provider name, the base URL and asset settings.

CoinGecko counts every keyless request from one IP address against one limit.
Every collector that calls it must therefore use the same PROVIDER and base
URL, so that shared_provider() returns one Provider and a 429 seen by one
collector pauses all of them.
"""

from __future__ import annotations

import re

from oculus.config.schema import Invalid
from oculus.config.values import reveal

PROVIDER = "CoinGecko"
DEFAULT_URL = "https://api.coingecko.com"

# Tickers a config may list without spelling out the CoinGecko id (ids as used by
# the keyless API in 2026). Any other coin needs a `ticker: coingecko-id` mapping.
KNOWN_IDS = {
    "btc": "bitcoin",
    "eth": "ethereum",
    "usdt": "tether",
    "usdc": "usd-coin",
    "bnb": "binancecoin",
    "xrp": "ripple",
    "sol": "solana",
    "ada": "cardano",
    "doge": "dogecoin",
    "trx": "tron",
    "dot": "polkadot",
    "ltc": "litecoin",
    "bch": "bitcoin-cash",
    "link": "chainlink",
    "xlm": "stellar",
    "avax": "avalanche-2",
    "xmr": "monero",
    "atom": "cosmos",
    "etc": "ethereum-classic",
    "shib": "shiba-inu",
    "sui": "sui",
    "hype": "hyperliquid",
    "uni": "uniswap",
    "near": "near",
    "apt": "aptos",
}

_TICKER = re.compile(r"[a-z0-9]{1,20}")
# CoinGecko ids are lower case words joined by hyphens ("avalanche-2", "usd-coin").
_COIN_ID = re.compile(r"[a-z0-9][a-z0-9._-]{0,99}")


def ticker(value) -> str:
    """Parse a ticker such as "btc"; it becomes the <asset> part of a symbol, so no '_' or '.'."""
    value = reveal(value)
    if isinstance(value, str) and _TICKER.fullmatch(value.strip().lower()):
        return value.strip().lower()
    raise Invalid(f"expected a ticker of 1 to 20 letters or digits such as btc, got {value!r}")


def coin_id(value) -> str:
    value = reveal(value)
    if isinstance(value, str) and _COIN_ID.fullmatch(value.strip()):
        return value.strip()
    raise Invalid(f"expected a CoinGecko id in lower case such as bitcoin or avalanche-2, got {value!r}")


def assets(value) -> dict[str, str]:
    """Parse `assets`: a mapping of ticker to CoinGecko id, or a list of tickers from KNOWN_IDS.

    Returns {ticker: coingecko_id} in config order.
    """
    if isinstance(value, list):
        return _assets_from_tickers(value)
    if isinstance(value, dict) and value:
        return _assets_from_mapping(value)
    raise Invalid("expected a list of tickers such as [btc, eth], "
                  "or a mapping of ticker to CoinGecko id such as {btc: bitcoin}")


def _assets_from_tickers(items: list) -> dict[str, str]:
    if not items:
        raise Invalid("expected at least one ticker, such as [btc, eth]")
    result = {}
    for item in items:
        name = ticker(item)
        if name in result:
            raise Invalid(f'ticker "{name}" is listed twice')
        if name not in KNOWN_IDS:
            raise Invalid(f'unknown ticker "{name}": it is not in the built-in table '
                          f"({', '.join(sorted(KNOWN_IDS))}); map it to its CoinGecko id, "
                          f"for example assets: {{{name}: <coingecko-id>}}")
        result[name] = KNOWN_IDS[name]
    return _without_duplicate_ids(result)


def _assets_from_mapping(mapping: dict) -> dict[str, str]:
    result = {}
    for key, item in mapping.items():
        name = ticker(key)
        if name in result:
            raise Invalid(f'ticker "{name}" is listed twice')
        result[name] = coin_id(item)
    return _without_duplicate_ids(result)


def _without_duplicate_ids(result: dict[str, str]) -> dict[str, str]:
    seen = {}
    for name, identifier in result.items():
        if identifier in seen:
            raise Invalid(f'tickers "{seen[identifier]}" and "{name}" both map to the CoinGecko id "{identifier}"')
        seen[identifier] = name
    return result
