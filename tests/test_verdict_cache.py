"""The verdict cache: keys that change with every input that shapes a verdict, and safe reads."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from quorum.v1 import ensemble_pb2, inference_pb2, verdict_pb2
from server.config import ModelConfig
from server.verdict_cache import (
    FILE_SAMPLE_BYTES,
    VerdictCache,
    cacheable,
    context_fingerprint,
    file_fingerprint,
    worker_code_fingerprint,
)

WINDOW_END = 1_546_387_200 * 10**9


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    path = tmp_path / "model.gguf"
    path.write_bytes(b"GGUF" + bytes(range(256)) * 20_000)
    return path


@pytest.fixture
def model(model_file: Path) -> ModelConfig:
    return ModelConfig(name="smol", path=str(model_file), package=None, weight=1.0)


@pytest.fixture
def cache(tmp_path: Path, model: ModelConfig, model_file: Path) -> VerdictCache:
    return VerdictCache(tmp_path / "lake", {model.name: model_file})


def _request(**changes: object) -> inference_pb2.GenerateRequest:
    request = inference_pb2.GenerateRequest(
        request_id="first",
        symbol="BTC",
        window_minutes=60,
        horizon_minutes=30,
        context_size=2000,
        sections=[
            inference_pb2.ContextSection(
                name="current_ohlcv", priority=1, token_budget=300, text="close 100"
            )
        ],
        temperature=0.0,
        seed=42,
    )
    request.window_end.FromNanoseconds(WINDOW_END)
    for name, value in changes.items():
        setattr(request, name, value)
    return request


def _answer() -> inference_pb2.GenerationResult:
    return inference_pb2.GenerationResult(
        model="smol",
        finish_reason=inference_pb2.FINISH_REASON_STOP,
        verdict=verdict_pb2.Verdict(
            direction=verdict_pb2.DIRECTION_BULLISH, confidence=0.7, prediction_pct=0.4
        ),
        text='{"direction": "bullish"}',
    )


def test_round_trip(cache: VerdictCache, model: ModelConfig) -> None:
    key = cache.key_for(model, _request())
    cache.put(key, "BTC", WINDOW_END, _answer(), 0, "")
    entry = cache.get(key, "BTC", WINDOW_END)
    assert entry is not None
    assert entry.result == _answer()


def test_absent_entry_is_a_miss(cache: VerdictCache, model: ModelConfig) -> None:
    assert cache.get(cache.key_for(model, _request()), "BTC", WINDOW_END) is None


def test_entry_sits_in_symbol_and_day_partition(cache: VerdictCache, model: ModelConfig) -> None:
    key = cache.key_for(model, _request())
    path = cache.put(key, "BTC", WINDOW_END, _answer(), 0, "")
    assert path.parent.relative_to(cache.root) == Path("symbol=BTC/date=2019-01-02")


def test_request_id_is_not_in_the_key(cache: VerdictCache, model: ModelConfig) -> None:
    first = cache.key_for(model, _request())
    second = cache.key_for(model, _request(request_id="second"))
    assert first == second


@pytest.mark.parametrize(
    "changes",
    [
        {"symbol": "ETH"},
        {"window_minutes": 30},
        {"horizon_minutes": 60},
        {"context_size": 4000},
    ],
)
def test_context_changes_change_the_key(
    cache: VerdictCache, model: ModelConfig, changes: dict
) -> None:
    assert cache.key_for(model, _request()) != cache.key_for(model, _request(**changes))


def test_section_text_changes_the_key(cache: VerdictCache, model: ModelConfig) -> None:
    changed = _request()
    changed.sections[0].text = "close 100.01"
    assert cache.key_for(model, _request()) != cache.key_for(model, changed)


def test_window_end_changes_the_key(cache: VerdictCache, model: ModelConfig) -> None:
    changed = _request()
    changed.window_end.FromNanoseconds(WINDOW_END + 1)
    assert cache.key_for(model, _request()) != cache.key_for(model, changed)


@pytest.mark.parametrize("changes", [{"temperature": 0.5}, {"seed": 7}, {"max_tokens": 64}])
def test_sampling_changes_the_settings(
    cache: VerdictCache, model: ModelConfig, changes: dict
) -> None:
    first = cache.key_for(model, _request())
    second = cache.key_for(model, _request(**changes))
    assert first.settings_fingerprint != second.settings_fingerprint


@pytest.mark.parametrize("changes", [{"n_ctx": 4096}, {"max_tokens": 128}])
def test_model_settings_change_the_settings(
    cache: VerdictCache, model: ModelConfig, changes: dict
) -> None:
    other = dataclasses.replace(model, **changes)
    first = cache.key_for(model, _request())
    assert first.settings_fingerprint != cache.key_for(other, _request()).settings_fingerprint


def test_weight_is_not_in_the_key(cache: VerdictCache, model: ModelConfig) -> None:
    heavier = dataclasses.replace(model, weight=3.0)
    assert cache.key_for(model, _request()) == cache.key_for(heavier, _request())


def test_model_file_change_changes_the_key(
    tmp_path: Path, model: ModelConfig, model_file: Path
) -> None:
    before = VerdictCache(tmp_path / "lake", {model.name: model_file}).key_for(model, _request())
    data = bytearray(model_file.read_bytes())
    data[-1] ^= 0xFF
    model_file.write_bytes(bytes(data))
    after = VerdictCache(tmp_path / "lake", {model.name: model_file}).key_for(model, _request())
    assert before.model_fingerprint != after.model_fingerprint


def test_model_name_changes_the_key(cache: VerdictCache, model: ModelConfig) -> None:
    renamed = dataclasses.replace(model, name="smol-2")
    assert cache.key_for(model, _request()).digest != cache.key_for(renamed, _request()).digest


def test_file_fingerprint_reads_both_ends(tmp_path: Path) -> None:
    path = tmp_path / "big.bin"
    data = bytearray(3 * FILE_SAMPLE_BYTES)
    path.write_bytes(bytes(data))
    before = file_fingerprint(path)
    data[0] = 1
    path.write_bytes(bytes(data))
    assert file_fingerprint(path) != before


def test_real_model_file_fingerprint(smollm2_path: Path) -> None:
    assert file_fingerprint(smollm2_path) == file_fingerprint(smollm2_path)


def test_worker_code_fingerprint_is_stable() -> None:
    assert worker_code_fingerprint() == worker_code_fingerprint()


def test_damaged_entry_is_a_miss(
    cache: VerdictCache, model: ModelConfig, caplog: pytest.LogCaptureFixture
) -> None:
    key = cache.key_for(model, _request())
    path = cache.put(key, "BTC", WINDOW_END, _answer(), 0, "")
    path.write_bytes(b"not parquet")
    with caplog.at_level(logging.WARNING, logger="server.verdict_cache"):
        assert cache.get(key, "BTC", WINDOW_END) is None
    assert "unreadable" in caplog.text


def test_entry_of_another_key_is_a_miss(cache: VerdictCache, model: ModelConfig) -> None:
    first = cache.key_for(model, _request())
    second = cache.key_for(model, _request(symbol="ETH"))
    source = cache.put(first, "BTC", WINDOW_END, _answer(), 0, "")
    target = cache.path_for(second, "BTC", WINDOW_END)
    target.write_bytes(source.read_bytes())
    assert cache.get(second, "BTC", WINDOW_END) is None


def test_context_fingerprint_ignores_sampling() -> None:
    assert context_fingerprint(_request()) == context_fingerprint(_request(temperature=0.9))


@pytest.mark.parametrize(
    ("kind", "answered", "expected"),
    [
        (ensemble_pb2.FAILURE_KIND_UNSPECIFIED, True, True),
        (ensemble_pb2.FAILURE_KIND_BAD_OUTPUT, False, True),
        (ensemble_pb2.FAILURE_KIND_DEADLINE, False, False),
        (ensemble_pb2.FAILURE_KIND_UNAVAILABLE, False, False),
        (ensemble_pb2.FAILURE_KIND_OVERLOADED, False, False),
        (ensemble_pb2.FAILURE_KIND_CANCELLED, False, False),
        (ensemble_pb2.FAILURE_KIND_ERROR, False, False),
    ],
)
def test_cacheable_outcomes(kind: int, answered: bool, expected: bool) -> None:
    assert cacheable(kind, answered) is expected


def _smollm2(path: Path) -> ModelConfig:
    return ModelConfig(name="smollm2-135m", path=str(path), package=None, weight=1.0)


def _settings(lake: Path, path: Path, max_context_size: int) -> str:
    cache = VerdictCache(lake, {"smollm2-135m": path}, max_context_size)
    return cache.key_for(_smollm2(path), _request()).settings_fingerprint


def test_context_cap_changes_the_settings(tmp_path: Path, smollm2_path: Path) -> None:
    # SmolLM2 was trained with 8,192 tokens: a cap below that is the worker's context window.
    first = _settings(tmp_path, smollm2_path, 1024)
    assert first != _settings(tmp_path, smollm2_path, 2048)


def test_cap_above_training_context_keeps_the_settings(tmp_path: Path, smollm2_path: Path) -> None:
    first = _settings(tmp_path, smollm2_path, 8192)
    assert first == _settings(tmp_path, smollm2_path, 50_000)


def test_damaged_result_is_a_miss(cache: VerdictCache, model: ModelConfig) -> None:
    key = cache.key_for(model, _request())
    path = cache.put(key, "BTC", WINDOW_END, _answer(), 0, "")
    table = pq.read_table(path)
    index = table.schema.get_field_index("result")
    damaged = pa.array([b"\xff\xff\xff"], type=pa.binary())
    pq.write_table(table.set_column(index, "result", damaged), path)
    assert cache.get(key, "BTC", WINDOW_END) is None
