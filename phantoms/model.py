"""The phantom's physical model: parameters, spine geometry in patient LPS mm, and the renderer.

Everything here is analytic: a voxel's HU is a function of its LPS position and its acquisition
time, so a pass is rendered on demand, slab by slab, and rigid motion is a change of coordinates.
Coordinates relative to the canal centre on an axial plane: ``u`` (mm, + = patient left) and
``v`` (mm, + = posterior); ``z`` is LPS z (mm, + = superior). Level coordinate ``L`` as in
:mod:`leakloc.levels` (C1 = 0, S1 = 24, discs at halves).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.special import ndtr

from leakloc.levels import VERTEBRAE

N_VERT = len(VERTEBRAE)

# --------------------------------------------------------------------------------------------
# parameters


@dataclass
class DefectSpec:
    """One CSF leak.

    Attributes
    ----------
    kind : {'dural_tear', 'nerve_root_sleeve', 'csf_venous_fistula'}
    level_coord : float, level coordinate of the defect (``13.5`` = T7-T8)
    side : {'ventral', 'dorsal', 'left', 'right'}
    flow : {'slow', 'high'}; collection filling speed (dural tears) or leak growth
    offset_mm : float, lateral offset of a ventral/dorsal slit from the midline (mm, + = left)
    collection_levels : (cranial, caudal) extent of the epidural collection in levels from the
        defect (dural tears only)
    fistula_delay_s : float, onset of venous drainage after the intrathecal front reaches the level
    pseudomeningocele : bool, a large CSF pouch at the foramen (root avulsion) that the leak comes from
    """

    kind: str = "dural_tear"
    level_coord: float = 13.5
    side: str = "ventral"
    flow: str = "slow"
    offset_mm: float = 0.0
    collection_levels: tuple = (8.0, 4.0)
    fistula_delay_s: float = 9.0
    pseudomeningocele: bool = False


@dataclass
class PhantomParams:
    """Every knob of a phantom study. Times in s after the first pass began, lengths in mm, HU.

    ``defects`` empty = no leak. Confounder lists hold level coordinates (``calcified_discs``:
    ``(level_coord, u_mm)``; ``osteophytes``: ``(level_coord, u_mm)``; ``diverticula``:
    ``(level_coord, side)`` with side 'left'/'right'/'dorsal').
    """

    shape: str = "small"
    seed: int = 0
    patient_position: str = "HFP"
    coverage: tuple = ("C7", "L2")
    slice_order: str = "ascending"
    pre_contrast: bool = True
    pass_starts_s: tuple = (0.0, 12.0, 22.0, 33.0, 45.0, 120.0)
    pass_duration_s: float = 8.0
    first_direction: str = "craniocaudal"
    injection_time_s: float = 9.0
    injection_level: float = 21.0
    front_speed_mm_s: float = 12.0
    dispersion_mm2_s: float = 30.0
    peak_enhancement_hu: float = 1100.0
    far_enhancement_hu: float = 450.0
    mixing_time_s: float = 35.0
    defects: list = field(default_factory=list)
    calcified_discs: list = field(default_factory=list)
    osteophytes: list = field(default_factory=list)
    diverticula: list = field(default_factory=list)
    sealed_collection: tuple | None = None
    collection_thickness_mm: float = 3.5
    kyphosis: float = 1.0
    scoliosis_mm: float = 0.0
    motion_mm: float = 0.0
    motion_deg: float = 0.0
    noise_hu: float = 12.0
    streaks: bool = False
    blur_vox: float = 0.6
    size_xy: int | None = None
    spacing_xy_mm: float | None = None
    slice_mm: float | None = None
    z_subsamples: int | None = None


SHAPES = {  # in-plane size, in-plane spacing, slice thickness/spacing, z sub-samples
    "small": (64, 2.0, 3.0, 2),
    "medium": (128, 2.0, 2.0, 2),
    "fine": (128, 1.0, 2.0, 2),
    "full": (512, 0.7, 1.0, 1),
}


def shape_values(p: PhantomParams):
    n, sp, dz, ns = SHAPES[p.shape]
    return (p.size_xy or n, p.spacing_xy_mm or sp, p.slice_mm or dz, p.z_subsamples or ns)


# --------------------------------------------------------------------------------------------
# spine geometry

def _heights():
    """Body height and the disc below it for each vertebra, mm."""
    body, disc = [], []
    for name in VERTEBRAE:
        r, n = name[0], int(name[1:]) if name[1:] else 1
        if name == "C1":
            body.append(10.0), disc.append(3.0)
        elif name == "C2":
            body.append(18.0), disc.append(5.0)
        elif r == "C":
            body.append(14.0), disc.append(5.5)
        elif r == "T":
            body.append(17.5 + 0.65 * (n - 1)), disc.append(5.0 + 0.2 * (n - 1))
        elif r == "L":
            body.append(27.0 + 0.5 * (n - 1)), disc.append(9.0 + 0.3 * (n - 1))
        else:
            body.append(32.0), disc.append(4.0)
    return np.array(body), np.array(disc)


def _prof(L, knots, values):
    return np.interp(L, knots, values)


# level-coordinate profiles (knot positions in L): C1 0, C7 6, T1 7, T12 18, L1 19, L5 23, S1 24
_K = [-1.0, 0.0, 3.0, 6.0, 7.0, 12.0, 18.0, 19.0, 21.0, 24.0, 25.0]


class Spine:
    """Spine geometry tables: level coordinate, canal centre and sizes as functions of z.

    Parameters
    ----------
    params : PhantomParams
    """

    dz = 0.25  # table step, mm

    def __init__(self, params: PhantomParams):
        self.p = params
        h, d = _heights()
        self.body_h_mm, self.disc_h_mm = h, d
        top = np.empty(N_VERT)
        bot = np.empty(N_VERT)
        z = -20.0 + h[0] / 2.0
        for i in range(N_VERT):
            top[i] = z
            bot[i] = z - h[i]
            z = bot[i] - d[i]
        self.body_top_mm, self.body_bot_mm = top, bot
        zk, lk = [top[0] + 60.0], [-1.0 - 60.0 / 20.0]
        for i in range(N_VERT):
            zk += [top[i], (top[i] + bot[i]) / 2, bot[i], bot[i] - d[i] / 2]
            lk += [i - 0.25, float(i), i + 0.25, i + 0.5]
        zk += [bot[-1] - 80.0]
        lk += [N_VERT - 0.5 + 80.0 / 30.0]
        self._zk = np.array(zk)[::-1]
        self._lk = np.array(lk)[::-1]
        self.z0 = self._zk[0]
        self.table_z = np.arange(self._zk[0], self._zk[-1] + self.dz, self.dz)
        L = np.interp(self.table_z, self._zk, self._lk)
        self.table_L = L
        k = params.kyphosis

        def g(c, w):
            return np.exp(-0.5 * ((L - c) / w) ** 2)

        # sagittal curves (v = +posterior): cervical lordosis, thoracic kyphosis, lumbar lordosis
        self.table_yc = k * (-9.0 * g(3.0, 2.2) + 16.0 * g(12.5, 4.0) - 14.0 * g(21.5, 2.3)) + 4.0
        self.table_xc = params.scoliosis_mm * g(13.0, 3.5)
        # sizes (mm)
        self.canal_rx = _prof(L, _K, [12, 12, 11.5, 10.5, 9.0, 8.0, 8.5, 9.5, 10.5, 11.0, 11.0])
        self.canal_ry = _prof(L, _K, [10, 9.0, 7.5, 7.5, 7.5, 8.0, 8.0, 8.5, 9.0, 8.5, 8.5])
        self.sac_margin = _prof(L, _K, [1.2, 1.2, 1.3, 1.5, 2.0, 2.3, 2.5, 2.8, 3.0, 3.5, 3.5])
        self.body_rx = _prof(L, _K, [8, 8.0, 8.5, 10.0, 12.0, 15.0, 19.0, 21.0, 23.0, 24.0, 24.0])
        self.body_ry = _prof(L, _K, [7, 7.0, 7.5, 8.5, 9.5, 13.0, 14.5, 15.0, 16.0, 17.0, 17.0])
        conus = np.interp(L, [18.3, 19.3], [1.0, 0.0])
        self.cord_rx = _prof(L, _K, [7.0, 6.5, 6.5, 5.5, 4.6, 4.3, 4.3, 3.0, 0, 0, 0]) * conus
        self.cord_ry = _prof(L, _K, [5.0, 4.5, 4.2, 4.0, 3.8, 3.8, 3.8, 3.0, 0, 0, 0]) * conus
        self.outline_rx = _prof(L, _K, [70, 58, 55, 62, 140, 160, 155, 145, 145, 160, 160])
        self.outline_ry = _prof(L, _K, [75, 60, 58, 62, 100, 115, 110, 105, 105, 110, 110])
        self.outline_cv = -(self.outline_ry - _prof(L, _K, [50, 45, 45, 50, 55, 60, 60, 65, 70, 70, 70]))
        self.muscle_r = _prof(L, _K, [12, 12, 13, 15, 18, 20, 22, 25, 28, 26, 26])
        self.thorax = np.clip(_prof(L, [6.2, 7.0, 18.0, 19.2], [0, 1, 1, 0]), 0, 1)
        self.lung = np.clip(_prof(L, [6.5, 9.5, 15.5, 19.0], [0.25, 1, 1, 0.0]), 0, 1) * (L > 6.5)
        # foraminal root sleeves near each disc
        self.sleeve_L = np.arange(N_VERT) + 0.42
        self.sleeve_z = self.z_of(self.sleeve_L)

    # -- conversions -------------------------------------------------------------------------
    def L_of(self, z_mm):
        """Level coordinate at LPS z (mm)."""
        return np.interp(z_mm, self._zk, self._lk)

    def z_of(self, level_coord):
        """LPS z (mm) of a level coordinate (inverse of :meth:`L_of`)."""
        return np.interp(level_coord, self._lk[::-1], self._zk[::-1])

    def centre_xy(self, z_mm):
        """Canal centre (x, y) LPS mm at z."""
        return (np.interp(z_mm, self.table_z, self.table_xc),
                np.interp(z_mm, self.table_z, self.table_yc))

    def level_z_range(self, i):
        """(low, high) LPS z of level ``i`` from the disc centre below to the disc centre above."""
        return float(self.z_of(i + 0.5)), float(self.z_of(i - 0.5))

    def idx(self, z_mm):
        return np.clip(np.rint((z_mm - self.z0) / self.dz).astype(np.int64), 0, len(self.table_z) - 1)


# --------------------------------------------------------------------------------------------
# contrast physics


class Contrast:
    """Intrathecal front, leaks and fistulas as functions of (z, t).

    Parameters
    ----------
    params : PhantomParams
    spine : Spine
    """

    def __init__(self, params: PhantomParams, spine: Spine):
        self.p = params
        self.spine = spine
        self.z_inj = float(spine.z_of(params.injection_level))
        self.defects = []
        for d in params.defects:
            z = float(spine.z_of(d.level_coord))
            t_arr = float(self.arrival_s(z))
            onset = t_arr + (d.fistula_delay_s if d.kind == "csf_venous_fistula" else 0.0)
            high = d.flow == "high"
            info = {"spec": d, "z": z, "t_arrival": t_arr, "onset": onset,
                    "u_flow": 45.0 if high else 3.0,     # collection filling, mm/s
                    "lam": 250.0 if high else 70.0,      # concentration decay with distance, mm
                    "frac": 0.95 if high else 0.75}
            if d.kind == "dural_tear":
                up, down = d.collection_levels
                info["col_lo"] = float(spine.z_of(d.level_coord + down))
                info["col_hi"] = float(spine.z_of(d.level_coord - up))
            self.defects.append(info)

    def arrival_s(self, z_mm):
        """Time (s) the intrathecal front's midpoint reaches z."""
        s = np.asarray(z_mm, dtype=float) - self.z_inj
        v = self.p.front_speed_mm_s
        return self.p.injection_time_s + np.where(s >= 0, s / v, -s / (2.0 * v))

    def sac(self, z_mm, t_s):
        """Intrathecal enhancement (HU) at z and time t (same shapes)."""
        p = self.p
        z = np.asarray(z_mm, dtype=float)
        dt = np.asarray(t_s, dtype=float) - p.injection_time_s
        s = z - self.z_inj
        dist = np.abs(s)
        speed = np.where(s >= 0, p.front_speed_mm_s, 2.0 * p.front_speed_mm_s)
        dtp = np.maximum(dt, 0.0)
        sigma = 8.0 + np.sqrt(2.0 * p.dispersion_mm2_s * dtp)
        cmax = p.far_enhancement_hu + (p.peak_enhancement_hu - p.far_enhancement_hu) * np.exp(-dist / 220.0)
        c = cmax * ndtr((speed * dtp - dist) / sigma)
        return np.where(dt > 0, c, 0.0)

    def mixing(self, z_mm, t_s):
        """Layering weight in [0, 1]: 1 = fully layered on the dependent side, 0 = mixed."""
        since = np.asarray(t_s, dtype=float) - self.arrival_s(z_mm)
        return np.exp(-np.maximum(since + 6.0, 0.0) / self.p.mixing_time_s)

    def source(self, info, t_s):
        """Sac enhancement at the defect once it is open (HU); 0 before onset."""
        t = np.asarray(t_s, dtype=float)
        c = self.sac(np.full_like(t, info["z"]), t)
        return np.where(t > info["onset"], c, 0.0)

    def collection(self, info, z_mm, t_s):
        """Epidural collection enhancement from one dural tear (HU): fills from the defect outward."""
        z = np.asarray(z_mm, dtype=float)
        t = np.asarray(t_s, dtype=float)
        d = np.abs(z - info["z"])
        reach = info["onset"] + d / info["u_flow"]
        fill = 1.0 - np.exp(-np.maximum(t - reach, 0.0) / 3.0)
        eq = 1.0 - np.exp(-np.maximum(t - info["onset"], 0.0) / 60.0)
        spatial = (1.0 - eq) * np.exp(-d / info["lam"]) + eq * 0.9
        return info["frac"] * self.source(info, t) * fill * spatial

    def leak_blob(self, info, r_mm, t_s):
        """Foraminal/paraspinal contrast of a root-sleeve leak at distance r from the sleeve tip."""
        t = np.asarray(t_s, dtype=float)
        since = np.maximum(t - info["onset"], 0.0)
        grow = 1.0 - np.exp(-since / (4.0 if info["spec"].flow == "high" else 12.0))
        radius = 1.0 + 11.0 * grow
        inside = r_mm < radius
        return np.where(inside, 0.8 * self.source(info, t) * np.exp(-r_mm / 10.0) * grow, 0.0)

    def vein(self, info, d_mm, t_s):
        """Fistula vein enhancement (HU) at path distance d from the fistula (0 before onset)."""
        t = np.asarray(t_s, dtype=float)
        reach = info["onset"] + d_mm / 40.0
        rise = 1.0 - np.exp(-np.maximum(t - reach, 0.0) / 4.0)
        peak = info.get("vein_peak", 110.0)
        return peak * rise * np.exp(-d_mm / 180.0)


# --------------------------------------------------------------------------------------------
# rendering

HU = {"air": -1000.0, "fat": -100.0, "soft": 35.0, "lung": -850.0, "muscle": 50.0,
      "vein": 40.0, "cortical": 850.0, "cancellous": 240.0, "disc": 80.0, "epi_fat": -90.0,
      "csf": 5.0, "cord": 35.0, "dura": 40.0, "collection": 8.0, "rib": 420.0}


def _ell(a, b, ra, rb):
    return (a / np.maximum(ra, 1e-6)) ** 2 + (b / np.maximum(rb, 1e-6)) ** 2


def _dep_vector(position: str):
    """Unit vector (x, y) in LPS of gravity's dependent direction for a patient position."""
    pos = position.upper()
    if pos.endswith("P"):
        return np.array([0.0, -1.0])   # prone: anterior (ventral) is down
    if pos.endswith("DR"):
        return np.array([-1.0, 0.0])   # right side down
    if pos.endswith("DL"):
        return np.array([1.0, 0.0])
    return np.array([0.0, 1.0])        # supine: posterior


def render(spine: Spine, contrast: Contrast, x, y, z, t, with_labels=False, rng_pass=0):
    """HU (and optionally vertebra labels) at LPS points.

    Parameters
    ----------
    spine : Spine
    contrast : Contrast or None (None: no contrast, i.e. anatomy only)
    x, y, z : ndarray, same shape, LPS mm
    t : ndarray, same shape, acquisition time of each point, s
    with_labels : bool
        Also return the vertebra index (0 = C1 ... 24 = S1, -1 = not vertebral bone).

    Returns
    -------
    hu : ndarray float32, same shape; labels : ndarray int16 (when asked)
    """
    p = spine.p
    iz = spine.idx(z)
    L = spine.table_L[iz]
    u = x - spine.table_xc[iz]
    v = y - spine.table_yc[iz]
    crx, cry = spine.canal_rx[iz], spine.canal_ry[iz]
    brx, bry = spine.body_rx[iz], spine.body_ry[iz]
    hu = np.full(x.shape, HU["air"], dtype=np.float32)
    # body outline, subcutaneous fat
    orx, ory, ocv = spine.outline_rx[iz], spine.outline_ry[iz], spine.outline_cv[iz]
    e_out = _ell(u, v - ocv, orx, ory)
    hu[e_out < 1.0] = HU["fat"]
    hu[_ell(u, v - ocv, orx - 12, ory - 12) < 1.0] = HU["soft"]
    # lungs
    lf = spine.lung[iz]
    lung_rx, lung_ry = 0.33 * orx * lf, 0.72 * ory * lf
    for sgn in (-1.0, 1.0):
        lu = u - sgn * (brx + 8 + lung_rx)
        lv = v - (ocv + 0.12 * ory)
        m = (lf > 0) & (_ell(lu, lv, lung_rx, lung_ry) < 1.0)
        hu[m] = HU["lung"]
    # paraspinal muscles
    mr = spine.muscle_r[iz]
    for sgn in (-1.0, 1.0):
        m = _ell(u - sgn * (crx + 0.55 * mr), v - (cry + 0.9 * mr), 0.9 * mr, 1.1 * mr) < 1.0
        hu[m] = HU["muscle"]
    # ribs (T1..T12): a band following the thorax wall, sloping caudally as it runs anteriorly
    th = spine.thorax[iz]
    i_near = np.clip(np.rint(L), 0, N_VERT - 1).astype(np.int64)
    pfrac = L - i_near
    is_thor = (i_near >= 7) & (i_near <= 18)
    if np.any(is_thor & (th > 0)):
        rib_head_z = spine.z_of(i_near + 0.3)
        b_post = v - (cry * 0.2)
        rib_zoff = np.where(b_post < 0, 0.32 * (-b_post), 0.0)
        rib_z = rib_head_z - rib_zoff
        rr = np.sqrt(_ell(u, v - ocv, orx - 18, ory - 18))
        lateral_start = (np.abs(u) > crx + 12) | (v > cry + 4)
        rib = (is_thor & (np.abs(z - rib_z) < 4.0) & (np.abs(rr - 1.0) < 0.05) & lateral_start
               & (v > ocv - 0.7 * ory))
        neck = (is_thor & (np.abs(z - rib_head_z) < 4.0) & (np.abs(v - 2.0) < 4.5)
                & (np.abs(u) > crx + 14) & (rr < 1.0))
        hu[rib | neck] = HU["rib"]
    # paraspinal veins (azygos / hemiazygos / vertebral plexus), ventrolateral to the bodies
    vein_u = brx + 6.0
    vein_v = -(cry + bry)
    for sgn in (-1.0, 1.0):
        m = _ell(u - sgn * vein_u, v - vein_v, 3.0, 3.0) < 1.0
        hu[m] = HU["vein"]
    # vertebral bodies and discs
    hb = spine.body_h_mm[i_near]
    body_cv = -(cry + bry + 0.5)
    e_body = _ell(u, v - body_cv, brx, bry)
    in_body = (np.abs(pfrac) <= 0.25) & (L > -0.25) & (L < N_VERT - 0.75)
    in_disc = (~in_body) & (L > 0.25) & (L < N_VERT - 0.5)
    endplate = np.abs(pfrac) > 0.25 - 0.5 * 1.3 / hb
    bone_body = in_body & (e_body < 1.0)
    shell = bone_body & ((_ell(u, v - body_cv, brx - 1.6, bry - 1.6) >= 1.0) | endplate)
    hu[bone_body] = HU["cancellous"]
    hu[shell] = HU["cortical"]
    disc = in_disc & (_ell(u, v - body_cv, brx + 0.8, bry + 0.6) < 1.0)
    hu[disc] = HU["disc"]
    # posterior elements
    e_can = _ell(u, v, crx, cry)
    pedicle = ((pfrac >= -0.25) & (pfrac <= 0.1) & (np.abs(u) >= crx - 1.0) & (np.abs(u) <= crx + 5.0)
               & (v > -cry - 2.0) & (v < 0.3 * cry))
    ring = (e_can >= 1.0) & (_ell(u, v, crx + 4.5, cry + 4.5) < 1.0) & (v > 0.2 * cry)
    lamina = ring & (pfrac >= -0.15) & (pfrac <= 0.45)
    spinous = ((np.abs(u) < 2.8) & (v > cry + 2.0) & (v < cry + 30.0 - 12.0 * (pfrac + 0.1))
               & (pfrac >= 0.0 - 0.0) & (pfrac <= 0.48) & (e_out < 0.9))
    transverse = ((pfrac >= -0.2) & (pfrac <= 0.12) & (np.abs(u) > crx) & (np.abs(u) < crx + 20.0)
                  & (np.abs(v - 3.0) < 3.0))
    post = (pedicle | lamina | spinous | transverse) & (L > -0.5) & (L < N_VERT - 0.5)
    hu[post] = HU["cortical"] * 0.7
    labels = None
    if with_labels:
        labels = np.where(bone_body | post, i_near, -1).astype(np.int16)
    # canal: epidural fat, ventral epidural veins
    canal = e_can < 1.0
    hu[canal] = HU["epi_fat"]
    for sgn in (-1.0, 1.0):
        m = canal & (_ell(u - sgn * 0.55 * crx, v + 0.8 * cry, 1.6, 1.4) < 1.0)
        hu[m] = HU["vein"]
    # sac, displaced by an epidural collection (ventral or dorsal)
    smx = spine.sac_margin[iz]
    srx, sry = crx - smx, cry - smx
    scv = np.zeros_like(u)
    col_masks = []
    thick = p.collection_thickness_mm
    regions = []
    if contrast is not None:
        for info in contrast.defects:
            if info["spec"].kind == "dural_tear":
                regions.append((info["col_lo"], info["col_hi"], info["spec"].side, info))
    if p.sealed_collection is not None:
        lo_L, hi_L = p.sealed_collection
        regions.append((float(spine.z_of(hi_L)), float(spine.z_of(lo_L)), "ventral", None))
    for lo, hi, side, info in regions:
        sg = 1.0 if side == "dorsal" else -1.0
        span = max(hi - lo, 1.0)
        zz = np.clip((z - lo) / span, 0.0, 1.0)
        taper = np.sin(np.pi * zz) ** 0.5 * ((z > lo) & (z < hi))
        tk = thick * taper
        scv = scv - sg * 0.5 * tk
        sry_loc = np.maximum(sry - 0.5 * tk, 2.5)
        # collection = the slab of the canal beyond the displaced sac wall
        wall = sg * (scv + sg * sry_loc)  # distance of the sac wall on that side from the centre
        cmask = canal & (taper > 0) & (sg * v > wall + 0.6) & (np.abs(u) < 0.85 * srx)
        col_masks.append((cmask, info, sg, wall, taper > 0))
        sry = sry_loc
    e_sac = _ell(u, v - scv, srx, sry)
    sac = e_sac < 1.0
    for cmask, info, sg, wall, zone in col_masks:
        dura = canal & zone & (np.abs(sg * v - wall - 0.3) < 0.6) & (np.abs(u) < 0.85 * srx)
        hu[dura & ~sac] = HU["dura"]
        hu[cmask] = HU["collection"]
    hu[sac] = HU["csf"]
    cord = _ell(u, v - scv, spine.cord_rx[iz], np.minimum(spine.cord_ry[iz], sry - 1.0)) < 1.0
    hu[cord & sac] = HU["cord"]
    # nerve-root sleeves at every foramen, diverticula, pseudomeningoceles: fill with the sac
    i_s = np.clip(np.rint(L - 0.42), 0, N_VERT - 1).astype(np.int64)
    dzs = z - spine.sleeve_z[i_s]
    sleeve_any = np.zeros(x.shape, dtype=bool)
    for sgn in (-1.0, 1.0):
        su = sgn * u - (srx + 3.0)
        sl = (_ell(su, v + 0.5, 4.0, 2.2) + (dzs / 2.6) ** 2 < 1.0) & (L > 0.2) & (L < N_VERT - 1)
        sleeve_any |= sl
    pouch_any = np.zeros(x.shape, dtype=bool)
    pouches = [(lc, side, 4.5) for lc, side in p.diverticula]
    pouches += [(d.level_coord, d.side, 9.0) for d in p.defects if d.pseudomeningocele]
    for lc, side, rad in pouches:
        zc = float(spine.z_of(lc))
        if side in ("left", "right"):
            sgn = 1.0 if side == "left" else -1.0
            cu, cv = sgn * (srx + 3.0 + 0.8 * rad), 0.0 * u
        else:
            cu, cv = 0.0, (cry + rad * 0.8) * (1.0 if side == "dorsal" else -1.0)
        pm = _ell(u - cu, v - cv, rad, rad * 0.8) + ((z - zc) / (rad * 1.1)) ** 2 < 1.0
        pouch_any |= pm
    fluid_out = (sleeve_any | pouch_any) & ~sac
    hu[fluid_out & ~bone_body] = HU["csf"]
    # confounders dense at baseline
    for lc, cu in p.calcified_discs:
        zc = float(spine.z_of(lc))
        m = (_ell(u - cu, v - (-cry + 1.0), 4.0, 2.6) + ((z - zc) / 3.0) ** 2) < 1.0
        hu[m] = np.maximum(hu[m], 650.0)
    for lc, cu in p.osteophytes:
        zc = float(spine.z_of(lc))
        for k, du in enumerate((-3.0, 0.0, 3.0)):
            length = 4.5 if k != 1 else 3.0
            m = (_ell(u - cu - du, (v + cry + 0.5) - length / 2, 0.9, length / 2 + 0.5)
                 + ((z - zc - 0.8 * (k - 1)) / 1.6) ** 2) < 1.0
            hu[m] = np.maximum(hu[m], 750.0)
    if contrast is None:
        return (hu, labels) if with_labels else hu
    # ---- contrast ---------------------------------------------------------------------------
    enh = np.zeros(x.shape, dtype=np.float32)
    filled = (sac & ~cord) | fluid_out
    if np.any(filled):
        zf, tf = z[filled], t[filled]
        c = contrast.sac(zf, tf)
        dep = _dep_vector(p.patient_position)
        w = (dep[0] * u[filled] / srx[filled] + dep[1] * (v[filled] - scv[filled]) / sry[filled])
        m = contrast.mixing(zf, tf)
        lay = (1.0 - m) + m * (1.0 + np.tanh(2.5 * w))
        pf = pouch_any[filled] & ~sac[filled]
        lay = np.where(pf, 0.8, lay)
        enh[filled] = (c * lay).astype(np.float32)
    for cmask, info, sg, wall, zone in col_masks:
        if info is None or not np.any(cmask):
            continue
        enh[cmask] = contrast.collection(info, z[cmask], t[cmask]).astype(np.float32)
    for info in contrast.defects:
        d = info["spec"]
        if d.kind == "dural_tear":
            sg = 1.0 if d.side == "dorsal" else -1.0
            jet = ((np.abs(z - info["z"]) < 3.0) & (np.abs(u - d.offset_mm) < 1.6) & canal
                   & (sg * (v - scv) > 0.0))
            jet &= ~cord
            if np.any(jet):
                src = contrast.source(info, t[jet])
                enh[jet] = np.maximum(enh[jet], (0.9 * src).astype(np.float32))
        elif d.kind == "nerve_root_sleeve":
            sgn = 1.0 if d.side == "left" else -1.0
            extra = 9.0 if d.pseudomeningocele else 0.0
            cu = sgn * (srx + 8.0 + 1.6 * extra)
            r = np.sqrt((u - cu) ** 2 + (v + 1.0) ** 2 + (z - info["z"]) ** 2)
            near = r < 14.0
            if np.any(near):
                add = contrast.leak_blob(info, r[near], t[near]).astype(np.float32)
                enh[near] = np.maximum(enh[near], add * (hu[near] > -500))
        elif d.kind == "csf_venous_fistula":
            sgn = 1.0 if d.side == "left" else -1.0
            # foraminal vein from the sleeve to the paraspinal vein, then the longitudinal vein
            fu0, fu1 = sgn * (srx + 4.0), sgn * vein_u
            along = (u - fu0) * sgn
            seg_len = np.abs(fu1 - fu0) + np.abs(vein_v)
            fvv = vein_v * np.clip(along / np.maximum(seg_len, 1e-6), 0, 1)
            fvein = ((along > 0) & (along < np.abs(fu1 - fu0)) & (np.abs(v - fvv) < 2.0)
                     & (np.abs(z - info["z"]) < 2.2))
            lvein = (_ell(u - sgn * vein_u, v - vein_v, 3.0, 3.0) < 1.0)
            path = np.where(fvein, np.maximum(along, 0.0),
                            np.abs(fu1 - fu0) + np.abs(z - info["z"]))
            vm = (fvein | lvein) & (np.abs(z - info["z"]) < 120.0)
            if np.any(vm):
                enh[vm] = np.maximum(enh[vm], contrast.vein(info, path[vm], t[vm]).astype(np.float32))
                hu[vm & fvein] = HU["vein"]
    hu += enh
    return (hu, labels) if with_labels else hu
