"""Threshold-crossing arrival times of small sets of curves (e.g. per-level mean enhancement)."""
from __future__ import annotations

import numpy as np

from leakloc.kernels import _checks
from leakloc.kernels._options import JIT, njit


@njit(**JIT)
def _threshold_arrival(curves, times_s, threshold, out):
    n, p = curves.shape
    for i in range(n):
        out[i] = np.nan
        for j in range(p):
            c = curves[i, j]
            if c >= threshold:
                if j == 0:
                    out[i] = times_s[i, 0]
                else:
                    prev = curves[i, j - 1]
                    if prev != prev:
                        out[i] = times_s[i, j]
                    else:   # prev < threshold, else the loop would have stopped at j - 1
                        t0 = times_s[i, j - 1]
                        out[i] = t0 + (threshold - prev) / (c - prev) * (times_s[i, j] - t0)
                break


def threshold_arrival(curves, times_s, threshold) -> np.ndarray:
    """First time each curve reaches ``threshold``, interpolated linearly between phases.

    The same rule as the per-voxel arrival of :func:`leakloc.kernels.stream_phase`: at the first
    phase ``j`` with ``curves[i, j] >= threshold``, the arrival is ``times_s[i, 0]`` when ``j == 0``
    or the previous value is NaN, else
    ``t[j-1] + (threshold - c[j-1]) / (c[j] - c[j-1]) * (t[j] - t[j-1])``. NaN values never cross.

    Parameters
    ----------
    curves : ndarray of float64, shape (N, P), C-contiguous; e.g. enhancement (HU) per series
        and phase
    times_s : ndarray of float64, shape (N, P) (per-row times, e.g. the slice times of each level)
        or (P,) (times shared by every row), C-contiguous; s
    threshold : float, same unit as ``curves``

    Returns
    -------
    ndarray of float64, shape (N,); s, NaN where the curve never reaches the threshold.
    """
    _checks.array("curves", curves, np.float64, 2)
    if isinstance(times_s, np.ndarray) and times_s.ndim == 1:
        _checks.array("times_s", times_s, np.float64, 1, (curves.shape[1],))
        times_s = np.ascontiguousarray(np.broadcast_to(times_s, curves.shape))
    _checks.array("times_s", times_s, np.float64, 2, curves.shape)
    threshold = _checks.real("threshold", threshold)
    out = np.empty(curves.shape[0], dtype=np.float64)
    _threshold_arrival(curves, times_s, threshold, out)
    return out
