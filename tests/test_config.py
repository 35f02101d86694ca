from pathlib import Path

import pytest
import yaml

from server import config as config_module
from server.config import ConfigError

CONFIGS = Path(__file__).resolve().parent.parent / "server" / "configs"


def test_local_config_loads():
    config = config_module.load(CONFIGS / "local.yaml")
    assert [m.name for m in config.models] == ["smollm2-135m", "gemma3-270m"]
    assert config.default_context_size == 25000
    assert config.max_context_size == 50000
    assert config.thresholds.confidence_execute == 0.85
    assert config.thresholds.large_consensus_min_agreement == 1.0


def test_local_model_files_resolve(tmp_path):
    config = config_module.load(CONFIGS / "local.yaml", {"models_dir": str(tmp_path)})
    files = config_module.check_model_files(config)
    assert files["smollm2-135m"].stat().st_size > 50_000_000
    assert files["gemma3-270m"].parent == tmp_path


def test_reference_config_names_each_missing_file():
    config = config_module.load(CONFIGS / "reference.yaml")
    assert sum(m.is_large() for m in config.models) == 3
    with pytest.raises(ConfigError) as raised:
        config_module.check_model_files(config)
    message = str(raised.value)
    for model in config.models:
        assert str(model.path) in message


def test_configmap_string_values():
    data = {
        "default_context_size": "25000",
        "max_context_size": "50000",
        "auto_expand_threshold": "0.90",
        "max_processing_time_seconds": "300",
        "confidence_threshold_execute": "0.85",
        "require_large_model_consensus": "true",
        "max_concurrent_symbols": "2",
        "large_models": yaml.safe_dump(
            [{"name": "gemma-7b", "path": "/m/g.gguf", "weight": 3.0, "size": "9B"}]
        ),
        "small_models": yaml.safe_dump([{"name": "phi", "path": "/m/p.gguf", "weight": "1.5"}]),
    }
    config = config_module.from_mapping(data)
    assert config.default_context_size == 25000
    assert config.auto_expand_threshold == 0.9
    assert [m.weight for m in config.models] == [3.0, 1.5]
    assert config.models[0].parameters == "9B"


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"default_context_size": "lots"}, "default_context_size"),
        ({"max_context_size": 1000}, "max_context_size 1000"),
        ({"confidence_threshold_execute": 1.5}, "confidence_execute"),
        ({"require_large_model_consensus": False}, "require_large_model_consensus"),
        ({"surprise": 1}, "unknown configuration keys: surprise"),
        ({"models": []}, "no models configured"),
        ({"models": [{"name": "a", "weight": 1.0}]}, "exactly one of `path` or `package`"),
        ({"models": [{"name": "a", "path": "/x", "weight": -1}]}, "weight must be positive"),
    ],
)
def test_invalid_settings_are_named(change, fragment):
    data = {"models": [{"name": "a", "path": "/x.gguf", "weight": 1.0}]}
    data.update(change)
    with pytest.raises(ConfigError) as raised:
        config_module.from_mapping(data)
    assert fragment in str(raised.value)


def test_fingerprint_ignores_addresses_only():
    base = {"models": [{"name": "a", "path": "/x.gguf", "weight": 1.0, "address": "h:1"}]}
    moved = {"models": [{"name": "a", "path": "/x.gguf", "weight": 1.0, "address": "h:2"}]}
    reweighted = {"models": [{"name": "a", "path": "/x.gguf", "weight": 2.0}]}
    first = config_module.from_mapping(base).fingerprint()
    assert first == config_module.from_mapping(moved).fingerprint()
    assert first != config_module.from_mapping(reweighted).fingerprint()


def test_configmap_directory(tmp_path):
    (tmp_path / "default_context_size").write_text("12000")
    (tmp_path / "models").write_text(
        yaml.safe_dump([{"name": "a", "path": "/x.gguf", "weight": 1.0}])
    )
    (tmp_path / "..data").mkdir()
    config = config_module.load(tmp_path)
    assert config.default_context_size == 12000
    assert config.models[0].name == "a"


def test_two_of_three_as_fraction():
    data = {
        "models": [{"name": "a", "path": "/x.gguf", "weight": 1.0}],
        "large_consensus_min_agreement": "2/3",
    }
    config = config_module.from_mapping(data)
    assert config.thresholds.large_consensus_min_agreement == 2 / 3


def test_alert_threshold_above_execute_rejected():
    data = {
        "models": [{"name": "a", "path": "/x.gguf", "weight": 1.0}],
        "confidence_threshold_alert": 0.9,
    }
    with pytest.raises(ConfigError, match=r"confidence_threshold_alert 0\.9"):
        config_module.from_mapping(data)


def test_quorum_default_is_half():
    data = {"models": [{"name": "a", "path": "/x.gguf", "weight": 1.0}]}
    config = config_module.from_mapping(data)
    assert config.thresholds.quorum_weight_share == 0.5


def test_quorum_zero_rejected():
    data = {"models": [{"name": "a", "path": "/x.gguf", "weight": 1.0}], "quorum_weight_share": 0}
    with pytest.raises(ConfigError, match=r"quorum_weight_share must be in \(0, 1\], got 0"):
        config_module.from_mapping(data)
