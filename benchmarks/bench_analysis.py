"""Analysis time of a large dynamic study, excluding reading, as a ratio to numpy summing its passes once.

Run ``python benchmarks/bench_analysis.py [--size 512 512 600] [--passes 8] [--quick]``.

The passes are made first and held in memory (reading is not timed): a phantom case is rendered
at the ``medium`` shape (128 x 128, 2 mm) and resampled (``scipy.ndimage.zoom``, linear) to
``--size`` with fresh noise added, because the analytic renderer needs minutes per full-size pass
(``--render native`` renders at full size instead: slow). The series is
``PhaseSeries.from_arrays`` and goes through :func:`leakloc.pipeline.analyze`, the call behind
``leakloc analyze``. In the same run: ``sum(v.sum() for v in vols)``, the floor. Peak memory of
the analysis: tracemalloc peak (numpy allocations during ``analyze``) and the process's resident
high-water mark over the analysis (Linux: VmHWM after resetting it via /proc/self/clear_refs;
elsewhere ru_maxrss minus the resident size before). Writes ``benchmarks/out/bench_analysis.json``
and ``.md`` (whole files).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
PASS_STARTS_8 = (0.0, 10.0, 18.0, 26.0, 34.0, 45.0, 60.0, 120.0)


def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, nargs=3, metavar=("X", "Y", "Z"), default=[512, 512, 600],
                    help="study size in ITK order (x y z); default 512 512 600")
    ap.add_argument("--passes", type=int, default=8, help="number of passes (default 8, first pre-contrast)")
    ap.add_argument("--quick", action="store_true", help="256 x 256 x 200")
    ap.add_argument("--case", default="fig10e_t7t8", help="phantom case (default fig10e_t7t8)")
    ap.add_argument("--coverage", nargs=2, default=["C4", "L4"], metavar=("TOP", "BOTTOM"),
                    help="vertebrae covered (default C4 L4)")
    ap.add_argument("--render", choices=["zoom", "native"], default="zoom",
                    help="zoom: render medium and resample (default); native: render at full size (slow)")
    ap.add_argument("--repeats", type=int, default=1, help="timed analyses (default 1; best is reported)")
    ap.add_argument("--out", type=Path, default=OUT, help="output directory (default benchmarks/out)")
    args = ap.parse_args(argv)
    if args.quick:
        args.size = [256, 256, 200]
    return args


def pass_starts(n: int):
    """``n`` pass start times (s): the 8-pass protocol, truncated or extended every 15 s."""
    st = list(PASS_STARTS_8[:n])
    while len(st) < n:
        st.insert(-1, st[-2] + 15.0)
        st[-1] = max(st[-1], st[-2] + 30.0)
    return tuple(st)


def _rss_mb():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _hwm_mb():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def make_passes(args):
    """Render the study and bring it to ``args.size``. Returns (vols, series, study, note)."""
    from scipy import ndimage

    from leakloc.io import PhaseSeries
    from leakloc.phantoms import generate
    nx, ny, nz = args.size
    starts = pass_starts(args.passes)
    if args.render == "native":
        study = generate(case=args.case, shape="full", size_xy=nx, coverage=tuple(args.coverage),
                         pass_starts_s=starts)
        vols = [study.phase(i) for i in range(study.n_phases)]
        note = f"rendered natively at {study.grid.size} (x y z)"
        grid, st = study.grid, study.slice_times_s
    else:
        study = generate(case=args.case, shape="medium", coverage=tuple(args.coverage),
                         pass_starts_s=starts)
        g0 = study.grid
        sx0, sy0, sz0 = g0.size
        fac = (nz / sz0, ny / sy0, nx / sx0)
        noise = float(study.params.noise_hu)
        vols = []
        for i in range(study.n_phases):
            v = study.phase(i)
            z = ndimage.zoom(v, fac, order=1, grid_mode=False, mode="nearest").astype(np.float32)
            if z.shape != (nz, ny, nx):
                raise RuntimeError(f"zoom gave {z.shape}, wanted {(nz, ny, nx)}")
            rng = np.random.default_rng([1234, i])
            for k in range(nz):      # slice by slice: no full-size float64 temporary
                z[k] += rng.standard_normal((ny, nx), dtype=np.float32) * np.float32(noise)
            vols.append(z)
            del v
        sp = tuple(float(s) * (n0 - 1) / (n - 1)
                   for s, n0, n in zip(g0.spacing_mm, g0.size, (nx, ny, nz)))
        grid = dataclasses.replace(g0, size=(nx, ny, nz), spacing_mm=sp)
        k_old = np.arange(sz0)
        k_new = np.linspace(0, sz0 - 1, nz)
        st = np.stack([np.interp(k_new, k_old, row) for row in study.slice_times_s])
        note = (f"rendered at {g0.size} (medium, {g0.spacing_mm} mm) and resampled linearly to "
                f"{grid.size} ({tuple(round(s, 3) for s in sp)} mm), noise {noise:.0f} HU added after")
    series = PhaseSeries.from_arrays(vols, grid, study.times_s, slice_times_s=st,
                                     patient_position=study.patient_position,
                                     table_directions=study.table_directions)
    return vols, series, study, note


def warm_up():
    """Load (or compile) the Numba kernels on a small study so the timed run measures analysis."""
    from leakloc.phantoms import generate
    from leakloc.pipeline import analyze
    s = generate(case="fig10e_t7t8")
    try:
        analyze(s.series(), top_vertebra=s.top_vertebra)
    except Exception as exc:  # noqa: BLE001 - warming up only
        return f"{type(exc).__name__}: {exc}"
    return None


def main(argv=None):
    args = parse(argv)
    import numba

    from leakloc.pipeline import analyze
    nx, ny, nz = args.size
    print(f"# bench_analysis: {nx} x {ny} x {nz} (x y z), {args.passes} passes, "
          f"{numba.get_num_threads()} Numba threads", flush=True)
    t0 = time.perf_counter()
    warm = warm_up()
    t_warm = time.perf_counter() - t0
    t0 = time.perf_counter()
    vols, series, study, note = make_passes(args)
    t_render = time.perf_counter() - t0
    gb = sum(v.nbytes for v in vols) / 1e9
    print(f"warm-up {t_warm:.1f} s{' (' + warm + ')' if warm else ''}; passes made in {t_render:.0f} s "
          f"({gb:.2f} GB in memory): {note}", flush=True)

    sums = []
    for _ in range(3):
        t0 = time.perf_counter()
        total = sum(float(v.sum()) for v in vols)
        sums.append(time.perf_counter() - t0)
    t_sum = min(sums)

    res, err, times, stages = None, None, [], None
    rss_before = _rss_mb()
    hwm_reset = _reset_hwm()
    tracemalloc.start()
    for _ in range(max(1, args.repeats)):
        t0 = time.perf_counter()
        try:
            res = analyze(series, top_vertebra=study.top_vertebra)
        except Exception as exc:  # noqa: BLE001 - report it, with the time it took
            err = f"{type(exc).__name__}: {exc}".splitlines()[0]
        times.append(time.perf_counter() - t0)
        if res is not None and (stages is None or times[-1] == min(times)):
            stages = dict(res.timings_s)
    traced_peak_mb = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    hwm = _hwm_mb()
    t_an = min(times)
    truth = study.truth["defects"]
    found = [f"{d.level} {d.side} {d.kind} ({d.confidence:.2f})" for d in res.defects] if res else []
    out = {
        "size_xyz": [nx, ny, nz], "passes": len(vols), "case": args.case, "coverage": args.coverage,
        "data": note, "passes_gb": gb, "numba_threads": numba.get_num_threads(),
        "render_s": t_render, "warm_up_s": t_warm, "warm_up_error": warm,
        "sum_s": t_sum, "sum_all_s": sums, "sum_value": total,
        "analysis_s": t_an, "analysis_all_s": times, "ratio_to_sum": t_an / t_sum,
        "stages_s": stages, "error": err,
        "traced_peak_mb": traced_peak_mb,
        "rss_before_mb": rss_before, "rss_high_water_mb": hwm, "hwm_was_reset": hwm_reset,
        "analysis_extra_rss_mb": (hwm - rss_before) if (hwm is not None and rss_before is not None) else None,
        "truth": [f"{d['level']} {d['side']} {d['kind']}" for d in truth], "found": found,
        "python": platform.python_version(), "numpy": np.__version__, "numba": numba.__version__,
        "cpu_count": os.cpu_count(), "machine": platform.machine(),
    }
    md = [f"# bench_analysis: {nx} x {ny} x {nz} (x y z), {len(vols)} passes ({gb:.2f} GB of float32)", "",
          f"Data: case `{args.case}`, {note}. Reading excluded (passes in memory).", "",
          "| what | s | x sum |", "|---|---:|---:|",
          f"| `sum(v.sum() for v in vols)` (floor, best of 3) | {t_sum:.3f} | 1.0 |",
          f"| `leakloc.pipeline.analyze` (best of {len(times)}) | {t_an:.3f} | {t_an / t_sum:.2f} |"]
    for k, v in (stages or {}).items():
        if k != "total":
            md.append(f"| stage `{k}` | {v:.3f} | {v / t_sum:.2f} |")
    md += ["", f"- goal (issue 3): at most 3x the sum -> {'met' if err is None and t_an / t_sum <= 3 else 'NOT met'}",
           f"- peak memory of the analysis: tracemalloc {traced_peak_mb:.0f} MB (numpy allocations during "
           f"`analyze`); resident high-water during the analysis {hwm:.0f} MB"
           f"{' (reset before)' if hwm_reset else ' (process lifetime)'} vs {rss_before:.0f} MB resident "
           f"before (passes {gb * 1e3 / 1.048576:.0f} MiB): +{hwm - rss_before:.0f} MB",
           f"- truth: {', '.join(out['truth']) or 'no leak'}; found: {', '.join(found) or 'no leak'}"
           + (f"; ERROR {err}" if err else ""),
           f"- {numba.get_num_threads()} Numba threads, {os.cpu_count()} CPUs; passes made in {t_render:.0f} s"]
    text = "\n".join(md) + "\n"
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, body in (("bench_analysis.json", json.dumps(out, indent=2) + "\n"), ("bench_analysis.md", text)):
        p = args.out / name
        tmp = p.with_name(p.name + f".tmp{os.getpid()}")
        tmp.write_text(body)
        os.replace(tmp, p)
    print(f"wrote {args.out / 'bench_analysis.json'} and {args.out / 'bench_analysis.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
