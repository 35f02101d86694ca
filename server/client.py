"""Client side of `quorum analyze` and `quorum models`: progress, tables and JSON."""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime
from typing import TextIO

import grpc
from google.protobuf import json_format
from google.protobuf.timestamp_pb2 import Timestamp

from quorum.v1 import ensemble_pb2, ensemble_pb2_grpc
from server.consensus_policy import direction_name
from server.fanout import CHANNEL_OPTIONS
from server.security import ChannelSecurity

# Exit status of `quorum analyze` when the cycle ran but no model answered.
EXIT_NO_ANSWER = 3


def analyze_request(
    symbol: str,
    at: datetime,
    window_minutes: int,
    context_size: int,
    volatile: bool,
) -> ensemble_pb2.AnalyzeRequest:
    window_end = Timestamp()
    window_end.FromDatetime(at)
    return ensemble_pb2.AnalyzeRequest(
        symbol=symbol,
        window_end=window_end,
        window_minutes=window_minutes,
        context_size=context_size,
        volatile_window=volatile,
    )


def analyze(
    address: str,
    request: ensemble_pb2.AnalyzeRequest,
    as_json: bool,
    timeout_s: float | None,
    security: ChannelSecurity,
) -> int:
    """Stream one analysis from the coordinator at `address`; return the exit status."""
    progress = Progress(sys.stderr, enabled=not as_json)
    result: ensemble_pb2.AnalysisResult | None = None
    with security.open(address, options=CHANNEL_OPTIONS) as channel:
        stub = ensemble_pb2_grpc.EnsembleStub(channel)
        try:
            for event in stub.AnalyzeStream(request, timeout=timeout_s):
                progress.update(event)
                if event.HasField("result"):
                    result = event.result
        except grpc.RpcError as error:
            print(f"quorum analyze: {error.code().name}: {error.details()}", file=sys.stderr)
            return 2 if error.code() == grpc.StatusCode.INVALID_ARGUMENT else 1
    if result is None:
        print("quorum analyze: the coordinator ended the stream without a result", file=sys.stderr)
        return 1
    if as_json:
        print(json.dumps(result_json(result), indent=2))
    else:
        print(format_result(result))
    if result.consensus.answered == 0:
        print("quorum analyze: no model answered; see the failures above", file=sys.stderr)
        return EXIT_NO_ANSWER
    return 0


def result_json(result: ensemble_pb2.AnalysisResult) -> dict:
    return json_format.MessageToDict(
        result, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


def list_models(address: str, security: ChannelSecurity) -> int:
    with security.open(address) as channel:
        stub = ensemble_pb2_grpc.EnsembleStub(channel)
        try:
            response = stub.ListModels(ensemble_pb2.ListModelsRequest(), timeout=30)
        except grpc.RpcError as error:
            print(f"quorum models: {error.code().name}: {error.details()}", file=sys.stderr)
            return 1
    rows = [["model", "weight", "large", "healthy", "address", "params", "quant", "n_ctx"]]
    for model in response.models:
        description = model.description
        rows.append(
            [
                model.name,
                f"{model.base_weight:g}",
                "yes" if model.large else "no",
                "yes" if model.healthy else "no",
                model.address,
                _count(description.parameter_count) if model.healthy else "-",
                description.quantization or "-",
                str(description.n_ctx) if model.healthy else "-",
            ]
        )
    print(format_table(rows, right_aligned={1, 5, 7}))
    for model in response.models:
        if not model.healthy:
            print(f"{model.name}: {model.error}")
    return 0


class Progress:
    """Progress on standard error, one line per event.

    On a terminal the token count of the running model is rewritten in place. Elsewhere (a
    log file, CI) it is printed at most every TOKEN_LINE_INTERVAL_S seconds.
    """

    TOKEN_LINE_INTERVAL_S = 5.0

    def __init__(self, stream: TextIO, enabled: bool) -> None:
        self.stream = stream
        self.enabled = enabled
        self.interactive = enabled and stream.isatty()
        self.started = time.monotonic()
        self.last_token_line = 0.0
        self.line_open = False

    def _stamp(self) -> str:
        return f"[{time.monotonic() - self.started:6.1f}s]"

    def _say(self, text: str) -> None:
        if not self.enabled:
            return
        if self.line_open:
            self.stream.write("\r\033[K")
            self.line_open = False
        print(f"{self._stamp()} {text}", file=self.stream, flush=True)

    def _tokens(self, tokens: ensemble_pb2.ModelTokens) -> None:
        count = tokens.completion_tokens
        text = f"{tokens.model}: {count} token{'' if count == 1 else 's'}"
        if self.interactive:
            self.stream.write(f"\r\033[K{self._stamp()} {text}")
            self.stream.flush()
            self.line_open = True
            return
        now = time.monotonic()
        if now - self.last_token_line >= self.TOKEN_LINE_INTERVAL_S:
            self.last_token_line = now
            self._say(text)

    def update(self, event: ensemble_pb2.AnalysisEvent) -> None:
        kind = event.WhichOneof("event")
        if kind == "context_ready":
            context = event.context_ready
            self._say(
                f"context ready: {context.used_tokens:,} of {context.context_size:,} tokens"
                f" in {_sections_text(context)} from {context.bars_used:,} bars"
            )
        elif kind == "model_started":
            self._say(f"{event.model_started.model}: generating")
        elif kind == "tokens" and self.enabled:
            self._tokens(event.tokens)
        elif kind == "verdict":
            self._say(_verdict_summary(event.verdict))
        elif kind == "decision":
            action = ensemble_pb2.Action.Name(event.decision.action).removeprefix("ACTION_")
            self._say(f"decision: {action.lower()}")


def _verdict_summary(verdict: ensemble_pb2.ModelVerdict) -> str:
    if verdict.status == ensemble_pb2.VERDICT_STATUS_ANSWERED:
        answer = verdict.verdict
        return (
            f"{verdict.model}: {direction_name(answer.direction)}"
            f" (confidence {_confidence_text(verdict)}) in {verdict.elapsed_ms / 1000:.1f} s"
        )
    return f"{verdict.model}: failed: {verdict.failure}"


def _confidence_text(verdict: ensemble_pb2.ModelVerdict) -> str:
    """Return the stated confidence, and the calibrated one the consensus weighed if it differs."""
    stated = verdict.verdict.confidence
    if verdict.calibrated_confidence == stated:
        return f"{stated:.2f}"
    return f"{stated:.2f}->{verdict.calibrated_confidence:.2f}"


def format_result(result: ensemble_pb2.AnalysisResult) -> str:
    window_end = datetime.fromtimestamp(result.window_end.ToNanoseconds() / 1e9, tz=UTC)
    context = result.context
    lines = [
        f"{result.symbol}  {result.window_minutes}-minute window ending"
        f" {window_end:%Y-%m-%d %H:%M} UTC, horizon {result.horizon_minutes} min",
        f"context: {context.used_tokens:,} of {context.context_size:,} tokens,"
        f" {_sections_text(context)}, {context.bars_used:,} bars"
        + (f", expanded: {context.expand_reason}" if context.expanded else ""),
        "",
        _verdict_table(result),
        "",
    ]
    consensus = result.consensus
    large = consensus.large_agreement
    if large.available:
        large_text = (
            f"{direction_name(large.direction)} share {large.share:.2f}"
            f" of {large.large_answered} ({'holds' if large.holds else 'does not hold'})"
        )
    else:
        large_text = (
            f"unavailable ({large.large_answered} of {large.large_configured} large models"
            " answered, 2 needed)"
        )
    decision = result.decision
    action = ensemble_pb2.Action.Name(decision.action).removeprefix("ACTION_")
    lines += [
        f"consensus   {direction_name(consensus.overall_direction)}"
        f"  agreement {consensus.agreement_strength:.3f}"
        f"  confidence {consensus.confidence_level:.3f}"
        f"  ({consensus.answered} of {consensus.configured} answered)",
        f"quorum      answered weight share {consensus.answered_weight_share:.3f},"
        f" needs {consensus.quorum_weight_share:.3f}",
        f"large       {large_text}",
        f"decision    {action}  direction {direction_name(decision.direction)}",
        f"reason      {decision.reason}",
        f"record      {result.record_path}" + _record_note(result),
        f"elapsed     {result.elapsed_ms / 1000:.1f} s",
    ]
    return "\n".join(lines)


def _record_note(result: ensemble_pb2.AnalysisResult) -> str:
    if result.record_kept:
        return "  (kept the earlier record: no model answered, so this result was not written)"
    if result.record_existed:
        return "  (replaced the earlier record)"
    return ""


def _generation_cells(verdict: ensemble_pb2.ModelVerdict) -> list[str]:
    """Token counts and timings; a model that never produced a token shows "-" for them."""
    stats = verdict.stats
    queued = f"{verdict.queued_ms / 1000:.1f}"
    total = f"{verdict.elapsed_ms / 1000:.1f}"
    if not verdict.HasField("stats"):
        return ["-", "-", "-", queued, "-", total]
    return [
        f"{stats.prompt_tokens:,}",
        f"{stats.cached_prompt_tokens:,}",
        str(stats.completion_tokens),
        queued,
        f"{stats.time_to_first_token_ms / 1000:.1f}",
        total,
    ]


def _sections_text(context: ensemble_pb2.ContextSummary) -> str:
    missing = [section.name for section in context.sections if section.missing]
    # A section with data can still be cut to no line at all by a small budget.
    dropped = [s.name for s in context.sections if not s.missing and s.lines == 0]
    present = len(context.sections) - len(missing) - len(dropped)
    notes = []
    if missing:
        notes.append(f"{', '.join(missing)}: no data")
    if dropped:
        notes.append(f"{', '.join(dropped)}: no budget left")
    text = f"{present} of {len(context.sections)} sections"
    return text + (f" ({'; '.join(notes)})" if notes else "")


def _verdict_table(result: ensemble_pb2.AnalysisResult) -> str:
    rows = [
        [
            "model",
            "weight",
            "direction",
            "conf",
            "move %",
            "influence",
            "prompt",
            "cached",
            "gen",
            "queued s",
            "ttft s",
            "total s",
        ]
    ]
    failures = []
    for verdict in result.verdicts:
        if verdict.status == ensemble_pb2.VERDICT_STATUS_ANSWERED:
            answer = verdict.verdict
            cells = [
                direction_name(answer.direction),
                _confidence_text(verdict),
                f"{answer.prediction_pct:+.2f}",
                f"{verdict.influence:.3f}",
            ]
        else:
            kind = ensemble_pb2.FailureKind.Name(verdict.failure_kind)
            cells = [kind.removeprefix("FAILURE_KIND_").lower(), "-", "-", "-"]
            failures.append(f"  {verdict.model}: {verdict.failure}")
        rows.append(
            [verdict.model, f"{verdict.base_weight:g}"] + cells + _generation_cells(verdict)
        )
    table = format_table(rows, right_aligned=set(range(1, len(rows[0]))) - {2})
    if failures:
        table += "\nfailures:\n" + "\n".join(failures)
    rationales = [
        f"  {v.model}: {v.verdict.rationale}"
        for v in result.verdicts
        if v.status == ensemble_pb2.VERDICT_STATUS_ANSWERED and v.verdict.rationale
    ]
    if rationales:
        table += "\nrationales:\n" + "\n".join(rationales)
    return table


def format_table(rows: list[list[str]], right_aligned: set[int]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [
            cell.rjust(widths[i]) if i in right_aligned else cell.ljust(widths[i])
            for i, cell in enumerate(row)
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def _count(value: int) -> str:
    for scale, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if value >= scale:
            return f"{value / scale:.1f}{suffix}"
    return str(value)
