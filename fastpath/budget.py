"""Token budgets for the context's sections.

Sections are addressed by position: requested[i], priorities[i] and caps[i] describe the same
section, and priority 1 is the most important.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

import fastpath._budget as _budget
from fastpath import _checks

IntArray = Sequence[int] | np.ndarray


def allocate(requested: IntArray, priorities: IntArray, caps: IntArray, total: int) -> np.ndarray:
    """Split `total` tokens among sections and return each section's budget as int64.

    Each section first gets min(requested, cap). Tokens left over, for example from a missing
    section (requested 0) or a short one, go to sections that still request more: lower
    priority number first, ties in the order given, each up to its request. When the capped
    requests exceed `total`, the least important sections are cut first (highest priority
    number, and among ties the one given last), down to 0 if needed, until the sum fits.
    The budgets are never negative and never sum to more than `total`.

    Raises ValueError for non-integer input, unequal lengths, a negative request or cap, a
    priority below 1 or a negative total.
    """
    requested_array = _checks.integer_array("requested", requested)
    priority_array = _checks.integer_array("priorities", priorities)
    cap_array = _checks.integer_array("caps", caps)
    _checks.same_length(requested=requested_array, priorities=priority_array, caps=cap_array)
    _reject_below("requested", requested_array, 0)
    _reject_below("priorities", priority_array, 1)
    _reject_below("caps", cap_array, 0)
    total_tokens = _checks.integer("total", total, 0)

    granted = np.zeros(len(requested_array), dtype=np.int64)
    _budget.allocate(requested_array, priority_array, cap_array, total_tokens, granted)
    return granted


def lines_within(line_tokens: IntArray, budget: int) -> int:
    """Return how many leading lines fit in `budget` tokens, so a cut keeps whole lines.

    `line_tokens[i]` is the token count of line i. The result is the largest count whose
    cumulative tokens are <= budget. Raises ValueError for a negative count or budget.
    """
    tokens = _checks.integer_array("line_tokens", line_tokens)
    _reject_below("line_tokens", tokens, 0)
    budget_tokens = _checks.integer("budget", budget, 0)
    return int(_budget.lines_within(tokens, budget_tokens))


def _reject_below(name: str, values: np.ndarray, minimum: int) -> None:
    below = np.flatnonzero(values < minimum)
    if below.size:
        index = int(below[0])
        raise ValueError(f"{name}[{index}] must be >= {minimum}, got {int(values[index])}")
