"""Confidence calibration maps and backtest settings in the configuration."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml

from server import config as config_module
from server.confidence_map import PlattMap
from server.config import ConfigError


def _model(**extra: object) -> dict:
    return {"name": "smol", "path": "/models/smol.gguf", "weight": 1.0, **extra}


def _load(**settings: object) -> config_module.Config:
    models = settings.pop("models", [_model()])
    return config_module.from_mapping({"models": models, **settings})


def test_map_loads() -> None:
    calibration = {"method": "platt", "slope": 0.5, "intercept": -0.25}
    config = _load(models=[_model(confidence_calibration=calibration)])
    assert config.models[0].confidence_calibration == PlattMap(0.5, -0.25)


def test_model_without_map_keeps_confidence() -> None:
    assert _load().models[0].calibrated(0.83) == 0.83


def test_map_applies_platt() -> None:
    calibration = {"method": "platt", "slope": 0.5, "intercept": -0.25}
    model = _load(models=[_model(confidence_calibration=calibration)]).models[0]
    expected = 1 / (1 + math.exp(-(0.5 * math.log(0.8 / 0.2) - 0.25)))
    assert model.calibrated(0.8) == pytest.approx(expected, rel=1e-15)


def test_identity_map_keeps_confidence() -> None:
    assert PlattMap(1.0, 0.0).apply(0.37) == pytest.approx(0.37, rel=1e-12)


@pytest.mark.parametrize("confidence", [0.0, 1.0])
def test_map_is_finite_at_the_ends(confidence: float) -> None:
    value = PlattMap(1.0, 3.0).apply(confidence)
    assert 0.0 < value < 1.0


def test_extreme_score_does_not_overflow() -> None:
    assert PlattMap(-1e6, 0.0).apply(1.0) == 0.0


@pytest.mark.parametrize(
    ("calibration", "fragment"),
    [
        ({"method": "isotonic", "slope": 1, "intercept": 0}, "method must be 'platt'"),
        ({"method": "platt", "slope": 1}, "intercept is missing"),
        ({"method": "platt", "slope": "steep", "intercept": 0}, "slope"),
        ({"method": "platt", "slope": float("nan"), "intercept": 0}, "must be finite"),
        ({"method": "platt", "slope": 1, "intercept": 0, "bins": 3}, "unknown keys bins"),
        ("platt", "must be a mapping"),
    ],
)
def test_bad_map_is_named(calibration: object, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        _load(models=[_model(confidence_calibration=calibration)])


def test_map_is_in_the_fingerprint() -> None:
    calibration = {"method": "platt", "slope": 0.5, "intercept": 0.0}
    plain = _load()
    mapped = _load(models=[_model(confidence_calibration=calibration)])
    assert plain.fingerprint() != mapped.fingerprint()


def test_backtest_settings_default() -> None:
    config = _load()
    assert (config.label_neutral_band_bps, config.trade_cost_bps) == (10.0, 5.0)


def test_backtest_settings_are_not_in_the_fingerprint() -> None:
    assert _load().fingerprint() == _load(trade_cost_bps=2, label_neutral_band_bps=0).fingerprint()


@pytest.mark.parametrize("key", ["trade_cost_bps", "label_neutral_band_bps"])
def test_negative_bps_rejected(key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        _load(**{key: -1})


def test_configmap_string_map(tmp_path: Path) -> None:
    models = yaml.safe_dump(
        [_model(confidence_calibration={"method": "platt", "slope": "2", "intercept": "0.1"})]
    )
    (tmp_path / "models").write_text(models)
    config = config_module.load(tmp_path)
    assert config.models[0].confidence_calibration == PlattMap(2.0, 0.1)
