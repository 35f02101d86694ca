"""Fan-out: send one context to every worker over server-streaming gRPC and gather outcomes.

Every model runs as its own task within its host's core budget. A model that fails (worker
down, deadline, bad output) yields a failed outcome with its reason and never stops the
others.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

import grpc
from opentelemetry import trace
from opentelemetry.context import Context as TraceContext
from prometheus_client import Gauge

from quorum.v1 import ensemble_pb2, inference_pb2, inference_pb2_grpc
from server.config import ModelConfig
from server.dispatch import CoreBudget, DispatchPlan, Slot
from server.logs import bound_fields
from server.tracing import child_span, context_with, inject_metadata

log = logging.getLogger(__name__)

EventSink = Callable[[ensemble_pb2.AnalysisEvent], Awaitable[None]]

# Generous message limits: a 50,000-token context is a few hundred kilobytes of text.
CHANNEL_OPTIONS = (
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
)

_FAILURE_BY_CODE = {
    grpc.StatusCode.UNAVAILABLE: ensemble_pb2.FAILURE_KIND_UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED: ensemble_pb2.FAILURE_KIND_DEADLINE,
    grpc.StatusCode.CANCELLED: ensemble_pb2.FAILURE_KIND_CANCELLED,
}


@dataclass(frozen=True)
class FanOutTelemetry:
    """Telemetry targets of a fan-out: spans under `parent`, waiting models on `queue_depth`."""

    tracer: trace.Tracer = field(default_factory=trace.NoOpTracer)
    parent: TraceContext | None = None
    # Labelled by host: models waiting for that host's core budget.
    queue_depth: Gauge | None = None


@dataclass(frozen=True)
class ModelOutcome:
    model: ModelConfig
    address: str
    result: inference_pb2.GenerationResult | None
    failure_kind: int
    failure: str
    elapsed_ms: float
    queued_ms: float = 0.0

    @property
    def answered(self) -> bool:
        return self.result is not None and self.result.HasField("verdict")


class WorkerClients:
    """One gRPC channel per model worker."""

    def __init__(self, addresses: Mapping[str, str]) -> None:
        self.addresses = dict(addresses)
        # Opened on first use, inside the event loop that serves the calls.
        self._channels: dict[str, grpc.aio.Channel] = {}

    def channel(self, name: str) -> grpc.aio.Channel:
        if name not in self._channels:
            self._channels[name] = grpc.aio.insecure_channel(
                self.addresses[name], options=CHANNEL_OPTIONS
            )
        return self._channels[name]

    def stub(self, name: str) -> inference_pb2_grpc.InferenceStub:
        return inference_pb2_grpc.InferenceStub(self.channel(name))

    async def close(self) -> None:
        await asyncio.gather(*(channel.close() for channel in self._channels.values()))


async def fan_out(
    plan: DispatchPlan,
    clients: WorkerClients,
    request: inference_pb2.GenerateRequest,
    timeout_s: float,
    emit: EventSink,
    on_outcome: Callable[[ModelOutcome], Awaitable[None]],
    telemetry: FanOutTelemetry | None = None,
) -> list[ModelOutcome]:
    """Run every slot of the plan; return outcomes in the plan's order.

    `emit` receives each model's start and token events; `on_outcome` each model's outcome
    as soon as it is known. Each model's call is a span under `telemetry.parent`, and its
    trace context goes to the worker in the call's metadata.
    """
    telemetry = telemetry or FanOutTelemetry()
    tasks = [
        asyncio.create_task(
            _run_slot(slot, plan, clients, request, timeout_s, emit, on_outcome, telemetry)
        )
        for slot in plan.slots
    ]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


async def _run_slot(
    slot: Slot,
    plan: DispatchPlan,
    clients: WorkerClients,
    template: inference_pb2.GenerateRequest,
    timeout_s: float,
    emit: EventSink,
    on_outcome: Callable[[ModelOutcome], Awaitable[None]],
    telemetry: FanOutTelemetry,
) -> ModelOutcome:
    name = slot.model.name
    attributes = {"quorum.model": name, "rpc.system": "grpc", "rpc.method": "Generate"}
    # This runs in its own task, so the model's log field stays with this model's lines.
    with (
        bound_fields(model=name),
        child_span(
            telemetry.tracer,
            f"generate {name}",
            telemetry.parent,
            attributes,
            kind=trace.SpanKind.CLIENT,
        ) as span,
    ):
        outcome = await _run_slot_traced(
            slot, plan, clients, template, timeout_s, emit, telemetry, span
        )
        _describe_outcome(span, outcome)
    await on_outcome(outcome)
    return outcome


async def _run_slot_traced(
    slot: Slot,
    plan: DispatchPlan,
    clients: WorkerClients,
    template: inference_pb2.GenerateRequest,
    timeout_s: float,
    emit: EventSink,
    telemetry: FanOutTelemetry,
    span: trace.Span,
) -> ModelOutcome:
    budget = plan.budgets[slot.host]
    name = slot.model.name
    queued = time.monotonic()
    await _acquire_cores(budget, slot, telemetry.queue_depth)
    started = time.monotonic()
    span.add_event("cores_acquired", {"quorum.queued_ms": (started - queued) * 1000.0})
    metadata = inject_metadata(context_with(span, telemetry.parent))
    try:
        await emit(
            ensemble_pb2.AnalysisEvent(
                model_started=ensemble_pb2.ModelStarted(model=name, position=slot.position)
            )
        )
        request = inference_pb2.GenerateRequest()
        request.CopyFrom(template)
        request.max_tokens = slot.model.max_tokens
        outcome = await _generate(slot, clients, request, timeout_s, emit, started, metadata)
        return dataclasses.replace(outcome, queued_ms=(started - queued) * 1000.0)
    finally:
        budget.release(slot.cores)


async def _acquire_cores(budget: CoreBudget, slot: Slot, queue_depth: Gauge | None) -> None:
    if queue_depth is None:
        await budget.acquire(slot.cores)
        return
    waiting = queue_depth.labels(slot.host)
    waiting.inc()
    try:
        await budget.acquire(slot.cores)
    finally:
        waiting.dec()


def _describe_outcome(span: trace.Span, outcome: ModelOutcome) -> None:
    span.set_attribute("quorum.queued_ms", outcome.queued_ms)
    span.set_attribute("quorum.elapsed_ms", outcome.elapsed_ms)
    span.set_attribute("quorum.answered", outcome.answered)
    if outcome.result is not None:
        stats = outcome.result.stats
        span.set_attribute("gen_ai.usage.input_tokens", stats.prompt_tokens)
        span.set_attribute("gen_ai.usage.output_tokens", stats.completion_tokens)
        span.set_attribute("quorum.time_to_first_token_ms", stats.time_to_first_token_ms)
    if not outcome.answered:
        span.set_attribute("quorum.failure", outcome.failure)
        span.set_status(trace.Status(trace.StatusCode.ERROR, outcome.failure))


async def _generate(
    slot: Slot,
    clients: WorkerClients,
    request: inference_pb2.GenerateRequest,
    timeout_s: float,
    emit: EventSink,
    started: float,
    trace_metadata: tuple[tuple[str, str], ...] = (),
) -> ModelOutcome:
    name = slot.model.name
    address = clients.addresses[name]
    metadata = (("x-request-id", request.request_id), *trace_metadata)
    call = clients.stub(name).Generate(request, timeout=timeout_s, metadata=metadata)
    result: inference_pb2.GenerationResult | None = None
    try:
        async for response in call:
            if response.HasField("token"):
                await emit(
                    ensemble_pb2.AnalysisEvent(
                        tokens=ensemble_pb2.ModelTokens(
                            model=name,
                            text=response.token.text,
                            completion_tokens=response.token.completion_tokens,
                        )
                    )
                )
            else:
                result = response.result
    except grpc.aio.AioRpcError as error:
        kind = _FAILURE_BY_CODE.get(error.code(), ensemble_pb2.FAILURE_KIND_ERROR)
        reason = f"{error.code().name}: {error.details()}"
        if error.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
            reason += f" (no verdict within max_processing_time_seconds {timeout_s:g} s)"
        log.warning("Model %s at %s failed for %s: %s", name, address, request.request_id, reason)
        return _failed(slot, address, result, kind, reason, started)
    except asyncio.CancelledError:
        call.cancel()
        raise

    if result is None:
        reason = "the stream ended without a final result"
        return _failed(slot, address, None, ensemble_pb2.FAILURE_KIND_ERROR, reason, started)
    if not result.HasField("verdict"):
        reason = result.failure or "no verdict in the final result"
        log.warning("Model %s gave no verdict for %s: %s", name, request.request_id, reason)
        return _failed(slot, address, result, ensemble_pb2.FAILURE_KIND_BAD_OUTPUT, reason, started)
    return ModelOutcome(
        slot.model, address, result, ensemble_pb2.FAILURE_KIND_UNSPECIFIED, "", _ms_since(started)
    )


def _failed(
    slot: Slot,
    address: str,
    result: inference_pb2.GenerationResult | None,
    kind: int,
    reason: str,
    started: float,
) -> ModelOutcome:
    return ModelOutcome(slot.model, address, result, kind, reason, _ms_since(started))


def _ms_since(started: float) -> float:
    return (time.monotonic() - started) * 1000.0
