"""Loopback receivers for the notification tests: an HTTP receiver with scripted responses and an SMTP server.

The HTTP receiver stands in for a webhook, for apprise's json:// and form://
targets, and for Telegram, Discord and Slack once apprise's service URLs point
at it (`point_apprise_at`). The SMTP server is aiosmtpd, with or without
STARTTLS, implicit TLS and AUTH.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

from tests.servers import free_port

SECRET_TOKEN = "123456:tg-secret-token-never-shown"
SECRET_WEBHOOK_PART = "WhSecretNeverShown0123456"
SECRET_PASSWORD = "smtp-secret-never-shown"
SECRETS = (SECRET_TOKEN, SECRET_WEBHOOK_PART, SECRET_PASSWORD)


@dataclass
class Response:
    """One scripted response: status, body, headers, and a delay before it is sent (a hung receiver)."""

    status: int = 200
    body: bytes = b""
    headers: dict = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class Received:
    method: str
    path: str
    headers: dict
    body: bytes

    def json(self):
        return json.loads(self.body)

    def form(self) -> dict:
        return {key: values[0] for key, values in parse_qs(self.body.decode("utf-8")).items()}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):
        pass

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        server: Receiver = self.server
        received = Received(self.command, self.path, dict(self.headers), body)
        response = server.next_response(self.path)
        if response.delay:
            time.sleep(response.delay)
        server.record(received)
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        try:
            self.wfile.write(response.body)
        except OSError:
            pass  # the client gave up waiting, as a timed-out client does


class Receiver(ThreadingHTTPServer):
    """Records every POST; responds from a script per path prefix, then with the default response."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, default: Response | None = None):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.default = default or Response(200, b"ok")
        self.scripts: dict[str, list[Response]] = {}
        self.received: list[Received] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def script(self, prefix: str, *responses: Response) -> None:
        with self._lock:
            self.scripts[prefix] = list(responses)

    def next_response(self, path: str) -> Response:
        with self._lock:
            for prefix, responses in self.scripts.items():
                if path.startswith(prefix) and responses:
                    return responses.pop(0)
        return self.default

    def record(self, received: Received) -> None:
        with self._lock:
            self.received.append(received)

    def requests_to(self, prefix: str) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.path.startswith(prefix)]

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


# Apprise's service base URLs (apprise 2.x class attributes), as the tests point them at a receiver.
TELEGRAM_PREFIX, DISCORD_PREFIX, SLACK_PREFIX = "/telegram/bot", "/discord/webhooks", "/slack/services"


def point_apprise_at(monkeypatch, receiver: Receiver) -> None:
    """Make apprise's Telegram, Discord and Slack plugins post to `receiver` instead of the public services.

    apprise has no setting for these addresses, so the tests replace the class attributes that hold them.
    """
    from apprise.plugins.discord import NotifyDiscord
    from apprise.plugins.slack import NotifySlack
    from apprise.plugins.telegram import NotifyTelegram

    monkeypatch.setattr(NotifyTelegram, "notify_url", receiver.url + TELEGRAM_PREFIX)
    monkeypatch.setattr(NotifyDiscord, "notify_url", receiver.url + DISCORD_PREFIX)
    monkeypatch.setattr(NotifySlack, "webhook_url", receiver.url + SLACK_PREFIX)


def block_public_network(monkeypatch) -> None:
    """Make every name lookup for a host other than loopback fail, so a test can never reach a public service."""
    original = socket.getaddrinfo

    def loopback_only(host, *args, **kwargs):
        name = host.decode() if isinstance(host, bytes) else host
        if name not in ("localhost", None):
            try:
                loopback = ipaddress.ip_address(name.strip("[]")).is_loopback
            except ValueError:
                loopback = False
            if not loopback:
                raise socket.gaierror(socket.EAI_NONAME, f"test blocks lookups of non-loopback host {name}")
        return original(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", loopback_only)


# -- SMTP ----------------------------------------------------------------------


class SmtpReceiver:
    """aiosmtpd on 127.0.0.1: plain, STARTTLS (tls="starttls") or implicit TLS (tls="ssl"), optional AUTH."""

    def __init__(self, certificate=None, tls: str = "off", login: tuple[str, str] | None = None):
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult

        self.messages: list = []
        self.envelopes: list = []
        receiver = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                receiver.envelopes.append(envelope)
                receiver.messages.append(message_from_bytes(envelope.content, policy=policy.default))
                return "250 OK"

        def authenticate(server, session, envelope, mechanism, auth_data):
            user = auth_data.login.decode() if isinstance(auth_data.login, bytes) else auth_data.login
            password = auth_data.password.decode() if isinstance(auth_data.password, bytes) else auth_data.password
            # handled=False lets aiosmtpd send "535 Authentication credentials invalid" itself.
            return AuthResult(success=login is not None and (user, password) == login, handled=False)

        context = None
        if certificate is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            certificate.configure_cert(context)
        self.port = free_port()
        options = {"hostname": "127.0.0.1", "port": self.port, "ready_timeout": 10.0}
        if tls == "ssl":
            options["ssl_context"] = context
        elif tls == "starttls":
            options.update(tls_context=context, require_starttls=True)
        if login is not None:
            # aiosmtpd (1.4) counts only STARTTLS as TLS for auth_require_tls, so implicit TLS turns it off.
            options.update(authenticator=authenticate, auth_required=True, auth_require_tls=tls == "starttls",
                           auth_exclude_mechanism=["LOGIN"])
        self.controller = Controller(Handler(), **options)
        self.controller.start()

    def stop(self) -> None:
        self.controller.stop()
