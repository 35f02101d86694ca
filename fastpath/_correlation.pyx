"""Correlation kernels: arithmetic only. The checked entry points are in fastpath/correlation.py.

Pearson correlation is computed in two passes (means, then centered sums) for accuracy. It is
NaN when either side is constant, because its variance is then 0. A side counts as constant
when its minimum equals its maximum, an exact test that rounding in the mean cannot fool.
"""

from libc.math cimport NAN, fabs, isfinite, sqrt


cdef double _pearson(const double* a, const double* b, Py_ssize_t length) noexcept nogil:
    """Pearson correlation of a[:length] and b[:length], all finite."""
    cdef Py_ssize_t j
    cdef double a_total = 0.0, b_total = 0.0, a_mean, b_mean
    cdef double a_min = a[0], a_max = a[0], b_min = b[0], b_max = b[0]
    cdef double da, db, cross = 0.0, a_squares = 0.0, b_squares = 0.0, r
    for j in range(length):
        a_total += a[j]
        b_total += b[j]
        a_min = min(a_min, a[j])
        a_max = max(a_max, a[j])
        b_min = min(b_min, b[j])
        b_max = max(b_max, b[j])
    if a_min == a_max or b_min == b_max:
        return NAN
    a_mean = a_total / length
    b_mean = b_total / length
    for j in range(length):
        da = a[j] - a_mean
        db = b[j] - b_mean
        cross += da * db
        a_squares += da * da
        b_squares += db * db
    r = cross / (sqrt(a_squares) * sqrt(b_squares))
    # Rounding can push |r| a hair past 1.
    return max(-1.0, min(1.0, r))


def rolling_correlation(
    const double[::1] a, const double[::1] b, Py_ssize_t window, double[::1] out
):
    """Fill out[i] with the correlation of a and b over the `window` values ending at i."""
    cdef Py_ssize_t n = a.shape[0]
    cdef Py_ssize_t i
    cdef Py_ssize_t missing = 0
    with nogil:
        for i in range(n):
            out[i] = NAN
            if not (isfinite(a[i]) and isfinite(b[i])):
                missing += 1
            if i >= window and not (isfinite(a[i - window]) and isfinite(b[i - window])):
                missing -= 1
            if i >= window - 1 and missing == 0:
                out[i] = _pearson(&a[i - window + 1], &b[i - window + 1], window)


cdef double _lagged_correlation(
    const double[::1] a, const double[::1] b, Py_ssize_t lag, Py_ssize_t min_pairs,
    double* a_pairs, double* b_pairs,
) noexcept nogil:
    """Correlation of a[t] with b[t + lag] over the t where both exist and are finite."""
    cdef Py_ssize_t n = a.shape[0]
    cdef Py_ssize_t t, count = 0
    for t in range(max(0, -lag), min(n, n - lag)):
        if isfinite(a[t]) and isfinite(b[t + lag]):
            a_pairs[count] = a[t]
            b_pairs[count] = b[t + lag]
            count += 1
    if count < min_pairs:
        return NAN
    return _pearson(a_pairs, b_pairs, count)


def lead_lag(
    const double[::1] a, const double[::1] b, Py_ssize_t max_lag, Py_ssize_t min_pairs,
    double[::1] a_pairs, double[::1] b_pairs,
):
    """Return (lag, corr) with the largest |corr| over lags -max_lag..max_lag.

    Lags are tried by increasing |lag|, negative before positive, and only a strictly larger
    |corr| replaces the best, so a tie keeps the shorter lag. (0, NaN) when no lag has a
    correlation. a_pairs and b_pairs are scratch space of len(a), which must be >= 1.
    """
    cdef Py_ssize_t best_lag = 0
    cdef double best = NAN
    cdef double r
    cdef Py_ssize_t step, sign, lag
    with nogil:
        for step in range(max_lag + 1):
            for sign in range(-1, 2, 2):
                if step == 0 and sign == 1:
                    continue
                lag = sign * step
                r = _lagged_correlation(a, b, lag, min_pairs, &a_pairs[0], &b_pairs[0])
                if isfinite(r) and (not isfinite(best) or fabs(r) > fabs(best)):
                    best = r
                    best_lag = lag
    return best_lag, best
