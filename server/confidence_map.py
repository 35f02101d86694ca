"""Per-model confidence calibration maps, applied to every verdict before the consensus.

A Platt map reads a model's stated confidence c as a log-odds score and returns
p = sigmoid(slope * logit(c) + intercept), with c clipped to [1e-6, 1 - 1e-6] so that the
logit is finite. The identity map (slope 1, intercept 0) returns c unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

PLATT = "platt"
CONFIDENCE_CLIP = 1e-6


@dataclass(frozen=True)
class PlattMap:
    """A fitted Platt map; the default is the identity."""

    slope: float = 1.0
    intercept: float = 0.0

    def __post_init__(self) -> None:
        for name in ("slope", "intercept"):
            value = getattr(self, name)
            if not math.isfinite(value):
                raise ValueError(f"confidence_calibration.{name} must be finite, got {value!r}")

    @property
    def is_identity(self) -> bool:
        return self.slope == 1.0 and self.intercept == 0.0

    def apply(self, confidence: float) -> float:
        """Return the calibrated confidence, in [0, 1].

        Raises ValueError when `confidence` is not in [0, 1] (NaN included).
        """
        if not 0.0 <= confidence <= 1.0:
            raise ValueError(f"confidence must be in [0, 1], got {confidence!r}")
        if self.is_identity:
            # Exactly c, not sigmoid(logit(c)), which clips 0 and 1 and may differ in the
            # last bit.
            return confidence
        return sigmoid(self.slope * logit(confidence) + self.intercept)

    def to_config(self) -> dict[str, Any]:
        """Return the model's `confidence_calibration` config mapping."""
        return {"method": PLATT, "slope": self.slope, "intercept": self.intercept}

    @classmethod
    def from_config(cls, entry: Mapping[str, Any], where: str) -> PlattMap:
        """Read a `confidence_calibration` mapping; `where` names it in errors.

        Raises ValueError naming the key and value when the method is not platt, a key is
        missing or unknown, or a number is not finite.
        """
        unknown = sorted(set(entry) - {"method", "slope", "intercept"})
        if unknown:
            raise ValueError(f"{where} has unknown keys: {', '.join(unknown)}")
        if entry.get("method") != PLATT:
            raise ValueError(f"{where}.method must be {PLATT!r}, got {entry.get('method')!r}")
        values = {}
        for key in ("slope", "intercept"):
            if key not in entry:
                raise ValueError(f"{where}.{key} is missing")
            value = entry[key]
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{where}.{key} must be a number, got {value!r}")
            if not math.isfinite(value):
                raise ValueError(f"{where}.{key} must be finite, got {value!r}")
            values[key] = float(value)
        return cls(slope=values["slope"], intercept=values["intercept"])


def logit(confidence: float) -> float:
    """Return log(c / (1 - c)) with c clipped to [1e-6, 1 - 1e-6]."""
    clipped = min(max(confidence, CONFIDENCE_CLIP), 1.0 - CONFIDENCE_CLIP)
    return math.log(clipped / (1.0 - clipped))


def sigmoid(score: float) -> float:
    """Return 1 / (1 + exp(-score)) without overflow for large |score|."""
    if score >= 0.0:
        return 1.0 / (1.0 + math.exp(-score))
    exp_score = math.exp(score)
    return exp_score / (1.0 + exp_score)
