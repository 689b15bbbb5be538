"""Capture what detection reads, study by study, and replay detection on it.

A change to the rules of :mod:`leakloc.detect` (``find_candidates``, ``is_leak``, ``rank``) does
not need the whole analysis rerun: the per-voxel maps detection reads (``leakloc.detect.Voxels``)
are captured once per study, and detection alone is replayed on them in a second or two a study,
scored as the sweep scores (``sweep.score_study``). The replay of unchanged code gives the
sweep's own calls.

    python benchmarks/replay.py capture --seed0 17000 --n 100 --shape fine \\
        --render-cache /work/render_17000 --out /work/capture     # ~20 s a study, ~60 MB each
    python benchmarks/replay.py capture --seeds 17001 17020 --render-cache DIR --out DIR
    python benchmarks/replay.py score /work/capture               # every captured study
    python benchmarks/replay.py score /work/capture --seeds 17001 17020 -v --json out.json

``score`` prints the studies that are wrong (``-v``: every study), then the totals. A capture is
of one version of the analysis up to detection: recapture after changing anything before it.
"""
from __future__ import annotations

import argparse
import json
import pickle
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sweep  # noqa: E402  (benchmarks/sweep.py: rendering cache and scoring)


def capture_one(seed: int, shape: str, render_cache, out: Path) -> str:
    """Analyse one random phantom, keeping detection's inputs; write ``out/vox_SEED.pkl``.

    Returns a one-line summary of the study and its calls.
    """
    from leakloc import pipeline
    from leakloc.phantoms import generate
    path = out / f"vox_{seed}.pkl"
    if path.exists():
        return f"{seed}: already captured"
    study = generate(seed=seed, shape=shape)
    vols = sweep._rendered(study, {"seed": seed, "shape": shape, "render_cache": render_cache})
    series = sweep.study_series(study, vols)
    keep = pipeline._KEEP_DEBUG
    pipeline._KEEP_DEBUG = True
    try:
        res = pipeline.analyze(series, top_vertebra=study.top_vertebra)
    finally:
        pipeline._KEEP_DEBUG = keep
    truth = [{k: (float(d[k]) if k == "level_coord" else str(d[k]))
              for k in ("level", "level_coord", "side", "kind")} for d in study.truth["defects"]]
    calls = [{"level": c.level, "level_coord": float(c.level_coord), "side": c.side,
              "kind": c.kind, "confidence": float(c.confidence)} for c in res.defects]
    rec = {"seed": seed, "shape": shape, "voxels": res.debug["voxels"], "truth": truth,
           "calls": calls, "params": sweep._jsonable(study.truth["params"]),
           "moved": sweep._moved({"warnings": res.warnings})}
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        pickle.dump(rec, f, protocol=pickle.HIGHEST_PROTOCOL)
    tmp.replace(path)
    return f"{seed}: truth {[(t['level'], t['side']) for t in truth]}, " \
           f"calls {[(c['level'], c['side'], round(c['confidence'], 2)) for c in calls]}"


def replay(rec: dict) -> tuple:
    """Detection on one captured study: (calls, score) as ``sweep.score_study`` scores them."""
    from leakloc import detect as dt
    candidates, _ = dt.find_candidates(rec["voxels"])
    # (captures made before the motion offset carry no 'moved': replayed as if still)
    defects, _ = dt.rank(candidates, moved=bool(rec.get("moved", False)))
    calls = [{"level": c.level, "level_coord": float(c.level_coord), "side": c.side,
              "kind": c.kind, "confidence": float(c.confidence)} for c in defects]
    return calls, sweep.score_study(rec["truth"], calls)


def totals(scores) -> dict:
    """Counts over scored studies: leak studies exact, within one, side, kind, detected;
    controls without a call."""
    leak = [s for s in scores if s["leak"]]
    ctl = [s for s in scores if not s["leak"]]
    out = {k: sum(bool(s[k]) for s in leak) for k in ("exact", "within_one", "side", "kind",
                                                       "detected")}
    out.update(leak=len(leak), controls=len(ctl), no_call=sum(bool(s["no_call"]) for s in ctl))
    return out


def _seeds(a):
    return [int(x) for x in a] if a else None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("capture", help="analyse phantoms, keep detection's inputs")
    which = c.add_mutually_exclusive_group(required=True)
    which.add_argument("--seed0", type=int, help="seeds seed0 .. seed0 + n - 1")
    which.add_argument("--seeds", type=int, nargs="+", help="these seeds")
    c.add_argument("--n", type=int, default=100)
    c.add_argument("--shape", default="fine")
    c.add_argument("--render-cache", default=None, help="folder of rendered passes (sweep.py's)")
    c.add_argument("--out", type=Path, required=True)
    s = sub.add_parser("score", help="replay detection on captured studies and score it")
    s.add_argument("folder", type=Path)
    s.add_argument("--seeds", nargs="*", help="only these seeds")
    s.add_argument("-v", "--verbose", action="store_true", help="print every study")
    s.add_argument("--json", type=Path, help="write every study's calls and score here")
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    if args.cmd == "capture":
        seeds = args.seeds or list(range(args.seed0, args.seed0 + args.n))
        args.out.mkdir(parents=True, exist_ok=True)
        for i, seed in enumerate(seeds, start=1):
            t0 = time.perf_counter()
            msg = capture_one(seed, args.shape, args.render_cache, args.out)
            print(f"[{i}/{len(seeds)} {time.perf_counter() - t0:5.1f} s] {msg}", flush=True)
        return 0
    only = set(_seeds(args.seeds) or [])
    files = sorted(args.folder.glob("vox_*.pkl"))
    scores, out = [], {}
    for f in files:
        seed = int(f.stem.split("_")[1])
        if only and seed not in only:
            continue
        with open(f, "rb") as fh:
            rec = pickle.load(fh)
        calls, sc = replay(rec)
        scores.append(sc)
        out[seed] = {"truth": rec["truth"], "calls": calls, "score": sc}
        wrong = not sc["correct"] if sc["leak"] else not sc["no_call"]
        if wrong or args.verbose:
            print(seed, "wrong" if wrong else "ok   ",
                  [(t["level"], t["side"], t["kind"]) for t in rec["truth"]],
                  [(c["level"], c["side"], c["kind"], round(c["confidence"], 2)) for c in calls[:3]])
    print(json.dumps(totals(scores)))
    if args.json:
        args.json.write_text(json.dumps(out, default=str, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
