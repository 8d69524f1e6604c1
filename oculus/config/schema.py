"""Declarations of every config setting: name, type, default and help.

Validation, defaults, the CLI flags, and the config reference test all read
these lists, so a setting is declared exactly once.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from oculus.config.values import MAX_DURATION, Secret, format_duration, format_size, parse_duration, parse_size, reveal

REQUIRED = object()


class Invalid(ValueError):
    """Raised by a field parser with a message that names what was expected."""


@dataclass(frozen=True)
class Field:
    name: str
    parse: Callable[[Any], Any]
    default: Any = REQUIRED
    help: str = ""
    env: str | None = None
    flag: str | None = None

    @property
    def required(self) -> bool:
        return self.default is REQUIRED


@dataclass(frozen=True)
class Section:
    name: str
    fields: tuple
    help: str = ""

    def field_named(self, name: str) -> Field | None:
        return next((f for f in self.fields if f.name == name), None)


def _got(value) -> str:
    if isinstance(value, Secret):
        return "<secret>"
    if isinstance(value, str):
        return f'"{value}"'
    if value is None:
        return "nothing"
    return repr(value)


def _plain(value):
    """Return (plain value, how an error shows it): a Secret's value is never shown."""
    return reveal(value), _got(value)


def text(value):
    """Parse a non-empty string. A value from ${ENV} arrives as a Secret and is revealed here,
    because only fields declared with `secret` (or URLs and headers) keep it masked."""
    plain, shown = _plain(value)
    if not isinstance(plain, str) or not plain.strip():
        raise Invalid(f"expected a non-empty string, got {shown}")
    return plain


def secret(value):
    """Parse a non-empty string and keep it as a Secret, so it prints as <secret>."""
    return Secret(text(value))


def optional_secret(value):
    """A Secret, or None when the value is null or empty (the setting is off)."""
    plain = reveal(value)
    if plain is None or (isinstance(plain, str) and not plain.strip()):
        return None
    return secret(value)


def text_keeping_secret(value):
    """Parse a non-empty string that stays a Secret when it came from ${ENV}, because URLs may carry tokens."""
    plain = text(value)
    return value if isinstance(value, Secret) else plain


def boolean(value):
    plain, shown = _plain(value)
    if isinstance(plain, bool):
        return plain
    if isinstance(plain, str) and plain.lower() in ("true", "false", "yes", "no", "on", "off", "1", "0"):
        return plain.lower() in ("true", "yes", "on", "1")
    raise Invalid(f"expected true or false, got {shown}")


def integer(minimum: int | None = None, maximum: int | None = None):
    def parse(value):
        plain, shown = _plain(value)
        if isinstance(plain, str) and re.fullmatch(r"-?\d+", plain.strip()):
            plain = int(plain)
        if isinstance(plain, bool) or not isinstance(plain, int):
            raise Invalid(f"expected a whole number, got {shown}")
        if minimum is not None and plain < minimum:
            raise Invalid(f"expected a number >= {minimum}, got {shown}")
        if maximum is not None and plain > maximum:
            raise Invalid(f"expected a number <= {maximum}, got {shown}")
        return plain

    return parse


def duration(minimum: float = 0.0, maximum: float = MAX_DURATION):
    def parse(value):
        plain, shown = _plain(value)
        try:
            seconds = parse_duration(plain, limit=None)
        except ValueError:
            raise Invalid(f"expected a duration like 500ms, 30s, 5m, 1h or 1m30s, got {shown}") from None
        if seconds < minimum:
            raise Invalid(f"expected a duration of at least {format_duration(minimum)}, got {shown}")
        if seconds > maximum:
            raise Invalid(f"expected a duration of at most {format_duration(maximum)}, got {shown}")
        return seconds

    return parse


def byte_size(minimum: int, maximum: int):
    def parse(value):
        plain, shown = _plain(value)
        try:
            size = parse_size(plain)
        except ValueError:
            raise Invalid(f"expected a size like 256MiB, 512MB or 1GiB, got {shown}") from None
        if size < minimum:
            raise Invalid(f"expected a size of at least {format_size(minimum)}, got {shown}")
        if size > maximum:
            raise Invalid(f"expected a size of at most {format_size(maximum)}, got {shown}")
        return size

    return parse


def choice(*choices: str):
    def parse(value):
        plain, shown = _plain(value)
        if isinstance(plain, str) and plain.lower() in choices:
            return plain.lower()
        raise Invalid(f"expected one of {', '.join(choices)}, got {shown}")

    return parse


def string_map(value):
    """Parse a flat mapping of string keys to scalar values (tags, headers)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise Invalid(f"expected a mapping of names to values, got {_got(value)}")
    result = {}
    for key, item in value.items():
        if isinstance(item, (dict, list)) or item is None:
            raise Invalid(f"expected a plain value for {key!r}, got {_got(item)}")
        result[str(key)] = item if isinstance(item, Secret) else str(item)
    return result


# Tag names Oculus sets itself; a user tag of the same name would fake or hide them.
RESERVED_TAGS = ("error", "error_kind")


def user_tags(value):
    tags = string_map(value)
    reserved = [name for name in tags if name in RESERVED_TAGS]
    if reserved:
        raise Invalid(f'tag name "{reserved[0]}" is reserved for what Oculus records; choose another name')
    return tags


def anything(value):
    return value


_NAME = re.compile(r"[a-z0-9][a-z0-9_:\-]*")


def symbol_name(value):
    """Parse the <name> part of a symbol: lower case and no dots, because dots separate symbol parts."""
    plain, shown = _plain(value)
    if isinstance(plain, str) and _NAME.fullmatch(plain):
        return plain
    raise Invalid(
        "expected a lower-case name of letters, digits, '_', '-' or ':' "
        f"(no dots or spaces), got {shown}"
    )


def describe_default(f: Field) -> str:
    if f.required:
        return "required"
    if f.parse.__qualname__.startswith("duration") and isinstance(f.default, (int, float)):
        return format_duration(f.default)
    if f.parse.__qualname__.startswith("byte_size") and isinstance(f.default, int):
        return format_size(f.default)
    return repr(f.default)


SERVER = Section(
    "server",
    (
        Field("bind", text, "127.0.0.1", "Address the web server listens on; 0.0.0.0 for every interface.",
              env="OCULUS_BIND", flag="--bind"),
        Field("port", integer(0, 65535), 8470, "TCP port of the web server (0 picks a free port).",
              env="OCULUS_PORT", flag="--port"),
        Field("threads", integer(1, 64), 8, "Waitress worker threads answering web requests."),
        Field("api_token", optional_secret, None,
              "Bearer token that POST /api/query, GET /api/export and POST /api/backup require; they are "
              "disabled without one.",
              env="OCULUS_API_TOKEN"),
    ),
    "Web server: dashboard, API and health endpoints.",
)

DATABASE = Section(
    "database",
    (
        Field("path", text, "oculus.duckdb", "DuckDB file that stores every sample and event.",
              env="OCULUS_DB_PATH", flag="--db-path"),
        Field("retention", duration(3600), 7 * 86400.0,
              "How long raw samples are kept (applied at start-up and hourly)."),
        Field("events_retention", duration(3600), 90 * 86400.0, "How long alert, error and system events are kept."),
        Field("rollups_1m_retention", duration(3600), 14 * 86400.0,
              "How long 1-minute rollups (count, failures, min, max, avg and last per symbol and minute) are kept; "
              "for symbols sampled every 30 s they take about as much space as the raw samples."),
        Field("rollups_1h_retention", duration(3600), 365 * 86400.0,
              "How long 1-hour rollups are kept; charts of ranges older than the raw samples read them."),
        Field("memory_limit", byte_size(16 * 2**20, 2**40), 256 * 2**20,
              "Maximum memory DuckDB uses to cache table data and run queries. Without a limit DuckDB keeps "
              "every block it has written or read, up to 80% of the host's RAM. Above the limit it evicts cached "
              "blocks and spills large queries to a .tmp folder next to the database file."),
    ),
    "Storage of samples and events.",
)

LOGGING = Section(
    "logging",
    (
        Field("level", choice("debug", "info", "warning", "error"), "info", "Lowest level that is logged.",
              env="OCULUS_LOG_LEVEL", flag="--log-level"),
        Field("format", choice("text", "json"), "text", "Log line format: text, or json for one JSON object per line.",
              env="OCULUS_LOG_FORMAT", flag="--log-format"),
    ),
    "Log output on stderr.",
)

RUNTIME = Section(
    "runtime",
    (
        Field("workers", integer(1, 1024), 32, "Maximum collector runs in progress at once."),
        Field("queue_size", integer(100, 1_000_000), 10_000, "Capacity of the write queue, in collector results."),
        Field("batch_size", integer(1, 1_000_000), 20_000, "Samples per DuckDB insert, at most."),
        Field("flush_interval", duration(0.01, 60), 1.0,
              "Longest time a sample waits in the writer before it is inserted."),
        Field("shutdown_timeout", duration(1, 3600), 8.0,
              "Time allowed to drain the queue and close the database on stop."),
    ),
    "Scheduling and write path.",
)

NO_DATA_CHOICES = ("keep_state", "firing", "ok")

ALERTING = Section(
    "alerting",
    (
        Field("interval", duration(0.1), 10.0, "Time between two evaluation passes over every simple rule."),
        Field("no_data", choice(*NO_DATA_CHOICES), "keep_state",
              "What a rule does when its symbols have no recent data: keep_state (stay in the current state "
              "and report no data), firing (treat the condition as true) or ok (treat it as false)."),
        Field("no_data_after", duration(1), 600.0,
              "A symbol whose newest sample is older than this has no data; for a symbol of a configured "
              "collector the limit is at least three of that collector's intervals."),
        Field("sql_timeout", duration(0.01), 5.0, "Time an SQL rule's query may run before it is stopped."),
        Field("sql_max_rows", integer(1, 100_000), 1000,
              "Maximum result rows, and so alert instances, of one SQL rule; extra rows are ignored."),
        Field("notify_queue_size", integer(10, 1_000_000), 1000,
              "Capacity of the queue between the rule engine and the notification dispatcher."),
    ),
    "Rule evaluation: how often rules run and how missing data is treated.",
)

SEVERITIES = ("info", "warn", "error", "critical")


def optional_url(value):
    """An http:// or https:// address without a trailing slash, or None (the setting is off)."""
    plain, shown = _plain(value)
    if plain is None or (isinstance(plain, str) and not plain.strip()):
        return None
    if not isinstance(plain, str) or not re.match(r"https?://[^/\s]+", plain.strip()):
        raise Invalid(f"expected an http:// or https:// address such as https://oculus.example.com, got {shown}")
    return plain.strip().rstrip("/")


def name_list(value):
    """A list of names, or one name; used for a rule's notification channels."""
    plain, shown = _plain(value)
    items = [plain] if isinstance(plain, str) else plain
    if not isinstance(items, list) or not items or not all(isinstance(i, str) and i.strip() for i in items):
        raise Invalid(f"expected a list of channel names such as [log, telegram], got {shown}")
    return tuple(item.strip() for item in items)


def severity_channels(value):
    """A mapping of severities to channel lists, such as {critical: [email, slack]}."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise Invalid(f"expected a mapping of severities to channel lists, such as {{critical: [email, slack]}}, "
                      f"got {_got(value)}")
    result = {}
    for key, item in value.items():
        if key not in SEVERITIES:
            raise Invalid(f"unknown severity {_got(key)}; expected one of {', '.join(SEVERITIES)}")
        result[key] = name_list(item)
    return result


NOTIFICATIONS = Section(
    "notifications",
    (
        Field("base_url", optional_url, None,
              "Dashboard address that notification links start with, such as https://oculus.example.com; "
              "default: this instance's own address from server.bind and server.port."),
        Field("default_channels", severity_channels, {},
              "Channels of the rules that set no channels, per severity, such as {critical: [email, slack]}; "
              "a severity not listed here goes to the log channel."),
    ),
    "Alert notifications: links in messages and the channels of rules that name none.",
)

SECTIONS = (SERVER, DATABASE, LOGGING, RUNTIME, ALERTING, NOTIFICATIONS)

# Fields every collector accepts, whatever its type.
COLLECTOR_COMMON = (
    Field("type", text, REQUIRED, "Collector type, for example http, tcp or ping."),
    Field("name", symbol_name, REQUIRED, "Name used in the symbols this collector emits."),
    Field("interval", duration(0.1, 30 * 86400), 30.0, "Time between two runs."),
    Field("timeout", duration(0.01, 3600), 5.0, "Time a run may take before it is recorded as failed."),
    Field("tags", user_tags, {}, "Labels stored with every sample of this collector."),
)


# -- rules ------------------------------------------------------------------

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def sql_params(value):
    """A mapping of parameter names to numbers, strings or booleans, bound to $name in the SQL."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise Invalid("expected a mapping of parameter names to values, such as {threshold: 0.05}, "
                      f"got {_got(value)}")
    result = {}
    for key, item in value.items():
        if not isinstance(key, str) or not _IDENTIFIER.fullmatch(key):
            raise Invalid(f"parameter names must be identifiers (letters, digits, '_'), got {_got(key)}")
        plain = reveal(item)
        if isinstance(plain, (dict, list)) or plain is None:
            raise Invalid(f"expected a number, string or boolean for parameter {key!r}, got {_got(item)}")
        result[key] = plain
    return result


def cron_expression(value):
    """A five-field cron expression such as "*/5 * * * *" (minute hour day month weekday, UTC)."""
    plain = text(value)
    from croniter import croniter

    if len(plain.split()) != 5 or not croniter.is_valid(plain):
        raise Invalid(f'expected a cron expression of five fields such as "*/5 * * * *", got {_got(value)}')
    return plain


RULE_COMMON = (
    Field("name", symbol_name, REQUIRED, "Unique rule name, shown in logs, events and notifications."),
    Field("severity", choice("info", "warn", "error", "critical"), "warn",
          "Severity of the alert: info, warn, error or critical."),
    Field("message", text, None,
          "Notification text; {value} and {rule} are replaced (an SQL rule also has one field per result "
          "column), with Python format specs such as {value:.2f}."),
    Field("for", duration(0), 0.0,
          "How long the condition must hold continuously before the alert fires; until then it is pending."),
    Field("cooldown", duration(0), 0.0, "Minimum time between two notifications of the same alert."),
    Field("repeat", duration(1), None, "Send the notification again this often while the alert keeps firing."),
    Field("notify_resolved", boolean, True, "Send a notification when the alert resolves."),
    Field("channels", name_list, None,
          "Names of the channels that notify this rule's alerts; default: notifications.default_channels for "
          "the rule's severity, else [log], which writes to the Oculus log."),
)

SIMPLE_RULE_FIELDS = (
    Field("condition", text, REQUIRED, "Expression over symbols, such as crypto.price.btc_usd > 100000."),
    Field("no_data", choice(*NO_DATA_CHOICES), None,
          "Overrides alerting.no_data for this rule: keep_state, firing or ok."),
)

SQL_RULE_FIELDS = (
    Field("sql", text, REQUIRED, "One read-only SELECT; each result row is one alert instance."),
    Field("params", sql_params, {}, "Values bound to $name parameters in the SQL, never pasted into its text."),
    Field("every", duration(1), None, "Time between two runs of the query; default 1m. Set every or cron."),
    Field("cron", cron_expression, None, 'Cron schedule of the query in UTC, such as "*/5 * * * *".'),
)


# -- notification channels ----------------------------------------------------

CHANNEL_TYPES = ("log", "email", "telegram", "discord", "slack", "apprise", "webhook")


def identifier(value):
    """A non-empty string or a whole number written as text, such as a Telegram chat id."""
    plain, shown = _plain(value)
    if isinstance(plain, int) and not isinstance(plain, bool):
        return str(plain)
    if isinstance(plain, str) and plain.strip():
        return plain.strip()
    raise Invalid(f'expected an id such as "123456" or "@channel_name", got {shown}')


_ADDRESS = re.compile(r"[^@\s<>,]+@[^@\s<>,]+")


def address_list(value):
    """One e-mail address, or a list of them."""
    plain, shown = _plain(value)
    items = [plain] if isinstance(plain, str) else plain
    if not isinstance(items, list) or not items:
        raise Invalid(f"expected an e-mail address or a list of them, such as [ops@example.com], got {shown}")
    for item in items:
        if not isinstance(item, str) or not _ADDRESS.fullmatch(item.strip()):
            raise Invalid(f"expected an e-mail address such as ops@example.com, got {_got(item)}")
    return tuple(item.strip() for item in items)


def email_address(value):
    """One e-mail address."""
    plain, shown = _plain(value)
    if not isinstance(plain, str) or not _ADDRESS.fullmatch(plain.strip()):
        raise Invalid(f"expected an e-mail address such as alerts@example.com, got {shown}")
    return plain.strip()


# Fields every channel accepts, whatever its type.
CHANNEL_COMMON = (
    Field("type", choice(*CHANNEL_TYPES), REQUIRED, f"Channel type: {', '.join(CHANNEL_TYPES)}."),
    Field("batch", duration(0, 86400), None,
          "Window in which this channel's alerts are collected into one message that lists them; 0s sends each "
          "alert at once. Default 1m for email, 0s for the other types."),
    Field("retries", integer(0, 20), 3,
          "Attempts after a failed first one; the wait doubles after each, and a rate-limited answer's "
          "Retry-After is used instead when it is given."),
    Field("retry_delay", duration(0.01, 3600), 10.0, "Wait before the first retry."),
    Field("timeout", duration(0.1, 300), 10.0, "Time one delivery attempt may take, per connection step."),
    Field("mention", text, None,
          "Text put before critical firing alerts to page people: <!channel> or <@USER_ID> on Slack, "
          "@here or <@USER_ID> on Discord, @username on Telegram, any text elsewhere."),
)

CHANNEL_FIELDS = {
    "log": (),
    "email": (
        Field("smtp_host", text, REQUIRED, "SMTP server name or address."),
        Field("smtp_port", integer(1, 65535), 587, "SMTP server port: 587 for STARTTLS, 465 for implicit TLS."),
        Field("smtp_user", text, None, "User name to log in with; no login without one."),
        Field("smtp_pass", optional_secret, None, "Password to log in with; write it as ${ENV_NAME}."),
        Field("tls", choice("auto", "starttls", "ssl", "off"), "auto",
              "Transport security: ssl (implicit TLS), starttls, off (plain text, for a relay on this host), or "
              "auto: ssl on port 465, else starttls."),
        Field("from", email_address, REQUIRED, "Sender address."),
        Field("to", address_list, REQUIRED, "Recipient addresses."),
    ),
    "telegram": (
        Field("bot_token", secret, REQUIRED, "Bot token from @BotFather; write it as ${ENV_NAME}."),
        Field("chat_id", identifier, REQUIRED, "Chat, group or channel id (such as -1001234567890) or @channel name."),
    ),
    "discord": (
        Field("webhook", secret, REQUIRED,
              "Webhook URL, https://discord.com/api/webhooks/ID/TOKEN; write it as ${ENV_NAME}."),
    ),
    "slack": (
        Field("webhook", secret, REQUIRED,
              "Incoming webhook URL, https://hooks.slack.com/services/T.../B.../...; write it as ${ENV_NAME}."),
    ),
    "apprise": (
        Field("url", secret, REQUIRED,
              "Any apprise URL, such as ntfys://ntfy.sh/topic or pover://USER@TOKEN; write it as ${ENV_NAME}."),
    ),
    "webhook": (
        Field("url", secret, REQUIRED, "Address that receives a JSON POST of the alerts."),
        Field("headers", string_map, {}, "Extra request headers, such as {Authorization: ${HOOK_TOKEN}}."),
    ),
}

# The batch window of each type when the channel sets none: mail is read in batches, chat is not.
DEFAULT_BATCH = {"email": 60.0}
