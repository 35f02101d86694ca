"""Pattern search kernels: arithmetic only. The checked entry point is fastpath/patterns.py."""

from libc.math cimport NAN, isfinite, sqrt
from libc.stdint cimport int64_t


cdef bint _window_stats(
    const double* values, Py_ssize_t length, double* mean, double* std, bint* flat
) noexcept nogil:
    """Compute the mean, population std and flatness of values[:length] into the pointers.

    Returns False, with the pointers unset, when a value is not finite. A window is flat when its minimum equals its maximum, an exact test that rounding in the
    mean cannot fool.
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


def distances(
    const double[::1] series,
    Py_ssize_t window,
    Py_ssize_t horizon,
    double[::1] distance_out,
    double[::1] forward_out,
):
    """Fill the z-normalized distance and forward return of every candidate start.

    The query is the last `window` values and candidate s covers series[s : s + window]. Its
    forward return is series[s + window - 1 + horizon] / series[s + window - 1] - 1.
    distance_out has one slot per candidate, so len(distance_out) + window + horizon must
    equal the query's first index. A candidate is NaN in both outputs when its window or
    forward return is not finite. Flat windows follow the usual convention: distance 0 when
    both are flat, sqrt(window) when only one is. Returns False if the query is not finite.
    """
    cdef Py_ssize_t n = series.shape[0]
    cdef Py_ssize_t query_start = n - window
    cdef Py_ssize_t s, j, last
    cdef double query_mean, query_std, mean, std, difference, squares, forward
    cdef bint query_flat, flat
    cdef bint query_finite
    with nogil:
        for s in range(distance_out.shape[0]):
            distance_out[s] = NAN
            forward_out[s] = NAN
        query_finite = _window_stats(
            &series[query_start], window, &query_mean, &query_std, &query_flat
        )
        for s in range(distance_out.shape[0] if query_finite else 0):
            last = s + window - 1
            forward = series[last + horizon] / series[last] - 1.0
            if not isfinite(forward):
                continue
            if not _window_stats(&series[s], window, &mean, &std, &flat):
                continue
            forward_out[s] = forward
            if query_flat or flat:
                distance_out[s] = 0.0 if (query_flat and flat) else sqrt(<double>window)
                continue
            squares = 0.0
            for j in range(window):
                difference = (
                    (series[query_start + j] - query_mean) / query_std
                    - (series[s + j] - mean) / std
                )
                squares += difference * difference
            distance_out[s] = sqrt(squares)
    return query_finite


def select(
    const double[::1] distances, Py_ssize_t k, Py_ssize_t exclusion, int64_t[::1] chosen
):
    """Pick up to k starts by ascending distance, each more than `exclusion` from those picked.

    NaN distances are never picked, and a tie in distance picks the earlier start. Returns how
    many starts were written to `chosen`.
    """
    cdef Py_ssize_t count = 0
    cdef Py_ssize_t s, c, best
    cdef int64_t gap
    cdef bint excluded
    with nogil:
        while count < k:
            best = -1
            for s in range(distances.shape[0]):
                if not isfinite(distances[s]):
                    continue
                if best >= 0 and distances[s] >= distances[best]:
                    continue
                excluded = False
                for c in range(count):
                    gap = s - chosen[c]
                    if -exclusion <= gap <= exclusion:
                        excluded = True
                        break
                if not excluded:
                    best = s
            if best < 0:
                break
            chosen[count] = best
            count += 1
    return count
