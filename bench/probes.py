"""Probe capacity: N HTTP targets on loopback at 5 s and 2 s, servers responding at once or after 5 ms.

For each case, Oculus (from the source tree) probes N paths of a loopback
target server. The server records when each path was requested, so the
achieved probes/s and the late probes are measured at the receiving end. A
probe ran late by more than 1 s when the gap between two requests for one
target exceeded the interval by over a second. CPU and RSS are read from /proc
for the Oculus process alone; the target server runs in its own process.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

# (targets, interval s, server delay ms) per mode, and the length of one measured window in seconds.
CASES = {
    "smoke": [(20, 2.0, 0.0)],
    "quick": [(1000, 5.0, 0.0), (1000, 2.0, 5.0)],
    "full": [(n, interval, delay) for n in (100, 1000) for interval in (5.0, 2.0) for delay in (0.0, 5.0)],
}
# A multiple of both intervals, so every window contains whole probe cycles.
WINDOW = {"smoke": 2.0, "quick": 10.0, "full": 20.0}
LATE_TARGET_PERCENT = 0.1


def measure_case(targets: int, interval: float, delay_ms: float, runs: int, window: float) -> list[dict]:
    """Run one case; return one dict per measured window."""
    windows = []
    with common.TargetServer(delay_ms) as server:
        config = common.http_targets_config(server.url, targets, interval)
        with common.Oculus(config) as oculus:
            # Every target runs once (first runs are spread over up to 2 s), then the schedule is steady.
            time.sleep(interval + 3.0)
            for _ in range(runs):
                server.reset(interval)
                meter = common.CpuMeter([oculus.pid])
                time.sleep(window)
                cpu = meter.read()
                stats = server.stats()
                windows.append({"rate": stats["rate"], "late_percent": 100 * (stats["late_share"] or 0.0),
                                "lateness_p99_ms": 1000 * (stats["lateness_p99"] or 0.0),
                                "cpu_percent": 100 * cpu, "rss": oculus.rss_mib()})
            readiness = oculus.readiness()
    windows[-1]["queue_full_total"] = readiness.get("queue_full_total")
    return windows


def case_figures(targets: int, interval: float, delay_ms: float, windows: list[dict]) -> list[dict]:
    name = f"{targets} targets at {interval:g} s, server {'at once' if not delay_ms else f'+{delay_ms:g} ms'}"
    key = f"{targets}_{interval:g}s_{delay_ms:g}ms"
    late_target = ("<", LATE_TARGET_PERCENT) if targets == 1000 and interval == 5.0 else None
    return [
        common.figure(f"rate_{key}", f"probes/s, {name}", [w["rate"] for w in windows], "probes/s", None, "",
                      f"scheduled rate {targets / interval:g}/s"),
        common.figure(f"late_{key}", f"probes late by > 1 s, {name}", [w["late_percent"] for w in windows], "%",
                      late_target, "Prometheus scheduling p99 ≈ 2 ms late" if late_target else ""),
        common.figure(f"lateness_p99_{key}", f"p99 gap beyond the interval, {name}",
                      [w["lateness_p99_ms"] for w in windows], "ms"),
        common.figure(f"cpu_{key}", f"CPU, {name}", [w["cpu_percent"] for w in windows], "% of one core"),
        common.figure(f"rss_{key}", f"RSS, {name}", [w["rss"] for w in windows], "MiB"),
    ]


def main(argv=None) -> int:
    args = common.parse_args(__doc__.splitlines()[0], argv, quick_runs=2)
    started = time.time()
    window = WINDOW[args.mode]
    figures = []
    for targets, interval, delay_ms in CASES[args.mode]:
        print(f"{targets} targets every {interval:g} s, server delay {delay_ms:g} ms: "
              f"{args.runs} windows of {window:g} s", flush=True)
        windows = measure_case(targets, interval, delay_ms, args.runs, window)
        for item in windows:
            print(f"  {item['rate']:.1f} probes/s, late {item['late_percent']:.3f} %, "
                  f"p99 lateness {item['lateness_p99_ms']:.0f} ms, CPU {item['cpu_percent']:.0f} %, "
                  f"RSS {item['rss']:.0f} MiB", flush=True)
        figures += case_figures(targets, interval, delay_ms, windows)
    sections = [{"title": "How the runs are counted",
                 "text": f"Each run is one {window:g} s window of one Oculus process, measured after every "
                         "target has run once. The windows of one case follow each other in that process."}]
    common.save_result("probes", "Probe capacity", args, started, figures, sections)
    return 0


if __name__ == "__main__":
    sys.exit(main())
