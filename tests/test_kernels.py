"""Numba kernels against the plain numpy references in tests/naive.py."""
from __future__ import annotations

import numpy as np
import pytest

from leakloc import kernels as K

try:
    from . import naive  # tests/ is a package
except ImportError:
    import naive

THR = 70.0
FIELDS = ("count", "mean", "max", "n_above", "pct", "sum", "hist")


def assert_stats_equal(got, ref, exact_float=False):
    """Counts, histograms and maxima exactly; float sums to rounding (they add in another order)."""
    for f in ("count", "n_above", "hist"):
        np.testing.assert_array_equal(getattr(got, f), ref[f], err_msg=f)
    np.testing.assert_array_equal(got.max, ref["max"], err_msg="max")
    for f in ("mean", "sum", "pct"):
        if exact_float:
            np.testing.assert_array_equal(getattr(got, f), ref[f], err_msg=f)
        else:
            np.testing.assert_allclose(getattr(got, f), ref[f], rtol=1e-9, atol=1e-9, err_msg=f)


def assert_same(a, b):
    """Two RegionStats bit-identical."""
    for f in FIELDS:
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f), err_msg=f)


def random_study(seed, shape=(9, 13, 17), n_phases=5, n_regions=7, nan_frac=0.0):
    """Phases whose enhancement rises at random voxel-wise times, plus noise and dense 'bone'."""
    rng = np.random.default_rng(seed)
    base = rng.normal(30, 20, shape).astype(np.float32)
    base[rng.random(shape) < 0.1] = 900.0                       # bone: dense in every phase
    onset = rng.uniform(-0.5, n_phases, shape)
    height = rng.uniform(20, 400, shape)
    phases = []
    for p in range(n_phases):
        enh = height * np.clip(p - onset, 0, 1) + rng.normal(0, 15, shape)
        v = (base + enh).astype(np.float32)
        if nan_frac:
            v[rng.random(shape) < nan_frac] = np.nan
        phases.append(v)
    region = rng.integers(-1, n_regions, shape).astype(np.int32)
    # per-slice acquisition times, alternating table direction
    z = np.arange(shape[0])
    times = [p * 10.0 + (z if p % 2 == 0 else z[::-1]) * 0.37 for p in range(n_phases)]
    return base, phases, region, times


def run_stream(fn, base, phases, region, n_regions, times, **kw):
    """Run stream_phase (kernel or naive) over every phase; return per-phase stats and state."""
    shape = base.shape
    prev = np.empty(shape, np.float32)
    peak = np.empty(shape, np.float32)
    arr = np.empty(shape, np.float32)
    out = []
    for p, v in enumerate(phases):
        out.append(fn(v, base, region, n_regions, prev, peak, arr,
                      times[p - 1] if p else times[0], times[p], THR, first=(p == 0), **kw))
    return out, prev, peak, arr


# --------------------------------------------------------------------------------------------
# stream_phase
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed,nan_frac", [(0, 0.0), (1, 0.0), (2, 0.05)])
def test_stream_phase_matches_numpy(seed, nan_frac):
    base, phases, region, times = random_study(seed, nan_frac=nan_frac)
    got, g_prev, g_peak, g_arr = run_stream(K.stream_phase, base, phases, region, 7, times)
    ref, r_prev, r_peak, r_arr = run_stream(naive.stream_phase, base, phases, region, 7, times)
    for g, r in zip(got, ref):
        assert_stats_equal(g, r)
    np.testing.assert_array_equal(g_prev, r_prev)
    np.testing.assert_array_equal(g_peak, r_peak)
    np.testing.assert_array_equal(g_arr, r_arr)
    # the data really exercise the interpolation and the statistics
    assert np.isfinite(g_arr).mean() > 0.5 and np.isnan(g_arr).any()
    assert got[-1].n_above.min() > 0 and got[-1].count.min() > 0
    frac = [(g_arr > times[p - 1][:, None, None] + 1e-3) & (g_arr < times[p][:, None, None] - 1e-3)
            for p in range(1, len(times))]
    assert np.any(frac)                                   # sub-phase (interpolated) arrivals exist


@pytest.mark.parametrize("n_chunks", [None, 3, 7])
def test_stream_phase_serial_equals_parallel_and_is_deterministic(n_chunks, monkeypatch):
    from leakloc.kernels import stats as kstats
    if n_chunks is not None:      # force the parallel kernel and its z-chunking on any core count
        monkeypatch.setattr(kstats, "_n_chunks", lambda nz, parallel: n_chunks if parallel else 1)
    base, phases, region, times = random_study(3, shape=(16, 20, 24), nan_frac=0.01)
    par = run_stream(K.stream_phase, base, phases, region, 7, times, parallel=True)
    ser = run_stream(K.stream_phase, base, phases, region, 7, times, parallel=False)
    again = run_stream(K.stream_phase, base, phases, region, 7, times, parallel=True)
    for a, b, c in zip(par[0], ser[0], again[0]):
        assert_same(a, b)
        assert_same(a, c)
    for i in (1, 2, 3):
        np.testing.assert_array_equal(par[i], ser[i])


def test_stream_stats_equal_region_stats_of_enhancement():
    base, phases, region, times = random_study(4)
    got, *_ = run_stream(K.stream_phase, base, phases, region, 7, times)
    enh = phases[-1] - base
    assert_same(got[-1], K.region_stats(enh, region, 7, THR))


def test_arrival_exact_values_threshold_hit_and_nan():
    # voxels (one per x): enhancement over three phases at t = 0, 10, 20 (slice times shared)
    e = np.array([[50, 100, 300],        # exactly hits 100 at phase 1 -> 10.0
                  [50, 150, 150],        # 50 -> 150 crosses half way -> 5.0
                  [100, 0, 500],         # at threshold in the first phase -> 0.0, never re-set
                  [np.nan, 120, 0],      # previous is NaN -> arrival at the phase itself: 10.0
                  [10, 20, 30],          # never -> NaN
                  [99, np.nan, 101]],    # NaN phase in between -> 20.0
                 dtype=np.float32).T.copy()  # (phase, voxel)
    base = np.zeros((1, 1, e.shape[1]), np.float32)
    region = np.zeros(base.shape, np.int32)
    prev, peak, arr = (np.empty(base.shape, np.float32) for _ in range(3))
    t = [np.array([0.0]), np.array([10.0]), np.array([20.0])]
    stats = [K.stream_phase(e[p][None, None], base, region, 1, prev, peak, arr,
                            t[p - 1] if p else None, t[p], 100.0, first=(p == 0))
             for p in range(3)]
    np.testing.assert_array_equal(arr[0, 0], np.array([10, 5, 0, 10, np.nan, 20], np.float32))
    np.testing.assert_array_equal(peak[0, 0], np.array([300, 150, 500, 120, 30, 101], np.float32))
    np.testing.assert_array_equal(prev[0, 0], e[2])
    # threshold exactly hit counts as above; NaN voxels are not counted
    assert stats[0].n_above[0] == 1 and stats[0].count[0] == 5
    assert stats[1].n_above[0] == 3 and stats[1].count[0] == 5


def test_first_phase_ignores_state_and_uses_slice_times():
    v = np.array([[[0, 200]], [[200, 0]]], np.float32)         # Z=2, Y=1, X=2
    base = np.zeros_like(v)
    prev = np.full(v.shape, 7.0, np.float32)
    peak = np.full(v.shape, 1e9, np.float32)
    arr = np.full(v.shape, 3.0, np.float32)
    K.stream_phase(v, base, np.full(v.shape, -1, np.int32), 0, prev, peak, arr, None,
                   np.array([1.5, 2.5]), 100.0, first=True)
    np.testing.assert_array_equal(arr, np.array([[[np.nan, 1.5]], [[2.5, np.nan]]], np.float32))
    np.testing.assert_array_equal(peak, v)
    np.testing.assert_array_equal(prev, v)


def test_all_minus_one_labels_and_empty_regions():
    base, phases, region, times = random_study(5)
    region[:] = -1
    got, _, peak, arr = run_stream(K.stream_phase, base, phases, region, 4, times)
    s = got[-1]
    np.testing.assert_array_equal(s.count, 0)
    np.testing.assert_array_equal(s.n_above, 0)
    np.testing.assert_array_equal(s.hist, 0)
    for f in ("mean", "max", "pct"):
        assert np.isnan(getattr(s, f)).all(), f
    assert np.isfinite(arr).any()            # temporal updates still happen
    np.testing.assert_array_equal(peak, np.fmax.reduce([p - base for p in phases]))


def test_region_none_does_temporal_updates_only():
    base, phases, region, times = random_study(14, nan_frac=0.02)
    got, g_prev, g_peak, g_arr = run_stream(K.stream_phase, base, phases, None, 3, times)
    _, r_prev, r_peak, r_arr = run_stream(K.stream_phase, base, phases, region, 7, times)
    np.testing.assert_array_equal(g_prev, r_prev)
    np.testing.assert_array_equal(g_peak, r_peak)
    np.testing.assert_array_equal(g_arr, r_arr)
    assert got[-1].n_regions == 3 and (got[-1].count == 0).all() and np.isnan(got[-1].pct).all()


def test_empty_region_among_used_ones():
    base, phases, region, times = random_study(6, n_regions=3)
    got, *_ = run_stream(K.stream_phase, base, phases, region, 5, times)
    s = got[-1]
    assert (s.count[:3] > 0).all() and (s.count[3:] == 0).all()
    assert np.isnan(s.mean[3:]).all() and np.isnan(s.pct[3:]).all() and np.isfinite(s.pct[:3]).all()


def test_single_voxel_and_z1():
    one = np.full((1, 1, 1), 123.0, np.float32)
    s = K.region_stats(one, np.zeros((1, 1, 1), np.int32), 1, 123.0)
    assert s.count[0] == 1 and s.n_above[0] == 1 and s.mean[0] == 123.0 and s.max[0] == 123.0
    assert s.pct[0] == 122.5                # centre of its bin [120, 125)
    base, phases, region, times = random_study(7, shape=(1, 11, 9))
    got, *_ = run_stream(K.stream_phase, base, phases, region, 7, times)
    ref, *_ = run_stream(naive.stream_phase, base, phases, region, 7, times)
    assert_stats_equal(got[-1], ref[-1])


def test_single_voxel_percentile_is_bin_centre_clamped_to_max():
    v = np.full((1, 1, 1), 128.0, np.float32)                 # bin [125, 130) -> centre 127.5
    s = K.region_stats(v, np.zeros((1, 1, 1), np.int32), 1, 0.0)
    assert s.pct[0] == 127.5
    s = K.region_stats(v - 6, np.zeros((1, 1, 1), np.int32), 1, 0.0)   # 122 in [120,125) -> 122.5 > max
    assert s.pct[0] == 122.0


def test_percentile_exact_small_example_and_saturation():
    vals = np.array([10, 20, 30, -40, 5000], np.float32).reshape(1, 1, 5)
    reg = np.array([0, 0, 0, 1, 2], np.int32).reshape(1, 1, 5)
    s = K.region_stats(vals, reg, 3, 0.0, percentile=50.0)
    # median of 10, 20, 30: rank 1 -> bin [20, 25) holding one value -> its centre
    assert s.pct[0] == 22.5
    assert s.pct[1] == -40.0                 # below 0: first bin, then clamped to the maximum
    assert s.pct[2] == 1997.5                # above hist_max_hu: last bin centre
    assert s.n_above.tolist() == [3, 0, 1]


def test_percentile_resolution_against_numpy_percentile():
    rng = np.random.default_rng(8)
    enh = rng.gamma(2.0, 60.0, (6, 40, 40)).astype(np.float32)
    region = rng.integers(0, 5, enh.shape).astype(np.int32)
    width = 2000.0 / 400
    for q in (50.0, 90.0, 95.0, 99.0):
        s = K.region_stats(enh, region, 5, THR, percentile=q)
        for r in range(5):
            v = np.sort(enh[region == r].astype(np.float64))
            k = q / 100 * (v.size - 1)
            gap = v[int(np.ceil(k))] - v[int(np.floor(k))]
            assert abs(s.pct[r] - np.percentile(v, q)) <= width + gap, (q, r)


def test_region_stats_matches_numpy_random_and_options():
    rng = np.random.default_rng(9)
    enh = rng.normal(80, 150, (5, 21, 19)).astype(np.float32)
    enh[rng.random(enh.shape) < 0.02] = np.nan
    region = rng.integers(-1, 6, enh.shape).astype(np.int32)
    for kw in ({}, dict(percentile=99.0, hist_max_hu=500.0, n_bins=37), dict(percentile=0.0),
               dict(percentile=100.0, n_bins=1)):
        got = K.region_stats(enh, region, 6, THR, **kw)
        assert_stats_equal(got, naive.region_stats(enh, region, 6, THR, **kw))
        assert_same(got, K.region_stats(enh, region, 6, THR, parallel=False, **kw))


def test_region_stats_chunked_equals_serial(monkeypatch):
    from leakloc.kernels import stats as kstats
    rng = np.random.default_rng(15)
    enh = rng.normal(80, 150, (11, 8, 9)).astype(np.float32)
    region = rng.integers(-1, 4, enh.shape).astype(np.int32)
    serial = K.region_stats(enh, region, 4, THR, parallel=False)
    monkeypatch.setattr(kstats, "_n_chunks", lambda nz, parallel: 4 if parallel else 1)
    assert_same(K.region_stats(enh, region, 4, THR), serial)


def test_combine_equals_stats_on_merged_labels():
    rng = np.random.default_rng(10)
    enh = rng.gamma(2.0, 60.0, (4, 16, 16)).astype(np.float32)
    region = rng.integers(-1, 12, enh.shape).astype(np.int32)
    s = K.region_stats(enh, region, 12, THR)
    merged = s.combine(np.arange(12) // 4, 3)
    direct = K.region_stats(enh, np.where(region >= 0, region // 4, -1).astype(np.int32), 3, THR)
    for f in ("count", "n_above", "hist", "max", "pct"):
        np.testing.assert_array_equal(getattr(merged, f), getattr(direct, f), err_msg=f)
    np.testing.assert_allclose(merged.mean, direct.mean, rtol=1e-12)
    dropped = s.combine(np.where(np.arange(12) < 4, -1, 0), 1)
    assert dropped.count[0] == int(np.sum(region >= 4))


def test_percentile_from_hist_matches_naive():
    rng = np.random.default_rng(11)
    hist = rng.integers(0, 4, (30, 25)) * (rng.random((30, 25)) < 0.3)
    hist[0] = 0
    got = K.percentile_from_hist(hist, 87.0, 250.0)
    ref = [naive.percentile_from_hist(h, 87.0, 250.0) for h in hist]
    np.testing.assert_allclose(got, ref, rtol=1e-12)
    assert np.isnan(got[0]) and np.isfinite(got[1:]).sum() > 20


# --------------------------------------------------------------------------------------------
# argument checks
# --------------------------------------------------------------------------------------------

def _args(shape=(3, 4, 5)):
    f = np.zeros(shape, np.float32)
    return dict(volume=f.copy(), baseline=f.copy(), region=np.zeros(shape, np.int32), n_regions=1,
                prev_enh=f.copy(), peak=f.copy(), arrival_s=f.copy(),
                t_prev_s=np.zeros(shape[0]), t_cur_s=np.ones(shape[0]), threshold_hu=THR)


@pytest.mark.parametrize("name,value,exc,match", [
    ("volume", np.zeros((3, 4, 10), np.float32)[:, :, ::2], ValueError, "volume must be C-contig"),
    ("volume", np.zeros((3, 4, 5)), TypeError, "volume must have dtype float32"),
    ("baseline", np.zeros((3, 4, 6), np.float32), ValueError, "baseline must have shape"),
    ("region", np.zeros((3, 4, 5), np.int64), TypeError, "region must have dtype int32"),
    ("region", np.zeros((3, 4, 5), np.int32).T.copy().T, ValueError, "region must be C-contig"),
    ("peak", np.zeros((3, 4, 5), np.float32)[None][0].T, ValueError, "peak must"),
    ("arrival_s", [[0.0]], TypeError, "arrival_s must be a numpy.ndarray"),
    ("t_cur_s", np.zeros(4), ValueError, "t_cur_s must have shape"),
    ("t_prev_s", None, ValueError, "t_prev_s is required"),
    ("t_prev_s", np.zeros(3, np.float32), TypeError, "t_prev_s must have dtype float64"),
    ("n_regions", 1.0, TypeError, "n_regions must be an integer"),
    ("threshold_hu", np.nan, ValueError, "threshold_hu must be finite"),
])
def test_stream_phase_rejects_bad_arguments(name, value, exc, match):
    kw = _args()
    kw[name] = value
    with pytest.raises(exc, match=match):
        K.stream_phase(**kw)


def test_stream_phase_rejects_region_ids_out_of_range_and_readonly_state():
    kw = _args()
    kw["region"][1, 2, 3] = 1
    with pytest.raises(ValueError, match="1 voxel"):
        K.stream_phase(**kw)
    kw = _args()
    kw["peak"].flags.writeable = False
    with pytest.raises(ValueError, match="peak must be writeable"):
        K.stream_phase(**kw)
    kw = _args()
    kw["peak"] = kw["prev_enh"]
    with pytest.raises(ValueError, match="peak must not share memory with prev_enh"):
        K.stream_phase(**kw)
    kw = _args()
    kw["arrival_s"] = kw["volume"]
    with pytest.raises(ValueError, match="arrival_s must not share memory with volume"):
        K.stream_phase(**kw)
    with pytest.raises(ValueError, match="percentile"):
        K.region_stats(np.zeros((1, 1, 1), np.float32), np.zeros((1, 1, 1), np.int32), 1, THR,
                       percentile=101.0)
    with pytest.raises(ValueError, match="n_bins"):
        K.region_stats(np.zeros((1, 1, 1), np.float32), np.zeros((1, 1, 1), np.int32), 1, THR,
                       n_bins=0)
    with pytest.raises(TypeError, match="enh must have dtype float32"):
        K.region_stats(np.zeros((1, 1, 1)), np.zeros((1, 1, 1), np.int32), 1, THR)


# --------------------------------------------------------------------------------------------
# half_rise
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed, p", [(0, 1), (1, 2), (2, 5)])
def test_half_rise_matches_naive_random(seed, p):
    rng = np.random.default_rng(seed)
    shape = (4, 5, 6)
    # rising, falling and noisy curves; peaks below 1 HU and zero
    enh = [rng.normal(60.0 * k, 80.0, shape).astype(np.float32) for k in range(p)]
    peak = np.maximum.reduce(enh).astype(np.float32)
    peak.flat[:3] = [0.0, -5.0, 0.5]
    st = np.sort(rng.uniform(0, 100, (p, shape[0])), axis=0)
    got = K.half_rise(enh, peak, st)
    want = naive.half_rise(enh, peak, st)
    assert got.dtype == np.float32 and got.shape == shape
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-3)


def test_half_rise_edge_cases():
    st = np.array([[0.0, 1.0], [10.0, 11.0], [20.0, 21.0]])
    z = np.zeros((2, 1, 3), np.float32)
    e0, e1, e2 = z.copy(), z.copy(), z.copy()
    peak = np.full(z.shape, 100.0, np.float32)
    e0[0, 0, 0] = 60.0                       # above one half in the first pass: its time
    e1[0, 0, 1] = 100.0                      # 0 -> 100 HU: halfway between passes 0 and 1
    e1[1, 0, 1] = 40.0
    e2[1, 0, 1] = 60.0                       # 40 -> 60: halfway between passes 1 and 2 (slice 1)
    e2[0, 0, 2] = 50.0                       # exactly one half in the last pass
    got = K.half_rise([e0, e1, e2], peak, st)
    assert got[0, 0, 0] == 0.0
    assert got[0, 0, 1] == pytest.approx(5.0)
    assert got[1, 0, 1] == pytest.approx(16.0)
    assert got[0, 0, 2] == pytest.approx(20.0)
    assert np.isnan(got[1, 0, 0]) and np.isnan(got[1, 0, 2])
    # NaN never reaches one half: a NaN pass is skipped, a NaN peak never crosses
    e0[1, 0, 0] = np.nan
    e1[1, 0, 0] = 80.0
    peak[1, 0, 2] = np.nan
    e2[1, 0, 2] = 90.0
    got = K.half_rise([e0, e1, e2], peak, st)
    assert got[1, 0, 0] == pytest.approx(11.0) and np.isnan(got[1, 0, 2])
    np.testing.assert_array_equal(np.isnan(got), np.isnan(naive.half_rise([e0, e1, e2], peak, st)))
    with pytest.raises(TypeError, match=r"enh_passes\[1\] must have dtype float32"):
        K.half_rise([e0, e1.astype(np.float64)], peak, st[:2])
    with pytest.raises(ValueError, match="slice_times_s must have shape"):
        K.half_rise([e0, e1], peak, st)
    with pytest.raises(ValueError, match="at least one pass"):
        K.half_rise([], peak, st)


# --------------------------------------------------------------------------------------------
# threshold_arrival
# --------------------------------------------------------------------------------------------

def test_threshold_arrival_matches_naive_random():
    rng = np.random.default_rng(12)
    curves = np.cumsum(rng.normal(10, 25, (200, 8)), axis=1)
    curves[rng.random(curves.shape) < 0.05] = np.nan
    times = np.sort(rng.uniform(0, 120, (200, 8)), axis=1)
    got = K.threshold_arrival(curves, times, 60.0)
    np.testing.assert_array_equal(got, naive.threshold_arrival(curves, times, 60.0))
    assert np.isnan(got).any() and np.isfinite(got).sum() > 100


def test_threshold_arrival_edge_cases():
    curves = np.array([[0, 50, 100, 0],         # exact hit at t[2]
                       [120, 90, 100, 100],     # already above at the first phase
                       [0, 10, 20, 30],         # never
                       [np.nan, 200, 0, 0],     # previous NaN -> the phase's time
                       [0, 150, 0, 0]],         # half way between t[0] and t[1]
                      dtype=np.float64)
    t = np.array([0.0, 10.0, 20.0, 30.0])
    np.testing.assert_array_equal(K.threshold_arrival(curves, t, 100.0),
                                  [20.0, 0.0, np.nan, 10.0, 0.0 + (100.0 - 0.0) / (150.0 - 0.0) * 10.0])
    per_row = np.tile(t, (5, 1)) + np.arange(5)[:, None]
    np.testing.assert_array_equal(K.threshold_arrival(curves, per_row, 100.0),
                                  naive.threshold_arrival(curves, per_row, 100.0))
    assert K.threshold_arrival(np.zeros((0, 3)), np.zeros(3), 1.0).shape == (0,)
    with pytest.raises(TypeError, match="curves must have dtype float64"):
        K.threshold_arrival(curves.astype(np.float32), t, 100.0)
    with pytest.raises(ValueError, match="curves must be C-contig"):
        K.threshold_arrival(np.zeros((4, 6))[:, ::2], t[:3], 100.0)
    with pytest.raises(ValueError, match="times_s must have shape"):
        K.threshold_arrival(curves, t[:3], 100.0)


# --------------------------------------------------------------------------------------------
# label_regions
# --------------------------------------------------------------------------------------------

def test_label_regions_matches_numpy_expression():
    rng = np.random.default_rng(13)
    comp = rng.integers(0, 4, (12, 9, 10)).astype(np.uint8)
    sect = rng.integers(0, 4, comp.shape).astype(np.uint8)
    lev = (np.arange(12) // 3 - 1).astype(np.int16)           # first 3 slices have no level
    got = K.label_regions(comp, sect, lev, 3)
    np.testing.assert_array_equal(got, naive.label_regions(comp, sect, lev, 3))
    np.testing.assert_array_equal(got, K.label_regions(comp, sect, lev, 3, parallel=False))
    assert got.dtype == np.int32 and got.max() == 3 * 12 - 1 and (got[:3] == -1).all()
    # the documented mapping on one voxel: level 2, epidural (2), left (2)
    c1 = np.array([[[2]]], np.uint8)
    assert K.label_regions(c1, np.array([[[2]]], np.uint8), np.array([2], np.int16), 3)[0, 0, 0] \
        == (2 * 3 + 1) * 4 + 2


def test_label_regions_rejects_bad_input():
    comp = np.ones((2, 2, 2), np.uint8)
    sect = np.zeros((2, 2, 2), np.uint8)
    with pytest.raises(ValueError, match="level >= n_levels"):
        K.label_regions(comp, sect, np.array([0, 5], np.int16), 2)
    sect[0, 0, 0] = 4
    with pytest.raises(ValueError, match="1 voxel"):
        K.label_regions(comp, sect, np.array([0, 1], np.int16), 2)
    with pytest.raises(TypeError, match="slice_level must have dtype int16"):
        K.label_regions(comp, sect, np.array([0, 1]), 2)


def test_zero_slices_and_zero_regions():
    z = np.zeros((0, 3, 4), np.float32)
    s = K.stream_phase(z, z, np.zeros(z.shape, np.int32), 2, z.copy(), z.copy(), z.copy(), None,
                       np.zeros(0), THR, first=True)
    assert s.count.tolist() == [0, 0] and np.isnan(s.mean).all()
    o = np.full((2, 3, 4), 100.0, np.float32)
    arr = np.empty_like(o)
    s = K.stream_phase(o, np.zeros_like(o), np.full(o.shape, -1, np.int32), 0, o.copy(), o.copy(),
                       arr, None, np.array([1.0, 2.0]), THR, first=True)
    assert s.count.shape == (0,) and s.hist.shape == (0, 400)
    np.testing.assert_array_equal(arr[:, 0, 0], [1.0, 2.0])


# --------------------------------------------------------------------------------------------
# line_sums
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed, step, n_img", [(0, (1.0, 1.0), 1), (1, (0.7, 1.3), 3)])
def test_line_sums_matches_naive_random(seed, step, n_img):
    rng = np.random.default_rng(seed)
    img = rng.normal(0, 30, (n_img, 3, 17, 23)).astype(np.float32)
    mask = (rng.random(img.shape[1:]) < 0.6).astype(np.uint8)
    ang = np.deg2rad(np.arange(0.0, 180.0, 7.5))
    args = (ang, (0.3, -1.2), step, -30.0, 1.0, 61)
    got = K.line_sums(img, mask, *args)
    want = naive.line_sums(img, mask, *args)
    assert got[0].shape == (n_img, 3, len(ang), 61) and got[1].shape == (3, len(ang), 61)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-12, atol=1e-9)
    np.testing.assert_array_equal(got[1], want[1])
    # every masked pixel lands in exactly one bin of every angle (the range covers the image)
    np.testing.assert_array_equal(got[1].sum(axis=2), mask.sum(axis=(1, 2))[:, None]
                                  * np.ones(len(ang)))
    if n_img > 1:
        # each image's sums are those of that image alone
        one = K.line_sums(np.ascontiguousarray(img[-1:]), mask, *args)
        np.testing.assert_array_equal(one[0][0], got[0][-1])


def test_line_sums_edge_cases():
    img = np.zeros((2, 2, 4, 4), np.float32)
    img[0, :, 1, :] = 5.0                    # image 0: a horizontal line y = 1 mm
    img[1] = -1.0                            # image 1: uniform
    mask = np.ones(img.shape[1:], np.uint8)
    mask[1] = 0                              # an empty slab
    ang = np.array([0.0, np.pi / 2])
    s, c = K.line_sums(img, mask, ang, (0.0, 0.0), (1.0, 1.0), 0.0, 1.0, 3)
    # angle 90 deg: rho = y; bin 1 holds the 4 pixels of the line, bin 3 (y = 3) falls outside
    np.testing.assert_array_equal(s[0, 0, 1], [0.0, 20.0, 0.0])
    np.testing.assert_array_equal(c[0, 1], [4.0, 4.0, 4.0])
    np.testing.assert_array_equal(s[:, 1], 0.0)
    np.testing.assert_array_equal(c[1], 0.0)
    # angle 0: rho = x; every column holds one pixel of the line
    np.testing.assert_array_equal(s[0, 0, 0], [5.0, 5.0, 5.0])
    np.testing.assert_array_equal(s[1, 0, 0], [-4.0, -4.0, -4.0])
    with pytest.raises(TypeError, match="images must have dtype float32"):
        K.line_sums(img.astype(np.float64), mask, ang, (0, 0), (1, 1), 0.0, 1.0, 3)
    with pytest.raises(ValueError, match="images must be 4-D"):
        K.line_sums(img[0], mask, ang, (0, 0), (1, 1), 0.0, 1.0, 3)
    with pytest.raises(ValueError, match="mask must have shape"):
        K.line_sums(img, mask[:, :2], ang, (0, 0), (1, 1), 0.0, 1.0, 3)
    with pytest.raises(ValueError, match="rho_step_mm must be finite"):
        K.line_sums(img, mask, ang, (0, 0), (1, 1), 0.0, 0.0, 3)
    with pytest.raises(ValueError, match="n_rho must be >= 1"):
        K.line_sums(img, mask, ang, (0, 0), (1, 1), 0.0, 1.0, 0)
