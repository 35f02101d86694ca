"""Checks on an AnalyzeRequest before anything runs, and converters from its messages.

Every failure raises InvalidArgument naming the field (with its index) and the value, for
example "bars[17].high 101.2 is below low 101.9". The service turns it into the gRPC status
INVALID_ARGUMENT. The converters run the same checks, so converted data is always valid.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from google.protobuf.timestamp_pb2 import Timestamp

from quorum.v1 import ensemble_pb2
from server.config import Config
from server.market_data import (
    NS_PER_MINUTE,
    NS_PER_SECOND,
    Bars,
    BookLevel,
    NewsItem,
    OrderBookSnapshot,
)
from server.market_store import SYMBOL_PATTERN, MarketStore, SymbolNotFoundError

MIN_WINDOW_END_NS = 946_684_800 * NS_PER_SECOND  # 2000-01-01T00:00:00Z
# A window may end up to one day ahead of the coordinator's clock, for clock skew and for
# windows named by their scheduled close.
MAX_WINDOW_END_AHEAD_NS = 24 * 60 * NS_PER_MINUTE
MAX_WINDOW_MINUTES = 1440
MIN_CONTEXT_SIZE = 512
MAX_BARS = 1_000_000
MAX_REQUEST_ID_CHARS = 128
MAX_HEADLINE_CHARS = 512
MAX_BODY_CHARS = 20_000
MAX_SOURCE_CHARS = 256
# Times must fit int64 nanoseconds, which end in 2262.
MAX_TIME_SECONDS = (2**63 - 1) // NS_PER_SECOND
_PRICE_FIELDS = ("open", "high", "low", "close")


class InvalidArgument(ValueError):
    """Invalid request field: `field` names it, and str(error) gives the field and its value."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field} {message}")
        self.field = field


@dataclass(frozen=True)
class ValidatedRequest:
    """The request's inputs after every check, converted to market-data types.

    `bars`, `order_book` and `news` are None when the request does not carry them, so the
    store's data is used.
    """

    symbol: str
    window_end: int
    window_minutes: int
    context_size: int
    bars: Bars | None
    order_book: tuple[OrderBookSnapshot, ...] | None
    news: tuple[NewsItem, ...] | None


def validate_request(
    request: ensemble_pb2.AnalyzeRequest,
    config: Config,
    store: MarketStore,
    now_ns: int | None = None,
) -> ValidatedRequest:
    """Check every field of `request` and return its converted inputs.

    `window_minutes` 0 resolves to config.market_window_minutes; `context_size` 0 stays 0
    (the caller chooses the size). Raises InvalidArgument on the first invalid field.
    """
    symbol = request.symbol
    check_symbol(symbol)
    _check_request_id(request.request_id)
    window_minutes = check_window_minutes(request.window_minutes, config)
    check_context_size(request.context_size, config.max_context_size)

    bars = bars_from_proto(symbol, request.bars) if request.bars else None
    order_book = order_book_from_proto(request.order_book) if request.order_book else None
    news = news_from_proto(request.news) if request.news else None

    if not request.HasField("window_end"):
        raise InvalidArgument("window_end", "is missing: set the close time of the window")
    window_end = _timestamp_ns("window_end", request.window_end)
    clock_ns = now_ns if now_ns is not None else time.time_ns()
    _check_window_end_bounds(window_end, clock_ns)
    if bars is not None:
        data_range = (int(bars.time[0]), int(bars.time[-1]))
        source = "the request's bars"
    else:
        data_range = _store_range(store, symbol)
        source = f"the store's bars of {symbol}"
    _check_window_in_data(window_end, window_minutes, data_range, source)
    window_start = window_end - window_minutes * NS_PER_MINUTE
    if bars is not None:
        in_window = bars.time[(bars.time > window_start) & (bars.time <= window_end)]
    else:
        in_window = store.read_bars(symbol, window_end, window_start).time
    if len(in_window) == 0:
        raise InvalidArgument(
            "window_end",
            f"{format_time(window_end)}: the {window_minutes}-minute window holds no bar of"
            f" {source} (a gap in the data); choose another window_end or a longer window",
        )

    return ValidatedRequest(
        symbol=symbol,
        window_end=window_end,
        window_minutes=window_minutes,
        context_size=request.context_size,
        bars=bars,
        order_book=order_book,
        news=news,
    )


def _check_request_id(request_id: str) -> None:
    """Raise InvalidArgument unless the id is printable ASCII of at most MAX_REQUEST_ID_CHARS.

    A request id goes into logs and traces, so it must not carry spaces or control characters.
    """
    if len(request_id) > MAX_REQUEST_ID_CHARS or not all(" " < c <= "~" for c in request_id):
        raise InvalidArgument(
            "request_id",
            f"{request_id[:40]!r} is invalid: use at most {MAX_REQUEST_ID_CHARS} printable"
            " ASCII characters without spaces, or leave it empty",
        )


def check_symbol(symbol: str) -> None:
    """Raise InvalidArgument unless the symbol is 1-32 characters of A-Z, 0-9, '.', '_', '-'."""
    if not symbol:
        raise InvalidArgument("symbol", "is missing: set a symbol such as BTC")
    if not SYMBOL_PATTERN.fullmatch(symbol) or symbol in (".", ".."):
        hint = " (symbols are uppercase)" if SYMBOL_PATTERN.fullmatch(symbol.upper()) else ""
        raise InvalidArgument(
            "symbol",
            f"{symbol[:40]!r} is invalid: use 1-32 characters of A-Z, 0-9, '.', '_' or '-'{hint}",
        )


def check_window_minutes(window_minutes: int, config: Config) -> int:
    if window_minutes == 0:
        return config.market_window_minutes
    if not 1 <= window_minutes <= MAX_WINDOW_MINUTES:
        raise InvalidArgument(
            "window_minutes",
            f"{window_minutes} is out of range: use 0 (configured default) or 1 to"
            f" {MAX_WINDOW_MINUTES}",
        )
    return window_minutes


def check_context_size(context_size: int, max_context_size: int) -> None:
    if context_size != 0 and not MIN_CONTEXT_SIZE <= context_size <= max_context_size:
        raise InvalidArgument(
            "context_size",
            f"{context_size} is out of range: use 0 (configured default) or"
            f" {MIN_CONTEXT_SIZE} to max_context_size {max_context_size}",
        )


def _check_window_end_bounds(window_end: int, now_ns: int) -> None:
    latest = now_ns + MAX_WINDOW_END_AHEAD_NS
    if not MIN_WINDOW_END_NS <= window_end <= latest:
        raise InvalidArgument(
            "window_end",
            f"{format_time(window_end)} is out of range: use {format_time(MIN_WINDOW_END_NS)}"
            f" to {format_time(latest)} (now + 1 day)",
        )


def _store_range(store: MarketStore, symbol: str) -> tuple[int, int]:
    try:
        return store.bar_range(symbol)
    except SymbolNotFoundError:
        known = ", ".join(store.symbols()) or "none"
        raise InvalidArgument(
            "symbol",
            f"{symbol} is unknown: the store at {store.lake_dir} has bars for {known}; ingest"
            " the symbol's bars or send them in the request",
        ) from None


def _check_window_in_data(
    window_end: int, window_minutes: int, data_range: tuple[int, int], source: str
) -> None:
    """Raise unless window_end is at or after the first bar and the window starts before the
    last bar."""
    first, last = data_range
    if window_end < first:
        raise InvalidArgument(
            "window_end",
            f"{format_time(window_end)} is before the first bar {format_time(first)} of {source}",
        )
    if window_end - window_minutes * NS_PER_MINUTE >= last:
        raise InvalidArgument(
            "window_end",
            f"{format_time(window_end)} is out of range: the {window_minutes}-minute window"
            f" holds no bar because the last bar of {source} is at {format_time(last)}",
        )


# Bars


def bars_from_proto(symbol: str, bars: Sequence[ensemble_pb2.Bar]) -> Bars:
    """Check the request's bars and return them as Bars. Raises InvalidArgument."""
    if len(bars) > MAX_BARS:
        raise InvalidArgument("bars", f"has {len(bars)} bars, more than the limit {MAX_BARS:,}")
    for index, bar in enumerate(bars):
        if not bar.HasField("time"):
            raise InvalidArgument(f"bars[{index}].time", "is missing")
    rows = np.array(
        [
            (bar.time.seconds, bar.time.nanos, bar.open, bar.high, bar.low, bar.close, bar.volume)
            for bar in bars
        ],
        dtype=np.float64,
    ).reshape(-1, 7)
    seconds = rows[:, 0].astype(np.int64)
    nanos = rows[:, 1].astype(np.int64)
    _check_bar_times(seconds, nanos)
    times = seconds * NS_PER_SECOND + nanos
    result = Bars(
        symbol=symbol,
        time=times,
        open=rows[:, 2].copy(),
        high=rows[:, 3].copy(),
        low=rows[:, 4].copy(),
        close=rows[:, 5].copy(),
        volume=rows[:, 6].copy(),
    )
    _check_bar_values(result)
    _check_increasing("bars", times)
    return result


def _check_bar_times(seconds: np.ndarray, nanos: np.ndarray) -> None:
    invalid = (seconds < 0) | (seconds > MAX_TIME_SECONDS) | (nanos < 0) | (nanos >= NS_PER_SECOND)
    bad = np.flatnonzero(invalid)
    if bad.size:
        index = int(bad[0])
        raise InvalidArgument(
            f"bars[{index}].time",
            f"{int(seconds[index])} s + {int(nanos[index])} ns is not a valid time from 1970"
            " to 2262",
        )


def _check_bar_values(bars: Bars) -> None:
    for name in _PRICE_FIELDS:
        values = getattr(bars, name)
        _reject_first(
            values, ~(np.isfinite(values) & (values > 0)), name, "is not a finite positive price"
        )
    _reject_first(
        bars.volume,
        ~(np.isfinite(bars.volume) & (bars.volume >= 0)),
        "volume",
        "is not a finite volume >= 0",
    )
    comparisons = (
        ("high", "below", "low", bars.high < bars.low),
        ("high", "below", "open", bars.high < bars.open),
        ("high", "below", "close", bars.high < bars.close),
        ("low", "above", "open", bars.low > bars.open),
        ("low", "above", "close", bars.low > bars.close),
    )
    for name, relation, other, failed in comparisons:
        bad = np.flatnonzero(failed)
        if bad.size:
            index = int(bad[0])
            value = getattr(bars, name)[index]
            other_value = getattr(bars, other)[index]
            raise InvalidArgument(
                f"bars[{index}].{name}",
                f"{_number(value)} is {relation} {other} {_number(other_value)}",
            )


def _reject_first(values: np.ndarray, failed: np.ndarray, name: str, message: str) -> None:
    bad = np.flatnonzero(failed)
    if bad.size:
        index = int(bad[0])
        raise InvalidArgument(f"bars[{index}].{name}", f"{_number(values[index])} {message}")


def _check_increasing(field: str, times: np.ndarray) -> None:
    steps = np.diff(times)
    bad = np.flatnonzero(steps <= 0)
    if bad.size:
        index = int(bad[0]) + 1
        relation = "repeats" if steps[index - 1] == 0 else "is before"
        raise InvalidArgument(
            f"{field}[{index}].time",
            f"{format_time(int(times[index]))} {relation} {field}[{index - 1}].time"
            f" {format_time(int(times[index - 1]))}: times must be strictly increasing",
        )


# Order book


def order_book_from_proto(
    snapshots: Sequence[ensemble_pb2.OrderBookSnapshot],
) -> tuple[OrderBookSnapshot, ...]:
    """Check the request's order-book snapshots and convert them. Raises InvalidArgument."""
    converted = []
    for index, snapshot in enumerate(snapshots):
        field = f"order_book[{index}]"
        if not snapshot.HasField("time"):
            raise InvalidArgument(f"{field}.time", "is missing")
        time_ns = _timestamp_ns(f"{field}.time", snapshot.time)
        bids = _levels(f"{field}.bids", snapshot.bids, descending=True)
        asks = _levels(f"{field}.asks", snapshot.asks, descending=False)
        if not bids and not asks:
            raise InvalidArgument(field, "has no bids and no asks")
        if bids and asks and bids[0].price >= asks[0].price:
            raise InvalidArgument(
                f"{field}.bids[0].price",
                f"{_number(bids[0].price)} is not below asks[0].price {_number(asks[0].price)}"
                " (crossed book)",
            )
        converted.append(OrderBookSnapshot(time=time_ns, bids=bids, asks=asks))
    _check_increasing("order_book", np.array([s.time for s in converted], dtype=np.int64))
    return tuple(converted)


def _levels(
    field: str, levels: Sequence[ensemble_pb2.OrderBookLevel], descending: bool
) -> tuple[BookLevel, ...]:
    converted: list[BookLevel] = []
    for index, level in enumerate(levels):
        if not (math.isfinite(level.price) and level.price > 0):
            raise InvalidArgument(
                f"{field}[{index}].price", f"{_number(level.price)} is not a finite positive price"
            )
        if not (math.isfinite(level.size) and level.size > 0):
            raise InvalidArgument(
                f"{field}[{index}].size", f"{_number(level.size)} is not a finite positive size"
            )
        if converted:
            previous = converted[-1].price
            out_of_order = level.price >= previous if descending else level.price <= previous
            if out_of_order:
                order = "below" if descending else "above"
                side = (
                    "bids go best first, descending"
                    if descending
                    else ("asks go best first, ascending")
                )
                raise InvalidArgument(
                    f"{field}[{index}].price",
                    f"{_number(level.price)} is not {order} {field}[{index - 1}].price"
                    f" {_number(previous)} ({side})",
                )
        converted.append(BookLevel(price=level.price, size=level.size))
    return tuple(converted)


# News


def news_from_proto(items: Sequence[ensemble_pb2.NewsItem]) -> tuple[NewsItem, ...]:
    """Check the request's news items and convert them. Raises InvalidArgument.

    An undated item is invalid here, because the request sends it for use and its place in
    time is unknown. The store instead rejects undated items when they are written.
    """
    converted = []
    for index, item in enumerate(items):
        field = f"news[{index}]"
        if not item.HasField("time"):
            raise InvalidArgument(
                f"{field}.time", f"is missing for headline {item.headline[:80]!r}: date every item"
            )
        time_ns = _timestamp_ns(f"{field}.time", item.time)
        if not item.headline.strip():
            raise InvalidArgument(f"{field}.headline", "is empty")
        _check_length(f"{field}.headline", item.headline, MAX_HEADLINE_CHARS)
        _check_length(f"{field}.body", item.body, MAX_BODY_CHARS)
        _check_length(f"{field}.source", item.source, MAX_SOURCE_CHARS)
        converted.append(
            NewsItem(time=time_ns, headline=item.headline, body=item.body, source=item.source)
        )
    return tuple(converted)


def _check_length(field: str, text: str, limit: int) -> None:
    if len(text) > limit:
        raise InvalidArgument(
            field, f"has {len(text):,} characters, more than the limit {limit:,}: {text[:40]!r}..."
        )


# Values


def _timestamp_ns(field: str, stamp: Timestamp) -> int:
    if not (0 <= stamp.seconds <= MAX_TIME_SECONDS and 0 <= stamp.nanos < NS_PER_SECOND):
        raise InvalidArgument(
            field,
            f"{stamp.seconds} s + {stamp.nanos} ns is not a valid time from 1970 to 2262",
        )
    return stamp.seconds * NS_PER_SECOND + stamp.nanos


def format_time(time_ns: int) -> str:
    """Format ns since the epoch as ISO-8601 UTC, with fractional seconds only when present."""
    seconds, nanos = divmod(int(time_ns), NS_PER_SECOND)
    moment = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=seconds)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if nanos:
        text += f".{nanos:09d}".rstrip("0")
    return text + "Z"


def _number(value: float) -> str:
    """Format a value as Python's shortest round-trip repr, so the message shows it exactly."""
    return repr(float(value))
