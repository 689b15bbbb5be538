"""``leakloc analyze`` and ``leakloc demo`` end to end through the command line (CliRunner).

Small phantoms are written with ``leakloc phantom`` (NIfTI and DICOM) into temporary folders and
analysed. These tests check the contract of the command, not the detection accuracy: exit codes,
the terminal summary, the ``leakloc.report/1`` keys and their internal consistency, the outputs
written whole, inputs never modified, and one clear line (exit 2) for input the tool cannot use.
The detected level is deliberately not asserted here (accuracy has its own tests).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from leakloc import levels as lv
from leakloc.cli.main import main

SIDES = {"ventral", "dorsal", "left", "right"}
KINDS = {"dural_tear", "nerve_root_sleeve", "csf_venous_fistula"}
FIGURES = {"level_time_map.png", "time_attenuation.png", "mips.png", "axial.png", "plan.png"}
OUTPUTS = {"report.json", "report.html", "extravasation.nii.gz", "levels.nii.gz", "figures"}

NIFTI_CASE = "fig10e_t7t8"        # 6 passes, 64 x 64 x 124, top vertebra T1
DICOM_CASE = "control_diverticula"  # 6 passes, 64 x 64 x 155, top vertebra C7, no leak


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def tree_digest(root) -> dict:
    """Relative path -> (sha256, size, mtime_ns) of every file under ``root``."""
    out = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            p = os.path.join(dirpath, name)
            with open(p, "rb") as fh:
                h = hashlib.sha256(fh.read()).hexdigest()
            st = os.stat(p)
            out[os.path.relpath(p, root)] = (h, st.st_size, st.st_mtime_ns)
    return out


def leftovers(parent) -> list:
    """Temporary/partial entries left next to an output folder."""
    return sorted(n for n in os.listdir(parent) if n.startswith(".") or "partial" in n or n.endswith(".tmp"))


def write_phantom(folder: Path, case: str, fmt: str) -> dict:
    r = invoke("phantom", "--case", case, "--format", fmt, "--out", folder, "--shape", "small")
    assert r.exit_code == 0, r.output
    assert f"wrote phantom {case}" in r.stdout
    truth = json.loads((folder / "truth.json").read_text())
    return {"root": folder, "study": folder / "study", "levels": folder / "levels.nii.gz", "truth": truth}


@pytest.fixture(scope="module")
def nifti_phantom(tmp_path_factory):
    return write_phantom(tmp_path_factory.mktemp("nifti") / "case", NIFTI_CASE, "nifti")


@pytest.fixture(scope="module")
def dicom_phantom(tmp_path_factory):
    return write_phantom(tmp_path_factory.mktemp("dicom") / "case", DICOM_CASE, "dicom")


@pytest.fixture(scope="module")
def analyzed(nifti_phantom, tmp_path_factory):
    """One ``leakloc analyze`` run on the NIfTI phantom (with progress), inputs hashed around it."""
    before = tree_digest(nifti_phantom["root"])
    out = tmp_path_factory.mktemp("analyze") / "report"
    r = invoke("analyze", nifti_phantom["study"], "--top-vertebra", "T1", "--out", out)
    after = tree_digest(nifti_phantom["root"])
    return {"result": r, "out": out, "before": before, "after": after}


def study_info(study) -> dict:
    r = invoke("info", study, "--json")
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def check_report(report: dict, info: dict) -> None:
    """Schema keys of leakloc.report/1 and the report's internal consistency."""
    for key in ("schema", "leak_detected", "defects", "laminectomy", "levels", "phases", "inputs"):
        assert key in report, key
    assert report["schema"] == "leakloc.report/1"
    assert isinstance(report["leak_detected"], bool)
    defects = report["defects"]
    assert isinstance(defects, list)
    assert report["leak_detected"] == bool(defects)

    # levels: valid vertebra names, cranial first, ordered non-overlapping z ranges
    names = [lev["name"] for lev in report["levels"]]
    assert names, "no levels reported"
    assert all(n in lv.VERTEBRAE for n in names), names
    idx = [lv.index(n) for n in names]
    assert idx == sorted(set(idx)), names
    for lev in report["levels"]:
        assert set(lev) >= {"name", "z_range_mm", "intrathecal_arrival_s", "epidural_arrival_s"}
        lo, hi = lev["z_range_mm"]
        assert lo <= hi, lev
        for key in ("intrathecal_arrival_s", "epidural_arrival_s"):
            t = lev[key]
            assert t is None or (isinstance(t, (int, float)) and math.isfinite(t) and t >= 0), lev
    z_lo = min(lev["z_range_mm"][0] for lev in report["levels"])
    z_hi = max(lev["z_range_mm"][1] for lev in report["levels"])

    # defects: valid names, sides, kinds; confidence in [0, 1], ranked most probable first
    for d in defects:
        assert set(d) >= {"level", "z_mm", "side", "kind", "onset_time_s", "confidence"}
        lv.coord_of(d["level"])  # raises on a name that is neither a vertebra nor an interspace
        assert d["side"] in SIDES and d["kind"] in KINDS, d
        assert 0.0 <= d["confidence"] <= 1.0, d
        assert z_lo - 1e-6 <= d["z_mm"] <= z_hi + 1e-6, d
        assert math.isfinite(d["onset_time_s"]) and d["onset_time_s"] >= 0, d
    conf = [d["confidence"] for d in defects]
    assert conf == sorted(conf, reverse=True), conf

    # laminectomy: null iff no defects; vertebrae that cover the top defect
    lam = report["laminectomy"]
    if defects:
        assert lam is not None and set(lam) >= {"levels", "side", "note"}
        assert lam["levels"] and all(n in lv.VERTEBRAE for n in lam["levels"]), lam
        assert lam["side"] in {"left", "right", "bilateral"}, lam
        assert isinstance(lam["note"], str) and lam["note"]
        top = lv.coord_of(defects[0]["level"])
        coords = [lv.coord_of(n) for n in lam["levels"]]
        assert min(coords) <= top <= max(coords), (defects[0], lam)
    else:
        assert lam is None

    # phases and inputs agree with `leakloc info --json` on the same study
    assert [p["index"] for p in report["phases"]] == list(range(len(info["phases"])))
    assert [p["time_s"] for p in report["phases"]] == pytest.approx([p["time_s"] for p in info["phases"]])
    inputs = report["inputs"]
    assert inputs["n_phases"] == len(info["phases"]) == len(report["phases"])
    assert inputs["grid"] == info["grid"]["size"]
    assert inputs["spacing_mm"] == pytest.approx(info["grid"]["spacing_mm"])


def check_outputs(out: Path) -> dict:
    assert set(os.listdir(out)) >= OUTPUTS, sorted(os.listdir(out))
    assert set(os.listdir(out / "figures")) >= FIGURES
    for p in [out / n for n in OUTPUTS if n != "figures"] + [out / "figures" / n for n in FIGURES]:
        assert p.stat().st_size > 0, p
    assert leftovers(out.parent) == []
    return json.loads((out / "report.json").read_text())


def check_summary(stdout: str, report: dict, out: Path) -> None:
    lines = stdout.splitlines()
    defect_lines = [ln for ln in lines if ln.startswith("defect ")]
    assert len(defect_lines) == len(report["defects"])
    for i, (ln, d) in enumerate(zip(defect_lines, report["defects"]), 1):
        assert ln.startswith(f"defect {i}: {d['level']} {d['side']} {d['kind'].replace('_', ' ')}"), ln
    if report["defects"]:
        lam = report["laminectomy"]
        assert any(ln.startswith(f"laminectomy: {', '.join(lam['levels'])} ({lam['side']})") for ln in lines)
    else:
        assert any(ln.startswith("no leak") for ln in lines), stdout
    assert f"report: {os.path.join(str(out), 'report.json')}" in lines


def check_one_line_error(r, *needles) -> str:
    assert r.exit_code == 2, (r.exit_code, r.output)
    err = r.stderr.strip().splitlines()
    assert len(err) == 1, r.stderr
    assert err[0].startswith("leakloc: error: "), err
    assert "Traceback" not in r.output
    for n in needles:
        assert n in err[0], (n, err[0])
    return err[0]


# --------------------------------------------------------------------------------------- imports

def test_cli_import_is_light():
    """`leakloc --help` and `leakloc analyze --help` import no numeric stack (instant start)."""
    code = (
        "import sys\n"
        "from leakloc.cli.main import main\n"
        "for args in (['--help'], ['analyze', '--help'], ['demo', '--help']):\n"
        "    try:\n"
        "        main(args)\n"
        "    except SystemExit as e:\n"
        "        assert e.code == 0, (args, e.code)\n"
        "heavy = sorted(m for m in ('numpy', 'scipy', 'numba', 'SimpleITK', 'matplotlib', 'pydicom',"
        " 'dask') if m in sys.modules)\n"
        "sys.stderr.write('HEAVY=' + ','.join(heavy) + '\\n')\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "Usage: " in p.stdout and "analyze" in p.stdout
    assert "HEAVY=\n" in p.stderr, p.stderr


def test_help_lists_the_four_commands():
    r = invoke("--help")
    assert r.exit_code == 0
    for cmd in ("analyze", "info", "phantom", "demo"):
        assert f"  {cmd} " in r.stdout, r.stdout


# ------------------------------------------------------------------------------ analyze (NIfTI)

def test_analyze_nifti_exit_0_and_summary(analyzed):
    r = analyzed["result"]
    assert r.exit_code == 0, r.output
    report = json.loads((analyzed["out"] / "report.json").read_text())
    check_summary(r.stdout, report, analyzed["out"])
    # progress goes to stderr, never to stdout
    assert "reading 1 input(s)" in r.stderr
    assert "reading" not in r.stdout


def test_analyze_nifti_report_schema_and_consistency(analyzed, nifti_phantom):
    assert analyzed["result"].exit_code == 0, analyzed["result"].output
    report = check_outputs(analyzed["out"])
    info = study_info(nifti_phantom["study"])
    check_report(report, info)
    assert report["inputs"]["n_phases"] == 6
    assert report["inputs"]["grid"] == [64, 64, 124]
    # --top-vertebra T1: the most cranial body is T1, so nothing above C7 (a partial C7 may show)
    assert lv.index(report["levels"][0]["name"]) >= lv.index("C7")


def test_analyze_does_not_modify_inputs(analyzed):
    assert analyzed["result"].exit_code == 0, analyzed["result"].output
    assert analyzed["before"], "no input files hashed"
    assert analyzed["after"] == analyzed["before"]


def test_analyze_with_levels_labelmap(nifti_phantom, tmp_path):
    before = tree_digest(nifti_phantom["root"])
    out = tmp_path / "rep"
    r = invoke("analyze", nifti_phantom["study"], "--levels", nifti_phantom["levels"], "--out", out, "-q")
    assert r.exit_code == 0, r.output
    assert r.stderr == ""  # --quiet: nothing on stderr
    assert tree_digest(nifti_phantom["root"]) == before
    report = check_outputs(out)
    check_report(report, study_info(nifti_phantom["study"]))
    check_summary(r.stdout, report, out)
    # the levels come from the label map: every fully imaged vertebra's centre lies in its range
    from leakloc import io
    lab = np.asarray(io.read_labelmap(str(nifti_phantom["levels"]), io.read_series(
        [str(nifti_phantom["study"])]).grid))
    z_of = _slice_z_mm(nifti_phantom["study"])
    ranges = {lev["name"]: lev["z_range_mm"] for lev in report["levels"]}
    checked = 0
    for lab_id in np.unique(lab):
        if lab_id not in lv.TOTALSEG_NAME:
            continue
        ks = np.nonzero((lab == lab_id).any(axis=(1, 2)))[0]
        if ks.min() == 0 or ks.max() == lab.shape[0] - 1:
            continue  # cut by the field of view
        name = lv.TOTALSEG_NAME[int(lab_id)]
        assert name in ranges, (name, sorted(ranges))
        zc = 0.5 * (z_of[ks.min()] + z_of[ks.max()])
        lo, hi = ranges[name]
        assert lo <= zc <= hi, (name, zc, lo, hi)
        checked += 1
    assert checked >= 8


def _slice_z_mm(study) -> np.ndarray:
    """LPS z of every slice (k) of the study's grid, from `leakloc info --json`."""
    g = study_info(study)["grid"]
    nz = g["size"][2]
    d = np.asarray(g["direction"], dtype=float).reshape(3, 3)
    return g["origin_mm"][2] + d[2, 2] * g["spacing_mm"][2] * np.arange(nz)


# ------------------------------------------------------------------------------ analyze (DICOM)

def test_analyze_dicom(dicom_phantom, tmp_path):
    before = tree_digest(dicom_phantom["root"])
    out = tmp_path / "rep"
    r = invoke("analyze", dicom_phantom["study"], "--levels", dicom_phantom["levels"], "--out", out, "-q")
    assert r.exit_code == 0, r.output
    assert tree_digest(dicom_phantom["root"]) == before
    report = check_outputs(out)
    check_report(report, study_info(dicom_phantom["study"]))
    check_summary(r.stdout, report, out)
    assert report["inputs"]["grid"] == [64, 64, 155]
    assert report["inputs"]["n_phases"] == 6


# ---------------------------------------------------------------------------- bad input: exit 2

def test_analyze_missing_path(tmp_path):
    missing = tmp_path / "nowhere"
    r = invoke("analyze", missing, "--top-vertebra", "T1", "--out", tmp_path / "rep", "-q")
    check_one_line_error(r, str(missing))
    assert not (tmp_path / "rep").exists()


def test_analyze_one_pass_only(nifti_phantom, tmp_path):
    one = tmp_path / "one"
    one.mkdir()
    (one / "pass_00.nii.gz").write_bytes((nifti_phantom["study"] / "pass_00.nii.gz").read_bytes())
    r = invoke("analyze", one / "pass_00.nii.gz", "--times", "0", "--top-vertebra", "T1",
               "--out", tmp_path / "rep", "-q")
    line = check_one_line_error(r)
    assert "pass" in line
    assert not (tmp_path / "rep").exists()
    assert leftovers(tmp_path) == []


def test_analyze_unknown_top_vertebra(nifti_phantom, tmp_path):
    r = invoke("analyze", nifti_phantom["study"], "--top-vertebra", "X9", "--out", tmp_path / "rep", "-q")
    check_one_line_error(r, "--top-vertebra", "X9")
    assert not (tmp_path / "rep").exists()


def test_analyze_without_level_anchor(nifti_phantom, tmp_path):
    r = invoke("analyze", nifti_phantom["study"], "--out", tmp_path / "rep", "-q")
    check_one_line_error(r, "--levels", "--top-vertebra")
    assert not (tmp_path / "rep").exists()


def test_analyze_labelmap_on_another_grid(nifti_phantom, tmp_path):
    from leakloc import io
    grid = io.read_series([str(nifti_phantom["study"])]).grid
    nz, ny, nx = grid.shape_zyx
    small = io.Grid(size=(nx // 2, ny // 2, nz), spacing_mm=tuple(2 * s for s in grid.spacing_mm[:2])
                    + (grid.spacing_mm[2],), origin_mm=grid.origin_mm, direction=grid.direction)
    bad = tmp_path / "levels_half.nii.gz"
    io.write_volume(str(bad), np.full(small.shape_zyx, 43, dtype=np.int16), small)
    r = invoke("analyze", nifti_phantom["study"], "--levels", bad, "--out", tmp_path / "rep", "-q")
    check_one_line_error(r, str(bad), "grid")
    assert not (tmp_path / "rep").exists()


def test_analyze_no_contrast_leaves_no_output(nifti_phantom, tmp_path):
    """Two copies of the pre-contrast pass: cannot be analysed (exit 2), nothing written."""
    src = tmp_path / "src"
    src.mkdir()
    data = (nifti_phantom["study"] / "pass_00.nii.gz").read_bytes()
    (src / "a.nii.gz").write_bytes(data)
    (src / "b.nii.gz").write_bytes(data)
    out = tmp_path / "rep"
    r = invoke("analyze", src / "a.nii.gz", src / "b.nii.gz", "--times", "0,10", "--top-vertebra", "T1",
               "--out", out, "-q")
    check_one_line_error(r, "contrast")
    assert not out.exists()
    assert sorted(os.listdir(tmp_path)) == ["src"]


def test_analyze_failure_while_writing_keeps_out_dir(nifti_phantom, tmp_path, monkeypatch):
    """An internal error while writing the outputs: exit 1, the out dir exactly as it was."""
    import leakloc.report

    def boom(*a, **k):
        raise RuntimeError("boom while rendering")
    monkeypatch.setattr(leakloc.report, "render_html", boom)
    monkeypatch.delenv("LEAKLOC_DEBUG", raising=False)
    out = tmp_path / "rep"
    out.mkdir()
    (out / "keep.txt").write_text("an earlier file\n")
    before = tree_digest(out)
    r = invoke("analyze", nifti_phantom["study"], "--top-vertebra", "T1", "--out", out, "-q")
    assert r.exit_code == 1, r.output
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("leakloc: internal error: RuntimeError: boom"), r.stderr
    assert tree_digest(out) == before
    assert sorted(os.listdir(tmp_path)) == ["rep"]


# ----------------------------------------------------------------------------------------- demo

def test_demo_end_to_end(tmp_path):
    out = tmp_path / "demo"
    r = invoke("demo", "--out", out, "-q")
    assert r.exit_code == 0, r.output
    report = check_outputs(out)
    for key in ("schema", "leak_detected", "defects", "laminectomy", "levels", "phases", "inputs"):
        assert key in report
    check_summary(r.stdout, report, out)
    # the demo prints the phantom's ground truth after its summary
    assert r.stdout.splitlines()[-1] == "truth: T7-T8 ventral dural tear"
    assert report["inputs"]["n_phases"] == len(report["phases"]) >= 2
    assert (report["laminectomy"] is None) == (not report["defects"])
    assert all(0.0 <= d["confidence"] <= 1.0 for d in report["defects"])


def test_demo_unknown_case(tmp_path):
    r = invoke("demo", "--case", "nope", "--out", tmp_path / "demo", "-q")
    check_one_line_error(r, "nope")
    assert not (tmp_path / "demo").exists()
