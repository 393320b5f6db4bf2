"""SimVenue: an in-process simulated Binance USD-M exchange implementing `ExchangeAdapter`.

Used by paper mode, backtests, tests and the loopback Binance-compatible server
(`atlas_actors.sim_exchange`). It is driven by what it is fed:

- `feed_bar(symbol, bar)`: a closed kline. The contract price walks open -> low -> high -> close
  for a bullish bar (close >= open) and open -> high -> low -> close for a bearish one. A jump from
  the previous close to the open is a gap: nothing trades in between.
- `set_price(symbol, price)`: the contract price moves continuously from the last price to `price`.
- `set_mark_price(symbol, price)` / `feed_mark_bar(symbol, bar)`: an explicit mark price; from then
  on MARK_PRICE stops of that symbol follow it (until `clear_mark_price`). Without an explicit mark,
  the mark follows the contract price path.

Matching rules (chosen to be a little pessimistic, like a real book):
- resting limits fill completely at their own price (maker fee) when the price trades *through*
  it (strictly beyond); a GTX order that would take is refused with -5022;
- a triggered Algo stop becomes a reduce-only market order filled at the trigger point of the path
  (the stop price, or the worse gap price when the market jumped over it) with slippage and the
  taker fee; MARK_PRICE stops triggered by the mark fill at the last contract price;
- market orders fill at the last price with slippage and the taker fee;
- reduce-only orders never increase a position: rejected with -2022 when they cannot reduce,
  a market one larger than the position is clipped; resting reduce-only orders expire when the
  position is gone; close_position stops expire with the position.

Events (OrderUpdate, AlgoUpdate, AccountUpdate, BarClosed, MarkPrice, StreamStatus) are delivered
synchronously to listeners, in the order they happened, after the venue lock is released. A
listener that raises is logged and skipped. Listeners receive events from construction on;
`ws_stop()` pauses delivery and `ws_start()` resumes it.

Times: the venue clock is the injected `clock` (epoch seconds) or, by default, the close_time of
the latest bar fed (no wall-clock reads). Visibility lag of fault injection uses the injected clock
or `time.monotonic`.
"""

from atlas_actors.venues.sim.algos import SimAlgos
from atlas_actors.venues.sim.closes import SimVenueCloses
from atlas_actors.venues.sim.orders import SimOrders
from atlas_actors.venues.sim.snapshot import SimSnapshot


class SimVenue(SimSnapshot, SimOrders, SimAlgos, SimVenueCloses):
    """In-process exchange (see the module docstring). Thread-safe: one RLock guards the book.

    One concept per base: state and plumbing (`SimCore`), the account (`SimAccount`), matching
    (`SimMatching`), the fed market (`SimMarket`), regular orders (`SimOrders`), algo stops
    (`SimAlgos`), the exchange's own closes (`SimVenueCloses`) and persistence (`SimSnapshot`)."""
