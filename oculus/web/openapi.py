"""The OpenAPI 3.0 document served at /api/openapi.json; tests check that it lists every /api/ route."""

from __future__ import annotations

from oculus import __version__
from oculus.web.alerts import ALERT_STATES

ERROR_CODES = ("bad_request", "invalid_parameter", "invalid_body", "not_found", "method_not_allowed",
               "unauthorized", "query_disabled", "query_rejected", "query_failed", "query_out_of_memory",
               "query_timeout",
               "export_disabled", "backup_disabled",
               "payload_too_large", "rate_limited", "busy", "internal_error")

TIME_DESCRIPTION = ("An ISO 8601 time such as 2026-01-31T12:00:00Z (a time without offset is UTC), "
                    "or a duration such as 90s, 15m, 1h or 7d meaning that long before now.")


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict:
    return {"$ref": f"#/components/responses/{description}"}


def _query_parameter(name: str, description: str, schema: dict) -> dict:
    return {"name": name, "in": "query", "required": False, "description": description, "schema": schema}


TIME_PARAMETER = {"type": "string", "maxLength": 64}
LIMIT_PARAMETER = {"type": "integer", "minimum": 1, "maximum": 10000}

SCHEMAS = {
    "Error": {
        "type": "object", "required": ["error"], "additionalProperties": False,
        "properties": {"error": {
            "type": "object", "required": ["code", "message"], "additionalProperties": False,
            "properties": {"code": {"type": "string", "enum": list(ERROR_CODES)},
                           "message": {"type": "string"}},
        }},
    },
    "Sample": {
        "type": "object", "required": ["ts", "category", "symbol", "value", "success"],
        "properties": {
            "ts": {"type": "string", "format": "date-time", "description": "ISO 8601 UTC time of the sample."},
            "category": {"type": "string"},
            "symbol": {"type": "string"},
            "value": {"type": "number", "nullable": True},
            "success": {"type": "boolean"},
            "duration_ms": {"type": "number", "nullable": True},
            "tags": {"type": "object", "nullable": True, "description": "Labels; tags.error holds a failure reason."},
        },
    },
    "SeriesPoint": {
        "type": "object", "required": ["ts", "avg", "min", "max", "count", "failures"],
        "properties": {
            "ts": {"type": "string", "format": "date-time", "description": "Start of the bucket."},
            "avg": {"type": "number", "nullable": True}, "min": {"type": "number", "nullable": True},
            "max": {"type": "number", "nullable": True},
            "count": {"type": "integer"}, "failures": {"type": "integer"},
        },
    },
    "SymbolDetail": {
        "type": "object", "required": ["symbol", "category", "latest", "since", "until", "step", "stats", "series"],
        "properties": {
            "symbol": {"type": "string"}, "category": {"type": "string"},
            "latest": {"type": "object", "nullable": True},
            "since": {"type": "string", "format": "date-time"}, "until": {"type": "string", "format": "date-time"},
            "step": {"type": "integer", "description": "Bucket width in seconds."},
            "resolution": {"type": "string", "enum": ["raw", "1m", "1h"],
                           "description": "raw samples, or the 1-minute or 1-hour rollups for ranges older than the "
                                          "raw samples kept."},
            "stats": {"type": "object", "properties": {
                "count": {"type": "integer"}, "failures": {"type": "integer"},
                "failure_rate": {"type": "number", "nullable": True},
                "min": {"type": "number", "nullable": True}, "max": {"type": "number", "nullable": True},
                "avg": {"type": "number", "nullable": True},
            }},
            "series": {"type": "array", "items": _ref("SeriesPoint")},
        },
    },
    "QueryRequest": {
        "type": "object", "required": ["sql"], "additionalProperties": False,
        "properties": {
            "sql": {"type": "string", "minLength": 1, "description": "One SELECT, read-only WITH or EXPLAIN."},
            "params": {"description": "Values bound to $name (object) or ? (array) placeholders.",
                       "oneOf": [{"type": "object", "additionalProperties": {"$ref": "#/components/schemas/Scalar"}},
                                 {"type": "array", "items": {"$ref": "#/components/schemas/Scalar"}}]},
        },
    },
    "Scalar": {"nullable": True, "oneOf": [{"type": "string"}, {"type": "number"}, {"type": "boolean"}]},
    "QueryResult": {
        "type": "object", "required": ["columns", "rows", "truncated", "elapsed_ms"],
        "properties": {
            "columns": {"type": "array", "items": {"type": "string"}},
            "rows": {"type": "array", "items": {"type": "array", "items": {}}},
            "truncated": {"type": "boolean", "description": "True when more than 1000 rows matched."},
            "elapsed_ms": {"type": "number"},
        },
    },
    "Rule": {
        "type": "object", "required": ["name", "kind", "state", "instances"],
        "properties": {
            "name": {"type": "string"}, "kind": {"type": "string", "description": "simple or sql"},
            "expression": {"type": "string"},
            "state": {"type": "string", "description": "firing, pending, resolved, inactive or not evaluated"},
            "severity": {"type": "string", "nullable": True},
            "last_eval": {"type": "string", "format": "date-time", "nullable": True},
            "value": {"type": "number", "nullable": True},
            "instances": {"type": "array", "items": _ref("AlertInstance")},
            "history": {"type": "array", "items": _ref("Event")},
        },
    },
    "AlertInstance": {
        "type": "object", "required": ["rule", "instance", "state", "severity"],
        "properties": {
            "rule": {"type": "string"}, "instance": {"type": "string"},
            "state": {"type": "string", "enum": ["inactive", "pending", "firing", "resolved"]},
            "severity": {"type": "string", "enum": ["info", "warn", "error", "critical"]},
            "labels": {"nullable": True}, "value": {"type": "number", "nullable": True},
            "active_since": {"type": "string", "format": "date-time", "nullable": True},
            "fired_at": {"type": "string", "format": "date-time", "nullable": True},
            "resolved_at": {"type": "string", "format": "date-time", "nullable": True},
            "last_eval": {"type": "string", "format": "date-time"},
            "message": {"type": "string", "nullable": True},
            "duration_seconds": {"type": "number", "nullable": True},
            "delivery": {"type": "object"},
        },
    },
    "Event": {
        "type": "object", "required": ["id", "ts", "kind", "severity", "message"],
        "properties": {
            "id": {"type": "integer"}, "ts": {"type": "string", "format": "date-time"},
            "kind": {"type": "string"}, "severity": {"type": "string"},
            "source": {"type": "string", "nullable": True}, "message": {"type": "string"},
            "payload": {"nullable": True},
        },
    },
    "Collector": {
        "type": "object",
        "required": ["key", "type", "name", "status", "runs", "failures", "skipped_runs", "last_run", "last_error"],
        "properties": {
            "key": {"type": "string"}, "type": {"type": "string"}, "name": {"type": "string"},
            "target": {"type": "string"},
            "status": {"type": "string", "enum": ["waiting", "running", "ok", "failing"]},
            "interval_seconds": {"type": "number"}, "timeout_seconds": {"type": "number"},
            "running": {"type": "boolean"}, "runs": {"type": "integer"}, "failures": {"type": "integer"},
            "skipped_runs": {"type": "integer"},
            "last_run": {"type": "string", "format": "date-time", "nullable": True},
            "last_duration_ms": {"type": "number", "nullable": True},
            "last_error": {"type": "string", "nullable": True},
            "symbols": {"type": "array", "items": {"type": "string"}},
            "config": {"type": "object", "description": "Effective settings; secrets print as <secret>."},
        },
    },
}

RESPONSES = {
    "BadRequest": _json(_ref("Error"), "Invalid parameter or body."),
    "NotFound": _json(_ref("Error"), "No such symbol, rule or route."),
    "MethodNotAllowed": _json(_ref("Error"), "The route does not accept this method."),
}


def _get(summary: str, parameters: list, ok: dict, *errors: str) -> dict:
    responses = {"200": ok, "405": _error("MethodNotAllowed")}
    for name, status in (("BadRequest", "400"), ("NotFound", "404")):
        if name in errors:
            responses[status] = _error(name)
    return {"get": {"summary": summary, "parameters": parameters, "responses": responses}}


def _paths() -> dict:
    metrics_parameters = [
        _query_parameter("symbol", "Exact symbol, or a pattern with * wildcards such as net.http.*.",
                         {"type": "string", "maxLength": 200}),
        _query_parameter("category", "net, crypto, stock, pred or custom.", {"type": "string", "maxLength": 50}),
        _query_parameter("since", f"Oldest sample, inclusive. {TIME_DESCRIPTION}", TIME_PARAMETER),
        _query_parameter("until", f"Newest sample, exclusive. {TIME_DESCRIPTION}", TIME_PARAMETER),
        _query_parameter("limit", "Page size, 1 to 10000; default 1000.", LIMIT_PARAMETER),
        _query_parameter("offset", "Samples to skip, for the next page; default 0.",
                         {"type": "integer", "minimum": 0, "maximum": 1000000}),
    ]
    symbol_parameters = [
        {"name": "symbol", "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}},
        _query_parameter("since", f"Start of the series; default an hour before until. {TIME_DESCRIPTION}",
                         TIME_PARAMETER),
        _query_parameter("until", f"End of the series, exclusive; default now. {TIME_DESCRIPTION}", TIME_PARAMETER),
        _query_parameter("step", "Bucket width such as 30s, 5m or 1h; default a width giving about 400 buckets. "
                                 "At most 10000 buckets.", {"type": "string", "maxLength": 32}),
    ]
    samples_page = {"type": "object", "required": ["samples", "count", "limit", "offset", "next_offset"],
                    "properties": {"samples": {"type": "array", "items": _ref("Sample")},
                                   "count": {"type": "integer"}, "limit": {"type": "integer"},
                                   "offset": {"type": "integer"},
                                   "next_offset": {"type": "integer", "nullable": True}}}
    query_errors = {
        "400": _json(_ref("Error"), "Invalid body, or SQL that is not one read-only SELECT (query_rejected), "
                                    "or that DuckDB cannot run (query_failed)."),
        "401": _json(_ref("Error"), "Missing or invalid token."),
        "403": _json(_ref("Error"), "No token is configured, so the endpoint is disabled."),
        "405": _error("MethodNotAllowed"),
        "413": _json(_ref("Error"), "The body is larger than 64 KiB."),
        "422": _json(_ref("Error"), "The query needs more memory than database.memory_limit allows."),
        "429": _json(_ref("Error"), "More than 10 requests a second from this client; see Retry-After."),
        "503": _json(_ref("Error"), "Two queries are running already; see Retry-After."),
        "504": _json(_ref("Error"), "The query ran longer than 5 s and was stopped."),
    }
    return {
        "/api/metrics": _get("Stored samples, newest first, with filters and pagination.", metrics_parameters,
                             _json(samples_page, "One page of samples."), "BadRequest"),
        "/api/metrics/{symbol}": _get("Latest sample, summary and downsampled series of one symbol.",
                                      symbol_parameters, _json(_ref("SymbolDetail"), "The symbol."),
                                      "BadRequest", "NotFound"),
        "/api/query": {"post": {
            "summary": "Run one read-only SQL query (SELECT, read-only WITH or EXPLAIN) over Oculus's tables.",
            "security": [{"bearer": []}],
            "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("QueryRequest")}}},
            "responses": {"200": _json(_ref("QueryResult"), "At most 1000 rows."), **query_errors},
        }},
        "/api/rules": _get("Every rule with its state, last evaluation and last value.", [],
                           _json({"type": "object", "required": ["rules"],
                                  "properties": {"rules": {"type": "array", "items": _ref("Rule")}}}, "Rules.")),
        "/api/rules/{name}": _get(
            "One rule with its instances and alert history.",
            [{"name": "name", "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}},
             _query_parameter("limit", "History events, 1 to 10000; default 100.", LIMIT_PARAMETER)],
            _json(_ref("Rule"), "The rule."), "BadRequest", "NotFound"),
        "/api/alerts": _get(
            "Alert instances and recent alert events.",
            [_query_parameter("state", "active (firing or pending, the default), firing, pending, resolved, "
                                       "inactive or all.", {"type": "string", "enum": list(ALERT_STATES)}),
             _query_parameter("limit", "Alerts and events, 1 to 10000; default 100.", LIMIT_PARAMETER)],
            _json({"type": "object", "required": ["alerts", "events"],
                   "properties": {"alerts": {"type": "array", "items": _ref("AlertInstance")},
                                  "events": {"type": "array", "items": _ref("Event")}}}, "Alerts."),
            "BadRequest"),
        "/api/collectors": _get("Every configured collector with its run statistics and effective config.", [],
                                _json({"type": "object", "required": ["collectors"],
                                       "properties": {"collectors": {"type": "array", "items": _ref("Collector")}}},
                                      "Collectors.")),
        "/api/openapi.json": _get("This document.", [], _json({"type": "object"}, "OpenAPI 3.0 document.")),
        **_transfer_paths(),
    }


def _transfer_paths() -> dict:
    binary = {"type": "string", "format": "binary"}
    errors = {
        "401": _json(_ref("Error"), "Missing or invalid token."),
        "403": _json(_ref("Error"), "No token is configured, so the endpoint is disabled."),
        "405": _error("MethodNotAllowed"),
        "429": _json(_ref("Error"), "More than 5 export or backup requests in a row, then 1 a second, from this "
                                    "client; see Retry-After."),
        "503": _json(_ref("Error"), "Two exports or backups are running already, or the writer did not take the "
                                    "backup request within 30 s; see Retry-After."),
    }
    export_parameters = [
        _query_parameter("since", f"Oldest row, inclusive; default the oldest stored. {TIME_DESCRIPTION}",
                         TIME_PARAMETER),
        _query_parameter("until", f"Newest row, exclusive; default now. {TIME_DESCRIPTION}", TIME_PARAMETER),
        _query_parameter("symbol", "Exact symbol, or a pattern with * wildcards; repeat it or separate symbols with "
                                   "commas. Default every symbol.", {"type": "string", "maxLength": 200}),
        _query_parameter("format", "parquet (default, zstd-compressed) or csv with a header row.",
                         {"type": "string", "enum": ["parquet", "csv"]}),
        _query_parameter("resolution", "raw samples (default), or 1m or 1h rollups.",
                         {"type": "string", "enum": ["raw", "1m", "1h"]}),
    ]
    return {
        "/api/export": {"get": {
            "summary": "Stored history as a Parquet or CSV file, in time order.",
            "security": [{"bearer": []}],
            "parameters": export_parameters,
            "responses": {"200": {"description": "The file; the X-Oculus-Rows header gives its row count.",
                                  "content": {"application/vnd.apache.parquet": {"schema": binary},
                                              "text/csv": {"schema": binary}}},
                          "400": _error("BadRequest"), **errors},
        }},
        "/api/backup": {"post": {
            "summary": "A consistent copy of the whole database as a DuckDB file, made while Oculus runs.",
            "security": [{"bearer": []}],
            "responses": {"200": {"description": "The DuckDB file.",
                                  "content": {"application/octet-stream": {"schema": binary}}},
                          **errors},
        }},
    }


def openapi_document() -> dict:
    return {
        "openapi": "3.0.3",
        "info": {"title": "Oculus API", "version": __version__,
                 "description": "JSON API of Oculus. Every error has the body "
                                '{"error": {"code": "...", "message": "..."}}. Times are ISO 8601 UTC.'},
        "paths": _paths(),
        "components": {
            "schemas": SCHEMAS,
            "responses": RESPONSES,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "server.api_token or OCULUS_API_TOKEN."}},
        },
    }
