"""The Crypto Fear & Greed Index from alternative.me (GET /fng/?limit=1).

The index is published once a day for the day starting 00:00 UTC, so polling
more often than every few minutes gains nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from oculus.collectors.base import Reading
from oculus.collectors.market import MarketCollector, market_fields
from oculus.collectors.provider import TRANSIENT, ProviderError, number, utc_from_unix

SYMBOL = "crypto.sentiment.fng"


@dataclass(frozen=True)
class FearGreedValue:
    """One day of the index: 0 (extreme fear) to 100 (extreme greed)."""

    value: int
    classification: str
    day: datetime  # naive UTC, 00:00 of the day the value applies to
    time_until_update: float | None  # seconds; only the newest entry carries it


def parse_fng(body) -> list[FearGreedValue]:
    """Parse a /fng/ response into its entries, newest first.

    Every field arrives as a string ("27", "1773792000"). Raises ProviderError
    when metadata.error is set or an entry is malformed; returns [] when the
    data array is empty.
    """
    if not isinstance(body, dict) or not isinstance(body.get("data"), list):
        raise ProviderError(TRANSIENT, "alternative.me: the response has no data array")
    metadata = body.get("metadata")
    error = metadata.get("error") if isinstance(metadata, dict) else None
    if error:
        raise ProviderError(TRANSIENT, f"alternative.me: {error}")
    return [_parse_entry(entry) for entry in body["data"]]


def _parse_entry(entry) -> FearGreedValue:
    try:
        value = number(entry.get("value"))
        timestamp = number(entry.get("timestamp"))
        until_update = number(entry.get("time_until_update"))
    except (AttributeError, ValueError) as exc:
        raise ProviderError(TRANSIENT, f"alternative.me: invalid entry {entry!r}: {exc}") from None
    if value is None or timestamp is None:
        raise ProviderError(TRANSIENT, f"alternative.me: entry without value or timestamp: {entry!r}")
    return FearGreedValue(int(value), str(entry.get("value_classification") or ""),
                          utc_from_unix(timestamp), until_update)


class FearGreedCollector(MarketCollector):
    """Emits crypto.sentiment.fng (0-100) tagged with its classification, such as Fear."""

    TYPE = "fear_greed"
    CATEGORY = "crypto"
    PROVIDER = "alternative.me"
    DEFAULT_INTERVAL = 3600.0  # polling faster spends the shared free-tier rate limit for nothing
    # The daily value appears shortly after 00:00 UTC; allow a day plus some delay.
    FIELDS = market_fields("alternative.me", "https://api.alternative.me", 30 * 3600.0)

    @classmethod
    def describe_target(cls, options: dict) -> str:
        return "alternative.me Fear & Greed Index"

    def symbols(self) -> list[str]:
        return [SYMBOL]

    def collect(self, deadline: float) -> list[Reading]:
        try:
            response = self.provider.get("/fng/", deadline, params={"limit": "1"})
            entries = parse_fng(response.json())
        except ProviderError as error:
            return self.failed_from(error, source="alternative.me")
        if not entries:
            return [Reading(SYMBOL, None, False, "alternative.me: the response has no data (empty data array)",
                            {"error_kind": "missing", "source": "alternative.me"})]
        self.provider.succeeded()

        latest = entries[0]
        tags = {"unit": "index", "classification": latest.classification, "source": "alternative.me"}
        if latest.time_until_update is not None:
            tags["time_until_update_s"] = int(latest.time_until_update)
        return [Reading(SYMBOL, latest.value, True, None, tags, latest.day)]
