"""Predictors built from backtest windows (server.backtest.baselines)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings

from fastpath.consensus import BEARISH, BULLISH, NEUTRAL
from server.backtest.baselines import (
    always_neutral_calls,
    best_model,
    ensemble_calls,
    majority_vote_calls,
    model_calls,
    model_names,
    momentum_calls,
)
from server.backtest.scoring import Call
from tests.backtest_fixtures import model_call, outcomes, window


def voted(*verdicts):
    return window(0, BULLISH, models=tuple(verdicts))


def test_ensemble_uses_overall_direction():
    outcome = window(
        0,
        BULLISH,
        models=(model_call("a", BEARISH, 0.7),),
        overall_direction=BEARISH,
        confidence_level=0.7,
        action="inform",
    )
    assert ensemble_calls([outcome]) == [Call(BEARISH, 0.7, "inform")]


def test_ensemble_without_answer():
    outcome = window(0, BULLISH, models=(model_call("a"),), action="inform")
    assert ensemble_calls([outcome]) == [Call(0, None, "inform")]


def test_model_calls_use_calibrated_confidence():
    outcome = voted(model_call("a", BULLISH, 0.9, calibrated=0.6))
    assert model_calls([outcome], "a") == [Call(BULLISH, 0.6, "execute")]


def test_model_neutral_is_inform():
    outcome = voted(model_call("a", NEUTRAL, 0.9))
    assert model_calls([outcome], "a") == [Call(NEUTRAL, 0.9, "inform")]


def test_model_failure_not_answered():
    outcome = voted(model_call("a"))
    assert model_calls([outcome], "a") == [Call(0, None, "inform")]


def test_model_calls_reject_missing_model():
    with pytest.raises(ValueError, match="lacks model b"):
        model_calls([voted(model_call("a"))], "b")


def test_model_names_first_seen_order():
    outcomes_list = [voted(model_call("b"), model_call("a")), voted(model_call("c"))]
    assert model_names(outcomes_list) == ["b", "a", "c"]


def test_always_neutral():
    assert always_neutral_calls([voted()]) == [Call(NEUTRAL, None, "inform")]


def test_momentum_calls():
    outcomes_list = [
        window(0, BULLISH, momentum_bps=12.0),
        window(1, BULLISH, momentum_bps=-12.0),
        window(2, BULLISH, momentum_bps=3.0),
    ]
    assert momentum_calls(outcomes_list, 5.0) == [
        Call(BULLISH, None, "execute"),
        Call(BEARISH, None, "execute"),
        Call(NEUTRAL, None, "inform"),
    ]


def test_majority_vote_share():
    outcome = voted(
        model_call("a", BEARISH, 0.5),
        model_call("b", BEARISH, 0.6),
        model_call("c", BULLISH, 0.9),
        model_call("d"),
    )
    [call] = majority_vote_calls([outcome])
    assert call.direction == BEARISH
    assert call.confidence == pytest.approx(2 / 3)
    assert call.action == "execute"


def test_majority_vote_tie_is_neutral():
    outcome = voted(model_call("a", BEARISH, 0.5), model_call("b", BULLISH, 0.6))
    assert majority_vote_calls([outcome]) == [Call(NEUTRAL, 0.0, "inform")]


def test_majority_vote_tie_with_neutral_votes():
    outcome = voted(
        model_call("a", BEARISH, 0.5),
        model_call("b", BULLISH, 0.6),
        model_call("c", NEUTRAL, 0.6),
    )
    [call] = majority_vote_calls([outcome])
    assert call.direction == NEUTRAL
    assert call.confidence == pytest.approx(1 / 3)


def test_majority_vote_ignores_weights():
    outcome = voted(
        model_call("large", BULLISH, 0.9, weight=3.0),
        model_call("a", BEARISH, 0.5),
        model_call("b", BEARISH, 0.5),
    )
    assert majority_vote_calls([outcome])[0].direction == BEARISH


def test_majority_vote_without_answers():
    assert majority_vote_calls([voted(model_call("a"))]) == [Call(0, None, "inform")]


def test_best_model_by_accuracy():
    # a is wrong in both windows, b right in both.
    outcomes_list = [
        window(0, BEARISH, models=(model_call("a", BULLISH, 0.5), model_call("b", BEARISH, 0.5))),
        window(1, BEARISH, models=(model_call("a", BULLISH, 0.5), model_call("b", BEARISH, 0.5))),
    ]
    assert best_model(outcomes_list) == "b"


def test_best_model_tie_prefers_more_answers():
    outcomes_list = [
        window(0, BULLISH, models=(model_call("a", BULLISH, 0.5), model_call("b", BULLISH, 0.5))),
        window(1, BEARISH, models=(model_call("a"), model_call("b", BEARISH, 0.5))),
    ]
    assert best_model(outcomes_list) == "b"


def test_best_model_never_answered_last():
    outcomes_list = [window(0, BULLISH, models=(model_call("a"), model_call("b", BEARISH, 0.5)))]
    assert best_model(outcomes_list) == "b"


def test_best_model_rejects_no_models():
    with pytest.raises(ValueError, match="at least one model"):
        best_model([voted()])


@settings(max_examples=50, deadline=None)
@given(outcomes(models=("a", "b", "c")))
def test_calls_one_per_window(outcomes_list):
    for calls in (
        ensemble_calls(outcomes_list),
        model_calls(outcomes_list, "b"),
        majority_vote_calls(outcomes_list),
        momentum_calls(outcomes_list, 5.0),
        always_neutral_calls(outcomes_list),
    ):
        assert len(calls) == len(outcomes_list)


@settings(max_examples=50, deadline=None)
@given(outcomes(models=("a", "b", "c")))
def test_majority_share_in_range(outcomes_list):
    for call in majority_vote_calls(outcomes_list):
        assert call.confidence is None or 0.0 <= call.confidence <= 1.0
