"""The service configuration: one TOML file, validated into typed sections.

`load_config(path)` reads the file with tomllib and returns an `AtlasConfig`. The service
sections ([run], [venue], [paper], [supervisor], [admin], [alerts]) are checked here; every
other section is strategy parameters, handed to `atlas_actors.domain.params.load_params` (and
their template names to `atlas_actors.domain.templates.check_templates`).
Any problem raises `ConfigError` naming `file: section.key` (plus the line when it can be
found) and what is allowed; the CLI turns it into exit status 2 (`config_error_exit`).

Secrets never go in this file (see supervisor/secrets.py): a `dsn`, `api_key` or
`api_secret` key is an error that says which environment variable to use instead.
"""

from __future__ import annotations

import math
import re
import sys
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from atlas_actors.venues.hosts import HostRefused, check_binance_url
from supervisor.secrets import redact

MODES = ("paper", "testnet", "live")
VENUE_KINDS = ("sim", "sim-exchange", "binance")
INTERVALS = ("1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d")
SYMBOL_RE = re.compile(r"^[A-Z0-9]{2,32}$")
CLIENT_ID_PREFIX_RE = re.compile(r"^[a-z0-9]{1,8}$")
SENTINEL_DEADLINE_MAX_MS = 1000  # contract §0.2 / §7: visible within 1 s
LIVE_MIN_EMERGENCY_FREEZE_S = 1800  # contract §0.2: 30 min without opens after an invisible stop

BINANCE_URLS = {
    False: ("https://fapi.binance.com", "wss://fstream.binance.com"),
    True: ("https://testnet.binancefuture.com", "wss://fstream.binancefuture.com"),
}

SERVICE_SECTIONS = ("run", "venue", "paper", "supervisor", "admin", "alerts")

# Keys that would put a secret in the file, and where the secret belongs instead.
_SECRET_KEYS = {
    "dsn": "SENTRY_DSN",
    "sentry_dsn": "SENTRY_DSN",
    "api_key": "BINANCE_API_KEY",
    "api_secret": "BINANCE_API_SECRET",
    "secret": "BINANCE_API_SECRET",
}


class ConfigError(Exception):
    """A configuration problem; the message names the file and the key."""


# ------------------------------------------------------------------ sections


@dataclass(frozen=True)
class RunConfig:
    mode: str = "paper"
    symbols: tuple[str, ...] = ("BTCUSDC",)
    state_dir: str = "var/state"
    log_dir: str = "var/logs"
    interval: str = "1m"
    client_id_prefix: str = "atl"


@dataclass(frozen=True)
class VenueConfig:
    kind: str = "sim"
    url: str | None = None
    ws_url: str | None = None
    fee_bps: float = 4.0
    slippage_bps: float = 1.0
    starting_balance: float = 10_000.0
    recv_window_ms: int = 5000
    testnet: bool = False


@dataclass(frozen=True)
class PaperConfig:
    speed: float | str = "max"
    data: dict[str, str] = field(default_factory=dict)
    max_bars: int | None = None


@dataclass(frozen=True)
class SupervisorConfig:
    restart_intensity: int = 5
    restart_window_s: float = 60.0
    restart_backoff_s: float = 0.5
    restart_backoff_max_s: float = 60.0
    ping_interval_s: float = 1.0
    ping_timeout_s: float = 3.0
    audit_interval_s: float = 30.0
    sentinel_deadline_ms: int = 1000


@dataclass(frozen=True)
class AdminConfig:
    socket: str | None = None


@dataclass(frozen=True)
class AlertsConfig:
    environment: str | None = None  # None: the run mode
    sentry: bool = True  # send to Sentry when SENTRY_DSN (or the credential) is set
    instance: str | None = None  # None: the config file's name without .toml


@dataclass(frozen=True)
class AtlasConfig:
    run: RunConfig
    venue: VenueConfig
    paper: PaperConfig
    supervisor: SupervisorConfig
    admin: AdminConfig
    alerts: AlertsConfig
    params: Any  # atlas_actors.domain.params.Params
    path: str = ""
    strategy: dict[str, Any] = field(default_factory=dict)  # the raw parameter sections

    @property
    def instance(self) -> str:
        return self.alerts.instance or (Path(self.path).stem if self.path else "atlas")

    @property
    def environment(self) -> str:
        return self.alerts.environment or self.run.mode


# ------------------------------------------------------------------ loading


def load_config(path: str | Path) -> AtlasConfig:
    path = Path(path)
    try:
        raw_bytes = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file ({exc.strerror})") from None
    try:
        text = raw_bytes.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    return config_from_mapping(data, source=str(path), text=text)


def config_from_mapping(
    data: Mapping[str, Any], *, source: str = "<config>", text: str = ""
) -> AtlasConfig:
    """Validate an already parsed TOML document (tests and `load_config` use it)."""
    v = _Validator(source, text)
    allowed = (*SERVICE_SECTIONS, *_strategy_sections())
    for name, value in data.items():
        if name not in allowed:
            v.fail(name, None, f"unknown section (allowed: {', '.join(allowed)})")
        if name in SERVICE_SECTIONS and not isinstance(value, Mapping):
            v.fail(name, None, f"must be a table [{name}], got {_tname(value)}")
    run = v.section(data, "run", RunConfig, _RUN_RULES)
    venue = v.section(data, "venue", VenueConfig, _VENUE_RULES)
    paper = v.section(data, "paper", PaperConfig, _PAPER_RULES)
    supervisor = v.section(data, "supervisor", SupervisorConfig, _SUPERVISOR_RULES)
    admin = v.section(data, "admin", AdminConfig, _ADMIN_RULES)
    alerts = v.section(data, "alerts", AlertsConfig, _ALERTS_RULES)
    venue = _venue_defaults(venue)
    cfg = AtlasConfig(
        run=run,
        venue=venue,
        paper=paper,
        supervisor=supervisor,
        admin=admin,
        alerts=alerts,
        params=None,
        path=source,
        strategy={k: val for k, val in data.items() if k not in SERVICE_SECTIONS},
    )
    _check_combination(cfg, v)
    cfg = replace(cfg, params=_load_params(cfg.strategy, v))
    _check_live_limits(cfg, v)
    return cfg


def apply_overrides(cfg: AtlasConfig, **overrides: Any) -> AtlasConfig:
    """Command-line overrides, validated with the same rules as the file.

    Keys are `section_key` names: run_mode, run_symbols, run_state_dir, run_log_dir,
    paper_speed, paper_max_bars, venue_kind, venue_url, venue_ws_url, admin_socket, ...
    None values are ignored."""
    v = _Validator(f"{cfg.path} (command line)", "")
    sections: dict[str, Any] = {name: getattr(cfg, name) for name in SERVICE_SECTIONS}
    changed: dict[str, dict[str, Any]] = {}
    for flag, value in overrides.items():
        if value is None:
            continue
        section, _, key = flag.partition("_")
        if section not in sections or key not in {f.name for f in fields(sections[section])}:
            raise ConfigError(f"{cfg.path}: unknown override {flag!r}")
        changed.setdefault(section, {})[key] = value
    new_mode = changed.get("run", {}).get("mode")
    if new_mode in ("testnet", "live"):
        # `--mode testnet` means the Binance testnet, `--mode live` the real one.
        changed.setdefault("venue", {}).setdefault("testnet", new_mode == "testnet")
    old_venue = cfg.venue
    for section, values in changed.items():
        rules = _RULES[section]
        checked = {key: rules[key](v, section, key, val) for key, val in values.items()}
        sections[section] = replace(sections[section], **checked)
    if "venue" in changed:
        explicit = changed["venue"]
        venue = sections["venue"]
        if (venue.kind, venue.testnet) != (old_venue.kind, old_venue.testnet):
            # Another venue: the file's URLs belonged to the old one.
            venue = replace(venue, url=explicit.get("url"), ws_url=explicit.get("ws_url"))
        sections["venue"] = _venue_defaults(venue)
    out = replace(cfg, **sections)
    _check_combination(out, v)
    _check_live_limits(out, v)
    return out


def config_error_exit(exc: BaseException) -> int:
    """Print a configuration error for the operator and return the CLI exit status (2)."""
    print(f"atlas: configuration error: {exc}", file=sys.stderr)
    return 2


# ------------------------------------------------------------------ validation


class _Validator:
    def __init__(self, source: str, text: str) -> None:
        self.source = source
        self.lines = text.splitlines()

    def fail(self, section: str, key: str | None, msg: str) -> None:
        where = f"{section}.{key}" if key else f"[{section}]"
        line = self._line_of(section, key)
        suffix = f" (line {line})" if line else ""
        raise ConfigError(f"{self.source}: {where}: {msg}{suffix}")

    def _line_of(self, section: str, key: str | None) -> int | None:
        """Best-effort line number of `key` in `[section]` (tomllib does not report it)."""
        current = ""
        header = re.compile(r"^\s*\[+\s*([^\]]+?)\s*\]+")
        for number, line in enumerate(self.lines, start=1):
            m = header.match(line)
            if m:
                current = m.group(1).replace('"', "").replace(" ", "")
                if key is None and current == section:
                    return number
                continue
            if key and current == section and re.match(rf"^\s*\"?{re.escape(key)}\"?\s*=", line):
                return number
        return None

    def section(
        self,
        data: Mapping[str, Any],
        name: str,
        cls: type[Any],
        rules: Mapping[str, Callable[[_Validator, str, str, Any], Any]],
    ) -> Any:
        raw = data.get(name, {})
        values: dict[str, Any] = {}
        for key, value in raw.items():
            if key in _SECRET_KEYS:
                self.fail(
                    name,
                    key,
                    f"secrets never go in the config file: set {_SECRET_KEYS[key]} in the "
                    f"environment or the systemd credential {_SECRET_KEYS[key].lower().replace('_', '-')}",
                )
            if key not in rules:
                self.fail(name, key, f"unknown key (allowed: {', '.join(rules)})")
            values[key] = rules[key](self, name, key, value)
        return cls(**values)


def _tname(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, Mapping):
        return "a table"
    return type(value).__name__


def _choice(*allowed: str) -> Callable[[_Validator, str, str, Any], str]:
    def check(v: _Validator, s: str, k: str, value: Any) -> str:
        if not isinstance(value, str) or value not in allowed:
            v.fail(s, k, f"expected one of {', '.join(allowed)}, got {value!r}")
        return str(value)

    return check


def _string(v: _Validator, s: str, k: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        v.fail(s, k, f"expected a non-empty string, got {_tname(value)} {value!r}")
    return str(value)


def _opt_string(v: _Validator, s: str, k: str, value: Any) -> str | None:
    if value == "":
        return None
    return _string(v, s, k, value)


def _bool(v: _Validator, s: str, k: str, value: Any) -> bool:
    if not isinstance(value, bool):
        v.fail(s, k, f"expected true or false, got {_tname(value)} {value!r}")
    return bool(value)


def _number(
    *, minimum: float | None = None, maximum: float | None = None, strict_min: bool = False
) -> Callable[[_Validator, str, str, Any], float]:
    def check(v: _Validator, s: str, k: str, value: Any) -> float:
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            v.fail(s, k, f"expected a number, got {_tname(value)} {value!r}")
        if minimum is not None and (value <= minimum if strict_min else value < minimum):
            bound = f"> {minimum:g}" if strict_min else f">= {minimum:g}"
            v.fail(s, k, f"must be {bound}, got {value!r}")
        if maximum is not None and value > maximum:
            v.fail(s, k, f"must be <= {maximum:g}, got {value!r}")
        return float(value)

    return check


def _integer(
    *, minimum: int | None = None, maximum: int | None = None
) -> Callable[[_Validator, str, str, Any], int]:
    def check(v: _Validator, s: str, k: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            v.fail(s, k, f"expected an integer, got {_tname(value)} {value!r}")
        if minimum is not None and value < minimum:
            v.fail(s, k, f"must be >= {minimum}, got {value}")
        if maximum is not None and value > maximum:
            v.fail(s, k, f"must be <= {maximum}, got {value}")
        return int(value)

    return check


def _symbols(v: _Validator, s: str, k: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str):  # the command line passes "BTCUSDC,XRPUSDT"
        value = [part.strip() for part in value.split(",") if part.strip()]
    if not isinstance(value, list | tuple) or not value:
        v.fail(s, k, f"expected a non-empty array of symbol names, got {value!r}")
    out: list[str] = []
    for item in value:
        if not isinstance(item, str) or not SYMBOL_RE.match(item):
            v.fail(
                s,
                k,
                f"invalid symbol {item!r}: expected 2-32 upper-case letters/digits, e.g. BTCUSDC",
            )
        if item in out:
            v.fail(s, k, f"symbol {item} is listed twice")
        out.append(item)
    return tuple(out)


def _client_id_prefix(v: _Validator, s: str, k: str, value: Any) -> str:
    if not isinstance(value, str) or not CLIENT_ID_PREFIX_RE.match(value):
        v.fail(s, k, f"expected 1-8 characters of [a-z0-9], got {value!r}")
    return str(value)


def _speed(v: _Validator, s: str, k: str, value: Any) -> float | str:
    if value == "max":
        return "max"
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            v.fail(s, k, f'expected "max" or a positive number, got {value!r}')
    if isinstance(value, bool) or not isinstance(value, int | float):
        v.fail(s, k, f'expected "max" or a positive number, got {value!r}')
    if not math.isfinite(value) or value <= 0:
        v.fail(s, k, f'expected "max" or a positive number, got {value!r}')
    return float(value)


def _data(v: _Validator, s: str, k: str, value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        v.fail(s, k, f"expected a table of SYMBOL = file path or bundled name, got {value!r}")
    out: dict[str, str] = {}
    for sym, src in value.items():
        if not SYMBOL_RE.match(sym):
            v.fail(s, f"{k}.{sym}", "invalid symbol name: expected upper-case letters/digits")
        if not isinstance(src, str) or not src.strip():
            v.fail(s, f"{k}.{sym}", f"expected a file path or bundled data name, got {src!r}")
        out[sym] = src
    return out


def _opt_int(minimum: int) -> Callable[[_Validator, str, str, Any], int | None]:
    inner = _integer(minimum=minimum)

    def check(v: _Validator, s: str, k: str, value: Any) -> int | None:
        return None if value is None else inner(v, s, k, value)

    return check


def _url(*schemes: str) -> Callable[[_Validator, str, str, Any], str | None]:
    def check(v: _Validator, s: str, k: str, value: Any) -> str | None:
        if value in (None, ""):
            return None
        parts = urlsplit(value) if isinstance(value, str) else None
        if (
            parts is None
            or parts.scheme not in schemes
            or not parts.hostname
            or "@" in parts.netloc
            or any(c.isspace() for c in value)
        ):
            v.fail(
                s,
                k,
                f"expected a {' or '.join(schemes)} URL without credentials, "
                f"got {redact(repr(value))}",
            )
        return str(value).rstrip("/")

    return check


_RUN_RULES: dict[str, Callable[[_Validator, str, str, Any], Any]] = {
    "mode": _choice(*MODES),
    "symbols": _symbols,
    "state_dir": _string,
    "log_dir": _string,
    "interval": _choice(*INTERVALS),
    "client_id_prefix": _client_id_prefix,
}
_VENUE_RULES: dict[str, Callable[[_Validator, str, str, Any], Any]] = {
    "kind": _choice(*VENUE_KINDS),
    "url": _url("http", "https"),
    "ws_url": _url("ws", "wss"),
    "fee_bps": _number(minimum=0, maximum=1000),
    "slippage_bps": _number(minimum=0, maximum=1000),
    "starting_balance": _number(minimum=0, strict_min=True),
    "recv_window_ms": _integer(minimum=1, maximum=60000),
    "testnet": _bool,
}
_PAPER_RULES: dict[str, Callable[[_Validator, str, str, Any], Any]] = {
    "speed": _speed,
    "data": _data,
    "max_bars": _opt_int(1),
}
_SUPERVISOR_RULES: dict[str, Callable[[_Validator, str, str, Any], Any]] = {
    "restart_intensity": _integer(minimum=1),
    "restart_window_s": _number(minimum=0, strict_min=True),
    "restart_backoff_s": _number(minimum=0, maximum=3600),
    "restart_backoff_max_s": _number(minimum=0, maximum=3600),
    "ping_interval_s": _number(minimum=0, strict_min=True),
    "ping_timeout_s": _number(minimum=0, strict_min=True),
    "audit_interval_s": _number(minimum=0, strict_min=True),
    "sentinel_deadline_ms": _integer(minimum=1, maximum=SENTINEL_DEADLINE_MAX_MS),
}
_ADMIN_RULES: dict[str, Callable[[_Validator, str, str, Any], Any]] = {"socket": _opt_string}
_ALERTS_RULES: dict[str, Callable[[_Validator, str, str, Any], Any]] = {
    "environment": _opt_string,
    "sentry": _bool,
    "instance": _opt_string,
}
_RULES = {
    "run": _RUN_RULES,
    "venue": _VENUE_RULES,
    "paper": _PAPER_RULES,
    "supervisor": _SUPERVISOR_RULES,
    "admin": _ADMIN_RULES,
    "alerts": _ALERTS_RULES,
}


def _venue_defaults(venue: VenueConfig) -> VenueConfig:
    if venue.kind != "binance":
        return venue
    rest, ws = BINANCE_URLS[venue.testnet]
    return replace(venue, url=venue.url or rest, ws_url=venue.ws_url or ws)


def _check_combination(cfg: AtlasConfig, v: _Validator) -> None:
    mode, venue = cfg.run.mode, cfg.venue
    if mode == "paper" and venue.kind == "binance":
        v.fail("venue", "kind", 'paper mode trades only "sim" or "sim-exchange", not "binance"')
    if mode in ("testnet", "live") and venue.kind != "binance":
        v.fail("venue", "kind", f'{mode} mode needs kind = "binance", got {venue.kind!r}')
    if mode == "testnet" and not venue.testnet:
        v.fail("venue", "testnet", "testnet mode needs testnet = true")
    if mode == "live" and venue.testnet:
        v.fail("venue", "testnet", "live mode needs testnet = false")
    if mode in ("testnet", "live") and venue.kind == "binance":
        for key in ("url", "ws_url"):
            try:
                check_binance_url(mode, key, getattr(venue, key))
            except HostRefused as exc:
                v.fail("venue", key, str(exc))
    if venue.kind == "sim-exchange" and not venue.url:
        v.fail("venue", "url", "kind sim-exchange needs the sim exchange's http://127.0.0.1:PORT")
    if cfg.supervisor.restart_backoff_max_s < cfg.supervisor.restart_backoff_s:
        v.fail(
            "supervisor",
            "restart_backoff_max_s",
            f"must be >= restart_backoff_s ({cfg.supervisor.restart_backoff_s:g})",
        )
    if cfg.supervisor.ping_timeout_s < cfg.supervisor.ping_interval_s:
        v.fail(
            "supervisor",
            "ping_timeout_s",
            f"must be >= ping_interval_s ({cfg.supervisor.ping_interval_s:g})",
        )


def _check_live_limits(cfg: AtlasConfig, v: _Validator) -> None:
    """The contract's floors cannot be configured away where money is real (live) or rehearsed
    (testnet); paper and backtests may explore other values."""
    if cfg.run.mode not in ("testnet", "live") or cfg.params is None:
        return
    freeze = int(cfg.params.cooldown.emergency_freeze_s)
    if freeze < LIVE_MIN_EMERGENCY_FREEZE_S:
        v.fail(
            "cooldown",
            "emergency_freeze_s",
            f"{cfg.run.mode} mode needs at least {LIVE_MIN_EMERGENCY_FREEZE_S} (30 min, "
            f"contract §0.2), got {freeze}",
        )
    # (supervisor.sentinel_deadline_ms is capped at SENTINEL_DEADLINE_MAX_MS in every mode)


def _strategy_sections() -> tuple[str, ...]:
    from atlas_actors.domain import params as params_mod

    return tuple(params_mod.SECTIONS)


def _load_params(strategy: Mapping[str, Any], v: _Validator) -> Any:
    # Imported here: the parameter module belongs to the domain and is heavier than the CLI needs
    # for `atlas admin`.
    from atlas_actors.domain import params as params_mod
    from atlas_actors.domain import templates

    try:
        return templates.check_templates(params_mod.load_params(strategy))
    except params_mod.ParamsError as exc:
        raise ConfigError(f"{v.source}: {exc}") from None
