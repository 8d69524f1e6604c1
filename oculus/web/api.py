"""JSON routes under /api/ and the Prometheus exposition at /metrics."""

from __future__ import annotations

import bottle
from prometheus_client.exposition import choose_encoder

from oculus.storage import queries, utc_now
from oculus.web import alerts, symbols, targets
from oculus.web.jsonapi import (ApiError, json_response, parse_choice, parse_limit, parse_offset, parse_step,
                                parse_time)
from oculus.web.openapi import openapi_document


def install_api(app: bottle.Bottle, runtime, query_endpoint, registry) -> None:
    reader = runtime.database.reader

    @app.get("/api/metrics")
    def api_metrics():
        query = bottle.request.query
        # getunicode decodes UTF-8; get() would return the raw latin-1 WSGI text.
        now = utc_now()
        since = parse_time("since", query.getunicode("since"), now)
        until = parse_time("until", query.getunicode("until"), now)
        limit = parse_limit(query.getunicode("limit"))
        offset = parse_offset(query.getunicode("offset"))
        rows = queries.samples(reader(), symbol=query.getunicode("symbol") or None,
                               category=query.getunicode("category") or None, since=since, until=until,
                               limit=limit, offset=offset)
        return json_response({"samples": rows, "count": len(rows), "limit": limit, "offset": offset,
                              "next_offset": offset + len(rows) if len(rows) == limit else None})

    @app.get("/api/metrics/<symbol>")
    def api_symbol(symbol):
        query = bottle.request.query
        now = utc_now()
        since, until, step = symbols.resolve_window(parse_time("since", query.getunicode("since"), now),
                                                    parse_time("until", query.getunicode("until"), now),
                                                    parse_step(query.getunicode("step")), now)
        detail = symbols.symbol_detail(reader(), symbol, since, until, step)
        if detail is None:
            raise ApiError(404, "not_found", f'no samples of symbol "{symbol}"; GET /api/metrics lists stored ones')
        return json_response(detail)

    @app.post("/api/query")
    def api_query():
        return query_endpoint.handle()

    @app.get("/api/rules")
    def api_rules():
        return json_response({"rules": alerts.list_rules(runtime, reader())})

    @app.get("/api/rules/<name>")
    def api_rule(name):
        limit = parse_limit(bottle.request.query.getunicode("limit") or "100")
        rule = alerts.rule_detail(runtime, reader(), name, history_limit=limit)
        if rule is None:
            raise ApiError(404, "not_found", f'no rule named "{name}"; GET /api/rules lists every rule')
        return json_response(rule)

    @app.get("/api/alerts")
    def api_alerts():
        query = bottle.request.query
        state = parse_choice("state", query.getunicode("state"), alerts.ALERT_STATES, "active")
        limit = parse_limit(query.getunicode("limit") or "100")
        return json_response(alerts.list_alerts(reader(), state, limit))

    @app.get("/api/collectors")
    def api_collectors():
        return json_response({"collectors": targets.list_collectors(runtime)})

    @app.get("/api/openapi.json")
    def api_openapi():
        return json_response(openapi_document())

    @app.get("/metrics")
    def exposition():
        encoder, content_type = choose_encoder(bottle.request.headers.get("Accept", ""))
        bottle.response.content_type = content_type
        bottle.response.set_header("Cache-Control", "no-store")
        return encoder(registry)
