"""Validate the `rules:` list of the config into RuleSpec objects.

Conditions compile through the same code that evaluates them, and SQL rules
are checked and run once on an empty in-memory database with the Oculus
schema, so every syntax error is reported when the config is loaded.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field

from oculus.config.schema import RULE_COMMON, SIMPLE_RULE_FIELDS, SQL_RULE_FIELDS
from oculus.rules.expression import Condition, ExpressionError, compile_condition

DEFAULT_SQL_EVERY = 60.0


@dataclass
class RuleSpec:
    """One validated rule; `kind` is "simple" (a condition) or "sql" (a query run on a schedule)."""

    name: str
    kind: str
    severity: str
    message: str | None
    for_: float
    cooldown: float
    repeat: float | None
    notify_resolved: bool
    channels: tuple
    condition: Condition | None = None
    no_data: str | None = None
    sql: str | None = None
    params: dict = field(default_factory=dict)
    every: float | None = None
    cron: str | None = None
    prepared: object = None  # oculus.rules.sqlrule.PreparedQuery of an SQL rule

    @property
    def expression(self) -> str | None:
        return self.condition.text if self.condition is not None else None


class RuleLoader:
    """Validate rules on behalf of the config loader, which collects the problems and warnings."""

    def __init__(self, loader, collectors: list, channels: dict | None = None, default_channels: dict | None = None):
        self.loader = loader
        self.collectors = collectors
        self.channels = channels
        self.default_channels = default_channels or {}
        self._database = None
        self._symbols = None

    def load(self, raw) -> list[RuleSpec]:
        if raw is None:
            return []
        if not isinstance(raw, list):
            self.loader.problem(("rules",), "expected a list of rules, each starting with '- name: ...'")
            return []
        rules, seen = [], {}
        try:
            for index, item in enumerate(raw):
                rule = self.rule(item, ("rules", index))
                if rule is None:
                    continue
                if rule.name in seen:
                    self.loader.problem(("rules", index, "name"), f'duplicate rule name "{rule.name}"; '
                                        f"rules[{seen[rule.name]}] has the same name")
                    continue
                seen[rule.name] = index
                rules.append(rule)
        finally:
            if self._database is not None:
                self._database.close()
        return rules

    def rule(self, item, path: tuple) -> RuleSpec | None:
        if not isinstance(item, dict):
            self.loader.problem(path, "expected a mapping with a name and a condition or an sql query")
            return None
        if "condition" in item and "sql" in item:
            self.loader.problem(path, "set either condition (a simple rule) or sql (an SQL rule), not both")
            return None
        if "condition" not in item and "sql" not in item:
            self.loader.problem(path, 'missing required key "condition" (or "sql" for an SQL rule)')
            return None

        kind = "sql" if "sql" in item else "simple"
        fields = RULE_COMMON + (SQL_RULE_FIELDS if kind == "sql" else SIMPLE_RULE_FIELDS)
        values = self.values(item, path, fields)
        if values is None:
            return None

        channels = self.rule_channels(values["channels"], values["severity"], path)
        if channels is None:
            return None
        spec = RuleSpec(values["name"], kind, values["severity"], values["message"], values["for"],
                        values["cooldown"], values["repeat"], values["notify_resolved"], channels,
                        no_data=values.get("no_data"), params=values.get("params") or {},
                        every=values.get("every"), cron=values.get("cron"))
        if kind == "simple":
            return self.simple(spec, values["condition"], path)
        return self.sql(spec, values["sql"], path)

    def values(self, item: dict, path: tuple, fields: tuple) -> dict | None:
        names = [f.name for f in fields]
        before = len(self.loader.problems)
        for key in item:
            if key not in names:
                self.loader.unknown_key(path, key, names)
        values = {}
        for f in fields:
            if f.name in item:
                values[f.name] = self.loader.parse(f, item[f.name], path + (f.name,))
            elif f.required:
                self.loader.problem(path, f'missing required key "{f.name}": {f.help}')
            else:
                values[f.name] = f.default
        return values if len(self.loader.problems) == before else None

    # -- simple rules --------------------------------------------------------

    def simple(self, spec: RuleSpec, text: str, path: tuple) -> RuleSpec | None:
        try:
            spec.condition = compile_condition(text)
        except ExpressionError as exc:
            self.loader.problem(path + ("condition",), f'rule "{spec.name}": invalid condition at column '
                                f"{exc.column}: {exc.message} (in: {text})")
            return None
        if not self.check_message(spec, path, {"value", "rule", "severity", "state"}):
            return None
        for symbol in spec.condition.symbols:
            if not self.emitted(symbol):
                self.warn(path + ("condition",), f'rule "{spec.name}": no configured collector emits symbol '
                          f'"{symbol}"{_subtraction_hint(symbol, self.emitted)}; the rule reports no data until '
                          "one does")
        return spec

    def emitted(self, symbol: str) -> bool:
        if self._symbols is None:
            from oculus.rules.symbols import known_symbols

            self._symbols = known_symbols(self.collectors)
        exact, prefixes = self._symbols
        return symbol in exact or symbol.startswith(prefixes)

    # -- SQL rules -----------------------------------------------------------

    def sql(self, spec: RuleSpec, text: str, path: tuple) -> RuleSpec | None:
        from oculus.rules.sqlrule import SqlRuleError, prepare

        if spec.every is not None and spec.cron is not None:
            self.loader.problem(path, "set either every or cron, not both")
            return None
        if spec.every is None and spec.cron is None:
            spec.every = DEFAULT_SQL_EVERY
        if self._database is None:
            from oculus.rules.sqlrule import schema_database

            self._database = schema_database()
        try:
            spec.prepared = prepare(self._database, text, spec.params)
        except SqlRuleError as exc:
            self.loader.problem(path + (exc.key or "sql",), f'rule "{spec.name}": {exc}')
            return None
        spec.sql = text
        fields = {"rule", "severity", "state", "value", *spec.prepared.columns}
        return spec if self.check_message(spec, path, fields) else None

    # -- shared --------------------------------------------------------------

    def rule_channels(self, named: tuple | None, severity: str, path: tuple) -> tuple | None:
        """Return the rule's channels: its own, else the default of its severity, else log; None when unknown."""
        if named is None:
            return tuple(self.default_channels.get(severity, ())) or ("log",)
        if self.channels is None:
            return named
        from oculus.config import unknown_channel_message

        unknown = [name for name in named if name not in self.channels]
        for name in unknown:
            self.loader.problem(path + ("channels",), unknown_channel_message(name, self.channels))
        return None if unknown else named

    def check_message(self, spec: RuleSpec, path: tuple, fields: set) -> bool:
        """Report a message template that has a syntax error or names a field the rule does not have."""
        if spec.message is None:
            return True
        try:
            names = [name for _, name, _, _ in string.Formatter().parse(spec.message) if name is not None]
        except ValueError as exc:
            self.loader.problem(path + ("message",), f"invalid message template: {exc}; write {{{{ and }}}} "
                                "for literal braces")
            return False
        for name in names:
            if name not in fields:
                known = ", ".join(sorted(fields))
                self.loader.problem(path + ("message",), f'unknown field "{{{name}}}" in the message; '
                                    f"known fields: {known}")
                return False
        return True

    def warn(self, path: tuple, message: str) -> None:
        from oculus.config import Problem, _format_path

        self.loader.warnings.append(str(Problem(self.loader.source, self.loader.located.line_of(path),
                                                _format_path(path), message)))


def _subtraction_hint(symbol: str, emitted) -> str:
    """Suggest spaces around "-" when the part before a hyphen is a symbol that exists."""
    head = symbol.rsplit("-", 1)[0]
    if "-" in symbol and emitted(head):
        return f' (to subtract, write spaces around "-": {head} - {symbol[len(head) + 1:]})'
    return ""
