"""Secrets: where they come from, and how they are kept out of every output.

Secrets never live in the config file. They come from the environment (`BINANCE_API_KEY`,
`BINANCE_API_SECRET`, `SENTRY_DSN`) or, under systemd, from credentials loaded with
`LoadCredential=` into `$CREDENTIALS_DIRECTORY` under the same names in lower case with dashes
(`binance-api-key`, `binance-api-secret`, `sentry-dsn`). A non-empty environment variable wins
over a credential file, so an operator can override a credential for one run.

`redact()` is the one scrubbing function: logs (`SecretScrubber`), Sentry events
(supervisor/alerts.py) and admin replies (supervisor/admin.py) all go through it.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

REDACTED = "[Filtered]"

# Shorter values are not real credentials (Binance keys are 64 characters) and redacting them
# would mangle ordinary words: the sim exchange's keys are literally "paper".
MIN_SECRET_LEN = 8

# (environment variable, credential file name, Secrets field)
SOURCES = (
    ("BINANCE_API_KEY", "binance-api-key", "binance_api_key"),
    ("BINANCE_API_SECRET", "binance-api-secret", "binance_api_secret"),
    ("SENTRY_DSN", "sentry-dsn", "sentry_dsn"),
)

# Credential-shaped text that must go even when its value was never registered:
# request signatures, the API key header, listen keys, user:password@ in URLs, and long
# alphanumeric tokens (API keys, secrets and listen keys are 60-64 of them).
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"(?i)(signature=)[^&\s\"']+"), r"\1" + REDACTED),
    (re.compile(r"(?i)(x-mbx-apikey[\"']?\s*[:=]\s*[\"']?)[^\s\"',}]+"), r"\1" + REDACTED),
    (re.compile(r"(?i)(listen_?key[\"']?\s*[:=]\s*[\"']?)[^\s\"',}&]+"), r"\1" + REDACTED),
    (re.compile(r"(?i)(api_?key[\"']?\s*[:=]\s*[\"']?)[^\s\"',}&]+"), r"\1" + REDACTED),
    (re.compile(r"(://)[^/@\s\"']+@"), r"\1" + REDACTED + "@"),
    (re.compile(r"(?<![A-Za-z0-9])[A-Za-z0-9]{48,}(?![A-Za-z0-9])"), REDACTED),
)


class SecretsError(Exception):
    """A secret source exists but cannot be read."""


@dataclass(frozen=True)
class Secrets:
    binance_api_key: str | None = None
    binance_api_secret: str | None = None
    sentry_dsn: str | None = None

    def __repr__(self) -> str:
        present = [f"{name}={'set' if getattr(self, name) else 'unset'}" for _, _, name in SOURCES]
        return f"Secrets({', '.join(present)})"

    __str__ = __repr__

    def values(self) -> tuple[str, ...]:
        """Every secret string to scrub: the values, and the key part of the Sentry DSN."""
        out: list[str] = []
        for _, _, name in SOURCES:
            value = getattr(self, name)
            if value:
                out.append(value)
        if self.sentry_dsn:
            match = re.match(r"^[a-z]+://([^@/]+)@", self.sentry_dsn)
            if match:
                out.extend(part for part in match.group(1).split(":") if part)
        return tuple(v for v in dict.fromkeys(out) if len(v) >= MIN_SECRET_LEN)


def load_secrets(env: Mapping[str, str] | None = None) -> Secrets:
    """Secrets from the environment, else from `$CREDENTIALS_DIRECTORY` files."""
    env = os.environ if env is None else env
    cred_dir = env.get("CREDENTIALS_DIRECTORY") or None
    found: dict[str, str | None] = {}
    for var, cred, name in SOURCES:
        value = (env.get(var) or "").strip()
        if not value and cred_dir:
            path = Path(cred_dir) / cred
            if path.exists():
                try:
                    value = path.read_text(encoding="utf-8").strip()
                except (OSError, UnicodeDecodeError) as exc:
                    raise SecretsError(
                        f"cannot read credential {path}: {type(exc).__name__}"
                    ) from None
        found[name] = value or None
    secrets = Secrets(**found)
    register_secrets(secrets.values())
    return secrets


# ------------------------------------------------------------------ registry

_registry_lock = threading.Lock()
_registered: tuple[str, ...] = ()


def register_secrets(values: Iterable[str]) -> None:
    """Add values every `redact()` call will remove (load_secrets registers what it loads)."""
    global _registered
    with _registry_lock:
        merged = dict.fromkeys(_registered)
        merged.update(dict.fromkeys(v for v in values if v and len(v) >= MIN_SECRET_LEN))
        # Longest first, so a secret containing another is removed whole.
        _registered = tuple(sorted(merged, key=len, reverse=True))


def registered_secrets() -> tuple[str, ...]:
    return _registered


def redact(text: str, values: Iterable[str] = ()) -> str:
    """`text` without any registered or given secret value or credential-shaped token."""
    if not text:
        return text
    extra = tuple(v for v in values if v and len(v) >= MIN_SECRET_LEN)
    for value in sorted(set(extra) | set(_registered), key=len, reverse=True):
        if value in text:
            text = text.replace(value, REDACTED)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


# ------------------------------------------------------------------ logging


class SecretScrubber(logging.Filter):
    """Redacts secrets from a record's message, arguments, traceback and stack text.

    Attach it where every record passes (`install_log_scrubbing` does: the record factory), or
    to a handler. It never drops a record."""

    def __init__(self, values: Iterable[str] = ()) -> None:
        super().__init__()
        self._values = tuple(values)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not hide the record
            message = f"{record.msg!r} {record.args!r}"
        record.msg = redact(message, self._values)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text, self._values)
        if record.stack_info:
            record.stack_info = redact(record.stack_info, self._values)
        return True


_factory_installed = False


def install_log_scrubbing(secrets: Secrets | None = None) -> None:
    """Scrub every log record of the process at creation, whatever logger or handler it
    goes to (handlers added later included). Idempotent; registers `secrets`."""
    global _factory_installed
    if secrets is not None:
        register_secrets(secrets.values())
    if _factory_installed:
        return
    scrubber = SecretScrubber()
    previous = logging.getLogRecordFactory()

    def factory(*args: object, **kwargs: object) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        scrubber.filter(record)
        return record

    logging.setLogRecordFactory(factory)
    _factory_installed = True
