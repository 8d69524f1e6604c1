"""GET /metrics: Oculus's own metrics and the latest value of every symbol, in the Prometheus text format.

Metric names (docs/api.md describes each):

  oculus_build_info{version}                      1
  oculus_write_queue_length, _capacity            items waiting for the writer, and the queue's size
  oculus_samples_written_total, oculus_events_written_total, oculus_write_batches_total
  oculus_insert_failures_total, oculus_write_queue_full_total, oculus_rows_dropped_total
  oculus_collector_runs_total{collector,type,name}, _failures_total, _skipped_runs_total
  oculus_collector_running, oculus_collector_last_run_timestamp_seconds, oculus_collector_last_duration_seconds
  oculus_query_duration_seconds{outcome}          histogram of POST /api/query
  oculus_queries_active                           SQL queries running now
  oculus_notifications_total{channel,outcome}     recorded by the notification layer
  oculus_alert_instances{state}                   rows of alert_state per state
  oculus_symbol_value{symbol,category,unit,tag_*} latest value of each symbol
  oculus_symbol_success{symbol,category}          1 when the latest sample succeeded, else 0
  oculus_symbol_timestamp_seconds{symbol,category}
"""

from __future__ import annotations

import logging
import re
from datetime import datetime, timezone

import duckdb
from prometheus_client import CollectorRegistry, Gauge, Histogram, PlatformCollector, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from oculus import __version__, selfmetrics
from oculus.storage import queries

log = logging.getLogger(__name__)

# Symbol labels come from the collector's configured tags only: sample tags such as
# "error" or a market's question change from run to run and would create new series.
MAX_TAG_LABELS = 10
MAX_LABEL_LENGTH = 120
QUERY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class QueryMetrics:
    """The SQL endpoint's latency histogram and in-flight gauge, one set per web app."""

    def __init__(self):
        self.duration = Histogram("oculus_query_duration_seconds",
                                  "Time POST /api/query spent running SQL, by outcome (ok, rejected, failed, timeout).",
                                  ["outcome"], buckets=QUERY_BUCKETS, registry=None)
        self.active = Gauge("oculus_queries_active", "SQL queries from POST /api/query running now.", registry=None)


def create_registry(runtime, query_metrics: QueryMetrics) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(RuntimeCollector(runtime))
    registry.register(query_metrics.duration)
    registry.register(query_metrics.active)
    for metric in selfmetrics.PROCESS_WIDE:
        registry.register(metric)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    return registry


def _epoch(ts: datetime | None) -> float | None:
    return ts.replace(tzinfo=timezone.utc).timestamp() if ts is not None else None


def _label_name(key: str) -> str:
    return "tag_" + re.sub(r"[^a-zA-Z0-9_]", "_", str(key)).lower()


def _label_value(value) -> str:
    return str(value)[:MAX_LABEL_LENGTH]


class RuntimeCollector:
    """Read the writer's, scheduler's and database's state at scrape time, so nothing is counted twice."""

    def __init__(self, runtime):
        self.runtime = runtime

    def describe(self):
        # Empty, so registering does not run collect() before the runtime has started.
        return []

    def collect(self):
        yield _info()
        if self.runtime.writer is not None:
            yield from _writer_metrics(self.runtime.writer)
        if self.runtime.scheduler is not None:
            yield from _collector_metrics(self.runtime.scheduler)
        if self.runtime.database.is_open:
            try:
                cursor = self.runtime.database.reader()
                yield from _alert_metrics(cursor)
                yield from _symbol_metrics(cursor, self._owners())
            except duckdb.Error as exc:
                log.warning("metrics exposition could not read the database error=%s", exc)

    def _owners(self) -> dict:
        scheduler = self.runtime.scheduler
        return dict(scheduler.symbol_owners) if scheduler is not None else {}


def _info():
    info = GaugeMetricFamily("oculus_build_info", "Always 1; the version is a label.", labels=["version"])
    info.add_metric([__version__], 1)
    return info


def _writer_metrics(writer):
    stats = writer.stats
    yield GaugeMetricFamily("oculus_write_queue_length", "Items waiting in the write queue.",
                            value=writer.queue.qsize())
    yield GaugeMetricFamily("oculus_write_queue_capacity", "Capacity of the write queue.", value=writer.queue.maxsize)
    counters = (
        ("oculus_samples_written", "Samples inserted into DuckDB.", stats.samples_written),
        ("oculus_events_written", "Events inserted into DuckDB.", stats.events_written),
        ("oculus_write_batches", "Batches the writer has committed.", stats.batches),
        ("oculus_insert_failures", "Inserts or writer steps that failed; the batch is retried.", stats.insert_failures),
        ("oculus_write_queue_full", "Items dropped because the write queue stayed full.", stats.queue_full),
        ("oculus_rows_dropped", "Rows dropped after repeated insert failures.", stats.rows_dropped),
    )
    for name, documentation, value in counters:
        yield CounterMetricFamily(name, documentation, value=value)


def _collector_metrics(scheduler):
    labels = ["collector", "type", "name"]
    families = {
        "runs": CounterMetricFamily("oculus_collector_runs", "Completed collector runs.", labels=labels),
        "failures": CounterMetricFamily("oculus_collector_failures", "Runs with at least one failed reading.",
                                        labels=labels),
        "skipped": CounterMetricFamily("oculus_collector_skipped_runs",
                                       "Runs skipped because the previous run was still going.", labels=labels),
        "running": GaugeMetricFamily("oculus_collector_running", "1 while a run is in progress.", labels=labels),
        "last_run": GaugeMetricFamily("oculus_collector_last_run_timestamp_seconds",
                                      "Start of the last completed run, as a Unix time.", labels=labels),
        "last_duration": GaugeMetricFamily("oculus_collector_last_duration_seconds",
                                           "Duration of the last completed run.", labels=labels),
    }
    collectors = dict(scheduler.collectors)
    for key, state in dict(scheduler.states).items():
        collector = collectors.get(key)
        if collector is None:
            continue
        values = [key, collector.spec.type, collector.spec.name]
        families["runs"].add_metric(values, state.runs)
        families["failures"].add_metric(values, state.failures)
        families["skipped"].add_metric(values, state.skipped)
        families["running"].add_metric(values, 1 if state.running else 0)
        if state.last_run is not None:
            families["last_run"].add_metric(values, _epoch(state.last_run))
        if state.last_duration_ms is not None:
            families["last_duration"].add_metric(values, state.last_duration_ms / 1000)
    yield from families.values()


def _alert_metrics(cursor):
    family = GaugeMetricFamily("oculus_alert_instances", "Alert instances in the alert_state table, by state.",
                               labels=["state"])
    counts = dict(cursor.execute("SELECT state, count(*) FROM alert_state GROUP BY state").fetchall())
    for state in ("inactive", "pending", "firing", "resolved"):
        family.add_metric([state], counts.get(state, 0))
    yield family


def _symbol_metrics(cursor, owners: dict):
    rows = queries.latest(cursor)
    tag_labels: dict[str, str] = {}  # label name -> tag key; "a-b" and "a_b" share a name, the first wins
    for key in sorted({key for row in rows for key in _owner_tags(owners.get(row["symbol"]))}):
        if len(tag_labels) < MAX_TAG_LABELS:
            tag_labels.setdefault(_label_name(key), key)
    value = Metric("oculus_symbol_value", "Latest value of each symbol; absent while it has no value.", "gauge")
    success = GaugeMetricFamily("oculus_symbol_success", "1 when the latest sample of the symbol succeeded, else 0.",
                                labels=["symbol", "category"])
    stamp = GaugeMetricFamily("oculus_symbol_timestamp_seconds", "Time of the latest sample, as a Unix time.",
                              labels=["symbol", "category"])
    for row in rows:
        success.add_metric([row["symbol"], row["category"]], 1 if row["success"] else 0)
        stamp.add_metric([row["symbol"], row["category"]], _epoch(row["ts"]))
        if row["value"] is None:
            continue
        tags = row.get("tags") or {}
        owner_tags = _owner_tags(owners.get(row["symbol"]))
        labels = {"symbol": row["symbol"], "category": row["category"],
                  "unit": _label_value(tags.get("unit") or tags.get("currency") or "")}
        for name, key in tag_labels.items():
            labels[name] = _label_value(owner_tags.get(key, ""))
        value.add_sample("oculus_symbol_value", labels, row["value"])
    yield value
    yield success
    yield stamp


def _owner_tags(spec) -> dict:
    """Return the collector's configured tags as text; a secret value prints as <secret>."""
    return {key: str(value) for key, value in spec.tags.items()} if spec is not None else {}
