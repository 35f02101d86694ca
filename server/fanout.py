"""Fan-out: send one context to every worker over server-streaming gRPC and gather outcomes.

Every model runs as its own task within its host's core budget. A model that fails (worker
down, deadline, bad output) yields a failed outcome with its reason and never stops the
others.

Deadlines: each call gets the model's time limit, cut to what is left of the cycle's
deadline. A model still queued for cores when the cycle's deadline passes fails without a
call. A call whose worker is unavailable or overloaded (UNAVAILABLE, RESOURCE_EXHAUSTED)
before its first token is retried with backoff on the model's next replica, round the list,
for up to RETRY_WINDOW_S and within the deadline. Nothing is retried after the first token,
because the tokens already streamed to the client belong to that attempt.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field

import grpc
from opentelemetry import trace
from opentelemetry.context import Context as TraceContext
from prometheus_client import Gauge

from quorum.v1 import ensemble_pb2, inference_pb2, inference_pb2_grpc, verdict_pb2
from server.config import DEFAULT_MAX_MESSAGE_BYTES, ModelConfig, message_options
from server.dispatch import CoreBudget, DispatchPlan, Slot
from server.logs import bound_fields
from server.security import ChannelSecurity
from server.tracing import child_span, context_with, inject_metadata
from server.worker_health import WorkerHealth

log = logging.getLogger(__name__)

EventSink = Callable[[ensemble_pb2.AnalysisEvent], Awaitable[None]]

RETRY_BACKOFF_S = 0.25
RETRY_BACKOFF_MAX_S = 2.0
# How long retryable failures of one model are retried, across its replicas: longer than
# RECONNECT_MAX_S, so a worker restarted on its address is reached within the window.
RETRY_WINDOW_S = 8.0
RECONNECT_MAX_S = 5.0
# A restarted worker is reconnected within seconds, not after gRPC's default two minutes.
RECONNECT_OPTIONS = (
    ("grpc.initial_reconnect_backoff_ms", 500),
    ("grpc.max_reconnect_backoff_ms", int(RECONNECT_MAX_S * 1000)),
)
CHANNEL_OPTIONS = message_options(DEFAULT_MAX_MESSAGE_BYTES) + RECONNECT_OPTIONS

_FAILURE_BY_CODE = {
    grpc.StatusCode.UNAVAILABLE: ensemble_pb2.FAILURE_KIND_UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED: ensemble_pb2.FAILURE_KIND_DEADLINE,
    grpc.StatusCode.CANCELLED: ensemble_pb2.FAILURE_KIND_CANCELLED,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ensemble_pb2.FAILURE_KIND_OVERLOADED,
}
_VERDICT_DIRECTIONS = (
    verdict_pb2.DIRECTION_BULLISH,
    verdict_pb2.DIRECTION_BEARISH,
    verdict_pb2.DIRECTION_NEUTRAL,
)
# Codes that mean "this worker cannot take the call now", worth another replica.
_RETRYABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED)


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
    # The worker could not take the call (unavailable or overloaded); another may.
    retryable: bool = False

    @property
    def answered(self) -> bool:
        return self.result is not None and self.result.HasField("verdict")


class WorkerClients:
    """One gRPC channel per worker address; a model has one address or several replicas.

    `security` None is plaintext on loopback only.
    """

    def __init__(
        self,
        addresses: Mapping[str, str | Sequence[str]],
        security: ChannelSecurity | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        self._options = message_options(max_message_bytes) + RECONNECT_OPTIONS
        self.replicas: dict[str, tuple[str, ...]] = {
            name: (value,) if isinstance(value, str) else tuple(value)
            for name, value in addresses.items()
        }
        # The first address of each model, which names its host for the core budget.
        self.addresses = {name: replicas[0] for name, replicas in self.replicas.items()}
        self.security = security or ChannelSecurity.loopback_plaintext()
        # A plaintext worker address off this machine fails here, at start-up.
        for replicas in self.replicas.values():
            for address in replicas:
                self.security.check_address(address)
        # Opened on first use, inside the event loop that serves the calls.
        self._channels: dict[str, grpc.aio.Channel] = {}
        self.health = WorkerHealth()

    def channel_to(self, address: str) -> grpc.aio.Channel:
        if address not in self._channels:
            self._channels[address] = self.security.open_aio(address, options=self._options)
        return self._channels[address]

    def stub(self, name: str) -> inference_pb2_grpc.InferenceStub:
        """A stub on the model's first address."""
        return self.stub_to(self.addresses[name])

    def stub_to(self, address: str) -> inference_pb2_grpc.InferenceStub:
        return inference_pb2_grpc.InferenceStub(self.channel_to(address))

    def call_order(self, name: str) -> tuple[str, ...]:
        """Return the model's addresses in the order to try them, SERVING ones first."""
        return self.health.order(self.replicas[name])

    def watch_health(self) -> None:
        """Start watching every worker address; call inside the serving event loop."""
        addresses = {address for replicas in self.replicas.values() for address in replicas}
        self.health.watch((address, self.channel_to(address)) for address in sorted(addresses))

    async def close(self) -> None:
        await self.health.close()
        await asyncio.gather(*(channel.close() for channel in self._channels.values()))


async def fan_out(
    plan: DispatchPlan,
    clients: WorkerClients,
    request: inference_pb2.GenerateRequest,
    limits: CallLimits,
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
            _run_slot(slot, plan, clients, request, limits, emit, on_outcome, telemetry)
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


@dataclass(frozen=True)
class CallLimits:
    """Time limits of a cycle's calls."""

    # max_processing_time_seconds, for models without a limit of their own.
    default_limit_s: float
    # time.monotonic() by which the cycle must have every verdict.
    deadline: float

    def remaining_s(self) -> float:
        return self.deadline - time.monotonic()

    def call_timeout_s(self, model: ModelConfig) -> float:
        return min(model.time_limit_s(self.default_limit_s), self.remaining_s())


async def _run_slot(
    slot: Slot,
    plan: DispatchPlan,
    clients: WorkerClients,
    template: inference_pb2.GenerateRequest,
    limits: CallLimits,
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
            slot, plan, clients, template, limits, emit, telemetry, span
        )
        _describe_outcome(span, outcome)
    await on_outcome(outcome)
    return outcome


async def _run_slot_traced(
    slot: Slot,
    plan: DispatchPlan,
    clients: WorkerClients,
    template: inference_pb2.GenerateRequest,
    limits: CallLimits,
    emit: EventSink,
    telemetry: FanOutTelemetry,
    span: trace.Span,
) -> ModelOutcome:
    budget = plan.budgets[slot.host]
    name = slot.model.name
    queued = time.monotonic()
    try:
        await asyncio.wait_for(
            _acquire_cores(budget, slot, telemetry.queue_depth), max(limits.remaining_s(), 0.0)
        )
    except TimeoutError:
        reason = (
            f"the cycle deadline passed after {time.monotonic() - queued:.1f} s of waiting for"
            f" {slot.cores} cores on {slot.host}"
        )
        log.warning("Model %s not called for %s: %s", name, template.request_id, reason)
        return ModelOutcome(
            slot.model,
            clients.addresses[name],
            None,
            ensemble_pb2.FAILURE_KIND_DEADLINE,
            reason,
            0.0,
            _ms_since(queued),
        )
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
        outcome = await _generate_with_retries(
            slot, clients, request, limits, emit, started, metadata
        )
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


async def _generate_with_retries(
    slot: Slot,
    clients: WorkerClients,
    request: inference_pb2.GenerateRequest,
    limits: CallLimits,
    emit: EventSink,
    started: float,
    trace_metadata: tuple[tuple[str, str], ...] = (),
) -> ModelOutcome:
    """Call the model's workers in turn until one streams a token or time runs out.

    Retryable failures are retried for RETRY_WINDOW_S at most, so a worker restarted on its
    address is reached again once its channel reconnects (within RECONNECT_MAX_S). Each
    attempt is logged at INFO; the outcome, when it is a failure, once at WARNING.
    """
    name = slot.model.name
    addresses = clients.call_order(name)
    replicas = len(addresses)
    backoff = RETRY_BACKOFF_S
    attempt = 0
    first_try = time.monotonic()
    while True:
        address = addresses[attempt % replicas]
        timeout_s = limits.call_timeout_s(slot.model)
        outcome, streamed = await _generate(
            slot, clients, address, request, timeout_s, emit, started, trace_metadata
        )
        attempt += 1
        if not outcome.retryable or streamed:
            break
        retry_time_left = RETRY_WINDOW_S - (time.monotonic() - first_try)
        if min(retry_time_left, limits.remaining_s()) <= backoff:
            break
        log.info(
            "Retrying model %s for %s in %.2f s on replica %d of %d after: %s",
            name,
            request.request_id,
            backoff,
            attempt % replicas + 1,
            replicas,
            outcome.failure,
        )
        await asyncio.sleep(backoff)
        backoff = min(backoff * 2, RETRY_BACKOFF_MAX_S)
    if attempt > 1 and outcome.failure:
        outcome = dataclasses.replace(
            outcome, failure=f"{outcome.failure} (after {attempt} attempts)"
        )
    if outcome.failure:
        log.warning(
            "Model %s at %s failed for %s: %s",
            name,
            outcome.address,
            request.request_id,
            outcome.failure,
        )
    return outcome


async def _generate(
    slot: Slot,
    clients: WorkerClients,
    address: str,
    request: inference_pb2.GenerateRequest,
    timeout_s: float,
    emit: EventSink,
    started: float,
    trace_metadata: tuple[tuple[str, str], ...] = (),
) -> tuple[ModelOutcome, bool]:
    """Run one call on `address`; return its outcome and whether any token was streamed."""
    name = slot.model.name
    metadata = (("x-request-id", request.request_id), *trace_metadata)
    result: inference_pb2.GenerationResult | None = None
    streamed = False
    if timeout_s <= 0:
        reason = "the cycle deadline passed before the call"
        outcome = _failed(slot, address, None, ensemble_pb2.FAILURE_KIND_DEADLINE, reason, started)
        return outcome, streamed
    call = clients.stub_to(address).Generate(request, timeout=timeout_s, metadata=metadata)
    try:
        async for response in call:
            if response.HasField("token"):
                streamed = True
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
            reason += f" (no verdict within {timeout_s:.3g} s)"
        log.info("Attempt on %s for model %s failed: %s", address, name, reason)
        outcome = _failed(slot, address, result, kind, reason, started)
        return dataclasses.replace(outcome, retryable=error.code() in _RETRYABLE), streamed
    except asyncio.CancelledError:
        call.cancel()
        raise

    if result is None:
        reason = "the stream ended without a final result"
        outcome = _failed(slot, address, None, ensemble_pb2.FAILURE_KIND_ERROR, reason, started)
        return outcome, streamed
    if not result.HasField("verdict"):
        reason = result.failure or "no verdict in the final result"
        kind = ensemble_pb2.FAILURE_KIND_BAD_OUTPUT
        return _failed(slot, address, result, kind, reason, started), streamed
    problem = verdict_problem(result.verdict)
    if problem:
        reason = f"the worker returned an invalid verdict: {problem}"
        # The result is dropped: an out-of-range verdict must not reach the consensus.
        kind = ensemble_pb2.FAILURE_KIND_BAD_OUTPUT
        return _failed(slot, address, None, kind, reason, started), streamed
    outcome = ModelOutcome(
        slot.model, address, result, ensemble_pb2.FAILURE_KIND_UNSPECIFIED, "", _ms_since(started)
    )
    return outcome, streamed


def verdict_problem(verdict: verdict_pb2.Verdict) -> str:
    """Return what makes a worker's verdict unusable, or "" when it is valid.

    A worker is another process, maybe another machine: its verdict is checked like any
    input before the consensus reads it.
    """
    if verdict.direction not in _VERDICT_DIRECTIONS:
        return f"direction {verdict.direction} is not bullish, bearish or neutral"
    if not 0.0 <= verdict.confidence <= 1.0:
        return f"confidence {verdict.confidence!r} is outside [0, 1]"
    if not math.isfinite(verdict.prediction_pct):
        return f"prediction_pct {verdict.prediction_pct!r} is not a finite number"
    return ""


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
