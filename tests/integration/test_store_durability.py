"""Durability with real processes: a child writes generations of states/events/meta and is
SIGKILLed; the reopened store holds every acknowledged flush and exactly one generation.

Each generation g sets every symbol's state (seq = bar_index = g), appends a few events
tagged with g and sets meta `progress` = g, then flushes and prints ``flushed <g> <last seq>``
once `flush()` has returned. Two modes:

* ``tail`` - flush `n` generations, print ``unflushed``, then keep writing without flushing
  until killed: the reopened store must show generation `n` exactly.
* ``loop`` - flush every generation until killed at a random moment (often mid-flush): the
  reopened store must show one generation G with last acknowledged <= G <= last acknowledged + 1.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from atlas_actors.store import StateStore

REPO = Path(__file__).resolve().parents[2]
N_SYMBOLS = 12


def _symbols() -> list[str]:
    return [f"SYM{i:02d}USDC" for i in range(N_SYMBOLS)]


def child_main(argv: list[str]) -> None:
    """The writer process (run via ``python -c``); never returns normally, it is killed."""
    directory, seed, mode, n_flushes = argv[0], int(argv[1]), argv[2], int(argv[3])
    rng = random.Random(seed)
    # A small map so some kills land while the map is being grown.
    store = StateStore(directory, map_size=256 * 1024)
    gen = (store.get_meta("progress") or {"gen": 0})["gen"]  # a second life continues
    while True:
        gen += 1
        for sym in _symbols():
            state = store.get_symbol_state(sym)
            state.update(seq=gen, bar_index=gen, last_template=f"gen{gen}")
            state["regime_state"] = {"pad": "x" * rng.randrange(0, 3000)}
            store.set_symbol_state(sym, state)
        count = 1 + rng.randrange(4)
        for i in range(count):
            store.append_event({"gen": gen, "i": i, "of": count})
        store.put_meta("progress", {"gen": gen})
        if mode == "loop" or gen <= n_flushes:
            store.flush()
            print(f"flushed {gen} {store.last_event_seq()}", flush=True)
        if mode == "tail" and gen == n_flushes:
            print("unflushed", flush=True)


def _run_and_kill(directory: Path, seed: int, mode: str, n_flushes: int) -> tuple[int, int]:
    """Start the child, kill it per `mode`; return (last acknowledged gen, its last event seq)."""
    rng = random.Random(seed * 7919)
    code = (
        "import sys; from tests.integration.test_store_durability import child_main; "
        "child_main(sys.argv[1:])"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code, str(directory), str(seed), mode, str(n_flushes)],
        stdout=subprocess.PIPE,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        cwd=str(REPO),
    )
    acked = (0, 0)
    try:
        assert child.stdout is not None
        target = n_flushes if mode == "loop" else None
        while True:
            line = child.stdout.readline()
            assert line, f"child exited early with {child.wait()}"
            parts = line.split()
            if parts[0] == "flushed":
                acked = (int(parts[1]), int(parts[2]))
                if target is not None and acked[0] >= target:
                    break
            elif parts[0] == "unflushed":
                break
        time.sleep(rng.uniform(0.0, 0.03))
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=20)
        for line in child.stdout.read().splitlines():  # markers printed before the kill
            parts = line.split()
            if parts and parts[0] == "flushed":
                acked = (int(parts[1]), int(parts[2]))
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL
    return acked


def _assert_one_generation(directory: Path, acked_gen: int, acked_seq: int) -> int:
    with StateStore(directory) as store:
        progress = store.get_meta("progress")
        assert progress is not None
        gen = progress["gen"]
        assert gen >= acked_gen, "an acknowledged flush was lost"
        assert store.symbols() == _symbols()
        for sym in _symbols():
            st = store.get_symbol_state(sym)
            assert (st["seq"], st["bar_index"], st["last_template"]) == (gen, gen, f"gen{gen}"), sym
        events = store.iter_events()
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
        assert len(events) >= acked_seq
        by_gen: dict[int, list[dict[str, int]]] = {}
        for e in events:
            by_gen.setdefault(e["gen"], []).append(e)
        assert sorted(by_gen) == list(range(1, gen + 1)), "events of a missing or extra generation"
        for g, evs in by_gen.items():
            assert [e["i"] for e in evs] == list(range(evs[0]["of"])), f"generation {g} is partial"
        assert store.last_event_seq() == len(events)
    return int(gen)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_kill_during_unflushed_writes_keeps_exactly_the_flushed_state(
    tmp_path: Path, seed: int
) -> None:
    n_flushes = 3 + seed * 2
    directory = tmp_path / "state"
    acked_gen, acked_seq = _run_and_kill(directory, seed, "tail", n_flushes)
    assert acked_gen == n_flushes
    assert _assert_one_generation(directory, acked_gen, acked_seq) == n_flushes


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_kill_at_a_random_moment_gives_an_all_or_nothing_view(tmp_path: Path, seed: int) -> None:
    directory = tmp_path / "state"
    acked_gen, acked_seq = _run_and_kill(directory, seed, "loop", 5 + seed % 5)
    gen = _assert_one_generation(directory, acked_gen, acked_seq)
    assert acked_gen <= gen <= acked_gen + 1
    # A second life on the same directory continues where the first stopped.
    acked_gen2, acked_seq2 = _run_and_kill(directory, seed + 100, "loop", gen + 3)
    assert acked_gen2 >= gen + 3
    gen2 = _assert_one_generation(directory, acked_gen2, acked_seq2)
    assert acked_gen2 <= gen2 <= acked_gen2 + 1
