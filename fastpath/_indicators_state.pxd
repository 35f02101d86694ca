# Indicator states and their one-bar update functions, shared by the batch kernels
# (fastpath/_indicators.pyx), the fused kernel and the streaming classes
# (fastpath/_indicators_stream.pyx). A batch kernel is a loop of the same update calls that
# a streaming object makes, so both forms give bit-for-bit the same values.
#
# Every update takes one bar and returns NaN during warm-up. A non-finite input resets the
# state and returns NaN, so the next finite bar starts a new warm-up exactly as at the start
# of the data. Warm-up lengths and seeds follow the TA-Lib C library (0.8.1, as bundled with
# the `ta-lib` 0.8.2 package; default compatibility, no unstable period). Wilder and EMA steps are written as `value * keep + new * share`, a
# multiply and an add on the dependency chain from bar to bar; TA-Lib's forms, such as
# (value * (period - 1) + new) / period, put a division on that chain. Both round
# differently by about 1e-16 relative, and the smoothing does not accumulate the difference.

from libc.math cimport NAN, fabs, isfinite, isnan, sqrt
from libc.stdlib cimport free, malloc


# --- helpers -----------------------------------------------------------------------------------

cdef inline double positive_part(double value) noexcept nogil:
    return value if value > 0.0 else 0.0


cdef inline double true_range(double high, double low, double previous_close) noexcept nogil:
    cdef double greatest = high - low
    cdef double to_high = fabs(previous_close - high)
    cdef double to_low = fabs(previous_close - low)
    greatest = to_high if to_high > greatest else greatest
    return to_low if to_low > greatest else greatest


cdef inline double ring_sum(const double* ring, Py_ssize_t size) noexcept nogil:
    # Four partial sums shorten the dependency chain of a re-sum.
    cdef double a = 0.0, b = 0.0, c = 0.0, d = 0.0
    cdef Py_ssize_t j = 0
    while j + 4 <= size:
        a += ring[j]
        b += ring[j + 1]
        c += ring[j + 2]
        d += ring[j + 3]
        j += 4
    while j < size:
        a += ring[j]
        j += 1
    return (a + b) + (c + d)


# --- EMA ---------------------------------------------------------------------------------------

cdef struct EmaState:
    Py_ssize_t period
    Py_ssize_t count  # finite inputs since the last gap, at most `period`
    double k
    double keep  # 1 - k
    double total
    double value


cdef inline EmaState ema_new(Py_ssize_t period) noexcept nogil:
    cdef EmaState state
    state.period = period
    state.count = 0
    state.k = 2.0 / (period + 1)
    state.keep = 1.0 - state.k
    state.total = 0.0
    state.value = NAN
    return state


cdef inline double ema_update(EmaState* s, double x) noexcept nogil:
    # Seeded with the mean of the first `period` inputs, as TA-Lib does.
    if not isfinite(x):
        s.count = 0
        s.total = 0.0
        s.value = NAN
        return NAN
    if s.count == s.period:
        s.value = x * s.k + s.value * s.keep
        return s.value
    s.total += x
    s.count += 1
    if s.count < s.period:
        return NAN
    s.value = s.total / s.period
    return s.value


# --- SMA: a running window sum -----------------------------------------------------------------

cdef struct WindowSum:
    Py_ssize_t period
    Py_ssize_t count  # finite inputs since the last gap, at most `period`
    Py_ssize_t position  # ring slot of the oldest input once the window is full
    double* ring
    double total
    double share  # 1 / period


cdef inline WindowSum window_sum_new(Py_ssize_t period, double* ring) noexcept nogil:
    cdef WindowSum state
    state.period = period
    state.count = 0
    state.position = 0
    state.ring = ring
    state.total = 0.0
    state.share = 1.0 / period
    return state


cdef inline double window_sum_update(WindowSum* s, double x) noexcept nogil:
    # The running total is rebuilt from the ring every `period` inputs, when the oldest input
    # is back in slot 0. So rounding left by inputs that have left the window (a huge value
    # leaves a residue of about 1e-16 of itself) lasts at most period - 1 outputs after it
    # leaves, and an overflowed total recovers the same way.
    cdef double leaving
    if not isfinite(x):
        s.count = 0
        s.position = 0
        s.total = 0.0
        return NAN
    if s.count == s.period:
        leaving = s.ring[s.position]
        s.ring[s.position] = x
        s.position += 1
        if s.position == s.period:
            s.position = 0
            s.total = ring_sum(s.ring, s.period)
        else:
            s.total += x - leaving
        return s.total * s.share
    s.ring[s.position] = x
    s.position += 1
    s.count += 1
    if s.count < s.period:
        return NAN
    s.position = 0
    s.total = ring_sum(s.ring, s.period)
    return s.total * s.share


# --- Bollinger bands: running sums of deviations from a shift ----------------------------------

cdef struct BandState:
    Py_ssize_t period
    Py_ssize_t count
    Py_ssize_t position
    double* ring
    double shift  # the window mean at the last re-sum
    double deviation_sum  # sum of (x - shift) over the window
    double square_sum  # sum of (x - shift) ** 2 over the window
    double share  # 1 / period
    double nbdev


cdef inline BandState band_new(Py_ssize_t period, double nbdev, double* ring) noexcept nogil:
    cdef BandState state
    state.period = period
    state.count = 0
    state.position = 0
    state.ring = ring
    state.shift = 0.0
    state.deviation_sum = 0.0
    state.square_sum = 0.0
    state.share = 1.0 / period
    state.nbdev = nbdev
    return state


cdef inline void band_resum(BandState* s) noexcept nogil:
    # Two passes over the window: the mean, then deviations from it. Sums of deviations from
    # a nearby shift keep the variance free of the cancellation in E[x^2] - E[x]^2.
    cdef double deviation
    cdef double deviations = 0.0
    cdef double squares = 0.0
    cdef Py_ssize_t j
    s.shift = ring_sum(s.ring, s.period) * s.share
    for j in range(s.period):
        deviation = s.ring[j] - s.shift
        deviations += deviation
        squares += deviation * deviation
    s.deviation_sum = deviations
    s.square_sum = squares


cdef inline void band_update(
    BandState* s, double x, double* upper, double* middle, double* lower
) noexcept nogil:
    # Re-summed every `period` inputs, as WindowSum is, with the same guarantee.
    cdef double leaving, entering_deviation, leaving_deviation, mean_deviation, variance
    cdef double spread
    if not isfinite(x):
        s.count = 0
        s.position = 0
        upper[0] = NAN
        middle[0] = NAN
        lower[0] = NAN
        return
    if s.count == s.period:
        leaving = s.ring[s.position]
        s.ring[s.position] = x
        s.position += 1
        if s.position == s.period:
            s.position = 0
            band_resum(s)
        else:
            entering_deviation = x - s.shift
            leaving_deviation = leaving - s.shift
            s.deviation_sum += entering_deviation - leaving_deviation
            s.square_sum += (
                entering_deviation * entering_deviation - leaving_deviation * leaving_deviation
            )
    else:
        s.ring[s.position] = x
        s.position += 1
        s.count += 1
        if s.count < s.period:
            upper[0] = NAN
            middle[0] = NAN
            lower[0] = NAN
            return
        s.position = 0
        band_resum(s)
    # Population variance, as TA-Lib's BBANDS uses; rounding can make it slightly negative.
    mean_deviation = s.deviation_sum * s.share
    variance = s.square_sum * s.share - mean_deviation * mean_deviation
    spread = s.nbdev * sqrt(positive_part(variance))
    middle[0] = s.shift + mean_deviation
    upper[0] = middle[0] + spread
    lower[0] = middle[0] - spread


# --- RSI ---------------------------------------------------------------------------------------

cdef struct RsiState:
    Py_ssize_t period
    Py_ssize_t count  # finite inputs since the last gap, at most period + 1
    double previous
    double gain
    double loss
    double keep  # (period - 1) / period
    double share  # 1 / period


cdef inline RsiState rsi_new(Py_ssize_t period) noexcept nogil:
    cdef RsiState state
    state.period = period
    state.count = 0
    state.previous = NAN
    state.gain = 0.0
    state.loss = 0.0
    state.keep = (period - 1) / <double>period
    state.share = 1.0 / period
    return state


cdef inline double rsi_value(double gain, double loss) noexcept nogil:
    # TA-Lib returns 0 when gain + loss is zero, calling a flat series "oversold". A flat
    # series has no gains and no losses, so it is balanced: 50.
    cdef double total = gain + loss
    if total > 0.0:
        return 100.0 * (gain / total)
    return 50.0


cdef inline double rsi_update(RsiState* s, double x) noexcept nogil:
    # Wilder's smoothing seeded as TA-Lib seeds it: the first averages are plain means of the
    # first `period` changes, so the first value comes `period` bars after the first input.
    cdef double change
    if not isfinite(x):
        s.count = 0
        s.gain = 0.0
        s.loss = 0.0
        return NAN
    change = x - s.previous
    s.previous = x
    if s.count > s.period:
        s.gain = s.gain * s.keep + positive_part(change) * s.share
        s.loss = s.loss * s.keep + positive_part(-change) * s.share
        return rsi_value(s.gain, s.loss)
    s.count += 1
    if s.count == 1:
        return NAN
    s.gain += positive_part(change)
    s.loss += positive_part(-change)
    if s.count <= s.period:
        return NAN
    s.gain /= s.period
    s.loss /= s.period
    return rsi_value(s.gain, s.loss)


# --- MACD --------------------------------------------------------------------------------------

cdef struct MacdState:
    Py_ssize_t fast
    Py_ssize_t slow
    Py_ssize_t count  # finite inputs since the last gap, at most `slow`
    double k_fast
    double keep_fast
    double k_slow
    double keep_slow
    double fast_total
    double slow_total
    double fast_ema
    double slow_ema
    EmaState signal


cdef inline MacdState macd_new(Py_ssize_t fast, Py_ssize_t slow, Py_ssize_t signal) noexcept nogil:
    cdef MacdState state
    state.fast = fast
    state.slow = slow
    state.count = 0
    state.k_fast = 2.0 / (fast + 1)
    state.keep_fast = 1.0 - state.k_fast
    state.k_slow = 2.0 / (slow + 1)
    state.keep_slow = 1.0 - state.k_slow
    state.fast_total = 0.0
    state.slow_total = 0.0
    state.fast_ema = NAN
    state.slow_ema = NAN
    state.signal = ema_new(signal)
    return state


cdef inline void macd_update(
    MacdState* s, double x, double* line, double* signal, double* histogram
) noexcept nogil:
    # TA-Lib seeds both EMAs at the bar where the slow one has its first value: the fast EMA
    # starts from the mean of the `fast` inputs ending there, not from its own earlier start.
    # The signal EMA runs over the MACD line from that bar, and all three outputs begin where
    # the signal has its first value.
    cdef double value, smoothed
    if not isfinite(x):
        s.count = 0
        s.fast_total = 0.0
        s.slow_total = 0.0
        ema_update(&s.signal, NAN)
        line[0] = NAN
        signal[0] = NAN
        histogram[0] = NAN
        return
    if s.count == s.slow:
        s.fast_ema = x * s.k_fast + s.fast_ema * s.keep_fast
        s.slow_ema = x * s.k_slow + s.slow_ema * s.keep_slow
    else:
        s.count += 1
        s.slow_total += x
        if s.count > s.slow - s.fast:
            s.fast_total += x
        if s.count < s.slow:
            line[0] = NAN
            signal[0] = NAN
            histogram[0] = NAN
            return
        s.fast_ema = s.fast_total / s.fast
        s.slow_ema = s.slow_total / s.slow
    value = s.fast_ema - s.slow_ema
    smoothed = ema_update(&s.signal, value)
    if isnan(smoothed):
        line[0] = NAN
    else:
        line[0] = value
    signal[0] = smoothed
    histogram[0] = value - smoothed


# --- ATR ---------------------------------------------------------------------------------------

cdef inline bint bar_finite(double high, double low, double close) noexcept nogil:
    return isfinite(high) and isfinite(low) and isfinite(close)


cdef struct AtrState:
    Py_ssize_t period
    Py_ssize_t count  # finite bars since the last gap, at most period + 1
    double previous_close
    double total
    double value
    double keep
    double share


cdef inline AtrState atr_new(Py_ssize_t period) noexcept nogil:
    cdef AtrState state
    state.period = period
    state.count = 0
    state.previous_close = NAN
    state.total = 0.0
    state.value = NAN
    state.keep = (period - 1) / <double>period
    state.share = 1.0 / period
    return state


cdef inline double atr_update(AtrState* s, double high, double low, double close) noexcept nogil:
    # The first true range needs the previous close, so it is at the second bar. The first
    # ATR is the mean of `period` true ranges, then Wilder's smoothing, as in TA-Lib.
    cdef double tr
    if not bar_finite(high, low, close):
        s.count = 0
        s.total = 0.0
        return NAN
    tr = true_range(high, low, s.previous_close)
    s.previous_close = close
    if s.count > s.period:
        s.value = s.value * s.keep + tr * s.share
        return s.value
    s.count += 1
    if s.count == 1:
        return NAN
    s.total += tr
    if s.count <= s.period:
        return NAN
    s.value = s.total / s.period
    return s.value


# --- OBV ---------------------------------------------------------------------------------------

cdef struct ObvState:
    bint started
    double previous_close
    double value


cdef inline ObvState obv_new() noexcept nogil:
    cdef ObvState state
    state.started = False
    state.previous_close = NAN
    state.value = NAN
    return state


cdef inline double obv_update(ObvState* s, double close, double volume) noexcept nogil:
    # TA-Lib's OBV starts at the first bar's volume. Adding sign * volume, where the sign is
    # -1, 0 or 1, gives the same sums as TA-Lib's branches without a mispredicted branch.
    cdef double direction
    if not (isfinite(close) and isfinite(volume)):
        s.started = False
        return NAN
    if not s.started:
        s.started = True
        s.value = volume
    else:
        direction = <double>(close > s.previous_close) - <double>(close < s.previous_close)
        s.value += direction * volume
    s.previous_close = close
    return s.value


# --- sliding maximum (monotonic deque) ---------------------------------------------------------

cdef struct SlidingMax:
    Py_ssize_t capacity  # the window length
    Py_ssize_t head
    Py_ssize_t size
    long long sequence  # number of inputs pushed so far
    double* values
    long long* sequences


cdef inline SlidingMax sliding_max_new(
    Py_ssize_t capacity, double* values, long long* sequences
) noexcept nogil:
    cdef SlidingMax state
    state.capacity = capacity
    state.head = 0
    state.size = 0
    state.sequence = 0
    state.values = values
    state.sequences = sequences
    return state


cdef inline void sliding_max_clear(SlidingMax* s) noexcept nogil:
    s.head = 0
    s.size = 0


cdef inline double sliding_max_push(SlidingMax* s, double x) noexcept nogil:
    """Push x and return the maximum of the last `capacity` inputs (amortized O(1))."""
    cdef Py_ssize_t back
    if s.size > 0 and s.sequences[s.head] <= s.sequence - s.capacity:
        s.head += 1
        if s.head == s.capacity:
            s.head = 0
        s.size -= 1
    while s.size > 0:
        back = s.head + s.size - 1
        if back >= s.capacity:
            back -= s.capacity
        if s.values[back] > x:
            break
        s.size -= 1
    back = s.head + s.size
    if back >= s.capacity:
        back -= s.capacity
    s.values[back] = x
    s.sequences[back] = s.sequence
    s.size += 1
    s.sequence += 1
    return s.values[s.head]


# --- stochastic oscillator ---------------------------------------------------------------------

# Windows up to this length are scanned on every bar: a branch-free pass over a few values
# is faster than a deque, whose pops depend on the data. Longer windows use the deques.
cdef enum:
    RANGE_SCAN_LIMIT = 16


cdef struct RangeWindow:
    Py_ssize_t capacity
    Py_ssize_t count  # inputs since the last clear, at most capacity
    Py_ssize_t position
    double* highs  # capacity values, used when capacity <= RANGE_SCAN_LIMIT
    double* lows
    SlidingMax highest  # used when capacity > RANGE_SCAN_LIMIT
    SlidingMax lowest  # a sliding maximum of -low


cdef inline RangeWindow range_window_new(
    Py_ssize_t capacity, double* values, long long* sequences
) noexcept nogil:
    # `values` holds 2 * capacity doubles and `sequences` 2 * capacity entries.
    cdef RangeWindow state
    state.capacity = capacity
    state.count = 0
    state.position = 0
    state.highs = values
    state.lows = values + capacity
    state.highest = sliding_max_new(capacity, values, sequences)
    state.lowest = sliding_max_new(capacity, values + capacity, sequences + capacity)
    return state


cdef inline void range_window_clear(RangeWindow* s) noexcept nogil:
    s.count = 0
    s.position = 0
    sliding_max_clear(&s.highest)
    sliding_max_clear(&s.lowest)


cdef inline Py_ssize_t range_window_push(
    RangeWindow* s, double high, double low, double* highest, double* lowest
) noexcept nogil:
    """Push a bar; set the highest high and lowest low of the window; return the count."""
    cdef double top, bottom
    cdef Py_ssize_t j
    if s.count < s.capacity:
        s.count += 1
    if s.capacity > RANGE_SCAN_LIMIT:
        highest[0] = sliding_max_push(&s.highest, high)
        lowest[0] = -sliding_max_push(&s.lowest, -low)
        return s.count
    s.highs[s.position] = high
    s.lows[s.position] = low
    s.position += 1
    if s.position == s.capacity:
        s.position = 0
    top = s.highs[0]
    bottom = s.lows[0]
    for j in range(1, s.count):
        top = s.highs[j] if s.highs[j] > top else top
        bottom = s.lows[j] if s.lows[j] < bottom else bottom
    highest[0] = top
    lowest[0] = bottom
    return s.count


cdef struct StochasticState:
    RangeWindow range
    WindowSum slowk
    WindowSum slowd


cdef inline StochasticState stochastic_new(
    Py_ssize_t fastk, Py_ssize_t slowk, Py_ssize_t slowd, double* rings, long long* sequences
) noexcept nogil:
    # `rings` holds 2 * fastk + slowk + slowd doubles: the high-low window, the fast %K
    # window and the slow %K window. `sequences` holds 2 * fastk entries.
    cdef StochasticState state
    state.range = range_window_new(fastk, rings, sequences)
    state.slowk = window_sum_new(slowk, rings + 2 * fastk)
    state.slowd = window_sum_new(slowd, rings + 2 * fastk + slowk)
    return state


cdef inline void stochastic_update(
    StochasticState* s, double high, double low, double close, double* slowk, double* slowd
) noexcept nogil:
    # TA-Lib's STOCH with SMA smoothing: fast %K over the last fastk_period bars, slow %K the
    # SMA of fast %K, slow %D the SMA of slow %K; both outputs start where slow %D does. A
    # zero high-low range gives fast %K 0, as in TA-Lib.
    cdef double highest, lowest, scale, fastk, smoothed_k, smoothed_d
    if not bar_finite(high, low, close):
        range_window_clear(&s.range)
        window_sum_update(&s.slowk, NAN)
        window_sum_update(&s.slowd, NAN)
        slowk[0] = NAN
        slowd[0] = NAN
        return
    if range_window_push(&s.range, high, low, &highest, &lowest) < s.range.capacity:
        slowk[0] = NAN
        slowd[0] = NAN
        return
    scale = (highest - lowest) / 100.0
    fastk = (close - lowest) / scale if scale != 0.0 else 0.0
    smoothed_k = window_sum_update(&s.slowk, fastk)
    if isnan(smoothed_k):
        slowk[0] = NAN
        slowd[0] = NAN
        return
    smoothed_d = window_sum_update(&s.slowd, smoothed_k)
    slowk[0] = NAN if isnan(smoothed_d) else smoothed_k
    slowd[0] = smoothed_d


# --- ADX and directional indicators ------------------------------------------------------------

cdef inline bint talib_is_zero(double value) noexcept nogil:
    # TA-Lib's TA_IS_ZERO: within 1e-8 of zero.
    return -0.00000001 < value < 0.00000001


cdef struct AdxState:
    Py_ssize_t period
    Py_ssize_t count  # finite bars since the last gap, at most 2 * period
    double previous_high
    double previous_low
    double previous_close
    double plus_dm
    double minus_dm
    double true_range
    double dx_total
    double adx
    double keep  # (period - 1) / period
    double share  # 1 / period


cdef inline AdxState adx_new(Py_ssize_t period) noexcept nogil:
    cdef AdxState state
    state.period = period
    state.count = 0
    state.previous_high = NAN
    state.previous_low = NAN
    state.previous_close = NAN
    state.plus_dm = 0.0
    state.minus_dm = 0.0
    state.true_range = 0.0
    state.dx_total = 0.0
    state.adx = NAN
    state.keep = (period - 1) / <double>period
    state.share = 1.0 / period
    return state


cdef inline void adx_update(
    AdxState* s, double high, double low, double close,
    double* adx, double* plus_di, double* minus_di,
) noexcept nogil:
    # TA-Lib's ADX, PLUS_DI and MINUS_DI. The directional movements and true ranges are
    # summed over the first period - 1 changes, then kept as Wilder sums (previous * keep +
    # new). The DIs start at bar `period`; ADX is the mean of the first `period` DX values
    # (bar 2 * period - 1), then Wilder's average of DX. Where the true-range sum or the DI
    # sum is zero in TA-Lib's sense, the DIs are 0 and that bar's DX is skipped, as in TA-Lib.
    cdef double up_move, down_move, plus_move, minus_move, tr, scale, plus, minus, total, dx
    cdef bint has_dx = False
    if not bar_finite(high, low, close):
        s.count = 0
        s.plus_dm = 0.0
        s.minus_dm = 0.0
        s.true_range = 0.0
        s.dx_total = 0.0
        adx[0] = NAN
        plus_di[0] = NAN
        minus_di[0] = NAN
        return
    up_move = high - s.previous_high
    down_move = s.previous_low - low
    tr = true_range(high, low, s.previous_close)
    s.previous_high = high
    s.previous_low = low
    s.previous_close = close
    # Multiplying by the 0-or-1 condition keeps these free of data-dependent branches, which
    # random price moves would mispredict about half the time.
    plus_move = up_move * <double>(up_move > positive_part(down_move))
    minus_move = down_move * <double>(down_move > positive_part(up_move))
    if s.count < s.period:
        s.count += 1
        if s.count > 1:
            s.plus_dm += plus_move
            s.minus_dm += minus_move
            s.true_range += tr
        adx[0] = NAN
        plus_di[0] = NAN
        minus_di[0] = NAN
        return
    s.plus_dm = s.plus_dm * s.keep + plus_move
    s.minus_dm = s.minus_dm * s.keep + minus_move
    s.true_range = s.true_range * s.keep + tr
    plus = 0.0
    minus = 0.0
    if not talib_is_zero(s.true_range):
        scale = 100.0 / s.true_range
        plus = s.plus_dm * scale
        minus = s.minus_dm * scale
        total = plus + minus
        if not talib_is_zero(total):
            dx = 100.0 * (fabs(minus - plus) / total)
            has_dx = True
    plus_di[0] = plus
    minus_di[0] = minus
    if s.count == 2 * s.period:
        if has_dx:
            s.adx = s.adx * s.keep + dx * s.share
        adx[0] = s.adx
        return
    s.count += 1
    if has_dx:
        s.dx_total += dx
    if s.count < 2 * s.period:
        adx[0] = NAN
        return
    s.adx = s.dx_total / s.period
    adx[0] = s.adx


# --- VWAP --------------------------------------------------------------------------------------

cdef struct VwapState:
    bint started
    bint broken  # a non-finite input was seen in the current session
    long long session
    double price_volume
    double volume


cdef inline VwapState vwap_new() noexcept nogil:
    cdef VwapState state
    state.started = False
    state.broken = False
    state.session = 0
    state.price_volume = 0.0
    state.volume = 0.0
    return state


cdef inline double vwap_update(
    VwapState* s, double high, double low, double close, double volume, long long session
) noexcept nogil:
    # Sums restart whenever the session id changes. A non-finite input makes the rest of its
    # session NaN, and a session whose volume so far is not above 0 has no VWAP yet.
    if not s.started or session != s.session:
        s.started = True
        s.broken = False
        s.session = session
        s.price_volume = 0.0
        s.volume = 0.0
    if s.broken:
        return NAN
    if not (bar_finite(high, low, close) and isfinite(volume)):
        s.broken = True
        return NAN
    s.price_volume += (high + low + close) / 3.0 * volume
    s.volume += volume
    if s.volume > 0.0:
        return s.price_volume / s.volume
    return NAN
