"""HTTP probe: response time, status code, optional expected status and body match."""

from __future__ import annotations

import re
import time

import requests

from oculus import __version__
from oculus.collectors.base import Collector, Reading
from oculus.config.schema import REQUIRED, Field, Invalid, boolean, choice, string_map, text
from oculus.config.values import format_duration, reveal

USER_AGENT = f"Oculus/{__version__} (+https://github.com/oculus-monitor/oculus)"
# Only this much of a body is read for matching; a probe must not buffer a large download.
MAX_BODY_BYTES = 1024 * 1024


def status_ranges(value):
    """Parse expected statuses: 200, [200, 204], "200-299" or a list mixing both."""
    items = value if isinstance(value, list) else [value]
    ranges = []
    for item in items:
        item = reveal(item)
        if isinstance(item, int) and not isinstance(item, bool) and 100 <= item <= 599:
            ranges.append((item, item))
            continue
        match = re.fullmatch(r"\s*(\d{3})\s*-\s*(\d{3})\s*", item) if isinstance(item, str) else None
        if match and int(match.group(1)) <= int(match.group(2)):
            ranges.append((int(match.group(1)), int(match.group(2))))
            continue
        raise Invalid(f'expected status codes like 200, [200, 204] or "200-299", got {item!r}')
    return ranges


def http_url(value):
    value = text(value)
    if not re.match(r"https?://[^/\s]+", reveal(value)):
        raise Invalid(f'expected an http:// or https:// URL, got "{value}"')
    return value


def regex(value):
    value = text(value)
    try:
        return re.compile(reveal(value))
    except re.error as exc:
        raise Invalid(f"invalid regular expression {value!r}: {exc}") from None


class HttpCollector(Collector):
    TYPE = "http"
    FIELDS = (
        Field("url", http_url, REQUIRED, "URL to request (http:// or https://)."),
        Field("method", choice("get", "head", "post", "put", "options"), "get", "HTTP method."),
        Field("headers", string_map, {}, "Request headers; values may use ${ENV} references for secrets."),
        Field("body", text, None, "Request body, sent as is."),
        Field("expect_status", status_ranges, [(200, 299)], 'Accepted status codes: 200, [200, 204] or "200-399".'),
        Field("body_match", text, None, "Substring the response body must contain."),
        Field("body_regex", regex, None, "Regular expression the response body must match."),
        Field("follow_redirects", boolean, True, "Follow redirects; when false the 3xx status itself is checked."),
        Field("verify_tls", boolean, True, "Verify the server's TLS certificate."),
    )

    def __init__(self, spec):
        super().__init__(spec)
        self.session = requests.Session()
        self.session.headers["User-Agent"] = USER_AGENT
        self.session.headers.update({k: reveal(v) for k, v in self.options["headers"].items()})

    @classmethod
    def check_options(cls, values):
        if values.get("body_match") and values.get("body_regex"):
            return [("body_regex", "set either body_match or body_regex, not both")]
        return []

    @classmethod
    def describe_target(cls, options: dict) -> str:
        return str(options["url"])

    def symbols(self) -> list[str]:
        return [self.symbol("rtt_ms"), self.symbol("status")]

    def close(self) -> None:
        self.session.close()

    def collect(self, deadline: float) -> list[Reading]:
        options = self.options
        timeout = max(0.001, deadline - time.monotonic())
        url = reveal(options["url"])
        started = time.perf_counter()
        try:
            response = self.session.request(
                options["method"].upper(), url,
                data=reveal(options["body"]),
                timeout=timeout,
                allow_redirects=options["follow_redirects"],
                verify=options["verify_tls"],
                stream=True,
            )
            with response:
                body = self._read_body(response, deadline)
        except requests.RequestException as exc:
            return self.failed(describe_request_error(exc, timeout))
        except TimeoutError:
            return self.failed(f"timed out after {format_duration(timeout)} while reading the body")
        elapsed_ms = (time.perf_counter() - started) * 1000

        error = self._check(response.status_code, body)
        tags = {"status": response.status_code}
        if error:
            tags["error"] = error
        ok = error is None
        return [
            Reading(self.symbol("rtt_ms"), elapsed_ms, ok, error, tags),
            Reading(self.symbol("status"), float(response.status_code), ok, error, dict(tags)),
        ]

    def _read_body(self, response, deadline: float) -> bytes:
        """Read at most MAX_BODY_BYTES, checking the overall deadline between chunks.

        The requests timeout applies to each socket read, so a server that
        trickles bytes would otherwise keep the probe busy for ever.
        """
        if self.options["method"] == "head" or not (self.options["body_match"] or self.options["body_regex"]):
            return b""
        chunks, size = [], 0
        for chunk in response.iter_content(chunk_size=16384):
            chunks.append(chunk)
            size += len(chunk)
            if size >= MAX_BODY_BYTES:
                break
            if time.monotonic() > deadline:
                raise TimeoutError
        return b"".join(chunks)[:MAX_BODY_BYTES]

    def _check(self, status: int, body: bytes) -> str | None:
        options = self.options
        if not any(low <= status <= high for low, high in options["expect_status"]):
            expected = ", ".join(str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in options["expect_status"])
            return f"expected status {expected}, got {status}"
        text_body = body.decode("utf-8", errors="replace") if body else ""
        needle = reveal(options["body_match"])
        if needle and needle not in text_body:
            return f"body does not contain {needle!r}"
        pattern = options["body_regex"]
        if pattern is not None and not pattern.search(text_body):
            return f"body does not match /{pattern.pattern}/"
        return None


def describe_request_error(exc: requests.RequestException, timeout: float) -> str:
    """Turn a requests exception into a short phrase for the dashboard."""
    if isinstance(exc, requests.exceptions.SSLError):
        if "CERTIFICATE_VERIFY_FAILED" in str(exc):
            return "TLS error: certificate verification failed"
        return "TLS handshake failed"
    if isinstance(exc, requests.exceptions.Timeout):
        return f"timed out after {format_duration(timeout)}"
    if isinstance(exc, requests.exceptions.TooManyRedirects):
        return "too many redirects"
    if isinstance(exc, requests.exceptions.ConnectionError):
        message = str(exc)
        if "NameResolutionError" in message or "Name or service not known" in message or "getaddrinfo" in message:
            return "DNS lookup failed"
        if "Connection refused" in message:
            return "connection refused"
        if "timed out" in message:
            return f"timed out after {format_duration(timeout)}"
        if "RemoteDisconnected" in message or "Connection aborted" in message:
            return "server closed the connection without a response"
        return "connection failed"
    if isinstance(exc, (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema)):
        return "invalid URL"
    return f"request failed: {type(exc).__name__}"
