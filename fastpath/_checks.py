"""Argument checks shared by the fastpath boundaries.

Each check raises ValueError naming the argument and its value, so a kernel never receives
an array of the wrong dtype, shape or memory layout.
"""

from __future__ import annotations

import math
import numbers

import numpy as np


def series(name: str, values: object) -> np.ndarray:
    """Return `values` unchanged if it is a 1-D, C-contiguous float64 array; else raise."""
    if not isinstance(values, np.ndarray):
        raise ValueError(f"{name} must be a numpy float64 array, got {type(values).__name__}")
    if values.dtype != np.float64:
        raise ValueError(f"{name} must have dtype float64, got {values.dtype}")
    if values.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {values.shape}")
    if not values.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous; pass np.ascontiguousarray({name})")
    return values


def int64_series(name: str, values: object) -> np.ndarray:
    """Return `values` unchanged if it is a 1-D, C-contiguous int64 array; else raise."""
    if not isinstance(values, np.ndarray):
        raise ValueError(f"{name} must be a numpy int64 array, got {type(values).__name__}")
    if values.dtype != np.int64:
        raise ValueError(f"{name} must have dtype int64, got {values.dtype}")
    if values.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {values.shape}")
    if not values.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous; pass np.ascontiguousarray({name})")
    return values


def same_length(**arrays: np.ndarray) -> None:
    """Raise unless every array has the same length, naming each length."""
    lengths = {name: len(values) for name, values in arrays.items()}
    if len(set(lengths.values())) > 1:
        listed = ", ".join(f"{name} {length}" for name, length in lengths.items())
        raise ValueError(f"arrays must have equal lengths, got {listed}")


# Largest period, window, lag or count any kernel accepts. Kernels keep buffers of this
# length, so a larger value would ask for gigabytes, or overflow the size computation.
MAX_INTEGER = 10_000_000


def integer(name: str, value: object, minimum: int, maximum: int | None = MAX_INTEGER) -> int:
    """Return `value` as an int if it is an integer (not a bool) in [minimum, maximum].

    `maximum` None is for arguments that size no buffer and are capped by the kernel.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    checked = int(value)
    if checked < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {checked}")
    if maximum is not None and checked > maximum:
        raise ValueError(f"{name} must be <= {maximum:,}, got {checked:,}")
    return checked


def number(name: str, value: object, minimum: float, maximum: float = np.inf) -> float:
    """Return `value` as a float if it is a finite real number in [minimum, maximum]."""
    # A plain float in range needs no conversion; this skips the slower ABC checks below.
    if type(value) is float and minimum <= value <= maximum and math.isfinite(value):
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a number, got {value!r}")
    result = float(value)
    if np.isfinite(result) and minimum <= result <= maximum:
        return result
    if maximum == np.inf:
        raise ValueError(f"{name} must be a finite number >= {minimum}, got {value!r}")
    raise ValueError(f"{name} must be in [{minimum}, {maximum}], got {value!r}")


def positive(name: str, value: object) -> float:
    """Return `value` as a float if it is a finite real number above 0."""
    result = number(name, value, 0.0)
    if result == 0.0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return result


def integer_array(name: str, values: object) -> np.ndarray:
    """Convert a sequence of integers to a contiguous int64 array; reject floats and bools."""
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {array.shape}")
    if array.size and array.dtype.kind not in "iu":
        raise ValueError(f"{name} must contain integers, got dtype {array.dtype}")
    return np.ascontiguousarray(array, dtype=np.int64)


def float_array(name: str, values: object) -> np.ndarray:
    """Convert a sequence of real numbers to a contiguous float64 array; reject bools."""
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {array.shape}")
    if array.size and array.dtype.kind not in "iuf":
        raise ValueError(f"{name} must contain real numbers, got dtype {array.dtype}")
    return np.ascontiguousarray(array, dtype=np.float64)


def bool_array(name: str, values: object) -> np.ndarray:
    """Convert a sequence of bools to a contiguous uint8 array of 0 and 1."""
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {array.shape}")
    if array.size and array.dtype != np.bool_:
        raise ValueError(f"{name} must contain bools, got dtype {array.dtype}")
    return np.ascontiguousarray(array, dtype=np.bool_).view(np.uint8)
