"""sd_notify: tell systemd we are ready, alive, what we are doing, and that we are stopping.

The protocol is a datagram of `KEY=VALUE` lines to the unix socket named by `$NOTIFY_SOCKET`
(a leading `@` means the abstract namespace). Without `NOTIFY_SOCKET` (not under systemd)
every call is a no-op. Sending never raises: a lost notification must not take the service
down, and systemd's watchdog notices anyway if pings stop arriving.

`WatchdogLoop` sends `WATCHDOG=1` only while `is_healthy()` says the critical actors answer,
so a wedged service is restarted by systemd (`WatchdogSec=`) instead of looking alive.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)

MAX_STATUS_LEN = 200


class Notifier:
    def __init__(
        self, socket_path: str | None = None, *, env: Mapping[str, str] | None = None
    ) -> None:
        env = os.environ if env is None else env
        self.socket_path = socket_path if socket_path is not None else env.get("NOTIFY_SOCKET")
        self._watchdog_usec = env.get("WATCHDOG_USEC")
        self._watchdog_pid = env.get("WATCHDOG_PID")
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._warned = False

    @property
    def enabled(self) -> bool:
        return bool(self.socket_path)

    def _address(self) -> str | bytes:
        assert self.socket_path
        if self.socket_path.startswith("@"):
            return b"\0" + self.socket_path[1:].encode()
        return self.socket_path

    def notify(self, message: str) -> bool:
        """Send one raw notification; True when it was handed to the socket."""
        if not self.socket_path:
            return False
        with self._lock:
            try:
                if self._sock is None:
                    self._sock = socket.socket(
                        socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC
                    )
                self._sock.sendto(message.encode("utf-8"), self._address())
                return True
            except OSError as exc:
                if not self._warned:  # once: a missing manager socket would flood the log
                    log.warning("sd_notify to %s failed: %s", self.socket_path, exc)
                    self._warned = True
                return False

    def ready(self, status: str | None = None) -> bool:
        extra = f"\nSTATUS={_one_line(status)}" if status else ""
        return self.notify(f"READY=1{extra}")

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={_one_line(text)}")

    def stopping(self, status: str | None = None) -> bool:
        extra = f"\nSTATUS={_one_line(status)}" if status else ""
        return self.notify(f"STOPPING=1{extra}")

    def watchdog_interval_s(self) -> float | None:
        """Half of systemd's watchdog timeout (its own advice), None when no watchdog is set
        for this process."""
        if not self._watchdog_usec:
            return None
        if self._watchdog_pid and self._watchdog_pid != str(os.getpid()):
            return None  # the watchdog is meant for another process (we were forked or exec'd)
        try:
            usec = int(self._watchdog_usec)
        except ValueError:
            return None
        return usec / 2 / 1_000_000 if usec > 0 else None

    def close(self) -> None:
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None


def _one_line(text: str) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= MAX_STATUS_LEN else line[: MAX_STATUS_LEN - 3] + "..."


class WatchdogLoop:
    """A daemon thread: every `interval_s`, WATCHDOG=1 if `is_healthy()`, and STATUS= when
    `status_text()` changed. An exception from either counts as unhealthy / no status."""

    def __init__(
        self,
        notifier: Notifier,
        is_healthy: Callable[[], bool],
        interval_s: float,
        *,
        status_text: Callable[[], str] | None = None,
    ) -> None:
        if interval_s <= 0:
            raise ValueError(f"watchdog interval must be > 0, got {interval_s}")
        self.notifier = notifier
        self.is_healthy = is_healthy
        self.interval_s = interval_s
        self.status_text = status_text
        self.healthy = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_status: str | None = None
        self._was_healthy: bool | None = None

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("watchdog loop already started")
        self._thread = threading.Thread(target=self._run, name="sd-watchdog", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def tick(self) -> bool:
        """One round (the thread calls it; tests may too). Returns whether it pinged."""
        try:
            healthy = bool(self.is_healthy())
        except Exception:
            log.exception("watchdog health check failed")
            healthy = False
        self.healthy = healthy
        if healthy != self._was_healthy:
            if not healthy:
                log.error("critical actors not answering: withholding watchdog pings")
            elif self._was_healthy is not None:
                log.warning("critical actors answering again: watchdog pings resumed")
            self._was_healthy = healthy
        if healthy:
            self.notifier.watchdog()
        if self.status_text is not None:
            try:
                text = _one_line(self.status_text())
            except Exception:
                log.exception("status line failed")
                text = None
            if text and text != self._last_status:
                self.notifier.status(text)
                self._last_status = text
        return healthy

    def _run(self) -> None:
        while not self._stop.is_set():
            self.tick()
            self._stop.wait(self.interval_s)
