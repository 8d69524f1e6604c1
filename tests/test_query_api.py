"""POST /api/query over HTTP on a real Runtime: token, SQL guard, limits, rate limit and response shape."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from oculus.web.query import QueryLimits
from oculus.web.ratelimit import TokenBuckets
from tests.servers import http_get, http_request
from tests.test_web import assert_error_shape, start_runtime
from tests.web_support import SHOWCASE, seed_showcase

TOKEN = "test-token-3f9a"
SLOW_SQL = "SELECT count(*) FROM range(10000000000000) a, range(1000) b"


def strict_json(text: str):
    """Parse JSON the way browsers do: NaN and Infinity are invalid."""
    def reject(name):
        raise ValueError(f"invalid JSON constant {name}")
    return json.loads(text, parse_constant=reject)


def post_query(url: str, payload, token: str | None = TOKEN, headers: dict | None = None):
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    if token is not None:
        all_headers["Authorization"] = f"Bearer {token}"
    return http_request(f"{url}/api/query", method="POST", body=body, headers=all_headers)


@pytest.fixture(scope="module")
def query_runtime(tmp_path_factory):
    directory = tmp_path_factory.mktemp("query")
    runtime = start_runtime(directory, server={"api_token": TOKEN})
    seed_showcase(runtime.writer)
    yield runtime
    runtime.stop()


@pytest.fixture
def endpoint(query_runtime):
    """The runtime's query endpoint with a rate limit high enough for the test; restored afterwards."""
    endpoint = query_runtime.web.app.config["oculus.query_endpoint"]
    original = endpoint.buckets, endpoint.limits
    endpoint.buckets = TokenBuckets(rate=1000.0, burst=1000)
    yield endpoint
    endpoint.buckets, endpoint.limits = original


@pytest.fixture
def url(query_runtime, endpoint):
    return query_runtime.web.url


# -- results ------------------------------------------------------------------


def test_query_returns_columns_and_rows(url):
    response = post_query(url, {"sql": "SELECT symbol, value FROM latest WHERE symbol = 'crypto.price.btc_usd'"})
    assert response.status == 200, response.text
    body = strict_json(response.text)
    assert set(body) == {"columns", "rows", "truncated", "elapsed_ms"}
    assert body["columns"] == ["symbol", "value"]
    assert len(body["rows"]) == 1
    assert body["rows"][0][0] == "crypto.price.btc_usd"
    assert body["truncated"] is False
    assert body["elapsed_ms"] >= 0


def test_query_binds_named_params(url):
    response = post_query(url, {"sql": "SELECT count(*) FROM metrics WHERE symbol = $symbol",
                                "params": {"symbol": "stock.price.aapl"}})
    assert response.status == 200, response.text
    assert strict_json(response.text)["rows"][0][0] > 0


def test_query_binds_positional_params(url):
    response = post_query(url, {"sql": "SELECT ? + ?", "params": [2, 3]})
    assert strict_json(response.text)["rows"] == [[5]]


def test_query_param_never_pasted(url):
    response = post_query(url, {"sql": "SELECT count(*) FROM metrics WHERE symbol = $s",
                                "params": {"s": "x' OR '1'='1"}})
    assert strict_json(response.text)["rows"] == [[0]]


def test_query_timestamps_iso_utc(url):
    response = post_query(url, {"sql": "SELECT TIMESTAMP '2026-01-31 12:00:00' AS ts"})
    assert strict_json(response.text)["rows"] == [["2026-01-31T12:00:00.000Z"]]


@pytest.mark.parametrize("expression", ["'nan'::DOUBLE", "'inf'::DOUBLE", "'-inf'::DOUBLE",
                                        "[1.0, 'nan'::DOUBLE]", "{'a': 'inf'::DOUBLE}"])
def test_query_non_finite_is_null(url, expression):
    response = post_query(url, {"sql": f"SELECT {expression} AS v"})
    assert response.status == 200, response.text
    body = strict_json(response.text)
    assert "NaN" not in response.text
    assert "Infinity" not in response.text
    assert body["rows"][0][0] in (None, [1.0, None], {"a": None})


@pytest.mark.parametrize("expression, expected", [
    ("1.5::DECIMAL(4, 2)", 1.5),
    ("DATE '2026-02-01'", "2026-02-01"),
    ("INTERVAL 90 SECOND", 90.0),
    ("'\\x41'::BLOB", "QQ=="),
    ("'{\"a\": 1}'::JSON", '{"a": 1}'),
    ("MAP {1: 'x'}", {"1": "x"}),
])
def test_query_converts_types(url, expression, expected):
    response = post_query(url, {"sql": f"SELECT {expression} AS v"})
    assert response.status == 200, response.text
    assert strict_json(response.text)["rows"][0][0] == expected


def test_query_explain_allowed(url):
    response = post_query(url, {"sql": "EXPLAIN SELECT * FROM metrics"})
    assert response.status == 200, response.text


def test_query_cte_allowed(url):
    response = post_query(url, {"sql": "WITH s AS (SELECT DISTINCT symbol FROM latest) SELECT count(*) FROM s"})
    assert strict_json(response.text)["rows"] == [[len(SHOWCASE) + 1]]


# -- row cap and timeout ------------------------------------------------------


def test_query_row_cap_default_1000(url):
    response = post_query(url, {"sql": "SELECT * FROM range(5000)"})
    body = strict_json(response.text)
    assert len(body["rows"]) == 1000
    assert body["truncated"] is True


def test_query_exactly_cap_not_truncated(url):
    body = strict_json(post_query(url, {"sql": "SELECT * FROM range(1000)"}).text)
    assert len(body["rows"]) == 1000
    assert body["truncated"] is False


def test_query_default_limits():
    limits = QueryLimits()
    assert limits.timeout == 5.0
    assert limits.max_rows == 1000
    assert (limits.rate, limits.burst) == (10.0, 20)


def test_query_timeout_504_and_interrupted(url, endpoint):
    endpoint.limits = QueryLimits(timeout=0.5)
    started = time.monotonic()
    response = post_query(url, {"sql": SLOW_SQL})
    elapsed = time.monotonic() - started

    assert_error_shape(response, 504, "query_timeout")
    assert elapsed < 3.0, f"the query was not interrupted: {elapsed:.1f} s"
    assert http_get(f"{url}/metrics").text.count("oculus_queries_active 0.0") == 1


def test_query_usable_after_timeout(url, endpoint):
    endpoint.limits = QueryLimits(timeout=0.3)
    assert post_query(url, {"sql": SLOW_SQL}).status == 504
    assert post_query(url, {"sql": "SELECT 1"}).status == 200


def test_query_busy_503_when_slots_taken(url, endpoint):
    endpoint.limits = QueryLimits(timeout=2.0, max_concurrent=1, slot_wait=0.2)
    endpoint._slots = threading.BoundedSemaphore(1)
    slow = threading.Thread(target=post_query, args=(url, {"sql": SLOW_SQL}))
    slow.start()
    try:
        time.sleep(0.3)
        response = post_query(url, {"sql": "SELECT 1"})
    finally:
        slow.join(10)
        endpoint._slots = threading.BoundedSemaphore(QueryLimits().max_concurrent)
    assert_error_shape(response, 503, "busy")
    assert response.headers["retry-after"] == "1"


def test_query_waits_for_free_slot(url, endpoint):
    endpoint.limits = QueryLimits(max_concurrent=1, slot_wait=5.0)
    endpoint._slots = threading.BoundedSemaphore(1)
    try:
        results = []
        threads = [threading.Thread(target=lambda: results.append(post_query(url, {"sql": "SELECT 1"}).status))
                   for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
    finally:
        endpoint._slots = threading.BoundedSemaphore(QueryLimits().max_concurrent)
    assert results == [200] * 4


# -- rejected SQL ---------------------------------------------------------------

REJECTED_SQL = [
    ("SELECT * FROM read_csv('/etc/passwd')", "read_csv() is not allowed"),
    ("SELECT * FROM read_csv_auto('/etc/passwd')", "read_csv_auto() is not allowed"),
    ("SELECT * FROM read_text('/etc/passwd')", "read_text() is not allowed"),
    ("SELECT * FROM read_blob('/etc/passwd')", "read_blob() is not allowed"),
    ("SELECT * FROM read_json('/etc/passwd')", "read_json() is not allowed"),
    ("SELECT * FROM read_parquet('/tmp/x.parquet')", "read_parquet() is not allowed"),
    ("SELECT * FROM '/etc/passwd'", 'reading "/etc/passwd" is not allowed'),
    ("SELECT * FROM glob('/etc/*')", "glob() is not allowed"),
    ("SELECT * FROM metrics WHERE symbol IN (SELECT content FROM read_text('/etc/passwd'))", "read_text()"),
    ("SELECT getenv('HOME')", "getenv() is not allowed"),
    ("SELECT current_setting('enable_external_access')", "current_setting() is not allowed"),
    ("SELECT * FROM duckdb_settings()", "duckdb_settings() is not allowed"),
    ("SELECT * FROM information_schema.tables", 'reading "tables" is not allowed'),
    ("COPY metrics TO '/tmp/oculus-copy-test.csv'", "got COPY"),
    ("COPY samples FROM '/etc/passwd'", "got COPY"),
    ("EXPORT DATABASE '/tmp/oculus-export-test'", "only SELECT queries are allowed"),
    ("ATTACH '/tmp/oculus-attach-test.duckdb' AS other", "got ATTACH"),
    ("DETACH other", "only SELECT queries are allowed"),
    ("INSTALL httpfs", "only SELECT queries are allowed"),
    ("LOAD httpfs", "only SELECT queries are allowed"),
    ("SET enable_external_access = true", "got SET"),
    ("RESET enable_external_access", "only SELECT queries are allowed"),
    ("PRAGMA version", "got PRAGMA"),
    ("CALL pragma_version()", "only SELECT queries are allowed"),
    ("CHECKPOINT", "only SELECT queries are allowed"),
    ("USE memory", "only SELECT queries are allowed"),
    ("CREATE TABLE stolen AS SELECT * FROM metrics", "got CREATE"),
    ("INSERT INTO events (ts, kind, severity, message) VALUES (now(), 'x', 'info', 'x')", "got INSERT"),
    ("UPDATE latest SET value = 0", "got UPDATE"),
    ("DELETE FROM samples", "got DELETE"),
    ("DROP TABLE samples", "got DROP"),
    ("SELECT 1; SELECT 2", "send exactly one statement, got 2"),
    ("SET enable_external_access = true; SELECT * FROM read_text('/etc/passwd')", "send exactly one statement"),
    ("EXPLAIN ANALYZE SELECT 1", "EXPLAIN ANALYZE runs the query"),
]


@pytest.mark.parametrize("sql, reason", REJECTED_SQL)
def test_query_rejects_unsafe_sql(url, sql, reason):
    response = post_query(url, {"sql": sql})
    assert_error_shape(response, 400, "query_rejected", sql)
    assert reason in response.json()["error"]["message"]


def test_query_rejected_copy_writes_nothing(url):
    target = Path("/tmp/oculus-copy-test.csv")
    target.unlink(missing_ok=True)
    post_query(url, {"sql": f"COPY metrics TO '{target}'"})
    assert not target.exists()


def test_query_rejected_delete_keeps_rows(url):
    before = strict_json(post_query(url, {"sql": "SELECT count(*) FROM samples"}).text)["rows"]
    post_query(url, {"sql": "SELECT 1; DELETE FROM samples"})
    assert strict_json(post_query(url, {"sql": "SELECT count(*) FROM samples"}).text)["rows"] == before


@pytest.mark.parametrize("payload, code", [
    ({"sql": "SELECT 1", "enable_external_access": True}, "invalid_body"),
    ({"sql": "SELECT 1", "params": "SET enable_external_access = true"}, "invalid_body"),
    ({"sql": "SELECT $x", "params": {"x": {"nested": "SET x"}}}, "invalid_body"),
    ({"sql": "SELECT * FROM read_text($path)", "params": {"path": "/etc/passwd"}}, "query_rejected"),
])
def test_query_request_cannot_disable_guard(url, payload, code):
    assert_error_shape(post_query(url, payload), 400, code, json.dumps(payload))


def test_query_syntax_error_400(url):
    response = post_query(url, {"sql": "SELEC 1"})
    assert_error_shape(response, 400, "query_failed")


def test_query_unknown_column_400(url):
    response = post_query(url, {"sql": "SELECT no_such_column FROM metrics"})
    assert_error_shape(response, 400, "query_failed")
    assert "no_such_column" in response.json()["error"]["message"]


def test_query_out_of_memory_422(url):
    # A list of 100 million integers needs about 800 MB, more than the default limit of 256 MiB.
    response = post_query(url, {"sql": "SELECT len(list(range)) FROM range(100000000)"})

    assert_error_shape(response, 422, "query_out_of_memory")
    message = response.json()["error"]["message"]
    assert "Out of Memory Error" in message
    assert "raise database.memory_limit" in message
    assert "SET " not in message, "DuckDB's hints name statements the guard rejects"
    assert post_query(url, {"sql": "SELECT 1 AS one"}).status == 200, "the endpoint must stay usable"


# -- request body ---------------------------------------------------------------


@pytest.mark.parametrize("body", [b"", b"not json", b"[1, 2]", b'"SELECT 1"', b'{"sql": 1}', b'{"sql": "  "}',
                                  b'{"params": {}}', b'{"sql": "SELECT ?", "params": [NaN]}', b"\xff\xfe",
                                  b'{"sql": "SELECT ?", "params": [99999999999999999999999]}'])
def test_query_invalid_body_400(url, body):
    assert_error_shape(post_query(url, body), 400, "invalid_body", repr(body))


def test_query_body_too_large_413(url):
    payload = {"sql": "SELECT 1 -- " + "x" * (64 * 1024)}
    assert_error_shape(post_query(url, payload), 413, "payload_too_large")


# -- token --------------------------------------------------------------------


@pytest.mark.parametrize("headers", [
    {},
    {"Authorization": "Bearer wrong-token"},
    {"Authorization": f"Bearer {TOKEN}x"},
    {"Authorization": f"Basic {TOKEN}"},
    {"Authorization": "Bearer "},
    {"Authorization": TOKEN},
])
def test_query_wrong_token_401(url, headers):
    response = post_query(url, {"sql": "SELECT 1"}, token=None, headers=headers)
    assert_error_shape(response, 401, "unauthorized", str(headers))
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_query_token_scheme_case_insensitive(url):
    response = post_query(url, {"sql": "SELECT 1"}, token=None, headers={"Authorization": f"bearer {TOKEN}"})
    assert response.status == 200, response.text


def test_query_disabled_without_token(tmp_path):
    runtime = start_runtime(tmp_path)
    try:
        response = post_query(runtime.web.url, {"sql": "SELECT 1"})
    finally:
        runtime.stop()
    assert_error_shape(response, 403, "query_disabled")
    assert "OCULUS_API_TOKEN" in response.json()["error"]["message"]


def test_query_token_from_environment(tmp_path):
    runtime = start_runtime(tmp_path, env={"OCULUS_API_TOKEN": "from-env"})
    try:
        accepted = post_query(runtime.web.url, {"sql": "SELECT 1"}, token="from-env")
        rejected = post_query(runtime.web.url, {"sql": "SELECT 1"})
    finally:
        runtime.stop()
    assert accepted.status == 200, accepted.text
    assert rejected.status == 401


# -- rate limit ---------------------------------------------------------------


def test_query_rate_limit_429(query_runtime):
    endpoint = query_runtime.web.app.config["oculus.query_endpoint"]
    original = endpoint.buckets
    endpoint.buckets = TokenBuckets(rate=10.0, burst=20)
    try:
        responses = [post_query(query_runtime.web.url, {"sql": "SELECT 1"}) for _ in range(30)]
    finally:
        endpoint.buckets = original

    statuses = [response.status for response in responses]
    assert statuses[:20] == [200] * 20, statuses
    limited = [response for response in responses if response.status == 429]
    assert limited, f"no 429 among {statuses}"
    assert_error_shape(limited[0], 429, "rate_limited")
    assert int(limited[0].headers["retry-after"]) >= 1


def test_query_rate_limit_counts_bad_tokens(query_runtime):
    endpoint = query_runtime.web.app.config["oculus.query_endpoint"]
    original = endpoint.buckets
    endpoint.buckets = TokenBuckets(rate=0.01, burst=3)
    try:
        statuses = [post_query(query_runtime.web.url, {"sql": "SELECT 1"}, token="guess").status for _ in range(5)]
    finally:
        endpoint.buckets = original
    assert statuses == [401, 401, 401, 429, 429]


def test_token_bucket_refills():
    now = [0.0]
    buckets = TokenBuckets(rate=10.0, burst=2, clock=lambda: now[0])
    assert buckets.acquire("a") == 0
    assert buckets.acquire("a") == 0
    assert buckets.acquire("a") == pytest.approx(0.1)
    assert buckets.acquire("b") == 0
    now[0] = 0.1
    assert buckets.acquire("a") == 0


def test_token_bucket_forgets_idle_clients():
    now = [0.0]
    buckets = TokenBuckets(rate=1.0, burst=1, max_clients=2, clock=lambda: now[0])
    for client in ("a", "b", "c"):
        buckets.acquire(client)
    now[0] = 5.0
    buckets.acquire("d")
    assert len(buckets._buckets) <= 2


# -- metrics of the endpoint ----------------------------------------------------


def test_query_latency_in_exposition(url):
    post_query(url, {"sql": "SELECT 1"})
    text = http_get(f"{url}/metrics").text
    assert 'oculus_query_duration_seconds_count{outcome="ok"}' in text
    assert "oculus_queries_active 0.0" in text
