"""The Inference gRPC service of one model.

One model, one lock: the lock is taken before prompt evaluation and released only when the
generation thread has stopped, whether the stream ended, failed or was cancelled. Requests
that arrive meanwhile wait their turn, and GenerationStats.queue_ms reports how long.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict

import grpc
from opentelemetry import trace
from prometheus_client import CollectorRegistry

from quorum.v1 import inference_pb2, inference_pb2_grpc, verdict_pb2
from server.logs import bind_fields, unbind_fields
from server.tracing import child_span, extract_metadata
from worker.context_fit import FitError, FittedPrompt, Section, SectionFit, fit_prompt
from worker.generation import (
    ChunkSink,
    FinishReason,
    GenerationOutcome,
    GenerationRun,
    SamplingParams,
)
from worker.metrics import WorkerMetrics
from worker.model import LoadedModel
from worker.prompt import Question
from worker.request_check import (
    InvalidRequest,
    check_generate_request,
    loggable_request_id,
    window_end_utc,
)
from worker.verdict_grammar import Verdict, VerdictGrammars

log = logging.getLogger(__name__)

SERVICE_NAME = inference_pb2.DESCRIPTOR.services_by_name["Inference"].full_name

_DIRECTIONS = {
    "bullish": verdict_pb2.DIRECTION_BULLISH,
    "bearish": verdict_pb2.DIRECTION_BEARISH,
    "neutral": verdict_pb2.DIRECTION_NEUTRAL,
}
_FINISH_REASONS = {
    FinishReason.STOP: inference_pb2.FINISH_REASON_STOP,
    FinishReason.LENGTH: inference_pb2.FINISH_REASON_LENGTH,
    FinishReason.CANCELLED: inference_pb2.FINISH_REASON_CANCELLED,
    FinishReason.ERROR: inference_pb2.FINISH_REASON_ERROR,
}


DEFAULT_MAX_QUEUE = 4


class InferenceService(inference_pb2_grpc.InferenceServicer):
    """Serves one loaded model; `close` stops its generation thread."""

    def __init__(
        self,
        model: LoadedModel,
        max_queue: int = DEFAULT_MAX_QUEUE,
        metrics: WorkerMetrics | None = None,
        tracer: trace.Tracer | None = None,
    ) -> None:
        self._model = model
        # A registry of its own unless the caller passes metrics on the registry it serves.
        self._metrics = metrics or WorkerMetrics(CollectorRegistry(), model.info.name)
        self._metrics.load_seconds.labels(model.info.name).set(model.info.load_seconds)
        self._tracer = tracer or trace.NoOpTracer()
        self._lock = asyncio.Lock()
        # Requests waiting for the lock; past max_queue a new one is refused at once.
        self.max_queue = max_queue
        self.waiting = 0
        # The model's only thread: fitting and generation run here, one request at a time.
        self._executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"llama-{model.info.name}"
        )
        self._grammars = VerdictGrammars(model.vocab)

    @property
    def model_name(self) -> str:
        return self._model.info.name

    def is_generating(self) -> bool:
        """Return whether a request has the model, from prompt fitting to the thread's end."""
        return self._lock.locked()

    def close(self) -> None:
        self._executor.shutdown(wait=True)

    async def Describe(
        self, request: inference_pb2.DescribeRequest, context: grpc.aio.ServicerContext
    ) -> inference_pb2.ModelDescription:
        info = self._model.info
        return inference_pb2.ModelDescription(
            name=info.name,
            family=info.family,
            parameter_count=info.parameter_count,
            quantization=info.quantization,
            n_ctx_train=info.n_ctx_train,
            n_ctx=info.n_ctx,
            threads=info.threads,
            default_max_tokens=info.default_max_tokens,
            path=info.path,
            file_bytes=info.file_bytes,
            load_seconds=info.load_seconds,
        )

    async def CountTokens(
        self, request: inference_pb2.CountTokensRequest, context: grpc.aio.ServicerContext
    ) -> inference_pb2.CountTokensResponse:
        # Tokenizing reads only the vocabulary, so it runs beside a generation, not behind it.
        counts = await asyncio.to_thread(
            lambda: [self._model.count_tokens(text) for text in request.texts]
        )
        return inference_pb2.CountTokensResponse(counts=counts)

    async def Generate(
        self, request: inference_pb2.GenerateRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[inference_pb2.GenerateResponse]:
        """Stream one request's tokens, then its result, in a span under the caller's."""
        request_id = loggable_request_id(request)
        log_tokens = bind_fields(
            model=self.model_name,
            request_id=request_id,
            symbol=request.symbol,
            window_end=request.window_end.ToJsonString() if request.HasField("window_end") else "",
        )
        attributes = {
            "rpc.system": "grpc",
            "rpc.service": SERVICE_NAME,
            "rpc.method": "Generate",
            "gen_ai.request.model": self.model_name,
            "quorum.request_id": request_id,
        }
        try:
            with child_span(
                self._tracer,
                f"{SERVICE_NAME}/Generate",
                extract_metadata(context.invocation_metadata()),
                attributes,
                kind=trace.SpanKind.SERVER,
            ) as span:
                async for response in self._generate(request, request_id, context, span):
                    yield response
        finally:
            unbind_fields(log_tokens)

    async def _generate(
        self,
        request: inference_pb2.GenerateRequest,
        request_id: str,
        context: grpc.aio.ServicerContext,
        span: trace.Span,
    ) -> AsyncIterator[inference_pb2.GenerateResponse]:
        received = time.perf_counter()
        try:
            check_generate_request(request, self._model.info.n_ctx)
        except InvalidRequest as error:
            log.warning("Rejected request %s on model %s: %s", request_id, self.model_name, error)
            self._metrics.observe_rejected("invalid_argument")
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
        job = _GenerationJob(
            self._model,
            self._grammars,
            [Section(s.name, s.priority, s.token_budget, s.text) for s in request.sections],
            Question(
                symbol=request.symbol,
                window_end=window_end_utc(request),
                window_minutes=request.window_minutes,
                horizon_minutes=request.horizon_minutes,
            ),
            SamplingParams(
                max_tokens=request.max_tokens or self._model.info.default_max_tokens,
                temperature=request.temperature,
                seed=request.seed,
            ),
            request_id,
        )

        await self._wait_for_model(request_id, context)
        lock_acquired = time.perf_counter()
        self._metrics.observe_queued(lock_acquired - received)
        span.add_event("model_acquired", {"quorum.queue_ms": (lock_acquired - received) * 1000})
        # Nothing awaits between taking the lock and starting the thread, so a cancelled call
        # cannot leave the lock held. From then on, only the thread's end releases it.
        loop = asyncio.get_running_loop()
        chunks: asyncio.Queue[inference_pb2.TokenChunk | None] = asyncio.Queue()

        def post_chunk(text: str, completion_tokens: int) -> None:
            chunk = inference_pb2.TokenChunk(text=text, completion_tokens=completion_tokens)
            loop.call_soon_threadsafe(chunks.put_nowait, chunk)

        def work() -> GenerationOutcome:
            try:
                return job.run(post_chunk)
            finally:
                loop.call_soon_threadsafe(chunks.put_nowait, None)

        # run_in_executor does not copy context variables; the copy gives the thread's log
        # lines this request's fields.
        future = loop.run_in_executor(self._executor, contextvars.copy_context().run, work)
        future.add_done_callback(lambda done: self._release(done, request_id))

        finished = False
        try:
            while (chunk := await chunks.get()) is not None:
                yield inference_pb2.GenerateResponse(token=chunk)
            outcome = await future
            finished = True
        except FitError as error:
            finished = True
            log.warning("Request %s does not fit model %s: %s", request_id, self.model_name, error)
            self._metrics.observe_rejected("prompt_too_long")
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
        except Exception as error:
            # The RPC boundary: _release has logged the traceback, the client gets the reason.
            finished = True
            await context.abort(
                grpc.StatusCode.INTERNAL, f"generation failed on model {self.model_name}: {error}"
            )
        finally:
            if not finished:
                # The client cancelled or its deadline passed: stop within one token.
                log.info("Request %s on model %s cancelled", request_id, self.model_name)
                job.cancel()

        self._log_outcome(request_id, outcome)
        self._metrics.observe_outcome(outcome, len(job.fitted.tokens))
        stats = _stats(self._model.info.n_ctx, job.fitted, outcome, received, lock_acquired)
        _describe_generation(span, outcome, stats)
        yield inference_pb2.GenerateResponse(result=self._result(outcome, stats))

    async def _wait_for_model(self, request_id: str, context: grpc.aio.ServicerContext) -> None:
        """Take the model's lock, or refuse with RESOURCE_EXHAUSTED when the queue is full."""
        if self._lock.locked() and self.waiting >= self.max_queue:
            log.warning(
                "Rejected request %s on model %s: %d requests already waiting (max_queue %d)",
                request_id,
                self.model_name,
                self.waiting,
                self.max_queue,
            )
            self._metrics.observe_rejected("queue_full")
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"model {self.model_name} is busy: {self.waiting} requests already waiting"
                f" (max_queue {self.max_queue})",
            )
        queue_depth = self._metrics.queue_depth.labels(self.model_name)
        self.waiting += 1
        queue_depth.inc()
        try:
            await self._lock.acquire()
        finally:
            self.waiting -= 1
            queue_depth.dec()
        self._metrics.active.labels(self.model_name).set(1)

    def _release(self, done: asyncio.Future[GenerationOutcome], request_id: str) -> None:
        # Runs on the event loop once the generation thread has returned.
        self._lock.release()
        self._metrics.active.labels(self.model_name).set(0)
        if done.cancelled():
            return
        error = done.exception()
        if isinstance(error, FitError):
            return
        if error is not None:
            log.error(
                "Generation thread failed for request %s on model %s",
                request_id,
                self.model_name,
                exc_info=error,
            )
            return
        outcome = done.result()
        if outcome.finish_reason is FinishReason.CANCELLED:
            log.info(
                "Request %s on model %s stopped after cancellation: %d completion tokens",
                request_id,
                self.model_name,
                outcome.completion_tokens,
            )

    def _log_outcome(self, request_id: str, outcome: GenerationOutcome) -> None:
        if outcome.verdict is not None:
            log.info(
                "Request %s on model %s: %s %.2f, %d completion tokens in %.0f ms",
                request_id,
                self.model_name,
                outcome.verdict.direction,
                outcome.verdict.confidence,
                outcome.completion_tokens,
                outcome.generation_s * 1000.0,
            )
        else:
            log.warning(
                "Request %s on model %s gave no verdict (%s): %s",
                request_id,
                self.model_name,
                outcome.finish_reason.value,
                outcome.failure,
            )

    def _result(
        self, outcome: GenerationOutcome, stats: inference_pb2.GenerationStats
    ) -> inference_pb2.GenerationResult:
        result = inference_pb2.GenerationResult(
            model=self.model_name,
            finish_reason=_FINISH_REASONS[outcome.finish_reason],
            failure=outcome.failure,
            text=outcome.text,
            stats=stats,
        )
        if outcome.verdict is not None:
            result.verdict.CopyFrom(_verdict_message(outcome.verdict))
        return result


class _GenerationJob:
    """Fitting and generation of one request, run on the model's thread."""

    def __init__(
        self,
        model: LoadedModel,
        grammars: VerdictGrammars,
        sections: list[Section],
        question: Question,
        params: SamplingParams,
        request_id: str,
    ) -> None:
        self._model = model
        self._grammars = grammars
        self._sections = sections
        self._question = question
        self._params = params
        self._request_id = request_id
        self._cancel = threading.Event()
        self.fitted = FittedPrompt(tokens=[], section_fits=())

    def cancel(self) -> None:
        self._cancel.set()

    def run(self, on_chunk: ChunkSink) -> GenerationOutcome:
        """Fit the prompt and generate; raise FitError when the prompt cannot fit."""
        self.fitted = fit_prompt(
            self._model, self._sections, self._question, self._params.max_tokens
        )
        grammar = self._grammars.for_max_tokens(self._params.max_tokens)
        run = GenerationRun(
            self._model,
            self.fitted.tokens,
            self._params,
            grammar,
            on_chunk,
            cancel_event=self._cancel,
            request_id=self._request_id,
        )
        return run.run()


def _verdict_message(verdict: Verdict) -> verdict_pb2.Verdict:
    return verdict_pb2.Verdict(
        direction=_DIRECTIONS[verdict.direction],
        confidence=verdict.confidence,
        prediction_pct=verdict.prediction_pct,
        rationale=verdict.rationale,
    )


def _stats(
    n_ctx: int,
    fitted: FittedPrompt,
    outcome: GenerationOutcome,
    received: float,
    lock_acquired: float,
) -> inference_pb2.GenerationStats:
    if outcome.time_to_first_token_s is None:
        first_token_ms = 0.0
    else:
        first_token_at = outcome.started_at + outcome.time_to_first_token_s
        first_token_ms = (first_token_at - lock_acquired) * 1000.0
    return inference_pb2.GenerationStats(
        n_ctx=n_ctx,
        prompt_tokens=len(fitted.tokens),
        cached_prompt_tokens=outcome.cached_prompt_tokens,
        completion_tokens=outcome.completion_tokens,
        queue_ms=(lock_acquired - received) * 1000.0,
        time_to_first_token_ms=first_token_ms,
        generation_ms=outcome.generation_s * 1000.0,
        total_ms=(time.perf_counter() - received) * 1000.0,
        section_fits=[_section_fit_message(fit) for fit in fitted.section_fits],
    )


def _describe_generation(
    span: trace.Span, outcome: GenerationOutcome, stats: inference_pb2.GenerationStats
) -> None:
    """Put the generation's token counts and timings on its span; the first token is an event
    at the time it was sampled."""
    span.set_attribute("gen_ai.usage.input_tokens", stats.prompt_tokens)
    span.set_attribute("gen_ai.usage.output_tokens", stats.completion_tokens)
    span.set_attribute("quorum.cached_prompt_tokens", stats.cached_prompt_tokens)
    span.set_attribute("quorum.time_to_first_token_ms", stats.time_to_first_token_ms)
    span.set_attribute("quorum.generation_ms", stats.generation_ms)
    span.set_attribute("quorum.finish_reason", outcome.finish_reason.value)
    if outcome.time_to_first_token_s is not None:
        # Span event times are wall-clock nanoseconds; the outcome's times are perf_counter.
        age_s = time.perf_counter() - (outcome.started_at + outcome.time_to_first_token_s)
        span.add_event("first_token", timestamp=time.time_ns() - int(age_s * 1e9))
    if outcome.verdict is None:
        span.set_attribute("quorum.failure", outcome.failure)
        span.set_status(trace.Status(trace.StatusCode.ERROR, outcome.failure))


def _section_fit_message(fit: SectionFit) -> inference_pb2.SectionFit:
    return inference_pb2.SectionFit(**asdict(fit))
