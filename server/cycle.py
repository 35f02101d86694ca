"""One analysis cycle: point-in-time data, features, context, fan-out, consensus, record."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
from opentelemetry import trace
from opentelemetry.context import Context as TraceContext
from prometheus_client import CollectorRegistry

from fastpath.consensus import ConsensusResult, weighted_consensus
from quorum.v1 import ensemble_pb2, inference_pb2
from server import records, synthesis
from server.admission import Admission
from server.config import Config, Thresholds
from server.consensus_policy import decide
from server.context_builder import Context, build_context, choose_context_size
from server.dispatch import CoreBudget, DispatchPlan, parameter_count
from server.fanout import CallLimits, FanOutTelemetry, ModelOutcome, WorkerClients, fan_out
from server.features import FamilyScope, Features, compute_features
from server.logs import bind_fields, unbind_fields
from server.market_data import NS_PER_MINUTE, Bars, MarketInputs, NewsItem, OrderBookSnapshot
from server.market_store import MarketStore
from server.metrics import CoordinatorMetrics
from server.result_store import ResultStore
from server.tokenizer import ReferenceTokenizer
from server.tracing import child_span, context_with
from server.validation import ValidatedRequest, validate_request
from server.verdict_cache import CACHE_ADDRESS, VerdictCache, cacheable

log = logging.getLogger(__name__)

# How far back the other symbols' bars are read for correlations and lead-lag.
RELATED_LOOKBACK_NS = 30 * 24 * 60 * NS_PER_MINUTE
NEWS_LOOKBACK_NS = 6 * 60 * NS_PER_MINUTE
# Kept from a client's deadline for consensus, decision and the record after the fan-out.
RESULT_MARGIN_S = 1.0

_Timed = TypeVar("_Timed", OrderBookSnapshot, NewsItem)


# Returns the worker clients once their workers serve; called before the first generation.
WorkerStarter = Callable[[], Awaitable[WorkerClients]]


@dataclass
class CycleDependencies:
    config: Config
    market: MarketStore
    # None writes no record (backtests keep their own table of windows).
    results: ResultStore | None
    # Clients of running workers, or a starter that brings them up when a model must
    # generate (a backtest whose every verdict is cached starts no worker).
    workers: WorkerClients | WorkerStarter
    tokenizer: ReferenceTokenizer
    tracer: trace.Tracer = field(default_factory=trace.NoOpTracer)
    # A registry of its own unless the caller passes metrics on the registry it serves.
    metrics: CoordinatorMetrics = field(
        default_factory=lambda: CoordinatorMetrics(CollectorRegistry())
    )
    # Outcomes of earlier cycles on the same context, read instead of generating again.
    verdict_cache: VerdictCache | None = None


class Cycle:
    """Runs analysis cycles; each call of `run` yields its AnalysisEvents, the result last."""

    def __init__(self, deps: CycleDependencies) -> None:
        self.deps = deps
        self.config = deps.config
        self.tracer = deps.tracer
        self.metrics = deps.metrics
        # One core budget per worker host for every cycle of this coordinator.
        self.core_budgets: dict[str, CoreBudget] = {}
        self.admission = Admission(
            self.config.max_concurrent_symbols,
            self.config.queue_strategy,
            self.metrics.cycles_waiting.set,
        )

    async def run(
        self,
        request: ensemble_pb2.AnalyzeRequest,
        trace_parent: TraceContext | None = None,
        client_remaining_s: float | None = None,
    ) -> AsyncIterator[ensemble_pb2.AnalysisEvent]:
        """Validate, then run the cycle. Raises InvalidArgument before anything is written.

        The cycle's span is a child of `trace_parent` when the caller sent a trace context,
        else the root of a new trace. The cycle's deadline is cycle_deadline_seconds, cut to
        the client's own deadline (`client_remaining_s`, the seconds its gRPC deadline
        leaves) less the time kept for consensus and the record.
        """
        started = time.monotonic()
        limits = CallLimits(
            self.config.max_processing_time_seconds,
            started + cycle_budget_s(self.config.cycle_deadline_seconds, client_remaining_s),
        )
        valid = validate_request(request, self.config, self.deps.market)
        request_id = request.request_id or uuid.uuid4().hex
        if self.admission.running >= self.admission.slots:
            log.info(
                "Cycle %s for %s queued behind %d running and %d waiting (priority %d)",
                request_id,
                valid.symbol,
                self.admission.running,
                self.admission.waiting,
                request.priority,
            )
        async with self.admission.slot(request.priority):
            traced = self._traced(request, request_id, valid, limits, trace_parent, started)
            async for event in traced:
                yield event

    async def _traced(
        self,
        request: ensemble_pb2.AnalyzeRequest,
        request_id: str,
        valid: ValidatedRequest,
        limits: CallLimits,
        trace_parent: TraceContext | None,
        started: float,
    ) -> AsyncIterator[ensemble_pb2.AnalysisEvent]:
        """Run an admitted cycle inside its span, with its fields bound to every log line.

        `started` is when the request arrived, so elapsed times include the wait for a slot.
        """
        window_end = request.window_end.ToJsonString()
        log_tokens = bind_fields(symbol=valid.symbol, window_end=window_end, request_id=request_id)
        attributes = {
            "quorum.symbol": valid.symbol,
            "quorum.window_end": window_end,
            "quorum.window_minutes": valid.window_minutes,
            "quorum.request_id": request_id,
        }
        self.metrics.parallel_jobs.inc()
        try:
            with child_span(self.tracer, "cycle", trace_parent, attributes) as span:
                cycle_context = context_with(span, trace_parent)
                steps = self._steps(request, request_id, valid, limits, cycle_context, started)
                async for event in steps:
                    yield event
        finally:
            self.metrics.parallel_jobs.dec()
            unbind_fields(log_tokens)

    async def _steps(
        self,
        request: ensemble_pb2.AnalyzeRequest,
        request_id: str,
        valid: ValidatedRequest,
        limits: CallLimits,
        cycle_context: TraceContext,
        started: float,
    ) -> AsyncIterator[ensemble_pb2.AnalysisEvent]:
        symbol = valid.symbol
        log.info(
            "Cycle %s for %s at %s started", request_id, symbol, request.window_end.ToJsonString()
        )

        with child_span(self.tracer, "load_data", cycle_context) as span:
            inputs = await asyncio.to_thread(self._load_inputs, valid)
            span.set_attribute("quorum.bars", len(inputs.bars))
        with child_span(self.tracer, "features", cycle_context) as span:
            features = await asyncio.to_thread(
                compute_features,
                inputs.bars,
                inputs.related,
                window_minutes=valid.window_minutes,
                horizon_minutes=self.config.horizon_minutes,
                family_scope=self._family_scope(context_with(span, cycle_context)),
            )
        with child_span(self.tracer, "build_context", cycle_context) as span:
            context, expand_reason = await asyncio.to_thread(
                self._build_context, request, inputs, features
            )
            summary = records.context_summary(
                context,
                expand_reason,
                self.config.default_context_size,
                self.config.section_budgets,
            )
            span.set_attribute("quorum.context_size", summary.context_size)
            span.set_attribute("quorum.used_tokens", summary.used_tokens)
        yield ensemble_pb2.AnalysisEvent(context_ready=summary)

        events: asyncio.Queue[ensemble_pb2.AnalysisEvent | None] = asyncio.Queue()
        fan_out_task = asyncio.create_task(
            self._fan_out(
                request_id, inputs, valid.window_minutes, context, events, limits, cycle_context
            )
        )
        try:
            while (event := await events.get()) is not None:
                yield event
            outcomes = await fan_out_task
        finally:
            if not fan_out_task.done():
                fan_out_task.cancel()
                await asyncio.gather(fan_out_task, return_exceptions=True)

        result = self._conclude(
            request, request_id, inputs, summary, outcomes, started, cycle_context
        )
        yield ensemble_pb2.AnalysisEvent(consensus=result.consensus)
        yield ensemble_pb2.AnalysisEvent(decision=result.decision)
        with child_span(self.tracer, "record", cycle_context) as span:
            await asyncio.to_thread(self._record, result)
            span.set_attribute("quorum.record_path", result.record_path)
        self.metrics.observe_result(result, time.monotonic() - started)
        log.info(
            "Cycle %s for %s finished: %s in %.1f s",
            request_id,
            symbol,
            ensemble_pb2.Action.Name(result.decision.action),
            result.elapsed_ms / 1000,
        )
        yield ensemble_pb2.AnalysisEvent(result=result)

    def _family_scope(self, features_context: TraceContext) -> FamilyScope:
        def scope(family: str) -> AbstractContextManager[trace.Span]:
            return child_span(self.tracer, f"features.{family}", features_context)

        return scope

    def _load_inputs(self, valid: ValidatedRequest) -> MarketInputs:
        """Read what was known at window_end: the request's data or the store's."""
        market = self.deps.market
        symbol, window_end = valid.symbol, valid.window_end
        if valid.bars is not None:
            # Bars sent with the request are cut at window_end like the store's.
            bars = valid.bars.until(window_end)
        else:
            bars = market.read_bars(symbol, window_end)
        related: dict[str, Bars] = {}
        for other in market.symbols():
            if other == symbol:
                continue
            other_bars = market.read_bars(other, window_end, window_end - RELATED_LOOKBACK_NS)
            if len(other_bars):
                related[other] = other_bars

        window_start = window_end - valid.window_minutes * NS_PER_MINUTE
        if valid.order_book is not None:
            snapshots = _known_between(valid.order_book, window_start, window_end)
        else:
            snapshots = market.read_order_book(symbol, window_start, window_end)
        news_start = window_end - NEWS_LOOKBACK_NS
        if valid.news is not None:
            news = _known_between(valid.news, news_start, window_end)
        else:
            news = market.read_news(symbol, news_start, window_end)
        return MarketInputs(
            symbol=symbol,
            window_end=window_end,
            window_minutes=valid.window_minutes,
            bars=bars,
            related=related,
            order_book=tuple(snapshots),
            news=tuple(news),
        )

    def _build_context(
        self,
        request: ensemble_pb2.AnalyzeRequest,
        inputs: MarketInputs,
        features: Features,
    ) -> tuple[Context, str]:
        size, reason = choose_context_size(
            inputs=inputs,
            features=features,
            budgets=self.config.section_budgets,
            requested_size=request.context_size,
            volatile=request.volatile_window,
            config=self.config,
            count_tokens=self.deps.tokenizer.count,
        )
        context = build_context(
            inputs,
            features,
            self.config.section_budgets,
            size,
            self.deps.tokenizer.count,
            self.config.horizon_minutes,
        )
        return context, reason

    async def _fan_out(
        self,
        request_id: str,
        inputs: MarketInputs,
        window_minutes: int,
        context: Context,
        events: asyncio.Queue[ensemble_pb2.AnalysisEvent | None],
        limits: CallLimits,
        cycle_context: TraceContext,
    ) -> list[ModelOutcome]:
        generate = generate_request(request_id, inputs, window_minutes, context, self.config)
        large_min_weight = self.config.thresholds.large_model_min_weight

        async def emit(event: ensemble_pb2.AnalysisEvent) -> None:
            await events.put(event)

        async def emit_outcome(outcome: ModelOutcome) -> None:
            verdict = records.model_verdict(outcome, None, 0, large_min_weight)
            self.metrics.observe_verdict(verdict)
            await events.put(ensemble_pb2.AnalysisEvent(verdict=verdict))

        async def keep_and_emit(outcome: ModelOutcome) -> None:
            # Kept as each model finishes, so a cycle stopped part-way keeps what it has.
            await self._keep_outcome(outcome, generate, inputs)
            await emit_outcome(outcome)

        try:
            cached = await self._cached_outcomes(generate, inputs)
            for outcome in cached.values():
                await emit_outcome(outcome)
            to_generate = [model for model in self.config.models if model.name not in cached]
            generated: list[ModelOutcome] = []
            if to_generate:
                workers = await self._workers()
                plan = DispatchPlan(
                    to_generate,
                    workers.addresses,
                    self.config.host_core_budget,
                    self.config.enable_parallel_processing,
                    self.core_budgets,
                )
                telemetry = FanOutTelemetry(self.tracer, cycle_context, self.metrics.queue_depth)
                generated = await fan_out(
                    plan, workers, generate, limits, emit, keep_and_emit, telemetry
                )
            # In dispatch order (smallest first), whether generated now or read back.
            by_name = {**cached, **{outcome.model.name: outcome for outcome in generated}}
            ordered = sorted(self.config.models, key=parameter_count)
            return [by_name[model.name] for model in ordered]
        finally:
            await events.put(None)

    async def _workers(self) -> WorkerClients:
        workers = self.deps.workers
        if isinstance(workers, WorkerClients):
            return workers
        return await workers()

    async def _cached_outcomes(
        self, generate: inference_pb2.GenerateRequest, inputs: MarketInputs
    ) -> dict[str, ModelOutcome]:
        """Read each model's outcome on this exact request from the verdict cache."""
        cache = self.deps.verdict_cache
        if cache is None:
            return {}
        found: dict[str, ModelOutcome] = {}
        for model in self.config.models:
            key = cache.key_for(model, generate)
            entry = await asyncio.to_thread(cache.get, key, inputs.symbol, inputs.window_end)
            if entry is None:
                continue
            found[model.name] = ModelOutcome(
                model=model,
                address=CACHE_ADDRESS,
                result=entry.result,
                failure_kind=entry.failure_kind,
                failure=entry.failure,
                elapsed_ms=0.0,
                from_cache=True,
            )
        if found:
            log.info(
                "Read %d of %d verdicts from the verdict cache", len(found), len(self.config.models)
            )
        return found

    async def _keep_outcome(
        self,
        outcome: ModelOutcome,
        generate: inference_pb2.GenerateRequest,
        inputs: MarketInputs,
    ) -> None:
        """Write an outcome that the same request would reproduce to the verdict cache."""
        cache = self.deps.verdict_cache
        if cache is None or outcome.result is None:
            return
        if not cacheable(outcome.failure_kind, outcome.answered):
            return
        key = cache.key_for(outcome.model, generate)
        await asyncio.to_thread(
            cache.put,
            key,
            inputs.symbol,
            inputs.window_end,
            outcome.result,
            outcome.failure_kind,
            outcome.failure,
        )

    def _conclude(
        self,
        request: ensemble_pb2.AnalyzeRequest,
        request_id: str,
        inputs: MarketInputs,
        summary: ensemble_pb2.ContextSummary,
        outcomes: list[ModelOutcome],
        started: float,
        cycle_context: TraceContext,
    ) -> ensemble_pb2.AnalysisResult:
        thresholds = self.config.thresholds
        with child_span(self.tracer, "consensus", cycle_context) as span:
            consensus = _consensus_of(outcomes, thresholds)
            span.set_attribute("quorum.answered", consensus.answered)
            span.set_attribute("quorum.confidence_level", consensus.confidence_level)
            span.set_attribute("quorum.agreement_strength", consensus.agreement_strength)
        with child_span(self.tracer, "decision", cycle_context) as span:
            decision = decide(consensus, thresholds)
            span.set_attribute("quorum.action", decision.action)

        verdicts = [
            records.model_verdict(outcome, consensus, index, thresholds.large_model_min_weight)
            for index, outcome in enumerate(outcomes)
        ]
        consensus_pb = records.consensus_message(
            consensus, len(outcomes), thresholds.quorum_weight_share
        )
        decision_pb = records.decision_message(decision)

        with child_span(self.tracer, "synthesis", cycle_context) as span:
            text = synthesis.render(
                inputs.symbol,
                inputs.window_end,
                inputs.window_minutes,
                self.config.horizon_minutes,
                verdicts,
                consensus_pb,
                decision_pb,
            )
            span.set_attribute("quorum.synthesis_source", synthesis.TEMPLATE_SOURCE)
        return ensemble_pb2.AnalysisResult(
            request_id=request_id,
            symbol=inputs.symbol,
            window_end=records.timestamp(inputs.window_end),
            window_minutes=inputs.window_minutes,
            horizon_minutes=self.config.horizon_minutes,
            context=summary,
            verdicts=verdicts,
            consensus=consensus_pb,
            decision=decision_pb,
            synthesis=text,
            synthesis_source=synthesis.TEMPLATE_SOURCE,
            config_fingerprint=self.config.fingerprint(),
            requested_context_size=request.context_size or self.config.default_context_size,
            volatile_window=request.volatile_window,
            elapsed_ms=(time.monotonic() - started) * 1000.0,
        )

    def _record(self, result: ensemble_pb2.AnalysisResult) -> None:
        """Write the result's record, unless no model answered and a record already exists.

        A cycle in which every model failed (an outage) carries no verdict, so it must not
        replace an earlier record of the same analysis that has verdicts.
        """
        if self.deps.results is None:
            return
        row = records.result_row(result)
        path = self.deps.results.path_for(row)
        if result.consensus.answered == 0 and path.exists():
            log.info(
                "Cycle %s for %s: no model answered, so the earlier record %s is kept",
                result.request_id,
                result.symbol,
                path,
            )
            result.record_path = str(path)
            result.record_existed = True
            result.record_kept = True
            return
        outcome = self.deps.results.write(row)
        result.record_path = str(outcome.path)
        result.record_existed = outcome.replaced


def generate_request(
    request_id: str,
    inputs: MarketInputs,
    window_minutes: int,
    context: Context,
    config: Config,
) -> inference_pb2.GenerateRequest:
    """Build the request every worker receives for a context."""
    return inference_pb2.GenerateRequest(
        request_id=request_id,
        symbol=inputs.symbol,
        window_end=records.timestamp(inputs.window_end),
        window_minutes=window_minutes,
        horizon_minutes=config.horizon_minutes,
        context_size=context.context_size,
        sections=[
            inference_pb2.ContextSection(
                name=section.name,
                priority=section.priority,
                token_budget=section.budget_tokens,
                text=section.text,
            )
            for section in context.sections
        ],
        temperature=config.temperature,
        seed=config.seed,
    )


def cycle_budget_s(cycle_deadline_s: float, client_remaining_s: float | None) -> float:
    """Seconds the fan-out may take: the cycle deadline, cut to the client's deadline.

    RESULT_MARGIN_S (or half of a shorter client deadline) is kept for what follows the
    fan-out, so the client still receives the result of a cycle whose slow models were cut.
    """
    if client_remaining_s is None:
        return cycle_deadline_s
    margin = min(RESULT_MARGIN_S, client_remaining_s / 2)
    return min(cycle_deadline_s, client_remaining_s - margin)


def _consensus_of(outcomes: Sequence[ModelOutcome], thresholds: Thresholds) -> ConsensusResult:
    """Weigh the verdicts of the models that answered; failed models carry no weight.

    A model's confidence goes through its calibration map, when it has one, first.
    """
    answered = np.array([outcome.answered for outcome in outcomes], dtype=bool)
    weights = np.array([outcome.model.weight for outcome in outcomes], dtype=np.float64)
    confidences = np.zeros(len(outcomes), dtype=np.float64)
    directions = np.zeros(len(outcomes), dtype=np.int8)
    for index, outcome in enumerate(outcomes):
        if outcome.answered and outcome.result is not None:
            confidences[index] = outcome.model.calibrated(outcome.result.verdict.confidence)
            directions[index] = outcome.result.verdict.direction
    return weighted_consensus(
        weights,
        confidences,
        directions,
        answered,
        large_min_weight=thresholds.large_model_min_weight,
        large_min_agreement=thresholds.large_consensus_min_agreement,
    )


def _known_between(items: Sequence[_Timed], start_ns: int, end_ns: int) -> tuple[_Timed, ...]:
    return tuple(item for item in items if start_ns < item.time <= end_ns)
