"""leakloc.io.read_series on DICOM studies written the way scanners and PACS export them."""
from __future__ import annotations

import shutil

import numpy as np
import pydicom
import pytest

from leakloc import InputError
from leakloc.io import Grid, read_series, require_dynamic
from leakloc.phantoms.dicom import write_dicom_series, write_extra_objects

#: prone patient (HFP): x index runs to patient right, y to anterior (RAS), z superior
PRONE = (-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0)
GRID = Grid(size=(16, 12, 20), spacing_mm=(0.8, 0.7, 2.0), origin_mm=(40.0, 30.0, -100.0),
            direction=PRONE)
STARTS_S = [0.0, 10.0, 21.0, 33.0, 45.0, 120.0]
PASS_S = 3.8


def volumes(grid=GRID, n=len(STARTS_S), seed=1):
    """Distinct integer HU volumes, one per pass."""
    rng = np.random.default_rng(seed)
    return [rng.integers(-1024, 3000, size=grid.shape_zyx).astype(np.float32) for _ in range(n)]


def slice_times(starts=STARTS_S, nz=GRID.size[2]):
    """Per-slice times; even passes go craniocaudal (top slice = highest k first)."""
    ramp = np.linspace(0.0, PASS_S, nz)
    return np.stack([s + (ramp[::-1] if p % 2 == 0 else ramp) for p, s in enumerate(starts)])


def write_study(out, grid=GRID, starts=STARTS_S, **kw):
    vols = volumes(grid, len(starts))
    st = slice_times(starts, grid.size[2])
    kw.setdefault("patient_position", "HFP")
    files = write_dicom_series(out, vols, grid, st, **kw)
    return vols, st, files


def test_mixed_shuffled_prone_study_reads_exactly(tmp_path):
    vols, st, _ = write_study(tmp_path, layout="mixed", shuffle_names=True, seed=3,
                              extra_objects=("localizer", "dose_sr", "secondary_capture",
                                             "dicomdir", "non_dicom", "sagittal", "few_slices"))
    s = read_series(tmp_path)
    assert s.n_phases == 6
    np.testing.assert_allclose(s.times_s, STARTS_S, atol=1e-5)
    np.testing.assert_allclose(s.slice_times_s, st, atol=1e-5)
    assert [p.table_direction for p in s.phases] == ["craniocaudal", "caudocranial"] * 3
    assert [p.series_number for p in s.phases] == [2, 3, 4, 5, 6, 7]
    np.testing.assert_allclose([p.duration_s for p in s.phases], PASS_S, atol=1e-5)
    assert s.grid.same_as(GRID)
    assert s.grid.orientation_code() == "RAS"
    assert s.patient_position == "HFP"
    assert s.patient["PatientName"] == "PHANTOM^LEAKLOC"
    assert not any(p.resampled for p in s.phases) and s.notes == []
    for i in (0, 3, 5):
        np.testing.assert_array_equal(s.phase(i), vols[i])
        assert s.phase(i).dtype == np.float32
    reasons = {d["path"]: d["reason"] for d in s.skipped}
    assert reasons["DICOMDIR"] == "DICOMDIR"
    assert reasons["scout/IM0001"] == "localizer"
    assert reasons["dose/SR000001"] == "dose report"
    assert reasons["SC000001"] == "secondary capture"
    assert reasons["README.TXT"] == "not DICOM"
    assert reasons["sag"].startswith("orientation differs")
    assert reasons["few"].startswith("only 2 slices")
    assert len(s.skipped) == 7


def test_per_pass_folders_ordered_by_time_not_series_number(tmp_path):
    # series numbers run backwards in time: time must win
    vols, st, _ = write_study(tmp_path, starts=[0.0, 12.0, 25.0], layout="per_pass",
                              series_numbers=[9, 5, 3], patient_position="HFS")
    folders = [tmp_path / "pass_03", tmp_path / "pass_01", tmp_path / "pass_02"]
    s = read_series(folders)
    assert [p.series_number for p in s.phases] == [9, 5, 3]
    np.testing.assert_allclose(s.times_s, [0.0, 12.0, 25.0], atol=1e-5)
    np.testing.assert_array_equal(s.phase(2), vols[2])
    assert s.patient_position == "HFS"


def test_one_series_split_by_temporal_position(tmp_path):
    vols, st, _ = write_study(tmp_path, starts=[0.0, 9.0, 20.0], layout="one_series")
    s = read_series(tmp_path)
    assert s.n_phases == 3
    np.testing.assert_allclose(s.slice_times_s, st, atol=1e-5)
    np.testing.assert_array_equal(s.phase(1), vols[1])


def test_one_series_split_by_acquisition_number(tmp_path):
    vols, st, files = write_study(tmp_path, starts=[0.0, 9.0], layout="one_series")
    for f in files:
        ds = pydicom.dcmread(f)
        del ds.TemporalPositionIdentifier
        ds.save_as(f)
    s = read_series(tmp_path)
    assert s.n_phases == 2
    np.testing.assert_array_equal(s.phase(1), vols[1])


def test_slice_order_ignores_instance_number_and_file_names(tmp_path):
    vols, _, files = write_study(tmp_path, starts=[0.0, 10.0], layout="mixed")
    rng = np.random.default_rng(0)
    for f, inst in zip(files, rng.permutation(len(files)) + 1):
        ds = pydicom.dcmread(f)
        ds.InstanceNumber = int(inst)
        ds.save_as(f)
    s = read_series(tmp_path)
    np.testing.assert_array_equal(s.phase(0), vols[0])


@pytest.mark.parametrize("unsigned,intercept,slope", [(True, -1024.0, 1.0), (False, 0.0, 1.0),
                                                       (True, -1024.0, 0.5)])
def test_rescale_signed_and_unsigned(tmp_path, unsigned, intercept, slope):
    vols, _, files = write_study(tmp_path, starts=[0.0, 10.0], unsigned=unsigned,
                                 intercept=intercept, slope=slope)
    ds = pydicom.dcmread(files[0])
    assert ds.PixelRepresentation == (0 if unsigned else 1)
    s = read_series(tmp_path)
    expected = np.rint((vols[1] - intercept) / slope) * slope + intercept
    np.testing.assert_array_equal(s.phase(1), expected.astype(np.float32))


@pytest.mark.parametrize("compression", ["jpeg2000", "rle"])
def test_compressed_series_decode(tmp_path, compression):
    grid = Grid(size=(32, 32, 8), spacing_mm=(0.6, 0.6, 1.5), origin_mm=(-10.0, -12.0, -50.0))
    vols, st, files = write_study(tmp_path, grid=grid, starts=[0.0, 10.0], compression=compression)
    ts = pydicom.dcmread(files[0], stop_before_pixels=True).file_meta.TransferSyntaxUID
    assert ts == {"jpeg2000": "1.2.840.10008.1.2.4.90", "rle": "1.2.840.10008.1.2.5"}[compression]
    s = read_series(tmp_path)
    assert s.grid.same_as(grid)
    np.testing.assert_array_equal(s.phase(1), vols[1])


def test_study_crossing_midnight_stays_in_order(tmp_path):
    vols, st, _ = write_study(tmp_path, starts=[0.0, 10.0, 21.0], layout="mixed",
                              pass_start_clock="235955.500000")
    s = read_series(tmp_path)
    np.testing.assert_allclose(s.times_s, [0.0, 10.0, 21.0], atol=1e-5)
    np.testing.assert_array_equal(s.phase(2), vols[2])


def test_metadata_reads_no_pixels_and_cache_is_bounded(tmp_path, monkeypatch):
    import leakloc.io as io

    write_study(tmp_path, starts=[0.0, 10.0, 20.0, 30.0], layout="mixed")
    reads = []
    real = io._read_dicom_pixels
    monkeypatch.setattr(io, "_read_dicom_pixels", lambda *a: reads.append(a[0]) or real(*a))
    s = read_series(tmp_path, cache_size=2)
    assert reads == []
    for i in (0, 1, 2, 3, 3):
        s.phase(i)
    assert len(reads) == 4 and len(s._cache) == 2


def test_pass_on_another_grid_is_resampled(tmp_path):
    study = "1.2.826.0.1.3680043.8.498.4242"
    g0 = Grid(size=(16, 12, 10), spacing_mm=(1.0, 1.0, 2.0), origin_mm=(0.0, 0.0, 0.0))
    g1 = Grid(size=(16, 12, 10), spacing_mm=(1.0, 1.0, 2.0), origin_mm=(2.0, 0.0, 0.0))
    write_dicom_series(tmp_path / "a", [np.full(g0.shape_zyx, 100.0)], g0, np.zeros((1, 10)),
                       study_uid=study, seed=1)
    write_dicom_series(tmp_path / "b", [np.full(g1.shape_zyx, 300.0)], g1,
                       np.full((1, 10), 10.0), study_uid=study, seed=2)
    s = read_series(tmp_path)
    assert [p.resampled for p in s.phases] == [False, True]
    assert len(s.notes) == 1 and "resampled" in s.notes[0] and "pass 1" in s.notes[0]
    v = s.phase(1)
    assert v.shape == g0.shape_zyx
    np.testing.assert_allclose(v[:, :, 2:], 300.0)  # inside the shifted pass
    np.testing.assert_allclose(v[:, :, :2], -1024.0)  # columns 0, 1 lie outside it


def test_require_dynamic(tmp_path):
    write_study(tmp_path, starts=[0.0])
    s = read_series(tmp_path)
    assert s.n_phases == 1
    with pytest.raises(InputError, match="only 1 pass"):
        require_dynamic(s)


# --- bad input: one line naming what and where ------------------------------------------------

def _one_line(excinfo) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg
    return msg


def test_missing_path(tmp_path):
    with pytest.raises(InputError) as e:
        read_series(tmp_path / "nope")
    assert "input not found" in _one_line(e) and "nope" in str(e.value)


def test_empty_folder(tmp_path):
    with pytest.raises(InputError, match="empty folder"):
        read_series(tmp_path)


def test_only_non_dicom_files(tmp_path):
    (tmp_path / "a.txt").write_text("hello")
    (tmp_path / "b.jpg").write_bytes(b"\xff\xd8\xff\xe0")
    with pytest.raises(InputError) as e:
        read_series(tmp_path)
    assert "no DICOM files" in _one_line(e) and "2 not DICOM" in str(e.value)


def test_only_non_pass_objects(tmp_path):
    write_extra_objects(tmp_path, GRID, ("localizer", "dose_sr"))
    with pytest.raises(InputError) as e:
        read_series(tmp_path)
    assert "no CT image series" in _one_line(e) and "localizer" in str(e.value)


def test_dicom_without_pixels(tmp_path):
    _, _, files = write_study(tmp_path, starts=[0.0, 10.0], layout="mixed")
    ds = pydicom.dcmread(files[5])
    del ds.PixelData
    ds.save_as(files[5])
    with pytest.raises(InputError) as e:
        read_series(tmp_path)
    assert "without pixel data" in _one_line(e) and files[5].name in str(e.value)


def test_pass_with_missing_slices(tmp_path):
    _, _, files = write_study(tmp_path, starts=[0.0, 10.0, 20.0], layout="per_pass")
    nz = GRID.size[2]
    for k in (7, 8):
        (files[2 * nz + k]).unlink()  # pass 2, slices 7 and 8: z = -86 and -84 mm
    with pytest.raises(InputError) as e:
        read_series(tmp_path)
    msg = _one_line(e)
    assert msg.startswith("pass 2 (series 4")
    assert "gap of 6.00 mm between z = -88.00 and -82.00 mm" in msg


def test_duplicated_slices(tmp_path):
    _, _, files = write_study(tmp_path, starts=[0.0, 10.0], layout="per_pass")
    ds = pydicom.dcmread(files[3])
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    ds.save_as(files[3].with_name("copy.dcm"))
    with pytest.raises(InputError) as e:
        read_series(tmp_path)
    assert "duplicated slice" in _one_line(e) and "pass 0" in str(e.value)


def test_two_studies_refused_then_chosen(tmp_path):
    write_study(tmp_path / "a", starts=[0.0, 10.0], study_uid="1.2.3.1")
    write_study(tmp_path / "b", starts=[0.0, 10.0, 20.0], study_uid="1.2.3.2", seed=5)
    with pytest.raises(InputError) as e:
        read_series(tmp_path)
    msg = _one_line(e)
    assert "2 studies" in msg and "1.2.3.1" in msg and "1.2.3.2" in msg and "--study" in msg
    s = read_series(tmp_path, study_uid="1.2.3.2")
    assert s.n_phases == 3 and s.study_uid == "1.2.3.2"
    assert any(d["reason"].startswith("another study (1.2.3.1") for d in s.skipped)
    with pytest.raises(InputError, match="study 9.9 not found"):
        read_series(tmp_path, study_uid="9.9")


def test_times_override_must_increase_and_match(tmp_path):
    _, st, _ = write_study(tmp_path, starts=[0.0, 10.0, 20.0])
    s = read_series(tmp_path, times_s=[0.0, 15.0, 40.0])
    np.testing.assert_allclose(s.times_s, [0.0, 15.0, 40.0])
    np.testing.assert_allclose(s.slice_times_s[1], st[1] - 10.0 + 15.0, atol=1e-5)
    with pytest.raises(InputError, match="times do not increase"):
        read_series(tmp_path, times_s=[0.0, 15.0, 15.0])
    with pytest.raises(InputError, match="--times gives 2 times but"):
        read_series(tmp_path, times_s=[0.0, 15.0])


def test_same_start_time_refused(tmp_path):
    study = "1.2.826.0.1.3680043.8.498.77"
    for k in range(2):  # two reconstructions of one pass
        write_study(tmp_path / f"r{k}", starts=[0.0], study_uid=study, seed=k,
                    series_numbers=[2 + k])
    with pytest.raises(InputError) as e:
        read_series(tmp_path)
    assert "pass times do not increase" in _one_line(e)


def test_undecodable_pixels(tmp_path):
    grid = Grid(size=(32, 32, 4), spacing_mm=(1.0, 1.0, 1.0), origin_mm=(0.0, 0.0, 0.0))
    _, _, files = write_study(tmp_path, grid=grid, starts=[0.0, 5.0], compression="jpeg2000")
    ds = pydicom.dcmread(files[6])
    ds.PixelData = ds.PixelData[:40] + b"\x00" * (len(ds.PixelData) - 40)
    ds.save_as(files[6])
    s = read_series(tmp_path)
    s.phase(0)
    with pytest.raises(InputError) as e:
        s.phase(1)
    assert files[6].name in _one_line(e) and "pass 1" in str(e.value)


def test_copy_keeps_inputs_untouched(tmp_path):
    _, _, files = write_study(tmp_path / "in", starts=[0.0, 10.0])
    before = {f: f.read_bytes() for f in files}
    shutil.copytree(tmp_path / "in", tmp_path / "copy")
    s = read_series(tmp_path / "in")
    s.phase(0), s.phase(1)
    assert all(f.read_bytes() == b for f, b in before.items())


def test_right_decubitus_grid_and_table_direction(tmp_path):
    # HFDR: image x runs posterior, y runs left, slices go inferior (right-handed)
    grid = Grid(size=(14, 12, 9), spacing_mm=(0.7, 0.7, 3.0), origin_mm=(-20.0, -30.0, 50.0),
                direction=(0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, -1.0))
    vols = volumes(grid, 2)
    ramp = np.linspace(0.0, 2.0, 9)
    st = np.stack([ramp, 8.0 + ramp[::-1]])  # pass 0 starts at k = 0, the most superior slice
    write_dicom_series(tmp_path, vols, grid, st, patient_position="HFDR", layout="mixed")
    s = read_series(tmp_path)
    assert s.grid.same_as(grid) and s.grid.orientation_code() == "PLI"
    assert s.patient_position == "HFDR"
    assert [p.table_direction for p in s.phases] == ["craniocaudal", "caudocranial"]
    np.testing.assert_allclose(s.slice_times_s, st, atol=1e-5)
    np.testing.assert_array_equal(s.phase(1), vols[1])


def test_frame_reference_time_used_when_every_slice_has_it(tmp_path):
    vols, st, files = write_study(tmp_path, starts=[0.0, 10.0], layout="mixed")
    nz = GRID.size[2]
    for i, f in enumerate(files):
        ds = pydicom.dcmread(f)
        for kw in ("AcquisitionTime", "ContentTime", "AcquisitionDate", "ContentDate"):
            delattr(ds, kw)
        ds.FrameReferenceTime = f"{1000.0 * (5.0 + 2.0 * st[i // nz, i % nz]):.3f}"  # ms
        ds.save_as(f)
    s = read_series(tmp_path)
    np.testing.assert_allclose(s.times_s, [0.0, 20.0], atol=1e-6)
    np.testing.assert_allclose(s.slice_times_s, 2.0 * st, atol=1e-6)


def test_no_times_needs_times_option(tmp_path):
    _, _, files = write_study(tmp_path, starts=[0.0, 10.0], layout="mixed", series_numbers=[7, 4])
    for f in files:
        ds = pydicom.dcmread(f)
        for kw in ("AcquisitionTime", "ContentTime"):
            delattr(ds, kw)
        ds.save_as(f)
    with pytest.raises(InputError, match="no acquisition times; give pass start times with --times"):
        read_series(tmp_path)
    s = read_series(tmp_path, times_s=[0.0, 30.0])
    assert [p.series_number for p in s.phases] == [4, 7]  # SeriesNumber order without times
    np.testing.assert_allclose(s.slice_times_s[1], 30.0)


def test_jpeg_ls_lossless_decodes(tmp_path):
    """pydicom ships a 64 x 64 int16 JPEG-LS lossless image (MR_small) and its raw twin."""
    import warnings

    from pydicom.data import get_testdata_file
    from pydicom.uid import JPEGLSLossless

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        jls = pydicom.dcmread(get_testdata_file("MR_small_jpeg_ls_lossless.dcm"))
        raw = pydicom.dcmread(get_testdata_file("MR_small.dcm")).pixel_array.astype(np.float32)
    grid = Grid(size=(64, 64, 3), spacing_mm=(0.5, 0.5, 1.0), origin_mm=(0.0, 0.0, 0.0))
    _, _, files = write_study(tmp_path, grid=grid, starts=[0.0, 4.0], unsigned=False,
                              intercept=0.0)
    for f in files:
        ds = pydicom.dcmread(f)
        ds.file_meta.TransferSyntaxUID = JPEGLSLossless
        ds.PixelData = jls.PixelData
        ds["PixelData"].VR = "OB"
        ds["PixelData"].is_undefined_length = True
        ds.save_as(f)
    assert pydicom.dcmread(files[0]).file_meta.TransferSyntaxUID == JPEGLSLossless
    s = read_series(tmp_path)
    np.testing.assert_array_equal(s.phase(1), np.broadcast_to(raw, grid.shape_zyx))
