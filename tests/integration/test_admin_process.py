"""The admin socket across real processes: a server killed with SIGKILL leaves its socket file;
the next server replaces it; the `atlas admin` client in its own process talks to it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from supervisor.admin import admin_request

ROOT = Path(__file__).resolve().parents[2]

SERVER = textwrap.dedent(
    """
    import sys, threading
    from supervisor.admin import AdminServer

    class Controller:
        def __init__(self):
            self.paused = set()
        def status(self):
            return {"symbols": {"BTCUSDC": {"state": "PAUSED" if "BTCUSDC" in self.paused else "READY"}}}
        def pause(self, symbol):
            self.paused.add(symbol or "BTCUSDC"); return {"paused": symbol}
        def resume(self, symbol):
            self.paused.discard(symbol or "BTCUSDC"); return {"resumed": symbol}
        def freeze(self, symbol, minutes): return {"symbol": symbol, "minutes": minutes}
        def flatten(self, symbol, operator): return {"flattened": symbol, "reason": operator}
        def state(self, symbol): return {"symbol": symbol}
        def events(self, since, limit): return []
        def restart(self, symbol): return {"restarted": symbol}

    server = AdminServer(sys.argv[1], Controller())
    server.start()
    print("listening", flush=True)
    threading.Event().wait()
    """
)


def start_server(path: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER, path],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "listening"
    return proc


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    code = "import sys; from supervisor.admin import main_admin; sys.exit(main_admin(sys.argv[1:]))"
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def test_killed_server_socket_is_replaced_and_cli_works(tmp_path: Path) -> None:
    path = str(tmp_path / "admin.sock")
    first = start_server(path)
    try:
        assert admin_request(path, {"cmd": "status"})["ok"]
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    assert os.path.exists(path)  # left behind: the process had no chance to clean up
    down = cli("--socket", path, "status")
    assert down.returncode == 2 and path in down.stderr

    second = start_server(path)
    try:
        ok = cli("--socket", path, "pause", "BTCUSDC")
        assert ok.returncode == 0, ok.stderr
        table = cli("--socket", path, "status")
        assert table.returncode == 0 and "PAUSED" in table.stdout
        raw = cli("--socket", path, "--json", "flatten", "all")
        reply = json.loads(raw.stdout)
        assert reply == {
            "ok": True,
            "result": {"flattened": "all", "reason": f"admin uid={os.getuid()}"},
        }
        bad = cli("--socket", path, "freeze", "BTCUSDC", "0")
        assert bad.returncode == 1 and "invalid minutes" in bad.stderr
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(10)
