"""Two instances on one account (issue 13 B16): at start, open orders and algo orders that
carry this instance's client-id prefix but that its shard never issued mean another instance
with the same prefix is (or was) trading the account. Both would then take each other's
stops and orders for their own: refuse to start, naming them, unless the operator says
`atlas run --adopt`.

"Never issued" is exact, not a guess: every client id is `<prefix>-<symbol>-<seq>-<role>`,
and the shard's `seq` is made durable before an id is sent (write-ahead), so an id of ours
with a larger seq was not sent by this shard. An id with a smaller seq that the shard no
longer references is its own leftover (a cancel that failed), which recovery cleans up.
Adopting raises the shard's seq above the adopted ids, so this instance never reuses them.
"""

from __future__ import annotations

from typing import Any

from atlas_actors.domain.txn import client_id_head


def _seq_of(client_id: str, head: str) -> int | None:
    if not client_id.startswith(head):
        return None
    seq, _, _role = client_id[len(head) :].partition("-")
    return int(seq) if seq.isdigit() else None


def foreign_client_ids(
    venue: Any, store: Any, symbols: list[str], prefix: str
) -> dict[str, list[str]]:
    """symbol -> open order / algo client ids with this instance's head and a seq beyond
    what the symbol's shard ever handed out."""
    found: dict[str, list[str]] = {}
    for sym in symbols:
        head = client_id_head(prefix, sym)
        issued = int(store.get_symbol_state(sym).get("seq") or 0)
        ids = [str(o.get("client_order_id") or "") for o in venue.get_open_orders(sym)]
        ids += [str(a.get("client_algo_id") or "") for a in venue.get_open_algo_orders(sym)]
        beyond = sorted(c for c in ids if (_seq_of(c, head) or 0) > issued)
        if beyond:
            found[sym] = beyond
    return found


def adopt(store: Any, found: dict[str, list[str]], prefix: str) -> None:
    """Take the ids over: the shard's seq moves past them (they are never issued again)."""
    for sym, ids in found.items():
        head = client_id_head(prefix, sym)
        state = dict(store.get_symbol_state(sym))
        top = max(_seq_of(c, head) or 0 for c in ids)
        state["seq"] = max(int(state.get("seq") or 0), top)
        state.setdefault("symbol", sym)
        store.set_symbol_state(sym, state)
    store.flush()


def describe(found: dict[str, list[str]], prefix: str) -> str:
    listed = "; ".join(f"{sym}: {', '.join(ids)}" for sym, ids in sorted(found.items()))
    return (
        f"open orders with this instance's client-id prefix {prefix!r} that its state never "
        f"issued ({listed}): another instance is (or was) trading this account with the same "
        "prefix. Give each instance its own run.client_id_prefix, or start with --adopt to "
        "take these orders over"
    )
