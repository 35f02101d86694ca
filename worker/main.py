"""Run one model's worker: the Inference service with gRPC health and server reflection.

Start-up loads the model first and reports SERVING only then; the bound port is written to
the port file (atomically) once the server accepts calls. On SIGTERM or SIGINT the worker
reports NOT_SERVING, stops accepting calls, lets in-flight streams finish for a grace period,
cancels what is left, and exits.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from quorum.v1 import inference_pb2_grpc
from server.config import DEFAULT_MAX_MESSAGE_BYTES, Config, ConfigError, message_options
from server.health_listener import start_health_listener
from server.model_files import ModelFileError
from server.observability import Observability, ObservabilityOptions
from server.port_file import write_port_file
from server.security import ServerSecurity, worker_server_security
from server.stop_signals import wait_for_stop
from worker.metrics import WorkerMetrics
from worker.model import LoadedModel, ModelLoadError, ModelSettings, load_model
from worker.service import DEFAULT_MAX_QUEUE, SERVICE_NAME, InferenceService

log = logging.getLogger(__name__)

# Kubernetes' default terminationGracePeriodSeconds, so a pod drains before it is killed.
DEFAULT_GRACE_S = 30.0
EXIT_OK = 0
EXIT_START_FAILED = 2


class WorkerStartError(RuntimeError):
    """The worker's server could not bind its address."""


class WorkerServer:
    """A grpc.aio server holding one model's Inference service, health and reflection.

    `security` None serves plaintext on loopback only.
    """

    def __init__(
        self,
        model: LoadedModel,
        listen: str,
        grace_s: float = DEFAULT_GRACE_S,
        max_queue: int = DEFAULT_MAX_QUEUE,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        security: ServerSecurity | None = None,
        observability: Observability | None = None,
    ) -> None:
        self.model = model
        self.listen = listen
        self.grace_s = grace_s
        self.security = security or ServerSecurity.loopback_plaintext()
        self.port = 0
        self.observability = observability or Observability(f"quorum-worker-{model.info.name}")
        self.metrics = WorkerMetrics(self.observability.registry, model.info.name)
        self._server = grpc.aio.server(
            options=message_options(max_message_bytes),
            interceptors=self.observability.interceptors(),
        )
        self._service = InferenceService(model, max_queue, self.metrics, self.observability.tracer)
        self._health = health.aio.HealthServicer()
        self._health_listener: grpc.aio.Server | None = None
        self.health_port = 0

    async def start(self) -> int:
        """Bind, start serving and report SERVING; return the bound port."""
        inference_pb2_grpc.add_InferenceServicer_to_server(self._service, self._server)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        reflection.enable_server_reflection(
            (
                SERVICE_NAME,
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                reflection.SERVICE_NAME,
            ),
            self._server,
        )
        try:
            self.port = self.security.bind(self._server, self.listen)
        except RuntimeError as error:
            raise WorkerStartError(f"cannot listen on {self.listen}: {error}") from None
        if self.port == 0:
            raise WorkerStartError(f"cannot listen on {self.listen}")
        # The model is loaded before the server starts, so it serves from the first call.
        for service in (SERVICE_NAME, ""):
            await self._health.set(service, health_pb2.HealthCheckResponse.SERVING)
        # Bound before the gRPC server starts, so a taken metrics port stops nothing running.
        self.observability.start_metrics_server(self.listen)
        await self._server.start()
        health_port = self.observability.options.health_port
        if health_port is not None:
            self._health_listener, self.health_port = await start_health_listener(
                self._health, self.listen, health_port
            )
        log.info(
            "Worker for model %s serving on %s (port %d)",
            self.model.info.name,
            self.listen,
            self.port,
        )
        return self.port

    def is_generating(self) -> bool:
        """Return whether a request has the model, until its generation thread has stopped."""
        return self._service.is_generating()

    def waiting(self) -> int:
        """Return how many requests wait for the model behind the one generating."""
        return self._service.waiting

    async def stop(self) -> None:
        """Report NOT_SERVING, drain in-flight streams for grace_s, then stop the model thread."""
        log.info(
            "Worker for model %s stopping; draining for up to %.0f s",
            self.model.info.name,
            self.grace_s,
        )
        await self._health.enter_graceful_shutdown()
        await self._server.stop(self.grace_s)
        if self._health_listener is not None:
            await self._health_listener.stop(None)
        self._service.close()
        self.observability.close()
        log.info("Worker for model %s stopped", self.model.info.name)


async def serve(
    model: LoadedModel,
    listen: str,
    port_file: Path | None = None,
    grace_s: float = DEFAULT_GRACE_S,
    stop: asyncio.Event | None = None,
    max_queue: int = DEFAULT_MAX_QUEUE,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    security: ServerSecurity | None = None,
    observability: Observability | None = None,
) -> None:
    """Serve `model` on `listen` until SIGTERM, SIGINT or `stop` is set, then drain and stop.

    Signal handlers are installed only when serve runs in the main thread.
    """
    server = WorkerServer(
        model, listen, grace_s, max_queue, max_message_bytes, security, observability
    )
    port = await server.start()
    if port_file is not None:
        write_port_file(port_file, port)
    try:
        await wait_for_stop(stop or asyncio.Event())
    finally:
        await server.stop()


def run_worker(
    config: Config,
    model_name: str,
    listen: str | None,
    port_file: Path | None,
    options: ObservabilityOptions | None = None,
) -> int:
    """Load `model_name` from `config` and serve it; return the process exit status.

    `listen` None uses the model's configured address. A missing model file, a model that
    fails to load, invalid TLS settings or an address (gRPC or metrics) that cannot be bound
    are logged and give exit status 2. TLS settings are checked before the model loads, so
    that a rejected listen address fails at once.
    """
    try:
        settings = ModelSettings.from_config(config, model_name)
        address = listen or config.model(model_name).address
        security = worker_server_security(config.security)
        security.check_listen(address)
        model = load_model(settings)
    except (ConfigError, ModelFileError, ModelLoadError) as error:
        log.error("Worker for model %s cannot start: %s", model_name, error)
        return EXIT_START_FAILED
    observability = Observability(f"quorum-worker-{model_name}", options)
    try:
        asyncio.run(
            serve(
                model,
                address,
                port_file,
                grace_s=config.shutdown_grace_seconds,
                max_queue=config.model(model_name).max_queue,
                max_message_bytes=config.max_message_bytes,
                security=security,
                observability=observability,
            )
        )
    except (WorkerStartError, OSError) as error:
        log.error("Worker for model %s cannot start: %s", model_name, error)
        return EXIT_START_FAILED
    finally:
        model.close()
    return EXIT_OK
