"""Phantom generator: determinism, truth consistency, contrast physics, geometry, writers, CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from scipy import ndimage

from leakloc.cli.main import main
from leakloc.levels import TOTALSEG_ID, VERTEBRAE, coord_of, name_of
from leakloc.phantoms import CASES, generate, write_study
from leakloc.phantoms.cases import random_params


def sample(study, vol, lc_or_z, u_mm, v_mm, *, is_z=False):
    """HU at a point given relative to the canal centre (u: + left, v: + posterior), linear."""
    z = lc_or_z if is_z else float(study.spine.z_of(lc_or_z))
    xc, yc = study.spine.centre_xy(z)
    ijk = study.grid.lps_to_index([float(xc) + u_mm, float(yc) + v_mm, z])
    return float(ndimage.map_coordinates(vol, [[ijk[2]], [ijk[1]], [ijk[0]]], order=1)[0])


def test_same_seed_same_volumes_and_different_seed_differs():
    a, b, c = generate(seed=11), generate(seed=11), generate(seed=12)
    assert a.truth == b.truth
    np.testing.assert_array_equal(a.phase(1), b.phase(1))
    assert a.params != c.params


def test_library_has_the_review_figures_and_the_default_case():
    figures = {c.figure for c in CASES.values()}
    for f in ("Fig 6", "Fig 7", "Fig 10D", "Fig 10E", "Fig 10F", "Fig 4C/10B", "Fig 8A/B"):
        assert f in figures
    assert "fig10e_t7t8" in CASES
    t = generate(case="fig10e_t7t8").truth
    assert [d["level"] for d in t["defects"]] == ["T7-T8"]
    assert t["laminectomy"] == {"levels": ["T7", "T8"], "side": "bilateral",
                                "note": "ventral tear: transdural approach"}
    assert t["figure"] == "Fig 10E"


@pytest.mark.parametrize("seed", range(40))
def test_random_truth_is_self_consistent(seed):
    s = generate(seed=seed)
    t = s.truth
    names = [lv["name"] for lv in t["levels"]]
    assert names and names[0] == s.top_vertebra
    assert names == [VERTEBRAE[i] for i in range(VERTEBRAE.index(names[0]), VERTEBRAE.index(names[0]) + len(names))]
    lo, hi = s.z_range_mm
    assert t["leak_detected"] == bool(t["defects"])
    for d in t["defects"]:
        assert d["level"] == name_of(d["level_coord"])
        assert lo <= d["z_mm"] <= hi
        assert min(float(s.spine.L_of(lo)), float(s.spine.L_of(hi))) <= d["level_coord"]
        # the defect's level is in the field of view (vertebra, or both vertebrae of an interspace)
        for part in d["level"].split("-"):
            assert part in names
        # the onset is when contrast appears there, and some pass sees it
        assert d["onset_time_s"] >= d["intrathecal_arrival_s"] - 1e-9
        if d["kind"] != "csf_venous_fistula":
            assert d["onset_time_s"] == pytest.approx(d["intrathecal_arrival_s"])
        assert s.slice_times_s[-1].min() > d["onset_time_s"]
    for a, b in zip(t["levels"], t["levels"][1:]):
        assert a["z_range_mm"][0] == pytest.approx(b["z_range_mm"][1])
    if t["defects"]:
        d0 = t["defects"][0]
        assert t["laminectomy"]["levels"] == d0["level"].split("-")
    json.dumps(t)


def test_random_regimes_cover_kinds_none_and_positions():
    ps = [random_params(s) for s in range(120)]
    kinds = {d.kind for p in ps for d in p.defects}
    assert kinds == {"dural_tear", "nerve_root_sleeve", "csf_venous_fistula"}
    n_none = sum(not p.defects for p in ps)
    assert 10 <= n_none <= 40
    assert {"HFP", "HFS", "HFDR"} <= {p.patient_position for p in ps}
    assert any(not p.pre_contrast for p in ps) and any(p.motion_mm > 0 for p in ps)
    assert any(p.calcified_discs for p in ps) and any(p.osteophytes for p in ps)
    assert {"slow", "high"} == {d.flow for p in ps for d in p.defects}


def test_no_contrast_in_pre_contrast_pass_and_contrast_after():
    s = generate(case="fig10e_t7t8", noise_hu=0.0)
    assert s.params.pre_contrast and s.times_s[0] == 0.0
    pre, late = s.phase(0), s.phase(4)
    for lc in (10.0, 13.0, 16.0, 18.0):
        inside = sample(s, pre, lc, 3.0, 1.0)  # sac CSF beside the cord
        assert -30 < inside < 40
        assert sample(s, late, lc, 3.0, 1.0) > 150


def test_collection_fills_from_the_defect_outward():
    s = generate(case="fig6_t11", noise_hu=0.0)
    info = s.contrast.defects[0]
    z0 = info["z"]
    k = int(np.searchsorted(s.times_s, info["onset"] + 12.0))
    pre, post = s.phase(0), s.phase(k)
    enh = [sample(s, post, z0 + d, 4.0, -4.8, is_z=True) - sample(s, pre, z0 + d, 4.0, -4.8, is_z=True)
           for d in (6.0, 20.0, 40.0, 90.0)]
    assert enh[0] > 200
    assert enh[0] > enh[1] > enh[2] >= enh[3] - 1.0
    assert abs(enh[3]) < 40 and enh[0] > 5 * abs(enh[3])  # partial volume of the sac only
    # the collection is fluid (5-10 HU) before contrast, separated from the sac
    assert -20 < sample(s, pre, z0 + 40.0, 4.0, -4.8, is_z=True) < 30


def test_high_flow_fills_many_levels_between_passes():
    s = generate(case="fig10f_t2t3_highflow", noise_hu=0.0)
    info = s.contrast.defects[0]
    k = int(np.searchsorted(s.times_s, info["onset"] + 5.0))
    pre, post = s.phase(0), s.phase(k)
    far = info["z"] - 75.0  # about three levels caudal, inside the collection
    assert sample(s, post, far, 0.0, -6.0, is_z=True) - sample(s, pre, far, 0.0, -6.0, is_z=True) > 100


def test_calcified_disc_is_dense_in_every_pass():
    s = generate(case="fig10e_t7t8", noise_hu=0.0)
    lc, u = s.params.calcified_discs[0]
    cry = float(s.spine.canal_ry[s.spine.idx(s.spine.z_of(lc))])
    for k in range(s.n_phases):
        assert sample(s, s.phase(k), lc, u, -cry + 1.0) > 350


def test_prone_and_supine_geometry():
    hfp = generate(case="fig10e_t7t8", noise_hu=0.0, patient_position="HFP")
    hfs = generate(case="fig10e_t7t8", noise_hu=0.0, patient_position="HFS")
    assert hfp.grid.orientation_code() == "RAS" and hfs.grid.orientation_code() == "LPS"
    # same anatomy, image axes flipped: pre-contrast passes match flipped in x and y
    np.testing.assert_allclose(hfp.phase(0)[:, ::-1, ::-1], hfs.phase(0), atol=1e-3)
    # contrast layers on the dependent side early: ventral prone, dorsal supine
    info = hfp.contrast
    lc = 19.0  # L1: below the conus
    z = float(hfp.spine.z_of(lc))
    t_arr = float(info.arrival_s(z))
    k = int(np.searchsorted(hfp.times_s, t_arr))
    for s, dependent_v in ((hfp, -1.0), (hfs, 1.0)):
        v = s.phase(k)
        dep = sample(s, v, lc, 0.0, dependent_v * 4.5)
        non = sample(s, v, lc, 0.0, -dependent_v * 4.5)
        assert dep > non + 100


def test_decubitus_layering_and_vertebral_labels():
    s = generate(case="cvf_t10_right", noise_hu=0.0)
    assert s.patient_position == "HFDR"
    lab = s.labelmap
    assert lab.dtype == np.int16
    for name in ("T6", "T10", "L1"):
        lc = coord_of(name)
        cry = float(s.spine.canal_ry[s.spine.idx(s.spine.z_of(lc))])
        bry = float(s.spine.body_ry[s.spine.idx(s.spine.z_of(lc))])
        z = float(s.spine.z_of(lc))
        xc, yc = s.spine.centre_xy(z)
        ijk = np.rint(s.grid.lps_to_index([float(xc), float(yc) - cry - bry, z])).astype(int)
        assert lab[ijk[2], ijk[1], ijk[0]] == TOTALSEG_ID[name]
    assert set(np.unique(lab)) <= {0} | set(TOTALSEG_ID.values())
    assert s.top_vertebra == "T4"


def test_fistula_vein_rises_to_fistula_range_after_onset():
    s = generate(case="cvf_t10_right", noise_hu=0.0)
    info = s.contrast.defects[0]
    d = s.truth["defects"][0]
    assert d["kind"] == "csf_venous_fistula" and d["side"] == "right"
    assert d["onset_time_s"] == pytest.approx(d["intrathecal_arrival_s"] + 9.0)
    z = info["z"]
    brx = float(s.spine.body_rx[s.spine.idx(z)])
    cry = float(s.spine.canal_ry[s.spine.idx(z)])
    bry = float(s.spine.body_ry[s.spine.idx(z)])
    u, v = -(brx + 6.0), -(cry + bry)  # right paraspinal vein
    before = [k for k in range(s.n_phases) if s.slice_times_s[k].max() < info["onset"]]
    after = [k for k in range(s.n_phases) if s.times_s[k] > info["onset"] + 10]
    assert before and after
    assert 25 < sample(s, s.phase(before[-1]), z - 10.0, u, v, is_z=True) < 55
    assert 70 < sample(s, s.phase(after[0]), z - 10.0, u, v, is_z=True) < 200
    # the left vein does not enhance
    assert sample(s, s.phase(after[0]), z - 10.0, -u, v, is_z=True) < 55
    assert all(lv["epidural_arrival_s"] is None for lv in s.truth["levels"])


def test_no_pre_contrast_pass_starts_with_contrast():
    s = generate(case="control_sealed_collection")
    assert not s.params.pre_contrast and s.times_s[0] == 0.0
    assert s.params.injection_time_s < 0
    assert s.truth["leak_detected"] is False and s.truth["laminectomy"]["levels"] == []


def test_motion_moves_later_passes_only():
    still = generate(case="fig10e_t7t8", noise_hu=0.0)
    moving = generate(case="fig10e_t7t8", noise_hu=0.0, motion_mm=3.0, motion_deg=2.0)
    np.testing.assert_array_equal(still.phase(0), moving.phase(0))
    assert np.abs(still.phase(1) - moving.phase(1)).max() > 300


def test_write_nifti_round_trip(tmp_path):
    import SimpleITK as sitk
    from leakloc import io

    s = generate(case="fig10e_t7t8")
    out = tmp_path / "ph"
    paths = write_study(s, out, fmt="nifti")
    side = json.loads((out / "study" / "times.json").read_text())
    assert side["times_s"] == pytest.approx(list(s.times_s))
    assert side["patient_position"] == "HFP" and len(side["files"]) == s.n_phases
    img = sitk.ReadImage(str(out / "study" / "pass_02.nii.gz"))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(img), np.rint(s.phase(2)).astype(np.int16))
    assert img.GetSpacing() == pytest.approx(s.grid.spacing_mm)
    assert img.GetOrigin() == pytest.approx(s.grid.origin_mm, abs=1e-4)
    assert img.GetDirection() == pytest.approx(s.grid.direction)
    lab = sitk.GetArrayFromImage(sitk.ReadImage(str(paths["levels"])))
    np.testing.assert_array_equal(lab, s.labelmap)
    assert json.loads(paths["truth"].read_text())["defects"][0]["level"] == "T7-T8"
    series = io.read_series(paths["study"])
    assert series.n_phases == s.n_phases
    np.testing.assert_allclose(series.slice_times_s, s.slice_times_s, atol=1e-3)
    np.testing.assert_allclose(series.phase(3), np.rint(s.phase(3)), atol=1e-3)
    with pytest.raises(Exception, match="not empty"):
        write_study(s, out, fmt="nifti")


def test_write_dicom_round_trip(tmp_path):
    from leakloc import io

    s = generate(case="fig8_c7t1_avulsion")
    paths = write_study(s, tmp_path / "d", fmt="dicom")
    series = io.read_series(paths["study"])
    assert series.n_phases == s.n_phases
    assert series.patient_position == "HFDR"
    assert series.grid.same_as(s.grid, tol_mm=1e-2)
    np.testing.assert_allclose(series.times_s, s.times_s, atol=1e-3)
    np.testing.assert_allclose(series.slice_times_s, s.slice_times_s, atol=1e-3)
    np.testing.assert_allclose(series.phase(2), np.clip(np.rint(s.phase(2)), -1024, None), atol=0.51)


def test_cli_list_write_and_errors(tmp_path):
    r = CliRunner()
    res = r.invoke(main, ["phantom", "--list"])
    assert res.exit_code == 0 and "fig10e_t7t8" in res.output and "Fig 10E" in res.output
    res = r.invoke(main, ["phantom", "--case", "nope", "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "nope" in res.output
    res = r.invoke(main, ["phantom", "--out", str(tmp_path / "x")])
    assert res.exit_code == 2
    res = r.invoke(main, ["phantom", "--case", "fig7_t5t6", "--out", str(tmp_path / "f7"), "--format", "nifti", "--shape", "small"])
    assert res.exit_code == 0, res.output
    assert "T5-T6 ventral dural tear" in res.output
    assert (tmp_path / "f7" / "truth.json").is_file() and (tmp_path / "f7" / "levels.nii.gz").is_file()
    res = r.invoke(main, ["phantom", "--case", "fig7_t5t6", "--out", str(tmp_path / "f7"), "--format", "nifti", "--shape", "small"])
    assert res.exit_code == 2 and "not empty" in res.output
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
