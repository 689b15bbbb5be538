"""``leakloc``: the click group. Heavy imports live inside the commands so ``--help`` is instant.

Exit status: 0 done, 2 input the tool cannot use (one line on stderr), 1 internal error.
"""
from __future__ import annotations

import functools
import sys

import click

from leakloc import InputError, __version__


def _guarded(fn):
    """Turn InputError into one line on stderr and exit 2; anything else is an internal error (1)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except InputError as exc:
            click.echo(f"leakloc: error: {exc}", err=True)
            sys.exit(2)
        except (click.exceptions.Exit, click.ClickException, click.Abort, SystemExit):
            raise
        except KeyboardInterrupt:
            click.echo("leakloc: interrupted", err=True)
            sys.exit(130)
        except Exception as exc:  # noqa: BLE001 - the last line of defence
            if "--debug" in sys.argv or __import__("os").environ.get("LEAKLOC_DEBUG"):
                raise
            click.echo(f"leakloc: internal error: {type(exc).__name__}: {exc} "
                       "(set LEAKLOC_DEBUG=1 for the traceback)", err=True)
            sys.exit(1)
    return wrapper


def _times(value):
    if value is None:
        return None
    try:
        return [float(t) for t in value.split(",") if t.strip()]
    except ValueError:
        raise click.BadParameter(f"--times must be comma-separated seconds, got {value!r}")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="leakloc")
def main():
    """Localize spinal CSF leaks on dynamic CT myelography."""


@main.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path())
@click.option("--times", "times", default=None, help="Pass start times in s, e.g. 0,10,21 (volume files).")
@click.option("--study", "study_uid", default=None, help="StudyInstanceUID to read when a folder mixes studies.")
@click.option("--json", "as_json", is_flag=True, help="Print leakloc.info/1 JSON.")
@_guarded
def info(inputs, times, study_uid, as_json):
    """Passes, times, grid, orientation and skipped objects of a study."""
    from leakloc.cli.info import run
    run(inputs, _times(times), study_uid, as_json)


@main.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path())
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--times", "times", default=None, help="Pass start times in s (volume files).")
@click.option("--levels", "levels_path", default=None, type=click.Path(),
              help="Vertebra label map (TotalSegmentator 'total' ids 26-50).")
@click.option("--top-vertebra", "top_vertebra", default=None,
              help="Name of the most cranial vertebral body in the field of view, e.g. T1.")
@click.option("--study", "study_uid", default=None, help="StudyInstanceUID to read when a folder mixes studies.")
@click.option("--include-phi", is_flag=True, help="Show patient identifiers in report.html.")
@click.option("--quiet", "-q", is_flag=True, help="No progress on the terminal.")
@_guarded
def analyze(inputs, out_dir, times, levels_path, top_vertebra, study_uid, include_phi, quiet):
    """Find the dural defect and propose the laminectomy level; writes DIR/report.json."""
    from leakloc.cli.analyze import run
    run(inputs, out_dir, _times(times), levels_path, top_vertebra, study_uid, include_phi, quiet)


@main.command()
@click.option("--case", "case", default=None, help="Case library name (see --list).")
@click.option("--seed", "seed", default=None, type=int, help="Random phantom from this seed.")
@click.option("--out", "out_dir", default=None, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--format", "fmt", default="dicom", type=click.Choice(["dicom", "nifti"]), show_default=True)
@click.option("--list", "list_cases", is_flag=True, help="List the case library.")
@click.option("--shape", "shape", default="fine", show_default=True,
              type=click.Choice(["small", "medium", "fine", "full"]),
              help="Grid: small 64x64 at 2 mm / 3 mm slices, fine 128x128 at 1 mm / 2 mm slices, "
                   "full 512x512 at 0.7 mm / 1 mm slices.")
@_guarded
def phantom(case, seed, out_dir, fmt, list_cases, shape):
    """Write a synthetic dynamic CT myelogram with its ground truth (truth.json)."""
    from leakloc.cli.phantom import run
    run(case, seed, out_dir, fmt, list_cases, shape)


@main.command()
@click.option("--out", "out_dir", default="leakloc-demo", show_default=True,
              type=click.Path(file_okay=False), help="Output folder.")
@click.option("--case", "case", default="fig10e_t7t8", show_default=True, help="Phantom case to use.")
@click.option("--quiet", "-q", is_flag=True, help="No progress on the terminal.")
@_guarded
def demo(out_dir, case, quiet):
    """Make a phantom study, analyse it and write the report: no input needed."""
    from leakloc.cli.analyze import run_demo
    run_demo(out_dir, case, quiet)


if __name__ == "__main__":  # pragma: no cover
    main()
