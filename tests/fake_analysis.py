"""A small synthetic :class:`leakloc.pipeline.Analysis` for the report and plot tests.

Grid 40 x 32 x 120 (ITK x, y, z), 1.0 x 1.0 x 2.0 mm, levels T4..T10, 6 passes, contrast
rising from caudal to cranial, and (by default) one ventral T7-T8 dural tear whose epidural
collection appears at 23.4 s. Deterministic: no random numbers.
"""
from __future__ import annotations

import numpy as np

from leakloc import levels as lv
from leakloc.anatomy import (DORSAL, EPIDURAL, LEFT, OUTSIDE, PARASPINAL, RIGHT, SAC, VENTRAL,
                             Anatomy, Level)
from leakloc.detect import Defect
from leakloc.io import Grid, PhaseInfo, PhaseSeries
from leakloc.pipeline import Analysis, LevelKinetics
from leakloc.plan import Plan

LEVELS = ["T4", "T5", "T6", "T7", "T8", "T9", "T10"]
TIMES_S = np.array([0.0, 12.0, 22.0, 33.0, 45.0, 120.0])
PATIENT = {"PatientName": "DOE^JANE", "PatientID": "MRN-0042-XYZ", "PatientBirthDate": "19700101",
           "StudyDate": "20240102"}
STUDY_UID = "1.2.826.0.1.3680043.8.498.12345"
SHAPE_ZYX = (120, 32, 40)
SPACING_MM = (1.0, 1.0, 2.0)
CENTRE_YX = (16.0, 20.0)


def _grid(orientation: str, cranial_step: int) -> Grid:
    """Supine (``'LPS'``: identity) or prone (``'RAS'``: x and y flipped) grid."""
    sx = -1.0 if orientation == "RAS" else 1.0
    sy = sx
    sz = 1.0 if cranial_step > 0 else -1.0
    direction = (sx, 0.0, 0.0, 0.0, sy, 0.0, 0.0, 0.0, sz)
    origin_z = -500.0 if cranial_step > 0 else -500.0 + (SHAPE_ZYX[0] - 1) * SPACING_MM[2]
    return Grid(size=(SHAPE_ZYX[2], SHAPE_ZYX[1], SHAPE_ZYX[0]), spacing_mm=SPACING_MM,
                origin_mm=(-20.0 * sx, -16.0 * sy, origin_z), direction=direction)


def _sigmoid(t, t0, width=3.0):
    return 1.0 / (1.0 + np.exp(-(np.asarray(t, float) - t0) / width))


def make_analysis(leak: bool = True, orientation: str = "LPS", cranial_step: int = 1,
                  kind: str = "dural_tear", side: str = "ventral") -> Analysis:
    """Build the synthetic analysis.

    Parameters
    ----------
    leak : bool, one defect at T7-T8 (True) or a no-leak study (False)
    orientation : ``'LPS'`` (supine, identity directions) or ``'RAS'`` (prone)
    cranial_step : +1 when the slice index increases cranially, -1 when caudally
    kind, side : of the defect
    """
    grid = _grid(orientation, cranial_step)
    nz, ny, nx = SHAPE_ZYX
    z_mm = grid.z_mm()
    dmat = grid.direction_matrix
    # voxel (y, x) unit vectors: anterior = -P (LPS y), left = +L (LPS x)
    ventral_yx = np.array([-dmat[1, 1], -dmat[1, 0]])
    left_yx = np.array([dmat[0, 1], dmat[0, 0]])

    # slice -> level coordinate: from the top of T4 (9.5) to the bottom of T10 (16.5)
    k = np.arange(nz, dtype=float)
    frac_from_cranial = (((nz - 1 - k) if cranial_step > 0 else k) + 0.5) / nz
    level_coord = 9.5 + 7.0 * frac_from_cranial  # T4 = 10 ... T10 = 16, slices strictly inside
    level_list = []
    for name in LEVELS:
        c = lv.coord_of(name)
        sl = np.nonzero(np.abs(level_coord - c) <= 0.5)[0]
        zs = z_mm[sl]
        level_list.append(Level(name=name, coord=c, z_range_mm=(float(zs.min()), float(zs.max())),
                                slices=(int(sl.min()), int(sl.max()))))

    # compartments and sectors around a straight canal
    yy, xx = np.mgrid[0:ny, 0:nx].astype(float)
    dy, dx = yy - CENTRE_YX[0], xx - CENTRE_YX[1]
    r = np.hypot(dy, dx)
    comp2d = np.full((ny, nx), OUTSIDE, np.uint8)
    comp2d[r <= 11] = PARASPINAL
    comp2d[r <= 7] = EPIDURAL
    comp2d[r <= 5] = SAC
    v = dy * ventral_yx[0] + dx * ventral_yx[1]
    lft = dy * left_yx[0] + dx * left_yx[1]
    sect2d = np.where(np.abs(v) >= np.abs(lft), np.where(v >= 0, VENTRAL, DORSAL),
                      np.where(lft >= 0, LEFT, RIGHT)).astype(np.uint8)
    compartments = np.broadcast_to(comp2d, SHAPE_ZYX).copy()
    sectors = np.broadcast_to(sect2d, SHAPE_ZYX).copy()
    centreline = np.tile(np.array(CENTRE_YX), (nz, 1))
    anatomy = Anatomy(centreline_yx=centreline, compartments=compartments, sectors=sectors,
                      level_coord=level_coord, levels=level_list, ventral_yx=ventral_yx,
                      left_yx=left_yx, cranial_step=cranial_step,
                      dependent="ventral" if orientation == "RAS" else "dorsal")

    # per-level kinetics: the intrathecal front climbs 3 s per level from T10 (arrives at 10 s)
    L, P = len(LEVELS), len(TIMES_S)
    it_arrival = np.array([10.0 + 3.0 * (lv.index("T10") - lv.coord_of(n)) for n in LEVELS])
    intrathecal = 450.0 * _sigmoid(TIMES_S[None, :], it_arrival[:, None])
    extrav = np.full((L, P), 8.0)
    venous = np.full((L, P), 5.0)
    epi_arrival = np.full(L, np.nan)
    defect_coord = lv.coord_of("T7-T8")
    onset = 23.4
    if leak:
        for i, n in enumerate(LEVELS):
            dist = abs(lv.coord_of(n) - defect_coord)
            if dist <= 2.5:
                t0 = onset + 6.0 * (dist - 0.5)
                epi_arrival[i] = t0
                extrav[i] += 260.0 * _sigmoid(TIMES_S, t0) * (1.0 - 0.2 * dist)
    kin = [LevelKinetics(name=n, z_range_mm=lev.z_range_mm, intrathecal_arrival_s=float(it_arrival[i]),
                         epidural_arrival_s=float(epi_arrival[i]))
           for i, (n, lev) in enumerate(zip(LEVELS, level_list))]

    # the defect slice: the one nearest T7-T8 in level coordinate
    k_def = int(np.argmin(np.abs(level_coord - defect_coord)))
    def_yx = (CENTRE_YX[0] + 6.0 * ventral_yx[0], CENTRE_YX[1] + 6.0 * ventral_yx[1])

    # voxel masks and arrival times
    mask = np.zeros(SHAPE_ZYX, np.uint8)
    arrival = np.full(SHAPE_ZYX, np.nan, np.float32)
    sac3 = compartments == SAC
    arrival[sac3] = np.broadcast_to((10.0 + 3.0 * (16.0 - level_coord))[:, None, None],
                                    SHAPE_ZYX)[sac3]
    defects, candidates, plan = [], [], None
    if leak:
        near = np.abs(level_coord - defect_coord) <= 2.0
        ring = (comp2d == EPIDURAL) & (sect2d == VENTRAL)
        mask[near[:, None, None] & ring[None]] = 1
        t_vox = onset + 6.0 * np.abs(level_coord - defect_coord)
        arrival[mask.astype(bool)] = np.broadcast_to(t_vox[:, None, None], SHAPE_ZYX)[mask.astype(bool)]
        d = Defect(level="T7-T8", level_coord=defect_coord, z_mm=float(z_mm[k_def]), side=side,
                   kind=kind, onset_time_s=onset, confidence=0.94, delay_s=onset - 19.0,
                   slice_index=k_def, yx=def_yx, evidence={"epidural_p95_hu": 268.0})
        d2 = Defect(level="T9", level_coord=lv.coord_of("T9"), z_mm=float(z_mm[level_list[5].slices[0]]),
                    side="ventral", kind="dural_tear", onset_time_s=35.4, confidence=0.04,
                    delay_s=22.4, slice_index=level_list[5].slices[0], yx=def_yx)
        defects, candidates = [d], [d, d2]
        plan = Plan(levels=["T7", "T8"], side="bilateral", note="ventral tear: transdural approach",
                    uncertainty_levels=0.5)

    # straightened MIPs of the enhancement per pass: W = 40 columns over 60 mm
    W = 40
    w_mm = (np.arange(W) - (W - 1) / 2.0) * 1.5
    sag = np.zeros((P, nz, W), np.float32)
    cor = np.zeros((P, nz, W), np.float32)
    for p, t in enumerate(TIMES_S):
        it_slice = 450.0 * _sigmoid(t, 10.0 + 3.0 * (16.0 - level_coord))  # (Z,)
        in_sac = np.abs(w_mm) <= 5.0
        sag[p][:, in_sac] = it_slice[:, None]
        cor[p][:, in_sac] = it_slice[:, None]
        if leak:
            ep = 260.0 * _sigmoid(t, onset + 6.0 * np.abs(level_coord - defect_coord))
            ep *= np.abs(level_coord - defect_coord) <= 2.0
            band = (w_mm < -5.0) & (w_mm >= -7.0)  # ventral: first columns are ventral
            sag[p][:, band] = ep[:, None]
    axial_hu = np.where(comp2d == SAC, 40.0 + intrathecal[3, 2], 30.0).astype(np.float32)
    axial_enh = np.where(comp2d == SAC, intrathecal[3, 2], 0.0).astype(np.float32)
    if leak:
        ring = (comp2d == EPIDURAL) & (sect2d == VENTRAL)
        axial_hu[ring] = 300.0
        axial_enh[ring] = 260.0

    phases = [PhaseInfo(index=i, time_s=float(t), duration_s=7.9,
                        table_direction="craniocaudal" if i % 2 == 0 else "caudocranial",
                        series_number=3 + i, source=f"fake/{i}") for i, t in enumerate(TIMES_S)]
    series = PhaseSeries(phases=phases, grid=grid,
                         slice_times_s=np.repeat(TIMES_S[:, None], nz, axis=1),
                         patient_position="HFP" if orientation == "RAS" else "HFS",
                         skipped=[{"path": "fake/scout", "reason": "localizer"}],
                         study_uid=STUDY_UID, notes=["phase 3 resampled onto the grid of phase 0"],
                         patient=dict(PATIENT))
    stats = {key: np.zeros((L, 3, 4, P)) for key in ("mean", "p95", "n_above", "count")}
    return Analysis(series=series, anatomy=anatomy, times_s=TIMES_S.copy(), level_names=list(LEVELS),
                    intrathecal_hu=intrathecal, extravasation_hu=extrav, venous_hu=venous, stats=stats,
                    levels=kin, defects=defects, candidates=candidates, plan=plan,
                    extravasation_mask=mask, arrival_s=arrival, mip_sagittal_hu=sag,
                    mip_coronal_hu=cor, mip_width_mm=60.0,
                    axial_hu=axial_hu if leak else None,
                    axial_enh_hu=axial_enh if leak else None,
                    axial_phase=2 if leak else -1, axial_slice=k_def if leak else -1,
                    motion_mm=[0.0, 0.3, 0.2, 0.4, 0.1, 0.6], timings_s={"total": 1.0},
                    warnings=["motion of 0.6 mm at pass 5 was corrected"])
