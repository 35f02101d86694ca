"""Predictors built from backtest windows: the ensemble, each model, and the baselines.

Each function returns one `Call` per window, in the order of the windows passed.

- ensemble: overall_direction, confidence_level and the decision's action. A window where no
  model answered is not answered by the ensemble either.
- model: the model's direction and calibrated confidence, action execute when it answered
  with a non-neutral direction, else inform. A failed verdict is a window not answered.
- always-neutral: neutral, no confidence, inform.
- momentum: the direction of the return over the horizon that ended at window_end, with the
  labels' neutral band, no confidence, execute when not neutral.
- majority vote: the most common direction among the models that answered (a tie is
  neutral), confidence = share of answering models on it, execute when not neutral.
- best model: the calls of the model with the best accuracy on the windows given to
  `best_model`, with ties broken by more answered windows, then by name.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from fastpath.consensus import NEUTRAL
from server.backtest.labels import direction_of
from server.backtest.outcomes import ModelCall, WindowOutcome
from server.backtest.scoring import NO_ANSWER, Call


def ensemble_calls(outcomes: Sequence[WindowOutcome]) -> list[Call]:
    calls = []
    for outcome in outcomes:
        if not any(model.answered for model in outcome.models):
            calls.append(Call(NO_ANSWER, None, outcome.action))
            continue
        calls.append(Call(outcome.overall_direction, outcome.confidence_level, outcome.action))
    return calls


def model_names(outcomes: Sequence[WindowOutcome]) -> list[str]:
    """Return every model named in the windows, in the order they first appear."""
    names: dict[str, None] = {}
    for outcome in outcomes:
        for model in outcome.models:
            names.setdefault(model.model)
    return list(names)


def model_calls(outcomes: Sequence[WindowOutcome], model: str) -> list[Call]:
    """Return one model's calls; raises ValueError when a window lacks the model."""
    return [_model_call(verdict_of(outcome, model)) for outcome in outcomes]


def verdict_of(outcome: WindowOutcome, model: str) -> ModelCall:
    """Return the model's verdict in the window; raises ValueError when the window lacks it."""
    for verdict in outcome.models:
        if verdict.model == model:
            return verdict
    raise ValueError(f"window {outcome.symbol} at {outcome.window_end} ns lacks model {model}")


def always_neutral_calls(outcomes: Sequence[WindowOutcome]) -> list[Call]:
    return [Call(NEUTRAL, None, "inform") for _ in outcomes]


def momentum_calls(outcomes: Sequence[WindowOutcome], neutral_band_bps: float) -> list[Call]:
    calls = []
    for outcome in outcomes:
        direction = direction_of(outcome.momentum_bps, neutral_band_bps)
        calls.append(Call(direction, None, "inform" if direction == NEUTRAL else "execute"))
    return calls


def majority_vote_calls(outcomes: Sequence[WindowOutcome]) -> list[Call]:
    return [_majority_vote(outcome.models) for outcome in outcomes]


def best_model(outcomes: Sequence[WindowOutcome]) -> str:
    """Return the model with the best accuracy on these windows.

    A model that never answered ranks last. Ties go to more answered windows, then to the
    name that sorts first. Raises ValueError when the windows name no model.
    """
    names = model_names(outcomes)
    if not names:
        raise ValueError("best_model needs windows with at least one model, got none")
    return min(names, key=lambda name: _rank_key(outcomes, name))


def _rank_key(outcomes: Sequence[WindowOutcome], model: str) -> tuple[float, int, str]:
    answered = 0
    correct = 0
    for outcome in outcomes:
        verdict = verdict_of(outcome, model)
        if verdict.answered:
            answered += 1
            correct += verdict.direction == outcome.label
    accuracy = correct / answered if answered else -1.0
    # min() picks the smallest key: negate what should be largest.
    return (-accuracy, -answered, model)


def _model_call(verdict: ModelCall) -> Call:
    if not verdict.answered:
        return Call(NO_ANSWER, None, "inform")
    action = "inform" if verdict.direction == NEUTRAL else "execute"
    return Call(verdict.direction, verdict.calibrated_confidence, action)


def _majority_vote(models: Sequence[ModelCall]) -> Call:
    votes = Counter(model.direction for model in models if model.answered)
    if not votes:
        return Call(NO_ANSWER, None, "inform")
    ranked = votes.most_common()
    top_direction, top_count = ranked[0]
    tied = len(ranked) > 1 and ranked[1][1] == top_count
    direction = NEUTRAL if tied else top_direction
    share = votes[direction] / sum(votes.values())
    return Call(direction, share, "inform" if direction == NEUTRAL else "execute")
