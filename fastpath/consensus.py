"""Weighted consensus of the ensemble's verdicts.

Direction codes match the wire enum quorum.v1.Direction: 1 bullish, 2 bearish, 3 neutral.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

import fastpath._consensus as _consensus
from fastpath import _checks

BULLISH = 1
BEARISH = 2
NEUTRAL = 3
# No large-model direction: fewer than two large models answered.
UNSPECIFIED = 0

LARGE_MIN_WEIGHT = 3.0
LARGE_MIN_AGREEMENT = 1.0
# Summed influences closer than this are a tie. A tie that is exact in decimal can differ by
# one rounding step in binary: 3.0 * 0.8 is 2.4000000000000004, while 1.5 * 0.8 + 1.0 * 0.8 +
# 0.5 * 0.8 is 2.4. Influences lie in [0, 1], so one absolute tolerance fits every ensemble.
TIE_TOLERANCE = 1e-12

# Codes returned by the kernel's find_invalid.
_BAD_WEIGHT = 1
_BAD_CONFIDENCE = 2
_BAD_DIRECTION = 3


@dataclass(frozen=True)
class ConsensusResult:
    """Consensus of one cycle. Arrays are indexed like the models passed in."""

    final_weights: np.ndarray  # base_weight * confidence; 0 for a failed model
    influences: np.ndarray  # final_weight / sum(final_weight); all 0 when that sum is 0
    overall_direction: int
    agreement_strength: float  # summed influence behind overall_direction
    confidence_level: float
    direction_influence: tuple[float, float, float]  # bullish, bearish, neutral
    answered: int
    large_available: bool  # at least two large models answered
    large_answered: int
    large_configured: int
    large_direction: int  # UNSPECIFIED when unavailable, NEUTRAL on a tie
    large_share: float  # large models on the most common direction / large_answered
    large_holds: bool  # large_share >= large_min_agreement
    # Base weight of the answered models over the base weight of all models, in [0, 1].
    answered_weight_share: float
    # The settings this result was computed with, so a policy can check it uses the same.
    large_min_weight: float = LARGE_MIN_WEIGHT
    large_min_agreement: float = LARGE_MIN_AGREEMENT


def weighted_consensus(
    base_weights: Sequence[float] | np.ndarray,
    confidences: Sequence[float] | np.ndarray,
    directions: Sequence[int] | np.ndarray,
    answered: Sequence[bool] | np.ndarray,
    large_min_weight: float = LARGE_MIN_WEIGHT,
    large_min_agreement: float = LARGE_MIN_AGREEMENT,
) -> ConsensusResult:
    """Combine the verdicts of any number of models into a ConsensusResult.

    For the models that answered, final_weight = base_weight * confidence and influence =
    final_weight / sum(final_weight). The overall direction has the largest summed influence,
    and a tie for the largest is neutral. confidence_level is the sum of base_weight *
    confidence over the answered models on the overall direction, divided by the sum of
    base_weight over all answered models (0 when none answered). answered_weight_share is the
    base weight of the answered models over the base weight of all models, which the decision
    policy compares with its quorum.

    Large models have base_weight >= large_min_weight. With fewer than two of them answered,
    large agreement is unavailable. Otherwise large_share is the count on their most common
    direction divided by large_answered, and it holds when large_share >= large_min_agreement.
    The comparison is exact: 2 of 3 is a share of 0.666..., below a setting of 0.67.

    Confidences and directions of failed models are ignored. Raises ValueError for unequal
    lengths, a base weight that is not a finite positive number, or an answered model whose
    confidence is outside [0, 1] or whose direction is not 1, 2 or 3.
    """
    weights = _checks.float_array("base_weights", base_weights)
    confidence_array = _checks.float_array("confidences", confidences)
    direction_array = _checks.integer_array("directions", directions)
    answered_array = _checks.bool_array("answered", answered)
    _checks.same_length(
        base_weights=weights,
        confidences=confidence_array,
        directions=direction_array,
        answered=answered_array,
    )
    _check_values(weights, confidence_array, direction_array, answered_array)
    min_weight = _checks.positive("large_min_weight", large_min_weight)
    min_agreement = _checks.number("large_min_agreement", large_min_agreement, 0.0, 1.0)

    final_weights = np.zeros(len(weights), dtype=np.float64)
    influences = np.zeros(len(weights), dtype=np.float64)
    (
        overall,
        agreement,
        confidence_level,
        bullish,
        bearish,
        neutral,
        answered_count,
        large_answered,
        large_configured,
        large_direction,
        large_top_count,
        answered_weight_share,
    ) = _consensus.weighted_consensus(
        weights,
        confidence_array,
        direction_array,
        answered_array,
        min_weight,
        TIE_TOLERANCE,
        final_weights,
        influences,
    )
    large_available = large_answered >= 2
    large_share = large_top_count / large_answered if large_available else 0.0
    return ConsensusResult(
        final_weights=final_weights,
        influences=influences,
        overall_direction=int(overall),
        agreement_strength=float(agreement),
        confidence_level=float(confidence_level),
        direction_influence=(float(bullish), float(bearish), float(neutral)),
        answered=int(answered_count),
        large_available=large_available,
        large_answered=int(large_answered),
        large_configured=int(large_configured),
        large_direction=int(large_direction),
        large_share=float(large_share),
        large_holds=large_available and large_share >= min_agreement,
        answered_weight_share=float(answered_weight_share),
        large_min_weight=min_weight,
        large_min_agreement=min_agreement,
    )


def _check_values(
    weights: np.ndarray, confidences: np.ndarray, directions: np.ndarray, answered: np.ndarray
) -> None:
    # One compiled pass finds the first invalid value; only the message is built here.
    code, index = _consensus.find_invalid(weights, confidences, directions, answered)
    if code == _BAD_WEIGHT:
        raise ValueError(
            f"base_weights[{index}] must be a finite number > 0, got {weights[index]!r}"
        )
    if code == _BAD_CONFIDENCE:
        raise ValueError(
            f"confidences[{index}] must be in [0, 1] for an answered model,"
            f" got {confidences[index]!r}"
        )
    if code == _BAD_DIRECTION:
        raise ValueError(
            f"directions[{index}] must be 1 (bullish), 2 (bearish) or 3 (neutral) for an"
            f" answered model, got {int(directions[index])}"
        )
