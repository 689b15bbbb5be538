"""leakloc.io on volume files (NIfTI, NRRD, MHA, 4D NIfTI), label maps and write_volume."""
from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from leakloc import InputError
from leakloc.io import Grid, read_labelmap, read_series, write_volume

#: an oblique-free but non-identity, right-handed direction (prone: RAS)
GRID = Grid(size=(10, 8, 6), spacing_mm=(0.9, 0.8, 2.5), origin_mm=(12.0, -7.0, -300.0),
            direction=(-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0))


def vols(n, grid=GRID, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.normal(0.0, 300.0, grid.shape_zyx).astype(np.float32) for _ in range(n)]


def write_passes(folder, volumes, ext, grid=GRID):
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, v in enumerate(volumes):
        p = folder / f"pass{i}{ext}"
        write_volume(p, v, grid)
        paths.append(p)
    return paths


@pytest.mark.parametrize("ext", [".nii.gz", ".nii", ".nrrd", ".mha"])
def test_write_volume_roundtrip_geometry(tmp_path, ext):
    v = vols(1)[0]
    p = tmp_path / f"v{ext}"
    write_volume(p, v, GRID)
    img = sitk.ReadImage(str(p))
    np.testing.assert_allclose(img.GetOrigin(), GRID.origin_mm, atol=1e-4)
    np.testing.assert_allclose(img.GetSpacing(), GRID.spacing_mm, atol=1e-5)
    np.testing.assert_allclose(img.GetDirection(), GRID.direction, atol=1e-6)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(img), v)
    assert sorted(x.name for x in tmp_path.iterdir()) == [p.name]  # no temp file left


def test_write_volume_is_atomic_on_failure(tmp_path):
    with pytest.raises(RuntimeError):
        write_volume(tmp_path / "v.unknownformat", vols(1)[0], GRID)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="does not match grid"):
        write_volume(tmp_path / "v.nii.gz", np.zeros((2, 2, 2)), GRID)


def test_write_volume_bool_mask(tmp_path):
    m = np.zeros(GRID.shape_zyx, dtype=bool)
    m[2, 3, 4] = True
    write_volume(tmp_path / "m.nii.gz", m, GRID)
    a = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "m.nii.gz")))
    assert a.dtype == np.uint8 and a.sum() == 1 and a[2, 3, 4] == 1


@pytest.mark.parametrize("ext", [".nii.gz", ".nrrd", ".mha"])
def test_volume_files_with_times(tmp_path, ext):
    v = vols(3)
    paths = write_passes(tmp_path, v, ext)
    s = read_series(paths, times_s=[0.0, 10.0, 21.0])
    assert s.n_phases == 3
    assert s.grid.same_as(GRID)
    assert s.grid.orientation_code() == "RAS"
    np.testing.assert_allclose(s.times_s, [0.0, 10.0, 21.0])
    np.testing.assert_allclose(s.slice_times_s, np.repeat([[0.0], [10.0], [21.0]], 6, axis=1))
    np.testing.assert_array_equal(s.phase(2), v[2])
    assert s.skipped == [] and s.notes == []


def test_volume_folder_with_sidecar(tmp_path):
    v = vols(3)
    for i, name in enumerate(["b.nii.gz", "c.nii.gz", "a.nii.gz"]):
        write_volume(tmp_path / name, v[i], GRID)
    ramp = np.linspace(0.0, 5.0, 6)
    (tmp_path / "times.json").write_text(json.dumps({
        "times_s": [0, 10, 20], "files": ["b.nii.gz", "c.nii.gz", "a.nii.gz"],
        "slice_times_s": [list(ramp[::-1]), list(10 + ramp), list(20 + ramp[::-1])],
        "patient_position": "HFP"}))
    s = read_series(tmp_path)
    np.testing.assert_allclose(s.times_s, [0.0, 10.0, 20.0])
    np.testing.assert_allclose(s.slice_times_s[1], 10 + ramp)
    assert [p.table_direction for p in s.phases] == ["craniocaudal", "caudocranial", "craniocaudal"]
    assert [p.duration_s for p in s.phases] == [5.0, 5.0, 5.0]
    assert s.patient_position == "HFP"
    np.testing.assert_array_equal(s.phase(2), v[2])


def test_volume_folder_natural_order_needs_times(tmp_path):
    v = vols(3)
    for i in (0, 2, 10):
        write_volume(tmp_path / f"p{i}.nrrd", v[min(i, 2)], GRID)
    with pytest.raises(InputError, match="no pass times for 3 volume files"):
        read_series(tmp_path)
    s = read_series(tmp_path, times_s=[0, 5, 9])
    assert [p.source.rsplit("/", 1)[1] for p in s.phases] == ["p0.nrrd", "p2.nrrd", "p10.nrrd"]


def test_pass_on_other_grid_resampled(tmp_path):
    other = Grid(size=(10, 8, 6), spacing_mm=(0.9, 0.8, 2.5), origin_mm=(12.0, -7.0, -295.0),
                 direction=GRID.direction)
    p0 = tmp_path / "a.mha"
    p1 = tmp_path / "b.mha"
    write_volume(p0, np.zeros(GRID.shape_zyx, np.float32), GRID)
    write_volume(p1, np.full(other.shape_zyx, 50.0, np.float32), other)
    s = read_series([p0, p1], times_s=[0, 10])
    assert s.phases[1].resampled and "resampled" in s.notes[0]
    v = s.phase(1)
    np.testing.assert_allclose(v[2:], 50.0)   # slices 2..5 overlap the shifted pass
    np.testing.assert_allclose(v[:2], -1024.0)


def test_4d_nifti_time_step_from_header(tmp_path):
    v = vols(4)
    img = sitk.JoinSeries([_img(x) for x in v], 0.0, 7.5)
    p = tmp_path / "dyn.nii.gz"
    sitk.WriteImage(img, str(p))
    s = read_series(p)
    assert s.n_phases == 4
    np.testing.assert_allclose(s.times_s, [0.0, 7.5, 15.0, 22.5])
    assert s.grid.same_as(GRID, tol_mm=1e-3)
    np.testing.assert_allclose(s.phase(3), v[3], rtol=0, atol=0)
    v[2][1, 1, 1] = -np.inf
    sitk.WriteImage(sitk.JoinSeries([_img(x) for x in v], 0.0, 7.5), str(p))
    s = read_series(p)
    s.phase(1)
    with pytest.raises(InputError, match=r"pass 2 \(.*dyn.nii.gz volume 2\): 1 voxels are NaN"):
        s.phase(2)
    s2 = read_series(p, times_s=[0, 12, 22, 35])
    np.testing.assert_allclose(s2.times_s, [0, 12, 22, 35])
    with pytest.raises(InputError, match="--times gives 3 times|3 times for the 4 passes"):
        read_series(p, times_s=[0, 12, 22])


def test_4d_nifti_without_time_step(tmp_path):
    img = sitk.JoinSeries([_img(x) for x in vols(2)], 0.0, 1.0)
    p = tmp_path / "dyn.nii"
    sitk.WriteImage(img, str(p))
    raw = bytearray(p.read_bytes())
    assert np.frombuffer(raw[92:96], "<f4")[0] == 1.0  # NIfTI-1 pixdim[4]
    raw[92:96] = np.float32(0.0).tobytes()
    p.write_bytes(bytes(raw))
    with pytest.raises(InputError, match="without a time step"):
        read_series(p)


def _img(a, grid=GRID):
    img = sitk.GetImageFromArray(a)
    img.SetSpacing(grid.spacing_mm)
    img.SetOrigin(grid.origin_mm)
    img.SetDirection(grid.direction)
    return img


@pytest.mark.parametrize("ext", [".nii.gz", ".nii", ".mha"])
def test_nan_voxels_named_when_phase_read(tmp_path, ext):
    # ITK 5.4 reads NIfTI NaN/inf as 0: the reader must look at the file's own values
    v = vols(2)
    v[1][3, 2, 1] = np.nan
    v[1][0, 0, 0] = np.inf
    paths = write_passes(tmp_path, v, ext)
    s = read_series(paths, times_s=[0, 10])
    s.phase(0)
    with pytest.raises(InputError) as e:
        s.phase(1)
    assert str(e.value) == f"pass 1 ({paths[1]}): 2 voxels are NaN or infinite"


@pytest.mark.parametrize("times,match", [([0, 10, 10], "times do not increase"),
                                         ([0, 20, 10], "times do not increase"),
                                         ([0, float("nan"), 10], "must be finite"),
                                         ([0, 10], "--times gives 2 times but")])
def test_bad_times(tmp_path, times, match):
    paths = write_passes(tmp_path, vols(3), ".mha")
    with pytest.raises(InputError, match=match):
        read_series(paths, times_s=times)


def test_sidecar_times_must_increase(tmp_path):
    write_passes(tmp_path, vols(2), ".nrrd")
    (tmp_path / "times.json").write_text('{"times_s": [5, 1]}')
    with pytest.raises(InputError, match="times.json: times do not increase"):
        read_series(tmp_path)
    (tmp_path / "times.json").write_text('{"times_s": [0, 1')
    with pytest.raises(InputError, match="times.json: not valid JSON"):
        read_series(tmp_path)


def test_unreadable_volume_file(tmp_path):
    p = tmp_path / "broken.nii.gz"
    p.write_bytes(b"not a nifti")
    with pytest.raises(InputError) as e:
        read_series(p)
    assert str(e.value).startswith(f"{p}: cannot read volume")


def test_labelmap_roundtrip_and_other_grid(tmp_path):
    lab = np.zeros(GRID.shape_zyx, dtype=np.int16)
    lab[1:3] = 38  # L1? no matter: any TotalSegmentator id
    write_volume(tmp_path / "lab.nii.gz", lab, GRID)
    np.testing.assert_array_equal(read_labelmap(tmp_path / "lab.nii.gz", GRID), lab)
    other = Grid(GRID.size, (1.0, 1.0, 1.0), GRID.origin_mm, GRID.direction)
    with pytest.raises(InputError) as e:
        read_labelmap(tmp_path / "lab.nii.gz", other)
    assert "is on another grid" in str(e.value) and "lab.nii.gz" in str(e.value)
    with pytest.raises(InputError, match="label map not found"):
        read_labelmap(tmp_path / "none.nii.gz", GRID)
    write_volume(tmp_path / "f.nrrd", lab + np.float32(0.5), GRID)
    with pytest.raises(InputError, match="whole numbers"):
        read_labelmap(tmp_path / "f.nrrd", GRID)
