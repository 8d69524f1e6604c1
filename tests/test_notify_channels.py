"""Each channel type against a real receiver on loopback: exact payloads, escaping, retries, timeouts, secrets.

Telegram, Discord and Slack are apprise's own plugins, with their service URLs
pointed at a loopback HTTP receiver. The generic apprise channel uses
apprise's json:// and form:// targets on the same receiver. Email goes to
aiosmtpd on 127.0.0.1.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import pytest

from oculus.config import ChannelSpec, Secret
from oculus.notify.channels import build_channel
from oculus.notify.notification import Notification
from oculus.notify.store import DELIVERED, FAILED, RETRYING
from oculus.notify.worker import ChannelWorker
from oculus.notify.store import Delivery
from tests.notify_support import (
    DISCORD_PREFIX,
    SECRET_PASSWORD,
    SECRET_TOKEN,
    SECRET_WEBHOOK_PART,
    SECRETS,
    SLACK_PREFIX,
    TELEGRAM_PREFIX,
    Response,
    Receiver,
    SmtpReceiver,
    block_public_network,
    point_apprise_at,
)

BASE = "http://127.0.0.1:8470"
T0 = datetime(2026, 3, 1, 12, 5, 0)
RULE_LINK = f"{BASE}/rules#rule-disk_full"
DISCORD_WEBHOOK = f"https://discord.com/api/webhooks/4242/{SECRET_WEBHOOK_PART}"
SLACK_WEBHOOK = f"https://hooks.slack.com/services/T0001/B0002/{SECRET_WEBHOOK_PART}"


@pytest.fixture
def receiver(monkeypatch):
    block_public_network(monkeypatch)
    server = Receiver()
    point_apprise_at(monkeypatch, server)
    yield server
    server.stop()


def alert(state="firing", severity="critical", message="Disk / at 97% <db_1> & *more* [x]", **changes):
    values = dict(rule="disk_full", instance="", state=state, severity=severity, message=message,
                  ts=T0 if state == "firing" else T0 + timedelta(minutes=10), value=97.5,
                  labels={"mount": "/var_lib"}, channels=("x",), started_at=T0 - timedelta(minutes=5),
                  id="n1" if state == "firing" else "n2")
    values.update(changes)
    return Notification(**values)


def spec(kind: str, mention=None, retries=3, timeout=2.0, **options) -> ChannelSpec:
    return ChannelSpec("x", kind, 0.0, retries, 1.0, timeout, mention, options)


def telegram(**changes) -> ChannelSpec:
    return spec("telegram", bot_token=Secret(SECRET_TOKEN), chat_id="-1001234", **changes)


def discord(**changes) -> ChannelSpec:
    return spec("discord", webhook=Secret(DISCORD_WEBHOOK), **changes)


def slack(**changes) -> ChannelSpec:
    return spec("slack", webhook=Secret(SLACK_WEBHOOK), **changes)


def send(channel_spec: ChannelSpec, *notifications):
    channel = build_channel(channel_spec, BASE)
    try:
        return channel.send(list(notifications))
    finally:
        channel.close()


# -- exact payloads ------------------------------------------------------------

TELEGRAM_FIRING = (
    "<b>🔴 CRITICAL: disk_full is firing</b>\r\n"
    "@oncall\r\n\r\n"
    "<b>Message:</b> Disk / at 97% &lt;db_1&gt; &amp; *more* [x]\r\n"
    "<b>Severity:</b> critical\r\n"
    "<b>State:</b> firing\r\n"
    "<b>Value:</b> 97.5\r\n"
    "<b>Labels:</b> mount=/var_lib\r\n"
    "<b>Started:</b> 2026-03-01 12:00:00 UTC\r\n"
    "<b>Duration:</b> 5m\r\n"
    f'<a href="{RULE_LINK}">Open the rule in Oculus</a>'
)


def test_telegram_payload_escapes_html(receiver):
    outcome = send(telegram(mention="@oncall"), alert())

    assert outcome.delivered, outcome
    [request] = receiver.requests_to(TELEGRAM_PREFIX)
    assert request.path == f"{TELEGRAM_PREFIX}{SECRET_TOKEN}/sendMessage"
    assert request.json() == {"chat_id": -1001234, "parse_mode": "HTML", "text": TELEGRAM_FIRING,
                              "disable_notification": False, "disable_web_page_preview": True}


def test_telegram_resolved_has_no_mention(receiver):
    assert send(telegram(mention="@oncall"), alert("resolved")).delivered

    text = receiver.requests_to(TELEGRAM_PREFIX)[0].json()["text"]
    assert text.startswith("<b>✅ RESOLVED: disk_full (critical)</b>\r\n<b>Message:</b>")
    assert "@oncall" not in text
    assert "<b>Resolved:</b> 2026-03-01 12:15:00 UTC\r\n<b>Duration:</b> 15m" in text


DISCORD_DESCRIPTION = (
    "@here\n\n"
    "**Message:** Disk / at 97% \\<db\\_1\\> & \\*more\\* \\[x\\] @\u200beveryone\n"
    "**Severity:** critical\n"
    "**State:** firing\n"
    "**Value:** 97.5\n"
    "**Labels:** mount=/var\\_lib\n"
    "**Started:** 2026-03-01 12:00:00 UTC\n"
    "**Duration:** 5m\n"
    f"[Open the rule in Oculus]({RULE_LINK})"
)


def test_discord_payload_escapes_markdown_and_mentions(receiver):
    outcome = send(discord(mention="@here"), alert(message="Disk / at 97% <db_1> & *more* [x] @everyone"))

    assert outcome.delivered, outcome
    [request] = receiver.requests_to(DISCORD_PREFIX)
    assert request.path == f"{DISCORD_PREFIX}/4242/{SECRET_WEBHOOK_PART}"
    body = request.json()
    assert body["content"] == "👉 @here"
    assert body["allow_mentions"] == {"parse": ["here"], "users": [], "roles": []}
    assert body["username"] == "Oculus"
    [embed] = body["embeds"]
    assert embed["title"] == "🔴 CRITICAL: disk_full is firing"
    assert embed["description"] == DISCORD_DESCRIPTION
    assert embed["author"] == {"name": "Oculus", "url": BASE}


def test_discord_colours_by_severity(receiver):
    send(discord(), alert())
    send(discord(), alert(severity="warn"))
    send(discord(), alert("resolved"))

    colours = [r.json()["embeds"][0]["color"] for r in receiver.requests_to(DISCORD_PREFIX)]
    assert len(set(colours)) == 3


SLACK_TEXT = (
    "<!channel>\n\n"
    "*Message:* Disk / at 97% ‹db_1› &amp; _more_ [x]\n"
    "*Severity:* critical\n"
    "*State:* firing\n"
    "*Value:* 97.5\n"
    "*Labels:* mount=/var_lib\n"
    "*Started:* 2026-03-01 12:00:00 UTC\n"
    "*Duration:* 5m\n"
    f"<{RULE_LINK}|Open the rule in Oculus>"
)


def test_slack_payload_neutralizes_angle_brackets(receiver):
    outcome = send(slack(mention="<!channel>"), alert())

    assert outcome.delivered, outcome
    [request] = receiver.requests_to(SLACK_PREFIX)
    assert request.path == f"{SLACK_PREFIX}/T0001/B0002/{SECRET_WEBHOOK_PART}"
    body = request.json()
    assert body["mrkdwn"] is True
    [attachment] = body["attachments"]
    assert attachment["title"] == "🔴 CRITICAL: disk_full is firing"
    assert attachment["text"] == SLACK_TEXT
    assert attachment["color"] == "#A32037"


def test_webhook_posts_alert_json(receiver):
    hook = spec("webhook", url=Secret(receiver.url + "/hook"), headers={"Authorization": Secret("Bearer t0k")})

    assert send(hook, alert()).delivered

    [request] = receiver.requests_to("/hook")
    assert request.headers["Authorization"] == "Bearer t0k"
    assert request.headers["Content-Type"] == "application/json"
    body = request.json()
    assert body["title"] == "🔴 CRITICAL: disk_full is firing"
    assert body["alerts"] == [{
        "rule": "disk_full", "instance": "", "state": "firing", "severity": "critical",
        "message": "Disk / at 97% <db_1> & *more* [x]", "value": 97.5, "labels": {"mount": "/var_lib"},
        "reason": None, "started_at": "2026-03-01T12:00:00Z", "at": "2026-03-01T12:05:00Z",
        "duration_seconds": 300.0, "url": RULE_LINK,
    }]


def test_apprise_json_target(receiver):
    url = receiver.url.replace("http://", "json://") + "/apprise-json"

    assert send(spec("apprise", url=Secret(url)), alert()).delivered

    body = receiver.requests_to("/apprise-json")[0].json()
    assert (body["title"], body["type"]) == ("🔴 CRITICAL: disk_full is firing", "failure")
    assert body["message"].startswith("Message: Disk / at 97% <db_1> & *more* [x]\nSeverity: critical\n")
    assert body["message"].endswith(f"\n{RULE_LINK}")


def test_apprise_form_target(receiver):
    url = receiver.url.replace("http://", "form://") + "/apprise-form"

    assert send(spec("apprise", url=Secret(url)), alert("resolved")).delivered

    form = receiver.requests_to("/apprise-form")[0].form()
    assert (form["title"], form["type"]) == ("✅ RESOLVED: disk_full (critical)", "success")
    assert "Resolved: 2026-03-01 12:15:00 UTC" in form["message"]


def test_batch_lists_each_alert(receiver):
    second = alert(rule="api_down", severity="warn", message="API returns 503", id="n3")

    assert send(telegram(), alert(), second).delivered

    text = receiver.requests_to(TELEGRAM_PREFIX)[0].json()["text"]
    assert text.startswith("<b>🔴 Oculus: 2 alerts (2 firing)</b>\r\n<b>🔴 CRITICAL: disk_full is firing</b>\r\n")
    assert "\r\n\r\n<b>🟡 WARN: api_down is firing</b>\r\n<b>Message:</b> API returns 503\r\n" in text


# -- failures ------------------------------------------------------------------


@pytest.mark.parametrize("make_spec, prefix, response, retry_after", [
    (slack, SLACK_PREFIX, Response(429, b"rate_limited", {"Retry-After": "7"}), 7.0),
    (telegram, TELEGRAM_PREFIX, Response(429, b'{"ok": false, "error_code": 429, "parameters": {"retry_after": 5}}',
                                       {"Content-Type": "application/json"}), 5.0),
    (discord, DISCORD_PREFIX, Response(429, b'{"retry_after": 2.5, "global": false}',
                                     {"Content-Type": "application/json", "X-RateLimit-Reset-After": "2.5"}), 2.5),
])
def test_rate_limit_reports_retry_after(receiver, make_spec, prefix, response, retry_after):
    # Discord's plugin retries a 429 once by itself, so its stand-in responds with 429 twice.
    receiver.script(prefix, response, response)

    outcome = send(make_spec(), alert())

    assert not outcome.delivered
    assert outcome.retry_after == retry_after
    assert outcome.permanent is False
    assert outcome.error == f"HTTP 429 Too Many Requests, retry after {retry_after:g}s"


@pytest.mark.parametrize("status, permanent", [(500, False), (502, False), (401, True), (404, True), (408, False)])
def test_http_error_marked_permanent_or_retryable(receiver, status, permanent):
    receiver.script(SLACK_PREFIX, Response(status, b"nope"))

    outcome = send(slack(), alert())

    assert (outcome.delivered, outcome.permanent) == (False, permanent)
    assert outcome.error.startswith(f"HTTP {status} ")


def test_hung_receiver_times_out(receiver):
    receiver.script("/slow", Response(200, b"late", delay=2.0))
    hook = spec("webhook", url=Secret(receiver.url + "/slow"), headers={}, timeout=0.3)

    outcome = send(hook, alert())

    assert (outcome.delivered, outcome.error, outcome.permanent) == (False, "timed out after 0.3s", False)


def test_hung_receiver_times_out_through_apprise(receiver):
    receiver.script(TELEGRAM_PREFIX, Response(200, b'{"ok": true}', delay=2.0))

    outcome = send(telegram(timeout=0.3), alert())

    assert (outcome.delivered, outcome.error) == (False, "timed out after 0.3s")


def test_refused_connection(receiver):
    hook = spec("webhook", url=Secret("http://127.0.0.1:9/closed"), headers={})

    assert send(hook, alert()).error == "connection refused"


# -- the worker: retries with an injected clock -------------------------------------


class Recorded:
    def __init__(self):
        self.calls: list[tuple] = []

    def __call__(self, deliveries, detail, wait):
        self.calls.append(([(d.channel, d.status, d.attempts, d.last_error) for d in deliveries], detail))

    def statuses(self) -> list[str]:
        return [items[0][1] for items, _ in self.calls]


def worker_for(channel_spec: ChannelSpec) -> tuple[ChannelWorker, Recorded]:
    recorded = Recorded()
    return ChannelWorker(build_channel(channel_spec, BASE), recorded, clock=lambda: T0), recorded


def test_rate_limit_then_success_waits_retry_after(receiver):
    receiver.script(SLACK_PREFIX, Response(429, b"rate_limited", {"Retry-After": "30"}))
    worker, recorded = worker_for(slack())
    worker.add([Delivery(alert(), "x")], now=T0)

    assert worker.step(T0) == 0.0
    assert worker.step(T0 + timedelta(seconds=29)) == pytest.approx(1.0, abs=0.1)
    assert len(receiver.requests_to(SLACK_PREFIX)) == 1
    worker.step(T0 + timedelta(seconds=31))

    assert recorded.statuses() == [RETRYING, DELIVERED]
    assert recorded.calls[0][1]["retry_in"] == pytest.approx(30.0, abs=0.5)
    assert len(receiver.requests_to(SLACK_PREFIX)) == 2
    assert worker.step(T0 + timedelta(seconds=60)) is None


def test_server_error_three_times_gives_up(receiver):
    receiver.script(SLACK_PREFIX, *[Response(500, b"oops")] * 3)
    worker, recorded = worker_for(slack(retries=2))
    worker.add([Delivery(alert(), "x")], now=T0)

    for seconds in (0, 1.5, 3.5, 100):  # retry_delay 1s, doubled: retries at about 1s and 3s
        worker.step(T0 + timedelta(seconds=seconds))

    assert recorded.statuses() == [RETRYING, RETRYING, FAILED]
    assert recorded.calls[-1][0] == [("x", FAILED, 3, "HTTP 500 Internal Server Error")]
    assert len(receiver.requests_to(SLACK_PREFIX)) == 3
    assert worker.pending() == []


def test_permanent_error_not_retried(receiver):
    receiver.script(TELEGRAM_PREFIX, Response(401, b'{"ok": false, "error_code": 401}'))
    worker, recorded = worker_for(telegram())
    worker.add([Delivery(alert(), "x")], now=T0)

    worker.step(T0)

    assert recorded.calls == [([("x", FAILED, 1, "HTTP 401 Unauthorized")], {"permanent": True})]


# -- email through aiosmtpd ---------------------------------------------------------


@pytest.fixture(scope="module")
def certificate_authority():
    trustme = pytest.importorskip("trustme")
    return trustme.CA()


@pytest.fixture
def trusted_ca(certificate_authority, tmp_path, monkeypatch):
    """Make Python's default TLS context trust the test CA, as a real host trusts a real one."""
    path = tmp_path / "ca.pem"
    certificate_authority.cert_pem.write_to_path(str(path))
    monkeypatch.setenv("SSL_CERT_FILE", str(path))
    return certificate_authority.issue_cert("127.0.0.1")


def email(server: SmtpReceiver, tls="off", user=None, password=None, **changes) -> ChannelSpec:
    options = {"smtp_host": "127.0.0.1", "smtp_port": server.port, "smtp_user": user,
               "smtp_pass": Secret(password) if password else None, "tls": tls, "from": "alerts@example.com",
               "to": ("ops@example.com",)}
    return spec("email", **options, **changes)


@pytest.mark.parametrize("tls, login", [("off", None), ("starttls", ("alerts", SECRET_PASSWORD)),
                                        ("ssl", ("alerts", SECRET_PASSWORD))])
def test_email_reaches_smtp_server(monkeypatch, trusted_ca, tls, login):
    block_public_network(monkeypatch)
    server = SmtpReceiver(trusted_ca, tls, login)
    try:
        user, password = login or (None, None)
        outcome = send(email(server, tls, user, password, mention="Call the on-call person"), alert())
    finally:
        server.stop()

    assert outcome.delivered, outcome
    [mail] = server.messages
    assert mail["Subject"] == "🔴 CRITICAL: disk_full is firing"
    assert (mail["From"], mail["To"]) == ("alerts@example.com", "ops@example.com")
    assert mail.get_content_type() == "multipart/alternative"
    text = mail.get_body(("plain",)).get_content()
    html = mail.get_body(("html",)).get_content()
    assert "Message: Disk / at 97% <db_1> & *more* [x]" in text
    assert f"Open the rule in Oculus: {RULE_LINK}" in text
    assert "Call the on-call person" in text
    assert "<strong>🔴 CRITICAL: disk_full is firing</strong>" in html
    assert "Disk / at 97% &lt;db_1&gt; &amp; *more* [x]" in html
    assert "border-left: 6px solid #b91c1c" in html


def test_email_wrong_password_is_permanent(monkeypatch, trusted_ca):
    block_public_network(monkeypatch)
    server = SmtpReceiver(trusted_ca, "starttls", ("alerts", SECRET_PASSWORD))
    try:
        outcome = send(email(server, "starttls", "alerts", "wrong-password"), alert())
    finally:
        server.stop()

    assert (outcome.delivered, outcome.error, outcome.permanent) == (False, "SMTP authentication failed", True)
    assert server.messages == []


# -- secrets ----------------------------------------------------------------------


def test_failures_never_show_secrets(receiver, caplog):
    caplog.set_level(logging.DEBUG)
    # As setup_logging does at every level: urllib3's debug lines carry request paths, which hold tokens.
    caplog.set_level(logging.WARNING, logger="urllib3")
    receiver.script(TELEGRAM_PREFIX, Response(500, SECRET_TOKEN.encode()))
    receiver.script(SLACK_PREFIX, Response(403, SECRET_WEBHOOK_PART.encode()))
    worker, recorded = worker_for(telegram())
    worker.add([Delivery(alert(), "x")], now=T0)
    worker.step(T0)
    slack_worker, slack_recorded = worker_for(slack())
    slack_worker.add([Delivery(alert(), "x")], now=T0)
    slack_worker.step(T0)

    shown = "\n".join([record.getMessage() for record in caplog.records] +
                      [repr(recorded.calls), repr(slack_recorded.calls), repr(telegram()), repr(slack())])
    assert [secret for secret in SECRETS if secret in shown] == []
    assert recorded.statuses() == [RETRYING]
    assert slack_recorded.statuses() == [FAILED]
