"""Conversions between the cycle's values, the wire messages and the result store's rows."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from fastpath.consensus import ConsensusResult
from quorum.v1 import ensemble_pb2, inference_pb2
from server.consensus_policy import Decision, direction_name
from server.context_builder import Context
from server.fanout import ModelOutcome

_ACTIONS = {
    "execute": ensemble_pb2.ACTION_EXECUTE,
    "alert": ensemble_pb2.ACTION_ALERT,
    "inform": ensemble_pb2.ACTION_INFORM,
}


def timestamp(ns: int) -> Timestamp:
    """Convert int64 nanoseconds since the epoch to a protobuf Timestamp."""
    stamp = Timestamp()
    stamp.FromNanoseconds(int(ns))
    return stamp


def context_summary(
    context: Context,
    expand_reason: str,
    default_size: int,
    section_budgets: Mapping[str, tuple[int, int]],
) -> ensemble_pb2.ContextSummary:
    """Summarize the context: the fitted sections in prompt order, then the missing ones."""
    summary = ensemble_pb2.ContextSummary(
        context_size=context.context_size,
        used_tokens=context.used_tokens,
        expanded=context.context_size > default_size,
        expand_reason=expand_reason,
        inputs_fingerprint=context.inputs_fingerprint,
        bars_used=context.bars_used,
        sections=[
            ensemble_pb2.SectionSummary(
                name=section.name,
                priority=section.priority,
                budget_tokens=section.budget_tokens,
                used_tokens=section.used_tokens,
                lines=section.lines,
                lines_total=section.lines_total,
                requested_tokens=section.requested_tokens,
            )
            for section in context.sections
        ],
    )
    for name in context.missing:
        priority, _ = section_budgets[name]
        summary.sections.append(
            ensemble_pb2.SectionSummary(name=name, priority=priority, missing=True)
        )
    if context.last_bar_time:
        summary.last_bar_time.CopyFrom(timestamp(context.last_bar_time))
    return summary


def model_verdict(
    outcome: ModelOutcome,
    consensus: ConsensusResult | None,
    index: int,
    large_min_weight: float,
) -> ensemble_pb2.ModelVerdict:
    """Build the wire form of one model's outcome; influence needs the consensus."""
    message = ensemble_pb2.ModelVerdict(
        model=outcome.model.name,
        address=outcome.address,
        base_weight=outcome.model.weight,
        large=outcome.model.is_large(large_min_weight),
        status=(
            ensemble_pb2.VERDICT_STATUS_ANSWERED
            if outcome.answered
            else ensemble_pb2.VERDICT_STATUS_FAILED
        ),
        failure_kind=outcome.failure_kind,
        failure=outcome.failure,
        elapsed_ms=outcome.elapsed_ms,
        queued_ms=outcome.queued_ms,
        from_cache=outcome.from_cache,
    )
    if outcome.result is not None:
        message.finish_reason = outcome.result.finish_reason
        message.text = outcome.result.text
        message.stats.CopyFrom(outcome.result.stats)
        if outcome.answered:
            message.verdict.CopyFrom(outcome.result.verdict)
            message.calibrated_confidence = outcome.model.calibrated(
                outcome.result.verdict.confidence
            )
    if consensus is not None:
        message.final_weight = float(consensus.final_weights[index])
        message.influence = float(consensus.influences[index])
    return message


def consensus_message(
    consensus: ConsensusResult, configured: int, quorum_weight_share: float
) -> ensemble_pb2.Consensus:
    bullish, bearish, neutral = consensus.direction_influence
    return ensemble_pb2.Consensus(
        answered_weight_share=consensus.answered_weight_share,
        quorum_weight_share=quorum_weight_share,
        overall_direction=consensus.overall_direction,
        agreement_strength=consensus.agreement_strength,
        confidence_level=consensus.confidence_level,
        answered=consensus.answered,
        configured=configured,
        bullish_influence=bullish,
        bearish_influence=bearish,
        neutral_influence=neutral,
        large_agreement=ensemble_pb2.LargeModelAgreement(
            available=consensus.large_available,
            large_answered=consensus.large_answered,
            large_configured=consensus.large_configured,
            direction=consensus.large_direction,
            share=consensus.large_share,
            holds=consensus.large_holds,
        ),
    )


def decision_message(decision: Decision) -> ensemble_pb2.Decision:
    return ensemble_pb2.Decision(
        action=_ACTIONS[decision.action], direction=decision.direction, reason=decision.reason
    )


def _enum_name(enum: Any, value: int, prefix: str) -> str:
    return str(enum.Name(value)).removeprefix(prefix).lower()


def result_row(result: ensemble_pb2.AnalysisResult) -> dict[str, Any]:
    """Flatten an AnalysisResult into one row of the result store's schema."""
    consensus = result.consensus
    large = consensus.large_agreement
    context = result.context
    return {
        "request_id": result.request_id,
        "symbol": result.symbol,
        "window_end": result.window_end.ToNanoseconds(),
        "window_minutes": result.window_minutes,
        "horizon_minutes": result.horizon_minutes,
        "config_fingerprint": result.config_fingerprint,
        "requested_context_size": result.requested_context_size,
        "volatile_window": result.volatile_window,
        "inputs_fingerprint": context.inputs_fingerprint,
        "context_size": context.context_size,
        "context_used_tokens": context.used_tokens,
        "context_expanded": context.expanded,
        "context_expand_reason": context.expand_reason,
        "bars_used": context.bars_used,
        "last_bar_time": (
            context.last_bar_time.ToNanoseconds() if context.HasField("last_bar_time") else None
        ),
        "sections": [
            {
                "name": s.name,
                "priority": s.priority,
                "budget_tokens": s.budget_tokens,
                "used_tokens": s.used_tokens,
                "lines": s.lines,
                "lines_total": s.lines_total,
                "requested_tokens": s.requested_tokens,
                "missing": s.missing,
            }
            for s in context.sections
        ],
        "verdicts": [_verdict_row(verdict) for verdict in result.verdicts],
        "models_answered": consensus.answered,
        "models_configured": consensus.configured,
        "overall_direction": direction_name(consensus.overall_direction),
        "agreement_strength": consensus.agreement_strength,
        "confidence_level": consensus.confidence_level,
        "bullish_influence": consensus.bullish_influence,
        "bearish_influence": consensus.bearish_influence,
        "neutral_influence": consensus.neutral_influence,
        "answered_weight_share": consensus.answered_weight_share,
        "quorum_weight_share": consensus.quorum_weight_share,
        "large_agreement_available": large.available,
        "large_answered": large.large_answered,
        "large_direction": direction_name(large.direction),
        "large_share": large.share,
        "large_holds": large.holds,
        "action": _enum_name(ensemble_pb2.Action, result.decision.action, "ACTION_"),
        "decision_direction": direction_name(result.decision.direction),
        "decision_reason": result.decision.reason,
        "synthesis": result.synthesis,
        "synthesis_source": result.synthesis_source,
        "elapsed_ms": result.elapsed_ms,
    }


def _verdict_row(verdict: ensemble_pb2.ModelVerdict) -> dict[str, Any]:
    answered = verdict.status == ensemble_pb2.VERDICT_STATUS_ANSWERED
    stats = verdict.stats
    return {
        "model": verdict.model,
        "address": verdict.address,
        "base_weight": verdict.base_weight,
        "large": verdict.large,
        "status": _enum_name(ensemble_pb2.VerdictStatus, verdict.status, "VERDICT_STATUS_"),
        "direction": direction_name(verdict.verdict.direction) if answered else None,
        "confidence": verdict.verdict.confidence if answered else None,
        "prediction_pct": verdict.verdict.prediction_pct if answered else None,
        "rationale": verdict.verdict.rationale if answered else None,
        "text": verdict.text,
        "failure_kind": (
            None
            if answered
            else _enum_name(ensemble_pb2.FailureKind, verdict.failure_kind, "FAILURE_KIND_")
        ),
        "failure": verdict.failure or None,
        "finish_reason": _enum_name(
            inference_pb2.FinishReason, verdict.finish_reason, "FINISH_REASON_"
        ),
        "final_weight": verdict.final_weight,
        "influence": verdict.influence,
        "n_ctx": stats.n_ctx,
        "prompt_tokens": stats.prompt_tokens,
        "cached_prompt_tokens": stats.cached_prompt_tokens,
        "completion_tokens": stats.completion_tokens,
        "queue_ms": stats.queue_ms,
        "time_to_first_token_ms": stats.time_to_first_token_ms,
        "generation_ms": stats.generation_ms,
        "elapsed_ms": verdict.elapsed_ms,
        "coordinator_queued_ms": verdict.queued_ms,
        "calibrated_confidence": verdict.calibrated_confidence if answered else None,
        "from_cache": verdict.from_cache,
    }
