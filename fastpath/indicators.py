"""Technical indicators over price arrays, equal to TA-Lib's on the same input.

Every function takes 1-D, C-contiguous float64 arrays and returns arrays of the same length,
NaN during warm-up, with TA-Lib's warm-up lengths and seeding. Each has a streaming form (a
class of the same name in capitals, updated one bar at a time in O(1)) that gives the same
values bit for bit, because the batch function is a loop of the same update. Rules that
differ from TA-Lib on purpose:

- A flat series has RSI 50; TA-Lib gives 0.
- A non-finite input (NaN or infinity) makes every window that contains it NaN, and the
  output recovers after it. Recursive indicators (EMA, MACD, RSI, ATR, OBV, ADX) re-seed after
  the gap as if the series started there. TA-Lib carries the NaN forward for good. For a
  bar indicator a non-finite high, low, close or volume is a gap.
- Windowed sums (SMA, Bollinger, stochastic smoothing) are running sums rebuilt from the
  window's values every `period` bars. A value that has left the window, however large, can
  leave a rounding residue of about 1e-16 of itself in at most period - 1 later outputs, and
  none after that. TA-Lib's running sum keeps such a residue for good.

Bollinger bands use the population standard deviation, as TA-Lib's BBANDS does.
A period longer than the data is allowed and gives an all-NaN output.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

import fastpath._indicators as _indicators
from fastpath import _checks
from fastpath._indicators_stream import (
    ADX,
    ATR,
    EMA,
    MACD,
    OBV,
    RSI,
    SMA,
    VWAP,
    Bollinger,
    Stochastic,
)

__all__ = [
    "ADX",
    "ATR",
    "EMA",
    "MACD",
    "OBV",
    "RSI",
    "SMA",
    "VWAP",
    "Bollinger",
    "CoreIndicators",
    "Stochastic",
    "adx",
    "atr",
    "bollinger",
    "core",
    "directional_movement",
    "ema",
    "macd",
    "minus_di",
    "obv",
    "plus_di",
    "rsi",
    "sma",
    "stochastic",
    "utc_sessions",
    "vwap",
]

NS_PER_HOUR = 3_600_000_000_000
NS_PER_DAY = 24 * NS_PER_HOUR


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
    high_values, low_values, close_values = _bars(high, low, close)
    window = _checks.integer("period", period, 1)
    out = np.empty_like(close_values)
    _indicators.atr(high_values, low_values, close_values, window, out)
    return out


def obv(close: np.ndarray, volume: np.ndarray) -> np.ndarray:
    """Return on-balance volume: the first bar's volume, then plus or minus each volume.

    A bar's volume is added when its close is above the previous close and subtracted when
    below, as in TA-Lib's OBV.
    """
    close_values = _checks.series("close", close)
    volume_values = _checks.series("volume", volume)
    _checks.same_length(close=close_values, volume=volume_values)
    out = np.empty_like(close_values)
    _indicators.obv(close_values, volume_values, out)
    return out


def stochastic(
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    fastk: int = 5,
    slowk: int = 3,
    slowd: int = 3,
) -> tuple[np.ndarray, np.ndarray]:
    """Return (slow %K, slow %D) of TA-Lib's STOCH with SMA smoothing.

    Fast %K is 100 * (close - lowest low) / (highest high - lowest low) over `fastk` bars,
    and 0 where that range is 0, as in TA-Lib. Slow %K is its `slowk`-bar SMA and slow %D
    the `slowd`-bar SMA of slow %K. Both start at index fastk + slowk + slowd - 3.
    """
    high_values, low_values, close_values = _bars(high, low, close)
    fastk_period = _checks.integer("fastk", fastk, 1)
    slowk_period = _checks.integer("slowk", slowk, 1)
    slowd_period = _checks.integer("slowd", slowd, 1)
    slowk_line = np.empty_like(close_values)
    slowd_line = np.empty_like(close_values)
    _indicators.stochastic(
        high_values,
        low_values,
        close_values,
        fastk_period,
        slowk_period,
        slowd_period,
        slowk_line,
        slowd_line,
    )
    return slowk_line, slowd_line


def directional_movement(
    high: np.ndarray, low: np.ndarray, close: np.ndarray, period: int = 14
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (adx, plus_di, minus_di) as TA-Lib's ADX, PLUS_DI and MINUS_DI compute them.

    The DIs start at index `period` and ADX at 2 * period - 1. Raises ValueError unless
    period >= 2, TA-Lib's own minimum for ADX.
    """
    high_values, low_values, close_values = _bars(high, low, close)
    window = _checks.integer("period", period, 2)
    adx_line = np.empty_like(close_values)
    plus = np.empty_like(close_values)
    minus = np.empty_like(close_values)
    _indicators.adx(high_values, low_values, close_values, window, adx_line, plus, minus)
    return adx_line, plus, minus


def adx(high: np.ndarray, low: np.ndarray, close: np.ndarray, period: int = 14) -> np.ndarray:
    """Return Wilder's average directional index, whose first value is at 2 * period - 1."""
    return directional_movement(high, low, close, period)[0]


def plus_di(high: np.ndarray, low: np.ndarray, close: np.ndarray, period: int = 14) -> np.ndarray:
    """Return the plus directional indicator (+DI), whose first value is at index `period`."""
    return directional_movement(high, low, close, period)[1]


def minus_di(high: np.ndarray, low: np.ndarray, close: np.ndarray, period: int = 14) -> np.ndarray:
    """Return the minus directional indicator (-DI), whose first value is at index `period`."""
    return directional_movement(high, low, close, period)[2]


def vwap(
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    volume: np.ndarray,
    session: np.ndarray,
) -> np.ndarray:
    """Return the session-anchored VWAP of the typical price (high + low + close) / 3.

    `session` contains an int64 session id per bar (see utc_sessions); the sums restart at
    every bar whose id differs from the previous bar's. Within a session the value is
    sum(typical * volume) / sum(volume) over its bars so far, NaN while that volume sum is
    not above 0 (a session that opens with zero volume). A non-finite high, low, close or
    volume makes the rest of its session NaN; the next session starts afresh.
    """
    high_values, low_values, close_values = _bars(high, low, close)
    volume_values = _checks.series("volume", volume)
    session_ids = _checks.int64_series("session", session)
    _checks.same_length(close=close_values, volume=volume_values, session=session_ids)
    out = np.empty_like(close_values)
    _indicators.vwap(high_values, low_values, close_values, volume_values, session_ids, out)
    return out


def utc_sessions(times_ns: np.ndarray, anchor_hour: int = 0) -> np.ndarray:
    """Return an int64 session id per bar: the UTC day, with days starting at anchor_hour.

    The id is floor((time - anchor_hour hours) / 1 day), so bars in the same 24 hours from
    anchor_hour:00 UTC share an id. `times_ns` is int64 nanoseconds since the Unix epoch.
    """
    times = _checks.int64_series("times_ns", times_ns)
    hour = _checks.integer("anchor_hour", anchor_hour, 0)
    if hour > 23:
        raise ValueError(f"anchor_hour must be <= 23, got {hour}")
    return (times - hour * NS_PER_HOUR) // NS_PER_DAY


def _bars(
    high: np.ndarray, low: np.ndarray, close: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    high_values = _checks.series("high", high)
    low_values = _checks.series("low", low)
    close_values = _checks.series("close", close)
    _checks.same_length(high=high_values, low=low_values, close=close_values)
    return high_values, low_values, close_values


@dataclass(frozen=True)
class CoreIndicators:
    """The indicators the feature pipeline reads, each equal to its own function's output."""

    rsi: np.ndarray
    macd: np.ndarray
    macd_signal: np.ndarray
    macd_hist: np.ndarray
    bb_upper: np.ndarray
    bb_middle: np.ndarray
    bb_lower: np.ndarray
    ema: Mapping[int, np.ndarray]  # period -> EMA, in the order of ema_periods
    atr: np.ndarray


def core(
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    *,
    rsi_period: int = 14,
    macd: tuple[int, int, int] = (12, 26, 9),
    bb_period: int = 20,
    bb_nbdev: float = 2.0,
    ema_periods: tuple[int, ...] = (12, 26, 50),
    atr_period: int = 14,
) -> CoreIndicators:
    """Compute RSI, MACD, Bollinger bands, EMAs and ATR in one pass over the bars.

    Each array equals, bit for bit, what rsi, macd, bollinger, ema and atr return for the
    same arguments, because the fused loop makes the same update calls. The first three
    distinct EMA periods share the pass; any further ones take a pass each.
    """
    high_values, low_values, close_values = _bars(high, low, close)
    rsi_window = _checks.integer("rsi_period", rsi_period, 1)
    fast, slow, signal = _macd_periods(macd)
    bb_window = _checks.integer("bb_period", bb_period, 1)
    deviations = _checks.number("bb_nbdev", bb_nbdev, 0.0)
    atr_window = _checks.integer("atr_period", atr_period, 1)
    periods = tuple(
        dict.fromkeys(_checks.integer("ema_periods", period, 1) for period in ema_periods)
    )
    fused = periods[: _indicators.FUSED_EMAS]
    # One array per output rather than one 2-D block: the allocator can reuse freed arrays of
    # this size, where a block of several tens of MB is a fresh mapping on every call.
    lines = [np.empty_like(close_values) for _ in range(8)]
    ema_lines = [np.empty_like(close_values) for _ in fused]
    _indicators.core(
        high_values,
        low_values,
        close_values,
        rsi_window,
        fast,
        slow,
        signal,
        bb_window,
        deviations,
        atr_window,
        fused,
        *lines,
        *ema_lines,
    )
    emas = dict(zip(fused, ema_lines, strict=True))
    for period in periods[len(fused) :]:
        emas[period] = ema(close_values, period)
    rsi_line, macd_line, signal_line, histogram, upper, middle, lower, atr_line = lines
    return CoreIndicators(
        rsi=rsi_line,
        macd=macd_line,
        macd_signal=signal_line,
        macd_hist=histogram,
        bb_upper=upper,
        bb_middle=middle,
        bb_lower=lower,
        ema=emas,
        atr=atr_line,
    )


def _macd_periods(periods: tuple[int, int, int]) -> tuple[int, int, int]:
    if not isinstance(periods, tuple | list) or len(periods) != 3:
        raise ValueError(f"macd must be (fast, slow, signal), got {periods!r}")
    fast = _checks.integer("macd fast", periods[0], 1)
    slow = _checks.integer("macd slow", periods[1], 1)
    signal = _checks.integer("macd signal", periods[2], 1)
    if fast >= slow:
        raise ValueError(f"macd fast must be below slow, got fast {fast} and slow {slow}")
    return fast, slow, signal
