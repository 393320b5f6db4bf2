"""The sim exchange: SimVenue behind Binance's USDⓈ-M REST and WebSocket wire, on loopback (a
tool for paper runs, tests and chaos, not a venue adapter; see `sim_exchange.server`). Its
command line is `atlas sim-exchange` (`supervisor.sim_exchange_cmd`)."""

from atlas_actors.sim_exchange.replayer import Replayer
from atlas_actors.sim_exchange.server import LOOPBACK_HOSTS, SimExchangeServer, free_port
from atlas_actors.sim_exchange.wire import WireError, WireRequest

__all__ = [
    "LOOPBACK_HOSTS",
    "Replayer",
    "SimExchangeServer",
    "WireError",
    "WireRequest",
    "free_port",
]
