"""Write a phantom study to disk: passes (DICOM or NIfTI), vertebra label map, truth.json.

Layout of ``out_dir`` (written whole into a temporary sibling folder, then renamed)::

    out_dir/study/            the passes: DICOM ``pass_NN/`` folders (one series per pass), or
                              NIfTI ``pass_NN.nii.gz`` + ``times.json`` sidecar
    out_dir/levels.nii.gz     vertebra label map, TotalSegmentator 'total' ids (26 = S1 ... 50 = C1)
    out_dir/truth.json        ground truth shaped like report.json

Analyse with ``leakloc analyze out_dir/study --levels out_dir/levels.nii.gz --out REPORT``.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from leakloc import InputError

STUDY_DIR = "study"
LEVELS_NAME = "levels.nii.gz"
TRUTH_NAME = "truth.json"


def _sitk_image(array, grid):
    import SimpleITK as sitk
    img = sitk.GetImageFromArray(np.ascontiguousarray(array))
    img.SetSpacing(tuple(float(v) for v in grid.spacing_mm))
    img.SetOrigin(tuple(float(v) for v in grid.origin_mm))
    img.SetDirection(tuple(float(v) for v in grid.direction))
    return img


def _write_nifti(path, array, grid, compress=True):
    import SimpleITK as sitk
    sitk.WriteImage(_sitk_image(array, grid), str(path), useCompression=compress)


def write_study(study, out_dir, fmt: str = "dicom", compression: str | None = None,
                dicom_layout: str = "per_pass", progress=None) -> dict:
    """Write ``study`` to ``out_dir`` (which must not exist or be empty), atomically.

    Parameters
    ----------
    study : leakloc.phantoms.Study
    out_dir : path
    fmt : {'dicom', 'nifti'}
    compression : {None, 'jpeg2000', 'rle'}, DICOM only (lossless)
    dicom_layout : {'per_pass', 'mixed', 'one_series'}, see ``phantoms.dicom.write_dicom_series``
    progress : callable(str) or None

    Returns
    -------
    dict with ``study`` (folder of the passes), ``levels``, ``truth`` paths and ``files`` (count)
    """
    if fmt not in ("dicom", "nifti"):
        raise InputError(f"phantom: unknown format {fmt!r} (dicom or nifti)")
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"{out}: output folder exists and is not empty")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    say = progress or (lambda s: None)
    try:
        sdir = tmp / STUDY_DIR
        sdir.mkdir()
        grid = study.grid
        n_files = 0
        if fmt == "nifti":
            names = []
            for k in range(study.n_phases):
                name = f"pass_{k:02d}.nii.gz"
                vol = np.rint(study.phase(k)).astype(np.int16)
                _write_nifti(sdir / name, vol, grid)
                names.append(name)
                say(f"pass {k}: {name}")
            side = {"times_s": [round(float(t), 4) for t in study.times_s], "files": names,
                    "slice_times_s": [[round(float(t), 4) for t in row] for row in study.slice_times_s],
                    "table_directions": list(study.table_directions),
                    "patient_position": study.patient_position}
            (sdir / "times.json").write_text(json.dumps(side, indent=1))
            n_files = len(names) + 1
        else:
            from .dicom import write_dicom_series

            class _Lazy:
                def __len__(self):
                    return study.n_phases

                def __getitem__(self, k):
                    say(f"pass {k}")
                    return study.phase(k)

            files = write_dicom_series(sdir, _Lazy(), grid, study.slice_times_s,
                                       patient_position=study.patient_position,
                                       layout=dicom_layout, compression=compression,
                                       seed=int(study.seed or 0))
            n_files = len(files)
        _write_nifti(tmp / LEVELS_NAME, study.labelmap.astype(np.int16), grid)
        (tmp / TRUTH_NAME).write_text(json.dumps(study.truth, indent=1))
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {"study": out / STUDY_DIR, "levels": out / LEVELS_NAME, "truth": out / TRUTH_NAME,
            "files": n_files + 2}
