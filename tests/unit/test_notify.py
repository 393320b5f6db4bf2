"""sd_notify: real datagrams on a socket set as NOTIFY_SOCKET."""

from __future__ import annotations

import os
import socket
import threading
import time

import pytest

from supervisor.notify import Notifier, WatchdogLoop


@pytest.fixture
def manager(tmp_path):
    """A datagram socket standing in for systemd's notify socket."""
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(5)
    yield path, sock
    sock.close()


def recv_all(sock: socket.socket, window_s: float = 0.3) -> list[str]:
    """Every datagram that arrives within the next `window_s` seconds (queued ones first)."""
    out: list[str] = []
    deadline = time.monotonic() + window_s
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            out.append(sock.recv(4096).decode())
        except TimeoutError:
            break
    return out


def test_sequence_ready_status_watchdog_stopping(manager, monkeypatch):
    path, sock = manager
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    n = Notifier()
    assert n.enabled and n.watchdog_interval_s() == 15.0
    assert n.ready()
    assert n.status("4 symbols READY\nsecond line")
    assert n.watchdog()
    assert n.watchdog()
    assert n.stopping()
    n.close()
    assert recv_all(sock) == [
        "READY=1",
        "STATUS=4 symbols READY second line",
        "WATCHDOG=1",
        "WATCHDOG=1",
        "STOPPING=1",
    ]


def test_abstract_namespace_socket(monkeypatch):
    name = f"atlas-notify-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    try:
        n = Notifier(f"@{name}")
        assert n.ready("up")
        assert recv_all(sock) == ["READY=1\nSTATUS=up"]
    finally:
        sock.close()


def test_no_notify_socket_is_a_no_op(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    n = Notifier()
    assert not n.enabled
    assert n.ready() is False and n.watchdog() is False and n.stopping() is False
    assert n.watchdog_interval_s() is None


def test_watchdog_meant_for_another_pid_is_ignored():
    n = Notifier("/nonexistent", env={"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "1"})
    assert n.watchdog_interval_s() is None
    n2 = Notifier("/nonexistent", env={"WATCHDOG_USEC": "2000000"})
    assert n2.watchdog_interval_s() == 1.0


def test_send_failure_never_raises(tmp_path):
    n = Notifier(str(tmp_path / "gone.sock"))
    assert n.watchdog() is False
    assert n.status("x") is False


def test_watchdog_loop_pings_only_while_healthy(manager):
    path, sock = manager
    healthy = threading.Event()
    healthy.set()
    status = ["2 symbols READY"]
    loop = WatchdogLoop(
        Notifier(path), healthy.is_set, interval_s=0.05, status_text=lambda: status[0]
    )
    loop.start()
    try:
        time.sleep(0.5)
        first = recv_all(sock, 0.1)
        assert first.count("WATCHDOG=1") >= 3
        assert first.count("STATUS=2 symbols READY") == 1  # sent once, not every tick

        healthy.clear()  # a critical actor stopped answering, for good
        time.sleep(0.15)  # let a tick already in flight finish
        recv_all(sock, 0.1)
        status[0] = "DEGRADED: OrderGateway not answering"
        time.sleep(0.4)
        later = recv_all(sock, 0.1)
        assert "WATCHDOG=1" not in later
        assert later == ["STATUS=DEGRADED: OrderGateway not answering"]
        assert loop.healthy is False

        healthy.set()
        time.sleep(0.3)
        assert "WATCHDOG=1" in recv_all(sock, 0.1)
    finally:
        loop.stop()


def test_health_check_exception_counts_as_unhealthy(manager):
    path, sock = manager

    def broken() -> bool:
        raise RuntimeError("ping timed out")

    loop = WatchdogLoop(Notifier(path), broken, interval_s=1.0)
    assert loop.tick() is False
    assert recv_all(sock, 0.1) == []


def test_bad_interval_rejected():
    with pytest.raises(ValueError):
        WatchdogLoop(Notifier(None, env={}), lambda: True, 0)
