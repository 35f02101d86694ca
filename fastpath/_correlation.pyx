"""Correlation kernels: arithmetic only. The checked entry points are in fastpath/correlation.py.

Pearson correlation is NaN when either side is constant, because its variance is then 0. A
side counts as constant when all its values are equal, an exact test that rounding in the
mean cannot fool.
"""

from libc.math cimport NAN, fabs, isfinite, sqrt

cdef double EPSILON = 2.220446049250313e-16
# Largest estimated relative rounding error of a running sum of squares or products before
# the window is recomputed in two passes.
cdef double RECOMPUTE_ERROR = 1e-12


cdef double _pearson(const double* a, const double* b, Py_ssize_t length) noexcept nogil:
    """Pearson correlation of a[:length] and b[:length], all finite, in two passes."""
    cdef Py_ssize_t j
    cdef double a_total = 0.0, b_total = 0.0, a_mean, b_mean
    cdef double a_min = a[0], a_max = a[0], b_min = b[0], b_max = b[0]
    cdef double da, db, cross = 0.0, a_squares = 0.0, b_squares = 0.0
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
    return _ratio(cross, a_squares, b_squares)


cdef inline double _ratio(double cross, double a_squares, double b_squares) noexcept nogil:
    cdef double r = cross / (sqrt(a_squares) * sqrt(b_squares))
    # Rounding can push |r| a hair past 1.
    return max(-1.0, min(1.0, r))


cdef struct Moments:
    # Means are of the values minus the reference levels, the first pair of the window at the
    # last two-pass recompute, so that a level of 1e9 does not round the means at 1e-7.
    double a_reference, b_reference
    double a_mean, b_mean, a_squares, b_squares, cross, drift


cdef inline void _slide(
    Moments* m, double a_in, double b_in, double a_out, double b_out, Py_ssize_t window
) noexcept nogil:
    """Replace the pair (a_out, b_out) by (a_in, b_in) in a full window (Welford's update)."""
    cdef double a_previous = m.a_mean, b_previous = m.b_mean
    cdef double da, db, a_term, b_term, cross_term
    a_in -= m.a_reference
    a_out -= m.a_reference
    b_in -= m.b_reference
    b_out -= m.b_reference
    da = a_in - a_out
    db = b_in - b_out
    m.a_mean += da / window
    m.b_mean += db / window
    a_term = da * ((a_in - m.a_mean) + (a_out - a_previous))
    b_term = db * ((b_in - m.b_mean) + (b_out - b_previous))
    # The co-moment equals sum((a - new a mean) * (b - c)) for any constant c, because the a
    # deviations sum to 0; with c the old b mean, the pairs that stay contribute no change.
    cross_term = (
        (a_in - m.a_mean) * (b_in - b_previous) - (a_out - m.a_mean) * (b_out - b_previous)
    )
    m.a_squares += a_term
    m.b_squares += b_term
    m.cross += cross_term
    # Rounding of each term, of each sum, and of each mean (which every later term inherits).
    m.drift += EPSILON * (
        fabs(a_term) + fabs(b_term) + 2.0 * fabs(cross_term)
        + fabs(m.a_squares) + fabs(m.b_squares) + fabs(m.cross)
        + 4.0 * (fabs(m.a_mean) * fabs(da) + fabs(m.b_mean) * fabs(db))
    )


cdef void _exact(Moments* m, const double* a, const double* b, Py_ssize_t length) noexcept nogil:
    """Two-pass means, sums of squares and co-moment of a[:length] and b[:length]."""
    cdef Py_ssize_t j
    cdef double a_total = 0.0, b_total = 0.0, da, db
    m.a_reference = a[0]
    m.b_reference = b[0]
    for j in range(length):
        a_total += a[j] - m.a_reference
        b_total += b[j] - m.b_reference
    m.a_mean = a_total / length
    m.b_mean = b_total / length
    m.a_squares = 0.0
    m.b_squares = 0.0
    m.cross = 0.0
    for j in range(length):
        da = a[j] - m.a_reference - m.a_mean
        db = b[j] - m.b_reference - m.b_mean
        m.a_squares += da * da
        m.b_squares += db * db
        m.cross += da * db
    m.drift = EPSILON * length * (m.a_squares + m.b_squares + fabs(m.cross))


def rolling_correlation(
    const double[::1] a, const double[::1] b, Py_ssize_t window, double[::1] out
):
    """Fill out[i] with the correlation of a and b over the `window` values ending at i.

    O(n): means, sums of squares and the co-moment slide by Welford's update, which works on
    deviations from the means. A window is recomputed in two passes when it is the first
    after a gap, or when the rounding error estimate of a sliding sum reaches
    RECOMPUTE_ERROR of the smaller sum of squares (a nearly flat window after large moves).
    Constant sides are found by counting the changes between neighbors in the window.
    """
    cdef Py_ssize_t n = a.shape[0]
    cdef Py_ssize_t i, start
    cdef Py_ssize_t run = 0, a_changes = 0, b_changes = 0
    cdef Moments m
    m.drift = 0.0
    with nogil:
        for i in range(n):
            out[i] = NAN
            if not (isfinite(a[i]) and isfinite(b[i])):
                run = 0
                a_changes = 0
                b_changes = 0
                continue
            if run > 0:
                a_changes += a[i] != a[i - 1]
                b_changes += b[i] != b[i - 1]
            if run >= window:
                a_changes -= a[i - window + 1] != a[i - window]
                b_changes -= b[i - window + 1] != b[i - window]
            run += 1
            if run < window:
                continue
            start = i - window + 1
            if run == window:
                _exact(&m, &a[start], &b[start], window)
            else:
                _slide(&m, a[i], b[i], a[i - window], b[i - window], window)
            if a_changes == 0 or b_changes == 0:
                continue
            if m.drift > RECOMPUTE_ERROR * min(m.a_squares, m.b_squares):
                _exact(&m, &a[start], &b[start], window)
            out[i] = _ratio(m.cross, m.a_squares, m.b_squares)


cdef double _lagged_correlation(
    const double[::1] a, const double[::1] b, Py_ssize_t lag, Py_ssize_t min_pairs,
    double a_level, double b_level,
) noexcept nogil:
    """Correlation of a[t] with b[t + lag] over the t where both exist and are finite.

    One pass over sums of values minus a level (the mean of each whole series), which keeps
    the cancellation in sum(x^2) - sum(x)^2 / count small. When it still removes more than
    half of the digits, the lag is recomputed in two passes.
    """
    cdef Py_ssize_t n = a.shape[0]
    cdef Py_ssize_t t, count = 0
    cdef double x, y, sx = 0.0, sy = 0.0, sxx = 0.0, syy = 0.0, sxy = 0.0
    cdef double x_first = NAN, y_first = NAN
    cdef bint x_varies = False, y_varies = False
    cdef double vx, vy, cov
    for t in range(max(0, -lag), min(n, n - lag)):
        if not (isfinite(a[t]) and isfinite(b[t + lag])):
            continue
        if count == 0:
            x_first = a[t]
            y_first = b[t + lag]
        x_varies = x_varies or a[t] != x_first
        y_varies = y_varies or b[t + lag] != y_first
        x = a[t] - a_level
        y = b[t + lag] - b_level
        sx += x
        sy += y
        sxx += x * x
        syy += y * y
        sxy += x * y
        count += 1
    if count < min_pairs or not (x_varies and y_varies):
        return NAN
    vx = sxx - sx * sx / count
    vy = syy - sy * sy / count
    cov = sxy - sx * sy / count
    if vx < 1e-8 * sxx or vy < 1e-8 * syy:
        return _lagged_two_pass(a, b, lag, sx / count + a_level, sy / count + b_level)
    return _ratio(cov, vx, vy)


cdef double _lagged_two_pass(
    const double[::1] a, const double[::1] b, Py_ssize_t lag, double a_mean, double b_mean
) noexcept nogil:
    """Correlation of a[t] with b[t + lag] from deviations about the given pair means."""
    cdef Py_ssize_t n = a.shape[0]
    cdef Py_ssize_t t
    cdef double da, db, cross = 0.0, a_squares = 0.0, b_squares = 0.0
    for t in range(max(0, -lag), min(n, n - lag)):
        if not (isfinite(a[t]) and isfinite(b[t + lag])):
            continue
        da = a[t] - a_mean
        db = b[t + lag] - b_mean
        cross += da * db
        a_squares += da * da
        b_squares += db * db
    return _ratio(cross, a_squares, b_squares)


cdef double _finite_mean(const double[::1] values) noexcept nogil:
    cdef Py_ssize_t t, count = 0
    cdef double total = 0.0
    for t in range(values.shape[0]):
        if isfinite(values[t]):
            total += values[t]
            count += 1
    return total / count if count > 0 else 0.0


def lead_lag(
    const double[::1] a, const double[::1] b, Py_ssize_t max_lag, Py_ssize_t min_pairs
):
    """Return (lag, corr) with the largest |corr| over lags -max_lag..max_lag.

    Lags are tried by increasing |lag|, negative before positive, and only a strictly larger
    |corr| replaces the best, so a tie keeps the shorter lag. (0, NaN) when no lag has a
    correlation. O(n) per lag, in one pass unless a lag needs the two-pass fallback.
    """
    cdef Py_ssize_t best_lag = 0
    cdef double best = NAN
    cdef double r, a_level, b_level
    cdef Py_ssize_t step, sign, lag
    with nogil:
        a_level = _finite_mean(a)
        b_level = _finite_mean(b)
        for step in range(max_lag + 1):
            for sign in range(-1, 2, 2):
                if step == 0 and sign == 1:
                    continue
                lag = sign * step
                r = _lagged_correlation(a, b, lag, min_pairs, a_level, b_level)
                if isfinite(r) and (not isfinite(best) or fabs(r) > fabs(best)):
                    best = r
                    best_lag = lag
    return best_lag, best
