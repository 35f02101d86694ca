"""Periods and windows beyond the kernels' limit are rejected before any buffer is sized."""

from __future__ import annotations

import numpy as np
import pytest

from fastpath import indicators, volatility
from fastpath._checks import MAX_INTEGER

HUGE = 2**61
SERIES = np.linspace(100.0, 110.0, 200)

CALLS = {
    "sma": lambda: indicators.sma(SERIES, HUGE),
    "bollinger": lambda: indicators.bollinger(SERIES, HUGE),
    "stochastic": lambda: indicators.stochastic(SERIES, SERIES, SERIES, HUGE),
    "SMA class": lambda: indicators.SMA(HUGE),
    "ADX class": lambda: indicators.ADX(HUGE),
    "parkinson": lambda: volatility.parkinson(SERIES, SERIES, HUGE),
    "RealizedVolatility class": lambda: volatility.RealizedVolatility(HUGE),
}


@pytest.mark.parametrize("call", sorted(CALLS))
def test_huge_period_rejected(call):
    with pytest.raises(ValueError, match=f"must be <= {MAX_INTEGER:,}, got {HUGE:,}"):
        CALLS[call]()


def test_largest_period_longer_than_data_is_all_nan():
    assert np.isnan(indicators.sma(SERIES, MAX_INTEGER)).all()
