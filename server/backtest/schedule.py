"""Backtest schedules: window ends every N minutes over a period."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from server.market_data import NS_PER_MINUTE
from server.utc_time import parse_utc

_EVERY = re.compile(r"(?P<count>[0-9]+)\s*(?P<unit>m|min|h|d)")
_UNIT_MINUTES = {"m": 1, "min": 1, "h": 60, "d": 24 * 60}
# Ten years of one-minute windows: far past any backtest, and it bounds the window list.
MAX_WINDOWS = 10 * 366 * 24 * 60


def parse_every(text: str) -> int:
    """Parse a step such as `60m`, `30min`, `1h` or `1d` into minutes."""
    match = _EVERY.fullmatch(text.strip().lower())
    if match is None:
        raise ValueError(f"every {text!r} is not a step such as 30m, 60m, 1h or 1d")
    minutes = int(match["count"]) * _UNIT_MINUTES[match["unit"]]
    if minutes < 1:
        raise ValueError(f"every {text!r} must be at least one minute")
    return minutes


def parse_moment(text: str) -> int:
    """Parse a date (`2019-01-01`, midnight UTC) or an ISO 8601 time into ns since the epoch.

    A time without a zone is UTC.
    """
    value = text.strip()
    if value.endswith("z"):
        value = value[:-1] + "Z"
    try:
        moment = parse_utc(value)
    except ValueError:
        raise ValueError(
            f"time {text!r} is not a date (2019-01-01) or an ISO 8601 time (2019-01-01T12:00Z)"
        ) from None
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    # Whole microseconds, from integers: a float timestamp would round far dates.
    micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    return micros * 1_000


def window_ends(start_ns: int, end_ns: int, every_minutes: int) -> list[int]:
    """Return window ends from `start_ns` on, every `every_minutes`, before `end_ns`.

    The period is half-open, [start, end): back-to-back periods share no window.
    """
    if end_ns <= start_ns:
        raise ValueError(f"the period is empty: to {end_ns} ns is not after from {start_ns} ns")
    if every_minutes < 1:
        raise ValueError(f"every_minutes must be at least 1, got {every_minutes}")
    step = every_minutes * NS_PER_MINUTE
    count = -(-(end_ns - start_ns) // step)
    if count > MAX_WINDOWS:
        raise ValueError(
            f"the period contains {count} windows of {every_minutes} minutes, more than"
            f" {MAX_WINDOWS}: use a longer step or a shorter period"
        )
    return [start_ns + index * step for index in range(count)]
