"""Rigid motion between passes: leakloc.io.estimate_rigid / apply_rigid / needs_registration."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from leakloc import InputError
from leakloc.io import RigidMotion, apply_rigid, estimate_rigid, needs_registration

SPACING = (1.5, 1.5, 2.0)  # ITK (x, y, z) mm
SHAPE = (80, 72, 72)       # (Z, Y, X)


def _rot_xyz(ax, ay, az):
    return RigidMotion(params=(ax, ay, az, 0, 0, 0), center_mm=(0, 0, 0)).rotation_matrix


def _centre():
    return (np.array(SHAPE[::-1], dtype=float) - 1.0) / 2.0 * np.array(SPACING)


PAD = 6  # voxels each side: motion is applied to a padded volume, then cropped to SHAPE, so no
#           artificial air slab enters at the edges (a real pass images whatever lies there)


def _spine(contrast_hu: float = 0.0, noise_hu: float = 8.0, seed: int = 0, pad: int = 0) -> np.ndarray:
    """A small asymmetric synthetic spine, (Z, Y, X) float32 HU; contrast fills the sac tube.

    Shape ``SHAPE + 2 * pad``; the anatomy is centred, so cropping ``pad`` gives the unpadded volume.
    """
    shape = tuple(n + 2 * pad for n in SHAPE)
    z, y, x = np.meshgrid(*(np.arange(n, dtype=float) * s for n, s in zip(shape, SPACING[::-1])),
                          indexing="ij")
    cx, cy = (np.array(shape[::-1], dtype=float)[:2] - 1.0) / 2.0 * np.array(SPACING[:2])
    z = z - pad * SPACING[2]
    u, v = x - cx, y - cy
    hu = np.full(shape, -1000.0)
    hu[(u / 50) ** 2 + (v / 45) ** 2 < 1] = 40.0                       # body
    body = ((u / 16) ** 2 + ((v + 14) / 12) ** 2 < 1) & (np.mod(z, 32) > 6)  # bodies, discs between
    hu[body] = 240.0
    shell = body & ((u / 14.5) ** 2 + ((v + 14) / 10.5) ** 2 >= 1)
    hu[shell] = 850.0
    hu[(np.mod(z, 32) <= 6) & ((u / 16) ** 2 + ((v + 14) / 12) ** 2 < 1)] = 80.0
    ring = ((u / 13) ** 2 + ((v - 8) / 11) ** 2 < 1) & (np.mod(z, 32) > 10)  # posterior arch
    hu[ring] = 850.0
    hu[(u / 9) ** 2 + ((v - 8) / 7.5) ** 2 < 1] = -90.0               # canal: epidural fat
    sac = (u / 7) ** 2 + ((v - 8) / 5.5) ** 2 < 1
    hu[sac] = 5.0 + contrast_hu
    hu[(np.abs(v - 10) < 3) & (u > 10) & (u < 38) & (np.mod(z, 32) > 14)] = 700.0   # one process
    hu[(np.abs(v - 22) < 2.5) & (np.abs(u + 3) < 3) & (v > 17)] = 700.0            # spinous
    hu = ndimage.gaussian_filter(hu, 0.8)
    rng = np.random.default_rng(seed)
    return (hu + rng.normal(0.0, noise_hu, shape)).astype(np.float32)


def _moved_spine(angles_deg=(0.0, 0.0, 0.0), t_mm=(0.0, 0.0, 0.0), **kw):
    """The synthetic spine after a rigid motion T(p) = R (p - c) + c + t (c = volume centre, mm):
    ``out(T(p)) = spine(p)``, i.e. out(q) = spine(T^-1 q), done with scipy in (Z, Y, X) index
    space on a padded noise-free volume, then cropped, then noise added."""
    noise_hu, seed = kw.pop("noise_hu", 8.0), kw.pop("seed", 0)
    vol = _spine(noise_hu=0.0, pad=PAD, **kw)
    r = _rot_xyz(*np.radians(angles_deg))
    c = (np.array(vol.shape[::-1], dtype=float) - 1.0) / 2.0 * np.array(SPACING)
    t = np.asarray(t_mm, dtype=float)
    s = np.diag(SPACING)
    perm = np.eye(3)[::-1]
    matrix = perm @ np.linalg.inv(s) @ r.T @ s @ perm
    offset = perm @ np.linalg.inv(s) @ (c - r.T @ (c + t))
    out = ndimage.affine_transform(vol, matrix, offset, order=1, mode="nearest")
    out = out[PAD:-PAD, PAD:-PAD, PAD:-PAD]
    return (out + np.random.default_rng(seed).normal(0.0, noise_hu, SHAPE)).astype(np.float32)


@pytest.fixture(scope="module")
def fixed():
    return _spine()


@pytest.mark.parametrize("angles_deg, t_mm", [((0.0, 0.0, 2.0), (2.5, -3.0, 0.0)),
                                               ((2.0, 0.0, 0.0), (0.0, 1.0, 3.0)),
                                               ((0.0, -2.0, 1.0), (-3.0, 0.0, 2.5))])
def test_known_motion_recovered(fixed, angles_deg, t_mm):
    moving = _moved_spine(angles_deg, t_mm, seed=1)
    m = estimate_rigid(fixed, moving, SPACING)
    assert np.allclose(m.center_mm, _centre(), atol=1e-6)
    assert np.abs(m.translation_mm - np.asarray(t_mm)).max() < 0.5
    assert np.abs(m.rotation_deg - np.asarray(angles_deg)).max() < 0.5
    want = RigidMotion(params=tuple(np.radians(angles_deg)) + tuple(t_mm), center_mm=tuple(_centre()))
    assert m.max_displacement_mm == pytest.approx(want.max_displacement_mm, abs=0.5)
    assert m.max_displacement_mm > 2.5


def test_motion_recovered_despite_new_sac_contrast(fixed):
    moving = _moved_spine((0.0, 0.0, 2.0), (3.0, 0.0, -2.5), contrast_hu=1100.0, seed=2)
    m = estimate_rigid(fixed, moving, SPACING)
    assert np.abs(m.translation_mm - (3.0, 0.0, -2.5)).max() < 0.5
    assert np.abs(m.rotation_deg - (0.0, 0.0, 2.0)).max() < 0.5


def test_apply_rigid_matches_bone_edges(fixed):
    moving = _moved_spine((0.0, 0.0, 2.0), (2.5, -3.0, 1.0), seed=3)
    m = estimate_rigid(fixed, moving, SPACING)
    back = apply_rigid(moving, SPACING, m)
    assert back.shape == fixed.shape and back.dtype == np.float32
    bone = ndimage.binary_dilation(fixed > 300, iterations=1)
    before = np.abs(moving - fixed)[bone].mean()
    after = np.abs(back - fixed)[bone].mean()
    assert after < 0.3 * before, (before, after)


def test_contrast_without_motion_gives_no_motion(fixed):
    moving = _spine(contrast_hu=1000.0, seed=4)
    m = estimate_rigid(fixed, moving, SPACING)
    assert m.max_displacement_mm < 0.25
    assert needs_registration(fixed, moving, SPACING) < 0.15


def test_identity_when_nothing_moved(fixed):
    m = estimate_rigid(fixed, fixed, SPACING)
    assert m.max_displacement_mm < 0.05
    assert np.array_equal(apply_rigid(fixed, SPACING, RigidMotion.identity()), fixed)
    assert needs_registration(fixed, fixed, SPACING) == 0.0


def test_needs_registration_sees_a_shift(fixed):
    moving = _moved_spine((0.0, 0.0, 0.0), (3.0, 0.0, 0.0), seed=5)
    assert needs_registration(fixed, moving, SPACING) > 0.5
    assert needs_registration(fixed, _spine(seed=5), SPACING) < 0.15


def test_rigid_motion_numbers():
    t = RigidMotion(params=(0, 0, 0, 3.0, 4.0, 0.0), center_mm=(10.0, 20.0, 30.0))
    assert t.max_displacement_mm == pytest.approx(5.0)
    assert np.allclose(t.transform_points([[1.0, 2.0, 3.0]]), [[4.0, 6.0, 3.0]])
    r = RigidMotion(params=(0, 0, np.radians(2.0), 0, 0, 0), center_mm=(0.0, 0.0, 0.0))
    assert r.rotation_angle_deg == pytest.approx(2.0)
    assert r.max_displacement_mm == pytest.approx(2 * 60.0 * np.sin(np.radians(1.0)), rel=0.01)
    # R rotates x towards y about z, as ITK's Euler3D does
    assert np.allclose(r.transform_points([1.0, 0.0, 0.0]), [np.cos(np.radians(2)), np.sin(np.radians(2)), 0])


def test_apply_rigid_follows_the_transform():
    """out(p) = moving(T(p)): a bright voxel at q in moving lands at T^-1(q)."""
    vol = np.full((20, 20, 20), -1000.0, dtype=np.float32)
    vol[10, 10, 13] = 1000.0                     # x = 13 mm at spacing 1
    m = RigidMotion(params=(0, 0, 0, 3.0, 0.0, 0.0), center_mm=(9.5, 9.5, 9.5))
    out = apply_rigid(vol, (1.0, 1.0, 1.0), m, order="nearest")
    assert np.argwhere(out > 0).tolist() == [[10, 10, 10]]


def test_bad_input_raises(fixed):
    with pytest.raises(InputError, match="shape"):
        estimate_rigid(fixed, fixed[:-1], SPACING)
    with pytest.raises(InputError, match="order"):
        apply_rigid(fixed, SPACING, RigidMotion.identity(), order="cubic")
    with pytest.raises(InputError, match="spacing"):
        estimate_rigid(fixed, fixed, (1.0, 0.0, 1.0))


def test_phantom_motion_recovered_across_contrast_passes():
    from leakloc.phantoms import generate

    s = generate(case="fig10e_t7t8", motion_mm=3.0, motion_deg=2.0)
    g = s.grid
    fixed = s.phase(0)
    d, o, c = g.direction_matrix, np.asarray(g.origin_mm), s._centre_lps
    pts = np.random.default_rng(0).uniform(0, 1, (500, 3)) * np.asarray(g.size) * np.asarray(g.spacing_mm)
    for k in (1, 3):  # pass 1: contrast arriving; pass 3: sac full
        rot, t = s._motion[k]
        a, b = d.T @ rot @ d, d.T @ (rot @ (o - c) + c + t - o)   # LPS motion in index-space mm
        m = estimate_rigid(fixed, s.phase(k), g.spacing_mm)
        assert np.abs(m.transform_points(pts) - (pts @ a.T + b)).max() < 0.5
        cos = (np.trace(m.rotation_matrix.T @ a) - 1) / 2
        assert np.degrees(np.arccos(min(cos, 1.0))) < 0.5
        assert np.linalg.norm(pts @ a.T + b - pts, axis=1).max() > 2.0


def test_for_crop_is_the_same_physical_motion(fixed):
    moving = _moved_spine((0.0, 0.0, 2.0), (2.5, -3.0, 1.0), seed=6)
    m = estimate_rigid(fixed, moving, SPACING)
    full = apply_rigid(moving, SPACING, m)
    z0, y0, x0 = 10, 12, 8
    crop = apply_rigid(moving[z0:, y0:, x0:], SPACING, m.for_crop((z0, y0, x0), SPACING))
    inner = (slice(8, -8),) * 3   # away from the crop edge (samples from outside it are -1024)
    assert np.allclose(crop[inner], full[z0:, y0:, x0:][inner], atol=1e-3)
    wrong = apply_rigid(moving[z0:, y0:, x0:], SPACING, m)   # forgetting for_crop is visible
    assert np.abs(wrong[inner] - full[z0:, y0:, x0:][inner]).max() > 100.0


def test_valid_mask_keeps_filled_in_voxels_out_of_the_metric(fixed):
    # a resampled pass has no data where it did not reach; filled in with the fixed pass's values
    # there, those voxels say "no motion" and pull the fit towards it unless left out
    moving = _moved_spine((0.0, 0.0, 0.0), (3.0, -2.0, 0.0), seed=6)
    filled = np.zeros(SHAPE, bool)
    filled[: SHAPE[0] // 2] = True
    moving[filled] = fixed[filled]
    m = estimate_rigid(fixed, moving, SPACING, valid=~filled)
    assert np.abs(m.translation_mm - (3.0, -2.0, 0.0)).max() < 0.5
    biased = estimate_rigid(fixed, moving, SPACING)
    assert np.abs(biased.translation_mm - (3.0, -2.0, 0.0)).max() > \
        np.abs(m.translation_mm - (3.0, -2.0, 0.0)).max()
    with pytest.raises(InputError, match="valid mask shape"):
        estimate_rigid(fixed, moving, SPACING, valid=filled[:-1])


# -- the first pass's contrast run (pipeline.contrast_run) ---------------------------------------

def _slices(n, on):
    d = np.zeros(n, bool)
    d[list(on)] = True
    return d


def test_contrast_run_keeps_the_bolus_and_drops_moved_endplates():
    from leakloc.pipeline import contrast_run
    # a bolus over slices 38-86 (2 mm: 98 mm) with gaps of up to 3 slices, and single slices
    # far from it where an endplate moved across the slice between passes
    bolus = [38, 42, 43, 44, 45, 48, 51, 54, 55, 56, 57, 58, 61, 62, 63, 64, 65, 66, 67, 68,
             72, 74, 75, 76, 80, 81, 82, 83, 86]
    bone = [94, 144, 159, 173, 174, 178, 188, 202, 215, 216, 218, 229, 231, 232, 240]
    got = contrast_run(_slices(300, bolus + bone), 2.0)
    assert np.array_equal(np.nonzero(got)[0], bolus)


def test_contrast_run_short_or_absent():
    from leakloc.pipeline import contrast_run
    # a pre-contrast first pass after motion: scattered short runs only -> no contrast
    got = contrast_run(_slices(200, [36, 37, 38, 40, 41, 49, 53, 54]), 2.0)
    assert not got.any()
    assert not contrast_run(np.zeros(50, bool), 2.0).any()
    # a whole field dense in the first pass is kept whole, at either end of the array
    assert contrast_run(np.ones(128, bool), 2.0).all()
    # 10 slices of 2 mm (20 mm) are a bolus, 9 are not; at 1 mm slices it takes 20
    assert contrast_run(_slices(60, range(50, 60)), 2.0).sum() == 10
    assert not contrast_run(_slices(60, range(51, 60)), 2.0).any()
    assert not contrast_run(_slices(60, range(41, 60)), 1.0).any()
    assert contrast_run(_slices(60, range(40, 60)), 1.0).sum() == 20


def test_contrast_run_closes_gaps_in_mm():
    from leakloc.pipeline import contrast_run
    # gaps of 6 mm are closed: 3 missing 2 mm slices, or 6 missing 1 mm slices
    d = _slices(100, list(range(10, 20)) + list(range(23, 30)))
    assert contrast_run(d, 2.0).sum() == 17
    # a wider gap splits: each stretch stands on its own length (20 mm and 18 mm here)
    d = _slices(100, list(range(10, 20)) + list(range(24, 33)))
    assert np.array_equal(np.nonzero(contrast_run(d, 2.0))[0], np.arange(10, 20))
    # two long stretches of one bolus split by a column too thin to judge are both kept
    d = _slices(100, list(range(0, 57)) + list(range(60, 83)))
    assert contrast_run(d, 3.0).sum() == 80
    # at 4 mm slices one missing slice (4 mm) is closed, two (8 mm) are not
    d = _slices(40, list(range(0, 3)) + [4, 5])
    assert contrast_run(d, 4.0).sum() == 5
    d = _slices(40, list(range(0, 5)) + [7, 8, 9, 10, 11])
    assert contrast_run(d, 4.0).sum() == 10
    d = _slices(40, list(range(0, 4)) + [7])
    assert not contrast_run(d, 4.0).any()
    d = _slices(100, list(range(10, 30)) + list(range(36, 50)))
    assert contrast_run(d, 1.0).sum() == 34
    d = _slices(100, list(range(10, 30)) + list(range(37, 50)))
    assert contrast_run(d, 1.0).sum() == 20


@pytest.mark.parametrize("pre_contrast", [True, False])
def test_first_pass_with_contrast_only_at_the_injection_is_no_precontrast_pass(pre_contrast):
    """Without a pre-contrast pass, a first pass taken just after the injection is clear but
    for the bolus: detection must know that contrast can be there before anything is timed
    (``Voxels.precontrast`` False), and the notes say where. A pre-contrast first pass stays
    one."""
    from leakloc import pipeline
    from leakloc.phantoms import generate

    s = generate(case="fig10e_t7t8", seed=3, shape="small", pre_contrast=pre_contrast,
                 injection_time_s=9.0 if pre_contrast else -2.0)
    keep = pipeline._KEEP_DEBUG
    pipeline._KEEP_DEBUG = True
    try:
        res = pipeline.analyze(s.series(), top_vertebra=s.top_vertebra)
    finally:
        pipeline._KEEP_DEBUG = keep
    assert res.debug["voxels"].precontrast is pre_contrast
    bolus = [n for n in res.notes if "the first pass holds contrast over" in n]
    assert bool(bolus) is (not pre_contrast)
