"""Defect detection: where contrast leaves the sac first, what kind of leak it is, how sure."""
from __future__ import annotations

from dataclasses import dataclass, field

KINDS = ("dural_tear", "nerve_root_sleeve", "csf_venous_fistula")
SIDES = ("ventral", "dorsal", "left", "right")


@dataclass
class Defect:
    """One probable dural defect (or a ranked candidate).

    Attributes
    ----------
    level : str, vertebra or interspace name (``'T7-T8'``)
    level_coord : float, level coordinate
    z_mm : float, LPS z of the defect, mm
    side : str, one of SIDES
    kind : str, one of KINDS
    onset_time_s : float, when extravasated contrast first appears there, s after the first pass
    confidence : float in [0, 1]
    delay_s : float, onset minus the local intrathecal arrival, s
    slice_index : int; yx : (y, x) voxel of the defect on that slice
    evidence : dict, the numbers behind the call
    """

    level: str
    level_coord: float
    z_mm: float
    side: str
    kind: str
    onset_time_s: float
    confidence: float
    delay_s: float = float("nan")
    slice_index: int = -1
    yx: tuple = (float("nan"), float("nan"))
    evidence: dict = field(default_factory=dict)

    def to_report(self) -> dict:
        """The ``report.json`` entry (schema ``leakloc.report/1``)."""
        return {"level": self.level, "z_mm": round(float(self.z_mm), 2), "side": self.side,
                "kind": self.kind, "onset_time_s": round(float(self.onset_time_s), 2),
                "confidence": round(float(self.confidence), 3)}


# --------------------------------------------------------------------------------------------
# Candidates from the extravasated contrast
# --------------------------------------------------------------------------------------------

import math  # noqa: E402

import numpy as np  # noqa: E402
from scipy import ndimage, signal  # noqa: E402

from leakloc import anatomy as _an  # noqa: E402
from leakloc import levels as _lv  # noqa: E402

#: peak enhancement (HU) that makes a voxel outside the sac extravasated contrast
EXTRAVASATION_HU = 90.0
#: a fistula's vein: enhancement and absolute density (HU)
VENOUS_ENH_HU, VENOUS_ABS_HU = 30.0, 70.0
#: denser than this (enhancement, HU) is CSF contrast, not a vein
VENOUS_MAX_ENH_HU = 350.0
#: a vein seen in the last pass only counts from this enhancement (HU; the fistula's 70 HU rise)
VENOUS_LAST_PASS_HU = 70.0
#: a candidate whose 95th percentile enhancement (HU) reaches this holds CSF contrast: a leak
#: through a sleeve, not a fistula's vein
CSF_DENSE_HU = 300.0
#: a voxel within LUNG_EDGE_MM (in the axial plane) of aerated lung or air (baseline under
#: AERATED_HU) whose own baseline is under LUNG_EDGE_HU holds lung in part (fat is -100, soft
#: tissue and fluid denser): contrast never fills lung, and at its edge a shift of a fraction
#: of a voxel between passes, a breath or the patient's, changes the density by 100 HU or
#: more. (Fat, however noisy its baseline, is not lung unless lung lies beside it.) (HU, HU, mm)
LUNG_EDGE_HU, AERATED_HU, LUNG_EDGE_MM = -150.0, -400.0, 2.0
#: contrast outside the sac this long before the local intrathecal arrival came from elsewhere, s
AHEAD_S = 3.0
#: below this fraction of the densest sac voxel within 2 mm, a voxel's enhancement is blur
SPILL_FRACTION = 0.25
#: a ventral or dorsal collection seen over at least this length (mm) is placed by its V-fit
V_FIT_MIN_MM = 20.0
#: how far beyond the seen ends of a collection its defect may lie (it filled with the sac
#: there), mm
V_EXTEND_MM = 20.0
#: extravasation this much of which was first seen in one pass has no time course along the spine
ONE_PASS_FRACTION = 0.95
#: percentiles of a collection's arrival tried as the cap of its V (see :func:`_v_fit`)
CAP_PERCENTILES = (50.0, 75.0, 90.0)
#: and the least depth of a dip below its cap, s
CAP_MIN_DEPTH_S = 5.0
#: a slice whose arrival (the sac's, or extravasation's) is within this of the first pass's time
#: there was already filled in the first pass: it has no time course. The tolerance covers only
#: the spread of the times of neighbouring slices (arrivals are filtered along the spine): an
#: arrival interpolated between the first and second passes can lie a fraction of a second
#: after the first when dense contrast crosses the threshold early in the interval (0.5 s,
#: formerly the tolerance, left a sleeve leak at the level of the injection untimed)
FIRST_PASS_TOL_S = 0.15
#: smallest candidate worth a look, mm^3
MIN_VOLUME_MM3 = 12.0
#: an epidural collection in front of the sac this large is a leak whatever its timing, mm^3
COLLECTION_MM3 = 500.0
#: a dorsal collection on the dependent side of the sac (a supine patient) this large is a leak
#: even when it fills with the sac, mm^3 (the sac's dense dependent edge left up to 1522 mm^3 of
#: contrast outside it in supine studies without a dorsal leak, seeds 140-199 and 900-1099;
#: supine dorsal tears 3500-10700). A study without PatientPosition is taken as supine
#: (anatomy.dependent_side)
DEPENDENT_COLLECTION_MM3 = 2500.0
#: contrast outside the canal beside it (a lateral pool, through the foramen) this large is a
#: sleeve leak whatever its timing: a root sleeve holds tens of mm^3, a meningeal diverticulum
#: a few hundred (the phantoms' 340), the phantoms' pseudomeningocele pouch about 2700 (only
#: with a leak; it fills with the sac). The pool of a high-flow sleeve leak fills in one
#: interval, with the sac, and where the sac first filled in the last pass a pool has nothing
#: to be timed against: its size is all that sets it apart. On seeds 13000-13099 no lateral
#: candidate outside the canal over 800 mm^3 was anything but a leak or a fistula's vein;
#: sleeve leaks' pools were 1500-6500 mm^3, those missed for want of timing 3300-4800. Most
#: of it (LATERAL_POOL_PARASPINAL) must lie outside the canal
LATERAL_POOL_MM3, LATERAL_POOL_PARASPINAL = 3000.0, 0.6
#: where the sac first filled in the last pass, a lateral pool that large (mm^3, and
#: LATERAL_POOL_PARASPINAL of it outside the canal) is a leak: there nothing fills later than
#: the sac, so the pool is first seen with it, as a pouch or a sleeve is, and its size is all
#: that can set it apart. That is four times the phantoms' meningeal diverticulum (340; 1 cm
#: across, about 500 in a patient) and more than twice POUCH_MAX_MM3. The untimed sleeve
#: leaks missed on seeds 20000-20099 left pools of 2260-3300 mm^3 (20005, 20048, 20063); on
#: 14 development controls whose front came in the last pass somewhere, 1000 made no call.
#: Where a pool can be timed, LATERAL_POOL_MM3 applies
UNTIMED_POOL_MM3 = 1500.0
#: ... and a vein as long as UNTIMED_VEIN_MM along the spine, no thicker than VEIN_THIN_MM,
#: its median peak under VEIN_DENSE_HU (mm, mm, HU) is a fistula's: no paraspinal vein
#: opacifies in a myelogram but through one, and what else fills with the sac beside the
#: canal is short (a root sleeve, 6 mm along the spine; a diverticulum, 10) and denser
#: (median peak 150-300 HU). The fistulas missed for want of timing on development seeds
#: (19020, 19092) had veins 52-94 mm long, 3 mm thick, median peak 96-97 HU
UNTIMED_VEIN_MM, VEIN_THIN_MM, VEIN_DENSE_HU = 40.0, 5.0, 150.0
#: ... in a study of this many passes or more: with two, every slice the sac filled in is one
#: the front reached in the last pass, and the whole study would be judged so
UNTIMED_MIN_PASSES = 3
#: smallest extravasation that counts as a leak, mm^3 (root-sleeve tips are smaller)
MIN_LEAK_MM3 = 80.0
#: without a pre-contrast pass (``Voxels.precontrast``), extravasation of which this share or
#: more (of its voxels outside the sac with an arrival) was already there in the first pass is
#: not a leak: it was there before anything could be timed (put outside the sac by the needle,
#: or, at the injection where the sac is densest, the misregistration of a pass that moved).
#: On development seeds 17000-17099 such false calls had 0.40-0.59, leaks 0.07 and 0.20
FIRST_PASS_OUTSIDE = 1.0 / 3.0
#: a sleeve-like blob beside the canal smaller than this (mm^3) that stays at its level is a
#: pouch that fills with the sac (a meningeal diverticulum, 1 cm across, about 500 mm^3; the
#: phantoms' 340), not a leak, even when it reaches half its peak a few seconds after the sac's
#: earliest voxels (its edges are partial volume; the sac's dependent side fills first). On
#: development seeds 17000-17099 every such blob called a leak was one of these (80-800 mm^3,
#: 14 of them, two of them top calls); sleeve leaks' pools were 2300 mm^3 or more
POUCH_MAX_MM3 = 600.0
#: an epidural collection holds at least this much contrast per mm of the spine it runs along,
#: mm^2 (its volume over its extent along the spine): contrast thinner than that along
#: many levels is a rim at the sac's edge (partial volume, or a pass that moved by a fraction
#: of a voxel), and its length and growth are not those of a collection. Ranked again offline
#: from the stored candidates of 390 development studies (83 controls; from earlier versions
#: of this module, their lengths taken as 25 mm per level), 1.5 to 4 mm^2 gave the same: 2 of
#: 14 false calls in controls gone, 2 wrong calls made exact and 2 others now missed; 1 mm^2
#: found only one of those calls, and 6 mm^2 or more began to miss leaks
COLLECTION_MIN_MM2 = 2.0
#: contrast outside the sac most of which (RIM_FRACTION of its voxels or more) lies within
#: RIM_MM of it, in the axial plane, is a rim on the sac's wall, not a collection: where a moved
#: pass was registered a fraction of a voxel off, or the sac's edge was drawn a voxel inside
#: its contrast, its own contrast is left outside it along one side. A collection from a dural
#: tear lies deeper: in the phantoms' leaks a tenth of its voxels lie 3-4 mm or more from the
#: sac, and a third to a half of them within RIM_MM (motion rims: 90 % or more). The distance
#: is at least the in-plane voxel size
RIM_MM, RIM_FRACTION = 1.5, 0.8
#: extravasation whose extent along the spine is under this fraction of the diameter of its
#: largest axial cross-section is flat: in one slab only (a streak, a pass that moved), not a
#: collection or the blob around a leaking sleeve, which are as long as they are wide or longer
FLAT_RATIO = 0.5
#: contrast that left the sac stays out of it while the sac stays dense: an epidural collection
#: persists for minutes, and a fistula's vein drains for as long as the sac beside it is
#: opacified. Extravasation whose enhancement (the median over its voxels), once it reached half
#: its peak, falls in a later pass below this fraction of the highest before it (allowing for
#: any fall of the sac's own enhancement at its levels over those passes: :func:`hold_fraction`)
#: was made by those passes: a streak in one of them or in the baseline, a pass that moved. Chosen
#: on the captured analyses of 137 development studies (46 of seeds 17000-17099 and 82 of
#: 18000-18099, most with motion or without a pre-contrast pass; 9 wrong ones of 19000-19099),
#: judged as whole candidates: the 78 candidates within a level of a true defect held 0.85 or
#: more (all but 4 of them 0.95 or more); false calls that fell did so to -1.9-0.75 (a false
#: fistula at 0.75 in the control
#: 19028, a streak; the control 19037's collection at 0.14, motion). 0.5 kept the 0.75 one.
#: Judged for every piece before pieces are joined into a collection (find_candidates), and
#: for the candidate as a whole (is_leak)
HOLD_FRACTION = 0.75
#: a fistula's draining vein is a tube a few mm across (paraspinal and segmental veins in
#: patients 2-5 mm), however long its course in the axial plane (out through the foramen):
#: extravasation thicker than this (twice the radius of the largest disk that fits inside it
#: on an axial slice) is the pool around a leaking sleeve or a pseudomeningocele, however thin
#: its contrast at the edges
VEIN_MAX_THICKNESS_MM = 10.0
#: ... and one thicker than VEIN_TUBE_MM (a 2-5 mm tube measured with a voxel of blur) is a
#: vein only where it runs along the spine (the paraspinal plexus): UNTIMED_VEIN_MM long or
#: more and VEIN_ELONGATION times longer than its widest axial cross-section is wide. A pool
#: at a sleeve spreads from the sleeve's tip every way, about as long as it is wide. (Looser
#: than VEIN_THIN_MM, which alone, with no timing, has to tell a vein from a pool; the
#: elongation shares UNTIMED_VEIN_MM's 40 mm, the length no sleeve or diverticulum reaches.)
#: (mm, ratio)
VEIN_TUBE_MM, VEIN_ELONGATION = 6.5, 3.0


@dataclass
class Voxels:
    """The per-voxel maps detection reads (all on the analysis region of interest).

    compartments, sectors : uint8 (Z, Y, X); peak_hu : float32, peak enhancement, HU;
    arrival_s : float32, s, NaN = never; baseline_hu : float32, HU;
    first_pass : int16, first pass each voxel is enhanced in (P = never);
    lag_s : float32, s, how much later than the sac beside it the voxel fills (anatomy.coupling);
    level_coord : (Z,); z_mm : (Z,); slice_times_s : (P, Z); spacing_mm : (x, y, z)
    t_intrathecal_s : (Z,), local intrathecal arrival per slice, NaN = never
    dy_mm, dx_mm : float32 (Z, Y, X), offset of each voxel from the canal centre, mm
    dependent_yx : (2,), unit vector (y, x) towards the side contrast layers on, or None
    steady_hu : float32 (Z, Y, X), enhancement held over two consecutive passes or clear in the
        last (:func:`steady_enhancement`), HU, or None
    lag_tol_s : float32 (Z, Y, X), s, largest lag still filling with the sac, or None (study-wide)
    enh_passes : list of P float32 (Z, Y, X), enhancement of every pass, HU, or None
    precontrast : bool, the first pass was taken before contrast came (it holds no contrast)
    """

    compartments: np.ndarray
    sectors: np.ndarray
    peak_hu: np.ndarray
    arrival_s: np.ndarray
    baseline_hu: np.ndarray
    first_pass: np.ndarray
    lag_s: np.ndarray
    level_coord: np.ndarray
    z_mm: np.ndarray
    slice_times_s: np.ndarray
    spacing_mm: tuple
    t_intrathecal_s: np.ndarray
    dy_mm: np.ndarray = None
    dx_mm: np.ndarray = None
    dependent_yx: np.ndarray = None
    steady_hu: np.ndarray = None
    lag_tol_s: np.ndarray = None
    enh_passes: list = None
    precontrast: bool = False


def intrathecal_arrival_per_slice(compartments, arrival_s, sigma_slices=1.0):
    """Local intrathecal arrival per slice: early (5th percentile) arrival of the sac's voxels.

    Returns
    -------
    ndarray, shape (Z,), s, NaN where contrast never reached the sac
    """
    nz = arrival_s.shape[0]
    out = np.full(nz, np.nan)
    for z in range(nz):
        a = arrival_s[z][(compartments[z] == _an.SAC) & np.isfinite(arrival_s[z])]
        if a.size >= 3:
            out[z] = float(np.percentile(a, 5))
    ok = np.isfinite(out)
    if ok.sum() >= 3 and sigma_slices > 0:
        # median over a few slices: one noisy slice must not move the front
        filled = np.where(ok, out, np.interp(np.arange(nz), np.nonzero(ok)[0], out[ok]))
        sm = ndimage.median_filter(filled, size=3, mode="nearest")
        out = np.where(ok, sm, np.nan)
    return out


def _filled_in_last_pass(t_s, slice_times_s):
    """Whether the sac filled (local intrathecal arrival ``t_s``, s, shape (N,)) no earlier than
    half a second before the second-to-last pass (``slice_times_s``, shape (P, N)): only the
    last pass shows it filled, and there is no time course to compare extravasation with."""
    st = np.asarray(slice_times_s, dtype=float)
    return t_s >= st[max(0, st.shape[0] - 2)] - 0.5


def _lateral_pool(volume_mm3, frac_paraspinal, untimed=False) -> bool:
    """Whether extravasation beside the canal is a sleeve leak's pool by its size alone:
    LATERAL_POOL_MM3 or more (UNTIMED_POOL_MM3 where the sac first filled in the last pass),
    LATERAL_POOL_PARASPINAL of it or more outside the canal."""
    least = UNTIMED_POOL_MM3 if untimed else LATERAL_POOL_MM3
    return volume_mm3 >= least and frac_paraspinal >= LATERAL_POOL_PARASPINAL


def _untimed_vein(length_mm, thickness_mm, peak_median_hu, frac_paraspinal) -> bool:
    """Whether extravasation beside the canal, where the sac first filled in the last pass, is
    a fistula's vein by its shape alone: a thin tube (VEIN_THIN_MM across or less) of venous
    density (median peak under VEIN_DENSE_HU) along UNTIMED_VEIN_MM of the spine or more,
    LATERAL_POOL_PARASPINAL of it or more outside the canal."""
    return length_mm >= UNTIMED_VEIN_MM and thickness_mm <= VEIN_THIN_MM and \
        peak_median_hu < VEIN_DENSE_HU and frac_paraspinal >= LATERAL_POOL_PARASPINAL


def _vein_shaped(length_mm, width_mm, thickness_mm) -> bool:
    """Whether extravasation has a vein's shape: a tube VEIN_TUBE_MM thick or less, or one up to
    VEIN_MAX_THICKNESS_MM thick running along the spine (UNTIMED_VEIN_MM long or more, and
    VEIN_ELONGATION times its widest cross-section's width); not a pool (mm)."""
    if thickness_mm > VEIN_MAX_THICKNESS_MM:
        return False
    return thickness_mm <= VEIN_TUBE_MM or (
        length_mm >= UNTIMED_VEIN_MM and length_mm >= VEIN_ELONGATION * width_mm)


def untimed_stretches(level_coord, t_intrathecal_s, slice_times_s, min_levels=0.5):
    """Stretches of the spine the intrathecal front first reached in the last pass.

    There the sac has no time course to compare extravasation with (see
    :func:`find_candidates`): a leak in such a stretch cannot be timed.

    Parameters
    ----------
    level_coord : ndarray, shape (Z,), level coordinate of every slice (NaN = none)
    t_intrathecal_s : ndarray, shape (Z,), local intrathecal arrival, s (NaN = never)
    slice_times_s : ndarray, shape (P, Z), s
    min_levels : float, shortest stretch reported, levels

    Returns
    -------
    list of (str, str), the names of the first and last level of every stretch, cranial first
    """
    st = np.asarray(slice_times_s, dtype=float)
    if st.shape[0] < 2:
        return []
    lc = np.asarray(level_coord, dtype=float)
    t = np.asarray(t_intrathecal_s, dtype=float)
    late = np.isfinite(t) & np.isfinite(lc)
    late[late] = _filled_in_last_pass(t[late], st[:, late])
    lab, n = ndimage.label(late)
    out = []
    for k in range(1, n + 1):
        c = lc[lab == k]
        if c.max() - c.min() >= min_levels:
            out.append((float(c.min()), _lv.name_of(c.min()), _lv.name_of(c.max())))
    return [(a, b) for _, a, b in sorted(out)]


def _interval_s(slice_times_s):
    t = np.sort(np.asarray(slice_times_s, float).mean(axis=1))
    return float(np.median(np.diff(t))) if t.size > 1 else 10.0


def _dependent_cos(v: Voxels, idx=None):
    """Distance from the canal centre (mm, +1e-3) and cosine of the angle towards the dependent
    side of every voxel (or of the voxels ``idx``, an index tuple): +1 straight down, -1
    straight up."""
    dy, dx = v.dy_mm, v.dx_mm
    if idx is not None:     # (the offsets may be broadcast shapes: (Z, Y, 1), (Z, 1, X))
        shape = v.compartments.shape
        dy, dx = np.broadcast_to(dy, shape)[idx], np.broadcast_to(dx, shape)[idx]
    rr = np.sqrt(dy ** 2 + dx ** 2) + 1e-3
    return rr, (dy * v.dependent_yx[0] + dx * v.dependent_yx[1]) / rr


def steady_enhancement(enh_passes, last_pass_hu=None):
    """Enhancement held over two consecutive passes, or seen clearly in the last one.

    A streak or a noise speck is in one pass only, so a vein is judged on the lower of two
    consecutive passes. A vein that opacifies only in the last pass (a fistula that opened
    after the pass before, or at a level the intrathecal front reached late) is seen once: it
    counts where its enhancement there reaches ``last_pass_hu``, well clear of the noise.

    Parameters
    ----------
    enh_passes : list of P >= 1 ndarray float32, shape (Z, Y, X), enhancement per pass, HU (a
        single pass is returned as it is)
    last_pass_hu : float, HU (default VENOUS_LAST_PASS_HU)

    Returns
    -------
    ndarray float32, shape (Z, Y, X), HU (a new array)
    """
    last_pass_hu = VENOUS_LAST_PASS_HU if last_pass_hu is None else float(last_pass_hu)
    n = len(enh_passes)
    if n == 0:
        raise ValueError("steady_enhancement: no passes")
    if n == 1:
        return np.array(enh_passes[0], dtype=np.float32, copy=True)
    steady = np.minimum(enh_passes[0], enh_passes[1]).astype(np.float32, copy=False)
    for i in range(1, n - 1):
        np.maximum(steady, np.minimum(enh_passes[i], enh_passes[i + 1]), out=steady)
    last = enh_passes[-1]
    np.maximum(steady, last, out=steady, where=last >= last_pass_hu)
    return steady


def hold_fraction(curve_hu, sac_hu=None, sac_min_hu=EXTRAVASATION_HU) -> float:
    """How well enhancement, once there, holds over the later passes.

    From the first pass at half the peak on, the lowest ratio of a pass's enhancement to the
    highest before it, each ratio divided by the fall of the sac's own enhancement between the
    same two passes (only where the sac was enhanced by ``sac_min_hu`` or more at the earlier
    one, and still above 0 HU at the later; a rise of the sac is not counted): contrast that left
    the sac stays out while the sac stays dense (HOLD_FRACTION). The allowance for the sac's fall
    is not bounded: a sac that all but emptied excuses any fall.

    Parameters
    ----------
    curve_hu : array_like, shape (P,), enhancement of the extravasation per pass, HU
    sac_hu : array_like, shape (P,), or None; enhancement of the sac beside it per pass, HU
    sac_min_hu : float, HU

    Returns
    -------
    float, 1.0 when it never falls (or has no positive finite peak), lower the more it falls
    (below 0 where it falls below its baseline)

    Raises
    ------
    ValueError
        ``curve_hu`` is not 1-D, or ``sac_hu`` is not of its shape
    """
    c = np.asarray(curve_hu, dtype=float)
    if c.ndim != 1:
        raise ValueError(f"hold_fraction: curve_hu must be 1-D, got shape {c.shape}")
    s = None if sac_hu is None else np.asarray(sac_hu, dtype=float)
    if s is not None and s.shape != c.shape:
        raise ValueError(f"hold_fraction: sac_hu shape {s.shape} != curve_hu shape {c.shape}")
    ok = np.isfinite(c)
    if not ok.any() or c[ok].max() <= 0.0:
        return 1.0
    pk = float(c[ok].max())
    on = int(np.flatnonzero(ok & (c >= 0.5 * pk))[0])
    hold = 1.0
    best = on
    for k in range(on + 1, c.size):
        if not ok[k]:
            continue
        ratio = c[k] / c[best]
        if s is not None and np.isfinite(s[best]) and np.isfinite(s[k]) and s[best] >= sac_min_hu:
            ratio /= min(1.0, s[k] / s[best]) if s[k] > 0 else 1.0
        hold = min(hold, ratio)
        if c[k] > c[best]:
            best = k
    return float(hold)


def _last_pass_slices(v: Voxels):
    """Slices the intrathecal front first reached in the last pass (bool, shape (Z,)); none in a
    study of fewer than UNTIMED_MIN_PASSES passes."""
    t = np.asarray(v.t_intrathecal_s, dtype=float)
    out = np.isfinite(t)
    if v.slice_times_s.shape[0] < UNTIMED_MIN_PASSES:
        return np.zeros(t.shape, bool)
    out[out] = _filled_in_last_pass(t[out], v.slice_times_s[:, out])
    return out


def extravasation_mask(v: Voxels):
    """Voxels of contrast outside the sac (epidural or paraspinal) and of opacified veins.

    Returns
    -------
    strong : ndarray bool (Z, Y, X), enhancement >= EXTRAVASATION_HU, timed apart from the sac,
        not at a lung's edge (:func:`lung_edge`)
    venous : ndarray bool (Z, Y, X), weaker enhancement reaching venous fistula densities
    untimed : ndarray bool (Z, Y, X), enhancement >= EXTRAVASATION_HU outside the canal, clear
        of the sac, first seen in the last pass at slices the sac too first filled in it
        (:func:`_last_pass_slices`), and not in ``strong``: there timing cannot tell a leak from
        what fills with the sac (their lag is nil), and :func:`find_candidates` judges it by
        its size and shape alone. Inside the canal it is left out (it would join a collection
        timed elsewhere)
    """
    outside = (v.compartments == _an.EPIDURAL) | (v.compartments == _an.PARASPINAL)
    # contrast outside the sac that fills after the sac (its curve lags the sac's), or that is
    # there before the intrathecal front reached this level (it came along a collection)
    t_it = np.nan_to_num(v.t_intrathecal_s, nan=np.inf)[:, None, None]
    iv = _interval_s(v.slice_times_s)
    sac = v.compartments == _an.SAC
    off_sac = ~ndimage.binary_dilation(sac, structure=ndimage.generate_binary_structure(3, 1),
                                       iterations=max(1, int(round(1.5 / min(v.spacing_mm[:2])))))
    ahead = (v.arrival_s < t_it - max(AHEAD_S, 0.5 * iv)) & off_sac
    tol_s = _an.coupling_tolerance_s(v.slice_times_s) if v.lag_tol_s is None else v.lag_tol_s
    # later than the sac beside it at the same height (a leak filling), or, clear of the sac,
    # earlier (a collection fed from a defect elsewhere)
    lag = np.nan_to_num(v.lag_s, nan=0.0)
    late = (lag >= tol_s) | ((lag <= -tol_s) & off_sac)
    if v.dependent_yx is not None:
        # contrast layers on the dependent side: the sac's upper (non-dependent) part fills late
        # by itself, so inside the canal a late fill up there is not taken as a leak
        up = _dependent_cos(v)[1] < -0.35
        sac = v.compartments == _an.SAC
        near = ndimage.binary_dilation(sac, structure=ndimage.generate_binary_structure(3, 1),
                                       iterations=max(1, int(round(3.0 / min(v.spacing_mm[:2])))))
        late &= ~(up & ~off_sac & ((v.compartments == _an.EPIDURAL) | near))
    uncoupled = late | ahead
    dense = (v.peak_hu >= EXTRAVASATION_HU) & np.isfinite(v.arrival_s) & ~spill(v) & \
        ~lung_edge(v)
    strong = outside & uncoupled & dense
    # a fistula's vein: outside the canal (or late in the epidural space), venous densities
    steady = v.peak_hu if v.steady_hu is None else v.steady_hu
    where = (v.compartments == _an.PARASPINAL) | ((v.compartments == _an.EPIDURAL) & late)
    venous = where & ~strong & (steady >= VENOUS_ENH_HU) & (steady <= VENOUS_MAX_ENH_HU) & \
        (v.baseline_hu + steady >= VENOUS_ABS_HU) & (v.baseline_hu > -30) & (v.baseline_hu < 150)
    strong |= _bridge_collections(v, strong)
    # a vein is a tube, not speckle: keep venous voxels only in clusters
    venous = ndimage.binary_opening(venous, structure=ndimage.generate_binary_structure(3, 1))
    last_z = _last_pass_slices(v)
    untimed = np.zeros(strong.shape, bool)
    if last_z.any():
        untimed = last_z[:, None, None] & (v.first_pass == v.slice_times_s.shape[0] - 1) & \
            off_sac & (v.compartments == _an.PARASPINAL) & dense & ~strong
    return strong, venous, untimed


def lung_edge(v: Voxels):
    """Voxels at the edge of aerated lung (or air): a baseline under LUNG_EDGE_HU within
    LUNG_EDGE_MM, in the axial plane, of one under AERATED_HU.

    Returns
    -------
    ndarray bool (Z, Y, X)
    """
    plane = np.zeros((3, 3, 3), bool)
    plane[1] = ndimage.generate_binary_structure(2, 1)
    steps = max(1, int(round(LUNG_EDGE_MM / min(v.spacing_mm[:2]))))
    near = ndimage.binary_dilation(v.baseline_hu < AERATED_HU, structure=plane, iterations=steps)
    return near & (v.baseline_hu < LUNG_EDGE_HU)


def spill(v: Voxels, radius_mm=2.0):
    """Voxels whose enhancement is the blur of dense sac contrast next to them.

    Partial volume and the scanner's point spread carry a fraction of the sac's density a voxel
    or two beyond its wall, with a time course of its own when the wall layers. A voxel within
    ``radius_mm`` of the sac whose peak is below SPILL_FRACTION of the densest sac voxel there
    holds no contrast of its own.

    Returns
    -------
    ndarray bool (Z, Y, X)
    """
    sac = v.compartments == _an.SAC
    k = [1] + [2 * max(1, int(round(radius_mm / float(s)))) + 1 for s in (v.spacing_mm[1], v.spacing_mm[0])]
    near_peak = ndimage.maximum_filter(np.where(sac, v.peak_hu, 0.0).astype(np.float32), size=k)
    return ~sac & (v.peak_hu < SPILL_FRACTION * near_peak)


def _bridge_collections(v: Voxels, strong, max_gap_mm=220.0, min_voxels=6, n_angles=16):
    """Contrast of an epidural collection where it fills with the sac (near the defect).

    Close to the defect a collection fills in the same pass as the sac, so timing cannot tell them
    apart; the dura can. Where a collection is seen on both sides of a gap along the spine, its
    inner border (the displaced dura) is interpolated across the gap, direction by direction
    around the canal, and the enhancing canal voxels beyond it are taken as the collection.

    Returns
    -------
    ndarray bool (Z, Y, X), the voxels added
    """
    added = np.zeros(strong.shape, bool)
    canal = (v.compartments == _an.SAC) | (v.compartments == _an.EPIDURAL)
    rr = np.sqrt(v.dy_mm ** 2 + v.dx_mm ** 2)
    ang = np.floor(_an.angle_of(v.dy_mm, v.dx_mm) / (2 * np.pi) * n_angles).astype(np.int16) % n_angles
    sz = float(v.spacing_mm[2])
    max_gap = max(2, int(round(max_gap_mm / sz)))
    pad = 0.5 * min(float(v.spacing_mm[0]), float(v.spacing_mm[1]))
    col = strong & (v.compartments == _an.EPIDURAL)
    counts = col.sum(axis=(1, 2))
    present = np.nonzero(counts >= min_voxels)[0]
    if present.size < 2:
        return added
    # inner border of the collection per slice and direction (NaN: no collection there)
    r_in = np.full((strong.shape[0], n_angles), np.nan)
    for z in present:
        az, rz = ang[z][col[z]], rr[z][col[z]]
        for k in np.unique(az):
            rk = rz[az == k]
            if rk.size >= 2:
                r_in[z, k] = np.percentile(rk, 10)
    for a, b in zip(present[:-1], present[1:]):
        if b - a <= 1 or b - a > max_gap:
            continue
        both = np.isfinite(r_in[a]) & np.isfinite(r_in[b])
        if not both.any():
            continue
        for z in range(a + 1, b):
            f = (z - a) / (b - a)
            r = np.where(both, r_in[a] + f * (r_in[b] - r_in[a]), np.inf)
            m = canal[z] & (rr[z] >= r[ang[z]] - pad) & \
                (v.peak_hu[z] >= EXTRAVASATION_HU) & np.isfinite(v.arrival_s[z])
            added[z] |= m & ~strong[z]
    return added


def _sac_curve_per_slice(v: Voxels):
    """The sac's median enhancement per slice and pass, shape (Z, P), HU (NaN: no sac there)."""
    sac = v.compartments == _an.SAC
    nz = sac.shape[0]
    out = np.full((nz, len(v.enh_passes)), np.nan)
    has = sac.any(axis=(1, 2))
    for k, e in enumerate(v.enh_passes):
        for z in np.flatnonzero(has):
            out[z, k] = float(np.median(e[z][sac[z]]))
    return out


def _holds(v: Voxels, lab, n, sac_curve):
    """:func:`hold_fraction` of every labelled piece ``1..n`` of ``lab``, shape (n,).

    ``sac_curve`` is :func:`_sac_curve_per_slice`; ``v.enh_passes`` must be there.
    """
    if n == 0:
        return np.ones(0)
    # (the voxels of every piece gathered once, in label order: ``ndimage.median`` with labels
    # takes seconds for a few hundred pieces)
    where = np.nonzero(lab)
    order = np.argsort(lab[where], kind="stable")
    where = tuple(w[order] for w in where)
    ends = np.cumsum(np.bincount(lab[where], minlength=n + 1)[1:])
    curves = np.zeros((n, len(v.enh_passes)))
    for k, e in enumerate(v.enh_passes):
        for i, vals in enumerate(np.split(e[where], ends[:-1])):
            curves[i, k] = float(np.median(vals)) if vals.size else np.nan
    out = np.ones(n)
    for i, sl in enumerate(ndimage.find_objects(lab, max_label=n)):
        if sl is None:
            continue
        # (a slice without sac is NaN in every pass: a pass column is all NaN only when the
        # piece's slices hold no sac at all, which is checked first)
        block = sac_curve[sl[0]]
        sac_c = np.nanmedian(block, axis=0) if np.isfinite(block).any() else None
        out[i] = hold_fraction(curves[i], sac_c)
    return out


def _merge_collections(v: Voxels, lab, n, max_gap_mm=220.0):
    """One label for the pieces of one epidural collection.

    A collection that fills with the sac near its defect shows as pieces along the spine, all on
    the same side of the sac (ventral or dorsal) and in the epidural space; they are one
    extravasation and their onset is decided together.

    Returns
    -------
    lab : ndarray, int32, relabelled; n : int
    """
    if n < 2:
        return lab, n
    idx = np.arange(1, n + 1)
    in_canal = (v.compartments == _an.EPIDURAL) | (v.compartments == _an.SAC)
    epi = ndimage.mean(in_canal.astype(np.float32), lab, idx)
    zc = np.broadcast_to(np.arange(lab.shape[0], dtype=np.float32)[:, None, None], lab.shape)
    zmin = ndimage.minimum(zc, lab, idx)
    zmax = ndimage.maximum(zc, lab, idx)
    size = ndimage.sum_labels(np.ones(lab.shape, np.float32), lab, idx)
    sect = [ndimage.sum_labels((v.sectors == s).astype(np.float32), lab, idx) for s in range(4)]
    dom = np.argmax(np.stack(sect, axis=1), axis=1)
    gap = max_gap_mm / float(v.spacing_mm[2])
    parent = np.arange(n + 1)

    def find(a):
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a
    cand = [k for k in range(n) if epi[k] >= 0.6
            and size[k] * np.prod(v.spacing_mm) >= MIN_VOLUME_MM3]
    for i in cand:
        for j in cand:
            if j <= i or dom[i] != dom[j] or dom[i] not in (_an.VENTRAL, _an.DORSAL):
                continue
            sep = max(zmin[j] - zmax[i], zmin[i] - zmax[j])
            if sep <= gap:
                parent[find(j + 1)] = find(i + 1)
    roots = np.array([find(k) for k in range(n + 1)])
    if np.all(roots == np.arange(n + 1)):
        return lab, n
    _, new = np.unique(roots, return_inverse=True)
    return new[lab].astype(np.int32), int(new.max())


def _level_at(v: Voxels, z):
    """Level coordinate at slice position ``z`` (a float, or an array of them: an array),
    interpolated over the slices without one; NaN when no slice has one."""
    zi = np.arange(v.level_coord.size, dtype=float)
    ok = np.isfinite(v.level_coord)
    if not ok.any():
        return np.full(np.shape(z), np.nan) if np.ndim(z) else float("nan")
    lc = np.interp(z, zi[ok], v.level_coord[ok])
    return lc if np.ndim(z) else float(lc)


def _masked_mean(q, ok, sm):
    """Moving average of ``q`` (Z,) over ``sm`` slices, of the slices ``ok`` only; NaN where a
    slice is not ok or fewer than half of its window are (the ends are not repeated)."""
    w = ndimage.uniform_filter1d(ok.astype(float), sm, mode="constant")
    m = ndimage.uniform_filter1d(np.where(ok, q, 0.0), sm, mode="constant") / np.maximum(w, 1e-6)
    return np.where(ok & (w >= 0.5), m, np.nan)


def _sector_of(sect_codes, weights):
    w = np.bincount(sect_codes.astype(np.int64), weights=weights, minlength=4)
    return int(np.argmax(w)), w / max(w.sum(), 1e-9)


#: how fast (s per mm) a collection's arrival may grow away from its defect, the V-fit's grid
_V_SLOPES_S_MM = np.array([0.0, 0.01, 0.02, 0.04, 0.07, 0.1, 0.15, 0.2, 0.3, 0.45, 0.6, 0.8,
                           1.0, 1.5])
#: and the steeper flanks a capped V may have (s per mm)
_V_CAP_STEEP_S_MM = (2.0, 3.0, 5.0)


def _lad_apex_fit(y, z, z0, slopes):
    """Least-absolute-deviation fit of ``y = c + slope * |z - apex|`` for every apex and slope.

    Parameters
    ----------
    y : ndarray (N,), the values; z : ndarray (N,), where they are (slices)
    z0 : ndarray (A,), the apexes tried; slopes : ndarray (S,), per slice

    Returns
    -------
    cost : ndarray (A, S), sum of absolute residuals; c : ndarray (A, S), the fitted offsets
    """
    resid = y[None, None, :] - slopes[None, :, None] * np.abs(z[None, :] - z0[:, None])[:, None, :]
    c = np.median(resid, axis=2)
    return np.abs(resid - c[..., None]).sum(axis=2), c


def _v_fit(zu, a_z, t_loc, sz_mm, w_onset=2.0, t_it_all=None, ext_slices=0):
    """Where a collection's defect is, from the arrival of its contrast along the spine.

    A collection fills from its defect outward, so its arrival along the spine is a V (one arm
    when the defect is at an end) whose apex is the defect, and the defect opens when the sac
    fills there. Near the apex the collection may be missing altogether (it filled with the sac
    and cannot be told from it by timing): the arms, fitted by least
    absolute deviations with one slope, place it. The apex time is pulled towards the local
    intrathecal arrival. Where passes are far apart the arms are capped (see
    :func:`_capped_dip`): the defect is a dip in an otherwise flat arrival, and the dip wins
    when it fits better.

    Parameters
    ----------
    zu : ndarray of int, slices with collection contrast (sorted); a_z : arrival per slice, s
    t_loc : ndarray, local intrathecal arrival at those slices, s; sz_mm : slice spacing, mm
    t_it_all : ndarray (Z,), local intrathecal arrival of every slice, s (NaN = never), or None;
        with it the apex may lie up to ``ext_slices`` beyond the collection's ends, where the
        collection filled with the sac and cannot be seen (near its defect): there the apex
        time meets the local intrathecal arrival

    Returns
    -------
    (z_apex, t_apex, edge_index) or None; ``t_apex`` is the fitted time at the apex, s
    """
    if zu.size < 5:
        return None
    z = zu.astype(float)
    ext = ext_slices if t_it_all is not None else 0
    lo, hi = int(zu.min()) - ext, int(zu.max()) + ext
    if ext:
        lo, hi = max(0, lo), min(t_it_all.size - 1, hi)
    z0 = np.arange(lo, hi + 1, dtype=float)
    t_at = np.interp(z0, z, t_loc)
    if ext:
        out = (z0 < zu.min()) | (z0 > zu.max())
        t_at = np.where(out, t_it_all[lo:hi + 1].astype(float), t_at)
        keep = np.isfinite(t_at)
        z0, t_at = z0[keep], t_at[keep]
    # one slope for both arms: the contrast spreads along the epidural space at the same pace
    # both ways
    slopes = _V_SLOPES_S_MM * sz_mm
    cost, t0 = _lad_apex_fit(a_z, z, z0, slopes)
    cost = cost + w_onset * np.abs(t0 - t_at[:, None])
    i0, j0 = np.unravel_index(int(np.argmin(cost)), cost.shape)
    best, z_apex, t_apex = float(cost[i0, j0]), float(z0[i0]), float(t0[i0, j0])
    # the arms may be capped: between two passes far apart, everything the collection reached
    # after the earlier one is first seen in the later one, so its arrival is flat there
    caps = [np.full(a_z.shape, c_) for c_ in np.unique(np.percentile(a_z, CAP_PERCENTILES))]
    caps.append(t_apex + slopes[j0] * np.abs(z - z_apex))
    dip = _capped_dip(a_z, z, z0, t_at, sz_mm, caps, w_onset)
    if dip is not None and dip[0] < best - 1e-9:
        best, z_apex, t_apex = dip
    edge = int(np.argmin(np.abs(z - z_apex)))
    return z_apex, t_apex, edge


def _capped_dip(a_z, z, z0, t_at, sz_mm, caps, w_onset):
    """The best capped V, ``min(c + slope * |z - apex|, cap)``, of a collection's arrival.

    Between two passes far apart, everything a collection reached after the earlier one is
    first seen in the later one: its arrival is flat there (the cap), and the part seen in the
    earlier pass is a dip around the defect. A dip counts only when it is seen (3 slices or
    more below the cap, on average by a quarter of its depth at least; CAP_MIN_DEPTH_S deep or
    more) and has arms seen on both sides (10 mm of slices each whose arrival is up near the
    cap): an end of a collection, thin and blurred with the sac, can look earlier than the
    rest of it but has no arm beyond it.

    Parameters
    ----------
    a_z : ndarray (N,), arrival per slice, s; z : ndarray (N,), those slices (sorted)
    z0 : ndarray (A,), apexes tried (slices); t_at : ndarray (A,), local intrathecal arrival
        there, s (the dip's time is pulled towards it with weight ``w_onset``)
    sz_mm : slice spacing, mm; caps : list of ndarray (N,), the caps tried, s

    Returns
    -------
    (cost, z_apex, t_apex) or None
    """
    n_arm = max(2, int(round(10.0 / sz_mm)))
    if z.size < 2 * n_arm + 3:
        return None
    inner = (z0 > z[n_arm - 1]) & (z0 < z[-n_arm])
    if not inner.any():
        return None
    z0, t_at = z0[inner], t_at[inner]
    off = z[None, :] - z0[:, None]
    left, right = (off < 0)[:, None, :], (off > 0)[:, None, :]
    # the dip's flanks are as steep as the arrival interpolated between those passes
    slopes = np.concatenate([_V_SLOPES_S_MM, _V_CAP_STEEP_S_MM]) * sz_mm
    dist = np.abs(off)[:, None, :] * slopes[None, :, None]
    best = None
    for cap in caps:
        cap_at = np.interp(z0, z, cap)
        top = float(cap_at.max()) - CAP_MIN_DEPTH_S
        if top <= float(a_z.min()):
            continue
        for c in np.linspace(float(a_z.min()), top, 16):
            pred = np.minimum(c + dist, cap)
            capped = pred >= cap
            arm = capped & (a_z >= 0.5 * (c + cap))
            both = ((arm & left).sum(axis=2) >= n_arm) & ((arm & right).sum(axis=2) >= n_arm)
            dip = ~capped
            n_dip = dip.sum(axis=2)
            below = ((cap - a_z) * dip).sum(axis=2) / np.maximum(n_dip, 1)
            ok = both & (n_dip >= 3) & (below > 0.25 * (cap_at - c)[:, None]) & \
                (c <= cap_at - CAP_MIN_DEPTH_S)[:, None]
            if not ok.any():
                continue
            cc = np.abs(a_z - pred).sum(axis=2) + w_onset * np.abs(c - t_at)[:, None]
            cc = np.where(ok, cc, np.inf)
            i, j = np.unravel_index(int(np.argmin(cc)), cc.shape)
            if best is None or cc[i, j] < best[0]:
                best = (float(cc[i, j]), float(z0[i]), float(c))
    return best


#: how fast (per mm) the log density of a draining vein (or of a collection seen in one pass)
#: may fall away from its apex
_DENSITY_SLOPES_MM = np.array([0.0, 0.002, 0.004, 0.007, 0.01, 0.015, 0.025, 0.04])


def _density_apex(zz, peak_hu, sz_mm):
    """Where a draining vein, or a collection seen in one pass, is densest along the spine.

    Contrast enters the vein at the fistula and is diluted as it drains away, so the vein's
    density along the spine peaks there and falls off both ways (one way when the vein drains
    one way); contrast enters a collection undiluted at the tear and mixes with the fluid
    already there as it spreads. Its log density per slice is fitted, by least absolute
    deviations, with a symmetric fall-off from an apex; a flat vein or collection has no apex.

    Parameters
    ----------
    zz : ndarray of int, slice of every voxel of the vein or collection; peak_hu : ndarray,
        their peak enhancement, HU; sz_mm : slice spacing, mm

    Returns
    -------
    float, slice of the apex, or None
    """
    order = np.argsort(zz, kind="stable")
    zs, start = np.unique(zz[order], return_index=True)
    if zs.size < 5:
        return None
    groups = np.split(peak_hu[order].astype(float), start[1:])
    y = np.log(np.clip([np.percentile(g, 75) for g in groups], 1.0, None))
    z = zs.astype(float)
    # apexes only on slices the vein is seen on; the density falls away from it
    cost, _ = _lad_apex_fit(y, z, z, -_DENSITY_SLOPES_MM * sz_mm)
    i, j = np.unravel_index(int(np.argmin(cost)), cost.shape)
    if j == 0:
        return None
    return float(z[i])


def _slice_arrivals(v: Voxels, zz, arr, use, sec_c, frac_para):
    """Per-slice arrival of a component's contrast, and where it can be timed.

    An epidural collection (``frac_para`` under 0.5) is timed on its own side of the sac
    (ventral or dorsal): small lateral pieces merged into it (late root sleeves, recesses) do
    not place it. Slices with a few stray voxels are left out; the arrival of a slice is the
    10th percentile of its voxels', median-filtered along the spine.

    Parameters
    ----------
    v : Voxels
    zz : ndarray (N,), int, slice of each voxel of the component; arr : ndarray (N,), s, their
        arrival; use : ndarray (N,), bool, the voxels that time it; sec_c : ndarray (N,), their
        sector; frac_para : float, the fraction of the component outside the canal

    Returns
    -------
    use : ndarray (N,), bool, the voxels used; zu : ndarray (S,), int, slices; a_z : ndarray
    (S,), s, their arrival; t_loc : ndarray (S,), s, the intrathecal arrival there (the
    arrival where the sac never filled); timed : ndarray (S,), bool, slices it can be timed on
    """
    if frac_para < 0.5:
        vd = [int((use & (sec_c == s_)).sum()) for s_ in (_an.VENTRAL, _an.DORSAL)]
        main = (_an.VENTRAL, _an.DORSAL)[int(np.argmax(vd))]
        if max(vd) >= 0.3 * use.sum() and max(vd) >= 3:
            use = use & (sec_c == main)
    zu, cnt = np.unique(zz[use], return_counts=True)
    # slices with real support: a few stray voxels at the end of a component are not an onset
    keep = cnt >= max(min(3, int(cnt.max())), int(0.25 * np.median(cnt)))
    zu = zu[keep]
    a_z = np.array([np.percentile(arr[use & (zz == z)], 10) for z in zu])
    if a_z.size >= 5:
        a_z = ndimage.median_filter(a_z, size=5, mode="nearest")
    elif a_z.size >= 3:
        a_z = ndimage.median_filter(a_z, size=3, mode="nearest")
    # the defect is where contrast leaves the sac first *and* as soon as the sac filled there:
    # along a collection both the arrival and its delay after the local intrathecal arrival
    # grow with the distance from the defect (the delay changes sign there at high flow)
    t_loc = v.t_intrathecal_s[zu]
    t_loc = np.where(np.isfinite(t_loc), t_loc, a_z)
    # where the sac itself first filled in the last pass there is nothing to time against
    # (the sac must have filled there at least two passes before the end of the study) ...
    timed = ~_filled_in_last_pass(t_loc, v.slice_times_s[:, zu])
    # nor where it was already full in the first pass (at the injection, without a
    # pre-contrast pass): no time course there either
    timed &= t_loc > v.slice_times_s[0][zu] + FIRST_PASS_TOL_S
    # ... nor where the extravasated contrast itself was there in the first pass: either it
    # was injected before the study began (no time course) or it is not contrast at all
    timed &= a_z > v.slice_times_s[0][zu] + FIRST_PASS_TOL_S
    return use, zu, a_z, t_loc, timed


def find_candidates(v: Voxels):
    """Candidate defects, one or more per connected extravasation, each with its evidence.

    Returns
    -------
    candidates : list of Defect, unranked, ``confidence`` not yet set
    mask : ndarray, shape (Z, Y, X), uint8; 1 extravasated contrast, 2 opacified vein (pieces
        whose contrast falls away, HOLD_FRACTION, left out)
    """
    strong, venous, untimed_vox = extravasation_mask(v)
    mask = np.zeros(strong.shape, np.uint8)
    mask[strong] = 1
    mask[venous] = 2
    lab, n = ndimage.label(strong | venous | untimed_vox, structure=np.ones((3, 3, 3), bool))
    if n == 0:
        return [], mask
    if untimed_vox.any():
        # contrast seen only in the last pass where the sac too first filled in it is judged
        # on its own: in a piece with extravasation timed elsewhere (at slices the sac filled
        # before the last pass) it is left as it was (a vein's voxel, or nothing), not to
        # swell that piece's volume, length and growth
        timed_ext = (strong | venous) & ~_last_pass_slices(v)[:, None, None]
        timed_piece = np.concatenate([[False], ndimage.maximum(
            timed_ext, lab, np.arange(1, n + 1)).astype(bool)])
        alone = untimed_vox & ~timed_piece[lab]
        mask[alone] = 1
        if (untimed_vox & ~alone).any():
            lab, n = ndimage.label(mask > 0, structure=np.ones((3, 3, 3), bool))
            if n == 0:
                return [], mask
    # contrast that left the sac stays out while the sac stays dense: pieces whose enhancement
    # falls away in a later pass are artefacts of those passes, and are not joined to a
    # collection (a collection merged with them would be judged by their fall)
    sac_curve = _sac_curve_per_slice(v) if v.enh_passes is not None else None
    holds = np.ones(n)
    if sac_curve is not None:
        holds = _holds(v, lab, n, sac_curve)
        fell = holds < HOLD_FRACTION
        if fell.any():
            gone = np.concatenate([[False], fell])[lab]
            mask[gone] = 0
            lab, n = ndimage.label(mask > 0, structure=np.ones((3, 3, 3), bool))
            if n == 0:
                return [], mask
            holds = holds[~fell]
    n_pieces = n
    lab, n = _merge_collections(v, lab, n)
    if sac_curve is not None and n != n_pieces:
        # (a collection joined from pieces is judged again as a whole)
        holds = _holds(v, lab, n, sac_curve)
    sx, sy, sz = (float(s) for s in v.spacing_mm)
    vox_mm3 = sx * sy * sz
    sac = v.compartments == _an.SAC
    near_sac = ndimage.binary_dilation(sac, structure=ndimage.generate_binary_structure(3, 1),
                                       iterations=max(1, int(round(4.0 / min(sx, sy)))))
    # (within RIM_MM of the sac in the axial plane, and at least a voxel)
    rim_disk = _an.disk_yx((sy, sx), max(RIM_MM, sx, sy))[None]
    near_rim = ndimage.binary_dilation(sac, structure=rim_disk)
    p = v.slice_times_s.shape[0]
    relaxed = p >= UNTIMED_MIN_PASSES
    # (how far down, towards the side contrast layers on, a candidate lies is known when)
    has_down = v.dependent_yx is not None and v.dy_mm is not None
    intervals = np.diff(np.sort(v.slice_times_s.mean(axis=1)))
    interval_s = float(np.median(intervals)) if intervals.size else 10.0
    out = []
    objs = ndimage.find_objects(lab)
    for k, sl in enumerate(objs, start=1):
        sub = lab[sl] == k
        nvox = int(sub.sum())
        if nvox * vox_mm3 < MIN_VOLUME_MM3:
            mask[sl][sub] = 0
            continue
        zz, yy, xx = np.nonzero(sub)
        zz = zz + sl[0].start
        yy = yy + sl[1].start
        xx = xx + sl[2].start
        arr = v.arrival_s[zz, yy, xx].astype(float)
        pk = v.peak_hu[zz, yy, xx].astype(float)
        comp = v.compartments[zz, yy, xx]
        fin = np.isfinite(arr)
        if fin.sum() < 3:
            continue
        is_venous = mask[zz, yy, xx] == 2
        frac_para = float((comp == _an.PARASPINAL).mean())
        frac_venous = float(is_venous.mean())
        lc_all = _level_at(v, np.unique(zz))
        span_levels = float(np.nanmax(lc_all) - np.nanmin(lc_all)) if np.isfinite(lc_all).any() else 0.0
        level_range = (float(np.nanmin(lc_all)), float(np.nanmax(lc_all))) \
            if np.isfinite(lc_all).any() else (float("nan"), float("nan"))
        # (its extent along the spine: a rim at the sac's edge comes in pieces along it. Only
        # the slices with contrast, the extent less its gaps, kept 152 a false call and lost 169
        # on the tuning seeds)
        length_mm = float(zz.max() - zz.min() + 1) * sz
        # how much of it, outside the sac (bridging joins a collection across the dura), lies on
        # the sac's wall; how wide its largest axial cross-section is (a disk of its area)
        off = comp != _an.SAC
        rim_off = near_rim[zz, yy, xx] & off
        rim_fraction = float(rim_off.sum() / off.sum()) if off.any() else 1.0
        width_mm = 2.0 * math.sqrt(float(sub.sum(axis=(1, 2)).max()) * sx * sy / math.pi)
        # how thick it is: the diameter of the largest disk inside it on an axial slice (a
        # vein running across the slice is long there, but thin; the distance is to the centre
        # of the nearest voxel outside, half a voxel beyond its edge each way)
        thickness_mm = 2.0 * max(float(ndimage.distance_transform_edt(
            np.pad(s_, 1), sampling=(sy, sx)).max()) for s_ in sub if s_.any()) - min(sx, sy)
        kp = v.first_pass[zz, yy, xx]
        k0 = int(kp[fin].min())
        growth = float(nvox / max(1, int((kp == k0).sum())))
        # (how many of its timed voxels were first seen in each pass; the share in the last)
        n_first = np.bincount(kp[fin], minlength=p)
        frac_last_pass = float(n_first[p - 1] / int(fin.sum()))
        # (without a pre-contrast pass, the share of it outside the sac already there in the
        # first pass; with one, nothing in the first pass is contrast: what shows there is dense
        # in every pass, bone beside the sac given a fluid's baseline)
        out_fin = fin & (comp != _an.SAC)
        frac_pass0 = 0.0 if v.precontrast or not out_fin.any() else float((kp[out_fin] == 0).mean())

        # onsets: the earliest contrast along the component (a collection fills from the defect
        # outward, so its arrival profile along the spine has its minimum at the defect)
        near = near_sac[zz, yy, xx] & fin
        use = near if near.sum() >= 3 else fin
        # slices where most of it outside the sac (RIM_FRACTION) lies on the sac's wall hold a
        # rim, not the collection: they do not time it, unless nothing else can. Only where a
        # voxel is no coarser than the rim band: with coarser voxels a collection a few mm deep
        # is one voxel deep, on the wall like a rim, on every slice
        sec_c = v.sectors[zz, yy, xx]
        tries = [use]
        if max(sx, sy) <= RIM_MM:
            dz = zz - zz.min()
            n_off = np.bincount(dz, weights=off.astype(float))
            n_rim = np.bincount(dz, weights=rim_off.astype(float))
            rim_slice = (n_rim >= RIM_FRACTION * np.maximum(n_off, 1.0))[dz]
            if (use & ~rim_slice).sum() >= 3:
                tries = [use & ~rim_slice, use]
        untimed = False
        # (where the sac first filled in the last pass, a thin vein is known by its shape, and
        # a pool by its size from UNTIMED_POOL_MM3, given UNTIMED_MIN_PASSES)
        peak_median = float(np.median(pk))
        vein_shape = relaxed and _untimed_vein(length_mm, thickness_mm, peak_median, frac_para)
        for use in tries:
            use, zu, a_z, t_loc, timed = _slice_arrivals(v, zz, arr, use, sec_c, frac_para)
            if timed.any():
                break
        else:
            # where the sac first filled in the last pass there is nothing to time against,
            # but a lateral pool outside the canal as large as a sleeve leak's is one anyway,
            # and a thin vein there along the spine a fistula's (is_leak: only as those). Not
            # where the sac never filled (the edge of the field), nor where most of the pool
            # was there in the first pass (no time course, and at
            # the puncture contrast may have been put outside the sac by the needle). A few
            # slices of it seen in the first pass (something dense beside the pool, a streak)
            # are left out: the rest, most of its slices, must be late (17003: 2 of 9 slices;
            # without a pre-contrast pass is_leak takes less: under FIRST_PASS_OUTSIDE of it)
            later = a_z > v.slice_times_s[0][zu] + FIRST_PASS_TOL_S
            late_fill = _filled_in_last_pass(t_loc, v.slice_times_s[:, zu]) & \
                np.isfinite(v.t_intrathecal_s[zu])
            lateral = float(np.isin(sec_c, (_an.LEFT, _an.RIGHT)).mean())
            if not (zu.size and 2 * int(later.sum()) > zu.size and late_fill[later].all()
                    and lateral >= 0.5 and (_lateral_pool(nvox * vox_mm3, frac_para, relaxed)
                                            or vein_shape)):
                # (what only the last pass showed here goes back to what it was)
                back = sub & untimed_vox[sl]
                mask[sl][back] = np.where(venous[sl][back], 2, 0)
                continue
            timed = late_fill & later
            untimed = True
        zu, a_z, t_loc = zu[timed], a_z[timed], t_loc[timed]
        cost = a_z + np.abs(a_z - t_loc)
        onsets_idx = [int(np.argmin(cost))]
        if zu.size >= 5:
            fill = np.concatenate([[cost.max() + 1], cost, [cost.max() + 1]])
            pk_idx, props = signal.find_peaks(-fill, prominence=max(4.0, 0.8 * interval_s),
                                              distance=max(2, int(round(30.0 / sz))))
            pk_idx = [i - 1 for i in pk_idx]
            if pk_idx:
                onsets_idx = sorted(set(pk_idx) | {onsets_idx[0]}, key=lambda i: cost[i])
        # contrast first seen all in one pass has no time course along the spine: its arrival
        # profile is the order the scanner took its slices in, and the V of a collection's
        # arms is not there to fit. It is placed where it is densest (nearest the defect), if
        # it spans levels enough for its density to have an apex (a blob at one level keeps
        # its timing, which sets it against the sac beside it)
        one_pass = float(n_first.max()) >= ONE_PASS_FRACTION * int(fin.sum())
        collection = not one_pass and frac_para < 0.5 and zu.size * sz >= V_FIT_MIN_MM and \
            _sector_of(sec_c[use], np.ones(int(use.sum())))[0] in (_an.VENTRAL, _an.DORSAL)
        apex = _v_fit(zu, a_z, t_loc, sz, t_it_all=v.t_intrathecal_s,
                      ext_slices=int(round(V_EXTEND_MM / sz))) if collection else None
        if apex is not None:
            # the collection is seen on both sides of the defect but not at it (there it filled
            # with the sac): the defect is where its two arms' arrival times meet
            z_apex, t_apex, edge = apex
            onsets_idx = [edge]
        # a vein holds venous densities; contrast that left through a sleeve is CSF-dense, and
        # pools round the sleeve's tip rather than running along a tube (_vein_shaped)
        venous_like = (frac_venous > 0.5 or (frac_para > 0.6 and peak_median < 220.0)) \
            and float(np.percentile(pk, 95)) < CSF_DENSE_HU \
            and _vein_shaped(length_mm, width_mm, thickness_mm)
        # a draining vein seen along the spine is placed by its density (it fills within a pass,
        # so its arrival is flat along it), and so is a collection seen in one pass
        # (a vein by all its voxels: most of them never reach the density that times contrast,
        # and the few that do may be where something denser lies against the vein)
        dens_vox = np.ones_like(fin) if venous_like and frac_venous > 0.5 else fin
        z_dens = _density_apex(zz[dens_vox], pk[dens_vox], sz) \
            if (venous_like or one_pass) and span_levels >= 1.5 and apex is None else None
        if z_dens is not None:
            # the density apex first; a vein's timing onsets stay as alternatives (the apex of
            # a vein blurred by motion or streaks can be off, and a vein has a time course
            # along its course over the passes); a collection seen in one pass has none: its
            # earliest slices are only the first the scanner took
            onsets_idx = [int(np.argmin(np.abs(zu - z_dens)))] + \
                ([] if one_pass and not venous_like else list(onsets_idx))
        if untimed:
            # a pool or a vein with nothing to time it against is placed at its centre,
            # weighted by its density (a pool spreads from the sleeve's tip and is densest
            # there; a vein runs both ways from the foramen); its arrival along the spine is
            # only when the last pass reached each slice
            on = fin & np.isin(zz, zu)
            z_dens = float(np.average(zz[on], weights=np.clip(pk[on], 1.0, None)))
            onsets_idx = [int(np.argmin(np.abs(zu - z_dens)))]
        half = max(2, int(round(12.0 / sz)))      # slices either side of an onset's slice
        for rank, oi in enumerate(onsets_idx):
            onset = float(a_z[oi])
            onset_cost = float(cost[oi])
            # the earliest voxels near this onset's slice
            zc = zu[oi]
            win = use & (np.abs(zz - zc) <= half)
            tol = max(1.0, 0.15 * interval_s)
            early = win & (arr <= onset + tol)
            if early.sum() < 1:
                early = win & (arr <= np.min(arr[win]) + tol)
            w = np.clip(pk[early], 1.0, None)
            z_c = float(np.average(zz[early], weights=w))
            if apex is not None and rank == 0:
                z_c, onset = float(z_apex), float(min(onset, t_apex))
            win_d = fin & (np.abs(zz - z_dens) <= half) \
                if z_dens is not None and rank == 0 else None
            if win_d is not None and win_d.any():
                win = win_d
                onset = float(np.percentile(arr[win], 10))
                early = win & (arr <= np.min(arr[win]) + tol)
                w = np.clip(pk[early], 1.0, None)
                z_c = z_dens
            y_c = float(np.average(yy[early], weights=w))
            x_c = float(np.average(xx[early], weights=w))
            # the side: where the bulk of the contrast near the onset lies (its first voxels
            # may be a stray corner of it)
            w_win = np.clip(pk[win], 1.0, None)
            sector, sect_w = _sector_of(v.sectors[zz[win], yy[win], xx[win]], w_win)
            lc = _level_at(v, z_c)
            lc_early = _level_at(v, zz[early])
            spread = float(np.std(lc_early)) if lc_early.size > 1 else 0.0
            zi = int(round(z_c))
            t_it = float(v.t_intrathecal_s[zi]) if np.isfinite(v.t_intrathecal_s[zi]) else float("nan")
            delay = onset - t_it if math.isfinite(t_it) else float("nan")
            side = SIDES[sector]
            # (a pool let in untimed by its size is a sleeve leak's, not a vein, unless it is
            # mostly venous voxels and vein-shaped (venous_like): a slow leak's pool is as
            # faint as a vein, 15066)
            # (and where the sac filled in the last pass, a thin vein's shape makes it one)
            if (untimed and vein_shape) or \
                    (venous_like and not (untimed and frac_venous <= 0.5)):
                kind = "csf_venous_fistula"
                if side in ("ventral", "dorsal"):
                    # a fistula drains to one side: the heavier lateral sector
                    side = "left" if sect_w[_an.LEFT] >= sect_w[_an.RIGHT] else "right"
            elif side in ("left", "right"):
                kind = "nerve_root_sleeve"
            else:
                kind = "dural_tear"
            z_mm = float(np.interp(z_c, np.arange(v.z_mm.size), v.z_mm))
            ev = dict(volume_mm3=nvox * vox_mm3, delay_s=delay, span_levels=span_levels,
                      level_range=level_range, length_mm=length_mm,
                      width_mm=width_mm, thickness_mm=thickness_mm,
                      rim_fraction=rim_fraction, growth=growth,
                      first_pass=k0, frac_first_pass=frac_pass0, frac_paraspinal=frac_para,
                      frac_venous=frac_venous, hold=float(holds[k - 1]),
                      peak_median_hu=peak_median,
                      peak_max_hu=float(np.max(pk)), spread_levels=spread,
                      sector_weights=[float(s) for s in sect_w], interval_s=interval_s,
                      component=k, onset_rank_in_component=rank, n_passes=p,
                      t_intrathecal_s=t_it, onset_cost_s=onset_cost, untimed=untimed,
                      frac_last_pass=frac_last_pass, slice_range=(int(zz.min()), int(zz.max())),
                      dependent_cos=float(np.average(
                          _dependent_cos(v, (zz[win], yy[win], xx[win]))[1], weights=w_win))
                      if has_down else float("nan"))
            name = _lv.name_of(lc) if math.isfinite(lc) else "unknown"
            out.append(Defect(level=name, level_coord=lc, z_mm=z_mm, side=side, kind=kind,
                              onset_time_s=onset, confidence=0.0, delay_s=delay, slice_index=zi,
                              yx=(y_c, x_c), evidence=ev))
    # (the canal's upper and dependent sides, once for both)
    sides = _side_masks(v) if v.dependent_yx is not None and v.dy_mm is not None else None
    place_dependent_collections(v, out, sides=sides)
    up = upper_collection(v, sides=sides)
    if up is not None:
        cand, where = up
        cand.evidence["component"] = len(objs) + 1
        out.append(cand)
        mask[where & (mask == 0)] = 1
    return out, mask


#: the ratio of the sac's upper side to its dependent side this much above that of the slices
#: that filled about as long before: a collection lies there (see :func:`upper_collection`);
#: in the last pass, where the sac is mixed, only the larger excess counts. A pass that moved,
#: or streaks, left 0.18-0.21 in controls (11043, 13039, 13091: false calls at 0.18); on seeds
#: 11000-13099 every leak this rule found had 0.29 or more, but one (11002, 0.21). An excess
#: of UPPER_EXCESS_WEAK or more but under UPPER_EXCESS, in a pass before the last, ends the
#: search (the first pass with an excess decides: in a moved control the case library's sealed
#: collection, 2 mm / 1 degree, had 0.18-0.25 in one pass and 0.76 at the front's edge later),
#: with no collection unless the next pass shows the upper side there clearly denser than the
#: dependent side (UPPER_DENSER within UPPER_CONFIRM_MM; free contrast sinks, so only
#: something outside the sac does that). Then the weak excess is the collection, found where
#: it is (``upper_rule`` 'weak'). On seeds 11000-14099 the next pass's ratio was 0.39-0.60 in
#: the supine controls with a weak excess (11043, 13039, 13091) and 1.38-2.13 in the leaks
#: (11002, 12049, 14002, and 14098 in the fresh run of 14000-14099)
UPPER_EXCESS, UPPER_EXCESS_LAST, UPPER_EXCESS_WEAK = 0.25, 0.6, 0.18
#: in a pass without such an excess, that ratio (75th percentiles, averaged over ``smooth_mm``)
#: peaking at 1.25 or more, and staying above half the peak's margin over 1 along
#: UPPER_DENSER_MIN_MM of the spine or more: a collection lies there
UPPER_DENSER, UPPER_DENSER_MIN_MM = 1.25, 15.0
#: a weak excess is a collection when the next pass shows the dense rule's ratio within this, mm
UPPER_CONFIRM_MM = 15.0
#: the upper side at least this much denser than the dependent side (their ratio, averaged
#: over ``smooth_mm``) in the last pass: a collection found earlier has grown there
#: (``level_range``). A mixed sac's ratio is about 1; where a collection covered most of the
#: field (11008, 11011, 13053, 14032) the last pass's median ratio was 1.2-1.5
UPPER_GROWN = 1.1
#: on the dorsal (upper) side of a prone patient, the excess that counts, in a pass before the
#: last, at level coordinates below the second (20.0: down to the middle of L2): on 44 prone
#: controls (seeds 151-184, 20003-20345) it reached 0.61 at L1 (a margin of only 0.04) and well
#: over 1 at the sacrum, where the canal runs oblique to the axial slices; dorsal tears 0.7-1.4.
#: (The first pass with any excess decides, as for a ventral collection: an excess at the
#: sacrum in an earlier pass ends the search; on 93 prone development studies, controls and
#: ventral and dorsal tears, that never hid a tear.)
UPPER_EXCESS_DORSAL, UPPER_DORSAL_MAX_LEVEL = 0.65, 20.0


def _densest_upper(q_top, q_bot, z_found, sm, dense_hu=None, allowed=None):
    """Where along its stretch an upper-side collection is densest: its defect.

    The ratio of the upper to the dependent side finds a collection but does not place it:
    ahead of the intrathecal front, where the sac has not filled yet, any collection makes the
    ratio large. Contrast enters the collection undiluted at the defect and thins as it
    spreads, so in the pass that first shows it the collection is densest nearest the dura.
    The stretch is the run of slices around ``z_found`` whose upper side holds contrast
    (EXTRAVASATION_HU) and is at least as dense as its dependent side (a layered sac's upper
    side is not: free contrast sinks), both averaged over ``sm`` slices (a slice with fewer
    than half of its ``sm`` measured ends the run); the defect is where the upper side is
    densest along it (``dense_hu``, averaged the same way).

    Parameters
    ----------
    q_top, q_bot : ndarray (Z,), 75th percentile enhancement of the upper and the dependent
        side of the canal per slice, HU (NaN = too few voxels)
    z_found : int, the slice the collection was found at; sm : int, slices averaged
    dense_hu : ndarray (Z,), how dense the upper side is per slice (its 90th percentile
        enhancement, HU), or None: ``q_top``
    allowed : ndarray of bool (Z,), the slices the stretch may hold (not the injection, where
        the sac is mixed and its upper side dense by itself), or None: all

    Returns
    -------
    z : int, the slice of the defect (``z_found`` when it is not in such a stretch)
    run : ndarray of int, the slices of that stretch (only ``z_found`` when there is none)
    """
    dens_q = q_top if dense_hu is None else dense_hu
    ok = np.isfinite(q_top) & np.isfinite(q_bot) & np.isfinite(dens_q)
    if allowed is not None:
        ok &= allowed
    u, b = _masked_mean(q_top, ok, sm), _masked_mean(q_bot, ok, sm)
    lab, _ = ndimage.label((u >= b) & (u >= EXTRAVASATION_HU))   # (NaN compares False)
    if not lab[z_found]:
        return int(z_found), np.array([int(z_found)])
    run = np.nonzero(lab == lab[z_found])[0]
    dens = _masked_mean(dens_q, ok, sm)
    return int(run[np.nanargmax(dens[run])]), run


#: a collection on the sac's dependent side is placed where that side is denser than along the
#: spine around it by DEPENDENT_BUMP_HU or more (75th percentile enhancement), within
#: DEPENDENT_REACH_LEVELS of where its timing placed it (see :func:`place_dependent_collections`).
#: On 64 development studies with such a collection (prone ventral and supine dorsal tears;
#: seeds 159, 162, 186, 195 and 20001-21297) the right moves went up to 2.3 levels and the
#: wrong ones 3.6 or more when the reach was the collection's extent and 3 levels beyond; a
#: reach of 2 to 3.5 levels from the timed place: exact 34 -> 52, none lost. The place moved
#: to must also be at least as dense (not only relative to the spine around it) as where the
#: timing placed it: that changed no call there, and keeps the 512 x 512 x 600 benchmark's
#: slow T7-T8 tear from moving to a bump 3 levels away near the front of the contrast
#: A collection first seen in the last pass is placed by the last pass (before, it was left
#: where its timing put it: at the end of the piece seen apart from the sac, 1-2 levels caudal
#: of the defect; near the defect the collection fills with the sac and is taken for it). On
#: the 77 prone ventral tears of seeds 11000-14099: exact 55 -> 60 (11039, 12025, 13059,
#: 13060, 14000, 14048 gained, 14043 lost); placing every collection by the last pass: 58
#: (Also a collection whose onset was interpolated before the last pass but LAST_PASS_SHARE
#: of whose voxels were first seen in it; and one placed by the last pass may move as far
#: beyond its downstream end: on 173 captured development studies, 140 of them leaks (seeds
#: 17000-22099), exact 88 -> 91 (18005, 21067, 22096), none lost; reaching 2 or 2.5 levels
#: beyond it, 89 and 90; reaching beyond the downstream end from the pass before the last
#: too, 89, with two far jumps lost (21028, 21033))
DEPENDENT_BUMP_HU, DEPENDENT_REACH_LEVELS = 15.0, 3.0
#: the share of a collection's timed voxels first seen in the last pass that makes it first
#: seen there
LAST_PASS_SHARE = 0.8
#: a candidate's contrast lies on the dependent side when the cosine of its angle round the
#: canal centre towards the dependent side, averaged over the voxels near its onset weighted by
#: their peak (``evidence['dependent_cos']``), is over this (within 60 degrees of straight down)
DEPENDENT_COS = 0.5
#: the sac's side holds contrast where its 75th percentile enhancement reaches this, HU
SIDE_FILLED_HU = 100.0


def _side_masks(v: Voxels):
    """The upper and the dependent side of the canal (sac and epidural space, more than 2 mm
    from its centre, within 60 degrees of straight up or down), boolean (Z, Y, X) each, and
    the cosine of every voxel's angle towards the dependent side (:func:`_dependent_cos`)."""
    rr, cosd = _dependent_cos(v)
    canal = (v.compartments == _an.SAC) | (v.compartments == _an.EPIDURAL)
    far = rr > 2.0
    return canal & (cosd < -0.5) & far, canal & (cosd > 0.5) & far, cosd


def _slice_percentile(e, side, q):
    """``q``-th percentile of ``e`` (Z, Y, X) over ``side`` on every slice with 5 voxels of it
    or more (NaN elsewhere), (Z,)."""
    out = np.full(e.shape[0], np.nan)
    for z in np.nonzero(side.sum(axis=(1, 2)) >= 5)[0]:
        out[z] = np.percentile(e[z][side[z]], q)
    return out


def dependent_bump(q_dep, allowed, sm, win):
    """How much denser the dependent side of the canal is on each slice than along the spine
    around it, HU.

    Parameters
    ----------
    q_dep : ndarray (Z,), 75th percentile enhancement of the dependent side per slice, HU
        (NaN: too few voxels)
    allowed : ndarray of bool (Z,), the slices that count (not the injection)
    sm : int, slices averaged (the ends are not repeated; a slice with fewer than half of its
        window counting does not count); win : int, slices of the running median the average
        is compared with, along each unbroken stretch of slices that count (its ends repeated;
        a stretch shorter than half of it does not count)

    Returns
    -------
    bump : ndarray (Z,), HU; -inf where a slice does not count or its dependent side (so
        averaged) holds less than SIDE_FILLED_HU (the sac has not filled there: nothing to
        compare)
    """
    ok = np.isfinite(q_dep) & allowed
    bump = np.full(q_dep.shape, -np.inf)
    if ok.sum() < win:
        return bump
    dens = _masked_mean(q_dep, ok, sm)
    # (along each stretch of slices that count on its own: across the injection, or a gap, the
    # far side is another part of the spine, and a density rising into the injection would
    # peak where its stretch ends)
    # (a stretch shorter than half the window, between a gap and the injection or at the end of
    # the field of view, would be compared mostly with its own repeated ends: it is not)
    lab, _ = ndimage.label(np.isfinite(dens))
    for sl in ndimage.find_objects(lab):
        d = dens[sl]
        if d.size < win // 2:
            continue
        b = d - ndimage.median_filter(d, size=win, mode="nearest")
        bump[sl] = np.where(d >= SIDE_FILLED_HU, b, -np.inf)
    return bump


def place_dependent_collections(v: Voxels, candidates, window_mm=75.0, smooth_mm=10.0,
                                sides=None):
    """Place each epidural collection on the sac's dependent side where it is densest.

    A collection on the dependent side (a ventral tear in a prone patient) lies under the sac's
    own layered contrast. Its arrival times place it poorly: where it leaves the sac it fills
    with the sac, and at high flow it spreads over many levels between two passes, so its
    earliest pieces are wherever it was first seen apart from the sac. Contrast enters it
    undiluted at the defect, so by the last pass before the delayed one (the last is the least
    informative: the sac is mixed by then) the dependent side of the canal is densest there
    relative to the sac's dependent side along the spine around it (:func:`dependent_bump`,
    averaged over ``smooth_mm``, against a running median over ``window_mm``; not where the sac
    was full by the second pass, at the injection). Each first candidate of a component (a dural
    tear whose contrast near its onset lies mostly on the dependent side,
    :func:`on_dependent_side`, seen by that pass: its onset no later than that pass at its
    slice; a collection first seen in the last pass, its onset or LAST_PASS_SHARE of its voxels,
    is placed by the last pass, all there is of it, ``evidence['dependent_pass']``) is moved to
    the largest such bump of DEPENDENT_BUMP_HU or more within DEPENDENT_REACH_LEVELS of where it
    was found (its timing places it that well; farther, the bump is another collection's, or the
    sac's own density rising towards the injection). A collection placed by the last pass may
    also move towards its downstream end (the end the intrathecal front reached later) and as
    far beyond it: the tear opened when the front reached it, between the last two passes, and
    the collection there filled with the sac, so what is seen apart from the sac is the part
    upstream of the defect, where the sac had filled before (``evidence['slice_range']``, its
    first and last slice; ``evidence['frac_last_pass']``, the share of its timed voxels first
    seen in the last pass; without them, neither applies). The place is on a slice with a level
    of its own, and only where the dependent side is at least as dense as where it was found (a
    bump where the sac is thinner, as at the front of its contrast or where the canal's shape
    changes level by level, is not denser than the defect); its onset and timing stay those it
    was found with (``evidence['found_slice']``, ``evidence['dependent_bump_hu']``). Candidates
    are changed in place.

    Parameters
    ----------
    v : Voxels
    candidates : list of Defect, from the connected extravasation (:func:`find_candidates`)
    window_mm, smooth_mm : float, mm along the spine
    sides : the study's :func:`_side_masks`, or None: computed here
    """
    p_all = len(v.enh_passes) if v.enh_passes is not None else 0
    if p_all < 3 or v.dependent_yx is None or v.dy_mm is None:
        return
    todo = [c for c in candidates
            if on_dependent_side(c) and c.evidence["onset_rank_in_component"] == 0
            and math.isfinite(c.level_coord)]
    if not todo:
        return
    bot = (sides or _side_masks(v))[1]
    sz = float(v.spacing_mm[2])
    sm = max(1, int(round(smooth_mm / sz)))
    win = max(3, int(round(window_mm / sz))) | 1
    allowed = v.t_intrathecal_s > v.slice_times_s[1] - 0.5
    lc_all = _level_at(v, np.arange(v.t_intrathecal_s.size, dtype=float))
    # (only slices with a level of their own: beyond the vertebrae named, the interpolated
    # level is the last one's, whatever the distance)
    named = np.isfinite(v.level_coord)
    # the last pass before the delayed one places a collection seen by then; the last, one
    # first seen there: its onset, or LAST_PASS_SHARE of its voxels (decided where each was
    # found, before any is moved)
    seen_before_last = [c.onset_time_s <= v.slice_times_s[p_all - 2][c.slice_index]
                        and c.evidence.get("frac_last_pass", 0.0) < LAST_PASS_SHARE
                        for c in todo]
    t_it = np.nan_to_num(v.t_intrathecal_s, nan=np.inf)
    for k in (p_all - 2, p_all - 1):
        mine = [c for c, b in zip(todo, seen_before_last) if b == (k == p_all - 2)]
        if not mine:
            continue
        e = v.enh_passes[k]
        q_dep = _slice_percentile(e, bot, 75)
        bump = dependent_bump(q_dep, allowed, sm, win)
        dens = _masked_mean(q_dep, np.isfinite(q_dep) & allowed, sm)   # (as dependent_bump has it)
        for c in mine:
            lo, hi = c.evidence["level_range"]
            reach = np.abs(lc_all - c.level_coord) <= DEPENDENT_REACH_LEVELS
            z0, z1 = c.evidence.get("slice_range", (0, 0))
            if k == p_all - 1 and t_it[z0] != t_it[z1]:
                # (downstream along the spine, the way from the end the front reached first to
                # the end it reached later, from where it was found to the same reach beyond
                # that end, or beyond where it was found if that lies farther)
                zd, zf = (z1, z0) if t_it[z1] > t_it[z0] else (z0, z1)
                sgn = 1.0 if lc_all[zd] >= lc_all[zf] else -1.0
                far = max(sgn * c.level_coord, sgn * float(lc_all[zd]))
                reach |= (sgn * (lc_all - c.level_coord) >= 0) & \
                    (sgn * lc_all - far <= DEPENDENT_REACH_LEVELS)
            b = np.where(named & reach, bump, -np.inf)
            z = int(np.argmax(b))
            if not b[z] >= DEPENDENT_BUMP_HU or dens[z] < dens[c.slice_index]:   # (NaN: False)
                continue
            lc = float(lc_all[z])
            c.evidence.update(found_slice=int(c.slice_index), dependent_bump_hu=float(b[z]),
                              dependent_pass=k,
                              level_range=(float(np.fmin(lo, lc)), float(np.fmax(hi, lc))))
            c.level_coord, c.level, c.slice_index = lc, _lv.name_of(lc), z
            c.z_mm = float(v.z_mm[z])
            ys, xs = np.nonzero(bot[z] & (e[z] >= EXTRAVASATION_HU))
            if ys.size:
                c.yx = (float(ys.mean()), float(xs.mean()))


def _upper_ratio(e, top, bot, measured):
    """The upper and the dependent side of the canal in one pass, per slice.

    Parameters
    ----------
    e : ndarray (Z, Y, X), the pass's enhancement, HU; top, bot : ndarray bool (Z, Y, X), the
        upper and the dependent side (:func:`_side_masks`); measured : ndarray of int, the
        slices with 5 voxels of each or more

    Returns
    -------
    ratio : ndarray (Z,), upper over dependent 75th percentile enhancement (NaN where the
        dependent side holds under 100 HU or is not measured); q_top, q_bot : ndarray (Z,), those
        percentiles, HU; d_top : ndarray (Z,), the upper side's 90th percentile, HU
    """
    nz = e.shape[0]
    ratio = np.full(nz, np.nan)
    q_top, q_bot, d_top = np.full(nz, np.nan), np.full(nz, np.nan), np.full(nz, np.nan)
    for z in measured:
        q_top[z], d_top[z] = np.percentile(e[z][top[z]], (75, 90))
        q_bot[z] = np.percentile(e[z][bot[z]], 75)
        if q_bot[z] >= 100.0:
            ratio[z] = q_top[z] / q_bot[z]
    return ratio, q_top, q_bot, d_top


def upper_collection(v: Voxels, window_mm=75.0, smooth_mm=10.0, sides=None):
    """A collection on the upper (non-dependent) side of the sac, from its density.

    Contrast layers: the sac's upper side fills late and thin, slowly along the spine as the
    contrast mixes. A collection there (a ventral tear in a supine patient) fills from its
    defect with undiluted CSF contrast (a dorsal tear in a prone patient, only with a larger
    excess, UPPER_EXCESS_DORSAL), so near the defect the upper side of the canal is much denser,
    relative to the dependent side of the same slice, than a few levels away, and sooner than
    the sac's mixing explains. Timing cannot separate it from the sac there (it fills with it);
    this ratio can. Per pass after the first (in the last one, where the sac is mixed, only a
    larger excess counts: UPPER_EXCESS_LAST), the ratio of the upper to the dependent side's
    75th percentile enhancement is compared with the median ratio of the slices where the sac
    filled as long before (mixing goes on with that time, so the ratio peaks at the injection by
    itself); the first pass with enough excess finds a collection at its peak. A collection over
    many levels fills most of the slices filled as long before and hides its own excess; but
    free contrast sinks: in a pass without enough excess, a ratio (averaged over ``smooth_mm``)
    that peaks at UPPER_DENSER or more and stays above half that peak's margin over 1 along
    UPPER_DENSER_MIN_MM of the spine is a collection, found where the ratio peaks. A pass before
    the last whose excess is only weak (UPPER_EXCESS_WEAK up to UPPER_EXCESS) ends the search:
    with no collection, unless the next pass shows the upper side there denser than the
    dependent side (UPPER_DENSER, within UPPER_CONFIRM_MM): then the weak excess is the
    collection. The first pass after the first where any of these rules finds one decides
    (``evidence['upper_rule']`` says which; ``upper_excess`` and ``upper_ratio`` are taken at
    the slice it was found at, ``upper_found_slice``). The ratio finds the collection but does
    not place its defect: that is where the collection is densest along it
    (:func:`_densest_upper`). ``span_levels`` is the length of the slices found; ``level_range``
    also covers the stretch the upper side is dense along, and the stretch along which it is
    denser than the dependent side in the last pass (UPPER_GROWN). ``sides``: the study's
    :func:`_side_masks`, or None: computed here.

    Returns
    -------
    (Defect, mask) or None; mask : ndarray bool (Z, Y, X), the upper-side contrast of the
    slices it was found on and of the defect's slice
    """
    if v.enh_passes is None or v.dependent_yx is None or v.dy_mm is None:
        return None
    p_all = len(v.enh_passes)
    if p_all < 3:
        return None
    top, bot, cosd = sides or _side_masks(v)
    nz = top.shape[0]
    zi = np.arange(nz)
    sz = float(v.spacing_mm[2])
    win = max(3, int(round(window_mm / sz))) | 1
    sm = max(1, int(round(smooth_mm / sz)))
    n_top, n_bot = top.sum(axis=(1, 2)), bot.sum(axis=(1, 2))
    # not where the sac was full by the second pass: at the injection the contrast is placed and
    # mixed by the injection itself
    at_injection = ~(v.t_intrathecal_s > v.slice_times_s[1] - 0.5)
    measured = np.nonzero((n_top >= 5) & (n_bot >= 5))[0]

    def smoothed(r):
        """A pass's upper/dependent ratio averaged over ``sm`` slices (those that have one,
        away from the injection)."""
        return _masked_mean(r, np.isfinite(r) & ~at_injection, sm)

    for k in range(1, p_all):
        e = v.enh_passes[k]
        ratio, q_top, q_bot, d_top = _upper_ratio(e, top, bot, measured)
        # the expected ratio: that of the slices where the sac has filled as long ago (mixing
        # goes on with the time since the contrast arrived, most advanced at the injection)
        since = v.slice_times_s[k] - v.t_intrathecal_s
        ok = np.isfinite(ratio) & np.isfinite(since)
        if ok.sum() < win:
            continue
        idx = np.nonzero(ok)[0]
        order = idx[np.argsort(since[idx], kind="stable")]
        expect = np.full(nz, np.nan)
        expect[order] = ndimage.median_filter(ratio[order], size=win, mode="nearest")
        excess = ndimage.uniform_filter1d(np.where(ok, ratio - expect, 0.0), sm, mode="nearest")
        excess[at_injection] = 0.0
        zc = int(np.argmax(excess))
        # (the last pass is the least informative: the sac is mixed by then, and a late
        # delayed pass is far from the others in time)
        if excess[zc] >= (UPPER_EXCESS if k < p_all - 1 else UPPER_EXCESS_LAST):
            rule = "excess"
            lab, _ = ndimage.label(excess >= 0.5 * excess[zc])
        elif k < p_all - 1 and excess[zc] >= UPPER_EXCESS_WEAK:
            # a weak excess: the first pass with one still decides (what a moved pass left at
            # the front's edge grows in later passes). It is a collection only if, in the next
            # pass, the upper side there is clearly denser than the dependent side (free
            # contrast sinks: the dense rule's test, UPPER_DENSER, within UPPER_CONFIRM_MM)
            near = np.abs(zi - zc) * sz <= UPPER_CONFIRM_MM
            d_next = smoothed(_upper_ratio(v.enh_passes[k + 1], top, bot, measured)[0])[near]
            if not (np.isfinite(d_next).any() and np.nanmax(d_next) >= UPPER_DENSER):
                return None
            rule = "weak"
            lab, _ = ndimage.label(excess >= 0.5 * excess[zc])
        else:
            # free contrast sinks: however mixed the sac, its upper side is never much denser
            # than its dependent side. Where it is, over a stretch of the spine, something
            # outside the sac lies on top (a collection over many levels fills most of the
            # slices that filled as long before and hides from the excess above). It extends
            # as far as the ratio stays above half its peak's margin over 1, and is found
            # where the ratio peaks
            # (the ratio averaged over the slices within smooth_mm that have one; the ends of
            # the field of view are not repeated: one end slice is one slice)
            dense = np.nan_to_num(_masked_mean(ratio, ok & ~at_injection, sm), nan=0.0)
            zc = int(np.argmax(dense))
            if dense[zc] < UPPER_DENSER:
                continue
            rule = "dense"
            lab, _ = ndimage.label(dense >= 1.0 + 0.5 * (dense[zc] - 1.0))
        slices = np.nonzero(lab == lab[zc])[0]
        if rule == "dense" and slices.size * sz < UPPER_DENSER_MIN_MM:
            continue
        where = np.zeros(top.shape, bool)
        where[slices] = top[slices] & (e[slices] >= EXTRAVASATION_HU)
        if not where.any():
            if rule == "weak":      # (the first pass with an excess decides)
                return None
            continue
        zz, yy, xx = np.nonzero(where)
        sector, sect_w = _sector_of(v.sectors[zz, yy, xx], np.ones(zz.size))
        side = SIDES[sector]
        lc = _level_at(v, float(zc))
        prone_dorsal = side == "dorsal" and rule == "excess" and k < p_all - 1 and \
            excess[zc] >= UPPER_EXCESS_DORSAL and math.isfinite(lc) and lc < UPPER_DORSAL_MAX_LEVEL
        if side != "ventral" and not prone_dorsal:
            # a decubitus patient (the upper side is lateral), or a prone one: a dorsal tear is
            # rare, and the sac's upper side is dense by itself where the canal runs oblique to
            # the axial slices (the lumbosacral curve) or once the contrast has mixed (the last
            # pass); only a larger excess (not the dense rule) before the last pass, above the
            # lumbar canal, counts. This first pass with an excess ends the search
            return None
        # found there; placed where it is densest (not where the sac was full in the first pass
        # already, at the injection, where it is mixed and its upper side dense by itself; nor,
        # for a prone patient's dorsal collection, beyond the level its excess counts down to)
        z_found = zc
        allowed = ~(v.t_intrathecal_s <= v.slice_times_s[0] + 0.5)
        if prone_dorsal:
            lc_all = _level_at(v, np.arange(nz, dtype=float))
            allowed &= np.isfinite(lc_all) & (lc_all < UPPER_DORSAL_MAX_LEVEL)
        zc, run = _densest_upper(q_top, q_bot, z_found, sm, dense_hu=d_top, allowed=allowed)
        lc = _level_at(v, float(zc))
        # the mask holds the upper-side contrast the collection was found by and the defect's
        where[zc] |= top[zc] & (e[zc] >= EXTRAVASATION_HU)
        t_it = float(v.t_intrathecal_s[zc]) if np.isfinite(v.t_intrathecal_s[zc]) else float("nan")
        t_prev, t_here = float(v.slice_times_s[k - 1][zc]), float(v.slice_times_s[k][zc])
        onset = max(t_prev, t_it) if math.isfinite(t_it) else 0.5 * (t_prev + t_here)
        onset = min(onset, t_here)
        lcs = _level_at(v, slices.astype(float))
        # (how far it reaches: its own slices, the stretch its upper side is dense along, and
        # the stretch along which, in the last pass, the upper side is denser than the
        # dependent side, UPPER_GROWN: the collection grows after it is found, and wraps
        # around the sac; a mixed sac's ratio is about 1 everywhere)
        r_last = ratio if k == p_all - 1 else \
            _upper_ratio(v.enh_passes[p_all - 1], top, bot, measured)[0]
        lab_last, _ = ndimage.label(np.nan_to_num(smoothed(r_last), nan=0.0) >= UPPER_GROWN)
        hit = lab_last[np.r_[slices, run, z_found]]
        grown = np.nonzero(np.isin(lab_last, hit[hit > 0]))[0]
        lc_reach = np.concatenate([lcs, _level_at(v, run.astype(float)),
                                   _level_at(v, grown.astype(float))])
        lc_reach = lc_reach[np.isfinite(lc_reach)]
        level_range = (float(lc_reach.min()), float(lc_reach.max())) if lc_reach.size \
            else (float("nan"), float("nan"))
        vox_mm3 = float(np.prod(v.spacing_mm))
        iv = _interval_s(v.slice_times_s)
        ev = dict(volume_mm3=float(where.sum()) * vox_mm3,
                  delay_s=onset - t_it if math.isfinite(t_it) else float("nan"),
                  span_levels=float(np.max(lcs) - np.min(lcs)), growth=1.0, first_pass=k,
                  level_range=level_range,
                  frac_paraspinal=0.0, frac_venous=0.0,
                  peak_median_hu=float(np.median(e[where])), peak_max_hu=float(e[where].max()),
                  spread_levels=0.0, sector_weights=[float(x) for x in sect_w], interval_s=iv,
                  component=-1, onset_rank_in_component=0, n_passes=p_all,
                  t_intrathecal_s=t_it, onset_cost_s=float("nan"),
                  upper_excess=float(excess[z_found]), upper_rule=rule,
                  dependent_cos=float(cosd[where].mean()),  # (informational: < -0.5)
                  upper_ratio=float(dense[z_found] if rule == "dense" else ratio[z_found]),
                  upper_found_slice=int(z_found))
        z_mm = float(np.interp(zc, zi, v.z_mm))
        name = _lv.name_of(lc) if math.isfinite(lc) else "unknown"
        ys, xs = np.nonzero(where[zc])
        if not ys.size:
            ys, xs = yy, xx
        d = Defect(level=name, level_coord=lc, z_mm=z_mm, side=side, kind="dural_tear",
                   onset_time_s=onset, confidence=0.0, delay_s=ev["delay_s"], slice_index=zc,
                   yx=(float(ys.mean()), float(xs.mean())), evidence=ev)
        return d, where
    return None


def _mirrored(c: Defect, candidates) -> bool:
    """A lateral candidate with a twin on the other side at the same level: root sleeves and
    other paired structures fill symmetrically; a leak is one-sided."""
    if c.side not in ("left", "right"):
        return False
    other = "right" if c.side == "left" else "left"
    iv = max(c.evidence["interval_s"], 1.0)
    for o in candidates:
        if o is c or o.side != other:
            continue
        if abs(o.level_coord - c.level_coord) > 0.6:
            continue
        va, vb = c.evidence["volume_mm3"], o.evidence["volume_mm3"]
        if max(va, vb) > 3.0 * min(va, vb):
            continue
        if abs(o.onset_time_s - c.onset_time_s) > 0.8 * iv:
            continue
        return True
    return False


def _beside_upper_collection(c: Defect, candidates) -> bool:
    """Whether a candidate runs along the spine beside a collection on the sac's upper side.

    A collection from a ventral tear in a supine patient lies on the sac's upper side
    (:func:`upper_collection`) and, as it grows, wraps around the sac into the lateral
    recesses and the foramina, where it is seen apart from the sac as a long lateral
    candidate mostly inside the canal (``frac_paraspinal`` below 0.5). When at least half of
    that candidate's length (``level_range``) lies along the collection's, it is the
    collection's edge.
    """
    nan2 = (float("nan"), float("nan"))
    lo, hi = c.evidence.get("level_range", nan2)
    if not (math.isfinite(lo) and math.isfinite(hi)) or c.evidence["frac_paraspinal"] >= 0.5:
        return False
    for o in candidates:
        e = o.evidence
        if o is c or "upper_excess" not in e or e["volume_mm3"] < MIN_LEAK_MM3:
            continue
        o_lo, o_hi = e.get("level_range", nan2)
        if min(hi, o_hi) - max(lo, o_lo) >= 0.5 * (hi - lo):
            return True
    return False


def is_leak(c: Defect, candidates=()) -> bool:
    """Whether a candidate is extravasation rather than something that fills with the sac.

    Root sleeves, meningeal diverticula and pseudomeningoceles fill at the local intrathecal
    arrival, stay local and do not grow, and root sleeves come in pairs; a leak starts later than
    the sac (or ahead of it, fed along a collection), spreads along the spine or grows from pass
    to pass, on one side. Lateral contrast along the spine beside a collection on the sac's
    upper side is that collection's edge (:func:`_beside_upper_collection`). Contrast thinner
    than a collection (COLLECTION_MIN_MM2) along many levels is a rim at the sac's edge: its
    length, growth and size do not make it a leak. Contrast nearly all on the sac's wall
    (``rim_fraction``, RIM_FRACTION) is a rim whatever its size, and contrast much wider across
    than it is long along the spine (FLAT_RATIO) is an artefact of one slab: neither is a leak.
    Without a pre-contrast pass, contrast mostly there in the first pass (FIRST_PASS_OUTSIDE)
    cannot be timed and is not a leak. Where the sac first filled in the last pass
    (``untimed``), only a pool beside the canal (UNTIMED_POOL_MM3) or a fistula's thin vein
    along the spine (:func:`_untimed_vein`) is one. Contrast whose enhancement falls away in a
    later pass (``hold`` under HOLD_FRACTION) was made by that pass, not by a leak. A blob at
    the foramen the size of a diverticulum (POUCH_MAX_MM3) that stays at its level is that
    pouch, whatever its delay or growth (both partial volume at its edges), unless it fills
    ahead of the sac.
    """
    e = c.evidence
    if "upper_excess" in e:
        # a collection on the sac's upper side, found by its density (upper_collection)
        return e["volume_mm3"] >= MIN_LEAK_MM3
    if e.get("hold", 1.0) < HOLD_FRACTION:
        # contrast that left the sac stays out while the sac stays dense: enhancement that
        # falls away in a later pass was made by the passes it is in (a streak, motion)
        return False
    if e.get("rim_fraction", 0.0) >= RIM_FRACTION:
        # contrast on the sac's wall, within RIM_MM of it nearly everywhere: a rim, not a leak
        return False
    flat = e.get("length_mm", math.inf) < FLAT_RATIO * e.get("width_mm", 0.0)
    if c.kind != "csf_venous_fistula" and flat:
        # wide in the axial plane but short along the spine: an artefact of one slab (a streak,
        # a pass that moved), not contrast that left through the dura (a vein running out
        # through the foramen is flat, a collection or a sleeve's blob is not)
        return False
    iv = max(e["interval_s"], 1.0)
    delayed = math.isfinite(c.delay_s) and abs(c.delay_s) > 0.35 * iv
    spreads = e["span_levels"] >= 1.5
    grows = e["growth"] >= 2.0 and e["volume_mm3"] >= 60.0
    if e["volume_mm3"] < MIN_LEAK_MM3:
        return False
    # contrast thin along many levels is a rim at the sac's edge, not a collection: its length,
    # growth and volume do not count
    thin = c.kind == "dural_tear" and spreads and \
        e["volume_mm3"] < COLLECTION_MIN_MM2 * e.get("length_mm", 0.0)
    if thin:
        spreads = grows = False
    if not math.isfinite(c.delay_s):
        # the sac never filled there: nothing to time it against (the edge of the field)
        return False
    if c.kind == "dural_tear" and e["frac_paraspinal"] > 0.6:
        # a tear fills an epidural collection; contrast mostly outside the canal in front of or
        # behind it is something else (a vessel, a streak)
        return False
    if _mirrored(c, candidates):
        return False
    if e.get("frac_first_pass", 0.0) >= FIRST_PASS_OUTSIDE:
        # there before the study could time anything
        return False
    if c.kind == "nerve_root_sleeve" and e["volume_mm3"] < POUCH_MAX_MM3 and not spreads and \
            c.delay_s >= -0.35 * iv:
        # a pouch at the foramen the size of a diverticulum, filling with the sac (not ahead
        # of it: contrast there before the sac is fed along a collection)
        return False
    relaxed = bool(e.get("untimed")) and e.get("n_passes", UNTIMED_MIN_PASSES) >= UNTIMED_MIN_PASSES
    lateral_pool = c.side in ("left", "right") and \
        _lateral_pool(e["volume_mm3"], e["frac_paraspinal"], relaxed)
    pool = lateral_pool and c.kind == "nerve_root_sleeve"
    if e.get("untimed"):
        # nothing to time it against (the sac filled there in the last pass): only its size,
        # as a pool beside the canal whatever kind its density made of it, or its shape, as a
        # fistula's thin vein along the spine; and not one slab
        vein = relaxed and c.kind == "csf_venous_fistula" and _untimed_vein(
            e.get("length_mm", 0.0), e.get("thickness_mm", math.inf), e["peak_median_hu"],
            e["frac_paraspinal"])
        return (lateral_pool or vein) and not flat
    if pool:
        # a pool outside the canal beside it, larger than any sleeve or pouch that fills with
        # the sac: contrast out through the foramen (a high-flow sleeve leak fills with the sac)
        return True
    if c.side in ("left", "right") and c.kind != "csf_venous_fistula" and spreads and \
            _beside_upper_collection(c, candidates):
        # lateral contrast along the spine beside a collection on the sac's upper side: that
        # collection spreading around the sac (a sleeve leaks at one level)
        return False
    if c.side in ("left", "right") and c.kind != "csf_venous_fistula" and \
            e["frac_paraspinal"] < 0.3:
        # a lateral leak leaves through the foramen: contrast late at the side of the canal that
        # stays inside it is a sleeve or recess filling slowly, unless it is a long collection
        # ... or a blob that keeps growing from pass to pass (a slow sleeve fills and stops)
        return delayed and ((e["volume_mm3"] >= 500.0 and spreads) or
                            (e["volume_mm3"] >= 1000.0 and e["growth"] >= 5.0))
    if c.kind == "csf_venous_fistula" and sum(e.get("sector_weights", (0, 0, 1, 1))[2:]) < 0.5:
        # a fistula drains through the foramen into the veins beside the spine; enhancement
        # mostly in front of or behind the canal outside it is marrow, a streak or a vessel
        return False
    if c.kind == "csf_venous_fistula" and not (math.isfinite(c.delay_s) and c.delay_s > -2.0):
        # a fistula drains contrast that reached its level: it opacifies after the sac there
        return False
    if c.kind == "dural_tear" and c.side == "ventral" and e["frac_paraspinal"] < 0.3 and \
            e["volume_mm3"] >= COLLECTION_MM3 and not thin:
        # a large collection inside the canal in front of the sac, not filling with it
        return True
    if c.kind == "dural_tear" and c.side == "dorsal":
        # dorsal tears are rare (ventral 96 %): they need a collection that is both late and
        # long ... or, on the dependent side (a supine patient), a large one inside the canal
        # behind the sac: there the collection fills as the sac's own dependent side does, so
        # it is not late, and only its size sets it apart from the sac's edge
        if on_dependent_side(c) and e["frac_paraspinal"] < 0.3 and \
                spreads and e["volume_mm3"] >= DEPENDENT_COLLECTION_MM3:
            return True
        return delayed and spreads and e["volume_mm3"] >= 300.0
    return delayed or spreads or grows


def score(c: Defect) -> float:
    """Raw evidence that a candidate is the (first) defect, before calibration.

    Large extravasation, leaving the sac as soon as the sac filled there, early in the study.
    """
    e = c.evidence
    iv = max(e["interval_s"], 1.0)
    d = c.delay_s if math.isfinite(c.delay_s) else 2.0 * iv
    if c.kind == "csf_venous_fistula" and d > 0:
        # a fistula's vein opacifies some time after the sac there (the drainage takes its
        # time): up to one interval of delay is no evidence against it
        d = max(0.0, d - iv)
    s = (1.0 * math.log10(max(e["volume_mm3"], 1.0))
         - 0.8 * min(abs(d) / iv, 3.0)
         + 0.4 * min(e["span_levels"], 4.0) / 4.0
         - 0.7 * min(e["spread_levels"], 2.0)
         - 0.8 * e["onset_rank_in_component"])
    # priors from surgery: ventral 77 %, lateral 19 %, foraminal 4 %; dorsal tears are rare;
    # type 1 leaks (with an epidural collection) are the commonest
    if c.kind == "dural_tear" and c.side == "dorsal":
        # (half of it for a collection on a prone patient's upper side: that rule already
        # demands an excess several times the ventral one, UPPER_EXCESS_DORSAL)
        s -= 0.5 if "upper_excess" in e else 1.0
    if c.kind == "csf_venous_fistula":
        s -= 0.7
    return s


#: Platt scaling of :func:`score` and the ambiguity (how close the next-best call at another
#: level came, 0..1) into the probability that the top call is right:
#: ``1 / (1 + exp(-(a * score + b[group] + c * ambiguity [+ moved])))``, with an offset ``b``
#: per group of calls (:func:`calibration_group`). The slopes ``a`` and ``c`` were fitted on
#: 120 random 1 mm phantoms that are never the accuracy sweep's (seeds 300-359 and the tuning
#: seeds 140-199):
#: a higher score raises the confidence and an ambiguous call (a next-best call at another
#: level nearly as strong) lowers it by up to 1.3 on the logit. The group's rate of right calls
#: sets most of it. Tears on the sac's dependent side (``dependent_tear``,
#: :func:`on_dependent_side`: mostly ventral tears in prone patients, whose collection lies
#: under the sac's layered contrast) are right less often than the others.
#: A study in which the patient moved between passes (its passes registered and resampled) gets
#: one more offset, ``moved``: its top calls were right 53 times in 78 on the fresh sweeps of
#: seeds 21000-23099 and 24000-24079, against 201 in 214 when nothing moved.
#: The offsets were refitted with the slopes held, on the 292 top calls of those four sweeps
#: (``benchmarks/sweep.py --fit-only --hold-slopes --l2-group 0.02 --pool-calibration
#: docs/sweep/fresh-2{1,2,3,4}000/results.json``; right/calls: ventral tear 40/45,
#: dependent-side tear 73/93, dorsal tear 4/5, root sleeve 56/60, fistula 81/89). Fitted on three
#: of the four sweeps and tested on the fourth, the ``moved`` offset lowered the log-loss on every
#: one (0.34, 0.31, 0.37, 0.31 against 0.38, 0.34, 0.39, 0.44 without it; expected calibration
#: error 0.04-0.07); on 24000-24079, the first sweep after the offsets alone were fitted on the
#: other three, those gave 0.44 and 0.111. A refit of the slope ``a`` too was worse (on
#: 21000-23099), and a free refit of every constant on 21000-22099 alone had turned the score's
#: slope negative (the wrong dependent-side calls score high). The ridge holds each group's
#: offset towards the common one, so the dependent-side tears are a little over-confident
CALIBRATION = {"a": 0.304, "c": -1.264, "moved": -2.116,
               "b": {"csf_venous_fistula": 2.802, "dependent_tear": 1.389, "dorsal_tear": 2.208,
                     "nerve_root_sleeve": 2.549, "ventral_tear": 2.236}}


def calibration_group(kind: str, side: str, dependent: bool = False) -> str:
    """The group of calls that share a calibration offset: dural tears by side, or by lying on
    the sac's dependent side (``dependent``, see :func:`on_dependent_side`), else the kind."""
    if kind == "dural_tear":
        if dependent:
            return "dependent_tear"
        return "dorsal_tear" if side == "dorsal" else "ventral_tear"
    return kind


def calibration_group_of(c: Defect) -> str:
    """The calibration group of a candidate (:func:`calibration_group`)."""
    return calibration_group(c.kind, c.side, on_dependent_side(c))


def on_dependent_side(c: Defect) -> bool:
    """A dural tear whose contrast near its onset lies on the sac's dependent side (its
    ``evidence['dependent_cos']`` over DEPENDENT_COS): a ventral tear in a prone patient, a
    dorsal one in a supine patient. Its collection lies under the sac's own layered contrast."""
    return c.kind == "dural_tear" and c.evidence.get("dependent_cos", float("nan")) > DEPENDENT_COS


def calibrate(raw: float, ambiguity: float = 0.0, group: str | None = None,
              moved: bool = False) -> float:
    """Confidence in [0, 1] from a call's raw score, its ambiguity and its group, and whether
    the patient moved between passes (``moved``: passes were registered and resampled).

    ``sigmoid(a * raw + b[group] + c * ambiguity [+ moved])`` with the constants of
    :data:`CALIBRATION`
    (fitted by ``benchmarks/sweep.py --fit-calibration`` on phantom sweeps that are not the
    next accuracy sweep's);
    an unknown group takes the mean offset.
    """
    cal = CALIBRATION
    offsets = cal["b"]
    b = offsets.get(group, float(np.mean(list(offsets.values()))))
    x = cal["a"] * raw + b + cal["c"] * ambiguity + (cal.get("moved", 0.0) if moved else 0.0)
    return float(1.0 / (1.0 + math.exp(-x)))


def rank(candidates, moved: bool = False):
    """Split candidates into defects (leaks, most probable first) and the rest.

    Parameters
    ----------
    candidates : list of Defect, from :func:`find_candidates`
    moved : bool
        The patient moved between passes (the passes were registered): every confidence is
        lower (:func:`calibrate`); the order is not changed.

    Returns
    -------
    defects : list of Defect (confidence set), most probable first
    ranked : list of Defect, every candidate, leaks first
    """
    flags = {id(c): is_leak(c, candidates) for c in candidates}
    leaks = [c for c in candidates if flags[id(c)]]
    others = [c for c in candidates if not flags[id(c)]]
    for c in candidates:
        c.evidence["score"] = score(c)
        c.evidence["is_leak"] = flags[id(c)]
    leaks.sort(key=lambda c: -c.evidence["score"])
    defects = []
    for c in leaks:
        # one defect per component unless its own onset is clearly separate; one per place
        if any(abs(c.level_coord - d.level_coord) < 1.0 for d in defects):
            continue
        if defects and (c.evidence["component"] in {d.evidence["component"] for d in defects}):
            continue
        if defects and c.evidence["score"] < defects[0].evidence["score"] - SECOND_DEFECT_MARGIN:
            continue
        defects.append(c)
    for i, d in enumerate(defects):
        amb = 0.0
        alts = [c for c in leaks if c is not d and abs(c.level_coord - d.level_coord) >= 1.0]
        if alts:
            gap = d.evidence["score"] - max(c.evidence["score"] for c in alts)
            amb = max(0.0, 1.0 - gap)
        d.evidence["ambiguity"] = amb
        d.confidence = calibrate(d.evidence["score"], amb, calibration_group_of(d), moved)
    # most probable first: groups differ in how often their calls are right
    defects.sort(key=lambda d: -d.confidence)
    for c in others:
        c.confidence = calibrate(c.evidence["score"], 0.0, calibration_group_of(c), moved) * 0.2
    rest = sorted([c for c in leaks if c not in defects], key=lambda c: -c.evidence["score"])
    return defects, defects + rest + others


#: a second defect is reported only when its evidence is nearly as strong as the first's
SECOND_DEFECT_MARGIN = 0.8


def static_reading(ext_last_pct, bins_present):
    """What a single delayed CT myelogram shows: the densest extravasation in the last pass.

    Parameters
    ----------
    ext_last_pct : ndarray, shape (N_BINS, 4), HU; epidural high-percentile enhancement per bin
        and sector in the last pass
    bins_present : ndarray, shape (N_BINS,), bool

    Returns
    -------
    (level name, side) or None when nothing outside the sac enhances
    """
    v = np.where(bins_present[:, None] & np.isfinite(ext_last_pct), ext_last_pct, -np.inf)
    if not np.isfinite(v).any() or v.max() < EXTRAVASATION_HU:
        return None
    b, s = np.unravel_index(int(np.argmax(v)), v.shape)
    return _lv.name_of(b / 2.0), SIDES[s]
