"""Backtest windows: steps, moments and the half-open period."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.backtest.schedule import MAX_WINDOWS, parse_every, parse_moment, window_ends
from server.market_data import NS_PER_MINUTE

DAY_2019_01_01 = 1_546_300_800 * 10**9


@pytest.mark.parametrize(
    ("text", "minutes"), [("60m", 60), ("30min", 30), ("1h", 60), ("2H", 120), ("1d", 1440)]
)
def test_parse_every(text: str, minutes: int) -> None:
    assert parse_every(text) == minutes


@pytest.mark.parametrize("text", ["", "60", "m", "0m", "-5m", "1.5h", "60s"])
def test_parse_every_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="every"):
        parse_every(text)


def test_parse_moment_date_is_utc_midnight() -> None:
    assert parse_moment("2019-01-01") == DAY_2019_01_01


def test_parse_moment_time_with_zone() -> None:
    assert parse_moment("2019-01-01T02:00+01:00") == DAY_2019_01_01 + 60 * NS_PER_MINUTE


def test_parse_moment_naive_time_is_utc() -> None:
    assert parse_moment("2019-01-01T12:30") == DAY_2019_01_01 + 750 * NS_PER_MINUTE


def test_parse_moment_rejects_text() -> None:
    with pytest.raises(ValueError, match="not a date"):
        parse_moment("yesterday")


def test_two_months_hourly() -> None:
    ends = window_ends(parse_moment("2019-01-01"), parse_moment("2019-03-01"), 60)
    assert len(ends) == 59 * 24


def test_period_end_is_excluded() -> None:
    ends = window_ends(DAY_2019_01_01, DAY_2019_01_01 + 120 * NS_PER_MINUTE, 60)
    assert ends == [DAY_2019_01_01, DAY_2019_01_01 + 60 * NS_PER_MINUTE]


def test_empty_period_rejected() -> None:
    with pytest.raises(ValueError, match="empty"):
        window_ends(DAY_2019_01_01, DAY_2019_01_01, 60)


def test_window_count_bounded() -> None:
    with pytest.raises(ValueError, match=str(MAX_WINDOWS)):
        window_ends(0, (MAX_WINDOWS + 1) * NS_PER_MINUTE, 1)


@given(
    start=st.integers(0, 10**18),
    length_minutes=st.integers(1, 100_000),
    every=st.integers(1, 1_440),
)
def test_back_to_back_periods_share_no_window(start: int, length_minutes: int, every: int) -> None:
    middle = start + length_minutes * NS_PER_MINUTE
    first = window_ends(start, middle, every)
    second = window_ends(middle, middle + length_minutes * NS_PER_MINUTE, every)
    assert first[-1] < middle <= second[0]
