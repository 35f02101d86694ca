"""A coordinator and a worker in this process, each with a fresh metrics registry and an
in-memory span exporter, serving real gRPC on 127.0.0.1:0."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

from server import config as config_module
from server.observability import Observability
from server.service import serve
from worker.main import WorkerServer
from worker.model import LoadedModel

T = TypeVar("T")


class LoopThread:
    """An asyncio event loop running in a daemon thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T], timeout_s: float = 60.0) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout_s)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=30)
        self.loop.close()


class Observed:
    """An Observability on a fresh registry whose spans land in memory."""

    def __init__(self, service_name: str) -> None:
        self.registry = CollectorRegistry()
        self.spans = InMemorySpanExporter()
        self.observability = Observability(
            service_name,
            registry=self.registry,
            span_processors=[SimpleSpanProcessor(self.spans)],
        )

    def value(self, name: str, **labels: str) -> float | None:
        return self.registry.get_sample_value(name, labels)

    def settled_value(self, name: str, timeout_s: float = 10.0, **labels: str) -> float | None:
        """Return the sample once it exists. The server counts a call after the client has
        its response, so a test that reads at once can run ahead of the count."""
        deadline = time.monotonic() + timeout_s
        while (value := self.value(name, **labels)) is None and time.monotonic() < deadline:
            time.sleep(0.02)
        return value


class InProcessWorker:
    def __init__(self, model: LoadedModel) -> None:
        self.observed = Observed("quorum-worker-test")
        self._thread = LoopThread()
        observability = self.observed.observability

        async def start() -> WorkerServer:
            # A grpc.aio server belongs to the loop it is created in.
            server = WorkerServer(model, "127.0.0.1:0", 5.0, observability=observability)
            await server.start()
            return server

        self._server = self._thread.run(start())
        self.address = f"127.0.0.1:{self._server.port}"
        self.stopped = False

    def stop(self) -> None:
        if not self.stopped:
            self._thread.run(self._server.stop())
            self._thread.close()
            self.stopped = True


class InProcessCoordinator:
    def __init__(self, config_path: Path, worker_address: str, directory: Path) -> None:
        self.observed = Observed("quorum-coordinator-test")
        self._thread = LoopThread()
        self._stop = asyncio.Event()
        config = config_module.load(config_path)
        port_file = directory / "coordinator.port"
        addresses = {model.name: worker_address for model in config.models}
        self._task = asyncio.run_coroutine_threadsafe(
            serve(
                config,
                "127.0.0.1:0",
                addresses,
                port_file,
                self._stop,
                self.observed.observability,
            ),
            self._thread.loop,
        )
        self.address = f"127.0.0.1:{_wait_for_port(port_file, self._task)}"

    def stop(self) -> None:
        self._thread.loop.call_soon_threadsafe(self._stop.set)
        self._task.result(60)
        self._thread.close()


def _wait_for_port(port_file: Path, task: Any, timeout_s: float = 120.0) -> int:
    waited = 0.0
    while not port_file.exists():
        if task.done():
            task.result()
        threading.Event().wait(0.05)
        waited += 0.05
        if waited > timeout_s:
            raise TimeoutError(f"the coordinator wrote no port file in {timeout_s:.0f} s")
    return int(port_file.read_text().strip())
