"""Base class for market collectors: a shared Provider, a base_url option and error mapping."""

from __future__ import annotations

from oculus.collectors.base import Collector, Reading
from oculus.collectors.provider import BROWSER_USER_AGENT, USER_AGENT, ProviderError, shared_provider
from oculus.config.schema import Field, Invalid, duration, text


def base_url(value):
    value = text(value)
    if not str(value).startswith(("http://", "https://")):
        raise Invalid(f'expected an http:// or https:// base URL, got "{value}"')
    return str(value).rstrip("/")


def market_fields(provider: str, default_url: str, stale_after: float) -> tuple[Field, ...]:
    """The `base_url` and `stale_after` settings every market collector has."""
    return (
        Field("base_url", base_url, default_url,
              f"Base URL of the {provider} API; point it at a proxy or a test server."),
        Field("stale_after", duration(1), stale_after,
              "The dashboard marks a value stale when its last good sample is older than this."),
    )


class MarketCollector(Collector):
    """A collector that polls one public market API.

    Subclasses set PROVIDER (the backoff is shared per provider and base URL)
    and CATEGORY, include market_fields(...) in FIELDS, and implement
    symbols() and collect(). The
    collector's name defaults to its type because market symbols are named
    after assets, not after the collector.
    """

    PROVIDER = ""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.TYPE and cls.DEFAULT_NAME is None:
            cls.DEFAULT_NAME = cls.TYPE
    BROWSER_LIKE = False  # send a browser-like User-Agent (Yahoo rejects others with 429)

    def provider_for(self, name: str, url: str):
        return shared_provider(name, url, BROWSER_USER_AGENT if self.BROWSER_LIKE else USER_AGENT)

    @property
    def provider(self):
        return self.provider_for(self.PROVIDER, self.options["base_url"])

    def failed_from(self, error: ProviderError, symbols: list[str] | None = None, **tags) -> list[Reading]:
        """Failed readings for `symbols` (default: all), tagged with the error kind."""
        targets = self.symbols() if symbols is None else symbols
        return [Reading(symbol, None, False, error.message, {"error_kind": error.kind, **tags})
                for symbol in targets]
