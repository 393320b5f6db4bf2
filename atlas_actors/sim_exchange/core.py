"""The sim exchange's shared state (declared here, set up by `SimExchangeServer.__init__`):
known symbols, the algo -> symbol index, the saved state file, and the server clock."""

from __future__ import annotations

import asyncio
import json
import os
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from atlas_actors.venues.sim import SimVenue

if TYPE_CHECKING:
    from atlas_actors.sim_exchange.replayer import Replayer
    from atlas_actors.sim_exchange.routes import Route
    from atlas_actors.sim_exchange.streams import Conn
    from atlas_actors.sim_exchange.wire import WireRequest


@dataclass
class HttpFault:
    """A reply armed by `arm_http_fault` (admin), taken by the REST path (rest)."""

    path: str
    method: str
    status: int
    code: int
    msg: str | None
    times: int | None
    after_apply: bool
    retry_after: float | None


class ServerCore:
    """What every part of the server shares."""

    venue: SimVenue
    host: str
    port: int
    ws_port: int
    api_key: str
    _secret: bytes
    state_path: Path | None
    _clock: Callable[[], float]
    weight_limit: int
    clock_skew_ms: int
    save_interval_s: float
    requests: deque[WireRequest]
    _lock: threading.Lock
    _symbols: list[str]
    _weight_minute: int
    _weight_used: int
    _http_faults: list[HttpFault]
    _listen_keys: dict[str, float]  # key -> expires at (wall seconds)
    _streams_down: set[str]
    _algo_symbols: dict[str, str]  # "id:<algoId>" / "cid:<clientAlgoId>" -> symbol
    _next_cid: int
    _conns: set[Conn]
    _loop: asyncio.AbstractEventLoop | None
    _executor: ThreadPoolExecutor
    _replay: Replayer | None
    _routes: dict[tuple[str, str], Route]

    def _now_ms(self) -> int:
        return int(self._clock() * 1000) + self.clock_skew_ms

    # ================================================================== state

    def save_state(self) -> None:
        """Write the venue snapshot (+ replay cursor) atomically to `state_path`."""
        if self.state_path is None:
            return
        state = {
            "venue": self.venue.snapshot(),
            "replay": self._replay.cursor() if self._replay is not None else None,
            "symbols": list(self._symbols),
        }
        tmp = self.state_path.with_suffix(self.state_path.suffix + ".tmp")
        tmp.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(state))
        os.replace(tmp, self.state_path)

    @staticmethod
    def load_state(path: str | Path) -> tuple[SimVenue, dict[str, Any]]:
        """The venue and the rest of a saved state (replay cursor, symbols)."""
        p = Path(path)
        try:
            state = json.loads(p.read_text())
        except (OSError, ValueError) as exc:
            raise ValueError(f"{p}: unreadable sim exchange state: {exc}") from exc
        if not isinstance(state, dict) or "venue" not in state:
            raise ValueError(f"{p}: not a sim exchange state file (no 'venue' key)")
        return SimVenue.from_snapshot(state["venue"]), state

    def _index_existing_algos(self) -> None:
        for algo in self.venue.snapshot().get("algos", []):
            self._index_algo(str(algo["algo_id"]), str(algo["client_algo_id"]), algo["symbol"])
        for sym in self.venue.snapshot().get("symbols", {}):
            self.add_known_symbol(sym)

    def add_known_symbol(self, symbol: str) -> None:
        with self._lock:
            if symbol not in self._symbols:
                self._symbols.append(symbol)

    @property
    def symbols(self) -> list[str]:
        return list(self._symbols)

    def _index_algo(self, algo_id: str, client_algo_id: str, symbol: str) -> None:
        with self._lock:
            self._algo_symbols[f"id:{algo_id}"] = symbol
            if client_algo_id:
                self._algo_symbols[f"cid:{client_algo_id}"] = symbol
