"""``leakloc phantom``: write a synthetic dynamic CT myelogram with its ground truth."""
from __future__ import annotations

import click

from leakloc import InputError


def run(case, seed, out_dir, fmt, list_cases, shape="fine"):
    """List the case library, or write one phantom (``--case`` or ``--seed``) to ``out_dir``."""
    from leakloc.phantoms import CASES, generate, write_study

    if list_cases:
        width = max(len(n) for n in CASES)
        for name, spec in CASES.items():
            click.echo(f"{name:<{width}}  {spec.figure:<13}  {spec.description}")
        return
    if case is None and seed is None:
        raise InputError("phantom: give --case NAME or --seed N (see --list)")
    if out_dir is None:
        raise InputError("phantom: give --out DIR")
    if case is not None and case not in CASES:
        raise InputError(f"--case {case!r}: not in the case library ({', '.join(CASES)})")
    study = generate(case=case, seed=seed, shape=shape)
    paths = write_study(study, out_dir, fmt=fmt)
    t = study.truth
    label = case or f"seed {seed}"
    click.echo(f"wrote phantom {label} ({study.figure}) to {out_dir}: {study.n_phases} passes, "
               f"grid {'x'.join(str(s) for s in study.grid.size)}, {fmt}, {study.patient_position}, "
               f"top vertebra {study.top_vertebra}")
    click.echo(f"  passes:    {paths['study']}")
    click.echo(f"  levels:    {paths['levels']}")
    click.echo(f"  truth:     {paths['truth']}")
    if t["defects"]:
        for d in t["defects"]:
            click.echo(f"  truth: {d['level']} {d['side']} {d['kind'].replace('_', ' ')} "
                       f"({d['flow']} flow), onset {d['onset_time_s']:.1f} s")
    else:
        click.echo("  truth: no leak")
    click.echo(f"  analyse:   leakloc analyze {paths['study']} --levels {paths['levels']} --out REPORT_DIR")
