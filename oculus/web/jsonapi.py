"""The JSON side of the web layer: one error shape, JSON encoding and query-parameter parsing."""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import json
import logging
import math
import re
import uuid
from datetime import datetime, timedelta, timezone

import bottle

from oculus.config.values import parse_duration

log = logging.getLogger(__name__)

MAX_LIMIT = 10_000
DEFAULT_LIMIT = 1_000
MAX_OFFSET = 1_000_000


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def iso_utc(value: datetime) -> str:
    """Format a time as ISO 8601 UTC with milliseconds and Z; naive times are UTC already."""
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc).replace(tzinfo=None)
    return value.isoformat(timespec="milliseconds") + "Z"


def _json_default(value):
    if isinstance(value, datetime):
        return iso_utc(value)
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, decimal.Decimal):
        return _finite(float(value))
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, uuid.UUID):
        return str(value)
    return str(value)


def _finite(value):
    """Replace NaN and infinity with None, because JSON has no literal for them."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def to_json(data) -> str:
    """Encode `data` as JSON; NaN and infinity become null, so the output is always valid JSON."""
    return json.dumps(_finite(data), default=_json_default, allow_nan=False)


def json_response(data, status: int = 200) -> str:
    bottle.response.status = status
    bottle.response.content_type = "application/json"
    bottle.response.set_header("Cache-Control", "no-store")
    return to_json(data)


def error_body(status: int, code: str, message: str) -> str:
    return json_response({"error": {"code": code, "message": message}}, status)


def parse_time(name: str, text: str | None, now: datetime) -> datetime | None:
    """Parse an ISO 8601 time, or a duration meaning that long before now (``since=1h``)."""
    if not text:
        return None
    invalid = ApiError(400, "invalid_parameter",
                       f"{name}: expected an ISO 8601 time such as 2026-01-31T12:00:00Z "
                       f'or a duration such as 1h, got "{text}"')
    try:
        return now - timedelta(seconds=parse_duration(text))
    except ValueError:
        pass
    except OverflowError:
        raise ApiError(400, "invalid_parameter", f'{name}: duration "{text}" is out of range') from None
    # A "+" in an unencoded query string arrives as a space; Python 3.10 does not accept "Z".
    normalized = re.sub(r" (\d\d:?\d\d)$", r"+\1", text.strip())
    normalized = re.sub(r"[zZ]$", "+00:00", normalized)
    try:
        value = datetime.fromisoformat(normalized)
        if value.tzinfo is not None:
            value = value.astimezone(timezone.utc).replace(tzinfo=None)
    except ValueError:
        raise invalid from None
    except OverflowError:
        raise ApiError(400, "invalid_parameter", f'{name}: time "{text}" is out of range') from None
    return value


def parse_step(text: str | None) -> float | None:
    """Parse a bucket width such as 30s or 5m; None when not given."""
    if not text:
        return None
    try:
        seconds = parse_duration(text)
    except (ValueError, OverflowError):
        seconds = -1.0
    if not 1 <= seconds <= 366 * 86400:
        raise ApiError(400, "invalid_parameter",
                       f'step: expected a duration from 1s to 366d such as 30s or 5m, got "{text}"')
    return seconds


def parse_limit(text: str | None) -> int:
    if text is None or text == "":
        return DEFAULT_LIMIT
    if not re.fullmatch(r"\d+", text) or not 1 <= int(text) <= MAX_LIMIT:
        raise ApiError(400, "invalid_parameter", f'limit: expected a whole number from 1 to {MAX_LIMIT}, got "{text}"')
    return int(text)


def parse_offset(text: str | None) -> int:
    if text is None or text == "":
        return 0
    if not re.fullmatch(r"\d+", text) or int(text) > MAX_OFFSET:
        raise ApiError(400, "invalid_parameter",
                       f'offset: expected a whole number from 0 to {MAX_OFFSET}, got "{text}"')
    return int(text)


def parse_choice(name: str, text: str | None, choices: tuple, default: str) -> str:
    if text is None or text == "":
        return default
    if text not in choices:
        raise ApiError(400, "invalid_parameter", f'{name}: expected one of {", ".join(choices)}, got "{text}"')
    return text


# Codes of the errors Bottle raises itself (unknown route, wrong method, exceptions, oversized bodies).
HTTP_ERROR_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 413: "payload_too_large",
                    500: "internal_error"}


def install_error_handlers(app: bottle.Bottle) -> None:
    """Answer API errors with one JSON shape: {"error": {"code": ..., "message": ...}}."""

    def api_errors(callback):
        def wrapper(*args, **kwargs):
            try:
                return callback(*args, **kwargs)
            except ApiError as exc:
                for name, value in exc.headers.items():
                    bottle.response.set_header(name, value)
                return error_body(exc.status, exc.code, exc.message)
        return wrapper

    app.install(api_errors)

    def make_handler(status: int):
        def handler(error: bottle.HTTPError):
            request = bottle.request
            if status == 500:
                # The exception text stays in the log; clients get a stable message.
                log.error("request failed method=%s path=%s error=%r\n%s",
                          request.method, request.path, error.exception, error.traceback or "")
                message = "internal error; the server log has the details"
            elif status == 404:
                message = f"no such page or endpoint: {request.path}"
            elif status == 405:
                message = f"method {request.method} is not allowed on {request.path}"
            else:
                message = str(error.body) or "bad request"
            if request.path.startswith("/api/") or "application/json" in request.headers.get("Accept", ""):
                return error_body(status, HTTP_ERROR_CODES[status], message)
            bottle.response.content_type = "text/plain; charset=utf-8"
            return message
        return handler

    for status in HTTP_ERROR_CODES:
        app.error(status)(make_handler(status))
