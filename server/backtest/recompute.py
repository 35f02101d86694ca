"""Consensus and decision of backtest windows again, under other weights, maps or thresholds.

The models' outcomes do not depend on the weights, calibration maps or thresholds, which are
neither in the context nor in the verdict cache's key. So a window's consensus under another
configuration is the same weighted_consensus and decide over the same verdicts. This is what
the cycle computes on a backtest re-run from the cache, without rebuilding every context.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from fastpath.consensus import weighted_consensus
from server.backtest.outcomes import ModelCall, WindowOutcome
from server.config import Config
from server.consensus_policy import decide


def recompute(outcomes: Sequence[WindowOutcome], config: Config) -> list[WindowOutcome]:
    """Return the windows with consensus and decision under `config`'s models and thresholds.

    Each model's stated confidence goes through `config`'s calibration map for that model.
    Raises ValueError when a window names a model that `config` does not configure.
    """
    return [_recompute_window(outcome, config) for outcome in outcomes]


def _recompute_window(outcome: WindowOutcome, config: Config) -> WindowOutcome:
    thresholds = config.thresholds
    calls = tuple(_recalibrated(call, config) for call in outcome.models)
    consensus = weighted_consensus(
        np.array([call.weight for call in calls], dtype=np.float64),
        np.array([call.calibrated_confidence for call in calls], dtype=np.float64),
        np.array([call.direction for call in calls], dtype=np.int8),
        np.array([call.answered for call in calls], dtype=bool),
        large_min_weight=thresholds.large_model_min_weight,
        large_min_agreement=thresholds.large_consensus_min_agreement,
    )
    decision = decide(consensus, thresholds)
    return dataclasses.replace(
        outcome,
        models=calls,
        overall_direction=consensus.overall_direction,
        confidence_level=consensus.confidence_level,
        agreement_strength=consensus.agreement_strength,
        action=decision.action,
        decision_direction=decision.direction,
    )


def _recalibrated(call: ModelCall, config: Config) -> ModelCall:
    try:
        model = config.model(call.model)
    except ValueError as error:
        raise ValueError(f"window verdict of {call.model!r}: {error}") from None
    calibrated = model.calibrated(call.confidence) if call.answered else 0.0
    return dataclasses.replace(call, weight=model.weight, calibrated_confidence=calibrated)
