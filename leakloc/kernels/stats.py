"""Per-region enhancement statistics and per-voxel temporal updates in one streaming pass.

Two public kernels share one per-voxel accumulate step (:func:`_accumulate`):

* :func:`stream_phase` -- one pass over one phase: enhancement ``e = volume - baseline`` is
  formed voxel by voxel (never stored as a full array), accumulated into per-region statistics,
  and used to update the per-voxel running maximum, arrival time and previous enhancement.
* :func:`region_stats` -- the same statistics on a given enhancement array.

Statistics (:class:`RegionStats`): voxel count, mean, maximum, number of voxels with
``e >= threshold_hu`` and a high percentile estimated from a per-region histogram.

Numerics (the numpy references in ``tests/naive.py`` follow the same rules):

* ``e`` is computed in float32 (``volume - baseline``, as numpy does); comparisons with the
  threshold and the histogram binning are done in float64; sums are accumulated in float64 per
  slice and the slice sums are added in z order, so results do not depend on the number of
  threads (serial and parallel runs are bit-identical).
* Voxels whose enhancement is NaN are left out of the statistics; negative region ids are ignored
  by the statistics (temporal updates still happen for every voxel).

Percentile resolution: the histogram has ``n_bins`` bins of width ``w = hist_max_hu / n_bins``
(5 HU with the defaults) on ``[0, hist_max_hu]``; values below 0 go to the first bin, values above
``hist_max_hu`` to the last. With ``n`` voxels in a region, the element of rank
``k = percentile / 100 * (n - 1)`` (numpy's "linear" rank) lies in bin ``b`` holding ``h_b`` voxels
with ``C_b`` voxels in the bins below it; the estimate is ``(b + (k - C_b + 0.5) / h_b) * w``,
clamped to the region's maximum. For values inside ``[0, hist_max_hu]`` it differs from
``numpy.percentile`` by at most ``w`` plus the gap between the two order statistics numpy
interpolates between; outside that range it saturates at 0 / ``hist_max_hu``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from leakloc.kernels import _checks
from leakloc.kernels._options import JIT, JIT_INLINE, JIT_PARALLEL, njit, prange


# --------------------------------------------------------------------------------------------
# Result
# --------------------------------------------------------------------------------------------

@dataclass
class RegionStats:
    """Statistics of enhancement per region for one phase.

    All arrays have shape ``(n_regions,)`` except ``hist``.

    Attributes
    ----------
    count : ndarray of int64, voxels counted (finite enhancement)
    mean : ndarray of float64, mean enhancement, HU; NaN where ``count == 0``
    max : ndarray of float64, maximum enhancement, HU; NaN where ``count == 0``
    n_above : ndarray of int64, voxels with enhancement ``>= threshold_hu``
    pct : ndarray of float64, the ``percentile`` of enhancement, HU (histogram estimate, see the
        module docstring); NaN where ``count == 0``
    sum : ndarray of float64, sum of enhancement, HU
    hist : ndarray of int64, shape ``(n_regions, n_bins)``, histogram of enhancement on
        ``[0, hist_max_hu]`` (lets :meth:`combine` merge regions without another pass)
    percentile : float, the percentile ``pct`` holds, in [0, 100]
    hist_max_hu : float, upper edge of the histogram, HU
    threshold_hu : float, the threshold ``n_above`` counts against, HU
    """

    count: np.ndarray
    mean: np.ndarray
    max: np.ndarray
    n_above: np.ndarray
    pct: np.ndarray
    sum: np.ndarray
    hist: np.ndarray
    percentile: float
    hist_max_hu: float
    threshold_hu: float

    @property
    def n_regions(self) -> int:
        return int(self.count.shape[0])

    @classmethod
    def from_accumulators(cls, count, sum_hu, max_hu, n_above, hist, percentile, hist_max_hu,
                          threshold_hu) -> "RegionStats":
        """Build the statistics from reduced accumulators (arrays of shape (R,) and (R, n_bins))."""
        count = np.asarray(count, dtype=np.int64)
        sum_hu = np.asarray(sum_hu, dtype=np.float64)
        hist = np.asarray(hist, dtype=np.int64)
        empty = count == 0
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(empty, np.nan, sum_hu / np.maximum(count, 1))
        max_hu = np.where(empty, np.nan, np.asarray(max_hu, dtype=np.float64))
        pct = percentile_from_hist(hist, percentile, hist_max_hu)
        pct = np.where(empty, np.nan, np.minimum(pct, max_hu))
        return cls(count=count, mean=mean, max=max_hu, n_above=np.asarray(n_above, dtype=np.int64),
                   pct=pct, sum=sum_hu, hist=hist, percentile=float(percentile),
                   hist_max_hu=float(hist_max_hu), threshold_hu=float(threshold_hu))

    def combine(self, group: np.ndarray, n_groups: int) -> "RegionStats":
        """Statistics of unions of regions, without another pass over the voxels.

        Parameters
        ----------
        group : ndarray of int, shape (n_regions,); the group each region belongs to, in
            ``[0, n_groups)``, or -1 to leave the region out
        n_groups : int

        Returns
        -------
        RegionStats with ``n_groups`` entries (percentile from the merged histograms).

        Examples
        --------
        Region ``(level*3 + comp)*4 + sector`` to level x compartment (all sectors):
        ``stats.combine(np.arange(stats.n_regions) // 4, stats.n_regions // 4)``.
        """
        group = np.asarray(group)
        if group.shape != (self.n_regions,) or not np.issubdtype(group.dtype, np.integer):
            raise ValueError(f"group must be an integer array of shape ({self.n_regions},)")
        n_groups = _checks.integer("n_groups", n_groups)
        if np.any(group >= n_groups):
            raise ValueError(f"group ids must be < n_groups={n_groups}")
        keep = group >= 0
        g = group[keep]
        count = np.bincount(g, weights=self.count[keep], minlength=n_groups).astype(np.int64)
        n_above = np.bincount(g, weights=self.n_above[keep], minlength=n_groups).astype(np.int64)
        sum_hu = np.zeros(n_groups)
        np.add.at(sum_hu, g, self.sum[keep])
        max_hu = np.full(n_groups, -np.inf)
        np.fmax.at(max_hu, g, self.max[keep])
        hist = np.zeros((n_groups, self.hist.shape[1]), dtype=np.int64)
        np.add.at(hist, g, self.hist[keep])
        return RegionStats.from_accumulators(count, sum_hu, max_hu, n_above, hist, self.percentile,
                                             self.hist_max_hu, self.threshold_hu)


def percentile_from_hist(hist: np.ndarray, percentile: float, hist_max_hu: float) -> np.ndarray:
    """Percentile estimate per row of a histogram on ``[0, hist_max_hu]``.

    Parameters
    ----------
    hist : ndarray of int, shape (R, n_bins), voxel counts per bin
    percentile : float, in [0, 100]
    hist_max_hu : float, upper edge of the last bin, HU

    Returns
    -------
    ndarray of float64, shape (R,), HU; NaN for empty rows. Not clamped to the maximum (see the
    module docstring for the rule and its resolution).
    """
    hist = np.asarray(hist, dtype=np.int64)
    n_regions, n_bins = hist.shape
    width = hist_max_hu / n_bins
    n = hist.sum(axis=1)
    out = np.full(n_regions, np.nan)
    ok = n > 0
    if not np.any(ok) or n_bins == 0:
        return out
    h = hist[ok]
    k = percentile / 100.0 * (n[ok] - 1)
    cum = np.cumsum(h, axis=1)
    b = np.sum(cum <= k[:, None], axis=1)             # first bin whose cumulative count exceeds k
    h_b = h[np.arange(h.shape[0]), b]
    below = cum[np.arange(h.shape[0]), b] - h_b
    out[ok] = (b + (k - below + 0.5) / h_b) * width
    return out


# --------------------------------------------------------------------------------------------
# Kernels
# --------------------------------------------------------------------------------------------

@njit(**JIT_INLINE)
def _accumulate(r, e, threshold, inv_width, top_bin, sums, counts, n_above, maxs, hist):
    """Add one voxel of finite float32 enhancement ``e`` to region ``r``'s accumulators.

    Branch-free (selects instead of ifs): enhancement is mostly noise around 0 HU, so branches
    on its sign or on the running maximum would be mispredicted about half the time.
    ``top_bin`` is ``float(n_bins - 1)``.
    """
    counts[r] += 1
    sums[r] += e
    ed = np.float64(e)
    n_above[r] += np.int64(ed >= threshold)
    m = maxs[r]
    maxs[r] = e if e > m else m
    x = ed * inv_width
    x = x if x > 0.0 else 0.0
    x = x if x < top_bin else top_bin
    hist[r, np.int64(x)] += 1


@njit(**JIT)
def _stream_chunk(z0, z1, volume, baseline, region, n_regions, prev_enh, peak, arrival_s,
                  t_prev_s, t_cur_s, threshold, inv_width, n_bins, first, use_region,
                  sums, counts, n_above, maxs, hist):
    """Slices ``z0:z1`` of :func:`stream_phase`; returns the number of region ids >= n_regions."""
    n_bad = 0
    top_bin = np.float64(n_bins - 1)
    ny = volume.shape[1]
    nx = volume.shape[2]
    nan32 = np.float32(np.nan)
    for z in range(z0, z1):
        srow = sums[z]
        t_cur = t_cur_s[z]
        t_prev = t_prev_s[z]
        dt = t_cur - t_prev
        t_cur32 = np.float32(t_cur)
        for y in range(ny):
            for x in range(nx):
                e = volume[z, y, x] - baseline[z, y, x]
                ed = np.float64(e)
                if first:
                    peak[z, y, x] = e
                    if ed >= threshold:
                        arrival_s[z, y, x] = t_cur32
                    else:
                        arrival_s[z, y, x] = nan32
                else:
                    p = peak[z, y, x]
                    peak[z, y, x] = e if (e > p or p != p) else p       # fmax, branch-free
                    if ed >= threshold:
                        a = arrival_s[z, y, x]
                        if a != a:
                            pv = np.float64(prev_enh[z, y, x])
                            if pv != pv:
                                arrival_s[z, y, x] = t_cur32
                            elif pv < threshold:
                                arrival_s[z, y, x] = np.float32(
                                    t_prev + (threshold - pv) / (ed - pv) * dt)
                prev_enh[z, y, x] = e
                if use_region:
                    r = region[z, y, x]
                    if r >= 0 and e == e:
                        if r < n_regions:
                            _accumulate(r, e, threshold, inv_width, top_bin, srow, counts,
                                        n_above, maxs, hist)
                        else:
                            n_bad += 1
    return n_bad


@njit(**JIT)
def _stream_serial(volume, baseline, region, n_regions, prev_enh, peak, arrival_s, t_prev_s,
                   t_cur_s, threshold, inv_width, n_bins, first, use_region, sums, counts, n_above,
                   maxs, hist, n_bad):
    n_bad[0] = _stream_chunk(0, volume.shape[0], volume, baseline, region, n_regions, prev_enh,
                             peak, arrival_s, t_prev_s, t_cur_s, threshold, inv_width, n_bins,
                             first, use_region, sums, counts[0], n_above[0], maxs[0], hist[0])


@njit(**JIT_PARALLEL)
def _stream_parallel(volume, baseline, region, n_regions, prev_enh, peak, arrival_s, t_prev_s,
                     t_cur_s, threshold, inv_width, n_bins, first, use_region, sums, counts,
                     n_above, maxs, hist, n_bad):
    n_chunks = counts.shape[0]
    nz = volume.shape[0]
    for c in prange(n_chunks):
        z0 = c * nz // n_chunks
        z1 = (c + 1) * nz // n_chunks
        n_bad[c] = _stream_chunk(z0, z1, volume, baseline, region, n_regions, prev_enh, peak,
                                 arrival_s, t_prev_s, t_cur_s, threshold, inv_width, n_bins,
                                 first, use_region, sums, counts[c], n_above[c], maxs[c], hist[c])


@njit(**JIT)
def _stats_chunk(z0, z1, enh, region, n_regions, threshold, inv_width, n_bins,
                 sums, counts, n_above, maxs, hist):
    """Slices ``z0:z1`` of :func:`region_stats`; returns the number of region ids >= n_regions."""
    n_bad = 0
    top_bin = np.float64(n_bins - 1)
    ny = enh.shape[1]
    nx = enh.shape[2]
    for z in range(z0, z1):
        srow = sums[z]
        for y in range(ny):
            for x in range(nx):
                r = region[z, y, x]
                if r >= 0:
                    e = enh[z, y, x]
                    if e == e:
                        if r < n_regions:
                            _accumulate(r, e, threshold, inv_width, top_bin, srow, counts,
                                        n_above, maxs, hist)
                        else:
                            n_bad += 1
    return n_bad


@njit(**JIT)
def _stats_serial(enh, region, n_regions, threshold, inv_width, n_bins, sums, counts, n_above,
                  maxs, hist, n_bad):
    n_bad[0] = _stats_chunk(0, enh.shape[0], enh, region, n_regions, threshold, inv_width, n_bins,
                            sums, counts[0], n_above[0], maxs[0], hist[0])


@njit(**JIT_PARALLEL)
def _stats_parallel(enh, region, n_regions, threshold, inv_width, n_bins, sums, counts, n_above,
                    maxs, hist, n_bad):
    n_chunks = counts.shape[0]
    nz = enh.shape[0]
    for c in prange(n_chunks):
        z0 = c * nz // n_chunks
        z1 = (c + 1) * nz // n_chunks
        n_bad[c] = _stats_chunk(z0, z1, enh, region, n_regions, threshold, inv_width, n_bins,
                                sums, counts[c], n_above[c], maxs[c], hist[c])


# --------------------------------------------------------------------------------------------
# Public wrappers
# --------------------------------------------------------------------------------------------

def _n_chunks(nz: int, parallel: bool) -> int:
    if not parallel:
        return 1
    return max(1, min(nz, numba.get_num_threads()))


def _accumulators(nz, n_regions, n_bins, n_chunks):
    return (np.zeros((nz, n_regions), dtype=np.float64),            # per-slice sums
            np.zeros((n_chunks, n_regions), dtype=np.int64),        # counts
            np.zeros((n_chunks, n_regions), dtype=np.int64),        # n_above
            np.full((n_chunks, n_regions), -np.inf, dtype=np.float32),  # max
            np.zeros((n_chunks, n_regions, n_bins), dtype=np.int64),  # histograms
            np.zeros(n_chunks, dtype=np.int64))                     # ids >= n_regions


def _check_common(region, shape, n_regions, threshold_hu, percentile, hist_max_hu, n_bins):
    _checks.array("region", region, np.int32, 3, shape)
    n_regions = _checks.integer("n_regions", n_regions)
    threshold_hu = _checks.real("threshold_hu", threshold_hu)
    percentile = _checks.real("percentile", percentile, 0.0, 100.0)
    hist_max_hu = _checks.real("hist_max_hu", hist_max_hu, 0.0)
    if hist_max_hu <= 0.0:
        raise ValueError(f"hist_max_hu must be > 0, got {hist_max_hu}")
    n_bins = _checks.integer("n_bins", n_bins, 1)
    return n_regions, threshold_hu, percentile, hist_max_hu, n_bins


def _finish(acc, n_regions, percentile, hist_max_hu, threshold_hu):
    sums, counts, n_above, maxs, hist, n_bad = acc
    if n_bad.sum():
        raise ValueError(f"region holds {int(n_bad.sum())} voxel(s) with an id >= n_regions={n_regions}")
    # integer sums and maxima are exact in any order; the float sums are added slice by slice in
    # z order, so the result does not depend on how the slices were split over threads
    return RegionStats.from_accumulators(counts.sum(axis=0), sums.sum(axis=0), maxs.max(axis=0),
                                         n_above.sum(axis=0), hist.sum(axis=0), percentile,
                                         hist_max_hu, threshold_hu)


def stream_phase(volume, baseline, region, n_regions, prev_enh, peak, arrival_s, t_prev_s,
                 t_cur_s, threshold_hu, percentile=95.0, hist_max_hu=2000.0, n_bins=400,
                 first=False, parallel=True) -> RegionStats:
    """One streaming pass over one phase: region statistics and per-voxel temporal updates.

    For every voxel, ``e = volume - baseline`` (float32, HU) is formed on the fly and

    * added to the statistics of its region (when ``region >= 0`` and ``e`` is not NaN);
    * ``peak = fmax(peak, e)`` (``peak = e`` when ``first``);
    * ``arrival_s`` is set where it is NaN and ``e >= threshold_hu`` for the first time: to
      ``t_cur_s[z]`` when ``first`` (or the previous enhancement is NaN), else, when
      ``prev_enh < threshold_hu``, to the linear interpolation
      ``t_prev_s[z] + (threshold_hu - prev) / (e - prev) * (t_cur_s[z] - t_prev_s[z])``;
      when ``first``, ``arrival_s`` is (re)initialised: ``t_cur_s[z]`` or NaN;
    * ``prev_enh = e``.

    With ``first=True`` the input contents of ``prev_enh``, ``peak`` and ``arrival_s`` are ignored
    (they may come from ``numpy.empty``).

    Parameters
    ----------
    volume : ndarray of float32, shape (Z, Y, X), C-contiguous; this phase, HU
    baseline : ndarray of float32, shape (Z, Y, X), C-contiguous; baseline, HU
    region : ndarray of int32, shape (Z, Y, X), C-contiguous; region id in ``[0, n_regions)``,
        negative (-1) for voxels that no statistic counts; or None: temporal updates only (the
        statistics are all empty), saving the 4 bytes per voxel of reading a region map
    n_regions : int
    prev_enh : ndarray of float32, shape (Z, Y, X), in/out; enhancement of the previous phase, HU
    peak : ndarray of float32, shape (Z, Y, X), in/out; running maximum enhancement, HU
    arrival_s : ndarray of float32, shape (Z, Y, X), in/out; arrival time, s (NaN = not yet)
    t_prev_s : ndarray of float64, shape (Z,), or None when ``first``; acquisition time of each
        slice in the previous phase, s
    t_cur_s : ndarray of float64, shape (Z,); acquisition time of each slice in this phase, s
    threshold_hu : float, enhancement that counts as contrast, HU
    percentile : float, in [0, 100]; the percentile reported in ``pct``
    hist_max_hu : float, > 0; upper edge of the percentile histogram, HU
    n_bins : int, >= 1; bins of the percentile histogram (resolution ``hist_max_hu / n_bins``)
    first : bool, this is the first phase
    parallel : bool, split slices over Numba threads (results are identical either way)

    Returns
    -------
    RegionStats with ``n_regions`` entries.

    Raises
    ------
    TypeError, ValueError
        an argument of the wrong type, dtype, shape or layout (the message names it), or a region
        id >= ``n_regions``.
    """
    _checks.array("volume", volume, np.float32, 3)
    shape = volume.shape
    _checks.array("baseline", baseline, np.float32, 3, shape)
    use_region = region is not None
    if not use_region:                      # temporal updates only: region is never read
        region = np.full((1, 1, 1), -1, dtype=np.int32)
    n_regions, threshold_hu, percentile, hist_max_hu, n_bins = _check_common(
        region, shape if use_region else (1, 1, 1), n_regions, threshold_hu, percentile,
        hist_max_hu, n_bins)
    state = (("prev_enh", prev_enh), ("peak", peak), ("arrival_s", arrival_s))
    for name, a in state:
        _checks.array(name, a, np.float32, 3, shape, writeable=True)
    for i, (name, a) in enumerate(state):
        for other, b in state[:i] + (("volume", volume), ("baseline", baseline)):
            if np.may_share_memory(a, b):
                raise ValueError(f"{name} must not share memory with {other} (it is updated in place)")
    first = bool(first)
    _checks.array("t_cur_s", t_cur_s, np.float64, 1, (shape[0],))
    if t_prev_s is None:
        if not first:
            raise ValueError("t_prev_s is required unless first=True")
        t_prev_s = t_cur_s
    _checks.array("t_prev_s", t_prev_s, np.float64, 1, (shape[0],))
    n_chunks = _n_chunks(shape[0], parallel)
    acc = _accumulators(shape[0], n_regions, n_bins, n_chunks)
    kernel = _stream_parallel if n_chunks > 1 else _stream_serial
    kernel(volume, baseline, region, n_regions, prev_enh, peak, arrival_s, t_prev_s, t_cur_s,
           threshold_hu, n_bins / hist_max_hu, n_bins, first, use_region, *acc)
    return _finish(acc, n_regions, percentile, hist_max_hu, threshold_hu)


def region_stats(enh, region, n_regions, threshold_hu, percentile=95.0, hist_max_hu=2000.0,
                 n_bins=400, parallel=True) -> RegionStats:
    """Per-region statistics of a given enhancement array (same rules as :func:`stream_phase`).

    Parameters
    ----------
    enh : ndarray of float32, shape (Z, Y, X), C-contiguous; enhancement, HU
    region : ndarray of int32, shape (Z, Y, X), C-contiguous; region id in ``[0, n_regions)``,
        negative for voxels no statistic counts
    n_regions : int
    threshold_hu : float, HU; ``n_above`` counts ``enh >= threshold_hu``
    percentile : float, in [0, 100]
    hist_max_hu : float, > 0, HU
    n_bins : int, >= 1
    parallel : bool, split slices over Numba threads (results are identical either way)

    Returns
    -------
    RegionStats with ``n_regions`` entries.
    """
    _checks.array("enh", enh, np.float32, 3)
    n_regions, threshold_hu, percentile, hist_max_hu, n_bins = _check_common(
        region, enh.shape, n_regions, threshold_hu, percentile, hist_max_hu, n_bins)
    n_chunks = _n_chunks(enh.shape[0], parallel)
    acc = _accumulators(enh.shape[0], n_regions, n_bins, n_chunks)
    kernel = _stats_parallel if n_chunks > 1 else _stats_serial
    kernel(enh, region, n_regions, threshold_hu, n_bins / hist_max_hu, n_bins, *acc)
    return _finish(acc, n_regions, percentile, hist_max_hu, threshold_hu)
