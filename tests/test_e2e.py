"""The built oculus.pyz, run by the machine's python3 from an empty directory against loopback targets."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from oculus import cli
from tests.servers import (OculusProcess, ProbeTargetServer, closed_port, free_port, http_get, listening_socket,
                           system_python, wait_for)

ROOT = Path(__file__).resolve().parent.parent
ERROR_PHRASE_500 = "expected status 200-299, got 500"
# Symbols whose first sample the run must produce before the checks start.
EXPECTED_SYMBOLS = ("net.http.ok.status", "net.http.broken.status", "net.tcp.open.rtt_ms",
                    "net.tcp.refused.rtt_ms", "net.ping.loopback.rtt_ms")


@pytest.fixture(scope="session")
def zipapp(tmp_path_factory) -> Path:
    """Build oculus.pyz once per test session with build_zipapp.py."""
    output = tmp_path_factory.mktemp("zipapp") / "oculus.pyz"
    result = subprocess.run([sys.executable, str(ROOT / "build_zipapp.py"), "--output", str(output)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"build_zipapp.py failed:\n{result.stdout}\n{result.stderr}"
    return output


@pytest.fixture(scope="module")
def loopback_targets():
    server = ProbeTargetServer().start()
    open_socket = listening_socket()
    yield {"url": server.url, "open_port": open_socket.getsockname()[1], "refused_port": closed_port()}
    open_socket.close()
    server.stop()


@pytest.fixture(scope="module")
def pyz_run(zipapp, loopback_targets, tmp_path_factory):
    """Start a copy of oculus.pyz in an empty directory. The checks below share this run."""
    workdir = tmp_path_factory.mktemp("pyz-run")
    shutil.copy(zipapp, workdir / "oculus.pyz")
    config = {"collectors": [
        {"type": "http", "name": "ok", "url": f"{loopback_targets['url']}/ok", "interval": "1s", "timeout": "2s"},
        {"type": "http", "name": "broken", "url": f"{loopback_targets['url']}/error", "interval": "1s",
         "timeout": "2s"},
        {"type": "tcp", "name": "open", "host": "127.0.0.1", "port": loopback_targets["open_port"],
         "interval": "1s", "timeout": "2s"},
        {"type": "tcp", "name": "refused", "host": "127.0.0.1", "port": loopback_targets["refused_port"],
         "interval": "1s", "timeout": "2s"},
        {"type": "ping", "name": "loopback", "host": "127.0.0.1", "count": 2, "interval": "1s", "timeout": "2s"},
    ]}
    (workdir / "oculus.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")

    # shiv unpacks the bundle under SHIV_ROOT (default ~/.shiv). A private root makes this the first start
    # on a fresh host and leaves the home directory alone.
    env = {key: value for key, value in os.environ.items() if not key.startswith("OCULUS_")}
    env["SHIV_ROOT"] = str(workdir / "shiv")
    port = free_port()
    process = OculusProcess([system_python(), "oculus.pyz", "run", "-c", "oculus.yaml", "--port", str(port)],
                            cwd=workdir, port=port, env=env)
    process.start(timeout=60.0)
    try:
        for symbol in EXPECTED_SYMBOLS:
            wait_for(lambda symbol=symbol: _latest(process.url, symbol), timeout=20.0,
                     what=f"first sample of {symbol}")
        yield process
    finally:
        process.stop()


def _latest(base_url: str, symbol: str) -> dict | None:
    samples = http_get(f"{base_url}/api/metrics?symbol={symbol}&limit=1").json()["samples"]
    return samples[0] if samples else None


# -- the running bundle --------------------------------------------------------


def test_pyz_database_in_workdir(pyz_run):
    assert (pyz_run.cwd / "oculus.duckdb").is_file()


def test_pyz_readyz_200(pyz_run):
    response = http_get(pyz_run.url + "/readyz")
    assert response.status == 200, response.text


def test_pyz_http_200_success(pyz_run):
    sample = _latest(pyz_run.url, "net.http.ok.status")
    assert sample["value"] == 200.0
    assert sample["success"] is True


def test_pyz_http_500_failed(pyz_run):
    sample = _latest(pyz_run.url, "net.http.broken.status")
    assert sample["value"] == 500.0
    assert sample["success"] is False
    assert sample["tags"]["error"] == ERROR_PHRASE_500


def test_pyz_tcp_open_success(pyz_run):
    sample = _latest(pyz_run.url, "net.tcp.open.rtt_ms")
    assert sample["success"] is True
    assert sample["value"] >= 0.0


def test_pyz_tcp_refused_failed(pyz_run):
    sample = _latest(pyz_run.url, "net.tcp.refused.rtt_ms")
    assert sample["success"] is False
    assert sample["value"] is None
    assert sample["tags"]["error"] == "connection refused"


def test_pyz_ping_success(pyz_run):
    sample = _latest(pyz_run.url, "net.ping.loopback.rtt_ms")
    assert sample["success"] is True, sample["tags"].get("error")
    assert sample["value"] >= 0.0


def test_pyz_ping_no_loss(pyz_run):
    assert _latest(pyz_run.url, "net.ping.loopback.loss_pct")["value"] == 0.0


@pytest.mark.parametrize("key", ["net.http.ok", "net.http.broken", "net.tcp.open", "net.tcp.refused",
                                 "net.ping.loopback"])
def test_pyz_dashboard_row(pyz_run, key):
    assert f'data-symbol="{key}"' in http_get(pyz_run.url + "/").text


@pytest.mark.parametrize("text", [ERROR_PHRASE_500, "connection refused", ">DOWN<", ">UP<"])
def test_pyz_dashboard_text(pyz_run, text):
    assert text in http_get(pyz_run.url + "/").text


def test_pyz_assets_from_bundle(pyz_run):
    assert http_get(pyz_run.url + "/static/oculus.css").status == 200


def test_pyz_sigterm_exits_0(zipapp, loopback_targets, tmp_path):
    # Its own run, because the shared one must stay up for the other checks.
    shutil.copy(zipapp, tmp_path / "oculus.pyz")
    config = {"collectors": [{"type": "tcp", "name": "refused", "host": "127.0.0.1",
                              "port": loopback_targets["refused_port"], "interval": "1s", "timeout": "1s"}]}
    (tmp_path / "oculus.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    env = {key: value for key, value in os.environ.items() if not key.startswith("OCULUS_")}
    env["SHIV_ROOT"] = str(tmp_path / "shiv")
    port = free_port()
    process = OculusProcess([system_python(), "oculus.pyz", "-c", "oculus.yaml", "--port", str(port)],
                            cwd=tmp_path, port=port, env=env)
    process.start(timeout=60.0)
    wait_for(lambda: _latest(process.url, "net.tcp.refused.rtt_ms"), timeout=20.0, what="first sample")

    exit_code = process.stop(timeout=15.0)

    assert exit_code == 0, process.output()
    assert "Traceback" not in process.output()


# -- Python version check of the bundle -----------------------------------------


def _fake_bundle(monkeypatch, directory: Path, build_info) -> None:
    """Make oculus.cli read `build_info` as the _build.json that sits next to it in a bundle."""
    if build_info is not None:
        text = build_info if isinstance(build_info, str) else json.dumps(build_info)
        (directory / "_build.json").write_text(text, encoding="utf-8")
    monkeypatch.setattr(cli, "__file__", str(directory / "cli.py"))


def test_mismatch_message_names_versions(monkeypatch, tmp_path):
    _fake_bundle(monkeypatch, tmp_path, {"python": [3, 99], "platform": "x86_64"})
    running = f"{sys.version_info[0]}.{sys.version_info[1]}"

    message = cli._bundle_python_mismatch()

    assert message is not None, "a bundle built for Python 3.99 was accepted"
    assert "3.99" in message
    assert running in message
    assert "python3.99 oculus.pyz" in message
    assert "make dist" in message
    assert "\n" not in message


def test_mismatch_none_when_matching(monkeypatch, tmp_path):
    _fake_bundle(monkeypatch, tmp_path, {"python": list(sys.version_info[:2]), "platform": platform.machine()})
    assert cli._bundle_python_mismatch() is None


def test_mismatch_message_names_architectures(monkeypatch, tmp_path):
    _fake_bundle(monkeypatch, tmp_path, {"python": list(sys.version_info[:2]), "platform": "riscv128"})

    message = cli._bundle_python_mismatch()

    assert message is not None, "a bundle built for another CPU architecture was accepted"
    assert "riscv128" in message
    assert platform.machine() in message
    assert "make dist" in message
    assert "\n" not in message


def test_mismatch_none_in_checkout(monkeypatch, tmp_path):
    _fake_bundle(monkeypatch, tmp_path, None)
    assert cli._bundle_python_mismatch() is None


def test_mismatch_main_exits_1(monkeypatch, tmp_path, capsys):
    _fake_bundle(monkeypatch, tmp_path, {"python": [3, 99]})

    exit_code = cli.main(["run"])

    captured = capsys.readouterr()
    assert exit_code == 1
    assert captured.out == ""
    assert len(captured.err.strip().splitlines()) == 1, captured.err
    assert captured.err.startswith("error: ")
    assert "Traceback" not in captured.err


def test_mismatch_build_json_written(zipapp):
    """The real bundle records the Python it was built with, which the check compares against."""
    with zipfile.ZipFile(zipapp) as bundle:
        names = [name for name in bundle.namelist() if name.endswith("oculus/_build.json")]
        assert names, "oculus/_build.json is missing from the bundle"
        info = json.loads(bundle.read(names[0]))
    assert info["python"] == list(sys.version_info[:2])


# -- commands handled inside the archive ---------------------------------------------


@pytest.mark.parametrize(("arguments", "status", "expected"), [
    (["--help"], 0, "usage: oculus [-h]"),
    (["run", "--help"], 0, "usage: oculus run"),
    (["version"], 0, "oculus 0."),
    (["--bogus"], 2, "unrecognized arguments: --bogus"),
], ids=["help", "run-help", "version", "usage-error"])
def test_pyz_parses_without_unpacking(zipapp, tmp_path, arguments, status, expected):
    shiv_root = tmp_path / "shiv"
    result = subprocess.run([system_python(), "-X", "importtime", str(zipapp), *arguments], capture_output=True,
                            text=True, timeout=60, env={**os.environ, "SHIV_ROOT": str(shiv_root)})

    assert result.returncode == status, result.stderr
    assert expected in result.stdout + result.stderr
    assert not shiv_root.exists(), "the bundle was unpacked for a command that needs no library"
    imported = [line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()
                if line.startswith("import time")]
    assert "oculus.cli" in imported
    assert "_bootstrap" not in imported, "shiv's bootstrap ran"


def test_pyz_carries_launcher_bytecode(zipapp):
    with zipfile.ZipFile(zipapp) as bundle:
        names = set(bundle.namelist())
        main = bundle.read("__main__.py").decode()
    assert "parse_and_finish_early" in main
    assert {"site-packages/oculus/__init__.pyc", "site-packages/oculus/cli.pyc"} <= names

    archive_packages = str(zipapp) + "/site-packages"
    code = f"import sys; sys.path.insert(0, {archive_packages!r}); from oculus import cli; print(cli.__file__)"
    loaded_from = subprocess.run([system_python(), "-c", code], capture_output=True, text=True, timeout=60).stdout
    assert loaded_from.strip().endswith("oculus/cli.pyc"), "zipimport compiled the source instead"


def test_pyz_check_runs_through_bootstrap(zipapp, tmp_path):
    shiv_root = tmp_path / "shiv"
    result = subprocess.run([system_python(), str(zipapp), "check"], capture_output=True, text=True, timeout=120,
                            cwd=tmp_path, env={**os.environ, "SHIV_ROOT": str(shiv_root)})

    assert result.returncode == 0, result.stderr
    assert "<embedded default>: valid" in result.stdout
    assert any(shiv_root.iterdir()), "check did not run from the unpacked bundle"
