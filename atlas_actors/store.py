"""LMDB StateStore (contract §2): per-symbol shards, an append-only event log and a meta DB.

Layout of one store directory (one LMDB environment, opened once per process):

* ``sym:<SYMBOL>`` - one named DB per symbol (its shard); the state lives under key ``state``
* ``events``       - append-only log, keys are big-endian 8-byte sequence numbers (from 1)
* ``meta``         - ``schema_version`` plus small dict values (paper venue book, replay cursor)
* ``atlas.lock``   - ``flock``-held by the owning process, its pid inside

Values are msgpack of plain dicts. Writes are buffered in memory and reach disk only in
`flush()`, which commits everything buffered in ONE synced write transaction: a crash
loses the unflushed tail and nothing else, and every reader after a restart sees one
flush generation across all symbols. Reads see buffered writes first.

Threading: many actor threads call `set_symbol_state` / `append_event` concurrently while
a flusher calls `flush()`. The buffer is guarded by one lock; only `flush()` opens write
transactions. Growing the map on `MapFullError` needs no transaction active in the
process, so every transaction runs under a shared gate that the grow takes exclusively.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import struct
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import lmdb
import msgpack  # type: ignore[import-untyped]

from atlas_actors.domain.records import (
    SCHEMA_VERSION,
    RecordError,
    SymbolState,
    default_symbol_state,
)

DEFAULT_MAP_SIZE = 64 * 1024 * 1024
LOCK_FILE = "atlas.lock"
STATE_KEY = b"state"
SCHEMA_KEY = "schema_version"
_SYM_PREFIX = b"sym:"
_SEQ = struct.Struct(">Q")
_MAX_SYMBOL_BYTES = 200


class StoreError(Exception):
    """Any failure of the state store; the message names the directory and what went wrong."""


class StoreCorrupt(StoreError):
    """A stored value cannot be decoded. `symbol` (or `seq` / `meta_key`) says which one."""

    def __init__(
        self,
        message: str,
        *,
        symbol: str | None = None,
        seq: int | None = None,
        meta_key: str | None = None,
    ) -> None:
        super().__init__(message)
        self.symbol = symbol
        self.seq = seq
        self.meta_key = meta_key


class StoreAlreadyOpen(StoreError):
    """This process already has the directory open (LMDB allows one environment per process)."""


class StoreLocked(StoreError):
    """Another live process holds the store directory."""

    def __init__(self, message: str, *, holder_pid: int | None) -> None:
        super().__init__(message)
        self.holder_pid = holder_pid


# Resolved directories open in this process -> guard against a second environment.
_OPEN_DIRS: set[str] = set()
_OPEN_DIRS_LOCK = threading.Lock()


class _TxnGate:
    """Shared/exclusive gate: transactions enter shared; a map resize enters exclusive.

    Writer-preferring so a resize is not starved by a steady stream of reads. `shared` is
    the gate itself (a plain context manager: it sits on every read's path).
    """

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._active = 0
        self._exclusive_waiting = 0
        self._exclusive = False

    def shared(self) -> _TxnGate:
        return self

    def __enter__(self) -> None:
        with self._cond:
            while self._exclusive or self._exclusive_waiting:
                self._cond.wait()
            self._active += 1

    def __exit__(self, *exc: object) -> None:
        with self._cond:
            self._active -= 1
            if self._active == 0 and self._exclusive_waiting:
                self._cond.notify_all()

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._cond:
            self._exclusive_waiting += 1
            while self._exclusive or self._active:
                self._cond.wait()
            self._exclusive_waiting -= 1
            self._exclusive = True
        try:
            yield
        finally:
            with self._cond:
                self._exclusive = False
                self._cond.notify_all()


class _Buffer:
    """Writes not yet committed (encoded at call time so later caller mutation cannot leak in)."""

    __slots__ = ("states", "events", "meta")

    def __init__(self) -> None:
        self.states: dict[str, bytes] = {}
        self.events: list[tuple[int, bytes]] = []
        self.meta: dict[str, bytes] = {}

    def __bool__(self) -> bool:
        return bool(self.states or self.events or self.meta)


class StateStore:
    """Contract §2 StateStore on LMDB. See the module docstring for layout and guarantees."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        map_size: int = DEFAULT_MAP_SIZE,
        lock: bool = True,
        max_dbs: int = 4096,
        max_readers: int = 1024,
    ) -> None:
        """Open (creating if missing) the store directory `path` and `load()` it.

        `lock=False` skips the single-owner ``atlas.lock`` (for inspection tools running
        beside the service); LMDB's own reader/writer locking stays on either way.
        """
        self.path = Path(path).resolve()
        self._dir = str(self.path)
        self._packers = threading.local()
        self._buf_lock = threading.Lock()  # guards _pending, _inflight, _dbs, _next_seq
        self._flush_lock = threading.Lock()  # one write transaction at a time
        self._dbi_lock = threading.Lock()  # LMDB: open_db must not run in concurrent txns
        self._gate = _TxnGate()
        self._pending = _Buffer()
        self._inflight: _Buffer | None = None  # being committed by flush(); still readable
        self._dbs: dict[str, Any] = {}  # symbol -> shard handle
        self._next_seq = 1
        self._schema_version = SCHEMA_VERSION
        self._closed = True
        self._lock_fd: int | None = None
        self._exclusive = lock
        self._stats: dict[str, float] = {
            "flushes": 0,
            "flush_last_s": 0.0,
            "flush_max_s": 0.0,
            "map_grows": 0,
        }

        with _OPEN_DIRS_LOCK:
            if self._dir in _OPEN_DIRS:
                raise StoreAlreadyOpen(
                    f"state store {self._dir} is already open in this process "
                    "(one LMDB environment per process): share the existing StateStore"
                )
            _OPEN_DIRS.add(self._dir)
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            if lock:
                self._lock_fd = _acquire_dir_lock(self.path)
            try:
                self._env = lmdb.open(
                    self._dir,
                    map_size=map_size,
                    subdir=True,
                    max_dbs=max_dbs,
                    max_readers=max_readers,
                    sync=True,
                    metasync=True,
                    lock=True,
                )
            except lmdb.Error as exc:
                raise StoreError(f"cannot open LMDB state store {self._dir}: {exc}") from exc
            self._events_db = self._env.open_db(b"events", create=True)
            self._meta_db = self._env.open_db(b"meta", create=True)
            self._closed = False
            self.load()  # may refuse (newer schema, corrupt meta): the except closes again
        except BaseException:
            if not self._closed:
                self._closed = True
                self._env.close()
            self._release()
            raise

    # ------------------------------------------------------------------ contract §2

    def load(self) -> None:
        """Read what is on disk: schema version, existing shards, the event log's tail.

        Buffered writes are kept. Called by the constructor; calling it again re-scans
        (useful with ``lock=False`` while another process writes).
        """
        self._check_open()
        with self._flush_lock:
            # A write txn (that writes nothing) because shard handles opened in a read txn
            # close again when py-lmdb recycles it as a spare instead of committing it.
            with self._gate.shared(), self._dbi_lock, self._env.begin(write=True) as txn:
                raw_version = txn.get(SCHEMA_KEY.encode(), db=self._meta_db)
                found: dict[str, Any] = {}
                cursor = txn.cursor()
                if cursor.set_range(_SYM_PREFIX):
                    for key in cursor.iternext(values=False):
                        if not key.startswith(_SYM_PREFIX):
                            break
                        symbol = key[len(_SYM_PREFIX) :].decode("utf-8", "replace")
                        found[symbol] = self._env.open_db(key, txn=txn, create=False)
                ev_cursor = txn.cursor(db=self._events_db)
                last_seq = _SEQ.unpack(ev_cursor.key())[0] if ev_cursor.last() else 0
            stored_version = self._decode_schema_version(raw_version)
            if stored_version > SCHEMA_VERSION:
                raise StoreError(
                    f"state store {self._dir} has schema_version {stored_version}, newer than "
                    f"this Atlas ({SCHEMA_VERSION}); upgrade Atlas or point at another state dir"
                )
            if stored_version < SCHEMA_VERSION and self._exclusive:
                # Older shards load through SymbolState.from_dict (missing fields default).
                stamp = _Buffer()
                stamp.meta[SCHEMA_KEY] = self._pack(SCHEMA_VERSION)
                self._commit(stamp)
                stored_version = SCHEMA_VERSION
            with self._buf_lock:
                self._schema_version = stored_version
                self._dbs.update(found)
                self._next_seq = max(self._next_seq, last_seq + 1)

    def flush(self) -> None:
        """Commit every buffered write in one synced transaction (atomic across symbols)."""
        self._check_open()
        with self._flush_lock:
            with self._buf_lock:
                if not self._pending:
                    return
                batch, self._pending = self._pending, _Buffer()
                self._inflight = batch
            started = time.perf_counter()
            try:
                created = self._commit(batch)
            except BaseException:
                with self._buf_lock:
                    # Put the batch back under anything written meanwhile (newer wins).
                    batch.states.update(self._pending.states)
                    batch.events.extend(self._pending.events)
                    batch.meta.update(self._pending.meta)
                    self._pending = batch
                    self._inflight = None
                raise
            with self._buf_lock:
                self._dbs.update(created)
                self._inflight = None
            elapsed = time.perf_counter() - started
            self._stats["flushes"] += 1
            self._stats["flush_last_s"] = elapsed
            self._stats["flush_max_s"] = max(self._stats["flush_max_s"], elapsed)

    def get_symbol_state(self, symbol: str) -> dict[str, Any]:
        """The symbol's state as a plain dict (buffered write first); default if unknown."""
        self._check_open()
        with self._buf_lock:
            blob = self._pending.states.get(symbol)
            if blob is None and self._inflight is not None:
                blob = self._inflight.states.get(symbol)
            db = self._dbs.get(symbol)
        if blob is not None:
            return self._decode_state(symbol, blob, buffered=True)
        if db is None:
            db = self._lookup_foreign_shard(symbol)
            if db is None:
                return default_symbol_state(symbol)
        with self._gate.shared(), self._env.begin() as txn:
            blob = txn.get(STATE_KEY, db=db)
        if blob is None:
            return default_symbol_state(symbol)
        return self._decode_state(symbol, blob, buffered=False)

    def set_symbol_state(self, symbol: str, state: Mapping[str, Any] | SymbolState) -> None:
        """Buffer the symbol's new state (plain-dict form of SymbolState); `flush()` persists."""
        self._check_open()
        _check_symbol(symbol)
        if isinstance(state, SymbolState):
            state = state.to_dict()
        if not isinstance(state, Mapping):
            raise StoreError(
                f"set_symbol_state({symbol!r}): state must be a dict, got {type(state).__name__}"
            )
        blob = self._encode(state, f"state of symbol {symbol!r}")
        with self._buf_lock:
            self._pending.states[symbol] = blob

    def append_event(self, event: Mapping[str, Any]) -> int:
        """Buffer one event for the append-only log; returns its sequence number."""
        self._check_open()
        if not isinstance(event, Mapping):
            raise StoreError(f"append_event: event must be a dict, got {type(event).__name__}")
        if "seq" in event:
            raise StoreError("append_event: the event must not carry 'seq'; the store assigns it")
        blob = self._encode(event, "event")
        with self._buf_lock:
            seq = self._next_seq
            self._next_seq += 1
            self._pending.events.append((seq, blob))
        return seq

    # ------------------------------------------------------------------ extras

    def iter_events(self, since: int = 0, limit: int | None = None) -> list[dict[str, Any]]:
        """Events with seq > `since`, oldest first (buffered ones included), each with `seq`."""
        self._check_open()
        if limit is not None and limit <= 0:
            return []
        since = max(0, since)
        with self._buf_lock:
            buffered = list(self._inflight.events) if self._inflight is not None else []
            buffered.extend(self._pending.events)
        # Disk holds every seq below the first buffered one; reading only that far avoids
        # seeing a batch twice if a flush commits between the snapshot and this read.
        disk_below = buffered[0][0] if buffered else None
        out: list[dict[str, Any]] = []
        with self._gate.shared(), self._env.begin() as txn:
            cursor = txn.cursor(db=self._events_db)
            if cursor.set_range(_SEQ.pack(since + 1)):
                for key, blob in cursor.iternext():
                    seq = _SEQ.unpack(key)[0]
                    if disk_below is not None and seq >= disk_below:
                        break
                    out.append(self._decode_event(seq, blob))
                    if limit is not None and len(out) >= limit:
                        return out
        for seq, blob in buffered:
            if seq <= since:
                continue
            out.append(self._decode_event(seq, blob))
            if limit is not None and len(out) >= limit:
                break
        return out

    def last_event_seq(self) -> int:
        """The highest sequence number handed out (buffered events included); 0 if none."""
        self._check_open()
        with self._buf_lock:
            return self._next_seq - 1

    def symbols(self) -> list[str]:
        """Every symbol with a stored or buffered state, sorted."""
        self._check_open()
        with self._buf_lock:
            names = set(self._dbs) | set(self._pending.states)
            if self._inflight is not None:
                names |= set(self._inflight.states)
        return sorted(names)

    def put_meta(self, key: str, value: Mapping[str, Any]) -> None:
        """Buffer a small dict under `key`; flushed atomically with states and events."""
        self._check_open()
        if not isinstance(key, str) or not key or key == SCHEMA_KEY:
            raise StoreError(f"put_meta: invalid or reserved meta key {key!r}")
        if not isinstance(value, Mapping):
            raise StoreError(f"put_meta({key!r}): value must be a dict, got {type(value).__name__}")
        blob = self._encode(value, f"meta {key!r}")
        with self._buf_lock:
            self._pending.meta[key] = blob

    def get_meta(self, key: str) -> dict[str, Any] | None:
        """The dict stored under `key` (buffered first), or None."""
        self._check_open()
        with self._buf_lock:
            blob = self._pending.meta.get(key)
            if blob is None and self._inflight is not None:
                blob = self._inflight.meta.get(key)
        if blob is None:
            with self._gate.shared(), self._env.begin() as txn:
                blob = txn.get(key.encode(), db=self._meta_db)
            if blob is None:
                return None
        try:
            value = msgpack.unpackb(blob, raw=False, strict_map_key=False)
        except Exception as exc:
            raise StoreCorrupt(
                f"state store {self._dir}: meta {key!r} cannot be decoded: {exc}", meta_key=key
            ) from exc
        if not isinstance(value, dict):
            raise StoreCorrupt(
                f"state store {self._dir}: meta {key!r} is {type(value).__name__}, not a dict",
                meta_key=key,
            )
        return value

    @property
    def schema_version(self) -> int:
        return self._schema_version

    def flush_stats(self) -> dict[str, float]:
        """Flush count, last/max flush seconds, map grows and the current map size."""
        stats = dict(self._stats)
        if not self._closed:
            stats["map_size"] = self._env.info()["map_size"]
        return stats

    def close(self, *, flush: bool = True) -> None:
        """Flush (unless told not to) and release the environment and the directory lock."""
        if self._closed:
            return
        try:
            if flush:
                self.flush()
        finally:
            with self._flush_lock, self._gate.exclusive():
                self._closed = True
                self._env.close()
            self._release()

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        # After an exception the buffered tail may be half-done: keep the last flush.
        self.close(flush=exc_type is None)

    def __repr__(self) -> str:
        return f"StateStore({self._dir!r}{', closed' if self._closed else ''})"

    # ------------------------------------------------------------------ internals

    def _commit(self, batch: _Buffer) -> dict[str, Any]:
        """Write `batch` in one transaction, growing the map on MapFullError. Returns new shards."""
        new_symbols = [s for s in batch.states if s not in self._dbs]
        while True:
            created: dict[str, Any] = {}
            try:
                # Creating a shard is open_db inside the write txn: no other txn may call
                # open_db until this one ends, so hold the dbi lock for its whole life.
                dbi_guard = self._dbi_lock if new_symbols else contextlib.nullcontext()
                with self._gate.shared(), dbi_guard, self._env.begin(write=True) as txn:
                    for symbol in new_symbols:
                        created[symbol] = self._env.open_db(
                            _SYM_PREFIX + symbol.encode(), txn=txn, create=True
                        )
                    for symbol, blob in batch.states.items():
                        db = created.get(symbol)
                        txn.put(STATE_KEY, blob, db=db if db is not None else self._dbs[symbol])
                    for seq, blob in batch.events:
                        txn.put(_SEQ.pack(seq), blob, db=self._events_db, append=True)
                    for key, blob in batch.meta.items():
                        txn.put(key.encode(), blob, db=self._meta_db)
                return created
            except lmdb.MapFullError:
                self._grow_map()
            except lmdb.Error as exc:
                raise StoreError(f"flush of state store {self._dir} failed: {exc}") from exc

    def _grow_map(self) -> None:
        with self._gate.exclusive():
            new_size = self._env.info()["map_size"] * 2
            self._env.set_mapsize(new_size)
        self._stats["map_grows"] += 1

    def _lookup_foreign_shard(self, symbol: str) -> Any:
        # As sole owner every shard is known (found by load() or created by flush()).
        # Without the lock another process may have created it since.
        if self._exclusive:
            return None
        with self._gate.shared(), self._dbi_lock, self._env.begin(write=True) as txn:
            try:
                db = self._env.open_db(_SYM_PREFIX + symbol.encode(), txn=txn, create=False)
            except lmdb.NotFoundError:
                return None
        with self._buf_lock:
            self._dbs.setdefault(symbol, db)
        return db

    def _pack(self, obj: Any) -> bytes:
        packer = getattr(self._packers, "packer", None)
        if packer is None:
            packer = msgpack.Packer(use_bin_type=True, autoreset=True)
            self._packers.packer = packer
        blob: bytes = packer.pack(obj)
        return blob

    def _encode(self, obj: Mapping[str, Any], what: str) -> bytes:
        try:
            return self._pack(obj if isinstance(obj, dict) else dict(obj))
        except (TypeError, ValueError, OverflowError) as exc:
            raise StoreError(f"{what} cannot be encoded as msgpack: {exc}") from exc

    def _decode_state(self, symbol: str, blob: bytes, *, buffered: bool) -> dict[str, Any]:
        where = "buffered (not yet flushed)" if buffered else f"stored in {self._dir}"
        try:
            raw = msgpack.unpackb(blob, raw=False, strict_map_key=False)
        except Exception as exc:  # msgpack raises several unrelated types on garbage
            raise StoreCorrupt(
                f"state of symbol {symbol!r} {where} is not valid msgpack: {exc}", symbol=symbol
            ) from exc
        try:
            return SymbolState.from_dict(raw).to_dict()
        except RecordError as exc:
            raise StoreCorrupt(
                f"state of symbol {symbol!r} {where} is invalid: {exc}", symbol=symbol
            ) from exc

    def _decode_event(self, seq: int, blob: bytes) -> dict[str, Any]:
        try:
            event = msgpack.unpackb(blob, raw=False, strict_map_key=False)
        except Exception as exc:
            raise StoreCorrupt(
                f"event seq {seq} in {self._dir} cannot be decoded: {exc}", seq=seq
            ) from exc
        if not isinstance(event, dict):
            raise StoreCorrupt(
                f"event seq {seq} in {self._dir} is {type(event).__name__}, not a dict", seq=seq
            )
        event["seq"] = seq
        return event

    def _decode_schema_version(self, raw: bytes | None) -> int:
        if raw is None:
            return 0
        try:
            version = msgpack.unpackb(raw)
        except Exception as exc:
            raise StoreCorrupt(
                f"state store {self._dir}: meta {SCHEMA_KEY!r} cannot be decoded: {exc}",
                meta_key=SCHEMA_KEY,
            ) from exc
        if not isinstance(version, int) or isinstance(version, bool):
            raise StoreCorrupt(
                f"state store {self._dir}: meta {SCHEMA_KEY!r} is {version!r}, not an int",
                meta_key=SCHEMA_KEY,
            )
        return version

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"state store {self._dir} is closed")

    def _release(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor drops the flock
            self._lock_fd = None
        with _OPEN_DIRS_LOCK:
            _OPEN_DIRS.discard(self._dir)


def _check_symbol(symbol: str) -> None:
    if not isinstance(symbol, str) or not symbol:
        raise StoreError(f"symbol must be a non-empty str, got {symbol!r}")
    if len(symbol.encode()) > _MAX_SYMBOL_BYTES or "\x00" in symbol:
        raise StoreError(f"symbol {symbol!r} is too long or contains NUL")


def _acquire_dir_lock(directory: Path) -> int:
    lock_path = directory / LOCK_FILE
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            os.close(fd)
            raise StoreError(f"cannot lock state store {directory}: {exc}") from exc
        holder = _read_pid(fd)
        os.close(fd)
        raise StoreLocked(
            f"state store {directory} is held by another live process "
            f"(pid {holder if holder is not None else 'unknown'}, see {lock_path}); "
            "stop that process or use another state dir",
            holder_pid=holder,
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        return int(text) if text else None
    except (OSError, ValueError):
        return None
