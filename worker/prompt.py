"""The text of Quorum's prompt: instructions, delimited data sections, then the question.

The instructions depend only on the horizon, so they form a stable prefix whose KV cache
llama.cpp reuses from one window to the next. Sections follow in the coordinator's order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

_SYSTEM_TEXT = """\
You are a market analyst in Quorum, an ensemble of models that judges one market symbol \
at the close of a trading window. The user message contains market data in sections, each \
between a BEGIN line and an END line, followed by the question. Answer with one JSON object \
and nothing else:
{{"rationale": ..., "direction": ..., "confidence": ..., "prediction": ...}}
- rationale: one short sentence naming the main evidence, written first
- direction: "bullish", "bearish" or "neutral" for the price over the next {horizon} minutes
- confidence: how sure you are of that direction given the evidence, from 0 to 1 (not a \
number copied from the data)
- prediction: the expected price change over the next {horizon} minutes in percent, \
negative for a fall"""


@dataclass(frozen=True)
class Question:
    """The symbol, window and horizon a verdict is about."""

    symbol: str
    window_end: datetime
    window_minutes: int
    horizon_minutes: int


def system_text(horizon_minutes: int) -> str:
    """Return the instructions: the task, the verdict's fields and the horizon."""
    return _SYSTEM_TEXT.format(horizon=horizon_minutes)


def section_block(name: str, text: str) -> str:
    """Delimit one section's text with a BEGIN and an END line naming it."""
    if text:
        return f"=== BEGIN {name} ===\n{text}\n=== END {name} ==="
    return f"=== BEGIN {name} ===\n=== END {name} ==="


def question_text(question: Question) -> str:
    window_end = question.window_end.strftime("%Y-%m-%dT%H:%M:%SZ")
    return (
        f"Symbol: {question.symbol}\n"
        f"Window: {question.window_minutes} minutes ending {window_end}\n"
        f"Horizon: {question.horizon_minutes} minutes after the window ends\n"
        "Answer with the JSON verdict only."
    )


def user_text(sections: Sequence[tuple[str, str]], question: Question) -> str:
    """Return the user message: each (name, text) section in the given order, then the
    question."""
    blocks = [section_block(name, text) for name, text in sections]
    blocks.append(question_text(question))
    return "\n\n".join(blocks)
