"""Accuracy, speed and memory of ``leakloc analyze`` over a sweep of seeded random phantoms.

Run ``python benchmarks/sweep.py [--n 100] [--seed0 10000] [--quick] [--workers 2]
[--scheduler ADDRESS] [--shape small] [--cases] [--fit-calibration] [--out benchmarks/out/sweep]``.

Every study is rendered into memory (the phantom renderer is not what we time), wrapped with
``PhaseSeries.from_arrays`` and analysed by :func:`leakloc.pipeline.analyze`, the call behind
``leakloc analyze``. Its top call is scored against the phantom's truth; everything is written to
``results.json``, ``results.md`` and three plots (whole files, via a temporary file and
``os.replace``). One study failing (any exception, a dead worker) is recorded, never fatal.
See benchmarks/README.md for the definitions of every column.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import math
import os
import platform
import re
import subprocess
import sys
import time
import traceback
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
OUT = HERE / "out" / "sweep"

#: a call is at the "exact" level when within half a level of the truth, "within one" within 1
EXACT_LEVELS = 0.5
WITHIN_ONE_LEVELS = 1.0
#: reliability-diagram bins over [0, 1]
N_CAL_BINS = 10
#: the whole spine C1..S1: coverage other than this is tagged "partial coverage"
WHOLE_SPINE = ("C1", "S1")

# ============================================================================================
# Scoring (pure functions on plain dicts; tested in tests/test_benchmarks.py)
# ============================================================================================


def _p(params) -> dict:
    """PhantomParams (dataclass) or its dict (``truth['params']``) as a dict."""
    if dataclasses.is_dataclass(params):
        return dataclasses.asdict(params)
    return dict(params)


def regime_tags(params, truth_defects) -> list:
    """The regimes a study belongs to.

    Parameters
    ----------
    params : PhantomParams or dict (``truth['params']``)
    truth_defects : list of dict, ``truth['defects']`` (earliest onset first)

    Returns
    -------
    list of str. Always ``'all'`` and ``'leak'`` or ``'control'``. For leaks, of the primary
    (earliest-onset) defect: ``'slow'`` or ``'high-flow'``, ``'kind: <kind>'``, ``'side: <side>'``;
    ``'several defects'``, ``'pseudomeningocele'``. Confounders: ``'calcified disc'``,
    ``'osteophyte'``, ``'diverticulum'``, ``'sealed collection'``, ``'motion'``,
    ``'no pre-contrast'``, ``'scoliosis'``, ``'streaks'``, ``'partial coverage'``; and
    ``'position: <DICOM PatientPosition>'``.
    """
    p = _p(params)
    tags = ["all"]
    if truth_defects:
        d0 = truth_defects[0]
        tags.append("leak")
        tags.append("high-flow" if d0.get("flow") == "high" else "slow")
        tags.append(f"kind: {d0['kind']}")
        tags.append(f"side: {d0['side']}")
        if len(truth_defects) > 1:
            tags.append("several defects")
    else:
        tags.append("control")
    spec_defects = [_p(d) if dataclasses.is_dataclass(d) else dict(d) for d in p.get("defects") or []]
    if any(d.get("pseudomeningocele") for d in spec_defects):
        tags.append("pseudomeningocele")
    if p.get("calcified_discs"):
        tags.append("calcified disc")
    if p.get("osteophytes"):
        tags.append("osteophyte")
    if p.get("diverticula"):
        tags.append("diverticulum")
    if p.get("sealed_collection"):
        tags.append("sealed collection")
    if (p.get("motion_mm") or 0) > 0 or (p.get("motion_deg") or 0) > 0:
        tags.append("motion")
    if p.get("pre_contrast") is False:
        tags.append("no pre-contrast")
    if (p.get("scoliosis_mm") or 0) != 0:
        tags.append("scoliosis")
    if p.get("streaks"):
        tags.append("streaks")
    cov = p.get("coverage")
    if cov is not None and tuple(cov) != WHOLE_SPINE:
        tags.append("partial coverage")
    if p.get("patient_position"):
        tags.append(f"position: {p['patient_position']}")
    return tags


def _coord(level_name):
    from leakloc.levels import coord_of
    return coord_of(level_name)


def score_study(truth_defects, calls, static=None, error=None) -> dict:
    """Score one study's calls against its truth.

    Parameters
    ----------
    truth_defects : list of dict with ``level_coord``, ``side``, ``kind`` (earliest onset first)
    calls : list of dict with ``level_coord``, ``side``, ``kind`` (ranked, top call first)
    static : (level name, side) or None; the static last-pass reading
    error : str or None; the analysis failed (every metric is then wrong)

    Returns
    -------
    dict. For leak studies (``leak`` True): ``detected``, ``exact``, ``within_one``, ``side``,
    ``kind`` (of the top call against the primary, earliest-onset, defect; a miss or an error is
    wrong), ``level_error`` (levels, or None), ``truth_found`` (truth defects with a call within one
    level), ``false_calls`` (calls farther than one level from every truth defect), the static
    reading's ``static_exact``, ``static_within_one``, ``static_side``. For controls:
    ``no_call`` (specificity), ``false_calls``, ``static_no_call``. Both: ``correct``, the
    calibration target: the top call is at the exact level on the right side (controls: never).
    Metrics that do not apply are None.
    """
    leak = bool(truth_defects)
    calls = [] if error else list(calls)
    top = calls[0] if calls else None
    out = dict(leak=leak, error=error, n_calls=len(calls), detected=None, exact=None,
               within_one=None, side=None, kind=None, level_error=None, no_call=None,
               truth_found=0, false_calls=0, static_exact=None, static_within_one=None,
               static_side=None, static_no_call=None, correct=False)
    tc = [float(d["level_coord"]) for d in truth_defects]
    out["truth_found"] = sum(any(abs(float(c["level_coord"]) - t) <= WITHIN_ONE_LEVELS for c in calls)
                             for t in tc)
    out["false_calls"] = sum(all(abs(float(c["level_coord"]) - t) > WITHIN_ONE_LEVELS for t in tc)
                             for c in calls)
    if leak:
        d0 = truth_defects[0]
        out["detected"] = top is not None
        if top is not None:
            err = abs(float(top["level_coord"]) - float(d0["level_coord"]))
            out["level_error"] = err
            out["exact"] = err <= EXACT_LEVELS
            out["within_one"] = err <= WITHIN_ONE_LEVELS
            out["side"] = str(top["side"]) == str(d0["side"])
            out["kind"] = str(top["kind"]) == str(d0["kind"])
        else:
            out["exact"] = out["within_one"] = out["side"] = out["kind"] = False
        out["correct"] = bool(out["exact"] and out["side"])
        if error:
            out["static_exact"] = out["static_within_one"] = out["static_side"] = False
        elif static is None:
            out["static_exact"] = out["static_within_one"] = out["static_side"] = False
        else:
            serr = abs(_coord(static[0]) - float(d0["level_coord"]))
            out["static_exact"] = serr <= EXACT_LEVELS
            out["static_within_one"] = serr <= WITHIN_ONE_LEVELS
            out["static_side"] = str(static[1]) == str(d0["side"])
    else:
        out["no_call"] = (error is None) and top is None
        out["static_no_call"] = (error is None) and static is None
    return out


METRICS = [  # (key in score_study, column title, applies to)
    ("exact", "exact", "leak"),
    ("within_one", "within one", "leak"),
    ("side", "side", "leak"),
    ("kind", "kind", "leak"),
    ("detected", "sensitivity", "leak"),
    ("no_call", "specificity", "control"),
    ("static_exact", "static exact", "leak"),
    ("static_within_one", "static within one", "leak"),
    ("static_side", "static side", "leak"),
    ("static_no_call", "static specificity", "control"),
]


def summarize(scores) -> dict:
    """Fractions over a group of :func:`score_study` results.

    Returns
    -------
    dict: ``n``, ``n_leak``, ``n_control``, ``errors``, and for every metric of :data:`METRICS`
    ``{"k": right, "n": applicable, "frac": k / n or None}``.
    """
    scores = list(scores)
    out = {"n": len(scores), "n_leak": sum(s["leak"] for s in scores),
           "n_control": sum(not s["leak"] for s in scores),
           "errors": sum(bool(s.get("error")) for s in scores)}
    for key, _, _ in METRICS:
        vals = [bool(s[key]) for s in scores if s.get(key) is not None]
        k = sum(vals)
        out[key] = {"k": k, "n": len(vals), "frac": (k / len(vals)) if vals else None}
    return out


def summarize_by_regime(records) -> dict:
    """``{tag: summarize(...)}`` over records with ``tags`` and ``score``; ``'all'`` first."""
    tags = []
    for r in records:
        for t in r["tags"]:
            if t not in tags:
                tags.append(t)
    order = {"all": 0, "leak": 1, "control": 2, "slow": 3, "high-flow": 4}
    tags.sort(key=lambda t: (order.get(t, 10), t.startswith("position"), t))
    return {t: summarize(r["score"] for r in records if t in r["tags"]) for t in tags}


def calibration_bins(confidence, correct, n_bins: int = N_CAL_BINS) -> list:
    """Reliability diagram: calls binned by confidence.

    Parameters
    ----------
    confidence : sequence of float in [0, 1]
    correct : sequence of bool, same length
    n_bins : int; bin i holds confidence in [i / n_bins, (i + 1) / n_bins), the last bin includes 1

    Returns
    -------
    list of dict per bin: ``lo``, ``hi``, ``n``, ``k`` (correct), ``mean_confidence`` and
    ``frac_correct`` (None when empty)
    """
    c = np.asarray(confidence, dtype=float)
    y = np.asarray(correct, dtype=bool)
    if c.shape != y.shape:
        raise ValueError("confidence and correct differ in length")
    idx = np.clip(np.floor(c * n_bins).astype(int), 0, n_bins - 1) if c.size else np.zeros(0, int)
    out = []
    for i in range(n_bins):
        m = idx == i
        n = int(m.sum())
        out.append({"lo": i / n_bins, "hi": (i + 1) / n_bins, "n": n, "k": int(y[m].sum()),
                    "mean_confidence": float(c[m].mean()) if n else None,
                    "frac_correct": float(y[m].mean()) if n else None})
    return out


def expected_calibration_error(bins) -> float | None:
    """Count-weighted mean |mean confidence - fraction correct| over non-empty bins."""
    n = sum(b["n"] for b in bins)
    if n == 0:
        return None
    return sum(b["n"] * abs(b["mean_confidence"] - b["frac_correct"]) for b in bins if b["n"]) / n


def _group(record) -> str:
    """The calibration group of a record's top call. Records made before the dependent_tear
    group (calls without 'dependent') count a tear as on the dependent side when it is on the
    side contrast layers on for the patient's position (ventral prone, dorsal supine; neither
    lying on a side, nor without a recorded position)."""
    from leakloc.anatomy import dependent_side
    from leakloc.detect import calibration_group
    c = record["calls"][0]
    if "dependent" in c or c.get("kind") != "dural_tear" or "side" not in c:
        return c.get("group", "unknown")
    position = (record.get("truth") or {}).get("patient_position") or ""
    dependent = bool(position) and c["side"] == dependent_side(position)
    return calibration_group(c["kind"], c["side"], dependent)


def _moved(record) -> bool:
    """Whether the analysis registered passes of the study (its 'patient moved' warning)."""
    return any(str(w).startswith("patient moved") for w in record.get("warnings") or [])


def _top_calls(records) -> list:
    """(confidence, correct, score, ambiguity, group, moved) of the top call of every random
    study of a sweep's records (errors, lost studies and the case library left out)."""
    return [(r["calls"][0]["confidence"], r["score"]["correct"], r["calls"][0]["score"],
             r["calls"][0].get("ambiguity", 0.0), _group(r), _moved(r))
            for r in records if r["score"].get("leak") is not None and r.get("calls")
            and not r.get("error") and not r.get("case")]


def _cal_literal(fit) -> str:
    """``leakloc.detect.CALIBRATION`` as Python source, from a :func:`fit_platt` dict."""
    b = ", ".join(f'"{g}": {v:.3f}' for g, v in sorted(fit["b"].items()))
    return (f'{{"a": {fit["a"]:.3f}, "c": {fit["c"]:.3f}, "moved": {fit.get("moved", 0.0):.3f}, '
            f'"b": {{{b}}}}}')


def fit_platt(score, correct, l2: float = 1e-4, iters: int = 100, ambiguity=None, groups=None,
              l2_group: float = 0.05, hold=None, moved=None):
    """Logistic (Platt) fit: P(correct) = 1 / (1 + exp(-(a * score + b [+ c * ambiguity]
    [+ moved]))).

    Newton's method on the mean log-likelihood with a small ridge ``l2`` on the slopes (keeps
    the fit finite when the data are separable).

    Parameters
    ----------
    score : (N,) raw scores; correct : (N,) 0/1
    ambiguity : (N,) or None, how close the next-best call came (``evidence['ambiguity']``)
    groups : (N,) of str or None; with them ``b`` is an offset per group (the common offset
        plus a deviation per group, the deviations held to it by a ridge ``l2_group``: a group
        with few calls stays near the common offset). Both ridges act on the *mean*
        log-likelihood: how hard a group is held depends on its share of the calls, not on
        their number (a larger sweep with the same shares holds it as hard)
    hold : (a, c) or None
        With ``groups``: keep the slopes at these values and fit the offsets only (a refit of
        every constant on a few hundred calls can turn the score's slope negative)
    moved : (N,) of bool or None
        With ``groups``: the patient moved between passes; fitted as one more offset
        (``"moved"`` in the result), added to the group's for those calls

    Returns
    -------
    (a, b), or (a, b, c) with ``ambiguity``; with ``groups`` the dict
    ``{"a": a, "c": c, "moved": m, "b": {group: b}}`` of ``leakloc.detect.CALIBRATION`` (every
    group of ``leakloc.detect.calibration_group``; one without calls gets the common offset;
    ``m`` is 0 without ``moved``)
    """
    x = np.asarray(score, dtype=float)
    y = np.asarray(correct, dtype=float)
    if x.size == 0:
        raise ValueError("no calls to fit")
    amb = np.asarray(ambiguity, dtype=float) if ambiguity is not None else None
    names = sorted(set(groups)) if groups is not None else []
    if hold is not None and groups is None:
        raise ValueError("hold needs groups: it fits the offsets per group")
    if hold is None:
        cols = [x] + ([amb] if amb is not None else [])
        fixed = np.zeros_like(x)
    else:
        cols = []
        fixed = float(hold[0]) * x + (float(hold[1]) * amb if amb is not None else 0.0)
    if moved is not None and groups is None:
        raise ValueError("moved needs groups")
    n_slopes = len(cols)
    cols += [np.array([g == n for g in groups], dtype=float) for n in names]
    with_moved = moved is not None
    if with_moved:
        cols.append(np.asarray(moved, dtype=float))
    X = np.stack(cols + [np.ones_like(x)], axis=1)
    k = X.shape[1]
    w = np.zeros(k)
    reg = np.array([l2] * n_slopes + [l2_group] * len(names) + [l2] * with_moved + [0.0])
    for _ in range(iters):
        z = X @ w + fixed
        p = 1.0 / (1.0 + np.exp(-z))
        g = X.T @ (p - y) / x.size + reg * w
        h = (X * (p * (1 - p))[:, None]).T @ X / x.size + np.diag(reg) + 1e-12 * np.eye(k)
        step = np.linalg.solve(h, g)
        w -= step
        if np.max(np.abs(step)) < 1e-10:
            break
    if groups is not None:
        # every group leakloc calls in, those without calls at the common offset
        from leakloc.detect import calibration_group, KINDS, SIDES
        offsets = {calibration_group(k, s, dep): float(w[-1])
                   for k in KINDS for s in SIDES for dep in (False, True)}
        offsets.update({n: float(w[-1] + w[n_slopes + i]) for i, n in enumerate(names)})
        out = {"moved": float(w[-2]) if with_moved else 0.0, "b": offsets}
        if hold is not None:
            return dict(out, a=float(hold[0]), c=float(hold[1]) if amb is not None else 0.0)
        return dict(out, a=float(w[0]), c=float(w[1]) if amb is not None else 0.0)
    if amb is None:
        return float(w[0]), float(w[1])
    return float(w[0]), float(w[2]), float(w[1])


# ============================================================================================
# One study (runs in a dask worker process, or in-process for --quick)
# ============================================================================================


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, np.str_):
        return str(obj)
    return obj


def _maxrss_mb() -> float:
    import resource
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024.0 if sys.platform != "darwin" else kb / 1024.0 / 1024.0


def _rendered(study, job) -> list:
    """The study's passes, rendered, or read back from ``job['render_cache']`` (a folder of
    ``.npy`` files written by an earlier run with the same code; rendering a 1 mm phantom takes
    about a minute, analysing it a few seconds)."""
    cache = job.get("render_cache")
    if not cache:
        return [study.phase(i) for i in range(study.n_phases)]
    name = f"{job.get('shape') or 'default'}_{job.get('case') or job.get('seed')}"
    folder = Path(cache) / name
    files = [folder / f"pass{i:02d}.npy" for i in range(study.n_phases)]
    if all(f.exists() for f in files):
        return [np.load(f) for f in files]
    vols = [study.phase(i) for i in range(study.n_phases)]
    folder.mkdir(parents=True, exist_ok=True)
    for f, v in zip(files, vols):
        tmp = f.with_suffix(".tmp.npy")
        np.save(tmp, v)
        tmp.replace(f)
    return vols


def study_series(study, vols):
    """The phantom ``study`` as an in-memory :class:`leakloc.io.PhaseSeries` of its rendered
    passes ``vols`` (list of ndarray, shape (Z, Y, X), HU), with its times and position."""
    from leakloc.io import PhaseSeries
    return PhaseSeries.from_arrays(vols, study.grid, study.times_s,
                                   slice_times_s=study.slice_times_s,
                                   patient_position=study.patient_position,
                                   table_directions=study.table_directions)


def run_one(job: dict) -> dict:
    """Render, analyse and score one study. Never raises: failures are recorded in ``error``.

    Parameters
    ----------
    job : dict with ``seed`` (int or None), ``case`` (name or None), ``shape``, ``use_labelmap``
        (bool: pass the phantom's vertebra label map as ``levels_map``), ``numba_threads``
        (int or None)

    Returns
    -------
    dict: the record written to results.json
    """
    import tracemalloc
    rec = {"seed": job.get("seed"), "case": job.get("case"), "shape": job.get("shape"),
           "tags": [], "truth": None, "calls": [], "static_reading": None, "error": None,
           "timings_s": {}, "render_s": None, "analysis_s": None, "peak_traced_mb": None,
           "maxrss_mb": None, "pid": os.getpid()}
    t_all = time.perf_counter()
    try:
        if job.get("numba_threads"):
            import numba
            numba.set_num_threads(int(job["numba_threads"]))
        from leakloc.phantoms import generate
        from leakloc.detect import calibration_group_of, on_dependent_side
        from leakloc.pipeline import analyze
        kw = {"shape": job["shape"]} if job.get("shape") else {}
        study = generate(case=job.get("case"), seed=job.get("seed"), **kw)
        truth = study.truth
        rec["truth"] = {k: truth[k] for k in ("leak_detected", "defects", "top_vertebra",
                                              "patient_position", "case", "seed")}
        rec["truth"]["n_phases"] = truth["inputs"]["n_phases"]
        rec["truth"]["grid"] = truth["inputs"]["grid"]
        rec["params"] = truth["params"]
        rec["tags"] = regime_tags(truth["params"], truth["defects"])
        if job.get("case"):
            rec["tags"].append(f"case: {job['case']}")
        t0 = time.perf_counter()
        vols = _rendered(study, job)
        if job.get("render_only"):
            rec["render_s"] = time.perf_counter() - t0
            rec["wall_s"] = time.perf_counter() - t_all
            rec["score"] = {"leak": None, "rendered": True}
            return _jsonable(rec)
        series = study_series(study, vols)
        levels_map = study.labelmap if job.get("use_labelmap") else None
        rec["render_s"] = time.perf_counter() - t0
        tracemalloc.start()
        t0 = time.perf_counter()
        try:
            res = analyze(series, levels_map=levels_map, top_vertebra=study.top_vertebra)
        finally:
            rec["analysis_s"] = time.perf_counter() - t0
            rec["peak_traced_mb"] = tracemalloc.get_traced_memory()[1] / 2**20
            tracemalloc.stop()
        rec["timings_s"] = {k: float(v) for k, v in res.timings_s.items()}
        rec["calls"] = [{"level": d.level, "level_coord": float(d.level_coord), "side": str(d.side),
                         "kind": str(d.kind), "confidence": float(d.confidence),
                         "onset_time_s": float(d.onset_time_s),
                         "score": float(d.evidence.get("score", float("nan"))),
                         "ambiguity": float(d.evidence.get("ambiguity", 0.0)),
                         "dependent": bool(on_dependent_side(d)),
                         "group": calibration_group_of(d)}
                        for d in res.defects]
        sr = getattr(res, "static_reading", None)
        rec["static_reading"] = None if sr is None else [str(sr[0]), str(sr[1])]
        rec["warnings"] = list(getattr(res, "warnings", []))
    except Exception as exc:  # noqa: BLE001 - one study never kills the sweep
        rec["error"] = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
        rec["traceback"] = traceback.format_exc()[-3000:]
    rec["maxrss_mb"] = _maxrss_mb()
    rec["wall_s"] = time.perf_counter() - t_all
    truth_defects = (rec["truth"] or {}).get("defects") or []
    if rec["truth"] is None and rec["error"]:
        rec["score"] = score_study([], [], None, error=rec["error"])
    else:
        rec["score"] = score_study(truth_defects, rec["calls"], rec["static_reading"], rec["error"])
    return _jsonable(rec)


# ============================================================================================
# The statistics stage on one study: region_stats vs SimpleITK vs numpy (bincount)
# ============================================================================================


def sitk_region_stats(enh, region):
    """SimpleITK LabelStatisticsImageFilter (no histograms) on the same arrays (labels = region + 1)."""
    import SimpleITK as sitk
    img = sitk.GetImageFromArray(enh)
    lab = sitk.GetImageFromArray((region + 1).astype(np.int32))
    f = sitk.LabelStatisticsImageFilter()
    f.SetUseHistograms(False)
    f.Execute(img, lab)
    return f


def stats_comparison(seed: int, shape: str, repeats: int = 5) -> dict:
    """Time the statistics stage three ways on one phantom's enhancement and region arrays.

    The enhancement is the last pass minus the first (pre-contrast or earliest) pass; the regions
    are the analysis's own (half-level bin x compartment x sector, :func:`leakloc.kinetics.region_map`
    of the anatomy ``analyze`` found). Falls back to bench_stats' synthetic data when the analysis of
    that study fails. Checks that counts agree before timing.
    """
    sys.path.insert(0, str(HERE))
    import bench_stats
    from leakloc.kernels import region_stats
    out = {"seed": seed, "shape": shape, "repeats": repeats}
    try:
        from leakloc import kinetics as kn
        from leakloc.phantoms import generate
        from leakloc.pipeline import analyze
        study = generate(seed=seed, shape=shape)
        first, last = study.phase(0), study.phase(study.n_phases - 1)
        series = study_series(study, [study.phase(i) for i in range(study.n_phases)])
        try:
            res = analyze(series, top_vertebra=study.top_vertebra)
        except Exception:  # noqa: BLE001 - regions are all we need: anchor the levels by the label map
            res = analyze(series, levels_map=study.labelmap, top_vertebra=study.top_vertebra)
            out["note"] = "levels from the phantom label map (analysis with --top-vertebra failed)"
        anat = res.anatomy
        region, n_regions = kn.region_map(np.ascontiguousarray(anat.compartments),
                                          np.ascontiguousarray(anat.sectors),
                                          kn.slice_bins(anat.level_coord))
        enh = np.subtract(last, first, dtype=np.float32)
        out["data"] = f"phantom seed {seed} ({shape}), last minus first pass, the analysis's regions"
    except Exception as exc:  # noqa: BLE001
        out["fallback_reason"] = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        volume, baseline, comp, sect, slice_level = bench_stats.make_study((120, 128, 128), 25)
        from leakloc.kernels import label_regions
        region = label_regions(comp, sect, slice_level, 25)
        n_regions = 25 * 3 * 4
        enh = volume - baseline
        out["data"] = "bench_stats.make_study synthetic 128 x 128 x 120 (phantom analysis failed)"
    region = np.ascontiguousarray(region, dtype=np.int32)
    enh = np.ascontiguousarray(enh, dtype=np.float32)
    thr = 80.0
    out["shape_zyx"] = list(enh.shape)
    out["n_regions"] = int(n_regions)
    out["labelled_fraction"] = float(np.mean(region >= 0))
    k = region_stats(enh, region, n_regions, thr)
    cnt, mean, vmax, n_above, pct = bench_stats.numpy_region_stats(enh, region, n_regions, thr)
    f = sitk_region_stats(enh, region)
    ids = np.array([i for i in f.GetLabels() if i > 0], dtype=int)
    out["agree"] = bool(np.array_equal(cnt, k.count) and np.array_equal(n_above, k.n_above)
                        and np.allclose(pct, k.pct, equal_nan=True)
                        and np.array_equal(np.array([f.GetCount(int(i)) for i in ids]), cnt[ids - 1]))
    vsum = bench_stats.timeit(lambda: enh.sum(), repeats)
    rows = {
        "enh.sum() (floor)": vsum,
        "leakloc.kernels.region_stats": bench_stats.timeit(
            lambda: region_stats(enh, region, n_regions, thr), repeats),
        "SimpleITK LabelStatisticsImageFilter (incl. array->image)": bench_stats.timeit(
            lambda: sitk_region_stats(enh, region), repeats),
        "numpy (bincount, maximum.at, histogram percentile)": bench_stats.timeit(
            lambda: bench_stats.numpy_region_stats(enh, region, n_regions, thr), repeats),
    }
    out["timings_s"] = {k2: {"best": v[0], "median": v[1], "x_sum": v[0] / max(vsum[0], 1e-12)}
                        for k2, v in rows.items()}
    return out


# ============================================================================================
# Report: results.md and plots
# ============================================================================================


def _frac(m):
    if m is None or m["n"] == 0:
        return "-"
    return f"{100 * m['frac']:.0f} % ({m['k']}/{m['n']})"


def _num(v, nd):
    return "-" if v is None else f"{v:.{nd}f}"


def _pct(v):
    return "-" if v is None else f"{100 * v:.0f} %"


STAGES = ["survey", "read_roi", "kernels_voxel", "anatomy", "kernels_stats", "detect", "pictures", "total"]


def stage_table(records) -> list:
    """(stage, n, median s, mean s, max s) over successful studies, in :data:`STAGES` order then others."""
    ok = [r for r in records if r.get("timings_s")]
    names = [s for s in STAGES if any(s in r["timings_s"] for r in ok)]
    names += sorted({k for r in ok for k in r["timings_s"]} - set(names))
    rows = []
    for s in names:
        v = np.array([r["timings_s"][s] for r in ok if r["timings_s"].get(s) is not None], float)
        if v.size:
            rows.append((s, int(v.size), float(np.median(v)), float(v.mean()), float(v.max())))
    return rows


def render_markdown(result: dict) -> str:
    meta, records, summ = result["meta"], result["records"], result["summary"]
    L = [f"# leakloc sweep: {meta['n_studies']} studies ({meta['what']})", "",
         "Regime rows count the random seeds only; `case library` is the library's cases together.", "",
         f"{meta['date']} · git {meta['git']} · shape `{meta['shape']}` · "
         f"{'dask ' + meta['executor'] if meta['executor'] != 'serial' else 'serial'} · "
         f"wall {meta['wall_s']:.0f} s · levels from "
         f"{'the phantom label map' if meta['use_labelmap'] else '--top-vertebra'}", "",
         "Exact = top call within half a level of the primary (earliest-onset) defect; within one = "
         "within 1 level; side / kind of the top call; sensitivity = a leak called when there is one; "
         "specificity = no leak called (and no error) when there is none. Errors count as wrong. "
         "Static = the last pass alone (densest extravasation), the same run.", "",
         "## Accuracy per regime", "",
         "| regime | n | exact | within one | side | kind | sensitivity | specificity | errors |"
         " static exact | static within one | static side | static specificity |",
         "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for tag, s in summ.items():
        if tag.startswith("case: "):
            continue
        L.append(f"| {tag} | {s['n']} | {_frac(s['exact'])} | {_frac(s['within_one'])} | "
                 f"{_frac(s['side'])} | {_frac(s['kind'])} | {_frac(s['detected'])} | "
                 f"{_frac(s['no_call'])} | {s['errors']} | {_frac(s['static_exact'])} | "
                 f"{_frac(s['static_within_one'])} | {_frac(s['static_side'])} | "
                 f"{_frac(s['static_no_call'])} |")
    targets = result.get("targets")
    if targets:
        L += ["", "Targets of issue 3 (random seeds: all leak studies / controls): "
              + "; ".join(f"{k} {_pct(v['value'])} (goal >= {v['goal']:.0%}: "
                          f"{'met' if v['met'] else 'NOT met'})" for k, v in targets.items())]
    cases = [r for r in records if r.get("case")]
    if cases:
        L += ["", "## Case library", "",
              "| case | truth | call (confidence) | static | exact | side | kind | error |",
              "|---|---|---|---|:-:|:-:|:-:|---|"]
        for r in cases:
            L.append(_study_row(r, with_case=True))
    cal = result["calibration"]
    L += ["", "## Confidence calibration (top calls)", "",
          f"Correct = exact level and right side. {cal['n_calls']} calls; expected calibration error "
          f"{_num(cal['ece'], 3)}. Plot: `calibration.png`.", "",
          "| confidence | n | mean confidence | fraction correct |", "|---|---:|---:|---:|"]
    for b in cal["bins"]:
        if b["n"]:
            L.append(f"| {b['lo']:.1f}-{b['hi']:.1f} | {b['n']} | {b['mean_confidence']:.2f} | "
                     f"{b['frac_correct']:.2f} ({b['k']}/{b['n']}) |")
    if cal.get("platt"):
        L += ["", f"Platt fit of the raw score, the ambiguity and an offset per group of calls "
              f"(`evidence['score']`, `['ambiguity']`, `detect.calibration_group`) vs correctness, "
              f"on {cal['platt']['n']} calls (right/calls per group "
              f"{cal['platt'].get('right_of_calls')}): `CALIBRATION = {_cal_literal(cal['platt'])}`."]
    L += ["", "## Time per stage (s, successful studies)", "",
          "| stage | n | median | mean | max |", "|---|---:|---:|---:|---:|"]
    for s, n, med, mean, mx in stage_table(records):
        L.append(f"| {s} | {n} | {med:.3f} | {mean:.3f} | {mx:.3f} |")
    rs = np.array([r["render_s"] for r in records if r.get("render_s") is not None], float)
    if rs.size:
        L.append(f"| (phantom rendering, not analysis) | {rs.size} | {np.median(rs):.3f} | "
                 f"{rs.mean():.3f} | {rs.max():.3f} |")
    tm = np.array([r["peak_traced_mb"] for r in records if r.get("peak_traced_mb") is not None], float)
    rss = np.array([r["maxrss_mb"] for r in records if r.get("maxrss_mb") is not None], float)
    L += ["", "## Peak memory", ""]
    if tm.size:
        L.append(f"- analysis, tracemalloc peak (numpy allocations during `analyze`, input passes "
                 f"excluded): median {np.median(tm):.1f} MB, max {tm.max():.1f} MB")
    if rss.size:
        L.append(f"- worker process high-water mark (ru_maxrss, includes the rendered passes, "
                 f"Python, Numba, previous studies in that worker): median {np.median(rss):.0f} MB, "
                 f"max {rss.max():.0f} MB")
    sc = result.get("stats_comparison")
    if sc:
        L += ["", f"## Statistics stage, same data ({sc.get('data')})", "",
              f"{sc.get('shape_zyx')} voxels (Z, Y, X), {sc.get('n_regions')} regions, "
              f"{100 * sc.get('labelled_fraction', 0):.1f} % labelled; results agree: {sc.get('agree')}"
              + (f"; fallback because: {sc['fallback_reason']}" if sc.get("fallback_reason") else ""),
              "", "| what | best s | median s | x enh.sum() |", "|---|---:|---:|---:|"]
        for k, v in sc["timings_s"].items():
            L.append(f"| {k} | {v['best']:.5f} | {v['median']:.5f} | {v['x_sum']:.1f} |")
    failures = [r for r in records if not r.get("case") and (r.get("error") or not r["score"].get("correct"))
                and not (not r["score"]["leak"] and r["score"].get("no_call"))]
    L += ["", "## Studies that were wrong or failed", "",
          "| seed | tags | truth | call (confidence) | static | exact | side | kind | error |",
          "|---|---|---|---|---|:-:|:-:|:-:|---|"]
    for r in failures:
        L.append(_study_row(r, with_case=False))
    errs = {}
    for r in records:
        if r.get("error"):
            errs.setdefault(error_kind(r["error"]), []).append(r.get("case") or r.get("seed"))
    if errs:
        L += ["", "## Errors", ""]
        for e, who in sorted(errs.items(), key=lambda kv: -len(kv[1])):
            L.append(f"- {len(who)} x `{e}` ({', '.join(str(w) for w in who[:12])}"
                     f"{' ...' if len(who) > 12 else ''})")
    return "\n".join(L) + "\n"


def error_kind(message: str) -> str:
    """An error message with its numbers and level names replaced, to group similar failures."""
    m = re.sub(r"\b[CTLS]\d{1,2}(-[CTLS]\d{1,2})?\b", "<level>", message)
    return re.sub(r"-?\d+(\.\d+)?", "N", m)


def _yn(v):
    return "-" if v is None else ("yes" if v else "**no**")


def _study_row(r, with_case):
    t = (r.get("truth") or {}).get("defects") or []
    truth = ", ".join(f"{d['level']} {d['side']} {d['kind']} ({d.get('flow')})" for d in t) or "no leak"
    calls = ", ".join(f"{c['level']} {c['side']} {c['kind']} ({c['confidence']:.2f})"
                      for c in r.get("calls") or []) or "no leak"
    sr = r.get("static_reading")
    st = "none" if sr is None else f"{sr[0]} {sr[1]}"
    s = r["score"]
    err = (r.get("error") or "").replace("|", "/")
    first = r["case"] if with_case else r["seed"]
    tags = "" if with_case else ", ".join(x for x in r["tags"] if x not in ("all",)) + " | "
    return (f"| {first} | {tags}{truth} | {calls} | {st} | {_yn(s.get('exact') if s['leak'] else s.get('no_call'))} | "
            f"{_yn(s.get('side'))} | {_yn(s.get('kind'))} | {err} |")


def _save_fig(fig, path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    os.replace(tmp, path)


def make_plots(result: dict, out: Path) -> list:
    """accuracy_by_regime.png, calibration.png, time_per_stage.png in ``out``; returns their paths."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    paths = []
    summ = {t: s for t, s in result["summary"].items() if not t.startswith("case: ")}
    # 1. accuracy per regime
    keys = [("exact", "exact"), ("within_one", "within one"), ("side", "side"), ("kind", "kind"),
            ("detected", "sensitivity"), ("no_call", "specificity"), ("static_exact", "static exact")]
    tags = list(summ)
    fig, ax = plt.subplots(figsize=(max(8, 0.75 * len(tags) + 3), 5))
    width = 0.8 / len(keys)
    x = np.arange(len(tags))
    for j, (k, title) in enumerate(keys):
        vals = [summ[t][k]["frac"] if summ[t][k]["frac"] is not None else np.nan for t in tags]
        vals = [max(v, 0.008) if np.isfinite(v) else v for v in vals]   # 0 % stays visible
        ax.bar(x + (j - len(keys) / 2 + 0.5) * width, vals, width, label=title,
               hatch="//" if k.startswith("static") else None)
    ax.set_xticks(x, [f"{t}\n(n={summ[t]['n']})" for t in tags], rotation=60, ha="right", fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.axhline(0.95, color="k", lw=0.6, ls="--")
    ax.set_ylabel("fraction right (missing bar: not applicable)")
    ax.set_title(f"leakloc accuracy per regime ({result['meta']['n_studies']} studies)")
    ax.legend(fontsize=7, ncol=4, loc="lower left")
    p = out / "accuracy_by_regime.png"
    _save_fig(fig, p)
    plt.close(fig)
    paths.append(p)
    # 2. calibration
    cal = result["calibration"]
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(5.5, 6.5), sharex=True,
                                  gridspec_kw={"height_ratios": [3, 1]})
    ax.plot([0, 1], [0, 1], "k--", lw=0.8, label="perfectly calibrated")
    b = [b for b in cal["bins"] if b["n"]]
    if b:
        ax.plot([x["mean_confidence"] for x in b], [x["frac_correct"] for x in b], "o-", label="top calls")
        for x_ in b:
            ax.annotate(f"n={x_['n']}", (x_["mean_confidence"], x_["frac_correct"]),
                        textcoords="offset points", xytext=(4, -10), fontsize=7)
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel("fraction correct (exact level, side)")
    ax.set_title(f"confidence calibration ({cal['n_calls']} calls, ECE "
                 f"{_num(cal['ece'], 2)})")
    ax.legend(fontsize=8, loc="upper left")
    centres = [(x["lo"] + x["hi"]) / 2 for x in cal["bins"]]
    ax2.bar(centres, [x["n"] for x in cal["bins"]], width=1.0 / len(cal["bins"]) * 0.9)
    ax2.set_xlabel("confidence")
    ax2.set_ylabel("calls")
    ax2.set_xlim(0, 1)
    p = out / "calibration.png"
    _save_fig(fig, p)
    plt.close(fig)
    paths.append(p)
    # 3. time per stage
    rows = [r for r in stage_table(result["records"]) if r[0] != "total"]
    fig, ax = plt.subplots(figsize=(7, 4))
    ok = [r for r in result["records"] if r.get("timings_s")]
    data = [[r["timings_s"][s] for r in ok if r["timings_s"].get(s) is not None] for s, *_ in rows]
    if data:
        ax.boxplot(data, showfliers=True)
        ax.set_xticks(range(1, len(rows) + 1), [r[0] for r in rows], rotation=30, ha="right")
    ax.set_ylabel("s per study")
    ax.set_title(f"time per stage, {result['meta']['shape']} phantoms ({len(ok)} studies)")
    p = out / "time_per_stage.png"
    _save_fig(fig, p)
    plt.close(fig)
    paths.append(p)
    return paths


# ============================================================================================
# Driver
# ============================================================================================


def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100, help="random phantoms (seeds seed0..seed0+n-1)")
    ap.add_argument("--seed0", type=int, default=10000, help="first seed (default 10000: never tuned on)")
    ap.add_argument("--quick", action="store_true",
                    help="6 small studies, serial, no dask (CI; under 2 minutes)")
    ap.add_argument("--cases", action="store_true", help="also run the phantom case library")
    ap.add_argument("--workers", type=int, default=2, help="local dask worker processes (default 2)")
    ap.add_argument("--scheduler", default=None, help="address of an existing dask scheduler")
    ap.add_argument("--serial", action="store_true", help="run in this process, without dask")
    ap.add_argument("--shape", default="small", choices=["small", "medium", "fine", "full"],
                    help="phantom shape (default small: 64 x 64 in-plane, 3 mm slices)")
    ap.add_argument("--labelmap", action="store_true",
                    help="give analyze the phantom's vertebra label map (--levels) as well as the top vertebra")
    ap.add_argument("--no-stats", action="store_true", help="skip the statistics-stage comparison")
    ap.add_argument("--fit-calibration", action="store_true",
                    help="fit the Platt constants of leakloc.detect.CALIBRATION (a, c, an offset b per "
                         "group of calls) and print them")
    ap.add_argument("--pool-calibration", type=Path, nargs="+", default=(), metavar="RESULTS_JSON",
                    help="with --fit-calibration: also fit on the top calls of these earlier sweeps' "
                         "results.json (other seed ranges); the calibration table stays this run's. "
                         "Records made before the dependent_tear group (calls without 'dependent') "
                         "count a tear on the side contrast layers on for the patient's position "
                         "(ventral prone, dorsal supine) as a dependent-side tear")
    ap.add_argument("--hold-slopes", action="store_true",
                    help="keep the score and ambiguity slopes of leakloc.detect.CALIBRATION and "
                         "fit the offsets per group only (the fit printed and stored in results.json)")
    ap.add_argument("--l2-group", type=float, default=0.05,
                    help="ridge holding each group's offset to the common one (on the mean "
                         "log-likelihood; default 0.05)")
    ap.add_argument("--fit-only", action="store_true",
                    help="analyse nothing: fit the calibration on the --pool-calibration results "
                         "alone and print it (implies --fit-calibration)")
    ap.add_argument("--render-cache", type=Path, default=None,
                    help="keep the rendered passes in this folder and reuse them on later runs")
    ap.add_argument("--render-only", action="store_true",
                    help="only render the phantoms into --render-cache (no analysis)")
    ap.add_argument("--out", type=Path, default=OUT, help="output directory (default benchmarks/out/sweep)")
    args = ap.parse_args(argv)
    if args.fit_only:
        if not args.pool_calibration:
            ap.error("--fit-only needs --pool-calibration RESULTS_JSON ...")
        args.fit_calibration = True
    if args.quick:
        args.n = min(args.n, 6) if "--n" in (argv or sys.argv) else 6
        args.shape = "small"
        args.serial = True
    return args


def _git():
    try:
        return subprocess.run(["git", "-C", str(HERE), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10).stdout.strip() + (
            "+dirty" if subprocess.run(["git", "-C", str(HERE), "status", "--porcelain", "--", "../leakloc"],
                                       capture_output=True, text=True, timeout=10).stdout.strip() else "")
    except Exception:  # noqa: BLE001
        return "?"


def _progress(i, n, rec, t0):
    s = rec["score"]
    who = f"case {rec['case']}" if rec.get("case") else f"seed {rec['seed']}"
    if rec.get("error"):
        verdict = "ERROR " + rec["error"][:100]
    elif s.get("rendered"):
        verdict = f"rendered in {rec['render_s']:.0f} s"
    elif s["leak"]:
        if s["level_error"] is None:
            verdict = "missed"
        else:
            c = rec["calls"][0]
            verdict = ("ok" if s["correct"] else "wrong") + (
                f": called {c['level']} {c['side']} {c['kind']}, level error {s['level_error']:.2f}"
                f"{'' if s['side'] else ', side wrong'}{'' if s['kind'] else ', kind wrong'}")
    else:
        verdict = "ok (no leak)" if s["no_call"] else f"false call {rec['calls'][0]['level']}"
    print(f"[{i}/{n} {time.perf_counter() - t0:6.0f} s] {who}: {verdict}", flush=True)


def run_jobs(jobs, args) -> tuple:
    """Run every job; returns (records in job order, executor description)."""
    t0 = time.perf_counter()
    n = len(jobs)
    if args.serial:
        recs = []
        for i, j in enumerate(jobs):
            recs.append(run_one(j))
            _progress(i + 1, n, recs[-1], t0)
        return recs, "serial"
    from dask.distributed import Client, LocalCluster, as_completed
    cluster = None
    if args.scheduler:
        client = Client(args.scheduler)
        desc = f"scheduler {args.scheduler}"
    else:
        cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                               dashboard_address=None)
        client = Client(cluster)
        desc = f"LocalCluster({args.workers} processes x 1 thread)"
    try:
        futs = {client.submit(run_one, j, key=f"study-{i}", pure=False, retries=0): i
                for i, j in enumerate(jobs)}
        recs = [None] * n
        done = 0
        for fut in as_completed(futs):
            i = futs[fut]
            try:
                rec = fut.result()
            except Exception as exc:  # noqa: BLE001 - a dead worker, a pickling error...
                j = jobs[i]
                rec = {"seed": j.get("seed"), "case": j.get("case"), "shape": j.get("shape"),
                       "tags": ["all"], "truth": None, "calls": [], "static_reading": None,
                       "timings_s": {}, "error": f"worker: {type(exc).__name__}: {exc}".splitlines()[0][:500]}
                rec["score"] = score_study([], [], None, error=rec["error"])
                rec["score"]["leak"] = None
            recs[i] = rec
            done += 1
            _progress(done, n, rec, t0)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return recs, desc


def _write(path: Path, text: str):
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def targets(summary_all) -> dict:
    """The issue-3 goals against the 'all' summary."""
    goals = [("exact", "exact", 0.95), ("within_one", "within one", 0.99), ("side", "side", 0.95),
             ("kind", "kind", 0.90), ("no_call", "specificity", 0.95)]
    out = {}
    for key, name, g in goals:
        v = summary_all[key]["frac"]
        out[name] = {"value": v, "goal": g, "met": v is not None and v >= g}
    return out


def calibration_fit(top, args):
    """Fit :data:`leakloc.detect.CALIBRATION` on the top calls ``top`` (of :func:`_top_calls`)
    and those of ``args.pool_calibration``'s results; print it with ``args.fit_calibration``.

    Returns the fit (a dict as :func:`fit_platt`'s, with ``n`` and ``right_of_calls``), or None
    when there are not both right and wrong calls.
    """
    pooled = list(top) + [t for path in args.pool_calibration
                          for t in _top_calls(json.loads(Path(path).read_text())["records"])]
    finite = [(s, y, amb, g, mv) for _, y, s, amb, g, mv in pooled
              if s is not None and math.isfinite(s)]
    platt = None
    if finite and len({t[1] for t in finite}) == 2:
        from leakloc.detect import CALIBRATION
        hold = (CALIBRATION["a"], CALIBRATION["c"]) if args.hold_slopes else None
        fit = fit_platt([t[0] for t in finite], [t[1] for t in finite],
                        ambiguity=[t[2] for t in finite], groups=[t[3] for t in finite],
                        l2_group=args.l2_group, hold=hold, moved=[t[4] for t in finite])
        counts = {g: [sum(1 for t in finite if t[3] == g and t[1]), sum(1 for t in finite if t[3] == g)]
                  for g in fit["b"]}
        platt = dict(fit, n=len(finite), right_of_calls=counts)
    if args.fit_calibration:
        if platt:
            k = sum(bool(t[1]) for t in finite)
            warn = ("" if min(k, len(finite) - k) >= 10 else
                    f"  (unreliable: only {k} right and {len(finite) - k} wrong calls; want 10 of each)\n")
            held = " (slopes held at the current table's)" if args.hold_slopes else ""
            mv = [t[1] for t in finite if t[4]]
            st = [t[1] for t in finite if not t[4]]
            print(f"\nPlatt fit on {len(finite)} top calls{held}: raw evidence['score'], ['ambiguity'], "
                  f"an offset per group and one when the patient moved, vs exact level and side "
                  f"(right/calls per group {platt['right_of_calls']}; moved {sum(mv)}/{len(mv)}, "
                  f"still {sum(st)}/{len(st)}):\nCALIBRATION = {_cal_literal(platt)}\n{warn}",
                  flush=True)
        else:
            print(f"\nPlatt fit impossible: {len(finite)} scored calls, need both right and wrong ones\n")
    return platt


def main(argv=None):
    args = parse(argv)
    t0 = time.perf_counter()
    nthreads = 1 if (not args.serial and (args.scheduler or args.workers > 1)) else None
    base = {"shape": args.shape, "use_labelmap": args.labelmap, "numba_threads": nthreads,
            "render_cache": str(args.render_cache) if args.render_cache else None,
            "render_only": bool(args.render_only)}
    if args.render_only and not args.render_cache:
        raise SystemExit("--render-only needs --render-cache DIR")
    if args.fit_only:
        return 0 if calibration_fit([], args) else 1
    jobs = [dict(base, seed=s, case=None) for s in range(args.seed0, args.seed0 + args.n)]
    if args.cases:
        from leakloc.phantoms import CASES
        jobs += [dict(base, seed=None, case=c) for c in CASES]
    print(f"# sweep: {args.n} random phantoms (seeds {args.seed0}..{args.seed0 + args.n - 1})"
          f"{' + the case library' if args.cases else ''}, shape {args.shape}, "
          f"{'serial' if args.serial else (args.scheduler or f'{args.workers} dask workers')}", flush=True)
    records, desc = run_jobs(jobs, args)
    if args.render_only:
        print(f"rendered {len(records)} studies into {args.render_cache} "
              f"in {time.perf_counter() - t0:.0f} s", flush=True)
        return 0
    # records lost to a dead worker carry leak=None: keep them out of the regime tables
    scored = [r for r in records if r["score"].get("leak") is not None]
    # regimes over the random sweep; the case library is one more row (and its own table)
    summary = summarize_by_regime([r for r in scored if not r.get("case")])
    lib = [r["score"] for r in scored if r.get("case")]
    if lib:
        summary["case library"] = summarize(lib)
    top = _top_calls(scored)
    bins = calibration_bins([t[0] for t in top], [t[1] for t in top])
    cal = {"definition": "top call; correct = exact level (<= 0.5) and right side; controls: any call is wrong",
           "n_calls": len(top), "bins": bins, "ece": expected_calibration_error(bins), "platt": None}
    cal["platt"] = calibration_fit(top, args)
    stats = None
    if not args.no_stats:
        print("statistics-stage comparison ...", flush=True)
        try:
            stats = stats_comparison(args.seed0, args.shape, repeats=5 if args.quick else 10)
        except Exception as exc:  # noqa: BLE001
            stats = {"error": f"{type(exc).__name__}: {exc}", "timings_s": {}}
    result = {
        "meta": {"what": f"seeds {args.seed0}..{args.seed0 + args.n - 1}" + (" + cases" if args.cases else ""),
                 "n_studies": len(records), "shape": args.shape, "executor": desc,
                 "use_labelmap": args.labelmap, "quick": args.quick,
                 "date": datetime.datetime.now().isoformat(timespec="seconds"), "git": _git(),
                 "python": platform.python_version(), "numpy": np.__version__,
                 "machine": platform.machine(), "cpu_count": os.cpu_count(),
                 "argv": sys.argv[1:] if argv is None else list(argv),
                 "wall_s": time.perf_counter() - t0},
        "summary": summary,
        "calibration": cal,
        "stats_comparison": stats,
        "records": records,
    }
    if "all" in summary:
        result["targets"] = targets(summary["all"])   # random seeds only
    result = _jsonable(result)
    args.out.mkdir(parents=True, exist_ok=True)
    md = render_markdown(result)
    _write(args.out / "results.json", json.dumps(result, indent=1) + "\n")
    _write(args.out / "results.md", md)
    try:
        plots = make_plots(result, args.out)
    except Exception as exc:  # noqa: BLE001
        plots = []
        print(f"plots failed: {type(exc).__name__}: {exc}")
    # terminal summary: the regime table and where things are
    head = md.split("## Case library")[0].split("## Confidence calibration")[0]
    print("\n" + head)
    print(f"wrote {args.out / 'results.json'}, {args.out / 'results.md'}"
          + "".join(f", {p.name}" for p in plots) + f" in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
