"""A model's confidence calibration map: Platt scaling of its stated confidence.

`p = sigmoid(slope * logit(c) + intercept)`, with c clipped to [CLIP, 1 - CLIP] so that a
stated 0 or 1 maps to a finite value. The map is fitted by `quorum calibrate` and loaded from
a model's `confidence_calibration` key; the cycle applies it to each verdict's confidence
before the consensus.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

PLATT = "platt"
CLIP = 1e-6


@dataclass(frozen=True)
class PlattMap:
    slope: float
    intercept: float
    method: str = PLATT

    def apply(self, confidence: float) -> float:
        """Return the calibrated confidence of a stated confidence in [0, 1]."""
        clipped = min(max(confidence, CLIP), 1.0 - CLIP)
        score = self.slope * math.log(clipped / (1.0 - clipped)) + self.intercept
        # Two branches keep exp() from overflowing for scores far from 0.
        if score >= 0:
            return 1.0 / (1.0 + math.exp(-score))
        odds = math.exp(score)
        return odds / (1.0 + odds)

    def to_config(self) -> dict[str, float | str]:
        return {"method": self.method, "slope": self.slope, "intercept": self.intercept}
