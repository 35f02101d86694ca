"""The verdict grammar and parser: strict JSON, every field and range checked."""

from __future__ import annotations

import json
from pathlib import Path

import llama_cpp
import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.verdict_grammar import (
    FRAME_MAX_CHARS,
    RATIONALE_MAX_CHARS,
    RATIONALE_MIN_CHARS,
    GrammarError,
    Verdict,
    VerdictError,
    compile_grammar,
    grammar_text,
    is_complete_object,
    parse_verdict,
    rationale_chars_for,
)

VALID = (
    '{"direction": "bearish", "confidence": 0.625, "prediction": -1.25,'
    ' "rationale": "Lower highs and falling volume."}'
)


def verdict_text(**fields: object) -> str:
    document: dict[str, object] = json.loads(VALID)
    document.update(fields)
    return json.dumps(document)


@pytest.fixture(scope="module")
def smollm2_vocab(smollm2_path: Path):
    llama = llama_cpp.Llama(str(smollm2_path), vocab_only=True, verbose=False)
    yield llama._model.vocab
    llama.close()


def test_parse_valid_verdict():
    assert parse_verdict(VALID) == Verdict(
        "bearish", 0.625, -1.25, "Lower highs and falling volume."
    )


def test_parse_integer_bounds():
    verdict = parse_verdict(verdict_text(confidence=1, prediction=0))
    assert verdict.confidence == 1.0
    assert verdict.prediction_pct == 0.0


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('{"direction": "bullish", "confidence": 0.5, "prediction": 1.0}', "missing rationale"),
        (verdict_text(extra=1), "unknown fields extra"),
        (verdict_text(direction="up"), "direction 'up' is invalid"),
        (verdict_text(direction=None), "direction None is invalid"),
        (verdict_text(confidence=1.5), "confidence 1.5 is out of range"),
        (verdict_text(confidence=-0.1), "confidence -0.1 is out of range"),
        (verdict_text(confidence=True), "confidence True is not a number"),
        (verdict_text(confidence="0.9"), "confidence '0.9' is not a number"),
        (verdict_text(prediction=100), "prediction 100.0 is out of range"),
        (verdict_text(prediction=-250.5), "prediction -250.5 is out of range"),
        (verdict_text(rationale=""), "rationale is empty"),
        (verdict_text(rationale=7), "rationale 7 is not a string"),
        (verdict_text(rationale="x" * (RATIONALE_MAX_CHARS + 1)), "characters, more than"),
        (verdict_text(rationale="bell\u0007"), "control character U+0007"),
        (verdict_text(rationale="rtl \u202e mark"), "control character U+202E"),
        ("bullish, very confident", "not valid JSON"),
        (VALID[:-12], "not valid JSON"),
        ("", "not valid JSON"),
        ("[1, 2]", "must be a JSON object, got list"),
        (VALID.replace('"confidence": 0.625', '"confidence": NaN'), "NaN"),
        (VALID.replace('"prediction": -1.25', '"prediction": Infinity'), "Infinity"),
        (VALID[:-1] + ', "direction": "bullish"}', "repeats field 'direction'"),
    ],
)
def test_parse_rejects(text: str, reason: str):
    with pytest.raises(VerdictError) as raised:
        parse_verdict(text)
    assert reason in str(raised.value)


@given(
    direction=st.sampled_from(["bullish", "bearish", "neutral"]),
    confidence=st.floats(min_value=0.0, max_value=1.0),
    prediction=st.floats(min_value=-99.99, max_value=99.99),
    rationale=st.text(
        alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=200
    ).filter(str.strip),
)
def test_parse_round_trip(direction: str, confidence: float, prediction: float, rationale: str):
    text = json.dumps(
        {
            "direction": direction,
            "confidence": confidence,
            "prediction": prediction,
            "rationale": rationale,
        }
    )
    assert parse_verdict(text) == Verdict(direction, confidence, prediction, rationale)


def test_complete_object_detection():
    assert is_complete_object(VALID)
    assert not is_complete_object(VALID[:-1])
    assert not is_complete_object('{"rationale": "ends with }"')


@pytest.mark.parametrize("max_tokens", [128, 192, 256, 4096])
def test_rationale_fits_max_tokens(max_tokens: int):
    assert FRAME_MAX_CHARS + rationale_chars_for(max_tokens) <= max_tokens


def test_rationale_bounds():
    assert rationale_chars_for(16) == RATIONALE_MIN_CHARS
    assert rationale_chars_for(100_000) == RATIONALE_MAX_CHARS


def test_grammar_text_rejects_length():
    with pytest.raises(ValueError) as raised:
        grammar_text(RATIONALE_MAX_CHARS + 1)
    assert "rationale_chars" in str(raised.value)


@pytest.mark.parametrize("rationale_chars", [RATIONALE_MIN_CHARS, 42, RATIONALE_MAX_CHARS])
def test_grammar_compiles(smollm2_vocab, rationale_chars: int):
    grammar = compile_grammar(smollm2_vocab, grammar_text(rationale_chars))
    assert isinstance(grammar, llama_cpp.LlamaGrammar)


def test_broken_grammar_raises(smollm2_vocab):
    with pytest.raises(GrammarError):
        compile_grammar(smollm2_vocab, 'root ::= "{" undefined-rule')
