"""In-memory market data for one cycle: bars, order-book snapshots and news.

Times are int64 nanoseconds since the Unix epoch, UTC. A bar is stamped at its close, so a
bar is known at its `time` and never before: point-in-time filtering keeps `time <= window_end`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

NS_PER_SECOND = 1_000_000_000
NS_PER_MINUTE = 60 * NS_PER_SECOND


@dataclass(frozen=True)
class Bars:
    """OHLCV columns of one symbol, sorted by time with unique times."""

    symbol: str
    time: np.ndarray  # int64 ns, bar close time
    open: np.ndarray  # float64
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray

    def __len__(self) -> int:
        return int(self.time.shape[0])

    def until(self, end_ns: int) -> Bars:
        """Return the bars known at `end_ns` (time <= end_ns)."""
        stop = int(np.searchsorted(self.time, end_ns, side="right"))
        return self.slice(0, stop)

    def slice(self, start: int, stop: int) -> Bars:
        return Bars(
            symbol=self.symbol,
            time=self.time[start:stop],
            open=self.open[start:stop],
            high=self.high[start:stop],
            low=self.low[start:stop],
            close=self.close[start:stop],
            volume=self.volume[start:stop],
        )

    def bar_minutes(self) -> int:
        """Return the most common spacing between bars in minutes (0 with fewer than 2 bars)."""
        if len(self) < 2:
            return 0
        spacing = np.diff(self.time[-500:])
        values, counts = np.unique(spacing, return_counts=True)
        return int(values[np.argmax(counts)] // NS_PER_MINUTE)

    @staticmethod
    def empty(symbol: str) -> Bars:
        floats = np.empty(0, dtype=np.float64)
        return Bars(symbol, np.empty(0, dtype=np.int64), floats, floats, floats, floats, floats)


@dataclass(frozen=True)
class BookLevel:
    price: float
    size: float


@dataclass(frozen=True)
class OrderBookSnapshot:
    time: int  # ns
    bids: tuple[BookLevel, ...]  # best bid first
    asks: tuple[BookLevel, ...]  # best ask first


@dataclass(frozen=True)
class NewsItem:
    time: int  # ns
    headline: str
    body: str = ""
    source: str = ""


@dataclass(frozen=True)
class MarketInputs:
    """Everything a cycle reads, already cut to what was known at window_end."""

    symbol: str
    window_end: int  # ns
    window_minutes: int
    bars: Bars
    # Other symbols' bars up to window_end, for correlations and lead-lag.
    related: dict[str, Bars] = field(default_factory=dict)
    order_book: tuple[OrderBookSnapshot, ...] = ()
    news: tuple[NewsItem, ...] = ()
