"""The alert lifecycle with a simulated clock: for, cooldown, repeat, resolve, flapping, no data and restarts."""

from __future__ import annotations

import pytest

from tests.rule_support import RuleHarness, at

API = "net.http.api.status"


def rule_config(extra: str = "", alerting: str = "no_data_after: 1m") -> str:
    return (f"alerting:\n  interval: 10s\n  {alerting}\n"
            "rules:\n"
            "  - name: api_down\n"
            f"    condition: \"{API} != 200\"\n"
            "    message: \"API status {value}\"\n" + extra)


@pytest.fixture
def harness(tmp_path):
    created = []

    def create(extra: str = "", alerting: str = "no_data_after: 1m") -> RuleHarness:
        created.append(RuleHarness(tmp_path, rule_config(extra, alerting)))
        return created[-1]

    yield create
    for item in created:
        item.close()


def test_for_keeps_alert_pending(harness):
    rules = harness("    for: 1m\n")
    rules.sample(API, 0, 500)

    assert rules.run(0) == [("api_down", "inactive", "pending", False)]
    assert rules.run(30) == []
    assert rules.run(50) == []
    assert rules.run(60) == [("api_down", "pending", "firing", True)]
    assert rules.notified() == [("api_down", "firing", None, "API status 500")]


def test_pending_clears_without_notification(harness):
    rules = harness("    for: 1m\n")
    rules.sample(API, 0, 500)
    rules.run(0)
    rules.sample(API, 20, 200)

    assert rules.run(20) == [("api_down", "pending", "inactive", False)]
    assert rules.notified() == []


def test_resolve_is_notified(harness):
    rules = harness()
    rules.sample(API, 0, 500)
    rules.run(0)
    rules.sample(API, 10, 200)

    assert rules.run(10) == [("api_down", "firing", "resolved", True)]
    assert rules.notified() == [("api_down", "firing", None, "API status 500"),
                                ("api_down", "resolved", None, "API status 200")]
    assert rules.stored_state("api_down")["resolved_at"] == at(10)


def test_notify_resolved_false_skips_resolve(harness):
    rules = harness("    notify_resolved: false\n")
    rules.sample(API, 0, 500)
    rules.run(0)
    rules.sample(API, 10, 200)

    assert rules.run(10) == [("api_down", "firing", "resolved", False)]
    assert [state for _, state, _, _ in rules.notified()] == ["firing"]


def test_cooldown_delays_second_firing(harness):
    rules = harness("    cooldown: 5m\n")
    rules.sample(API, 0, 500)
    rules.run(0)
    rules.sample(API, 10, 200)
    rules.run(10)
    rules.notified()
    rules.sample(API, 20, 500)

    assert rules.run(20) == [("api_down", "resolved", "firing", False)]
    rules.sample(API, 300, 500)
    assert rules.run(300) == []
    rules.sample(API, 310, 500)
    assert rules.run(310) == [("api_down", "firing", "firing", True)]
    assert rules.notified() == [("api_down", "firing", "cooldown over", "API status 500")]


def test_cooldown_pairs_resolve_with_firing(harness):
    rules = harness("    cooldown: 5m\n")
    for seconds, status in ((0, 500), (10, 200), (20, 500), (30, 200)):
        rules.sample(API, seconds, status)
        rules.run(seconds)

    events = rules.alert_events("api_down")
    assert [(e["to"], e["notify"]) for e in events] == [("firing", True), ("resolved", True),
                                                        ("firing", False), ("resolved", False)]
    assert events[2]["reason"] == "cooldown"
    assert events[3]["reason"] == "firing not notified"
    assert [state for _, state, _, _ in rules.notified()] == ["firing", "resolved"]


def test_repeat_renotifies_while_firing(harness):
    rules = harness("    repeat: 1m\n")
    rules.sample(API, 0, 500)
    rules.run(0)
    for seconds in range(10, 130, 10):
        rules.sample(API, seconds, 500)
        rules.run(seconds)

    assert rules.notified() == [("api_down", "firing", None, "API status 500"),
                                ("api_down", "firing", "repeat", "API status 500"),
                                ("api_down", "firing", "repeat", "API status 500")]


def test_flapping_data_never_fires(harness):
    rules = harness("    for: 30s\n")
    transitions = []
    for seconds in range(0, 200, 10):
        rules.sample(API, seconds, 500 if seconds % 20 == 0 else 200)
        transitions += rules.run(seconds)

    assert {to for _, _, to, _ in transitions} == {"pending", "inactive"}
    assert rules.notified() == []
    assert len(rules.alert_events("api_down")) == 20


def test_no_data_keeps_firing_state(harness):
    rules = harness()
    rules.sample(API, 0, 500)
    rules.run(0)

    assert rules.run(120) == []
    assert rules.stored_state("api_down")["state"] == "firing"
    assert rules.stored_state("api_down")["no_data"] is True
    rules.sample(API, 130, 200)
    assert rules.run(130) == [("api_down", "firing", "resolved", True)]
    assert rules.stored_state("api_down")["no_data"] is False


def test_no_data_before_first_sample(harness):
    rules = harness()

    assert rules.run(0) == []
    assert rules.stored_state("api_down")["state"] == "inactive"
    assert rules.stored_state("api_down")["no_data"] is True


@pytest.mark.parametrize("policy, expected", [
    ("firing", [("api_down", "inactive", "firing", True)]),
    ("ok", []),
])
def test_no_data_policy(harness, policy, expected):
    rules = harness(f"    no_data: {policy}\n")

    assert rules.run(0) == expected


def test_no_data_ok_resolves(harness):
    rules = harness(alerting="no_data_after: 1m\n  no_data: ok")
    rules.sample(API, 0, 500)
    rules.run(0)

    assert rules.run(120) == [("api_down", "firing", "resolved", True)]


def test_failed_sample_without_value_is_no_data(harness):
    rules = harness()
    rules.sample(API, 0, None, success=False)

    assert rules.run(0) == []
    assert rules.stored_state("api_down")["no_data"] is True


def test_events_rows_per_transition(harness):
    rules = harness("    for: 10s\n    severity: critical\n")
    rules.sample(API, 0, 503)
    rules.run(0)
    rules.run(10)
    rules.sample(API, 20, 200)
    rules.run(20)

    events = rules.alert_events()
    assert [(e["from"], e["to"]) for e in events] == [("inactive", "pending"), ("pending", "firing"),
                                                      ("firing", "resolved")]
    assert [e["severity"] for e in events] == ["info", "critical", "info"]
    assert events[1]["message"] == "api_down firing: API status 503"
    assert events[1]["ts"] == at(10)
    assert events[1]["value"] == 503.0


# -- restart in each state ------------------------------------------------------


def test_restart_inactive_stays_quiet(harness):
    rules = harness()
    rules.sample(API, 0, 200)
    rules.run(0)
    rules.restart()

    assert rules.run(10) == []
    assert rules.stored_state("api_down")["state"] == "inactive"


def test_restart_pending_keeps_start(harness):
    rules = harness("    for: 1m\n")
    rules.sample(API, 0, 500)
    rules.run(0)
    rules.restart()
    rules.sample(API, 30, 500)

    assert rules.run(30) == []
    assert rules.run(60) == [("api_down", "pending", "firing", True)]


def test_restart_firing_no_duplicate(harness):
    rules = harness()
    rules.sample(API, 0, 500)
    rules.run(0)
    rules.notified()
    rules.restart()

    assert rules.run(10) == []
    assert rules.notified() == []
    rules.sample(API, 20, 200)
    assert rules.run(20) == [("api_down", "firing", "resolved", True)]
    assert rules.notified() == [("api_down", "resolved", None, "API status 200")]


def test_restart_resolved_fires_again(harness):
    rules = harness()
    rules.sample(API, 0, 500)
    rules.run(0)
    rules.sample(API, 10, 200)
    rules.run(10)
    rules.restart()

    assert rules.run(20) == []
    rules.sample(API, 30, 500)
    assert rules.run(30) == [("api_down", "resolved", "firing", True)]


def test_restart_keeps_cooldown(harness):
    rules = harness("    cooldown: 5m\n")
    rules.sample(API, 0, 500)
    rules.run(0)
    rules.sample(API, 10, 200)
    rules.run(10)
    rules.restart()
    rules.sample(API, 20, 500)

    assert rules.run(20) == [("api_down", "resolved", "firing", False)]


def test_restart_resolves_removed_rule(harness, tmp_path):
    rules = harness()
    rules.sample(API, 0, 500)
    rules.run(0)
    rules.config.rules = []
    rules.restart()

    assert rules.run(10) == []
    assert rules.stored_state("api_down")["state"] == "resolved"
    assert rules.alert_events()[-1]["reason"] == "rule removed"
    assert rules.notified() == [("api_down", "firing", None, "API status 500")]
