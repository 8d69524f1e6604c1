"""Backups and exports: GET /api/export, POST /api/backup and the backup and export commands, on real DuckDB files."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote

import duckdb
import pytest

from oculus import cli
from oculus.storage import Database, utc_now
from oculus.storage.transfer import ExportSelection, export_query
from oculus.storage.writer import Writer
from oculus.web import client
from oculus.web.ratelimit import TokenBuckets
from tests.servers import OculusProcess, ProbeTargetServer, free_port, http_get, http_request, oculus_command, wait_for
from tests.test_web import sample, seed, start_runtime

TOKEN = "transfer-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
RAW = "ts, category, symbol, value, success, duration_ms, tags::VARCHAR AS tags"


def varied_samples(now, count: int = 200) -> list:
    """Samples of three symbols over `count` minutes: NULL values, failures, tags with nested values."""
    rows = []
    for index in range(count):
        ts = now - timedelta(minutes=count - index, microseconds=index)
        rows.append(sample("net.http.api.rtt_ms", ts, 10.0 + index % 7))
        rows.append(sample("net.http.api.status", ts, None if index % 10 == 0 else 200.0, success=index % 10 != 0,
                           tags={"error": "timed out after 5 s"} if index % 10 == 0 else {"code": 200}))
        rows.append(sample("crypto.price.btc_usd", ts, 97_000.5 + index, tags={"source": "coingecko",
                                                                              "nested": {"a": [1, 2]}}))
    return rows


def source_rows(path, sql: str, params=None) -> list[tuple]:
    with duckdb.connect(str(path), read_only=True) as connection:
        return connection.execute(sql, params or []).fetchall()


@pytest.fixture(scope="module")
def runtime(tmp_path_factory):
    runtime = start_runtime(tmp_path_factory.mktemp("transfer"), server={"api_token": TOKEN})
    seed(runtime, varied_samples(utc_now()))
    # These tests send more than the limit of a few requests in a row; test_transfer_rate_limited checks it.
    runtime.web.app.config["oculus.transfer_endpoints"].buckets = TokenBuckets(rate=1000.0, burst=1000)
    yield runtime
    runtime.stop()


def export(runtime, query: str, tmp_path, name: str = "export.bin"):
    """GET /api/export?`query` with the token; return the response and the path its body was saved to."""
    response = http_request(f"{runtime.web.url}/api/export?{query}", headers=AUTH, timeout=30.0)
    path = tmp_path / name
    path.write_bytes(response.body)
    return response, path


def live_rows(runtime, sql: str, params=None) -> list[tuple]:
    cursor = runtime.database.new_cursor()
    try:
        return cursor.execute(sql, params or []).fetchall()
    finally:
        cursor.close()


# -- GET /api/export -----------------------------------------------------------------


def test_export_parquet_equals_source_rows(runtime, tmp_path):
    response, path = export(runtime, "format=parquet", tmp_path, "export.parquet")

    assert response.status == 200, response.text
    assert response.headers["content-type"] == "application/vnd.apache.parquet"
    exported = duckdb.sql(f"SELECT {RAW} FROM read_parquet('{path}')").fetchall()
    expected = live_rows(runtime, f"SELECT {RAW} FROM samples ORDER BY ts, symbol")
    assert len(expected) == 600
    assert exported == expected
    assert response.headers["x-oculus-rows"] == "600"


def test_export_csv_equals_source_rows(runtime, tmp_path):
    response, path = export(runtime, "format=csv&symbol=net.http.api.status", tmp_path, "export.csv")

    assert response.status == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    exported = duckdb.sql(f"SELECT {RAW} FROM read_csv('{path}', header = true, types = "
                          "{'ts': 'TIMESTAMP', 'tags': 'VARCHAR'})").fetchall()
    expected = live_rows(runtime, f"SELECT {RAW} FROM samples WHERE symbol = 'net.http.api.status' ORDER BY ts")
    assert exported == expected


@pytest.mark.parametrize("symbols, expected", [
    ("symbol=net.http.api.rtt_ms", {"net.http.api.rtt_ms"}),
    ("symbol=net.http.*", {"net.http.api.rtt_ms", "net.http.api.status"}),
    ("symbol=crypto.price.btc_usd,net.http.api.status", {"crypto.price.btc_usd", "net.http.api.status"}),
    ("symbol=crypto.price.btc_usd&symbol=net.http.api.rtt_ms", {"crypto.price.btc_usd", "net.http.api.rtt_ms"}),
    ("symbol=net_http*", set()),
], ids=["exact", "wildcard", "comma-list", "repeated", "underscore-is-literal"])
def test_export_symbol_filter(runtime, tmp_path, symbols, expected):
    response, path = export(runtime, f"format=parquet&{symbols}", tmp_path)
    assert response.status == 200, response.text
    assert {row[0] for row in duckdb.sql(f"SELECT DISTINCT symbol FROM read_parquet('{path}')").fetchall()} == expected


def test_export_time_range(runtime, tmp_path):
    until = utc_now() - timedelta(minutes=100)
    since = until - timedelta(minutes=30)
    query = f"since={since.isoformat()}Z&until={until.isoformat()}Z&symbol=net.http.api.rtt_ms"
    response, path = export(runtime, query, tmp_path)

    timestamps = [row[0] for row in duckdb.sql(f"SELECT ts FROM read_parquet('{path}')").fetchall()]
    assert response.status == 200, response.text
    assert len(timestamps) == 30
    assert all(since <= ts < until for ts in timestamps)


def test_export_rollups_match_view(runtime, tmp_path):
    response, path = export(runtime, "resolution=1h&format=parquet", tmp_path)

    assert response.status == 200, response.text
    columns = "ts, category, symbol, avg, min, max, last, count, failures"
    exported = duckdb.sql(f"SELECT {columns} FROM read_parquet('{path}')").fetchall()
    assert exported == live_rows(runtime, f"SELECT {columns} FROM metrics_1h ORDER BY ts, symbol")
    assert sum(row[7] for row in exported) == 600


@pytest.mark.parametrize("query, code", [
    ("format=xml", "invalid_parameter"),
    ("resolution=5m", "invalid_parameter"),
    ("since=yesterday", "invalid_parameter"),
    ("since=1h&until=2h", "invalid_parameter"),
])
def test_export_rejects_invalid_parameter(runtime, query, code):
    response = http_request(f"{runtime.web.url}/api/export?{query}", headers=AUTH)
    assert response.status == 400
    assert response.json()["error"]["code"] == code


@pytest.mark.parametrize("method, path", [("GET", "/api/export"), ("POST", "/api/backup")])
@pytest.mark.parametrize("headers, status", [
    ({}, 401),
    ({"Authorization": "Bearer wrong"}, 401),
    ({"Authorization": f"Basic {TOKEN}"}, 401),
], ids=["missing", "wrong", "not-bearer"])
def test_transfer_routes_require_token(runtime, method, path, headers, status):
    response = http_request(runtime.web.url + path, method=method, headers=headers)
    assert response.status == status
    assert response.json()["error"]["code"] == "unauthorized"


def test_transfer_rate_limited(runtime):
    endpoints = runtime.web.app.config["oculus.transfer_endpoints"]
    permissive, endpoints.buckets = endpoints.buckets, TokenBuckets(rate=0.01, burst=1)
    try:
        statuses = [http_request(f"{runtime.web.url}/api/export?format=xml", headers=AUTH) for _ in range(2)]
    finally:
        endpoints.buckets = permissive
    assert statuses[0].status == 400
    assert statuses[1].status == 429
    assert int(statuses[1].headers["retry-after"]) >= 1


def test_export_query_binds_every_value():
    selection = ExportSelection(since=utc_now(), symbols=("x'; DROP TABLE samples; --", "net.*"))
    sql, params = export_query(selection)
    assert "DROP" not in sql
    assert params["symbols"] == ["x'; DROP TABLE samples; --"]
    assert params["pattern0"] == "net.%"


def test_export_sql_guard_unchanged():
    from oculus.storage.sqlguard import ALLOWED_TABLE_FUNCTIONS

    assert "read_parquet" not in ALLOWED_TABLE_FUNCTIONS
    assert "copy" not in ALLOWED_TABLE_FUNCTIONS


# -- POST /api/backup, in process --------------------------------------------------------


def test_backup_route_returns_database(runtime, tmp_path):
    response = http_request(f"{runtime.web.url}/api/backup", method="POST", headers=AUTH, timeout=30.0)
    path = tmp_path / "backup.duckdb"
    path.write_bytes(response.body)

    assert response.status == 200, response.text
    assert response.headers["content-disposition"].startswith('attachment; filename="oculus-')
    assert source_rows(path, f"SELECT {RAW} FROM samples ORDER BY ts, symbol") == \
        live_rows(runtime, f"SELECT {RAW} FROM samples ORDER BY ts, symbol")
    assert source_rows(path, "SELECT count(*) FROM rollups_1m")[0][0] > 0
    leftovers = [name for name in os.listdir(os.path.dirname(runtime.database.path)) if name.startswith(".oculus-")]
    assert leftovers == [], "temporary files were left next to the database"


def test_backup_disabled_without_token(tmp_path):
    runtime = start_runtime(tmp_path)
    try:
        response = http_request(f"{runtime.web.url}/api/backup", method="POST", headers=AUTH)
    finally:
        runtime.stop()
    assert response.status == 403
    assert response.json()["error"]["code"] == "backup_disabled"


def test_backup_snapshot_excludes_later_rows(runtime):
    from oculus.storage.transfer import copy_snapshot, snapshot_from_writer

    before = live_rows(runtime, "SELECT count(*) FROM samples")[0][0]
    cursor = snapshot_from_writer(runtime.writer, timeout=10.0)
    seed(runtime, [sample("net.tcp.late.rtt_ms", utc_now(), 1.0)])
    target = os.path.join(os.path.dirname(runtime.database.path), "snapshot.duckdb")
    try:
        copy_snapshot(cursor, target)
    finally:
        cursor.close()

    assert source_rows(target, "SELECT count(*) FROM samples")[0][0] == before
    assert live_rows(runtime, "SELECT count(*) FROM samples")[0][0] == before + 1


# -- commands on a file no process has open ----------------------------------------------


@pytest.fixture
def stored_file(tmp_path):
    path = tmp_path / "oculus.duckdb"
    database = Database(str(path))
    database.open()
    writer = Writer(database, 1000, 5000, 0.05)
    writer.start()
    writer.put(varied_samples(utc_now()))
    writer.stop(10.0)
    database.close()
    return path


def test_backup_command_copies_file(stored_file, tmp_path, capsys):
    destination = tmp_path / "copy.duckdb"

    status = cli.main(["backup", "--db-path", str(stored_file), str(destination)])

    assert status == 0, capsys.readouterr().err
    assert source_rows(destination, f"SELECT {RAW} FROM samples ORDER BY ts, symbol") == \
        source_rows(stored_file, f"SELECT {RAW} FROM samples ORDER BY ts, symbol")
    assert f"wrote {destination}" in capsys.readouterr().out


def test_backup_command_rejects_existing_dest(stored_file, tmp_path, capsys):
    destination = tmp_path / "copy.duckdb"
    destination.write_bytes(b"keep me")

    assert cli.main(["backup", "--db-path", str(stored_file), str(destination)]) == 2
    assert "exists already" in capsys.readouterr().err
    assert destination.read_bytes() == b"keep me"


def test_backup_command_missing_database(tmp_path, capsys):
    status = cli.main(["backup", "--db-path", str(tmp_path / "absent.duckdb"), str(tmp_path / "copy.duckdb")])
    assert status == 1
    assert "no database at" in capsys.readouterr().err
    assert not (tmp_path / "copy.duckdb").exists()


@pytest.mark.parametrize("file_format, reader", [("parquet", "read_parquet('{path}')"),
                                                 ("csv", "read_csv('{path}', header = true, types = "
                                                         "{{'ts': 'TIMESTAMP', 'tags': 'VARCHAR'}})")])
def test_export_command_equals_source(stored_file, tmp_path, capsys, file_format, reader):
    destination = tmp_path / f"export.{file_format}"

    status = cli.main(["export", "--db-path", str(stored_file), "--format", file_format, "--since", "1d",
                       "--symbol", "net.http.*", str(destination)])

    assert status == 0, capsys.readouterr().err
    exported = duckdb.sql(f"SELECT {RAW} FROM {reader.format(path=destination)}").fetchall()
    assert exported == source_rows(stored_file, f"SELECT {RAW} FROM samples WHERE symbol LIKE 'net.http.%' "
                                                "ORDER BY ts, symbol")
    assert "400 rows" in capsys.readouterr().out


def test_export_command_invalid_since(stored_file, tmp_path, capsys):
    status = cli.main(["export", "--db-path", str(stored_file), "--since", "last week", str(tmp_path / "x.parquet")])
    assert status == 2
    assert '--since: expected an ISO 8601 time' in capsys.readouterr().err


# -- a running Oculus process, ingesting ---------------------------------------------------


@pytest.fixture(scope="module")
def ingesting(tmp_path_factory, http_target_module):
    """An Oculus process with twenty TCP collectors every 100 ms, so the writer inserts while a backup runs."""
    directory = tmp_path_factory.mktemp("ingesting")
    port = http_target_module.server_address[1]
    collectors = "".join(f"  - type: tcp\n    name: t{index}\n    host: 127.0.0.1\n    port: {port}\n"
                         f"    interval: 100ms\n    timeout: 1s\n" for index in range(20))
    config = directory / "oculus.yaml"
    config.write_text(f"runtime:\n  flush_interval: 100ms\ncollectors:\n{collectors}", encoding="utf-8")
    env = {key: value for key, value in os.environ.items() if not key.startswith("OCULUS_")}
    env["OCULUS_API_TOKEN"] = TOKEN
    oculus_port = free_port()
    oculus = OculusProcess(oculus_command(config, oculus_port, directory / "oculus.duckdb"), directory, oculus_port,
                           env=env).start(timeout=20.0)
    try:
        yield oculus, config, env
    finally:
        oculus.kill()


@pytest.fixture(scope="module")
def http_target_module():
    server = ProbeTargetServer().start()
    yield server
    server.stop()


def acknowledged(oculus) -> set[tuple[str, str]]:
    """Return (symbol, ts) of every sample the running Oculus returns from its API, which only shows committed rows."""
    keys = set()
    for index in range(20):
        symbol = f"net.tcp.t{index}.rtt_ms"
        response = http_get(f"{oculus.url}/api/metrics?symbol={quote(symbol)}&limit=10000")
        assert response.status == 200, response.text
        keys |= {(symbol, row["ts"]) for row in response.json()["samples"]}
    return keys


def run_cli(env, *arguments: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "oculus", *arguments], env=env, capture_output=True, text=True,
                          timeout=120, cwd=cwd)


def test_backup_while_ingesting_keeps_acknowledged_samples(ingesting, tmp_path):
    oculus, config, env = ingesting
    wait_for(lambda: len(acknowledged(oculus)) >= 200, timeout=20.0, what="200 acknowledged samples")
    written_before = http_get(f"{oculus.url}/readyz").json()["samples_written"]
    before = acknowledged(oculus)
    destination = tmp_path / "backup.duckdb"

    result = run_cli(env, "backup", "-c", str(config), "--port", str(oculus.port), str(destination))

    assert result.returncode == 0, result.stderr
    assert f"(from {oculus.url})" in result.stdout, "the backup was not made by the running process"
    stored = {(symbol, ts.isoformat(timespec="milliseconds") + "Z")
              for symbol, ts in source_rows(destination, "SELECT symbol, ts FROM samples")}
    assert before <= stored, f"{len(before - stored)} acknowledged samples are missing from the backup"
    assert http_get(f"{oculus.url}/readyz").json()["samples_written"] > written_before, "ingest stopped"


def test_backup_while_ingesting_concurrent_requests(ingesting, tmp_path):
    oculus, config, env = ingesting
    results = {}

    def backup(name):
        results[name] = run_cli(env, "backup", "-c", str(config), "--port", str(oculus.port), str(tmp_path / name))

    threads = [threading.Thread(target=backup, args=(f"b{index}.duckdb",)) for index in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(150)

    for name, result in results.items():
        assert result.returncode == 0, result.stderr
        assert source_rows(tmp_path / name, "SELECT count(*) FROM samples")[0][0] > 0


def test_export_command_through_running_oculus(ingesting, tmp_path):
    oculus, config, env = ingesting
    destination = tmp_path / "export.parquet"

    result = run_cli(env, "export", "-c", str(config), "--port", str(oculus.port), "--since", "1h",
                     "--symbol", "net.tcp.t1.*", str(destination))

    assert result.returncode == 0, result.stderr
    symbols = duckdb.sql(f"SELECT DISTINCT symbol FROM read_parquet('{destination}')").fetchall()
    assert symbols == [("net.tcp.t1.rtt_ms",)]
    assert f"(from {oculus.url})" in result.stdout


def test_backup_command_wrong_token(ingesting, tmp_path):
    oculus, config, env = ingesting
    result = run_cli({**env, "OCULUS_API_TOKEN": "wrong"}, "backup", "-c", str(config), "--port", str(oculus.port),
                     str(tmp_path / "backup.duckdb"))
    assert result.returncode == 1
    assert "HTTP 401: invalid API token" in result.stderr
    assert not (tmp_path / "backup.duckdb").exists()


def test_backup_command_port_skips_stray_file(ingesting, tmp_path):
    oculus, config, env = ingesting
    stray = Database(str(tmp_path / "oculus.duckdb"))  # the default database.path, relative to the working directory
    stray.open()
    stray.close()

    result = run_cli(env, "backup", "-c", str(config), "--port", str(oculus.port), "copy.duckdb", cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert f"(from {oculus.url})" in result.stdout, "the stray file was copied instead of the running instance"


def test_backup_command_after_emptied_bucket(ingesting, tmp_path):
    oculus, config, env = ingesting
    wrong = {"Authorization": "Bearer wrong"}
    statuses = [http_request(f"{oculus.url}/api/backup", method="POST", headers=wrong).status for _ in range(8)]
    assert statuses[-1] == 429, f"the bucket was not emptied: {statuses}"

    result = run_cli(env, "backup", "-c", str(config), "--port", str(oculus.port), str(tmp_path / "late.duckdb"))

    # Whether the first request still finds the bucket empty depends on how fast the CLI starts, so the retry
    # itself is checked against a scripted server below.
    assert result.returncode == 0, result.stderr
    assert source_rows(tmp_path / "late.duckdb", "SELECT count(*) FROM samples")[0][0] > 0


class ScriptedResponses(BaseHTTPRequestHandler):
    """Send each request the next (status, headers, body) of the server's `script`."""

    def do_POST(self):
        status, headers, body = self.server.script.pop(0)
        self.server.requests += 1
        self.send_response(status)
        for name, value in {**headers, "Content-Length": str(len(body))}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):
        pass


@pytest.fixture
def scripted_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), ScriptedResponses)
    server.requests = 0
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


RATE_LIMITED = (429, {"Retry-After": "0", "Content-Type": "application/json"},
                b'{"error": {"code": "rate_limited", "message": "too many export and backup requests"}}')


def test_client_retries_after_429(scripted_server, tmp_path, caplog):
    scripted_server.script = [RATE_LIMITED, (200, {}, b"backup bytes")]
    destination = tmp_path / "backup.duckdb"
    url = f"http://127.0.0.1:{scripted_server.server_address[1]}/api/backup"

    with caplog.at_level(logging.WARNING, logger="oculus.web.client"):
        client.download("POST", url, "token", str(destination))

    assert destination.read_bytes() == b"backup bytes"
    assert scripted_server.requests == 2
    assert "returned HTTP 429: too many export and backup requests; retrying in 0s" in caplog.text


def test_client_gives_up_after_max_retries(scripted_server, tmp_path):
    scripted_server.script = [RATE_LIMITED] * (client.MAX_RETRIES + 1)
    url = f"http://127.0.0.1:{scripted_server.server_address[1]}/api/backup"

    with pytest.raises(client.ApiClientError, match="returned HTTP 429: too many export and backup requests"):
        client.download("POST", url, "token", str(tmp_path / "backup.duckdb"))

    assert scripted_server.requests == client.MAX_RETRIES + 1
    assert not (tmp_path / "backup.duckdb").exists()
