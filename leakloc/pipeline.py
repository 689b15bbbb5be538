"""The analysis as one call: io -> anatomy -> kernels -> kinetics/detect -> plan.

:class:`Analysis` is what report and plots take.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class LevelKinetics:
    """Per-vertebra timing (``report.json`` ``levels`` entry). Times are s after the first pass; NaN = never."""

    name: str
    z_range_mm: tuple
    intrathecal_arrival_s: float
    epidural_arrival_s: float
    venous_arrival_s: float = float("nan")

    def to_report(self) -> dict:
        def t(v):
            return None if not np.isfinite(v) else round(float(v), 2)
        return {"name": self.name, "z_range_mm": [round(float(self.z_range_mm[0]), 2),
                                                  round(float(self.z_range_mm[1]), 2)],
                "intrathecal_arrival_s": t(self.intrathecal_arrival_s),
                "epidural_arrival_s": t(self.epidural_arrival_s)}


@dataclass
class Analysis:
    """Everything one analysis found.

    Attributes
    ----------
    series : leakloc.io.PhaseSeries (metadata; pixels are not kept)
    anatomy : leakloc.anatomy.Anatomy
    times_s : ndarray, shape (P,), pass start times, s
    level_names : list of str, vertebrae in the field of view, cranial first (L of them)
    intrathecal_hu : ndarray, shape (L, P), mean enhancement of the sac per level and pass, HU
    extravasation_hu : ndarray, shape (L, P), high-percentile enhancement outside the sac, HU
    venous_hu : ndarray, shape (L, P), high-percentile enhancement of the paraspinal shell, HU
    stats : dict of ndarray, shape (L, 3, 4, P) per level x compartment x sector x pass:
        ``mean``, ``p95``, ``n_above``, ``count``
    levels : list of LevelKinetics
    defects : list of leakloc.detect.Defect, ranked (empty: no leak)
    candidates : list of leakloc.detect.Defect, every candidate considered, ranked
    plan : leakloc.plan.Plan or None
    extravasation_mask : ndarray, shape (Z, Y, X), uint8 (1 = extravasated contrast)
    arrival_s : ndarray, shape (Z, Y, X), float32, voxel arrival time (NaN = never)
    mip_sagittal_hu, mip_coronal_hu : ndarray, shape (P, Z, W), enhancement MIPs straightened
        along the centreline (W across the canal, ventral/left first)
    mip_width_mm : float, physical width W spans
    axial_hu : ndarray, shape (Y, X), HU, or None; the axial slice through the top defect at the first
        pass that shows the leak (``axial_phase``, ``axial_slice``); axial_enh_hu the same minus baseline
    motion_mm : list of float, rigid motion found per pass (0 for the first)
    timings_s : dict, seconds per stage
    warnings : list of str
    """

    series: object
    anatomy: object
    times_s: np.ndarray
    level_names: list
    intrathecal_hu: np.ndarray
    extravasation_hu: np.ndarray
    venous_hu: np.ndarray
    stats: dict
    levels: list
    defects: list
    candidates: list
    plan: object
    extravasation_mask: np.ndarray
    arrival_s: np.ndarray
    mip_sagittal_hu: np.ndarray
    mip_coronal_hu: np.ndarray
    mip_width_mm: float = 60.0
    axial_hu: np.ndarray | None = None
    axial_enh_hu: np.ndarray | None = None
    axial_phase: int = -1
    axial_slice: int = -1
    motion_mm: list = field(default_factory=list)
    timings_s: dict = field(default_factory=dict)
    warnings: list = field(default_factory=list)

    @property
    def leak_detected(self) -> bool:
        return len(self.defects) > 0


def analyze(series, levels_map=None, top_vertebra: str | None = None, progress=None) -> Analysis:
    """Analyse a dynamic study.

    Parameters
    ----------
    series : leakloc.io.PhaseSeries, two or more passes
    levels_map : ndarray, shape (Z, Y, X), int, or None; vertebra labels (TotalSegmentator ids)
    top_vertebra : str or None; the most cranial vertebral body in the field of view
    progress : callable(str) or None

    Returns
    -------
    Analysis

    Raises
    ------
    leakloc.AnalysisError
        A study that cannot be analysed, with the reason.
    """
    return _analyze_impl(series, levels_map, top_vertebra, progress)


# --------------------------------------------------------------------------------------------
# The analysis
# --------------------------------------------------------------------------------------------

import math  # noqa: E402
import time  # noqa: E402

from scipy import ndimage  # noqa: E402

from leakloc import AnalysisError  # noqa: E402

#: margin (mm) around the canal centre kept for the analysis (canal + paraspinal shell)
ROI_MARGIN_MM = 42.0
#: in-plane smoothing before differencing passes, mm (sigma)
SMOOTH_MM = 0.8
#: enhancement (HU) that counts as contrast for per-voxel arrival
ARRIVAL_HU = 80.0
#: a voxel whose density changes by more than this over the passes holds contrast (HU) ...
CHANGING_HU = 150.0
#: ... and, dense in every pass, is given the density of CSF as its baseline (HU)
WATER_HU = 10.0
#: passes whose bone surface moved more than this (mm, estimated) are registered ...
MOTION_CHECK_MM = 0.1
#: ... and resampled when the registration finds more than this (mm)
MOTION_MIN_MM = 0.5
#: HU below which a voxel is air (outside the body, or outside a moved pass's field)
AIR_HU = -300.0
#: mm from the coarse canal centre within which the contrast column is judged
COLUMN_MM = 40.0
#: ... after motion (bone rims that moved are contrast-like everywhere but in the canal)
COLUMN_MOVED_MM = 20.0
#: the first pass's contrast fills stretches of slices (gaps up to RUN_GAP_MM closed) at least
#: RUN_MIN_MM long
RUN_GAP_MM = 6.0
RUN_MIN_MM = 20.0
#: HU of baseline bone that a moved pass's enhancement is measured over, within one voxel
MOTION_BONE_HU = 150.0
_KEEP_DEBUG = False


def _say(progress, msg):
    if progress is not None:
        progress(msg)


def contrast_run(dense_slices, slice_mm, gap_mm=RUN_GAP_MM, min_mm=RUN_MIN_MM):
    """The slices where the first pass holds contrast: stretches, not isolated slices.

    Contrast injected before the first pass is a bolus spreading from the needle: it fills a
    stretch of the sac, with gaps where its column was too thin to judge. Short runs of dense
    slices elsewhere are bone (an endplate that moved across the slice between passes makes a
    whole slice's column change).

    Parameters
    ----------
    dense_slices : ndarray of bool, shape (Z,), the slice's contrast column is dense in the first pass
    slice_mm : float, slice spacing, mm
    gap_mm : float, gaps of at most this many mm of slices inside a stretch are closed
    min_mm : float, a stretch whose slices (first to last, inclusive) cover less than this, mm,
        is no bolus

    Returns
    -------
    ndarray of bool, shape (Z,): the dense slices of every stretch that is long enough
    """
    dense = np.asarray(dense_slices, bool)
    out = np.zeros_like(dense)
    if not dense.any():
        return out
    gap = int(math.floor(gap_mm / slice_mm + 1e-6))
    # (closing by hand: ``binary_closing`` erodes at the array's ends)
    idx = np.nonzero(dense)[0]
    starts = np.concatenate([[0], np.nonzero(np.diff(idx) > gap + 1)[0] + 1])
    ends = np.concatenate([starts[1:] - 1, [idx.size - 1]])
    for a, b in zip(idx[starts], idx[ends]):
        if (b - a + 1) * slice_mm >= min_mm:
            out[a:b + 1] = dense[a:b + 1]
    return out


def _fill_missing(v, ref, missing=None):
    """Voxels of a resampled pass with no data (NaN) take ``ref``'s values, in place.

    Returns ``missing`` (bool, the shape of ``v``, or None) or-ed with those voxels.
    """
    bad = np.isnan(v)
    if not bad.any():
        return missing
    v[bad] = ref[bad]
    return bad if missing is None else missing | bad


def _check_finite(vol, series, i):
    if not np.isfinite(vol).all():
        src = series.phases[i].source or f"phase {i}"
        raise AnalysisError(f"phase {i} ({src}): NaN or infinite voxel values")


def _analyze_impl(series, levels_map=None, top_vertebra=None, progress=None) -> Analysis:
    from leakloc import anatomy as an
    from leakloc import detect as dt
    from leakloc import io
    from leakloc import kinetics as kn
    from leakloc import plan as pl
    from leakloc import streaks as sk
    from leakloc.kernels import half_rise, region_stats, stream_phase

    timings = {}
    t0 = time.perf_counter()
    n = series.n_phases
    if n < 2:
        raise AnalysisError(f"only {n} pass: a dynamic analysis needs two or more")
    times = series.times_s
    if np.any(np.diff(times) <= 0):
        raise AnalysisError("pass times do not increase: " + ", ".join(f"{t:g}" for t in times))
    grid = series.grid
    sx, sy, sz = (float(v) for v in grid.spacing_mm)
    nz, ny, nx = grid.shape_zyx
    st = np.asarray(series.slice_times_s, dtype=np.float64)

    # 1. a coarse look at every pass: where contrast goes (the canal) and whether bone moved
    step = max(1, int(round(2.0 / min(sx, sy))))
    mn = mx = None
    first = None
    motion = [0.0] * n
    motions = [None] * n
    slab_of_slice, n_slabs = sk.slab_layout(nz, sz)
    block = sk.block_size((sy, sx))
    slabs = []
    for i in range(n):
        _say(progress, f"survey pass {i + 1}/{n}")
        v = series.phase(i)
        _check_finite(v, series, i)
        sub = np.ascontiguousarray(v[:, ::step, ::step])
        if first is None:
            first, first_sub = v, sub
        elif io.needs_registration(first_sub, sub, (sx * step, sy * step, sz)) > MOTION_CHECK_MM:
            # patients move between passes: subtraction would invent contrast at bone edges
            _say(progress, f"register pass {i + 1}/{n}")
            m = io.estimate_rigid(first, v, grid.spacing_mm)
            if m.max_displacement_mm > MOTION_MIN_MM:
                motions[i] = m
                motion[i] = float(m.max_displacement_mm)
                v = io.apply_rigid(v, grid.spacing_mm, m)
                sub = np.ascontiguousarray(v[:, ::step, ::step])
        mn = sub.copy() if mn is None else np.minimum(mn, sub)
        mx = sub.copy() if mx is None else np.maximum(mx, sub)
        slabs.append(sk.slab_means(v, slab_of_slice, n_slabs, block))
    del first, first_sub
    moved = [i for i in range(n) if motions[i] is not None]
    if moved:
        # after registration bone edges still move by a fraction of a voxel and the skin or the
        # field edge by more: a change explained by a neighbour's value (bone next to a rim),
        # or by air in any pass, is no contrast
        rise = np.where(mn > AIR_HU, mx - ndimage.maximum_filter(mn, size=(1, 3, 3)), 0.0)
    else:
        rise = mx - mn
    centre_sub, reached = an.coarse_centreline(rise, (sy * step, sx * step))
    del rise
    del mn, mx
    centre = centre_sub * step
    # streak artefacts of every pass, measured far from the canal
    _say(progress, "streak artefacts")
    per_slab = np.maximum(np.bincount(slab_of_slice, minlength=n_slabs), 1)[:, None]
    centre_slab = np.stack([np.bincount(slab_of_slice, weights=centre[:, k], minlength=n_slabs)
                            for k in (0, 1)], axis=1) / per_slab
    streaks = sk.find_streaks(slabs, centre_slab, (sy, sx), block,
                              motion_mm=max(motion))
    del slabs
    mrg_y, mrg_x = ROI_MARGIN_MM / sy, ROI_MARGIN_MM / sx
    y0 = int(max(0, math.floor(centre[:, 0].min() - mrg_y)))
    y1 = int(min(ny, math.ceil(centre[:, 0].max() + mrg_y) + 1))
    x0 = int(max(0, math.floor(centre[:, 1].min() - mrg_x)))
    x1 = int(min(nx, math.ceil(centre[:, 1].max() + mrg_x) + 1))
    centre_roi = centre - np.array([y0, x0], float)
    warnings = []
    if moved:
        warnings.append("patient moved between passes: registered " + ", ".join(
            f"pass {i} ({motion[i]:.1f} mm)" for i in moved))
    streaky = [(i, len({q.slab for q in streaks[i]})) for i in range(n) if streaks[i]]
    if streaky:
        warnings.append("streak artefacts removed from " + ", ".join(
            f"pass {i} ({k} of {n_slabs} slabs)" for i, k in streaky))
    timings["survey"] = time.perf_counter() - t0

    # 2. the region of interest of every pass, smoothed, kept in memory (a fraction of one pass)
    t1 = time.perf_counter()
    sig = (0.0, SMOOTH_MM / sy, SMOOTH_MM / sx)
    rois = []
    first_roi = uncovered = None
    for i in range(n):
        _say(progress, f"read pass {i + 1}/{n}")
        v = series.phase(i)
        if motions[i] is not None:
            # (cubic: linear interpolation blurs thin oblique bone, which then shows as contrast
            # against the sharp first pass; NaN: no data where the moved pass did not reach)
            v = io.apply_rigid(v, grid.spacing_mm, motions[i], order="bspline",
                               default_hu=np.nan)
        v = np.ascontiguousarray(v[:, y0:y1, x0:x1], dtype=np.float32)
        v = sk.remove(v, streaks[i], slab_of_slice, (y0, x0), (sy, sx))
        if i == 0 and moved:
            first_roi = v
        elif motions[i] is not None:
            # where the moved pass did not reach (the ends of the scan, the edge of its field)
            # there are no data: the first pass stands in (for the registration below), and
            # those voxels are made the same in every pass after the loop
            uncovered = _fill_missing(v, first_roi, uncovered)
            # the survey registered on a coarse grid: finish at full resolution around the
            # spine (a residual of a few tenths of a mm leaves bright rims at every bone edge)
            _say(progress, f"refine registration of pass {i + 1}/{n}")
            m2 = io.estimate_rigid(first_roi, v, grid.spacing_mm, shrink=(1, 1, 1),
                                   iterations=60,
                                   valid=None if uncovered is None else ~uncovered)
            if m2.max_displacement_mm > MOTION_CHECK_MM:
                v = io.apply_rigid(v, grid.spacing_mm, m2, order="bspline", default_hu=np.nan)
                uncovered = _fill_missing(v, first_roi, uncovered)
        rois.append(np.ascontiguousarray(ndimage.gaussian_filter(v, sig)))
    del first_roi
    if uncovered is not None:
        # no change over time where any pass has no data: nothing is measured there
        for r_ in rois[1:]:
            r_[uncovered] = rois[0][uncovered]
        del uncovered
    # (pairwise, in place: ``np.minimum.reduce(rois)`` would first stack every pass into one array)
    stack_min = rois[0].copy()
    stack_max = rois[0].copy()
    for r_ in rois[1:]:
        np.minimum(stack_min, r_, out=stack_min)
        np.maximum(stack_max, r_, out=stack_max)
    # a pre-contrast first pass: nothing in it is denser than the temporal minimum + noise
    # ... judged in the contrast column near the canal centre, away from bone edges
    # ... within COLUMN_MM (COLUMN_MOVED_MM) of the slice's coarse centre, opened by a disk of
    # radius 1.5 mm (the column of fluid, not thin rims where bone edges moved a fraction of a
    # voxel)
    dyx = np.indices(stack_min.shape[1:]).astype(np.float32)
    near = ((dyx[0][None] - centre_roi[:, 0, None, None]) ** 2 * sy ** 2
            + (dyx[1][None] - centre_roi[:, 1, None, None]) ** 2 * sx ** 2
            < (COLUMN_MOVED_MM if moved else COLUMN_MM) ** 2)
    del dyx
    col = ((stack_max - stack_min) > an.SAC_ENH_HU) & near
    del near
    col = ndimage.binary_opening(col, structure=an.disk_yx((sy, sx), 1.5)[None])
    pre = bool(col.any() and float(np.median((rois[0] - stack_min)[col])) < 20.0)
    # the baseline is each voxel's temporal minimum. Without a pre-contrast pass (or with one
    # taken after the injection reached the lumbar sac) the sac near the injection holds
    # contrast in every pass and its minimum is no baseline: fluid whose density changes a lot
    # over time (bone does not) and is dense in every pass was CSF before contrast came
    # ... judged slice by slice: the contrast column of the slice is dense in the first pass
    # (a partial-volume voxel of fluid and bone is dense in every pass too, but it is a rim)
    # ... a column of at least 40 mm2 (a few voxels are bone rims), half of it dense (contrast
    # layers on the dependent side), three quarters after motion (the column then holds bone
    # rims that are dense in every pass); only voxels of (or next to) the column are opaque
    # fluid, not bone edges elsewhere in the slice
    q_dense = 25.0 if moved else 50.0
    dense0 = np.zeros(stack_min.shape[0], bool)
    min_px = max(5.0, 40.0 / (sx * sy))
    for z in range(stack_min.shape[0]):
        cz_ = col[z]
        if cz_.sum() >= min_px:
            dense0[z] = float(np.percentile(rois[0][z][cz_], q_dense)) > 60.0
    # ... and only in the stretches of slices a bolus fills (after motion, an endplate that
    # moved across a slice makes the whole slice's column dense in the unresampled first pass:
    # given a water baseline, the vertebral body there became early "extravasation")
    dense0 = contrast_run(dense0, sz)
    # a first pass that holds the bolus is no pre-contrast pass for detection: extravasation
    # can be there before anything is timed (``pre`` says the first pass is mostly clear)
    precontrast = pre and not dense0.any()
    opaque = ((stack_max - stack_min) > CHANGING_HU) & (stack_min > 60.0) & dense0[:, None, None]
    opaque &= ndimage.binary_dilation(col, structure=np.ones((1, 3, 3), bool))
    # where the first pass holds no contrast it is the baseline (one sample: no bias from taking
    # the minimum of several noisy ones); the first pass of an opaque voxel holds contrast
    if moved and pre:
        # ... and after motion a pre-contrast first pass is the baseline wherever it is not
        # opaque: it is the one pass not resampled, and the minimum of resampled passes
        # undershoots every bone edge (the first pass would then show "contrast" there)
        first_clear = ~opaque
    else:
        first_clear = ((rois[0] - stack_min) < CHANGING_HU / 4) & ~opaque
    baseline = np.where(opaque, np.float32(WATER_HU), stack_min)
    baseline = np.where(first_clear, rois[0], baseline).astype(np.float32)
    del first_clear
    del stack_max, opaque
    if moved:
        # enhancement over the densest bone within a voxel: what a residual of a fraction of a
        # voxel (or the partial volume of a 1 mm shift across thick slices) makes of a bone
        # edge is no contrast. The anatomy keeps the plain baseline (the bony canal's border).
        bmax = ndimage.maximum_filter(baseline, size=3)
        base_enh = np.where(bmax > MOTION_BONE_HU, bmax, baseline).astype(np.float32)
        del bmax
    else:
        base_enh = baseline
    timings["read_roi"] = time.perf_counter() - t1

    # 3. kernels: per-voxel peak and arrival in one streaming pass per phase
    t2 = time.perf_counter()
    baseline = np.array(baseline, dtype=np.float32, copy=True)
    shape = baseline.shape
    prev = np.empty(shape, np.float32)
    peak = np.empty(shape, np.float32)
    arrival = np.empty(shape, np.float32)
    for i in range(n):
        stream_phase(rois[i], base_enh, None, 1, prev, peak, arrival,
                     None if i == 0 else st[i - 1], st[i], ARRIVAL_HU, first=(i == 0))
    del prev
    # from here on the passes are kept as enhancement over the baseline
    enh = rois
    for i in range(n):
        np.subtract(enh[i], base_enh, out=enh[i])
    del rois
    # ... and when each voxel reached half its peak (the anatomy's coupling to the sac)
    t_half = half_rise(enh, peak, st)
    timings["kernels_voxel"] = time.perf_counter() - t2

    # 4. anatomy
    t3 = time.perf_counter()
    _say(progress, "anatomy")
    z_mm = grid.z_mm()
    lab_roi = None if levels_map is None else np.ascontiguousarray(levels_map[:, y0:y1, x0:x1])
    anat = an.build_anatomy(baseline, peak, enh, st, grid.spacing_mm, grid.direction, z_mm,
                            centre_roi, series.patient_position, labelmap=lab_roi,
                            top_vertebra=top_vertebra, full_shape=grid.shape_zyx,
                            roi_yx=(y0, y1, x0, x1), reached=reached, half_rise_s=t_half)
    del t_half
    comp = np.ascontiguousarray(anat.compartments[:, y0:y1, x0:x1])
    sect = np.ascontiguousarray(anat.sectors[:, y0:y1, x0:x1])
    timings["anatomy"] = time.perf_counter() - t3

    # 5. statistics per half-level x compartment x sector x pass
    t4 = time.perf_counter()
    bins_z = kn.slice_bins(anat.level_coord)
    region, n_regions = kn.region_map(comp, sect, bins_z)
    stats = []
    for i in range(n):
        stats.append(region_stats(enh[i], region, n_regions, ARRIVAL_HU))
    curves = kn.collect(stats, bins_z, st)
    timings["kernels_stats"] = time.perf_counter() - t4

    # 6. kinetics and detection
    t5 = time.perf_counter()
    _say(progress, "kinetics and detection")
    t_it_slice = dt.intrathecal_arrival_per_slice(comp, arrival)
    kpass = an.first_pass_index(arrival, st)
    steady = dt.steady_enhancement(enh)
    dy_mm, dx_mm = an.polar_grid(shape, anat.centreline_yx - np.array([y0, x0], float), (sy, sx))
    vox = dt.Voxels(compartments=comp, sectors=sect, peak_hu=peak, arrival_s=arrival,
                    baseline_hu=baseline, first_pass=kpass, lag_s=anat.lag_s,
                    lag_tol_s=anat.lag_tol_s, enh_passes=enh,
                    level_coord=anat.level_coord,
                    z_mm=z_mm, slice_times_s=st, spacing_mm=grid.spacing_mm,
                    t_intrathecal_s=t_it_slice, dy_mm=dy_mm, dx_mm=dx_mm, steady_hu=steady,
                    dependent_yx=an.side_vector(anat.dependent, anat.ventral_yx, anat.left_yx),
                    precontrast=precontrast)
    candidates, ext_roi = dt.find_candidates(vox)
    late = dt.untimed_stretches(anat.level_coord, t_it_slice, st)
    if late:
        warnings.append("the intrathecal contrast reached " + ", ".join(
            a if a == b else f"{a} to {b}" for a, b in late) + " only in the last pass: a leak "
            "there cannot be timed, and only a large pool or a vein beside the canal is found "
            "there (a later pass would time it)")
    defects, ranked = dt.rank(candidates, moved=bool(moved))
    plan = pl.propose(defects)

    sac_bins = curves.sac_mean()
    it_arr = kn.arrival_times(sac_bins, np.nan_to_num(curves.bin_times_s), kn.INTRATHECAL_ARRIVAL_HU)
    epi_bins = curves.outside_pct(1)
    para_bins = curves.outside_pct(2)
    ext_arr = kn.arrival_times(epi_bins, np.nan_to_num(curves.bin_times_s), dt.EXTRAVASATION_HU)
    ven_arr = kn.arrival_times(para_bins, np.nan_to_num(curves.bin_times_s), dt.VENOUS_ENH_HU + 40)
    level_rows, names, it_l, ex_l, ve_l = [], [], [], [], []
    for lv in anat.levels:
        b = int(round(lv.coord * 2))
        bs = [x for x in (b - 1, b, b + 1) if 0 <= x < kn.N_BINS and curves.present[x]]
        def first(a, bs=bs):
            vals = [a[x] for x in bs if np.isfinite(a[x])]
            return float(min(vals)) if vals else float("nan")
        row = LevelKinetics(name=lv.name, z_range_mm=lv.z_range_mm,
                            intrathecal_arrival_s=first(it_arr), epidural_arrival_s=first(ext_arr),
                            venous_arrival_s=first(ven_arr))
        level_rows.append(row)
        names.append(lv.name)
        it_l.append(np.nanmax(sac_bins[bs], axis=0) if bs else np.full(n, np.nan))
        ex_l.append(np.nanmax(epi_bins[bs], axis=0) if bs else np.full(n, np.nan))
        ve_l.append(np.nanmax(para_bins[bs], axis=0) if bs else np.full(n, np.nan))
    timings["detect"] = time.perf_counter() - t5

    # 7. pictures: straightened MIPs, the axial slice through the defect, the full-grid mask
    t6 = time.perf_counter()
    mip_w = 60.0
    sag, cor = _straightened_mips(enh, anat.centreline_yx - np.array([y0, x0], float),
                                  (sy, sx), anat.ventral_yx, anat.left_yx, mip_w)
    ext_full = np.zeros(grid.shape_zyx, np.uint8)
    ext_full[:, y0:y1, x0:x1] = ext_roi
    axial_hu = axial_enh = None
    ax_phase = ax_slice = -1
    if defects:
        d = defects[0]
        ax_slice = int(d.slice_index)
        ax_phase = _show_defect(d, ext_roi, kpass, anat, (y0, x0), (sy, sx), n)
        axial_hu = np.array(series.phase(ax_phase)[ax_slice], dtype=np.float32)
        axial_enh = np.zeros_like(axial_hu)
        axial_enh[y0:y1, x0:x1] = enh[ax_phase][ax_slice]
    timings["pictures"] = time.perf_counter() - t6
    timings["total"] = time.perf_counter() - t0

    notes = list(anat.notes)
    bolus = (f"; the first pass holds contrast over {int(dense0.sum()) * sz:.0f} mm of the "
             "sac (the injection)") if dense0.any() else ""
    if moved and pre:
        notes.append("baseline: the first pass (the one pass not resampled after motion), the "
                     "per-voxel temporal minimum where it holds contrast" + bolus)
    elif pre and dense0.any():
        notes.append("baseline: per-voxel temporal minimum" + bolus)
    else:
        notes.append("baseline: per-voxel temporal minimum" + (
            " (the first pass is pre-contrast)" if pre else " (no pre-contrast pass found)"))
    stats_out = {"mean": curves.mean, "p95": curves.pct, "n_above": curves.n_above,
                 "count": curves.count, "bin_times_s": curves.bin_times_s}
    res = Analysis(series=series, anatomy=anat, times_s=times, level_names=names,
                   intrathecal_hu=np.array(it_l).reshape(len(names), n),
                   extravasation_hu=np.array(ex_l).reshape(len(names), n),
                   venous_hu=np.array(ve_l).reshape(len(names), n), stats=stats_out,
                   levels=level_rows, defects=defects, candidates=ranked, plan=plan,
                   extravasation_mask=ext_full, arrival_s=arrival, mip_sagittal_hu=sag,
                   mip_coronal_hu=cor, mip_width_mm=mip_w, axial_hu=axial_hu,
                   axial_enh_hu=axial_enh, axial_phase=ax_phase, axial_slice=ax_slice,
                   motion_mm=motion, timings_s=timings, warnings=warnings)
    res.notes = notes + list(series.notes)
    res.static_reading = dt.static_reading(curves.pct[:, 1, :, -1], curves.present)
    res.baseline_is_precontrast = precontrast
    if _KEEP_DEBUG:
        res.debug = dict(enh=enh, baseline=baseline, comp=comp, sect=sect, peak=peak,
                         arrival=arrival, kpass=kpass, st=st, roi=(y0, y1, x0, x1), voxels=vox)
    return res


def _show_defect(d, ext_roi, kpass, anat, offset_yx, spacing_yx_mm, n, window=2):
    """Place the top defect on its axial slice and pick the first pass that shows it there.

    The defect's (y, x) becomes the centroid of the extravasation on that slice (a neighbour
    within ``window`` slices if that one has none), or, failing that, the canal's edge on the
    defect's side. Returns the pass index.
    """
    z = int(np.clip(d.slice_index, 0, ext_roi.shape[0] - 1))
    for dz in [0] + [s * k for k in range(1, window + 1) for s in (1, -1)]:
        zz = z + dz
        if 0 <= zz < ext_roi.shape[0] and ext_roi[zz].any():
            ys, xs = np.nonzero(ext_roi[zz])
            d.yx = (float(ys.mean() + offset_yx[0]), float(xs.mean() + offset_yx[1]))
            first = int(kpass[zz][ext_roi[zz] > 0].min())
            return int(min(n - 1, first))
    # nothing on the slice: the canal edge on the defect's side
    from leakloc import anatomy as an
    side = d.side if d.side in ("ventral", "dorsal", "left", "right") else "ventral"
    u = an.side_vector(side, anat.ventral_yx, anat.left_yx)
    r_mm = float(np.median(anat.canal_radius_mm[z])) if anat.canal_radius_mm is not None else 8.0
    c = anat.centreline_yx[z]
    d.yx = (float(c[0] + u[0] * r_mm / spacing_yx_mm[0]), float(c[1] + u[1] * r_mm / spacing_yx_mm[1]))
    return int(min(n - 1, max(0, d.evidence.get("first_pass", n - 1))))


def _straightened_mips(enh, centre_yx, spacing_yx_mm, ventral_yx, left_yx, width_mm,
                       slab_mm=12.0):
    """Enhancement MIPs straightened along the centreline.

    Returns
    -------
    sagittal, coronal : ndarray, shape (P, Z, W), HU; W runs ventral->dorsal (sagittal) and
        left->right (coronal) across ``width_mm``; each projects a slab of ``2 * slab_mm``.
    """
    nz = enh[0].shape[0]
    step = min(spacing_yx_mm)
    u = np.arange(-width_mm / 2, width_mm / 2 + 1e-9, step)
    s = np.arange(-slab_mm, slab_mm + 1e-9, step)
    out = []
    for across, along in ((ventral_yx, left_yx), (left_yx, ventral_yx)):
        # W runs from +across (ventral / left) to -across
        off = (-u[:, None, None] * np.asarray(across)[None, None, :]
               + s[None, :, None] * np.asarray(along)[None, None, :])     # (W, S, 2) mm
        py = centre_yx[:, 0, None, None] + off[None, ..., 0] / spacing_yx_mm[0]
        px = centre_yx[:, 1, None, None] + off[None, ..., 1] / spacing_yx_mm[1]
        zz = np.broadcast_to(np.arange(nz)[:, None, None], py.shape)
        coords = [zz.ravel(), py.ravel(), px.ravel()]
        mips = []
        for e_pass in enh:
            e = ndimage.map_coordinates(e_pass, coords, order=1, mode="constant", cval=0.0)
            mips.append(e.reshape(py.shape).max(axis=2))
        out.append(np.asarray(mips, dtype=np.float32))
    return out[0], out[1]
