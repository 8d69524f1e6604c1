"""Rules end to end: the documented examples on seeded data, a killed and restarted Oculus, live versus backtest."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import threading
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import duckdb
import pytest

from tests.rule_support import RuleHarness, at
from tests.servers import OculusProcess, free_port, http_get, json_log_records, oculus_command, wait_for
from tests.test_rule_config import SPEC_EXAMPLES

START_TIMEOUT = 15.0
EXIT_TIMEOUT = 10.0


# -- the documented examples, in process ----------------------------------------


@pytest.fixture
def examples(tmp_path):
    harness = RuleHarness(tmp_path, "alerting:\n  interval: 10s\n" + SPEC_EXAMPLES)
    yield harness
    harness.close()


def test_examples_produce_events(examples):
    """Every 10 s for 25 minutes: BTC climbs past 100k and moves 7 % in the hour, the API fails for 5 minutes."""
    for step in range(150):
        seconds = step * 10
        examples.sample("crypto.price.btc_usd", seconds, 95_000 + seconds * 5)
        examples.sample("crypto.price.eth_usd", seconds, 3_000)
        examples.sample("net.http.api_example.status", seconds, 500 if 300 <= seconds < 600 else 200,
                        success=not 300 <= seconds < 600)
        examples.engine.run_pass(at(seconds))

    events = [(e["rule"], e["instance"], e["from"], e["to"], e["ts"], e["notify"], e["message"])
              for e in examples.alert_events()]
    assert events == [
        ("api_down", "", "inactive", "pending", at(300), False,
         "api_down pending: api_down: net.http.api_example.status != 200 (value 500)"),
        ("api_down", "", "pending", "firing", at(420), True,
         "api_down firing: api_down: net.http.api_example.status != 200 (value 500)"),
        ("api_down", "", "firing", "resolved", at(600), True,
         "api_down resolved: api_down: net.http.api_example.status != 200 (value 200)"),
        ("btc_price_alert", "", "inactive", "firing", at(1010), True,
         "btc_price_alert firing: BTC crossed $100k: 100050"),
        # The SQL rule runs every 5 minutes from the first pass; at 25:00 the spread is 7250 on a mean of 98625.
        ("btc_volatility", '{"symbol":"crypto.price.btc_usd"}', "inactive", "firing", at(1200), True,
         "btc_volatility firing: crypto.price.btc_usd moved 6000 in 1h"),
    ]
    assert examples.stored_state("api_down")["state"] == "resolved"
    assert examples.stored_state("btc_price_alert")["state"] == "firing"


def test_examples_notify_log_channel(examples, caplog):
    from oculus.notify import NotificationDispatcher

    caplog.set_level(logging.INFO, logger="oculus.notify")
    examples.sample("crypto.price.btc_usd", 0, 101_000)
    examples.engine.run_pass(at(0))
    dispatcher = NotificationDispatcher(examples.notifications)
    dispatcher.start()
    assert dispatcher.stop(5.0)

    messages = [r.getMessage() for r in caplog.records if r.name == "oculus.notify"]
    assert messages == [
        "alert firing rule=btc_price_alert instance=- severity=info value=101000.0 "
        "message=BTC crossed $100k: 101000",
    ]


# -- Oculus as a subprocess ---------------------------------------------------


class StatusServer(ThreadingHTTPServer):
    """A loopback HTTP server that responds to every request with `status`, which a test can change."""

    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), StatusHandler)
        self.status = 500
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/health"


class StatusHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # keep test output quiet
        pass

    def do_GET(self):
        body = b"status"
        self.send_response(self.server.status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def api():
    server = StatusServer()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def launch(tmp_path):
    """Start Oculus processes, each in its own directory; any still running at teardown is killed."""
    processes = []

    def start(config_path, db_path) -> OculusProcess:
        workdir = tmp_path / f"run{len(processes)}"
        workdir.mkdir()
        port = free_port()
        oculus = OculusProcess(oculus_command(config_path, port, db_path), workdir, port)
        processes.append(oculus)
        return oculus.start(timeout=START_TIMEOUT)

    yield start
    for oculus in processes:
        oculus.kill()


def write_config(path, url: str):
    path.write_text(
        "runtime:\n  flush_interval: 100ms\n"
        "alerting:\n  interval: 200ms\n"
        "collectors:\n"
        f"  - {{type: http, name: api, url: '{url}', interval: 200ms, timeout: 1s}}\n"
        "rules:\n"
        "  - name: api_down\n"
        "    condition: net.http.api.status != 200\n"
        "    for: 600ms\n"
        "    severity: critical\n"
        "    channels: [log]\n", encoding="utf-8")
    return path


def alert_lines(oculus: OculusProcess, state: str) -> list[str]:
    return [r["msg"] for r in json_log_records(oculus.output())
            if r.get("logger") == "oculus.notify" and r.get("msg", "").startswith(f"alert {state} ")]


def rule_passes(oculus: OculusProcess) -> int:
    return http_get(oculus.url + "/readyz").json()["rules"]["passes"]


def test_sigkill_restart_sends_no_duplicate(launch, api, tmp_path):
    config, db_path = write_config(tmp_path / "oculus.yaml", api.url), tmp_path / "oculus.duckdb"
    first = launch(config, db_path)
    wait_for(lambda: alert_lines(first, "firing"), timeout=10.0, what="the firing notification")
    first.process.send_signal(signal.SIGKILL)
    first.process.wait(EXIT_TIMEOUT)

    second = launch(config, db_path)
    passes = rule_passes(second)
    wait_for(lambda: rule_passes(second) >= passes + 5, timeout=10.0, what="five passes after the restart")
    assert alert_lines(second, "firing") == [], "the restarted Oculus notified the firing alert again"

    api.status = 200
    wait_for(lambda: alert_lines(second, "resolved"), timeout=10.0, what="the resolve notification")
    assert second.stop(EXIT_TIMEOUT) == 0, second.output()

    assert len(alert_lines(first, "firing")) == 1
    assert len(alert_lines(second, "resolved")) == 1
    with duckdb.connect(str(db_path), read_only=True) as connection:
        rows = connection.execute("SELECT payload->>'to', payload->>'notify' FROM events WHERE kind = 'alert' "
                                  "AND payload->>'to' IN ('firing', 'resolved') ORDER BY id").fetchall()
    assert rows == [("firing", "true"), ("resolved", "true")]


def rules_test(config, db_path, since: str = "5m") -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "oculus", "rules", "test", "-c", str(config), "--db-path", str(db_path),
               "--since", since, "--json"]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


def backtest_transitions(result: subprocess.CompletedProcess) -> list[tuple]:
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    return [(line["to"], datetime.fromisoformat(line["ts"].rstrip("Z"))) for line in lines]


def test_backtest_matches_live(launch, api, tmp_path):
    config, db_path = write_config(tmp_path / "oculus.yaml", api.url), tmp_path / "oculus.duckdb"
    oculus = launch(config, db_path)
    wait_for(lambda: alert_lines(oculus, "firing"), timeout=10.0, what="the firing notification")
    api.status = 200
    wait_for(lambda: alert_lines(oculus, "resolved"), timeout=10.0, what="the resolve notification")

    while_running = rules_test(config, db_path)
    assert f"is in use by PID {oculus.process.pid}; replaying from a copy" in while_running.stderr
    assert [to for to, _ in backtest_transitions(while_running)] == ["firing", "resolved"]
    assert oculus.stop(EXIT_TIMEOUT) == 0, oculus.output()

    with duckdb.connect(str(db_path), read_only=True) as connection:
        live = connection.execute("SELECT payload->>'to', ts FROM events WHERE kind = 'alert' "
                                  "AND payload->>'to' IN ('firing', 'resolved') ORDER BY id").fetchall()
    replayed = backtest_transitions(rules_test(config, db_path))

    assert [to for to, _ in replayed] == [to for to, _ in live]
    # Live passes see a sample once the writer has flushed it (100 ms); the replay sees it at the next 200 ms step.
    for (to, live_ts), (_, replay_ts) in zip(live, replayed, strict=True):
        assert abs((replay_ts - live_ts).total_seconds()) < 1.0, f"{to}: live {live_ts}, backtest {replay_ts}"
