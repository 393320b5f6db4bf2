"""Alerts to Sentry: actor crashes, restart-intensity HALT, EMERGENCY_FLAT, the venue's own closes
(liquidation, ADL, settlement), live selfcheck failure.

Off (every method a no-op that still records `(kind, tags)` in `alerts.sent`) when no DSN is
configured. When on, Atlas uses its own `sentry_sdk.Client`, not the global `sentry_sdk.init`:
nothing is captured implicitly (no default integrations, no logging breadcrumbs, no local
variables, no PII, no host name), so what reaches Sentry is exactly the events built here, and
every one of them passes `scrub_event` (registered secret values, signatures, API-key headers,
listen keys, credentials in URLs, and any value under a key that names a secret or an account
identifier) before it leaves the process. An alert never raises: a failure to alert is logged.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable, Mapping
from typing import Any

from supervisor.secrets import REDACTED, Secrets, redact

log = logging.getLogger(__name__)

# Normalised (lower case, no _ or -) key names whose values are never sent.
_SENSITIVE_KEY = re.compile(
    r"(apikey|secret|token|signature|password|passwd|dsn|listenkey|authorization|cookie"
    r"|privatekey|accountalias|accountid|accountnumber|^uid$|userid|email|^key$)"
)


def _sensitive(key: str) -> bool:
    return bool(_SENSITIVE_KEY.search(key.lower().replace("_", "").replace("-", "")))


def scrub_event(value: Any, secret_values: Iterable[str] = ()) -> Any:
    """A copy of a Sentry event with secrets removed from every key and string."""
    values = tuple(secret_values)

    def walk(item: Any, depth: int) -> Any:
        if depth > 64:
            return REDACTED
        if isinstance(item, str):
            return redact(item, values)
        if isinstance(item, Mapping):
            out: dict[Any, Any] = {}
            for k, v in item.items():
                key = redact(k, values) if isinstance(k, str) else k
                if isinstance(k, str) and _sensitive(k) and v not in (None, "", [], {}):
                    out[key] = REDACTED
                else:
                    out[key] = walk(v, depth + 1)
            return out
        if isinstance(item, list | tuple):
            return [walk(v, depth + 1) for v in item]
        return item

    return walk(value, 0)


def atlas_release() -> str:
    try:
        from importlib.metadata import version

        return f"atlas@{version('atlas-actors')}"
    except Exception:
        return "atlas@unknown"


class Alerts:
    def __init__(
        self,
        dsn: str | None,
        *,
        environment: str,
        release: str,
        instance: str,
        secret_values: Iterable[str] = (),
    ) -> None:
        self.environment = environment
        self.release = release
        self.instance = instance
        self.sent: list[tuple[str, dict[str, str]]] = []
        self._secret_values = tuple(v for v in secret_values if v) + ((dsn,) if dsn else ())
        self._lock = threading.Lock()
        self._client: Any = None
        if dsn:
            self._client = self._make_client(dsn)

    @property
    def enabled(self) -> bool:
        return self._client is not None

    def _make_client(self, dsn: str) -> Any:
        import sentry_sdk

        return sentry_sdk.Client(
            dsn=dsn,
            environment=self.environment,
            release=self.release,
            server_name=self.instance,  # not the host name
            default_integrations=False,
            auto_enabling_integrations=False,
            integrations=[],
            include_local_variables=False,
            include_source_context=False,
            # send_default_pii is left at its default, False (passing it is deprecated in
            # sentry-sdk 2.7x; a test asserts the client does not send PII)
            attach_stacktrace=False,
            max_breadcrumbs=0,
            auto_session_tracking=False,
            send_client_reports=False,
            enable_backpressure_handling=False,
            traces_sample_rate=None,
            spotlight=False,
            before_send=self._before_send,
            # gzip even if brotli happens to be installed: fewer moving parts to verify
            _experiments={"transport_compression_algo": "gzip"},
        )

    def _before_send(self, event: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any]:
        scrubbed: dict[str, Any] = scrub_event(event, self._secret_values)
        return scrubbed

    # -------------------------------------------------------------- alerts

    def actor_crashed(self, actor: str, symbol: str | None, exc: BaseException) -> None:
        tags = {"actor": actor, "symbol": symbol or "-"}
        self._capture(
            "actor_crashed",
            tags,
            level="error",
            message=f"actor {actor} crashed" + (f" ({symbol})" if symbol else ""),
            exc=exc,
        )

    def halted(self, symbol: str, reason: str) -> None:
        self._capture(
            "halted",
            {"symbol": symbol},
            level="fatal",
            message=f"{symbol} HALTED: {reason}",
            extra={"reason": reason},
        )

    def emergency_flat(self, symbol: str, reason: str, details: Mapping[str, Any]) -> None:
        self._capture(
            "emergency_flat",
            {"symbol": symbol},
            level="fatal",
            message=f"EMERGENCY_FLAT {symbol}: {reason}",
            extra={"reason": reason, "details": dict(details)},
        )

    def stop_unconfirmed(self, symbol: str, reason: str) -> None:
        """A protective stop's visibility is unknown past its deadline (the venue is silent)."""
        self._capture(
            "stop_unconfirmed",
            {"symbol": symbol},
            level="error",
            message=f"{symbol}: {reason}",
            extra={"reason": reason},
        )

    def venue_closed(self, symbol: str, kind: str, details: Mapping[str, Any]) -> None:
        """The exchange closed (part of) a position itself: liquidation, ADL or settlement."""
        self._capture(
            "venue_closed",
            {"symbol": symbol, "venue_close": kind},
            level="fatal" if kind == "liquidation" else "error",
            message=f"{kind.upper()} {symbol}: {details.get('reason', '')}",
            extra={"kind": kind, "details": dict(details)},
        )

    def venue_banned(self, detail: str) -> None:
        """REST is banned by the venue (HTTP 429/418): `detail` = "until <ms>: <why>"."""
        until = detail.split(":", 1)[0].removeprefix("until ").strip()
        self._capture(
            "venue_banned",
            {},
            level="fatal",
            message=f"Binance REST ban {detail}; no request is sent until it ends, "
            "the stops already on the exchange protect",
            extra={"until_ms": until, "detail": detail},
        )

    def storage_failed(self, reason: str) -> None:
        self._capture(
            "storage_failed",
            {},
            level="fatal",
            message=f"state store cannot write: {reason}",
            extra={"reason": reason},
        )

    def selfcheck_failed(self, report: Any) -> None:
        lines = [
            {"name": ln.name, "result": ln.result, "reason": ln.reason}
            for ln in getattr(report, "lines", ())
        ]
        failed = [ln for ln in lines if ln["result"] != "PASS"]
        names = ", ".join(ln["name"] for ln in failed) or "unknown"
        self._capture(
            "selfcheck_failed",
            {},
            level="error",
            message=f"selfcheck failed: {names}",
            extra={"failed": failed, "lines": lines},
        )

    def flush(self, timeout: float = 2.0) -> None:
        if self._client is not None:
            try:
                self._client.flush(timeout=timeout)
            except Exception:
                log.exception("flushing alerts failed")

    def close(self, timeout: float = 2.0) -> None:
        if self._client is not None:
            try:
                self._client.close(timeout=timeout)
            except Exception:
                log.exception("closing alerts failed")
            self._client = None

    # -------------------------------------------------------------- plumbing

    def _capture(
        self,
        kind: str,
        tags: Mapping[str, str],
        *,
        level: str,
        message: str,
        exc: BaseException | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        all_tags = {"kind": kind, "instance": self.instance, **tags}
        with self._lock:
            self.sent.append((kind, dict(all_tags)))
        log.warning("alert %s %s: %s", kind, dict(tags), message)
        if self._client is None:
            return
        try:
            event, hint = self._build_event(exc)
            event["level"] = level
            event["logentry"] = {"message": message, "formatted": message}
            event["tags"] = all_tags
            event["fingerprint"] = ["atlas", kind, *(str(v) for v in tags.values())]
            if extra:
                event["extra"] = dict(extra)
            self._client.capture_event(event, hint=hint)
        except Exception:
            log.exception("sending alert %s failed", kind)

    def _build_event(self, exc: BaseException | None) -> tuple[dict[str, Any], dict[str, Any]]:
        if exc is None:
            return {}, {}
        from sentry_sdk.utils import event_from_exception

        event, hint = event_from_exception(
            exc,
            client_options=self._client.options,
            mechanism={"type": "atlas", "handled": True},
        )
        return dict(event), dict(hint)


def init_alerts(config: Any, secrets: Secrets) -> Alerts:
    """Alerts for a loaded `AtlasConfig`: on when [alerts] sentry is true and a DSN is set."""
    alerts_cfg = config.alerts
    dsn = secrets.sentry_dsn if alerts_cfg.sentry else None
    if alerts_cfg.sentry and not secrets.sentry_dsn:
        log.info("Sentry alerts off: SENTRY_DSN / credential sentry-dsn not set")
    return Alerts(
        dsn,
        environment=config.environment,
        release=atlas_release(),
        instance=config.instance,
        secret_values=secrets.values(),
    )
