"""Outside tools judge Oculus's output: promtool checks /metrics, schemathesis fuzzes the OpenAPI routes."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import content_type_conformance, not_a_server_error, status_code_conformance
from schemathesis.specs.openapi.checks import response_schema_conformance

from oculus.web.openapi import openapi_document
from oculus.web.ratelimit import TokenBuckets
from tests.servers import http_get
from tests.test_web import start_runtime
from tests.web_support import seed_showcase

TOKEN = "fuzz-token"
PROMTOOL = shutil.which("promtool")
# Examples per operation; the eight operations take about 15 s at this count on a two-core machine.
FUZZ_EXAMPLES = 150


@pytest.fixture(scope="module")
def runtime(tmp_path_factory):
    from tests.servers import ProbeTargetServer

    target = ProbeTargetServer().start()
    collectors = [{"type": "http", "name": "shop", "url": f"{target.url}/ok", "interval": "1s", "timeout": "2s",
                   "tags": {"team": "web"}}]
    runtime = start_runtime(tmp_path_factory.mktemp("conformance"), collectors, server={"api_token": TOKEN})
    seed_showcase(runtime.writer)
    # The fuzzer sends far more than 10 queries a second; the rate limit has its own tests.
    runtime.web.app.config["oculus.query_endpoint"].buckets = TokenBuckets(rate=10_000.0, burst=10_000)
    yield runtime
    runtime.stop()
    target.stop()


@pytest.mark.skipif(PROMTOOL is None, reason="promtool is missing; install Debian's prometheus package to run this")
def test_promtool_accepts_exposition(runtime):
    text = http_get(runtime.web.url + "/metrics").text
    assert "oculus_symbol_value{" in text, "the exposition has no symbol gauges to check"

    result = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)

    assert result.returncode == 0, f"promtool rejected /metrics:\n{result.stdout}{result.stderr}"


schema = schemathesis.openapi.from_dict(openapi_document())


@schema.parametrize()
@settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=[
    HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.function_scoped_fixture])
def test_api_fuzz_no_server_errors(case, runtime):
    case.call_and_validate(
        base_url=runtime.web.url,
        headers={"Authorization": f"Bearer {TOKEN}"},
        checks=[not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance],
        timeout=10,
    )
