"""`atlas sim-exchange`: the command line of the loopback Binance-compatible exchange
(`atlas_actors.sim_exchange`). Also runnable as `python -m supervisor.sim_exchange_cmd`."""

from __future__ import annotations

import argparse
import signal
import threading
from pathlib import Path
from typing import Any

from atlas_actors.sim_exchange import LOOPBACK_HOSTS, SimExchangeServer
from atlas_actors.venues.binance.account import MarginAssetMix, margin_asset_of_symbols
from atlas_actors.venues.sim import SimVenue

DEFAULT_SYMBOLS = ("BTCUSDC", "XRPUSDT", "ADABTC")


def _parse_speed(text: str) -> float | None:
    if text == "max":
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--speed must be a number or 'max', got {text!r}"
        ) from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"--speed must be positive, got {text!r}")
    return value


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="atlas sim-exchange",
        description="Serve a simulated Binance USD-M exchange on loopback (REST + WebSocket).",
    )
    p.add_argument("--host", default="127.0.0.1", help="loopback address to bind (only loopback)")
    p.add_argument("--port", type=int, default=0, help="REST (and WS) port; 0 = pick a free one")
    p.add_argument("--ws-port", type=int, default=None, help="serve the streams on this port too")
    p.add_argument(
        "--data", default="", help="kline CSV(.gz) files, comma separated, one per symbol"
    )
    p.add_argument(
        "--symbols",
        default=",".join(DEFAULT_SYMBOLS),
        help="symbols, comma separated (with --data: in the same order as the files)",
    )
    p.add_argument("--speed", type=_parse_speed, default=60.0, help="N x real time, or 'max'")
    p.add_argument("--api-key", default="paper")
    p.add_argument("--api-secret", default="paper")
    p.add_argument("--state", default=None, help="state file (loaded on start, saved periodically)")
    p.add_argument("--balance", type=float, default=10_000.0, help="starting wallet balance")
    return p


def _load_series(
    symbols: list[str], data: list[str]
) -> tuple[dict[str, Any], dict[str, Any], dict[str, list[tuple[int, float]]]]:
    from atlas_actors.venues import replay

    if data and len(data) != len(symbols):
        raise ValueError(
            f"--data has {len(data)} files but --symbols has {len(symbols)} symbols; "
            "give one file per symbol, in the same order"
        )
    series: dict[str, Any] = {}
    marks: dict[str, Any] = {}
    funding: dict[str, list[tuple[int, float]]] = {}
    for i, sym in enumerate(symbols):
        if data:
            series[sym] = replay.load_klines(data[i], name=sym)
        else:
            series[sym] = replay.paper_series_for(sym)
            mark = replay.paper_mark_for(sym)
            if mark is not None:
                marks[sym] = mark
            funding[sym] = replay.paper_funding_for(sym)
    return series, marks, funding


def main_sim_exchange(argv: list[str]) -> int:
    """`atlas sim-exchange [--port P] [--ws-port Q] [--data ...] [--symbols ...] [--speed N|max]`."""
    args = _parser().parse_args(argv)
    try:
        if args.host not in LOOPBACK_HOSTS:
            raise ValueError(f"--host must be a loopback address, got {args.host!r}")
        symbols = [s.strip().upper() for s in args.symbols.split(",") if s.strip()]
        if not symbols:
            raise ValueError("--symbols is empty")
        data = [d.strip() for d in args.data.split(",") if d.strip()]
        series, marks, funding = _load_series(symbols, data)
        cursor = None
        if args.state and Path(args.state).exists():
            venue, state = SimExchangeServer.load_state(args.state)
            cursor = state.get("replay")
            funding = {}  # already in the restored book
        else:
            # the wallet row the balance sits in: the symbols' margin asset (USDT when they
            # mix assets, as Binance's USDT-only totals would)
            try:
                asset = margin_asset_of_symbols(tuple(symbols))
            except MarginAssetMix:
                asset = "USDT"
            venue = SimVenue(starting_balance=args.balance, asset=asset)
        server = SimExchangeServer(
            venue,
            host=args.host,
            port=args.port,
            ws_port=args.ws_port,
            api_key=args.api_key,
            api_secret=args.api_secret,
            state_path=args.state,
            symbols=symbols,
        )
        server.start()
    except (ValueError, OSError, RuntimeError) as exc:
        print(f"atlas sim-exchange: error: {exc}", flush=True)
        return 2
    server.start_replay(series, speed=args.speed, marks=marks, funding=funding, cursor=cursor)
    secret_note = "default" if args.api_secret == "paper" else "as given"
    print(f"sim-exchange REST  {server.rest_url}", flush=True)
    print(f"sim-exchange WS    {server.ws_url}", flush=True)
    print(
        f"sim-exchange symbols {','.join(symbols)}  speed "
        f"{'max' if args.speed is None else f'{args.speed:g}x'}  api key {args.api_key!r} "
        f"(secret {secret_note})" + (f"  state {args.state}" if args.state else ""),
        flush=True,
    )
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not stop.wait(0.5):
            pass
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        server.stop()
        print("sim-exchange stopped" + (f"; state saved to {args.state}" if args.state else ""))
    return 0


if __name__ == "__main__":  # pragma: no cover
    import sys

    raise SystemExit(main_sim_exchange(sys.argv[1:]))
