"""Volatility estimators, batch and streaming, and the volatility regime.

Every estimate is per bar, not annualized, because scaling to a day or a year depends on the
bar spacing and the market's trading hours, which the caller must supply.

- Realized volatility: the sample standard deviation (ddof 1) of the last `window` log
  returns of the close.
- Parkinson (1980), "The Extreme Value Method for Estimating the Variance of the Rate of
  Return": sqrt(mean(ln(high / low)^2) / (4 ln 2)) over the last `window` bars.
- Garman and Klass (1980), "On the Estimation of Security Price Volatilities from Historical
  Data": sqrt(mean(0.5 * ln(high / low)^2 - (2 ln 2 - 1) * ln(close / open)^2)) over the
  last `window` bars. A negative mean, possible only when open or close lies outside
  [low, high], gives 0.

Each streaming class (RealizedVolatility, Parkinson, GarmanKlass) takes one bar per
`update` call in O(1) and returns the estimate at that bar. The batch functions run the same
object over the arrays, so both forms agree bit for bit. A price that is not finite or not
positive makes every window that contains it NaN; the estimate restarts after it.
"""

from __future__ import annotations

import numpy as np

import fastpath._volatility as _volatility
from fastpath import _checks

# Percentile bounds of the regime labels: low below 25, high above 75, extreme above 95.
LOW_BELOW = 25.0
HIGH_ABOVE = 75.0
EXTREME_ABOVE = 95.0
UNKNOWN = "unknown"


def log_returns(close: np.ndarray) -> np.ndarray:
    """Return log(close[i] / close[i - 1]) per bar, NaN at index 0.

    A return is NaN when either price is not finite or not positive.
    """
    values = _checks.series("close", close)
    out = np.empty_like(values)
    _volatility.log_returns(values, out)
    return out


def realized_volatility(close: np.ndarray, window: int) -> np.ndarray:
    """Return the sample std of the last `window` log returns at each bar.

    The first value is at index `window`, because the return at index 0 does not exist. A
    window that contains a NaN return is NaN. Raises ValueError unless window >= 2.
    """
    values = _checks.series("close", close)
    returns_window = _checks.integer("window", window, 2)
    out = np.empty_like(values)
    _volatility.realized_volatility(values, returns_window, out)
    return out


def parkinson(high: np.ndarray, low: np.ndarray, window: int) -> np.ndarray:
    """Return the Parkinson volatility of the last `window` bars at each bar.

    The first value is at index window - 1. Raises ValueError unless window >= 1 and the
    arrays have equal lengths.
    """
    high_values = _checks.series("high", high)
    low_values = _checks.series("low", low)
    _checks.same_length(high=high_values, low=low_values)
    bars = _checks.integer("window", window, 1)
    out = np.empty_like(high_values)
    _volatility.parkinson(high_values, low_values, bars, out)
    return out


def garman_klass(
    open: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray, window: int
) -> np.ndarray:
    """Return the Garman-Klass volatility of the last `window` bars at each bar.

    The first value is at index window - 1. Raises ValueError unless window >= 1 and the
    arrays have equal lengths.
    """
    columns = {
        name: _checks.series(name, values)
        for name, values in (("open", open), ("high", high), ("low", low), ("close", close))
    }
    _checks.same_length(**columns)
    bars = _checks.integer("window", window, 1)
    out = np.empty_like(columns["close"])
    _volatility.garman_klass(
        columns["open"], columns["high"], columns["low"], columns["close"], bars, out
    )
    return out


class RealizedVolatility(_volatility.RealizedVolatility):
    """Streaming realized volatility: update(close) returns the value realized_volatility
    gives at that bar."""

    __slots__ = ()

    def __init__(self, window: int) -> None:
        super().__init__(_checks.integer("window", window, 2))


class Parkinson(_volatility.Parkinson):
    """Streaming Parkinson volatility: update(high, low) returns the value parkinson gives
    at that bar."""

    __slots__ = ()

    def __init__(self, window: int) -> None:
        super().__init__(_checks.integer("window", window, 1))


class GarmanKlass(_volatility.GarmanKlass):
    """Streaming Garman-Klass volatility: update(open, high, low, close) returns the value
    garman_klass gives at that bar."""

    __slots__ = ()

    def __init__(self, window: int) -> None:
        super().__init__(_checks.integer("window", window, 1))


def volatility_regime(realized: np.ndarray, lookback: int) -> tuple[float, str]:
    """Rank the last realized volatility among the `lookback` finite values before it.

    Returns (percentile, label). The percentile in [0, 100] counts earlier values below the
    last one plus half of those equal to it. The label is "low" below 25, "high" above 75,
    "extreme" above 95 and "normal" in between, so exactly 25 or 75 is normal and exactly 95
    is high.
    With no finite last value or no finite value before it, returns (NaN, "unknown").
    """
    values = _checks.series("realized", realized)
    count = _checks.integer("lookback", lookback, 1)
    percentile = float(_volatility.percentile_of_last(values, count))
    return percentile, regime_label(percentile)


def regime_label(percentile: float) -> str:
    """Return the regime label of a volatility percentile ("unknown" for NaN)."""
    if np.isnan(percentile):
        return UNKNOWN
    if percentile > EXTREME_ABOVE:
        return "extreme"
    if percentile > HIGH_ABOVE:
        return "high"
    if percentile < LOW_BELOW:
        return "low"
    return "normal"
