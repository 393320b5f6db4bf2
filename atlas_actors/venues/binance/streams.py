"""One self-healing WebSocket connection in a daemon thread (used by `session.StreamSession`).

`StreamWorker` connects to the URL its factory returns (the factory may do REST work, e.g.
create a listenKey), hands every JSON message to `on_message`, and when the connection
drops reconnects with jittered exponential backoff. It rotates the connection on its own
before Binance's 24 h limit, and calls `on_connected(reconnect)` after every successful
(re)connect so the owner can resync over REST. Callbacks that raise are logged; they never
end the thread.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Any

from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
from websockets.sync.client import ClientConnection, connect

log = logging.getLogger(__name__)

# Binance closes a connection after 24 h; rotate comfortably before.
DEFAULT_ROTATE_AFTER_S = 23 * 3600.0


class StreamWorker:
    def __init__(
        self,
        name: str,
        url_factory: Callable[[], str],
        on_message: Callable[[dict[str, Any]], None],
        *,
        on_connected: Callable[[bool], None] | None = None,
        on_disconnected: Callable[[str], None] | None = None,
        on_idle: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.time,
        rotate_after_s: float = DEFAULT_ROTATE_AFTER_S,
        backoff_initial_s: float = 0.2,
        backoff_max_s: float = 30.0,
        open_timeout_s: float = 5.0,
        recv_timeout_s: float = 0.5,
        rng: random.Random | None = None,
    ) -> None:
        self.name = name
        self._url_factory = url_factory
        self._on_message = on_message
        self._on_connected = on_connected
        self._on_disconnected = on_disconnected
        self._on_idle = on_idle
        self._clock = clock
        self.rotate_after_s = rotate_after_s
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.open_timeout_s = open_timeout_s
        self.recv_timeout_s = recv_timeout_s
        self._rng = rng or random.Random()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._ws: ClientConnection | None = None
        self._ws_lock = threading.Lock()
        self._reconnect_reason: str | None = None
        self.connects = 0  # successful connections so far (tests and status read it)
        self.connected = threading.Event()

    # ---------------------------------------------------------------- control

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"ws-{self.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._close_socket()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("stream %s did not stop within %.1f s", self.name, timeout)
        self._thread = None

    def reconnect(self, reason: str) -> None:
        """Drop the current connection; the worker reconnects (and the owner resyncs)."""
        self._reconnect_reason = reason
        self._close_socket()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # ---------------------------------------------------------------- the loop

    def _close_socket(self) -> None:
        with self._ws_lock:
            ws = self._ws
        if ws is not None:
            try:
                ws.close()
            except Exception:  # closing a broken socket may raise anything; it is gone either way
                log.debug("stream %s: close failed", self.name, exc_info=True)

    def _run(self) -> None:
        attempt = 0
        ever_connected = False
        while not self._stop.is_set():
            reason = "closed"
            rotated = False
            try:
                url = self._url_factory()
                with connect(
                    url,
                    open_timeout=self.open_timeout_s,
                    close_timeout=1.0,
                    max_size=2**22,
                ) as ws:
                    with self._ws_lock:
                        self._ws = ws
                    if self._stop.is_set():
                        break
                    self.connects += 1
                    attempt = 0
                    self._reconnect_reason = None
                    connected_at = self._clock()
                    self.connected.set()
                    self._call(self._on_connected, ever_connected)
                    ever_connected = True
                    reason, rotated = self._read(ws, connected_at)
            except (ConnectionClosed, OSError, InvalidHandshake, InvalidURI, TimeoutError) as exc:
                reason = f"{type(exc).__name__}: {exc}"
            except Exception as exc:  # a failing url factory (REST) must not end the thread
                reason = f"{type(exc).__name__}: {exc}"
                log.warning("stream %s: %s", self.name, reason)
            finally:
                with self._ws_lock:
                    self._ws = None
                self.connected.clear()
            if self._stop.is_set():
                break
            self._call(self._on_disconnected, self._reconnect_reason or reason)
            self._reconnect_reason = None
            if rotated:
                continue
            delay = min(self.backoff_max_s, self.backoff_initial_s * (2**attempt))
            delay *= 0.5 + self._rng.random()  # jitter: many clients must not reconnect in step
            attempt = min(attempt + 1, 16)
            self._stop.wait(delay)

    def _read(self, ws: ClientConnection, connected_at: float) -> tuple[str, bool]:
        while not self._stop.is_set():
            if self._reconnect_reason is not None:
                return self._reconnect_reason, False
            if self._clock() - connected_at >= self.rotate_after_s:
                return "rotating before the 24 h connection limit", True
            try:
                raw = ws.recv(timeout=self.recv_timeout_s)
            except TimeoutError:
                self._call(self._on_idle)
                continue
            try:
                message = json.loads(raw)
            except ValueError:
                log.warning("stream %s: non-JSON message dropped: %.80r", self.name, raw)
                continue
            if isinstance(message, dict):
                self._call(self._on_message, message)
            self._call(self._on_idle)
        return "stopped", False

    def _call(self, fn: Callable[..., None] | None, *args: Any) -> None:
        if fn is None:
            return
        try:
            fn(*args)
        except Exception:
            log.exception("stream %s: callback %s failed", self.name, getattr(fn, "__name__", fn))
