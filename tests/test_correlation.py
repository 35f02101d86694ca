"""Rolling correlation and lead-lag on real BTC and ETH log returns against numpy.corrcoef,
the lag sign convention, precision at large levels, and the boundary checks."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.lib.stride_tricks import sliding_window_view

from fastpath import correlation
from tests.real_bars import aligned_log_returns

RTOL = 1e-9


@pytest.fixture(scope="module")
def returns() -> tuple[np.ndarray, np.ndarray]:
    return aligned_log_returns("BTC", "ETH")


def reference_rolling(a: np.ndarray, b: np.ndarray, window: int) -> np.ndarray:
    """Two-pass Pearson correlation of every full window, NaN where a side is constant.

    Each window is shifted by its first value before the mean is taken, so that at a level of
    1e9 the mean is not rounded at 1e-7.
    """
    out = np.full(len(a), np.nan)
    a_windows = sliding_window_view(a, window)
    b_windows = sliding_window_view(b, window)
    a_windows = a_windows - a_windows[:, :1]
    b_windows = b_windows - b_windows[:, :1]
    da = a_windows - a_windows.mean(axis=1, keepdims=True)
    db = b_windows - b_windows.mean(axis=1, keepdims=True)
    with np.errstate(all="ignore"):
        r = (da * db).sum(axis=1) / np.sqrt((da**2).sum(axis=1) * (db**2).sum(axis=1))
    constant = (a_windows.min(axis=1) == a_windows.max(axis=1)) | (
        b_windows.min(axis=1) == b_windows.max(axis=1)
    )
    out[window - 1 :] = np.where(constant, np.nan, np.clip(r, -1.0, 1.0))
    return out


def reference_lead_lag(a: np.ndarray, b: np.ndarray, max_lag: int) -> tuple[int, float]:
    """Best |corr| of a[t] and b[t + lag] by numpy.corrcoef per lag, shorter lag on ties."""
    best_lag, best = 0, math.nan
    for lag in sorted(range(-max_lag, max_lag + 1), key=lambda lag: (abs(lag), lag)):
        x = a[max(0, -lag) : len(a) - max(0, lag)]
        y = b[max(0, lag) : len(b) - max(0, -lag)]
        r = float(np.corrcoef(x, y)[0, 1])
        if math.isnan(best) or abs(r) > abs(best):
            best_lag, best = lag, r
    return best_lag, best


# --- rolling correlation -------------------------------------------------------------------------


@pytest.mark.parametrize("window", [2, 3, 48, 336, 2000])
def test_rolling_matches_reference(returns, window):
    a, b = returns
    values = correlation.rolling_correlation(a, b, window)
    expected = reference_rolling(a, b, window)
    np.testing.assert_array_equal(np.isnan(values), np.isnan(expected))
    np.testing.assert_allclose(values, expected, rtol=RTOL, atol=1e-12)


def test_rolling_matches_corrcoef(returns):
    a, b = returns
    window = 336
    values = correlation.rolling_correlation(a, b, window)
    for end in (window - 1, 5000, 20000, len(a) - 1):
        start = end - window + 1
        expected = np.corrcoef(a[start : end + 1], b[start : end + 1])[0, 1]
        assert values[end] == pytest.approx(expected, rel=1e-12)


def test_rolling_huge_level(returns):
    # Moves of about 100 at a level of 1e9: the running moments must keep the digits that the
    # two-pass computation keeps.
    a, b = (1e9 + 1e4 * series[:3000] for series in returns)
    values = correlation.rolling_correlation(a, b, 48)
    np.testing.assert_allclose(values, reference_rolling(a, b, 48), rtol=RTOL, atol=1e-12)


def test_rolling_constant_window_is_nan():
    a = np.array([1.0, 2.0, 3.0, 3.0, 3.0, 3.0, 4.0])
    b = np.array([2.0, 1.0, 5.0, 4.0, 6.0, 1.0, 0.0])
    values = correlation.rolling_correlation(a, b, 3)
    assert np.isnan(values[4])
    assert np.isnan(values[5])
    assert not np.isnan(values[6])


def test_rolling_nearly_flat_after_large_moves():
    rng = np.random.default_rng(5)
    a = np.concatenate([rng.normal(0, 1e3, 200), rng.normal(0, 1e-6, 200)])
    b = np.concatenate([rng.normal(0, 1e3, 200), rng.normal(0, 1e-6, 200)])
    values = correlation.rolling_correlation(a, b, 20)
    np.testing.assert_allclose(values[250:], reference_rolling(a, b, 20)[250:], rtol=RTOL)


def test_rolling_nan_window_then_recovers(returns):
    a, b = (series[:200].copy() for series in returns)
    b[50] = np.nan
    values = correlation.rolling_correlation(a, b, 10)
    assert np.isnan(values[50:60]).all()
    np.testing.assert_allclose(values[60:], reference_rolling(a[51:], b[51:], 10)[9:], rtol=RTOL)


@settings(max_examples=100, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    length=st.integers(2, 400),
    window=st.integers(2, 40),
    level=st.sampled_from([0.0, 1.0, 1e6, 1e9]),
    flat=st.integers(0, 100),
)
def test_random_rolling_matches_reference(seed, length, window, level, flat):
    rng = np.random.default_rng(seed)
    a = level + rng.normal(0, 1, length)
    b = 0.5 * a + rng.normal(0, 1, length)
    a[length // 3 : length // 3 + flat] = level
    if length < window:
        assert np.isnan(correlation.rolling_correlation(a, b, window)).all()
        return
    values = correlation.rolling_correlation(a, b, window)
    expected = reference_rolling(a, b, window)
    np.testing.assert_array_equal(np.isnan(values), np.isnan(expected))
    np.testing.assert_allclose(values, expected, rtol=RTOL, atol=1e-12)


# --- lead-lag ------------------------------------------------------------------------------------


def test_lead_lag_matches_reference(returns):
    a, b = returns
    assert correlation.lead_lag(a, b, 12) == pytest.approx(reference_lead_lag(a, b, 12))


def test_lead_lag_positive_when_a_leads(returns):
    a = returns[0][:3000].copy()
    b = np.full_like(a, np.nan)
    b[5:] = a[:-5]  # b repeats a five bars later
    lag, corr = correlation.lead_lag(a, b, 8)
    assert lag == 5
    assert corr == pytest.approx(1.0, rel=1e-12)


def test_lead_lag_negative_when_b_leads(returns):
    b = returns[1][:3000].copy()
    a = np.full_like(b, np.nan)
    a[2:] = -0.5 * b[:-2]  # a repeats b, inverted, two bars later
    lag, corr = correlation.lead_lag(a, b, 8)
    assert lag == -2
    assert corr == pytest.approx(-1.0, rel=1e-12)


def test_lead_lag_huge_level(returns):
    a = returns[0][:3000].copy()
    b = np.empty_like(a)
    b[0] = 0.0
    b[1:] = a[:-1]
    lag, corr = correlation.lead_lag(1e9 + a, b, 3)
    assert lag == 1
    assert corr == pytest.approx(1.0, rel=1e-6)


def test_lead_lag_constant_is_nan():
    lag, corr = correlation.lead_lag(np.full(20, 3.0), np.arange(20.0), 3)
    assert lag == 0
    assert math.isnan(corr)


def test_lead_lag_max_lag_beyond_length(returns):
    a, b = (series[:50].copy() for series in returns)
    assert correlation.lead_lag(a, b, 10**30) == correlation.lead_lag(a, b, 50)


# --- boundary ------------------------------------------------------------------------------------

SERIES = np.linspace(-1.0, 1.0, 30)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: correlation.rolling_correlation(SERIES, SERIES, 1), "window must be >= 2, got 1"),
        (lambda: correlation.rolling_correlation(SERIES, SERIES[:20], 5), "a 30, b 20"),
        (lambda: correlation.rolling_correlation(SERIES, SERIES.tolist(), 5), "b must be a"),
        (lambda: correlation.lead_lag(SERIES, SERIES, -1), "max_lag must be >= 0, got -1"),
        (lambda: correlation.lead_lag(SERIES[::2], SERIES[:15], 2), "a must be C-contiguous"),
        (lambda: correlation.lead_lag(SERIES, SERIES, 1.5), "max_lag must be an integer"),
    ],
)
def test_invalid_argument_named(call, message):
    with pytest.raises(ValueError, match=message):
        call()
