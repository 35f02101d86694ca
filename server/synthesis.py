"""Written summary of a cycle's verdicts.

This module renders a deterministic template from the recorded numbers, so the summary never
states anything the record does not contain.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from quorum.v1 import ensemble_pb2
from server.consensus_policy import direction_name

TEMPLATE_SOURCE = "template"
# TODO: a summary from an OpenAI-compatible chat API or a local model when one is configured.

_ACTION_TEXT = {
    ensemble_pb2.ACTION_EXECUTE: "execute (automated)",
    ensemble_pb2.ACTION_ALERT: "alert (a human should look)",
    ensemble_pb2.ACTION_INFORM: "inform",
}


def render(
    symbol: str,
    window_end_ns: int,
    window_minutes: int,
    horizon_minutes: int,
    verdicts: Sequence[ensemble_pb2.ModelVerdict],
    consensus: ensemble_pb2.Consensus,
    decision: ensemble_pb2.Decision,
) -> str:
    window_end = datetime.fromtimestamp(window_end_ns / 1e9, tz=UTC)
    lines = [
        f"{symbol}, {window_minutes}-minute window ending {window_end:%Y-%m-%d %H:%M} UTC,"
        f" horizon {horizon_minutes} minutes: {consensus.answered} of {consensus.configured}"
        " models answered.",
        f"Weighted consensus {direction_name(consensus.overall_direction)}:"
        f" agreement strength {consensus.agreement_strength:.2f},"
        f" confidence level {consensus.confidence_level:.2f}.",
    ]
    for verdict in verdicts:
        lines.append(_verdict_line(verdict))
    action = _ACTION_TEXT.get(decision.action, "unknown")
    lines.append(
        f"Decision: {action}, direction {direction_name(decision.direction)}. {decision.reason}"
    )
    return "\n".join(lines)


def _verdict_line(verdict: ensemble_pb2.ModelVerdict) -> str:
    if verdict.status != ensemble_pb2.VERDICT_STATUS_ANSWERED:
        kind = ensemble_pb2.FailureKind.Name(verdict.failure_kind).removeprefix("FAILURE_KIND_")
        return f"- {verdict.model}: no verdict ({kind.lower()}: {verdict.failure})"
    answer = verdict.verdict
    return (
        f"- {verdict.model} (weight {verdict.base_weight:g}, influence {verdict.influence:.2f}):"
        f" {direction_name(answer.direction)}, confidence {answer.confidence:.2f},"
        f" expected move {answer.prediction_pct:+.2f}%. {answer.rationale}"
    )
