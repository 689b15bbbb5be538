"""Anatomy from the study itself: canal centreline, compartments, sectors and vertebral levels.

Compartment and sector codes are the small integers below; arrays are numpy ``(Z, Y, X)``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# compartment codes (uint8)
OUTSIDE, SAC, EPIDURAL, PARASPINAL = 0, 1, 2, 3
COMPARTMENTS = ("sac", "epidural", "paraspinal")  # codes 1..3
# sector codes (uint8), in patient terms
VENTRAL, DORSAL, LEFT, RIGHT = 0, 1, 2, 3
SECTORS = ("ventral", "dorsal", "left", "right")


@dataclass
class Level:
    """One vertebra in the field of view.

    name : str, ``'T7'``; coord : float, level coordinate (see :mod:`leakloc.levels`);
    z_range_mm : (low, high) LPS z, mm; slices : (first, last) slice indices, inclusive
    """

    name: str
    coord: float
    z_range_mm: tuple
    slices: tuple


@dataclass
class Anatomy:
    """Where things are in one study.

    Attributes
    ----------
    centreline_yx : ndarray, shape (Z, 2), voxels; canal centre (y, x) on each slice, NaN outside
    compartments : ndarray, shape (Z, Y, X), uint8; OUTSIDE, SAC, EPIDURAL or PARASPINAL
    sectors : ndarray, shape (Z, Y, X), uint8; VENTRAL, DORSAL, LEFT or RIGHT around the centreline
    level_coord : ndarray, shape (Z,), float; level coordinate of each slice, NaN where unknown
    levels : list of Level, cranial first
    ventral_yx : ndarray, shape (2,); unit vector (y, x) in voxel space pointing ventral
    left_yx : ndarray, shape (2,); unit vector (y, x) in voxel space pointing to patient's left
    cranial_step : int, +1 when slice index increases cranially, else -1
    dependent : str, the side contrast layers on (``'ventral'`` prone, ``'dorsal'`` supine, ...)
    notes : list of str
    canal_radius_mm : ndarray, shape (Z, n_angles), mm; bony canal radius around the centreline
    roi_yx : (y0, y1, x0, x1), the in-plane box the analysis worked in
    lag_s : ndarray, shape of the ROI, float32, s; how much later than the sac core beside it
        each voxel fills (negative: earlier), NaN where it does not enhance (see :func:`coupling`)
    core : ndarray, shape of the ROI, bool; the sac core (well inside the dura)
    lag_tol_s : ndarray, shape of the ROI, float32, s; the largest lag that still counts as
        filling with the sac (a fraction of the local gap between passes)
    """

    centreline_yx: np.ndarray
    compartments: np.ndarray
    sectors: np.ndarray
    level_coord: np.ndarray
    levels: list
    ventral_yx: np.ndarray
    left_yx: np.ndarray
    cranial_step: int = 1
    dependent: str = "dorsal"
    notes: list = field(default_factory=list)
    canal_radius_mm: np.ndarray | None = None
    roi_yx: tuple = (0, None, 0, None)
    lag_s: np.ndarray | None = None
    lag_tol_s: np.ndarray | None = None
    core: np.ndarray | None = None


# --------------------------------------------------------------------------------------------
# Geometry helpers
# --------------------------------------------------------------------------------------------

import math  # noqa: E402

from scipy import ndimage, signal  # noqa: E402

from leakloc import AnalysisError  # noqa: E402
from leakloc import levels as _lv  # noqa: E402

#: how far (mm) the bony canal's centre may lie from the contrast column it was found from
MAX_RECENTRE_MM = 5.0
#: fraction of rays meeting bone for a slice's bony ring to count as closed (a vertebra)
RING_CLOSED = 0.85
#: HU above which baseline voxels count as bone (or calcification) for the canal border
BONE_HU = 250.0
#: enhancement (HU over baseline) that marks intrathecal contrast when finding the sac
SAC_ENH_HU = 120.0
#: the sac core: this fraction of the bony canal's radius around the centre
CORE_FRACTION = 0.3
#: a voxel fills with the sac when it reaches half its peak within this fraction of a pass
#: interval (and at least COUPLING_MIN_S) of the sac core beside it
COUPLING_FRACTION, COUPLING_MIN_S = 0.4, 3.0

_DEPENDENT = {"HFP": "ventral", "FFP": "ventral", "HFS": "dorsal", "FFS": "dorsal",
              "HFDR": "right", "FFDR": "right", "HFDL": "left", "FFDL": "left"}


def disk_yx(spacing_yx_mm, radius_mm):
    """An in-plane disk, a structuring element at least 3 x 3.

    Parameters
    ----------
    spacing_yx_mm : (float, float), voxel size along y and x, mm
    radius_mm : float

    Returns
    -------
    ndarray bool, shape (2 ry + 1, 2 rx + 1): voxels within ``radius_mm`` of the centre
    """
    ry = max(1, int(round(radius_mm / spacing_yx_mm[0])))
    rx = max(1, int(round(radius_mm / spacing_yx_mm[1])))
    yy = np.arange(-ry, ry + 1)[:, None] * spacing_yx_mm[0]
    xx = np.arange(-rx, rx + 1)[None, :] * spacing_yx_mm[1]
    return yy ** 2 + xx ** 2 <= radius_mm ** 2 + 1e-6


def patient_axes(direction, spacing_mm):
    """Ventral and left unit vectors in (y, x) mm of the index grid, and the cranial slice step.

    Parameters
    ----------
    direction : sequence of 9 float, ITK row-major direction cosines (LPS)
    spacing_mm : sequence of 3 float, (x, y, z) mm

    Returns
    -------
    ventral_yx, left_yx : ndarray, shape (2,), unit vectors in index (y, x) space scaled to mm
    cranial_step : int, +1 when the slice index increases towards the head
    """
    d = np.asarray(direction, dtype=float).reshape(3, 3)
    # index axis x is column 0, y is column 1, z column 2. LPS anterior = -y, left = +x.
    ventral = np.array([-d[1, 1], -d[1, 0]])
    left = np.array([d[0, 1], d[0, 0]])
    if np.linalg.norm(ventral) < 0.3 or np.linalg.norm(left) < 0.3:
        raise AnalysisError("slices are not axial: the index axes do not span left-right and "
                            "anterior-posterior (direction cosines)")
    ventral /= np.linalg.norm(ventral)
    left /= np.linalg.norm(left)
    cranial_step = 1 if d[2, 2] >= 0 else -1
    return ventral, left, cranial_step


def side_vector(side: str, ventral_yx, left_yx):
    """Unit vector (y, x) of a patient side ('ventral', 'dorsal', 'left', 'right')."""
    v = {"ventral": ventral_yx, "dorsal": -np.asarray(ventral_yx), "left": left_yx,
         "right": -np.asarray(left_yx)}[side]
    return np.asarray(v, dtype=float)


def dependent_side(patient_position: str) -> str:
    """The side contrast layers on for a DICOM PatientPosition (default supine: dorsal)."""
    return _DEPENDENT.get((patient_position or "").strip().upper(), "dorsal")


def coarse_centreline(enh_max, spacing_yx_mm, min_enh_hu=SAC_ENH_HU):
    """Canal centre per slice from where intrathecal contrast went, on any (sub-sampled) grid.

    Parameters
    ----------
    enh_max : ndarray, shape (Z, Y, X), HU; temporal maximum minus minimum (or pre-contrast)
    spacing_yx_mm : (float, float), in-plane spacing of ``enh_max``
    min_enh_hu : float, enhancement that marks contrast

    Returns
    -------
    centre_yx : ndarray, shape (Z, 2), voxels; interpolated on slices contrast never reached
    reached : ndarray, shape (Z,), bool; slices where the contrast column was found
    """
    mask = enh_max > min_enh_hu
    if not mask.any():
        raise AnalysisError(f"no intrathecal contrast: no voxel enhances by more than "
                            f"{min_enh_hu:.0f} HU in any pass")
    lab, n = ndimage.label(mask)
    objs = ndimage.find_objects(lab)
    # the contrast column: the component spanning the most slices (ties: largest volume)
    sizes = ndimage.sum_labels(mask, lab, index=np.arange(1, n + 1))
    best = max(range(n), key=lambda k: ((objs[k][0].stop - objs[k][0].start), sizes[k]))
    col = lab == best + 1
    if objs[best][0].stop - objs[best][0].start < 3:
        raise AnalysisError("no intrathecal contrast column: the enhancing voxels span fewer "
                            "than 3 slices")
    z = np.arange(enh_max.shape[0])
    w = np.where(col, enh_max, 0.0).astype(np.float64)
    # the densest contrast of each slice (the column), not every voxel of the component that
    # changed (bone edges of a moved pass, streaks)
    top = w.reshape(w.shape[0], -1).max(axis=1)
    w = np.where(w >= 0.5 * top[:, None, None], w, 0.0)
    tot = w.sum(axis=(1, 2))
    yy = np.arange(enh_max.shape[1])[None, :, None]
    xx = np.arange(enh_max.shape[2])[None, None, :]
    reached = tot > 0
    cy = np.where(reached, (w * yy).sum(axis=(1, 2)) / np.maximum(tot, 1e-9), np.nan)
    cx = np.where(reached, (w * xx).sum(axis=(1, 2)) / np.maximum(tot, 1e-9), np.nan)
    centre = np.stack([_fill_nan(cy, z), _fill_nan(cx, z)], axis=1)
    # (a slice whose densest contrast lies away from the column does not swing the centreline)
    centre = ndimage.median_filter(centre, size=(5, 1), mode="nearest")
    return centre, reached


def _fill_nan(v, z):
    ok = np.isfinite(v)
    if not ok.any():
        return np.zeros_like(v)
    return np.interp(z, z[ok], v[ok])


def smooth_along_z(v, sigma_slices):
    """Gaussian smoothing of per-slice values (shape (Z, ...)) along z, edges reflected."""
    if sigma_slices <= 0:
        return v
    return ndimage.gaussian_filter1d(v, sigma_slices, axis=0, mode="nearest")


def polar_grid(shape_zyx, centre_yx, spacing_yx_mm):
    """Radius (mm) and offsets (mm) of every voxel from the per-slice centre.

    Returns
    -------
    dy_mm, dx_mm : ndarray, shape (Z, Y, X), float32
    """
    z, y, x = shape_zyx
    yy = np.arange(y, dtype=np.float32)[None, :, None]
    xx = np.arange(x, dtype=np.float32)[None, None, :]
    dy = (yy - centre_yx[:, 0, None, None].astype(np.float32)) * np.float32(spacing_yx_mm[0])
    dx = (xx - centre_yx[:, 1, None, None].astype(np.float32)) * np.float32(spacing_yx_mm[1])
    return dy, dx


def canal_radius(baseline, centre_yx, spacing_yx_mm, n_angles=48, r_max_mm=22.0, step_mm=0.5,
                 bone_hu=BONE_HU, z_window=7, return_closed=False):
    """Radius of the bony canal around the centre, per slice and direction, by casting rays.

    Each ray stops at the first voxel of the baseline denser than ``bone_hu``; rays that leave
    through a foramen or an interspace take the median of their neighbours along z.

    Parameters
    ----------
    baseline : ndarray, shape (Z, Y, X), HU (pre-contrast or temporal minimum)
    centre_yx : ndarray, shape (Z, 2), voxels
    spacing_yx_mm : (float, float)

    Returns
    -------
    radius_mm : ndarray, shape (Z, n_angles), mm; angle k is ``2 pi k / n_angles`` measured from
        the +y index axis towards +x
    closed : ndarray, shape (Z,), fraction of rays that met bone (with ``return_closed``)
    """
    nz = baseline.shape[0]
    ang = 2 * np.pi * np.arange(n_angles) / n_angles
    r = np.arange(step_mm, r_max_mm + 1e-9, step_mm)
    uy = np.cos(ang)[:, None] * r[None, :] / spacing_yx_mm[0]
    ux = np.sin(ang)[:, None] * r[None, :] / spacing_yx_mm[1]
    zz = np.broadcast_to(np.arange(nz)[:, None, None], (nz, n_angles, r.size))
    py = centre_yx[:, 0, None, None] + uy[None]
    px = centre_yx[:, 1, None, None] + ux[None]
    vals = ndimage.map_coordinates(baseline, [zz.ravel(), py.ravel(), px.ravel()], order=1,
                                   mode="nearest").reshape(nz, n_angles, r.size)
    # bone is thick: two samples in a row (a streak artifact or a noise speck is thin)
    hit = vals > bone_hu
    hit[..., :-1] &= hit[..., 1:]
    hit[..., -1] = False
    first = np.where(hit.any(axis=2), hit.argmax(axis=2), r.size - 1)
    radius = r[first].astype(float)
    radius[~hit.any(axis=2)] = np.nan
    # open rays (foramina, interspaces, a whole disc level): borrow from the same direction on
    # the nearest slices where it met bone, above and below
    filled = radius.copy()
    zi = np.arange(nz)
    for k in range(n_angles):
        ok = np.isfinite(radius[:, k])
        filled[:, k] = np.interp(zi, zi[ok], radius[ok, k]) if ok.any() else r_max_mm
    med = ndimage.median_filter(filled, size=(z_window, 3), mode="nearest")
    out = np.where(np.isfinite(radius), np.minimum(radius, med * 1.35), med)
    # a canal is never narrower than 4 mm in radius unless something dense sits in it
    out = np.clip(out, 2.0, r_max_mm)
    if return_closed:
        return out, hit.any(axis=2).mean(axis=1)
    return out


def _recentre(baseline_slice, c, sp_yx, iterations=3):
    """Move a centre to the centroid of the bony canal polygon around it (one slice)."""
    for _ in range(iterations):
        rad = canal_radius(baseline_slice[None], c[None], sp_yx, z_window=1)[0]
        ang = 2 * np.pi * np.arange(rad.size) / rad.size
        w = rad ** 2
        oy = (w * rad * np.cos(ang)).sum() / w.sum() * (2.0 / 3.0)
        ox = (w * rad * np.sin(ang)).sum() / w.sum() * (2.0 / 3.0)
        c = c + np.array([oy / sp_yx[0], ox / sp_yx[1]])
    return c


def track_canal(baseline, centre_yx, reached, spacing_yx_mm):
    """Follow the bony canal slice by slice from the slices contrast reached into those it did not.

    Parameters
    ----------
    baseline : ndarray, shape (Z, Y, X), HU
    centre_yx : ndarray, shape (Z, 2), voxels; trusted where ``reached``
    reached : ndarray, shape (Z,), bool

    Returns
    -------
    ndarray, shape (Z, 2), voxels
    """
    c = np.asarray(centre_yx, dtype=float).copy()
    idx = np.nonzero(reached)[0]
    a, b = int(idx.min()), int(idx.max())
    ny, nx = baseline.shape[1:]
    for z in list(range(a - 1, -1, -1)) + list(range(b + 1, baseline.shape[0])):
        prev = c[z + 1] if z < a else c[z - 1]
        nxt = _recentre(baseline[z], prev.copy(), spacing_yx_mm)
        # a canal moves little from one slice to the next
        step = nxt - prev
        lim = 3.0 / min(spacing_yx_mm)
        n = np.hypot(*step)
        c[z] = prev + (step * (lim / n) if n > lim else step)
        c[z] = np.clip(c[z], [0, 0], [ny - 1, nx - 1])
    return c


def angle_of(dy_mm, dx_mm):
    """Angle (rad, 0..2pi) from +y towards +x, matching :func:`canal_radius`."""
    a = np.arctan2(dx_mm, dy_mm)
    return np.where(a < 0, a + 2 * np.pi, a)


def sector_map(dy_mm, dx_mm, ventral_yx, left_yx):
    """Sector code (VENTRAL, DORSAL, LEFT, RIGHT) of every voxel around the centreline, uint8."""
    v = dy_mm * np.float32(ventral_yx[0]) + dx_mm * np.float32(ventral_yx[1])
    lft = dy_mm * np.float32(left_yx[0]) + dx_mm * np.float32(left_yx[1])
    out = np.where(np.abs(v) >= np.abs(lft), np.where(v >= 0, VENTRAL, DORSAL),
                   np.where(lft >= 0, LEFT, RIGHT))
    return out.astype(np.uint8)


# --------------------------------------------------------------------------------------------
# Levels
# --------------------------------------------------------------------------------------------

def levels_from_labelmap(labelmap, centre_yx, spacing_yx_mm, radius_mm=60.0):
    """Level coordinate per slice from a TotalSegmentator ``total`` vertebra label map.

    Parameters
    ----------
    labelmap : ndarray, shape (Z, Y, X), int; ids 26..50 = S1..C1 (others ignored)
    centre_yx : ndarray, shape (Z, 2), voxels
    radius_mm : float, only labels this close to the canal count

    Returns
    -------
    level_coord : ndarray, shape (Z,), float, NaN outside the labelled vertebrae
    """
    nz = labelmap.shape[0]
    dy, dx = polar_grid(labelmap.shape, centre_yx, spacing_yx_mm)
    near = (dy * dy + dx * dx) < radius_mm ** 2
    lab = np.where(near, labelmap, 0)
    zs, ids = [], []
    zidx = np.broadcast_to(np.arange(nz)[:, None, None], lab.shape)
    for vid, name in _lv.TOTALSEG_NAME.items():
        m = lab == vid
        cnt = int(m.sum())
        if cnt == 0:
            continue
        zs.append(float(zidx[m].mean()))
        ids.append(_lv.index(name))
    if len(ids) < 1:
        raise AnalysisError("the level label map has no vertebra (TotalSegmentator ids 26-50) "
                            "near the spinal canal")
    order = np.argsort(zs)
    zs = np.asarray(zs)[order]
    ids = np.asarray(ids, dtype=float)[order]
    if len(ids) >= 2 and not (np.all(np.diff(ids) < 0) or np.all(np.diff(ids) > 0)):
        raise AnalysisError("the level label map is out of order along the spine "
                            "(vertebra ids do not change monotonically with z)")
    return _coord_from_centres(zs, ids, nz)


def _coord_from_centres(z_centres, coords, nz):
    """Level coordinate per slice by interpolating between body centre slices; NaN beyond half a
    level outside the first and last centre."""
    z = np.arange(nz, dtype=float)
    if len(z_centres) == 1:
        out = np.full(nz, np.nan)
        out[int(round(z_centres[0]))] = coords[0]
        return out
    slope = np.diff(coords) / np.diff(z_centres)
    out = np.interp(z, z_centres, coords)
    lo, hi = z_centres[0], z_centres[-1]
    out = np.where(z < lo, coords[0] + (z - lo) * slope[0], out)
    out = np.where(z > hi, coords[-1] + (z - hi) * slope[-1], out)
    out[(out < coords.min() - 0.75) | (out > coords.max() + 0.75)] = np.nan
    return out


#: a body's posterior wall: the first bone along the ventral ray, no nearer the centre than the
#: canal's ventral radius less BODY_WALL_INSIDE_MM, at least BODY_WALL_HU dense over
#: BODY_WALL_MM of the ray (a body is bone over 14 mm or more; a fragment, a rim, or contrast
#: layered in the sac in every pass near the injection without a pre-contrast pass, is a few mm
#: thick); its depth is the running median over BODY_WALL_WINDOW_MM along the spine (discs,
#: which hold no bone, take it from the bodies around them). Found on under
#: BODY_WALL_MIN_FRACTION of the slices (bodies less dense than that: osteoporosis), the
#: canal's radius stands
BODY_WALL_HU, BODY_WALL_MM, BODY_WALL_WINDOW_MM = 150.0, 6.0, 60.0
BODY_WALL_INSIDE_MM, BODY_WALL_MIN_FRACTION = 2.0, 0.3


def _body_wall_mm(ray_hu, rr_mm, canal_mm, step_mm):
    """Distance from the canal centre to the vertebral bodies' posterior wall per slice, mm.

    Parameters
    ----------
    ray_hu : ndarray, shape (Z, R)
        Baseline HU along the ventral ray, at ``rr_mm`` from the canal centre.
    rr_mm : ndarray, shape (R,)
        Distances along the ray, mm, evenly spaced, increasing.
    canal_mm : ndarray, shape (Z,)
        The canal's ventral radius, mm: the search starts a little inside it, and it is the
        answer where too few slices show a wall.
    step_mm : float
        Slice spacing, mm.

    Returns
    -------
    ndarray, shape (Z,), mm
    """
    canal_mm = np.asarray(canal_mm, float)
    nz = ray_hu.shape[0]
    bone = (ray_hu >= BODY_WALL_HU) & \
        (rr_mm[None, :] >= np.nan_to_num(canal_mm, nan=0.0)[:, None] - BODY_WALL_INSIDE_MM)
    n_run = max(1, int(round(BODY_WALL_MM / float(rr_mm[1] - rr_mm[0]))))
    if n_run > bone.shape[1]:
        return canal_mm
    # the first sample that starts n_run bone samples in a row
    c = np.concatenate([np.zeros((nz, 1), np.int64), np.cumsum(bone, axis=1)], axis=1)
    run = np.zeros(bone.shape, bool)
    run[:, :bone.shape[1] - n_run + 1] = (c[:, n_run:] - c[:, :-n_run]) == n_run
    found = run.any(axis=1)
    if found.mean() < BODY_WALL_MIN_FRACTION:
        return canal_mm
    wall = np.where(found, rr_mm[np.argmax(run, axis=1)], np.nan)
    half = max(1, int(round(BODY_WALL_WINDOW_MM / max(float(step_mm), 0.1) / 2)))
    zs = np.nonzero(found)[0]
    out = np.empty(nz)
    for z in range(nz):
        near = zs[np.abs(zs - z) <= half]
        out[z] = np.median(wall[near]) if near.size else np.nan
    ok = np.isfinite(out)
    return np.interp(np.arange(nz), np.nonzero(ok)[0], out[ok])


def body_profile(baseline, centre_yx, radius_mm, spacing_yx_mm, ventral_yx, depth_mm=(3.0, 12.0),
                 half_width_mm=4.0, step_mm=1.0):
    """Baseline HU per slice in a box ventral to the canal, where vertebral bodies and discs are.

    The box starts ``depth_mm[0]`` beyond the bodies' posterior wall, found along the ventral
    ray from the canal centre (:func:`_body_wall_mm`): the canal's own ventral radius is not
    always its bony edge (near the injection, where the sac held contrast in every pass, it can
    be a few mm).

    Parameters
    ----------
    baseline : ndarray, shape (Z, Y, X), HU
    centre_yx : ndarray, shape (Z, 2), the canal centre per slice, voxels
    radius_mm : ndarray, shape (Z, A), the canal's radius per slice and angle, mm
    spacing_yx_mm : (2,) mm
    ventral_yx : (2,) unit vector towards the patient's front
    depth_mm : (2,) mm, the box's extent beyond the wall
    half_width_mm : float, mm either side of the ray
    step_mm : float, slice spacing, mm (the wall's running median is over a length of spine)

    Returns
    -------
    profile_hu : ndarray, shape (Z,), HU
    """
    nz = baseline.shape[0]
    n_ang = radius_mm.shape[1]
    ventral_yx = np.asarray(ventral_yx, float)
    # the ventral ray's canal radius
    ang_v = math.atan2(ventral_yx[1], ventral_yx[0]) % (2 * np.pi)
    k = int(round(ang_v / (2 * np.pi) * n_ang)) % n_ang
    r_v = radius_mm[:, k]

    def sample(dist_mm, across_mm):
        # baseline at points dist_mm along the ray and across_mm beside it, (Z, ...) HU
        perp = np.array([-ventral_yx[1], ventral_yx[0]])
        pts = dist_mm[..., None] * ventral_yx + across_mm[..., None] * perp
        py = centre_yx[:, 0].reshape((nz,) + (1,) * (pts.ndim - 2)) + pts[..., 0] / spacing_yx_mm[0]
        px = centre_yx[:, 1].reshape((nz,) + (1,) * (pts.ndim - 2)) + pts[..., 1] / spacing_yx_mm[1]
        zz = np.broadcast_to(np.arange(nz).reshape((nz,) + (1,) * (py.ndim - 1)), py.shape)
        return ndimage.map_coordinates(baseline, [zz.ravel(), py.ravel(), px.ravel()], order=1,
                                       mode="nearest").reshape(py.shape)

    rr = np.arange(0.0, 45.0 + 1e-9, 0.5)
    ray = sample(np.broadcast_to(rr, (nz, rr.size)), np.zeros((nz, rr.size)))
    wall = _body_wall_mm(ray, rr, r_v, step_mm)
    dd = np.arange(depth_mm[0], depth_mm[1] + 1e-9, 1.0)
    ww = np.arange(-half_width_mm, half_width_mm + 1e-9, 1.0)
    D, W = np.meshgrid(dd, ww, indexing="ij")
    vals = sample(wall[:, None, None] + D[None], np.broadcast_to(W, (nz,) + W.shape))
    # a low percentile: discs are uniformly low, a calcified fragment or a cortical edge is small
    # (the box is small enough for a cervical body, about 15 mm across)
    return np.percentile(vals.reshape(nz, -1), 35, axis=1)


def _merge_split_discs(p, discs, base, thr, max_sep):
    """One disc seen as two minima of the body profile becomes one.

    Between two discs lies a body: the profile between them is mostly at the bodies' level. Two
    minima with the profile between them mostly as low as a disc (its 75th percentile as far
    below the bodies around as a disc must be; one dense slice, an endplate or a calcified
    fragment, does not count) are the two edges of one disc (a tall lumbar disc, a disc whose
    middle is denser), or a dip beside a disc: they are one disc, at the middle of the low
    slices from the first to the last (each extended along its own run of low slices). With
    thick slices the slices between two discs are partly disc: a body is still at least a
    quarter of them.

    Parameters
    ----------
    p : ndarray, shape (Z,)
        The smoothed profile, HU, cranial first.
    discs : ndarray of int
        Slice indices of the minima, increasing.
    base : ndarray, shape (Z,)
        The bodies' level around each slice, HU.
    thr : ndarray, shape (Z,)
        How far below it a disc lies, HU.
    max_sep : int
        Slices: minima farther apart than a tall disc is high stay apart.

    Returns
    -------
    ndarray of int, the discs, increasing
    """
    if discs.size < 2:
        return discs
    low = p < base - thr
    lab, _ = ndimage.label(low)
    groups = [[int(discs[0])]]
    for d in discs[1:]:
        d0 = groups[-1][-1]
        mid = (d0 + int(d)) // 2
        between = p[d0 + 1:int(d)]
        # (no farther apart than a tall disc: a low body, a lesion, between two discs is not one)
        if int(d) - groups[-1][0] <= max_sep and between.size and \
                float(np.percentile(between, 75)) < base[mid] - thr[mid]:
            groups[-1].append(int(d))
        else:
            groups.append([int(d)])
    out = []
    for g in groups:
        if len(g) == 1:
            out.append(g[0])
            continue
        lo_, hi_ = g[0], g[-1]
        for e in (g[0], g[-1]):
            if lab[e]:
                run = np.nonzero(lab == lab[e])[0]
                lo_, hi_ = min(lo_, int(run[0])), max(hi_, int(run[-1]))
        sl = np.arange(lo_, hi_ + 1)
        inside = sl[low[sl]]
        out.append(int(round(float(inside.mean()))) if inside.size else (lo_ + hi_) // 2)
    return np.asarray(out, dtype=discs.dtype)


def levels_from_bodies(profile_hu, z_mm, top_vertebra, cranial_step):
    """Level coordinate per slice from the vertebral body / disc profile, named from the top.

    Discs are the minima of the profile between denser bodies; two minima of one disc (its two
    edges) count once (:func:`_merge_split_discs`). The most cranial body whose height is at
    least 60 % of the next one's is ``top_vertebra``.

    Parameters
    ----------
    profile_hu : ndarray, shape (Z,), HU (see :func:`body_profile`)
    z_mm : ndarray, shape (Z,), LPS z of each slice
    top_vertebra : str
    cranial_step : int

    Returns
    -------
    level_coord : ndarray, shape (Z,), NaN outside the bodies found
    discs_z : ndarray, slice indices of the discs found (cranial first)
    """
    try:
        top = _lv.index(top_vertebra)
    except ValueError as exc:
        raise AnalysisError(f"--top-vertebra: {exc}")
    nz = profile_hu.size
    dz = float(np.median(np.abs(np.diff(z_mm)))) if nz > 1 else 1.0
    # order slices cranial -> caudal
    order = np.arange(nz)[::-1] if cranial_step > 0 else np.arange(nz)
    p = profile_hu[order]
    p = ndimage.gaussian_filter1d(p, max(0.3, 1.0 / dz), mode="nearest")
    min_sep = max(2, int(round(11.0 / dz)))  # bodies are >= ~12 mm tall
    # discs are minima clearly below the bodies around them (a body's own centre, between two
    # dense endplates, is a minimum too, but at the level of the bodies)
    base = ndimage.median_filter(p, size=max(3, int(round(70.0 / dz))) | 1, mode="reflect")
    low = float(np.percentile(p, 5))
    cand, _ = signal.find_peaks(-p, distance=min_sep)
    depth = base[cand] - p[cand]
    thr = np.maximum(40.0, 0.3 * (base - low))
    discs = cand[depth >= thr[cand]]
    discs = _merge_split_discs(p, discs, base, thr, max_sep=max(1, int(round(20.0 / dz))))
    # a disc hidden by calcification: a gap much taller than its neighbours gets its lowest point
    changed = True
    while changed and discs.size >= 3:
        changed = False
        gaps = np.diff(discs)
        for k, g in enumerate(gaps):
            nb = np.concatenate([gaps[max(0, k - 2):k], gaps[k + 1:k + 3]])
            if nb.size and g > 1.6 * np.median(nb):
                lo_, hi_ = discs[k] + min_sep // 2, discs[k + 1] - min_sep // 2
                if hi_ > lo_:
                    mid = (discs[k] + discs[k + 1]) // 2
                    discs = np.sort(np.append(discs, mid))
                    changed = True
                    break
    # a spurious disc inside a body splits it into two short pieces whose sum is one body
    changed = True
    while changed and discs.size >= 5:
        changed = False
        gaps = np.diff(discs)
        for k in range(gaps.size - 1):
            g1, g2 = gaps[k], gaps[k + 1]
            nb = np.concatenate([gaps[max(0, k - 2):k], gaps[k + 2:k + 4]])
            if nb.size < 2:
                continue
            med = float(np.median(nb))
            if g1 < 0.6 * med and g2 < 0.6 * med and abs(g1 + g2 - med) < 0.3 * med:
                discs = np.delete(discs, k + 1)
                changed = True
                break
    if discs.size < 2:
        raise AnalysisError("could not find vertebral bodies and discs along the canal to name "
                            "the levels; give --levels LABELMAP")
    heights = np.diff(discs)
    centres = list((discs[:-1] + discs[1:]) / 2.0)
    # the partial segment above the first disc counts when it is nearly a whole body
    if discs[0] >= 0.6 * heights[0] and discs[0] > 1:
        centres.insert(0, discs[0] - heights[0] / 2.0)
    # and below the last disc
    if (len(p) - 1 - discs[-1]) >= 0.6 * heights[-1]:
        centres.append(discs[-1] + heights[-1] / 2.0)
    centres = np.asarray(centres)
    coords = top + np.arange(centres.size, dtype=float)
    last = len(_lv.VERTEBRAE) - 1
    if coords[-1] > last + 4.5:
        raise AnalysisError(f"--top-vertebra {top_vertebra} does not fit: {centres.size} vertebral "
                            f"bodies found below it, more than the spine has")
    # segments below S1 are the fused sacrum (S2..S5): not named
    keep = coords <= last
    centres, coords = centres[keep], coords[keep]
    if centres.size < 1:
        raise AnalysisError(f"--top-vertebra {top_vertebra} does not fit the bodies found")
    coord_c2c = _coord_from_centres(centres, coords, nz)
    out = np.empty(nz)
    out[order] = coord_c2c
    return out, order[discs]


# --------------------------------------------------------------------------------------------
# The whole anatomy
# --------------------------------------------------------------------------------------------

def inner_enhancing(peak_hu, canal, rr_mm, sectors, min_peak_hu=60.0, quantile=40.0):
    """The sac's inner rim: per slice and sector, the enhancing canal voxels nearest the centre.

    Whatever else fills in the canal (an epidural collection, a leak) lies outside the dura, so
    the innermost enhancing voxels of each sector are intrathecal.

    Returns
    -------
    ndarray, shape (Z, Y, X), bool
    """
    out = np.zeros(peak_hu.shape, bool)
    enh = canal & (peak_hu >= min_peak_hu)
    for z in range(peak_hu.shape[0]):
        if not enh[z].any():
            continue
        for s in range(4):
            m = enh[z] & (sectors[z] == s)
            if m.sum() < 2:
                continue
            r_q = np.percentile(rr_mm[z][m], quantile)
            out[z] |= m & (rr_mm[z] <= r_q)
    return out


def half_rise_time(curves, times_s):
    """When a normalised enhancement curve first reaches one half, interpolated between passes.

    Parameters
    ----------
    curves : sequence of P arrays (any common shape S), normalised enhancement (peak = 1)
    times_s : sequence of P arrays broadcastable to S, acquisition time, s

    Returns
    -------
    ndarray, shape S, float32, s; NaN where the curve never reaches one half
    """
    out = np.full(np.shape(curves[0]), np.nan, dtype=np.float32)
    prev_c = prev_t = None
    for c, t in zip(curves, times_s):
        c = np.asarray(c, dtype=np.float32)
        t = np.broadcast_to(np.asarray(t, dtype=np.float32), c.shape)
        hit = np.isnan(out) & (c >= 0.5)
        if prev_c is None:
            out[hit] = t[hit]
        else:
            with np.errstate(invalid="ignore", divide="ignore"):
                f = (0.5 - prev_c) / (c - prev_c)
            f = np.clip(np.nan_to_num(f, nan=1.0), 0.0, 1.0)
            val = prev_t + f * (t - prev_t)
            out[hit] = val[hit]
        prev_c, prev_t = c, t
    return out


def coupling(enh_passes, peak_hu, core, height_mm, slice_times_s, z_sigma_slices=1.0,
             min_peak_hu=60.0, bin_mm=1.5, slack_s=3.0, half_rise_s=None):
    """How late each voxel fills compared with the sac at its slice and height along gravity.

    Contrast is heavier than CSF and layers: the dependent part of the sac fills first. The
    reference curve of a slice and height is the median enhancement of the ``core`` voxels (the
    sac's inner rim, see :func:`inner_enhancing`) at that height; voxels beyond the core's range
    of heights take the nearest one. A voxel's lag is the time its own curve, normalised to its
    peak, reaches one half, minus the time the reference does: structures that fill with the sac
    (root sleeves, diverticula, partial volume at the sac's edge, the sac's own upper part) have a
    lag near 0; a leak fills later (lag > 0), or, fed along a collection from elsewhere, earlier.

    Parameters
    ----------
    enh_passes : sequence of P arrays, shape (Z, Y, X), HU
    peak_hu : ndarray, shape (Z, Y, X), HU
    core : ndarray, shape (Z, Y, X), bool
    height_mm : ndarray, shape (Z, Y, X), mm; offset of each voxel from the canal centre
        towards the dependent side
    slice_times_s : ndarray, shape (P, Z), s
    z_sigma_slices : float, smoothing of the reference curves along z
    bin_mm : float, height resolution of the reference
    slack_s : float, s; how much later than the heights above it a height's reference may fill
    half_rise_s : ndarray, shape (Z, Y, X), s, or None; when each voxel reached half its peak
        (:func:`leakloc.kernels.half_rise` of ``enh_passes`` and ``peak_hu``, computed here
        when None)

    Returns
    -------
    lag_s : ndarray, shape (Z, Y, X), float32, s; NaN where peak < min_peak_hu or the reference
        never enhanced
    reached : ndarray, shape (Z,), bool; slices whose core enhanced
    tol_s : ndarray, shape (Z, Y, X), float32, s; the largest lag that still counts as filling
        with the sac: a fraction of the gap between the passes where its reference reaches
        one half (:func:`coupling_tolerance_s` is the study-wide version)
    """
    p = len(enh_passes)
    nz = peak_hu.shape[0]
    n_h = int(round(40.0 / bin_mm))
    hb = np.clip(np.round(height_mm / bin_mm).astype(np.int32) + n_h // 2, 0, n_h - 1)
    ok_core = core & (peak_hu >= min_peak_hu)
    ref = np.full((p, nz, n_h), np.nan)
    allref = np.full((p, nz), np.nan)
    support = np.zeros((nz, n_h), np.int32)
    for z in range(nz):
        m = ok_core[z]
        if m.sum() < 3:
            continue
        ez = np.stack([np.asarray(e[z])[m] for e in enh_passes])     # (P, n)
        allref[:, z] = np.median(ez, axis=1)
        bz = hb[z][m]
        have = []
        for b in np.unique(bz):
            mb = bz == b
            if mb.sum() >= 2:
                ref[:, z, b] = np.median(ez[:, mb], axis=1)
                have.append(b)
                support[z, b] = mb.sum()
        if have:
            # heights beyond the core's take the nearest height the core has
            have = np.asarray(have)
            idx = np.arange(n_h)
            near = have[np.abs(idx[:, None] - have[None, :]).argmin(axis=1)]
            missing = ~np.isfinite(ref[0, z])
            ref[:, z, missing] = ref[:, z, near[missing]]
    ref = np.where(np.isfinite(ref), ref, allref[..., None])
    reached = np.isfinite(allref).any(axis=0) & \
        (np.nanmax(np.nan_to_num(allref, nan=0.0), axis=0) >= SAC_ENH_HU)
    if z_sigma_slices > 0:
        fin = np.isfinite(ref)
        w = ndimage.gaussian_filter1d(fin.astype(float), z_sigma_slices, axis=1, mode="nearest")
        sm = ndimage.gaussian_filter1d(np.where(fin, ref, 0.0), z_sigma_slices, axis=1,
                                       mode="nearest")
        ref = np.where(w > 1e-3, sm / np.maximum(w, 1e-6), np.nan)
    mx = np.nanmax(np.nan_to_num(ref, nan=-np.inf), axis=0)
    nref = ref / np.where(mx > SAC_ENH_HU * 0.5, mx, np.nan)[None]          # (P, Z, H)
    st = np.asarray(slice_times_s, dtype=np.float32)
    t_ref = half_rise_time(list(nref), [st[k][:, None] for k in range(p)])  # (Z, H)
    if half_rise_s is None:
        from leakloc.kernels import half_rise
        half_rise_s = half_rise([np.ascontiguousarray(e, dtype=np.float32) for e in enh_passes],
                                np.ascontiguousarray(peak_hu, dtype=np.float32),
                                np.asarray(slice_times_s, dtype=np.float64))
    elif np.shape(half_rise_s) != np.shape(peak_hu):
        raise ValueError(f"half_rise_s must have shape {np.shape(peak_hu)}, "
                         f"got {np.shape(half_rise_s)}")
    t_vox = half_rise_s
    # where the sac itself reached half its peak only in the last pass, there is no time
    # course to compare with: no lag is measured there
    t_ref = np.where(t_ref > st[-1][:, None] - 0.5, np.nan, t_ref)
    # the dependent side fills first: a height fills no later than the heights above it (give
    # or take ``slack_s``). A reference that does (contaminated by a collection lying on the
    # dependent side of the sac, whose voxels sit at those heights) is pulled back
    # (only heights the core really covers, with a strong curve, set that bound: a few noisy
    # voxels must not)
    solid = np.isfinite(t_ref) & (support >= 5) & (mx >= SAC_ENH_HU)
    earliest = np.minimum.accumulate(np.where(solid, t_ref, np.inf), axis=1)
    t_ref = np.where(np.isfinite(t_ref), np.minimum(t_ref, earliest + slack_s), np.nan)
    t_ref = t_ref.astype(np.float32)
    zi = np.arange(nz)[:, None, None]
    t_ref_vox = t_ref[zi, hb]
    lag = t_vox - t_ref_vox
    lag[peak_hu < min_peak_hu] = np.nan
    # the sac's half-rise time is only as precise as the gap between the passes around it: the
    # lag a voxel may have and still fill with the sac grows with that gap
    tol = np.maximum(COUPLING_MIN_S, COUPLING_FRACTION * _bracket_s(t_ref_vox, st))
    tol = tol.astype(np.float32)
    return lag.astype(np.float32), reached, tol


def _bracket_s(t_s, slice_times_s):
    """Gap (s) between the two passes around each time, per slice; 0 where ``t_s`` is NaN.

    t_s : ndarray, shape (Z, ...), s; slice_times_s : ndarray, shape (P, Z), s
    """
    st = np.asarray(slice_times_s, dtype=np.float32)
    p = st.shape[0]
    extra = (None,) * (np.ndim(t_s) - 1)
    k = np.zeros(np.shape(t_s), np.int16)
    for j in range(p):
        k += st[j][(slice(None),) + extra] < t_s
    k = np.clip(k, 1, p - 1)
    zi = np.arange(st.shape[1]).reshape((-1,) + (1,) * (np.ndim(t_s) - 1))
    out = st[k, zi] - st[k - 1, zi]
    return np.where(np.isfinite(t_s), out, 0.0).astype(np.float32)


def first_pass_index(arrival_s, slice_times_s):
    """Index of the first pass in which each voxel is enhanced (P where never).

    Parameters
    ----------
    arrival_s : ndarray, shape (Z, Y, X), s, NaN = never
    slice_times_s : ndarray, shape (P, Z), s

    Returns
    -------
    ndarray, shape (Z, Y, X), int16
    """
    p = slice_times_s.shape[0]
    k = np.full(arrival_s.shape, p, dtype=np.int16)
    fin = np.isfinite(arrival_s)
    for j in range(p - 1, -1, -1):
        k[fin & (arrival_s <= slice_times_s[j][:, None, None] + 1e-3)] = j
    return k


def level_list(level_coord, z_mm):
    """The vertebrae present, cranial first, from the level coordinate of every slice."""
    out = []
    fin = np.isfinite(level_coord)
    if not fin.any():
        return out
    dz = float(np.median(np.abs(np.diff(z_mm)))) if z_mm.size > 1 else 1.0
    near = np.round(np.where(fin, level_coord, -99)).astype(int)
    for i in range(len(_lv.VERTEBRAE)):
        sl = np.nonzero(near == i)[0]
        if sl.size == 0:
            continue
        zr = (float(z_mm[sl].min() - dz / 2), float(z_mm[sl].max() + dz / 2))
        out.append(Level(name=_lv.VERTEBRAE[i], coord=float(i), z_range_mm=zr,
                         slices=(int(sl.min()), int(sl.max()))))
    return out


def coupling_tolerance_s(slice_times_s):
    """Largest lag (s) that still counts as filling with the sac: a fraction of a pass interval."""
    t = np.sort(np.asarray(slice_times_s, float).mean(axis=1))
    iv = float(np.median(np.diff(t))) if t.size > 1 else 10.0
    return max(COUPLING_MIN_S, COUPLING_FRACTION * iv)


def build_anatomy(baseline, peak_hu, enh_passes, slice_times_s, spacing_mm, direction, z_mm,
                  centre_yx, patient_position="", labelmap=None, top_vertebra=None,
                  full_shape=None, roi_yx=(0, None, 0, None), shell_mm=25.0, reached=None,
                  half_rise_s=None):
    """Canal, sac, epidural space, paraspinal shell, sectors and levels of one study.

    Works on a region of interest around the canal; the returned masks are on the full grid.

    Parameters
    ----------
    baseline : ndarray, shape (Z, Y, X), HU; pre-contrast pass or temporal minimum (ROI)
    peak_hu : ndarray, shape (Z, Y, X), HU; peak enhancement over baseline (ROI)
    enh_passes : sequence of P arrays; enhancement of each pass, shape (Z, Y, X), HU (ROI)
    slice_times_s : ndarray, shape (P, Z), s
    spacing_mm : (x, y, z) mm; direction : 9 direction cosines; z_mm : ndarray, shape (Z,)
    centre_yx : ndarray, shape (Z, 2), coarse canal centre in ROI voxels
    labelmap : ndarray, shape (Z, Y, X), int, or None (ROI)
    top_vertebra : str or None
    full_shape : (Z, Y, X) of the full grid; roi_yx : (y0, y1, x0, x1) of the ROI in it
    reached : ndarray, shape (Z,), bool, or None; slices where ``centre_yx`` came from contrast
    half_rise_s : ndarray, shape (Z, Y, X), s, or None; when each voxel reached half its peak
        (see :func:`coupling`)

    Returns
    -------
    Anatomy
    """
    nz, ny, nx = baseline.shape
    sp_yx = (float(spacing_mm[1]), float(spacing_mm[0]))
    ventral, left, cranial_step = patient_axes(direction, spacing_mm)
    notes = []

    # 1. canal: cast rays from the contrast centre, then re-centre on the bony canal itself;
    #    where contrast never went, follow the bony canal slice by slice from where it did
    centre = np.asarray(centre_yx, dtype=float).copy()
    if reached is not None and reached.any() and not reached.all():
        centre = track_canal(baseline, centre, np.asarray(reached, bool), sp_yx)
    sigma = max(1.0, 8.0 / float(spacing_mm[2]))
    radius = None
    start = centre.copy()
    for _ in range(2):
        radius, closed = canal_radius(baseline, centre, sp_yx, return_closed=True)
        ang = 2 * np.pi * np.arange(radius.shape[1]) / radius.shape[1]
        # centroid of the canal polygon (area-weighted by r^2)
        w = radius ** 2
        off_y = (w * radius * np.cos(ang)).sum(1) / w.sum(1) * (2.0 / 3.0)
        off_x = (w * radius * np.sin(ang)).sum(1) / w.sum(1) * (2.0 / 3.0)
        off = np.stack([off_y / sp_yx[0], off_x / sp_yx[1]], 1)
        # only where the bony ring is closed (at a vertebra) does its centroid tell the centre:
        # at the foramina and interlaminar gaps the open rays pull it by a few mm per level
        ring = closed >= RING_CLOSED
        if ring.sum() >= max(3, 0.15 * nz):
            zi_ = np.arange(nz)
            off = np.stack([np.interp(zi_, zi_[ring], off[ring, k]) for k in range(2)], 1)
        centre = centre + smooth_along_z(off, sigma)
        # the canal holds the sac: its centre is never far from where the contrast is (bone
        # blurred by motion, or a broken ring, must not drag it away)
        d_mm = (centre - start) * np.array(sp_yx)
        r_mm = np.sqrt((d_mm ** 2).sum(axis=1, keepdims=True))
        centre = start + d_mm * np.minimum(1.0, MAX_RECENTRE_MM / np.maximum(r_mm, 1e-6)) / np.array(sp_yx)
    radius = canal_radius(baseline, centre, sp_yx)

    dy, dx = polar_grid(baseline.shape, centre, sp_yx)
    rr = np.sqrt(dy * dy + dx * dx)
    th = angle_of(dy, dx)
    n_ang = radius.shape[1]
    kf = th / (2 * np.pi) * n_ang
    k0 = np.floor(kf).astype(np.int32) % n_ang
    k1 = (k0 + 1) % n_ang
    f = (kf - np.floor(kf)).astype(np.float32)
    zi = np.arange(nz)[:, None, None]
    r_edge = (1 - f) * radius[zi, k0] + f * radius[zi, k1]
    del k0, k1, f, kf
    canal = rr <= r_edge

    # 2. sac: what fills *with* the intrathecal contrast. A voxel belongs to the sac when its
    #    time course is proportional to the sac core's at that slice and sector (the core lies
    #    well inside the dura); root sleeves, diverticula and partial volume do the same, while a
    #    leak lags behind (or, fed from elsewhere along a collection, runs ahead of) the sac.
    sectors = sector_map(dy, dx, ventral, left)
    core = inner_enhancing(peak_hu, canal, rr, sectors) | (canal & (rr <= CORE_FRACTION * r_edge))
    dep = side_vector(dependent_side(patient_position), ventral, left)
    height = dy * np.float32(dep[0]) + dx * np.float32(dep[1])
    tol_s = coupling_tolerance_s(slice_times_s)
    lag, reached, lag_tol = coupling(enh_passes, peak_hu, core, height, slice_times_s,
                                     half_rise_s=half_rise_s,
                                     z_sigma_slices=sigma / 4, slack_s=tol_s)
    del height
    coupled = (peak_hu >= SAC_ENH_HU * 0.5) & (np.abs(np.nan_to_num(lag, nan=99.0)) < lag_tol)
    plane = np.zeros((3, 3, 3), bool)
    plane[1] = ndimage.generate_binary_structure(2, 1)
    seed = canal & (coupled | (core & (peak_hu >= SAC_ENH_HU * 0.5)))
    seed = ndimage.binary_closing(seed, structure=plane, iterations=1)
    seed = ndimage.binary_fill_holes(seed, structure=plane) & canal
    no_contrast = ~reached
    water = canal & (baseline > -40.0) & (baseline < 150.0)
    sac = np.where(no_contrast[:, None, None], water, seed)
    if no_contrast.all():
        raise AnalysisError("intrathecal contrast never reaches the spinal canal in the field of view")
    if no_contrast.any():
        notes.append(f"contrast never reached {int(no_contrast.sum())} of {nz} slices")

    epidural = canal & ~sac
    shell = (~canal) & (rr <= r_edge + shell_mm) & (baseline < 200.0) & (baseline > -400.0)
    comp = np.zeros(baseline.shape, np.uint8)
    comp[shell] = PARASPINAL
    comp[epidural] = EPIDURAL
    comp[sac] = SAC

    # 3. levels
    if labelmap is not None:
        level_coord = levels_from_labelmap(labelmap, centre, sp_yx)
        notes.append("levels from the label map")
    elif top_vertebra:
        dz_mm = max(0.1, float(np.median(np.abs(np.diff(z_mm))))) if len(z_mm) > 1 else 1.0
        prof = body_profile(baseline, centre, radius, sp_yx, ventral, step_mm=dz_mm)
        level_coord, _ = levels_from_bodies(prof, z_mm, top_vertebra, cranial_step)
        notes.append(f"levels named from --top-vertebra {top_vertebra.upper()} and the bodies found")
    else:
        raise AnalysisError("no level anchor: give --levels LABELMAP or --top-vertebra NAME "
                            "(the most cranial vertebral body in the field of view)")
    lv = level_list(level_coord, np.asarray(z_mm, float))
    if not lv:
        raise AnalysisError("no vertebral level could be placed along the canal")

    # 4. embed into the full grid
    full_shape = tuple(full_shape) if full_shape is not None else baseline.shape
    y0, y1, x0, x1 = roi_yx
    y1 = y0 + ny if y1 is None else y1
    x1 = x0 + nx if x1 is None else x1
    comp_full = np.zeros(full_shape, np.uint8)
    comp_full[:, y0:y1, x0:x1] = comp
    sec_full = np.zeros(full_shape, np.uint8)
    sec_full[:, y0:y1, x0:x1] = sectors
    return Anatomy(centreline_yx=centre + np.array([y0, x0], float), compartments=comp_full,
                   sectors=sec_full, level_coord=level_coord, levels=lv,
                   ventral_yx=ventral, left_yx=left, cranial_step=cranial_step,
                   dependent=dependent_side(patient_position), notes=notes,
                   canal_radius_mm=radius, roi_yx=(y0, y1, x0, x1), lag_s=lag, core=core,
                   lag_tol_s=lag_tol)
