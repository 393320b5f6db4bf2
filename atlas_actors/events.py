"""§8 records as JSON lines (`<log-dir>/records.jsonl`) and in the LMDB event log.

Record kinds:
  candidate  — every candidate evaluation (contract §8, exact field names)
  risk       — every key risk action (contract §8: event_type, symbol, side, qty, price,
               order_ids, client_ids, reason)
  order      — every order / algo request Atlas sent (role, client id, venue id, status)
  stop_visible / stop_invisible — the Sentinel's verdict on a protective stop
  lifecycle  — actor state changes (STARTING, RECOVERING, READY, ...), restarts
Every record has `kind` and `ts` (epoch seconds of the deciding clock: simulated in
paper/backtest, wall clock in live).
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterable
from typing import Any, Protocol


class RecordSink(Protocol):
    def emit(self, record: dict[str, Any]) -> None: ...


def _json_default(o: Any) -> Any:
    if hasattr(o, "to_dict"):
        return o.to_dict()
    if isinstance(o, set | frozenset | tuple):
        return list(o)
    return str(o)


def dumps(record: dict[str, Any]) -> str:
    return json.dumps(record, separators=(",", ":"), sort_keys=False, default=_json_default)


class JsonlRecordWriter:
    """Appends records to a JSON-lines file; thread-safe; optionally mirrors into the store."""

    def __init__(
        self,
        path: str | os.PathLike[str] | None,
        *,
        store: Any = None,
        scrub: Callable[[str], str] | None = None,
        keep_in_memory: bool = False,
    ) -> None:
        self.path = os.fspath(path) if path is not None else None
        self._store = store
        self._scrub = scrub
        self._lock = threading.Lock()
        self._fh = None
        self.records: list[dict[str, Any]] | None = [] if keep_in_memory else None
        self.counts: dict[str, int] = {}
        if self.path is not None:
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
            # Line-buffered: each record reaches the kernel as it is written, so a SIGKILL loses
            # none (a 64 KB buffer lost every record of a short run); fsync is the store's job.
            self._fh = open(self.path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115

    def emit(self, record: dict[str, Any]) -> None:
        line = dumps(record)
        if self._scrub is not None:
            line = self._scrub(line)
        with self._lock:
            kind = str(record.get("kind", ""))
            self.counts[kind] = self.counts.get(kind, 0) + 1
            if self.records is not None:
                self.records.append(record)
            if self._fh is not None:
                self._fh.write(line + "\n")
            if self._store is not None:
                self._store.append_event(json.loads(line) if self._scrub else record)

    def flush(self) -> None:
        with self._lock:
            if self._fh is not None:
                self._fh.flush()

    def close(self) -> None:
        with self._lock:
            if self._fh is not None:
                self._fh.flush()
                self._fh.close()
                self._fh = None


class MemorySink:
    """Keeps records in a list (tests, backtest)."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def emit(self, record: dict[str, Any]) -> None:
        with self._lock:
            self.records.append(record)


class FanoutSink:
    def __init__(self, sinks: Iterable[RecordSink]) -> None:
        self.sinks = list(sinks)

    def emit(self, record: dict[str, Any]) -> None:
        for s in self.sinks:
            s.emit(record)


def read_records(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read a records.jsonl file; a torn last line (killed mid-write) is ignored."""
    out: list[dict[str, Any]] = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out
