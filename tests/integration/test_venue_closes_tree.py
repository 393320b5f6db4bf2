"""The exchange's own closes in the running tree (real actors, LMDB, SimVenue): the shard
follows the venue without any crash or restart, protection goes with the position, the
operator is alerted and the audit is clean."""

from __future__ import annotations

import pytest

from tests.chaos.rig import SYMBOL, start_case
from tests.integration.tree_harness import wait_for


def _alerts(case, kind: str) -> list[dict]:
    return [details for k, details in case.rig.alerts.sent if k == kind]


@pytest.mark.parametrize(("kind", "stage"), [("liquidation", "PRE_TP1"), ("adl", "RUNNER_ONLY")])
def test_a_venue_close_is_followed_alerted_and_audited_clean(tmp_path, kind, stage):
    case = start_case(tmp_path, stage)
    try:
        held = case.venue.get_positions()[SYMBOL]["qty"]
        assert case.venue.venue_close(SYMBOL, kind) is not None
        assert wait_for(lambda: _alerts(case, "venue_closed"), 5.0), case.rig.alerts.sent
        assert wait_for(case.quiet, 5.0), "the shard or the stop did not follow the venue"
        left = case.venue.get_positions()[SYMBOL]["qty"]
        assert (left == 0.0) if kind == "liquidation" else (0.0 < left < held)
        restarts = case.restarts()
    finally:
        report = case.finish()
    assert restarts == 0
    (tags,) = _alerts(case, "venue_closed")
    assert tags["symbol"] == SYMBOL and tags["venue_close"] == kind
    risk = case.rig.of_kind("risk")
    assert any(r["reason"].startswith(kind) for r in risk), risk
    assert report.ok, report.format()


def test_a_close_no_fill_of_ours_explains_is_reconciled_from_account_update(tmp_path):
    """Someone closes the position by hand (a client id that is not ours and no venue-close
    id): only the ACCOUNT_UPDATE tells. Failed before: the fill was parked as a stop child's,
    the shard kept the phantom position and its stop stayed on the exchange."""
    case = start_case(tmp_path, "PRE_TP1")
    try:
        held = case.venue.get_positions()[SYMBOL]
        case.venue.place_market(
            symbol=SYMBOL,
            side="SELL" if held["side"] == "LONG" else "BUY",
            qty=held["qty"],
            reduce_only=True,
            client_order_id="web_manual_close_1",
        )
        assert case.venue.get_positions()[SYMBOL]["qty"] == 0.0
        assert wait_for(case.quiet, 10.0), "a phantom position stayed in the shard"
        stop_gone = wait_for(lambda: not case.view().open_algos(SYMBOL), 5.0)
        assert stop_gone, "the stop of the gone position stayed"
    finally:
        report = case.finish()
    assert report.ok, report.format()
