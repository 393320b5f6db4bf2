"""StateStore on a real LMDB in a tmp dir: defaults, buffering, durability, events, growth,
corruption isolation, single ownership (in-process and across processes), thread safety."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import lmdb
import msgpack
import pytest

from atlas_actors.domain.records import SCHEMA_VERSION, SymbolState, default_symbol_state
from atlas_actors.store import (
    StateStore,
    StoreAlreadyOpen,
    StoreCorrupt,
    StoreError,
    StoreLocked,
)

REPO = Path(__file__).resolve().parents[2]


def _state(symbol: str, **changes: Any) -> dict[str, Any]:
    d = default_symbol_state(symbol)
    d.update(changes)
    return d


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


def test_unknown_symbol_reads_as_default_and_dir_is_created(store_dir: Path) -> None:
    with StateStore(store_dir) as store:
        assert store_dir.is_dir()
        assert store.get_symbol_state("BTCUSDC") == default_symbol_state("BTCUSDC")
        assert store.symbols() == []
        assert store.last_event_seq() == 0
        assert store.iter_events() == []
        assert store.get_meta("book") is None
        assert store.schema_version == SCHEMA_VERSION


def test_reads_see_buffered_writes_which_are_lost_without_flush(store_dir: Path) -> None:
    with StateStore(store_dir) as store:
        st = _state("BTCUSDC", last_regime="TREND_UP")
        store.set_symbol_state("BTCUSDC", st)
        st["last_regime"] = "mutated after set"  # the buffer holds what was passed, not a reference
        assert store.get_symbol_state("BTCUSDC")["last_regime"] == "TREND_UP"
        assert store.symbols() == ["BTCUSDC"]
        store.append_event({"event_type": "X"})
        store.put_meta("cursor", {"bar": 7})
        assert store.get_meta("cursor") == {"bar": 7}
        store.close(flush=False)
    with StateStore(store_dir) as store:
        assert store.get_symbol_state("BTCUSDC") == default_symbol_state("BTCUSDC")
        assert store.symbols() == []
        assert store.iter_events() == []
        assert store.get_meta("cursor") is None


def test_flushed_writes_survive_reopen(store_dir: Path) -> None:
    with StateStore(store_dir) as store:
        store.set_symbol_state("BTCUSDC", _state("BTCUSDC", bar_index=10))
        store.set_symbol_state("ETHUSDC", _state("ETHUSDC", bar_index=20))
        store.put_meta("paper_book", {"balance": 1000.5, "orders": [{"id": "a"}]})
        assert store.append_event({"event_type": "LOSS_COOLDOWN", "symbol": "BTCUSDC"}) == 1
        store.flush()
        store.set_symbol_state("ETHUSDC", _state("ETHUSDC", bar_index=21))  # not flushed
        store.close(flush=False)
    with StateStore(store_dir) as store:
        assert store.symbols() == ["BTCUSDC", "ETHUSDC"]
        assert store.get_symbol_state("BTCUSDC")["bar_index"] == 10
        assert store.get_symbol_state("ETHUSDC")["bar_index"] == 20
        assert store.get_meta("paper_book") == {"balance": 1000.5, "orders": [{"id": "a"}]}
        assert store.iter_events() == [
            {"event_type": "LOSS_COOLDOWN", "symbol": "BTCUSDC", "seq": 1}
        ]
        # Sequence numbers continue after a reopen.
        assert store.append_event({"event_type": "REGIME_SHIFT"}) == 2


def test_clean_close_flushes(store_dir: Path) -> None:
    with StateStore(store_dir) as store:
        store.set_symbol_state("BTCUSDC", _state("BTCUSDC", seq=3))
    with StateStore(store_dir) as store:
        assert store.get_symbol_state("BTCUSDC")["seq"] == 3


def test_stored_partial_state_is_filled_with_defaults(store_dir: Path) -> None:
    with StateStore(store_dir) as store:
        store.set_symbol_state("BTCUSDC", {"last_regime": "CHOP", "cooldown_until": {"loss": 9}})
        store.flush()
        got = store.get_symbol_state("BTCUSDC")
    expected = SymbolState.from_dict({"last_regime": "CHOP", "cooldown_until": {"loss": 9}})
    assert got == expected.to_dict()
    assert got["cooldown_until"] == {"loss": 9, "template": 0, "freeze": 0, "shock": 0}


def test_events_are_ordered_and_paged(store_dir: Path) -> None:
    with StateStore(store_dir) as store:
        seqs = [store.append_event({"n": i}) for i in range(5)]
        store.flush()
        seqs += [store.append_event({"n": i}) for i in range(5, 8)]  # buffered tail
        assert seqs == list(range(1, 9))
        assert store.last_event_seq() == 8
        all_events = store.iter_events()
        assert [e["seq"] for e in all_events] == list(range(1, 9))
        assert [e["n"] for e in all_events] == list(range(8))
        assert [e["seq"] for e in store.iter_events(since=3)] == [4, 5, 6, 7, 8]
        assert [e["seq"] for e in store.iter_events(since=3, limit=4)] == [4, 5, 6, 7]
        assert [e["seq"] for e in store.iter_events(since=6, limit=1)] == [7]
        assert [e["seq"] for e in store.iter_events(limit=2)] == [1, 2]
        assert store.iter_events(since=8) == []
        assert store.iter_events(limit=0) == []


def test_event_may_not_carry_its_own_seq(store_dir: Path) -> None:
    with StateStore(store_dir) as store:
        with pytest.raises(StoreError, match="seq"):
            store.append_event({"seq": 4})


def test_unencodable_state_names_the_symbol(store_dir: Path) -> None:
    with StateStore(store_dir) as store:
        with pytest.raises(StoreError, match="'BTCUSDC'"):
            store.set_symbol_state("BTCUSDC", {"pending": {"obj": object()}})
        with pytest.raises(StoreError, match="must be a dict"):
            store.set_symbol_state("BTCUSDC", ["not", "a", "dict"])  # type: ignore[arg-type]
        with pytest.raises(StoreError, match="non-empty"):
            store.set_symbol_state("", _state(""))
        with pytest.raises(StoreError, match="reserved"):
            store.put_meta("schema_version", {"v": 2})


def test_map_full_grows_and_retries(store_dir: Path) -> None:
    big = {"blob": "x" * 2000}
    with StateStore(store_dir, map_size=64 * 1024) as store:
        start = store.flush_stats()["map_size"]
        for i in range(120):
            store.set_symbol_state(f"S{i:03d}", _state(f"S{i:03d}", regime_state=big, seq=i))
            store.append_event({"i": i, "pad": "y" * 500})
        store.flush()
        stats = store.flush_stats()
        assert stats["map_grows"] >= 1
        assert stats["map_size"] > start
    with StateStore(store_dir, map_size=64 * 1024) as store:
        assert len(store.symbols()) == 120
        assert store.get_symbol_state("S077")["seq"] == 77
        assert len(store.iter_events()) == 120


def _write_raw(store_dir: Path, db_name: bytes, key: bytes, value: bytes) -> None:
    env = lmdb.open(str(store_dir), max_dbs=16)
    try:
        db = env.open_db(db_name, create=True)
        with env.begin(write=True) as txn:
            txn.put(key, value, db=db)
    finally:
        env.close()


def test_corrupt_symbol_is_reported_by_name_and_others_stay_readable(store_dir: Path) -> None:
    with StateStore(store_dir) as store:
        for sym in ("BTCUSDC", "ETHUSDC", "XRPUSDT"):
            store.set_symbol_state(sym, _state(sym, bar_index=5))
    _write_raw(store_dir, b"sym:ETHUSDC", b"state", b"\xc1\xc1 not msgpack")
    bad_types = msgpack.packb({"cooldown_until": {"loss": "tomorrow"}}, use_bin_type=True)
    _write_raw(store_dir, b"sym:XRPUSDT", b"state", bad_types)
    with StateStore(store_dir) as store:
        with pytest.raises(StoreCorrupt, match="'ETHUSDC'") as err:
            store.get_symbol_state("ETHUSDC")
        assert err.value.symbol == "ETHUSDC"
        with pytest.raises(StoreCorrupt, match=r"'XRPUSDT'.*cooldown_until\.loss") as err2:
            store.get_symbol_state("XRPUSDT")
        assert err2.value.symbol == "XRPUSDT"
        assert store.get_symbol_state("BTCUSDC")["bar_index"] == 5
        assert store.symbols() == ["BTCUSDC", "ETHUSDC", "XRPUSDT"]
        # Overwriting the damaged shard repairs it.
        store.set_symbol_state("ETHUSDC", _state("ETHUSDC", bar_index=6))
        store.flush()
        assert store.get_symbol_state("ETHUSDC")["bar_index"] == 6


def test_corrupt_event_names_its_seq(store_dir: Path) -> None:
    with StateStore(store_dir) as store:
        store.append_event({"ok": 1})
    _write_raw(store_dir, b"events", (2).to_bytes(8, "big"), b"\xc1")
    with StateStore(store_dir) as store:
        with pytest.raises(StoreCorrupt, match="seq 2") as err:
            store.iter_events()
        assert err.value.seq == 2
        assert store.iter_events(limit=1) == [{"ok": 1, "seq": 1}]
        assert store.append_event({"ok": 3}) == 3


def test_newer_schema_is_refused(store_dir: Path) -> None:
    StateStore(store_dir).close()
    newer = msgpack.packb(SCHEMA_VERSION + 1)
    _write_raw(store_dir, b"meta", b"schema_version", newer)
    with pytest.raises(StoreError, match=f"schema_version {SCHEMA_VERSION + 1}"):
        StateStore(store_dir)
    # The failed open released everything: fixing the meta makes it open again.
    _write_raw(store_dir, b"meta", b"schema_version", msgpack.packb(SCHEMA_VERSION))
    StateStore(store_dir).close()


def test_second_open_in_the_same_process_is_an_error(store_dir: Path) -> None:
    store = StateStore(store_dir)
    try:
        with pytest.raises(StoreAlreadyOpen, match=str(store_dir)):
            StateStore(store_dir)
        # The same directory through another spelling of its path.
        with pytest.raises(StoreAlreadyOpen):
            StateStore(store_dir / ".." / "state")
    finally:
        store.close()
    StateStore(store_dir).close()  # free again once closed


def test_closed_store_refuses_calls(store_dir: Path) -> None:
    store = StateStore(store_dir)
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.get_symbol_state("BTCUSDC")
    store.close()  # closing twice is harmless


_HOLDER = """
import sys
from atlas_actors.store import StateStore
store = StateStore(sys.argv[1])
print("ready", flush=True)
sys.stdin.read()
store.close()
"""


def test_store_held_by_another_live_process_is_refused(store_dir: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(store_dir)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert holder.stdout is not None and holder.stdin is not None
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(StoreLocked) as err:
            StateStore(store_dir)
        message = str(err.value)
        assert str(store_dir) in message
        assert f"pid {holder.pid}" in message
        assert err.value.holder_pid == holder.pid
        holder.stdin.close()
        assert holder.wait(timeout=20) == 0
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
    StateStore(store_dir).close()  # released when the holder exits


def test_concurrent_writers_readers_and_flusher(store_dir: Path) -> None:
    # A tiny map forces growth while readers are active: exercises the resize gate.
    symbols = [f"SYM{i}" for i in range(8)]
    rounds = 60
    errors: list[BaseException] = []
    stop = threading.Event()
    appended: dict[str, list[int]] = {s: [] for s in symbols}

    with StateStore(store_dir, map_size=64 * 1024) as store:

        def writer(sym: str) -> None:
            try:
                for r in range(rounds):
                    store.set_symbol_state(sym, _state(sym, seq=r, regime_state={"pad": "p" * 300}))
                    appended[sym].append(store.append_event({"sym": sym, "r": r}))
                    got = store.get_symbol_state(sym)
                    assert got["seq"] == r  # always our own latest write, flushed or not
            except BaseException as exc:
                errors.append(exc)

        def flusher() -> None:
            try:
                while not stop.is_set():
                    store.flush()
            except BaseException as exc:
                errors.append(exc)

        def reader() -> None:
            try:
                while not stop.is_set():
                    seqs = [e["seq"] for e in store.iter_events()]
                    assert seqs == sorted(set(seqs))
                    for sym in symbols:
                        store.get_symbol_state(sym)
            except BaseException as exc:
                errors.append(exc)

        background = [threading.Thread(target=flusher), threading.Thread(target=reader)]
        writers = [threading.Thread(target=writer, args=(s,)) for s in symbols]
        for t in background + writers:
            t.start()
        for t in writers:
            t.join(timeout=60)
        stop.set()
        for t in background:
            t.join(timeout=60)
        assert errors == []
        store.flush()
        grows = store.flush_stats()["map_grows"]
    assert grows >= 1
    with StateStore(store_dir) as store:
        for sym in symbols:
            assert store.get_symbol_state(sym)["seq"] == rounds - 1
        events = store.iter_events()
        assert [e["seq"] for e in events] == list(range(1, len(symbols) * rounds + 1))
        for sym in symbols:
            mine = [e for e in events if e["sym"] == sym]
            assert [e["r"] for e in mine] == list(range(rounds))
            assert [e["seq"] for e in mine] == appended[sym]
