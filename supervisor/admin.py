"""The admin socket: operate a running service over a unix socket, JSON lines.

Server: `AdminServer(path, controller).start()`. The socket file is created mode 0600 and
every peer's uid is checked with SO_PEERCRED (the service's own uid or root), so only the
operator who can become the service user can act. A request is one line
`{"cmd": "...", ...args}`, a reply is one line `{"ok": true, "result": ...}` or
`{"ok": false, "error": "..."}`. Nothing a client sends can stop the server: bad JSON,
unknown commands, bad arguments, invalid UTF-8 get an error reply; a line over `max_line`
bytes gets an error reply and the connection is closed; a controller exception becomes an
error reply.

Client: `admin_request(path, cmd)` and `main_admin(argv)` for `atlas admin ...`.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import math
import os
import selectors
import socket
import stat
import struct
import sys
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

from supervisor.secrets import redact

log = logging.getLogger(__name__)

MAX_LINE = 64 * 1024
DRAIN_MAX_BYTES = 16 * 1024 * 1024  # what an oversized request may still send after the error
SYMBOL_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
MAX_SYMBOL_LEN = 32
MAX_EVENTS_LIMIT = 10_000
MAX_FREEZE_MINUTES = 30 * 24 * 60
_UCRED = struct.Struct("3i")  # struct ucred {pid_t pid; uid_t uid; gid_t gid;}


class AdminController(Protocol):
    """What the admin socket drives; the supervisor tree implements it.

    Every method may raise: the message of the exception becomes the error reply."""

    def status(self) -> dict[str, Any]: ...

    def pause(self, symbol: str | None) -> dict[str, Any]: ...

    def resume(self, symbol: str | None) -> dict[str, Any]: ...

    def freeze(self, symbol: str, minutes: float) -> dict[str, Any]: ...

    def flatten(self, symbol: str, operator: str) -> dict[str, Any]: ...

    def state(self, symbol: str) -> dict[str, Any]: ...

    def events(self, since: int, limit: int) -> list[dict[str, Any]]: ...

    def restart(self, symbol: str) -> dict[str, Any]: ...


class RequestError(Exception):
    """A request the server refuses; the message goes back to the client."""


class AdminSocketError(Exception):
    """The admin socket cannot be created or reached; the message names the path."""


def default_admin_socket(state_dir: str | os.PathLike[str]) -> str:
    """`$RUNTIME_DIRECTORY/admin.sock` under systemd, else `<state-dir>/admin.sock`."""
    runtime = os.environ.get("RUNTIME_DIRECTORY", "")
    # systemd may list several directories separated by ':'; the first is ours.
    first = runtime.split(":")[0] if runtime else ""
    return os.path.join(first or os.fspath(state_dir), "admin.sock")


# ------------------------------------------------------------------ request validation


def _symbol(args: Mapping[str, Any], *, required: bool, allow_all: bool = False) -> str | None:
    value = args.get("symbol")
    if value is None:
        if required:
            raise RequestError("missing argument 'symbol'")
        return None
    if allow_all and value == "all":
        return "all"
    if (
        not isinstance(value, str)
        or not value
        or len(value) > MAX_SYMBOL_LEN
        or not set(value) <= SYMBOL_CHARS
    ):
        expected = "a symbol such as BTCUSDC" + (' or "all"' if allow_all else "")
        raise RequestError(f"invalid symbol {_short(value)}: expected {expected} ([A-Z0-9])")
    return value


def _minutes(args: Mapping[str, Any]) -> float:
    value = args.get("minutes")
    if value is None:
        raise RequestError("missing argument 'minutes'")
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise RequestError(f"invalid minutes {_short(value)}: expected a positive number")
    if value <= 0 or value > MAX_FREEZE_MINUTES:
        raise RequestError(
            f"invalid minutes {_short(value)}: expected > 0 and <= {MAX_FREEZE_MINUTES}"
        )
    return float(value)


def _count(args: Mapping[str, Any], name: str, default: int, maximum: int | None = None) -> int:
    value = args.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise RequestError(f"invalid {name} {_short(value)}: expected a non-negative integer")
    if maximum is not None and value > maximum:
        raise RequestError(f"invalid {name} {value}: at most {maximum}")
    return value


def _short(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, str | int | float | bool | None) else "?"
    return text if len(text) <= 40 else text[:37] + "..."


# command -> (allowed argument names, handler(controller, args, peer_uid))
_Handler = Callable[[AdminController, Mapping[str, Any], int], Any]
COMMANDS: dict[str, tuple[frozenset[str], _Handler]] = {
    "status": (frozenset(), lambda c, a, uid: c.status()),
    "pause": (frozenset({"symbol"}), lambda c, a, uid: c.pause(_symbol(a, required=False))),
    "resume": (frozenset({"symbol"}), lambda c, a, uid: c.resume(_symbol(a, required=False))),
    "freeze": (
        frozenset({"symbol", "minutes"}),
        lambda c, a, uid: c.freeze(_symbol(a, required=True) or "", _minutes(a)),
    ),
    "flatten": (
        frozenset({"symbol"}),
        lambda c, a, uid: c.flatten(
            _symbol(a, required=True, allow_all=True) or "", f"admin uid={uid}"
        ),
    ),
    "state": (frozenset({"symbol"}), lambda c, a, uid: c.state(_symbol(a, required=True) or "")),
    "events": (
        frozenset({"since", "limit"}),
        lambda c, a, uid: c.events(
            _count(a, "since", 0), _count(a, "limit", 100, MAX_EVENTS_LIMIT)
        ),
    ),
    "restart": (
        frozenset({"symbol"}),
        lambda c, a, uid: c.restart(_symbol(a, required=True) or ""),
    ),
}


def handle_line(controller: AdminController, line: bytes, peer_uid: int) -> dict[str, Any]:
    """One request line -> one reply object. Never raises."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        return _error("request is not valid UTF-8")
    text = text.strip()
    if not text:
        return _error('empty request: send {"cmd": "status"}')
    try:
        request = json.loads(text)
    except (ValueError, RecursionError) as exc:
        return _error(f"malformed JSON: {str(exc)[:120]}")
    if not isinstance(request, dict):
        return _error('request must be a JSON object such as {"cmd": "status"}')
    cmd = request.get("cmd")
    if not isinstance(cmd, str) or cmd not in COMMANDS:
        return _error(f"unknown command {_short(cmd)} (commands: {', '.join(COMMANDS)})")
    allowed, handler = COMMANDS[cmd]
    extra = sorted(k for k in request if k != "cmd" and k not in allowed)
    if extra:
        return _error(
            f"unknown argument {_short(extra[0])} for {cmd} "
            f"(arguments: {', '.join(sorted(allowed)) or 'none'})"
        )
    try:
        result = handler(controller, request, peer_uid)
    except RequestError as exc:
        return _error(f"{cmd}: {exc}")
    except Exception as exc:  # the controller's failure is the operator's answer, not ours
        log.warning("admin %s failed: %s: %s", cmd, type(exc).__name__, exc)
        return _error(f"{cmd} failed: {type(exc).__name__}: {exc}")
    return {"ok": True, "result": result}


def _error(message: str) -> dict[str, Any]:
    return {"ok": False, "error": message}


def encode_reply(reply: Mapping[str, Any], secret_values: Iterable[str] = ()) -> bytes:
    """One JSON line, secrets redacted, any value made JSON-safe (NaN -> null)."""
    try:
        text = json.dumps(_jsonable(reply), allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError, RecursionError) as exc:
        text = json.dumps(_error(f"reply could not be encoded: {type(exc).__name__}"))
    return (redact(text, secret_values) + "\n").encode("utf-8")


def _jsonable(value: Any, depth: int = 0) -> Any:
    if depth > 64:
        return "..."
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v, depth + 1) for v in value]
    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict):
        return _jsonable(to_dict(), depth + 1)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _jsonable(dataclasses.asdict(value), depth + 1)
    return str(value)


# ------------------------------------------------------------------ server


def peer_uid(conn: socket.socket) -> int:
    raw = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    _pid, uid, _gid = _UCRED.unpack(raw)
    return int(uid)


class AdminServer:
    """Serves the admin protocol on a unix socket; one daemon thread per client."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        controller: AdminController,
        *,
        allowed_uids: Iterable[int] | None = None,
        max_line: int = MAX_LINE,
        max_clients: int = 64,
        idle_timeout_s: float = 300.0,
        secret_values: Iterable[str] = (),
    ) -> None:
        self.path = os.fspath(path)
        self.controller = controller
        self.allowed_uids = frozenset(
            allowed_uids if allowed_uids is not None else {os.getuid(), 0}
        )
        self.max_line = max_line
        self.max_clients = max_clients
        self.idle_timeout_s = idle_timeout_s
        self.secret_values = tuple(secret_values)
        self._listener: socket.socket | None = None
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._clients: set[socket.socket] = set()
        self._lock = threading.Lock()

    # -------------------------------------------------------------- lifecycle

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("admin server already started")
        if len(self.path.encode()) >= 108:
            raise AdminSocketError(
                f"admin socket path {self.path} is too long for a unix socket (max 107 bytes)"
            )
        parent = os.path.dirname(self.path) or "."
        os.makedirs(parent, mode=0o700, exist_ok=True)
        self._remove_stale()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)  # the socket file is born 0600: no window where it is open
        try:
            listener.bind(self.path)
        except OSError as exc:
            listener.close()
            raise AdminSocketError(
                f"cannot bind admin socket {self.path}: {exc.strerror}"
            ) from None
        finally:
            os.umask(old_umask)
        os.chmod(self.path, 0o600)
        listener.listen(128)
        listener.setblocking(False)
        self._listener = listener
        self._wake_r, self._wake_w = socket.socketpair()
        self._thread = threading.Thread(target=self._serve, name="admin-accept", daemon=True)
        self._thread.start()
        log.info("admin socket listening on %s", self.path)

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        if self._wake_w is not None:
            with contextlib.suppress(OSError):
                self._wake_w.send(b"x")
        if self._thread is not None:
            self._thread.join(timeout)
        with self._lock:
            clients = list(self._clients)
        for conn in clients:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        for sock in (self._listener, self._wake_r, self._wake_w):
            if sock is not None:
                sock.close()
        with contextlib.suppress(FileNotFoundError):
            if self._listener is not None and stat.S_ISSOCK(os.lstat(self.path).st_mode):
                os.unlink(self.path)
        self._listener = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _remove_stale(self) -> None:
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(st.st_mode):
            raise AdminSocketError(
                f"{self.path} exists and is not a socket; refusing to replace it"
            )
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(1.0)
        try:
            probe.connect(self.path)
        except OSError:
            os.unlink(self.path)  # nobody listens: left behind by a process that died
            return
        finally:
            probe.close()
        raise AdminSocketError(f"admin socket {self.path} is in use by another running process")

    # -------------------------------------------------------------- accept loop

    def _serve(self) -> None:
        assert self._listener is not None and self._wake_r is not None
        sel = selectors.DefaultSelector()
        sel.register(self._listener, selectors.EVENT_READ)
        sel.register(self._wake_r, selectors.EVENT_READ)
        try:
            while not self._stopping.is_set():
                for key, _ in sel.select():
                    if key.fileobj is self._listener:
                        self._accept()
        except Exception:  # only a bug gets here; say so loudly, the service itself goes on
            log.exception("admin socket accept loop failed")
        finally:
            sel.close()

    def _accept(self) -> None:
        assert self._listener is not None
        try:
            conn, _ = self._listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:  # EMFILE and friends: back off, keep serving
            log.warning("admin socket accept failed: %s", exc)
            self._stopping.wait(0.1)
            return
        conn.setblocking(True)
        with self._lock:
            full = len(self._clients) >= self.max_clients
            if not full:
                self._clients.add(conn)
        if full:
            self._reply_and_close(conn, _error(f"too many admin clients (max {self.max_clients})"))
            return
        thread = threading.Thread(
            target=self._client, args=(conn,), name="admin-client", daemon=True
        )
        try:
            thread.start()
        except RuntimeError:  # cannot start a thread: refuse this client, not the server
            with self._lock:
                self._clients.discard(conn)
            self._reply_and_close(conn, _error("server busy"))

    def _reply_and_close(self, conn: socket.socket, reply: Mapping[str, Any]) -> None:
        """Refuse a connection from the accept thread: reply, then discard what the client
        already sent (closing over unread input would reset the reply away), never waiting."""
        with contextlib.suppress(OSError):
            conn.settimeout(1.0)
            conn.sendall(encode_reply(reply, self.secret_values))
            conn.shutdown(socket.SHUT_WR)
            conn.setblocking(False)
            while conn.recv(65536):
                pass
        with contextlib.suppress(OSError):
            conn.close()

    # -------------------------------------------------------------- one client

    def _client(self, conn: socket.socket) -> None:
        try:
            uid = peer_uid(conn)
            if uid not in self.allowed_uids:
                log.warning("admin connection from uid %d refused", uid)
                self._send(
                    conn, _error(f"permission denied: uid {uid} may not use this admin socket")
                )
                return
            self._serve_lines(conn, uid)
        except Exception:
            log.exception("admin client handler failed")
        finally:
            with self._lock:
                self._clients.discard(conn)
            with contextlib.suppress(OSError):
                conn.close()

    def _serve_lines(self, conn: socket.socket, uid: int) -> None:
        conn.settimeout(self.idle_timeout_s)
        buf = bytearray()
        while not self._stopping.is_set():
            newline = buf.find(b"\n")
            if newline < 0:
                if len(buf) > self.max_line:
                    self._refuse_line(conn)
                    return
                try:
                    chunk = conn.recv(65536)
                except (TimeoutError, OSError):
                    return
                if not chunk:  # the client closed its side: answer a last unterminated line
                    if buf.strip():
                        self._send(conn, handle_line(self.controller, bytes(buf), uid))
                    return
                buf += chunk
                continue
            line = bytes(buf[:newline])
            del buf[: newline + 1]
            if len(line) > self.max_line:
                self._refuse_line(conn)
                return
            if not line.strip():
                continue
            if not self._send(conn, handle_line(self.controller, line, uid)):
                return

    def _refuse_line(self, conn: socket.socket) -> None:
        """Error reply for an oversized line, then hang up. Closing a unix socket with unread
        input resets it and the client would lose the reply, so half-close our side and discard
        what the client is still sending (bounded in time and bytes) before closing."""
        self._send(conn, _error(f"request line too long (max {self.max_line} bytes)"))
        with contextlib.suppress(OSError):
            conn.shutdown(socket.SHUT_WR)
        conn.settimeout(0.5)
        discarded = 0
        with contextlib.suppress(OSError):
            while discarded < DRAIN_MAX_BYTES and not self._stopping.is_set():
                chunk = conn.recv(65536)
                if not chunk:
                    break
                discarded += len(chunk)

    def _send(self, conn: socket.socket, reply: Mapping[str, Any]) -> bool:
        try:
            conn.sendall(encode_reply(reply, self.secret_values))
            return True
        except OSError:  # the client went away; nothing to tell it
            return False


# ------------------------------------------------------------------ client


def admin_request(
    path: str | os.PathLike[str], cmd: Mapping[str, Any], timeout: float = 5.0
) -> dict[str, Any]:
    """Send one request, return the reply object. Raises AdminSocketError naming the path."""
    path = os.fspath(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        try:
            sock.connect(path)
        except FileNotFoundError:
            raise AdminSocketError(
                f"cannot connect to admin socket {path}: no such file (is atlas running?)"
            ) from None
        except PermissionError:
            raise AdminSocketError(
                f"cannot connect to admin socket {path}: permission denied "
                "(run as the service user or root)"
            ) from None
        except OSError as exc:
            raise AdminSocketError(
                f"cannot connect to admin socket {path}: {exc.strerror or exc}"
            ) from None
        buf = bytearray()
        try:
            try:
                sock.sendall((json.dumps(dict(cmd)) + "\n").encode("utf-8"))
            except (BrokenPipeError, ConnectionResetError):
                pass  # the server answered and hung up first (e.g. too many clients): read it
            while b"\n" not in buf:
                try:
                    chunk = sock.recv(65536)
                except ConnectionResetError:
                    break
                if not chunk:
                    break
                buf += chunk
        except TimeoutError:
            raise AdminSocketError(f"admin socket {path}: no reply within {timeout:g}s") from None
        except OSError as exc:
            raise AdminSocketError(f"admin socket {path}: {exc.strerror or exc}") from None
    finally:
        sock.close()
    line = bytes(buf).split(b"\n", 1)[0]
    if not line:
        raise AdminSocketError(f"admin socket {path} closed the connection without a reply")
    try:
        reply = json.loads(line)
    except ValueError:
        raise AdminSocketError(f"admin socket {path} sent a reply that is not JSON") from None
    if not isinstance(reply, dict) or "ok" not in reply:
        raise AdminSocketError(f"admin socket {path} sent an unexpected reply")
    return reply


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse would sys.exit(2) from deep inside
        raise _UsageError(f"{self.prog}: {message}")


def _symbol_arg(text: str) -> str:
    return text if text == "all" else text.upper()


def _build_parser() -> _Parser:
    p = _Parser(
        prog="atlas admin",
        description="Operate a running atlas service through its admin socket.",
    )
    p.add_argument("--socket", help="admin socket path (default: from --config / --state-dir)")
    p.add_argument("--config", help="config file whose [admin] socket / run.state_dir to use")
    p.add_argument("--state-dir", help="state directory holding admin.sock (default var/state)")
    p.add_argument("--json", action="store_true", help="print the raw JSON reply")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the reply")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND", parser_class=_Parser)
    sub.add_parser("status", help="per-symbol state, position, stop and locks")
    for name, verb in (("pause", "stop new opens"), ("resume", "allow new opens again")):
        sp = sub.add_parser(name, help=f"{verb} (all symbols, or one)")
        sp.add_argument("symbol", nargs="?", type=str.upper)
    sp = sub.add_parser("freeze", help="no new opens on SYMBOL for MINUTES")
    sp.add_argument("symbol", type=str.upper)
    sp.add_argument("minutes", type=float)
    sp = sub.add_parser("flatten", help="reduce-only market close of SYMBOL or all")
    sp.add_argument("symbol", type=_symbol_arg, metavar="SYMBOL|all")
    sp = sub.add_parser("state", help="the stored state of SYMBOL")
    sp.add_argument("symbol", type=str.upper)
    sp = sub.add_parser("events", help="event log entries after sequence SINCE")
    sp.add_argument("--since", type=int, default=0)
    sp.add_argument("--limit", type=int, default=50)
    sp = sub.add_parser("restart", help="restart SYMBOL's actor")
    sp.add_argument("symbol", type=str.upper)
    return p


def _resolve_socket(args: argparse.Namespace) -> str:
    if args.socket:
        return str(args.socket)
    if args.config:
        from supervisor.config import load_config

        cfg = load_config(args.config)
        return cfg.admin.socket or default_admin_socket(args.state_dir or cfg.run.state_dir)
    return default_admin_socket(args.state_dir or "var/state")


def main_admin(argv: Sequence[str] | None = None) -> int:
    """`atlas admin [--socket PATH] [--json] COMMAND ARGS...`; exit 0 ok, 1 error reply,
    2 usage error or no connection."""
    parser = _build_parser()
    try:
        args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    except _UsageError as exc:
        print(parser.format_usage().rstrip(), file=sys.stderr)
        print(exc, file=sys.stderr)
        return 2
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
    request: dict[str, Any] = {"cmd": args.cmd}
    if args.cmd in ("pause", "resume") and args.symbol:
        request["symbol"] = args.symbol
    elif args.cmd in ("freeze", "flatten", "state", "restart"):
        request["symbol"] = args.symbol
    if args.cmd == "freeze":
        request["minutes"] = args.minutes
    if args.cmd == "events":
        request["since"] = args.since
        request["limit"] = args.limit
    try:
        path = _resolve_socket(args)
        reply = admin_request(path, request, timeout=args.timeout)
    except AdminSocketError as exc:
        print(f"atlas admin: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # e.g. a bad --config: say what, not a traceback
        print(f"atlas admin: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(reply, indent=2, sort_keys=True))
    elif reply.get("ok"):
        print(format_result(reply.get("result")))
    else:
        print(f"error: {reply.get('error')}", file=sys.stderr)
    return 0 if reply.get("ok") else 1


# ------------------------------------------------------------------ tables


def format_result(result: Any) -> str:
    """A readable rendering of any reply result: tables for lists of objects and for
    objects of objects (per-symbol maps), `key: value` lines for the rest."""
    lines = _render(result)
    return "\n".join(lines) if lines else "ok"


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.8g}"
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    return str(value)


def _table(rows: list[Mapping[str, Any]], first: str | None = None) -> list[str]:
    columns: list[str] = [first] if first else []
    for row in rows:
        for key in row:
            if key not in columns:
                columns.append(key)
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    out = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    for r in cells:
        out.append("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())
    return out


def _render(value: Any, title: str | None = None) -> list[str]:
    out: list[str] = [f"{title}:"] if title else []
    if isinstance(value, list):
        if value and all(isinstance(v, dict) for v in value):
            out += _table(value)
        elif not value:
            out.append("(none)")
        else:
            out += [_cell(v) for v in value]
        return out
    if not isinstance(value, dict):
        return out + [_cell(value)]
    scalars = {k: v for k, v in value.items() if not isinstance(v, dict | list)}
    width = max((len(str(k)) for k in scalars), default=0)
    out += [f"{str(k).ljust(width)}  {_cell(v)}" for k, v in scalars.items()]
    for key, sub in value.items():
        if isinstance(sub, dict) and sub and all(isinstance(v, dict) for v in sub.values()):
            rows = [{"key": k, **v} for k, v in sub.items()]
            out += ["", f"{key}:"] + _table(rows, "key")
        elif isinstance(sub, dict | list):
            out += [""] + _render(sub, str(key))
    return out
