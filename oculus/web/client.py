"""A client of a running Oculus's HTTP API, for the CLI commands that need the process that has the database open."""

from __future__ import annotations

import logging
import os
import tempfile
import time

import requests

CONNECT_TIMEOUT = 5.0
# The server writes the whole backup or export before the first byte goes out, which takes minutes for a
# database of several gigabytes.
READ_TIMEOUT = 3600.0
CHUNK_BYTES = 1 << 20
# A request that gets HTTP 429 or 503 is sent again after the server's Retry-After delay, at most
# MAX_RETRIES times, and only while that delay is at most MAX_RETRY_WAIT seconds.
RETRY_STATUSES = (429, 503)
MAX_RETRIES = 3
MAX_RETRY_WAIT = 60.0


log = logging.getLogger(__name__)


class ApiClientError(RuntimeError):
    """The running Oculus could not be reached or rejected the request; the message explains why."""


def download(method: str, url: str, token: str | None, destination: str, params: dict | None = None) -> dict:
    """Send one request and write the response body to `destination`; return the response headers.

    The body goes to a temporary file next to `destination`, which is renamed only once it is complete.
    """
    session = requests.Session()
    session.trust_env = False  # a proxy from http_proxy must not carry the token or divert a loopback request
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    for attempt in range(MAX_RETRIES + 1):
        response = _send(session, method, url, params, headers)
        wait = _retry_wait(response)
        if wait is None or attempt == MAX_RETRIES:
            break
        log.warning("Oculus at %s returned HTTP %d: %s; retrying in %gs", url, response.status_code,
                    _error_message(response), wait)
        response.close()
        time.sleep(wait)
    with response:
        if response.status_code != 200:
            raise ApiClientError(f"Oculus at {url} returned HTTP {response.status_code}: {_error_message(response)}")
        try:
            _save(response, destination)
        except requests.RequestException as exc:
            raise ApiClientError(f"the download from {url} failed: {exc}") from None
        return dict(response.headers)


def _send(session, method: str, url: str, params: dict | None, headers: dict):
    try:
        return session.request(method, url, params=params, headers=headers, stream=True,
                               timeout=(CONNECT_TIMEOUT, READ_TIMEOUT))
    except requests.ConnectionError as exc:
        raise ApiClientError(f"cannot connect to Oculus at {url}: {_reason(exc)}; check that it runs, "
                             "or pass its address with --url") from None
    except requests.Timeout:
        raise ApiClientError(f"Oculus at {url} did not respond within {READ_TIMEOUT:g}s") from None


def _retry_wait(response) -> float | None:
    """Return the seconds to wait before the retry, or None when the response is final."""
    if response.status_code not in RETRY_STATUSES:
        return None
    try:
        wait = float(response.headers.get("Retry-After", ""))
    except ValueError:
        return None  # no delay in seconds (absent, or an HTTP date): report the response as it is
    return wait if 0 <= wait <= MAX_RETRY_WAIT else None


def _save(response, destination: str) -> None:
    directory = os.path.dirname(os.path.abspath(destination))
    handle, partial = tempfile.mkstemp(prefix=".oculus-download-", dir=directory)
    try:
        with os.fdopen(handle, "wb") as output:
            for chunk in response.iter_content(CHUNK_BYTES):
                output.write(chunk)
            output.flush()
            os.fsync(output.fileno())
        os.replace(partial, destination)
    except BaseException:
        os.unlink(partial)
        raise


def _error_message(response) -> str:
    try:
        return response.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return response.text[:200] or response.reason


def _reason(error: Exception) -> str:
    text = str(error)
    return "connection refused" if "refused" in text.lower() else text
