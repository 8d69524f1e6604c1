"""Message content: one or more alert notifications rendered as text, Markdown, Telegram HTML or e-mail HTML.

Every value that comes from a rule, a label or a query result is escaped for
the target format, so names such as disk_usage_*[db] never break a message
and a label cannot smuggle a mention into Slack or Discord.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import quote

from oculus.config.values import format_duration
from oculus.notify.notification import Notification

SEVERITY_ORDER = ("critical", "error", "warn", "info")
EMOJI = {"critical": "🔴", "error": "🟠", "warn": "🟡", "info": "🔵", "resolved": "✅"}
COLOUR = {"critical": "#b91c1c", "error": "#ea580c", "warn": "#ca8a04", "info": "#2563eb", "resolved": "#15803d"}
# Zero-width space: "@\u200beveryone" looks like "@everyone" but is no mention.
_ZWSP = "\u200b"


@dataclass(frozen=True)
class Markup:
    """The escaping, bold and link syntax of one message format."""

    escape: Callable[[str], str]
    bold: Callable[[str], str]
    link: Callable[[str, str], str]
    newline: str = "\n"


def _discord_escape(text: str) -> str:
    escaped = "".join("\\" + char if char in "\\*_~`|<>#[]()" else char for char in text)
    return escaped.replace("@", "@" + _ZWSP)


def _slack_escape(text: str) -> str:
    # apprise (2.x) escapes "&" for Slack but keeps "<" and ">", which open mentions and links there;
    # look-alike angle quotes keep the text readable.
    return text.replace("<", "‹").replace(">", "›")


TEXT = Markup(escape=str, bold=str, link=lambda url, label: url)
MARKDOWN_DISCORD = Markup(escape=_discord_escape, bold=lambda s: f"**{s}**",
                          link=lambda url, label: f"[{label}]({url})")
MARKDOWN_SLACK = Markup(escape=_slack_escape, bold=lambda s: f"**{s}**", link=lambda url, label: f"[{label}]({url})")
TELEGRAM_HTML = Markup(escape=lambda s: html.escape(s, quote=False), bold=lambda s: f"<b>{s}</b>",
                       link=lambda url, label: f'<a href="{html.escape(url)}">{label}</a>')


def colour_key(notification: Notification) -> str:
    return "resolved" if notification.state == "resolved" else notification.severity


def worst(notifications: list[Notification]) -> Notification:
    """Return the notification that sets a batch's colour: the most severe firing one, else the first."""
    firing = [n for n in notifications if n.state == "firing"]
    if not firing:
        return notifications[0]
    return min(firing, key=lambda n: SEVERITY_ORDER.index(n.severity) if n.severity in SEVERITY_ORDER else 9)


def needs_mention(notifications: list[Notification]) -> bool:
    return any(n.state == "firing" and n.severity == "critical" for n in notifications)


def rule_url(base_url: str, rule: str) -> str:
    return f"{base_url.rstrip('/')}/rules#rule-{quote(rule, safe='')}"


def headline(n: Notification) -> str:
    """Return the one-line summary of an alert, such as "🔴 CRITICAL: disk_full is firing"."""
    if n.state == "resolved":
        return f"{EMOJI['resolved']} RESOLVED: {n.rule} ({n.severity})"
    still = "still " if n.reason == "repeat" else ""
    return f"{EMOJI.get(n.severity, '')} {n.severity.upper()}: {n.rule} is {still}firing".strip()


def title(notifications: list[Notification]) -> str:
    """Return the subject or title: the headline of one alert, or a count for a batch."""
    if len(notifications) == 1:
        return headline(notifications[0])
    firing = sum(n.state == "firing" for n in notifications)
    resolved = len(notifications) - firing
    parts = [f"{count} {word}" for count, word in ((firing, "firing"), (resolved, "resolved")) if count]
    return f"{EMOJI[colour_key(worst(notifications))]} Oculus: {len(notifications)} alerts ({', '.join(parts)})"


def facts(n: Notification) -> list[tuple[str, str]]:
    """Return the (label, value) lines of one alert, values not yet escaped."""
    lines = []
    if n.message:
        lines.append(("Message", n.message))
    lines.append(("Severity", n.severity))
    lines.append(("State", n.state + (f" ({n.reason})" if n.reason else "")))
    if n.value is not None:
        lines.append(("Value", format_value(n.value)))
    if n.labels:
        lines.append(("Labels", ", ".join(f"{key}={value}" for key, value in sorted(n.labels.items()))))
    if n.started_at is not None:
        lines.append(("Started", format_time(n.started_at)))
    if n.state == "resolved":
        lines.append(("Resolved", format_time(n.ts)))
    if n.duration is not None:
        lines.append(("Duration", format_duration(n.duration) if n.duration else "0s"))
    return lines


def format_value(value: float) -> str:
    return f"{value:g}" if abs(value) < 1e15 else f"{value:.6g}"


def format_time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def render(notifications: list[Notification], markup: Markup, base_url: str, mention: str | None = None) -> str:
    """Render the body of a message in `markup`; a batch lists each alert under its headline."""
    blocks = []
    if mention and needs_mention(notifications):
        blocks.append(mention)
    for n in notifications:
        lines = [markup.bold(markup.escape(headline(n)))] if len(notifications) > 1 else []
        lines += [f"{markup.bold(label + ':')} {markup.escape(value)}" for label, value in facts(n)]
        lines.append(markup.link(rule_url(base_url, n.rule), "Open the rule in Oculus"))
        blocks.append(markup.newline.join(lines))
    return (markup.newline * 2).join(blocks)


def render_email_html(notifications: list[Notification], base_url: str, mention: str | None = None) -> str:
    """Render an HTML e-mail body: one block per alert with a bar in the severity's colour.

    apprise derives the plain-text part from this HTML, so every fact is one line of text and each
    link shows its address.
    """
    escape = html.escape
    parts = ['<div style="font-family: -apple-system, Segoe UI, Helvetica, Arial, sans-serif; font-size: 14px;">']
    if mention and needs_mention(notifications):
        parts.append(f"<p><strong>{escape(mention)}</strong></p>")
    for n in notifications:
        colour = COLOUR.get(colour_key(n), "#475569")
        parts.append(f'<div style="border-left: 6px solid {colour}; margin: 0 0 16px 0; padding: 4px 12px;">')
        parts.append(f'<p style="font-size: 16px; margin: 4px 0;"><strong>{escape(headline(n))}</strong></p>')
        for label, value in facts(n):
            parts.append(f'<div><span style="color: #64748b;">{label}:</span> {escape(value)}</div>')
        url = escape(rule_url(base_url, n.rule))
        parts.append(f'<p style="margin: 8px 0 4px 0;">Open the rule in Oculus: <a href="{url}">{url}</a></p>')
        parts.append("</div>")
    parts.append("</div>")
    return "\n".join(parts)


def alert_json(n: Notification, base_url: str) -> dict:
    """Return one alert as the webhook channel posts it."""
    return {
        "rule": n.rule, "instance": n.instance, "state": n.state, "severity": n.severity, "message": n.message,
        "value": n.value, "labels": n.labels, "reason": n.reason,
        "started_at": _iso(n.started_at), "at": _iso(n.ts), "duration_seconds": n.duration,
        "url": rule_url(base_url, n.rule),
    }


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat(timespec="seconds") + "Z" if moment is not None else None
