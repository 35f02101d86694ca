"""The backtest runner: the real analysis cycle on every historical window of a period.

Each window goes through `Cycle.run`, the same path as a live analysis: validation,
point-in-time data (nothing after window_end), features, context, fan-out, consensus and
decision. Two things differ. The cycle reads and writes the verdict cache, so a verdict on
the same context is generated once. And no record goes to the result store, because the
backtest keeps its own table of windows.

Symbols run at once, one task each, and the cycle's admission lets max_concurrent_symbols
of them run a window at the same time. A symbol's windows run in time order.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from quorum.v1 import ensemble_pb2
from server.backtest.labels import Label, Unlabeled, label_windows
from server.backtest.outcomes import ModelCall, WindowOutcome
from server.backtest.progress import Progress
from server.backtest.schedule import window_ends
from server.config import Config
from server.cycle import Cycle
from server.market_data import NS_PER_MINUTE
from server.market_store import MarketStore
from server.validation import InvalidArgument

log = logging.getLogger(__name__)

_ACTION_NAMES = {
    ensemble_pb2.ACTION_EXECUTE: "execute",
    ensemble_pb2.ACTION_ALERT: "alert",
    ensemble_pb2.ACTION_INFORM: "inform",
}


@dataclass(frozen=True)
class BacktestPlan:
    symbols: tuple[str, ...]
    start_ns: int
    end_ns: int
    every_minutes: int
    # 0 uses market_window_minutes and default_context_size.
    window_minutes: int = 0
    context_size: int = 0


@dataclass(frozen=True)
class SkippedWindow:
    symbol: str
    window_end: int
    reason: str


@dataclass
class BacktestRun:
    planned: int
    outcomes: list[WindowOutcome] = field(default_factory=list)
    skipped: list[SkippedWindow] = field(default_factory=list)
    interrupted: bool = False
    verdicts_cached: int = 0
    verdicts_generated: int = 0

    def sorted_outcomes(self) -> list[WindowOutcome]:
        return sorted(self.outcomes, key=lambda outcome: (outcome.window_end, outcome.symbol))


class BacktestRunner:
    def __init__(self, cycle: Cycle, market: MarketStore, config: Config) -> None:
        self.cycle = cycle
        self.market = market
        self.config = config

    def labels(self, plan: BacktestPlan, symbol: str) -> list[Label | Unlabeled]:
        """Label the plan's windows of one symbol from its stored bars."""
        horizon_ns = self.config.horizon_minutes * NS_PER_MINUTE
        # The labels of the last windows need the bars up to their horizon.
        bars = self.market.read_bars(symbol, plan.end_ns + horizon_ns)
        ends = window_ends(plan.start_ns, plan.end_ns, plan.every_minutes)
        return label_windows(
            bars, ends, self.config.horizon_minutes, self.config.label_neutral_band_bps
        )

    async def run(
        self, plan: BacktestPlan, stop: asyncio.Event, progress: Progress | None = None
    ) -> BacktestRun:
        """Run every window of the plan; on `stop`, cancel the windows in flight and return
        what finished, with `interrupted` set."""
        labelled = {symbol: self.labels(plan, symbol) for symbol in plan.symbols}
        run = BacktestRun(planned=sum(len(labels) for labels in labelled.values()))
        if progress is not None:
            progress.total = run.planned
        tasks = [
            asyncio.create_task(self._run_symbol(plan, symbol, labels, run, stop, progress))
            for symbol, labels in labelled.items()
        ]
        everything = asyncio.gather(*tasks)
        stopped = asyncio.create_task(stop.wait())
        waited: list[asyncio.Future[Any]] = [everything, stopped]
        try:
            await asyncio.wait(waited, return_when=asyncio.FIRST_COMPLETED)
        finally:
            run.interrupted = not everything.done()
            # A failed symbol stops the others too; a finished one ignores the cancel.
            for task in tasks:
                task.cancel()
            await asyncio.gather(everything, *tasks, return_exceptions=True)
            stopped.cancel()
        if not run.interrupted:
            # Raises the error of a symbol's task, if one failed.
            everything.result()
        return run

    async def _run_symbol(
        self,
        plan: BacktestPlan,
        symbol: str,
        labels: Iterable[Label | Unlabeled],
        run: BacktestRun,
        stop: asyncio.Event,
        progress: Progress | None,
    ) -> None:
        for label in labels:
            if stop.is_set():
                return
            if isinstance(label, Unlabeled):
                self._skip(run, progress, SkippedWindow(symbol, label.window_end, label.reason))
                continue
            try:
                result = await self._run_window(plan, symbol, label.window_end)
            except InvalidArgument as error:
                self._skip(run, progress, SkippedWindow(symbol, label.window_end, str(error)))
                continue
            outcome = window_outcome(result, label)
            cached = sum(call.from_cache for call in outcome.models)
            generated = sum(
                not verdict.from_cache and verdict.status == ensemble_pb2.VERDICT_STATUS_ANSWERED
                for verdict in result.verdicts
            )
            run.outcomes.append(outcome)
            run.verdicts_cached += cached
            run.verdicts_generated += generated
            if progress is not None:
                progress.advance(cached=cached, generated=generated)

    def _skip(self, run: BacktestRun, progress: Progress | None, window: SkippedWindow) -> None:
        log.info("Window %s %d skipped: %s", window.symbol, window.window_end, window.reason)
        run.skipped.append(window)
        if progress is not None:
            progress.advance(skipped=True)

    async def _run_window(
        self, plan: BacktestPlan, symbol: str, window_end: int
    ) -> ensemble_pb2.AnalysisResult:
        request = ensemble_pb2.AnalyzeRequest(
            request_id=f"backtest-{symbol}-{window_end}",
            symbol=symbol,
            window_minutes=plan.window_minutes,
            context_size=plan.context_size,
        )
        request.window_end.FromNanoseconds(window_end)
        result: ensemble_pb2.AnalysisResult | None = None
        async for event in self.cycle.run(request):
            if event.HasField("result"):
                result = event.result
        if result is None:
            raise RuntimeError(f"the cycle for {symbol} at {window_end} ended without a result")
        return result


def window_outcome(result: ensemble_pb2.AnalysisResult, label: Label) -> WindowOutcome:
    """Join a cycle's result with the window's label."""
    calls = tuple(_model_call(verdict) for verdict in result.verdicts)
    return WindowOutcome(
        symbol=result.symbol,
        window_end=result.window_end.ToNanoseconds(),
        label=label.direction,
        realized_bps=label.realized_bps,
        momentum_bps=label.momentum_bps,
        models=calls,
        overall_direction=result.consensus.overall_direction,
        confidence_level=result.consensus.confidence_level,
        agreement_strength=result.consensus.agreement_strength,
        action=_ACTION_NAMES[result.decision.action],
        decision_direction=result.decision.direction,
    )


def _model_call(verdict: ensemble_pb2.ModelVerdict) -> ModelCall:
    answered = verdict.status == ensemble_pb2.VERDICT_STATUS_ANSWERED
    return ModelCall(
        model=verdict.model,
        weight=verdict.base_weight,
        answered=answered,
        direction=verdict.verdict.direction if answered else 0,
        confidence=verdict.verdict.confidence if answered else 0.0,
        calibrated_confidence=verdict.calibrated_confidence if answered else 0.0,
        prediction_pct=verdict.verdict.prediction_pct if answered else 0.0,
        from_cache=verdict.from_cache,
        failure=verdict.failure,
    )
