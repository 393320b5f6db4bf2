"""Real processes for the kill tests: `atlas sim-exchange` and `atlas run` as subprocesses."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from atlas_actors.audit import VenueView
from atlas_actors.store import StateStore

ROOT = Path(__file__).resolve().parents[2]
CHAOS_CONFIG = Path(__file__).resolve().parent / "chaos.toml"
SYMBOLS = ("BTCUSDT", "XRPUSDT", "ADABTC")  # one margin asset per instance


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "SENTRY_DSN")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


class SimExchange:
    """`atlas sim-exchange` on a free loopback port; the market replays at `speed`."""

    def __init__(self, log: Path, *, speed: str = "600", symbols: tuple[str, ...] = SYMBOLS):
        self.log = log
        log.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(log, "w", encoding="utf-8")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "supervisor.cli",
                "sim-exchange",
                "--port",
                "0",
                "--symbols",
                ",".join(symbols),
                "--speed",
                speed,
            ],
            cwd=ROOT,
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=self._fh,
            text=True,
        )
        self.url = ""
        deadline = time.monotonic() + 60
        assert self.proc.stdout is not None
        while not self.url:
            assert time.monotonic() < deadline, f"sim-exchange did not start, see {log}"
            line = self.proc.stdout.readline()
            assert line, f"sim-exchange exited early (rc {self.proc.poll()}), see {log}"
            if line.startswith("sim-exchange REST"):
                self.url = line.split()[-1].strip()

    def admin(self, what: str, body: dict[str, Any] | None = None) -> Any:
        if body is None:
            resp = requests.get(f"{self.url}/admin/{what}", timeout=30)
        else:
            resp = requests.post(f"{self.url}/admin/{what}", json=body, timeout=30)
        resp.raise_for_status()
        return resp.json()

    def view(self) -> VenueView:
        return VenueView.from_snapshot(self.admin("snapshot"))

    def stop_market(self) -> None:
        self.admin("replay", {"stop": True})

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._fh.close()


class AtlasRun:
    """`atlas run --venue sim-exchange` on a state dir, output to `<log_dir>/run-<n>.out`."""

    def __init__(
        self,
        url: str,
        state_dir: Path,
        log_dir: Path,
        n: int,
        *,
        config: Path = CHAOS_CONFIG,
        run_seconds: float = 600.0,
        extra_env: dict[str, str] | None = None,
        preexec_fn: Callable[[], None] | None = None,
    ) -> None:
        log_dir.mkdir(parents=True, exist_ok=True)
        self.out = log_dir / f"run-{n}.out"
        self._fh = open(self.out, "w", encoding="utf-8")  # noqa: SIM115 - closed in wait()
        env = _env()
        env.update(extra_env or {})
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "supervisor.cli",
                "run",
                "--config",
                str(config),
                "--venue",
                "sim-exchange",
                "--venue-url",
                url,
                "--state-dir",
                str(state_dir),
                "--log-dir",
                str(log_dir),
                "--symbols",
                ",".join(SYMBOLS),
                "--no-admin",
                "--quiet",
                "--run-seconds",
                str(run_seconds),
            ],
            cwd=ROOT,
            env=env,
            stdout=self._fh,
            stderr=subprocess.STDOUT,
            preexec_fn=preexec_fn,  # noqa: PLW1509 - only resource limits, no threads yet
        )

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.wait(30)

    def terminate(self, timeout_s: float = 60.0) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.wait(timeout_s)

    def wait(self, timeout_s: float) -> int:
        try:
            rc = self.proc.wait(timeout_s)
        finally:
            self._fh.close()
        return rc

    def output(self) -> str:
        return self.out.read_text(encoding="utf-8", errors="replace")


def stored_records(state_dir: Path, since: int = 0) -> list[dict[str, Any]]:
    """The records in the LMDB event log after `since` (read beside the running service)."""
    with StateStore(state_dir, lock=False) as store:
        return store.iter_events(since=since)


def last_seq(state_dir: Path) -> int:
    if not (state_dir / "data.mdb").exists():
        return 0
    with StateStore(state_dir, lock=False) as store:
        return store.last_event_seq()


def wait_ready(state_dir: Path, since: int, proc: AtlasRun, timeout_s: float = 60.0) -> bool:
    """Every symbol recorded READY (or FROZEN/HALTED) after event `since`."""
    deadline = time.monotonic() + timeout_s
    settled = ("READY", "FROZEN", "HALTED")
    while time.monotonic() < deadline:
        assert proc.proc.poll() is None, f"atlas run exited: {proc.output()[-3000:]}"
        recs = stored_records(state_dir, since) if (state_dir / "data.mdb").exists() else []
        done = {r["symbol"] for r in recs if r.get("kind") == "lifecycle" and r["state"] in settled}
        if all(s in done for s in SYMBOLS):
            return True
        time.sleep(0.2)
    return False
