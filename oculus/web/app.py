"""Routes: dashboard, live partial, health checks and the JSON API."""

from __future__ import annotations

import json
import logging
import math
import re
from datetime import datetime, timedelta, timezone

import bottle

from oculus import __version__
from oculus.config.values import parse_duration
from oculus.resources import asset_path
from oculus.storage import queries, utc_now
from oculus.web.dashboard import build_panels, iso

log = logging.getLogger(__name__)

MAX_LIMIT = 10_000
DEFAULT_LIMIT = 1_000


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def _json_default(value):
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(timezone.utc).replace(tzinfo=None)
        return value.isoformat(timespec="milliseconds") + "Z"
    return str(value)


def _finite(value):
    """Replace NaN and infinity with None, because JSON has no literal for them."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def json_response(data, status: int = 200) -> str:
    bottle.response.status = status
    bottle.response.content_type = "application/json"
    bottle.response.set_header("Cache-Control", "no-store")
    return json.dumps(_finite(data), default=_json_default, allow_nan=False)


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


def parse_limit(text: str | None) -> int:
    if text is None or text == "":
        return DEFAULT_LIMIT
    if not re.fullmatch(r"\d+", text) or not 1 <= int(text) <= MAX_LIMIT:
        raise ApiError(400, "invalid_parameter", f'limit: expected a whole number from 1 to {MAX_LIMIT}, got "{text}"')
    return int(text)


def create_app(runtime) -> bottle.Bottle:
    app = bottle.Bottle()
    templates = [str(asset_path("templates"))]
    static_root = str(asset_path("static"))

    def render(name: str, **values) -> str:
        return bottle.template(name, template_lookup=templates, iso=iso, version=__version__, **values)

    def dashboard_values() -> dict:
        owners = runtime.scheduler.symbol_owners if runtime.scheduler is not None else {}
        panels = build_panels(runtime.database.reader(), runtime.config.collectors, owners)
        return {"panels": panels, "collector_count": len(runtime.config.collectors),
                "config_source": runtime.config.source}

    @app.get("/")
    def index():
        return render("dashboard", **dashboard_values())

    @app.get("/partials/metrics")
    def metrics_partial():
        bottle.response.set_header("Cache-Control", "no-store")
        return render("partials/metrics", **dashboard_values())

    @app.get("/static/<path:path>")
    def static(path):
        response = bottle.static_file(path, root=static_root)
        response.set_header("Cache-Control", "public, max-age=3600")
        return response

    @app.get("/healthz")
    def healthz():
        return json_response({"status": "ok", "version": __version__})

    @app.get("/readyz")
    def readyz():
        ready, details = runtime.readiness()
        return json_response({"status": "ready" if ready else "not ready", **details}, 200 if ready else 503)

    @app.get("/api/metrics")
    def api_metrics():
        query = bottle.request.query
        # getunicode decodes UTF-8; get() would return the raw latin-1 WSGI text.
        now = utc_now()
        since = parse_time("since", query.getunicode("since"), now)
        until = parse_time("until", query.getunicode("until"), now)
        limit = parse_limit(query.getunicode("limit"))
        rows = queries.samples(runtime.database.reader(), symbol=query.getunicode("symbol") or None,
                               category=query.getunicode("category") or None, since=since, until=until, limit=limit)
        return json_response({"samples": rows, "count": len(rows), "limit": limit})

    install_error_handlers(app)
    return app


def install_error_handlers(app: bottle.Bottle) -> None:
    """Answer API errors with one JSON shape: {"error": {"code": ..., "message": ...}}."""

    def api_errors(callback):
        def wrapper(*args, **kwargs):
            try:
                return callback(*args, **kwargs)
            except ApiError as exc:
                return error_body(exc.status, exc.code, exc.message)
        return wrapper

    app.install(api_errors)
    codes = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 500: "internal_error"}

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
                return error_body(status, codes[status], message)
            bottle.response.content_type = "text/plain; charset=utf-8"
            return message
        return handler

    for status in codes:
        app.error(status)(make_handler(status))
