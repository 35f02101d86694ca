"""Labels: what the market did over the horizon after each window's end.

A window's reference price is the close of its last bar (the bar closing at or before
window_end, and after window_end minus one bar period). The outcome price is found the same
way at window_end + horizon. realized_bps = (outcome / reference - 1) * 10,000. The label is
bullish above the neutral band, bearish below minus the band, neutral within it (the band's
edges are neutral).

Labels read bars after window_end: that is their purpose, and they never reach a context.
The same rule one horizon back, ending at window_end, gives the momentum baseline's input.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fastpath.consensus import BEARISH, BULLISH, NEUTRAL
from server.market_data import NS_PER_MINUTE, Bars

BPS = 10_000.0


@dataclass(frozen=True)
class Label:
    window_end: int
    direction: int
    realized_bps: float
    momentum_bps: float


@dataclass(frozen=True)
class Unlabeled:
    window_end: int
    reason: str


def label_windows(
    bars: Bars,
    window_ends: list[int],
    horizon_minutes: int,
    band_bps: float,
) -> list[Label | Unlabeled]:
    """Label each window end, or give the reason it cannot be labelled."""
    period_minutes = bars.bar_minutes()
    if period_minutes < 1:
        reason = f"{bars.symbol} has {len(bars)} bars up to the period's end, too few to label"
        return [Unlabeled(end, reason) for end in window_ends]
    period_ns = period_minutes * NS_PER_MINUTE
    horizon_ns = horizon_minutes * NS_PER_MINUTE
    labels: list[Label | Unlabeled] = []
    for end in window_ends:
        reference = _close_at(bars, end, period_ns)
        outcome = _close_at(bars, end + horizon_ns, period_ns)
        previous = _close_at(bars, end - horizon_ns, period_ns)
        if reference is None:
            reason = f"no {bars.symbol} bar closes within one bar period before window_end"
            labels.append(Unlabeled(end, reason))
        elif outcome is None:
            reason = f"no {bars.symbol} bar closes at the {horizon_minutes}-minute horizon"
            labels.append(Unlabeled(end, reason))
        else:
            realized = (outcome / reference - 1.0) * BPS
            momentum = (reference / previous - 1.0) * BPS if previous is not None else 0.0
            labels.append(Label(end, direction_of(realized, band_bps), realized, momentum))
    return labels


def direction_of(move_bps: float, band_bps: float) -> int:
    """Bullish above the band, bearish below minus the band, neutral within it."""
    if move_bps > band_bps:
        return BULLISH
    if move_bps < -band_bps:
        return BEARISH
    return NEUTRAL


def _close_at(bars: Bars, time_ns: int, period_ns: int) -> float | None:
    """Return the close of the last bar at or before `time_ns`, if within one bar period."""
    index = int(np.searchsorted(bars.time, time_ns, side="right")) - 1
    if index < 0 or bars.time[index] <= time_ns - period_ns:
        return None
    return float(bars.close[index])
