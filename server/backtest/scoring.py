"""Scores of one predictor over backtest windows.

A predictor states, for each window, a `Call`: a direction (or none), a confidence (or none)
and an action. Each window has a label, the realized direction over the horizon.

- n: windows scored. answered: windows where the predictor gave a direction. A failed model
  verdict is a window not answered.
- accuracy: share of answered windows whose direction equals the label, over the 3 classes
  bullish, bearish, neutral. A decision's "uncertain" counts as neutral. None with no answer.
- high-confidence accuracy and count: the same over the answered windows that the
  `HighConfidence` rule selects, either confidence >= a threshold or action in a set (the
  ensemble's rule is execute or alert). None when the rule selects no window.
- coverage: share of all n windows per action (execute, alert, inform) and per direction
  (bullish, bearish, neutral, uncertain, none = not answered).
- MCC: multiclass Matthews correlation (Gorodkin's R_K) over the 3 classes on answered
  windows, uncertain as neutral. It is 0 when undefined: no answered window, or every label
  or every prediction in one class (a zero denominator), as scikit-learn does.
- Brier score: mean of (confidence - correct)^2, where correct is 1 when the stated direction
  equals the label, over answered windows with a confidence. The confidence is read as the
  probability that the stated direction is right. None when the predictor states no
  confidence.
- ECE (expected calibration error): the same windows in 10 equal-width confidence bins,
  [0, 0.1], (0.1, 0.2], ..., (0.9, 1] (a confidence on an inner edge goes to the lower bin, as
  in scikit-learn 1.9's calibration_curve); sum over bins of count / total * |mean confidence
  - accuracy|. The reliability bins give
  each bin's mean confidence, accuracy and count. None without a confidence.
- returns: acting on a call means a position over the horizon in the direction named:
  bullish long (+realized_bps), bearish short (-realized_bps), neutral or uncertain no
  position. Every position pays cost_bps (the round trip), so net bps = gross - cost_bps.
  Per action set (execute, alert, any = execute or alert): trades, mean net bps per trade,
  total net bps, hit rate (share of trades with net bps > 0). The cumulative net bps of
  acting on any (execute or alert), window by window in time order, is the series to plot.

Windows are scored in time order (window_end, then symbol), so the scores, the series
included, do not depend on the order in which the windows are passed.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fastpath.consensus import BEARISH, BULLISH, NEUTRAL
from server.backtest.outcomes import ACTIONS, DIRECTIONS, WindowOutcome
from server.consensus_policy import UNCERTAIN

NO_ANSWER = 0
DIRECTION_NAMES = {
    BULLISH: "bullish",
    BEARISH: "bearish",
    NEUTRAL: "neutral",
    UNCERTAIN: "uncertain",
    NO_ANSWER: "none",
}
# Action sets that take positions, with the name each has in the scores.
ACTION_SETS = {
    "execute": ("execute",),
    "alert": ("alert",),
    "any": ("execute", "alert"),
}
CALIBRATION_BINS = 10

# One line per score, for the report's JSON and the docs.
DEFINITIONS = {
    "n": "windows scored",
    "answered": "windows where the predictor gave a direction; a failed verdict is not one",
    "accuracy": "share of answered windows whose direction equals the label "
    "(bullish, bearish, neutral; uncertain counts as neutral)",
    "high_confidence_accuracy": "accuracy over the answered windows the high-confidence rule "
    "selects; high_confidence_count is how many",
    "coverage": "share of all windows per action and per direction (none = not answered)",
    "mcc": "multiclass Matthews correlation (Gorodkin's R_K) over the 3 classes on answered "
    "windows; 0 when undefined (no answer, or all labels or all predictions in one class)",
    "brier": "mean (confidence - correct)^2 over answered windows with a confidence, "
    "confidence read as the probability that the stated direction is right",
    "ece": "expected calibration error: 10 equal-width confidence bins, "
    "sum of bin share * |mean confidence - accuracy|",
    "returns": "a position in the stated direction over the horizon (bullish long, bearish "
    "short, neutral or uncertain none); net bps = gross bps - cost_bps per trade; "
    "hit rate = share of trades with net bps > 0; any = execute or alert",
}


@dataclass(frozen=True)
class Call:
    """A predictor's view of one window.

    direction: 1 bullish, 2 bearish, 3 neutral, 4 uncertain, 0 no answer.
    confidence: in [0, 1], or None when the predictor states none.
    action: "execute", "alert" or "inform" (no position).
    """

    direction: int
    confidence: float | None
    action: str

    def __post_init__(self) -> None:
        if self.direction not in DIRECTION_NAMES:
            raise ValueError(f"Call.direction must be 0 to 4, got {self.direction!r}")
        if self.action not in ACTIONS:
            raise ValueError(
                f"Call.action must be one of {', '.join(ACTIONS)}, got {self.action!r}"
            )
        if self.confidence is not None and not 0.0 <= self.confidence <= 1.0:
            # The chained comparison is False for NaN too.
            raise ValueError(f"Call.confidence must be in [0, 1] or None, got {self.confidence!r}")

    @property
    def answered(self) -> bool:
        return self.direction != NO_ANSWER

    @property
    def scored_direction(self) -> int:
        """The direction compared with the label: uncertain counts as neutral."""
        return NEUTRAL if self.direction == UNCERTAIN else self.direction


@dataclass(frozen=True)
class HighConfidence:
    """The rule that selects a predictor's high-confidence calls.

    Build it with `at_least(threshold)` (confidence >= threshold) or `for_actions(actions)`
    (action in the set, the ensemble's rule with ("execute", "alert")).
    """

    min_confidence: float | None = None
    actions: tuple[str, ...] = ()

    @classmethod
    def at_least(cls, threshold: float) -> HighConfidence:
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"high-confidence threshold must be in [0, 1], got {threshold!r}")
        return cls(min_confidence=threshold)

    @classmethod
    def for_actions(cls, actions: Collection[str]) -> HighConfidence:
        unknown = sorted(set(actions) - set(ACTIONS))
        if unknown or not actions:
            raise ValueError(
                f"high-confidence actions must be a non-empty subset of {', '.join(ACTIONS)},"
                f" got {sorted(actions)!r}"
            )
        return cls(actions=tuple(action for action in ACTIONS if action in actions))

    def selects(self, call: Call) -> bool:
        if self.min_confidence is not None:
            return call.confidence is not None and call.confidence >= self.min_confidence
        return call.action in self.actions

    def describe(self) -> str:
        if self.min_confidence is not None:
            return f"confidence >= {self.min_confidence:g}"
        return "action in " + ", ".join(self.actions)


@dataclass(frozen=True)
class CalibrationBin:
    """One reliability-diagram bin: confidences in (lower, upper], or [0, upper] for the first."""

    lower: float
    upper: float
    count: int
    mean_confidence: float | None  # None for an empty bin
    accuracy: float | None


@dataclass(frozen=True)
class Returns:
    """The result of acting on one action set."""

    trades: int
    mean_net_bps: float | None  # None without a trade
    total_net_bps: float
    hit_rate: float | None  # share of trades with net bps > 0; None without a trade


@dataclass(frozen=True)
class Scores:
    """Every score of one predictor over the same windows, as the module docstring defines them."""

    n: int
    answered: int
    accuracy: float | None
    high_confidence_rule: str
    high_confidence_count: int
    high_confidence_accuracy: float | None
    coverage_by_action: dict[str, float]
    coverage_by_direction: dict[str, float]
    mcc: float
    brier: float | None
    ece: float | None
    calibration_count: int  # answered windows with a confidence
    reliability: tuple[CalibrationBin, ...]
    cost_bps: float
    returns: dict[str, Returns]  # keyed "execute", "alert", "any"
    # Windows in time order and the cumulative net bps of acting on "any" after each.
    window_ends: tuple[int, ...] = field(repr=False)
    cumulative_net_bps: tuple[float, ...] = field(repr=False)

    def to_json(self) -> dict[str, Any]:
        """Return the scores as a JSON-ready dict (None becomes null; no NaN)."""
        return {
            "n": self.n,
            "answered": self.answered,
            "accuracy": self.accuracy,
            "high_confidence": {
                "rule": self.high_confidence_rule,
                "count": self.high_confidence_count,
                "accuracy": self.high_confidence_accuracy,
            },
            "coverage": {
                "action": dict(self.coverage_by_action),
                "direction": dict(self.coverage_by_direction),
            },
            "mcc": self.mcc,
            "brier": self.brier,
            "ece": self.ece,
            "calibration_count": self.calibration_count,
            "reliability": [vars(bin_) for bin_ in self.reliability],
            "cost_bps": self.cost_bps,
            "returns": {name: vars(result) for name, result in self.returns.items()},
            "window_ends": list(self.window_ends),
            "cumulative_net_bps": list(self.cumulative_net_bps),
        }


def score(
    calls: Sequence[Call],
    outcomes: Sequence[WindowOutcome],
    high_confidence: HighConfidence,
    cost_bps: float,
) -> Scores:
    """Score `calls[i]` against `outcomes[i]` for every window.

    Raises ValueError when the lengths differ, a window appears twice (same symbol and
    window_end), a label is not 1 to 3, or cost_bps or a realized return is not finite.
    """
    calls, outcomes = _in_time_order(calls, outcomes, cost_bps)
    labels = [outcome.label for outcome in outcomes]
    answered = [i for i, call in enumerate(calls) if call.answered]
    correct = [calls[i].scored_direction == labels[i] for i in answered]
    selected = [i for i in answered if high_confidence.selects(calls[i])]
    rated = [(i, confidence) for i in answered if (confidence := calls[i].confidence) is not None]
    rated_confidences = [confidence for _, confidence in rated]
    rated_correct = [calls[i].scored_direction == labels[i] for i, _ in rated]
    bins = reliability_bins(rated_confidences, rated_correct)
    net_by_window = [
        _net_bps(call, outcome, ACTION_SETS["any"], cost_bps)
        for call, outcome in zip(calls, outcomes, strict=True)
    ]

    return Scores(
        n=len(calls),
        answered=len(answered),
        accuracy=_share(correct),
        high_confidence_rule=high_confidence.describe(),
        high_confidence_count=len(selected),
        high_confidence_accuracy=_share([calls[i].scored_direction == labels[i] for i in selected]),
        coverage_by_action=_coverage([call.action for call in calls], ACTIONS),
        coverage_by_direction=_coverage(
            [DIRECTION_NAMES[call.direction] for call in calls], tuple(DIRECTION_NAMES.values())
        ),
        mcc=matthews_correlation(
            labels=[labels[i] for i in answered],
            predictions=[calls[i].scored_direction for i in answered],
        ),
        brier=brier_score(rated_confidences, rated_correct),
        ece=expected_calibration_error(bins),
        calibration_count=len(rated),
        reliability=bins,
        cost_bps=cost_bps,
        returns={
            name: _returns(calls, outcomes, actions, cost_bps)
            for name, actions in ACTION_SETS.items()
        },
        window_ends=tuple(outcome.window_end for outcome in outcomes),
        cumulative_net_bps=tuple(np.cumsum(net_by_window).tolist()),
    )


def matthews_correlation(labels: Sequence[int], predictions: Sequence[int]) -> float:
    """Return Gorodkin's R_K over the classes bullish, bearish, neutral; 0 when undefined."""
    confusion = np.zeros((len(DIRECTIONS), len(DIRECTIONS)))
    for label, prediction in zip(labels, predictions, strict=True):
        confusion[DIRECTIONS.index(label), DIRECTIONS.index(prediction)] += 1
    total = confusion.sum()
    true_counts = confusion.sum(axis=1)
    predicted_counts = confusion.sum(axis=0)
    covariance = np.trace(confusion) * total - predicted_counts @ true_counts
    denominator = math.sqrt(
        (total**2 - predicted_counts @ predicted_counts) * (total**2 - true_counts @ true_counts)
    )
    if denominator == 0.0:
        return 0.0
    return float(covariance / denominator)


def brier_score(confidences: Sequence[float], correct: Sequence[bool]) -> float | None:
    """Return mean (confidence - correct)^2, or None for no pair."""
    if not confidences:
        return None
    errors = np.asarray(confidences, dtype=float) - np.asarray(correct, dtype=float)
    return float(np.mean(errors**2))


def reliability_bins(
    confidences: Sequence[float], correct: Sequence[bool]
) -> tuple[CalibrationBin, ...]:
    """Sort (confidence, correct) pairs into 10 equal-width bins over [0, 1]."""
    edges = np.linspace(0.0, 1.0, CALIBRATION_BINS + 1)
    # The same binning as scikit-learn 1.9's calibration_curve(strategy="uniform"). The inner
    # edges as doubles (0.30000000000000004, ...) are never below their decimal value, so 0.3
    # lands in (0.2, 0.3].
    index = np.searchsorted(edges[1:-1], np.asarray(confidences, dtype=float), side="left")
    confidence_array = np.asarray(confidences, dtype=float)
    correct_array = np.asarray(correct, dtype=float)
    bins = []
    for b in range(CALIBRATION_BINS):
        members = index == b
        count = int(members.sum())
        bins.append(
            CalibrationBin(
                lower=float(edges[b]),
                upper=float(edges[b + 1]),
                count=count,
                mean_confidence=float(confidence_array[members].mean()) if count else None,
                accuracy=float(correct_array[members].mean()) if count else None,
            )
        )
    return tuple(bins)


def expected_calibration_error(bins: Sequence[CalibrationBin]) -> float | None:
    """Return sum of count / total * |mean confidence - accuracy|, or None for empty bins."""
    total = sum(bin_.count for bin_ in bins)
    if total == 0:
        return None
    error = 0.0
    for bin_ in bins:
        if bin_.mean_confidence is not None and bin_.accuracy is not None:
            error += bin_.count / total * abs(bin_.mean_confidence - bin_.accuracy)
    return error


def position_sign(direction: int) -> int:
    """Return +1 for a long (bullish), -1 for a short (bearish), 0 for no position."""
    return {BULLISH: 1, BEARISH: -1}.get(direction, 0)


def _in_time_order(
    calls: Sequence[Call], outcomes: Sequence[WindowOutcome], cost_bps: float
) -> tuple[list[Call], list[WindowOutcome]]:
    if len(calls) != len(outcomes):
        raise ValueError(f"got {len(calls)} calls for {len(outcomes)} windows")
    if not math.isfinite(cost_bps):
        raise ValueError(f"cost_bps must be finite, got {cost_bps!r}")
    seen: set[tuple[str, int]] = set()
    for outcome in outcomes:
        key = (outcome.symbol, outcome.window_end)
        if key in seen:
            raise ValueError(
                f"window {outcome.symbol} at {outcome.window_end} ns appears more than once"
            )
        seen.add(key)
        if outcome.label not in DIRECTIONS:
            raise ValueError(
                f"label of {outcome.symbol} at {outcome.window_end} ns must be 1 to 3,"
                f" got {outcome.label!r}"
            )
        if not math.isfinite(outcome.realized_bps):
            raise ValueError(
                f"realized_bps of {outcome.symbol} at {outcome.window_end} ns must be finite,"
                f" got {outcome.realized_bps!r}"
            )
    order = sorted(range(len(outcomes)), key=lambda i: (outcomes[i].window_end, outcomes[i].symbol))
    return [calls[i] for i in order], [outcomes[i] for i in order]


def _net_bps(
    call: Call, outcome: WindowOutcome, actions: tuple[str, ...], cost_bps: float
) -> float:
    sign = position_sign(call.direction)
    if call.action not in actions or sign == 0:
        return 0.0
    return sign * outcome.realized_bps - cost_bps


def _returns(
    calls: Sequence[Call],
    outcomes: Sequence[WindowOutcome],
    actions: tuple[str, ...],
    cost_bps: float,
) -> Returns:
    trades = [
        _net_bps(call, outcome, actions, cost_bps)
        for call, outcome in zip(calls, outcomes, strict=True)
        if call.action in actions and position_sign(call.direction) != 0
    ]
    return Returns(
        trades=len(trades),
        mean_net_bps=float(np.mean(trades)) if trades else None,
        total_net_bps=float(np.sum(trades)),
        hit_rate=_share([net > 0.0 for net in trades]),
    )


def _coverage(values: Sequence[str], names: Sequence[str]) -> dict[str, float]:
    if not values:
        return dict.fromkeys(names, 0.0)
    return {name: sum(value == name for value in values) / len(values) for name in names}


def _share(flags: Sequence[bool]) -> float | None:
    if not flags:
        return None
    return sum(flags) / len(flags)
