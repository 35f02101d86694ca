"""Backtest window outcomes: the label, each model's verdict and the ensemble's decision."""

from __future__ import annotations

from dataclasses import dataclass

from fastpath.consensus import BEARISH, BULLISH, NEUTRAL

DIRECTIONS = (BULLISH, BEARISH, NEUTRAL)
ACTIONS = ("execute", "alert", "inform")


@dataclass(frozen=True)
class ModelCall:
    """One model's verdict on one window, as the consensus saw it."""

    model: str
    # The base weight the consensus used.
    weight: float
    answered: bool
    # 1 bullish, 2 bearish, 3 neutral; 0 for a failed verdict.
    direction: int
    # The model's own confidence, in [0, 1]; 0 for a failed verdict.
    confidence: float
    # The confidence after the model's calibration map, which the consensus weighed; equal
    # to `confidence` for a model without a map.
    calibrated_confidence: float
    # Expected move in percent over the horizon; 0 for a failed verdict.
    prediction_pct: float
    # The verdict came from the verdict cache, not from a generation in this run.
    from_cache: bool
    failure: str = ""


@dataclass(frozen=True)
class WindowOutcome:
    """One backtest window: the market's move after window_end and the ensemble's decision."""

    symbol: str
    window_end: int  # ns since the epoch, UTC
    # Realized direction over the horizon: 1 bullish, 2 bearish, 3 neutral (inside the band).
    label: int
    # Close at window_end + horizon over close at window_end, minus 1, in basis points.
    realized_bps: float
    # The same return over the horizon that ended at window_end (the momentum baseline's input).
    momentum_bps: float
    models: tuple[ModelCall, ...]
    overall_direction: int
    confidence_level: float
    agreement_strength: float
    action: str  # "execute", "alert" or "inform"
    # The decision's direction: the overall direction for execute and alert, 4 (uncertain)
    # for inform.
    decision_direction: int
