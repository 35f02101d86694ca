"""Volatility kernels: arithmetic only. The checked entry points are in fastpath/volatility.py.

Each rolling estimator is a streaming object, and the batch functions run that same object
over the array, so the batch and streaming forms agree bit for bit. A non-finite input ends
the run: every window that contains it is NaN, and the estimator restarts after it.
"""

import numpy as np

from libc.math cimport NAN, fabs, isfinite, log, sqrt

# 4 ln 2, Parkinson's divisor, and 2 ln 2 - 1, Garman and Klass's open-close weight.
cdef double PARKINSON_DIVISOR = 4.0 * log(2.0)
cdef double GARMAN_KLASS_WEIGHT = 2.0 * log(2.0) - 1.0
cdef double EPSILON = 2.220446049250313e-16
# Largest estimated relative rounding error of a sliding sum of squares before a recompute.
cdef double RECOMPUTE_ERROR = 1e-12


cdef inline double _log_ratio(double numerator, double denominator) noexcept nogil:
    """log(numerator / denominator), NaN unless both are finite and positive."""
    if isfinite(numerator) and isfinite(denominator) and numerator > 0.0 and denominator > 0.0:
        return log(numerator / denominator)
    return NAN

def log_returns(const double[::1] close, double[::1] out):
    """Fill out[i] with log(close[i] / close[i - 1]), NaN at 0 and where a price is unusable.

    A price is unusable when it is not finite or not positive, because its log is undefined.
    """
    cdef Py_ssize_t i
    with nogil:
        for i in range(close.shape[0]):
            out[i] = _log_ratio(close[i], close[i - 1]) if i > 0 else NAN


cdef class RollingMean:
    """Mean of the last `window` finite terms, kept as a compensated running sum.

    The sum is updated by Neumaier's compensated summation, so a large term that leaves the
    window leaves no rounding residue of its own size behind. NaN until `window` finite terms
    follow the last non-finite one.
    """

    cdef double[::1] ring
    cdef Py_ssize_t window, run, head
    cdef double total, compensation

    def __init__(self, Py_ssize_t window):
        self.window = window
        self.ring = np.zeros(window, dtype=np.float64)
        self.run = 0
        self.head = 0
        self.total = 0.0
        self.compensation = 0.0

    cdef inline void _add(self, double term) noexcept nogil:
        cdef double total = self.total + term
        if fabs(self.total) >= fabs(term):
            self.compensation += (self.total - total) + term
        else:
            self.compensation += (term - total) + self.total
        self.total = total

    cdef double push(self, double term) noexcept nogil:
        if not isfinite(term):
            self.run = 0
            self.total = 0.0
            self.compensation = 0.0
            return NAN
        if self.run == self.window:
            self._add(-self.ring[self.head])
        else:
            self.run += 1
        self._add(term)
        self.ring[self.head] = term
        self.head = (self.head + 1) % self.window
        if self.run < self.window:
            return NAN
        return (self.total + self.compensation) / self.window


cdef class RealizedVolatility:
    """Sample std (ddof 1) of the last `window` log returns of the close prices pushed.

    Mean and sum of squared deviations slide by Welford's update, which works on deviations
    from the mean and so keeps its precision whatever the mean is. The rounding error the
    updates could have accumulated is tracked, and when it reaches RECOMPUTE_ERROR of the sum
    of squares (a window of nearly equal returns after large ones) the window is recomputed
    in two passes. That is O(window), but only for such windows.
    """

    cdef double[::1] ring
    cdef Py_ssize_t window, run, head
    cdef double previous_close, mean, squares, drift

    def __init__(self, Py_ssize_t window):
        self.window = window
        self.ring = np.zeros(window, dtype=np.float64)
        self.run = 0
        self.head = 0
        self.previous_close = NAN
        self._restart()

    cdef inline void _restart(self) noexcept nogil:
        self.mean = 0.0
        self.squares = 0.0
        self.drift = 0.0

    cdef void _recompute(self) noexcept nogil:
        cdef Py_ssize_t j
        cdef double total = 0.0, deviation, squares = 0.0
        for j in range(self.window):
            total += self.ring[j]
        self.mean = total / self.window
        for j in range(self.window):
            deviation = self.ring[j] - self.mean
            squares += deviation * deviation
        self.squares = squares
        self.drift = EPSILON * self.window * squares

    cpdef double update(self, double close):
        """Take the next close and return the realized volatility at it (NaN in warm-up)."""
        cdef double value = _log_ratio(close, self.previous_close)
        cdef double leaving, previous_mean, delta, term
        self.previous_close = close
        if not isfinite(value):
            self.run = 0
            self._restart()
            return NAN
        if self.run < self.window:
            self.run += 1
            delta = value - self.mean
            self.mean += delta / self.run
            term = delta * (value - self.mean)
        else:
            leaving = self.ring[self.head]
            previous_mean = self.mean
            self.mean += (value - leaving) / self.window
            term = (value - leaving) * ((value - self.mean) + (leaving - previous_mean))
        self.squares += term
        self.drift += EPSILON * (fabs(term) + fabs(self.squares))
        self.ring[self.head] = value
        self.head = (self.head + 1) % self.window
        if self.run < self.window:
            return NAN
        if self.drift > RECOMPUTE_ERROR * self.squares:
            self._recompute()
        return sqrt(self.squares / (self.window - 1))


cdef class Parkinson:
    """Parkinson (1980) volatility of the last `window` bars from their high and low.

    sigma^2 = mean over the window of ln(high / low)^2 / (4 ln 2).
    """

    cdef RollingMean terms

    def __init__(self, Py_ssize_t window):
        self.terms = RollingMean(window)

    cpdef double update(self, double high, double low):
        """Take the next bar and return the Parkinson volatility at it (NaN in warm-up)."""
        cdef double range_log = _log_ratio(high, low)
        cdef double mean = self.terms.push(range_log * range_log / PARKINSON_DIVISOR)
        # Every term is >= 0, so a negative mean is a rounding residue.
        return sqrt(max(mean, 0.0)) if isfinite(mean) else NAN


cdef class GarmanKlass:
    """Garman and Klass (1980) volatility of the last `window` bars from their OHLC.

    sigma^2 = mean over the window of 0.5 * ln(high / low)^2 - (2 ln 2 - 1) * ln(close / open)^2.
    """

    cdef RollingMean terms

    def __init__(self, Py_ssize_t window):
        self.terms = RollingMean(window)

    cpdef double update(self, double open, double high, double low, double close):
        """Take the next bar and return the Garman-Klass volatility at it (NaN in warm-up)."""
        cdef double range_log = _log_ratio(high, low)
        cdef double body_log = _log_ratio(close, open)
        cdef double mean = self.terms.push(
            0.5 * range_log * range_log - GARMAN_KLASS_WEIGHT * body_log * body_log
        )
        # A term is >= 0 when open and close lie in [low, high]; a negative mean is either a
        # rounding residue or a bar outside that range, and both give 0.
        return sqrt(max(mean, 0.0)) if isfinite(mean) else NAN


def realized_volatility(const double[::1] close, Py_ssize_t window, double[::1] out):
    """Fill out[i] with RealizedVolatility(window) after the closes up to i."""
    cdef RealizedVolatility state = RealizedVolatility(window)
    cdef Py_ssize_t i
    for i in range(close.shape[0]):
        out[i] = state.update(close[i])


def parkinson(
    const double[::1] high, const double[::1] low, Py_ssize_t window, double[::1] out
):
    """Fill out[i] with Parkinson(window) after the bars up to i."""
    cdef Parkinson state = Parkinson(window)
    cdef Py_ssize_t i
    for i in range(high.shape[0]):
        out[i] = state.update(high[i], low[i])


def garman_klass(
    const double[::1] open,
    const double[::1] high,
    const double[::1] low,
    const double[::1] close,
    Py_ssize_t window,
    double[::1] out,
):
    """Fill out[i] with GarmanKlass(window) after the bars up to i."""
    cdef GarmanKlass state = GarmanKlass(window)
    cdef Py_ssize_t i
    for i in range(high.shape[0]):
        out[i] = state.update(open[i], high[i], low[i], close[i])


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
