"""Weighted consensus (fastpath.consensus) and the decision policy (server.consensus_policy)."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastpath.consensus import (
    BEARISH,
    BULLISH,
    NEUTRAL,
    UNSPECIFIED,
    ConsensusResult,
    weighted_consensus,
)
from quorum.v1 import verdict_pb2
from server.config import Thresholds
from server.consensus_policy import UNCERTAIN, decide

FAILED = None


def consensus(
    *models: tuple[float, float, int] | tuple[float, None],
    large_min_weight: float = 3.0,
    large_min_agreement: float = 1.0,
) -> ConsensusResult:
    """Run weighted_consensus on (weight, confidence, direction) rows; (weight, FAILED) fails."""
    weights = [model[0] for model in models]
    answered = [model[1] is not None for model in models]
    # A failed model's confidence and direction are garbage on purpose: they must be ignored.
    confidences = [model[1] if model[1] is not None else float("nan") for model in models]
    directions = [model[2] if len(model) == 3 else 0 for model in models]
    return weighted_consensus(
        weights,
        confidences,
        directions,
        answered,
        large_min_weight=large_min_weight,
        large_min_agreement=large_min_agreement,
    )


def decide_default(result: ConsensusResult) -> str:
    return decide(result, Thresholds()).action


# The reference ensemble: three 7B models at 3.0, two mid-size at 1.5, two small at 1.0.
REFERENCE_WEIGHTS = {
    "gemma-7b": 3.0,
    "mistral-7b": 3.0,
    "qwen-7b": 3.0,
    "gemma-4b": 1.5,
    "phi-3-mini": 1.5,
    "gemma-2b": 1.0,
    "qwen-2.5b": 1.0,
}


def exact_consensus(rows: list[tuple[float, float | None, int]]) -> dict[str, Fraction]:
    """Apply the consensus formulas in exact rational arithmetic to rows without a tie."""
    answered = [row for row in rows if row[1] is not None]
    final = [Fraction(weight) * Fraction(confidence) for weight, confidence, _ in answered]
    total = sum(final, Fraction(0))
    by_direction = {
        direction: sum(
            (f for f, row in zip(final, answered, strict=True) if row[2] == direction), Fraction(0)
        )
        for direction in (BULLISH, BEARISH, NEUTRAL)
    }
    overall = max(by_direction, key=lambda direction: by_direction[direction])
    return {
        "overall": Fraction(overall),
        "agreement": by_direction[overall] / total,
        "confidence": by_direction[overall] / sum(Fraction(w) for w, _, _ in answered),
    }


# --- codes -----------------------------------------------------------------------------------


def test_direction_codes_match_proto():
    assert BULLISH == verdict_pb2.DIRECTION_BULLISH
    assert BEARISH == verdict_pb2.DIRECTION_BEARISH
    assert NEUTRAL == verdict_pb2.DIRECTION_NEUTRAL
    assert UNCERTAIN == verdict_pb2.DIRECTION_UNCERTAIN
    assert UNSPECIFIED == verdict_pb2.DIRECTION_UNSPECIFIED


# --- weights and influence -------------------------------------------------------------------


def test_consensus_final_weights_and_influences():
    result = consensus((2.0, 0.5, BULLISH), (1.0, 1.0, BEARISH), (4.0, 0.25, BULLISH))
    assert result.final_weights.tolist() == [1.0, 1.0, 1.0]
    assert result.influences.tolist() == pytest.approx([1 / 3, 1 / 3, 1 / 3], rel=1e-15)
    assert result.overall_direction == BULLISH
    assert result.agreement_strength == pytest.approx(2 / 3, rel=1e-15)
    # (1.0 + 1.0) / (2 + 1 + 4)
    assert result.confidence_level == pytest.approx(2 / 7, rel=1e-15)


def test_consensus_direction_influence_sums_to_one():
    result = consensus((3.0, 0.9, BULLISH), (1.5, 0.6, BEARISH), (1.0, 0.3, NEUTRAL))
    assert sum(result.direction_influence) == pytest.approx(1.0, rel=1e-15)


def test_consensus_counts_answered():
    result = consensus((3.0, 0.9, BULLISH), (1.5, FAILED), (1.0, 0.3, NEUTRAL))
    assert result.answered == 2


# --- ties ------------------------------------------------------------------------------------


def test_consensus_two_way_tie_is_neutral():
    result = consensus((2.0, 0.5, BULLISH), (1.0, 1.0, BEARISH), (1.0, 0.5, NEUTRAL))
    assert result.overall_direction == NEUTRAL
    # The neutral side has 0.5 of the 2.5 total.
    assert result.agreement_strength == pytest.approx(0.2, rel=1e-15)


def test_consensus_three_way_tie_is_neutral():
    result = consensus((1.0, 0.5, BULLISH), (1.0, 0.5, BEARISH), (1.0, 0.5, NEUTRAL))
    assert result.overall_direction == NEUTRAL


def test_consensus_tie_with_rounding_is_neutral():
    # 3.0 * 0.8 is 2.4000000000000004 in binary, 1.5 * 0.8 + 1.0 * 0.8 + 0.5 * 0.8 is 2.4.
    assert 3.0 * 0.8 != 1.5 * 0.8 + 1.0 * 0.8 + 0.5 * 0.8
    result = consensus(
        (3.0, 0.8, BULLISH), (1.5, 0.8, BEARISH), (1.0, 0.8, BEARISH), (0.5, 0.8, BEARISH)
    )
    assert result.overall_direction == NEUTRAL


def test_decide_tie_informs():
    result = consensus((2.0, 1.0, BULLISH), (2.0, 1.0, BEARISH))
    decision = decide(result, Thresholds())
    assert decision.action == "inform"
    assert decision.direction == UNCERTAIN


def test_consensus_neutral_leading_is_not_a_tie():
    result = consensus((1.0, 0.9, NEUTRAL), (1.0, 0.2, BULLISH))
    assert result.overall_direction == NEUTRAL
    assert result.agreement_strength == pytest.approx(0.9 / 1.1, rel=1e-15)


# --- no answers, zero confidence --------------------------------------------------------------


def test_consensus_nobody_answered():
    result = consensus((3.0, FAILED), (1.0, FAILED))
    assert result.influences.tolist() == [0.0, 0.0]
    assert result.overall_direction == NEUTRAL
    assert result.agreement_strength == 0.0
    assert result.confidence_level == 0.0
    assert result.answered == 0


def test_consensus_no_models():
    result = consensus()
    assert result.overall_direction == NEUTRAL
    assert result.confidence_level == 0.0


def test_decide_nobody_answered_is_inform():
    decision = decide(consensus((3.0, FAILED), (1.0, FAILED)), Thresholds())
    assert decision.action == "inform"
    assert decision.direction == UNCERTAIN
    assert "no model answered" in decision.reason


def test_consensus_all_confidence_zero():
    result = consensus((3.0, 0.0, BULLISH), (3.0, 0.0, BULLISH), (1.0, 0.0, BEARISH))
    assert result.influences.tolist() == [0.0, 0.0, 0.0]
    assert result.final_weights.tolist() == [0.0, 0.0, 0.0]
    assert result.overall_direction == NEUTRAL
    assert result.confidence_level == 0.0


def test_decide_all_confidence_zero_is_inform_even_at_zero_thresholds():
    zero = Thresholds(
        confidence_execute=0.0, agreement_execute=0.0, confidence_alert=0.0, agreement_alert=0.0
    )
    result = consensus((3.0, 0.0, BULLISH), (3.0, 0.0, BULLISH))
    decision = decide(result, zero)
    assert decision.action == "inform"
    assert "confidence 0" in decision.reason


# --- failed models ----------------------------------------------------------------------------


def test_consensus_failed_models_ignored():
    with_failures = consensus(
        (3.0, 0.9, BULLISH), (3.0, FAILED), (3.0, 0.8, BULLISH), (1.0, FAILED), (1.0, 0.5, BEARISH)
    )
    without = consensus((3.0, 0.9, BULLISH), (3.0, 0.8, BULLISH), (1.0, 0.5, BEARISH))
    assert with_failures.final_weights[[1, 3]].tolist() == [0.0, 0.0]
    assert with_failures.influences[[1, 3]].tolist() == [0.0, 0.0]
    assert with_failures.agreement_strength == without.agreement_strength
    assert with_failures.confidence_level == without.confidence_level
    assert with_failures.direction_influence == without.direction_influence
    assert with_failures.large_answered == 2
    assert with_failures.large_configured == 3


# --- large models ----------------------------------------------------------------------------


def test_large_none_answered_is_unavailable():
    result = consensus((3.0, FAILED), (3.0, FAILED), (1.0, 1.0, BULLISH), (1.5, 1.0, BULLISH))
    assert result.large_available is False
    assert result.large_holds is False
    assert result.large_direction == UNSPECIFIED


def test_large_one_answered_is_unavailable():
    result = consensus((3.0, 1.0, BULLISH), (3.0, FAILED), (1.0, 1.0, BULLISH))
    assert result.large_available is False
    assert result.large_answered == 1


def test_decide_missing_large_never_executes():
    # Everything else is unanimous and certain.
    result = consensus((3.0, 1.0, BULLISH), (3.0, FAILED), (1.0, 1.0, BULLISH))
    assert result.confidence_level == pytest.approx(1.0, rel=1e-15)
    decision = decide(result, Thresholds())
    assert decision.action == "alert"
    assert "large-model agreement unavailable (1 of 2 large models answered)" in decision.reason


def test_large_disagreement_never_executes():
    result = consensus(
        (3.0, 1.0, BULLISH),
        (3.0, 1.0, BULLISH),
        (3.0, 0.2, BEARISH),
        *[(2.0, 1.0, BULLISH)] * 6,
    )
    # (3 + 3 + 6 * 2) / 21
    assert result.confidence_level >= 0.85
    assert result.large_share == pytest.approx(2 / 3, rel=1e-15)
    decision = decide(result, Thresholds())
    assert decision.action == "alert"
    assert "large models disagree" in decision.reason


def test_large_agree_on_neutral_never_executes():
    result = consensus((3.0, 1.0, NEUTRAL), (3.0, 1.0, NEUTRAL), (1.0, 1.0, NEUTRAL))
    assert result.large_holds is True
    assert result.large_direction == NEUTRAL
    decision = decide(result, Thresholds())
    assert decision.action == "alert"
    assert decision.direction == NEUTRAL
    assert "large models agree on neutral" in decision.reason


def test_large_direction_differs_from_overall():
    # Two large models bearish, but the many small ones carry the weighted vote bullish.
    result = consensus(
        (3.0, 0.1, BEARISH),
        (3.0, 0.1, BEARISH),
        *[(2.9, 1.0, BULLISH)] * 10,
    )
    assert result.large_holds is True
    assert result.large_direction == BEARISH
    assert result.overall_direction == BULLISH
    decision = decide(result, Thresholds())
    assert decision.action == "alert"
    assert "large models agree on bearish but overall is bullish" in decision.reason


def test_large_tie_is_neutral_with_tied_share():
    result = consensus((3.0, 1.0, BULLISH), (3.0, 1.0, BEARISH), large_min_agreement=0.5)
    assert result.large_direction == NEUTRAL
    assert result.large_share == 0.5
    assert result.large_holds is True


def test_large_min_weight_setting():
    result = consensus((1.5, 1.0, BULLISH), (1.5, 1.0, BULLISH), large_min_weight=1.5)
    assert result.large_configured == 2
    assert result.large_holds is True


# --- the two-of-three setting -----------------------------------------------------------------

TWO_OF_THREE = ((3.0, 0.9, BULLISH), (3.0, 0.9, BULLISH), (3.0, 0.9, BEARISH))


def test_two_of_three_share():
    result = consensus(*TWO_OF_THREE, large_min_agreement=0.67)
    assert result.large_share == 2 / 3
    assert result.large_direction == BULLISH


def test_two_of_three_misses_067_setting():
    # 2 / 3 = 0.666... is below 0.67: that setting needs all three large models.
    result = consensus(*TWO_OF_THREE, large_min_agreement=0.67)
    assert result.large_holds is False


def test_two_of_three_meets_066_setting():
    result = consensus(*TWO_OF_THREE, large_min_agreement=0.66)
    assert result.large_holds is True


def test_three_of_three_meets_067_setting():
    result = consensus(*TWO_OF_THREE[:2], (3.0, 0.9, BULLISH), large_min_agreement=0.67)
    assert result.large_holds is True


def test_two_of_three_setting_executes():
    thresholds = Thresholds(
        confidence_execute=0.5, agreement_execute=0.5, large_consensus_min_agreement=0.66
    )
    result = consensus(*TWO_OF_THREE, large_min_agreement=0.66)
    decision = decide(result, thresholds)
    assert decision.action == "execute"
    assert decision.direction == BULLISH


# --- threshold boundaries --------------------------------------------------------------------
# Integer weights with confidence 1.0 make each ratio one correctly rounded division, so the
# result is the very double that the threshold literal denotes.


def below(value: float) -> float:
    """Return value less one part in 10^12: small, but larger than any rounding step."""
    return value * (1 - 1e-12)


def large_pair_with_share(bullish: float, total: float) -> ConsensusResult:
    """Build two large bullish models of weight bullish / 2 and one small bearish model.

    The bearish model's weight brings the sum to `total`, and every confidence is 1.0.
    """
    return consensus(
        (bullish / 2, 1.0, BULLISH),
        (bullish / 2, 1.0, BULLISH),
        (total - bullish, 1.0, BEARISH),
        large_min_weight=bullish / 2,
    )


def thresholds_for(result: ConsensusResult, **values: float) -> Thresholds:
    return Thresholds(
        large_model_min_weight=result.large_min_weight,
        large_consensus_min_agreement=result.large_min_agreement,
        **values,
    )


def test_confidence_execute_boundary_executes():
    # 17 / 20: two large bullish models and two small ones with confidence 0.
    result = consensus(
        (8.5, 1.0, BULLISH), (8.5, 1.0, BULLISH), (1.0, 0.0, BEARISH), (2.0, 0.0, BEARISH)
    )
    assert result.confidence_level == 0.85
    decision = decide(result, Thresholds())
    assert decision.action == "execute"
    assert "confidence_level 0.85 >= confidence_execute 0.85" in decision.reason


def test_confidence_execute_just_below():
    result = consensus(
        (8.5, 1.0, BULLISH), (8.5, below(1.0), BULLISH), (1.0, 0.0, BEARISH), (2.0, 0.0, BEARISH)
    )
    assert result.confidence_level < 0.85
    decision = decide(result, Thresholds())
    assert decision.action == "alert"
    assert "< confidence_execute 0.85" in decision.reason


def test_agreement_execute_boundary_executes():
    result = large_pair_with_share(7.0, 10.0)
    assert result.agreement_strength == 0.7
    thresholds = thresholds_for(result, confidence_execute=0.5)
    decision = decide(result, thresholds)
    assert decision.action == "execute"
    assert "agreement_strength 0.7 >= agreement_execute 0.7" in decision.reason


def test_agreement_execute_just_below():
    result = large_pair_with_share(below(7.0), 10.0)
    assert result.agreement_strength < 0.7
    thresholds = thresholds_for(result, confidence_execute=0.5, confidence_alert=0.5)
    decision = decide(result, thresholds)
    assert decision.action == "alert"


def test_confidence_alert_boundary_alerts():
    # The two large models disagree, so no execute; confidence_level is 7 / 10.
    result = consensus((7.0, 1.0, BULLISH), (3.0, 0.0, BEARISH))
    assert result.confidence_level == 0.7
    decision = decide(result, Thresholds())
    assert decision.action == "alert"
    assert decision.direction == BULLISH
    assert "confidence_level 0.7 >= confidence_alert 0.7" in decision.reason


def test_confidence_alert_just_below_informs():
    result = consensus((7.0, below(1.0), BULLISH), (3.0, 0.0, BEARISH))
    assert result.confidence_level < 0.7
    decision = decide(result, Thresholds())
    assert decision.action == "inform"
    assert decision.direction == UNCERTAIN
    assert "< confidence_alert 0.7" in decision.reason


def test_agreement_alert_boundary_alerts():
    # agreement_strength >= confidence_level always, so with the default thresholds the
    # agreement check cannot be the binding one; lower confidence_alert to reach it.
    result = consensus((6.0, 1.0, BULLISH), (4.0, 1.0, BEARISH))
    assert result.agreement_strength == 0.6
    decision = decide(result, Thresholds(confidence_alert=0.5))
    assert decision.action == "alert"
    assert "agreement_strength 0.6 >= agreement_alert 0.6" in decision.reason


def test_agreement_alert_just_below_informs():
    result = consensus((below(6.0), 1.0, BULLISH), (4.0, 1.0, BEARISH))
    assert result.agreement_strength < 0.6
    decision = decide(result, Thresholds(confidence_alert=0.5))
    assert decision.action == "inform"


# --- the reference ensemble ------------------------------------------------------------------


def reference_rows(answers: dict[str, tuple[float, int] | None]) -> list:
    rows = []
    for name, weight in REFERENCE_WEIGHTS.items():
        answer = answers[name]
        rows.append((weight, FAILED) if answer is None else (weight, *answer))
    return rows


def test_reference_ensemble_executes():
    answers = {
        "gemma-7b": (1.0, BULLISH),
        "mistral-7b": (1.0, BULLISH),
        "qwen-7b": (0.875, BULLISH),
        "gemma-4b": (1.0, BULLISH),
        "phi-3-mini": (0.75, BULLISH),
        "gemma-2b": (0.5, BEARISH),
        "qwen-2.5b": (1.0, BULLISH),
    }
    rows = reference_rows(answers)
    expected = exact_consensus(rows)
    result = consensus(*rows)
    # Bullish final weight 3 + 3 + 2.625 + 1.5 + 1.125 + 1 = 12.25 of 12.75, over 14 base.
    assert expected["agreement"] == Fraction(49, 51)
    assert expected["confidence"] == Fraction(7, 8)
    assert result.overall_direction == BULLISH
    assert result.agreement_strength == pytest.approx(float(expected["agreement"]), rel=1e-15)
    assert result.confidence_level == pytest.approx(float(expected["confidence"]), rel=1e-15)
    assert result.large_share == 1.0
    assert result.large_configured == 3
    decision = decide(result, Thresholds())
    assert decision.action == "execute"
    assert decision.direction == BULLISH


def test_reference_ensemble_with_failure_informs():
    # qwen-7b fails. The two other large models agree, but the answered base weight is 11
    # and the bullish final weight only 7, so confidence_level is below confidence_alert.
    answers = {
        "gemma-7b": (1.0, BULLISH),
        "mistral-7b": (0.75, BULLISH),
        "qwen-7b": None,
        "gemma-4b": (0.5, BULLISH),
        "phi-3-mini": (0.75, BEARISH),
        "gemma-2b": (1.0, BULLISH),
        "qwen-2.5b": (0.5, NEUTRAL),
    }
    rows = reference_rows(answers)
    expected = exact_consensus(rows)
    result = consensus(*rows)
    # Bullish 3 + 2.25 + 0.75 + 1 = 7 of 8.625 final weight, over 11 base weight.
    assert expected["confidence"] == Fraction(7, 11)
    assert result.confidence_level == pytest.approx(float(expected["confidence"]), rel=1e-15)
    assert result.agreement_strength == pytest.approx(float(expected["agreement"]), rel=1e-15)
    assert result.large_answered == 2
    assert result.large_holds is True
    assert decide(result, Thresholds()).action == "inform"


# --- validation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("weights", "confidences", "directions", "answered", "name"),
    [
        ([1.0], [1.5], [BULLISH], [True], "confidences"),
        ([1.0], [-0.1], [BULLISH], [True], "confidences"),
        ([1.0], [float("nan")], [BULLISH], [True], "confidences"),
        ([1.0], [0.5], [4], [True], "directions"),
        ([1.0], [0.5], [0], [True], "directions"),
        ([0.0], [0.5], [BULLISH], [True], "base_weights"),
        ([-1.0], [0.5], [BULLISH], [False], "base_weights"),
        ([float("inf")], [0.5], [BULLISH], [True], "base_weights"),
        ([1.0, 2.0], [0.5], [BULLISH], [True], "confidences"),
        ([1.0], [0.5], [1.0], [True], "directions"),
        ([1.0], [0.5], [BULLISH], [1], "answered"),
    ],
)
def test_consensus_rejects_invalid(weights, confidences, directions, answered, name):
    with pytest.raises(ValueError, match=name):
        weighted_consensus(weights, confidences, directions, answered)


@pytest.mark.parametrize(
    ("keyword", "value"),
    [("large_min_weight", 0.0), ("large_min_agreement", 1.5), ("large_min_agreement", -0.1)],
)
def test_consensus_rejects_invalid_settings(keyword, value):
    with pytest.raises(ValueError, match=keyword):
        weighted_consensus([1.0], [0.5], [BULLISH], [True], **{keyword: value})


def test_decide_rejects_other_large_settings():
    result = consensus((3.0, 1.0, BULLISH), (3.0, 1.0, BULLISH), large_min_agreement=0.66)
    with pytest.raises(ValueError, match="large_consensus_min_agreement"):
        decide(result, Thresholds())


# --- properties ------------------------------------------------------------------------------


@st.composite
def ensembles(draw):
    count = draw(st.integers(1, 12))
    weights = draw(
        st.lists(st.sampled_from([0.5, 1.0, 1.5, 3.0, 4.0]), min_size=count, max_size=count)
    )
    confidences = draw(st.lists(st.floats(0.0, 1.0), min_size=count, max_size=count))
    directions = draw(
        st.lists(st.sampled_from([BULLISH, BEARISH, NEUTRAL]), min_size=count, max_size=count)
    )
    answered = draw(st.lists(st.booleans(), min_size=count, max_size=count))
    return weights, confidences, directions, answered


@settings(max_examples=300, deadline=None)
@given(ensembles())
def test_consensus_properties(ensemble):
    weights, confidences, directions, answered = ensemble
    result = weighted_consensus(weights, confidences, directions, answered)

    assert 0.0 <= result.confidence_level <= 1.0
    assert 0.0 <= result.agreement_strength <= 1.0 + 1e-12
    assert result.agreement_strength >= result.confidence_level - 1e-12
    if result.final_weights.sum() > 0:
        assert result.influences.sum() == pytest.approx(1.0, rel=1e-12)
    else:
        assert result.overall_direction == NEUTRAL
    assert (result.influences[~np.array(answered)] == 0).all()
    if result.large_holds:
        assert result.large_available
    action = decide(result, Thresholds()).action
    if action == "execute":
        assert result.large_holds
        assert result.large_direction == result.overall_direction
        assert result.overall_direction != NEUTRAL


@settings(max_examples=200, deadline=None)
@given(ensembles(), st.randoms(use_true_random=False))
def test_consensus_model_order_irrelevant(ensemble, random):
    weights, confidences, directions, answered = ensemble
    order = list(range(len(weights)))
    random.shuffle(order)
    first = weighted_consensus(weights, confidences, directions, answered)
    shuffled = weighted_consensus(
        [weights[i] for i in order],
        [confidences[i] for i in order],
        [directions[i] for i in order],
        [answered[i] for i in order],
    )
    assert shuffled.overall_direction == first.overall_direction
    assert shuffled.agreement_strength == pytest.approx(first.agreement_strength, abs=1e-12)
    assert shuffled.confidence_level == pytest.approx(first.confidence_level, abs=1e-12)
    assert shuffled.large_direction == first.large_direction
    assert shuffled.large_share == first.large_share


# --- quorum -----------------------------------------------------------------------------------


def test_consensus_answered_weight_share():
    result = consensus((3.0, 0.9, BULLISH), (1.0, FAILED))
    assert result.answered_weight_share == 0.75


def test_decide_below_quorum_is_inform():
    # The three large models agree with full confidence, but they hold 9 of 19 (0.47...) of
    # the base weight: below the default quorum of one half, nothing else counts.
    result = consensus(
        (3.0, 1.0, BULLISH), (3.0, 1.0, BULLISH), (3.0, 1.0, BULLISH), (10.0, FAILED)
    )
    decision = decide(result, Thresholds(large_model_min_weight=3.0))
    assert decision.action == "inform"
    assert decision.direction == UNCERTAIN
    assert decision.reason.startswith("quorum not reached: answered_weight_share 0.473684")


def test_decide_at_quorum_boundary_decides():
    # 3 + 3 of 8 answered, all bullish with full confidence: exactly the quorum of 0.75.
    result = consensus((3.0, 1.0, BULLISH), (3.0, 1.0, BULLISH), (1.0, FAILED), (1.0, FAILED))
    assert result.answered_weight_share == 0.75
    quorum = Thresholds(quorum_weight_share=0.75)
    assert decide(result, quorum).action == "execute"


def test_decide_just_below_quorum_boundary_is_inform():
    result = consensus((3.0, 1.0, BULLISH), (3.0, 1.0, BULLISH), (1.0, FAILED), (1.0, FAILED))
    quorum = Thresholds(quorum_weight_share=np.nextafter(0.75, 1.0))
    assert decide(result, quorum).action == "inform"
