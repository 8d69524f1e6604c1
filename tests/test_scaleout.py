"""Scale-out: one Prometheus scrapes two Oculus processes, telling them apart by their instance labels."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.parse

import pytest

from tests.servers import OculusProcess, ProbeTargetServer, free_port, http_get, oculus_command, wait_for

PROMETHEUS = shutil.which("prometheus")
pytestmark = pytest.mark.skipif(
    PROMETHEUS is None,
    reason="the prometheus binary is missing; install Debian's prometheus package (apt install prometheus), "
           "as .ci/run does, to run the scale-out test")

INSTANCES = {"oculus-a": "alpha", "oculus-b": "beta"}  # instance label -> name of its TCP collector


def prometheus_config(targets: dict[str, int]) -> str:
    """Return a Prometheus config that scrapes each Oculus port every second with its own instance label."""
    static = "".join(f"      - targets: ['127.0.0.1:{port}']\n        labels:\n          instance: {instance}\n"
                     for instance, port in targets.items())
    return ("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
            f"scrape_configs:\n  - job_name: oculus\n    static_configs:\n{static}")


@pytest.fixture
def target():
    server = ProbeTargetServer().start()
    yield server.server_address[1]
    server.stop()


@pytest.fixture
def oculus_instances(tmp_path, target):
    """Start two Oculus processes, each with one TCP collector; yield {instance label: process}."""
    processes = {}
    env = {key: value for key, value in os.environ.items() if not key.startswith("OCULUS_")}
    try:
        for instance, name in INSTANCES.items():
            directory = tmp_path / instance
            directory.mkdir()
            config = directory / "oculus.yaml"
            config.write_text(f"runtime:\n  flush_interval: 100ms\ncollectors:\n  - type: tcp\n    name: {name}\n"
                              f"    host: 127.0.0.1\n    port: {target}\n    interval: 500ms\n    timeout: 1s\n",
                              encoding="utf-8")
            port = free_port()
            processes[instance] = OculusProcess(oculus_command(config, port, directory / "oculus.duckdb"), directory,
                                                port, env=env).start(timeout=20.0)
        yield processes
    finally:
        for process in processes.values():
            process.kill()


@pytest.fixture
def prometheus(tmp_path, oculus_instances):
    """Start Prometheus on a loopback port, scraping both instances; yield its base URL."""
    config = tmp_path / "prometheus.yml"
    config.write_text(prometheus_config({instance: p.port for instance, p in oculus_instances.items()}),
                      encoding="utf-8")
    port = free_port()
    log_path = tmp_path / "prometheus.log"
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen([PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                                    f"--web.listen-address=127.0.0.1:{port}"],
                                   cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        def ready():
            if process.poll() is not None:
                raise RuntimeError(f"prometheus exited with code {process.returncode}:\n{log_path.read_text()}")
            try:
                return http_get(f"{url}/-/ready", timeout=1.0).status == 200
            except OSError:
                return False

        wait_for(ready, timeout=30.0, what="Prometheus ready")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def instant_query(url: str, query: str) -> list[dict]:
    response = http_get(f"{url}/api/v1/query?query={urllib.parse.quote(query)}", timeout=5.0)
    assert response.status == 200, response.text
    body = json.loads(response.body)
    assert body["status"] == "success", body
    return body["data"]["result"]


def test_prometheus_scrapes_symbol_from_each_instance(prometheus, oculus_instances):
    for instance, name in INSTANCES.items():
        symbol = f"net.tcp.{name}.rtt_ms"
        query = f'oculus_symbol_value{{job="oculus",symbol="{symbol}"}}'
        results = wait_for(lambda query=query: instant_query(prometheus, query), timeout=30.0,
                           what=f"{symbol} in Prometheus")

        assert [result["metric"]["instance"] for result in results] == [instance]
        assert float(results[0]["value"][1]) >= 0.0


def test_prometheus_sees_both_instances_up(prometheus, oculus_instances):
    def both_up():
        results = instant_query(prometheus, 'up{job="oculus"} == 1')
        return results if len(results) == 2 else None

    results = wait_for(both_up, timeout=30.0, what="both instances up in Prometheus")
    assert sorted(result["metric"]["instance"] for result in results) == sorted(INSTANCES)
