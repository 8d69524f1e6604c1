"""Shared fixtures: real loopback servers and temporary DuckDB files."""

from __future__ import annotations

import pytest

from tests.servers import ProbeTargetServer, closed_port, listening_socket


@pytest.fixture
def http_target():
    server = ProbeTargetServer().start()
    yield server
    server.stop()


@pytest.fixture
def open_port():
    sock = listening_socket()
    yield sock.getsockname()[1]
    sock.close()


@pytest.fixture
def refused_port():
    return closed_port()


@pytest.fixture
def db_path(tmp_path):
    return str(tmp_path / "oculus.duckdb")


@pytest.fixture
def fixture_api():
    """A loopback server replaying tests/fixtures/apis; call .use(...) to pick scenarios."""
    from tests.fixture_api import FixtureServer

    server = FixtureServer().start()
    yield server
    server.stop()
