"""Parquet data lake of bars, order-book snapshots and news, partitioned by symbol and day.

Layout: `<lake>/<dataset>/symbol=<SYMBOL>/date=<YYYY-MM-DD>/part-0.parquet`, with datasets
`bars`, `order_book` and `news`. The date is the UTC day of each row's time, and a bar's time
is its close. Each partition is one file, rewritten whole through a temporary file, fsync and
`os.replace`, so a reader sees the old file or the new one and never a partial write.

Reads are point in time: `read_*(..., end_ns)` opens only the partitions up to the UTC day of
`end_ns` and returns rows with `time <= end_ns`, never a later one.

NOTE: a write that spans several days replaces one partition at a time, so a reader running
at the same moment can see some of those days before the write and some after it.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import itertools
import logging
import os
import re
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from server.market_data import Bars, BookLevel, NewsItem, OrderBookSnapshot

log = logging.getLogger(__name__)

NS_PER_DAY = 86_400 * 1_000_000_000
SYMBOL_PATTERN = re.compile(r"[A-Z0-9._-]{1,32}")
PART_FILE = "part-0.parquet"

BARS = "bars"
ORDER_BOOK = "order_book"
NEWS = "news"

_TIME = pa.timestamp("ns", tz="UTC")
_LEVELS = pa.list_(pa.struct([("price", pa.float64()), ("size", pa.float64())]))
BARS_SCHEMA = pa.schema(
    [
        ("time", _TIME),
        ("open", pa.float64()),
        ("high", pa.float64()),
        ("low", pa.float64()),
        ("close", pa.float64()),
        ("volume", pa.float64()),
    ]
)
ORDER_BOOK_SCHEMA = pa.schema([("time", _TIME), ("bids", _LEVELS), ("asks", _LEVELS)])
NEWS_SCHEMA = pa.schema(
    [("time", _TIME), ("headline", pa.string()), ("body", pa.string()), ("source", pa.string())]
)
# Columns that identify a row. A write replaces stored rows with the same key.
_NEWS_KEY = ("time", "headline", "source")


class SymbolNotFoundError(LookupError):
    """The store contains no bars for the symbol."""


def check_symbol(symbol: str) -> None:
    """Raise ValueError unless `symbol` is 1-32 characters of A-Z, 0-9, '.', '_' or '-'.

    The symbol becomes a directory name, so this check also keeps paths inside the lake.
    """
    if not SYMBOL_PATTERN.fullmatch(symbol) or symbol in (".", ".."):
        raise ValueError(
            f"symbol {symbol!r} is invalid: use 1-32 characters of A-Z, 0-9, '.', '_' or '-'"
        )


def day_of(time_ns: int) -> dt.date:
    """Return the UTC day that contains `time_ns`."""
    return dt.date(1970, 1, 1) + dt.timedelta(days=int(time_ns // NS_PER_DAY))


class MarketStore:
    """Point-in-time reads and idempotent writes of market data under `lake_dir`."""

    def __init__(self, lake_dir: Path) -> None:
        self.lake_dir = Path(lake_dir)

    # Bars

    def write_bars(self, bars: Bars) -> int:
        """Store `bars`, replacing stored bars of the symbol with the same times.

        Writing the same bars twice leaves the same content. Returns the number of bars given.
        """
        check_symbol(bars.symbol)
        _check_bars(bars)
        table = pa.table(
            {
                "time": pa.array(bars.time.astype(np.int64), type=pa.int64()).cast(_TIME),
                "open": pa.array(bars.open, type=pa.float64()),
                "high": pa.array(bars.high, type=pa.float64()),
                "low": pa.array(bars.low, type=pa.float64()),
                "close": pa.array(bars.close, type=pa.float64()),
                "volume": pa.array(bars.volume, type=pa.float64()),
            },
            schema=BARS_SCHEMA,
        )
        self._write(BARS, bars.symbol, table, ("time",))
        return len(bars)

    def read_bars(self, symbol: str, end_ns: int, start_ns: int | None = None) -> Bars:
        """Return the symbol's bars with `start_ns < time <= end_ns`, oldest first.

        Without `start_ns` the whole history up to `end_ns` is returned. An unknown symbol gives
        empty bars.
        """
        check_symbol(symbol)
        table = self._read(BARS, symbol, BARS_SCHEMA, end_ns, start_ns)
        if table.num_rows == 0:
            return Bars.empty(symbol)
        return Bars(
            symbol=symbol,
            time=_time_column(table),
            open=_float_column(table, "open"),
            high=_float_column(table, "high"),
            low=_float_column(table, "low"),
            close=_float_column(table, "close"),
            volume=_float_column(table, "volume"),
        )

    def symbols(self) -> list[str]:
        """Return the sorted symbols that have at least one stored bar."""
        root = self.lake_dir / BARS
        if not root.is_dir():
            return []
        found = []
        for entry in root.iterdir():
            if entry.name.startswith("symbol=") and self._partitions(BARS, entry.name[7:]):
                found.append(entry.name[7:])
        return sorted(found)

    def bar_range(self, symbol: str) -> tuple[int, int]:
        """Return the times (ns) of the symbol's first and last stored bar."""
        check_symbol(symbol)
        partitions = self._partitions(BARS, symbol)
        if not partitions:
            raise SymbolNotFoundError(f"symbol {symbol} has no bars in {self.lake_dir}")
        first = _time_column(pq.read_table(partitions[0][1], columns=["time"]))
        last = _time_column(pq.read_table(partitions[-1][1], columns=["time"]))
        return int(first[0]), int(last[-1])

    # Order book

    def write_order_book(self, symbol: str, snapshots: Sequence[OrderBookSnapshot]) -> int:
        """Store snapshots, replacing stored snapshots of the symbol with the same times."""
        check_symbol(symbol)
        times = [snapshot.time for snapshot in snapshots]
        _check_unique(f"order_book of {symbol}", times)
        table = pa.table(
            {
                "time": pa.array(times, type=pa.int64()).cast(_TIME),
                "bids": pa.array([_levels_rows(s.bids) for s in snapshots], type=_LEVELS),
                "asks": pa.array([_levels_rows(s.asks) for s in snapshots], type=_LEVELS),
            },
            schema=ORDER_BOOK_SCHEMA,
        )
        self._write(ORDER_BOOK, symbol, table, ("time",))
        return len(snapshots)

    def read_order_book(
        self, symbol: str, start_ns: int, end_ns: int
    ) -> tuple[OrderBookSnapshot, ...]:
        """Return the symbol's snapshots with `start_ns < time <= end_ns`, oldest first."""
        check_symbol(symbol)
        table = self._read(ORDER_BOOK, symbol, ORDER_BOOK_SCHEMA, end_ns, start_ns)
        times = _time_column(table)
        bids = _levels_from_column(table.column("bids"))
        asks = _levels_from_column(table.column("asks"))
        return tuple(
            OrderBookSnapshot(time=int(time), bids=bid, asks=ask)
            for time, bid, ask in zip(times, bids, asks, strict=True)
        )

    # News

    def write_news(self, symbol: str, items: Sequence[NewsItem]) -> int:
        """Store dated news items, replacing a stored item with the same time, headline and source.

        Raises ValueError naming the first undated item (time missing or not after the epoch),
        because an item without a time can never be placed before or after a window's end.
        """
        check_symbol(symbol)
        for index, item in enumerate(items):
            if item.time is None or item.time <= 0:
                raise ValueError(
                    f"news[{index}].time {item.time!r} is missing: undated news is not stored"
                )
        table = pa.table(
            {
                "time": pa.array([item.time for item in items], type=pa.int64()).cast(_TIME),
                "headline": pa.array([item.headline for item in items], type=pa.string()),
                "body": pa.array([item.body for item in items], type=pa.string()),
                "source": pa.array([item.source for item in items], type=pa.string()),
            },
            schema=NEWS_SCHEMA,
        )
        self._write(NEWS, symbol, table, _NEWS_KEY)
        return len(items)

    def read_news(self, symbol: str, start_ns: int, end_ns: int) -> tuple[NewsItem, ...]:
        """Return the symbol's news with `start_ns < time <= end_ns`, oldest first."""
        check_symbol(symbol)
        table = self._read(NEWS, symbol, NEWS_SCHEMA, end_ns, start_ns)
        times = _time_column(table)
        headlines = table.column("headline").to_pylist()
        bodies = table.column("body").to_pylist()
        sources = table.column("source").to_pylist()
        return tuple(
            NewsItem(time=int(time), headline=headline, body=body, source=source)
            for time, headline, body, source in zip(times, headlines, bodies, sources, strict=True)
        )

    # Partitions

    def _symbol_dir(self, dataset: str, symbol: str) -> Path:
        return self.lake_dir / dataset / f"symbol={symbol}"

    def _partitions(self, dataset: str, symbol: str) -> list[tuple[dt.date, Path]]:
        """Return (day, file) of every stored partition of the symbol, oldest day first."""
        symbol_dir = self._symbol_dir(dataset, symbol)
        if not symbol_dir.is_dir():
            return []
        found = []
        with os.scandir(symbol_dir) as entries:
            for entry in entries:
                if not entry.name.startswith("date="):
                    continue
                path = Path(entry.path) / PART_FILE
                if path.is_file():
                    found.append((dt.date.fromisoformat(entry.name[5:]), path))
        found.sort()
        return found

    def _read(
        self, dataset: str, symbol: str, schema: pa.Schema, end_ns: int, start_ns: int | None
    ) -> pa.Table:
        last_day = day_of(end_ns)
        first_day = day_of(start_ns) if start_ns is not None else dt.date.min
        paths = [
            str(path)
            for day, path in self._partitions(dataset, symbol)
            if first_day <= day <= last_day
        ]
        if not paths:
            return schema.empty_table()
        # One dataset over the partition files: reading BTC's ~730 daily files measured
        # 0.25 s this way against 0.6 s with one pq.read_table per file (2-core VM).
        times = pc.field("time").cast(pa.int64())
        keep = times <= end_ns
        if start_ns is not None:
            keep &= times > start_ns
        table = ds.dataset(paths, format="parquet", schema=schema).to_table(filter=keep)
        return table.sort_by("time")

    def _write(self, dataset: str, symbol: str, table: pa.Table, key: Sequence[str]) -> None:
        if table.num_rows == 0:
            return
        symbol_dir = self._symbol_dir(dataset, symbol)
        symbol_dir.mkdir(parents=True, exist_ok=True)
        days = _time_column(table) // NS_PER_DAY
        with _locked(symbol_dir):
            for day in np.unique(days):
                part = table.filter(pa.array(days == day))
                path = symbol_dir / f"date={day_of(int(day) * NS_PER_DAY).isoformat()}" / PART_FILE
                merged = _merge(path, part, key)
                _write_atomic(merged, path)
        log.info("stored %d %s rows of %s in %s", table.num_rows, dataset, symbol, symbol_dir)


def _check_bars(bars: Bars) -> None:
    size = len(bars)
    for name in ("open", "high", "low", "close", "volume"):
        length = getattr(bars, name).shape[0]
        if length != size:
            raise ValueError(f"bars.{name} has {length} values for {size} times of {bars.symbol}")
    _check_unique(f"bars of {bars.symbol}", bars.time)


def _check_unique(label: str, times: Sequence[int] | np.ndarray) -> None:
    """Raise ValueError naming the first time that is not after the one before it."""
    values = np.asarray(times, dtype=np.int64)
    bad = np.flatnonzero(np.diff(values) <= 0)
    if bad.size:
        index = int(bad[0]) + 1
        raise ValueError(
            f"{label}: time[{index}] {values[index]} is not after time[{index - 1}]"
            f" {values[index - 1]}; times must be strictly increasing"
        )


def _merge(path: Path, new: pa.Table, key: Sequence[str]) -> pa.Table:
    """Return the partition's stored rows without those that `new` replaces, plus `new`."""
    if path.is_file():
        old = pq.read_table(path, schema=new.schema)
        if len(key) == 1:
            replaced = pc.is_in(old.column(key[0]), value_set=new.column(key[0]))
        else:
            new_keys = set(_key_rows(new, key))
            old_keys = _key_rows(old, key)
            replaced = pa.array([row in new_keys for row in old_keys], type=pa.bool_())
        new = pa.concat_tables([old.filter(pc.invert(replaced)), new])
    return new.sort_by([(name, "ascending") for name in key])


def _key_rows(table: pa.Table, key: Sequence[str]) -> Iterator[tuple]:
    # Times go through int64: to_pylist on a timestamp[ns] fails for sub-microsecond times.
    columns = [
        table.column(name).cast(pa.int64()) if name == "time" else table.column(name)
        for name in key
    ]
    return zip(*(column.to_pylist() for column in columns), strict=True)


def _write_atomic(table: pa.Table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # A leading dot keeps readers (and pyarrow.dataset) from listing the temporary file.
    handle, temp_name = tempfile.mkstemp(prefix=".tmp-", suffix=".parquet", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            pq.write_table(table, file)
            file.flush()
            os.fsync(file.fileno())
        # mkstemp creates the file as 0600, but partitions are data that any reader may open.
        os.chmod(temp_name, 0o644)
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    handle = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


@contextmanager
def _locked(symbol_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on the symbol's directory across read-merge-write."""
    with open(symbol_dir / ".lock", "w") as lock_file:
        fcntl.flock(lock_file.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file.fileno(), fcntl.LOCK_UN)


def _time_column(table: pa.Table) -> np.ndarray:
    return table.column("time").cast(pa.int64()).to_numpy().astype(np.int64, copy=False)


def _float_column(table: pa.Table, name: str) -> np.ndarray:
    return table.column(name).to_numpy().astype(np.float64, copy=False)


def _levels_rows(levels: Sequence[BookLevel]) -> list[dict[str, float]]:
    return [{"price": float(level.price), "size": float(level.size)} for level in levels]


def _levels_from_column(column: pa.ChunkedArray) -> list[tuple[BookLevel, ...]]:
    snapshots = []
    for chunk in column.chunks:
        offsets = chunk.offsets.to_numpy()
        values = chunk.values
        prices = values.field("price").to_numpy(zero_copy_only=False)
        sizes = values.field("size").to_numpy(zero_copy_only=False)
        for start, stop in itertools.pairwise(offsets):
            snapshots.append(
                tuple(
                    BookLevel(price=float(prices[i]), size=float(sizes[i]))
                    for i in range(start, stop)
                )
            )
    return snapshots
