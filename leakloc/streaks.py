"""Streak artefacts: thin straight lines of a few tens of HU across an axial slice.

Beam hardening next to dense contrast or bone, and photon starvation, draw straight streaks
across the slice, different in every pass. A streak in the pass that becomes the baseline (the
pre-contrast pass, or the temporal minimum) adds to the enhancement of every later pass along its
whole line: through the epidural space and the paraspinal tissue it looks like contrast that
arrived early and stays, the signature of a leak.

Each pass's streaks are measured where contrast never goes: far from the canal (air, fat,
muscle), as lines of the pass's difference from the median of all passes, in slabs a few
millimetres thick (a streak of a dense object changes slowly along z). A line counts when its mean
is well above the noise of all lines and it is thin (a few millimetres; a kidney or bowel that
changes between passes is wide and is excluded anyway by its range over time). Its profile across
the line is then subtracted along its whole length, through the canal too.

Public API
----------
slab_layout : which slab each slice belongs to
slab_means : per-slab, per-pixel-block means of one pass (what :func:`find_streaks` takes)
find_streaks : the streaks of every pass
remove : one pass (or a region of it) without its streaks
Streak : one streak (pass, slab, angle, offset, profile)
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

#: slab thickness over which a streak is taken to be the same, mm
SLAB_MM = 10.0
#: pixel size of the line search, mm (passes are block-averaged to about this)
PIXEL_MM = 1.0
#: contrast never goes farther than this from the canal centre (the paraspinal shell reaches
#: 25 mm beyond a canal of about 10 mm radius), mm
FAR_MM = 40.0
#: ... and lines are measured no farther than this from it (a streak that matters crosses the
#: canal; the rest of its length adds time, not evidence), mm
OUTER_MM = 100.0
#: differences are clipped to this before they are averaged along a line, HU
CLIP_HU = 100.0
#: a pixel whose slab mean changes more than this over the passes holds contrast (or moving
#: bowel, lung, a vessel): not used, HU
CONTRAST_RANGE_HU = 200.0
#: a pixel of the median within EDGE_MM of a change of more than EDGE_RANGE_HU is at an edge
#: (skin, bone, the table), where a fraction of a voxel of motion or resampling leaves a line of
#: difference along a straight edge: not used
EDGE_RANGE_HU = 150.0
EDGE_MM = 2.0
#: lines shorter than this (through the far field) are not judged, mm
MIN_LINE_MM = 30.0
#: a streak's mean along its line is at least this, HU ...
MIN_HU = 8.0
#: ... and this many robust standard deviations of the means of all lines of its slab
NOISE_K = 6.0
#: a streak is thin: its mean this far from its centre is below THIN_FRACTION of its peak, mm
THIN_MM = 4.0
THIN_FRACTION = 0.4
#: half-width of the profile subtracted across a streak, mm
HALF_WIDTH_MM = 3.0
#: angular step of the line search, degrees; each line found is then refined to a third of it
ANGLE_STEP_DEG = 1.0
#: at most this many streaks per slab and pass
MAX_LINES = 8


@dataclass(frozen=True)
class Streak:
    """One streak of one pass, the same over the slices of one slab.

    Along the line ``x cos(angle) + y sin(angle) = rho`` (x, y in mm from the centre of voxel
    (0, 0) of the full grid, along its columns and rows) the pass is off by
    ``np.interp(rho, rho_mm, hu)``.
    """

    pass_index: int
    slab: int
    angle_rad: float
    rho_mm: np.ndarray
    hu: np.ndarray

    def hu_at(self, x_mm, y_mm) -> np.ndarray:
        """The streak's value (HU) at points ``x_mm``, ``y_mm`` (broadcast), 0 beyond its profile."""
        r = x_mm * np.cos(self.angle_rad) + y_mm * np.sin(self.angle_rad)
        return np.interp(r, self.rho_mm, self.hu, left=0.0, right=0.0)

    @property
    def peak_hu(self) -> float:
        """The profile's largest deviation (signed), HU."""
        return float(self.hu[np.argmax(np.abs(self.hu))])


def slab_layout(n_slices: int, slice_mm: float, slab_mm: float = SLAB_MM):
    """Slab of every slice: consecutive runs of about ``slab_mm``.

    Returns
    -------
    slab_of_slice : ndarray of int64, shape (Z,)
    n_slabs : int
    """
    per = max(1, int(round(slab_mm / max(float(slice_mm), 1e-6))))
    slab = np.arange(n_slices) // per
    return slab, int(slab[-1]) + 1 if n_slices else 0


def block_size(spacing_yx_mm, pixel_mm: float = PIXEL_MM):
    """Pixels per block along y and x so that a block is about ``pixel_mm`` wide."""
    return tuple(max(1, int(round(pixel_mm / float(s)))) for s in spacing_yx_mm)


def slab_means(volume, slab_of_slice, n_slabs, block_yx) -> np.ndarray:
    """Mean of one pass over each slab and in-plane block (the partial edge blocks dropped).

    Parameters
    ----------
    volume : ndarray, shape (Z, Y, X), HU
    slab_of_slice : ndarray of int, shape (Z,); from :func:`slab_layout` (non-decreasing)
    n_slabs : int
    block_yx : (int, int); pixels per block along y and x

    Returns
    -------
    ndarray of float32, shape (n_slabs, Y // by, X // bx), HU
    """
    by, bx = block_yx
    nz, ny, nx = volume.shape
    yb, xb = ny // by, nx // bx
    counts = np.bincount(slab_of_slice, minlength=n_slabs).astype(np.float64)
    # along z first (whole slices: a plain add per slice, far faster than np.add.reduceat), then
    # the blocks of the few slab sums
    s = np.zeros((n_slabs, yb * by, xb * bx), np.float32)
    for z in range(nz):
        np.add(s[slab_of_slice[z]], volume[z, :yb * by, :xb * bx], out=s[slab_of_slice[z]])
    if by * bx > 1:
        s = s.reshape(n_slabs, yb, by, xb, bx).sum(axis=(2, 4), dtype=np.float32)
    return s / np.float32(by * bx) / counts[:, None, None].astype(np.float32)


def _grid(block_yx, spacing_yx_mm):
    by, bx = block_yx
    sy, sx = (float(v) for v in spacing_yx_mm)
    origin = ((by - 1) / 2.0 * sy, (bx - 1) / 2.0 * sx)
    step = (by * sy, bx * sx)
    return origin, step


def find_streaks(slabs, centre_yx, spacing_yx_mm, block_yx, motion_mm: float = 0.0) -> list:
    """The streaks of every pass.

    Parameters
    ----------
    slabs : list of P ndarrays of float32, shape (S, Yb, Xb); :func:`slab_means` of each pass
        (registered to the first), HU
    centre_yx : ndarray, shape (S, 2); the canal centre of each slab, full-grid voxel indices
    spacing_yx_mm : (float, float); voxel spacing along y and x, mm
    block_yx : (int, int); the blocks of ``slabs``
    motion_mm : float; the largest displacement of a pass registered to the first, mm. After
        motion, edges are avoided by this much more (the table does not move with the patient,
        and the partial volume of a tilt smears an edge over several pixels of a slab), and so
        is the edge of the grid (where a registered pass is filled), mm

    Returns
    -------
    list of P lists of :class:`Streak`
    """
    from leakloc.kernels import line_sums

    n = len(slabs)
    out = [[] for _ in range(n)]
    if n < 2:
        return out
    stack = np.stack(slabs)                                   # (P, S, Yb, Xb)
    ref = np.median(stack, axis=0)
    n_s, yb, xb = ref.shape
    origin, step = _grid(block_yx, spacing_yx_mm)
    sy, sx = (float(v) for v in spacing_yx_mm)
    yy = origin[0] + np.arange(yb) * step[0]
    xx = origin[1] + np.arange(xb) * step[1]
    cy = centre_yx[:, 0] * sy
    cx = centre_yx[:, 1] * sx
    r2 = ((yy[None, :, None] - cy[:, None, None]) ** 2
          + (xx[None, None, :] - cx[:, None, None]) ** 2)
    far = (r2 > FAR_MM ** 2) & (r2 <= OUTER_MM ** 2)
    del r2
    quiet = (np.ptp(stack, axis=0) < CONTRAST_RANGE_HU) & (ref > -1000.0)
    edge_mm = EDGE_MM + float(motion_mm)
    ey, ex = (2 * max(1, int(round(edge_mm / st))) + 1 for st in step)
    edge = (ndimage.maximum_filter(ref, size=(1, ey, ex))
            - ndimage.minimum_filter(ref, size=(1, ey, ex))) > EDGE_RANGE_HU
    if motion_mm > 0:
        by_, bx_ = (int(np.ceil(edge_mm / st)) for st in step)
        edge[:, :by_] = edge[:, yb - by_:] = True
        edge[:, :, :bx_] = edge[:, :, xb - bx_:] = True
    mask = np.ascontiguousarray((far & quiet & ~edge).astype(np.uint8))
    del far, quiet, edge
    if not mask.any():
        return out
    angles = np.deg2rad(np.arange(0.0, 180.0, ANGLE_STEP_DEG))
    rho_step = min(step)
    diag = float(np.hypot(yy[-1] + step[0], xx[-1] + step[1]))
    n_rho = int(np.ceil(2 * diag / rho_step)) + 3
    rho_min = -diag - rho_step
    rho = rho_min + np.arange(n_rho) * rho_step
    min_count = MIN_LINE_MM / max(step)
    w_thin = max(1, int(round(THIN_MM / rho_step)))
    w_half = max(1, int(round(HALF_WIDTH_MM / rho_step)))
    d_ang = int(round(4.0 / ANGLE_STEP_DEG))
    # the passes' differences from the median, in place of the stack (P slabs' worth of memory)
    diff = stack
    diff -= ref[None]
    np.clip(diff, -CLIP_HU, CLIP_HU, out=diff)
    # a few slabs at a time: the line sums of all passes at once (each pixel's bins found once)
    # without holding every slab's sums
    chunk = 4
    for s0 in range(0, n_s, chunk):
        s1 = min(n_s, s0 + chunk)
        sums, counts = line_sums(np.ascontiguousarray(diff[:, s0:s1]),
                                 np.ascontiguousarray(mask[s0:s1]), angles, origin, step, rho_min,
                                 rho_step, n_rho)
        # the mean of every line, in place of its sum (NaN: too few pixels)
        enough = np.broadcast_to(counts >= min_count, sums.shape)
        m = np.divide(sums, counts[None], out=sums, where=enough)
        m[~enough] = np.nan
        for p in range(n):
            for s in range(s0, s1):
                out[p].extend(_lines_of_slab(m[p, s - s0], diff[p, s], mask[s], yy, xx, p, s,
                                             angles, rho, w_thin, w_half, d_ang, min_count,
                                             (cy[s], cx[s])))
    return out


def _lines_of_slab(m, diff, mask, yy, xx, p, s, angles, rho, w_thin, w_half, d_ang,
                   min_count, pivot_yx):
    """Thin lines of one slab and pass.

    ``m`` (A, R) are the means of every line of ``diff`` (Yb, Xb) over ``mask``; its local maxima
    are the candidates.
    """
    ok = np.isfinite(m)
    if ok.sum() < 20:
        return []
    vals = m[ok]
    sigma = 1.4826 * float(np.median(np.abs(vals - np.median(vals))))
    thr = max(MIN_HU, NOISE_K * sigma)
    a = np.where(ok, np.abs(m), 0.0)
    peaks = np.argwhere((a >= thr) & (a == ndimage.maximum_filter(a, size=(2 * d_ang + 1, 5))))
    if len(peaks) == 0:
        return []
    order = np.argsort(-a[peaks[:, 0], peaks[:, 1]])[:3 * MAX_LINES]
    jj, ii = np.nonzero(mask)
    ys, xs = yy[jj], xx[ii]
    res = diff[jj, ii].astype(np.float64)
    step = float(rho[1] - rho[0])
    n_bins = 2 * w_thin + 1
    cands = []
    py, px = pivot_yx
    d_fine = np.deg2rad(ANGLE_STEP_DEG / 3.0)
    for ia, ir in peaks[order]:
        th0, r00 = angles[ia], rho[ir]
        # the same line turned by a third of a step either way about its point nearest the
        # canal centre
        off = r00 - (px * np.cos(th0) + py * np.sin(th0))
        for th in (th0 - d_fine, th0, th0 + d_fine):
            r0 = px * np.cos(th) + py * np.sin(th) + off
            d = (xs * np.cos(th) + ys * np.sin(th) - r0) / step
            k = np.floor(d + 0.5).astype(np.int64)
            sel = np.flatnonzero(np.abs(k) <= w_thin)
            cnt = np.bincount(k[sel] + w_thin, minlength=n_bins)
            if cnt[w_thin] >= min_count:
                cands.append((th, r0, sel, k[sel] + w_thin, cnt))
    lines = []
    # matching pursuit: the candidate strongest on what the accepted lines leave, one at a time
    # (a line near a strong streak at a slightly different angle shares part of its pixels and
    # would otherwise count as a streak of its own)
    while cands and len(lines) < MAX_LINES:
        best, best_prof = None, None
        for c, (th, r0, sel, kb, cnt) in enumerate(cands):
            tot = np.bincount(kb, weights=res[sel], minlength=n_bins)
            with np.errstate(invalid="ignore", divide="ignore"):
                prof = np.where(cnt >= min_count, tot / np.maximum(cnt, 1), np.nan)
            peak = prof[w_thin]
            if abs(peak) < thr:
                continue
            # thin: measured beside it too, and much weaker there
            if not all(np.isfinite(v) and abs(v) < THIN_FRACTION * abs(peak)
                       for v in (prof[0], prof[-1])):
                continue
            if best is None or abs(peak) > abs(best_prof[w_thin]):
                best, best_prof = c, prof
        if best is None:
            break
        th, r0, sel, kb, cnt = cands.pop(best)
        peak = best_prof[w_thin]
        hu = np.nan_to_num(best_prof[w_thin - w_half:w_thin + w_half + 1])
        hu = np.where(np.sign(hu) == np.sign(peak), hu, 0.0)
        q = Streak(pass_index=p, slab=s, angle_rad=float(th),
                   rho_mm=r0 + step * np.arange(-w_half, w_half + 1), hu=hu.astype(np.float64))
        lines.append(q)
        res -= q.hu_at(xs, ys)
    return lines


def remove(volume, streaks, slab_of_slice, offset_yx, spacing_yx_mm) -> np.ndarray:
    """One pass (or a box of it) without its streaks.

    Parameters
    ----------
    volume : ndarray, shape (Z, Y, X), HU; the box ``[:, y0:y0+Y, x0:x0+X]`` of the pass (not
        modified)
    streaks : list of :class:`Streak` of this pass
    slab_of_slice : ndarray of int, shape (Z,)
    offset_yx : (int, int); ``(y0, x0)``, the box's first voxel in the full grid
    spacing_yx_mm : (float, float); mm

    Returns
    -------
    ndarray of float32, shape (Z, Y, X), HU; ``volume`` itself when there is nothing to remove
    """
    if not streaks:
        return volume
    sy, sx = (float(v) for v in spacing_yx_mm)
    _, ny, nx = volume.shape
    y_mm = (offset_yx[0] + np.arange(ny)) * sy
    x_mm = (offset_yx[1] + np.arange(nx)) * sx
    out = np.array(volume, dtype=np.float32, copy=True)
    by_slab = {}
    for q in streaks:
        by_slab.setdefault(q.slab, []).append(q)
    for s, qs in by_slab.items():
        corr = np.zeros((ny, nx), np.float64)
        for q in qs:
            corr += q.hu_at(x_mm[None, :], y_mm[:, None])
        zs = np.flatnonzero(slab_of_slice == s)
        out[zs] -= corr.astype(np.float32)[None]
    return out
