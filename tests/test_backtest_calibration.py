"""Learned weights and confidence maps (server.backtest.calibration)."""

from __future__ import annotations

import math
import random
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.linear_model import LogisticRegression

from fastpath.consensus import BEARISH, BULLISH, NEUTRAL
from server.backtest.calibration import (
    FAILED_LOSS,
    check_held_out,
    fit,
    fit_platt,
    hedge_eta,
    hedge_weights,
)
from server.confidence_map import PlattMap, logit
from tests.backtest_fixtures import HOUR_NS, model_call, window


def sklearn_platt(confidences, correct, l2):
    """The same penalized fit with scikit-learn: both parameters penalized, no own intercept."""
    features = np.column_stack([[logit(c) for c in confidences], np.ones(len(confidences))])
    model = LogisticRegression(C=1.0 / l2, fit_intercept=False, tol=1e-12, max_iter=10_000)
    model.fit(features, np.asarray(correct, dtype=int))
    return model.coef_[0]


def overconfident_pairs(n, seed):
    """Confidences in [0.5, 0.99], each right with probability 0.25 + 0.5 * (c - 0.5), below c."""
    rng = random.Random(seed)
    confidences = [rng.uniform(0.5, 0.99) for _ in range(n)]
    correct = [rng.random() < 0.25 + 0.5 * (c - 0.5) for c in confidences]
    return confidences, correct


def test_platt_matches_sklearn():
    confidences, correct = overconfident_pairs(300, seed=1)
    fitted = fit_platt(confidences, correct, l2=0.1)
    slope, intercept = sklearn_platt(confidences, correct, 0.1)
    assert fitted.map.slope == pytest.approx(slope, abs=1e-5)
    assert fitted.map.intercept == pytest.approx(intercept, abs=1e-5)


@settings(max_examples=25, deadline=None)
@given(
    st.lists(
        st.tuples(st.floats(min_value=0.0, max_value=1.0), st.booleans()),
        min_size=10,
        max_size=60,
    ).filter(lambda pairs: len({right for _, right in pairs}) == 2),
    st.sampled_from([0.01, 0.1, 1.0]),
)
def test_platt_matches_sklearn_property(pairs, l2):
    confidences = [c for c, _ in pairs]
    correct = [right for _, right in pairs]
    fitted = fit_platt(confidences, correct, l2=l2)
    slope, intercept = sklearn_platt(confidences, correct, l2)
    assert fitted.map.slope == pytest.approx(slope, abs=1e-4, rel=1e-4)
    assert fitted.map.intercept == pytest.approx(intercept, abs=1e-4, rel=1e-4)


def test_platt_lowers_overconfidence():
    confidences, correct = overconfident_pairs(400, seed=2)
    fitted = fit_platt(confidences, correct)
    assert fitted.map.apply(0.9) < 0.7
    assert fitted.note == ""


def test_platt_separable_stays_finite():
    fitted = fit_platt([0.9] * 12, [True] * 12)
    assert math.isfinite(fitted.map.intercept)
    assert fitted.map.apply(0.9) < 1.0
    assert fitted.iterations < 100


def test_platt_few_answers_identity():
    fitted = fit_platt([0.9] * 9, [True] * 9)
    assert fitted.map == PlattMap()
    assert fitted.note == "identity map: 9 answers, fewer than the 10 needed"


def test_platt_rejects_confidence():
    with pytest.raises(ValueError, match=r"confidences\[1\] must be in \[0, 1\], got 1.5"):
        fit_platt([0.5, 1.5], [True, False])


def test_platt_rejects_l2():
    with pytest.raises(ValueError, match="l2 must be a positive number, got 0"):
        fit_platt([0.5], [True], l2=0.0)


def test_eta_formula():
    assert hedge_eta(7, 500) == pytest.approx(math.sqrt(8.0 * math.log(7) / 500))


def test_eta_single_model():
    assert hedge_eta(1, 10) == 0.0


def test_hedge_weights_hand_case():
    # exp(-1 * 0) : exp(-1 * 2) scaled to a total of 4.
    weights = hedge_weights({"a": 3.0, "b": 5.0}, 1.0, 4.0)
    assert weights["a"] == pytest.approx(4.0 / (1.0 + math.exp(-2.0)))
    assert weights["b"] == pytest.approx(4.0 * math.exp(-2.0) / (1.0 + math.exp(-2.0)))


def test_hedge_weights_large_losses():
    weights = hedge_weights({"a": 1e6, "b": 1e6 + 1.0}, 1.0, 2.0)
    assert sum(weights.values()) == pytest.approx(2.0)
    assert weights["a"] > weights["b"]


def two_model_windows(n=40, seed=3):
    """`good` is right 80 % of the time at 0.8; `bad` is right 40 % at 0.9 and fails often."""
    rng = random.Random(seed)
    outcomes = []
    for index in range(n):
        label = rng.choice([BULLISH, BEARISH, NEUTRAL])
        wrong = BEARISH if label == BULLISH else BULLISH
        good = model_call("good", label if rng.random() < 0.8 else wrong, 0.8, weight=1.0)
        if rng.random() < 0.25:
            bad = model_call("bad", weight=3.0)
        else:
            bad = model_call("bad", label if rng.random() < 0.4 else wrong, 0.9, weight=3.0)
        outcomes.append(window(index, label, models=(good, bad)))
    return outcomes


def test_fit_prefers_better_model():
    calibration = fit(two_model_windows())
    assert calibration.weights["good"] > calibration.weights["bad"]
    assert sum(calibration.weights.values()) == pytest.approx(4.0)


def test_fit_loss_counts_failures():
    outcomes = two_model_windows()
    calibration = fit(outcomes)
    bad = next(model for model in calibration.models if model.model == "bad")
    failures = sum(not call.answered for o in outcomes for call in o.models if call.model == "bad")
    answered_loss = sum(
        (bad.platt.map.apply(call.confidence) - (call.direction == o.label)) ** 2
        for o in outcomes
        for call in o.models
        if call.model == "bad" and call.answered
    )
    assert bad.brier_loss == pytest.approx(failures * FAILED_LOSS + answered_loss)


def test_fit_weights_follow_formula():
    calibration = fit(two_model_windows())
    losses = {model.model: model.brier_loss for model in calibration.models}
    eta = math.sqrt(8.0 * math.log(2) / 40)
    ratio = math.exp(-eta * (losses["bad"] - losses["good"]))
    assert calibration.eta == pytest.approx(eta)
    assert calibration.weights["bad"] / calibration.weights["good"] == pytest.approx(ratio)


def test_fit_notes_large_model_change():
    calibration = fit(two_model_windows())
    # good: 1.0 -> about 3.9 (now large); bad: 3.0 -> about 0.07 (no longer large). The
    # third note is bad's reversing map.
    assert len(calibration.notes) == 3
    assert calibration.notes[0].startswith("good: weight 1 -> ")
    assert "makes it large" in calibration.notes[0]
    assert calibration.notes[1].startswith("bad: weight 3 -> ")
    assert "no longer large" in calibration.notes[1]
    assert calibration.notes[2].startswith("bad's map has slope")


def test_fit_method_names_hedge():
    calibration = fit(two_model_windows())
    assert "exponential weights (Hedge)" in calibration.method
    assert "Platt scaling" in calibration.method


def test_fit_period_bounds():
    outcomes = two_model_windows()
    calibration = fit(outcomes)
    assert calibration.fit_windows == 40
    assert calibration.fit_from_ns == outcomes[0].window_end
    assert calibration.fit_to_ns == outcomes[-1].window_end


def test_config_models_shape():
    config = fit(two_model_windows()).to_config_models()
    assert set(config) == {"good", "bad"}
    assert config["good"]["confidence_calibration"]["method"] == "platt"
    assert PlattMap.from_config(config["bad"]["confidence_calibration"], "bad") is not None


def test_fit_rejects_missing_model():
    outcomes = two_model_windows(n=3)
    outcomes[2] = replace(outcomes[2], models=outcomes[2].models[:1])
    with pytest.raises(ValueError, match=r"lists models \['good'\], expected \['bad', 'good'\]"):
        fit(outcomes)


def test_fit_rejects_changed_weight():
    outcomes = two_model_windows(n=3)
    changed = replace(outcomes[1].models[0], weight=2.0)
    outcomes[1] = replace(outcomes[1], models=(changed, outcomes[1].models[1]))
    with pytest.raises(ValueError, match=r"weight of good is 2\.0"):
        fit(outcomes)


def test_fit_rejects_no_windows():
    with pytest.raises(ValueError, match="at least one fit window, got 0"):
        fit([])


def test_held_out_after_horizon_passes():
    fit_windows = [window(0, BULLISH), window(1, BULLISH)]
    held_out = [window(1, BULLISH, symbol="ETH")]
    held_out = [replace(held_out[0], window_end=fit_windows[-1].window_end + HOUR_NS // 2)]
    check_held_out(fit_windows, held_out, horizon_minutes=30)


def test_held_out_overlap_rejected():
    fit_windows = [window(0, BULLISH), window(1, BULLISH)]
    held_out = [window(1, BULLISH, symbol="ETH")]
    with pytest.raises(ValueError, match="where the fit period's labels end"):
        check_held_out(fit_windows, held_out, horizon_minutes=30)


def test_reversing_map_is_noted():
    # High confidence always wrong, low confidence always right.
    windows = []
    for index in range(40):
        wrong = index % 2 == 1
        call = model_call("a", BEARISH if wrong else BULLISH, 0.9 if wrong else 0.2)
        windows.append(window(index, BULLISH, models=(call,)))
    calibration = fit(windows)
    assert calibration.maps["a"].slope < 0
    assert any("reverses" in note for note in calibration.notes)
