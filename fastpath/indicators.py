"""Technical indicators over price arrays, equal to TA-Lib's on the same input.

Every function takes 1-D, C-contiguous float64 arrays and returns arrays of the same length,
NaN during warm-up, with TA-Lib's warm-up lengths and seeding. Three rules differ from TA-Lib
on purpose:

- A flat series has RSI 50; TA-Lib gives 0.
- A non-finite input (NaN or infinity) makes every window that contains it NaN, and the
  output recovers after it. Recursive indicators (EMA, MACD, RSI, ATR) re-seed after the gap
  as if the series started there. TA-Lib carries the NaN forward for good.
- Windowed sums (SMA, Bollinger) are recomputed per window instead of kept as a running
  sum, so a huge value that leaves the window leaves no rounding residue behind.

Bollinger bands use the population standard deviation, as TA-Lib's BBANDS does.
A period longer than the data is allowed and gives an all-NaN output.
"""

from __future__ import annotations

import numpy as np

import fastpath._indicators as _indicators
from fastpath import _checks


def sma(close: np.ndarray, period: int) -> np.ndarray:
    """Return the simple moving average, whose first value is at index period - 1."""
    values = _checks.series("close", close)
    window = _checks.integer("period", period, 1)
    out = np.empty_like(values)
    _indicators.sma(values, window, out)
    return out


def ema(close: np.ndarray, period: int) -> np.ndarray:
    """Return the exponential moving average with k = 2 / (period + 1).

    It is seeded at index period - 1 with the SMA of the first `period` closes.
    """
    values = _checks.series("close", close)
    window = _checks.integer("period", period, 1)
    out = np.empty_like(values)
    _indicators.ema(values, window, out)
    return out


def rsi(close: np.ndarray, period: int = 14) -> np.ndarray:
    """Return Wilder's relative strength index in [0, 100], first value at index `period`."""
    values = _checks.series("close", close)
    window = _checks.integer("period", period, 1)
    out = np.empty_like(values)
    _indicators.rsi(values, window, out)
    return out


def macd(
    close: np.ndarray, fast: int = 12, slow: int = 26, signal: int = 9
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (macd, signal, histogram), which all start at index slow + signal - 2.

    As in TA-Lib, both EMAs are seeded at index slow - 1, the fast one with the mean of the
    `fast` closes ending there, so the MACD line differs from ema(fast) - ema(slow) at first.
    Raises ValueError unless 1 <= fast < slow and signal >= 1.
    """
    values = _checks.series("close", close)
    fast_period = _checks.integer("fast", fast, 1)
    slow_period = _checks.integer("slow", slow, 1)
    signal_period = _checks.integer("signal", signal, 1)
    if fast_period >= slow_period:
        raise ValueError(f"fast must be below slow, got fast {fast_period} and slow {slow_period}")
    macd_line = np.empty_like(values)
    signal_line = np.empty_like(values)
    histogram = np.empty_like(values)
    _indicators.macd(
        values, fast_period, slow_period, signal_period, macd_line, signal_line, histogram
    )
    return macd_line, signal_line, histogram


def bollinger(
    close: np.ndarray, period: int = 20, nbdev: float = 2.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (upper, middle, lower): the SMA plus and minus nbdev population std devs."""
    values = _checks.series("close", close)
    window = _checks.integer("period", period, 1)
    deviations = _checks.number("nbdev", nbdev, 0.0)
    upper = np.empty_like(values)
    middle = np.empty_like(values)
    lower = np.empty_like(values)
    _indicators.bollinger(values, window, deviations, upper, middle, lower)
    return upper, middle, lower


def atr(high: np.ndarray, low: np.ndarray, close: np.ndarray, period: int = 14) -> np.ndarray:
    """Return Wilder's average true range, whose first value is at index `period`.

    A bar with a non-finite high, low or close is a gap for all three inputs.
    """
    high_values = _checks.series("high", high)
    low_values = _checks.series("low", low)
    close_values = _checks.series("close", close)
    _checks.same_length(high=high_values, low=low_values, close=close_values)
    window = _checks.integer("period", period, 1)
    out = np.empty_like(close_values)
    _indicators.atr(high_values, low_values, close_values, window, out)
    return out
