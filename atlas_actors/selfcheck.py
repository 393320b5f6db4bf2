"""SelfCheck (contract §9): can this venue account be traded safely with this configuration?

`run_selfcheck(adapter, config_or_params, symbols)` returns a `SelfCheckReport`: one line per
check, PASS or FAIL with a reason. Nothing raises out of it: an exception, a hang (each check
has a deadline) or a missing adapter method becomes a FAIL line naming what went wrong.

Checks (in this order):
  python-binance           (BinanceAdapter only) the installed version is >= 1.0.33 and its
                           Client has the algo methods (older releases install fine and fail at
                           the first stop)
  REST connectivity        a public call (server time when the adapter has it, then the mark
                           price of the first symbol)
  API permissions          get_balances() answers with total_equity / available_balance
  stream connectivity      streams started (adapter.ws_start, or `stream_probe`) deliver an event
                           or a CONNECTED status within the timeout
  Algo conditional orders  get_open_algo_orders() answers for every symbol; with
                           `algo_probe=True` a far-away closePosition stop is placed, seen in open
                           algo orders and cancelled
  position mode            get_position_mode() is "ONE_WAY" (hedge mode is refused)
  min qty / precision SYM  per symbol: filters are sane and the smallest order Atlas would plan
                           at the configured risk (entry, TP1, TP2, runner of tiers A and B) meets
                           min qty, min notional and the available margin
  key parameters           tiers A/B, cooldowns, runner and ShockGuard parameters are loaded

`main_selfcheck(args)` is `atlas selfcheck`: it builds the venue from the config, prints the
table and exits 0 only when every line passes (1 on a FAIL, 2 on a configuration error).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

PASS = "PASS"
FAIL = "FAIL"
T = TypeVar("T")

StreamProbe = Callable[[float], str]  # (timeout_s) -> description; raises when no stream


@dataclass(frozen=True)
class SelfCheckLine:
    name: str
    result: str  # PASS / FAIL
    reason: str

    @property
    def ok(self) -> bool:
        return self.result == PASS


@dataclass
class SelfCheckReport:
    lines: list[SelfCheckLine] = field(default_factory=list)
    venue: str = ""

    @property
    def ok(self) -> bool:
        return bool(self.lines) and all(line.ok for line in self.lines)

    @property
    def failures(self) -> list[SelfCheckLine]:
        return [line for line in self.lines if not line.ok]

    def add(self, name: str, ok: bool, reason: str) -> None:
        self.lines.append(SelfCheckLine(name, PASS if ok else FAIL, reason))

    def format_table(self) -> str:
        width = max([len("CHECK")] + [len(line.name) for line in self.lines])
        out = [f"{'CHECK'.ljust(width)}  RESULT  REASON"]
        for line in self.lines:
            out.append(f"{line.name.ljust(width)}  {line.result.ljust(6)}  {line.reason}")
        verdict = "all checks passed" if self.ok else f"{len(self.failures)} check(s) FAILED"
        out.append(f"selfcheck {('of ' + self.venue + ': ') if self.venue else ''}{verdict}")
        return "\n".join(out)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "venue": self.venue,
            "lines": [
                {"name": line.name, "result": line.result, "reason": line.reason}
                for line in self.lines
            ],
        }


class CheckTimeout(Exception):
    pass


def _describe(exc: BaseException) -> str:
    from supervisor.secrets import redact  # secrets never reach the report

    text = redact(str(exc)).strip()
    if len(text) > 240:
        text = text[:237] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _with_deadline(fn: Callable[[], T], timeout_s: float, what: str) -> T:
    """Run `fn` on a daemon thread; a call still running after `timeout_s` is abandoned and
    reported (a hung venue call must not hang the selfcheck)."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:
            box["error"] = exc

    worker = threading.Thread(target=target, name=f"selfcheck-{what}", daemon=True)
    worker.start()
    worker.join(timeout_s)
    if worker.is_alive():
        raise CheckTimeout(f"{what}: no answer within {timeout_s:g}s")
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]


def _method(adapter: Any, name: str) -> Callable[..., Any]:
    fn = getattr(adapter, name, None)
    if not callable(fn):
        raise AttributeError(f"{type(adapter).__name__} has no {name}()")
    return fn  # type: ignore[no-any-return]


# ------------------------------------------------------------------ the checks


def _params_of(config_or_params: Any) -> tuple[Any, str, str]:
    """(params, kline interval, client id prefix) from an AtlasConfig or a bare Params."""
    run = getattr(config_or_params, "run", None)
    if run is not None and hasattr(config_or_params, "params"):
        return config_or_params.params, run.interval, run.client_id_prefix
    return config_or_params, "1m", "atl"


PYTHON_BINANCE_MIN = (1, 0, 33)  # the first release with the algo (conditional) order methods
ALGO_METHODS = ("futures_create_algo_order", "futures_get_open_algo_orders")


def python_binance_check(version: str | None = None, client_cls: Any = None) -> tuple[bool, str]:
    """(ok, reason) for the installed python-binance (or the given version and Client)."""
    if version is None:
        from importlib.metadata import PackageNotFoundError
        from importlib.metadata import version as installed

        try:
            version = installed("python-binance")
        except PackageNotFoundError:
            return False, "python-binance is not installed"
    if client_cls is None:
        from binance.client import Client

        client_cls = Client
    try:
        parts = tuple(int(p) for p in version.split(".")[:3])
    except ValueError:
        parts = (0,)
    missing = [m for m in ALGO_METHODS if not callable(getattr(client_cls, m, None))]
    floor = ".".join(map(str, PYTHON_BINANCE_MIN))
    has = "has the algo methods" if not missing else f"lacks {', '.join(missing)}"
    ok = parts >= PYTHON_BINANCE_MIN and not missing
    reason = f"python-binance {version} {has}"
    return ok, reason if ok else f"{reason}; Atlas needs >= {floor} (pip install -U python-binance)"


def run_selfcheck(
    adapter: Any,
    config_or_params: Any,
    symbols: Sequence[str],
    *,
    stream_probe: StreamProbe | None = None,
    timeout_s: float = 10,
    algo_probe: bool = False,
    venue_label: str | None = None,
) -> SelfCheckReport:
    label = venue_label or str(getattr(adapter, "rest_url", "") or type(adapter).__name__)
    report = SelfCheckReport(venue=label)
    symbols = list(symbols)
    try:
        params, interval, prefix = _params_of(config_or_params)
    except Exception as exc:
        params, interval, prefix = None, "1m", "atl"
        report.add("key parameters", False, f"cannot read the configuration ({_describe(exc)})")

    def step(name: str, check: Callable[[], str]) -> bool:
        try:
            reason = check()
        except CheckFailed as exc:
            report.add(name, False, str(exc))
            return False
        except Exception as exc:
            report.add(name, False, _fail_reason(name, label, exc))
            return False
        report.add(name, True, reason)
        return True

    if not symbols:
        report.add("symbols", False, "no symbols configured (run.symbols)")

    if type(adapter).__module__.startswith("atlas_actors.venues.binance"):
        report.add("python-binance", *python_binance_check())

    def rest() -> str:
        parts = []
        sync = getattr(adapter, "sync_time", None)
        if callable(sync):
            offset = _with_deadline(sync, timeout_s, "server time")
            parts.append(f"server time offset {float(offset):+.0f} ms")
        if symbols:
            mark_fn = _method(adapter, "get_mark_price")
            mark = float(_with_deadline(lambda: mark_fn(symbols[0]), timeout_s, "mark price"))
            if not (mark > 0 and math.isfinite(mark)):
                raise CheckFailed(f"{symbols[0]} mark price is {mark!r}")
            parts.append(f"{symbols[0]} mark {mark:g}")
        return f"{label} answers: " + ", ".join(parts)

    step("REST connectivity", rest)

    balances: dict[str, Any] = {}

    def permissions() -> str:
        got = _with_deadline(_method(adapter, "get_balances"), timeout_s, "balances")
        missing = [k for k in ("total_equity", "available_balance") if k not in (got or {})]
        if missing:
            raise CheckFailed(f"get_balances() lacks {', '.join(missing)}")
        balances.update(got)
        equity = float(got["total_equity"])
        if not equity > 0:
            raise CheckFailed(f"account equity is {equity:g}: nothing to trade with")
        asset = got.get("asset", "")
        return (
            f"signed account read ok: equity {equity:.2f} {asset}".rstrip()
            + f", available {float(got['available_balance']):.2f}"
        )

    step("API permissions", permissions)

    def stream() -> str:
        probe = stream_probe or _default_stream_probe(adapter)
        return str(_with_deadline(lambda: probe(timeout_s), timeout_s + 5, "stream probe"))

    step("stream connectivity", stream)

    def algo() -> str:
        for name in ("place_algo_stop", "cancel_algo", "get_open_algo_orders"):
            _method(adapter, name)
        query = _method(adapter, "get_open_algo_orders")
        total = 0
        for sym in symbols:
            got = _with_deadline(lambda s=sym: query(s), timeout_s, f"open algo orders {sym}")
            if not isinstance(got, list):
                raise CheckFailed(f"get_open_algo_orders({sym}) returned {type(got).__name__}")
            total += len(got)
        text = f"open algo query ok for {len(symbols)} symbol(s) ({total} open)"
        if algo_probe and symbols:
            text += "; " + _algo_probe(adapter, symbols[0], prefix, timeout_s)
        return text

    step("Algo conditional orders", algo)

    def position_mode() -> str:
        fn = getattr(adapter, "get_position_mode", None)
        if not callable(fn):
            raise CheckFailed(
                f"{type(adapter).__name__} has no get_position_mode(): cannot prove one-way mode"
            )
        mode = _with_deadline(fn, timeout_s, "position mode")
        if mode != "ONE_WAY":
            raise CheckFailed(
                f"account is in {mode} mode; Atlas needs one-way mode "
                "(switch it in the Binance UI or with set_position_mode_one_way())"
            )
        return "one-way"

    step("position mode", position_mode)

    for sym in symbols:
        step(
            f"min qty / precision {sym}",
            lambda s=sym: _min_qty_check(adapter, params, s, interval, balances, timeout_s),
        )

    if params is not None:
        step("key parameters", lambda: _params_summary(params))
    return report


class CheckFailed(Exception):
    """A check's own verdict (the message is the whole reason)."""


def _fail_reason(name: str, label: str, exc: BaseException) -> str:
    if name == "REST connectivity":
        return f"cannot reach {label} ({_describe(exc)})"
    if name == "API permissions":
        kind = type(exc).__name__
        hint = " (API key rejected or missing futures permission)" if "Auth" in kind else ""
        return f"signed request failed{hint} ({_describe(exc)})"
    return _describe(exc)


def _default_stream_probe(adapter: Any) -> StreamProbe:
    """Start the adapter's streams and wait for any event (a CONNECTED status counts); the
    streams are stopped again afterwards: the trading tree starts its own."""

    def probe(timeout_s: float) -> str:
        add = _method(adapter, "add_listener")
        start = _method(adapter, "ws_start")
        seen: list[Any] = []
        arrived = threading.Event()

        def on_event(event: Any) -> None:
            if not seen:
                seen.append(event)
            arrived.set()

        add(on_event)
        try:
            start()
            if not arrived.wait(timeout_s):
                raise CheckFailed(f"no stream event or CONNECTED status within {timeout_s:g}s")
        finally:
            remove = getattr(adapter, "remove_listener", None)
            if callable(remove):
                remove(on_event)
            stop = getattr(adapter, "ws_stop", None)
            if callable(stop):
                try:
                    stop()
                except Exception:  # the verdict is about starting, not stopping
                    pass
        first = seen[0]
        status = getattr(first, "status", None)
        stream = getattr(first, "stream", None)
        if status and stream:
            return f"{stream} stream {status}"
        return f"first event {type(first).__name__}"

    return probe


def _algo_probe(adapter: Any, symbol: str, prefix: str, timeout_s: float) -> str:
    """Place a closePosition BUY stop far above the market, see it in open algo orders, cancel
    it. closePosition (never with reduceOnly: -1106) cannot open a position."""
    mark = float(_with_deadline(lambda: adapter.get_mark_price(symbol), timeout_s, "mark price"))
    filters = _filters_of(
        _with_deadline(lambda: adapter.get_symbol_filters(symbol), timeout_s, "filters")
    )
    tick = filters["tick_size"]
    stop_price = math.ceil(mark * 3 / tick) * tick
    cid = f"{prefix}-sc-{int(time.time() * 1000) % 10**10}"
    placed = _with_deadline(
        lambda: adapter.place_algo_stop(
            symbol=symbol,
            side="BUY",
            qty=0.0,
            stop_price=float(f"{stop_price:.12g}"),
            reduce_only=False,
            client_algo_id=cid,
            working_type="MARK_PRICE",
            close_position=True,
        ),
        timeout_s,
        "probe stop",
    )
    try:
        deadline = time.monotonic() + 1.0  # the contract's visibility deadline (§0.2)
        visible = False
        while not visible:
            open_algos = _with_deadline(
                lambda: adapter.get_open_algo_orders(symbol), timeout_s, "open algo orders"
            )
            visible = any(a.get("client_algo_id") == cid for a in open_algos)
            if visible or time.monotonic() > deadline:
                break
            time.sleep(0.05)
    finally:
        _with_deadline(
            lambda: adapter.cancel_algo(
                symbol=symbol, algo_id=placed.get("algo_id"), client_algo_id=cid
            ),
            timeout_s,
            "cancel probe stop",
        )
    if not visible:
        raise CheckFailed(
            f"probe stop {cid} on {symbol} not visible in open algo orders within 1 s"
        )
    return f"probe stop on {symbol} placed, visible, cancelled"


def _filters_of(raw: Any) -> dict[str, float]:
    data = raw.to_dict() if hasattr(raw, "to_dict") else dict(raw)
    out = {}
    for key in ("tick_size", "step_size", "min_qty", "min_notional"):
        if key not in data:
            raise CheckFailed(f"exchange filters lack {key}")
        value = float(data[key])
        if (
            not math.isfinite(value)
            or value < 0
            or (key in ("tick_size", "step_size") and value == 0)
        ):
            raise CheckFailed(f"exchange filter {key} = {value!r} is not usable")
        out[key] = value
    return out


def _atr(bars: list[dict[str, Any]], length: int) -> float | None:
    if len(bars) < 2:
        return None
    ranges = []
    for prev, bar in zip(bars, bars[1:], strict=False):
        high, low, prev_close = float(bar["high"]), float(bar["low"]), float(prev["close"])
        ranges.append(max(high - low, abs(high - prev_close), abs(low - prev_close)))
    ranges = ranges[-length:]
    value = sum(ranges) / len(ranges)
    return value if value > 0 else None


def _floor_to(value: float, step: float) -> float:
    return math.floor(value / step + 1e-9) * step


def _min_qty_check(
    adapter: Any,
    params: Any,
    symbol: str,
    interval: str,
    balances: dict[str, Any],
    timeout_s: float,
) -> str:
    """The smallest order Atlas would plan for `symbol` must be a valid order.

    Entry qty = equity x risk share / stop distance (stop = sl_atr_mult x ATR of recent bars,
    or recovery_stop_pct of the price without bars); TP1/TP2/runner are shares of it. Entries
    must meet min qty and min notional; the reduce-only exits min qty (Binance exempts
    reduce-only orders from min notional)."""
    if params is None:
        raise CheckFailed("parameters not loaded")
    filters = _filters_of(
        _with_deadline(lambda: _method(adapter, "get_symbol_filters")(symbol), timeout_s, "filters")
    )
    price = float(_with_deadline(lambda: adapter.get_mark_price(symbol), timeout_s, "mark price"))
    if not (price > 0 and math.isfinite(price)):
        raise CheckFailed(f"no usable price for {symbol} ({price!r})")
    if "total_equity" not in balances:
        raise CheckFailed("equity unknown (API permissions failed)")
    equity = float(balances["total_equity"])
    available = float(balances.get("available_balance", equity))
    atr_len = int(params.strategy.atr_len)
    bars = _with_deadline(
        lambda: adapter.get_kline(symbol, interval, atr_len + 1), timeout_s, "klines"
    )
    atr = _atr(list(bars or []), atr_len)
    step, min_qty, min_notional = filters["step_size"], filters["min_qty"], filters["min_notional"]
    notes: list[str] = []
    problems: list[str] = []
    for tier_name in ("A", "B"):
        tier = params.tier(tier_name)
        share = float(params.risk_share(tier_name))
        if share <= 0:
            notes.append(f"tier {tier_name} off (risk 0)")
            continue
        if atr is not None:
            stop_distance = float(tier.sl_atr_mult) * atr
            basis = f"stop {tier.sl_atr_mult:g} ATR"
        else:
            stop_distance = price * float(params.risk.recovery_stop_pct)
            basis = f"stop {params.risk.recovery_stop_pct:.1%} (no bars for ATR)"
        raw_qty = equity * share / stop_distance
        entry = _floor_to(raw_qty, step)
        tp1_share, tp2_share = float(tier.tp1_share), float(tier.tp2_share)
        parts = {"entry": entry}
        if tp1_share > 0:
            parts["TP1"] = _floor_to(entry * tp1_share, step)
        if tp2_share > 0:
            parts["TP2"] = _floor_to(entry * tp2_share, step)
        runner_share = 1.0 - tp1_share - tp2_share
        if runner_share > 1e-9:
            parts["runner"] = entry - parts.get("TP1", 0.0) - parts.get("TP2", 0.0)
        where = f"tier {tier_name} (risk {share:.2%} of {equity:.2f}, {basis})"
        for part, qty in parts.items():
            if qty + 1e-12 < max(min_qty, step):
                problems.append(f"{where}: {part} {qty:.10g} < min qty {min_qty:g}")
        if entry * price + 1e-9 < min_notional:
            problems.append(
                f"{where}: entry notional {entry * price:.4g} < min notional {min_notional:g}"
            )
        margin = entry * price / max(int(tier.leverage), 1)
        if margin > available:
            problems.append(f"{where}: entry needs margin {margin:.2f} > available {available:.2f}")
        smallest = min(parts.values())
        notes.append(f"tier {tier_name} entry {entry:.10g}, smallest part {smallest:.10g}")
    if problems:
        raise CheckFailed(
            "; ".join(problems) + " (raise the risk share, or trade a symbol with smaller filters)"
        )
    return (
        f"tick {filters['tick_size']:g}, step {step:g}, min qty {min_qty:g}, "
        f"min notional {min_notional:g} at {price:g}: " + "; ".join(notes)
    )


def _params_summary(params: Any) -> str:
    a, b = params.tier_a, params.tier_b
    cd, rn, sg = params.cooldown, params.runner, params.shockguard
    return (
        f"tiers A/B leverage {a.leverage}/{b.leverage} score {a.score_threshold:g}/"
        f"{b.score_threshold:g}; cooldown loss {cd.loss_s}s template {cd.template_s}s; "
        f"runner max {rn.RUNNER_MAX_BARS_AFTER_TP2} bars, min peak {rn.RUNNER_MIN_PEAK_R:g}R, "
        f"giveback {rn.RUNNER_GIVEBACK:g}; shockguard {'on' if sg.enabled else 'OFF'} "
        f"x{sg.trigger_mult:g} q95"
    )


# ------------------------------------------------------------------ `atlas selfcheck`


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="atlas selfcheck", description="Contract §9 pre-flight checks of a venue account."
    )
    p.add_argument("--config", default="config/atlas.toml", help="config file")
    p.add_argument("--symbols", help="comma-separated symbols (default: run.symbols)")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per check")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument(
        "--algo-probe",
        action="store_true",
        default=None,
        help="place and cancel a far-away closePosition stop (default: on except in live mode)",
    )
    return p


def build_venue(cfg: Any, secrets: Any, symbols: Sequence[str]) -> Any:
    """The adapter `atlas selfcheck` talks to. Binance (and the loopback sim exchange) through
    BinanceAdapter; the in-process sim primed with the first bars of each symbol's paper data
    so it has prices and klines, and with its streams stopped so the probe can start them."""
    venue = cfg.venue
    if venue.kind in ("binance", "sim-exchange"):
        from atlas_actors.venues.binance import BinanceAdapter

        key, secret = secrets.binance_api_key, secrets.binance_api_secret
        if venue.kind == "sim-exchange" and not (key and secret):
            key, secret = "paper", "paper"  # the loopback sim exchange's fixed credentials
        return BinanceAdapter(
            key or "",
            secret or "",
            rest_url=venue.url,
            ws_url=venue.ws_url,
            testnet=venue.testnet,
            recv_window_ms=venue.recv_window_ms,
            interval=cfg.run.interval,
            symbols=list(symbols),
        )
    from atlas_actors.venues.replay import paper_series_for
    from atlas_actors.venues.sim import SimVenue

    sim = SimVenue(
        fee_bps=venue.fee_bps,
        slippage_bps=venue.slippage_bps,
        starting_balance=venue.starting_balance,
    )
    warm = int(cfg.params.strategy.atr_len) + 2
    for sym in symbols:
        series = paper_series_for(sym, cfg.paper.data.get(sym))
        for bar in series.iter_bars(0, warm):
            sim.feed_bar(sym, bar)
    sim.ws_stop()
    return sim


def main_selfcheck(args: Sequence[str] | argparse.Namespace | None = None) -> int:
    """`atlas selfcheck [--config FILE] [--symbols A,B] [--timeout S] [--json] [--algo-probe]`."""
    from supervisor.config import ConfigError, apply_overrides, config_error_exit, load_config
    from supervisor.secrets import SecretsError, install_log_scrubbing, load_secrets

    if isinstance(args, argparse.Namespace):
        ns = args
    else:
        try:
            ns = _parser().parse_args(list(sys.argv[1:] if args is None else args))
        except SystemExit as exc:
            return int(exc.code or 0)
    try:
        cfg = load_config(getattr(ns, "config", None) or "config/atlas.toml")
        if getattr(ns, "symbols", None):
            cfg = apply_overrides(cfg, run_symbols=ns.symbols)
    except ConfigError as exc:
        return config_error_exit(exc)
    try:
        secrets = load_secrets()
    except SecretsError as exc:
        print(f"atlas selfcheck: {exc}", file=sys.stderr)
        return 2
    install_log_scrubbing(secrets)
    symbols = list(cfg.run.symbols)
    timeout_s = float(getattr(ns, "timeout", None) or 10.0)
    algo_probe = getattr(ns, "algo_probe", None)
    if algo_probe is None:
        algo_probe = cfg.run.mode != "live"
    try:
        adapter = build_venue(cfg, secrets, symbols)
    except Exception as exc:
        report = SelfCheckReport(venue=cfg.venue.kind)
        name = "API permissions" if "Auth" in type(exc).__name__ else "venue"
        report.add(name, False, f"cannot build the {cfg.venue.kind} venue ({_describe(exc)})")
    else:
        report = run_selfcheck(
            adapter, cfg, symbols, timeout_s=timeout_s, algo_probe=bool(algo_probe)
        )
    if getattr(ns, "json", False):
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(report.format_table())
    if not report.ok and cfg.run.mode == "live":
        from supervisor.alerts import init_alerts

        alerts = init_alerts(cfg, secrets)
        alerts.selfcheck_failed(report)
        alerts.flush(5)
        alerts.close()
    return 0 if report.ok else 1
