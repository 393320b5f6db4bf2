"""Binance wire shapes -> normalised dicts/events (venues/binance/schemas/), over every recorded fixture.

The fixtures are copied into tests/fixtures/binance-usdm so a fresh checkout is
self-contained; when ../shared is beside the project (CI), its files are parsed too, so a
fixture added there without a parser fails here."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from atlas_actors.domain.events import (
    AccountUpdate,
    AlgoUpdate,
    BarClosed,
    MarkPrice,
    OrderUpdate,
    StreamStatus,
)
from atlas_actors.venues.binance import schemas

HERE = Path(__file__).resolve().parents[1] / "fixtures" / "binance-usdm"
SHARED = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "binance-usdm"


def _fixture_files() -> list[Path]:
    files = {p.name: p for p in sorted(HERE.glob("*.json"))}
    if SHARED.is_dir():
        for p in sorted(SHARED.glob("*.json")):
            files.setdefault(p.name, p)
    return [files[n] for n in sorted(files)]


FIXTURES = _fixture_files()

# Which normalised type each stream fixture must become (dict = a tagged plain dict).
STREAM_EXPECTED: dict[str, type] = {
    "market_data_json__kline_stream_closed.json": BarClosed,
    "market_data_json__kline_stream_open.json": dict,
    "market_data_json__mark_price_stream.json": MarkPrice,
    "market_data_json__agg_trade_stream.json": dict,
    "market_data_json__book_ticker_stream.json": dict,
    "market_data_json__depth_update_stream.json": dict,
    "market_data_json__liquidation_stream.json": dict,
    "market_data_json__ticker_stream.json": dict,
    "market_data_json__trade_stream.json": dict,
    "user_data_json__account_update.json": AccountUpdate,
    "user_data_json__account_update_bnfcr.json": AccountUpdate,
    "user_data_json__algo_update_canceled.json": AlgoUpdate,
    "user_data_json__algo_update_new.json": AlgoUpdate,
    "user_data_json__order_update_adl.json": OrderUpdate,
    "user_data_json__order_update_calculated.json": OrderUpdate,
    "user_data_json__order_update_calculated_pending.json": OrderUpdate,
    "user_data_json__order_update_delivery.json": OrderUpdate,
    "user_data_json__order_update_insurance.json": OrderUpdate,
    "user_data_json__order_update_new.json": OrderUpdate,
    "user_data_json__order_update_settlement.json": OrderUpdate,
    "user_data_json__order_update_trade.json": OrderUpdate,
    "user_data_json__order_update_trade_partial.json": OrderUpdate,
    "user_data_json__trade_lite.json": dict,
}


def _parse_http(name: str, payload: Any) -> Any:
    if name == "http_json__account_info_v2.json":
        return schemas.parse_account(payload)
    if name == "http_json__balance.json":
        return schemas.parse_balance_rows(payload)
    if name == "http_json__open_algo_orders.json":
        return [schemas.parse_algo(r) for r in payload]
    if name == "http_json__order_response.json":
        return schemas.parse_order(payload)
    if name == "http_json__position_risk.json":
        return schemas.parse_positions(payload)
    raise AssertionError(f"{name}: no parser mapped for this REST fixture")


def test_fixture_copies_exist_and_match_the_shared_originals() -> None:
    assert len(list(HERE.glob("*.json"))) >= 28
    if SHARED.is_dir():
        for p in SHARED.glob("*.json"):
            copy = HERE / p.name
            assert copy.exists(), f"{p.name} not copied into {HERE}"
            assert json.loads(copy.read_text()) == json.loads(p.read_text()), p.name


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.name)
def test_every_fixture_parses(path: Path) -> None:
    payload = json.loads(path.read_text())
    name = path.name
    if name.startswith("http_json__"):
        parsed = _parse_http(name, payload)
        assert parsed
        return
    expected = STREAM_EXPECTED.get(name)
    assert expected is not None, f"{name}: no expected type mapped for this stream fixture"
    parsed = schemas.parse_stream_message(payload)
    assert isinstance(parsed, expected), (name, parsed)
    # The same payload wrapped as a combined-stream message parses the same way.
    wrapped = schemas.parse_stream_message({"stream": "x@y", "data": payload})
    assert wrapped == parsed


def _load(name: str) -> Any:
    return json.loads((HERE / name).read_text())


def test_order_trade_update_fields() -> None:
    ev = schemas.parse_stream_message(_load("user_data_json__order_update_trade.json"))
    assert ev == OrderUpdate(
        symbol="BTCUSDT",
        order_id="8886774",
        client_order_id="TEST",
        side="BUY",
        order_type="LIMIT",
        status="PARTIALLY_FILLED",
        execution_type="TRADE",
        price=7100.5,
        qty=0.001,
        executed_qty=0.001,
        avg_price=7100.5,
        last_fill_qty=0.001,
        last_fill_price=7100.5,
        commission=0.01,
        realized_pnl=12.34,
        reduce_only=False,
        event_time=1568879465651,
    )


def test_liquidation_statuses_map_to_contract_statuses() -> None:
    adl = schemas.parse_stream_message(_load("user_data_json__order_update_adl.json"))
    ins = schemas.parse_stream_message(_load("user_data_json__order_update_insurance.json"))
    pending = schemas.parse_stream_message(
        _load("user_data_json__order_update_calculated_pending.json")
    )
    assert isinstance(adl, OrderUpdate) and adl.status == "FILLED"
    assert adl.execution_type == "CALCULATED" and adl.last_fill_qty == 0.005
    assert isinstance(ins, OrderUpdate) and ins.status == "FILLED"
    assert isinstance(pending, OrderUpdate) and pending.status == "NEW"
    assert pending.commission == 0.0  # no N/n fields in this event


def test_algo_update_fields_and_child_order_id() -> None:
    ev = schemas.parse_stream_message(_load("user_data_json__algo_update_new.json"))
    assert isinstance(ev, AlgoUpdate)
    assert (ev.algo_id, ev.client_algo_id, ev.status) == (
        "2148719",
        "Q5xaq5EGKgXXa0fD7fs0Ip",
        "NEW",
    )
    assert ev.order_id is None  # "ai" is "" until triggered
    assert ev.stop_price == 750.0 and ev.working_type == "CONTRACT_PRICE"
    triggered = _load("user_data_json__algo_update_new.json")
    triggered["o"].update(X="TRIGGERED", ai=99887766)
    ev2 = schemas.parse_stream_message(triggered)
    assert isinstance(ev2, AlgoUpdate) and ev2.order_id == "99887766"


def test_account_update_positions_one_way_and_hedge_rows() -> None:
    ev = schemas.parse_stream_message(_load("user_data_json__account_update.json"))
    assert isinstance(ev, AccountUpdate)
    assert ev.reason == "ORDER"
    assert ev.balances == {"USDT": 122624.12345678}
    assert ev.positions["BTCUSDT"]["side"] == "NONE"
    assert ev.positions["BTCUSDT:LONG"]["qty"] == 20.0
    assert ev.positions["BTCUSDT:SHORT"]["side"] == "SHORT"
    bnfcr = schemas.parse_stream_message(_load("user_data_json__account_update_bnfcr.json"))
    assert isinstance(bnfcr, AccountUpdate) and bnfcr.balances == {"BNFCR": 5001.28983031}


def test_klines_closed_becomes_bar_open_does_not() -> None:
    closed = schemas.parse_stream_message(_load("market_data_json__kline_stream_closed.json"))
    assert closed == BarClosed(
        "BTCUSDT", "1m", 1638747660000, 0.001, 0.0025, 0.001, 0.002, 1000.0, 1638747719999
    )
    opened = schemas.parse_stream_message(_load("market_data_json__kline_stream_open.json"))
    assert isinstance(opened, dict) and opened["event"] == "kline_open"


def test_mark_price_event() -> None:
    ev = schemas.parse_stream_message(_load("market_data_json__mark_price_stream.json"))
    assert ev == MarkPrice("BTCUSDT", 11794.15, 0.00038167, 1562306400000, 1562305380000)


def test_listen_key_expired_is_a_stream_status() -> None:
    ev = schemas.parse_stream_message({"e": "listenKeyExpired", "E": 5, "listenKey": "k"})
    assert ev == StreamStatus("user", "LISTEN_KEY_EXPIRED", "listenKeyExpired", 5)


def test_rest_fixtures_values() -> None:
    algo = schemas.parse_algo(_load("http_json__open_algo_orders.json")[0])
    assert algo["type"] == "STOP_MARKET"  # named `orderType` on this endpoint
    assert algo["algo_id"] == "123456789" and algo["stop_price"] == 45000.0
    assert algo["working_type"] == "MARK_PRICE" and algo["close_position"] is False
    order = schemas.parse_order(_load("http_json__order_response.json"))
    assert order["order_id"] == "12345678" and order["qty"] == 0.001
    assert order["status"] == "NEW" and order["time_in_force"] == "GTC"
    pos = schemas.parse_positions(_load("http_json__position_risk.json"))["BTCUSDT"]
    assert (pos["side"], pos["qty"], pos["entry_price"], pos["leverage"]) == (
        "LONG",
        0.001,
        50000.0,
        20,
    )
    acct = schemas.parse_account(_load("http_json__account_info_v2.json"))
    assert acct["total_equity"] == 23.72469206 and acct["margin_used"] == 0.0


def test_malformed_payloads_name_the_field() -> None:
    with pytest.raises(schemas.SchemaError, match="orderId"):
        schemas.parse_order({"symbol": "BTCUSDT", "status": "NEW", "side": "BUY"})
    with pytest.raises(schemas.SchemaError, match="o.q"):
        schemas.parse_stream_message(
            {"e": "ORDER_TRADE_UPDATE", "o": {"s": "X", "i": 1, "X": "NEW", "q": "abc"}}
        )
    with pytest.raises(schemas.SchemaError, match="event type"):
        schemas.parse_stream_message({"foo": 1})


def test_exchange_info_filters_and_weight_limit() -> None:
    info = {
        "rateLimits": [
            {
                "rateLimitType": "REQUEST_WEIGHT",
                "interval": "MINUTE",
                "intervalNum": 1,
                "limit": 1200,
            }
        ],
        "symbols": [
            schemas.symbol_entry_wire(
                "BTCUSDC", tick_size="0.1", step_size="0.001", min_qty="0.001", min_notional="5"
            )
        ],
    }
    parsed = schemas.parse_exchange_info(info)
    assert parsed["request_weight_limit"] == 1200
    f = parsed["symbols"]["BTCUSDC"]
    assert schemas.public_filters(f) == {
        "tick_size": 0.1,
        "step_size": 0.001,
        "min_qty": 0.001,
        "min_notional": 5.0,
    }
    assert f["margin_asset"] == "USDC"
    with pytest.raises(schemas.SchemaError, match="PRICE_FILTER"):
        schemas.parse_symbol_filters({"symbol": "X", "filters": []})


def test_parse_error_bodies() -> None:
    assert schemas.parse_error('{"code": -2011, "msg": "Unknown order sent."}') == (
        -2011,
        "Unknown order sent.",
    )
    assert schemas.parse_error("<html>503</html>") == (None, "<html>503</html>")


def test_encoders_round_trip_through_the_parsers() -> None:
    order = {
        "order_id": "1000007",
        "client_order_id": "atl-BTCUSDC-1-entry",
        "symbol": "BTCUSDC",
        "side": "BUY",
        "type": "LIMIT",
        "status": "PARTIALLY_FILLED",
        "price": 50000.1,
        "qty": 0.003,
        "executed_qty": 0.001,
        "avg_price": 50000.1,
        "reduce_only": False,
        "time_in_force": "GTX",
        "update_time": 1700000000000,
    }
    assert schemas.parse_order(schemas.order_wire(order)) == order
    algo = {
        "algo_id": "5000001",
        "client_algo_id": "atl-BTCUSDC-1-sl",
        "symbol": "BTCUSDC",
        "side": "SELL",
        "type": "STOP_MARKET",
        "status": "NEW",
        "stop_price": 49000.0,
        "qty": 0.003,
        "working_type": "MARK_PRICE",
        "reduce_only": True,
        "close_position": False,
        "algo_type": "CONDITIONAL",
        "order_id": None,
        "update_time": 1700000000000,
    }
    assert schemas.parse_algo(schemas.algo_wire(algo)) == algo
    ou = OrderUpdate(
        "BTCUSDC", "7", "c-1", "SELL", "MARKET", "FILLED", "TRADE", 0.0, 0.5, 0.5, 101.25,
        0.5, 101.25, 0.02, -1.5, True, 1700000000123,
    )  # fmt: skip
    assert schemas.parse_stream_message(schemas.order_update_wire(ou)) == ou
    au = AlgoUpdate(
        "BTCUSDC", "9", "c-sl", "SELL", "FINISHED", 99.5, 0.5, "MARK_PRICE", "12", 1700000000999,
        0.5,
    )  # fmt: skip
    assert schemas.parse_stream_message(schemas.algo_update_wire(au)) == au
    acc = AccountUpdate(
        "ORDER",
        {"USDT": 1000.5},
        {
            "BTCUSDC": {
                "symbol": "BTCUSDC",
                "side": "SHORT",
                "qty": 0.5,
                "entry_price": 100.0,
                "unrealized_pnl": 1.25,
                "position_side": "BOTH",
            }
        },
        1700000000000,
    )
    assert schemas.parse_stream_message(schemas.account_update_wire(acc)) == acc
    bar = BarClosed("XRPUSDT", "5m", 0, 1.1, 1.2, 1.0, 1.15, 1234.5, 299999)
    wire = schemas.kline_event_wire("XRPUSDT", "5m", bar.as_bar(), closed=True, event_time=1)
    assert schemas.parse_stream_message(wire) == bar
    mark = MarkPrice("XRPUSDT", 1.1934, 0.0001, 28800000, 42)
    assert schemas.parse_stream_message(schemas.mark_price_event_wire(mark)) == mark


@given(
    st.decimals(
        min_value=-(10**9), max_value=10**9, allow_nan=False, allow_infinity=False, places=10
    )
)
def test_decimal_str_is_plain_and_exact(value: Any) -> None:
    text = schemas.decimal_str(value)
    assert "e" not in text.lower()
    assert schemas.dec(text) == value
    assert text != "-0"


def test_flag_and_number_parsing() -> None:
    assert schemas.flag("true") and schemas.flag(True) and schemas.flag("TRUE")
    assert not schemas.flag("false") and not schemas.flag(False)
    assert schemas.num("0.00005288") == 0.00005288
    assert schemas.num("") == 0.0
    with pytest.raises(schemas.SchemaError, match="price"):
        schemas.num(True, "price")
