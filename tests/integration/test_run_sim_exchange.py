"""`atlas run --venue sim-exchange`: the whole service with the real BinanceAdapter against
`atlas sim-exchange` on loopback, for three symbols. Every position it holds at the exchange
is protected by an Algo stop there, confirmed visible by the Sentinel."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from atlas_actors.domain.stops import closing_side

from .test_binance_sim_exchange import SYMBOLS, SimExchangeProcess, _adapter

ROOT = Path(__file__).resolve().parents[2]


def test_paper_run_through_the_sim_exchange_protects_every_position(tmp_path):
    exchange = SimExchangeProcess(tmp_path / "simx.json", speed="3000")
    try:
        env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "SENTRY_DSN")}
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "supervisor.cli",
                "run",
                "--venue",
                "sim-exchange",
                "--venue-url",
                exchange.rest_url,
                "--symbols",
                ",".join(SYMBOLS),
                "--state-dir",
                str(tmp_path / "state"),
                "--log-dir",
                str(tmp_path / "logs"),
                "--no-admin",
                "--quiet",
                "--run-seconds",
                "15",
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        recs = [
            json.loads(x)
            for x in (tmp_path / "logs" / "records.jsonl").read_text().splitlines()
            if x
        ]
        stops = [r for r in recs if r["kind"] == "order" and r["role"] == "sl" and r["venue_id"]]
        assert stops, "the run placed no protective stop"
        assert any(r["kind"] == "candidate" for r in recs)
        confirmed = {r["client_algo_id"] for r in recs if r["kind"] == "stop_visible"}
        settled = {
            r["client_algo_id"]
            for r in recs
            if r["kind"] == "stop_invisible" and r.get("venue_flat")
        }
        for s in stops:
            assert s["client_id"] in confirmed | settled, s
        assert not [r for r in recs if r["kind"] == "risk" and r["event_type"] == "EMERGENCY_FLAT"]

        # what the exchange holds after the service stopped: each position has its Algo stop
        venue = _adapter(exchange.rest_url)
        try:
            positions = venue.get_positions()
            for sym in SYMBOLS:
                pos = positions.get(sym) or {}
                if pos.get("side", "NONE") == "NONE" or not float(pos.get("qty") or 0):
                    continue
                algos = venue.get_open_algo_orders(sym)
                covering = [
                    a
                    for a in algos
                    if a["side"] == closing_side(pos["side"])
                    and (a["reduce_only"] or a["close_position"])
                    and a["working_type"] == "MARK_PRICE"
                    and float(a["qty"]) >= float(pos["qty"]) - 1e-9
                ]
                assert covering, (sym, pos, algos)
            # no regular order on the exchange is a conditional type (stops live on the algo book)
            for sym in SYMBOLS:
                assert all(o.get("type") in ("LIMIT", "MARKET") for o in venue.get_open_orders(sym))
        finally:
            venue.close()
    finally:
        exchange.kill()
