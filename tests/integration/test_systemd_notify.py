"""sd_notify from a real child process, as systemd would see it.

The child is started with NOTIFY_SOCKET / WATCHDOG_USEC / WATCHDOG_PID like a Type=notify
service: it sends READY=1 once its (stand-in) actors are up, pings WATCHDOG=1 while a health
file says healthy, and sends STOPPING=1 on SIGTERM. Removing the health file = a critical actor
stopped for good: the pings must stop while the process keeps running."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

CHILD = textwrap.dedent(
    """
    import os, signal, sys, threading
    from supervisor.notify import Notifier, WatchdogLoop

    health = sys.argv[1]
    notifier = Notifier()
    interval = notifier.watchdog_interval_s()
    assert interval is not None, "WATCHDOG_USEC/WATCHDOG_PID not honoured"
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    notifier.ready("2 symbols READY")
    loop = WatchdogLoop(
        notifier,
        lambda: os.path.exists(health),
        interval,
        status_text=lambda: "healthy" if os.path.exists(health) else "DEGRADED: gateway silent",
    )
    loop.start()
    stop.wait(60)
    loop.stop()
    notifier.stopping()
    """
)


def collect(sock: socket.socket, seconds: float) -> list[str]:
    out: list[str] = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            out.append(sock.recv(4096).decode())
        except TimeoutError:
            break
    return out


def test_child_process_notifies_ready_watchdog_and_stopping(tmp_path: Path) -> None:
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    health = tmp_path / "healthy"
    health.write_text("1")
    # WATCHDOG_PID must name the child itself: start it through a shell that exports $$ and
    # execs python, so the pid systemd would set is the one the notifier checks.
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = {
        **os.environ,
        "NOTIFY_SOCKET": path,
        "WATCHDOG_USEC": "200000",  # 0.2 s: pings every 0.1 s
        "PYTHONPATH": str(ROOT),
    }
    proc = subprocess.Popen(
        ["/bin/sh", "-c", f'WATCHDOG_PID=$$ exec "{sys.executable}" "{script}" "{health}"'],
        env=env,
        cwd=ROOT,
    )
    try:
        first = collect(sock, 2.0)
        assert first[0] == "READY=1\nSTATUS=2 symbols READY"
        assert first.count("WATCHDOG=1") >= 5
        assert "STATUS=healthy" in first

        health.unlink()  # a critical actor stops answering, permanently
        collect(sock, 0.5)  # pings in flight
        later = collect(sock, 1.0)
        assert "WATCHDOG=1" not in later
        assert proc.poll() is None  # still running: systemd's watchdog will restart it

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        assert collect(sock, 0.3)[-1] == "STOPPING=1"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        sock.close()
