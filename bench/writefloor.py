#!/usr/bin/env python3
"""DuckDB alone, taking the writes of 1,000 HTTP targets probed every 5 s, to compare with Oculus's RSS.

Usage: python bench/writefloor.py SECONDS [TARGETS]

No Oculus code runs here, only duckdb and plain SQL. Every second the script
inserts one second's samples into a samples table in one statement: TARGETS / 5
probe results of two symbols each. It then upserts them into a latest table
with a primary key, as a minimal store of probe results would, and it
checkpoints once a minute, but it never makes DuckDB drop the dead entries of
its eviction queues, as Oculus's writer does. Run beside Oculus, its RSS shows
how DuckDB itself grows under the same writes without that release.
"""

from __future__ import annotations

import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import duckdb

SCHEMA = """
    CREATE TABLE samples (ts TIMESTAMP, symbol VARCHAR, value DOUBLE, success BOOLEAN);
    CREATE TABLE latest (symbol VARCHAR PRIMARY KEY, ts TIMESTAMP, value DOUBLE, success BOOLEAN);
"""
INSERT = """
    INSERT INTO samples SELECT $ts::TIMESTAMP, unnest($symbols::VARCHAR[]), unnest($values::DOUBLE[]), true
"""
UPSERT = """
    INSERT OR REPLACE INTO latest
    SELECT unnest($symbols::VARCHAR[]), $ts::TIMESTAMP, unnest($values::DOUBLE[]), true
"""


def run(seconds: float, targets: int) -> None:
    results_per_second = max(1, targets // 5)
    names = [f"net.http.t{index:05d}" for index in range(targets)]
    with tempfile.TemporaryDirectory(prefix="oculus-bench-writefloor-") as workdir:
        connection = duckdb.connect(str(Path(workdir) / "floor.duckdb"))
        connection.execute(SCHEMA)
        started = time.monotonic()
        last_checkpoint = started
        second = 0
        while time.monotonic() - started < seconds:
            first = (second * results_per_second) % targets
            batch = [names[(first + offset) % targets] for offset in range(results_per_second)]
            symbols = [f"{name}.{kind}" for name in batch for kind in ("rtt_ms", "status")]
            values = [float(index % 200) for index in range(len(symbols))]
            params = {"ts": datetime.now(timezone.utc).replace(tzinfo=None), "symbols": symbols, "values": values}
            connection.execute(INSERT, params)
            connection.execute(UPSERT, params)
            if time.monotonic() - last_checkpoint >= 60:
                connection.execute("CHECKPOINT")
                last_checkpoint = time.monotonic()
            second += 1
            time.sleep(max(0.0, started + second - time.monotonic()))
        connection.close()


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__.splitlines()[2])
    run(float(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) == 3 else 1000)
