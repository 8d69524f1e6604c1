"""The Bottle app: pages, the JSON API, the Prometheus exposition, static files and health checks."""

from __future__ import annotations

import logging

import bottle

from oculus import __version__
from oculus.resources import asset_path
from oculus.web.api import install_api
from oculus.web.dashboard import iso
from oculus.web.exposition import QueryMetrics, create_registry
from oculus.web.jsonapi import install_error_handlers, json_response
from oculus.web.pages import TEMPLATE_HELPERS, install_pages
from oculus.web.query import QueryEndpoint, QueryLimits
from oculus.web.transfer import TransferEndpoints

log = logging.getLogger(__name__)


def create_app(runtime, query_limits: QueryLimits | None = None) -> bottle.Bottle:
    app = bottle.Bottle()
    templates = [str(asset_path("templates"))]
    static_root = str(asset_path("static"))

    def render(name: str, **values) -> str:
        return bottle.template(name, template_lookup=templates, iso=iso, version=__version__,
                               **TEMPLATE_HELPERS, **values)

    query_metrics = QueryMetrics()
    query_endpoint = QueryEndpoint(runtime, query_metrics, query_limits)
    app.config["oculus.query_endpoint"] = query_endpoint
    install_pages(app, runtime, render, query_endpoint)
    install_api(app, runtime, query_endpoint, create_registry(runtime, query_metrics))
    transfers = TransferEndpoints(runtime)
    app.config["oculus.transfer_endpoints"] = transfers
    transfers.install(app)

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

    install_error_handlers(app)
    return app
