"""Ingest: samples per second through collector -> queue -> writer -> DuckDB file, sustained.

Runs in this process with Oculus's own classes and default runtime settings
(queue size, batch size, flush interval). Producer threads call
CollectorScheduler.run_once() on synthetic collectors. It turns readings into
samples and puts them on the writer's queue exactly as a scheduled run does,
and the writer batches them into a DuckDB file. Only the scheduling clock and
the network are left out, so the figure is the write path's capacity.
"""

from __future__ import annotations

import cProfile
import io
import pstats
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from datetime import timedelta
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
from oculus.collectors.base import Collector, Reading  # noqa: E402
from oculus.config.schema import RUNTIME  # noqa: E402
from oculus.runtime.scheduler import CollectorScheduler, CollectorState  # noqa: E402
from oculus.storage import Database  # noqa: E402
from oculus.storage.writer import Writer  # noqa: E402

SECONDS = {"smoke": 3, "quick": 10, "full": 60}
# The default queue takes up to 10,000 runs of 100 samples here, which the writer needs many seconds to
# drain at stop, so --smoke uses a small queue to keep the script short.
SMOKE_QUEUE_SIZE = 200
COLLECTORS = 20
READINGS_PER_RUN = 100  # 20 collectors x 100 readings = 2,000 symbols, as many as 1,000 HTTP probes emit
PRODUCERS = 2
SAMPLE_EVERY = 0.5


class SyntheticCollector(Collector):
    """A collector that measures nothing: each run returns READINGS_PER_RUN readings shaped like an HTTP probe's."""

    TYPE = "bench"
    CATEGORY = "bench"

    def __init__(self, index: int):
        spec = SimpleNamespace(type="bench", name=f"c{index:02d}", interval=1.0, timeout=5.0, tags={},
                               options={}, key=f"bench:c{index:02d}")
        super().__init__(spec)
        self._symbols = [self.symbol(f"m{metric:03d}") for metric in range(READINGS_PER_RUN)]
        self._runs = 0

    def symbols(self) -> list[str]:
        return list(self._symbols)

    def collect(self, deadline: float) -> list[Reading]:
        self._runs += 1
        value = float(self._runs % 1000)
        return [Reading(symbol, value, True, None, {"status": 200}) for symbol in self._symbols]


def runtime_default(name: str):
    return RUNTIME.field_named(name).default


def produce(scheduler: CollectorScheduler, collectors: list, deadline: float) -> None:
    states = [CollectorState() for _ in collectors]
    while time.monotonic() < deadline:
        for collector, state in zip(collectors, states, strict=True):
            scheduler.run_once(collector, state)


def one_run(seconds: float, queue_size: int, profiler: cProfile.Profile | None = None) -> dict:
    """Feed the writer from PRODUCERS threads for `seconds`; return the rate and the timeline.

    With `profiler`, the writer thread runs under it (which slows it down).
    """
    with tempfile.TemporaryDirectory(prefix="oculus-ingest-") as workdir:
        database = Database(str(Path(workdir) / "ingest.duckdb"))
        database.open()
        writer = Writer(database, queue_size, runtime_default("batch_size"),
                        runtime_default("flush_interval"))
        if profiler is not None:
            writer._thread = threading.Thread(target=profiler.runcall, args=(writer._run,), daemon=True)
        writer.start()
        scheduler = CollectorScheduler(1, writer.put)
        collectors = [SyntheticCollector(index) for index in range(COLLECTORS)]

        deadline = time.monotonic() + seconds
        producers = [threading.Thread(target=produce, args=(scheduler, collectors[index::PRODUCERS], deadline),
                                      daemon=True) for index in range(PRODUCERS)]
        started = time.monotonic()
        written_before = writer.stats.samples_written
        for thread in producers:
            thread.start()
        timeline = []
        while time.monotonic() < deadline:
            time.sleep(SAMPLE_EVERY)
            stats = writer.stats
            timeline.append((time.monotonic() - started, writer.queue.qsize(), stats.last_batch_size,
                             stats.samples_written))
        for thread in producers:
            thread.join(10)
        written = writer.stats.samples_written - written_before
        elapsed = time.monotonic() - started
        stats = writer.stats
        result = {"rate": written / elapsed, "queue_full": stats.queue_full, "batches": stats.batches,
                  "max_batch": stats.max_batch_size, "timeline": timeline}
        stopped = writer.stop(30)
        if stopped:
            database.close()
        stored = _count_rows(database.path) if stopped else None
        result["stored"] = stored
        return result


def _count_rows(path: str) -> int:
    import duckdb

    with duckdb.connect(path, read_only=True) as conn:
        return conn.execute("SELECT count(*) FROM samples").fetchone()[0]


def conversion_floor(repeats: int = 10) -> float:
    """Measure samples/s when a writer batch is only converted from Python lists into the staging table.

    That conversion (duckdb's handling of list parameters) is the one step of
    the write path that grows with every sample and cannot be done in SQL, so
    it bounds the writer from above. The batch has READINGS_PER_RUN samples
    per run, like the producers' batches.
    """
    import duckdb

    from oculus.collectors.base import Sample
    from oculus.storage import utc_now
    from oculus.storage.writer import _STAGE_SAMPLES, _columns

    batch_size = runtime_default("batch_size")
    now = utc_now()
    runs = [(now + timedelta(seconds=run), 1.5 + run) for run in range(batch_size // READINGS_PER_RUN + 1)]
    batch = []
    for index in range(batch_size):
        ts, duration_ms = runs[index // READINGS_PER_RUN]
        batch.append(Sample(ts, "bench", f"bench.bench.c{index % COLLECTORS:02d}.m{index % READINGS_PER_RUN:03d}",
                            float(index), True, duration_ms, {"status": 200}))
    timings = []
    with duckdb.connect() as conn:
        for _ in range(repeats):
            started = time.perf_counter()
            conn.execute(_STAGE_SAMPLES, _columns(batch))  # replaces the TEMP table writer_batch
            timings.append(time.perf_counter() - started)
    return batch_size / statistics.median(timings)


def profile_text(profiler: cProfile.Profile, limit: int = 15) -> str:
    output = io.StringIO()
    pstats.Stats(profiler, stream=output).sort_stats("tottime").print_stats(limit)
    lines = [line for line in output.getvalue().splitlines() if line.strip()]
    start = next((index for index, line in enumerate(lines) if line.lstrip().startswith("ncalls")), 0)
    root = str(common.ROOT) + "/"
    return "\n".join(["```"] + [line.replace(root, "") for line in lines[start:]] + ["```"])


def timeline_table(timeline: list) -> str:
    rows = ["| time | queue length (items of 100 samples) | last batch (samples) | samples/s in this step |",
            "| --- | --- | --- | --- |"]
    previous_time, previous_written = 0.0, 0
    step = max(1, len(timeline) // 15)
    for elapsed, queued, batch, written in timeline[step - 1::step]:
        rate = (written - previous_written) / max(1e-9, elapsed - previous_time)
        rows.append(f"| {elapsed:.1f} s | {queued} | {batch:,} | {rate:,.0f} |")
        previous_time, previous_written = elapsed, written
    return "\n".join(rows)


def main(argv=None) -> int:
    args = common.parse_args(__doc__.splitlines()[0], argv)
    seconds = SECONDS[args.mode]
    queue_size = SMOKE_QUEUE_SIZE if args.mode == "smoke" else runtime_default("queue_size")
    started = time.time()
    results = []
    for run in range(args.runs):
        result = one_run(seconds, queue_size)
        results.append(result)
        print(f"run {run + 1}/{args.runs}: {result['rate']:,.0f} samples/s, {result['batches']} batches, "
              f"max batch {result['max_batch']:,}, queue full {result['queue_full']} times, "
              f"{result['stored']:,} rows stored", flush=True)

    floor = conversion_floor()
    print(f"floor: converting one batch into DuckDB alone runs at {floor:,.0f} samples/s", flush=True)
    profiler = cProfile.Profile()
    profiled = one_run(min(seconds, 10), queue_size, profiler)
    print(f"profiled run: {profiled['rate']:,.0f} samples/s", flush=True)

    figures = [
        common.figure("ingest_rate", f"ingest sustained for {seconds} s", [r["rate"] for r in results],
                      "samples/s", (">=", 100_000), "Prometheus appended ≈ 22,000/s at its limit",
                      f"{PRODUCERS} producer threads, {COLLECTORS * READINGS_PER_RUN:,} symbols, "
                      f"{READINGS_PER_RUN} samples per run; default queue, batch and flush settings"),
        common.figure("ingest_floor", "floor: converting batches from Python lists into DuckDB, nothing else", [floor],
                      "samples/s", None, "", "an upper bound for the writer: no insert, no latest update, "
                      "no producers"),
        common.figure("ingest_queue_full", "puts that found the queue full", [r["queue_full"] for r in results],
                      "puts", None, "", "each one waited up to 1 s and was then dropped and counted"),
    ]
    median_run = sorted(results, key=lambda r: r["rate"])[len(results) // 2]
    sections = [
        {"title": "Queue length and batch sizes over the median run", "text": timeline_table(median_run["timeline"])},
        {"title": "Profile of the writer thread",
         "text": f"cProfile of the writer thread in one extra run (not counted above; {profiled['rate']:,.0f} "
                 "samples/s under the profiler), functions by own time. cProfile does not list duckdb's "
                 "execute() apart, so the own time of the writer functions that call it is duckdb converting "
                 "the lists and running the SQL.\n\n" + profile_text(profiler)},
    ]
    common.save_result("ingest", "Ingest", args, started, figures, sections)
    return 0


if __name__ == "__main__":
    sys.exit(main())
