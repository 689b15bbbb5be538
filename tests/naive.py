"""Slow, plainly written numpy references for the Numba kernels in ``leakloc.kernels``.

Each function follows the rules documented in ``leakloc/kernels/stats.py`` (float32 enhancement,
float64 comparisons and binning, histogram percentile), written the obvious way so the kernels
can be checked against it. Also used by ``benchmarks/bench_stats.py`` as "numpy the plain way".
"""
from __future__ import annotations

import numpy as np


def percentile_from_hist(hist_row, percentile, hist_max_hu):
    """Histogram percentile of one region, by walking the bins."""
    n_bins = len(hist_row)
    width = hist_max_hu / n_bins
    n = int(np.sum(hist_row))
    if n == 0:
        return np.nan
    k = percentile / 100.0 * (n - 1)
    below = 0
    for b in range(n_bins):
        if below + hist_row[b] > k:
            return (b + (k - below + 0.5) / hist_row[b]) * width
        below += hist_row[b]
    raise AssertionError("unreachable")


def region_stats(enh, region, n_regions, threshold_hu, percentile=95.0, hist_max_hu=2000.0,
                 n_bins=400):
    """Per-region statistics, one region at a time. Returns a dict of arrays of shape (R,)."""
    count = np.zeros(n_regions, dtype=np.int64)
    total = np.zeros(n_regions)
    vmax = np.full(n_regions, np.nan)
    n_above = np.zeros(n_regions, dtype=np.int64)
    pct = np.full(n_regions, np.nan)
    hist = np.zeros((n_regions, n_bins), dtype=np.int64)
    for r in range(n_regions):
        v = enh[(region == r) & ~np.isnan(enh)]
        count[r] = v.size
        if v.size == 0:
            continue
        v64 = v.astype(np.float64)
        total[r] = v64.sum()
        vmax[r] = float(v.max())
        n_above[r] = np.count_nonzero(v64 >= threshold_hu)
        bins = np.clip(np.floor(v64 * (n_bins / hist_max_hu)), 0, n_bins - 1).astype(np.int64)
        hist[r] = np.bincount(bins, minlength=n_bins)
        pct[r] = min(percentile_from_hist(hist[r], percentile, hist_max_hu), vmax[r])
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    return dict(count=count, mean=mean, max=vmax, n_above=n_above, pct=pct, sum=total, hist=hist)


def stream_phase(volume, baseline, region, n_regions, prev_enh, peak, arrival_s, t_prev_s, t_cur_s,
                 threshold_hu, percentile=95.0, hist_max_hu=2000.0, n_bins=400, first=False):
    """Whole-array version of ``leakloc.kernels.stream_phase`` (updates the in/out arrays)."""
    e = volume - baseline                                    # float32, as the kernel
    e64 = e.astype(np.float64)
    above = e64 >= threshold_hu
    t_cur = np.broadcast_to(np.asarray(t_cur_s, dtype=np.float64)[:, None, None], e.shape)
    if first:
        peak[...] = e
        arrival_s[...] = np.where(above, t_cur.astype(np.float32), np.float32(np.nan))
    else:
        t_prev = np.broadcast_to(np.asarray(t_prev_s, dtype=np.float64)[:, None, None], e.shape)
        peak[...] = np.fmax(peak, e)
        prev64 = prev_enh.astype(np.float64)
        unset = np.isnan(arrival_s) & above
        after_nan = unset & np.isnan(prev64)
        crossing = unset & (prev64 < threshold_hu)
        with np.errstate(invalid="ignore", divide="ignore"):
            interp = t_prev + (threshold_hu - prev64) / (e64 - prev64) * (t_cur - t_prev)
        arrival_s[crossing] = interp[crossing].astype(np.float32)
        arrival_s[after_nan] = t_cur[after_nan].astype(np.float32)
    prev_enh[...] = e
    return region_stats(e, region, n_regions, threshold_hu, percentile, hist_max_hu, n_bins)


def threshold_arrival(curves, times_s, threshold):
    """First crossing per row, with Python loops."""
    curves = np.asarray(curves, dtype=np.float64)
    times_s = np.broadcast_to(np.asarray(times_s, dtype=np.float64), curves.shape)
    out = np.full(curves.shape[0], np.nan)
    for i in range(curves.shape[0]):
        for j in range(curves.shape[1]):
            if curves[i, j] >= threshold:
                if j == 0 or np.isnan(curves[i, j - 1]):
                    out[i] = times_s[i, j]
                else:
                    c0, c1 = curves[i, j - 1], curves[i, j]
                    t0, t1 = times_s[i, j - 1], times_s[i, j]
                    out[i] = t0 + (threshold - c0) / (c1 - c0) * (t1 - t0)
                break
    return out


def label_regions(compartments, sectors, slice_level, n_levels, n_sectors=4, n_compartments=3):
    """The obvious numpy expression for ``leakloc.kernels.label_regions`` (valid input only)."""
    lev = slice_level.astype(np.int64)[:, None, None]
    reg = (lev * n_compartments + compartments.astype(np.int64) - 1) * n_sectors + sectors
    return np.where((compartments == 0) | (lev < 0), -1, reg).astype(np.int32)


def line_sums(images, mask, angles_rad, origin_mm, step_mm, rho_min_mm, rho_step_mm, n_rho):
    """``leakloc.kernels.line_sums`` one image and angle at a time with ``np.add.at``."""
    n_p, n_s, n_y, n_x = images.shape
    y = origin_mm[0] + np.arange(n_y) * step_mm[0]
    x = origin_mm[1] + np.arange(n_x) * step_mm[1]
    yy, xx = np.meshgrid(y, x, indexing="ij")
    sums = np.zeros((n_p, n_s, len(angles_rad), n_rho))
    counts = np.zeros((n_s, len(angles_rad), n_rho))
    for s in range(n_s):
        m = mask[s] != 0
        for a, th in enumerate(angles_rad):
            r = np.floor((xx[m] * np.cos(th) + yy[m] * np.sin(th) - rho_min_mm) / rho_step_mm
                         + 0.5).astype(np.int64)
            ok = (r >= 0) & (r < n_rho)
            np.add.at(counts[s, a], r[ok], 1.0)
            for p in range(n_p):
                np.add.at(sums[p, s, a], r[ok], images[p, s][m][ok].astype(np.float64))
    return sums, counts


def half_rise(enh_passes, peak_hu, slice_times_s):
    """``leakloc.kernels.half_rise`` voxel by voxel, pass by pass (the curve in float32, as there)."""
    out = np.full(peak_hu.shape, np.nan, dtype=np.float32)
    for idx in np.ndindex(*peak_hu.shape):
        inv = np.float32(1.0) / max(np.float32(peak_hu[idx]), np.float32(1.0))
        c = [np.float32(e[idx]) * inv for e in enh_passes]
        t = [float(slice_times_s[k, idx[0]]) for k in range(len(enh_passes))]
        for j in range(len(c)):
            if c[j] >= 0.5:
                if j == 0:
                    out[idx] = t[0]
                elif np.isnan(c[j - 1]):
                    out[idx] = t[j]
                else:
                    f = (0.5 - float(c[j - 1])) / float(c[j] - c[j - 1])
                    out[idx] = t[j - 1] + f * (t[j] - t[j - 1])
                break
    return out
