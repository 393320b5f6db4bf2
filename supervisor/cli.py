"""`atlas` command line: run | selfcheck | backtest | admin | state | sim-exchange | audit."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

USAGE = """atlas <command> [options]

commands:
  run           run the actor tree (paper by default, on the bundled real klines)
  selfcheck     contract §9 pre-flight checks (PASS/FAIL table; exit 0 only if all pass)
  backtest      deterministic backtest with a report (metrics.json, trades.csv, equity.png)
  admin         talk to a running service through its admin socket
  state         print a symbol's stored state from a state directory
  sim-exchange  a Binance-compatible simulated exchange on loopback
  audit         check the invariants over state, records and venue (exit 1 on any violation)

`atlas <command> --help` describes each command's options.
"""


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0 if args else 2
    cmd, rest = args[0], args[1:]
    if cmd == "run":
        from supervisor.run import main_run

        return main_run(rest)
    if cmd == "selfcheck":
        from atlas_actors.selfcheck import main_selfcheck

        return main_selfcheck(rest)
    if cmd == "backtest":
        from atlas_actors.backtest import main_backtest

        return main_backtest(rest)
    if cmd == "admin":
        from supervisor.admin import main_admin

        return main_admin(rest)
    if cmd == "state":
        return _main_state(rest)
    if cmd == "sim-exchange":
        from supervisor.sim_exchange_cmd import main_sim_exchange

        return main_sim_exchange(rest)
    if cmd == "audit":
        from atlas_actors.audit import main_audit

        return main_audit(rest)
    print(f"atlas: unknown command {cmd!r}\n\n{USAGE}", file=sys.stderr)
    return 2


def _main_state(argv: list[str]) -> int:
    import json

    from atlas_actors.store import StateStore, StoreError

    p = argparse.ArgumentParser(prog="atlas state", description="Print stored symbol state.")
    p.add_argument("--state-dir", required=True, help="the service's state directory")
    p.add_argument("symbol", nargs="?", help="symbol (omit to list the stored symbols)")
    a = p.parse_args(argv)
    try:
        with StateStore(a.state_dir) as store:
            store.load()
            if not a.symbol:
                print("\n".join(store.symbols()))
            else:
                print(
                    json.dumps(store.get_symbol_state(a.symbol.upper()), indent=2, sort_keys=True)
                )
    except StoreError as exc:
        print(f"atlas state: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
