#!/usr/bin/env python3
"""Time one rule evaluation pass: 500 simple rules over 1,000 symbols, and 20 SQL rules.

Usage: python bench/rules.py [--quick | --smoke] [--runs N]

Seeds a temporary DuckDB file with one sample per symbol and minute, for one
hour (10 minutes with --quick, 2 with --smoke). Then it times full passes of
the live engine, which read the data, evaluate and store alert_state through
the writer, and writes the median, minimum and maximum over the runs to
bench/results/rules.json, which bench/run_all.py puts on docs/benchmarks.md.
"""

from __future__ import annotations

import queue
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import common  # noqa: E402
from oculus.collectors.base import Sample  # noqa: E402
from oculus.config import load_config  # noqa: E402
from oculus.rules.engine import RuleEngine  # noqa: E402
from oculus.storage import Database, utc_now  # noqa: E402
from oculus.storage.writer import Writer  # noqa: E402

SYMBOLS = 1000
SIMPLE_RULES = 500
SQL_RULES = 20
MINUTES = {"smoke": 2, "quick": 10, "full": 60}
# A pass should take well under the default 10 s evaluation interval; 10 % of it leaves room for the SQL rules.
PASS_TARGET_MS = 1000.0
# The simple rules have the suite's own, tighter target: one pass of 500 rules over 1,000 symbols in 200 ms.
SIMPLE_PASS_TARGET_MS = 200.0


def symbol(index: int) -> str:
    return f"bench.sym.s{index:04d}.value"


def simple_rule(index: int) -> str:
    """Return rule number `index`, cycling through comparisons, arithmetic, windows, stale and down."""
    a, b = symbol(index % SYMBOLS), symbol((index * 7 + 3) % SYMBOLS)
    shapes = [
        f"{a} > 90",
        f"{a} / {b} > 2 and {b} > 0",
        f"avg({a}, 5m) > 60",
        f"change_pct({a}, 1h) < -5",
        f"max({a}, 15m) - min({a}, 15m) > 50 or stale({b}, 5m)",
        f"down({a}) or count({a}, 10m) == 0",
    ]
    return f"  - name: simple_{index}\n    condition: \"{shapes[index % len(shapes)]}\"\n    for: 30s\n"


def sql_rule(index: int) -> str:
    return (f"  - name: sql_{index}\n"
            "    sql: >-\n"
            "      SELECT symbol, max(value) - min(value) AS spread, avg(value) AS mean FROM metrics\n"
            f"      WHERE symbol LIKE 'bench.sym.s{index % 10}%' AND ts > now() - INTERVAL 1 HOUR\n"
            "      GROUP BY symbol HAVING spread > mean * $threshold\n"
            "    params: {threshold: 0.5}\n"
            "    every: 10s\n")


def seed(writer: Writer, minutes: int) -> None:
    now = utc_now()
    for minute in range(minutes, 0, -1):
        ts = now - timedelta(minutes=minute)
        writer.put([Sample(ts, "bench", symbol(i), float((i * 13 + minute * 7) % 100), i % 50 != 0, 1.0, {})
                    for i in range(SYMBOLS)], timeout=30)
    writer.run_command(lambda conn: None, "flush", timeout=120)


def time_passes(engine: RuleEngine, runs: int, reset_sql: bool) -> list[float]:
    timings = []
    for _ in range(runs):
        if reset_sql:
            for status in engine.evaluator.status.values():
                status.next_run = None
        started = time.perf_counter()
        engine.run_pass()
        timings.append((time.perf_counter() - started) * 1000)
    return timings


def main(argv=None) -> int:
    args = common.parse_args(__doc__.splitlines()[0], argv)
    started = time.time()
    runs = max(5, args.runs) if args.mode != "smoke" else args.runs

    with tempfile.TemporaryDirectory(prefix="oculus-bench-rules-") as directory:
        config_path = Path(directory) / "rules.yaml"
        config_path.write_text("rules:\n" + "".join(simple_rule(i) for i in range(SIMPLE_RULES))
                               + "".join(sql_rule(i) for i in range(SQL_RULES)), encoding="utf-8")
        load_started = time.perf_counter()
        config = load_config(str(config_path), env={}, flags={"path": str(Path(directory) / "bench.duckdb")})
        load_ms = (time.perf_counter() - load_started) * 1000
        print(f"config with {len(config.rules)} rules validated in {load_ms:.0f} ms", flush=True)

        database = Database(config.database.path)
        database.open()
        writer = Writer(database, 10_000, 10_000, 0.5)
        writer.start()
        minutes = MINUTES[args.mode]
        seed(writer, minutes)
        print(f"seeded {SYMBOLS} symbols x {minutes} samples", flush=True)

        try:
            all_rules = config.rules
            config.rules = [rule for rule in all_rules if rule.kind == "simple"]
            simple = RuleEngine(config, database, writer, queue.Queue(maxsize=100_000))
            simple.run_pass()  # the first pass loads alert_state and creates every instance
            simple_ms = time_passes(simple, runs, False)

            config.rules = [rule for rule in all_rules if rule.kind == "sql"]
            sql = RuleEngine(config, database, writer, queue.Queue(maxsize=100_000))
            sql.run_pass()
            sql_ms = time_passes(sql, runs, True)
        finally:
            writer.stop(30)
            database.close()

    history = f"{SYMBOLS} symbols with {minutes} samples each"
    figures = [
        common.figure("simple_pass_ms", f"one pass of {SIMPLE_RULES} simple rules over {SYMBOLS} symbols",
                      simple_ms, "ms", ("<=", SIMPLE_PASS_TARGET_MS), "default interval 10 s",
                      f"{history}; read, evaluate and store alert_state"),
        common.figure("sql_pass_ms", f"one pass of {SQL_RULES} SQL rules", sql_ms, "ms", ("<=", PASS_TARGET_MS),
                      "default interval 10 s", f"{history}; each query groups one hour of metrics"),
        common.figure("load_ms", f"validating a config with {SIMPLE_RULES + SQL_RULES} rules", [load_ms], "ms"),
    ]
    common.save_result("rules", "Rule engine", args, started, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
