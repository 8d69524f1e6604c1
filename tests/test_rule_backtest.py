"""Backtests: replaying a small synthetic series gives the firings computed by hand, through the CLI too."""

from __future__ import annotations

import json
from datetime import timedelta

import duckdb
import pytest

from oculus import cli
from oculus.collectors.base import Sample
from oculus.rules.backtest import replay
from oculus.storage import Database, utc_now
from oculus.storage.writer import Writer
from tests.rule_support import T0, at, load_rules_config

RULES = """
alerting:
  interval: 30s
rules:
  - name: high
    condition: "x.y.v > 5"
    for: 2m
  - name: high_avg
    condition: "avg(x.y.v, 5m) > 5"
  - name: jump
    sql: >-
      SELECT symbol, max(value) AS top FROM metrics
      WHERE ts > now() - INTERVAL 90 SECOND GROUP BY symbol HAVING top > 5
    every: 1m
"""


def series_value(minute: int) -> float:
    """The synthetic series: 0 for minutes 0-9, 10 for minutes 10-19, 0 for minutes 20-29."""
    return 10.0 if 10 <= minute < 20 else 0.0


def write_series(db_path, start) -> None:
    database = Database(str(db_path))
    database.open()
    writer = Writer(database, 1000, 1000, 0.05)
    writer.start()
    writer.put([Sample(start + timedelta(minutes=minute), "x", "x.y.v", series_value(minute), True, 1.0, {})
                for minute in range(30)])
    assert writer.stop(5.0)
    database.close()


def transitions_by_rule(result) -> dict:
    found: dict = {}
    for transition in result.transitions:
        if transition.state in ("firing", "resolved"):
            found.setdefault(transition.rule, []).append((transition.state, transition.ts))
    return found


def test_backtest_matches_hand_computed(tmp_path):
    db_path = tmp_path / "oculus.duckdb"
    write_series(db_path, T0)
    config = load_rules_config(tmp_path, RULES)

    with duckdb.connect(str(db_path), read_only=True) as connection:
        result = replay(config, connection.cursor(), since=1800, end=at(1800))

    assert result.passes == 61
    # high: true from the sample at 10:00, pending for 2 minutes, false again from the sample at 20:00.
    # high_avg: the 5 minute mean of samples in (now - 5m, now] first exceeds 5 at 12:00 (0,0,10,10,10)
    #   and falls to 4 at 22:00 (10,10,0,0,0).
    # jump: runs at 0:00, 1:00, ...; the max over the last 90 s is 10 from 10:00 and 0 again at 21:00.
    assert transitions_by_rule(result) == {
        "high": [("firing", at(720)), ("resolved", at(1200))],
        "high_avg": [("firing", at(720)), ("resolved", at(1320))],
        "jump": [("firing", at(600)), ("resolved", at(1260))],
    }


def test_backtest_sql_sees_no_future_rows(tmp_path):
    db_path = tmp_path / "oculus.duckdb"
    write_series(db_path, T0)
    config = load_rules_config(tmp_path, RULES)

    with duckdb.connect(str(db_path), read_only=True) as connection:
        result = replay(config, connection.cursor(), since=300, end=at(300), rule_names=["jump"])

    assert result.transitions == []


def test_rules_test_cli_prints_firings(tmp_path, capsys):
    db_path = tmp_path / "oculus.duckdb"
    start = utc_now().replace(microsecond=0) - timedelta(minutes=30)
    write_series(db_path, start)
    config_path = tmp_path / "rules.yaml"
    config_path.write_text(RULES, encoding="utf-8")

    status = cli.main(["rules", "test", "-c", str(config_path), "--db-path", str(db_path), "--since", "40m",
                       "--rule", "high", "--json"])
    captured = capsys.readouterr()
    lines = [json.loads(line) for line in captured.out.splitlines()]

    assert status == 0, captured.err
    assert [(line["rule"], line["to"]) for line in lines] == [("high", "firing"), ("high", "resolved")]
    assert "replayed 1 rule(s)" in captured.err


def test_rules_test_cli_text_summary(tmp_path, capsys):
    db_path = tmp_path / "oculus.duckdb"
    write_series(db_path, utc_now() - timedelta(minutes=30))
    config_path = tmp_path / "rules.yaml"
    config_path.write_text(RULES, encoding="utf-8")

    status = cli.main(["rules", "test", "-c", str(config_path), "--db-path", str(db_path), "--since", "1h"])
    output = capsys.readouterr().out

    assert status == 0
    assert output.splitlines()[-1] == "3 firing(s), 3 resolve(s)"
    assert " high  firing  value=10  high: x.y.v > 5 (value 10)" in output


@pytest.mark.parametrize("argv, message", [
    (["--rule", "nope"], "no rule named nope in"),
    (["--since", "a week"], '--since: expected a duration such as 1h or 7d, got "a week"'),
])
def test_rules_test_cli_rejects_input(tmp_path, capsys, argv, message):
    config_path = tmp_path / "rules.yaml"
    config_path.write_text(RULES, encoding="utf-8")

    status = cli.main(["rules", "test", "-c", str(config_path), "--db-path", str(tmp_path / "none.duckdb"), *argv])

    assert status == 2
    assert message in capsys.readouterr().err


def test_rules_test_cli_missing_database(tmp_path, capsys):
    config_path = tmp_path / "rules.yaml"
    config_path.write_text(RULES, encoding="utf-8")
    db_path = tmp_path / "none.duckdb"

    status = cli.main(["rules", "test", "-c", str(config_path), "--db-path", str(db_path)])

    assert status == 1
    assert f"database {db_path} does not exist" in capsys.readouterr().err
    assert not db_path.exists()
