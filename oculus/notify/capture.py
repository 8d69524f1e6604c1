"""See what apprise did during one send: the HTTP responses it got and the messages it logged.

apprise (2.x) returns only success or failure. To honour a 429's Retry-After,
to mark a 401 as permanent and to show "timed out after 5 s" instead of a
bare failure, Oculus records every HTTP exchange made while a capture is
active. The record lives in a ContextVar because apprise runs each service on
its own worker thread with a copy of the caller's context.
"""

from __future__ import annotations

import contextvars
import email.utils
import json
import logging
import math
import threading
import time
from dataclasses import dataclass, field

import requests

APPRISE_LOGGER = "apprise"
# Maximum wait that a rate-limited response can impose; a longer Retry-After is cut to this.
MAX_RETRY_AFTER = 3600.0
_MAX_BODY = 4096

_current: contextvars.ContextVar[Capture | None] = contextvars.ContextVar("oculus_notify_capture", default=None)
_install_lock = threading.Lock()
_installed = False


@dataclass
class Exchange:
    """One HTTP request made during a capture: its response, or the exception that replaced it."""

    status: int | None = None
    reason: str = ""
    headers: dict = field(default_factory=dict)
    body: bytes = b""
    error: BaseException | None = None


@dataclass
class Capture:
    exchanges: list[Exchange] = field(default_factory=list)
    logs: list[tuple[int, str]] = field(default_factory=list)  # (level, message) of the apprise logger


class capture:  # noqa: N801 - used like a function: `with capture() as record:`
    """Record the HTTP exchanges and apprise log messages of the code run inside the block."""

    def __enter__(self) -> Capture:
        install()
        self.record = Capture()
        self._token = _current.set(self.record)
        return self.record

    def __exit__(self, *exc) -> None:
        _current.reset(self._token)


def install() -> None:
    """Wrap requests.Session.send and attach the apprise log handler, once per process.

    Outside a capture the wrapper only calls the original, so collectors that
    use requests on other threads are not affected. apprise's own log records
    stop at its logger: at debug level they contain tokens and webhook URLs.
    """
    global _installed
    with _install_lock:
        if _installed:
            return
        original = requests.Session.send

        def send(session, request, **kwargs):
            record = _current.get()
            if record is None:
                return original(session, request, **kwargs)
            try:
                response = original(session, request, **kwargs)
            except requests.RequestException as exc:
                record.exchanges.append(Exchange(error=exc))
                raise
            body = response.content[:_MAX_BODY] if response.status_code >= 400 else b""
            record.exchanges.append(Exchange(response.status_code, response.reason or "", dict(response.headers),
                                             body))
            return response

        requests.Session.send = send
        apprise_log = logging.getLogger(APPRISE_LOGGER)
        apprise_log.addHandler(_CaptureHandler())
        apprise_log.setLevel(logging.DEBUG)
        apprise_log.propagate = False
        _installed = True


class _CaptureHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        active = _current.get()
        if active is not None:
            active.logs.append((record.levelno, record.getMessage()))


# -- what a failed send means ----------------------------------------------------


@dataclass
class Failure:
    """The reason a send failed: a short phrase, whether a retry can help, and the wait a rate limit requests."""

    error: str
    permanent: bool = False
    retry_after: float | None = None


def explain(record: Capture, timeout: float) -> Failure:
    """Describe the failure of a send from what `record` saw, newest HTTP exchange first."""
    if record.exchanges:
        return explain_exchange(record.exchanges[-1], timeout)
    warnings = [message for level, message in record.logs if level >= logging.WARNING]
    details = [message.split(":", 1)[1].strip() for level, message in record.logs
               if level < logging.WARNING and message.startswith("Socket Exception:")]
    if details:
        return Failure(_short_socket_error(details[-1], timeout), permanent=_looks_permanent(details[-1]))
    if warnings:
        return Failure(warnings[-1].rstrip("."), permanent=_looks_permanent(warnings[-1]))
    return Failure("the service did not accept the notification")


def explain_exchange(exchange: Exchange, timeout: float) -> Failure:
    if exchange.error is not None:
        return Failure(_request_error(exchange.error, timeout))
    status = exchange.status
    phrase = f"HTTP {status} {exchange.reason}".rstrip()
    if status == 429:
        wait = retry_after(exchange)
        return Failure(f"{phrase}, retry after {wait:g}s" if wait is not None else phrase, retry_after=wait)
    if status is not None and 400 <= status < 500 and status != 408:
        # A wrong token, a deleted webhook or a malformed request fails again the same way.
        return Failure(phrase, permanent=True)
    if status is not None and status < 400:
        return Failure(f"{phrase}, but the service reported the notification as not sent")
    return Failure(phrase)


def retry_after(exchange: Exchange) -> float | None:
    """Return the wait in seconds that a rate-limited response requests, or None when it names none.

    Telegram puts it in the JSON body (parameters.retry_after), Discord in the
    body (retry_after) and in X-RateLimit-Reset-After, most others in the
    Retry-After header, as seconds or as an HTTP date.
    """
    headers = {name.lower(): value for name, value in exchange.headers.items()}
    candidates = [_body_retry_after(exchange.body), headers.get("retry-after"), headers.get("x-ratelimit-reset-after")]
    for candidate in candidates:
        seconds = _seconds(candidate)
        if seconds is not None:
            return min(max(seconds, 0.0), MAX_RETRY_AFTER)
    return None


def _body_retry_after(body: bytes):
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict):
        return None
    parameters = data.get("parameters")
    if isinstance(parameters, dict) and "retry_after" in parameters:
        return parameters["retry_after"]
    return data.get("retry_after")


def _seconds(value) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        try:
            moment = email.utils.parsedate_to_datetime(str(value))
        except (TypeError, ValueError):
            return None
        return moment.timestamp() - time.time()
    return seconds if math.isfinite(seconds) else None


def _request_error(error: BaseException, timeout: float) -> str:
    if isinstance(error, requests.Timeout):
        return f"timed out after {timeout:g}s"
    return _short_socket_error(str(error), timeout)


def _short_socket_error(text: str, timeout: float) -> str:
    lowered = text.lower()
    if "timed out" in lowered or "timeout" in lowered:
        return f"timed out after {timeout:g}s"
    if "name or service not known" in lowered or "nodename nor servname" in lowered or "resolution" in lowered \
            or "getaddrinfo" in lowered:
        return "DNS lookup failed"
    if "refused" in lowered:
        return "connection refused"
    if "certificate" in lowered or "ssl" in lowered:
        return "TLS handshake failed"
    if "authentication" in lowered or "535" in lowered:
        return "SMTP authentication failed"
    # Anything else, such as "SMTP AUTH extension not supported by server", is short enough to show as it is.
    return text.strip().rstrip(".")[:200] or "connection failed"


def _looks_permanent(text: str) -> bool:
    """Return whether an error would repeat on every retry, as a rejected SMTP login does."""
    lowered = text.lower()
    return "authentication" in lowered or "535" in lowered
