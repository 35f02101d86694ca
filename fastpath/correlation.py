"""Rolling correlation and lead-lag between two aligned series.

Pass log returns, not prices: prices that trend together correlate whatever their moves.
Both series must be aligned, index i of each describing the same bar.
"""

from __future__ import annotations

import numpy as np

import fastpath._correlation as _correlation
from fastpath import _checks

# A correlation from fewer pairs than this is not reported: two points always give +-1.
MIN_PAIRS = 3


def rolling_correlation(a: np.ndarray, b: np.ndarray, window: int) -> np.ndarray:
    """Return the Pearson correlation of a and b over the `window` values ending at each index.

    NaN during warm-up (before index window - 1), for windows that contain a non-finite value,
    and where either side is constant. O(n) in the length, whatever the window.
    Raises ValueError unless window >= 2.
    """
    a_values = _checks.series("a", a)
    b_values = _checks.series("b", b)
    _checks.same_length(a=a_values, b=b_values)
    length = _checks.integer("window", window, 2)
    out = np.empty_like(a_values)
    _correlation.rolling_correlation(a_values, b_values, length, out)
    return out


def lead_lag(a: np.ndarray, b: np.ndarray, max_lag: int) -> tuple[int, float]:
    """Find the lag in [-max_lag, max_lag] where a[t] and b[t + lag] correlate most.

    Returns (lag, corr) with the largest |corr|, so a positive lag means a leads b by that
    many bars. Each lag uses the pairs where both values exist and are finite, and needs at
    least MIN_PAIRS of them. A tie in |corr| keeps the shorter lag, and between -k and k
    the negative one. Returns (0, NaN) when no lag has a correlation. The cost is
    O(len(a) * (2 * max_lag + 1)): one pass per lag.
    """
    a_values = _checks.series("a", a)
    b_values = _checks.series("b", b)
    _checks.same_length(a=a_values, b=b_values)
    # A lag range wider than the series is cut to it, so max_lag sizes no buffer.
    lags = _checks.integer("max_lag", max_lag, 0, maximum=None)
    if len(a_values) == 0:
        return 0, float("nan")
    # Lags past the length have no pairs, so a larger max_lag finds the same.
    lag, corr = _correlation.lead_lag(a_values, b_values, min(lags, len(a_values)), MIN_PAIRS)
    return int(lag), float(corr)
