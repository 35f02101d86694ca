"""Scores of one predictor over backtest windows (server.backtest.scoring)."""

from __future__ import annotations

import json
import math
import random
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.calibration import calibration_curve
from sklearn.metrics import brier_score_loss, matthews_corrcoef

from fastpath.consensus import BEARISH, BULLISH, NEUTRAL
from server.backtest.scoring import (
    Call,
    HighConfidence,
    matthews_correlation,
    reliability_bins,
    score,
)
from tests.backtest_fixtures import calls, confidences, directions, label_of, moves_bps, window

UNCERTAIN = 4
ANY_CONFIDENCE = HighConfidence.at_least(0.0)


def four_windows() -> list:
    """Labels bullish, bearish, neutral, bullish with moves +40, -25, +2, +10 bps."""
    return [
        window(0, BULLISH, 40.0),
        window(1, BEARISH, -25.0),
        window(2, NEUTRAL, 2.0),
        window(3, BULLISH, 10.0),
    ]


def four_calls() -> list[Call]:
    return [
        Call(BULLISH, 0.9, "execute"),  # right, long +40
        Call(BULLISH, 0.6, "alert"),  # wrong, long -25
        Call(UNCERTAIN, 0.3, "inform"),  # right (uncertain is neutral), no position
        Call(0, None, "inform"),  # not answered
    ]


def test_call_rejects_direction():
    with pytest.raises(ValueError, match="direction must be 0 to 4, got 5"):
        Call(5, 0.5, "inform")


def test_call_rejects_action():
    with pytest.raises(ValueError, match="'hold'"):
        Call(BULLISH, 0.5, "hold")


def test_call_rejects_nan_confidence():
    with pytest.raises(ValueError, match="confidence must be in"):
        Call(BULLISH, math.nan, "inform")


def test_high_confidence_rejects_threshold():
    with pytest.raises(ValueError, match=r"got 1\.5"):
        HighConfidence.at_least(1.5)


def test_high_confidence_rejects_action():
    with pytest.raises(ValueError, match="hold"):
        HighConfidence.for_actions(["execute", "hold"])


def test_score_rejects_length_mismatch():
    with pytest.raises(ValueError, match="got 3 calls for 4 windows"):
        score(four_calls()[:3], four_windows(), ANY_CONFIDENCE, 0.0)


def test_score_rejects_duplicate_window():
    outcomes = [window(0, BULLISH), window(0, BEARISH)]
    with pytest.raises(ValueError, match="appears more than once"):
        score([Call(0, None, "inform")] * 2, outcomes, ANY_CONFIDENCE, 0.0)


def test_score_rejects_label():
    with pytest.raises(ValueError, match="must be 1 to 3, got 0"):
        score([Call(0, None, "inform")], [window(0, 0)], ANY_CONFIDENCE, 0.0)


def test_score_rejects_nan_cost():
    with pytest.raises(ValueError, match="cost_bps must be finite, got nan"):
        score(four_calls(), four_windows(), ANY_CONFIDENCE, math.nan)


def test_hand_case_counts():
    scores = score(four_calls(), four_windows(), ANY_CONFIDENCE, 5.0)
    assert scores.n == 4
    assert scores.answered == 3
    assert scores.accuracy == pytest.approx(2 / 3)


def test_hand_case_high_confidence_threshold():
    scores = score(four_calls(), four_windows(), HighConfidence.at_least(0.6), 5.0)
    assert scores.high_confidence_count == 2
    assert scores.high_confidence_accuracy == pytest.approx(0.5)
    assert scores.high_confidence_rule == "confidence >= 0.6"


def test_hand_case_high_confidence_actions():
    rule = HighConfidence.for_actions(["execute"])
    scores = score(four_calls(), four_windows(), rule, 5.0)
    assert scores.high_confidence_count == 1
    assert scores.high_confidence_accuracy == 1.0
    assert scores.high_confidence_rule == "action in execute"


def test_hand_case_coverage():
    scores = score(four_calls(), four_windows(), ANY_CONFIDENCE, 5.0)
    assert scores.coverage_by_action == {"execute": 0.25, "alert": 0.25, "inform": 0.5}
    assert scores.coverage_by_direction == {
        "bullish": 0.5,
        "bearish": 0.0,
        "neutral": 0.0,
        "uncertain": 0.25,
        "none": 0.25,
    }


def test_hand_case_brier():
    scores = score(four_calls(), four_windows(), ANY_CONFIDENCE, 5.0)
    # (0.9 - 1)^2, (0.6 - 0)^2, (0.3 - 1)^2
    assert scores.brier == pytest.approx((0.01 + 0.36 + 0.49) / 3)
    assert scores.calibration_count == 3


def test_hand_case_ece():
    scores = score(four_calls(), four_windows(), ANY_CONFIDENCE, 5.0)
    # One window per bin: |0.9 - 1|, |0.6 - 0|, |0.3 - 1|, each weighted 1/3.
    assert scores.ece == pytest.approx((0.1 + 0.6 + 0.7) / 3)


def test_hand_case_returns():
    scores = score(four_calls(), four_windows(), ANY_CONFIDENCE, 5.0)
    execute, alert, any_action = (scores.returns[name] for name in ("execute", "alert", "any"))
    assert execute.trades == 1
    assert execute.total_net_bps == pytest.approx(35.0)
    assert alert.total_net_bps == pytest.approx(-30.0)
    assert any_action.trades == 2
    assert any_action.mean_net_bps == pytest.approx(2.5)
    assert any_action.hit_rate == 0.5


def test_hand_case_cumulative_series():
    scores = score(four_calls(), four_windows(), ANY_CONFIDENCE, 5.0)
    assert scores.cumulative_net_bps == pytest.approx((35.0, 5.0, 5.0, 5.0))
    assert scores.window_ends == tuple(outcome.window_end for outcome in four_windows())


def test_short_position_gains_on_fall():
    scores = score([Call(BEARISH, None, "alert")], [window(0, BEARISH, -30.0)], ANY_CONFIDENCE, 4.0)
    assert scores.returns["alert"].total_net_bps == pytest.approx(26.0)


def test_neutral_alert_takes_no_position():
    scores = score([Call(NEUTRAL, 0.8, "alert")], [window(0, BULLISH, 30.0)], ANY_CONFIDENCE, 4.0)
    assert scores.returns["alert"].trades == 0
    assert scores.returns["alert"].mean_net_bps is None
    assert scores.returns["alert"].hit_rate is None


def test_no_confidence_has_no_calibration():
    scores = score([Call(BULLISH, None, "execute")], [window(0, BULLISH, 9.0)], ANY_CONFIDENCE, 0.0)
    assert scores.brier is None
    assert scores.ece is None
    assert scores.high_confidence_accuracy is None


def test_empty_windows():
    scores = score([], [], ANY_CONFIDENCE, 0.0)
    assert scores.accuracy is None
    assert scores.mcc == 0.0
    assert scores.cumulative_net_bps == ()


def test_mcc_undefined_is_zero():
    # Every prediction bullish: the denominator is 0.
    assert matthews_correlation([BULLISH, BEARISH, NEUTRAL], [BULLISH] * 3) == 0.0


def test_mcc_perfect_is_one():
    labels = [BULLISH, BEARISH, NEUTRAL, BULLISH]
    assert matthews_correlation(labels, labels) == pytest.approx(1.0)


def test_mcc_hand_case():
    # Confusion (rows label, columns prediction): [[1, 1, 0], [0, 1, 0], [0, 0, 1]]:
    # c = 3, s = 4, t = (2, 1, 1), p = (1, 2, 1):
    # (3 * 4 - (2 + 2 + 1)) / sqrt((16 - 6) * (16 - 6)) = 7 / 10.
    labels = [BULLISH, BULLISH, BEARISH, NEUTRAL]
    predictions = [BULLISH, BEARISH, BEARISH, NEUTRAL]
    assert matthews_correlation(labels, predictions) == pytest.approx(0.7)


# scikit-learn warns when every label and prediction is one class; it returns 0 there too.
@pytest.mark.filterwarnings("ignore:A single label was found")
@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(directions, directions), min_size=1, max_size=40))
def test_mcc_matches_sklearn(pairs):
    labels = [label for label, _ in pairs]
    predictions = [prediction for _, prediction in pairs]
    expected = matthews_corrcoef(labels, predictions)
    assert matthews_correlation(labels, predictions) == pytest.approx(expected, abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(confidences, st.booleans()), min_size=1, max_size=40))
def test_brier_matches_sklearn(pairs):
    call_list = [Call(BULLISH, confidence, "inform") for confidence, _ in pairs]
    outcomes = [window(i, BULLISH if right else BEARISH) for i, (_, right) in enumerate(pairs)]
    expected = brier_score_loss([right for _, right in pairs], [c for c, _ in pairs], pos_label=1)
    scores = score(call_list, outcomes, ANY_CONFIDENCE, 0.0)
    assert scores.brier == pytest.approx(expected, abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(confidences, st.booleans()), min_size=2, max_size=40).filter(
        lambda pairs: len({right for _, right in pairs}) == 2
    )
)
def test_reliability_matches_sklearn(pairs):
    confidence_list = [confidence for confidence, _ in pairs]
    correct = [right for _, right in pairs]
    accuracy, mean_confidence = calibration_curve(correct, confidence_list, n_bins=10)
    filled = [bin_ for bin_ in reliability_bins(confidence_list, correct) if bin_.count]
    assert [bin_.accuracy for bin_ in filled] == pytest.approx(accuracy.tolist(), abs=1e-12)
    assert [bin_.mean_confidence for bin_ in filled] == pytest.approx(
        mean_confidence.tolist(), abs=1e-12
    )


def test_reliability_edges():
    bins = reliability_bins([0.0, 0.1, 0.3, 0.9, 0.95, 1.0], [True] * 6)
    assert [bin_.count for bin_ in bins] == [2, 0, 1, 0, 0, 0, 0, 0, 1, 2]


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(min_value=1, max_value=8), st.integers(min_value=0, max_value=8)),
        min_size=1,
        max_size=10,
    )
)
def test_ece_zero_when_calibrated(groups):
    # Each group: n windows at confidence k / n with exactly k of them right, so that every
    # bin's accuracy equals its mean confidence.
    call_list, outcomes = [], []
    for n, k_raw in groups:
        k = min(k_raw, n)
        for j in range(n):
            call_list.append(Call(BULLISH, k / n, "inform"))
            outcomes.append(window(len(outcomes), BULLISH if j < k else BEARISH))
    scores = score(call_list, outcomes, ANY_CONFIDENCE, 0.0)
    assert scores.ece == pytest.approx(0.0, abs=1e-12)


@st.composite
def scored_windows(draw):
    call_list = draw(st.lists(calls, min_size=1, max_size=30))
    moves = draw(st.lists(moves_bps, min_size=len(call_list), max_size=len(call_list)))
    symbols = draw(
        st.lists(st.sampled_from(["BTC", "ETH"]), min_size=len(call_list), max_size=len(call_list))
    )
    outcomes = [
        window(i // 2, label_of(move), move, symbol=symbol)
        for i, (move, symbol) in enumerate(zip(moves, symbols, strict=True))
    ]
    # Two symbols share window ends; drop the repeated (symbol, window_end) pairs.
    unique = {(o.symbol, o.window_end): (c, o) for c, o in zip(call_list, outcomes, strict=True)}
    pairs = list(unique.values())
    return [c for c, _ in pairs], [o for _, o in pairs]


@settings(max_examples=80, deadline=None)
@given(scored_windows(), st.floats(min_value=0.0, max_value=20.0), confidences)
def test_scores_in_range(windows, cost_bps, threshold):
    call_list, outcomes = windows
    scores = score(call_list, outcomes, HighConfidence.at_least(threshold), cost_bps)
    for value in (scores.accuracy, scores.high_confidence_accuracy, scores.brier, scores.ece):
        assert value is None or 0.0 <= value <= 1.0
    assert -1.0 - 1e-12 <= scores.mcc <= 1.0 + 1e-12
    assert sum(scores.coverage_by_action.values()) == pytest.approx(1.0)
    assert sum(scores.coverage_by_direction.values()) == pytest.approx(1.0)


@settings(max_examples=80, deadline=None)
@given(scored_windows(), st.randoms(use_true_random=False))
def test_shuffle_changes_nothing(windows, rng: random.Random):
    call_list, outcomes = windows
    order = list(range(len(call_list)))
    rng.shuffle(order)
    before = score(call_list, outcomes, ANY_CONFIDENCE, 3.0)
    after = score([call_list[i] for i in order], [outcomes[i] for i in order], ANY_CONFIDENCE, 3.0)
    assert after == before


@settings(max_examples=60, deadline=None)
@given(scored_windows(), scored_windows())
def test_later_windows_keep_series_prefix(first, later):
    call_list, outcomes = first
    shift = max(outcome.window_end for outcome in outcomes) + 1
    later_outcomes = [replace(o, window_end=o.window_end + shift) for o in later[1]]
    before = score(call_list, outcomes, ANY_CONFIDENCE, 3.0)
    after = score(call_list + later[0], outcomes + later_outcomes, ANY_CONFIDENCE, 3.0)
    assert after.cumulative_net_bps[: before.n] == before.cumulative_net_bps


@settings(max_examples=60, deadline=None)
@given(scored_windows())
def test_series_ends_at_total(windows):
    call_list, outcomes = windows
    scores = score(call_list, outcomes, ANY_CONFIDENCE, 3.0)
    assert scores.cumulative_net_bps[-1] == pytest.approx(scores.returns["any"].total_net_bps)


def test_to_json_round_trips():
    scores = score(four_calls(), four_windows(), ANY_CONFIDENCE, 5.0)
    # allow_nan=False raises on NaN or infinity anywhere in the scores.
    decoded = json.loads(json.dumps(scores.to_json(), allow_nan=False))
    assert decoded["returns"]["any"]["trades"] == 2
    assert decoded["reliability"][8]["count"] == 1
    assert decoded["reliability"][0]["accuracy"] is None
    assert decoded["cumulative_net_bps"] == pytest.approx([35.0, 5.0, 5.0, 5.0])
