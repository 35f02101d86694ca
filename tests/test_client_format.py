"""The analysis table shows the stated confidence, and the calibrated one when a map moved it."""

from __future__ import annotations

from quorum.v1 import ensemble_pb2, verdict_pb2
from server.client import format_result


def _result(confidence: float, calibrated: float) -> ensemble_pb2.AnalysisResult:
    verdict = ensemble_pb2.ModelVerdict(
        model="smollm2-135m",
        base_weight=1.0,
        status=ensemble_pb2.VERDICT_STATUS_ANSWERED,
        verdict=verdict_pb2.Verdict(
            direction=verdict_pb2.DIRECTION_BULLISH, confidence=confidence, prediction_pct=0.5
        ),
        calibrated_confidence=calibrated,
    )
    return ensemble_pb2.AnalysisResult(symbol="BTC", window_minutes=60, verdicts=[verdict])


def test_calibrated_confidence_shown() -> None:
    assert "0.80->0.62" in format_result(_result(0.8, 0.62))


def test_uncalibrated_confidence_shown_once() -> None:
    table = format_result(_result(0.8, 0.8))
    assert "0.80" in table
    assert "->" not in table
