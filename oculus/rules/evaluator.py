"""One evaluation pass over every rule at a given time; shared by the live engine and the backtest.

The evaluator keeps the alert instances in memory and returns the
transitions of each pass. It never writes: the live engine stores the
changed instances through the writer, and the backtest only prints them.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import duckdb

from oculus.logs import RateLimitedLog
from oculus.rules import sqlrule
from oculus.rules.data import SnapshotReader
from oculus.rules.state import FIRING, PENDING, AlertInstance, Transition, step
from oculus.storage.sqlguard import QueryFailed, QueryTimeout, UnsafeQuery

log = logging.getLogger(__name__)


@dataclass
class RuleStatus:
    """Result of the last evaluation of one rule, for the rules page and /readyz."""

    last_eval: datetime | None = None
    last_value: float | None = None
    last_error: str | None = None
    no_data: bool = False
    next_run: datetime | None = None  # SQL rules only


@dataclass
class PassResult:
    now: datetime
    transitions: list = field(default_factory=list)
    changed: list = field(default_factory=list)  # AlertInstance objects evaluated in this pass
    duration_ms: float = 0.0


class Value(float):
    """A float that prints compactly in messages: 200 rather than 200.0, at most 10 significant digits."""

    def __format__(self, spec: str) -> str:
        return format(float(self), spec or ".10g")


class Evaluator:
    def __init__(self, rules: list, alerting, freshness, from_history: bool = False, before_sql=None):
        self.rules = rules
        self.before_sql = before_sql  # called as before_sql(cursor, now) ahead of SQL rules; the backtest's clock
        self.alerting = alerting
        self.simple = [rule for rule in rules if rule.kind == "simple"]
        self.sql = [rule for rule in rules if rule.kind == "sql"]
        requirements = set().union(*(rule.condition.requirements for rule in self.simple))
        self.reader = SnapshotReader(requirements, freshness, from_history)
        self.alerts: dict = {}
        self.status = {rule.name: RuleStatus() for rule in rules}
        self._by_name = {rule.name: rule for rule in rules}
        self._error_log = RateLimitedLog(log, 300.0)

    def restore(self, alerts: list[AlertInstance]) -> list[AlertInstance]:
        """Take over stored instances of configured rules; return those of rules no longer configured."""
        orphans = []
        for alert in alerts:
            if alert.rule in self._by_name:
                self.alerts[(alert.rule, alert.instance)] = alert
            else:
                orphans.append(alert)
        return orphans

    def evaluate(self, cursor, now: datetime, snapshot=None) -> PassResult:
        """Evaluate every simple rule, and every SQL rule that is due, at `now` (naive UTC).

        `snapshot` is the data at `now` when the caller has read it already (a backtest reads many at once).
        """
        started = time.perf_counter()
        result = PassResult(now)
        if self.simple:
            self._simple_rules(cursor, now, result, snapshot)
        due = [rule for rule in self.sql
               if self.status[rule.name].next_run is None or now >= self.status[rule.name].next_run]
        if due and self.before_sql is not None:
            self.before_sql(cursor, now)
        for rule in due:
            self.status[rule.name].next_run = next_run(rule, now)
            self._sql_rule(rule, cursor, now, result)
        result.duration_ms = (time.perf_counter() - started) * 1000
        return result

    # -- simple rules --------------------------------------------------------

    def _simple_rules(self, cursor, now: datetime, result: PassResult, snapshot) -> None:
        try:
            snapshot = snapshot or self.reader.read(cursor, now)
        except duckdb.Error as exc:
            self._error_log.error("snapshot", "rule data could not be read error=%s", exc)
            for rule in self.simple:
                self.status[rule.name].last_error = f"data could not be read: {exc}"
            return
        for rule in self.simple:
            try:
                holds, value = rule.condition(snapshot)
            except (ArithmeticError, TypeError, ValueError) as exc:
                holds, value = None, None
                self.status[rule.name].last_error = f"evaluation failed: {exc}"
            else:
                self.status[rule.name].last_error = None
            alert = self._alert(rule, "")
            self._apply(rule, alert, holds, value, {}, now, result)

    # -- SQL rules -----------------------------------------------------------

    def _sql_rule(self, rule, cursor, now: datetime, result: PassResult) -> None:
        status = self.status[rule.name]
        try:
            rows, truncated = sqlrule.run(cursor, rule.prepared, now, self.alerting.sql_timeout,
                                          self.alerting.sql_max_rows)
        except (QueryFailed, QueryTimeout, UnsafeQuery) as exc:
            # The instances keep their state: a failed query is missing data, not "everything resolved".
            status.last_error = str(exc)
            status.last_eval = now
            self._error_log.error(("sql", rule.name), "SQL rule failed rule=%s error=%s", rule.name, exc)
            return
        status.last_error = (f"the query returned more than {self.alerting.sql_max_rows} rows; "
                             "the extra rows were ignored") if truncated else None

        seen = set()
        for row in rows:
            if row.instance in seen:
                continue  # two rows with the same identity: the first one counts
            seen.add(row.instance)
            alert = self._alert(rule, row.instance, row.labels)
            self._apply(rule, alert, True, row.value, row.fields, now, result)
        for (name, instance), alert in list(self.alerts.items()):
            if name == rule.name and instance not in seen and alert.state in (PENDING, FIRING):
                self._apply(rule, alert, False, alert.value, alert.fields, now, result)
        status.last_eval = now
        status.last_value = rows[0].value if rows else None

    # -- shared --------------------------------------------------------------

    def _alert(self, rule, instance: str, labels: dict | None = None) -> AlertInstance:
        key = (rule.name, instance)
        alert = self.alerts.get(key)
        if alert is None:
            alert = AlertInstance(rule.name, instance, severity=rule.severity)
            self.alerts[key] = alert
        if labels is not None:
            alert.labels = labels
        return alert

    def _apply(self, rule, alert: AlertInstance, holds, value, fields: dict, now: datetime,
               result: PassResult) -> None:
        """Run one step of the lifecycle and render the message of each transition."""
        status = self.status[rule.name]
        status.last_eval = now
        status.last_value = value
        alert.value = value
        alert.fields = fields
        alert.no_data = holds is None
        status.no_data = alert.no_data
        if holds is None:
            policy = rule.no_data or self.alerting.no_data
            holds = {"firing": True, "ok": False}.get(policy)
        if holds is None:
            alert.last_eval = now
            result.changed.append(alert)
            return

        transitions = step(alert, holds, now, rule)
        for transition in transitions:
            transition.message = render_message(rule, transition, fields)
            transition.channels = rule.channels
            alert.message = transition.message
        if alert.message is None:
            alert.message = render_message(rule, None, fields, alert)
        result.transitions.extend(transitions)
        result.changed.append(alert)


def next_run(rule, now: datetime) -> datetime:
    """Return when an SQL rule runs next after a run at `now`."""
    if rule.cron is None:
        return now + timedelta(seconds=rule.every)
    from croniter import croniter

    aware = now.replace(tzinfo=timezone.utc)
    return croniter(rule.cron, aware).get_next(datetime).astimezone(timezone.utc).replace(tzinfo=None)


def render_message(rule, transition: Transition | None, fields: dict, alert: AlertInstance | None = None) -> str:
    """Fill the rule's message template; fall back to a plain description when a value does not fit a format."""
    source = transition or alert
    value = None if source.value is None else Value(source.value)
    values = {name: Value(item) if isinstance(item, float) else item for name, item in fields.items()}
    values.update(rule=rule.name, severity=rule.severity, state=source.state, value=value)
    if rule.message is not None:
        try:
            return rule.message.format_map(values)
        except (ValueError, TypeError, KeyError) as exc:
            return f"{_default_message(rule, values)} (message template failed: {exc})"
    return _default_message(rule, values)


def _default_message(rule, values: dict) -> str:
    if rule.kind == "simple":
        text = f"{rule.name}: {rule.condition.text}"
        return text if values["value"] is None else f"{text} (value {values['value']:})"
    shown = ", ".join(f"{name}={values.get(name)}" for name in rule.prepared.columns)
    return f"{rule.name}: {shown}" if shown else rule.name
