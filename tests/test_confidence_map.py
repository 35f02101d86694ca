"""Per-model confidence calibration maps (server.confidence_map)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.confidence_map import PlattMap, logit, sigmoid

unit = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
finite = st.floats(min_value=-50.0, max_value=50.0, allow_nan=False)


@given(unit)
def test_identity_returns_input(confidence):
    assert PlattMap().apply(confidence) == confidence


@settings(max_examples=200)
@given(finite, finite, unit)
def test_apply_in_unit_range(slope, intercept, confidence):
    calibrated = PlattMap(slope, intercept).apply(confidence)
    assert 0.0 <= calibrated <= 1.0


@given(st.floats(min_value=0.01, max_value=20.0), finite, unit, unit)
def test_positive_slope_keeps_order(slope, intercept, low, high):
    confidence_map = PlattMap(slope, intercept)
    low, high = sorted((low, high))
    assert confidence_map.apply(low) <= confidence_map.apply(high)


def test_hand_value():
    # logit(0.8) = ln 4, so sigmoid(2 ln 4 - 1) = 16 / (16 + e).
    assert PlattMap(2.0, -1.0).apply(0.8) == pytest.approx(16.0 / (16.0 + math.e))


def test_logit_clips_ends():
    assert logit(0.0) == pytest.approx(math.log(1e-6 / (1.0 - 1e-6)))
    assert logit(1.0) == pytest.approx(-logit(0.0))


def test_sigmoid_no_overflow():
    assert sigmoid(-1000.0) == 0.0
    assert sigmoid(1000.0) == 1.0


def test_apply_rejects_out_of_range():
    with pytest.raises(ValueError, match=r"confidence must be in \[0, 1\], got 1.2"):
        PlattMap(2.0, 0.0).apply(1.2)


def test_apply_rejects_nan():
    with pytest.raises(ValueError, match="got nan"):
        PlattMap().apply(math.nan)


def test_map_rejects_infinite_slope():
    with pytest.raises(ValueError, match="slope must be finite, got inf"):
        PlattMap(math.inf, 0.0)


def test_config_round_trip():
    confidence_map = PlattMap(0.75, -0.25)
    where = "models[0].confidence_calibration"
    assert PlattMap.from_config(confidence_map.to_config(), where) == confidence_map


def test_config_accepts_integers():
    entry = {"method": "platt", "slope": 1, "intercept": 0}
    assert PlattMap.from_config(entry, "m").is_identity


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"method": "isotonic", "slope": 1.0, "intercept": 0.0}, "m.method must be 'platt'"),
        ({"method": "platt", "intercept": 0.0}, "m.slope is missing"),
        ({"method": "platt", "slope": "1", "intercept": 0.0}, "m.slope must be a number"),
        ({"method": "platt", "slope": True, "intercept": 0.0}, "m.slope must be a number"),
        ({"method": "platt", "slope": 1.0, "intercept": math.nan}, "m.intercept must be finite"),
        ({"method": "platt", "slope": 1.0, "intercept": 0.0, "bias": 1}, "unknown keys: bias"),
    ],
)
def test_config_rejects(entry, message):
    with pytest.raises(ValueError, match=message):
        PlattMap.from_config(entry, "m")
