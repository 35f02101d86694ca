"""Volatility kernels: arithmetic only. The checked entry points are in fastpath/volatility.py."""

from libc.math cimport NAN, isfinite, log, sqrt


def log_returns(const double[::1] close, double[::1] out):
    """Fill out[i] with log(close[i] / close[i - 1]), NaN at 0 and where a price is unusable.

    A price is unusable when it is not finite or not positive, because its log is undefined.
    """
    cdef Py_ssize_t i
    cdef double previous, current
    with nogil:
        for i in range(close.shape[0]):
            out[i] = NAN
            if i == 0:
                continue
            previous = close[i - 1]
            current = close[i]
            if isfinite(previous) and isfinite(current) and previous > 0.0 and current > 0.0:
                out[i] = log(current / previous)


def rolling_sample_std(const double[::1] values, Py_ssize_t window, double[::1] out):
    """Fill out[i] with the sample std (ddof 1) of values[i - window + 1 .. i].

    NaN during warm-up and for any window that holds a non-finite value. Each window is
    computed in two passes (mean, then squared deviations) for accuracy.
    """
    cdef Py_ssize_t n = values.shape[0]
    cdef Py_ssize_t i, j
    cdef Py_ssize_t missing = 0
    cdef double total, mean, deviation, squares
    with nogil:
        for i in range(n):
            out[i] = NAN
            if not isfinite(values[i]):
                missing += 1
            if i >= window and not isfinite(values[i - window]):
                missing -= 1
            if i < window - 1 or missing > 0:
                continue
            total = 0.0
            for j in range(i - window + 1, i + 1):
                total += values[j]
            mean = total / window
            squares = 0.0
            for j in range(i - window + 1, i + 1):
                deviation = values[j] - mean
                squares += deviation * deviation
            out[i] = sqrt(squares / (window - 1))


def percentile_of_last(const double[::1] values, Py_ssize_t lookback):
    """Return the percentile rank of the last value among the `lookback` finite values before it.

    The rank counts values below plus half of those equal (scipy's percentileofscore with
    kind="mean"), so a constant history ranks 50. NaN when the last value is not finite or
    no finite value precedes it.
    """
    cdef Py_ssize_t n = values.shape[0]
    cdef Py_ssize_t i
    cdef Py_ssize_t counted = 0
    cdef double below = 0.0
    cdef double equal = 0.0
    cdef double last
    if n == 0:
        return NAN
    last = values[n - 1]
    if not isfinite(last):
        return NAN
    with nogil:
        i = n - 2
        while i >= 0 and counted < lookback:
            if isfinite(values[i]):
                counted += 1
                if values[i] < last:
                    below += 1.0
                elif values[i] == last:
                    equal += 1.0
            i -= 1
    if counted == 0:
        return NAN
    return 100.0 * (below + 0.5 * equal) / counted
