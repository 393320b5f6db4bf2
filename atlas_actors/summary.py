"""Run summaries computed from the §8 records, so the numbers always match the records."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from typing import Any


def summarize(records: Iterable[dict[str, Any]], *, bars: int | None = None) -> dict[str, Any]:
    candidates = 0
    opens = 0
    rejects: Counter[str] = Counter()
    trades = 0
    pnl = 0.0
    fees = 0.0
    stops_placed = 0
    stops_confirmed = 0
    emergency_flats = 0
    restarts = 0
    risk: Counter[str] = Counter()
    for r in records:
        kind = r.get("kind")
        if kind == "candidate":
            candidates += 1
            if r.get("action") == "OPEN":
                opens += 1
            else:
                rejects[_reason_key(str(r.get("reject_reason") or ""))] += 1
        elif kind == "trade":
            trades += 1
            pnl += float(r.get("pnl") or 0.0)
            fees += float(r.get("fees") or 0.0)
        elif kind == "order" and r.get("role") == "sl" and r.get("venue_id") is not None:
            stops_placed += 1
        elif kind == "stop_visible":
            stops_confirmed += 1
        elif kind == "risk":
            risk[str(r.get("event_type"))] += 1
            if r.get("event_type") == "EMERGENCY_FLAT":
                emergency_flats += 1
        elif kind == "lifecycle" and r.get("state") == "CRASHED":
            restarts += 1
    out: dict[str, Any] = {
        "candidates": candidates,
        "opens": opens,
        "rejects_by_reason": dict(sorted(rejects.items(), key=lambda kv: (-kv[1], kv[0]))),
        "trades": trades,
        "pnl": round(pnl, 8),
        "fees": round(fees, 8),
        "stops_placed": stops_placed,
        "stops_confirmed": stops_confirmed,
        "emergency_flats": emergency_flats,
        "restarts": restarts,
        "risk_actions": dict(sorted(risk.items())),
    }
    if bars is not None:
        out = {"bars": bars, **out}
    return out


_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:e-?\d+)?")


def _reason_key(reason: str) -> str:
    """Group reject reasons by their first clause, numbers and times masked."""
    head = reason.split(";")[0].strip()
    if " until " in head:
        head = head.split(" until ")[0]
    return _NUMBER.sub("N", head) or "unspecified"


def format_summary(s: dict[str, Any]) -> str:
    lines = ["", "Atlas run summary", "-----------------"]
    for key in (
        "bars",
        "candidates",
        "opens",
        "trades",
        "pnl",
        "fees",
        "stops_placed",
        "stops_confirmed",
        "emergency_flats",
        "restarts",
    ):
        if key in s:
            lines.append(f"{key:<18} {s[key]}")
    if s.get("rejects_by_reason"):
        lines.append("rejects by reason:")
        for reason, n in s["rejects_by_reason"].items():
            lines.append(f"  {n:>7}  {reason}")
    if s.get("risk_actions"):
        lines.append("risk actions: " + ", ".join(f"{k}={v}" for k, v in s["risk_actions"].items()))
    return "\n".join(lines)
