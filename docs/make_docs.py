"""Regenerate the committed documentation outputs: the example report and the case-library table.

Run from the repository root (the editable install must be active)::

    python docs/make_docs.py                 # both parts, about 2-4 minutes on 2 cores
    python docs/make_docs.py --only example  # just docs/example-t7t8/
    python docs/make_docs.py --only cases    # just docs/cases/results.md

It writes

- ``docs/example-t7t8/``: the output of ``leakloc demo --out docs/example-t7t8 --quiet``, run
  through the real command line (click's CliRunner on ``leakloc.cli.main:main``): report.json,
  report.html, figures/*.png and the two masks (``extravasation.nii.gz``, ``levels.nii.gz``).
  Masks over 2 MB are listed in ``docs/.gitignore`` so they stay out of git.
- ``docs/cases/results.md``: every case of the phantom case library analysed at phantom shape
  ``small`` (the default) and ``fine`` (1 mm in-plane, 2 mm slices), with the ground truth, the top
  call, its level error, a verdict and the static last-pass reading, the run date and git commit.

Then commit with ``git add docs README.md``.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import os
import subprocess
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
EXAMPLE_DIR = os.path.join(HERE, "example-t7t8")
RESULTS_MD = os.path.join(HERE, "cases", "results.md")
GITIGNORE = os.path.join(HERE, ".gitignore")
SHAPES = ("small", "fine")
#: level error (in levels) for "exact" and "within one"; the same thresholds as benchmarks/sweep.py
EXACT_LEVELS = 0.5
WITHIN_ONE_LEVELS = 1.0
MAX_MASK_BYTES = 2 * 1024 * 1024
MASKS = ("extravasation.nii.gz", "levels.nii.gz")


def _git(*args) -> str:
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def make_example(out_dir: str = EXAMPLE_DIR) -> list:
    """Run ``leakloc demo --out OUT --quiet`` through the CLI; return the terminal lines.

    Raises RuntimeError when the command exits non-zero.
    """
    from click.testing import CliRunner

    from leakloc.cli.main import main

    result = CliRunner().invoke(main, ["demo", "--out", out_dir, "--quiet"])
    if result.exit_code != 0:
        raise RuntimeError(f"leakloc demo exited {result.exit_code}: {result.output.strip()}"
                           + (f"\n{''.join(traceback.format_exception(result.exc_info[1]))}"
                              if result.exc_info and result.exit_code == 1 else ""))
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    # keep big masks out of git; small ones are committed so the example is complete
    rel = os.path.relpath(out_dir, HERE)
    big = [m for m in MASKS
           if os.path.exists(os.path.join(out_dir, m))
           and os.path.getsize(os.path.join(out_dir, m)) > MAX_MASK_BYTES]
    _write_gitignore([f"{rel}/{m}" for m in big])
    return lines


def _write_gitignore(entries: list) -> None:
    text = ("# written by docs/make_docs.py: example masks larger than 2 MB stay out of git\n"
            + "".join(f"{e}\n" for e in entries))
    tmp = GITIGNORE + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, GITIGNORE)


def _fmt_defect(d: dict) -> str:
    s = f"{d['level']} {d['side']} {d['kind'].replace('_', ' ')}"
    if d.get("flow"):
        s += f" ({d['flow']} flow)"
    return s


def verdict(truth_defects: list, calls: list, error: str | None) -> tuple:
    """Score the top call against the truth.

    Returns
    -------
    (level error in levels or None, verdict str): ``exact`` (<= 0.5), ``within one`` (<= 1),
    ``miss`` (> 1), ``FN`` (leak, no call), ``TN`` (control, no call), ``FP`` (control, a call),
    ``error``.
    """
    from leakloc.levels import coord_of

    if error is not None:
        return None, "error"
    if truth_defects:
        if not calls:
            return None, "FN"
        c0 = calls[0]
        # the error to the nearest truth defect (multi-defect phantoms), top call only
        err = min(abs(coord_of(c0["level"]) - float(t["level_coord"])) for t in truth_defects)
        if err <= EXACT_LEVELS:
            return err, "exact"
        if err <= WITHIN_ONE_LEVELS:
            return err, "within one"
        return err, "miss"
    return None, ("FP" if calls else "TN")


def run_case(name: str, shape: str) -> dict:
    """Generate one library case at one phantom shape, analyse it, and score it."""
    from leakloc import AnalysisError, InputError
    from leakloc.phantoms import generate
    from leakloc.pipeline import analyze

    t0 = time.perf_counter()
    study = generate(case=name, shape=shape)
    truth = study.truth
    rec = dict(case=name, shape=shape, figure=study.figure, truth=truth["defects"], calls=[],
               static=None, error=None, grid=list(study.grid.size))
    try:
        res = analyze(study.series(), top_vertebra=study.top_vertebra)
    except (AnalysisError, InputError) as exc:
        rec["error"] = f"error: {exc}"
    except Exception as exc:  # noqa: BLE001 - the table must still be written
        rec["error"] = f"error ({type(exc).__name__}): {exc}"
    else:
        rec["calls"] = [dict(level=d.level, side=d.side, kind=d.kind, z_mm=float(d.z_mm),
                             confidence=float(d.confidence)) for d in res.defects]
        if rec["calls"]:
            # where the top call physically is in the phantom's own anatomy (independent of
            # whether leakloc named the levels right)
            rec["call_true_coord"] = float(study.spine.L_of(rec["calls"][0]["z_mm"]))
        sr = getattr(res, "static_reading", None)
        rec["static"] = None if sr is None else (str(sr[0]), str(sr[1]))
    rec["level_error"], rec["verdict"] = verdict(rec["truth"], rec["calls"], rec["error"])
    rec["seconds"] = time.perf_counter() - t0
    return rec


def _row(rec: dict) -> str:
    truth = "; ".join(_fmt_defect(d) for d in rec["truth"]) or "no leak"
    if rec["error"]:
        call = rec["error"].replace("|", "/").replace("\n", " ")
    elif rec["calls"]:
        call = "; ".join(f"{c['level']} {c['side']} {c['kind'].replace('_', ' ')} "
                         f"({c['confidence']:.2f})" for c in rec["calls"])
    else:
        call = "no leak"
    err = "" if rec["level_error"] is None else f"{rec['level_error']:.1f}"
    static = "nothing" if rec["static"] is None else f"{rec['static'][0]} {rec['static'][1]}"
    pos = ""
    if rec.get("call_true_coord") is not None:
        from leakloc.levels import name_of
        c = rec["call_true_coord"]
        pos = name_of(c)
        if rec["truth"]:
            d = min(abs(c - float(t["level_coord"])) for t in rec["truth"])
            pos += f" ({d:.1f})"
    return (f"| `{rec['case']}` | {rec['figure']} | {truth} | {call} | {err} | "
            f"**{rec['verdict']}** | {pos} | {static} | {rec['seconds']:.0f} |")


def _summary(recs: list) -> str:
    leak = [r for r in recs if r["truth"]]
    ctrl = [r for r in recs if not r["truth"]]
    n_exact = sum(r["verdict"] == "exact" for r in leak)
    n_one = sum(r["verdict"] in ("exact", "within one") for r in leak)
    n_side = sum(bool(r["calls"]) and r["calls"][0]["side"] == r["truth"][0]["side"] for r in leak)
    n_kind = sum(bool(r["calls"]) and r["calls"][0]["kind"] == r["truth"][0]["kind"] for r in leak)
    n_pos = sum(r.get("call_true_coord") is not None
                and min(abs(r["call_true_coord"] - float(t["level_coord"])) for t in r["truth"])
                <= EXACT_LEVELS for r in leak)
    n_tn = sum(r["verdict"] == "TN" for r in ctrl)
    n_err = sum(r["verdict"] == "error" for r in recs)
    return (f"leak cases: {n_exact}/{len(leak)} exact level, {n_one}/{len(leak)} within one, "
            f"side right {n_side}/{len(leak)}, kind right {n_kind}/{len(leak)}, "
            f"top call physically within half a level of the defect {n_pos}/{len(leak)}; "
            f"controls: {n_tn}/{len(ctrl)} no leak called; errors: {n_err}")


def make_results(shapes=SHAPES, path: str = RESULTS_MD, progress=print) -> list:
    """Analyse every library case at each shape and write the markdown table; return the records."""
    from leakloc.phantoms import CASES

    recs = []
    for shape in shapes:
        for name in CASES:
            rec = run_case(name, shape)
            if progress:
                progress(f"  {shape:6s} {name:28s} {rec['verdict']:10s} {rec['seconds']:.0f} s")
            recs.append(rec)
    date = _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    commit = _git("rev-parse", "--short", "HEAD")
    dirty = _git("status", "--porcelain", "--untracked-files=no", "--", "leakloc", "cli", "phantoms")
    commit_note = commit + (" (with uncommitted changes in leakloc/cli/phantoms)"
                            if dirty and dirty != "unknown" else "")
    L = ["# Case library results", "",
         f"Run {date}, git commit `{commit_note}`. Regenerate with `python docs/make_docs.py` "
         "(see its docstring).", "",
         "Each case of `leakloc.phantoms.CASES` is generated, then analysed with "
         "`leakloc.pipeline.analyze(study.series(), top_vertebra=study.top_vertebra)`. "
         "**call** is what leakloc reports (level side kind, confidence; ranked). **level error** "
         "is |call - truth| in levels for the top call (vertebra = 1, disc = 0.5; see "
         "`leakloc.levels.coord_of`). **verdict**: `exact` error <= 0.5, `within one` <= 1, "
         "`miss` > 1, `FN` a leak with no call, `TN` / `FP` a control with no call / a call, "
         "`error` the analysis stopped. **static** is the densest extravasation in the last pass "
         "(what a single delayed myelogram would suggest), for comparison. **s** is the seconds "
         "to generate and analyse the case. **true position** is where the top call's `z_mm` lies "
         "in the phantom's own anatomy (`study.spine.L_of`), with its distance in levels from the "
         "truth defect: it differs from the call's name when leakloc named the levels wrong.", ""]
    for shape in shapes:
        rs = [r for r in recs if r["shape"] == shape]
        grid = " x ".join(str(v) for v in rs[0]["grid"]) if rs else "?"
        L += [f"## Shape `{shape}` (grid X x Y x Z {grid} for the first case)", "",
              _summary(rs), "",
              "| case | figure | truth | call | level error | verdict | true position | static | s |",
              "|---|---|---|---|---|---|---|---|---|"]
        L += [_row(r) for r in rs]
        L.append("")
    text = "\n".join(L)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)
    return recs


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", choices=("example", "cases"), default=None)
    ap.add_argument("--shapes", default=",".join(SHAPES),
                    help="comma-separated phantom shapes for the case table (default small,fine)")
    args = ap.parse_args(argv)
    os.chdir(ROOT)
    if args.only in (None, "example"):
        print(f"example: leakloc demo --out {os.path.relpath(EXAMPLE_DIR, ROOT)} --quiet")
        for line in make_example():
            print(f"  {line}")
    if args.only in (None, "cases"):
        print(f"cases -> {os.path.relpath(RESULTS_MD, ROOT)}")
        make_results(shapes=[s for s in args.shapes.split(",") if s])
    return 0


if __name__ == "__main__":
    sys.exit(main())
