"""sd_notify from the running service: READY only after every SymbolActor is READY, WATCHDOG
pings only while the critical actors answer, STOPPING on shutdown."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from supervisor.notify import Notifier, WatchdogLoop

from .tree_harness import TreeRig, seed_long_position, wait_for

ROOT = Path(__file__).resolve().parents[2]


def notify_socket(tmp_path: Path) -> tuple[socket.socket, str]:
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(0.2)
    return sock, path


def drain(sock: socket.socket, seconds: float) -> list[tuple[float, str]]:
    out = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            out.append((time.monotonic(), sock.recv(4096).decode()))
        except TimeoutError:
            continue
    return out


def test_atlas_run_process_notifies_ready_after_symbols_and_pings(tmp_path):
    sock, path = notify_socket(tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "SENTRY_DSN"}
    env.update(NOTIFY_SOCKET=path, WATCHDOG_USEC="400000")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "supervisor.cli",
            "run",
            "--symbols",
            "BTCUSDC,XRPUSDT",
            "--speed",
            "600",
            "--state-dir",
            str(tmp_path / "state"),
            "--log-dir",
            str(tmp_path / "logs"),
            "--no-admin",
            "--quiet",
            "--run-seconds",
            "3",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        msgs = drain(sock, 8.0)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, proc.stderr[-2000:]
    texts = [m for _, m in msgs]
    ready = [i for i, m in enumerate(texts) if m.startswith("READY=1")]
    assert len(ready) == 1
    pings = [i for i, m in enumerate(texts) if m == "WATCHDOG=1"]
    assert len(pings) >= 3 and min(pings) > ready[0]
    stopping = [i for i, m in enumerate(texts) if m.startswith("STOPPING=1")]
    assert stopping and stopping[0] > max(pings)
    # READY came after every symbol's READY lifecycle record
    recs = (tmp_path / "logs" / "records.jsonl").read_text()
    assert recs.count('"state":"READY"') >= 2


def test_ready_waits_for_recovery_and_pings_stop_with_a_dead_critical_actor(tmp_path):
    sock, path = notify_socket(tmp_path)
    rig = TreeRig(tmp_path, ["AAAUSDT", "BBBUSDT"], shared_restart_intensity=0, ping_interval_s=0.1)
    seed_long_position(rig, "AAAUSDT")
    notifier = Notifier(path, env={})
    try:
        rig.start(ready=False)
        assert rig.tree.wait_ready(15.0)
        notifier.ready("2 symbols READY")
        assert all(rig.lifecycle(s)[-1] == "READY" for s in ("AAAUSDT", "BBBUSDT"))
        loop = WatchdogLoop(notifier, rig.tree.critical_healthy, 0.1)
        loop.start()
        healthy = drain(sock, 1.0)
        assert healthy[0][1].startswith("READY=1")
        assert sum(1 for _, m in healthy if m == "WATCHDOG=1") >= 3
        rig.tree.sentinel.stop()  # a critical actor gone for good (no restarts allowed)
        assert wait_for(lambda: "Sentinel" in rig.tree.given_up, 5.0)
        drain(sock, 0.5)  # a ping already in flight may still arrive
        after = drain(sock, 1.5)
        assert [m for _, m in after if m == "WATCHDOG=1"] == []
        loop.stop()
    finally:
        rig.stop()
        sock.close()
