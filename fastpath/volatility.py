"""Realized volatility and its regime.

Volatility here is the sample standard deviation of per-bar log returns, not annualized,
because scaling to a day or a year depends on the bar spacing and the market's trading
hours, which the caller must supply.
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
    returns = np.empty_like(values)
    _volatility.log_returns(values, returns)
    out = np.empty_like(values)
    _volatility.rolling_sample_std(returns, returns_window, out)
    return out


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
