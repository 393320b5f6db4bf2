"""Secrets: sources, repr, and a planted secret that never reaches logs, alerts, admin replies
or records."""

from __future__ import annotations

import io
import json
import logging
import socket

import pytest

from atlas_actors.events import JsonlRecordWriter
from supervisor.admin import AdminServer, admin_request
from supervisor.alerts import Alerts
from supervisor.secrets import (
    Secrets,
    SecretScrubber,
    SecretsError,
    install_log_scrubbing,
    load_secrets,
    redact,
)

PLANTED_KEY = "plantedKEY-7f3a9c1e5b2d4f6a8c0e"
PLANTED_SECRET = "plantedSECRET-0a1b2c3d4e5f6a7b8c9d"


def test_env_wins_over_credentials(tmp_path):
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "binance-api-key").write_text("credKEY-aaaaaaaaaaaa\n")
    (creds / "binance-api-secret").write_text("credSECRET-bbbbbbbbbbbb\n")
    (creds / "sentry-dsn").write_text("https://credpubkey1234@o1.ingest.sentry.io/42\n")
    env = {"CREDENTIALS_DIRECTORY": str(creds), "BINANCE_API_KEY": "envKEY-cccccccccccc"}
    s = load_secrets(env)
    assert s.binance_api_key == "envKEY-cccccccccccc"
    assert s.binance_api_secret == "credSECRET-bbbbbbbbbbbb"  # newline stripped
    assert s.sentry_dsn == "https://credpubkey1234@o1.ingest.sentry.io/42"
    assert "credpubkey1234" in s.values()  # the DSN's key part is scrubbed on its own too


def test_nothing_set_is_all_none():
    s = load_secrets({})
    assert s == Secrets() and s.values() == ()


def test_empty_env_value_falls_back_to_credential(tmp_path):
    (tmp_path / "binance-api-key").write_text("fromCRED-123456789")
    s = load_secrets({"BINANCE_API_KEY": "  ", "CREDENTIALS_DIRECTORY": str(tmp_path)})
    assert s.binance_api_key == "fromCRED-123456789"


def test_unreadable_credential_is_a_clear_error(tmp_path):
    (tmp_path / "binance-api-secret").mkdir()  # a directory where a file should be
    with pytest.raises(SecretsError, match="binance-api-secret"):
        load_secrets({"CREDENTIALS_DIRECTORY": str(tmp_path)})


def test_repr_never_shows_values():
    s = Secrets(binance_api_key=PLANTED_KEY, binance_api_secret=PLANTED_SECRET)
    for text in (repr(s), str(s), f"{s}", repr([s])):
        assert PLANTED_KEY not in text and PLANTED_SECRET not in text
    assert "binance_api_key=set" in repr(s) and "sentry_dsn=unset" in repr(s)


def test_redact_patterns():
    text = (
        "GET /fapi/v1/order?symbol=BTCUSDC&signature=9f8e7d6c&timestamp=1 "
        "X-MBX-APIKEY: Zz9yY8xX7wW6 listenKey=Ab12Cd34 http://user:pw@host/ " + "q" * 64
    )
    out = redact(text)
    for leaked in ("9f8e7d6c", "Zz9yY8xX7wW6", "Ab12Cd34", "user:pw", "q" * 64):
        assert leaked not in out
    assert "symbol=BTCUSDC" in out and "timestamp=1" in out
    assert redact("short pw paper mode", ["paper"]) == "short pw paper mode"


def test_scrubber_filter_on_a_handler():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(SecretScrubber([PLANTED_SECRET]))
    logger = logging.getLogger("atlas.test.scrubber")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        logger.error("secret is %s", PLANTED_SECRET)
        try:
            raise ValueError(f"bad {PLANTED_SECRET}")
        except ValueError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    out = stream.getvalue()
    assert PLANTED_SECRET not in out
    assert "secret is [Filtered]" in out and "ValueError: bad [Filtered]" in out


def test_planted_secret_never_appears_in_logs_alerts_admin_or_records(tmp_path, monkeypatch):
    monkeypatch.setenv("BINANCE_API_KEY", PLANTED_KEY)
    monkeypatch.setenv("BINANCE_API_SECRET", PLANTED_SECRET)
    monkeypatch.delenv("SENTRY_DSN", raising=False)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    secrets = load_secrets()
    install_log_scrubbing(secrets)

    # every handler: root (installed before and after scrubbing was set up) and a named logger
    root_stream, late_stream, named_stream = io.StringIO(), io.StringIO(), io.StringIO()
    root = logging.getLogger()
    early = logging.StreamHandler(root_stream)
    root.addHandler(early)
    named = logging.getLogger("atlas.gateway")
    named_handler = logging.StreamHandler(named_stream)
    named.addHandler(named_handler)
    late = logging.StreamHandler(late_stream)
    root.addHandler(late)
    old_level = root.level
    root.setLevel(logging.DEBUG)
    try:
        named.info("signing with %s/%s", secrets.binance_api_key, secrets.binance_api_secret)
        logging.getLogger("supervisor.tree").warning(f"f-string with {PLANTED_SECRET}")
        try:
            raise PermissionError(f"-2015 Invalid API-key {PLANTED_KEY}")
        except PermissionError:
            named.exception("order failed")
        logging.getLogger("x").debug("%r", secrets)

        # alerts (off: recorded only; the payload scrubbing is covered in test_alerts)
        alerts = Alerts(
            None, environment="t", release="r", instance="i", secret_values=secrets.values()
        )
        alerts.halted("BTCUSDC", f"key {PLANTED_KEY} rejected")

        # admin replies
        class Leaky:
            def status(self):
                return {"key": secrets.binance_api_key, "nested": [PLANTED_SECRET]}

            def state(self, symbol):
                raise RuntimeError(f"venue said {PLANTED_SECRET}")

        path = str(tmp_path / "admin.sock")
        srv = AdminServer(path, Leaky())
        srv.start()
        try:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(5)
            s.connect(path)
            s.sendall(b'{"cmd": "status"}\n{"cmd": "state", "symbol": "BTCUSDC"}\n')
            raw = b""
            while raw.count(b"\n") < 2:
                raw += s.recv(65536)
            s.close()
            assert admin_request(path, {"cmd": "status"})["ok"]
        finally:
            srv.stop()

        # records (the writer's scrub hook is `redact`)
        rec_path = tmp_path / "records.jsonl"
        writer = JsonlRecordWriter(rec_path, scrub=redact)
        writer.emit(
            {"kind": "risk", "event_type": "EMERGENCY_FLAT", "reason": f"auth {PLANTED_KEY}"}
        )
        writer.close()
    finally:
        for h in (early, late):
            root.removeHandler(h)
        named.removeHandler(named_handler)
        root.setLevel(old_level)

    outputs = {
        "root log": root_stream.getvalue(),
        "late handler": late_stream.getvalue(),
        "named log": named_stream.getvalue(),
        "alerts": json.dumps(alerts.sent),
        "admin": raw.decode(),
        "records": rec_path.read_text(),
    }
    assert "order failed" in outputs["root log"] and "-2015" in outputs["root log"]
    assert "[Filtered]" in outputs["admin"] and "[Filtered]" in outputs["records"]
    for where, text in outputs.items():
        assert PLANTED_KEY not in text, where
        assert PLANTED_SECRET not in text, where
