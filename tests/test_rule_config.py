"""Rules in the config: one invalid file per message, symbol warnings, defaults and the documented examples."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from oculus import cli
from oculus.config import ConfigError, load_config
from oculus.config.schema import RULE_COMMON, SIMPLE_RULE_FIELDS, SQL_RULE_FIELDS

DATA = Path(__file__).resolve().parent / "data" / "rules"
ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "configs" / "config.example.yaml"
FUNCTIONS = "avg, change, change_pct, count, down, last, max, min, stale"

INVALID_RULES = [
    ("invalid-syntax.yaml",
     'invalid-syntax.yaml:3: rules[0].condition: rule "btc_high": invalid condition at column 24: '
     'expected a number, a symbol or a function call, got ">" (in: crypto.price.btc_usd > > 100000)'),
    ("invalid-function.yaml",
     'invalid-function.yaml:3: rules[0].condition: rule "btc_mean": invalid condition at column 1: '
     f'unknown function "mean"; known functions: {FUNCTIONS} (in: mean(crypto.price.btc_usd, 1h) > 100000)'),
    ("invalid-unknown-key.yaml",
     'invalid-unknown-key.yaml:4: rules[0].cooldwn: unknown key; did you mean "cooldown"?'),
    ("invalid-both-kinds.yaml",
     "invalid-both-kinds.yaml:2: rules[0]: set either condition (a simple rule) or sql (an SQL rule), not both"),
    ("invalid-duplicate.yaml",
     'invalid-duplicate.yaml:4: rules[1].name: duplicate rule name "api_down"; rules[0] has the same name'),
    ("invalid-cron.yaml",
     'invalid-cron.yaml:4: rules[0].cron: expected a cron expression of five fields such as "*/5 * * * *", '
     'got "every night"'),
    ("invalid-duration.yaml",
     'invalid-duration.yaml:4: rules[0].for: expected a duration like 500ms, 30s, 5m, 1h or 1m30s, '
     'got "2 minutes"'),
    ("invalid-message.yaml",
     'invalid-message.yaml:4: rules[0].message: unknown field "{value.__class__}" in the message; '
     "known fields: rule, severity, state, value"),
    ("invalid-missing-condition.yaml",
     'invalid-missing-condition.yaml:2: rules[0]: missing required key "condition" (or "sql" for an SQL rule)'),
    ("invalid-severity.yaml",
     'invalid-severity.yaml:4: rules[0].severity: expected one of info, warn, error, critical, got "fatal"'),
]


@pytest.mark.parametrize("name, message", INVALID_RULES, ids=[case[0] for case in INVALID_RULES])
def test_invalid_rule_file_message(monkeypatch, name, message):
    monkeypatch.chdir(DATA)
    with pytest.raises(ConfigError) as caught:
        load_config(name, env={})
    assert [str(problem) for problem in caught.value.problems] == [message]


def write(tmp_path, text: str) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return str(path)


SPEC_EXAMPLES = """
collectors:
  - {type: http, name: api_example, url: "http://127.0.0.1:1/"}
  - {type: crypto, assets: [btc, eth]}
channels:
  telegram: {type: telegram, bot_token: "123456:test-token", chat_id: "123456"}
  email: {type: email, smtp_host: 127.0.0.1, from: alerts@example.com, to: [ops@example.com]}
  slack: {type: slack, webhook: "https://hooks.slack.com/services/T000/B000/XXXX"}
rules:
  - name: btc_price_alert
    condition: "crypto.price.btc_usd > 100000"
    severity: info
    message: "BTC crossed $100k: {value}"
    channels: [telegram, log]
  - name: api_down
    condition: "net.http.api_example.status != 200"
    for: 2m
    cooldown: 15m
    severity: critical
    channels: [email, slack, log]
  - name: btc_volatility
    sql: |
      SELECT symbol, max(value) - min(value) AS spread, avg(value) AS avg_price
      FROM metrics
      WHERE symbol LIKE 'crypto.price.%' AND ts > now() - INTERVAL 1 HOUR
      GROUP BY symbol HAVING spread > avg_price * $threshold
    params: {threshold: 0.05}
    every: 5m          # or cron: "*/5 * * * *"
    severity: warn
    message: "{symbol} moved {spread:.0f} in 1h"
"""


def test_documented_examples_load(tmp_path):
    config = load_config(write(tmp_path, SPEC_EXAMPLES), env={})
    simple, down, sql = config.rules

    assert config.warnings == []
    assert (simple.kind, simple.severity, simple.channels, simple.for_) == ("simple", "info", ("telegram", "log"), 0)
    assert (down.for_, down.cooldown, down.severity, down.repeat) == (120.0, 900.0, "critical", None)
    assert (sql.kind, sql.every, sql.params, sql.prepared.columns) == ("sql", 300.0, {"threshold": 0.05},
                                                                        ["symbol", "spread", "avg_price"])


def test_rule_defaults(tmp_path):
    config = load_config(write(tmp_path, "rules:\n  - name: r\n    condition: 'x.y.z > 1'\n"), env={})
    rule = config.rules[0]

    assert rule.channels == ("log",)
    assert (rule.severity, rule.for_, rule.cooldown, rule.notify_resolved, rule.no_data) == ("warn", 0, 0, True, None)
    assert config.alerting.interval == 10.0
    assert config.alerting.no_data == "keep_state"


def test_unknown_symbol_is_warning(tmp_path):
    path = write(tmp_path, "collectors:\n  - {type: crypto, assets: [btc]}\n"
                           "rules:\n  - name: doge\n    condition: 'crypto.price.doge_usd > 1'\n")
    config = load_config(path, env={})

    assert config.warnings == [f'{path}:5: rules[0].condition: rule "doge": no configured collector emits symbol '
                               '"crypto.price.doge_usd"; the rule reports no data until one does']


def test_hyphen_warning_suggests_spaces(tmp_path):
    path = write(tmp_path, "collectors:\n  - {type: tcp, name: db, host: 127.0.0.1, port: 5432}\n"
                           "rules:\n  - name: r\n    condition: 'net.tcp.db.rtt_ms-5 > 1'\n")

    warning = load_config(path, env={}).warnings[0]

    assert 'write spaces around "-": net.tcp.db.rtt_ms - 5' in warning


def test_polymarket_symbols_are_known(tmp_path):
    path = write(tmp_path, "collectors:\n  - {type: polymarket, name: fed-cut, slug: fed-rate-cut}\n"
                           "rules:\n  - name: odds\n    condition: 'pred.poly.fed-cut.yes > 0.6'\n")

    assert load_config(path, env={}).warnings == []




def test_check_counts_rules(tmp_path, capsys):
    path = write(tmp_path, SPEC_EXAMPLES)

    assert cli.main(["check", "--json", "-c", path]) == 0
    assert json.loads(capsys.readouterr().out)["valid"] is True


def test_check_reports_every_rule_problem(tmp_path, capsys):
    path = write(tmp_path, "rules:\n  - name: a\n    condition: 'x.y >'\n  - name: b\n    condition: 'nope(x.y, 1m)'\n"
                           "  - name: c\n    sql: 'DROP TABLE samples'\n")

    assert cli.main(["check", "-c", path]) == 2
    assert "3 problem(s) found" in capsys.readouterr().err


# -- the example config documents every rule key --------------------------------

RULE_FIELDS = sorted({f.name for f in RULE_COMMON + SIMPLE_RULE_FIELDS + SQL_RULE_FIELDS})


@pytest.mark.parametrize("name", RULE_FIELDS)
def test_example_documents_rule_key(name):
    text = EXAMPLE.read_text(encoding="utf-8")
    rules_block = text[text.index("\n# rules:"):]

    assert re.search(rf"^#\s+(# )?(- )?{name}:", rules_block, flags=re.MULTILINE), f"rule key {name} is not documented"


def _commented_block(text: str, key: str) -> list[str]:
    """Return the YAML lines of the commented-out `key:` block of the example, uncommented."""
    block = text[text.index(f"\n# {key}:") + 1:].split("\n\n")[0]
    lines = [re.sub(r"^# ?", "", line) for line in block.splitlines() if line.startswith("#")]
    return [line for line in lines if re.match(rf"^({key}:|\s+)", line) and not line.strip().startswith("#")]


EXAMPLE_SECRETS = {"SMTP_PASS": "mail-password", "TG_TOKEN": "123456:example-token",
                   "DISCORD_WEBHOOK": "https://discord.com/api/webhooks/1234/example-token",
                   "SLACK_WEBHOOK": "https://hooks.slack.com/services/T000/B000/XXXX",
                   "ANY_APPRISE_URL": "json://127.0.0.1:9/", "HOOK_TOKEN": "Bearer example"}


def test_example_rules_block_valid(tmp_path):
    """The commented rules and channels blocks of the example, uncommented, load."""
    text = EXAMPLE.read_text(encoding="utf-8")
    yaml_lines = _commented_block(text, "rules") + _commented_block(text, "channels")

    config = load_config(write(tmp_path, "\n".join(yaml_lines) + "\n"), env=EXAMPLE_SECRETS)

    assert [rule.name for rule in config.rules] != []
    assert sorted(config.channels) == ["discord", "hook", "log", "ops", "ops_mail", "slack", "telegram"]
