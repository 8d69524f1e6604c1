"""Process lifecycle: Oculus as a real subprocess, and the collector scheduler in process."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from unittest import mock
from urllib.parse import quote

import duckdb
import pytest

from oculus.config import load_config
from oculus.runtime.scheduler import CollectorScheduler
from oculus.storage.migrations import MIGRATIONS
from tests.servers import OculusProcess, free_port, http_get, json_log_records, oculus_command, wait_for

ALPHA = "net.tcp.alpha.rtt_ms"
BETA = "net.tcp.beta.rtt_ms"
# Time allowed for a signalled stop; the default shutdown_timeout is 8 s, so a clean stop fits with room to spare.
EXIT_TIMEOUT = 10.0
START_TIMEOUT = 15.0


def tcp_collector(name: str, port: int, interval: str = "200ms") -> str:
    return (f"  - type: tcp\n    name: {name}\n    host: 127.0.0.1\n    port: {port}\n"
            f"    interval: {interval}\n    timeout: 1s\n")


def write_config(path, target_port: int, names=("alpha",), flush_interval: str = "200ms"):
    """Write a config with one TCP collector per name, all probing `target_port` on 127.0.0.1."""
    text = f"runtime:\n  flush_interval: {flush_interval}\ncollectors:\n"
    text += "".join(tcp_collector(name, target_port) for name in names)
    path.write_text(text, encoding="utf-8")
    return path


def iso_ms(ts) -> str:
    """Format a stored timestamp the way the API does, to compare the two."""
    return ts.isoformat(timespec="milliseconds") + "Z"


def api_samples(oculus: OculusProcess, symbol: str) -> set[str]:
    """Return the timestamps of the `symbol` samples that /api/metrics returns."""
    response = http_get(f"{oculus.url}/api/metrics?symbol={quote(symbol)}&limit=10000", timeout=5.0)
    assert response.status == 200, response.text
    return {row["ts"] for row in response.json()["samples"]}


def wait_for_samples(oculus: OculusProcess, symbol: str, count: int, timeout: float = 10.0) -> set[str]:
    """Poll the API until it shows at least `count` samples of `symbol`; return their timestamps."""

    def enough():
        timestamps = api_samples(oculus, symbol)
        return timestamps if len(timestamps) >= count else None

    return wait_for(enough, timeout=timeout, what=f"{count} samples of {symbol} in the API")


def stored_samples(db_path, symbol: str) -> set[str]:
    """Return the timestamps stored for `symbol`, read from the file after Oculus has exited."""
    with duckdb.connect(str(db_path), read_only=True) as connection:
        rows = connection.execute("SELECT ts FROM samples WHERE symbol = ?", [symbol]).fetchall()
    return {iso_ms(ts) for (ts,) in rows}


def error_messages(oculus: OculusProcess) -> list[str]:
    return [r.get("msg", "") for r in json_log_records(oculus.output()) if r.get("level") == "error"]


@pytest.fixture
def target(http_target):
    """Port of a loopback server that accepts every connection, for TCP collectors."""
    return http_target.server_address[1]


@pytest.fixture
def launch(tmp_path):
    """Start Oculus processes, each in its own directory; any still running at teardown is killed."""
    processes = []

    def start(config_path, db_path, port: int | None = None) -> OculusProcess:
        workdir = tmp_path / f"run{len(processes)}"
        workdir.mkdir()
        port = port or free_port()
        oculus = OculusProcess(oculus_command(config_path, port, db_path), workdir, port)
        processes.append(oculus)
        return oculus.start(timeout=START_TIMEOUT)

    yield start
    for oculus in processes:
        oculus.kill()


def run_to_exit(command, cwd, timeout: float = EXIT_TIMEOUT) -> subprocess.CompletedProcess:
    """Run an Oculus expected to exit by itself; fail the test if it keeps running."""
    return subprocess.run(command, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)


# -- subprocess lifecycle --------------------------------------------------


def test_readyz_ready_when_running(launch, tmp_path, target):
    oculus = launch(write_config(tmp_path / "oculus.yaml", target), tmp_path / "oculus.duckdb")

    response = http_get(oculus.url + "/readyz")
    assert response.status == 200
    assert response.json()["status"] == "ready"
    assert response.json()["schema_version"] == MIGRATIONS[-1][0]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_stop_signal_keeps_shown_samples(launch, tmp_path, target, signum):
    db_path = tmp_path / "oculus.duckdb"
    oculus = launch(write_config(tmp_path / "oculus.yaml", target), db_path)
    wait_for_samples(oculus, ALPHA, 3)

    api_timestamps = api_samples(oculus, ALPHA)
    started = time.monotonic()
    oculus.process.send_signal(signum)
    code = oculus.process.wait(EXIT_TIMEOUT)
    elapsed = time.monotonic() - started

    assert code == 0, oculus.output()
    assert elapsed < EXIT_TIMEOUT
    assert api_timestamps <= stored_samples(db_path, ALPHA), "samples shown by the API are missing from the file"


def test_sigterm_flushes_buffered_samples(launch, tmp_path, target):
    db_path = tmp_path / "oculus.duckdb"
    oculus = launch(write_config(tmp_path / "oculus.yaml", target, flush_interval="1m"), db_path)
    time.sleep(1.0)  # about five runs of the 200 ms collector

    assert api_samples(oculus, ALPHA) == set(), "with a 1 h flush interval nothing should be inserted yet"
    assert oculus.stop(EXIT_TIMEOUT) == 0, oculus.output()
    assert len(stored_samples(db_path, ALPHA)) >= 2, "samples buffered in the writer were not flushed on stop"


def test_sigterm_exits_during_hung_probe(launch, tmp_path, open_port):
    config = tmp_path / "oculus.yaml"
    # open_port completes TCP handshakes but never responds, so the HTTP request hangs for its whole timeout.
    config.write_text("runtime:\n  shutdown_timeout: 2s\ncollectors:\n"
                      f"  - {{type: http, name: hang, url: 'http://127.0.0.1:{open_port}/',"
                      " interval: 1s, timeout: 30s}\n")
    oculus = launch(config, tmp_path / "oculus.duckdb")
    time.sleep(0.5)  # the first run starts at once and is now waiting for a response

    oculus.process.send_signal(signal.SIGTERM)
    try:
        code = oculus.process.wait(6.0)
    except subprocess.TimeoutExpired:
        code = None

    assert code == 0, "Oculus still running 6 s after SIGTERM, with a 2 s shutdown_timeout"


def test_sigkill_restart_keeps_flushed_samples(launch, tmp_path, target):
    config, db_path = write_config(tmp_path / "oculus.yaml", target), tmp_path / "oculus.duckdb"
    first = launch(config, db_path)
    wait_for_samples(first, ALPHA, 3)

    api_timestamps = api_samples(first, ALPHA)
    first.process.send_signal(signal.SIGKILL)
    first.process.wait(EXIT_TIMEOUT)

    second = launch(config, db_path)
    after_restart = api_samples(second, ALPHA)
    assert api_timestamps <= after_restart, "samples committed before SIGKILL are missing after the restart"
    assert second.stop(EXIT_TIMEOUT) == 0, second.output()


def test_sighup_adds_collector(launch, tmp_path, target):
    config = write_config(tmp_path / "oculus.yaml", target)
    oculus = launch(config, tmp_path / "oculus.duckdb")
    wait_for_samples(oculus, ALPHA, 1)

    write_config(config, target, names=("alpha", "beta"))
    oculus.process.send_signal(signal.SIGHUP)

    assert wait_for_samples(oculus, BETA, 1)
    assert oculus.process.poll() is None, "a reload must not stop the process"


def test_sighup_invalid_config_keeps_old(launch, tmp_path, target):
    config = write_config(tmp_path / "oculus.yaml", target)
    oculus = launch(config, tmp_path / "oculus.duckdb")
    wait_for_samples(oculus, ALPHA, 1)

    config.write_text(config.read_text().replace("    interval: 200ms", "    interval: 5 minutes"))
    oculus.process.send_signal(signal.SIGHUP)
    rejected = wait_for(lambda: [m for m in error_messages(oculus) if "reload rejected" in m],
                        timeout=10.0, what="an error log line about the rejected reload")
    before = len(api_samples(oculus, ALPHA))

    assert "collectors[0].interval" in rejected[0]
    assert wait_for_samples(oculus, ALPHA, before + 3), "the old collector should keep producing samples"


def test_sighup_runtime_change_warns(launch, tmp_path, target):
    config = write_config(tmp_path / "oculus.yaml", target)
    oculus = launch(config, tmp_path / "oculus.duckdb")

    write_config(config, target, flush_interval="5s")
    oculus.process.send_signal(signal.SIGHUP)
    wait_for(lambda: "config reloaded" in oculus.output(), timeout=10.0, what="the reload to finish")
    warnings = [r["msg"] for r in json_log_records(oculus.output()) if r.get("level") == "warning"]

    assert any("runtime" in message for message in warnings), f"no warning that runtime needs a restart: {warnings}"


def test_second_instance_names_file_and_pid(launch, tmp_path, target):
    config, db_path = write_config(tmp_path / "oculus.yaml", target), tmp_path / "oculus.duckdb"
    first = launch(config, db_path)

    second = run_to_exit(oculus_command(config, free_port(), db_path), tmp_path)

    assert second.returncode != 0
    assert str(db_path) in second.stderr
    assert f"PID {first.process.pid}" in second.stderr
    assert "Traceback" not in second.stderr


def test_port_in_use_exits_nonzero(tmp_path, target, open_port):
    config = write_config(tmp_path / "oculus.yaml", target)

    result = run_to_exit(oculus_command(config, open_port, tmp_path / "oculus.duckdb"), tmp_path)

    assert result.returncode != 0
    assert f"127.0.0.1:{open_port}" in result.stderr
    assert "address already in use" in result.stderr.lower()
    assert "Traceback" not in result.stderr


def test_invalid_config_exits_2(tmp_path, target):
    config = tmp_path / "oculus.yaml"
    config.write_text("collectors:\n"
                      "  - type: tcp\n"
                      "    name: alpha\n"
                      "    host: 127.0.0.1\n"
                      f"    port: {target}\n"
                      "    interval: 5 minutes\n")
    db_path = tmp_path / "oculus.duckdb"

    result = run_to_exit(oculus_command(config, free_port(), db_path), tmp_path)

    assert result.returncode == 2
    assert f"{config}:6: collectors[0].interval:" in result.stderr
    assert not db_path.exists(), "an invalid config must not create the database"


# -- scheduler in process --------------------------------------------------


class SampleSink:
    """The scheduler's submit_samples callback, which stores every list of samples it receives."""

    def __init__(self):
        self.batches: list[list] = []
        self._lock = threading.Lock()

    def __call__(self, samples: list) -> bool:
        with self._lock:
            self.batches.append(samples)
        return True

    def samples(self) -> list:
        with self._lock:
            return [sample for batch in self.batches for sample in batch]


def collector_specs(tmp_path, text: str) -> list:
    path = tmp_path / "collectors.yaml"
    path.write_text("collectors:\n" + text, encoding="utf-8")
    return load_config(str(path), env={}).collectors


@pytest.fixture
def scheduler():
    schedulers = []

    def create(workers: int = 4) -> tuple[CollectorScheduler, SampleSink]:
        sink = SampleSink()
        schedulers.append(CollectorScheduler(workers, sink))
        return schedulers[-1], sink

    yield create
    for created in schedulers:
        if created.is_alive():
            created.stop(timeout=0.5)


def test_scheduler_skips_overlapping_runs(tmp_path, http_target, scheduler):
    port = http_target.server_address[1]
    specs = collector_specs(tmp_path, (
        # /slow responds after 3 s, so each run outlasts the 200 ms interval many times over.
        f"  - {{type: http, name: slow, url: '{http_target.url}/slow', interval: 200ms, timeout: 10s}}\n"
        f"  - {{type: tcp, name: fast, host: 127.0.0.1, port: {port}, interval: 100ms, timeout: 1s}}\n"
    ))
    collectors, _ = scheduler(workers=4)
    collectors.set_collectors(specs)

    started = time.monotonic()
    collectors.start()
    time.sleep(1.5)
    slow, fast = collectors.states["http:slow"], collectors.states["tcp:fast"]
    window = time.monotonic() - started

    assert slow.runs == 0, "the slow run should still be in progress"
    assert slow.skipped >= 3
    assert fast.runs >= window / 0.1 / 3, f"fast collector ran {fast.runs} times in {window:.1f}s"


def test_scheduler_survives_raising_collector(tmp_path, target, scheduler):
    specs = collector_specs(tmp_path, (
        f"  - {{type: tcp, name: broken, host: 127.0.0.1, port: {target}, interval: 100ms}}\n"
        f"  - {{type: tcp, name: healthy, host: 127.0.0.1, port: {target}, interval: 100ms}}\n"
    ))
    collectors, sink = scheduler()
    collectors.set_collectors(specs)
    broken = collectors.collectors["tcp:broken"]

    with mock.patch.object(broken, "collect", autospec=True, side_effect=RuntimeError("probe exploded")):
        collectors.start()
        wait_for(lambda: collectors.states["tcp:broken"].runs >= 3 and collectors.states["tcp:healthy"].runs >= 3,
                 timeout=10.0, what="three runs of each collector")
    failed = [s for s in sink.samples() if s.symbol == "net.tcp.broken.rtt_ms"]

    assert collectors.is_alive()
    assert collectors.states["tcp:broken"].failures >= 3
    assert failed, "a raising collector should still submit failed samples"
    assert all(not s.success for s in failed)
    assert "probe exploded" in failed[0].tags["error"]


def test_scheduler_stop_clears_cancelled_runs(tmp_path, target, scheduler):
    specs = collector_specs(tmp_path, (
        f"  - {{type: tcp, name: busy, host: 127.0.0.1, port: {target}, interval: 100ms}}\n"
        f"  - {{type: tcp, name: queued, host: 127.0.0.1, port: {target}, interval: 100ms}}\n"
    ))
    collectors, _ = scheduler(workers=1)
    collectors.set_collectors(specs)
    busy = collectors.collectors["tcp:busy"]
    busy_started = threading.Event()

    def slow_collect(deadline):
        busy_started.set()
        time.sleep(0.5)
        return []

    with mock.patch.object(busy, "collect", autospec=True, side_effect=slow_collect):
        collectors.start()
        assert busy_started.wait(5.0)
        wait_for(lambda: collectors.states["tcp:queued"].running, timeout=5.0, what="a run queued behind the busy one")
        collectors.stop(timeout=1.5)

    assert not collectors.states["tcp:busy"].running
    assert not collectors.states["tcp:queued"].running, "a cancelled run must not stay marked as running"
