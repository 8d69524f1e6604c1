"""The collector contract shared by every collector type."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(slots=True)
class Reading:
    """One value a collector measured (or failed to measure) during a run."""

    symbol: str
    value: float | None
    success: bool = True
    error: str | None = None
    tags: dict = field(default_factory=dict)
    ts: datetime | None = None  # the source's as-of time (naive UTC); None means the run's start


@dataclass(slots=True)
class Sample:
    """A stored observation: a Reading plus when, how long and which category."""

    ts: datetime  # UTC, naive
    category: str
    symbol: str
    value: float | None
    success: bool
    duration_ms: float
    tags: dict


class Collector:
    """Base class: subclasses set TYPE, CATEGORY and FIELDS and implement collect().

    A collector measures and returns readings. It never writes to the
    database and never decides when it runs: the runtime owns scheduling,
    timestamps, deadlines and storage. Expected failures (refused, timed out,
    DNS) are returned as failed readings; an exception escaping collect() is
    turned into failed samples for every symbol in symbols().
    """

    TYPE = ""
    CATEGORY = "net"
    FIELDS: tuple = ()
    DEFAULT_NAME: str | None = None  # when set, the `name` setting is optional
    DEFAULT_INTERVAL: float | None = None  # replaces the common 30s default, e.g. for daily data

    def __init__(self, spec):
        self.reader = None  # set by the runtime: returns a read-only cursor (never write with it)
        self.spec = spec
        self.name = spec.name
        self.options = spec.options

    @classmethod
    def check_options(cls, values: dict) -> list[tuple[str | None, str]]:
        """Return (key, message) pairs for problems that span several options."""
        return []

    @classmethod
    def describe_target(cls, options: dict) -> str:
        """Return what the collector probes, for the dashboard (secrets print masked)."""
        return str(options.get("host", ""))

    def symbol(self, metric: str) -> str:
        return f"{self.CATEGORY}.{self.TYPE}.{self.name}.{metric}"

    def symbols(self) -> list[str]:
        """Return every symbol a run emits, so a crashed run can be recorded per symbol."""
        raise NotImplementedError

    def collect(self, deadline: float) -> list[Reading]:
        """Measure once; `deadline` is a time.monotonic() value the run must not pass."""
        raise NotImplementedError

    def close(self) -> None:
        """Release sessions and sockets; called when the collector is removed or Oculus stops."""

    def failed(self, error: str, **tags) -> list[Reading]:
        """Return one failed reading per symbol, all carrying `error`."""
        return [Reading(symbol, None, False, error, dict(tags)) for symbol in self.symbols()]
