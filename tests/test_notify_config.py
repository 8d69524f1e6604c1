"""The channels: section, notifications: defaults and the channels of rules, as the config loader checks them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from oculus.config import ConfigError, Secret, load_config
from oculus.config.schema import CHANNEL_COMMON, CHANNEL_FIELDS

DATA = Path(__file__).resolve().parent / "data" / "channels"
EXAMPLE = Path(__file__).resolve().parent.parent / "configs" / "config.example.yaml"

INVALID_FILES = [
    ("invalid-type.yaml",
     'invalid-type.yaml:3: channels.pager.type: unknown channel type "pagerduty"; '
     "known types: log, email, telegram, discord, slack, apprise, webhook"),
    ("invalid-missing-token.yaml",
     'invalid-missing-token.yaml:2: channels.chat: missing required key "bot_token": '
     "Bot token from @BotFather; write it as ${ENV_NAME}."),
    ("invalid-unknown-key.yaml",
     'invalid-unknown-key.yaml:5: channels.chat.retrys: unknown key; did you mean "retries"?'),
    ("invalid-rule-channel.yaml",
     'invalid-rule-channel.yaml:9: rules[0].channels: unknown channel "chta"; configured channels: chat, log; '
     'did you mean "chat"?'),
    ("invalid-default-channel.yaml",
     'invalid-default-channel.yaml:3: notifications.default_channels.critical: unknown channel "email"; '
     "configured channels: log; declare it under channels:"),
    ("invalid-default-severity.yaml",
     'invalid-default-severity.yaml:2: notifications.default_channels: unknown severity "urgent"; '
     "expected one of info, warn, error, critical"),
    ("invalid-email-address.yaml",
     'invalid-email-address.yaml:5: channels.mail.from: expected an e-mail address such as alerts@example.com, '
     'got "alerts"'),
    ("invalid-apprise-url.yaml",
     "invalid-apprise-url.yaml:2: channels.ops: apprise does not accept the URL (Unparseable URL <secret>); "
     "check it against the apprise documentation of the service"),
    ("invalid-channel-name.yaml",
     "invalid-channel-name.yaml:2: channels.Ops Team: invalid channel name: expected a lower-case name of letters, "
     "digits, '_', '-' or ':' (no dots or spaces), got \"Ops Team\""),
    ("invalid-batch.yaml",
     'invalid-batch.yaml:5: channels.chat.batch: expected a duration like 500ms, 30s, 5m, 1h or 1m30s, '
     'got "5 minutes"'),
]


@pytest.mark.parametrize("name, expected", INVALID_FILES)
def test_invalid_channel_file_message(name, expected, monkeypatch):
    monkeypatch.chdir(DATA)
    with pytest.raises(ConfigError) as caught:
        load_config(name, env={})
    assert [str(problem) for problem in caught.value.problems] == [expected]


def test_invalid_channel_files_all_in_table():
    assert sorted(path.name for path in DATA.glob("invalid-*.yaml")) == sorted(name for name, _ in INVALID_FILES)


def load(tmp_path, text: str, env=None):
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return load_config(str(path), env=env or {})


def test_log_channel_always_exists(tmp_path):
    config = load(tmp_path, "")

    assert list(config.channels) == ["log"]
    assert config.channels["log"].type == "log"


@pytest.mark.parametrize("severity, channels", [("critical", ("ops_mail", "chat")), ("warn", ("log",)),
                                                ("error", ("chat",))])
def test_rule_without_channels_uses_severity_default(tmp_path, severity, channels):
    config = load(tmp_path, f"""
notifications:
  default_channels: {{critical: [ops_mail, chat], error: [chat]}}
channels:
  ops_mail: {{type: email, smtp_host: 127.0.0.1, from: a@example.com, to: b@example.com}}
  chat: {{type: slack, webhook: "https://hooks.slack.com/services/T0/B0/XYZ"}}
rules:
  - {{name: r, condition: x.y.z > 1, severity: {severity}}}
""")

    assert config.rules[0].channels == channels


def test_rule_channels_override_default(tmp_path):
    config = load(tmp_path, "notifications:\n  default_channels: {critical: [log]}\n"
                            "channels:\n  hook: {type: webhook, url: http://127.0.0.1:9/}\n"
                            "rules:\n  - {name: r, condition: x.y.z > 1, severity: critical, channels: [hook]}\n")

    assert config.rules[0].channels == ("hook",)


def test_channel_defaults_per_type(tmp_path):
    config = load(tmp_path, """
channels:
  mail: {type: email, smtp_host: smtp.example.com, from: a@example.com, to: [b@example.com, c@example.com]}
  chat: {type: telegram, bot_token: "${TG}", chat_id: -100123}
""", env={"TG": "1:secret"})
    mail, chat = config.channels["mail"], config.channels["chat"]

    assert (mail.batch, mail.retries, mail.retry_delay, mail.timeout) == (60.0, 3, 10.0, 10.0)
    assert (mail.options["smtp_port"], mail.options["tls"], mail.options["to"]) == (587, "auto",
                                                                                    ("b@example.com", "c@example.com"))
    assert chat.batch == 0.0
    assert chat.options["chat_id"] == "-100123"
    assert chat.options["bot_token"] == Secret("1:secret")


def test_channel_secrets_masked_in_public_dict(tmp_path):
    config = load(tmp_path, "channels:\n  chat: {type: discord, webhook: 'https://discord.com/api/webhooks/1/tok'}\n"
                            "  mail: {type: email, smtp_host: h.example.com, smtp_user: u, smtp_pass: pw, "
                            "from: a@example.com, to: b@example.com}\n")

    assert config.channels["chat"].public_dict()["webhook"] == "<secret>"
    assert config.channels["mail"].public_dict()["smtp_pass"] == "<secret>"
    assert "tok" not in repr(config.channels["chat"])


def test_notifications_base_url(tmp_path):
    config = load(tmp_path, "notifications:\n  base_url: https://oculus.example.com/\n")

    assert config.notifications.base_url == "https://oculus.example.com"


def test_notifications_base_url_invalid(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, "notifications:\n  base_url: oculus.example.com\n")
    assert str(caught.value.problems[0]).endswith(
        'notifications.base_url: expected an http:// or https:// address such as https://oculus.example.com, '
        'got "oculus.example.com"')


# -- the example config documents every channel setting ----------------------------


CHANNEL_SETTINGS = [pytest.param(kind, f.name, id=f"{kind}.{f.name}")
                    for kind, fields in CHANNEL_FIELDS.items() for f in fields]


@pytest.mark.parametrize("kind, name", CHANNEL_SETTINGS)
def test_example_documents_channel_field(kind, name):
    text = EXAMPLE.read_text(encoding="utf-8")
    block = text[text.index("\n# channels:"):]
    entries = re.split(r"^#   (?=[a-z_]+:)", block, flags=re.MULTILINE)
    of_kind = [entry for entry in entries if re.search(rf"^#     type: {kind}$|type: {kind}[,}}]", entry, re.M)]
    assert of_kind, f"no channel of type {kind} in the example"
    assert any(re.search(rf"^#\s+{name}:", entry, flags=re.MULTILINE) for entry in of_kind)


@pytest.mark.parametrize("name", [f.name for f in CHANNEL_COMMON])
def test_example_documents_common_channel_field(name):
    text = EXAMPLE.read_text(encoding="utf-8")
    assert re.search(rf"^#   {name} +\S", text, flags=re.MULTILINE), f"{name} is not described"
