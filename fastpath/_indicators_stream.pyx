"""Streaming indicators: one object per series, updated one bar at a time in O(1).

Each `update` makes the same call on the same state as one step of the batch kernel in
fastpath/_indicators.pyx, so after n updates the output equals the batch output at index
n - 1 bit for bit. Outputs are NaN during warm-up; a non-finite input returns NaN and starts
the warm-up again, as the batch form does. SMA, Bollinger and Stochastic re-sum their window
every `period` updates, so one update in `period` costs O(period) and the average stays O(1).
"""

from libc.stdlib cimport free, malloc

from fastpath._indicators_state cimport (
    AdxState,
    AtrState,
    BandState,
    EmaState,
    MacdState,
    ObvState,
    RsiState,
    StochasticState,
    VwapState,
    WindowSum,
    adx_new,
    adx_update,
    atr_new,
    atr_update,
    band_new,
    band_update,
    ema_new,
    ema_update,
    macd_new,
    macd_update,
    obv_new,
    obv_update,
    rsi_new,
    rsi_update,
    stochastic_new,
    stochastic_update,
    vwap_new,
    vwap_update,
    window_sum_new,
    window_sum_update,
)

from fastpath import _checks


cdef void* _allocate(size_t size) except NULL:
    cdef void* memory = malloc(size)
    if memory == NULL:
        raise MemoryError()
    return memory


cdef class SMA:
    """Simple moving average of the last `period` closes."""

    cdef WindowSum _state
    cdef double* _ring
    cdef readonly Py_ssize_t period

    def __cinit__(self, period):
        self.period = _checks.integer("period", period, 1)
        self._ring = <double*>_allocate(self.period * sizeof(double))
        self._state = window_sum_new(self.period, self._ring)

    def __dealloc__(self):
        free(self._ring)

    def update(self, double close) -> float:
        """Add a close and return the SMA at it."""
        return window_sum_update(&self._state, close)


cdef class EMA:
    """Exponential moving average, k = 2 / (period + 1), seeded with the first SMA."""

    cdef EmaState _state
    cdef readonly Py_ssize_t period

    def __cinit__(self, period):
        self.period = _checks.integer("period", period, 1)
        self._state = ema_new(self.period)

    def update(self, double close) -> float:
        """Add a close and return the EMA at it."""
        return ema_update(&self._state, close)


cdef class RSI:
    """Wilder's relative strength index; a flat series reads 50."""

    cdef RsiState _state
    cdef readonly Py_ssize_t period

    def __cinit__(self, period=14):
        self.period = _checks.integer("period", period, 1)
        self._state = rsi_new(self.period)

    def update(self, double close) -> float:
        """Add a close and return the RSI at it."""
        return rsi_update(&self._state, close)


cdef class MACD:
    """MACD line, signal and histogram, seeded as TA-Lib's MACD."""

    cdef MacdState _state
    cdef readonly Py_ssize_t fast, slow, signal

    def __cinit__(self, fast=12, slow=26, signal=9):
        self.fast = _checks.integer("fast", fast, 1)
        self.slow = _checks.integer("slow", slow, 1)
        self.signal = _checks.integer("signal", signal, 1)
        if self.fast >= self.slow:
            raise ValueError(
                f"fast must be below slow, got fast {self.fast} and slow {self.slow}"
            )
        self._state = macd_new(self.fast, self.slow, self.signal)

    def update(self, double close) -> tuple[float, float, float]:
        """Add a close and return (macd, signal, histogram) at it."""
        cdef double line, signal, histogram
        macd_update(&self._state, close, &line, &signal, &histogram)
        return line, signal, histogram


cdef class Bollinger:
    """Bollinger bands: the SMA plus and minus nbdev population standard deviations."""

    cdef BandState _state
    cdef double* _ring
    cdef readonly Py_ssize_t period
    cdef readonly double nbdev

    def __cinit__(self, period=20, nbdev=2.0):
        self.period = _checks.integer("period", period, 1)
        self.nbdev = _checks.number("nbdev", nbdev, 0.0)
        self._ring = <double*>_allocate(self.period * sizeof(double))
        self._state = band_new(self.period, self.nbdev, self._ring)

    def __dealloc__(self):
        free(self._ring)

    def update(self, double close) -> tuple[float, float, float]:
        """Add a close and return (upper, middle, lower) at it."""
        cdef double upper, middle, lower
        band_update(&self._state, close, &upper, &middle, &lower)
        return upper, middle, lower


cdef class ATR:
    """Wilder's average true range."""

    cdef AtrState _state
    cdef readonly Py_ssize_t period

    def __cinit__(self, period=14):
        self.period = _checks.integer("period", period, 1)
        self._state = atr_new(self.period)

    def update(self, double high, double low, double close) -> float:
        """Add a bar and return the ATR at it."""
        return atr_update(&self._state, high, low, close)


cdef class OBV:
    """On-balance volume, starting at the first bar's volume."""

    cdef ObvState _state

    def __cinit__(self):
        self._state = obv_new()

    def update(self, double close, double volume) -> float:
        """Add a bar and return the OBV at it."""
        return obv_update(&self._state, close, volume)


cdef class VWAP:
    """Session-anchored VWAP of the typical price; a new session id restarts the sums."""

    cdef VwapState _state

    def __cinit__(self):
        self._state = vwap_new()

    def update(
        self, double high, double low, double close, double volume, long long session
    ) -> float:
        """Add a bar of the given session and return the session's VWAP at it."""
        return vwap_update(&self._state, high, low, close, volume, session)


cdef class Stochastic:
    """TA-Lib's STOCH with SMA smoothing: slow %K and slow %D."""

    cdef StochasticState _state
    cdef double* _rings
    cdef long long* _sequences
    cdef readonly Py_ssize_t fastk, slowk, slowd

    def __cinit__(self, fastk=5, slowk=3, slowd=3):
        self.fastk = _checks.integer("fastk", fastk, 1)
        self.slowk = _checks.integer("slowk", slowk, 1)
        self.slowd = _checks.integer("slowd", slowd, 1)
        self._rings = <double*>_allocate(
            (2 * self.fastk + self.slowk + self.slowd) * sizeof(double)
        )
        self._sequences = <long long*>_allocate(2 * self.fastk * sizeof(long long))
        self._state = stochastic_new(
            self.fastk, self.slowk, self.slowd, self._rings, self._sequences
        )

    def __dealloc__(self):
        free(self._sequences)
        free(self._rings)

    def update(self, double high, double low, double close) -> tuple[float, float]:
        """Add a bar and return (slow %K, slow %D) at it."""
        cdef double slowk, slowd
        stochastic_update(&self._state, high, low, close, &slowk, &slowd)
        return slowk, slowd


cdef class ADX:
    """Wilder's ADX with the plus and minus directional indicators, as in TA-Lib."""

    cdef AdxState _state
    cdef readonly Py_ssize_t period

    def __cinit__(self, period=14):
        self.period = _checks.integer("period", period, 2)
        self._state = adx_new(self.period)

    def update(self, double high, double low, double close) -> tuple[float, float, float]:
        """Add a bar and return (adx, plus_di, minus_di) at it."""
        cdef double adx, plus, minus
        adx_update(&self._state, high, low, close, &adx, &plus, &minus)
        return adx, plus, minus
