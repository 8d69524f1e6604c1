"""Channel types: how a batch of notifications becomes one message on one service.

`log` writes to the Oculus log, `webhook` POSTs JSON with requests, and every
other type goes through apprise: email, telegram, discord and slack build the
apprise URL from their settings, `apprise` takes any apprise URL as it is.
apprise is imported only when such a channel is built, so `oculus --help` and
`oculus version` never load it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from urllib.parse import quote

import requests

from oculus import __version__
from oculus.config import ChannelSpec, Secret, reveal
from oculus.notify import message
from oculus.notify.capture import Exchange, capture, explain, explain_exchange
from oculus.notify.notification import Notification

# The log channel writes here; the logger name is part of the documented log format.
notify_log = logging.getLogger("oculus.notify")
_LEVELS = {"info": logging.INFO, "warn": logging.WARNING, "error": logging.ERROR, "critical": logging.CRITICAL}


@dataclass
class Outcome:
    """The result of one attempt to send one message."""

    delivered: bool
    error: str | None = None
    permanent: bool = False
    retry_after: float | None = None


class ChannelError(ValueError):
    """Raised when a channel cannot be built from its settings, such as an apprise URL apprise rejects."""


class Channel:
    """Sends a batch of notifications as one message; send() runs on the channel's worker thread."""

    local = False  # True for a channel that sends in process, without a network (log)

    def __init__(self, spec: ChannelSpec, base_url: str):
        self.spec = spec
        self.base_url = base_url

    @property
    def name(self) -> str:
        return self.spec.name

    def send(self, notifications: list[Notification]) -> Outcome:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def mask(self, text: str | None) -> str | None:
        """Replace every secret of this channel in `text` with <secret>, also in its URL-encoded form."""
        if text is None:
            return None
        for value in self.secrets():
            if value:
                text = text.replace(value, "<secret>").replace(quote(value, safe=""), "<secret>")
        return text

    def secrets(self) -> list[str]:
        values = []
        for option in self.spec.options.values():
            items = option.values() if isinstance(option, dict) else [option]
            values += [item.reveal() for item in items if isinstance(item, Secret)]
        return values


class LogChannel(Channel):
    local = True

    def send(self, notifications: list[Notification]) -> Outcome:
        for n in notifications:
            level = _LEVELS.get(n.severity, logging.WARNING) if n.state == "firing" else logging.INFO
            suffix = f" ({n.reason})" if n.reason else ""
            notify_log.log(level, "alert %s%s rule=%s instance=%s severity=%s value=%s message=%s",
                           n.state, suffix, n.rule, n.instance or "-", n.severity, n.value, n.message)
        return Outcome(True)


class WebhookChannel(Channel):
    """POST {"title", "text", "alerts": [...]} as JSON; any 2xx response counts as delivered."""

    def __init__(self, spec: ChannelSpec, base_url: str):
        super().__init__(spec, base_url)
        self.session = requests.Session()
        self.session.headers["User-Agent"] = f"oculus/{__version__}"
        self.session.headers.update({key: reveal(value) for key, value in spec.options["headers"].items()})

    def send(self, notifications: list[Notification]) -> Outcome:
        body = {
            "source": "oculus",
            "title": message.title(notifications),
            "text": message.render(notifications, message.TEXT, self.base_url),
            "alerts": [message.alert_json(n, self.base_url) for n in notifications],
        }
        timeout = self.spec.timeout
        try:
            response = self.session.post(reveal(self.spec.options["url"]), data=json.dumps(body, default=str),
                                         headers={"Content-Type": "application/json"}, timeout=timeout)
        except requests.RequestException as exc:
            return self._failed(explain_exchange(Exchange(error=exc), timeout))
        if 200 <= response.status_code < 300:
            return Outcome(True)
        exchange = Exchange(response.status_code, response.reason or "", dict(response.headers),
                            response.content[:4096])
        return self._failed(explain_exchange(exchange, timeout))

    def _failed(self, failure) -> Outcome:
        return Outcome(False, self.mask(failure.error), failure.permanent, failure.retry_after)

    def close(self) -> None:
        self.session.close()


class AppriseChannel(Channel):
    """A channel delivered by apprise; subclasses build the URL and choose the message format."""

    body_format = "text"
    markup = message.TEXT

    def __init__(self, spec: ChannelSpec, base_url: str):
        super().__init__(spec, base_url)
        import apprise

        self._apprise = apprise
        asset = apprise.AppriseAsset(app_id="Oculus", app_desc="Oculus alerts", app_url=base_url,
                                     storage_mode="memory")
        self.app = apprise.Apprise(asset=asset)
        with capture() as record:
            accepted = self.app.add(self.url())
        if not accepted:
            reasons = [self.mask(text) for level, text in record.logs if level >= logging.WARNING]
            detail = f" ({reasons[-1].rstrip('.')})" if reasons else ""
            raise ChannelError(f"apprise does not accept the {self.url_setting}{detail}; check it against the "
                               "apprise documentation of the service")

    url_setting = "URL"

    def url(self) -> str:
        raise NotImplementedError

    def timeouts(self) -> str:
        """Return apprise's URL arguments for the connect and read timeouts, in seconds."""
        return f"cto={self.spec.timeout:g}&rto={self.spec.timeout:g}"

    def body(self, notifications: list[Notification]) -> str:
        return message.render(notifications, self.markup, self.base_url, self.spec.mention)

    def send(self, notifications: list[Notification]) -> Outcome:
        notify_type = self._notify_type(message.worst(notifications))
        with capture() as record:
            result = self.app.notify(body=self.body(notifications), title=message.title(notifications),
                                     notify_type=notify_type, body_format=self.body_format)
        if result:
            return Outcome(True)
        failure = explain(record, self.spec.timeout)
        return Outcome(False, self.mask(failure.error), failure.permanent, failure.retry_after)

    def _notify_type(self, n: Notification):
        types = self._apprise.NotifyType
        if n.state == "resolved":
            return types.SUCCESS
        return {"critical": types.FAILURE, "error": types.FAILURE, "warn": types.WARNING}.get(n.severity,
                                                                                          types.INFO)

    def secrets(self) -> list[str]:
        return [self.url()] + super().secrets()  # the whole URL first, so no fragment of it stays readable


def _with_query(url: str, arguments: str) -> str:
    return url + ("&" if "?" in url else "?") + arguments


class EmailChannel(AppriseChannel):
    body_format = "html"
    url_setting = "smtp settings"

    def url(self) -> str:
        o = self.spec.options
        tls, port = o["tls"], o["smtp_port"]
        mode = {"ssl": "ssl", "starttls": "starttls", "off": "insecure"}.get(tls) or ("ssl" if port == 465
                                                                                     else "starttls")
        scheme = "mailto" if mode == "insecure" else "mailtos"
        login = ""
        if o["smtp_user"]:
            login = quote(o["smtp_user"], safe="")
            if o["smtp_pass"] is not None:
                login += ":" + quote(reveal(o["smtp_pass"]), safe="")
            login += "@"
        host = o["smtp_host"]
        netloc_host = f"[{host}]" if ":" in host else host
        query = (f"smtp={quote(host, safe='')}&from={quote(o['from'], safe='@')}"
                 f"&to={quote(','.join(o['to']), safe='@,')}&mode={mode}&{self.timeouts()}")
        return f"{scheme}://{login}{netloc_host}:{port}/?{query}"

    def body(self, notifications: list[Notification]) -> str:
        return message.render_email_html(notifications, self.base_url, self.spec.mention)


class TelegramChannel(AppriseChannel):
    body_format = "html"
    markup = message.TELEGRAM_HTML
    url_setting = "bot_token and chat_id"

    def url(self) -> str:
        o = self.spec.options
        return (f"tgram://{reveal(o['bot_token'])}/{quote(o['chat_id'], safe='@-')}/"
                f"?format=html&image=no&preview=no&{self.timeouts()}")


class DiscordChannel(AppriseChannel):
    # NOTE: apprise (2.3) sleeps inside send() until Discord's X-RateLimit-Reset when X-RateLimit-Remaining
    # is 0. Such a wait blocks this channel's worker, and the channel's timeout does not cover it.
    body_format = "markdown"
    markup = message.MARKDOWN_DISCORD
    url_setting = "webhook URL"

    def url(self) -> str:
        return _with_query(reveal(self.spec.options["webhook"]),
                           f"format=markdown&avatar=no&image=no&footer=no&botname=Oculus&{self.timeouts()}")


class SlackChannel(AppriseChannel):
    body_format = "markdown"
    markup = message.MARKDOWN_SLACK
    url_setting = "webhook URL"

    def url(self) -> str:
        return _with_query(reveal(self.spec.options["webhook"]),
                           f"format=markdown&image=no&footer=no&{self.timeouts()}")


class GenericAppriseChannel(AppriseChannel):
    """Any apprise URL as the user wrote it; the message is plain text, which every service takes."""

    def url(self) -> str:
        return _with_query(reveal(self.spec.options["url"]), self.timeouts())


CHANNEL_CLASSES = {
    "log": LogChannel,
    "email": EmailChannel,
    "telegram": TelegramChannel,
    "discord": DiscordChannel,
    "slack": SlackChannel,
    "apprise": GenericAppriseChannel,
    "webhook": WebhookChannel,
}


def build_channel(spec: ChannelSpec, base_url: str) -> Channel:
    """Return the channel for `spec`; raises ChannelError when its settings cannot work."""
    return CHANNEL_CLASSES[spec.type](spec, base_url)


def channel_problem(spec: ChannelSpec) -> str | None:
    """Return why the channel cannot be built from `spec`, or None; used when the config is loaded."""
    try:
        channel = build_channel(spec, "")
    except ChannelError as exc:
        return str(exc)
    channel.close()
    return None
