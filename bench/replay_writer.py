#!/usr/bin/env python3
"""Replay the writer's statements as fast as they run, and print RSS and DuckDB's eviction-queue entries.

Usage: python bench/replay_writer.py [--batches N] [--no-release]

A profiling tool, not part of `make bench`. Each batch contains the 400 samples
that 1,000 HTTP targets probed every 5 s produce in one second, and goes
through the writer's own insert path (samples, latest table) in one
transaction on a temporary DuckDB file. Every 60 batches it checkpoints and,
unless --no-release is given, releases DuckDB's dead buffer entries as the
writer does once a minute. Every 300 batches it prints the process's RSS and
the entries of duckdb_eviction_queues(). Under heaptrack, this is the run that
found where the RSS growth under load came from.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from datetime import datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from oculus.collectors.base import Sample  # noqa: E402
from oculus.storage import Database  # noqa: E402
from oculus.storage.writer import Writer, release_buffers  # noqa: E402

TARGETS = 1000
RESULTS_PER_BATCH = TARGETS // 5
MEMORY_LIMIT = 256 * 2**20


def rss_mib() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def batch(number: int, names: list[str]) -> list[Sample]:
    ts = datetime(2026, 1, 1) + timedelta(seconds=number)
    samples = []
    for offset in range(RESULTS_PER_BATCH):
        name = names[(number * RESULTS_PER_BATCH + offset) % TARGETS]
        samples.append(Sample(ts, "net", f"{name}.rtt_ms", float(number % 97), True, 3.0, {"status": 200}))
        samples.append(Sample(ts, "net", f"{name}.status", 200.0, True, 3.0, {"status": 200}))
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=3600, help="batches to replay (default 3600)")
    parser.add_argument("--no-release", action="store_true", help="never release DuckDB's dead buffer entries")
    args = parser.parse_args()

    names = [f"net.http.t{index:05d}" for index in range(TARGETS)]
    with tempfile.TemporaryDirectory(prefix="oculus-bench-replay-") as workdir:
        database = Database(str(Path(workdir) / "replay.duckdb"), memory_limit=MEMORY_LIMIT)
        database.open()
        writer = Writer(database, queue_size=1, batch_size=RESULTS_PER_BATCH * 2, flush_interval=1.0)
        pin_cursor = database.new_cursor()
        connection = database.connection
        for number in range(args.batches):
            writer._insert(batch(number, names), [])
            if number % 60 == 59:
                connection.execute("CHECKPOINT")
                if not args.no_release:
                    release_buffers(connection, pin_cursor, f"{MEMORY_LIMIT}B")
            if number % 300 == 299:
                entries, dead = connection.execute(
                    "SELECT sum(approximate_size), sum(dead_nodes) FROM duckdb_eviction_queues()").fetchone()
                print(f"batch {number + 1:5d}  RSS {rss_mib():6.1f} MiB  eviction-queue entries {entries:7d} "
                      f"(dead {dead})", flush=True)
        pin_cursor.close()
        database.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
