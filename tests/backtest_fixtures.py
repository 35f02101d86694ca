"""Builders and hypothesis strategies of backtest window outcomes for the backtest tests."""

from __future__ import annotations

from hypothesis import strategies as st

from fastpath.consensus import BEARISH, BULLISH, NEUTRAL
from server.backtest.outcomes import ModelCall, WindowOutcome
from server.backtest.scoring import Call

HOUR_NS = 3_600_000_000_000
# 2019-01-01 00:00 UTC in ns since the epoch.
START_NS = 1_546_300_800_000_000_000


def model_call(
    model: str,
    direction: int = 0,
    confidence: float = 0.0,
    *,
    weight: float = 1.0,
    calibrated: float | None = None,
    from_cache: bool = False,
) -> ModelCall:
    """One model's verdict; direction 0 is a failed verdict."""
    answered = direction != 0
    return ModelCall(
        model=model,
        weight=weight,
        answered=answered,
        direction=direction,
        confidence=confidence if answered else 0.0,
        calibrated_confidence=(calibrated if calibrated is not None else confidence)
        if answered
        else 0.0,
        prediction_pct=0.0,
        from_cache=from_cache,
        failure="" if answered else "deadline",
    )


def window(
    index: int,
    label: int,
    realized_bps: float = 0.0,
    *,
    symbol: str = "BTC",
    momentum_bps: float = 0.0,
    models: tuple[ModelCall, ...] = (),
    overall_direction: int = NEUTRAL,
    confidence_level: float = 0.0,
    agreement_strength: float = 0.0,
    action: str = "inform",
) -> WindowOutcome:
    """The window that ends `index` hours after START_NS."""
    return WindowOutcome(
        symbol=symbol,
        window_end=START_NS + index * HOUR_NS,
        label=label,
        realized_bps=realized_bps,
        momentum_bps=momentum_bps,
        models=models,
        overall_direction=overall_direction,
        confidence_level=confidence_level,
        agreement_strength=agreement_strength,
        action=action,
        decision_direction=overall_direction if action != "inform" else 4,
    )


def label_of(realized_bps: float, band_bps: float = 5.0) -> int:
    if realized_bps > band_bps:
        return BULLISH
    if realized_bps < -band_bps:
        return BEARISH
    return NEUTRAL


directions = st.sampled_from([BULLISH, BEARISH, NEUTRAL])
confidences = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
moves_bps = st.floats(min_value=-300.0, max_value=300.0, allow_nan=False)
calls = st.builds(
    Call,
    direction=st.sampled_from([0, BULLISH, BEARISH, NEUTRAL, 4]),
    confidence=st.none() | confidences,
    action=st.sampled_from(["execute", "alert", "inform"]),
)


@st.composite
def model_calls(draw: st.DrawFn, model: str, weight: float = 1.0) -> ModelCall:
    if draw(st.booleans()) and draw(st.booleans()):
        return model_call(model, weight=weight)
    confidence = draw(confidences)
    calibrated = draw(st.none() | confidences)
    return model_call(
        model,
        draw(directions),
        confidence,
        weight=weight,
        calibrated=calibrated,
        from_cache=draw(st.booleans()),
    )


@st.composite
def outcomes(
    draw: st.DrawFn, min_size: int = 1, max_size: int = 30, models: tuple[str, ...] = ("a", "b")
) -> list[WindowOutcome]:
    """Windows one hour apart with random moves, model verdicts and ensemble decisions."""
    size = draw(st.integers(min_value=min_size, max_value=max_size))
    result = []
    for index in range(size):
        realized = draw(moves_bps)
        calls_here = tuple(draw(model_calls(name)) for name in models)
        action = draw(st.sampled_from(["execute", "alert", "inform"]))
        result.append(
            window(
                index,
                label_of(realized),
                realized,
                momentum_bps=draw(moves_bps),
                models=calls_here,
                overall_direction=draw(directions),
                confidence_level=draw(confidences),
                agreement_strength=draw(confidences),
                action=action,
            )
        )
    return result
