"""Alert rules: simple conditions and SQL queries, their lifecycle, the rule thread and backtests."""

from __future__ import annotations

from oculus.config.values import format_duration

_STATE_ORDER = ("firing", "pending", "resolved", "inactive")


def describe_rules(runtime) -> list[dict]:
    """Return one dict per configured rule for the web layer: definition, state summary and last evaluation.

    Keys: name, kind (simple or sql), expression (simple rules) or sql, severity
    and channels. state is the most urgent state of the rule's instances
    (firing, pending, resolved or inactive) and instances counts them per
    state. Then no_data, last_evaluation, last_value and last_error, and the
    settings for, cooldown, repeat, every and cron (durations written like 5m,
    None when unset). It reads only memory, so it is cheap on every page view.
    """
    engine = getattr(runtime, "rule_engine", None)
    evaluator = engine.evaluator if engine is not None else None
    described = []
    for rule in runtime.config.rules:
        status = evaluator.status.get(rule.name) if evaluator is not None else None
        counts = dict.fromkeys(_STATE_ORDER, 0)
        if evaluator is not None:
            for (name, _), alert in list(evaluator.alerts.items()):
                if name == rule.name:
                    counts[alert.state] = counts.get(alert.state, 0) + 1
        described.append({
            "name": rule.name,
            "kind": rule.kind,
            "expression": rule.expression,
            "sql": rule.sql,
            "severity": rule.severity,
            "channels": list(rule.channels),
            "state": next((state for state in _STATE_ORDER if counts[state]), "inactive"),
            "instances": counts,
            "no_data": bool(status and status.no_data),
            "last_evaluation": status.last_eval if status else None,
            "last_value": status.last_value if status else None,
            "last_error": status.last_error if status else None,
            "for": format_duration(rule.for_) if rule.for_ else None,
            "cooldown": format_duration(rule.cooldown) if rule.cooldown else None,
            "repeat": format_duration(rule.repeat) if rule.repeat else None,
            "every": format_duration(rule.every) if rule.every else None,
            "cron": rule.cron,
        })
    return described
