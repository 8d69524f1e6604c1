"""POST /api/query: read-only SQL for holders of the API token, bounded in size, time, rows and rate.

Checks run in this order, so a rejected request costs as little as possible:
endpoint enabled, per-client rate, token, body size, body shape, then the
SQL guard (oculus.storage.sqlguard), which parses the statement before it runs.
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
import time

import bottle

from oculus.config import reveal
from oculus.storage.sqlguard import QueryFailed, QueryOutOfMemory, QueryTimeout, UnsafeQuery, run_read_only
from oculus.web.jsonapi import ApiError, json_response
from oculus.web.ratelimit import TokenBuckets, retry_after_header

log = logging.getLogger(__name__)


class QueryLimits:
    """Limits of the SQL endpoint; tests shrink them."""

    def __init__(self, *, timeout: float = 5.0, max_rows: int = 1000, max_body_bytes: int = 64 * 1024,
                 rate: float = 10.0, burst: int = 20, max_concurrent: int = 2, slot_wait: float = 1.0):
        self.timeout = timeout
        self.max_rows = max_rows
        self.max_body_bytes = max_body_bytes
        self.rate = rate
        self.burst = burst
        # A few long queries must not hold every web thread, or the dashboard would stall. A query
        # that finds every slot taken waits up to slot_wait seconds before it is answered 503.
        self.max_concurrent = max_concurrent
        self.slot_wait = slot_wait


class QueryEndpoint:
    def __init__(self, runtime, metrics, limits: QueryLimits | None = None):
        self.runtime = runtime
        self.metrics = metrics
        self.limits = limits or QueryLimits()
        self.buckets = TokenBuckets(self.limits.rate, self.limits.burst)
        self._slots = threading.BoundedSemaphore(self.limits.max_concurrent)

    @property
    def enabled(self) -> bool:
        return self._token() is not None

    def _token(self) -> bytes | None:
        token = reveal(self.runtime.config.server.api_token)
        return token.encode("utf-8") if token else None

    def handle(self) -> str:
        request = bottle.request
        token = self._token()
        if token is None:
            raise ApiError(403, "query_disabled",
                           "the SQL endpoint is disabled because no API token is configured; set server.api_token "
                           "in the config or the OCULUS_API_TOKEN environment variable, then restart Oculus")

        client = request.environ.get("REMOTE_ADDR") or "unknown"
        wait = self.buckets.acquire(client)
        if wait:
            raise ApiError(429, "rate_limited",
                           f"too many queries from {client}; at most {self.limits.rate:g} a second "
                           f"(bursts of {self.limits.burst}); retry after the Retry-After delay",
                           {"Retry-After": retry_after_header(wait)})

        check_token(request.headers.get("Authorization", ""), token)
        sql, params = _parse_body(_read_body(request, self.limits.max_body_bytes))
        return self._run(sql, params, client)

    def _run(self, sql: str, params, client: str) -> str:
        if not self._slots.acquire(timeout=self.limits.slot_wait):
            raise ApiError(503, "busy", f"{self.limits.max_concurrent} queries are running already; retry in a moment",
                           {"Retry-After": "1"})
        outcome = "failed"
        started = time.perf_counter()
        cursor = self.runtime.database.new_cursor()
        self.metrics.active.inc()
        try:
            result = run_read_only(cursor, sql, params, timeout=self.limits.timeout, max_rows=self.limits.max_rows)
            outcome = "ok"
        except UnsafeQuery as exc:
            outcome = "rejected"
            raise ApiError(400, "query_rejected", str(exc)) from None
        except QueryTimeout as exc:
            outcome = "timeout"
            raise ApiError(504, "query_timeout", f"{exc}; narrow the time range or add a LIMIT") from None
        except QueryOutOfMemory as exc:
            outcome = "out_of_memory"
            raise ApiError(422, "query_out_of_memory", str(exc)) from None
        except QueryFailed as exc:
            raise ApiError(400, "query_failed", str(exc)) from None
        finally:
            elapsed = time.perf_counter() - started
            self.metrics.active.dec()
            self.metrics.duration.labels(outcome=outcome).observe(elapsed)
            _close(cursor)
            self._slots.release()
            log.debug("query client=%s outcome=%s elapsed_ms=%.1f", client, outcome, elapsed * 1000)
        return json_response({"columns": result.columns, "rows": [list(row) for row in result.rows],
                              "truncated": result.truncated, "elapsed_ms": round(result.elapsed_ms, 3)})


def _close(cursor) -> None:
    try:
        cursor.close()
    except Exception:  # closing an interrupted cursor may raise; the cursor is discarded either way
        log.debug("closing a query cursor failed", exc_info=True)


def check_token(header: str, token: bytes) -> None:
    """Raise a 401 ApiError unless `header` is Authorization: Bearer with `token`."""
    scheme, _, presented = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        raise ApiError(401, "unauthorized", "missing API token; send the header Authorization: Bearer <token>",
                       {"WWW-Authenticate": 'Bearer realm="oculus"'})
    # compare_digest takes time independent of where the values differ, so timing reveals nothing.
    if not hmac.compare_digest(presented.strip().encode("utf-8"), token):
        raise ApiError(401, "unauthorized", "invalid API token",
                       {"WWW-Authenticate": 'Bearer realm="oculus", error="invalid_token"'})


def _read_body(request, max_bytes: int) -> bytes:
    too_large = ApiError(413, "payload_too_large", f"the request body is larger than {max_bytes} bytes")
    length = request.environ.get("CONTENT_LENGTH") or ""
    if length.strip().isdigit() and int(length) > max_bytes:
        raise too_large
    body = request.environ["wsgi.input"].read(min(int(length), max_bytes + 1) if length.strip().isdigit() else
                                              max_bytes + 1)
    if len(body) > max_bytes:
        raise too_large
    return body


def _reject_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


def _parse_body(body: bytes) -> tuple[str, dict | list | None]:
    try:
        payload = json.loads(body.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ApiError(400, "invalid_body",
                       'the body must be a JSON object such as {"sql": "SELECT 1", "params": {}}') from None
    if not isinstance(payload, dict):
        raise ApiError(400, "invalid_body", 'the body must be a JSON object such as {"sql": "SELECT 1"}')
    unknown = sorted(set(payload) - {"sql", "params"})
    if unknown:
        raise ApiError(400, "invalid_body", f"unknown key(s) {', '.join(map(repr, unknown))}; send sql and params")
    sql = payload.get("sql")
    if not isinstance(sql, str) or not sql.strip():
        raise ApiError(400, "invalid_body", "sql: expected a non-empty string with one SELECT statement")
    params = payload.get("params")
    if params is not None and not isinstance(params, (dict, list)):
        raise ApiError(400, "invalid_body", "params: expected an object of named values ($name) or a list (?)")
    for value in (params.values() if isinstance(params, dict) else params or ()):
        if not (value is None or isinstance(value, (str, float, bool)) or _is_bigint(value)):
            raise ApiError(400, "invalid_body",
                           "params: each value must be a string, a number within 64-bit range, a boolean or null")
    return sql, params or None


def _is_bigint(value) -> bool:
    return isinstance(value, int) and -(2 ** 63) <= value < 2 ** 63
