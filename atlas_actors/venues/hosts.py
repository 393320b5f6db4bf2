"""Binance's hosts, in one place: the only hosts `live` and `testnet` may talk to.

Contract §0.4: live decisions never use simulated or replayed data. A live run pointed at a
simulator, a recording proxy or a typo'd host would trade real money on bars that are not the
market's, so `live` accepts only Binance's production REST and stream hosts and `testnet` only
Binance's test hosts; `paper` (and `--venue sim-exchange`) keep loopback. Checked by the config
loader (exit 2 naming the key) and again where the venue is built (defence in depth).
"""

from __future__ import annotations

from urllib.parse import urlsplit

# mode -> (REST hosts, stream hosts). Scheme must be https / wss; any port is refused.
BINANCE_HOSTS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "live": (frozenset({"fapi.binance.com"}), frozenset({"fstream.binance.com"})),
    # Demo Trading is Binance's current futures testnet; the legacy testnet hosts still answer.
    "testnet": (
        frozenset({"demo-fapi.binance.com", "testnet.binancefuture.com"}),
        frozenset({"fstream.binancefuture.com", "demo-fstream.binance.com"}),
    ),
}
SCHEMES = {"url": "https", "ws_url": "wss"}


class HostRefused(ValueError):
    """A live or testnet URL that does not point at Binance's own hosts for that mode."""

    def __init__(self, key: str, host: str, reason: str) -> None:
        super().__init__(reason)
        self.key = key
        self.host = host


def check_binance_url(mode: str, key: str, url: str | None) -> None:
    """Raise HostRefused unless `url` (`key` is "url" for REST or "ws_url" for streams) is one
    of Binance's hosts for `mode`. Modes other than live/testnet accept any URL."""
    if mode not in BINANCE_HOSTS:
        return
    if not url:
        raise HostRefused(key, "", f"{mode} mode needs Binance's {key} (none set)")
    rest_hosts, ws_hosts = BINANCE_HOSTS[mode]
    allowed = rest_hosts if key == "url" else ws_hosts
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    scheme = SCHEMES.get(key, parts.scheme)
    if host not in allowed or parts.scheme != scheme or parts.port is not None:
        raise HostRefused(
            key,
            host or url,
            f"{mode} mode talks only to {scheme}://"
            + " or ".join(sorted(allowed))
            + f", not {host or url!r} (contract §0.4: live never trades on simulated data)",
        )


def check_binance_urls(mode: str, rest_url: str | None, ws_url: str | None) -> None:
    check_binance_url(mode, "url", rest_url)
    check_binance_url(mode, "ws_url", ws_url)
