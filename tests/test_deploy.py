"""configs/oculus.service: systemd accepts it, and it keeps the settings the deploy guide relies on."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parent.parent / "configs" / "oculus.service"


def unit_settings() -> dict[str, list[str]]:
    """Return every Key=value of the unit, with the values of repeated keys in order."""
    settings: dict[str, list[str]] = {}
    for line in UNIT.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith(("#", "[")):
            continue
        key, _, value = line.partition("=")
        settings.setdefault(key, []).append(value)
    return settings


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_unit_passes_systemd_analyze_verify(tmp_path):
    unit = tmp_path / "oculus.service"
    shutil.copy(UNIT, unit)
    result = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


@pytest.mark.parametrize("key, value", [
    ("Type", "notify"),
    ("WatchdogSec", "60s"),
    ("Restart", "on-failure"),
    ("DynamicUser", "yes"),
    ("StateDirectory", "oculus"),
    ("CacheDirectory", "oculus"),
    ("Environment", "SHIV_ROOT=/var/cache/oculus"),
    ("Environment", "OCULUS_DB_PATH=/var/lib/oculus/oculus.duckdb"),
    ("ProtectSystem", "strict"),
    ("NoNewPrivileges", "yes"),
    ("AmbientCapabilities", "CAP_NET_RAW"),
    ("CapabilityBoundingSet", "CAP_NET_RAW"),
])
def test_unit_setting(key, value):
    assert value in unit_settings().get(key, []), f"{UNIT.name} lacks {key}={value}"
