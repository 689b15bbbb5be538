"""Anatomy on small synthetic volumes with known answers."""
import numpy as np
import pytest

from leakloc import AnalysisError
from leakloc import anatomy as an
from leakloc import levels as lv


@pytest.mark.parametrize("direction, ventral, left, cranial", [
    ((1, 0, 0, 0, 1, 0, 0, 0, 1), (-1, 0), (0, 1), 1),          # supine, LPS
    ((-1, 0, 0, 0, -1, 0, 0, 0, 1), (1, 0), (0, -1), 1),        # prone, RAS
    ((0, -1, 0, 1, 0, 0, 0, 0, 1), (0, -1), (-1, 0), 1),        # right decubitus
    ((1, 0, 0, 0, 1, 0, 0, 0, -1), (-1, 0), (0, 1), -1),        # slices running caudally
])
def test_patient_axes(direction, ventral, left, cranial):
    v, lf, c = an.patient_axes(direction, (1.0, 1.0, 2.0))
    np.testing.assert_allclose(v, ventral, atol=1e-12)
    np.testing.assert_allclose(lf, left, atol=1e-12)
    assert c == cranial


def test_sagittal_slices_are_refused():
    with pytest.raises(AnalysisError, match="not axial"):
        an.patient_axes((0, 0, 1, 1, 0, 0, 0, 1, 0), (1, 1, 1))


def test_dependent_side():
    assert an.dependent_side("HFP") == "ventral"
    assert an.dependent_side("FFS") == "dorsal"
    assert an.dependent_side("HFDR") == "right"
    assert an.dependent_side("") == "dorsal"


def test_sector_map_in_patient_terms():
    ventral, left, _ = an.patient_axes((-1, 0, 0, 0, -1, 0, 0, 0, 1), (1, 1, 1))   # prone
    centre = np.array([[5.0, 5.0]])
    dy, dx = an.polar_grid((1, 11, 11), centre, (1.0, 1.0))
    sec = an.sector_map(dy, dx, ventral, left)
    assert sec[0, 9, 5] == an.VENTRAL      # +y index is anterior when prone
    assert sec[0, 1, 5] == an.DORSAL
    assert sec[0, 5, 1] == an.LEFT         # -x index is the patient's left when prone
    assert sec[0, 5, 9] == an.RIGHT


def test_canal_radius_of_a_bony_ring():
    nz, n = 6, 41
    yy, xx = np.mgrid[:n, :n]
    r = np.hypot(yy - 20, xx - 20) * 0.5          # 0.5 mm pixels
    sl = np.where((r >= 8.0) & (r < 11.0), 900.0, 10.0)
    vol = np.repeat(sl[None], nz, axis=0).astype(np.float32)
    centre = np.full((nz, 2), 20.0)
    rad = an.canal_radius(vol, centre, (0.5, 0.5))
    assert rad.shape == (nz, 48)
    np.testing.assert_allclose(rad, 8.0, atol=0.6)


def test_canal_radius_ignores_a_thin_streak():
    n = 41
    yy, xx = np.mgrid[:n, :n]
    r = np.hypot(yy - 20, xx - 20) * 0.5
    sl = np.where((r >= 8.0) & (r < 11.0), 900.0, 10.0)
    sl[:, 26] = 600.0                             # a one-pixel streak through the canal
    vol = np.repeat(sl[None], 3, axis=0).astype(np.float32)
    rad = an.canal_radius(vol, np.full((3, 2), 20.0), (0.5, 0.5), step_mm=0.25)
    assert np.median(rad) > 7.0


def test_levels_from_labelmap():
    nz = 60
    lab = np.zeros((nz, 9, 9), np.int16)
    # T6 on slices 0-19, T5 on 20-39, T4 on 40-59 (z increasing cranially)
    for k, name in enumerate(["T6", "T5", "T4"]):
        lab[20 * k:20 * k + 20, 2:7, 2:7] = lv.TOTALSEG_ID[name]
    coord = an.levels_from_labelmap(lab, np.full((nz, 2), 4.0), (1.0, 1.0))
    assert coord[10] == pytest.approx(lv.coord_of("T6"), abs=0.05)
    assert coord[29] == pytest.approx(lv.coord_of("T5"), abs=0.05)
    assert coord[20] == pytest.approx(lv.coord_of("T5-T6"), abs=0.05)
    assert coord[50] == pytest.approx(lv.coord_of("T4"), abs=0.05)


def test_levels_from_labelmap_out_of_order():
    lab = np.zeros((30, 5, 5), np.int16)
    lab[0:10] = lv.TOTALSEG_ID["T6"]
    lab[10:20] = lv.TOTALSEG_ID["T4"]
    lab[20:30] = lv.TOTALSEG_ID["T5"]
    with pytest.raises(AnalysisError, match="out of order"):
        an.levels_from_labelmap(lab, np.full((30, 2), 2.0), (1.0, 1.0))


def _spine_profile(heights_mm, disc_mm=6.0, dz=2.0, calcified=()):
    """Baseline HU along the spine, cranial first: endplates dense, discs dark."""
    prof = []
    for k, h in enumerate(heights_mm):
        n = int(round(h / dz))
        body = [240.0] * n
        body[0] = body[-1] = 700.0
        prof += body
        disc = 450.0 if k in calcified else 80.0
        prof += [disc] * int(round(disc_mm / dz))
    return np.asarray(prof)


@pytest.mark.parametrize("calcified", [(), (3,)])
def test_levels_from_bodies(calcified):
    heights = [18, 19, 20, 21, 22, 22, 23, 24]
    prof = _spine_profile(heights, calcified=calcified)
    nz = prof.size
    z_mm = -np.arange(nz) * 2.0                    # slice 0 most cranial
    coord, discs = an.levels_from_bodies(prof, z_mm, "T3", cranial_step=-1)
    # the centre of the third body is T5
    start = sum(int(round(h / 2.0)) + 3 for h in heights[:2])
    mid = start + int(round(heights[2] / 2.0)) // 2
    assert coord[mid] == pytest.approx(lv.coord_of("T5"), abs=0.3)
    assert np.nanmax(coord) <= lv.coord_of("T3") + len(heights)


def test_a_tall_disc_with_two_minima_is_one_disc():
    # lumbar-like: 30 mm bodies, 18 mm discs whose middle is denser than their edges (a
    # nucleus, a partly calcified disc): two minima 8 slices apart, the profile between them
    # never back at the bodies' level. The old rule counted each as a disc: one body too many
    # per disc, and the anchor did not fit
    heights = [30] * 8
    prof = []
    for h in heights:
        n = int(round(h / 2.0))
        body = [240.0] * n
        body[0] = body[-1] = 700.0
        prof += body + [15.0, 40.0, 90.0, 150.0, 350.0, 150.0, 90.0, 40.0, 15.0]
    prof = np.asarray(prof)
    z_mm = -np.arange(prof.size) * 2.0
    coord, discs = an.levels_from_bodies(prof, z_mm, "T12", cranial_step=-1)
    assert discs.size == 8
    # each disc at the middle of its low stretch (its 350 HU centre, 4 slices into it)
    first = int(round(heights[0] / 2.0))
    assert abs(int(discs[0]) - (first + 4)) <= 1
    # the third body is L2 (T12, L1, L2), at its centre
    mid = 2 * (first + 9) + first // 2
    assert coord[mid] == pytest.approx(lv.coord_of("L2"), abs=0.3)


def test_merge_keeps_discs_with_a_body_between():
    p = np.array([240.0] * 5 + [60.0] + [240.0] * 6 + [60.0] + [240.0] * 5)
    discs = np.array([5, 12])
    base, thr = np.full(p.size, 240.0), np.full(p.size, 60.0)
    assert an._merge_split_discs(p, discs, base, thr, max_sep=10).tolist() == [5, 12]
    # the same two minima with the stretch between them low: one disc, in the middle
    p2 = p.copy()
    p2[6:12] = 90.0
    assert an._merge_split_discs(p2, discs, base, thr, max_sep=10).tolist() == [8]
    # ... unless they are farther apart than a disc is high: a low body (a lesion) between them
    assert an._merge_split_discs(p2, discs, base, thr, max_sep=6).tolist() == [5, 12]


def test_thick_slices_keep_every_disc():
    # 5 mm slices through 15 mm cervical bodies: a disc, a slice partly disc, one of body, one
    # partly disc. The slices between two discs are mostly partial volume: still two discs
    prof = np.asarray([80.0, 160.0, 240.0, 160.0] * 9 + [80.0])
    z_mm = -np.arange(prof.size) * 5.0
    coord, discs = an.levels_from_bodies(prof, z_mm, "C3", cranial_step=-1)
    assert discs.tolist() == list(range(4, prof.size - 1, 4))   # (not the ends: no minimum there)
    assert coord[2] == pytest.approx(lv.coord_of("C3"), abs=0.01)
    assert coord[prof.size - 3] == pytest.approx(lv.coord_of("C3") + 8, abs=0.01)


def test_body_wall_is_the_first_thick_bone_along_the_ray():
    rr = np.arange(0.0, 45.01, 0.5)
    ray = np.full((30, rr.size), 10.0)
    ray[:, 20:] = 240.0                 # bodies from 10 mm
    ray[5, 4] = 500.0                   # a one-sample fragment at 2 mm: not a wall
    ray[14:20, 6:12] = 800.0            # contrast layered 3 mm thick at 3 mm: not a wall either
    ray[10:13] = 80.0                   # a disc: no bone, takes the bodies' wall around it
    ray[20:23, 8:] = 240.0              # a wall at 4 mm on 3 slices: outvoted along the spine
    canal = np.full(30, 3.0)            # the canal's radius, wrong (as near the injection)
    wall = an._body_wall_mm(ray, rr, canal, step_mm=2.0)
    assert wall.shape == (30,)
    assert np.allclose(wall, 10.0)
    # no bone anywhere: the canal's radius stands
    assert np.allclose(an._body_wall_mm(np.zeros_like(ray), rr, canal, 2.0), 3.0)
    # bodies less dense than bone (osteoporosis), a thick blob of contrast on a few slices:
    # too few slices show a wall, the canal's radius stands
    soft = np.full((30, rr.size), 10.0)
    soft[:, 20:] = 120.0
    soft[3:6, 4:20] = 900.0
    assert np.allclose(an._body_wall_mm(soft, rr, canal, 2.0), 3.0)
    # contrast layered against the canal's ventral wall, bone from 10 mm: the search starts
    # 2 mm inside the canal's radius (9 mm), not at the centre
    layered = ray.copy()
    layered[:, 4:18] = 900.0
    wall = an._body_wall_mm(layered, rr, np.full(30, 9.0), step_mm=2.0)
    assert np.all((wall >= 7.0) & (wall <= 10.0))


def test_body_profile_reads_the_bodies_whatever_the_canal_radius():
    # bodies from 10 mm ventral of the canal centre (+y), a disc every 10 slices; the canal's
    # ventral radius given as 3 mm (as near the injection, where the sac held contrast in every
    # pass): the box still lies in the bodies, not in the sac
    nz = 60
    vol = np.full((nz, 64, 64), 10.0, np.float32)
    for z in range(nz):
        vol[z, 40:60, 20:40] = 240.0 if z % 10 < 7 else 80.0
    centre = np.full((nz, 2), 30.0)
    for r_mm in (3.0, 10.0):
        prof = an.body_profile(vol, centre, np.full((nz, 36), r_mm), (1.0, 1.0),
                               np.array([1.0, 0.0]), step_mm=2.0)
        assert np.allclose(prof[np.arange(nz) % 10 < 7], 240.0)
        assert np.allclose(prof[np.arange(nz) % 10 >= 7], 80.0)


def test_levels_from_bodies_bad_anchor():
    prof = _spine_profile([20] * 6)
    with pytest.raises(AnalysisError):
        an.levels_from_bodies(prof, -np.arange(prof.size) * 2.0, "X9", -1)
    with pytest.raises(AnalysisError, match="does not fit"):
        an.levels_from_bodies(_spine_profile([20] * 12), -np.arange(200) * 2.0, "L4", -1)


def test_half_rise_time():
    curves = [np.array([0.0, 0.0]), np.array([0.25, 1.0]), np.array([1.0, 1.0])]
    times = [0.0, 10.0, 20.0]
    t = an.half_rise_time(curves, times)
    np.testing.assert_allclose(t, [10.0 + 10.0 * (0.25 / 0.75), 5.0], rtol=1e-6)
    never = an.half_rise_time([np.zeros(2), np.full(2, 0.4)], [0.0, 10.0])
    assert np.isnan(never).all()


def test_coupling_finds_the_late_voxel():
    # one slice, 4 passes: a core that fills at pass 1, a sleeve that fills with it at 40 %,
    # and a leak that fills two passes later
    p, times = 4, np.array([0.0, 10.0, 20.0, 30.0])
    core_c = [0.0, 300.0, 320.0, 320.0]
    sleeve_c = [0.4 * c for c in core_c]
    leak_c = [0.0, 0.0, 30.0, 250.0]
    enh = [np.zeros((1, 5, 5), np.float32) for _ in range(p)]
    core = np.zeros((1, 5, 5), bool)
    core[0, 1:4, 1:4] = True
    for k in range(p):
        enh[k][0, 1:4, 1:4] = core_c[k]
        enh[k][0, 0, 2] = sleeve_c[k]
        enh[k][0, 4, 2] = leak_c[k]
    peak = np.max(np.stack(enh), axis=0)
    height = np.zeros((1, 5, 5), np.float32)
    st = np.repeat(times[:, None], 1, axis=1)
    lag, reached, tol = an.coupling(enh, peak, core, height, st, z_sigma_slices=0)
    assert reached.all()
    assert abs(lag[0, 0, 2]) < 1.0                  # the sleeve fills with the sac
    assert lag[0, 4, 2] > 10.0                      # the leak lags by more than a pass
    assert np.isnan(lag[0, 0, 0])                   # nothing there
    # the sac rose between passes 0 and 1 (10 s apart): 0.4 of that, at least 3 s
    assert tol[0, 2, 2] == pytest.approx(4.0)
    # the voxels' half-rise times (the kernel's) are those of the plain numpy rule: the same lags
    inv = (1.0 / np.maximum(peak, 1.0)).astype(np.float32)
    t_half = an.half_rise_time([e * inv for e in enh], [st[k][:, None, None] for k in range(p)])
    lag_k, _, _ = an.coupling(enh, peak, core, height, st, z_sigma_slices=0, half_rise_s=t_half)
    np.testing.assert_allclose(lag_k, lag, atol=1e-4)
    with pytest.raises(ValueError, match="half_rise_s must have shape"):
        an.coupling(enh, peak, core, height, st, z_sigma_slices=0, half_rise_s=t_half[:, :2])


def test_coupling_dependent_side_fills_first():
    # a collection on the dependent side of the sac, inside the core's heights, must not become
    # the reference of its own height: the dependent side cannot fill later than the centre
    times = np.array([0.0, 10.0, 20.0, 30.0])
    sac_c, col_c = [0.0, 300.0, 310.0, 320.0], [0.0, 0.0, 40.0, 300.0]
    enh = [np.zeros((1, 5, 5), np.float32) for _ in times]
    core = np.zeros((1, 5, 5), bool)
    core[0, 1:3, :] = True          # sac rows (heights 0, 1 mm)
    core[0, 3:5, :] = True          # collection rows, taken into the core (heights 3, 4.5 mm)
    for k in range(times.size):
        enh[k][0, 1:3, :] = sac_c[k]
        enh[k][0, 3:5, :] = col_c[k]
    peak = np.max(np.stack(enh), axis=0)
    height = np.broadcast_to(np.array([-1.5, 0.0, 1.5, 3.0, 4.5], np.float32)[None, :, None],
                             (1, 5, 5)).copy()
    st = times[:, None]
    lag, _, tol = an.coupling(enh, peak, core, height, st, z_sigma_slices=0, slack_s=3.0)
    assert np.all(np.abs(lag[0, 1:3]) < 1.0)
    assert np.all(lag[0, 3:5] > tol[0, 3:5] + 5.0)
