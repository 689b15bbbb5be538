"""Benchmark of the statistics kernel: stream_phase against numpy, SimpleITK and volume.sum().

Run ``python benchmarks/bench_stats.py [--size X Y Z] [--quick] [--repeats N] [--cold]``.
Writes ``benchmarks/out/bench_stats.json`` and ``benchmarks/out/bench_stats.md`` (whole files,
via a temporary file and ``os.replace``) and prints the markdown table. See benchmarks/README.md.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent / "out"


def parse():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, nargs=3, metavar=("X", "Y", "Z"), default=[512, 512, 600],
                    help="volume size in ITK order (x y z); default 512 512 600")
    ap.add_argument("--quick", action="store_true", help="256 x 256 x 200, for a short run")
    ap.add_argument("--repeats", type=int, default=None, help="timed repeats (default 5 quick, 3 full)")
    ap.add_argument("--levels", type=int, default=25, help="vertebral levels along z (default 25)")
    ap.add_argument("--cold", action="store_true",
                    help="compile into an empty Numba cache to time a true first compile")
    ap.add_argument("--out", type=Path, default=OUT, help="output directory (default benchmarks/out)")
    return ap.parse_args()


def timeit(fn, repeats):
    """Run ``fn`` ``repeats`` times; return (min, median) seconds."""
    t = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        t.append(time.perf_counter() - t0)
    return float(np.min(t)), float(np.median(t))


def make_study(shape, n_levels, seed=0):
    """A synthetic phase: noisy soft tissue, bone, a canal with sac/epidural/paraspinal shells."""
    from leakloc.kernels import label_regions
    nz, ny, nx = shape
    rng = np.random.default_rng(seed)
    baseline = rng.standard_normal(shape, dtype=np.float32)
    baseline *= 30.0
    baseline += 40.0
    yy, xx = np.mgrid[0:ny, 0:nx]
    rr = np.hypot(yy - ny / 2, xx - nx / 2).astype(np.float32)
    comp2d = np.select([rr < 11, rr < 15, rr < 45], [1, 2, 3], 0).astype(np.uint8)
    ang = np.arctan2(yy - ny / 2, xx - nx / 2)
    sect2d = (((ang + np.pi / 4) // (np.pi / 2)) % 4).astype(np.uint8)
    compartments = np.ascontiguousarray(np.broadcast_to(comp2d, shape))
    sectors = np.ascontiguousarray(np.broadcast_to(sect2d, shape))
    bone = (rr >= 15) & (rr < 25)
    baseline[:, bone] += 800.0
    slice_level = (np.arange(nz) * n_levels // nz).astype(np.int16)
    volume = baseline + rng.standard_normal(shape, dtype=np.float32) * 15.0
    volume[:, comp2d == 1] += 350.0                             # intrathecal contrast
    volume[: nz // 3, comp2d == 2] += 120.0                     # an epidural collection
    return volume, baseline, compartments, sectors, slice_level


def numpy_region_stats(enh, region, n_regions, threshold_hu, percentile=95.0, hist_max_hu=2000.0,
                       n_bins=400):
    """What ``region_stats`` computes, the plain numpy way (np.bincount, np.maximum.at).

    Returns
    -------
    count, mean, max, n_above, pct : ndarray, shape (n_regions,); pct from the same histogram
    (``n_bins`` bins over [0, hist_max_hu)) as the kernel
    """
    from leakloc.kernels import percentile_from_hist
    m = region >= 0
    r = region[m]
    v = enh[m]
    count = np.bincount(r, minlength=n_regions)
    total = np.bincount(r, weights=v, minlength=n_regions)
    n_above = np.bincount(r[v >= threshold_hu], minlength=n_regions)
    vmax = np.full(n_regions, -np.inf, np.float32)
    np.maximum.at(vmax, r, v)
    b = np.clip(np.floor(v.astype(np.float64) * (n_bins / hist_max_hu)), 0, n_bins - 1).astype(np.int64)
    hist = np.bincount(r.astype(np.int64) * n_bins + b, minlength=n_regions * n_bins)
    pct = percentile_from_hist(hist.reshape(n_regions, n_bins), percentile, hist_max_hu)
    # (as the kernel: never above the region's largest value, which the bin's width can pass)
    pct = np.where(count > 0, np.minimum(pct, vmax), np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        return count, total / count, vmax, n_above, pct


def numpy_stream(volume, baseline, region, n_regions, prev, peak, arrival, t_prev, t_cur, thr,
                 n_bins=400, hist_max_hu=2000.0, percentile=95.0):
    """stream_phase the plain numpy way (whole-array temporaries, np.bincount)."""
    e = volume - baseline
    np.fmax(peak, e, out=peak)
    cross = np.isnan(arrival) & (e >= thr) & (prev < thr)
    z, y, x = np.nonzero(cross)
    pv, ev = prev[z, y, x].astype(np.float64), e[z, y, x].astype(np.float64)
    arrival[z, y, x] = t_prev[z] + (thr - pv) / (ev - pv) * (t_cur[z] - t_prev[z])
    prev[...] = e
    return numpy_region_stats(e, region, n_regions, thr, percentile, hist_max_hu, n_bins)


def write_whole(path: Path, text: str):
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def main():
    args = parse()
    if args.cold:
        os.environ["NUMBA_CACHE_DIR"] = tempfile.mkdtemp(prefix="leakloc-numba-")
    import numba
    import SimpleITK as sitk

    from leakloc import kernels as K
    from leakloc.kernels import stats as kstats

    size = [256, 256, 200] if args.quick else args.size
    repeats = args.repeats or (5 if args.quick else 3)
    shape = (size[2], size[1], size[0])
    n_vox = int(np.prod(shape))
    thr = 70.0
    print(f"# bench_stats: {size[0]} x {size[1]} x {size[2]} (x y z) = {n_vox / 1e6:.1f} Mvoxel, "
          f"{numba.get_num_threads()} Numba threads, {repeats} repeats", flush=True)

    t0 = time.perf_counter()
    volume, baseline, comp, sect, slice_level = make_study(shape, args.levels)
    print(f"data made in {time.perf_counter() - t0:.1f} s", flush=True)
    n_regions = args.levels * 3 * 4
    t_prev = np.linspace(10.0, 18.0, shape[0])
    t_cur = t_prev[::-1] + 10.0
    res = {}

    # label_regions (first call = compile or cache load) vs the numpy expression
    t0 = time.perf_counter()
    region = K.label_regions(comp, sect, slice_level, args.levels)
    res["label_regions_first_call_s"] = time.perf_counter() - t0
    res["label_regions_s"] = timeit(lambda: K.label_regions(comp, sect, slice_level, args.levels), repeats)

    def numpy_labels():
        lev = slice_level.astype(np.int64)[:, None, None]
        reg = (lev * 3 + comp.astype(np.int64) - 1) * 4 + sect
        return np.where((comp == 0) | (lev < 0), -1, reg).astype(np.int32)
    res["label_regions_numpy_s"] = timeit(numpy_labels, repeats)
    assert np.array_equal(numpy_labels(), region)
    del comp, sect
    res["region_fraction"] = float(np.mean(region >= 0))

    # floor: numpy summing the phase once
    res["volume_sum_s"] = timeit(lambda: volume.sum(), repeats)

    # stream_phase: first call (compile or cache load), then warm, parallel and serial
    prev = np.empty(shape, np.float32)
    peak = np.empty(shape, np.float32)
    arrival = np.empty(shape, np.float32)
    t0 = time.perf_counter()
    K.stream_phase(volume, baseline, region, n_regions, prev, peak, arrival, None, t_prev, thr,
                   first=True)
    res["stream_first_call_first_true_s"] = time.perf_counter() - t0
    hits = sum(kstats._stream_parallel.stats.cache_hits.values())
    res["stream_first_call_from_cache"] = bool(hits)

    def stream(parallel=True):
        return K.stream_phase(volume, baseline, region, n_regions, prev, peak, arrival, t_prev,
                              t_cur, thr, parallel=parallel)
    t0 = time.perf_counter()
    stats = stream()
    res["stream_first_call_s"] = time.perf_counter() - t0
    res["stream_phase_s"] = timeit(stream, repeats)
    t0 = time.perf_counter()
    stream(parallel=False)
    res["stream_serial_first_call_s"] = time.perf_counter() - t0
    res["stream_phase_serial_s"] = timeit(lambda: stream(False), repeats)

    enh = volume - baseline
    K.region_stats(enh, region, n_regions, thr)
    res["region_stats_s"] = timeit(lambda: K.region_stats(enh, region, n_regions, thr), repeats)

    # (a) numpy, the plain way, same statistics and temporal updates
    out = numpy_stream(volume, baseline, region, n_regions, prev, peak, arrival, t_prev, t_cur, thr)
    assert np.array_equal(out[0], stats.count) and np.array_equal(out[3], stats.n_above)
    assert np.allclose(out[4], stats.pct, equal_nan=True)
    res["numpy_stream_s"] = timeit(lambda: numpy_stream(volume, baseline, region, n_regions, prev,
                                                        peak, arrival, t_prev, t_cur, thr), repeats)

    # (b) SimpleITK LabelStatisticsImageFilter: count, mean, max on the same labels
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(numba.get_num_threads())
    labels = region + 1                                      # int32, 0 = background

    def sitk_stats():
        img = sitk.GetImageFromArray(volume - baseline)
        lab = sitk.GetImageFromArray(labels)
        f = sitk.LabelStatisticsImageFilter()
        f.SetUseHistograms(False)
        f.Execute(img, lab)
        return f
    f = sitk_stats()
    lab_ids = [i for i in f.GetLabels() if i > 0]
    got = np.array([f.GetCount(i) for i in lab_ids])
    assert np.array_equal(got, stats.count[np.array(lab_ids) - 1])
    res["sitk_label_stats_s"] = timeit(sitk_stats, repeats)
    img, lab = sitk.GetImageFromArray(enh), sitk.GetImageFromArray(labels)

    def sitk_execute_only():
        f = sitk.LabelStatisticsImageFilter()
        f.SetUseHistograms(False)
        f.Execute(img, lab)
    res["sitk_execute_only_s"] = timeit(sitk_execute_only, repeats)

    floor = res["volume_sum_s"][0]
    gbytes = n_vox * 4 * 7 / 1e9       # 3 inputs read + prev/peak read+write (+ sparse arrival)
    rows = [
        ("volume.sum() (floor)", res["volume_sum_s"]),
        ("stream_phase, parallel", res["stream_phase_s"]),
        ("stream_phase, serial", res["stream_phase_serial_s"]),
        ("region_stats (stats only, enhancement given)", res["region_stats_s"]),
        ("(a) numpy plain (bincount), same work", res["numpy_stream_s"]),
        ("(b) SimpleITK LabelStatistics incl. e and array->image", res["sitk_label_stats_s"]),
        ("(b') SimpleITK LabelStatistics Execute only", res["sitk_execute_only_s"]),
        ("label_regions (Numba)", res["label_regions_s"]),
        ("label_regions, numpy expression", res["label_regions_numpy_s"]),
    ]
    res.update(size_xyz=size, n_regions=n_regions, repeats=repeats,
               threads=numba.get_num_threads(), numba=numba.__version__, numpy=np.__version__,
               machine=platform.machine(), cpu_count=os.cpu_count(),
               stream_gb_per_s=gbytes / res["stream_phase_s"][0],
               ratios_to_volume_sum={name: t[0] / floor for name, t in rows})
    md = [f"# bench_stats: {size[0]} x {size[1]} x {size[2]} (x y z), {n_regions} regions "
          f"({100 * res['region_fraction']:.1f} % of voxels labelled), "
          f"{res['threads']} threads, best of {repeats}", "",
          "| what | best s | median s | x volume.sum() |", "|---|---:|---:|---:|"]
    md += [f"| {name} | {t[0]:.4f} | {t[1]:.4f} | {t[0] / floor:.2f} |" for name, t in rows]
    md += ["", f"- stream_phase first call (first=True, {'loaded from cache' if res['stream_first_call_from_cache'] else 'compiled'}): "
           f"{res['stream_first_call_first_true_s']:.2f} s; first call first=False: {res['stream_first_call_s']:.2f} s; "
           f"serial variant first call: {res['stream_serial_first_call_s']:.2f} s",
           f"- label_regions first call: {res['label_regions_first_call_s']:.2f} s",
           f"- stream_phase effective bandwidth: {res['stream_gb_per_s']:.1f} GB/s "
           f"(counting 28 bytes per voxel: volume, baseline, region read; prev_enh and peak read + written)",
           f"- speed-up over numpy plain: {res['numpy_stream_s'][0] / res['stream_phase_s'][0]:.1f}x; "
           f"over SimpleITK (incl. conversion): {res['sitk_label_stats_s'][0] / res['stream_phase_s'][0]:.1f}x"]
    text = "\n".join(md) + "\n"
    print(text)
    write_whole(args.out / "bench_stats.json", json.dumps(res, indent=2) + "\n")
    write_whole(args.out / "bench_stats.md", text)
    print(f"wrote {args.out / 'bench_stats.json'} and {args.out / 'bench_stats.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
