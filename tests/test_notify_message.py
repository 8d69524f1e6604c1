"""Message content: titles, facts, escaping per format and mentions, without any service."""

from __future__ import annotations

import pytest

from oculus.notify import message
from tests.test_notify_channels import alert

BASE = "https://oculus.example.com"


@pytest.mark.parametrize("changes, expected", [
    ({}, "🔴 CRITICAL: disk_full is firing"),
    ({"severity": "warn"}, "🟡 WARN: disk_full is firing"),
    ({"severity": "info", "reason": "repeat"}, "🔵 INFO: disk_full is still firing"),
    ({"state": "resolved", "severity": "error"}, "✅ RESOLVED: disk_full (error)"),
])
def test_title_of_one_alert(changes, expected):
    state = changes.pop("state", "firing")
    assert message.title([alert(state, **changes)]) == expected


def test_title_of_batch_counts_states():
    batch = [alert(), alert("resolved"), alert(severity="warn", id="n3")]

    assert message.title(batch) == "🔴 Oculus: 3 alerts (2 firing, 1 resolved)"


def test_title_of_resolved_batch_is_green():
    assert message.title([alert("resolved"), alert("resolved", id="n4")]).startswith("✅ Oculus: 2 alerts")


@pytest.mark.parametrize("markup, text, expected", [
    (message.TELEGRAM_HTML, "a_b *c* [d] <e> & f", "a_b *c* [d] &lt;e&gt; &amp; f"),
    (message.MARKDOWN_DISCORD, "a_b *c* [d] <@1> @everyone", "a\\_b \\*c\\* \\[d\\] \\<@\u200b1\\> @\u200beveryone"),
    (message.MARKDOWN_SLACK, "a <!channel> & b", "a ‹!channel› & b"),
    (message.TEXT, "a_b <c>", "a_b <c>"),
])
def test_escape_per_format(markup, text, expected):
    assert markup.escape(text) == expected


def test_mention_only_for_critical_firing():
    assert message.render([alert()], message.TEXT, BASE, "@oncall").startswith("@oncall\n\n")
    assert "@oncall" not in message.render([alert(severity="error")], message.TEXT, BASE, "@oncall")
    assert "@oncall" not in message.render([alert("resolved")], message.TEXT, BASE, "@oncall")


def test_facts_of_resolved_alert():
    facts = dict(message.facts(alert("resolved")))

    assert facts["Started"] == "2026-03-01 12:00:00 UTC"
    assert facts["Resolved"] == "2026-03-01 12:15:00 UTC"
    assert facts["Duration"] == "15m"
    assert facts["Labels"] == "mount=/var_lib"


def test_rule_link_quotes_name():
    assert message.rule_url(BASE + "/", "odds:fed-cut") == f"{BASE}/rules#rule-odds%3Afed-cut"


def test_email_html_escapes_values():
    html = message.render_email_html([alert(message="<script>x</script>")], BASE)

    assert "&lt;script&gt;x&lt;/script&gt;" in html
    assert "<script>" not in html
