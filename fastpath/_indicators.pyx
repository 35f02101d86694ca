"""Technical indicator kernels: arithmetic only. The checked entry points are in
fastpath/indicators.py.

Every kernel writes all of its outputs: NaN during warm-up and at non-finite inputs. A
non-finite input ends a segment, and each run of finite inputs is computed as a series of
its own. So a window that contains a NaN is NaN, and a recursive indicator (EMA, MACD, RSI,
ATR) re-seeds after the NaN exactly as it seeds at the start of the data.

Seeding, warm-up lengths and the order of floating-point operations follow TA-Lib's C
library with its default compatibility setting and no unstable period.
tests/test_indicators.py checks every kernel against the `talib` package 0.8.2.
"""

from libc.math cimport NAN, fabs, isfinite, sqrt


cdef void _fill_nan(double[::1] out) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(out.shape[0]):
        out[i] = NAN


cdef Py_ssize_t _next_finite(const double[::1] values, Py_ssize_t i) noexcept nogil:
    while i < values.shape[0] and not isfinite(values[i]):
        i += 1
    return i


cdef Py_ssize_t _next_missing(const double[::1] values, Py_ssize_t i) noexcept nogil:
    while i < values.shape[0] and isfinite(values[i]):
        i += 1
    return i


cdef double _window_mean(const double[::1] values, Py_ssize_t last, Py_ssize_t period) noexcept nogil:
    """Mean of values[last - period + 1 .. last], summed oldest first as TA-Lib seeds do."""
    cdef double total = 0.0
    cdef Py_ssize_t j
    for j in range(last - period + 1, last + 1):
        total += values[j]
    return total / period


# --- SMA -------------------------------------------------------------------------------------

cdef void _sma_segment(
    const double[::1] close, double[::1] out, Py_ssize_t start, Py_ssize_t stop, Py_ssize_t period
) noexcept nogil:
    # Each window is summed afresh (O(n * period)), unlike TA-Lib's running sum: after a huge
    # value leaves the window, a running sum keeps its rounding residue in every later window.
    cdef Py_ssize_t i
    for i in range(start + period - 1, stop):
        out[i] = _window_mean(close, i, period)


def sma(const double[::1] close, Py_ssize_t period, double[::1] out):
    cdef Py_ssize_t start = 0, stop
    with nogil:
        _fill_nan(out)
        start = _next_finite(close, 0)
        while start < close.shape[0]:
            stop = _next_missing(close, start)
            _sma_segment(close, out, start, stop, period)
            start = _next_finite(close, stop)


# --- EMA -------------------------------------------------------------------------------------

cdef void _ema_from(
    const double[::1] values,
    double[::1] out,
    Py_ssize_t seed_index,
    Py_ssize_t stop,
    Py_ssize_t period,
) noexcept nogil:
    """EMA seeded at `seed_index` with the mean of the `period` values ending there."""
    cdef double k = 2.0 / (period + 1)
    cdef double previous
    cdef Py_ssize_t i
    if seed_index >= stop:
        return
    previous = _window_mean(values, seed_index, period)
    out[seed_index] = previous
    for i in range(seed_index + 1, stop):
        previous = ((values[i] - previous) * k) + previous
        out[i] = previous


def ema(const double[::1] close, Py_ssize_t period, double[::1] out):
    cdef Py_ssize_t start = 0, stop
    with nogil:
        _fill_nan(out)
        start = _next_finite(close, 0)
        while start < close.shape[0]:
            stop = _next_missing(close, start)
            _ema_from(close, out, start + period - 1, stop, period)
            start = _next_finite(close, stop)


# --- MACD ------------------------------------------------------------------------------------

cdef void _macd_segment(
    const double[::1] close,
    double[::1] macd_out,
    double[::1] signal_out,
    double[::1] hist_out,
    Py_ssize_t start,
    Py_ssize_t stop,
    Py_ssize_t fast,
    Py_ssize_t slow,
    Py_ssize_t signal,
) noexcept nogil:
    # TA-Lib seeds both EMAs at the same bar, where the slow one has its first value: the
    # fast EMA starts from the mean of the `fast` closes ending there, not from its own
    # earlier start. The signal EMA then runs over the MACD line from that bar, and all three
    # outputs begin where the signal has its first value.
    cdef Py_ssize_t base = start + slow - 1
    cdef Py_ssize_t first = base + signal - 1
    cdef double k_fast = 2.0 / (fast + 1)
    cdef double k_slow = 2.0 / (slow + 1)
    cdef double fast_ema, slow_ema
    cdef Py_ssize_t i
    if first >= stop:
        return
    fast_ema = _window_mean(close, base, fast)
    slow_ema = _window_mean(close, base, slow)
    macd_out[base] = fast_ema - slow_ema
    for i in range(base + 1, stop):
        fast_ema = ((close[i] - fast_ema) * k_fast) + fast_ema
        slow_ema = ((close[i] - slow_ema) * k_slow) + slow_ema
        macd_out[i] = fast_ema - slow_ema
    _ema_from(macd_out, signal_out, first, stop, signal)
    for i in range(first, stop):
        hist_out[i] = macd_out[i] - signal_out[i]
    for i in range(base, first):
        macd_out[i] = NAN


def macd(
    const double[::1] close,
    Py_ssize_t fast,
    Py_ssize_t slow,
    Py_ssize_t signal,
    double[::1] macd_out,
    double[::1] signal_out,
    double[::1] hist_out,
):
    cdef Py_ssize_t start = 0, stop
    with nogil:
        _fill_nan(macd_out)
        _fill_nan(signal_out)
        _fill_nan(hist_out)
        start = _next_finite(close, 0)
        while start < close.shape[0]:
            stop = _next_missing(close, start)
            _macd_segment(
                close, macd_out, signal_out, hist_out, start, stop, fast, slow, signal
            )
            start = _next_finite(close, stop)


# --- RSI -------------------------------------------------------------------------------------

cdef inline double _rsi_value(double gain, double loss) noexcept nogil:
    # TA-Lib returns 0 when gain + loss is zero (within its zero tolerance), which calls a
    # flat series "oversold". A flat series has no gains and no losses, so it is balanced:
    # 50. Any positive total gives the ratio.
    cdef double total = gain + loss
    if total > 0.0:
        return 100.0 * (gain / total)
    return 50.0


cdef void _rsi_segment(
    const double[::1] close, double[::1] out, Py_ssize_t start, Py_ssize_t stop, Py_ssize_t period
) noexcept nogil:
    # Wilder's smoothing as TA-Lib computes it: the first averages are plain means of the
    # first `period` changes, and each later average is (previous * (period - 1) + change) /
    # period, so the first value lands `period` bars after the segment starts.
    cdef double gain = 0.0
    cdef double loss = 0.0
    cdef double change
    cdef Py_ssize_t i
    if start + period >= stop:
        return
    for i in range(start + 1, start + period + 1):
        change = close[i] - close[i - 1]
        if change < 0.0:
            loss -= change
        else:
            gain += change
    gain /= period
    loss /= period
    out[start + period] = _rsi_value(gain, loss)
    for i in range(start + period + 1, stop):
        change = close[i] - close[i - 1]
        loss *= period - 1
        gain *= period - 1
        if change < 0.0:
            loss -= change
        else:
            gain += change
        loss /= period
        gain /= period
        out[i] = _rsi_value(gain, loss)


def rsi(const double[::1] close, Py_ssize_t period, double[::1] out):
    cdef Py_ssize_t start = 0, stop
    with nogil:
        _fill_nan(out)
        start = _next_finite(close, 0)
        while start < close.shape[0]:
            stop = _next_missing(close, start)
            _rsi_segment(close, out, start, stop, period)
            start = _next_finite(close, stop)


# --- Bollinger bands -------------------------------------------------------------------------

cdef void _bollinger_segment(
    const double[::1] close,
    double[::1] upper,
    double[::1] middle,
    double[::1] lower,
    Py_ssize_t start,
    Py_ssize_t stop,
    Py_ssize_t period,
    double nbdev,
) noexcept nogil:
    # Population standard deviation (divided by `period`), as TA-Lib's BBANDS uses. The
    # squared deviations from the window's mean are summed in a second pass, which loses
    # less precision than E[x^2] - mean^2 when prices are large and the spread small.
    cdef double mean, deviation, squares, spread
    cdef Py_ssize_t i, j
    for i in range(start + period - 1, stop):
        mean = _window_mean(close, i, period)
        squares = 0.0
        for j in range(i - period + 1, i + 1):
            deviation = close[j] - mean
            squares += deviation * deviation
        spread = nbdev * sqrt(squares / period)
        middle[i] = mean
        upper[i] = mean + spread
        lower[i] = mean - spread


def bollinger(
    const double[::1] close,
    Py_ssize_t period,
    double nbdev,
    double[::1] upper,
    double[::1] middle,
    double[::1] lower,
):
    cdef Py_ssize_t start = 0, stop
    with nogil:
        _fill_nan(upper)
        _fill_nan(middle)
        _fill_nan(lower)
        start = _next_finite(close, 0)
        while start < close.shape[0]:
            stop = _next_missing(close, start)
            _bollinger_segment(close, upper, middle, lower, start, stop, period, nbdev)
            start = _next_finite(close, stop)


# --- ATR -------------------------------------------------------------------------------------

cdef inline bint _bar_finite(
    const double[::1] high, const double[::1] low, const double[::1] close, Py_ssize_t i
) noexcept nogil:
    return isfinite(high[i]) and isfinite(low[i]) and isfinite(close[i])


cdef inline double _true_range(
    const double[::1] high, const double[::1] low, const double[::1] close, Py_ssize_t i
) noexcept nogil:
    cdef double greatest = high[i] - low[i]
    cdef double to_high = fabs(close[i - 1] - high[i])
    cdef double to_low = fabs(close[i - 1] - low[i])
    if to_high > greatest:
        greatest = to_high
    if to_low > greatest:
        greatest = to_low
    return greatest


cdef void _atr_segment(
    const double[::1] high,
    const double[::1] low,
    const double[::1] close,
    double[::1] out,
    Py_ssize_t start,
    Py_ssize_t stop,
    Py_ssize_t period,
) noexcept nogil:
    # The first true range needs the previous close, so it is at start + 1. The first ATR is
    # the mean of `period` true ranges, then Wilder's smoothing, as in TA-Lib.
    cdef double total = 0.0
    cdef double previous
    cdef Py_ssize_t i
    if start + period >= stop:
        return
    for i in range(start + 1, start + period + 1):
        total += _true_range(high, low, close, i)
    previous = total / period
    out[start + period] = previous
    for i in range(start + period + 1, stop):
        previous *= period - 1
        previous += _true_range(high, low, close, i)
        previous /= period
        out[i] = previous


def atr(
    const double[::1] high,
    const double[::1] low,
    const double[::1] close,
    Py_ssize_t period,
    double[::1] out,
):
    cdef Py_ssize_t n = close.shape[0]
    cdef Py_ssize_t start = 0, stop
    with nogil:
        _fill_nan(out)
        while start < n:
            while start < n and not _bar_finite(high, low, close, start):
                start += 1
            stop = start
            while stop < n and _bar_finite(high, low, close, stop):
                stop += 1
            _atr_segment(high, low, close, out, start, stop, period)
            start = stop
