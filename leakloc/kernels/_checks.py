"""Argument checks shared by the public kernel wrappers.

Each check raises ``TypeError`` (wrong type or dtype) or ``ValueError`` (wrong shape, layout or
value) with a message that names the argument, so a caller sees at once what to fix.
"""
from __future__ import annotations

import math

import numpy as np


def array(name: str, a, dtype, ndim: int, shape=None, writeable: bool = False) -> np.ndarray:
    """Check that ``a`` is a C-contiguous ndarray of ``dtype`` with ``ndim`` dims (and ``shape``).

    Nothing is converted or copied: kernels stream over the caller's memory, so a silent copy
    would hide a multi-gigabyte allocation (and make in/out arguments write to the copy).
    """
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(a).__name__}")
    if a.dtype != np.dtype(dtype):
        raise TypeError(f"{name} must have dtype {np.dtype(dtype).name}, got {a.dtype.name}")
    if a.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {a.shape}")
    if shape is not None and tuple(a.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {a.shape}")
    if not a.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous (use numpy.ascontiguousarray)")
    if writeable and not a.flags.writeable:
        raise ValueError(f"{name} must be writeable (it is updated in place)")
    return a


def integer(name: str, v, minimum: int = 0) -> int:
    """Check a Python/numpy integer >= ``minimum``; return it as ``int``."""
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {type(v).__name__}")
    if v < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {v}")
    return int(v)


def real(name: str, v, lo: float = -math.inf, hi: float = math.inf) -> float:
    """Check a finite real number in ``[lo, hi]``; return it as ``float``."""
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a real number, got {type(v).__name__}")
    v = float(v)
    if not math.isfinite(v) or not lo <= v <= hi:
        raise ValueError(f"{name} must be finite and in [{lo}, {hi}], got {v}")
    return v
