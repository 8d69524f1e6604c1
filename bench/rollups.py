#!/usr/bin/env python3
"""Size of a year of rollups for 1,000 symbols, and the writer's cost of keeping them.

Usage: python bench/rollups.py [--quick | --smoke] [--runs N]

Creates a new Oculus database file and fills its rollup tables with the rows
the writer keeps under the default retention for 1,000 symbols sampled every
30 s: one year of 1-hour rows and 14 days of 1-minute rows (the defaults of
database.rollups_1h_retention and rollups_1m_retention). It adds them in the
order the writer does, by bucket, then symbol. The rows are generated in SQL, not
folded from a year of raw samples, which would take 1 billion samples. Values
follow four kinds of symbols: response times in full double precision (40 %),
prices with two decimals (30 %), constant status codes (20 %) and whole-number
indexes (10 %). After a checkpoint the file size is measured. Then, on that
file, it times the writer's once-a-minute fold pass and a 365-day chart query.
--quick makes one year of 1-hour rows only; --smoke, 10 symbols for a week.
Results go to bench/results/rollups.json, which bench/run_all.py puts on
docs/benchmarks.md.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import common  # noqa: E402
from oculus.config.schema import DATABASE  # noqa: E402
from oculus.storage import Database, utc_now  # noqa: E402
from oculus.storage.rollups import COMPLETE_MARK, HOUR, RollupFolder, floor_time, rollup_series  # noqa: E402

RETENTION_DAYS = {field.name: int(field.default // 86400) for field in DATABASE.fields
                  if field.name.startswith("rollups")}
SIZES = {  # mode: (symbols, days of 1-hour rows, days of 1-minute rows)
    "smoke": (10, 7, 1),
    "quick": (1000, RETENTION_DAYS["rollups_1h_retention"], 0),
    "full": (1000, RETENTION_DAYS["rollups_1h_retention"], RETENTION_DAYS["rollups_1m_retention"]),
}
SAMPLE_EVERY = 30  # seconds between two samples of a symbol, the collectors' default interval

# One row per symbol and bucket. The caller seeds random(); `kind` picks the value shape of the symbol.
_GENERATE = """
    INSERT INTO {table}
    WITH grid AS (
        SELECT symbol_index,
               $start::TIMESTAMP + to_seconds(bucket_index * $seconds) AS bucket,
               CASE WHEN symbol_index % 10 < 4 THEN 'rtt' WHEN symbol_index % 10 < 7 THEN 'price'
                    WHEN symbol_index % 10 < 9 THEN 'status' ELSE 'index' END AS kind,
               100 + 50 * sin(bucket_index / 97.0 + symbol_index) AS level
        FROM range($buckets) AS buckets(bucket_index), range($symbols) AS symbols(symbol_index)
    ), shaped AS (
        SELECT *,
               CASE kind WHEN 'rtt' THEN level + random() * 20
                         WHEN 'price' THEN round(level * 10 + random() * 5, 2)
                         WHEN 'status' THEN 200.0
                         ELSE round(level / 3) END AS typical,
               random() < 0.01 AS had_failure
        FROM grid
    )
    SELECT 'bench.' || kind || '.s' || lpad(symbol_index::VARCHAR, 4, '0') || '.value',
           bucket,
           $per_bucket,
           CASE WHEN had_failure THEN 1 ELSE 0 END,
           $per_bucket - CASE WHEN had_failure THEN 1 ELSE 0 END,
           CASE kind WHEN 'rtt' THEN typical - random() * 10 WHEN 'price' THEN round(typical - random() * 3, 2)
                     ELSE typical END,
           CASE kind WHEN 'rtt' THEN typical + random() * 40 WHEN 'price' THEN round(typical + random() * 3, 2)
                     ELSE typical END,
           typical * ($per_bucket - CASE WHEN had_failure THEN 1 ELSE 0 END)
               + CASE kind WHEN 'rtt' THEN random() ELSE 0 END,
           CASE kind WHEN 'rtt' THEN typical + random() WHEN 'price' THEN round(typical + random(), 2)
                     ELSE typical END,
           bucket + to_seconds($seconds - 1 - (symbol_index % $sample_every))
    FROM shaped
    ORDER BY bucket, symbol_index
"""


def generate(connection, table: str, seconds: int, symbols: int, days: int, end, seed: float) -> int:
    """Add `days` of rows ending at `end` to `table`; return how many."""
    buckets = days * 86400 // seconds
    connection.execute("SELECT setseed(?)", [seed])
    return connection.execute(_GENERATE.format(table=table), {
        "start": floor_time(end, seconds) - timedelta(seconds=buckets * seconds), "seconds": seconds,
        "buckets": buckets, "symbols": symbols, "per_bucket": max(1, seconds // SAMPLE_EVERY),
        "sample_every": SAMPLE_EVERY,
    }).fetchone()[0]


def build_file(path: str, symbols: int, hour_days: int, minute_days: int, seed: float) -> dict:
    """Create a database at `path` holding the rollups; return its row counts and file size."""
    database = Database(path)
    database.open()
    now = utc_now()
    hour_rows = generate(database.connection, "rollups_1h", 3600, symbols, hour_days, now, seed)
    minute_rows = generate(database.connection, "rollups_1m", 60, symbols, minute_days, now, seed) \
        if minute_days else 0
    database.close()  # checkpoints, so the file contains everything and no WAL is left
    return {"hour_rows": hour_rows, "minute_rows": minute_rows, "bytes": os.path.getsize(path)}


def time_fold_pass(path: str, symbols: int, samples_per_symbol: int, runs: int) -> list[float]:
    """Time the writer's fold of one minute of raw samples into a file full of rollups; return ms per pass."""
    database = Database(path)
    database.open()
    connection = database.connection
    folder = RollupFolder()
    timings = []
    start = floor_time(utc_now(), 60)
    for run in range(runs):
        minute = start + timedelta(minutes=run)
        connection.execute("UPDATE watermarks SET ts = ? WHERE name = ?", [minute, COMPLETE_MARK])
        connection.execute("""
            INSERT INTO samples (ts, category, symbol, value, success)
            SELECT $minute::TIMESTAMP + to_microseconds((sample_index * 60000000 // $per_symbol)::BIGINT), 'bench',
                   'bench.fold.s' || symbol_index || '.value', random() * 100, true
            FROM range($per_symbol) AS samples(sample_index), range($symbols) AS symbols(symbol_index)
            ORDER BY 1
        """, {"minute": minute, "per_symbol": samples_per_symbol, "symbols": symbols})
        folder.load(connection)
        started = time.perf_counter()
        folder.fold(connection, end=minute + timedelta(minutes=1))
        timings.append((time.perf_counter() - started) * 1000)
    database.close()
    return timings


def time_year_chart(path: str, runs: int, days: int) -> list[float]:
    """Time reading a 365-day chart (one point a day) of one symbol from the 1-hour rollups; return ms per read."""
    database = Database(path)
    database.open()
    cursor = database.reader()
    symbol = cursor.execute("SELECT symbol FROM rollups_1h LIMIT 1").fetchone()[0]
    now = utc_now()
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        points, _summary = rollup_series(cursor, HOUR, symbol, now - timedelta(days=365), now, 86400)
        timings.append((time.perf_counter() - started) * 1000)
        assert len(points) >= days, f"expected a point for each of {days} days, got {len(points)}"
    database.close()
    return timings


def main(argv=None) -> int:
    args = common.parse_args(__doc__.splitlines()[0], argv, quick_runs=1)
    started = time.time()
    symbols, hour_days, minute_days = SIZES[args.mode]

    with tempfile.TemporaryDirectory(prefix="oculus-bench-rollups-") as work:
        # The size depends on the data only; two seeds gave the same size to 0.1 MB, so each file is built once.
        path = os.path.join(work, "rollups.duckdb")
        build = build_file(path, symbols, hour_days, minute_days, seed=0.1)
        print(f"{build['hour_rows']:,} hour rows, {build['minute_rows']:,} minute rows, {build['bytes'] / 1e6:.1f} MB",
              flush=True)
        hour_only = os.path.join(work, "hours.duckdb")
        hour_build = build_file(hour_only, symbols, hour_days, 0, seed=0.5) if minute_days else build
        fold_runs = max(3, args.runs)
        fold_sparse = time_fold_pass(path, symbols, 60 // SAMPLE_EVERY, fold_runs)
        fold_dense = time_fold_pass(path, symbols, 60, fold_runs)
        chart = time_year_chart(path, max(5, args.runs), hour_days)

    scope = f"{symbols:,} symbols"
    hour_mb = hour_build["bytes"] / 1e6
    figures = [
        common.figure("rollups_year_hours_mb", f"database file with {hour_days} days of 1-hour rollups, {scope}",
                      [hour_mb], "MB", None, "", f"{hour_build['hour_rows']:,} rows, "
                      f"{hour_build['bytes'] / hour_build['hour_rows']:.1f} bytes per row"),
    ]
    if minute_days:
        figures.append(common.figure(
            "rollups_default_retention_mb",
            f"database file with {hour_days} days of 1-hour and {minute_days} days of 1-minute rollups, {scope}",
            [build["bytes"] / 1e6], "MB", None, "",
            ("the default retention; " if args.mode == "full" else "")
            + f"{build['hour_rows'] + build['minute_rows']:,} rows; the 1-minute rows take "
            f"{(build['bytes'] - hour_build['bytes']) / minute_days / 1e6:.0f} MB a day"))
    figures += [
        common.figure("rollups_fold_sparse_ms", f"writer's fold pass: one minute of {scope} sampled every "
                      f"{SAMPLE_EVERY} s", fold_sparse, "ms", None, "",
                      "once a minute; aggregates the minute's raw samples and merges them into the 1-hour rows"),
        common.figure("rollups_fold_dense_ms", f"writer's fold pass: one minute of {scope} sampled every second",
                      fold_dense, "ms", None, "", f"{symbols * 60:,} samples in the minute"),
        common.figure("rollups_year_chart_ms", "365-day chart of one symbol from the 1-hour rollups", chart, "ms",
                      None, "", "one point a day, as the symbol page's 365d range"),
    ]
    text = (f"One file is written: {hour_days} days of 1-hour rows"
            + (f" and {minute_days} days of 1-minute rows" if minute_days else "")
            + f" for {scope}, generated in SQL in the order the writer adds them, then checkpointed. "
            "Value shapes: 40 % response times in full double precision, 30 % prices with two decimals, "
            "20 % constant status codes, 10 % whole-number indexes; 1 % of the buckets hold a failed sample. "
            "Full-precision values compress least, so a fleet of only network probes makes a larger file. "
            "The rows are written once, whereas the writer updates the current hour's rows every minute; the "
            "effect of those updates on the file is not measured here.")
    common.save_result("rollups", "Rollups", args, started, figures, [{"title": "Data", "text": text}])
    return 0


if __name__ == "__main__":
    sys.exit(main())
