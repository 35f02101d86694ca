"""Write a configuration with learned weights and calibration maps that the coordinator loads.

The written file is the source configuration with each model's `weight` and
`confidence_calibration` replaced. Paths that the source gave relative to its own folder
(model files, TLS files, the token file) are written absolute, so the new file works from
any folder. `data_lake` stays as written, relative to the working directory.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from server import config as config_module
from server.confidence_map import PlattMap
from server.config import SECURITY_PATH_KEYS, Config, ConfigError


def calibrated_mapping(
    config: Config,
    weights: Mapping[str, float],
    maps: Mapping[str, PlattMap | None],
) -> dict[str, Any]:
    """Return the source configuration's keys with the learned weights and maps in place."""
    source = Path(config.source_path)
    raw = config_module.read_raw(source)
    base_dir = source.resolve().parent
    seen: set[str] = set()
    for key, entries in config_module.model_lists(raw).items():
        raw[key] = [_model_entry(entry, config, weights, maps, seen) for entry in entries]
    missing = sorted(set(weights) - seen)
    if missing:
        raise ConfigError(f"learned weights name models not in {source}: {', '.join(missing)}")
    for key in SECURITY_PATH_KEYS:
        value = raw.get(key)
        if value and not Path(str(value)).is_absolute():
            raw[key] = str((base_dir / str(value)).resolve())
    return raw


def write_calibrated_config(
    config: Config,
    weights: Mapping[str, float],
    maps: Mapping[str, PlattMap | None],
    path: Path,
    header: str,
) -> Config:
    """Write the configuration atomically, load it back and return what the loader read.

    Raises ConfigError when the written file does not load to the learned weights and maps.
    """
    raw = calibrated_mapping(config, weights, maps)
    comment = "".join(f"# {line}\n" if line else "#\n" for line in header.splitlines())
    text = comment + yaml.safe_dump(raw, sort_keys=False, width=100)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".yaml")
    try:
        with os.fdopen(handle, "w") as output:
            output.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    loaded = config_module.load(path)
    _check_loaded(loaded, weights, maps, path)
    return loaded


def _model_entry(
    entry: Any,
    config: Config,
    weights: Mapping[str, float],
    maps: Mapping[str, PlattMap | None],
    seen: set[str],
) -> Any:
    if not isinstance(entry, dict) or entry.get("name") not in weights:
        return entry
    name = str(entry["name"])
    seen.add(name)
    updated = dict(entry)
    # YAML writes a float's shortest repr, which reads back to the same float.
    updated["weight"] = float(weights[name])
    calibration = maps.get(name)
    if calibration is None:
        updated.pop("confidence_calibration", None)
    else:
        updated["confidence_calibration"] = calibration.to_config()
    if updated.get("path") is not None:
        updated["path"] = config.model(name).path
    return updated


def _check_loaded(
    loaded: Config,
    weights: Mapping[str, float],
    maps: Mapping[str, PlattMap | None],
    path: Path,
) -> None:
    for name, weight in weights.items():
        model = loaded.model(name)
        if not math.isclose(model.weight, weight, rel_tol=1e-12):
            raise ConfigError(f"{path}: {name} loaded weight {model.weight}, expected {weight}")
        if model.confidence_calibration != maps.get(name):
            raise ConfigError(
                f"{path}: {name} loaded calibration {model.confidence_calibration},"
                f" expected {maps.get(name)}"
            )
