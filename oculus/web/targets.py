"""Collectors as the web layer shows them: run statistics, symbols and effective config with secrets masked."""

from __future__ import annotations

from datetime import timedelta

from oculus.collectors import registry
from oculus.storage import queries, utc_now

RECENT_RESULTS = 30
ERROR_WINDOW = timedelta(hours=24)


def _states(runtime) -> dict:
    scheduler = runtime.scheduler
    return dict(scheduler.states) if scheduler is not None else {}


def symbols_of(runtime, spec) -> list[str]:
    """Return the symbols `spec` declared, plus those it found at run time (a Polymarket event's options)."""
    scheduler = runtime.scheduler
    owners = dict(scheduler.symbol_owners) if scheduler is not None else {}
    symbols = {symbol for symbol, owner in owners.items() if owner.key == spec.key}
    return sorted(symbols)


def status_of(state) -> str:
    if state is None or state.runs == 0:
        return "running" if state is not None and state.running else "waiting"
    return "failing" if state.last_error else "ok"


def collector_summary(runtime, spec) -> dict:
    state = _states(runtime).get(spec.key)
    return {
        "key": spec.key,
        "type": spec.type,
        "name": spec.name,
        "target": _target(spec),
        "status": status_of(state),
        "interval_seconds": spec.interval,
        "timeout_seconds": spec.timeout,
        "running": bool(state and state.running),
        "runs": state.runs if state else 0,
        "failures": state.failures if state else 0,
        "skipped_runs": state.skipped if state else 0,
        "last_run": state.last_run if state else None,
        "last_duration_ms": state.last_duration_ms if state else None,
        "last_error": state.last_error if state else None,
        "symbols": symbols_of(runtime, spec),
        "config": spec.public_dict(),
    }


def _target(spec) -> str:
    try:
        return registry.collector_class(spec.type).describe_target(spec.options)
    except Exception:  # a plugin's describe_target may fail; the page still shows everything else
        return ""


def list_collectors(runtime) -> list[dict]:
    return [collector_summary(runtime, spec) for spec in runtime.config.collectors]


def find_spec(runtime, kind: str, name: str):
    return next((spec for spec in runtime.config.collectors if spec.type == kind and spec.name == name), None)


def collector_detail(runtime, cursor, spec) -> dict:
    """Return the debug view of one collector: summary, latest value per symbol, recent results and errors."""
    detail = collector_summary(runtime, spec)
    symbols = detail["symbols"]
    latest = {row["symbol"]: row for row in queries.latest(cursor) if row["symbol"] in set(symbols)}
    detail["latest"] = [latest[symbol] for symbol in symbols if symbol in latest]
    detail["recent"] = queries.recent_samples(cursor, symbols, RECENT_RESULTS)
    detail["errors"] = queries.recent_errors(cursor, symbols, utc_now() - ERROR_WINDOW)
    return detail
