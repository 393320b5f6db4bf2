"""The shipped systemd units: `systemd-analyze verify` prints nothing, security exposure <= 2.0.

`verify` checks that ExecStart's binary exists, and /opt/atlas is not installed on a test
machine, so each test verifies a copy whose ExecStart points at an executable stub in a temp
dir; nothing else in the unit changes. The units use DynamicUser=yes, so no `atlas` account
has to exist for `verify` (or on the host)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UNITS = ROOT / "systemd"
SHIPPED_EXEC = "/opt/atlas/.venv/bin/atlas"
ANALYZE = shutil.which("systemd-analyze")


def analyze(*args: str) -> subprocess.CompletedProcess[str]:
    assert ANALYZE, "systemd-analyze missing: install Debian's systemd package (see .ci/run)"
    return subprocess.run(
        [ANALYZE, *args], capture_output=True, text=True, timeout=120, check=False
    )


@pytest.fixture
def unit_dir(tmp_path: Path) -> Path:
    stub = tmp_path / "bin" / "atlas"
    stub.parent.mkdir()
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    for name in ("atlas.service", "atlas@.service"):
        text = (UNITS / name).read_text()
        assert SHIPPED_EXEC in text
        (tmp_path / name).write_text(text.replace(SHIPPED_EXEC, str(stub)))
    return tmp_path


@pytest.mark.parametrize("unit", ["atlas.service", "atlas@main.service"])
def test_verify_prints_nothing(unit_dir: Path, unit: str) -> None:
    proc = analyze("verify", str(unit_dir / unit))
    assert proc.returncode == 0 and proc.stdout == "" and proc.stderr == "", (
        proc.stdout + proc.stderr
    )


def test_verify_would_catch_a_mistake(unit_dir: Path) -> None:
    """Guard against a verify that checks nothing: a typo must produce output."""
    broken = unit_dir / "broken.service"
    broken.write_text((unit_dir / "atlas.service").read_text().replace("UMask=", "UMsk="))
    proc = analyze("verify", str(broken))
    assert "UMsk" in proc.stdout + proc.stderr


@pytest.mark.parametrize("unit", ["atlas.service", "atlas@main.service"])
def test_security_exposure_at_most_2(unit_dir: Path, unit: str) -> None:
    proc = analyze("security", "--offline=true", str(unit_dir / unit))
    out = proc.stdout + proc.stderr
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", out)
    assert match, out
    assert float(match.group(1)) <= 2.0, out


def directives(name: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in (UNITS / name).read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "[")) and "=" in line:
            key, _, value = line.partition("=")
            out.setdefault(key, []).append(value)
    return out


@pytest.mark.parametrize("name", ["atlas.service", "atlas@.service"])
def test_required_settings(name: str) -> None:
    d = directives(name)
    expected = {
        "Type": "notify",
        "NotifyAccess": "main",
        "WatchdogSec": "30",
        "Restart": "on-failure",
        "DynamicUser": "yes",
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "CapabilityBoundingSet": "",
        "AmbientCapabilities": "",
        "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
        "SystemCallArchitectures": "native",
        "MemoryDenyWriteExecute": "yes",
        "UMask": "0077",
        "KillSignal": "SIGTERM",
    }
    for key, value in expected.items():
        assert d.get(key) == [value], (key, d.get(key))
    assert "@system-service" in d["SystemCallFilter"]
    creds = sorted(v.split(":")[0] for v in d["LoadCredential"])
    assert creds == ["binance-api-key", "binance-api-secret", "sentry-dsn"]
    (exec_start,) = d["ExecStart"]
    assert exec_start.startswith(f"{SHIPPED_EXEC} run --config /etc/atlas/")
    assert "--state-dir ${STATE_DIRECTORY}" in exec_start
    assert "IPAddressDeny" not in d and "PrivateNetwork" not in d  # it must reach the exchange


def test_template_separates_instances() -> None:
    d = directives("atlas@.service")
    assert d["StateDirectory"] == ["atlas/%i"] and d["RuntimeDirectory"] == ["atlas/%i"]
    assert d["LogsDirectory"] == ["atlas/%i"] and d["User"] == ["atlas-%i"]
    assert "--config /etc/atlas/%i.toml" in d["ExecStart"][0]
    assert all("atlas@%i." in v for v in d["LoadCredential"])
    single = directives("atlas.service")
    assert single["StateDirectory"] == ["atlas"] and single["RuntimeDirectory"] == ["atlas"]
