"""Streak artefacts: found far from the canal, removed along their whole line."""
import numpy as np
import pytest

from leakloc import streaks as sk

SP = (1.0, 1.0)            # in-plane spacing y, x (mm)
SHAPE = (20, 144, 144)     # 2 mm slices
C = (72.0, 72.0)           # canal centre (voxel indices y, x)


def _line(angle_deg, rho_mm, amp_hu, width_mm=1.5):
    """A streak whose normal makes ``angle_deg`` with +x, at distance ``rho_mm`` from voxel (0,0)."""
    th = np.deg2rad(angle_deg)
    jj, ii = np.mgrid[0:SHAPE[1], 0:SHAPE[2]].astype(float)
    d = ii * SP[1] * np.cos(th) + jj * SP[0] * np.sin(th) - rho_mm
    return (amp_hu * np.exp(-(d / width_mm) ** 2)).astype(np.float32)


def _through_centre(angle_deg):
    th = np.deg2rad(angle_deg)
    return C[1] * SP[1] * np.cos(th) + C[0] * SP[0] * np.sin(th)


def _study(streaks_by_pass, n=3, seed=0, blob_hu=0.0):
    """Body of soft tissue in air, a canal that fills with contrast, ``streaks_by_pass[i]`` lines."""
    rng = np.random.default_rng(seed)
    jj, ii = np.mgrid[0:SHAPE[1], 0:SHAPE[2]].astype(float)
    r = np.hypot(jj - C[0], ii - C[1])
    base = np.where(r < 62, 40.0, -850.0)
    canal = r < 8
    vols = []
    for i in range(n):
        v = np.broadcast_to(base, SHAPE).copy()
        v[:, canal] += 250.0 * i                            # contrast arrives
        if blob_hu and i == n - 1:                          # something wide changes far away
            v[:, np.hypot(jj - 72, ii - 122) < 9] += blob_hu
        for ang, rho, amp in streaks_by_pass.get(i, []):
            v += _line(ang, rho, amp)[None]
        v += rng.normal(0, 12, SHAPE)
        vols.append(v.astype(np.float32))
    return vols


def _find(vols):
    slab, ns = sk.slab_layout(SHAPE[0], 2.0)
    block = sk.block_size(SP)
    slabs = [sk.slab_means(v, slab, ns, block) for v in vols]
    return sk.find_streaks(slabs, np.tile(C, (ns, 1)), SP, block), slab


def test_slab_layout_and_means():
    slab, ns = sk.slab_layout(11, 2.0, slab_mm=10.0)
    assert ns == 3 and list(slab) == [0] * 5 + [1] * 5 + [2]
    v = np.arange(11 * 4 * 6, dtype=np.float32).reshape(11, 4, 6)
    m = sk.slab_means(v, slab, ns, (2, 3))
    assert m.shape == (3, 2, 2) and m.dtype == np.float32
    np.testing.assert_allclose(m[2, 1, 0], v[10, 2:4, 0:3].mean())
    np.testing.assert_allclose(m[0, 0, 1], v[0:5, 0:2, 3:6].mean())
    assert sk.block_size((0.5, 0.25)) == (2, 4) and sk.block_size((1.2, 3.0)) == (1, 1)


def test_streaks_found_in_their_pass_and_removed_through_the_canal():
    a0, a2 = 30.0, 112.0
    lines = {0: [(a0, _through_centre(a0), -40.0)],
             2: [(a2, _through_centre(a2) + 6.0, 50.0)]}
    vols = _study(lines)
    found, slab = _find(vols)
    assert found[1] == []
    for p, (ang, rho, amp) in ((0, lines[0][0]), (2, lines[2][0])):
        assert {q.slab for q in found[p]} == set(range(4)), found[p]
        for q in found[p]:
            assert abs(np.rad2deg(q.angle_rad) - ang) <= 2.0
            assert abs(float(q.rho_mm[len(q.rho_mm) // 2]) - rho) <= 1.5
            assert 0.6 * abs(amp) < abs(q.peak_hu) < 1.2 * abs(amp) and np.sign(q.peak_hu) == np.sign(amp)
    # through the canal (where no line was measured) the streak is gone
    jj, ii = np.mgrid[0:SHAPE[1], 0:SHAPE[2]]
    near = np.hypot(jj - C[0], ii - C[1]) < 20
    for p, (ang, rho, amp) in ((0, lines[0][0]), (2, lines[2][0])):
        clean = sk.remove(vols[p], found[p], slab, (0, 0), SP)
        err_before = np.abs((vols[p] - clean).mean(0) - _line(ang, rho, amp))[near].max()
        assert err_before < 0.35 * abs(amp)
        # a box of the pass gives the same values as the full pass
        box = sk.remove(vols[p][:, 30:80, 20:90], found[p], slab, (30, 20), SP)
        np.testing.assert_allclose(box, clean[:, 30:80, 20:90], atol=1e-3)
    assert sk.remove(vols[1], found[1], slab, (0, 0), SP) is vols[1]


def test_no_streaks_in_a_clean_study_nor_from_a_wide_change_far_away():
    found, _ = _find(_study({}, seed=3))
    assert all(f == [] for f in found)
    found, _ = _find(_study({}, seed=4, blob_hu=150.0))
    assert all(f == [] for f in found)


def test_two_passes_and_a_single_pass():
    vols = _study({1: [(75.0, _through_centre(75.0), 45.0)]}, n=2)
    found, _ = _find(vols)
    # with two passes the median is their mean: each carries half the streak, opposite signs
    assert found[0] and found[1]
    assert np.sign(found[1][0].peak_hu) > 0 > np.sign(found[0][0].peak_hu)
    assert _find(vols[:1])[0] == [[]]
