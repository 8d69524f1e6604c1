"""Which symbols the configured collectors emit, and how old a sample may be before it counts as no data."""

from __future__ import annotations

import logging

from oculus.collectors import registry

log = logging.getLogger(__name__)

# Collector types whose symbols are known only after a run: any symbol under these prefixes may appear.
_DYNAMIC_PREFIXES = {
    "polymarket": lambda spec: (f"pred.poly.{spec.name}.",),
    # A plugin's symbols come from user code, which is not run to validate a config; custom.<name>. is the convention.
    "plugin": lambda spec: (f"custom.{spec.name}.", f"custom.plugin.{spec.name}."),
}


def known_symbols(collectors: list) -> tuple[set, tuple]:
    """Return (exact symbols, symbol prefixes) that the collector specs can emit."""
    exact, prefixes = set(), []
    for spec in collectors:
        if spec.type in _DYNAMIC_PREFIXES:
            prefixes.extend(_DYNAMIC_PREFIXES[spec.type](spec))
            if spec.type == "plugin":
                continue
        exact.update(declared_symbols(spec))
    return exact, tuple(prefixes)


def declared_symbols(spec) -> list[str]:
    """Create the collector just to ask for its symbols, then release it; creating one opens no connection."""
    try:
        collector = registry.create(spec)
    except Exception:  # a collector that cannot even be built is reported by the runtime, not here
        log.debug("cannot list symbols of collector=%s", spec.key, exc_info=True)
        return []
    try:
        return list(collector.symbols())
    except Exception:  # same as above: symbols() of user code may fail
        log.debug("cannot list symbols of collector=%s", spec.key, exc_info=True)
        return []
    finally:
        collector.close()


def owner_intervals(collectors: list) -> tuple[dict, list]:
    """Return ({symbol: collector interval}, [(prefix, interval)]) for the freshness limit of each symbol."""
    exact, prefixes = {}, []
    for spec in collectors:
        if spec.type in _DYNAMIC_PREFIXES:
            prefixes.extend((prefix, spec.interval) for prefix in _DYNAMIC_PREFIXES[spec.type](spec))
            if spec.type == "plugin":
                continue
        for symbol in declared_symbols(spec):
            exact[symbol] = max(exact.get(symbol, 0.0), spec.interval)
    return exact, prefixes


class Freshness:
    """How old the newest sample of a symbol may be before the symbol has no data.

    The limit is alerting.no_data_after, raised to three intervals of the
    collector that emits the symbol, so hourly or daily data is not "no data"
    between two runs.
    """

    INTERVALS = 3

    def __init__(self, no_data_after: float, collectors: list):
        self.no_data_after = no_data_after
        self._exact, self._prefixes = owner_intervals(collectors)
        self._cache: dict = {}

    def limit(self, symbol: str) -> float:
        cached = self._cache.get(symbol)
        if cached is not None:
            return cached
        interval = self._exact.get(symbol)
        if interval is None:
            interval = next((seconds for prefix, seconds in self._prefixes if symbol.startswith(prefix)), 0.0)
        limit = max(self.no_data_after, self.INTERVALS * interval)
        self._cache[symbol] = limit
        return limit
