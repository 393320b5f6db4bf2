"""The state dir's disk refuses writes: the service stops opening (nothing whose client id
is not durable is sent), keeps protecting its position, alerts, and resumes once it can write.

"Disk full" is the kernel refusing to grow the LMDB file: RLIMIT_FSIZE lowered to the
file's current size (SIGXFSZ ignored, so the write fails with EFBIG like ENOSPC would) -
no privileges or mounts needed. The store is first padded to a few MB so that the small
files the test process writes meanwhile (records, captured logs) stay under the limit.
"""

from __future__ import annotations

import os
import resource
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.integration.tree_harness import TreeRig, wait_for

from .rig import SYMBOL, start_case, stop_current_stop

PAD_EVENTS = 4000  # ~5 MB of event log before the disk "fills"


def _pad(rig: TreeRig) -> None:
    for _ in range(PAD_EVENTS):
        rig.store.append_event({"kind": "padding", "blob": "x" * 1000})
    rig.store.flush()


@contextmanager
def disk_full(path: Path) -> Iterator[None]:
    """Files may not grow beyond `path`'s current size while inside."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (os.path.getsize(path), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)


def test_disk_full_refuses_opens_keeps_protection_and_alerts(tmp_path):
    case = start_case(tmp_path, "PRE_TP1", before_start=_pad)
    tree, rig = case.tree, case.rig
    try:
        with disk_full(tmp_path / "state" / "data.mdb"):
            rig.store.append_event({"kind": "padding", "blob": "x" * 200_000})  # must grow now
            assert wait_for(lambda: tree.account.storage_block is not None, 10.0)
            full_from = len(rig.records)
            dropped = stop_current_stop(case)  # the stop must come back, disk or no disk
            assert dropped is not None
            case.replay()  # the position closes along these bars; the next setup must not open
            case.wait_settled()
            assert wait_for(case.quiet, 10.0), "the position was left unprotected"
            during = rig.records[full_from:]
            alerts = [kind for kind, _ in rig.alerts.sent]
        assert wait_for(lambda: tree.account.storage_block is None, 10.0), "never wrote again"
        case.settle()
    finally:
        report = case.finish()
    assert "storage_failed" in alerts
    opens = [r for r in during if r.get("kind") == "candidate" and r.get("action") == "OPEN"]
    entries = [
        r
        for r in during
        if r.get("kind") == "order" and r.get("role") == "entry" and r.get("venue_id")
    ]
    refused = [
        r
        for r in during
        if r.get("kind") == "candidate" and "storage" in str(r.get("reject_reason"))
    ]
    assert opens == [] and entries == [], (opens, entries)
    assert refused, "no candidate came up while the disk was full"
    replaced = [r for r in during if r.get("kind") == "order" and r.get("role") == "sl"]
    assert replaced and replaced[0]["venue_id"], "the lost stop was not placed again"
    states = [r["state"] for r in rig.of_kind("lifecycle", symbol="*")]
    assert states[-2:] == ["STORAGE_FAILED", "STORAGE_OK"]
    assert report.ok, report.format()  # nothing acknowledged was lost: no event log hole
    assert SYMBOL in rig.venue.symbols()
