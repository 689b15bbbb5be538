"""Threshold-crossing arrival times: of small sets of curves (e.g. per-level mean
enhancement), and per voxel (when it reaches half its peak)."""
from __future__ import annotations

import numpy as np

from leakloc.kernels import _checks
from leakloc.kernels._options import JIT, JIT_PARALLEL, njit, prange


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


@njit(**JIT_PARALLEL)
def _half_rise_step(out, prev, cur, inv_peak, t_prev, t_cur, first):
    nz, ny, nx = cur.shape
    for z in prange(nz):
        tp = t_prev[z]
        tc = t_cur[z]
        for y in range(ny):
            for x in range(nx):
                if out[z, y, x] == out[z, y, x]:      # already reached one half
                    continue
                c = cur[z, y, x] * inv_peak[z, y, x]
                if not c >= 0.5:                        # (NaN never reaches it)
                    continue
                if first:
                    out[z, y, x] = tc
                    continue
                # the previous pass was below one half (else the voxel is set): c > pc
                pc = prev[z, y, x] * inv_peak[z, y, x]
                if pc != pc:                            # no previous value: this pass's time
                    out[z, y, x] = tc
                    continue
                f = min(max((0.5 - pc) / (c - pc), 0.0), 1.0)
                out[z, y, x] = tp + f * (tc - tp)


def half_rise(enh_passes, peak_hu, slice_times_s) -> np.ndarray:
    """When each voxel's enhancement first reaches half its peak, interpolated between passes.

    A voxel's curve is its enhancement over ``max(peak_hu, 1)``. At the first pass ``j`` where
    it is ``>= 0.5`` the time is the pass's slice time when ``j == 0``, else
    ``t[j-1] + f * (t[j] - t[j-1])`` with ``f = (0.5 - c[j-1]) / (c[j] - c[j-1])``, or ``t[j]``
    when ``c[j-1]`` is NaN; NaN never reaches one half. The curve is
    ``enhancement * float32(1 / max(peak, 1))``, in float32. One kernel call per pass, parallel
    over slices, no temporaries of the volume's size.

    Parameters
    ----------
    enh_passes : sequence of P ndarrays of float32, shape (Z, Y, X), C-contiguous; HU
    peak_hu : ndarray of float32, shape (Z, Y, X), C-contiguous; peak enhancement, HU
    slice_times_s : ndarray of float64, shape (P, Z); acquisition time of each slice, s

    Returns
    -------
    ndarray of float32, shape (Z, Y, X); s, NaN where the curve never reaches one half
    """
    p = len(enh_passes)
    if p < 1:
        raise ValueError("enh_passes must hold at least one pass")
    _checks.array("peak_hu", peak_hu, np.float32, 3)
    for k, e in enumerate(enh_passes):
        _checks.array(f"enh_passes[{k}]", e, np.float32, 3, peak_hu.shape)
    st = _checks.array("slice_times_s", np.ascontiguousarray(slice_times_s), np.float64, 2,
                       (p, peak_hu.shape[0]))
    inv = (np.float32(1.0) / np.maximum(peak_hu, np.float32(1.0))).astype(np.float32)
    out = np.full(peak_hu.shape, np.nan, dtype=np.float32)
    for k in range(p):
        prev = enh_passes[k - 1] if k else enh_passes[0]
        _half_rise_step(out, prev, enh_passes[k], inv, st[k - 1] if k else st[0], st[k], k == 0)
    return out
