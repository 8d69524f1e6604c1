"""Deliveries end to end: batching, restarts with open deliveries, recorded outcomes, the running Oculus, the CLI."""

from __future__ import annotations

import json
import logging
from datetime import timedelta

import pytest
import yaml

from oculus import cli
from oculus.config import ChannelSpec, Secret, load_config
from oculus.notify import NotificationDispatcher
from oculus.notify.channels import build_channel
from oculus.notify.store import Delivery
from oculus.notify.worker import ChannelWorker
from oculus.runtime import Runtime
from oculus.selfmetrics import NOTIFICATIONS
from oculus.web import alerts
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
from tests.rule_support import RuleHarness, at
from tests.servers import http_get, wait_for
from tests.test_notify_channels import T0, alert
from tests.test_rule_e2e import StatusServer


@pytest.fixture
def receiver(monkeypatch):
    block_public_network(monkeypatch)
    server = Receiver()
    point_apprise_at(monkeypatch, server)
    yield server
    server.stop()


# -- batching with an injected clock ------------------------------------------------


def test_batch_window_collects_alerts(receiver):
    hook = ChannelSpec("hook", "webhook", 60.0, 3, 1.0, 2.0, None,
                       {"url": Secret(receiver.url + "/hook"), "headers": {}})
    sent = []
    worker = ChannelWorker(build_channel(hook, "http://127.0.0.1:8470"), lambda d, detail, wait: sent.append(d))
    for seconds, rule in ((0, "a"), (10, "b"), (30, "c")):
        worker.add([Delivery(alert(rule=rule, id=rule), "hook")], now=T0 + timedelta(seconds=seconds))

    assert worker.step(T0 + timedelta(seconds=59)) == pytest.approx(1.0)
    assert receiver.requests_to("/hook") == []
    worker.step(T0 + timedelta(seconds=60))
    worker.add([Delivery(alert(rule="d", id="d"), "hook")], now=T0 + timedelta(seconds=70))
    assert worker.step(T0 + timedelta(seconds=71)) == pytest.approx(59.0)
    worker.step(T0 + timedelta(seconds=130))

    batches = [[a["rule"] for a in r.json()["alerts"]] for r in receiver.requests_to("/hook")]
    assert batches == [["a", "b", "c"], ["d"]]
    assert receiver.requests_to("/hook")[0].json()["title"] == "🔴 Oculus: 3 alerts (3 firing)"


def test_zero_window_sends_at_once(receiver):
    hook = ChannelSpec("hook", "webhook", 0.0, 3, 1.0, 2.0, None,
                       {"url": Secret(receiver.url + "/hook"), "headers": {}})
    worker = ChannelWorker(build_channel(hook, ""), lambda *args: None)
    worker.add([Delivery(alert(), "hook")], now=T0)

    worker.step(T0)

    assert len(receiver.requests_to("/hook")) == 1


# -- restarts: deliveries stored with the alert state -------------------------------

RULES = """
alerting: {interval: 10s}
channels:
  hook: {type: webhook, url: "%s/hook", retry_delay: 200ms}
rules:
  - name: api_down
    condition: "net.http.api.status != 200"
    severity: critical
    channels: [hook, log]
"""


@pytest.fixture
def harness(tmp_path, receiver):
    rules = RuleHarness(tmp_path, RULES % receiver.url)
    yield rules
    rules.close()


def dispatcher_for(rules: RuleHarness) -> NotificationDispatcher:
    return NotificationDispatcher(rules.notifications, rules.config.channels, "http://127.0.0.1:8470",
                                  rules.writer, rules.database)


def stored_deliveries(rules: RuleHarness) -> list[tuple]:
    rules.writer.run_command(lambda conn: None, "flush")
    return rules.database.reader().execute(
        "SELECT channel, state, status, attempts FROM deliveries ORDER BY channel, created_at").fetchall()


def notification_events(rules: RuleHarness) -> list[dict]:
    rules.writer.run_command(lambda conn: None, "flush")
    rows = rules.database.reader().execute(
        "SELECT payload FROM events WHERE kind = 'notification' ORDER BY id").fetchall()
    return [json.loads(row[0]) for row in rows]


def test_pending_delivery_sent_after_restart(harness, receiver):
    harness.sample("net.http.api.status", 0, 500)
    harness.engine.run_pass(at(0))
    harness.notified()  # the process dies here: its queue is lost and no dispatcher sent the notification
    assert stored_deliveries(harness) == [("hook", "firing", "pending", 0), ("log", "firing", "pending", 0)]

    first = dispatcher_for(harness)
    first.start()
    wait_for(lambda: len(receiver.requests_to("/hook")) == 1, timeout=10.0, what="the restored delivery")
    assert first.stop(5.0)
    harness.writer.run_command(lambda conn: None, "drain")  # as Runtime.stop drains the writer after the dispatcher
    second = dispatcher_for(harness)
    second.start()
    assert second.stop(5.0)

    assert len(receiver.requests_to("/hook")) == 1
    assert stored_deliveries(harness) == [("hook", "firing", "delivered", 1), ("log", "firing", "delivered", 1)]
    assert [(e["channel"], e["status"], e["attempt"]) for e in notification_events(harness)] \
        in ([("hook", "delivered", 1), ("log", "delivered", 1)], [("log", "delivered", 1), ("hook", "delivered", 1)])


def test_retrying_delivery_resumes_after_restart(harness, receiver):
    receiver.script("/hook", Response(500, b"down"))
    dispatcher = dispatcher_for(harness)
    dispatcher.start()
    harness.sample("net.http.api.status", 0, 500)
    harness.engine.run_pass(at(0))
    wait_for(lambda: ("hook", "firing", "retrying", 1) in stored_deliveries(harness), timeout=10.0,
             what="the first failed attempt")
    assert dispatcher.stop(5.0)
    harness.writer.run_command(lambda conn: None, "drain")

    restarted = dispatcher_for(harness)
    restarted.start()
    wait_for(lambda: ("hook", "firing", "delivered", 2) in stored_deliveries(harness), timeout=20.0,
             what="the retry after the restart")
    assert restarted.stop(5.0)

    statuses = [(e["channel"], e["status"]) for e in notification_events(harness) if e["channel"] == "hook"]
    assert statuses == [("hook", "retrying"), ("hook", "delivered")]
    assert len(receiver.requests_to("/hook")) == 2


def test_removed_channel_fails_open_delivery(harness, receiver):
    harness.sample("net.http.api.status", 0, 500)
    harness.engine.run_pass(at(0))
    harness.notified()
    dispatcher = NotificationDispatcher(harness.notifications, None, "", harness.writer, harness.database)
    dispatcher.start()
    assert dispatcher.stop(5.0)

    assert ("hook", "firing", "failed", 0) in stored_deliveries(harness)
    assert receiver.requests_to("/hook") == []


def test_outcomes_feed_alerts_api(harness, receiver):
    receiver.script("/hook", *[Response(503, b"busy")] * 10)
    dispatcher = dispatcher_for(harness)
    dispatcher.start()
    harness.sample("net.http.api.status", 0, 500)
    harness.engine.run_pass(at(0))
    wait_for(lambda: ("hook", "firing", "retrying", 1) in stored_deliveries(harness), timeout=10.0,
             what="a failed attempt")
    assert dispatcher.stop(5.0)

    [firing] = alerts.list_alerts(harness.database.reader())["alerts"]
    assert firing["delivery"]["outcome"] == "firing: hook retrying (HTTP 503 Service Unavailable), log delivered"
    assert {(c["channel"], c["status"]) for c in firing["delivery"]["channels"]} == {("hook", "retrying"),
                                                                                      ("log", "delivered")}


def test_outcomes_counted_in_self_metrics(harness, receiver):
    before = NOTIFICATIONS.labels(channel="hook", outcome="delivered")._value.get()
    dispatcher = dispatcher_for(harness)
    dispatcher.start()
    harness.sample("net.http.api.status", 0, 500)
    harness.engine.run_pass(at(0))
    wait_for(lambda: len(receiver.requests_to("/hook")) == 1, timeout=10.0, what="the delivery")
    assert dispatcher.stop(5.0)

    assert NOTIFICATIONS.labels(channel="hook", outcome="delivered")._value.get() == before + 1


# -- the running Oculus: every channel, firing and resolved, exactly once -----------------


@pytest.fixture
def smtp():
    server = SmtpReceiver(login=("alerts", SECRET_PASSWORD))
    yield server
    server.stop()


def all_channels(receiver: Receiver, smtp: SmtpReceiver) -> dict:
    return {
        "mail": {"type": "email", "smtp_host": "127.0.0.1", "smtp_port": smtp.port, "tls": "off",
                 "smtp_user": "alerts", "smtp_pass": "${SMTP_PASS}", "from": "alerts@example.com",
                 "to": ["ops@example.com"], "batch": "0s"},
        "hook": {"type": "webhook", "url": receiver.url + "/hook", "headers": {"Authorization": "${HOOK_TOKEN}"}},
        "telegram": {"type": "telegram", "bot_token": "${TG_TOKEN}", "chat_id": "42"},
        "discord": {"type": "discord", "webhook": "${DISCORD_WEBHOOK}"},
        "slack": {"type": "slack", "webhook": "${SLACK_WEBHOOK}", "mention": "<!channel>"},
        "json": {"type": "apprise", "url": receiver.url.replace("http://", "json://") + "/json?token=${HOOK_TOKEN}"},
    }


ENV = {"SMTP_PASS": SECRET_PASSWORD, "TG_TOKEN": SECRET_TOKEN, "HOOK_TOKEN": f"Bearer {SECRET_WEBHOOK_PART}",
       "DISCORD_WEBHOOK": f"https://discord.com/api/webhooks/4242/{SECRET_WEBHOOK_PART}",
       "SLACK_WEBHOOK": f"https://hooks.slack.com/services/T0001/B0002/{SECRET_WEBHOOK_PART}"}


def start_oculus(directory, target: StatusServer, channels: dict) -> Runtime:
    config = {
        "server": {"bind": "127.0.0.1", "port": 0, "threads": 4},
        "database": {"path": str(directory / "oculus.duckdb")},
        "runtime": {"flush_interval": "50ms", "shutdown_timeout": "2s"},
        "alerting": {"interval": "200ms"},
        "notifications": {"default_channels": {"critical": sorted(channels)}},
        "collectors": [{"type": "http", "name": "api", "url": target.url, "interval": "200ms", "timeout": "1s"}],
        "channels": channels,
        "rules": [{"name": "api_down", "condition": "net.http.api.status != 200", "severity": "critical"}],
    }
    path = directory / "oculus.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    runtime = Runtime(load_config(str(path), env=ENV), str(path))
    runtime.start()
    return runtime


def messages_by_channel(receiver: Receiver, smtp: SmtpReceiver) -> dict:
    return {"mail": [m["Subject"] for m in smtp.messages],
            "hook": [r.json()["title"] for r in receiver.requests_to("/hook")],
            "telegram": [r.json()["text"].split("\r\n")[0].removeprefix("<b>").removesuffix("</b>")
                         for r in receiver.requests_to(TELEGRAM_PREFIX)],
            "discord": [r.json()["embeds"][0]["title"] for r in receiver.requests_to(DISCORD_PREFIX)],
            "slack": [r.json()["attachments"][0]["title"] for r in receiver.requests_to(SLACK_PREFIX)],
            "json": [r.json()["title"] for r in receiver.requests_to("/json")]}


def test_running_oculus_notifies_every_channel_once(tmp_path, receiver, smtp, caplog):
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.WARNING, logger="urllib3")  # as setup_logging sets it
    target = StatusServer()
    runtime = start_oculus(tmp_path, target, all_channels(receiver, smtp))
    try:
        firing = "🔴 CRITICAL: api_down is firing"
        wait_for(lambda: all(messages_by_channel(receiver, smtp).values()), timeout=20.0, what="the firing alert")
        target.status = 200
        resolved = "✅ RESOLVED: api_down (critical)"
        wait_for(lambda: all(len(v) == 2 for v in messages_by_channel(receiver, smtp).values()), timeout=20.0,
                 what="the resolve")
        pages = [http_get(runtime.web.url + path).text
                 for path in ("/api/alerts?state=all", "/api/rules", "/readyz", "/alerts", "/rules", "/metrics")]
        [alert_view] = http_get(runtime.web.url + "/api/alerts?state=all").json()["alerts"]
    finally:
        runtime.stop()
        target.shutdown()

    sent = messages_by_channel(receiver, smtp)
    assert sent == {channel: [firing, resolved] for channel in sent}
    assert alert_view["delivery"]["outcome"].startswith("resolved: ")
    assert {c["status"] for c in alert_view["delivery"]["channels"]} == {"delivered"}
    shown = "\n".join(pages + [record.getMessage() for record in caplog.records])
    assert [secret for secret in SECRETS if secret in shown] == []


# -- oculus notify test -----------------------------------------------------------


def cli_config(tmp_path, receiver: Receiver) -> str:
    path = tmp_path / "oculus.yaml"
    path.write_text(yaml.safe_dump({"channels": {
        "hook": {"type": "webhook", "url": receiver.url + "/hook"},
        "broken": {"type": "webhook", "url": receiver.url + "/broken", "retries": 0},
    }}), encoding="utf-8")
    return str(path)


def test_notify_test_delivers(tmp_path, receiver, capsys):
    status = cli.main(["notify", "test", "-c", cli_config(tmp_path, receiver), "hook"])

    assert status == 0
    assert capsys.readouterr().out.startswith("hook (webhook): delivered in ")
    [request] = receiver.requests_to("/hook")
    assert request.json()["alerts"][0]["rule"] == "oculus_test"


def test_notify_test_reports_failure(tmp_path, receiver, capsys):
    receiver.script("/broken", Response(401, b"no"))

    status = cli.main(["notify", "test", "-c", cli_config(tmp_path, receiver), "--severity", "critical", "broken"])

    assert status == 1
    error = capsys.readouterr().err
    assert "broken (webhook): not delivered after " in error
    assert error.rstrip().endswith("HTTP 401 Unauthorized (retrying will not help; check the channel's settings)")


def test_notify_test_unknown_channel(tmp_path, receiver, capsys):
    path = cli_config(tmp_path, receiver)

    assert cli.main(["notify", "test", "-c", path, "hok"]) == 2
    assert capsys.readouterr().err.strip() == (f'{path}: unknown channel "hok"; configured channels: broken, hook, '
                                               'log; did you mean "hook"?')
