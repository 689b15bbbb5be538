"""``leakloc info``: passes, times, grid, orientation, HU range and skipped objects of a study."""
from __future__ import annotations

import json

import click
import numpy as np

SCHEMA = "leakloc.info/1"


def study_info(series) -> dict:
    """The ``leakloc.info/1`` dictionary of a :class:`leakloc.io.PhaseSeries`.

    Reads every pass once, one at a time, for the HU range ``[min, max]``.
    """
    lo, hi = np.inf, -np.inf
    for i in range(series.n_phases):
        vol = series.phase(i)
        lo, hi = min(lo, float(vol.min())), max(hi, float(vol.max()))
    grid = series.grid
    return {
        "schema": SCHEMA,
        "phases": [{"index": int(p.index),
                    "series_number": None if p.series_number is None else int(p.series_number),
                    "time_s": round(float(p.time_s), 3), "duration_s": round(float(p.duration_s), 3),
                    "table_direction": p.table_direction} for p in series.phases],
        "grid": {"size": [int(v) for v in grid.size],
                 "spacing_mm": [float(v) for v in grid.spacing_mm],
                 "origin_mm": [float(v) for v in grid.origin_mm],
                 "direction": [float(v) for v in grid.direction],
                 "orientation": grid.orientation_code(),
                 "patient_position": series.patient_position},
        "hu_range": [lo, hi],
        "skipped": [{"path": str(s["path"]), "reason": str(s["reason"])} for s in series.skipped],
    }


def _text(info: dict, series) -> str:
    g = info["grid"]
    lines = [f"{len(info['phases'])} pass{'es' if len(info['phases']) != 1 else ''}"
             + (f" (study {series.study_uid})" if series.study_uid else "")]
    lines.append(f"  {'#':>3} {'series':>6} {'start s':>8} {'dur s':>6}  table")
    for p in info["phases"]:
        sn = "-" if p["series_number"] is None else str(p["series_number"])
        lines.append(f"  {p['index']:>3} {sn:>6} {p['time_s']:>8.1f} {p['duration_s']:>6.1f}  "
                     f"{p['table_direction']}")
    lines.append("grid: size {} voxels, spacing {} mm, origin {} mm".format(
        " x ".join(str(v) for v in g["size"]),
        " x ".join(f"{v:g}" for v in g["spacing_mm"]),
        ", ".join(f"{v:.1f}" for v in g["origin_mm"])))
    lines.append(f"orientation: {g['orientation']}, patient position: "
                 f"{g['patient_position'] or 'unknown'}")
    lines.append(f"HU range: {info['hu_range'][0]:g} .. {info['hu_range'][1]:g}")
    for note in series.notes:
        lines.append(f"note: {note}")
    if info["skipped"]:
        lines.append(f"skipped {len(info['skipped'])}:")
        for s in info["skipped"]:
            lines.append(f"  {s['path']}: {s['reason']}")
    if len(info["phases"]) < 2:
        lines.append("note: one pass only; an analysis needs two or more")
    return "\n".join(lines)


def run(inputs, times_s, study_uid, as_json) -> None:
    """Print the study summary (text, or ``leakloc.info/1`` JSON with ``as_json``)."""
    from leakloc.io import read_series

    series = read_series(list(inputs), times_s=times_s, study_uid=study_uid, cache_size=1)
    info = study_info(series)
    if as_json:
        click.echo(json.dumps(info, indent=2))
    else:
        click.echo(_text(info, series))
