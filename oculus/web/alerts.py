"""Rules and alerts as the web layer shows them, read from the alert_state table and alert events.

The rule engine may offer oculus.rules.describe_rules(runtime); when it does,
its descriptions are used, else rules come from the config's `rules:` list.
Either way their state comes from alert_state, which survives restarts.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
from datetime import datetime

from oculus.config import Secret
from oculus.storage import queries, utc_now

log = logging.getLogger(__name__)

STATE_RANK = {"firing": 0, "pending": 1, "resolved": 2, "inactive": 3}
NOT_EVALUATED = "not evaluated"
ALERT_STATES = ("active", "firing", "pending", "resolved", "inactive", "all")
# Payload keys under which an alert event may report how its notification went.
DELIVERY_KEYS = ("delivery", "outcome", "notification", "notifications")
RULE_KEYS = ("condition", "sql", "for", "cooldown", "severity", "channels", "message", "schedule", "every")


def _public(value):
    """Make a config value safe to show: a Secret prints as <secret>, other objects as text."""
    if isinstance(value, Secret):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _public(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_public(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str, datetime)):
        return value
    return str(value)


def _engine_rules(runtime) -> list[dict] | None:
    """Return the rule engine's descriptions, or None while oculus.rules has no describe_rules()."""
    try:
        rules = importlib.import_module("oculus.rules")
    except ImportError:
        return None
    describe = getattr(rules, "describe_rules", None)
    if describe is None:
        return None
    try:
        items = list(describe(runtime) or [])
    except Exception:  # a failing engine must not take the rules page down; config rules are shown instead
        log.warning("describe_rules failed; showing the rules of the config", exc_info=True)
        return None
    described = []
    for item in items:
        if dataclasses.is_dataclass(item) and not isinstance(item, type):
            item = dataclasses.asdict(item)
        elif not isinstance(item, dict):
            item = dict(vars(item))
        described.append(item)
    return described


def _config_rules(runtime) -> list[dict]:
    rules = []
    for item in runtime.config.rules or []:
        if isinstance(item, dict) and item.get("name"):
            rules.append({"name": str(item["name"]), **{key: item[key] for key in RULE_KEYS if key in item}})
    return rules


def list_rules(runtime, cursor) -> list[dict]:
    """Return every rule with its overall state, last evaluation, last value and instances."""
    described = _engine_rules(runtime)
    rules = described if described is not None else _config_rules(runtime)
    instances: dict[str, list] = {}
    for row in queries.alert_states(cursor):
        instances.setdefault(row["rule"], []).append(row)

    result = [_rule_view(rule, instances.pop(str(rule.get("name")), [])) for rule in rules if rule.get("name")]
    # Rules removed from the config keep their rows until the engine clears them; show them, marked.
    for name, rows in sorted(instances.items()):
        result.append(_rule_view({"name": name, "removed": True}, rows))
    return result


def _rule_view(rule: dict, rows: list[dict]) -> dict:
    """Merge a rule description with its alert_state rows into the shape the API documents."""
    view = {key: _public(value) for key, value in rule.items() if key != "instances"}
    if isinstance(rule.get("instances"), dict):
        view["instance_counts"] = rule["instances"]  # the engine's count of instances per state
    view["name"] = str(rule["name"])
    view["kind"] = rule.get("kind") or ("sql" if rule.get("sql") else "simple")
    view["expression"] = _public(rule.get("expression") or rule.get("condition") or rule.get("sql") or "")

    newest = max(rows, key=lambda row: row["last_eval"], default=None)
    fallback_state = min((row["state"] for row in rows), key=STATE_RANK.get, default=NOT_EVALUATED)
    view["state"] = rule.get("state") or fallback_state
    view["last_eval"] = _first_set(rule, ("last_eval", "last_evaluation"), newest and newest["last_eval"])
    view["value"] = _first_set(rule, ("value", "last_value"), newest and newest["value"])
    view["severity"] = rule.get("severity") or (newest["severity"] if newest else None)
    view["instances"] = rows
    return view


def _first_set(rule: dict, keys: tuple, default):
    for key in keys:
        if rule.get(key) is not None:
            return rule[key]
    return default


def rule_detail(runtime, cursor, name: str, history_limit: int = 100) -> dict | None:
    rule = next((rule for rule in list_rules(runtime, cursor) if rule["name"] == name), None)
    if rule is None:
        return None
    rule["history"] = queries.alert_events(cursor, rule=name, limit=history_limit)
    return rule


def list_alerts(cursor, state: str = "active", limit: int = 100) -> dict:
    """Return alert instances in `state` (active = firing or pending) and the newest alert events."""
    if state == "all":
        states = None
    elif state == "active":
        states = ("firing", "pending")
    else:
        states = (state,)
    now = utc_now()
    events = queries.alert_events(cursor, limit=limit)
    deliveries = _deliveries_by_alert(cursor)
    alerts = [_alert_view(row, now, events, deliveries) for row in queries.alert_states(cursor, states=states)]
    return {"alerts": alerts[:limit], "events": events}


def _deliveries_by_alert(cursor) -> dict[tuple, list[dict]]:
    """Return the newest delivery per channel of each alert instance, keyed by (rule, instance)."""
    grouped: dict[tuple, list[dict]] = {}
    for row in queries.latest_deliveries(cursor):
        grouped.setdefault((row["rule"], row["instance"]), []).append(row)
    return grouped


def _alert_view(row: dict, now: datetime, events: list[dict], deliveries: dict | None = None) -> dict:
    started = row["fired_at"] if row["state"] == "firing" else row["active_since"]
    if row["state"] == "resolved" and row["resolved_at"]:
        ended = row["resolved_at"]
        started = row["fired_at"] or row["active_since"]
    else:
        ended = now
    duration = (ended - started).total_seconds() if started else None
    channels = [_channel_delivery(item) for item in (deliveries or {}).get((row["rule"], row["instance"]), [])]
    outcome = _delivery_summary(channels) if channels else _delivery_outcome(row, events)
    return {**row, "duration_seconds": duration,
            "delivery": {"last_notified": row["last_notified"], "outcome": outcome, "channels": channels}}


def _channel_delivery(row: dict) -> dict:
    return {"channel": row["channel"], "state": row["state"], "status": row["status"], "attempts": row["attempts"],
            "error": row["last_error"], "updated_at": row["updated_at"]}


def _delivery_summary(channels: list[dict]) -> str:
    """Summarize the newest notification of an alert, such as "firing: email delivered, slack retrying (HTTP 500)"."""
    newest_state = channels[0]["state"]
    parts = []
    for item in channels:
        if item["state"] != newest_state:
            continue
        part = f"{item['channel']} {item['status']}"
        if item["status"] != "delivered" and item["error"]:
            part += f" ({item['error']})"
        parts.append(part)
    return f"{newest_state}: {', '.join(parts)}"


def _delivery_outcome(row: dict, events: list[dict]):
    """Return the notification outcome that the newest alert event of this rule instance reports, or None."""
    for event in events:
        payload = event.get("payload")
        if not isinstance(payload, dict):
            continue
        if event.get("source") != row["rule"] and payload.get("rule") != row["rule"]:
            continue
        if row["instance"] and payload.get("instance") not in (None, row["instance"]):
            continue
        for key in DELIVERY_KEYS:
            if payload.get(key) is not None:
                return payload[key]
    return None


def alerts_for_symbol(cursor, symbol: str, limit: int = 50) -> dict:
    """Return alert instances and events whose labels, message or payload contain `symbol`."""
    now = utc_now()
    events = queries.alert_events(cursor, mentioning=symbol, limit=limit)
    deliveries = _deliveries_by_alert(cursor)
    return {"alerts": [_alert_view(row, now, events, deliveries)
                       for row in queries.alert_states_mentioning(cursor, symbol)],
            "events": events}
