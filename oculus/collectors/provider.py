"""Shared HTTP access for market collectors: one session and one backoff per provider.

Every collector that talks to the same provider (CoinGecko, Yahoo, ...) at the
same base URL shares one Provider, so a rate limit seen by one collector pauses
all of them. Responses are checked before parsing: a bot page or plain-text
quota message with status 200 is an error, not a parse failure.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from email.utils import parsedate_to_datetime

import requests

from oculus import __version__
from oculus.config.values import format_duration

log = logging.getLogger(__name__)

# Some providers (Yahoo) answer 429 to anything that does not look like a browser.
BROWSER_USER_AGENT = (
    f"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    f"Chrome/130.0 Safari/537.36 Oculus/{__version__}"
)
USER_AGENT = f"Oculus/{__version__} (self-hosted monitoring; python-requests)"

PERMANENT, TRANSIENT, RATE_LIMITED = "permanent", "transient", "rate_limited"


class ProviderError(Exception):
    """A failed provider call. `kind` is permanent (fix the config), transient or rate_limited."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind
        self.message = message


class Backoff:
    """Exponential backoff shared by every collector of one provider.

    `clock` returns seconds on a monotonic scale and `wall_clock` unix seconds;
    tests inject both. A Retry-After value is honoured as a floor.
    """

    def __init__(self, base: float = 5.0, cap: float = 900.0, clock=time.monotonic, wall_clock=time.time):
        self.base = base
        self.cap = cap
        self.clock = clock
        self.wall_clock = wall_clock
        self.failures = 0
        self.blocked_until = 0.0
        self.reason = ""
        self._lock = threading.Lock()

    def remaining(self) -> float:
        """Seconds until the provider may be called again (0 when it may be called now)."""
        return max(0.0, self.blocked_until - self.clock())

    def success(self) -> None:
        with self._lock:
            self.failures = 0
            self.blocked_until = 0.0
            self.reason = ""

    def failure(self, reason: str, retry_after: float | None = None) -> float:
        """Record a transient failure; return the delay before the next call."""
        with self._lock:
            self.failures += 1
            delay = min(self.cap, self.base * 2 ** (self.failures - 1))
            if retry_after is not None:
                delay = max(delay, retry_after)
            self.blocked_until = max(self.blocked_until, self.clock() + delay)
            self.reason = reason
            return delay


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Parse Retry-After in either form: delta seconds ("60") or an HTTP-date; return seconds."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, when.timestamp() - now)


def number(value) -> float | None:
    """Parse a JSON number or numeric string exactly; None and "" are missing, never 0.

    Raises ValueError for text that is not a number (for example Stooq's "N/D").
    """
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got {value!r}")
    if isinstance(value, (int, float, Decimal)):
        result = float(value)
        if not math.isfinite(result):
            raise ValueError(f"expected a finite number, got {value!r}")
        return result
    try:
        parsed = Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError(f"expected a number, got {value!r}") from None
    if not parsed.is_finite():
        raise ValueError(f"expected a finite number, got {value!r}")
    return float(parsed)


def utc_from_unix(seconds: float) -> datetime:
    """Naive UTC datetime from unix seconds (the form stored in TIMESTAMP columns)."""
    return datetime.fromtimestamp(float(seconds), timezone.utc).replace(tzinfo=None)


def utc_from_iso(text: str) -> datetime:
    """Naive UTC datetime from ISO 8601, tolerating 'Z', 9 fractional digits and '+00' offsets."""
    cleaned = text.strip().replace(" ", "T", 1)
    if cleaned.endswith(("Z", "z")):
        cleaned = cleaned[:-1] + "+00:00"
    if len(cleaned) >= 3 and cleaned[-3] in "+-" and cleaned[-2:].isdigit() and ":" not in cleaned[-6:]:
        cleaned += ":00"  # "+00" -> "+00:00"
    if "." in cleaned:
        head, _, tail = cleaned.partition(".")
        digits = len(tail) - len(tail.lstrip("0123456789"))
        cleaned = head + "." + tail[:min(digits, 6)] + tail[digits:]
    value = datetime.fromisoformat(cleaned)
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc).replace(tzinfo=None)
    return value


class Response:
    """The parts of an HTTP response a collector needs, read within the deadline."""

    def __init__(self, status: int, headers, text: str):
        self.status = status
        self.headers = headers
        self.text = text

    def json(self):
        """Parse the body as JSON, keeping non-integer numbers as Decimal so none lose digits."""
        stripped = self.text.lstrip()
        if not stripped.startswith(("{", "[")):
            raise ProviderError(TRANSIENT, f"expected JSON, got {describe_body(self.text)}")
        try:
            return json.loads(stripped, parse_float=Decimal)
        except ValueError as exc:
            raise ProviderError(TRANSIENT, f"invalid JSON in the response: {exc}") from None


def describe_body(text: str) -> str:
    """A short description of an unexpected body, such as 'an HTML page' or the first words of text."""
    stripped = text.strip()
    if not stripped:
        return "an empty body"
    if stripped[:1] == "<":
        return "an HTML page (a bot check or error page)"
    first_line = stripped.splitlines()[0]
    return f"text: {first_line[:80]!r}"


class Provider:
    """One upstream API at one base URL: a requests.Session plus a shared Backoff."""

    def __init__(self, name: str, base_url: str, user_agent: str = USER_AGENT, backoff: Backoff | None = None):
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.session = requests.Session()
        self.session.headers["User-Agent"] = user_agent
        self.session.headers["Accept"] = "application/json, text/csv;q=0.9, */*;q=0.5"
        self.backoff = backoff or Backoff()

    def get(self, path: str, deadline: float, params=None, rate_limit_header: str | None = None) -> Response:
        """GET base_url + path; return a 2xx Response or raise ProviderError.

        A 429 or 5xx, a timeout, a connection error or a bot page pauses the
        provider for every collector that shares it. `rate_limit_header` names
        a provider-specific header holding delta seconds (used when there is
        no Retry-After).
        """
        waiting = self.backoff.remaining()
        if waiting > 0:
            raise ProviderError(RATE_LIMITED, f"{self.name}: backing off for {format_duration(waiting)} "
                                f"after {self.backoff.reason}")
        if deadline - time.monotonic() <= 0:
            # The run's time is used up; that says nothing about the provider, so no backoff.
            raise ProviderError(TRANSIENT, f"{self.name}: no time left in this run for the request")

        timeout = max(0.001, deadline - time.monotonic())
        url = self.base_url + path
        try:
            raw = self.session.get(url, params=params, timeout=timeout)
        except requests.Timeout:
            raise self._transient(f"timed out after {format_duration(timeout)}") from None
        except requests.RequestException as exc:
            raise self._transient(_describe_connection_error(exc)) from None

        response = Response(raw.status_code, raw.headers, raw.text)
        # Binance answers 418 (an IP ban with Retry-After) to clients that ignored its 429s.
        if raw.status_code in (429, 418):
            retry_after = parse_retry_after(raw.headers.get("Retry-After"), self.backoff.wall_clock())
            if retry_after is None and rate_limit_header and raw.headers.get(rate_limit_header, "").isdigit():
                retry_after = float(raw.headers[rate_limit_header])
            delay = self.backoff.failure(f"HTTP {raw.status_code} (rate limited)", retry_after)
            raise ProviderError(RATE_LIMITED, f"{self.name}: rate limited (HTTP {raw.status_code}); "
                                f"next call in {format_duration(delay)}")
        if raw.status_code >= 500:
            raise self._transient(f"HTTP {raw.status_code}")
        if raw.status_code >= 400:
            raise ProviderError(PERMANENT, f"{self.name}: HTTP {raw.status_code}: {_error_text(response)}")
        if response.text.lstrip()[:1] == "<":
            raise self._transient(f"got {describe_body(response.text)} instead of data")
        return response

    def pause(self, reason: str, seconds: float) -> None:
        """Pause the provider for at least `seconds`, for quota signals the status code does not show."""
        self.backoff.failure(reason, seconds)

    def succeeded(self) -> None:
        self.backoff.success()

    def _transient(self, reason: str) -> ProviderError:
        delay = self.backoff.failure(reason)
        return ProviderError(TRANSIENT, f"{self.name}: {reason}; next call in {format_duration(delay)}")

    def close(self) -> None:
        self.session.close()


def _describe_connection_error(exc: requests.RequestException) -> str:
    message = str(exc)
    if "NameResolutionError" in message or "Name or service not known" in message:
        return "DNS lookup failed (no internet access?)"
    if "Connection refused" in message:
        return "connection refused"
    return "connection failed (no internet access?)"


def _error_text(response: Response) -> str:
    """Pull a short error message out of an error body (JSON error fields or the first line)."""
    try:
        body = json.loads(response.text)
    except ValueError:
        return describe_body(response.text)
    found = _find_error_message(body)
    return found[:160] if found else describe_body(response.text)


def _find_error_message(body) -> str | None:
    if isinstance(body, dict):
        for key in ("error", "msg", "message", "description", "detail", "errors"):
            if key in body:
                value = body[key]
                if isinstance(value, str):
                    return value
                nested = _find_error_message(value)
                if nested:
                    return nested
        for value in body.values():  # an envelope such as Yahoo's {"chart": {"error": {...}}}
            nested = _find_error_message(value) if isinstance(value, dict) else None
            if nested:
                return nested
    if isinstance(body, list) and body:
        return _find_error_message(body[0])
    return None


_providers: dict = {}
_providers_lock = threading.Lock()


def shared_provider(name: str, base_url: str, user_agent: str = USER_AGENT) -> Provider:
    """Return the Provider for (name, base_url), creating it once per process."""
    key = (name, base_url.rstrip("/"))
    with _providers_lock:
        provider = _providers.get(key)
        if provider is None:
            provider = _providers[key] = Provider(name, base_url, user_agent)
        return provider
