"""Surgical planning outputs: ``report.json``, a self-contained ``report.html``, figures and masks.

:func:`build_report` turns a :class:`leakloc.pipeline.Analysis` into the ``leakloc.report/1``
dictionary of the SPEC; :func:`write_outputs` writes everything into an output folder, whole or
not at all:

* ``report.json`` -- :func:`build_report`, JSON-safe (NaN -> null), never patient identifiers;
* ``report.html`` -- one file, figures embedded as PNG data URIs, inline CSS, no scripts and no
  network reference; phone-readable and printable; patient identifiers only with
  ``include_phi=True`` (otherwise a hashed study id);
* ``figures/*.png`` -- :mod:`leakloc.plots`;
* ``extravasation.nii.gz`` -- ``analysis.extravasation_mask`` (uint8, 1 = extravasated contrast);
* ``levels.nii.gz`` -- uint8 vertebra labels in TotalSegmentator ``total`` ids (26..50 = S1..C1):
  every voxel of the canal (sac + epidural) and of the paraspinal shell on a slice carries the id of
  the vertebra nearest that slice's level coordinate (a disc slice goes to the nearer vertebra;
  exact halves to the cranial one); everything else is 0. Both masks lie on the input grid.
"""
from __future__ import annotations

import base64
import hashlib
import html
import json
import math
import os
import shutil
import tempfile
from datetime import datetime, timezone

import numpy as np

from leakloc import __version__
from leakloc import levels as lv

__all__ = ["SCHEMA", "build_report", "levels_volume", "render_html", "write_outputs", "study_id"]

SCHEMA = "leakloc.report/1"


# ------------------------------------------------------------------------------ JSON
def _json_safe(obj):
    """Recursively convert numpy scalars/arrays to Python and non-finite floats to None."""
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _json_safe(obj.tolist())
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        f = float(obj)
        return f if math.isfinite(f) else None
    return obj


def study_id(study_uid: str | None) -> str | None:
    """Hashed study id: the first 12 hex digits of sha256(StudyInstanceUID); None without a UID."""
    if not study_uid:
        return None
    return hashlib.sha256(str(study_uid).encode("utf-8")).hexdigest()[:12]


def _t(v, nd=2):
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return round(f, nd) if math.isfinite(f) else None


def build_report(analysis) -> dict:
    """The ``report.json`` dictionary, schema ``leakloc.report/1`` (SPEC.md).

    Parameters
    ----------
    analysis : leakloc.pipeline.Analysis

    Returns
    -------
    dict, JSON-safe (no NaN: null). Keys of the schema: ``schema``, ``leak_detected``,
    ``defects`` (ranked, [] when no leak), ``laminectomy`` (null when no leak), ``levels``,
    ``phases`` ([{"index", "time_s"}], s after the first pass), ``inputs`` ({"n_phases", "grid"
    (ITK size x, y, z), "spacing_mm" (x, y, z)}). Added: ``version``, ``study_id`` (hashed),
    ``candidates``, ``plan_uncertainty_levels``, ``motion_mm``, ``warnings``, ``notes``,
    ``timings_s``. Never patient identifiers.
    """
    series = analysis.series
    grid = series.grid
    defects = list(analysis.defects or [])
    leak = len(defects) > 0
    plan = analysis.plan if leak else None
    phases = []
    for i, ph in enumerate(series.phases):
        phases.append({"index": int(getattr(ph, "index", i)), "time_s": _t(ph.time_s),
                       "duration_s": _t(getattr(ph, "duration_s", None)),
                       "table_direction": getattr(ph, "table_direction", None),
                       "series_number": getattr(ph, "series_number", None)})
    inputs = {"n_phases": int(series.n_phases),
              "grid": [int(s) for s in grid.size],
              "spacing_mm": [float(s) for s in grid.spacing_mm],
              "origin_mm": [float(s) for s in grid.origin_mm],
              "direction": [float(s) for s in grid.direction],
              "orientation": grid.orientation_code(),
              "patient_position": getattr(series, "patient_position", "") or None,
              "resampled_phases": [int(p.index) for p in series.phases if getattr(p, "resampled", False)],
              "skipped": [dict(s) for s in (getattr(series, "skipped", None) or [])]}
    rep = {
        "schema": SCHEMA,
        "version": __version__,
        "study_id": study_id(getattr(series, "study_uid", "")),
        "leak_detected": bool(leak),
        "defects": [d.to_report() for d in defects],
        "laminectomy": plan.to_report() if plan is not None else None,
        "levels": [lk.to_report() for lk in analysis.levels],
        "phases": phases,
        "inputs": inputs,
        "candidates": [dict(c.to_report(), delay_s=_t(getattr(c, "delay_s", None)))
                       for c in (analysis.candidates or [])],
        "plan_uncertainty_levels": _t(plan.uncertainty_levels) if plan is not None else None,
        "motion_mm": [_t(m) for m in (analysis.motion_mm or [])],
        "warnings": [str(w) for w in (analysis.warnings or [])],
        "notes": [str(n) for n in (list(getattr(series, "notes", []) or [])
                                   + list(getattr(analysis.anatomy, "notes", []) or []))],
        "timings_s": {str(k): _t(v, 3) for k, v in (analysis.timings_s or {}).items()},
    }
    return _json_safe(rep)


# ---------------------------------------------------------------------------- masks
def levels_volume(analysis) -> np.ndarray:
    """Per-voxel vertebra labels (TotalSegmentator ``total`` ids) on the input grid.

    Every non-OUTSIDE voxel of ``anatomy.compartments`` (sac, epidural, paraspinal shell) on a
    slice with a finite level coordinate gets the id of the nearest vertebra
    (``leakloc.levels.TOTALSEG_ID``); exact halves (disc centres) go to the cranial vertebra.

    Returns
    -------
    ndarray, shape (Z, Y, X), uint8; 0 = unlabelled
    """
    an = analysis.anatomy
    comp = np.asarray(an.compartments)
    coord = np.asarray(an.level_coord, dtype=float)
    ids = np.zeros(coord.shape, dtype=np.uint8)
    ok = np.isfinite(coord)
    # nearest vertebra, halves to the cranial one (smaller coordinate)
    idx = np.clip(np.ceil(coord[ok] - 0.5), 0, len(lv.VERTEBRAE) - 1).astype(int)
    ids[ok] = np.array([lv.TOTALSEG_ID[lv.VERTEBRAE[i]] for i in idx], dtype=np.uint8)
    return np.where(comp > 0, ids[:, None, None], 0).astype(np.uint8)


# ----------------------------------------------------------------------------- HTML
CSS = """
:root{--fg:#1b1b1b;--muted:#5b5b5b;--line:#d9d9d9;--bg:#ffffff;--leak:#b3261e;--ok:#1b6e3a;
--accent:#0b6e99;--card:#f6f7f8}
*{box-sizing:border-box}
html{-webkit-text-size-adjust:100%}
body{margin:0 auto;max-width:1100px;padding:12px 16px 40px;color:var(--fg);background:var(--bg);
font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",Arial,sans-serif}
h1{font-size:1.45em;margin:.3em 0 .2em}h2{font-size:1.15em;margin:1.4em 0 .4em;
border-bottom:1px solid var(--line);padding-bottom:.2em}
.meta{color:var(--muted);font-size:.9em}
.verdict{border-radius:8px;padding:12px 16px;margin:12px 0;border-left:8px solid}
.verdict.leak{background:#fdecea;border-color:var(--leak)}
.verdict.none{background:#e9f5ee;border-color:var(--ok)}
.verdict .big{font-size:1.3em;font-weight:700}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(230px,1fr));gap:10px}
.card{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:10px 12px}
.card b{display:block;font-size:1.15em}
.tbl{overflow-x:auto;-webkit-overflow-scrolling:touch}
table{border-collapse:collapse;width:100%;font-size:.92em}
th,td{border-bottom:1px solid var(--line);padding:4px 8px;text-align:left;white-space:nowrap}
th{background:var(--card)}
tr.hit td{background:#fff4d6;font-weight:600}
figure{margin:14px 0;page-break-inside:avoid;break-inside:avoid}
figure img{max-width:100%;height:auto;border:1px solid var(--line);border-radius:4px}
figcaption{color:var(--muted);font-size:.9em}
.warn{background:#fff7e0;border:1px solid #f0d48a;border-radius:6px;padding:8px 12px}
.phi{background:#fff0f0;border:1px dashed var(--leak);padding:8px 12px;border-radius:6px}
footer{margin-top:30px;color:var(--muted);font-size:.85em}
@media (max-width:600px){body{font-size:14px;padding:8px}th,td{padding:3px 5px}
.verdict .big{font-size:1.12em}}
@media print{body{max-width:none;font-size:11pt;padding:0}a{color:inherit;text-decoration:none}
h2{page-break-after:avoid;break-after:avoid}figure img{max-height:24cm;border:none}
.verdict,.card,table,.warn{page-break-inside:avoid;break-inside:avoid}
@page{margin:14mm}}
"""


def _e(x) -> str:
    return html.escape("" if x is None else str(x), quote=True)


def _fmt_s(v) -> str:
    f = _t(v, 1)
    return "&mdash;" if f is None else f"{f:.1f}"


def _png_data_uri(path) -> str:
    with open(path, "rb") as fh:
        return "data:image/png;base64," + base64.b64encode(fh.read()).decode("ascii")


def _redactor(patient: dict, include_phi: bool):
    """A function that removes patient identifier values from free text (unless include_phi)."""
    values = sorted({str(v).strip() for v in (patient or {}).values()
                     if v is not None and len(str(v).strip()) >= 3}, key=len, reverse=True)
    if include_phi or not values:
        return lambda s: s

    def redact(s):
        s = str(s)
        for v in values:
            s = s.replace(v, "[redacted]")
        return s
    return redact


def render_html(analysis, report: dict, figures: dict, include_phi: bool = False) -> str:
    """The self-contained ``report.html`` text.

    Parameters
    ----------
    analysis : leakloc.pipeline.Analysis
    report : dict from :func:`build_report`
    figures : dict, figure name -> PNG path (embedded as base64 data URIs)
    include_phi : bool, show ``analysis.series.patient`` identifiers

    Returns
    -------
    str, HTML5 with inline CSS, no scripts, no external resources.
    """
    from leakloc.plots import FIGURES

    series = analysis.series
    patient = dict(getattr(series, "patient", {}) or {})
    redact = _redactor(patient, include_phi)
    out = []
    w = out.append
    defects = report["defects"]
    w("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">")
    w("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">")
    w("<meta name=\"referrer\" content=\"no-referrer\">")
    w("<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
      "img-src data:; style-src 'unsafe-inline'\">")
    title = (f"CSF leak at {defects[0]['level']}" if defects else "No CSF leak found")
    w(f"<title>leakloc report: {_e(title)}</title><style>{CSS}</style></head><body>")
    w("<header><h1>leakloc: dynamic CT myelography report</h1>")
    sid = report.get("study_id")
    w(f"<div class=\"meta\">study id {_e(sid or 'unknown')} (sha256 of the StudyInstanceUID) &middot; "
      f"leakloc {_e(report.get('version'))} &middot; schema {_e(report['schema'])}</div></header>")
    if include_phi:
        w("<section class=\"phi\"><b>Patient identifiers (shown on request)</b><div class=\"tbl\"><table>")
        for k, v in patient.items():
            w(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>")
        if getattr(series, "study_uid", ""):
            w(f"<tr><th>StudyInstanceUID</th><td>{_e(series.study_uid)}</td></tr>")
        w("</table></div></section>")

    # verdict
    if defects:
        d0 = defects[0]
        w("<section class=\"verdict leak\"><div class=\"big\">CSF leak: "
          f"{_e(d0['level'])} {_e(d0['side'])} {_e(d0['kind'].replace('_', ' '))}</div>")
        w(f"<div>confidence {d0['confidence']:.0%}; extravasation first seen at "
          f"{_fmt_s(d0['onset_time_s'])} s after the first pass")
        if len(defects) > 1:
            w(f"; {len(defects)} defects reported")
        w("</div></section>")
    else:
        w("<section class=\"verdict none\"><div class=\"big\">No leak found</div>"
          "<div>No extravasated contrast that fills from the sac; no laminectomy proposed.</div></section>")

    # defects and plan
    if defects:
        w("<h2>Defects</h2><div class=\"cards\">")
        for i, d in enumerate(defects):
            w(f"<div class=\"card\"><span class=\"meta\">#{i + 1}</span> <b style=\"display:inline\">"
              f"{_e(d['level'])}</b> {_e(d['side'])} {_e(d['kind'].replace('_', ' '))}<br>"
              f"confidence {d['confidence']:.0%} &middot; onset {_fmt_s(d['onset_time_s'])} s &middot; "
              f"z {_e(d['z_mm'])} mm (LPS)</div>")
        w("</div>")
    lam = report.get("laminectomy")
    w("<h2>Laminectomy proposal</h2>")
    if lam:
        w(f"<div class=\"card\"><b>{_e(', '.join(lam['levels']))} &middot; {_e(lam['side'])}</b>"
          f"{_e(lam['note'])}<br>uncertainty &plusmn;{_e(lam.get('uncertainty_levels'))} level</div>")
    else:
        w("<p>None: no leak found.</p>")

    # candidates
    cands = report.get("candidates") or []
    w("<h2>Ranked candidates</h2>")
    if cands:
        w("<div class=\"tbl\"><table><tr><th>#</th><th>level</th><th>side</th><th>kind</th>"
          "<th>onset (s)</th><th>delay after sac (s)</th><th>confidence</th></tr>")
        for i, c in enumerate(cands):
            w(f"<tr><td>{i + 1}</td><td>{_e(c['level'])}</td><td>{_e(c['side'])}</td>"
              f"<td>{_e(c['kind'].replace('_', ' '))}</td><td>{_fmt_s(c['onset_time_s'])}</td>"
              f"<td>{_fmt_s(c.get('delay_s'))}</td><td>{c['confidence']:.0%}</td></tr>")
        w("</table></div>")
    else:
        w("<p>No candidate defect was considered.</p>")

    # figures
    w("<h2>Figures</h2>")
    for name, path in figures.items():
        cap = FIGURES.get(name, (name, None))[0]
        w(f"<figure><img alt=\"{_e(cap)}\" src=\"{_png_data_uri(path)}\">"
          f"<figcaption>{_e(cap)}</figcaption></figure>")

    # per-level table
    hit = {d["level"] for d in defects}
    hit |= {p for d in defects for p in d["level"].split("-")}
    venous = {lk.name: getattr(lk, "venous_arrival_s", None) for lk in analysis.levels}
    show_venous = any(_t(v) is not None for v in venous.values())
    w("<h2>Per-level timing</h2><div class=\"tbl\"><table><tr><th>level</th><th>z range (mm, LPS)</th>"
      "<th>intrathecal arrival (s)</th><th>epidural arrival (s)</th><th>epidural minus intrathecal (s)</th>"
      + ("<th>venous arrival (s)</th>" if show_venous else "") + "</tr>")
    for lk in report["levels"]:
        it, ep = lk.get("intrathecal_arrival_s"), lk.get("epidural_arrival_s")
        delay = (ep - it) if (it is not None and ep is not None) else None
        zr = lk.get("z_range_mm") or [None, None]
        cls = " class=\"hit\"" if lk["name"] in hit else ""
        w(f"<tr{cls}><td>{_e(lk['name'])}</td><td>{_e(zr[0])} to {_e(zr[1])}</td><td>{_fmt_s(it)}</td>"
          f"<td>{_fmt_s(ep)}</td><td>{_fmt_s(delay)}</td>"
          + (f"<td>{_fmt_s(venous.get(lk['name']))}</td>" if show_venous else "") + "</tr>")
    w("</table></div>")

    # inputs
    inp = report["inputs"]
    w("<h2>Inputs</h2><div class=\"tbl\"><table>")
    w(f"<tr><th>passes</th><td>{inp['n_phases']}</td></tr>")
    times = ", ".join(f"{p['time_s']:.1f}" if p["time_s"] is not None else "?" for p in report["phases"])
    w(f"<tr><th>pass start times (s)</th><td style=\"white-space:normal\">{_e(times)}</td></tr>")
    dirs = ", ".join(str(p.get("table_direction") or "?") for p in report["phases"])
    w(f"<tr><th>table directions</th><td style=\"white-space:normal\">{_e(dirs)}</td></tr>")
    w(f"<tr><th>grid (x, y, z voxels)</th><td>{_e(' x '.join(str(s) for s in inp['grid']))}</td></tr>")
    w(f"<tr><th>spacing (mm)</th><td>{_e(' x '.join(f'{s:g}' for s in inp['spacing_mm']))}</td></tr>")
    w(f"<tr><th>orientation</th><td>{_e(inp.get('orientation'))}, patient position "
      f"{_e(inp.get('patient_position') or 'unknown')}</td></tr>")
    if report.get("motion_mm"):
        mm = ", ".join("?" if m is None else f"{m:.1f}" for m in report["motion_mm"])
        w(f"<tr><th>motion per pass (mm)</th><td>{_e(mm)}</td></tr>")
    w("</table></div>")
    if report.get("notes"):
        w("<h3>Notes</h3><ul>" + "".join(f"<li>{_e(redact(n))}</li>" for n in report["notes"]) + "</ul>")
    if inp.get("skipped"):
        w("<h3>Skipped objects</h3><ul>" + "".join(
            f"<li>{_e(redact(s.get('path', '')))}: {_e(redact(s.get('reason', '')))}</li>"
            for s in inp["skipped"]) + "</ul>")
    w("<h2>Warnings</h2>")
    if report.get("warnings"):
        w("<div class=\"warn\"><ul>" + "".join(f"<li>{_e(redact(x))}</li>" for x in report["warnings"])
          + "</ul></div>")
    else:
        w("<p>None.</p>")
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    w(f"<footer>Generated by leakloc {_e(report.get('version'))} on {_e(stamp)}. Research software: "
      "the findings support, and do not replace, the reading of the study by a radiologist."
      "</footer></body></html>\n")
    return "".join(out)


# ----------------------------------------------------------------------------- writing
def _redact_report(report: dict, patient: dict) -> dict:
    """report.json never carries patient identifiers: scrub them from free-text fields."""
    redact = _redactor(patient, include_phi=False)
    rep = dict(report)
    rep["notes"] = [redact(n) for n in rep.get("notes", [])]
    rep["warnings"] = [redact(n) for n in rep.get("warnings", [])]
    inp = dict(rep["inputs"])
    inp["skipped"] = [{k: redact(v) if isinstance(v, str) else v for k, v in s.items()}
                      for s in inp.get("skipped", [])]
    rep["inputs"] = inp
    return rep


def write_outputs(analysis, out_dir, include_phi: bool = False, progress=None) -> dict:
    """Write report.json, report.html, figures/*.png, extravasation.nii.gz and levels.nii.gz.

    Everything is written into a temporary folder next to ``out_dir`` and moved into place only
    when all of it was written: a failure leaves ``out_dir`` as it was. Existing files of the same
    names in ``out_dir`` are replaced; ``report.json`` is moved last.

    Parameters
    ----------
    analysis : leakloc.pipeline.Analysis
    out_dir : str or path-like
    include_phi : bool, show patient identifiers in report.html (never in report.json)
    progress : callable(str), optional, told about each file written

    Returns
    -------
    dict, output name (``'report_json'``, ``'report_html'``, ``'extravasation'``, ``'levels'``,
    ``'figure:<name>'``) -> final path
    """
    from leakloc import io as lio
    from leakloc.plots import save_figures

    say = progress if progress is not None else (lambda _msg: None)
    out_dir = os.path.abspath(os.fspath(out_dir))
    parent = os.path.dirname(out_dir)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(out_dir)}.partial-", dir=parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes 0700; the final folder gets the usual mode
    try:
        grid = analysis.series.grid
        rel = {}
        figdir = os.path.join(tmp, "figures")
        os.makedirs(figdir)
        figs = save_figures(analysis, figdir, progress=lambda m: say(f"wrote {m}"))
        for name, p in figs.items():
            rel[f"figure:{name}"] = os.path.join("figures", os.path.basename(p))
        mask = np.asarray(analysis.extravasation_mask)
        if mask.shape != grid.shape_zyx:
            raise ValueError(f"extravasation mask shape {mask.shape} != grid {grid.shape_zyx}")
        lio.write_volume(os.path.join(tmp, "extravasation.nii.gz"), (mask > 0).astype(np.uint8), grid)
        rel["extravasation"] = "extravasation.nii.gz"
        say("wrote extravasation.nii.gz")
        lio.write_volume(os.path.join(tmp, "levels.nii.gz"), levels_volume(analysis), grid)
        rel["levels"] = "levels.nii.gz"
        say("wrote levels.nii.gz")
        report = build_report(analysis)
        patient = dict(getattr(analysis.series, "patient", {}) or {})
        page = render_html(analysis, report, figs, include_phi=include_phi)
        with open(os.path.join(tmp, "report.html"), "w", encoding="utf-8") as fh:
            fh.write(page)
        rel["report_html"] = "report.html"
        say("wrote report.html")
        with open(os.path.join(tmp, "report.json"), "w", encoding="utf-8") as fh:
            json.dump(_redact_report(report, patient), fh, indent=2, allow_nan=False)
            fh.write("\n")
        rel["report_json"] = "report.json"
        say("wrote report.json")
        _move_into_place(tmp, out_dir, rel)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    paths = {k: os.path.join(out_dir, v) for k, v in rel.items()}
    say(f"outputs in {out_dir}")
    return paths


def _move_into_place(tmp, out_dir, rel):
    """Move the finished outputs from ``tmp`` into ``out_dir`` (report.json last)."""
    if not os.path.exists(out_dir):
        os.replace(tmp, out_dir)
        return
    order = sorted(rel.values(), key=lambda r: (r == "report.json", r))
    os.makedirs(os.path.join(out_dir, "figures"), exist_ok=True)
    for r in order:
        os.replace(os.path.join(tmp, r), os.path.join(out_dir, r))
    shutil.rmtree(tmp, ignore_errors=True)
