"""Contrast kinetics along the spine: per-bin curves and arrival times.

The spine is cut into *bins* of half a level (vertebra, interspace, vertebra, ...): bin ``b``
covers level coordinates ``[b/2 - 1/4, b/2 + 1/4)``, so bin ``2 i`` is vertebra ``i`` and bin
``2 i + 1`` the interspace below it. Statistics from the kernels come per bin x compartment x
sector x pass; this module turns them into curves and arrival times.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from leakloc import levels as _lv

N_BINS = 2 * len(_lv.VERTEBRAE) - 1
N_COMP = 3   # sac, epidural, paraspinal (anatomy codes 1..3)
N_SECT = 4   # ventral, dorsal, left, right

#: enhancement (HU) at which the intrathecal front counts as arrived
INTRATHECAL_ARRIVAL_HU = 100.0


def slice_bins(level_coord):
    """Half-level bin of every slice, shape (Z,), int16, -1 where the level is unknown."""
    lc = np.asarray(level_coord, dtype=float)
    out = np.full(lc.shape, -1, dtype=np.int16)
    ok = np.isfinite(lc)
    b = np.round(lc[ok] * 2).astype(int)
    b[(b < 0) | (b >= N_BINS)] = -1
    out[ok] = b
    return out


def bin_name(b: int) -> str:
    """Name of a half-level bin (``'T7'`` or ``'T7-T8'``)."""
    return _lv.name_of(b / 2.0)


def region_map(compartments, sectors, bins_z):
    """Region id per voxel for the statistics kernel: ``(bin * 3 + comp - 1) * 4 + sector``.

    Parameters
    ----------
    compartments, sectors : ndarray, shape (Z, Y, X), uint8
    bins_z : ndarray, shape (Z,), int

    Returns
    -------
    region : ndarray, shape (Z, Y, X), int32, -1 outside every compartment or level
    n_regions : int
    """
    from leakloc.kernels import label_regions
    region = label_regions(np.ascontiguousarray(compartments, np.uint8),
                           np.ascontiguousarray(sectors, np.uint8),
                           np.asarray(bins_z, np.int16), N_BINS, N_SECT, N_COMP)
    return region, N_BINS * N_COMP * N_SECT


@dataclass
class BinCurves:
    """Per-bin curves over passes.

    Attributes
    ----------
    mean, pct, n_above, count, max : ndarray, shape (N_BINS, 3, 4, P)
    bin_times_s : ndarray, shape (N_BINS, P), mean acquisition time of each bin's slices, s
    present : ndarray, shape (N_BINS,), bool, bins with slices in the field of view
    """

    mean: np.ndarray
    pct: np.ndarray
    n_above: np.ndarray
    count: np.ndarray
    max: np.ndarray
    bin_times_s: np.ndarray
    present: np.ndarray

    def sac_mean(self):
        """Voxel-weighted mean sac enhancement per bin and pass, shape (N_BINS, P), HU."""
        c = self.count[:, 0]                      # (B, 4, P)
        s = np.nansum(self.mean[:, 0] * c, axis=1)
        n = c.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(n > 0, s / np.maximum(n, 1), np.nan)

    def outside_pct(self, comp: int, sector: int | None = None):
        """High-percentile enhancement of a compartment (1 epidural, 2 paraspinal) per bin and
        pass, max over sectors unless one is named, shape (N_BINS, P), HU."""
        v = self.pct[:, comp]
        if sector is not None:
            return v[:, sector]
        with np.errstate(invalid="ignore"):
            return np.where(np.isfinite(v).any(axis=1), np.nanmax(np.where(np.isfinite(v), v, -np.inf), axis=1), np.nan)


def collect(stats_per_pass, bins_z, slice_times_s):
    """Stack the kernel's per-pass RegionStats into :class:`BinCurves`.

    Parameters
    ----------
    stats_per_pass : list of RegionStats (fields count, mean, max, n_above, pct; shape (R,))
    bins_z : ndarray, shape (Z,), half-level bin per slice
    slice_times_s : ndarray, shape (P, Z), s
    """
    shape = (N_BINS, N_COMP, N_SECT)
    def stack(field):
        return np.stack([np.asarray(getattr(s, field), float).reshape(shape) for s in stats_per_pass],
                        axis=-1)
    bins_z = np.asarray(bins_z)
    p = slice_times_s.shape[0]
    bt = np.full((N_BINS, p), np.nan)
    present = np.zeros(N_BINS, bool)
    for b in np.unique(bins_z[bins_z >= 0]):
        sl = bins_z == b
        bt[b] = slice_times_s[:, sl].mean(axis=1)
        present[b] = True
    return BinCurves(mean=stack("mean"), pct=stack("pct"), n_above=stack("n_above"),
                     count=stack("count"), max=stack("max"), bin_times_s=bt, present=present)


def arrival_times(curves, times_s, threshold_hu):
    """First crossing of ``threshold_hu`` per row with linear sub-pass interpolation.

    Parameters
    ----------
    curves : ndarray, shape (N, P), HU; times_s : ndarray, shape (N, P), s

    Returns
    -------
    ndarray, shape (N,), s, NaN where never crossed
    """
    from leakloc.kernels import threshold_arrival
    c = np.ascontiguousarray(np.nan_to_num(np.asarray(curves, float), nan=-1e6, neginf=-1e6))
    t = np.ascontiguousarray(np.asarray(times_s, float))
    return threshold_arrival(c, t, float(threshold_hu))
