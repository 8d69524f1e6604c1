"""SQL rules on a real DuckDB file: instances per row, read-only guard, bound parameters, timeout, schedule."""

from __future__ import annotations

import json

import pytest

from oculus.config import ConfigError
from oculus.rules.sqlrule import prepare, schema_database
from tests.rule_support import RuleHarness, at, load_rules_config

VOLATILITY = """
alerting:
  interval: 10s
  sql_timeout: 300ms
rules:
  - name: volatility
    sql: |
      SELECT symbol, max(value) - min(value) AS spread, avg(value) AS avg_price
      FROM metrics
      WHERE symbol LIKE 'crypto.price.%' AND ts > now() - INTERVAL 1 HOUR
      GROUP BY symbol HAVING spread > avg_price * $threshold
    params: {threshold: 0.05}
    every: 5m
    message: "{symbol} moved {spread:.0f} in 1h"
"""


@pytest.fixture
def harness(tmp_path):
    created = []

    def create(text: str) -> RuleHarness:
        created.append(RuleHarness(tmp_path, text))
        return created[-1]

    yield create
    for item in created:
        item.close()


def seed_prices(rules: RuleHarness, symbol: str, values: list, start: float = 0, step: float = 60) -> None:
    for index, value in enumerate(values):
        rules.sample(symbol, start + index * step, value)


def test_sql_rows_are_separate_instances(harness):
    rules = harness(VOLATILITY)
    seed_prices(rules, "crypto.price.btc_usd", [100_000, 110_000])
    seed_prices(rules, "crypto.price.eth_usd", [3_000, 3_300])
    seed_prices(rules, "crypto.price.sol_usd", [100, 101])

    transitions = rules.engine.run_pass(at(120)).transitions

    assert sorted((t.instance, t.state) for t in transitions) == [
        ('{"symbol":"crypto.price.btc_usd"}', "firing"), ('{"symbol":"crypto.price.eth_usd"}', "firing")]
    assert sorted(message for _, _, _, message in rules.notified()) == [
        "crypto.price.btc_usd moved 10000 in 1h", "crypto.price.eth_usd moved 300 in 1h"]
    stored = rules.stored_state("volatility", '{"symbol":"crypto.price.btc_usd"}')
    assert stored["value"] == 10_000.0
    assert json.loads(stored["labels"]) == {"symbol": "crypto.price.btc_usd"}


def test_sql_missing_row_resolves(harness):
    rules = harness(VOLATILITY)
    seed_prices(rules, "crypto.price.btc_usd", [100_000, 110_000])
    seed_prices(rules, "crypto.price.eth_usd", [3_000, 3_300])
    rules.engine.run_pass(at(120))
    rules.notified()

    # An hour later the old samples are out of the window; BTC moves again, ETH does not.
    seed_prices(rules, "crypto.price.btc_usd", [100_000, 120_000], start=4000)
    seed_prices(rules, "crypto.price.eth_usd", [3_300, 3_300], start=4000)
    transitions = rules.engine.run_pass(at(4100)).transitions

    assert [(t.instance, t.previous, t.state) for t in transitions] == [
        ('{"symbol":"crypto.price.eth_usd"}', "firing", "resolved")]
    assert rules.notified() == [("volatility", "resolved", None, "crypto.price.eth_usd moved 300 in 1h")]


def test_sql_runs_every_interval(harness):
    rules = harness(VOLATILITY)

    rules.engine.run_pass(at(0))
    rules.engine.run_pass(at(60))
    next_run = rules.engine.evaluator.status["volatility"].next_run

    assert next_run == at(300)


def test_sql_cron_schedule(harness):
    rules = harness(VOLATILITY.replace("every: 5m", 'cron: "*/15 * * * *"'))

    rules.engine.run_pass(at(60))

    assert rules.engine.evaluator.status["volatility"].next_run == at(15 * 60)


def test_sql_reads_pass_clock(harness):
    """The rule's now() is the pass's simulated time: the 2026 samples are inside its last hour."""
    rules = harness(VOLATILITY)
    seed_prices(rules, "crypto.price.btc_usd", [100_000, 110_000])

    later = rules.engine.run_pass(at(120)).transitions

    assert len(later) == 1


def test_sql_params_bound_not_pasted(harness):
    rules = harness("""
rules:
  - name: by_pattern
    sql: "SELECT symbol, value FROM latest WHERE symbol LIKE $pattern"
    params: {pattern: "crypto.price.%' OR '1'='1"}
""")
    seed_prices(rules, "crypto.price.btc_usd", [1])

    assert rules.engine.run_pass(at(60)).transitions == []
    assert rules.engine.evaluator.status["by_pattern"].last_error is None


def test_sql_timeout_keeps_state(harness):
    rules = harness(VOLATILITY)
    seed_prices(rules, "crypto.price.btc_usd", [100_000, 110_000])
    rules.engine.run_pass(at(120))
    slow = """
      SELECT 'crypto.price.btc_usd' AS symbol, count(*) AS spread, 1.0 AS avg_price
      FROM range(100000000) a, range(1000) b WHERE a.range + b.range > $threshold
    """
    rules.engine.evaluator.sql[0].prepared = prepare(schema_database(), slow, {"threshold": 0.05})

    transitions = rules.engine.run_pass(at(500)).transitions

    assert transitions == []
    assert rules.engine.evaluator.status["volatility"].last_error == \
        "the query ran longer than 0.3 s and was stopped"
    assert rules.stored_state("volatility", '{"symbol":"crypto.price.btc_usd"}')["state"] == "firing"


def config_problems(tmp_path, sql: str, params: str = "") -> list[str]:
    text = f"rules:\n  - name: bad\n    sql: \"{sql}\"\n{params}"
    with pytest.raises(ConfigError) as caught:
        load_rules_config(tmp_path, text)
    return [f"{p.path}: {p.message}" for p in caught.value.problems]


@pytest.mark.parametrize("sql, message", [
    ("SELECT * FROM read_csv('/etc/passwd')",
     'rules[0].sql: rule "bad": unsafe query: table function read_csv() is not allowed; '
     "only generate_series, range, unnest may be used in FROM"),
    ("SELECT * FROM '/etc/passwd'",
     'rules[0].sql: rule "bad": unsafe query: reading "/etc/passwd" is not allowed; '
     "query one of: alert_state, events, latest, metrics, metrics_1h, metrics_1m, samples"),
    ("CREATE TABLE stolen AS SELECT * FROM samples",
     'rules[0].sql: rule "bad": unsafe query: only SELECT queries are allowed, got CREATE'),
    ("INSERT INTO events (ts, kind, severity, message) VALUES (now(), 'x', 'info', 'x')",
     'rules[0].sql: rule "bad": unsafe query: only SELECT queries are allowed, got INSERT'),
    ("COPY samples TO '/tmp/out.csv'",
     'rules[0].sql: rule "bad": unsafe query: only SELECT queries are allowed, got COPY'),
    ("SELECT getenv('HOME') AS home",
     'rules[0].sql: rule "bad": unsafe query: function getenv() is not allowed in queries'),
    ("SELEC 1", 'rules[0].sql: rule "bad": invalid query: Parser Error: syntax error at or near "SELEC"'),
    ("SELECT nothing FROM metrics",
     'rules[0].sql: rule "bad": invalid query: Binder Error: Referenced column "nothing" not found in FROM '
     "clause!"),
])
def test_sql_rule_rejected_at_load(tmp_path, sql, message):
    problems = config_problems(tmp_path, sql)
    assert len(problems) == 1
    assert problems[0].startswith(message)


@pytest.mark.parametrize("sql, params, message", [
    ("SELECT 1 AS x WHERE $limit > 0", "",
     'rules[0].params: rule "bad": the query uses $limit, but params has no value for limit'),
    ("SELECT 1 AS x", "    params: {limit: 5}\n",
     'rules[0].params: rule "bad": params.limit is not used in the query; write $limit where it belongs or remove it'),
    ("SELECT 1 AS x WHERE $oculus_now IS NOT NULL", "    params: {oculus_now: 5}\n",
     'rules[0].params: rule "bad": params.oculus_now is reserved for the evaluation time; rename it'),
])
def test_sql_params_checked_at_load(tmp_path, sql, params, message):
    assert config_problems(tmp_path, sql, params) == [message]


def test_sql_message_fields_checked(tmp_path):
    problems = config_problems(tmp_path, "SELECT symbol FROM latest", "    message: '{symbol} {spread}'\n")

    assert problems == ['rules[0].message: unknown field "{spread}" in the message; '
                        "known fields: rule, severity, state, symbol, value"]
