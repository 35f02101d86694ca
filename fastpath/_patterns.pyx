"""Pattern search kernels: arithmetic only. The checked entry point is fastpath/patterns.py.

The search follows MASS (Mueen's Algorithm for Similarity Search, Mueen et al., "The Fastest
Similarity Search Algorithm for Time Series Subsequences under Euclidean Distance", 2017): the
z-normalized distance of every candidate comes from its Pearson correlation with the query,
d^2 = 2 * window * (1 - corr), and the sliding dot products behind the correlations come from
FFTs, so the cost is O(n log n) instead of O(n * window).

Precision: the dot products are taken over blocks from which their own mean level was
subtracted, so a price level of 1e9 costs no more digits than a level of 1. A candidate whose
correlation error estimate exceeds CORRELATION_ERROR (nearly flat next to large moves in its
block) is recomputed directly in O(window). The returned matches are then recomputed directly
as well (see refine), so their distances equal the direct O(n * window) computation's.
"""

import numpy as np

from libc.math cimport NAN, fabs, isfinite, log2, sqrt
from libc.stdint cimport int64_t, uint8_t

# Candidate kinds in the stats pass.
cdef uint8_t UNUSABLE = 0
cdef uint8_t FLAT = 1
cdef uint8_t MOVING = 2

cdef double EPSILON = 2.220446049250313e-16
# Largest estimated error of a candidate's correlation before it is recomputed directly.
cdef double CORRELATION_ERROR = 1e-10
# Assumed worst error of a screened correlation: 100 times the estimate, as a margin for the
# estimate's constant factor. It bounds |d^2 - exact d^2| <= 2 * window * SCREEN_ERROR.
SCREEN_ERROR = 1e-8


cdef bint _window_stats(
    const double* values, Py_ssize_t length, double* mean, double* std, bint* flat
) noexcept nogil:
    """Compute the mean, population std and flatness of values[:length] into the pointers.

    Returns False, with the pointers unset, when a value is not finite. A window is flat when
    its minimum equals its maximum, an exact test that rounding in the mean cannot fool.
    """
    cdef Py_ssize_t j
    cdef double total = 0.0, squares = 0.0, deviation
    cdef double low = values[0], high = values[0]
    for j in range(length):
        if not isfinite(values[j]):
            return False
        total += values[j]
        low = min(low, values[j])
        high = max(high, values[j])
    mean[0] = total / length
    for j in range(length):
        deviation = values[j] - mean[0]
        squares += deviation * deviation
    std[0] = sqrt(squares / length)
    flat[0] = low == high
    return True


cdef double _direct_distance(
    const double* query, const double* candidate, Py_ssize_t window,
    double query_mean, double query_std, bint query_flat,
) noexcept nogil:
    """Z-normalized Euclidean distance computed term by term; NaN for a non-finite window.

    Flat windows follow the usual convention: distance 0 when both are flat, sqrt(window)
    when only one is.
    """
    cdef double mean, std, difference, squares = 0.0
    cdef bint flat
    cdef Py_ssize_t j
    if not _window_stats(candidate, window, &mean, &std, &flat):
        return NAN
    if query_flat or flat:
        return 0.0 if (query_flat and flat) else sqrt(<double>window)
    for j in range(window):
        difference = (query[j] - query_mean) / query_std - (candidate[j] - mean) / std
        squares += difference * difference
    return sqrt(squares)


def query_stats(const double[::1] series, Py_ssize_t window):
    """Return (finite, mean, population std, flat) of the last `window` values."""
    cdef double mean = NAN, std = NAN
    cdef bint flat = False
    cdef bint finite = _window_stats(
        &series[series.shape[0] - window], window, &mean, &std, &flat
    )
    return finite, mean, std, flat


def candidate_stats(
    const double[::1] series,
    Py_ssize_t window,
    Py_ssize_t horizon,
    double[::1] mean_out,
    double[::1] std_out,
    uint8_t[::1] kind_out,
    double[::1] forward_out,
):
    """Fill the mean, population std, kind and forward return of every candidate in O(n).

    Candidate s covers series[s : s + window]; there are len(mean_out) of them. Its kind is
    UNUSABLE when the window or the forward return series[s + window - 1 + horizon] /
    series[s + window - 1] - 1 is not finite, FLAT when every value is equal (std 0) and
    MOVING otherwise.

    Mean and sum of squared deviations slide by Welford's update on values minus a reference
    taken from the window, so that a price level of 1e9 does not round the mean at 1e-7. Every
    `window` candidates, or sooner when the rounding error estimate of the sum of squares
    reaches CORRELATION_ERROR of it, the window is recomputed in two passes and the reference
    moves to its first value. That costs O(window) once per `window` candidates.
    """
    cdef Py_ssize_t candidates = mean_out.shape[0]
    cdef Py_ssize_t end, s
    cdef Py_ssize_t run = 0, changes = 0, since_exact = 0
    cdef double reference = 0.0, value, leaving, mean = 0.0, previous_mean
    cdef double squares = 0.0, drift = 0.0, delta, term, forward
    with nogil:
        for end in range(candidates + window - 1):
            if not isfinite(series[end]):
                run = 0
                changes = 0
                continue
            if run == 0:
                reference = series[end]
                mean = 0.0
                squares = 0.0
                drift = 0.0
                since_exact = 0
            value = series[end] - reference
            if run < window:
                if run > 0 and series[end] != series[end - 1]:
                    changes += 1
                run += 1
                delta = value - mean
                mean += delta / run
                term = delta * (value - mean)
                squares += term
                drift += EPSILON * (fabs(term) + squares + fabs(mean) * fabs(delta))
            else:
                leaving = series[end - window] - reference
                if series[end] != series[end - 1]:
                    changes += 1
                if series[end - window + 1] != series[end - window]:
                    changes -= 1
                previous_mean = mean
                mean += (value - leaving) / window
                term = (value - leaving) * ((value - mean) + (leaving - previous_mean))
                squares += term
                drift += EPSILON * (
                    fabs(value - leaving) * (fabs(value - mean) + fabs(leaving - previous_mean))
                    + fabs(squares)
                    + 2.0 * fabs(mean) * fabs(value - leaving)
                )
                since_exact += 1
            s = end - window + 1
            if s < 0:
                continue
            kind_out[s] = UNUSABLE
            mean_out[s] = NAN
            std_out[s] = NAN
            forward_out[s] = NAN
            if run < window:
                continue
            forward = series[end + horizon] / series[end] - 1.0
            if not isfinite(forward):
                continue
            forward_out[s] = forward
            if changes == 0:
                kind_out[s] = FLAT
                mean_out[s] = series[end]
                std_out[s] = 0.0
                continue
            if since_exact >= window or drift > CORRELATION_ERROR * squares:
                reference = series[s]
                _shifted_stats(&series[s], window, reference, &mean, &squares)
                drift = EPSILON * window * squares
                since_exact = 0
            kind_out[s] = MOVING
            mean_out[s] = reference + mean
            std_out[s] = sqrt(squares / window)


cdef void _shifted_stats(
    const double* values, Py_ssize_t length, double reference, double* mean, double* squares
) noexcept nogil:
    """Two-pass mean of values[:length] - reference and sum of squared deviations from it."""
    cdef Py_ssize_t j
    cdef double total = 0.0, deviation, sum_squares = 0.0
    for j in range(length):
        total += values[j] - reference
    mean[0] = total / length
    for j in range(length):
        deviation = values[j] - reference - mean[0]
        sum_squares += deviation * deviation
    squares[0] = sum_squares


def block_length(Py_ssize_t window):
    """Return the FFT length of one block: a power of two of at least 8 * window and 256.

    Short blocks keep each block's spread around its level small, which bounds the FFT
    rounding error; 8 * window keeps the overlap of window - 1 values a small share of it.
    """
    cdef Py_ssize_t length = 256
    while length < 8 * window:
        length *= 2
    return length


def block_segments(
    const double[::1] series,
    Py_ssize_t window,
    Py_ssize_t block,
    double[:, ::1] segments_out,
    double[::1] level_out,
    double[::1] spread_out,
):
    """Fill one row per block of candidates with its input values minus the block's level.

    Row b holds series[b * block : b * block + block + window - 1] minus the mean of its
    finite values (the level), zero where a value is not finite or past the end. spread_out
    is the root mean square of the finite deviations from the level.
    """
    cdef Py_ssize_t n = series.shape[0]
    cdef Py_ssize_t blocks = segments_out.shape[0], length = segments_out.shape[1]
    cdef Py_ssize_t b, j, start, stop, count
    cdef double total, squares, deviation, level
    with nogil:
        for b in range(blocks):
            start = b * block
            stop = min(n, start + block + window - 1)
            total = 0.0
            count = 0
            for j in range(start, stop):
                if isfinite(series[j]):
                    total += series[j]
                    count += 1
            level = total / count if count > 0 else 0.0
            squares = 0.0
            for j in range(length):
                segments_out[b, j] = 0.0
                if start + j < stop and isfinite(series[start + j]):
                    deviation = series[start + j] - level
                    segments_out[b, j] = deviation
                    squares += deviation * deviation
            level_out[b] = level
            spread_out[b] = sqrt(squares / count) if count > 0 else 0.0


def sliding_dots(segments, zquery, Py_ssize_t length, Py_ssize_t block):
    """Return the dot product of zquery with every block window, flattened in start order.

    Overlap-save cross-correlation: no output read here wraps around the circular FFT,
    because block + len(zquery) - 1 <= length.
    """
    spectrum = np.fft.rfft(segments, n=length, axis=1)
    spectrum *= np.conj(np.fft.rfft(zquery, n=length))
    return np.ascontiguousarray(np.fft.irfft(spectrum, n=length, axis=1)[:, :block]).ravel()


def mass_distances(
    const double[::1] series,
    Py_ssize_t window,
    double query_mean,
    double query_std,
    double zquery_sum,
    const double[::1] dots,
    Py_ssize_t block,
    Py_ssize_t length,
    const double[::1] level,
    const double[::1] spread,
    const double[::1] mean,
    const double[::1] std,
    const uint8_t[::1] kind,
    double[::1] distance_out,
):
    """Fill the distance of every candidate of a moving query from its correlation.

    dots[s] is sum(zquery[j] * (series[s + j] - level[s // block])). zquery sums to zero
    only up to rounding, so the level is replaced by the candidate's own mean through
    zquery_sum. NaN for UNUSABLE candidates, sqrt(window) for FLAT ones.
    """
    cdef Py_ssize_t n = series.shape[0]
    cdef Py_ssize_t s, b
    cdef double factor = EPSILON * log2(<double>length) * sqrt(<double>length / window)
    cdef double corr, squared
    with nogil:
        for s in range(distance_out.shape[0]):
            if kind[s] == UNUSABLE:
                distance_out[s] = NAN
                continue
            if kind[s] == FLAT:
                distance_out[s] = sqrt(<double>window)
                continue
            b = s // block
            if factor * spread[b] > CORRELATION_ERROR * std[s]:
                distance_out[s] = _direct_distance(
                    &series[n - window], &series[s], window, query_mean, query_std, False
                )
                continue
            corr = (dots[s] - (mean[s] - level[b]) * zquery_sum) / (window * std[s])
            squared = 2.0 * window * (1.0 - corr)
            distance_out[s] = sqrt(squared) if squared > 0.0 else 0.0


def flat_query_distances(
    Py_ssize_t window, const uint8_t[::1] kind, double[::1] distance_out
):
    """Fill distances for a flat query: 0 to flat candidates, sqrt(window) to moving ones."""
    cdef Py_ssize_t s
    with nogil:
        for s in range(distance_out.shape[0]):
            if kind[s] == UNUSABLE:
                distance_out[s] = NAN
            elif kind[s] == FLAT:
                distance_out[s] = 0.0
            else:
                distance_out[s] = sqrt(<double>window)


def direct_distances(
    const double[::1] series,
    Py_ssize_t window,
    double query_mean,
    double query_std,
    bint query_flat,
    const int64_t[::1] starts,
    double[::1] distance_out,
):
    """Overwrite distance_out[s] for every s in `starts` with the term-by-term distance."""
    cdef Py_ssize_t n = series.shape[0]
    cdef Py_ssize_t i, s
    with nogil:
        for i in range(starts.shape[0]):
            s = starts[i]
            distance_out[s] = _direct_distance(
                &series[n - window], &series[s], window, query_mean, query_std, query_flat
            )


def select_greedy(
    const double[::1] distances,
    const int64_t[::1] order,
    Py_ssize_t k,
    Py_ssize_t exclusion,
    int64_t[::1] chosen,
):
    """Walk `order` (starts by ascending distance) and keep up to k starts more than
    `exclusion` apart. Returns how many starts were written to `chosen`."""
    cdef Py_ssize_t count = 0
    cdef Py_ssize_t i, c
    cdef int64_t s, gap
    cdef bint excluded
    with nogil:
        for i in range(order.shape[0]):
            if count == k:
                break
            s = order[i]
            excluded = False
            for c in range(count):
                gap = s - chosen[c]
                if -exclusion <= gap <= exclusion:
                    excluded = True
                    break
            if not excluded:
                chosen[count] = s
                count += 1
    return count


def select(distances, Py_ssize_t k, Py_ssize_t exclusion):
    """Pick up to k starts by ascending distance, each more than `exclusion` from those picked.

    NaN distances are never picked, and a tie in distance picks the earlier start. Each pick
    excludes at most 2 * exclusion + 1 starts, so the greedy walk never goes past the
    k * (2 * exclusion + 1) smallest distances, and only those are sorted.
    """
    finite = np.flatnonzero(np.isfinite(distances))
    pool_size = k * (2 * exclusion + 1)
    if finite.shape[0] > pool_size:
        values = distances[finite]
        bound = np.partition(values, pool_size - 1)[pool_size - 1]
        finite = finite[values <= bound]
    # A stable sort of starts in ascending order keeps the earlier start first in a tie.
    order = np.ascontiguousarray(finite[np.argsort(distances[finite], kind="stable")])
    chosen = np.empty(k, dtype=np.int64)
    found = select_greedy(distances, order, k, exclusion, chosen)
    return chosen[:found]


def refine(series, Py_ssize_t window, query, distances, Py_ssize_t k, Py_ssize_t exclusion):
    """Recompute directly every screened distance that could change the picks, then pick.

    A screened squared distance is within `tolerance` of the direct one. A candidate whose
    screened value exceeds sqrt(largest pick^2 + 2 * tolerance) is therefore farther than
    every pick in the direct computation too, and cannot be picked; all others are
    recomputed, and the loop repeats until no unrefined candidate is in reach.
    """
    _, query_mean, query_std, query_flat = query
    tolerance = 2.0 * window * SCREEN_ERROR
    refined = np.zeros(distances.shape[0], dtype=bool)
    while True:
        chosen = select(distances, k, exclusion)
        if chosen.shape[0] == 0:
            return chosen
        farthest = float(distances[chosen].max())
        reach = sqrt(farthest * farthest + 2.0 * tolerance)
        pending = np.flatnonzero((distances <= reach) & ~refined)
        if pending.shape[0] == 0:
            return chosen
        direct_distances(series, window, query_mean, query_std, query_flat, pending, distances)
        refined[pending] = True


def screen(series, Py_ssize_t window, Py_ssize_t horizon, Py_ssize_t candidates, query):
    """Return (distances, forward_returns) of every candidate, distances by MASS."""
    _, query_mean, query_std, query_flat = query
    mean = np.empty(candidates, dtype=np.float64)
    std = np.empty(candidates, dtype=np.float64)
    kind = np.empty(candidates, dtype=np.uint8)
    forward = np.empty(candidates, dtype=np.float64)
    distances = np.empty(candidates, dtype=np.float64)
    candidate_stats(series, window, horizon, mean, std, kind, forward)
    if query_flat:
        flat_query_distances(window, kind, distances)
        return distances, forward

    length = block_length(window)
    block = length - window + 1
    blocks = -(-candidates // block)
    segments = np.empty((blocks, length), dtype=np.float64)
    level = np.empty(blocks, dtype=np.float64)
    spread = np.empty(blocks, dtype=np.float64)
    block_segments(series, window, block, segments, level, spread)
    zquery = (np.asarray(series[-window:]) - query_mean) / query_std
    dots = sliding_dots(segments, zquery, length, block)
    mass_distances(
        series, window, query_mean, query_std, float(zquery.sum()), dots, block, length,
        level, spread, mean, std, kind, distances,
    )
    return distances, forward


def search(series, Py_ssize_t window, Py_ssize_t k, Py_ssize_t horizon, Py_ssize_t exclusion):
    """Return (starts, distances, forward_returns) of the top k candidates.

    Empty arrays when there is no candidate or the query is not finite.
    """
    candidates = max(0, series.shape[0] - 2 * window - horizon + 1)
    query = query_stats(series, window) if series.shape[0] >= window else (False, 0, 0, 0)
    if candidates == 0 or not query[0]:
        return (
            np.empty(0, dtype=np.int64),
            np.empty(0, dtype=np.float64),
            np.empty(0, dtype=np.float64),
        )
    distances, forward = screen(series, window, horizon, candidates, query)
    starts = refine(series, window, query, distances, k, exclusion)
    return starts, distances[starts], forward[starts]
