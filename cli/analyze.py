"""``leakloc analyze`` and ``leakloc demo``."""
from __future__ import annotations

import os

import click

#: phantom shape of ``leakloc demo``
DEMO_SHAPE = "fine"


def _progress(quiet):
    if quiet:
        return None

    def say(msg):
        click.echo(f"  {msg}", err=True)
    return say


def summary_lines(analysis, out_dir) -> list:
    """What the terminal shows after an analysis."""
    lines = []
    if analysis.defects:
        for i, d in enumerate(analysis.defects, 1):
            lines.append(f"defect {i}: {d.level} {d.side} {d.kind.replace('_', ' ')}, onset "
                         f"{d.onset_time_s:.1f} s, confidence {d.confidence:.2f}")
        p = analysis.plan
        lines.append(f"laminectomy: {', '.join(p.levels)} ({p.side}); {p.note}; "
                     f"+/-{p.uncertainty_levels:g} level")
    else:
        lines.append("no leak: no contrast leaves the thecal sac")
    for w in analysis.warnings:
        lines.append(f"warning: {w}")
    lines.append(f"report: {os.path.join(out_dir, 'report.json')}")
    return lines


def analyze_series(series, out_dir, levels_path=None, top_vertebra=None, include_phi=False,
                   quiet=False):
    """Analyse an already-read series and write the outputs; returns the Analysis."""
    from leakloc import io
    from leakloc.pipeline import analyze
    from leakloc.report import write_outputs

    say = _progress(quiet)
    levels_map = io.read_labelmap(levels_path, series.grid) if levels_path else None
    if say:
        say(f"{series.n_phases} passes, grid {tuple(series.grid.size)}")
    result = analyze(series, levels_map=levels_map, top_vertebra=top_vertebra, progress=say)
    write_outputs(result, out_dir, include_phi=include_phi, progress=say)
    for line in summary_lines(result, out_dir):
        click.echo(line)
    return result


def run(inputs, out_dir, times_s, levels_path, top_vertebra, study_uid, include_phi, quiet):
    from leakloc import io

    if not quiet:
        click.echo(f"  reading {len(inputs)} input(s)", err=True)
    series = io.read_series(list(inputs), times_s=times_s, study_uid=study_uid)
    analyze_series(series, out_dir, levels_path, top_vertebra, include_phi, quiet)


def run_demo(out_dir, case, quiet):
    from leakloc.phantoms import CASES, generate

    if case not in CASES:
        from leakloc import InputError
        raise InputError(f"--case {case!r}: not in the case library ({', '.join(sorted(CASES))})")
    if not quiet:
        click.echo(f"  making phantom {case!r} ({CASES[case].figure})", err=True)
    # 1 mm in-plane, 2 mm slices: closer to a real dynamic CT myelogram than the test phantoms
    study = generate(case=case, shape=DEMO_SHAPE)
    series = study.series()
    series.cache_size = study.n_phases      # render each pass once
    result = analyze_series(series, out_dir, None, study.top_vertebra, False, quiet)
    truth = study.truth
    if truth.get("defects"):
        t = truth["defects"][0]
        click.echo(f"truth: {t['level']} {t['side']} {t['kind'].replace('_', ' ')}")
    else:
        click.echo("truth: no leak")
    return result
