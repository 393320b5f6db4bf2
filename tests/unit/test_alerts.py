"""Sentry alerts against a real local HTTP endpoint that receives Sentry envelopes."""

from __future__ import annotations

import gzip
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from supervisor.alerts import Alerts, init_alerts, scrub_event
from supervisor.config import config_from_mapping
from supervisor.secrets import Secrets

PLANTED_KEY = "PLANTEDapikeyAAAAbbbbCCCCdddd0123456789"
PLANTED_SECRET = "PLANTEDsecretZZZZyyyyXXXX9876543210"
LISTEN_KEY = "pqia91ma19a5s61cv6a81va65sdf19v8a65a1a5s61cv6a81va65sdf19v8a65a1"


class SentryStub:
    """127.0.0.1 HTTP server collecting raw request bodies (what would leave the host)."""

    def __init__(self) -> None:
        self.raw: list[bytes] = []
        self.bodies: list[bytes] = []
        self.paths: list[str] = []
        self.cond = threading.Condition()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length", 0))
                raw = self.rfile.read(length)
                body = (
                    gzip.decompress(raw) if self.headers.get("Content-Encoding") == "gzip" else raw
                )
                with stub.cond:
                    stub.raw.append(raw + str(self.headers).encode())
                    stub.bodies.append(body)
                    stub.paths.append(self.path)
                    stub.cond.notify_all()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def dsn(self) -> str:
        return f"http://publickey0123456789@127.0.0.1:{self.port}/1"

    def events(self) -> list[dict[str, Any]]:
        """Event items of every received envelope."""
        out = []
        for body in self.bodies:
            lines = body.split(b"\n")
            i = 1  # line 0: envelope header
            while i < len(lines) and lines[i]:
                item_header = json.loads(lines[i])
                payload = lines[i + 1]
                if item_header.get("type") == "event":
                    out.append(json.loads(payload))
                i += 2
        return out

    def wait_for(self, n: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        with self.cond:
            while len(self.events()) < n and time.monotonic() < deadline:
                self.cond.wait(0.1)
        return self.events()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stub():
    s = SentryStub()
    yield s
    s.close()


def make_alerts(dsn: str | None) -> Alerts:
    return Alerts(
        dsn,
        environment="test",
        release="atlas@test",
        instance="unit",
        secret_values=[PLANTED_KEY, PLANTED_SECRET],
    )


def _crash() -> None:
    api_key = PLANTED_KEY  # a local variable holding a secret: must not be sent
    raise ConnectionError(
        f"POST https://fapi.binance.com/fapi/v1/order?symbol=BTCUSDC&timestamp=1&signature=abc123def "
        f"X-MBX-APIKEY: {api_key} secret={PLANTED_SECRET} listenKey={LISTEN_KEY}"
    )


def test_events_reach_the_endpoint_scrubbed(stub):
    alerts = make_alerts(stub.dsn)
    assert alerts.enabled
    assert alerts._client.should_send_default_pii() is False
    assert alerts._client.options["include_local_variables"] is False
    assert alerts._client.integrations == {}
    try:
        _crash()
    except ConnectionError as exc:
        alerts.actor_crashed("OrderGateway", "BTCUSDC", exc)
    alerts.halted("XRPUSDT", f"5 restarts in 60s; last error mentions {PLANTED_SECRET}")
    alerts.emergency_flat(
        "BTCUSDC",
        "stop not visible within 1000 ms",
        {
            "qty": 0.01,
            "client_ids": ["atl-BTCUSDC-7-sl"],
            "api_key": PLANTED_KEY,
            "accountAlias": "SgsR",
            "url": f"wss://fstream.binance.com/ws/{LISTEN_KEY}",
        },
    )
    alerts.flush(5)
    events = stub.wait_for(3)
    alerts.close()
    assert len(events) == 3
    by_kind = {e["tags"]["kind"]: e for e in events}

    crash = by_kind["actor_crashed"]
    assert crash["tags"]["actor"] == "OrderGateway" and crash["tags"]["symbol"] == "BTCUSDC"
    assert crash["level"] == "error"
    assert crash["exception"]["values"][-1]["type"] == "ConnectionError"
    assert crash["environment"] == "test" and crash["release"] == "atlas@test"
    assert crash["server_name"] == "unit"
    frames = crash["exception"]["values"][-1]["stacktrace"]["frames"]
    assert frames and all("vars" not in f for f in frames)  # no local variables
    assert "[Filtered]" in crash["exception"]["values"][-1]["value"]

    halted = by_kind["halted"]
    assert halted["level"] == "fatal" and halted["tags"]["symbol"] == "XRPUSDT"
    assert halted["logentry"]["message"].startswith("XRPUSDT HALTED")

    flat = by_kind["emergency_flat"]
    assert flat["tags"]["symbol"] == "BTCUSDC" and flat["level"] == "fatal"
    details = flat["extra"]["details"]
    assert details["qty"] == 0.01 and details["client_ids"] == ["atl-BTCUSDC-7-sl"]
    assert details["api_key"] == "[Filtered]" and details["accountAlias"] == "[Filtered]"

    everything = b"".join(stub.raw) + b"".join(stub.bodies)
    for planted in (PLANTED_KEY, PLANTED_SECRET, LISTEN_KEY, "abc123def", "SgsR"):
        assert planted.encode() not in everything, planted
    assert all(p.startswith("/api/1/envelope/") for p in stub.paths)


def test_selfcheck_failure_alert(stub):
    class Line:
        def __init__(self, name: str, result: str, reason: str) -> None:
            self.name, self.result, self.reason = name, result, reason

    class Report:
        lines = [
            Line("REST connectivity", "PASS", "ok"),
            Line("position mode", "FAIL", "account is in HEDGE mode"),
        ]

    alerts = make_alerts(stub.dsn)
    alerts.selfcheck_failed(Report())
    alerts.flush(5)
    (event,) = stub.wait_for(1)
    alerts.close()
    assert event["tags"]["kind"] == "selfcheck_failed"
    assert event["logentry"]["message"] == "selfcheck failed: position mode"
    assert event["extra"]["failed"] == [
        {"name": "position mode", "result": "FAIL", "reason": "account is in HEDGE mode"}
    ]


def test_off_without_dsn_counts_calls_and_sends_nothing(stub):
    alerts = make_alerts(None)
    assert not alerts.enabled
    alerts.actor_crashed("SymbolActor", "BTCUSDC", RuntimeError("x"))
    alerts.halted("BTCUSDC", "restart intensity")
    alerts.emergency_flat("BTCUSDC", "not visible", {})
    alerts.flush(0.1)
    assert [k for k, _ in alerts.sent] == ["actor_crashed", "halted", "emergency_flat"]
    assert alerts.sent[0][1] == {
        "kind": "actor_crashed",
        "instance": "unit",
        "actor": "SymbolActor",
        "symbol": "BTCUSDC",
    }
    time.sleep(0.2)
    assert stub.bodies == []


def test_init_alerts_from_config_and_secrets(stub):
    cfg = config_from_mapping({"alerts": {"instance": "acct1"}}, source="t.toml")
    on = init_alerts(cfg, Secrets(sentry_dsn=stub.dsn))
    assert on.enabled and on.instance == "acct1" and on.environment == "paper"
    on.close()
    off = init_alerts(
        config_from_mapping({"alerts": {"sentry": False}}), Secrets(sentry_dsn=stub.dsn)
    )
    assert not off.enabled
    assert not init_alerts(cfg, Secrets()).enabled


def test_unreachable_endpoint_never_raises():
    alerts = make_alerts("http://k0123456789@127.0.0.1:9/1")  # discard port: nothing listens
    alerts.halted("BTCUSDC", "x")
    alerts.flush(1)
    alerts.close(1)
    assert alerts.sent[0][0] == "halted"


def test_scrub_event_keys_and_strings():
    event = {
        "extra": {
            "Authorization": "Bearer xyz",
            "password": "hunter2",
            "listen_key": "abc",
            "uid": 123456,
            "symbol": "BTCUSDC",
            "note": f"api key {PLANTED_KEY}",
        },
        "tags": {"dsn": "http://a@b/1"},
        "message": "GET /fapi/v1/order?signature=0a1b2c&recvWindow=5000",
    }
    out = scrub_event(event, [PLANTED_KEY])
    assert out["extra"]["Authorization"] == "[Filtered]"
    assert out["extra"]["password"] == "[Filtered]"
    assert out["extra"]["listen_key"] == "[Filtered]"
    assert out["extra"]["uid"] == "[Filtered]"
    assert out["extra"]["symbol"] == "BTCUSDC"
    assert PLANTED_KEY not in json.dumps(out)
    assert out["tags"]["dsn"] == "[Filtered]"
    assert out["message"] == "GET /fapi/v1/order?signature=[Filtered]&recvWindow=5000"
