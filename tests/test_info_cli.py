"""``leakloc info``: text and leakloc.info/1 JSON on scanner-like studies; exit 2 on bad input."""
from __future__ import annotations

import json

import numpy as np
from click.testing import CliRunner

from leakloc.cli.main import main
from leakloc.io import Grid, write_volume
from leakloc.phantoms.dicom import write_dicom_series
from test_io_dicom import GRID, PASS_S, STARTS_S, slice_times, volumes


def invoke(*args):
    return CliRunner().invoke(main, ["info", *map(str, args)])


def six_pass_study(tmp_path):
    vols = volumes()
    write_dicom_series(tmp_path, vols, GRID, slice_times(), layout="mixed", shuffle_names=True,
                       patient_position="HFP", series_numbers=[3, 4, 5, 6, 7, 8],
                       extra_objects=("localizer", "dose_sr"))
    return vols


def test_info_text_six_passes(tmp_path):
    six_pass_study(tmp_path)
    r = invoke(tmp_path)
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert lines[0].startswith("6 passes (study ")
    rows = [ln.split() for ln in lines[2:8]]
    assert [int(row[0]) for row in rows] == [0, 1, 2, 3, 4, 5]
    assert [int(row[1]) for row in rows] == [3, 4, 5, 6, 7, 8]
    assert [float(row[2]) for row in rows] == STARTS_S
    assert [float(row[3]) for row in rows] == [PASS_S] * 6
    assert [row[4] for row in rows] == ["craniocaudal", "caudocranial"] * 3
    assert "grid: size 16 x 12 x 20 voxels, spacing 0.8 x 0.7 x 2 mm, origin 40.0, 30.0, -100.0 mm" in lines
    assert "orientation: RAS, patient position: HFP" in lines
    assert "  scout/IM0001: localizer" in lines and "  dose/SR000001: dose report" in lines


def test_info_json_six_passes(tmp_path):
    vols = six_pass_study(tmp_path)
    r = invoke(tmp_path, "--json")
    assert r.exit_code == 0, r.output
    info = json.loads(r.stdout)
    assert info["schema"] == "leakloc.info/1"
    assert info["phases"] == [{"index": i, "series_number": 3 + i, "time_s": STARTS_S[i],
                               "duration_s": PASS_S,
                               "table_direction": ["craniocaudal", "caudocranial"][i % 2]}
                              for i in range(6)]
    assert info["grid"] == {"size": [16, 12, 20], "spacing_mm": [0.8, 0.7, 2.0],
                            "origin_mm": [40.0, 30.0, -100.0],
                            "direction": [-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0],
                            "orientation": "RAS", "patient_position": "HFP"}
    assert info["hu_range"] == [float(min(v.min() for v in vols)), float(max(v.max() for v in vols))]
    assert info["skipped"] == [{"path": "dose/SR000001", "reason": "dose report"},
                               {"path": "scout/IM0001", "reason": "localizer"}]


def test_info_compressed_export_grid_and_hu_range(tmp_path):
    grid = Grid(size=(32, 32, 6), spacing_mm=(0.5, 0.5, 1.25), origin_mm=(-8.0, -8.0, -20.0))
    vols = [np.full(grid.shape_zyx, -1024.0, np.float32) for _ in range(3)]
    vols[1][2, 3, 4] = 3071.0
    vols[2][5, 31, 0] = -200.0
    write_dicom_series(tmp_path, vols, grid, np.array([[0.0] * 6, [10.0] * 6, [20.0] * 6]),
                       compression="jpeg2000", layout="per_pass")
    r = invoke(tmp_path, "--json")
    assert r.exit_code == 0, r.output
    info = json.loads(r.stdout)
    assert info["grid"]["size"] == [32, 32, 6]
    assert info["grid"]["spacing_mm"] == [0.5, 0.5, 1.25]
    assert info["grid"]["orientation"] == "LPS" and info["grid"]["patient_position"] == "HFS"
    assert info["hu_range"] == [-1024.0, 3071.0]
    assert [p["time_s"] for p in info["phases"]] == [0.0, 10.0, 20.0]


def test_info_single_pass_works_and_says_analysis_needs_two(tmp_path):
    write_volume(tmp_path / "one.nii.gz", np.zeros(GRID.shape_zyx, np.float32), GRID)
    r = invoke(tmp_path / "one.nii.gz")
    assert r.exit_code == 0, r.output
    assert r.stdout.splitlines()[0] == "1 pass"
    assert "note: one pass only; an analysis needs two or more" in r.stdout


def test_info_volume_files_with_times(tmp_path):
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"p{i}.nrrd")
        write_volume(paths[-1], np.full(GRID.shape_zyx, 10.0 * i, np.float32), GRID)
    r = invoke(*paths, "--times", "0,12,30", "--json")
    assert r.exit_code == 0, r.output
    info = json.loads(r.stdout)
    assert [p["time_s"] for p in info["phases"]] == [0.0, 12.0, 30.0]
    assert info["hu_range"] == [0.0, 20.0]


def _error(r):
    assert r.exit_code == 2, r.output
    assert r.stdout == ""
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("leakloc: error: ")
    assert "Traceback" not in r.output
    return err[0]


def test_info_bad_inputs_exit_2_one_line(tmp_path):
    assert "input not found" in _error(invoke(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    assert "empty folder" in _error(invoke(tmp_path / "empty"))
    (tmp_path / "txt").mkdir()
    (tmp_path / "txt" / "a.txt").write_text("x")
    assert "no DICOM files" in _error(invoke(tmp_path / "txt"))
    p = [tmp_path / f"v{i}.mha" for i in range(2)]
    for f in p:
        write_volume(f, np.zeros(GRID.shape_zyx, np.float32), GRID)
    assert "times do not increase" in _error(invoke(*p, "--times", "5,5"))


def test_info_two_studies_refused_then_study_option(tmp_path):
    st = slice_times([0.0, 10.0])
    vols = volumes(n=2)
    write_dicom_series(tmp_path / "a", vols, GRID, st, study_uid="1.2.3.1")
    write_dicom_series(tmp_path / "b", vols, GRID, st, study_uid="1.2.3.2", seed=4)
    msg = _error(invoke(tmp_path))
    assert "--study UID" in msg and "1.2.3.1" in msg and "1.2.3.2" in msg
    r = invoke(tmp_path, "--study", "1.2.3.2", "--json")
    assert r.exit_code == 0, r.output
    assert len(json.loads(r.stdout)["phases"]) == 2


def test_info_nan_voxels_exit_2(tmp_path):
    p = [tmp_path / f"v{i}.nii.gz" for i in range(2)]
    write_volume(p[0], np.zeros(GRID.shape_zyx, np.float32), GRID)
    bad = np.zeros(GRID.shape_zyx, np.float32)
    bad[0, 0, 0] = np.nan
    write_volume(p[1], bad, GRID)
    msg = _error(invoke(*p, "--times", "0,10"))
    assert msg == f"leakloc: error: pass 1 ({p[1]}): 1 voxels are NaN or infinite"
