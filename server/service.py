"""The coordinator's `Ensemble` gRPC service and its server lifecycle."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from quorum.v1 import ensemble_pb2, ensemble_pb2_grpc, inference_pb2
from server.config import Config, check_model_files, message_options
from server.cycle import Cycle, CycleDependencies
from server.fanout import WorkerClients
from server.health_listener import start_health_listener
from server.market_store import MarketStore
from server.metrics import CoordinatorMetrics
from server.observability import Observability
from server.port_file import write_port_file
from server.result_store import ResultStore
from server.security import (
    coordinator_interceptors,
    coordinator_server_security,
    worker_channel_security,
)
from server.stop_signals import wait_for_stop
from server.tokenizer import ReferenceTokenizer
from server.tracing import extract_metadata
from server.validation import InvalidArgument

log = logging.getLogger(__name__)

SERVICE_NAME = ensemble_pb2.DESCRIPTOR.services_by_name["Ensemble"].full_name
DESCRIBE_TIMEOUT_S = 5.0


class EnsembleServicer(ensemble_pb2_grpc.EnsembleServicer):
    def __init__(self, cycle: Cycle, workers: WorkerClients, config: Config) -> None:
        self.cycle = cycle
        self.workers = workers
        self.config = config
        self.metrics = cycle.metrics

    async def Analyze(
        self, request: ensemble_pb2.AnalyzeRequest, context: grpc.aio.ServicerContext
    ) -> ensemble_pb2.AnalysisResult:
        result = ensemble_pb2.AnalysisResult()
        async for event in self._events(request, context):
            if event.HasField("result"):
                result = event.result
        return result

    async def AnalyzeStream(
        self, request: ensemble_pb2.AnalyzeRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[ensemble_pb2.AnalysisEvent]:
        async for event in self._events(request, context):
            yield event

    async def _events(
        self, request: ensemble_pb2.AnalyzeRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[ensemble_pb2.AnalysisEvent]:
        trace_parent = extract_metadata(context.invocation_metadata())
        try:
            async for event in self.cycle.run(request, trace_parent, context.time_remaining()):
                yield event
        except InvalidArgument as error:
            self.metrics.cycle_errors.labels("invalid_argument").inc()
            log.info("Rejected Analyze for %r: %s", request.symbol, error)
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
        except asyncio.CancelledError:
            self.metrics.cycle_errors.labels("cancelled").inc()
            # The client went away, its deadline passed, or the server's drain ended.
            log.info(
                "Analyze for %s at %s cancelled (client gone, deadline passed or shutdown)",
                request.symbol,
                request.window_end.ToJsonString(),
            )
            raise
        except Exception as error:
            # The RPC boundary: logged once here with its traceback, the client gets the reason.
            self.metrics.cycle_errors.labels("error").inc()
            log.exception("Analyze for %s failed", request.symbol)
            await context.abort(grpc.StatusCode.INTERNAL, f"analysis failed: {error}")

    async def ListModels(
        self, request: ensemble_pb2.ListModelsRequest, context: grpc.aio.ServicerContext
    ) -> ensemble_pb2.ListModelsResponse:
        statuses = await asyncio.gather(
            *(self._model_status(model.name, model.weight) for model in self.config.models)
        )
        return ensemble_pb2.ListModelsResponse(models=statuses)

    async def _model_status(self, name: str, weight: float) -> ensemble_pb2.ModelStatus:
        model = self.config.model(name)
        status = ensemble_pb2.ModelStatus(
            name=name,
            address=self.workers.addresses[name],
            base_weight=weight,
            large=model.is_large(self.config.thresholds.large_model_min_weight),
        )
        try:
            description = await self.workers.stub(name).Describe(
                inference_pb2.DescribeRequest(), timeout=DESCRIBE_TIMEOUT_S
            )
        except grpc.aio.AioRpcError as error:
            status.error = f"{error.code().name}: {error.details()}"
            log.warning("Describe of model %s at %s failed: %s", name, status.address, status.error)
            return status
        status.healthy = True
        status.description.CopyFrom(description)
        return status


def worker_addresses(
    config: Config, overrides: Mapping[str, Sequence[str]]
) -> dict[str, tuple[str, ...]]:
    """Return each model's worker addresses, replicas included.

    A model named in `overrides` uses those addresses instead of its configured address and
    replicas.
    """
    unknown = sorted(set(overrides) - {model.name for model in config.models})
    if unknown:
        raise ValueError(f"--worker names models that are not configured: {', '.join(unknown)}")
    addresses = {}
    for model in config.models:
        chosen = tuple(overrides.get(model.name, ())) or model.addresses
        for address in chosen:
            if address.endswith(":0"):
                raise ValueError(
                    f"model {model.name} has no worker port (address {address});"
                    " pass --worker NAME=HOST:PORT or use `quorum up`"
                )
        addresses[model.name] = chosen
    return addresses


def build_cycle(
    config: Config, addresses: Mapping[str, Sequence[str]], observability: Observability
) -> tuple[Cycle, WorkerClients]:
    workers = WorkerClients(
        addresses, worker_channel_security(config.security), config.max_message_bytes
    )
    files = check_model_files(config)
    tokenizer_name = config.context_tokenizer_model or config.models[0].name
    tokenizer = ReferenceTokenizer(tokenizer_name, files[tokenizer_name])
    lake = Path(config.data_lake)
    deps = CycleDependencies(
        config=config,
        market=MarketStore(lake),
        results=ResultStore(lake),
        workers=workers,
        tokenizer=tokenizer,
        tracer=observability.tracer,
        metrics=CoordinatorMetrics(observability.registry),
    )
    return Cycle(deps), workers


async def serve(
    config: Config,
    listen: str,
    addresses: Mapping[str, Sequence[str]],
    port_file: Path | None = None,
    stop: asyncio.Event | None = None,
    observability: Observability | None = None,
) -> None:
    """Serve the Ensemble API until `stop` is set or SIGTERM/SIGINT arrives.

    `observability` supplies the metrics registry, its `/metrics` port and the tracer; by
    default metrics stay in memory and no spans are exported.
    """
    observability = observability or Observability("quorum-coordinator")
    try:
        await _serve(config, listen, addresses, port_file, stop, observability)
    finally:
        observability.close()


async def _serve(
    config: Config,
    listen: str,
    addresses: Mapping[str, Sequence[str]],
    port_file: Path | None,
    stop: asyncio.Event | None,
    observability: Observability,
) -> None:
    # Credentials and the token file are checked before the tokenizer model loads.
    security = coordinator_server_security(config.security)
    security.check_listen(listen)
    cycle, workers = build_cycle(config, addresses, observability)
    # Metrics and traces first, so they also see the calls the token check refuses.
    interceptors = [*observability.interceptors(), *coordinator_interceptors(config.security)]
    server = grpc.aio.server(
        options=message_options(config.max_message_bytes), interceptors=interceptors
    )
    ensemble_pb2_grpc.add_EnsembleServicer_to_server(
        EnsembleServicer(cycle, workers, config), server
    )
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    port = security.bind(server, listen)
    if port == 0:
        raise OSError(f"could not bind the coordinator to {listen}")
    observability.start_metrics_server(listen)
    await server.start()
    health_listener = None
    if observability.options.health_port is not None:
        health_listener, _ = await start_health_listener(
            health_servicer, listen, observability.options.health_port
        )
    workers.watch_health()
    for service in ("", SERVICE_NAME):
        await health_servicer.set(service, health_pb2.HealthCheckResponse.SERVING)
    host = listen.rpartition(":")[0]
    log.info("Coordinator serving on %s:%d with %d models", host, port, len(addresses))
    if port_file is not None:
        write_port_file(port_file, port)

    await wait_for_stop(stop or asyncio.Event())

    grace_s = config.shutdown_grace_seconds
    log.info("Coordinator stopping: NOT_SERVING, draining for up to %.0f s", grace_s)
    await health_servicer.enter_graceful_shutdown()
    await server.stop(grace_s)
    if health_listener is not None:
        await health_listener.stop(None)
    await workers.close()
    log.info("Coordinator stopped")
