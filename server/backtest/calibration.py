"""Learned per-model weights and confidence maps, fitted on one period of backtest windows.

Confidence map, per model: Platt scaling, p = sigmoid(slope * logit(c) + intercept) with c
clipped to [1e-6, 1 - 1e-6]. It is fitted on the (confidence, correct) pairs of the model's
answered windows by Newton's method with a step-halving line search, minimizing the log loss
plus l2 / 2 * (slope^2 + intercept^2). The penalty keeps both parameters finite when the
pairs are separable or few. That is the objective of scikit-learn's LogisticRegression with
C = 1 / l2 on the features (logit(c), 1) and no separate intercept. A model with fewer than
`min_answers` answers keeps the identity map (slope 1, intercept 0).

Weights: exponential weights (Hedge). Model i's loss L_i is the sum over the fit windows of
(calibrated confidence - correct)^2, the Brier loss of its fitted map's output, where a failed
verdict costs the maximum loss 1.0 because the ensemble got nothing from it. Then
w_i is proportional to exp(-eta * L_i) with eta = sqrt(8 ln N / T) for N models and T
windows, the learning rate of the Hedge bound for losses in [0, 1]. The weights are rescaled
to sum to the configured weights' sum.

Correct means the model's direction equals the window's label (bullish, bearish, neutral).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from server.backtest.baselines import verdict_of
from server.backtest.outcomes import ModelCall, WindowOutcome
from server.confidence_map import PlattMap, logit

MIN_ANSWERS = 10
L2_PENALTY = 0.1
# Newton stops when no parameter moves more than this, or after MAX_ITERATIONS steps.
STEP_TOLERANCE = 1e-10
MAX_ITERATIONS = 100
# A failed verdict's loss in the weights: the maximum Brier loss of one window.
FAILED_LOSS = 1.0
NS_PER_MINUTE = 60_000_000_000


@dataclass(frozen=True)
class PlattFit:
    """A fitted confidence map and how it was fitted."""

    map: PlattMap
    answers: int
    iterations: int
    # Why the map is the identity, or "" for a fitted map.
    note: str = ""


@dataclass(frozen=True)
class ModelFit:
    """One model's part of a calibration."""

    model: str
    configured_weight: float
    weight: float
    windows: int
    answers: int
    brier_loss: float  # L_i: the summed loss over the fit windows, failures at 1.0
    platt: PlattFit


@dataclass(frozen=True)
class Calibration:
    """Learned weights and confidence maps, with the method and the fit period."""

    weights: dict[str, float]
    maps: dict[str, PlattMap]
    method: str
    fit_windows: int
    fit_from_ns: int  # first window_end of the fit period
    fit_to_ns: int  # last window_end of the fit period
    eta: float
    models: tuple[ModelFit, ...]
    # Facts a user must see before loading the config, e.g. a model that became large.
    notes: tuple[str, ...] = ()

    def to_config_models(self) -> dict[str, dict[str, Any]]:
        """Return per model the config keys to set: weight and confidence_calibration."""
        return {
            name: {
                "weight": self.weights[name],
                "confidence_calibration": self.maps[name].to_config(),
            }
            for name in self.weights
        }

    def to_json(self) -> dict[str, Any]:
        """Return the calibration as a JSON-ready dict."""
        return {
            "method": self.method,
            "fit_windows": self.fit_windows,
            "fit_from_ns": self.fit_from_ns,
            "fit_to_ns": self.fit_to_ns,
            "eta": self.eta,
            "models": [
                {
                    "model": fit.model,
                    "configured_weight": fit.configured_weight,
                    "weight": fit.weight,
                    "windows": fit.windows,
                    "answers": fit.answers,
                    "brier_loss": fit.brier_loss,
                    "confidence_calibration": fit.platt.map.to_config(),
                    "iterations": fit.platt.iterations,
                    "note": fit.platt.note,
                }
                for fit in self.models
            ],
            "notes": list(self.notes),
        }


def fit(
    outcomes: Sequence[WindowOutcome],
    *,
    l2: float = L2_PENALTY,
    min_answers: int = MIN_ANSWERS,
    large_min_weight: float = 3.0,
) -> Calibration:
    """Fit every model's confidence map, then the Hedge weights, on the given windows.

    `large_min_weight` only serves the notes: a learned weight that crosses it changes which
    models count as large, and so whether the ensemble can execute.
    Raises ValueError with no window, or when a window lacks a model or lists one twice, or a
    model's configured weight differs between windows.
    """
    if not outcomes:
        raise ValueError("calibration needs at least one fit window, got 0")
    configured = configured_weights(outcomes)
    maps = {}
    platt_fits = {}
    losses = {}
    answers = {}
    for name in configured:
        calls = [verdict_of(outcome, name) for outcome in outcomes]
        answered = [
            (call, outcome) for call, outcome in zip(calls, outcomes, strict=True) if call.answered
        ]
        platt = fit_platt(
            [call.confidence for call, _ in answered],
            [call.direction == outcome.label for call, outcome in answered],
            l2=l2,
            min_answers=min_answers,
        )
        platt_fits[name] = platt
        maps[name] = platt.map
        losses[name] = _summed_loss(platt.map, calls, outcomes)
        answers[name] = len(answered)

    eta = hedge_eta(len(configured), len(outcomes))
    weights = hedge_weights(losses, eta, sum(configured.values()))
    models = tuple(
        ModelFit(
            model=name,
            configured_weight=configured[name],
            weight=weights[name],
            windows=len(outcomes),
            answers=answers[name],
            brier_loss=losses[name],
            platt=platt_fits[name],
        )
        for name in configured
    )
    return Calibration(
        weights=weights,
        maps=maps,
        method=describe_method(l2, min_answers, eta, len(configured), len(outcomes)),
        fit_windows=len(outcomes),
        fit_from_ns=min(outcome.window_end for outcome in outcomes),
        fit_to_ns=max(outcome.window_end for outcome in outcomes),
        eta=eta,
        models=models,
        notes=tuple(_large_notes(configured, weights, large_min_weight))
        + tuple(_reversal_notes(maps)),
    )


def fit_platt(
    confidences: Sequence[float],
    correct: Sequence[bool],
    *,
    l2: float = L2_PENALTY,
    min_answers: int = MIN_ANSWERS,
) -> PlattFit:
    """Fit a Platt map to (confidence, correct) pairs as the module docstring describes.

    Raises ValueError for unequal lengths, a confidence outside [0, 1], or l2 <= 0.
    """
    if len(confidences) != len(correct):
        raise ValueError(f"got {len(confidences)} confidences for {len(correct)} outcomes")
    if not l2 > 0.0 or not math.isfinite(l2):
        raise ValueError(f"l2 must be a positive number, got {l2!r}")
    for index, confidence in enumerate(confidences):
        if not 0.0 <= confidence <= 1.0:
            raise ValueError(f"confidences[{index}] must be in [0, 1], got {confidence!r}")
    if len(confidences) < min_answers:
        note = f"identity map: {len(confidences)} answers, fewer than the {min_answers} needed"
        return PlattFit(PlattMap(), len(confidences), 0, note)

    features = np.column_stack(
        [[logit(confidence) for confidence in confidences], np.ones(len(confidences))]
    )
    targets = np.asarray(correct, dtype=float)
    params, iterations = _newton(features, targets, l2)
    return PlattFit(PlattMap(float(params[0]), float(params[1])), len(confidences), iterations)


def hedge_eta(models: int, windows: int) -> float:
    """Return sqrt(8 ln N / T), 0 for a single model."""
    if models < 1 or windows < 1:
        raise ValueError(f"Hedge needs a model and a window, got {models} and {windows}")
    return math.sqrt(8.0 * math.log(models) / windows)


def hedge_weights(losses: dict[str, float], eta: float, total: float) -> dict[str, float]:
    """Return weights proportional to exp(-eta * loss) that sum to `total`."""
    lowest = min(losses.values())
    # Subtracting the lowest loss changes no ratio and keeps exp() from underflowing to 0.
    raw = {name: math.exp(-eta * (loss - lowest)) for name, loss in losses.items()}
    scale = total / sum(raw.values())
    return {name: value * scale for name, value in raw.items()}


def configured_weights(outcomes: Sequence[WindowOutcome]) -> dict[str, float]:
    """Return each model's configured weight, in the order the first window lists them.

    Raises ValueError when a window lacks a model or lists one twice, or a weight differs.
    """
    weights = {call.model: call.weight for call in outcomes[0].models}
    for outcome in outcomes:
        names = [call.model for call in outcome.models]
        if sorted(names) != sorted(weights):
            raise ValueError(
                f"window {outcome.symbol} at {outcome.window_end} ns lists models"
                f" {sorted(names)}, expected {sorted(weights)}"
            )
        for call in outcome.models:
            if call.weight != weights[call.model]:
                raise ValueError(
                    f"weight of {call.model} is {call.weight} at {outcome.symbol}"
                    f" {outcome.window_end} ns but {weights[call.model]} elsewhere"
                )
    return weights


def check_held_out(
    fit_outcomes: Sequence[WindowOutcome],
    held_out: Sequence[WindowOutcome],
    horizon_minutes: float,
) -> None:
    """Raise ValueError unless every held-out window starts after the fit period's labels end.

    A fit window's label reads the market up to window_end + horizon, so a held-out window
    must end at or after the last fit window_end plus the horizon.
    """
    if not fit_outcomes or not held_out:
        raise ValueError(
            f"need fit and held-out windows, got {len(fit_outcomes)} and {len(held_out)}"
        )
    labels_end = max(o.window_end for o in fit_outcomes) + round(horizon_minutes * NS_PER_MINUTE)
    first = min(held_out, key=lambda outcome: outcome.window_end)
    if first.window_end < labels_end:
        raise ValueError(
            f"held-out window {first.symbol} at {first.window_end} ns is before {labels_end} ns,"
            " where the fit period's labels end: start the held-out period later"
        )


def describe_method(l2: float, min_answers: int, eta: float, models: int, windows: int) -> str:
    return (
        f"confidence maps: Platt scaling per model (logistic regression on logit(confidence),"
        f" Newton's method, L2 penalty {l2:g}, identity below {min_answers} answers);"
        f" weights: exponential weights (Hedge) on the summed Brier loss of the calibrated"
        f" confidence, a failed verdict costing 1.0, eta = sqrt(8 ln {models} / {windows})"
        f" = {eta:.6g}, rescaled to the configured weights' sum"
    )


def _newton(features: np.ndarray, targets: np.ndarray, l2: float) -> tuple[np.ndarray, int]:
    params = np.array([1.0, 0.0])  # start from the identity map
    for iteration in range(1, MAX_ITERATIONS + 1):
        scores = features @ params
        probabilities = 1.0 / (1.0 + np.exp(-scores))
        gradient = features.T @ (probabilities - targets) + l2 * params
        curvature = probabilities * (1.0 - probabilities)
        hessian = features.T @ (features * curvature[:, None]) + l2 * np.eye(2)
        step = np.linalg.solve(hessian, gradient)
        size = _step_size(features, targets, params, l2, gradient, step)
        params = params - size * step
        if np.max(np.abs(size * step)) < STEP_TOLERANCE:
            return params, iteration
    return params, MAX_ITERATIONS


def _step_size(
    features: np.ndarray,
    targets: np.ndarray,
    params: np.ndarray,
    l2: float,
    gradient: np.ndarray,
    step: np.ndarray,
) -> float:
    # Halve the step until the objective decreases enough (the Armijo rule), because a full
    # Newton step on the log loss can overshoot when it starts far from the optimum.
    current = _objective(features, targets, params, l2)
    slope = float(gradient @ step)
    size = 1.0
    while size > 1e-12:
        if _objective(features, targets, params - size * step, l2) <= current - 1e-4 * size * slope:
            break
        size /= 2.0
    return size


def _objective(features: np.ndarray, targets: np.ndarray, params: np.ndarray, l2: float) -> float:
    scores = features @ params
    # log(1 + exp(s)) - y * s is the log loss of sigmoid(s) against y, without overflow.
    log_loss = np.logaddexp(0.0, scores) - targets * scores
    return float(log_loss.sum() + 0.5 * l2 * (params @ params))


def _summed_loss(
    confidence_map: PlattMap, calls: Sequence[ModelCall], outcomes: Sequence[WindowOutcome]
) -> float:
    loss = 0.0
    for call, outcome in zip(calls, outcomes, strict=True):
        if not call.answered:
            loss += FAILED_LOSS
            continue
        correct = 1.0 if call.direction == outcome.label else 0.0
        loss += (confidence_map.apply(call.confidence) - correct) ** 2
    return loss


def _reversal_notes(maps: dict[str, PlattMap]) -> list[str]:
    """Name every map with a negative slope: it ranks the model's confidences the other way."""
    return [
        f"{name}'s map has slope {platt.slope:.4g} < 0: in the fit period its higher stated"
        " confidences were right less often, so the map reverses their order"
        for name, platt in maps.items()
        if platt.slope < 0
    ]


def _large_notes(
    configured: dict[str, float], learned: dict[str, float], large_min_weight: float
) -> list[str]:
    notes = []
    for name, before in configured.items():
        after = learned[name]
        if (before >= large_min_weight) != (after >= large_min_weight):
            state = "large" if after >= large_min_weight else "no longer large"
            notes.append(
                f"{name}: weight {before:g} -> {after:.4g} makes it {state}"
                f" (large_model_min_weight {large_min_weight:g}), which changes the"
                " large-model agreement that execute requires"
            )
    return notes
