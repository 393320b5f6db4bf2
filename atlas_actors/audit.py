"""Invariant checker over the state store, the records and the venue (`atlas audit`).

Atlas's red lines, checked after the fact from what the service left behind:

* protection      every open venue position has a visible Algo stop (reduce-only or
                  close-position, on the closing side, its quantity covering the position);
                  a stop reported invisible was followed by an EMERGENCY_FLAT within 1 s;
                  with a `ProtectionWatch`, no position stayed unprotected longer than allowed
* client ids      no two venue orders (or algo orders) share a client id, an order record's
                  client id never maps to two venue ids, no venue entry order without the
                  OPEN decision that asked for it, no placement resent after it was applied
* algo endpoint   every protective stop Atlas recorded is an Algo order at the venue, and no
                  conditional order type sits on the regular order endpoint
* open gate       no OPEN candidate while its §4 gate (gates.open_gate) was FAIL, or while
                  the symbol's actor was not READY (lifecycle records, in record order)
* state = venue   each stored position (side, qty within one step) equals the venue's
* event log       the LMDB event log's sequence numbers have no holes

Sources: the LMDB store (opened with ``lock=False``, so it works beside a running service),
the records (the store's event log, else ``<log-dir>/records.jsonl``), and the venue: a
SimVenue snapshot (the state dir's ``paper_venue`` meta key, or ``GET <url>/admin/snapshot``
of `atlas sim-exchange`), or any adapter through its read methods.

`audit(...) -> AuditReport` for tests; `main_audit(argv) -> int` prints each violation with
its evidence and exits 1 on any, 0 when clean.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from atlas_actors.domain.covering import covering_stop as domain_covering_stop

PAPER_VENUE_META = "paper_venue"  # supervisor/run.py stores the paper SimVenue book here
CONDITIONAL_TYPES = frozenset(
    {"STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET", "TRAILING_STOP_MARKET"}
)
QTY_EPS = 1e-9
ENTRY_ROLE = "e"
STOP_ROLE = "sl"
DEFAULT_FLATTEN_WITHIN_S = 1.0  # contract §0.2 / §7
EVENT_CHUNK = 50_000


class AuditError(Exception):
    """An audit input cannot be read (state dir, records file, venue); names which one."""


@dataclass(frozen=True)
class Violation:
    check: str
    symbol: str | None
    message: str
    evidence: dict[str, Any] = field(default_factory=dict)

    def format(self) -> str:
        where = f"[{self.symbol}] " if self.symbol else ""
        ev = json.dumps(self.evidence, sort_keys=True, default=str)
        return f"VIOLATION {self.check}: {where}{self.message}\n    evidence: {ev}"


@dataclass
class AuditReport:
    violations: list[Violation] = field(default_factory=list)
    checked: Counter[str] = field(default_factory=Counter)
    sources: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.violations

    def by_check(self) -> Counter[str]:
        return Counter(v.check for v in self.violations)

    def add(self, check: str, symbol: str | None, message: str, **evidence: Any) -> None:
        self.violations.append(Violation(check, symbol, message, evidence))

    def format(self) -> str:
        lines = [v.format() for v in self.violations]
        src = ", ".join(f"{k}: {v}" for k, v in sorted(self.sources.items()))
        counts = ", ".join(f"{k} {n}" for k, n in sorted(self.checked.items()))
        verdict = "CLEAN" if self.ok else f"{len(self.violations)} violation(s)"
        lines.append(f"audit {verdict} (sources: {src}; checked: {counts})")
        return "\n".join(lines)


# ====================================================================== the venue's view


@dataclass
class VenueView:
    """What the venue holds: positions, algo orders and orders (open ones at least)."""

    positions: dict[str, dict[str, Any]]  # symbol -> {"side", "qty" (abs), "entry_price"}
    algos: list[dict[str, Any]]
    orders: list[dict[str, Any]]
    steps: dict[str, float]
    complete_history: bool  # True: algos/orders include finished ones (a SimVenue snapshot)

    @classmethod
    def from_snapshot(cls, snap: Mapping[str, Any]) -> VenueView:
        """From `SimVenue.snapshot()` (also what `GET /admin/snapshot` returns)."""
        try:
            positions: dict[str, dict[str, Any]] = {}
            steps: dict[str, float] = {}
            for sym, sd in snap["symbols"].items():
                pos = float(sd.get("pos") or 0.0)
                side = "LONG" if pos > QTY_EPS else "SHORT" if pos < -QTY_EPS else "NONE"
                positions[sym] = {
                    "side": side,
                    "qty": abs(pos),
                    "entry_price": float(sd.get("entry") or 0.0),
                }
                filters = sd.get("filters") or {}
                steps[sym] = float(filters.get("step_size") or 0.0)
            return cls(
                positions=positions,
                algos=[dict(a) for a in snap["algos"]],
                orders=[dict(o) for o in snap["orders"]],
                steps=steps,
                complete_history=True,
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise AuditError(f"venue snapshot is malformed: {type(exc).__name__}: {exc}") from exc

    @classmethod
    def from_adapter(cls, venue: Any, symbols: Iterable[str]) -> VenueView:
        """Through the ExchangeAdapter read methods (only open orders and algos are known)."""
        syms = list(symbols)
        positions: dict[str, dict[str, Any]] = {}
        for sym, p in venue.get_positions().items():
            side = str(p.get("side") or "NONE")
            qty = abs(float(p.get("qty") or 0.0))
            positions[sym] = {
                "side": side if qty > QTY_EPS else "NONE",
                "qty": qty,
                "entry_price": float(p.get("entry_price") or 0.0),
            }
        wanted = sorted(set(syms) | {s for s, p in positions.items() if p["side"] != "NONE"})
        algos: list[dict[str, Any]] = []
        orders: list[dict[str, Any]] = []
        steps: dict[str, float] = {}
        for sym in wanted:
            algos.extend(
                dict(a, symbol=a.get("symbol") or sym) for a in venue.get_open_algo_orders(sym)
            )
            orders.extend(
                dict(o, symbol=o.get("symbol") or sym) for o in venue.get_open_orders(sym)
            )
            getter = getattr(venue, "get_symbol_filters", None)
            if getter is not None:
                try:
                    steps[sym] = float(getter(sym)["step_size"])
                except Exception:  # noqa: BLE001 - an unknown symbol: exact comparison
                    steps[sym] = 0.0
        return cls(positions, algos, orders, steps, complete_history=False)

    def open_algos(self, symbol: str) -> list[dict[str, Any]]:
        return [
            a
            for a in self.algos
            if a.get("symbol") == symbol and str(a.get("status", "NEW")) == "NEW"
        ]

    def step(self, symbol: str) -> float:
        return self.steps.get(symbol, 0.0)

    def open_positions(self) -> dict[str, dict[str, Any]]:
        return {s: p for s, p in self.positions.items() if p["side"] != "NONE"}


def covering_stop(view: VenueView, symbol: str) -> dict[str, Any] | None:
    """The open Algo stop that protects the whole position of `symbol`, or None
    (`domain.covering`: the one meaning of "covering" every check uses)."""
    pos = view.positions.get(symbol)
    if pos is None or pos["side"] == "NONE":
        return None
    found = domain_covering_stop(
        view.open_algos(symbol), pos["side"], pos["qty"], view.step(symbol)
    )
    return None if found is None else dict(found)


# ====================================================================== protection over time


class ProtectionWatch:
    """Samples the venue every `interval_s` on a thread and records every interval during
    which an open position had no covering visible Algo stop ("gaps")."""

    def __init__(
        self,
        source: Callable[[], VenueView],
        *,
        interval_s: float = 0.05,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.source = source
        self.interval_s = interval_s
        self.clock = clock
        self.samples = 0
        self.errors = 0
        self._open: dict[str, float] = {}  # symbol -> first sample seen unprotected
        self._gaps: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sample(self) -> None:
        """One observation (the thread calls this; tests may call it directly)."""
        try:
            view = self.source()
        except Exception:  # noqa: BLE001 - a venue that cannot answer is not a gap
            self.errors += 1
            return
        now = self.clock()
        naked = {s for s in view.open_positions() if covering_stop(view, s) is None}
        with self._lock:
            self.samples += 1
            for sym in naked:
                self._open.setdefault(sym, now)
            for sym in [s for s in self._open if s not in naked]:
                start = self._open.pop(sym)
                self._gaps.append({"symbol": sym, "start": start, "end": now, "s": now - start})

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def start(self) -> ProtectionWatch:
        self._thread = threading.Thread(target=self._run, name="protection-watch", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
        self.sample()

    @property
    def gaps(self) -> list[dict[str, Any]]:
        """Closed gaps plus the ones still open (their end = now)."""
        now = self.clock()
        with self._lock:
            still = [
                {"symbol": s, "start": t, "end": now, "s": now - t, "open": True}
                for s, t in self._open.items()
            ]
            return [*self._gaps, *still]

    def longest(self) -> float:
        return max((g["s"] for g in self.gaps), default=0.0)


# ====================================================================== checks


def _role(client_id: str) -> str:
    i = client_id.rfind("-")
    return client_id[i + 1 :] if i >= 0 else ""


def check_protection(view: VenueView, report: AuditReport) -> None:
    for sym, pos in sorted(view.open_positions().items()):
        report.checked["positions"] += 1
        if covering_stop(view, sym) is None:
            report.add(
                "protection",
                sym,
                f"open {pos['side']} {pos['qty']:g} has no visible covering Algo stop",
                position=pos,
                open_algos=[
                    {k: a.get(k) for k in ("client_algo_id", "side", "qty", "stop_price")}
                    for a in view.open_algos(sym)
                ],
            )


def check_gaps(gaps: Iterable[Mapping[str, Any]], max_s: float, report: AuditReport) -> None:
    for g in gaps:
        report.checked["protection_gaps"] += 1
        if float(g["s"]) > max_s:
            report.add(
                "protection_gap",
                str(g["symbol"]),
                f"position unprotected for {float(g['s']):.2f} s (allowed {max_s:g} s)",
                gap=dict(g),
            )


def check_venue_client_ids(view: VenueView, report: AuditReport) -> None:
    by_order: dict[str, set[str]] = defaultdict(set)
    for o in view.orders:
        by_order[str(o.get("client_order_id"))].add(str(o.get("order_id")))
        otype = str(o.get("type") or "")
        if otype in CONDITIONAL_TYPES:
            report.add(
                "algo_endpoint",
                o.get("symbol"),
                f"conditional {otype} order on the regular order endpoint",
                order=o,
            )
    by_algo: dict[str, set[str]] = defaultdict(set)
    for a in view.algos:
        by_algo[str(a.get("client_algo_id"))].add(str(a.get("algo_id")))
    report.checked["venue_orders"] += len(view.orders)
    report.checked["venue_algos"] += len(view.algos)
    for kind, ids in (("order", by_order), ("algo", by_algo)):
        for cid, venue_ids in sorted(ids.items()):
            if len(venue_ids) > 1:
                report.add(
                    "duplicate_client_id",
                    None,
                    f"{len(venue_ids)} venue {kind}s share client id {cid}",
                    client_id=cid,
                    venue_ids=sorted(venue_ids),
                )
    for cid in sorted(set(by_order) & set(by_algo)):
        report.add(
            "duplicate_client_id",
            None,
            f"client id {cid} is both an order and an algo order",
            client_id=cid,
        )


def check_resends(requests: Iterable[Mapping[str, Any]], report: AuditReport) -> None:
    """`requests`: placements in the order the venue received them, each {"client_id",
    "applied"}; a placement of a client id the venue had already applied is a blind resend."""
    applied: dict[str, int] = {}
    for i, r in enumerate(requests):
        cid = str(r["client_id"])
        report.checked["placement_requests"] += 1
        if cid in applied:
            report.add(
                "blind_resend",
                r.get("symbol"),
                f"client id {cid} sent again after the venue had applied it",
                client_id=cid,
                first_request=applied[cid],
                again=i,
            )
        elif r.get("applied"):
            applied[cid] = i


def check_records(
    records: Iterable[Mapping[str, Any]],
    report: AuditReport,
    *,
    view: VenueView | None,
    prefix: str | None,
    ignore_client_ids: frozenset[str],
    flatten_within_s: float,
) -> None:
    """Gate/READY order, order-record ids, entries vs OPENs, stops are algos, flatten timing."""
    status: dict[str, str] = {}
    opens: Counter[str] = Counter()
    record_ids: dict[str, set[str]] = defaultdict(set)
    stop_records: dict[str, dict[str, Any]] = {}
    invisible: list[dict[str, Any]] = []
    flats: dict[str, list[int]] = defaultdict(list)
    flat_reasons: list[str] = []
    settled: set[str] = set()
    n = 0
    for rec in records:
        n += 1
        kind = rec.get("kind")
        sym = str(rec.get("symbol") or "")
        if kind == "lifecycle":
            status[sym] = str(rec.get("state"))
        elif kind == "candidate" and rec.get("action") == "OPEN":
            opens[sym] += 1
            gate = ((rec.get("gates") or {}).get("open_gate") or {}).get("status")
            if gate != "PASS":
                report.add(
                    "open_gate",
                    sym,
                    f"OPEN while the §4 open gate was {gate}",
                    record=dict(rec),
                )
            state = status.get(sym)
            if state is not None and state != "READY":
                report.add(
                    "open_not_ready",
                    sym,
                    f"OPEN while the symbol's actor was {state}",
                    record=dict(rec),
                )
        elif kind == "order":
            cid = str(rec.get("client_id") or "")
            vid = rec.get("venue_id")
            if vid is not None:
                record_ids[cid].add(str(vid))
            if rec.get("role") == "sl" and vid is not None:
                stop_records[cid] = dict(rec)
        elif kind == "stop_invisible" and not (rec.get("venue_flat") or rec.get("superseded")):
            invisible.append(dict(rec))
        elif kind in ("stop_invisible", "stop_visible"):
            settled.add(str(rec.get("client_algo_id")))  # a verdict: seen, or nothing to guard
        elif kind == "risk" and rec.get("event_type") == "EMERGENCY_FLAT":
            flats[sym].append(int(rec.get("ts") or 0))
            flat_reasons.append(str(rec.get("reason")))
    report.checked["records"] += n
    for cid, vids in sorted(record_ids.items()):
        if len(vids) > 1:
            report.add(
                "duplicate_client_id",
                None,
                f"order records map client id {cid} to {len(vids)} venue ids",
                client_id=cid,
                venue_ids=sorted(vids),
            )
    for rec in invisible:
        ts = int(rec.get("ts") or 0)
        sym = str(rec.get("symbol"))
        # ts are whole seconds: a flatten within 1 s may carry the next second's stamp
        if not any(ts <= t <= ts + flatten_within_s + 1 for t in flats.get(sym, [])):
            report.add(
                "protection",
                sym,
                f"stop {rec.get('client_algo_id')} reported invisible and no EMERGENCY_FLAT "
                f"within {flatten_within_s:g} s",
                record=rec,
            )
    if view is None:
        return
    if view.complete_history:
        algo_ids = {str(a.get("client_algo_id")) for a in view.algos}
        order_ids = {str(o.get("client_order_id")) for o in view.orders}
        for cid, rec in sorted(stop_records.items()):
            # (a stop the venue acknowledged and then lost is in neither list: the Sentinel's
            # business, judged by the protection checks)
            if cid in order_ids and cid not in algo_ids:
                report.add(
                    "algo_endpoint",
                    rec.get("symbol"),
                    f"protective stop {cid} went to the regular order endpoint, not Algo",
                    record=rec,
                )
        # A stop the venue acknowledged and then never listed (lost): §0.2 says flatten
        # within 1 s. Its EMERGENCY_FLAT names it (or the Sentinel found nothing to guard).
        oldest = _oldest_numeric_id(view.algos)
        for cid, rec in sorted(stop_records.items()):
            if cid in algo_ids or cid in order_ids or cid in settled:
                continue
            vid = str(rec.get("venue_id"))
            if oldest is not None and vid.isdigit() and int(vid) < oldest:
                continue  # older than the venue's kept history: cannot tell
            if not any(cid in reason for reason in flat_reasons):
                report.add(
                    "protection",
                    rec.get("symbol"),
                    f"stop {cid} was acknowledged, never became visible, and no EMERGENCY_FLAT "
                    "followed",
                    record=rec,
                )
        entries: Counter[str] = Counter()
        for o in view.orders:
            cid = str(o.get("client_order_id"))
            if cid in ignore_client_ids or _role(cid) != ENTRY_ROLE:
                continue
            if prefix is not None and not cid.startswith(prefix + "-"):
                continue
            entries[str(o.get("symbol"))] += 1
        for sym, count in sorted(entries.items()):
            if count > opens[sym]:
                report.add(
                    "duplicate_order",
                    sym,
                    f"{count} entry orders at the venue for {opens[sym]} OPEN decision(s)",
                    entries=sorted(
                        str(o.get("client_order_id"))
                        for o in view.orders
                        if o.get("symbol") == sym
                        and _role(str(o.get("client_order_id"))) == ENTRY_ROLE
                        and str(o.get("client_order_id")) not in ignore_client_ids
                    ),
                    opens=opens[sym],
                )


def _oldest_numeric_id(algos: Iterable[Mapping[str, Any]]) -> int | None:
    ids = [str(a.get("algo_id")) for a in algos]
    nums = [int(i) for i in ids if i.isdigit()]
    return min(nums) if nums and len(nums) == len(ids) else None


def check_state_vs_venue(
    states: Mapping[str, Mapping[str, Any]], view: VenueView, report: AuditReport
) -> None:
    for sym, st in sorted(states.items()):
        report.checked["stored_positions"] += 1
        ps = st.get("position_state") or {}
        s_side = str(ps.get("side") or "NONE")
        s_qty = abs(float(ps.get("qty_total") or 0.0))
        if s_qty <= QTY_EPS:
            s_side, s_qty = "NONE", 0.0
        v = view.positions.get(sym) or {"side": "NONE", "qty": 0.0}
        tol = max(view.step(sym) * 0.5, 1e-9 * max(1.0, s_qty))
        if s_side != v["side"] or abs(s_qty - float(v["qty"])) > tol:
            report.add(
                "state_vs_venue",
                sym,
                f"stored position {s_side} {s_qty:g} != venue {v['side']} {float(v['qty']):g}",
                stored={"side": s_side, "qty": s_qty, "stage": ps.get("position_stage")},
                venue=dict(v),
            )


def check_event_seq(seqs: Iterable[int], report: AuditReport) -> None:
    prev: int | None = None
    for seq in seqs:
        report.checked["events"] += 1
        if prev is None:
            if seq != 1:
                report.add("event_log", None, f"event log starts at seq {seq}, not 1", first=seq)
        elif seq != prev + 1:
            report.add(
                "event_log",
                None,
                f"event log hole: seq {prev} is followed by {seq}",
                after=prev,
                next=seq,
            )
        prev = seq


# ====================================================================== sources


def _store_events(store: Any) -> Iterator[dict[str, Any]]:
    since = 0
    while True:
        chunk = store.iter_events(since=since, limit=EVENT_CHUNK)
        if not chunk:
            return
        yield from chunk
        since = int(chunk[-1]["seq"])


def _jsonl(path: str) -> list[dict[str, Any]]:
    from atlas_actors.events import read_records

    try:
        return read_records(path)
    except OSError as exc:
        raise AuditError(f"cannot read records {path}: {exc}") from exc


def venue_view_from_url(url: str, symbols: Iterable[str], timeout_s: float = 10.0) -> VenueView:
    """`atlas sim-exchange`: its /admin/snapshot; any other URL: the BinanceAdapter's reads."""
    import requests

    base = url.rstrip("/")
    try:
        resp = requests.get(base + "/admin/snapshot", timeout=timeout_s)
        if resp.status_code == 200:
            return VenueView.from_snapshot(resp.json())
    except (requests.RequestException, ValueError):
        pass
    from atlas_actors.venues.base import VenueError
    from atlas_actors.venues.binance import BinanceAdapter

    try:
        adapter = BinanceAdapter(
            os.environ.get("BINANCE_API_KEY", "paper"),
            os.environ.get("BINANCE_API_SECRET", "paper"),
            rest_url=base,
        )
        return VenueView.from_adapter(adapter, symbols)
    except VenueError as exc:
        raise AuditError(f"cannot read the venue at {base}: {exc}") from exc


def _venue_view(venue: Any, symbols: Iterable[str]) -> VenueView:
    if isinstance(venue, VenueView):
        return venue
    if isinstance(venue, Mapping):
        return VenueView.from_snapshot(venue)
    if hasattr(venue, "snapshot") and hasattr(venue, "feed_bar"):  # SimVenue: whole history
        return VenueView.from_snapshot(venue.snapshot())
    return VenueView.from_adapter(venue, symbols)


def audit(
    state_dir: str | os.PathLike[str] | None = None,
    *,
    log_dir: str | os.PathLike[str] | None = None,
    venue_url: str | None = None,
    store: Any = None,
    records: Iterable[Mapping[str, Any]] | None = None,
    venue: Any = None,
    gaps: Iterable[Mapping[str, Any]] | None = None,
    max_unprotected_s: float = DEFAULT_FLATTEN_WITHIN_S,
    requests: Iterable[Mapping[str, Any]] | None = None,
    prefix: str | None = None,
    ignore_client_ids: Iterable[str] = (),
    flatten_within_s: float = DEFAULT_FLATTEN_WITHIN_S,
) -> AuditReport:
    """Check every invariant over the given sources (see the module docstring).

    `store`: an open StateStore (else `state_dir` is opened with lock=False). `records`:
    the records in order (else the store's event log, else <log_dir>/records.jsonl).
    `venue`: a SimVenue, a snapshot dict, a VenueView or an adapter (else `venue_url`,
    else the state dir's paper venue book). `gaps`: a ProtectionWatch's gaps, each longer
    than `max_unprotected_s` is a violation. `requests`: the venue's placements in arrival
    order ({"client_id", "applied"}). `ignore_client_ids`: venue orders older than the
    audited history (a seeded book). `prefix`: this instance's client-id prefix."""
    report = AuditReport()
    own_store = None
    if store is None and state_dir is not None:
        from atlas_actors.store import StateStore, StoreError

        if not os.path.isdir(state_dir):
            raise AuditError(f"state dir {state_dir} does not exist")
        try:
            own_store = store = StateStore(state_dir, lock=False)
        except StoreError as exc:
            raise AuditError(str(exc)) from exc
    try:
        states: dict[str, dict[str, Any]] = {}
        if store is not None:
            report.sources["state"] = str(getattr(store, "path", "store"))
            for sym in store.symbols():
                states[sym] = store.get_symbol_state(sym)
        view: VenueView | None = None
        if venue is not None:
            view = _venue_view(venue, states)
            report.sources["venue"] = type(venue).__name__
        elif venue_url:
            view = venue_view_from_url(venue_url, states)
            report.sources["venue"] = venue_url
        elif store is not None:
            snap = store.get_meta(PAPER_VENUE_META)
            if snap:
                view = VenueView.from_snapshot(snap)
                report.sources["venue"] = f"state meta {PAPER_VENUE_META!r}"
        if view is None:
            report.sources["venue"] = "none (venue checks skipped)"

        recs: Iterable[Mapping[str, Any]]
        if records is not None:
            recs = list(records)
            report.sources["records"] = "given"
        elif store is not None and store.last_event_seq() > 0:
            recs = _store_events(store)
            report.sources["records"] = "LMDB event log"
        elif log_dir is not None and os.path.exists(os.path.join(log_dir, "records.jsonl")):
            recs = _jsonl(os.path.join(log_dir, "records.jsonl"))
            report.sources["records"] = os.path.join(log_dir, "records.jsonl")
        else:
            recs = []
            report.sources["records"] = "none"
        check_records(
            recs,
            report,
            view=view,
            prefix=prefix,
            ignore_client_ids=frozenset(ignore_client_ids),
            flatten_within_s=flatten_within_s,
        )
        if store is not None:
            check_event_seq((int(e["seq"]) for e in _store_events(store)), report)
        if view is not None:
            check_protection(view, report)
            check_venue_client_ids(view, report)
            check_state_vs_venue(states, view, report)
        if gaps is not None:
            check_gaps(gaps, max_unprotected_s, report)
        if requests is not None:
            check_resends(requests, report)
    finally:
        if own_store is not None:
            own_store.close(flush=False)
    return report


# ====================================================================== CLI


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="atlas audit",
        description="Check Atlas's invariants over the state store, the records and the venue. "
        "Exit 1 on any violation, 0 when clean, 2 when an input cannot be read.",
    )
    p.add_argument("--state-dir", required=True, help="the service's LMDB state directory")
    p.add_argument(
        "--log-dir", help="directory holding records.jsonl (used when the store has no event log)"
    )
    p.add_argument(
        "--venue-url",
        help="venue REST base URL (atlas sim-exchange: its /admin/snapshot); default: the "
        "paper venue book stored in the state dir",
    )
    p.add_argument(
        "--prefix", help="this instance's client-id prefix (entries of other prefixes are ignored)"
    )
    return p


def main_audit(argv: list[str]) -> int:
    a = _parser().parse_args(argv)
    try:
        report = audit(a.state_dir, log_dir=a.log_dir, venue_url=a.venue_url, prefix=a.prefix)
    except AuditError as exc:
        print(f"atlas audit: {exc}", file=sys.stderr)
        return 2
    print(report.format())
    return 0 if report.ok else 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main_audit(sys.argv[1:]))
