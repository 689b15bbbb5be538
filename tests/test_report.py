"""report.json per SPEC, report.html self-contained and PHI-free, masks on the input grid, atomic outputs."""
from __future__ import annotations

import hashlib
import json
import os
import re

import numpy as np
import pytest
import SimpleITK as sitk

import leakloc.io
from fake_analysis import LEVELS, PATIENT, STUDY_UID, TIMES_S, make_analysis
from leakloc import __version__, report
from leakloc.levels import TOTALSEG_ID
from leakloc.plan import Plan

REQUIRED = {"schema", "leak_detected", "defects", "laminectomy", "levels", "phases", "inputs"}
OUTPUT_FILES = ["report.json", "report.html", "extravasation.nii.gz", "levels.nii.gz",
                "figures/level_time_map.png", "figures/time_attenuation.png", "figures/mips.png",
                "figures/axial.png", "figures/plan.png"]


@pytest.fixture(scope="module")
def leak():
    return make_analysis()


@pytest.fixture(scope="module")
def written(tmp_path_factory, leak):
    out = tmp_path_factory.mktemp("rep") / "out"
    seen = []
    paths = report.write_outputs(leak, out, progress=seen.append)
    return out, paths, seen


def _all_text(folder):
    with open(folder / "report.html", encoding="utf-8") as fh:
        page = fh.read()
    with open(folder / "report.json", encoding="utf-8") as fh:
        js = fh.read()
    return page, js


# ------------------------------------------------------------------ report.json
def test_build_report_schema_and_values(leak):
    rep = report.build_report(leak)
    assert REQUIRED <= set(rep)
    assert rep["schema"] == "leakloc.report/1"
    assert rep["version"] == __version__
    assert rep["leak_detected"] is True
    assert rep["defects"] == [{"level": "T7-T8", "z_mm": -398.0, "side": "ventral", "kind": "dural_tear",
                               "onset_time_s": 23.4, "confidence": 0.94}]
    assert rep["laminectomy"] == {"levels": ["T7", "T8"], "side": "bilateral",
                                  "note": "ventral tear: transdural approach", "uncertainty_levels": 0.5}
    assert [lk["name"] for lk in rep["levels"]] == LEVELS
    t7 = rep["levels"][3]
    assert t7 == {"name": "T7", "z_range_mm": [-398.0, -364.0], "intrathecal_arrival_s": 19.0,
                  "epidural_arrival_s": 23.4}
    assert rep["levels"][0]["epidural_arrival_s"] is None  # T4 never: null, not NaN
    assert [(p["index"], p["time_s"]) for p in rep["phases"]] == list(enumerate(TIMES_S.tolist()))
    assert rep["inputs"]["n_phases"] == 6
    assert rep["inputs"]["grid"] == [40, 32, 120]
    assert rep["inputs"]["spacing_mm"] == [1.0, 1.0, 2.0]
    assert rep["study_id"] == hashlib.sha256(STUDY_UID.encode()).hexdigest()[:12]
    assert [c["level"] for c in rep["candidates"]] == ["T7-T8", "T9"]
    json.dumps(rep, allow_nan=False)  # JSON-safe


def test_build_report_no_leak_forces_null_laminectomy():
    a = make_analysis(leak=False)
    a.plan = Plan(levels=["T7"], side="left", note="stale")  # a plan without defects is not reported
    rep = report.build_report(a)
    assert rep["leak_detected"] is False
    assert rep["defects"] == []
    assert rep["laminectomy"] is None
    assert all(lk["epidural_arrival_s"] is None for lk in rep["levels"])
    json.dumps(rep, allow_nan=False)


def test_json_safe_converts_numpy_and_nan():
    out = report._json_safe({"a": np.float32(np.nan), "b": np.arange(3), "c": (np.int64(2), float("inf")),
                             "d": np.bool_(True)})
    assert out == {"a": None, "b": [0, 1, 2], "c": [2, None], "d": True}


# ------------------------------------------------------------------ write_outputs
def test_write_outputs_files_and_progress(written):
    out, paths, seen = written
    for rel in OUTPUT_FILES:
        assert (out / rel).is_file(), rel
    assert paths["report_json"] == str(out / "report.json")
    assert paths["levels"] == str(out / "levels.nii.gz")
    # one progress message per file written, report.json last among the files
    assert len([m for m in seen if m.startswith("wrote ")]) == len(OUTPUT_FILES)
    assert seen[-2] == "wrote report.json"
    with open(out / "report.json", encoding="utf-8") as fh:
        rep = json.load(fh)
    assert rep["defects"][0]["level"] == "T7-T8"
    # nothing else is left next to the output folder (no temporary folders)
    assert sorted(os.listdir(out.parent)) == ["out"]


@pytest.mark.parametrize("orientation, cranial_step", [("LPS", 1), ("RAS", -1)])
def test_masks_on_the_input_grid(tmp_path, orientation, cranial_step):
    a = make_analysis(orientation=orientation, cranial_step=cranial_step)
    paths = report.write_outputs(a, tmp_path / "o")
    g = a.series.grid
    for key in ("extravasation", "levels"):
        img = sitk.ReadImage(paths[key])
        assert img.GetSize() == tuple(g.size)
        assert img.GetSpacing() == pytest.approx(g.spacing_mm)
        assert img.GetOrigin() == pytest.approx(g.origin_mm)
        assert img.GetDirection() == pytest.approx(g.direction)
    ext = sitk.GetArrayFromImage(sitk.ReadImage(paths["extravasation"]))
    assert np.array_equal(ext, a.extravasation_mask)
    assert ext.sum() > 0
    lab = sitk.GetArrayFromImage(sitk.ReadImage(paths["levels"]))
    # the defect lies in the T7-T8 region; T7's middle slice, canal centre -> T7's TotalSegmentator id
    t7 = next(lev for lev in a.anatomy.levels if lev.name == "T7")
    k = (t7.slices[0] + t7.slices[1]) // 2
    assert lab[k, 16, 20] == TOTALSEG_ID["T7"] == 37
    assert lab[k, 16, 20 + 9] == 37  # paraspinal shell is labelled too
    assert lab[k, 0, 0] == 0  # outside
    # the world position of that voxel lies inside T7's z range
    z = g.index_to_lps([20, 16, k])[2]
    assert t7.z_range_mm[0] <= z <= t7.z_range_mm[1]
    assert set(np.unique(lab)) == {0} | {TOTALSEG_ID[n] for n in LEVELS}


def test_levels_volume_half_goes_cranial():
    a = make_analysis()
    a.anatomy.level_coord = np.full(a.anatomy.level_coord.shape, 13.5)  # T7-T8 disc everywhere
    a.anatomy.level_coord[0] = np.nan
    lab = report.levels_volume(a)
    assert lab[5, 16, 20] == TOTALSEG_ID["T7"]
    assert lab[0].max() == 0


# ------------------------------------------------------------------ report.html
def test_html_self_contained(written):
    out, _paths, _seen = written
    page, _js = _all_text(out)
    assert page.startswith("<!DOCTYPE html>")
    assert '<meta name="viewport"' in page
    assert "@media print" in page and "@media (max-width" in page
    assert "<script" not in page.lower()
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.I)
    assert "@import" not in page and "url(" not in page
    assert page.count('src="data:image/png;base64,') == 5
    assert "venous arrival" not in page
    for word in ("CSF leak: T7-T8 ventral dural tear", "T7, T8", "bilateral", "transdural",
                 "Ranked candidates", "Per-level timing", f"leakloc {__version__}", "motion of 0.6 mm",
                 "phase 3 resampled", "fake/scout", "0.0, 12.0, 22.0, 33.0, 45.0, 120.0", "94%"):
        assert word in page, word


def test_html_fistula_shows_venous_arrivals(tmp_path):
    a = make_analysis(kind="csf_venous_fistula", side="right")
    a.levels[3].venous_arrival_s = 31.25
    report.write_outputs(a, tmp_path / "o")
    page, _js = _all_text(tmp_path / "o")
    assert "venous arrival (s)" in page and "<td>31.2</td>" in page
    assert "T7-T8</b> right csf venous fistula" in page


def test_html_no_leak(tmp_path):
    report.write_outputs(make_analysis(leak=False), tmp_path / "o")
    page, js = _all_text(tmp_path / "o")
    assert "No leak found" in page and "CSF leak:" not in page
    assert json.loads(js)["laminectomy"] is None


def test_phi_hidden_by_default(written):
    out, _paths, _seen = written
    page, js = _all_text(out)
    for value in list(PATIENT.values()) + [STUDY_UID]:
        assert value not in page and value not in js, value
    assert hashlib.sha256(STUDY_UID.encode()).hexdigest()[:12] in page


def test_phi_shown_on_request_and_redacted_from_free_text(tmp_path):
    a = make_analysis()
    a.series.skipped = [{"path": "import/DOE^JANE/scout", "reason": "localizer"}]
    report.write_outputs(a, tmp_path / "plain")
    page, js = _all_text(tmp_path / "plain")
    assert "DOE^JANE" not in page and "DOE^JANE" not in js
    assert "import/[redacted]/scout" in page
    report.write_outputs(a, tmp_path / "phi", include_phi=True)
    page, js = _all_text(tmp_path / "phi")
    assert "DOE^JANE" in page and "MRN-0042-XYZ" in page and STUDY_UID in page
    assert "DOE^JANE" not in js and "MRN-0042-XYZ" not in js  # report.json never carries PHI


# ------------------------------------------------------------------ atomicity
def _fail_on_levels(real):
    def write(path, array, grid):
        if str(path).endswith("levels.nii.gz"):
            raise RuntimeError("disk full")
        return real(path, array, grid)
    return write


def test_failure_leaves_no_partial_output(tmp_path, monkeypatch, leak):
    monkeypatch.setattr(leakloc.io, "write_volume", _fail_on_levels(leakloc.io.write_volume))
    with pytest.raises(RuntimeError, match="disk full"):
        report.write_outputs(leak, tmp_path / "out")
    assert os.listdir(tmp_path) == []  # neither the folder nor a temporary one


def test_failure_keeps_previous_outputs(tmp_path, monkeypatch, leak):
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.json").write_text('{"old": true}\n')
    (out / "study.nii.gz").write_bytes(b"input")
    monkeypatch.setattr(leakloc.io, "write_volume", _fail_on_levels(leakloc.io.write_volume))
    with pytest.raises(RuntimeError):
        report.write_outputs(leak, out)
    assert sorted(os.listdir(out)) == ["report.json", "study.nii.gz"]
    assert (out / "report.json").read_text() == '{"old": true}\n'
    assert sorted(os.listdir(tmp_path)) == ["out"]
    monkeypatch.undo()
    report.write_outputs(leak, out)  # into an existing folder: replaced, other files untouched
    assert json.loads((out / "report.json").read_text())["schema"] == "leakloc.report/1"
    assert (out / "study.nii.gz").read_bytes() == b"input"
    assert (out / "figures" / "plan.png").is_file()
