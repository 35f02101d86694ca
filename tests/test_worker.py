"""The Inference worker against the real SmolLM2 model, over gRPC on 127.0.0.1:0."""

from __future__ import annotations

import itertools
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import llama_cpp
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from hypothesis import given
from hypothesis import strategies as st

from quorum.v1 import inference_pb2, inference_pb2_grpc
from server.config import Config, ModelConfig
from tests.worker_fixtures import (
    WORKER_MAX_TOKENS,
    WORKER_N_CTX,
    WORKER_THREADS,
    BackgroundWorker,
    generate_request,
    ohlcv_lines,
)
from worker import gguf_header
from worker.main import run_worker
from worker.model import LoadedModel, ModelLoadError, ModelSettings, load_model, resolve_n_ctx
from worker.streaming import Utf8Assembler

pytestmark = pytest.mark.model


def collect(
    stream: grpc.Call,
) -> tuple[list[inference_pb2.TokenChunk], inference_pb2.GenerationResult]:
    """Read a Generate stream: its token chunks and its one final result."""
    chunks = []
    results = []
    for response in stream:
        if response.HasField("token"):
            chunks.append(response.token)
        else:
            results.append(response.result)
    assert len(results) == 1
    return chunks, results[0]


def wait_until_idle(worker: BackgroundWorker, timeout_s: float = 30.0) -> bool:
    """Wait until no request has the model; return False on timeout."""
    deadline = time.monotonic() + timeout_s
    while worker.server is not None and worker.server.is_generating():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


# Describe and CountTokens


def test_describe_reports_model(inference_stub, worker_model: LoadedModel, smollm2_path: Path):
    description = inference_stub.Describe(inference_pb2.DescribeRequest(), timeout=10)
    assert description.name == "smollm2-135m"
    assert description.family == "llama"
    assert description.parameter_count == llama_cpp.llama_model_n_params(worker_model.llama.model)
    assert description.quantization == "Q4_1"
    assert description.n_ctx_train == 8192
    assert description.n_ctx == WORKER_N_CTX
    assert description.threads == WORKER_THREADS
    assert description.default_max_tokens == WORKER_MAX_TOKENS
    assert description.path == str(smollm2_path)
    assert description.file_bytes == smollm2_path.stat().st_size
    assert description.load_seconds > 0


def test_count_tokens_matches_llama(inference_stub, worker_model: LoadedModel):
    texts = [
        "",
        "BTC closed at 8123.4 after a 2.1% rise.",
        "Ünïcödé € and 😀 across byte tokens",
        "<|im_start|>system\nliteral special-token text stays plain text",
        ohlcv_lines(50),
    ]
    response = inference_stub.CountTokens(inference_pb2.CountTokensRequest(texts=texts), timeout=10)
    expected = [
        len(worker_model.llama.tokenize(text.encode(), add_bos=False, special=False))
        for text in texts
    ]
    assert list(response.counts) == expected


# Generate


def test_generate_streams_verdict(inference_stub):
    chunks, result = collect(inference_stub.Generate(generate_request(), timeout=120))
    assert "".join(chunk.text for chunk in chunks) == result.text
    assert result.model == "smollm2-135m"
    assert result.finish_reason == inference_pb2.FINISH_REASON_STOP
    assert result.HasField("verdict"), result.failure
    assert result.failure == ""
    assert 0.0 <= result.verdict.confidence <= 1.0
    assert result.stats.prompt_tokens + WORKER_MAX_TOKENS <= result.stats.n_ctx
    assert result.stats.completion_tokens == chunks[-1].completion_tokens
    assert [fit.name for fit in result.stats.section_fits] == ["current_ohlcv", "indicators"]


def test_generate_chunk_counts_increase(inference_stub):
    chunks, result = collect(inference_stub.Generate(generate_request(), timeout=120))
    counts = [chunk.completion_tokens for chunk in chunks]
    assert counts == sorted(counts)
    assert counts[-1] <= result.stats.completion_tokens


def test_generate_reuses_prompt_cache(inference_stub):
    request = generate_request(request_id="cache-1")
    collect(inference_stub.Generate(request, timeout=120))
    _, second = collect(inference_stub.Generate(request, timeout=120))
    # llama.cpp re-evaluates the last prompt token to get fresh logits.
    assert second.stats.cached_prompt_tokens == second.stats.prompt_tokens - 1


def test_generate_length_gives_no_verdict(inference_stub):
    _, result = collect(inference_stub.Generate(generate_request(max_tokens=16), timeout=120))
    assert result.finish_reason == inference_pb2.FINISH_REASON_LENGTH
    assert not result.HasField("verdict")
    assert "max_tokens 16" in result.failure
    assert result.stats.completion_tokens == 16


def test_generate_default_max_tokens(inference_stub):
    _, result = collect(inference_stub.Generate(generate_request(max_tokens=0), timeout=120))
    assert result.stats.prompt_tokens + WORKER_MAX_TOKENS <= result.stats.n_ctx
    assert result.stats.completion_tokens <= WORKER_MAX_TOKENS


def test_generate_cuts_large_sections(inference_stub):
    # A large max_tokens leaves about half of n_ctx for the prompt, which keeps the test short.
    max_tokens = WORKER_N_CTX // 2 - 24
    request = generate_request(max_tokens=max_tokens)
    del request.sections[:]
    request.sections.add(name="current_ohlcv", priority=1, token_budget=3000, text=ohlcv_lines(600))
    request.sections.add(
        name="pattern_matching", priority=4, token_budget=5000, text=ohlcv_lines(900)
    )
    request.context_size = 25000
    _, result = collect(inference_stub.Generate(request, timeout=300))
    ohlcv, pattern = result.stats.section_fits
    assert result.stats.prompt_tokens + max_tokens <= WORKER_N_CTX
    assert ohlcv.lines_kept < ohlcv.lines_total
    assert pattern.lines_kept < pattern.lines_total
    assert ohlcv.used_tokens <= ohlcv.budget_tokens


# Cancellation and the model lock


def test_cancel_stops_generation(inference_stub, worker_server: BackgroundWorker, worker_model):
    request = generate_request(request_id="cancel-me")
    stream = inference_stub.Generate(request, timeout=120)
    received = 0
    for response in stream:
        if response.HasField("token"):
            received += 1
            stream.cancel()
            break
    assert wait_until_idle(worker_server)
    # The last sampled token is never evaluated, so the context contains prompt + generated - 1.
    tokens_in_context = worker_model.llama.n_tokens

    _, result = collect(inference_stub.Generate(request, timeout=120))
    generated = tokens_in_context - result.stats.prompt_tokens + 1
    assert result.HasField("verdict"), result.failure
    assert generated < result.stats.completion_tokens
    assert generated <= received + 8


def test_deadline_releases_lock(inference_stub, worker_server: BackgroundWorker):
    with pytest.raises(grpc.RpcError) as raised:
        collect(inference_stub.Generate(generate_request(request_id="late"), timeout=0.2))
    assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert wait_until_idle(worker_server)
    _, result = collect(inference_stub.Generate(generate_request(), timeout=120))
    assert result.HasField("verdict"), result.failure


def test_concurrent_requests_serialized(inference_stub):
    arrivals: dict[str, list[float]] = {"a": [], "b": []}
    results: dict[str, inference_pb2.GenerationResult] = {}

    def consume(name: str) -> None:
        stream = inference_stub.Generate(generate_request(request_id=name), timeout=120)
        for response in stream:
            if response.HasField("token"):
                arrivals[name].append(time.monotonic())
            else:
                results[name] = response.result

    threads = [threading.Thread(target=consume, args=(name,)) for name in arrivals]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=180)

    first, second = sorted(arrivals, key=lambda name: arrivals[name][0])
    assert max(arrivals[first]) < min(arrivals[second])
    assert results[second].stats.queue_ms > 0
    assert results[first].HasField("verdict")
    assert results[second].HasField("verdict")


# Bad input


def _with_section(index: int, **fields: object) -> inference_pb2.GenerateRequest:
    request = generate_request()
    for name, value in fields.items():
        setattr(request.sections[index], name, value)
    return request


BAD_REQUESTS = [
    ("sections[0].name", _with_section(0, name="")),
    ("sections[1].name", _with_section(1, name="current_ohlcv")),
    ("sections[0].name", _with_section(0, name="has space")),
    ("sections[1].priority", _with_section(1, priority=0)),
    ("sections[0].token_budget", _with_section(0, token_budget=-5)),
    ("sections", generate_request(sections=[])),
    ("max_tokens", generate_request(max_tokens=8)),
    ("max_tokens", generate_request(max_tokens=WORKER_N_CTX // 2 + 1)),
    ("temperature", generate_request(temperature=2.5)),
    ("temperature", generate_request(temperature=float("nan"))),
    ("symbol", generate_request(symbol="")),
    ("window_minutes", generate_request(window_minutes=0)),
    ("horizon_minutes", generate_request(horizon_minutes=0)),
    ("context_size", generate_request(context_size=-1)),
]


@pytest.mark.parametrize(("field", "request_message"), BAD_REQUESTS)
def test_bad_input_rejected(inference_stub, field: str, request_message):
    with pytest.raises(grpc.RpcError) as raised:
        collect(inference_stub.Generate(request_message, timeout=30))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert raised.value.details().startswith(field + " ")


def test_missing_window_end_rejected(inference_stub):
    request = generate_request()
    request.ClearField("window_end")
    with pytest.raises(grpc.RpcError) as raised:
        collect(inference_stub.Generate(request, timeout=30))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "window_end" in raised.value.details()


# Health and reflection


def test_health_serving(worker_server: BackgroundWorker):
    with grpc.insecure_channel(worker_server.address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ("quorum.v1.Inference", ""):
            response = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
            assert response.status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_lists_inference(worker_server: BackgroundWorker):
    with grpc.insecure_channel(worker_server.address) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        responses = list(stub.ServerReflectionInfo(iter([request]), timeout=10))
    names = {service.name for service in responses[0].list_services_response.service}
    assert "quorum.v1.Inference" in names
    assert "grpc.health.v1.Health" in names
    assert "grpc.reflection.v1alpha.ServerReflection" in names


# Model loading


def test_gguf_header_context_length(smollm2_path: Path):
    metadata = gguf_header.read_metadata(smollm2_path)
    assert metadata["general.architecture"] == "llama"
    assert gguf_header.context_length(metadata) == 8192


def test_gguf_header_rejects_other_file(tmp_path: Path):
    path = tmp_path / "model.gguf"
    path.write_bytes(b"PK\x03\x04 not a model")
    with pytest.raises(gguf_header.GgufError) as raised:
        gguf_header.read_metadata(path)
    assert "is not a GGUF file" in str(raised.value)


def test_gguf_header_truncated_file(tmp_path: Path, smollm2_path: Path):
    path = tmp_path / "truncated.gguf"
    with smollm2_path.open("rb") as source:
        path.write_bytes(source.read(4096))
    with pytest.raises(gguf_header.GgufError) as raised:
        gguf_header.read_metadata(path)
    assert "ends early" in str(raised.value)


def test_resolve_n_ctx():
    assert resolve_n_ctx(configured=4096, n_ctx_train=8192, max_context_size=50000) == 4096
    assert resolve_n_ctx(configured=0, n_ctx_train=8192, max_context_size=50000) == 8192
    assert resolve_n_ctx(configured=0, n_ctx_train=32768, max_context_size=25000) == 25000


def test_load_rejects_large_max_tokens(smollm2_path: Path):
    settings = ModelSettings("smollm2-135m", smollm2_path, n_ctx=512, default_max_tokens=300)
    with pytest.raises(ModelLoadError) as raised:
        load_model(settings)
    assert "max_tokens 300 exceeds half of n_ctx 512" in str(raised.value)


# Start-up and shutdown of the worker process


def test_missing_model_file_named(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    missing = tmp_path / "absent.gguf"
    config = Config(
        models=(ModelConfig(name="absent", path=str(missing), package=None, weight=1.0),)
    )
    with caplog.at_level(logging.ERROR, logger="worker.main"):
        status = run_worker(config, "absent", "127.0.0.1:0", None)
    assert status == 2
    assert str(missing) in caplog.text


def test_sigterm_drains_stream(tmp_path: Path, smollm2_path: Path):
    config_path = tmp_path / "quorum.yaml"
    config_path.write_text(
        yaml.safe_dump(
            {
                "insecure": True,
                "models": [
                    {
                        "name": "smollm2-135m",
                        "path": str(smollm2_path),
                        "weight": 1.0,
                        "threads": WORKER_THREADS,
                        "n_ctx": WORKER_N_CTX,
                        "max_tokens": WORKER_MAX_TOKENS,
                    }
                ],
            }
        )
    )
    port_file = tmp_path / "worker.port"
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from server import config\n"
        "from worker.main import run_worker\n"
        "sys.exit(run_worker(config.load(sys.argv[1]), 'smollm2-135m', '127.0.0.1:0',"
        " Path(sys.argv[2])))\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", script, str(config_path), str(port_file)],
        cwd=Path(__file__).resolve().parent.parent,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        deadline = time.monotonic() + 120
        while not port_file.exists():
            assert process.poll() is None
            assert time.monotonic() < deadline
            time.sleep(0.05)
        address = f"127.0.0.1:{int(port_file.read_text())}"
        with grpc.insecure_channel(address) as channel:
            stub = inference_pb2_grpc.InferenceStub(channel)
            stream = stub.Generate(generate_request(), timeout=120)
            first = next(stream)
            process.send_signal(signal.SIGTERM)
            rest = list(stream)
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert first.HasField("token")
    assert rest[-1].HasField("result")
    assert rest[-1].result.HasField("verdict")


# Streaming UTF-8


def test_streaming_holds_partial_character():
    euro = "€".encode()
    assembler = Utf8Assembler()
    assert assembler.feed(b"price " + euro[:2]) == "price "
    assert assembler.pending_bytes == 2
    assert assembler.feed(euro[2:] + b"5") == "€5"
    assert assembler.pending_bytes == 0
    assert assembler.finish() == ""


@given(
    text=st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40),
    cuts=st.lists(st.integers(min_value=0, max_value=200), max_size=12),
)
def test_streaming_any_split_joins(text: str, cuts: list[int]):
    data = text.encode()
    bounds = sorted({0, len(data), *(cut for cut in cuts if cut <= len(data))})
    assembler = Utf8Assembler()
    outputs = [assembler.feed(data[start:end]) for start, end in itertools.pairwise(bounds)]
    outputs.append(assembler.finish())
    assert "".join(outputs) == text


def test_streaming_truncated_end_raises():
    assembler = Utf8Assembler()
    assembler.feed("😀".encode()[:3])
    with pytest.raises(UnicodeDecodeError):
        assembler.finish()


def test_streaming_invalid_byte_raises():
    assembler = Utf8Assembler()
    with pytest.raises(UnicodeDecodeError):
        assembler.feed(b"ok \xff")


# Streaming with the model's own byte tokens


def test_streaming_real_byte_tokens(worker_model: LoadedModel):
    text = "naïve 😀 café €5 ✓ 日本"
    tokens = worker_model.tokenize_text(text)
    pieces = [worker_model.token_bytes(token) for token in tokens]
    assembler = Utf8Assembler()
    outputs = [assembler.feed(piece) for piece in pieces]
    outputs.append(assembler.finish())
    assert "".join(outputs) == text
    assert any(_splits_character(piece) for piece in pieces)


def _splits_character(piece: bytes) -> bool:
    try:
        piece.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False
