#!/usr/bin/env python3
"""Latency of the dashboard and the API on a large database, measured over HTTP with concurrent clients.

Usage: python bench/dashboard.py [--quick | --smoke] [--runs N] [--clients N] [--requests N] [--keep]

Writes 1,000 symbols with 7 days of 30 s samples (20 million rows) straight
into a temporary DuckDB file, in time order as the writer would, starts
Oculus on it (python -m oculus run) and measures /, /partials/metrics,
/api/metrics/<symbol>?since=24h and a typical POST /api/query. In each run,
N clients (default 8) send their requests at the same time, each from its
own process with its own requests.Session. A figure's values are the runs'
medians, or their 95th percentiles. --quick uses 200 symbols and one day, --smoke 50 symbols
and one day. The result goes to bench/results/dashboard.json, which
bench/run_all.py puts on docs/benchmarks.md.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import multiprocessing
import time
from datetime import datetime, timezone
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))

import common  # noqa: E402
from oculus.storage import Database  # noqa: E402

TOKEN = "bench-token"
# Target for the 95th percentile of /partials/metrics, which every open dashboard requests every 2 s.
PARTIAL_P95_TARGET_MS = 50.0
# Measured once on 2026-12-05 with the full data set, in a Python session and with http.client one request at a
# time. This script does not measure it again.
PARTIAL_PROFILE = (
    "Profile of the full data set (1,000 symbols, 7 days), measured once on 2026-12-05 and not re-measured by "
    "this script. Oculus renders the partial at most once a second: the first request after that second waits "
    "for the render, while the others get the previous one. A render takes about 50 ms. Building the rows "
    "takes 31 ms: 3 ms to read the latest table, 7 ms for the values 24 h ago and the rest in Python. The "
    "template takes 7 ms, and gzip 11 ms to shrink the 1.4 MB page to 124 KB. The sparkline query, 34 to 46 ms more, runs at most "
    "every 10 s. Sending the rendered page takes the server about 1 ms, while a requests client needs about "
    "6 ms to receive and decode it, 4.6 ms of that for gzip decoding. So with 8 clients on the same 2 cores "
    "as the server, a request mostly waits for the other clients' work. Each client is a process of its own, "
    "as each viewer's browser is: as threads of one Python process they also waited for each other's GIL, and "
    "the 95th percentile was 54 ms."
)
SIZES = {"full": (1000, 7), "quick": (200, 1), "smoke": (50, 1)}  # symbols, days
SYMBOL = "crypto.price.c0001_usd"
# ts is a TIMESTAMP in UTC; comparing it with now()::TIMESTAMP rather than now() (a TIMESTAMP WITH
# TIME ZONE) lets DuckDB skip old row groups, as docs/api.md recommends.
QUERY = ("SELECT symbol, avg(value) AS avg_value, count(*) AS samples FROM metrics "
         "WHERE category = 'crypto' AND ts > now()::TIMESTAMP - INTERVAL 1 HOUR "
         "GROUP BY symbol ORDER BY symbol LIMIT 50")
# The SQL endpoint allows 10 requests a second per client address, and every bench client is 127.0.0.1,
# so each client sends at most one query a second.
QUERY_INTERVAL = 1.0


# -- data ---------------------------------------------------------------------

SYMBOLS_SQL = """
    SELECT n,
           ['net', 'crypto', 'stock', 'pred', 'custom'][n % 5 + 1] AS category,
           CASE n % 5
               WHEN 0 THEN printf('net.http.svc%04d.rtt_ms', n)
               WHEN 1 THEN printf('crypto.price.c%04d_usd', n)
               WHEN 2 THEN printf('stock.price.s%04d', n)
               WHEN 3 THEN printf('pred.poly.m%04d.yes', n)
               ELSE printf('custom.feed%04d.value', n)
           END AS symbol
    FROM range(?) t(n)
"""
# Sample k of symbol n; one net sample in a hundred fails with a NULL value.
VALUE_MACRO = """
    CREATE TEMP MACRO bench_value(k, n, category) AS
        CASE WHEN category = 'net' AND hash(k, n) % 100 = 0 THEN NULL ELSE 100 + 10 * sin(k / 40.0 + n) END
"""


def generate(path: str, symbols: int, days: int, end: datetime) -> int:
    """Create the database at `path` with `days` of 30 s samples of `symbols` symbols ending at `end`."""
    database = Database(path)
    database.open()
    connection = database.connection
    steps_per_day = 86400 // 30
    total_steps = days * steps_per_day
    connection.execute(f"CREATE TEMP TABLE symbols AS {SYMBOLS_SQL}", [symbols])
    connection.execute(VALUE_MACRO)
    for day in range(days):
        # One day per INSERT, each sorted by time, so row groups are in time order as the writer leaves them.
        first, last = day * steps_per_day, (day + 1) * steps_per_day
        connection.execute("""
            INSERT INTO samples
            SELECT ?::TIMESTAMP - to_seconds(30 * (? - 1 - k)) AS ts, category, symbol,
                   bench_value(k, n, category), bench_value(k, n, category) IS NOT NULL, 5.0, NULL
            FROM range(?, ?) r(k), symbols
            ORDER BY ts, symbol
        """, [end, total_steps, first, last])
    connection.execute("""
        INSERT INTO latest
        SELECT symbol, category, $1::TIMESTAMP, bench_value($2 - 1, n, category),
               bench_value($2 - 1, n, category) IS NOT NULL, 5.0, NULL, bench_value($2 - 2, n, category),
               $1::TIMESTAMP - INTERVAL 30 SECOND, $1::TIMESTAMP
        FROM symbols
    """, [end, total_steps])
    rows = connection.execute("SELECT count(*) FROM samples").fetchone()[0]
    database.close()
    return rows


# -- Oculus -------------------------------------------------------------------


def start_oculus(workdir: Path, db_path: str) -> tuple[subprocess.Popen, str]:
    """Start Oculus with no collectors on `db_path`; return the process and its URL once /readyz is 200."""
    config = workdir / "oculus.yaml"
    config.write_text("collectors: []\n", encoding="utf-8")
    port = common.free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("OCULUS_")}
    env["OCULUS_API_TOKEN"] = TOKEN
    log = open(workdir / "oculus.log", "wb")
    process = subprocess.Popen([sys.executable, "-m", "oculus", "run", "-c", str(config), "--db-path", db_path,
                                "--port", str(port), "--log-level", "warning"],
                               cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    session = _session()
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"Oculus exited with code {process.returncode}; see {workdir / 'oculus.log'}")
        try:
            if session.get(url + "/readyz", timeout=2).status_code == 200:
                return process, url
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    process.kill()
    raise SystemExit("Oculus did not become ready within 180 s")


# -- measuring ----------------------------------------------------------------


def _session() -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # never send loopback traffic through an http_proxy from the environment
    return session


def _percentile(values: list, fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def _client(send, requests_per_client: int, interval: float, start, results) -> None:
    """Send `requests_per_client` requests one after another once every client is ready; put (ms, status) pairs."""
    session = _session()
    start.wait()
    outcomes = []
    for _ in range(requests_per_client):
        began = time.perf_counter()
        status = send(session)
        elapsed = (time.perf_counter() - began) * 1000
        outcomes.append((elapsed, status))
        if interval:
            time.sleep(max(0.0, interval - elapsed / 1000))
    results.put(outcomes)


def measure_run(send, clients: int, requests_per_client: int, interval: float = 0.0) -> dict:
    """Let `clients` processes call send(session) `requests_per_client` times each; return latencies in ms.

    Each client is a process of its own, as each viewer's browser is. Threads of one Python process would
    take turns holding the GIL, so the latency would include the wait for the other clients' response
    parsing and gzip decoding, which take most of a request's time on the client side.
    """
    context = multiprocessing.get_context("fork")  # the clients inherit `send`, a closure that cannot be pickled
    start, results = context.Barrier(clients), context.Queue()
    processes = [context.Process(target=_client, args=(send, requests_per_client, interval, start, results))
                 for _ in range(clients)]
    for process in processes:
        process.start()
    outcomes = []
    for _ in processes:
        outcomes += results.get(timeout=300)
    for process in processes:
        process.join(30)
    latencies = [elapsed for elapsed, _ in outcomes]
    failures = [status for _, status in outcomes if status != 200]
    return {"median": statistics.median(latencies), "p95": _percentile(latencies, 0.95),
            "requests": len(latencies), "failures": failures}


def endpoints(url: str, symbol: str) -> dict:
    def get(path):
        return lambda session: session.get(url + path, timeout=30).status_code

    def query(session):
        return session.post(url + "/api/query", json={"sql": QUERY}, timeout=30,
                            headers={"Authorization": f"Bearer {TOKEN}"}).status_code

    return {
        "/": (get("/"), 0.0),
        "/partials/metrics": (get("/partials/metrics"), 0.0),
        f"/api/metrics/{symbol}?since=24h": (get(f"/api/metrics/{symbol}?since=24h"), 0.0),
        "POST /api/query": (query, QUERY_INTERVAL),
    }


def measure(url: str, symbol: str, runs: int, clients: int, requests_per_client: int) -> dict:
    results = {}
    for name, (send, interval) in endpoints(url, symbol).items():
        send(_session())  # one request first, so caches and DuckDB's buffer are warm
        per_run = [measure_run(send, clients, requests_per_client, interval) for _ in range(runs)]
        results[name] = per_run
        medians = [run["median"] for run in per_run]
        p95s = [run["p95"] for run in per_run]
        failed = sum(len(run["failures"]) for run in per_run)
        print(f"{name:45s} median {statistics.median(medians):7.1f} ms  p95 {statistics.median(p95s):7.1f} ms  "
              f"run medians {min(medians):.1f}-{max(medians):.1f} ms  non-200: {failed}", flush=True)
    return results


# -- report -------------------------------------------------------------------


def figures_of(results: dict, clients: int) -> list:
    figures = []
    for name, runs in results.items():
        failures = sum(len(run["failures"]) for run in runs)
        note = f"{clients} concurrent clients; {failures} responses were not 200" if failures else \
            f"{clients} concurrent clients"
        figures.append(common.figure(f"{name} median", f"{name}: median latency", [run["median"] for run in runs],
                                     "ms", None, "", note))
        partial = name == "/partials/metrics"
        figures.append(common.figure(
            f"{name} p95", f"{name}: 95th percentile", [run["p95"] for run in runs], "ms",
            ("<=", PARTIAL_P95_TARGET_MS) if partial else None,
            "Uptime Kuma: 10–15 s dashboard loads at ~1,400 monitors" if partial else "", note))
    return figures


def method_section(rows: int, symbols: int, days: int, args) -> dict:
    return {"title": "Data and method", "text": (
        f"{rows:,} samples: {symbols} symbols in five categories, one sample every 30 s for {days} day(s), "
        "written in time order straight into the DuckDB file, plus the latest table. Oculus runs with no "
        f"collectors. Each run starts {args.clients} clients at once, each sending {args.requests} requests "
        "one after another from a process of its own with its own requests.Session (gzip accepted and decoded, "
        "as browsers do). The SQL clients "
        f"send one query a second each, below the endpoint's limit of 10 a second per address. Query: `{QUERY}`."
    )}


def main() -> int:
    def extra(parser):
        parser.add_argument("--clients", type=int, default=8, help="concurrent clients (default 8)")
        parser.add_argument("--requests", type=int, default=10, help="requests per client and run (default 10)")
        parser.add_argument("--keep", action="store_true", help="keep the temporary directory with the database")

    args = common.parse_args(__doc__.splitlines()[0], extra=extra)
    symbols, days = SIZES[args.mode]

    started = time.time()
    workdir = Path(tempfile.mkdtemp(prefix="oculus-bench-dashboard-"))
    db_path = str(workdir / "oculus.duckdb")
    end = datetime.now(timezone.utc).replace(tzinfo=None, microsecond=0)
    rows = generate(db_path, symbols, days, end)
    print(f"generated {rows:,} samples of {symbols} symbols over {days} day(s) in {time.time() - started:.0f} s; "
          f"file {os.path.getsize(db_path) / 1e6:.0f} MB", flush=True)

    process, url = start_oculus(workdir, db_path)
    try:
        results = measure(url, SYMBOL, args.runs, args.clients, args.requests)
    finally:
        common.stop_process(process)
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    common.save_result("dashboard", "Dashboard and API latency", args, started, figures_of(results, args.clients),
                       [method_section(rows, symbols, days, args),
                        {"title": "Where the /partials/metrics time goes", "text": PARTIAL_PROFILE}])
    return 0


if __name__ == "__main__":
    sys.exit(main())
