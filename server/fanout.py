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
from dataclasses import dataclass

import grpc

from quorum.v1 import ensemble_pb2, inference_pb2, inference_pb2_grpc
from server.config import ModelConfig
from server.dispatch import DispatchPlan, Slot
from server.security import ChannelSecurity

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
    """One gRPC channel per model worker; `security` None is plaintext on loopback only."""

    def __init__(
        self, addresses: Mapping[str, str], security: ChannelSecurity | None = None
    ) -> None:
        self.addresses = dict(addresses)
        self.security = security or ChannelSecurity.loopback_plaintext()
        # A plaintext worker address off this machine fails here, at start-up.
        for address in self.addresses.values():
            self.security.check_address(address)
        # Opened on first use, inside the event loop that serves the calls.
        self._channels: dict[str, grpc.aio.Channel] = {}

    def channel(self, name: str) -> grpc.aio.Channel:
        if name not in self._channels:
            self._channels[name] = self.security.open_aio(
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
) -> list[ModelOutcome]:
    """Run every slot of the plan; return outcomes in the plan's order.

    `emit` receives each model's start and token events; `on_outcome` each model's outcome
    as soon as it is known.
    """
    tasks = [
        asyncio.create_task(_run_slot(slot, plan, clients, request, timeout_s, emit, on_outcome))
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
) -> ModelOutcome:
    budget = plan.budgets[slot.host]
    name = slot.model.name
    queued = time.monotonic()
    await budget.acquire(slot.cores)
    started = time.monotonic()
    try:
        await emit(
            ensemble_pb2.AnalysisEvent(
                model_started=ensemble_pb2.ModelStarted(model=name, position=slot.position)
            )
        )
        request = inference_pb2.GenerateRequest()
        request.CopyFrom(template)
        request.max_tokens = slot.model.max_tokens
        outcome = await _generate(slot, clients, request, timeout_s, emit, started)
        outcome = dataclasses.replace(outcome, queued_ms=(started - queued) * 1000.0)
    finally:
        budget.release(slot.cores)
    await on_outcome(outcome)
    return outcome


async def _generate(
    slot: Slot,
    clients: WorkerClients,
    request: inference_pb2.GenerateRequest,
    timeout_s: float,
    emit: EventSink,
    started: float,
) -> ModelOutcome:
    name = slot.model.name
    address = clients.addresses[name]
    metadata = (("x-request-id", request.request_id),)
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
