"""Features of one symbol at the close of a window, computed with the fastpath kernels.

Only the bars passed in are read, and the caller cuts them at window_end. Related symbols'
bars are also cut at the symbol's last bar time here, so a related series that runs further
cannot leak later prices into a correlation. A value that the history is too short for is
NaN, never an exception, and patterns or correlations may be empty.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, fields

import numpy as np

from fastpath import correlation, indicators, patterns, volatility
from server.market_data import NS_PER_MINUTE, Bars

HISTORY_BARS = 48
PATTERN_MATCHES = 5
MIN_PATTERN_BARS = 8
# A window of fewer than 8 bars has too few returns for a volatility, so 48 bars are used.
MIN_WINDOW_VOLATILITY_BARS = 8
FALLBACK_VOLATILITY_BARS = 48
REGIME_LOOKBACK_DAYS = 30
CORRELATION_DAYS = 7
LEAD_LAG_MAX_BARS = 6
# With fewer aligned returns than this, no correlation is reported: with a handful of pairs
# Pearson's r swings towards +-1 by chance.
MIN_CORRELATION_RETURNS = 30
MINUTES_PER_DAY = 24 * 60
# Crypto markets trade every day of the year, so a year has 365 trading days here.
# NOTE: a market with sessions (252 trading days, fewer bars per day) needs its own calendar.
TRADING_DAYS_PER_YEAR = 365

NAN = math.nan

# Wraps the computation of each feature family, given its name ("indicators", "volatility",
# "patterns", "correlations"); a tracer opens one span per family with it.
FamilyScope = Callable[[str], AbstractContextManager[object]]


def _no_scope(family: str) -> AbstractContextManager[object]:
    return contextlib.nullcontext()


@dataclass(frozen=True)
class IndicatorRow:
    """Indicator values at one bar's close."""

    time: int  # ns, the bar's close time
    close: float
    rsi_14: float
    macd: float
    macd_signal: float
    macd_hist: float
    bb_upper: float
    bb_middle: float
    bb_lower: float
    ema_12: float
    ema_26: float
    volume: float


@dataclass(frozen=True)
class Indicators:
    """Indicators at the last bar, with the rows of the bars before it."""

    latest: IndicatorRow
    bb_percent_b: float  # (close - lower) / (upper - lower) at the last bar
    volume_ratio_20: float  # last volume / mean volume of the last 20 bars, the last included
    ema_50: float
    history: tuple[IndicatorRow, ...]  # the last 48 bars, oldest first


@dataclass(frozen=True)
class Volatility:
    """Volatility measures at the last bar and the window's range and return."""

    atr_14: float
    atr_pct: float  # atr_14 / last close * 100
    # Sample std of per-bar log returns (not scaled) over the bars of the last window_minutes,
    # or over 48 bars when the window contains fewer than 8.
    realized_vol_window: float
    # Daily volatility: the sample std of the last day's per-bar log returns times
    # sqrt(bars per day). Bars per day come from the bar spacing.
    realized_vol_1d: float
    realized_vol_annualized_pct: float  # realized_vol_1d * sqrt(365) * 100
    regime_label: str  # "low", "normal", "high", "extreme" or "unknown"
    # Percentile rank of the current one-day realized volatility among its values over the
    # previous 30 days (fastpath.volatility.volatility_regime). NaN before two values exist.
    regime_percentile: float
    window_return_pct: float  # last close / close before the window's first bar - 1, in %
    window_high: float
    window_low: float


@dataclass(frozen=True)
class PatternMatch:
    """A past window shaped like the latest bars, and the return that followed it."""

    start_time: int  # ns, close time of the match's first bar
    end_time: int  # ns, close time of the match's last bar
    distance: float  # z-normalized Euclidean distance to the latest bars
    forward_return_pct: float  # close `horizon` bars after end_time / close at end_time - 1


@dataclass(frozen=True)
class Correlation:
    """Co-movement of this symbol with another over the last 7 days."""

    symbol: str
    bars_overlap: int  # bars with identical timestamps in the last 7 days
    # Pearson correlation of the aligned bars' log returns, NaN with fewer than 30 returns.
    correlation: float
    lead_lag_bars: int  # positive: this symbol leads the other by that many bars
    lead_lag_corr: float  # correlation at lead_lag_bars (NaN when none could be computed)


@dataclass(frozen=True)
class Features:
    """Everything the context builder reports about a symbol at the close of a window."""

    symbol: str
    last_time: int  # ns, close time of the last bar; 0 without bars
    last_close: float
    bar_minutes: int  # most common bar spacing; 0 with fewer than two bars
    indicators: Indicators
    volatility: Volatility
    patterns: tuple[PatternMatch, ...]
    correlations: tuple[Correlation, ...]


def compute_features(
    bars: Bars,
    related: Mapping[str, Bars],
    *,
    window_minutes: int,
    horizon_minutes: int,
    family_scope: FamilyScope = _no_scope,
) -> Features:
    """Compute the features of `bars` at its last bar, with correlations to `related`.

    The window is the bars whose close time is within window_minutes of the last bar's. The
    pattern window is window_minutes in bars (at least 8) and its horizon horizon_minutes in
    bars (at least 1), both from the bar spacing. Correlations cover every related symbol
    except `bars.symbol`, sorted by symbol. Raises ValueError unless both minute counts are
    at least 1.
    """
    if window_minutes < 1:
        raise ValueError(f"window_minutes must be >= 1, got {window_minutes}")
    if horizon_minutes < 1:
        raise ValueError(f"horizon_minutes must be >= 1, got {horizon_minutes}")
    columns = _Columns.of(bars)
    bar_minutes = bars.bar_minutes()
    has_bars = columns.size > 0
    with family_scope("indicators"):
        core = indicators.core(
            columns.high, columns.low, columns.close, ema_periods=(12, 26, 50), atr_period=14
        )
        indicator_values = _indicators(columns, core)
    with family_scope("volatility"):
        volatility_values = _volatility(columns, core.atr, bar_minutes, window_minutes)
    with family_scope("patterns"):
        pattern_matches = _patterns(columns, bar_minutes, window_minutes, horizon_minutes)
    with family_scope("correlations"):
        correlations = _correlations(bars.symbol, columns, related) if has_bars else ()
    return Features(
        symbol=bars.symbol,
        last_time=int(columns.time[-1]) if has_bars else 0,
        last_close=_last(columns.close),
        bar_minutes=bar_minutes,
        indicators=indicator_values,
        volatility=volatility_values,
        patterns=pattern_matches,
        correlations=correlations,
    )


@dataclass(frozen=True)
class _Columns:
    """A symbol's bars as contiguous arrays (int64 times, float64 prices) for the kernels."""

    time: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray

    @property
    def size(self) -> int:
        return int(self.time.shape[0])

    @staticmethod
    def of(bars: Bars) -> _Columns:
        return _Columns(
            time=np.ascontiguousarray(bars.time, dtype=np.int64),
            high=np.ascontiguousarray(bars.high, dtype=np.float64),
            low=np.ascontiguousarray(bars.low, dtype=np.float64),
            close=np.ascontiguousarray(bars.close, dtype=np.float64),
            volume=np.ascontiguousarray(bars.volume, dtype=np.float64),
        )


def _last(values: np.ndarray) -> float:
    return float(values[-1]) if values.shape[0] else NAN


def _ratio(numerator: float, denominator: float) -> float:
    """Divide, giving NaN when the denominator is 0 or either side is NaN."""
    if denominator == 0 or math.isnan(numerator) or math.isnan(denominator):
        return NAN
    return numerator / denominator


# --- indicators ------------------------------------------------------------------------------


def _indicators(columns: _Columns, core: indicators.CoreIndicators) -> Indicators:
    series = {
        "close": columns.close,
        "rsi_14": core.rsi,
        "macd": core.macd,
        "macd_signal": core.macd_signal,
        "macd_hist": core.macd_hist,
        "bb_upper": core.bb_upper,
        "bb_middle": core.bb_middle,
        "bb_lower": core.bb_lower,
        "ema_12": core.ema[12],
        "ema_26": core.ema[26],
        "volume": columns.volume,
    }
    first = max(0, columns.size - HISTORY_BARS)
    history = tuple(_row(columns.time, series, index) for index in range(first, columns.size))
    latest = history[-1] if history else _empty_row()
    return Indicators(
        latest=latest,
        bb_percent_b=_ratio(latest.close - latest.bb_lower, latest.bb_upper - latest.bb_lower),
        volume_ratio_20=_ratio(latest.volume, _last(indicators.sma(columns.volume, 20))),
        ema_50=_last(core.ema[50]),
        history=history,
    )


def _row(time: np.ndarray, series: Mapping[str, np.ndarray], index: int) -> IndicatorRow:
    values = {name: float(column[index]) for name, column in series.items()}
    return IndicatorRow(time=int(time[index]), **values)


def _empty_row() -> IndicatorRow:
    names = [field.name for field in fields(IndicatorRow) if field.name != "time"]
    return IndicatorRow(time=0, **{name: NAN for name in names})


# --- volatility ------------------------------------------------------------------------------


def _volatility(
    columns: _Columns, atr: np.ndarray, bar_minutes: int, window_minutes: int
) -> Volatility:
    close = columns.close
    atr_14 = _last(atr)
    in_window = _bars_in_window(columns.time, window_minutes)
    vol_bars = in_window if in_window >= MIN_WINDOW_VOLATILITY_BARS else FALLBACK_VOLATILITY_BARS
    daily, percentile = _daily_volatility(close, bar_minutes)
    return Volatility(
        atr_14=atr_14,
        atr_pct=_ratio(atr_14, _last(close)) * 100,
        realized_vol_window=_last(volatility.realized_volatility(close, vol_bars)),
        realized_vol_1d=daily,
        realized_vol_annualized_pct=daily * math.sqrt(TRADING_DAYS_PER_YEAR) * 100,
        regime_label=volatility.regime_label(percentile),
        regime_percentile=percentile,
        window_return_pct=_window_return_pct(close, in_window),
        window_high=float(columns.high[-in_window:].max()) if in_window else NAN,
        window_low=float(columns.low[-in_window:].min()) if in_window else NAN,
    )


def _bars_in_window(time: np.ndarray, window_minutes: int) -> int:
    """Count the bars whose close time is within window_minutes of the last bar's."""
    if time.shape[0] == 0:
        return 0
    start = time[-1] - window_minutes * NS_PER_MINUTE
    return int(time.shape[0] - np.searchsorted(time, start, side="right"))


def _daily_volatility(close: np.ndarray, bar_minutes: int) -> tuple[float, float]:
    """Return (daily volatility, regime percentile); NaN without at least two bars a day."""
    bars_per_day = MINUTES_PER_DAY // bar_minutes if bar_minutes else 0
    if bars_per_day < 2:
        return NAN, NAN
    per_bar = volatility.realized_volatility(close, bars_per_day)
    percentile, _ = volatility.volatility_regime(per_bar, REGIME_LOOKBACK_DAYS * bars_per_day)
    return _last(per_bar) * math.sqrt(bars_per_day), percentile


def _window_return_pct(close: np.ndarray, in_window: int) -> float:
    if in_window == 0 or close.shape[0] <= in_window:
        return NAN
    return (_ratio(float(close[-1]), float(close[-1 - in_window])) - 1) * 100


# --- patterns --------------------------------------------------------------------------------


def _patterns(
    columns: _Columns, bar_minutes: int, window_minutes: int, horizon_minutes: int
) -> tuple[PatternMatch, ...]:
    if bar_minutes == 0:
        return ()
    window = max(MIN_PATTERN_BARS, window_minutes // bar_minutes)
    horizon = max(1, horizon_minutes // bar_minutes)
    starts, distances, forward_returns = patterns.top_matches(
        columns.close, window, PATTERN_MATCHES, horizon
    )
    return tuple(
        PatternMatch(
            start_time=int(columns.time[start]),
            end_time=int(columns.time[start + window - 1]),
            distance=float(distance),
            forward_return_pct=float(forward_return) * 100,
        )
        for start, distance, forward_return in zip(starts, distances, forward_returns, strict=True)
    )


# --- correlations ----------------------------------------------------------------------------


def _correlations(
    symbol: str, columns: _Columns, related: Mapping[str, Bars]
) -> tuple[Correlation, ...]:
    return tuple(
        _correlation_with(other, columns, _Columns.of(related[other]))
        for other in sorted(related)
        if other != symbol
    )


def _correlation_with(other: str, columns: _Columns, other_columns: _Columns) -> Correlation:
    last_time = columns.time[-1]
    since = last_time - CORRELATION_DAYS * MINUTES_PER_DAY * NS_PER_MINUTE
    # Identical timestamps only, and nothing after this symbol's last bar.
    common, own_index, other_index = np.intersect1d(
        columns.time, other_columns.time, assume_unique=True, return_indices=True
    )
    keep = (common > since) & (common <= last_time)
    own_returns = volatility.log_returns(np.ascontiguousarray(columns.close[own_index[keep]]))
    other_returns = volatility.log_returns(
        np.ascontiguousarray(other_columns.close[other_index[keep]])
    )
    # The first return of each aligned series does not exist.
    own_returns, other_returns = own_returns[1:], other_returns[1:]

    pearson, lag, lag_corr = NAN, 0, NAN
    window = own_returns.shape[0]
    if window >= MIN_CORRELATION_RETURNS:
        pearson = _last(correlation.rolling_correlation(own_returns, other_returns, window))
        lag, lag_corr = correlation.lead_lag(own_returns, other_returns, LEAD_LAG_MAX_BARS)
    return Correlation(
        symbol=other,
        bars_overlap=int(keep.sum()),
        correlation=pearson,
        lead_lag_bars=lag,
        lead_lag_corr=lag_corr,
    )
