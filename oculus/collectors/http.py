"""HTTP probe: response time, status code, optional expected status and body match."""

from __future__ import annotations

import re
import threading
import time
from urllib.parse import urlsplit

import urllib3

from oculus import __version__
from oculus.collectors import http_transport
from oculus.collectors.base import Collector, Reading
from oculus.config.schema import REQUIRED, Field, Invalid, boolean, choice, string_map, text_keeping_secret
from oculus.config.values import Secret, format_duration, reveal

USER_AGENT = f"Oculus/{__version__} (+https://github.com/oculus-monitor/oculus)"
# Only this much of a body is read for matching; a probe must not buffer a large download.
MAX_BODY_BYTES = 1024 * 1024
# A body up to this size is read even when nothing matches it, so the connection can be reused.
MAX_DRAIN_BYTES = 64 * 1024
# A header name is a token of RFC 9110, section 5.6.2.
HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def status_ranges(value):
    """Parse expected statuses: 200, "200", [200, 204], "200-299" or a list mixing them."""
    shown_all = "<secret>" if isinstance(value, Secret) else repr(value)
    items = value if isinstance(value, list) else [value]
    if not items:
        raise Invalid('expected at least one status code, like 200 or "200-299"')
    ranges = []
    for item in items:
        plain = reveal(item)
        if isinstance(item, Secret):
            shown = "<secret>"
        elif isinstance(plain, str):
            shown = f'"{plain}"'
        else:
            shown = repr(plain)
        if isinstance(plain, str) and plain.strip().isdigit():
            plain = int(plain)
        if isinstance(plain, int) and not isinstance(plain, bool) and 100 <= plain <= 599:
            ranges.append((plain, plain))
            continue
        match = re.fullmatch(r"\s*(\d{3})\s*-\s*(\d{3})\s*", plain) if isinstance(plain, str) else None
        if match and int(match.group(1)) <= int(match.group(2)):
            ranges.append((int(match.group(1)), int(match.group(2))))
            continue
        raise Invalid(f'expected status codes like 200, [200, 204] or "200-299", got {shown}'
                      + (f" in {shown_all}" if isinstance(value, list) else ""))
    return ranges


def http_url(value):
    value = text_keeping_secret(value)
    plain = reveal(value)
    if not re.match(r"https?://[^/\s]+", plain, re.IGNORECASE) or re.search(r"\s", plain):
        raise Invalid(f"expected an http:// or https:// URL without spaces, got {_shown(value)}")
    try:
        parts = urlsplit(plain)
        port = parts.port  # raises ValueError for a port that is not a number from 0 to 65535
    except ValueError:  # the message may quote part of a secret URL, so it is not shown
        port, parts = -1, None
    if parts is None or not parts.hostname or port == 0 or port == -1:
        raise Invalid(f"expected an http:// or https:// URL with a host name or IP address and, optionally, "
                      f"a port from 1 to 65535, got {_shown(value)}")
    return value


def _shown(value) -> str:
    return "<secret>" if isinstance(value, Secret) else f'"{value}"'


class Regex:
    """A compiled body_regex that prints as /pattern/, or as <secret> when it came from ${ENV}."""

    def __init__(self, value):
        self.secret = isinstance(value, Secret)
        self.pattern = re.compile(reveal(value))

    def search(self, text: str):
        return self.pattern.search(text)

    def __str__(self) -> str:
        return "<secret>" if self.secret else f"/{self.pattern.pattern}/"

    __repr__ = __str__


def regex(value):
    checked = text_keeping_secret(value)
    try:
        return Regex(checked)
    except re.error as exc:
        raise Invalid(f"invalid regular expression {_shown(checked)}: {exc}") from None


class HttpCollector(Collector):
    TYPE = "http"
    FIELDS = (
        Field("url", http_url, REQUIRED, "URL to request (http:// or https://)."),
        Field("method", choice("get", "head", "post", "put", "options"), "get", "HTTP method."),
        Field("headers", string_map, {}, "Request headers; values may use ${ENV} references for secrets."),
        Field("body", text_keeping_secret, None, "Request body, sent as is."),
        Field("expect_status", status_ranges, [(200, 299)], 'Accepted status codes: 200, [200, 204] or "200-399".'),
        Field("body_match", text_keeping_secret, None, "Substring the response body must contain."),
        Field("body_regex", regex, None, "Regular expression the response body must match."),
        Field("follow_redirects", boolean, True, "Follow redirects; when false the 3xx status itself is checked."),
        Field("verify_tls", boolean, True, "Verify the server's TLS certificate."),
    )

    def __init__(self, spec):
        super().__init__(spec)
        options = self.options
        self.url = reveal(options["url"])
        self.headers = _request_headers(self.url, options["headers"])
        body = reveal(options["body"])
        self.body = body.encode("utf-8") if body is not None else None
        self.setup_error = None
        self.pool = None
        try:
            self.pool = http_transport.pool_manager(self.url, options["verify_tls"])
        except http_transport.SetupError as exc:
            self.setup_error = str(exc)

    @classmethod
    def check_options(cls, values):
        problems = []
        if values.get("body_match") and values.get("body_regex"):
            problems.append(("body_regex", "set either body_match or body_regex, not both"))
        if values.get("method") == "head" and (values.get("body_match") or values.get("body_regex")):
            problems.append(("method", "a HEAD response has no body to match; use method: get"))
        for name, value in (values.get("headers") or {}).items():
            if not HEADER_NAME.fullmatch(name):
                problems.append(("headers", f"invalid header name {name!r}: use letters, digits and "
                                            "!#$%&'*+-.^_`|~ only"))
            elif re.search(r"[\r\n\0]", reveal(value)):
                # The value may be a secret, so only the header's name is shown.
                problems.append(("headers", f"the value of header {name!r} contains a line break or NUL "
                                            "character; remove it"))
        return problems

    @classmethod
    def describe_target(cls, options: dict) -> str:
        return str(options["url"])

    def symbols(self) -> list[str]:
        return [self.symbol("rtt_ms"), self.symbol("status")]

    def close(self) -> None:
        if self.pool is not None:
            self.pool.clear()

    def collect(self, deadline: float) -> list[Reading]:
        if self.setup_error:
            return self.failed(self.setup_error)
        configured = self.spec.timeout
        started = time.perf_counter()
        response = None
        try:
            response = self._send(deadline)
            body = self._read_body(response, deadline)
            elapsed_ms = (time.perf_counter() - started) * 1000
            if not self._body_needed():
                _drain_small_body(response, deadline)
        except TimeoutError:
            return self.failed(f"timed out after {format_duration(configured)} while reading the body")
        except (urllib3.exceptions.HTTPError, http_transport.TooManyRedirects, OSError) as exc:
            host = urlsplit(self.url).hostname or self.url
            return self.failed(http_transport.describe_error(exc, configured, host))
        except (ValueError, UnicodeError) as exc:  # urllib3 rejects some URLs and headers only when sending
            # The URL may carry credentials or a token, so only its configured (masked) form is shown.
            return self.failed(f"invalid request to {self.options['url']}: {type(exc).__name__}: "
                               "check the URL, a redirect's Location and the header values")
        finally:
            if response is not None:
                _release(response)

        status = response.status
        error = self._check(status, body)
        tags = {"status": status}
        if error:
            tags["error"] = error
        ok = error is None
        return [
            Reading(self.symbol("rtt_ms"), elapsed_ms, ok, error, tags),
            Reading(self.symbol("status"), float(status), ok, error, dict(tags)),
        ]

    def _send(self, deadline: float):
        """Send the request and follow redirects before `deadline`; return the final response, unread.

        Each request gets the time left until the deadline as its connect
        and read timeouts. Those apply to each socket operation, so a
        server that sends its headers a little at a time can hold a run
        past the deadline.
        """
        method, url, body, headers = self.options["method"].upper(), self.url, self.body, self.headers
        for _ in range(http_transport.MAX_REDIRECTS + 1):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise urllib3.exceptions.ReadTimeoutError(None, url, "the run's deadline passed between redirects")
            response = self.pool.urlopen(method, url, body=body, headers=headers,
                                         timeout=urllib3.Timeout(connect=remaining, read=remaining),
                                         retries=False, redirect=False, preload_content=False)
            location = self.options["follow_redirects"] and response.get_redirect_location()
            if not location:
                return response
            _drain_small_body(response, deadline)
            _release(response)
            method, url, body, headers = http_transport.redirected(response.status, method, url, location,
                                                                   body, headers)
        raise http_transport.TooManyRedirects

    def _read_body(self, response, deadline: float) -> bytes:
        """Read at most MAX_BODY_BYTES before `deadline`, or raise TimeoutError.

        The read timeout applies to each socket read, so a server that
        trickles bytes could hold a read for ever. A timer shuts the socket
        down at the deadline, which ends the blocked read.
        """
        if not self._body_needed():
            return b""
        expired = threading.Event()

        def expire() -> None:
            expired.set()
            # close() alone does not wake a thread blocked in recv(); shutdown() does.
            try:
                response.shutdown()
            except (OSError, RuntimeError, ValueError):
                pass  # the read has ended and released its connection, so nothing blocks
            response.close()

        timer = threading.Timer(max(0.0, deadline - time.monotonic()), expire)
        timer.daemon = True
        timer.start()
        chunks, size = [], 0
        try:
            for chunk in response.stream(16384):
                chunks.append(chunk)
                size += len(chunk)
                if size >= MAX_BODY_BYTES:
                    break
        except (urllib3.exceptions.HTTPError, OSError, AttributeError, ValueError):
            if not expired.is_set():
                raise
        finally:
            timer.cancel()
        if expired.is_set():
            raise TimeoutError
        return b"".join(chunks)[:MAX_BODY_BYTES]

    def _body_needed(self) -> bool:
        options = self.options
        return options["method"] != "head" and bool(options["body_match"] or options["body_regex"])

    def _check(self, status: int, body: bytes) -> str | None:
        options = self.options
        if not any(low <= status <= high for low, high in options["expect_status"]):
            expected = ", ".join(str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in options["expect_status"])
            return f"expected status {expected}, got {status}"
        text_body = body.decode("utf-8", errors="replace") if body else ""
        needle = reveal(options["body_match"])
        if needle and needle not in text_body:
            shown = "the expected text" if isinstance(options["body_match"], Secret) else repr(needle)
            return f"body does not contain {shown}"
        pattern = options["body_regex"]
        if pattern is not None and not pattern.search(text_body):
            return f"body does not match {pattern}"
        return None


def _request_headers(url: str, configured: dict) -> urllib3.HTTPHeaderDict:
    """Build the headers of every request: defaults, Basic auth from credentials in the URL, then `configured`."""
    headers = urllib3.HTTPHeaderDict({"User-Agent": USER_AGENT, "Accept": "*/*", "Accept-Encoding": "gzip, deflate"})
    authorization = http_transport.basic_authorization(urlsplit(url))
    if authorization:
        headers["Authorization"] = authorization
    for name, value in configured.items():
        headers[name] = reveal(value)  # replaces a default of the same name in any letter case
    return headers


def _drain_small_body(response, deadline: float) -> None:
    """Read a small body that no check needs before `deadline`, so the connection can serve the next run.

    A connection with unread body bytes cannot carry the next request, so
    _release closes it, and the next run pays for a new TCP (and TLS)
    handshake. A body without Content-Length, or larger than MAX_DRAIN_BYTES,
    is left unread and its connection closed, and so is one still arriving
    at the deadline. Before each read the socket's timeout is set to the
    time left, and read1() makes at most one read of the socket.
    """
    length = response.headers.get("Content-Length", "")
    if not length.isdigit() or int(length) > MAX_DRAIN_BYTES:
        return
    sock = getattr(response.connection, "sock", None)
    if sock is None:
        return
    configured_timeout = sock.gettimeout()
    try:
        while not response.closed:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            sock.settimeout(remaining)
            if not response.read1(16384, decode_content=False):
                return
    except (urllib3.exceptions.HTTPError, OSError):
        pass  # the probe already has its result; _release then drops the broken connection
    finally:
        if sock.fileno() != -1:  # urllib3 closes the socket when a read fails
            sock.settimeout(configured_timeout)


def _release(response) -> None:
    """Return the response's connection to its pool, closed first unless the body was read to its end.

    http.client marks a response closed once its whole body is read (at
    once for HEAD, 204 and 304), and only then can the connection carry
    another request. A closed connection goes back too, so the pool keeps
    its slot and opens a new connection for the next run.
    """
    if not response.closed:
        response.close()
    response.release_conn()
