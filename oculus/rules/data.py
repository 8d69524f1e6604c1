"""Batched data reads for one evaluation pass: every latest value in one query, every window in another.

Reading per rule would cost one round trip per rule and symbol; 500 rules
would then take seconds. Instead the pass collects what all rules need and
runs two queries. The same two queries take a list of times, so a backtest
reads hundreds of simulated passes at once instead of paying DuckDB's
per-query overhead (about 1 ms) on each of them. The tables are named with their catalog and schema so
that a backtest's time-filtered temporary views of the same names, which
exist for SQL rules, do not slow these queries down.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(slots=True)
class LatestSample:
    ts: datetime
    value: float | None
    success: bool


@dataclass(slots=True)
class WindowStats:
    """Aggregates of the samples of one symbol in (now - window, now]; values skip NULLs."""

    count: int
    avg: float | None
    min: float | None
    max: float | None
    first: float | None
    last: float | None
    any_success: bool


_LATEST_FROM_TABLE = """
    SELECT symbol, ts, value, success FROM {catalog}.main.latest
    WHERE symbol IN (SELECT unnest($symbols::VARCHAR[]))
"""

# The newest sample at or before each time; a backtest reads this because the latest table has no history.
_LATEST_FROM_SAMPLES = """
    WITH times AS (SELECT unnest($times::TIMESTAMP[]) AS t)
    SELECT times.t, s.symbol, max(s.ts), arg_max(s.value, s.ts), arg_max(s.success, s.ts)
    FROM times JOIN {catalog}.main.samples s
      ON s.ts <= times.t AND s.ts > times.t - to_microseconds(CAST($max_age * 1000000 AS BIGINT))
    WHERE s.ts > $oldest AND s.ts <= $newest AND s.symbol IN (SELECT unnest($symbols::VARCHAR[]))
    GROUP BY ALL
"""

# Aggregates of each (symbol, window) at each time, over the samples in (time - window, time].
_WINDOWS = """
    WITH times AS (SELECT unnest($times::TIMESTAMP[]) AS t),
         wanted AS (SELECT unnest($symbols::VARCHAR[]) AS symbol, unnest($seconds::DOUBLE[]) AS seconds)
    SELECT times.t, w.symbol, w.seconds,
           count(s.value), avg(s.value), min(s.value), max(s.value),
           arg_min(s.value, s.ts) FILTER (WHERE s.value IS NOT NULL),
           arg_max(s.value, s.ts) FILTER (WHERE s.value IS NOT NULL),
           coalesce(bool_or(s.success), false)
    FROM times CROSS JOIN wanted w JOIN {catalog}.main.samples s ON s.symbol = w.symbol
    WHERE s.ts > $oldest AND s.ts <= $newest AND s.ts <= times.t
      AND s.ts > times.t - to_microseconds(CAST(w.seconds * 1000000 AS BIGINT))
    GROUP BY ALL
"""


class Snapshot:
    """Data of one evaluation pass at `now`, in the form that compiled conditions read."""

    def __init__(self, now: datetime, latest: dict, windows: dict, freshness):
        self.now = now
        self.latest = latest
        self.windows = windows
        self.freshness = freshness

    def _fresh_latest(self, symbol: str) -> LatestSample | None:
        sample = self.latest.get(symbol)
        if sample is None or (self.now - sample.ts).total_seconds() > self.freshness.limit(symbol):
            return None
        return sample

    def latest_value(self, symbol: str) -> float | None:
        sample = self._fresh_latest(symbol)
        return None if sample is None else sample.value

    def latest_failed(self, symbol: str) -> bool | None:
        sample = self._fresh_latest(symbol)
        return None if sample is None else not sample.success

    def window_function(self, function: str, symbol: str, window: float):
        stats = self.windows.get((symbol, window))
        if function == "stale":
            return stats is None or not stats.any_success
        if function == "count":
            return float(stats.count) if stats is not None else 0.0
        if stats is None or stats.count == 0:
            return None
        if function in ("avg", "min", "max", "last"):
            return getattr(stats, function)
        if stats.count < 2:
            return None  # a change needs two samples
        if function == "change":
            return stats.last - stats.first
        if stats.first == 0:
            return None
        return (stats.last - stats.first) / abs(stats.first) * 100.0


class SnapshotReader:
    """Read the data that a set of requirements needs, as of a given time.

    Live evaluation reads latest values from the writer-maintained `latest`
    table. A backtest sets `from_history`, which reads the same columns from
    `samples` as of the simulated time. Window aggregates always come from
    `samples`, with the same query in both modes.
    """

    def __init__(self, requirements, freshness, from_history: bool = False):
        self.freshness = freshness
        self.from_history = from_history
        self.latest_symbols = sorted({r.symbol for r in requirements})
        windows = sorted({(r.symbol, r.window) for r in requirements if r.window is not None})
        self.window_symbols = [symbol for symbol, _ in windows]
        self.window_seconds = [seconds for _, seconds in windows]
        self.max_window = max(self.window_seconds, default=0.0)
        self.max_age = max((freshness.limit(s) for s in self.latest_symbols), default=0.0)
        self._catalog = None

    def read(self, cursor, now: datetime) -> Snapshot:
        """Return the snapshot at `now`."""
        return self.read_many(cursor, [now])[0]

    def read_many(self, cursor, times: list) -> list[Snapshot]:
        """Return one snapshot per time, with two queries in all. A backtest reads hundreds of passes at once."""
        if self._catalog is None:
            self._catalog = quoted_catalog(cursor)
        latest = self._latest(cursor, times)
        windows = self._windows(cursor, times)
        return [Snapshot(now, latest.get(now, {}), windows.get(now, {}), self.freshness) for now in times]

    def _latest(self, cursor, times: list) -> dict:
        """Return {time: {symbol: LatestSample}}."""
        if not self.latest_symbols:
            return {}
        if not self.from_history:
            rows = cursor.execute(_LATEST_FROM_TABLE.format(catalog=self._catalog),
                                  {"symbols": self.latest_symbols}).fetchall()
            current = {symbol: LatestSample(ts, value, success) for symbol, ts, value, success in rows}
            return dict.fromkeys(times, current)

        rows = cursor.execute(_LATEST_FROM_SAMPLES.format(catalog=self._catalog), {
            "times": times, "symbols": self.latest_symbols, "max_age": self.max_age,
            "oldest": min(times) - timedelta(seconds=self.max_age), "newest": max(times),
        }).fetchall()
        latest: dict = {}
        for now, symbol, ts, value, success in rows:
            latest.setdefault(now, {})[symbol] = LatestSample(ts, value, success)
        return latest

    def _windows(self, cursor, times: list) -> dict:
        """Return {time: {(symbol, window): WindowStats}}."""
        if not self.window_symbols:
            return {}
        rows = cursor.execute(_WINDOWS.format(catalog=self._catalog), {
            "times": times, "symbols": self.window_symbols, "seconds": self.window_seconds,
            "oldest": min(times) - timedelta(seconds=self.max_window), "newest": max(times),
        }).fetchall()
        windows: dict = {}
        for row in rows:
            windows.setdefault(row[0], {})[(row[1], row[2])] = WindowStats(*row[3:])
        return windows


def quoted_catalog(cursor) -> str:
    """Return the quoted name of the cursor's database, such as "oculus" for oculus.duckdb."""
    name = cursor.execute("SELECT current_database()").fetchone()[0]
    return '"' + name.replace('"', '""') + '"'
