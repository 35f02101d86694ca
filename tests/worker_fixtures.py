"""Worker fixtures: the real SmolLM2 model and a real Inference server on 127.0.0.1:0.

The server runs on its own event loop in a background thread, so tests call it with the
synchronous gRPC client, the way another process would.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pytest

from quorum.v1 import inference_pb2, inference_pb2_grpc
from worker.main import WorkerServer
from worker.model import LoadedModel, ModelSettings, load_model

# Small enough that a test prompt evaluates in about a second on two cores.
WORKER_N_CTX = 2048
WORKER_MAX_TOKENS = 128
WORKER_THREADS = 2
WINDOW_END = datetime(2019, 6, 3, 12, 0, tzinfo=UTC)

T = TypeVar("T")


class BackgroundWorker:
    """A WorkerServer running on an event loop in a daemon thread."""

    def __init__(self, model: LoadedModel, grace_s: float = 5.0, max_queue: int = 4) -> None:
        self._model = model
        self._grace_s = grace_s
        self._max_queue = max_queue
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.server: WorkerServer | None = None
        self.address = ""

    def run(self, coroutine: Coroutine[Any, Any, T], timeout_s: float = 60.0) -> T:
        """Run a coroutine on the worker's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout_s)

    def start(self) -> str:
        self._thread.start()

        async def start_server() -> WorkerServer:
            server = WorkerServer(self._model, "127.0.0.1:0", self._grace_s, self._max_queue)
            await server.start()
            return server

        self.server = self.run(start_server())
        self.address = f"127.0.0.1:{self.server.port}"
        return self.address

    def stop(self) -> None:
        if self.server is not None:
            self.run(self.server.stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)
        self._loop.close()


def ohlcv_lines(count: int, start_price: float = 8000.0) -> str:
    """Return `count` lines of 30-minute OHLCV text, one bar per line."""
    lines = []
    for index in range(count):
        price = start_price + 3.5 * index
        lines.append(
            f"bar {index:05d} open {price:.1f} high {price + 9.2:.1f} low {price - 7.4:.1f}"
            f" close {price + 2.1:.1f} volume {1200 + index}"
        )
    return "\n".join(lines)


def generate_request(**overrides: Any) -> inference_pb2.GenerateRequest:
    """A small valid request: two short sections, greedy sampling, max_tokens 128."""
    request = inference_pb2.GenerateRequest(
        request_id="test-request",
        symbol="BTC",
        window_minutes=60,
        horizon_minutes=30,
        context_size=2000,
        max_tokens=WORKER_MAX_TOKENS,
        temperature=0.0,
        seed=7,
        sections=[
            inference_pb2.ContextSection(
                name="current_ohlcv", priority=1, token_budget=600, text=ohlcv_lines(4)
            ),
            inference_pb2.ContextSection(
                name="indicators", priority=3, token_budget=200, text="rsi_14 61.2\nmacd 4.1"
            ),
        ],
    )
    request.window_end.FromDatetime(WINDOW_END)
    for name, value in overrides.items():
        if isinstance(value, list):
            field = getattr(request, name)
            del field[:]
            field.extend(value)
        else:
            setattr(request, name, value)
    return request


@pytest.fixture(scope="module")
def worker_model(smollm2_path: Path) -> Iterator[LoadedModel]:
    settings = ModelSettings(
        name="smollm2-135m",
        path=smollm2_path,
        n_ctx=WORKER_N_CTX,
        threads=WORKER_THREADS,
        default_max_tokens=WORKER_MAX_TOKENS,
    )
    model = load_model(settings)
    yield model
    model.close()


@pytest.fixture(scope="module")
def worker_server(worker_model: LoadedModel) -> Iterator[BackgroundWorker]:
    worker = BackgroundWorker(worker_model)
    worker.start()
    yield worker
    worker.stop()


@pytest.fixture()
def inference_stub(worker_server: BackgroundWorker) -> Iterator[inference_pb2_grpc.InferenceStub]:
    with grpc.insecure_channel(worker_server.address) as channel:
        yield inference_pb2_grpc.InferenceStub(channel)
