"""Weighted consensus kernel: arithmetic only. The checked entry point is fastpath/consensus.py.

Direction codes are 1 bullish, 2 bearish, 3 neutral. Arrays indexed by direction use code - 1.
"""

from libc.math cimport fabs, isfinite
from libc.stdint cimport int64_t, uint8_t

cdef enum:
    NEUTRAL = 3

# Codes of the first invalid input found, returned by find_invalid.
cdef enum:
    VALID = 0
    BAD_WEIGHT = 1
    BAD_CONFIDENCE = 2
    BAD_DIRECTION = 3


def find_invalid(
    const double[::1] base_weights,
    const double[::1] confidences,
    const int64_t[::1] directions,
    const uint8_t[::1] answered,
):
    """Return (code, index) of the first invalid input, or (0, -1) when all are valid.

    Codes: 1 a base weight that is not finite and > 0; 2 an answered model's confidence
    outside [0, 1] (NaN included); 3 an answered model's direction outside 1..3.
    """
    cdef Py_ssize_t n = base_weights.shape[0]
    cdef Py_ssize_t i
    cdef int code = VALID
    with nogil:
        for i in range(n):
            if not (isfinite(base_weights[i]) and base_weights[i] > 0.0):
                code = BAD_WEIGHT
                break
        if code == VALID:
            for i in range(n):
                if not answered[i]:
                    continue
                if not (confidences[i] >= 0.0 and confidences[i] <= 1.0):
                    code = BAD_CONFIDENCE
                    break
                if directions[i] < 1 or directions[i] > NEUTRAL:
                    code = BAD_DIRECTION
                    break
    if code != VALID:
        return code, i
    return VALID, -1


cdef int _leading_direction(const double* totals, double tolerance) noexcept nogil:
    """Return the direction code with the largest total, or neutral on a tie for the largest."""
    cdef int best = 0
    cdef int d
    for d in range(1, 3):
        if totals[d] > totals[best]:
            best = d
    for d in range(3):
        if d != best and fabs(totals[d] - totals[best]) <= tolerance:
            return NEUTRAL
    return best + 1


def weighted_consensus(
    const double[::1] base_weights,
    const double[::1] confidences,
    const int64_t[::1] directions,
    const uint8_t[::1] answered,
    double large_min_weight,
    double tie_tolerance,
    double[::1] final_weights,
    double[::1] influences,
):
    """Fill final_weights and influences, and return the consensus scalars as a tuple.

    The tuple is (overall_direction, agreement_strength, confidence_level, bullish,
    bearish and neutral influence, answered, large_answered, large_configured,
    large_direction, large_top_count, answered_weight_share). answered_weight_share is the
    summed base weight of the answered models over the summed base weight of all models. Summed influences within `tie_tolerance` of each
    other are a tie; large-model vote counts tie only when equal.
    """
    cdef Py_ssize_t n = base_weights.shape[0]
    cdef Py_ssize_t i
    cdef double weight_total = 0.0
    cdef double answered_weight = 0.0
    cdef double configured_weight = 0.0
    cdef double direction_influence[3]
    cdef double direction_confidence[3]
    cdef double large_votes[3]
    cdef int64_t answered_count = 0
    cdef int64_t large_answered = 0
    cdef int64_t large_configured = 0
    cdef int overall, large_direction = 0
    cdef int d
    cdef double confidence_level = 0.0
    cdef double large_top_count = 0.0

    with nogil:
        for d in range(3):
            direction_influence[d] = 0.0
            direction_confidence[d] = 0.0
            large_votes[d] = 0.0

        for i in range(n):
            final_weights[i] = 0.0
            configured_weight += base_weights[i]
            if base_weights[i] >= large_min_weight:
                large_configured += 1
            if not answered[i]:
                continue
            d = <int>directions[i] - 1
            final_weights[i] = base_weights[i] * confidences[i]
            weight_total += final_weights[i]
            answered_weight += base_weights[i]
            direction_confidence[d] += final_weights[i]
            answered_count += 1
            if base_weights[i] >= large_min_weight:
                large_answered += 1
                large_votes[d] += 1.0

        # A zero total (nobody answered, or every confidence is 0) leaves every influence 0,
        # so the direction below is a three-way tie: neutral. Nothing divides by zero.
        for i in range(n):
            influences[i] = 0.0
            if weight_total > 0.0 and answered[i]:
                influences[i] = final_weights[i] / weight_total
                direction_influence[<int>directions[i] - 1] += influences[i]

        overall = _leading_direction(direction_influence, tie_tolerance)
        if answered_weight > 0.0:
            confidence_level = direction_confidence[overall - 1] / answered_weight

        # Counts are whole numbers, so only an exact tie is a tie. On a tie the direction is
        # neutral but the top count still gives the share.
        if large_answered >= 2:
            large_direction = _leading_direction(large_votes, 0.0)
            for d in range(3):
                if large_votes[d] > large_top_count:
                    large_top_count = large_votes[d]

    return (
        overall,
        direction_influence[overall - 1],
        confidence_level,
        direction_influence[0],
        direction_influence[1],
        direction_influence[2],
        answered_count,
        large_answered,
        large_configured,
        large_direction,
        large_top_count,
        answered_weight / configured_weight if configured_weight > 0.0 else 0.0,
    )
