"""Admin socket: protocol, validation, robustness (fuzz), permissions, CLI."""

from __future__ import annotations

import json
import os
import random
import shutil
import socket
import stat
import struct
import tempfile
import threading
import time
from typing import Any

import pytest

from supervisor.admin import (
    AdminServer,
    AdminSocketError,
    admin_request,
    default_admin_socket,
    format_result,
    main_admin,
)


class Desk:
    """A small real controller: per-symbol flags, an event log, recorded flatten operators."""

    def __init__(self, symbols: tuple[str, ...] = ("BTCUSDC", "XRPUSDT")) -> None:
        self.symbols = {
            s: {"state": "READY", "position": "NONE", "frozen_min": 0.0} for s in symbols
        }
        self.flattened: list[tuple[str, str]] = []
        self.restarted: list[str] = []
        self.events_log = [
            {"seq": i, "event_type": "TICK", "symbol": "BTCUSDC"} for i in range(1, 301)
        ]
        self.lock = threading.Lock()

    def _get(self, symbol: str) -> dict[str, Any]:
        if symbol not in self.symbols:
            raise KeyError(f"unknown symbol {symbol}")
        return self.symbols[symbol]

    def status(self) -> dict[str, Any]:
        with self.lock:
            return {"mode": "paper", "symbols": {k: dict(v) for k, v in self.symbols.items()}}

    def pause(self, symbol: str | None) -> dict[str, Any]:
        with self.lock:
            targets = [symbol] if symbol else list(self.symbols)
            for s in targets:
                self._get(s)["state"] = "PAUSED"
            return {"paused": targets}

    def resume(self, symbol: str | None) -> dict[str, Any]:
        with self.lock:
            targets = [symbol] if symbol else list(self.symbols)
            for s in targets:
                self._get(s)["state"] = "READY"
            return {"resumed": targets}

    def freeze(self, symbol: str, minutes: float) -> dict[str, Any]:
        with self.lock:
            self._get(symbol)["frozen_min"] = minutes
            return {"symbol": symbol, "minutes": minutes}

    def flatten(self, symbol: str, operator: str) -> dict[str, Any]:
        with self.lock:
            if symbol != "all":
                self._get(symbol)
            self.flattened.append((symbol, operator))
            return {"flattened": symbol, "reason": operator}

    def state(self, symbol: str) -> dict[str, Any]:
        with self.lock:
            return {"symbol": symbol, **self._get(symbol), "pnl": float("nan")}

    def events(self, since: int, limit: int) -> list[dict[str, Any]]:
        return [e for e in self.events_log if e["seq"] > since][:limit]

    def restart(self, symbol: str) -> dict[str, Any]:
        if symbol == "BOOM":
            raise RuntimeError("actor registry is on fire")
        with self.lock:
            self._get(symbol)
            self.restarted.append(symbol)
            return {"restarted": symbol}


@pytest.fixture
def server(tmp_path):
    desk = Desk()
    path = str(tmp_path / "admin.sock")
    srv = AdminServer(path, desk)
    srv.start()
    yield srv, desk, path
    srv.stop()


def raw_exchange(
    path: str, payload: bytes, *, shutdown_write: bool = False, timeout: float = 5.0
) -> bytes:
    """Send raw bytes, read until the server closes or a line arrives and goes quiet."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(path)
    try:
        s.sendall(payload)
        if shutdown_write:
            s.shutdown(socket.SHUT_WR)
        buf = b""
        while True:
            try:
                chunk = s.recv(65536)
            except TimeoutError:
                break
            except ConnectionResetError:
                break
            if not chunk:
                break
            buf += chunk
            if shutdown_write:
                continue
            if buf.endswith(b"\n") and buf.count(b"\n") >= payload.count(b"\n"):
                break
        return buf
    finally:
        s.close()


def replies(data: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in data.splitlines() if line.strip()]


# ------------------------------------------------------------------ protocol


def test_status_and_every_command_round_trip(server):
    srv, desk, path = server
    st = admin_request(path, {"cmd": "status"})
    assert st["ok"] is True and st["result"]["symbols"]["BTCUSDC"]["state"] == "READY"

    assert admin_request(path, {"cmd": "pause", "symbol": "BTCUSDC"})["result"] == {
        "paused": ["BTCUSDC"]
    }
    assert (
        desk.symbols["BTCUSDC"]["state"] == "PAUSED" and desk.symbols["XRPUSDT"]["state"] == "READY"
    )
    assert admin_request(path, {"cmd": "pause"})["result"] == {"paused": ["BTCUSDC", "XRPUSDT"]}
    assert admin_request(path, {"cmd": "resume", "symbol": None})["ok"]
    assert desk.symbols["XRPUSDT"]["state"] == "READY"

    fr = admin_request(path, {"cmd": "freeze", "symbol": "XRPUSDT", "minutes": 30})
    assert fr == {"ok": True, "result": {"symbol": "XRPUSDT", "minutes": 30.0}}

    fl = admin_request(path, {"cmd": "flatten", "symbol": "all"})
    assert fl["ok"] and desk.flattened == [("all", f"admin uid={os.getuid()}")]

    state = admin_request(path, {"cmd": "state", "symbol": "BTCUSDC"})
    assert state["ok"] and state["result"]["symbol"] == "BTCUSDC"
    assert state["result"]["pnl"] is None  # NaN is not JSON: sent as null

    ev = admin_request(path, {"cmd": "events", "since": 10, "limit": 5})
    assert [e["seq"] for e in ev["result"]] == [11, 12, 13, 14, 15]
    assert len(admin_request(path, {"cmd": "events"})["result"]) == 100  # default limit

    assert admin_request(path, {"cmd": "restart", "symbol": "XRPUSDT"})["ok"]
    assert desk.restarted == ["XRPUSDT"]


@pytest.mark.parametrize(
    "request_obj, fragment",
    [
        ({"cmd": "launch"}, "unknown command"),
        ({"nocmd": 1}, "unknown command"),
        ({"cmd": 7}, "unknown command"),
        ({"cmd": "freeze", "symbol": "BTCUSDC"}, "missing argument 'minutes'"),
        ({"cmd": "freeze", "symbol": "BTCUSDC", "minutes": 0}, "invalid minutes"),
        ({"cmd": "freeze", "symbol": "BTCUSDC", "minutes": -5}, "invalid minutes"),
        ({"cmd": "freeze", "symbol": "BTCUSDC", "minutes": "30"}, "invalid minutes"),
        ({"cmd": "freeze", "symbol": "BTCUSDC", "minutes": True}, "invalid minutes"),
        ({"cmd": "freeze", "minutes": 5}, "missing argument 'symbol'"),
        ({"cmd": "state", "symbol": "btcusdc"}, "invalid symbol"),
        ({"cmd": "state", "symbol": "BTC/USDC"}, "invalid symbol"),
        ({"cmd": "state", "symbol": ["BTCUSDC"]}, "invalid symbol"),
        ({"cmd": "state", "symbol": "all"}, "invalid symbol"),
        ({"cmd": "pause", "symbol": 12}, "invalid symbol"),
        ({"cmd": "flatten"}, "missing argument 'symbol'"),
        ({"cmd": "events", "since": -1}, "invalid since"),
        ({"cmd": "events", "limit": 2.5}, "invalid limit"),
        ({"cmd": "events", "limit": 10**9}, "at most"),
        ({"cmd": "status", "verbose": True}, "unknown argument"),
        ({"cmd": "state", "symbol": "NOPE"}, "KeyError"),
        ({"cmd": "restart", "symbol": "BOOM"}, "actor registry is on fire"),
    ],
)
def test_bad_requests_get_error_replies(server, request_obj, fragment):
    _, _, path = server
    reply = admin_request(path, request_obj)
    assert reply["ok"] is False and fragment in reply["error"], reply
    assert set(reply) == {"ok", "error"}
    assert admin_request(path, {"cmd": "status"})["ok"]


def test_malformed_lines_get_error_and_connection_stays_usable(server):
    _, _, path = server
    payload = b'{"cmd": "stat\n[1,2]\n\xff\xfe\x00garbage\n{"cmd": "status"}\n'
    got = replies(raw_exchange(path, payload))
    assert [r["ok"] for r in got] == [False, False, False, True]
    assert "malformed JSON" in got[0]["error"]
    assert "JSON object" in got[1]["error"]
    assert "UTF-8" in got[2]["error"]


def test_half_closed_client_gets_reply_to_unterminated_line(server):
    _, _, path = server
    got = replies(raw_exchange(path, b'{"cmd": "status"}', shutdown_write=True))
    assert len(got) == 1 and got[0]["ok"] is True
    truncated = replies(raw_exchange(path, b'{"cmd": "sta', shutdown_write=True))
    assert truncated[0]["ok"] is False and "malformed JSON" in truncated[0]["error"]
    assert raw_exchange(path, b"", shutdown_write=True) == b""


def test_oversized_line_gets_error_then_disconnect(server):
    srv, _, path = server
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect(path)
    sender_error: list[BaseException] = []

    def send_big() -> None:
        try:
            s.sendall(b"{" + b"a" * (1024 * 1024) + b"}\n")
        except OSError as exc:  # the server hung up mid-line: expected
            sender_error.append(exc)

    t = threading.Thread(target=send_big)
    t.start()
    buf = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        buf += chunk
    t.join(5)
    s.close()
    reply = json.loads(buf.splitlines()[0])
    assert reply["ok"] is False and "too long" in reply["error"]
    assert srv.running and admin_request(path, {"cmd": "status"})["ok"]


# ------------------------------------------------------------------ fuzz


def test_fuzz_random_bytes_truncated_json_and_50_concurrent_clients(server):
    srv, _, path = server
    rng = random.Random(8)
    valid = [
        b'{"cmd": "status"}',
        b'{"cmd": "freeze", "symbol": "BTCUSDC", "minutes": 5}',
        b'{"cmd": "events", "since": 3, "limit": 2}',
        b'{"cmd": "pause", "symbol": "XRPUSDT"}',
    ]

    def fuzz_payload() -> bytes:
        kind = rng.randrange(4)
        if kind == 0:
            return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 400)))
        if kind == 1:
            line = rng.choice(valid)
            return line[: rng.randrange(1, len(line))] + b"\n"
        if kind == 2:
            line = bytearray(rng.choice(valid))
            for _ in range(3):
                line[rng.randrange(len(line))] = rng.randrange(256)
            return bytes(line) + b"\n"
        return (
            json.dumps(
                {"cmd": rng.choice(["status", "state", "flatten", "x"]), "symbol": rng.random()}
            ).encode()
            + b"\n"
        )

    payloads = [fuzz_payload() for _ in range(300)]
    for p in payloads:
        try:
            if rng.random() < 0.3:  # send and vanish without reading
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.connect(path)
                s.sendall(p)
                s.close()
            else:
                for reply in replies(raw_exchange(path, p, shutdown_write=True, timeout=2.0)):
                    assert set(reply) in ({"ok", "result"}, {"ok", "error"})
        except OSError:
            pass  # the server may hang up on garbage; it must not die
    big = replies(
        raw_exchange(path, b'{"cmd": "' + b"x" * (1 << 20) + b'"}\n', shutdown_write=True)
    )
    assert big[0]["ok"] is False and "too long" in big[0]["error"]
    assert srv.running

    results: list[bool] = []
    errors: list[BaseException] = []

    def client(i: int) -> None:
        try:
            for _ in range(5):
                r = admin_request(path, {"cmd": "status"}, timeout=20)
                results.append(r["ok"])
            raw_exchange(path, payloads[i], shutdown_write=True, timeout=2.0)
        except AdminSocketError as exc:
            errors.append(exc)
        except OSError:
            pass

    threads = [threading.Thread(target=client, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors[:3]
    assert results.count(True) == 250
    assert srv.running and admin_request(path, {"cmd": "status"})["ok"]


def test_clients_over_the_cap_are_told_and_server_recovers(tmp_path):
    path = str(tmp_path / "a.sock")
    srv = AdminServer(path, Desk(), max_clients=2)
    srv.start()
    try:
        idle = []
        for _ in range(2):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(path)
            idle.append(s)
        deadline = time.monotonic() + 10  # wait until the server holds both (slow CI machines)
        while len(srv._clients) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        reply = admin_request(path, {"cmd": "status"})
        assert reply["ok"] is False and "too many admin clients" in reply["error"]
        for s in idle:
            s.close()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if admin_request(path, {"cmd": "status"})["ok"]:
                break
            time.sleep(0.05)
        assert admin_request(path, {"cmd": "status"})["ok"]
    finally:
        srv.stop()


# ------------------------------------------------------------------ socket file and permissions


def test_socket_file_is_0600_and_stale_file_replaced(tmp_path):
    path = str(tmp_path / "run" / "admin.sock")
    os.makedirs(os.path.dirname(path))
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(path)
    stale.close()  # a socket file nobody listens on: what a killed process leaves
    assert stat.S_ISSOCK(os.lstat(path).st_mode)
    srv = AdminServer(path, Desk())
    srv.start()
    try:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert admin_request(path, {"cmd": "status"})["ok"]
        second = AdminServer(path, Desk())
        with pytest.raises(AdminSocketError, match="in use"):
            second.start()
    finally:
        srv.stop()
    assert not os.path.exists(path)


def test_refuses_to_replace_a_regular_file(tmp_path):
    path = tmp_path / "admin.sock"
    path.write_text("not a socket")
    with pytest.raises(AdminSocketError, match="not a socket"):
        AdminServer(str(path), Desk()).start()
    assert path.read_text() == "not a socket"


def test_connection_from_another_uid_is_refused():
    """Needs root (as CI and the dev machines run): the child drops to nobody (65534)."""
    assert os.getuid() == 0, "this test forks a child that drops root privileges"
    # pytest's tmp_path lives under a 0700 directory nobody could not even traverse.
    home = tempfile.mkdtemp(prefix="atlas-admin-")
    os.chmod(home, 0o755)
    path = os.path.join(home, "admin.sock")
    desk = Desk()
    srv = AdminServer(path, desk)
    srv.start()
    try:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        # Open the file mode so the connect itself succeeds: SO_PEERCRED must refuse it.
        os.chmod(path, 0o666)
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: become nobody, then try to flatten everything
            code = 1
            try:
                os.close(r)
                os.setgroups([])
                os.setgid(65534)
                os.setuid(65534)
                reply = admin_request(path, {"cmd": "flatten", "symbol": "all"})
                os.write(w, json.dumps(reply).encode())
                code = 0
            except BaseException as exc:  # report, never run the parent's cleanup here
                os.write(w, json.dumps({"child_error": repr(exc)}).encode())
            finally:
                os._exit(code)
        os.close(w)
        out = b""
        while chunk := os.read(r, 65536):
            out += chunk
        os.close(r)
        _, status = os.waitpid(pid, 0)
        reply = json.loads(out)
        assert os.waitstatus_to_exitcode(status) == 0, reply
        assert reply["ok"] is False and "permission denied: uid 65534" in reply["error"]
        assert desk.flattened == []
        assert admin_request(path, {"cmd": "status"})["ok"]
    finally:
        srv.stop()
        shutil.rmtree(home, ignore_errors=True)


def test_allowed_uids_is_enforced_for_our_own_uid_too(tmp_path):
    path = str(tmp_path / "a.sock")
    srv = AdminServer(path, Desk(), allowed_uids={os.getuid() + 4242})
    srv.start()
    try:
        reply = admin_request(path, {"cmd": "status"})
        assert reply["ok"] is False and "permission denied" in reply["error"]
    finally:
        srv.stop()


def test_peer_credentials_struct_matches_kernel_layout():
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        pid, uid, gid = struct.unpack("3i", a.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
        assert (pid, uid, gid) == (os.getpid(), os.getuid(), os.getgid())
    finally:
        a.close()
        b.close()


def test_secret_in_a_controller_reply_is_redacted(tmp_path):
    planted = "PLANTEDsecretVALUE0123456789abcdef"

    class Leaky(Desk):
        def state(self, symbol: str) -> dict[str, Any]:
            raise RuntimeError(f"signed url https://x/fapi?signature=deadbeef&key={planted}")

        def status(self) -> dict[str, Any]:
            return {"note": f"key is {planted}"}

    path = str(tmp_path / "a.sock")
    srv = AdminServer(path, Leaky(), secret_values=[planted])
    srv.start()
    try:
        raw = raw_exchange(path, b'{"cmd": "status"}\n{"cmd": "state", "symbol": "BTCUSDC"}\n')
        assert planted.encode() not in raw and b"deadbeef" not in raw
        got = replies(raw)
        assert got[0]["ok"] and "[Filtered]" in got[0]["result"]["note"]
        assert got[1]["ok"] is False
    finally:
        srv.stop()


def test_stop_is_prompt_and_releases_clients(tmp_path):
    path = str(tmp_path / "a.sock")
    srv = AdminServer(path, Desk())
    srv.start()
    idle = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    idle.settimeout(5)
    idle.connect(path)
    idle.sendall(b'{"cmd": "status"}\n')
    assert json.loads(idle.recv(65536))["ok"]  # now served by a client thread, then idle
    t0 = time.monotonic()
    srv.stop()
    assert time.monotonic() - t0 < 5
    assert not srv.running
    assert idle.recv(10) == b""
    idle.close()


# ------------------------------------------------------------------ client / CLI


def test_default_socket_path(monkeypatch, tmp_path):
    monkeypatch.delenv("RUNTIME_DIRECTORY", raising=False)
    assert default_admin_socket(tmp_path) == str(tmp_path / "admin.sock")
    monkeypatch.setenv("RUNTIME_DIRECTORY", "/run/atlas:/run/other")
    assert default_admin_socket(tmp_path) == "/run/atlas/admin.sock"


def test_cli_commands_tables_json_and_exit_codes(server, capsys):
    _, desk, path = server
    assert main_admin(["--socket", path, "status"]) == 0
    out = capsys.readouterr().out
    assert "KEY" in out and "BTCUSDC" in out and "READY" in out and "mode" in out

    assert main_admin(["--socket", path, "pause", "btcusdc"]) == 0
    assert desk.symbols["BTCUSDC"]["state"] == "PAUSED"
    assert main_admin(["--socket", path, "freeze", "XRPUSDT", "30"]) == 0
    assert desk.symbols["XRPUSDT"]["frozen_min"] == 30.0
    assert main_admin(["--socket", path, "flatten", "all"]) == 0
    assert desk.flattened[-1][0] == "all"
    capsys.readouterr()
    assert main_admin(["--socket", path, "--json", "events", "--since", "10", "--limit", "3"]) == 0
    reply = json.loads(capsys.readouterr().out)
    assert [e["seq"] for e in reply["result"]] == [11, 12, 13]
    assert main_admin(["--socket", path, "events", "--limit", "2"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["SEQ", "EVENT_TYPE", "SYMBOL"]

    assert main_admin(["--socket", path, "restart", "BOOM"]) == 1
    assert "actor registry is on fire" in capsys.readouterr().err
    assert main_admin(["--socket", path, "freeze", "XRPUSDT", "-3"]) == 1
    assert main_admin(["--socket", path, "freeze", "XRPUSDT"]) == 2
    assert "minutes" in capsys.readouterr().err
    assert main_admin(["--socket", path, "explode"]) == 2


def test_cli_cannot_connect_names_the_socket(tmp_path, capsys):
    missing = str(tmp_path / "nowhere.sock")
    assert main_admin(["--socket", missing, "status"]) == 2
    err = capsys.readouterr().err
    assert missing in err and "is atlas running" in err
    assert main_admin(["--state-dir", str(tmp_path), "status"]) == 2
    assert str(tmp_path / "admin.sock") in capsys.readouterr().err


def test_format_result_renders_tables_and_scalars():
    text = format_result({"mode": "live", "symbols": {"BTCUSDC": {"state": "READY", "qty": 0.5}}})
    lines = text.splitlines()
    assert lines[0].split() == ["mode", "live"]
    assert lines[-2].split() == ["KEY", "STATE", "QTY"]
    assert lines[-1].split() == ["BTCUSDC", "READY", "0.5"]
    assert format_result([]) == "(none)"
    assert format_result(None) == "-"
