"""The verdict a model must output: a GBNF grammar that forces it, and a strict parser.

The grammar admits exactly one JSON object with the keys in a fixed order:

    {"rationale": "...", "direction": "bullish", "confidence": 0.72, "prediction": -1.25}

The rationale comes first so that the model states its evidence before it commits to a
direction and a confidence. With the numbers first, SmolLM2-135M and Gemma 3 270M copied the
first probability-like figure of the prompt (a correlation) into `confidence`.
NOTE: with models that small the copying still happens often with the rationale first.

Every part has a bounded length, so the longest admitted object has a known number of
characters. The rationale is printable ASCII without `"` or `\\`, so it needs no escape, and
every admitted character is one byte. llama.cpp's grammar sampler (llama_grammar_apply_impl in
src/llama-grammar.cpp) rejects every token with an empty piece, so each completion token adds
at least one character. A grammar sized with `rationale_chars_for(max_tokens)` therefore
completes within max_tokens tokens.
"""

from __future__ import annotations

import json
import math
import unicodedata
from dataclasses import dataclass
from typing import Any

import llama_cpp

DIRECTIONS = ("bullish", "bearish", "neutral")
FIELDS = ("rationale", "direction", "confidence", "prediction")
RATIONALE_MAX_CHARS = 240
# Below this the rationale is too short to say anything; a grammar never allows fewer.
RATIONALE_MIN_CHARS = 16
# The grammar allows at most two integer digits, so |prediction| < 100.
PREDICTION_MAX_ABS_PCT = 100.0

# Maximum-length text the grammar admits around the rationale: every optional space present,
# "bullish", confidence "0.123" and prediction "-99.99".
_MAX_LENGTH_FRAME = (
    '{ "rationale": "", "direction": "bullish", "confidence": 0.123, "prediction": -99.99 }'
)
FRAME_MAX_CHARS = len(_MAX_LENGTH_FRAME)

_GRAMMAR_TEMPLATE = r"""
root ::= (
    "{" ws "\"rationale\":" ws rationale
    "," ws "\"direction\":" ws direction
    "," ws "\"confidence\":" ws confidence
    "," ws "\"prediction\":" ws prediction ws "}"
)
direction ::= "\"bullish\"" | "\"bearish\"" | "\"neutral\""
confidence ::= "0" ("." [0-9] [0-9]? [0-9]?)? | "1" ("." "0" "0"? "0"?)?
prediction ::= "-"? ("0" | [1-9] [0-9]?) ("." [0-9] [0-9]?)?
rationale ::= "\"" [!#-\[\]-~] [ !#-\[\]-~]{0,RATIONALE_TAIL_CHARS} "\""
ws ::= " "?
"""


class VerdictError(ValueError):
    """A completion is not a complete, valid verdict; the message gives the reason."""


class GrammarError(ValueError):
    """llama.cpp could not compile a GBNF grammar."""


@dataclass(frozen=True)
class Verdict:
    """One model's parsed verdict."""

    direction: str
    confidence: float
    prediction_pct: float
    rationale: str


def rationale_chars_for(max_tokens: int) -> int:
    """Return the longest rationale that still lets the verdict complete in max_tokens.

    Below FRAME_MAX_CHARS + RATIONALE_MIN_CHARS tokens the minimum is returned, and a
    completion can then run out of tokens.
    """
    room = max_tokens - FRAME_MAX_CHARS
    return max(RATIONALE_MIN_CHARS, min(RATIONALE_MAX_CHARS, room))


def grammar_text(rationale_chars: int) -> str:
    """Return the GBNF text of the verdict grammar with a rationale of 1..rationale_chars."""
    if not RATIONALE_MIN_CHARS <= rationale_chars <= RATIONALE_MAX_CHARS:
        raise ValueError(
            f"rationale_chars {rationale_chars} is out of range"
            f" [{RATIONALE_MIN_CHARS}, {RATIONALE_MAX_CHARS}]"
        )
    # The first character is not a space, so a rationale is never blank.
    return _GRAMMAR_TEMPLATE.replace("RATIONALE_TAIL_CHARS", str(rationale_chars - 1))


def compile_grammar(vocab: llama_cpp.llama_vocab_p, text: str) -> llama_cpp.LlamaGrammar:
    """Check that llama.cpp compiles `text` for this vocabulary and return it as a LlamaGrammar.

    LlamaGrammar.from_string only stores the text, and llama.cpp parses it when the sampler is
    built. A grammar that failed there would put a null sampler in the chain.
    """
    sampler = llama_cpp.llama_sampler_init_grammar(vocab, text.encode(), b"root")
    if not sampler:
        raise GrammarError("llama.cpp failed to compile the verdict grammar")
    llama_cpp.llama_sampler_free(sampler)
    return llama_cpp.LlamaGrammar.from_string(text, verbose=False)


def is_complete_object(text: str) -> bool:
    """Return whether `text` is one complete JSON object, the point where the grammar ends."""
    if not text.rstrip().endswith("}"):
        return False
    try:
        return isinstance(json.loads(text), dict)
    except json.JSONDecodeError:
        return False


def parse_verdict(text: str) -> Verdict:
    """Parse and validate a verdict with json.loads, raising VerdictError with the reason."""
    try:
        document = json.loads(
            text, object_pairs_hook=_object_without_duplicates, parse_constant=_reject_constant
        )
    except json.JSONDecodeError as error:
        raise VerdictError(
            f"completion is not valid JSON: {error.msg} at character {error.pos}"
        ) from None
    if not isinstance(document, dict):
        raise VerdictError(f"verdict must be a JSON object, got {type(document).__name__}")

    missing = [name for name in FIELDS if name not in document]
    if missing:
        raise VerdictError(f"verdict is missing {', '.join(missing)}")
    unknown = sorted(set(document) - set(FIELDS))
    if unknown:
        raise VerdictError(f"verdict has unknown fields {', '.join(unknown)}")

    return Verdict(
        direction=_direction(document["direction"]),
        confidence=_confidence(document["confidence"]),
        prediction_pct=_prediction(document["prediction"]),
        rationale=_rationale(document["rationale"]),
    )


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document: dict[str, Any] = {}
    for key, value in pairs:
        if key in document:
            raise VerdictError(f"verdict repeats field {key!r}")
        document[key] = value
    return document


def _reject_constant(name: str) -> float:
    raise VerdictError(f"verdict contains {name}, which is not a JSON number")


def _direction(value: Any) -> str:
    if value not in DIRECTIONS:
        raise VerdictError(
            f"direction {value!r} is invalid: expected one of {', '.join(DIRECTIONS)}"
        )
    return str(value)


def _number(name: str, value: Any) -> float:
    # bool is a subclass of int, but `true` is not a number in a verdict.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise VerdictError(f"{name} {value!r} is not a number")
    number = float(value)
    if not math.isfinite(number):
        raise VerdictError(f"{name} {value!r} is not finite")
    return number


def _confidence(value: Any) -> float:
    confidence = _number("confidence", value)
    if not 0.0 <= confidence <= 1.0:
        raise VerdictError(f"confidence {confidence} is out of range [0, 1]")
    return confidence


def _prediction(value: Any) -> float:
    prediction = _number("prediction", value)
    if abs(prediction) >= PREDICTION_MAX_ABS_PCT:
        raise VerdictError(
            f"prediction {prediction} is out of range (-{PREDICTION_MAX_ABS_PCT:g},"
            f" {PREDICTION_MAX_ABS_PCT:g}) percent"
        )
    return prediction


def _rationale(value: Any) -> str:
    if not isinstance(value, str):
        raise VerdictError(f"rationale {value!r} is not a string")
    if not value.strip():
        raise VerdictError("rationale is empty")
    if len(value) > RATIONALE_MAX_CHARS:
        raise VerdictError(
            f"rationale has {len(value)} characters, more than {RATIONALE_MAX_CHARS}"
        )
    for index, char in enumerate(value):
        # Categories C* are control, format (bidirectional marks), surrogate and unassigned.
        if unicodedata.category(char).startswith("C"):
            raise VerdictError(f"rationale contains control character U+{ord(char):04X} at {index}")
    return value


class VerdictGrammars:
    """Compiled verdict grammars for one model's vocabulary, one per rationale length."""

    def __init__(self, vocab: llama_cpp.llama_vocab_p) -> None:
        self._vocab = vocab
        self._compiled: dict[int, llama_cpp.LlamaGrammar] = {}

    def for_max_tokens(self, max_tokens: int) -> llama_cpp.LlamaGrammar:
        """Return the grammar whose longest verdict fits in max_tokens tokens."""
        rationale_chars = rationale_chars_for(max_tokens)
        grammar = self._compiled.get(rationale_chars)
        if grammar is None:
            grammar = compile_grammar(self._vocab, grammar_text(rationale_chars))
            self._compiled[rationale_chars] = grammar
        return grammar
