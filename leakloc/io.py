"""Reading dynamic CT myelography studies into a lazy :class:`PhaseSeries`.

SimpleITK and pydicom stay inside this module: everything it returns is numpy arrays and small
dataclasses. Arrays are in numpy order ``(Z, Y, X)``; sizes, spacings and origins in
:class:`Grid` are in ITK order ``(x, y, z)``, in patient LPS millimetres.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from leakloc import InputError

__all__ = ["Grid", "PhaseInfo", "PhaseSeries", "read_series", "read_labelmap", "write_volume",
           "InputError"]


@dataclass(frozen=True)
class Grid:
    """Geometry of one image grid, ITK conventions.

    Attributes
    ----------
    size : tuple of int, (x, y, z) voxels
    spacing_mm : tuple of float, (x, y, z) mm
    origin_mm : tuple of float, LPS mm of voxel (0, 0, 0)
    direction : tuple of 9 float, ITK row-major direction cosines; column j is index axis j in LPS
    """

    size: tuple
    spacing_mm: tuple
    origin_mm: tuple
    direction: tuple = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)

    @property
    def shape_zyx(self) -> tuple:
        """Numpy shape ``(Z, Y, X)`` of a volume on this grid."""
        return (int(self.size[2]), int(self.size[1]), int(self.size[0]))

    @property
    def direction_matrix(self) -> np.ndarray:
        """Direction cosines, shape (3, 3); column j is index axis j (x, y, z) in LPS."""
        return np.asarray(self.direction, dtype=float).reshape(3, 3)

    def index_to_lps(self, ijk_xyz) -> np.ndarray:
        """LPS mm of continuous indices, ``ijk_xyz`` shape (..., 3) in ITK (x, y, z) order."""
        ijk = np.asarray(ijk_xyz, dtype=float)
        m = self.direction_matrix * np.asarray(self.spacing_mm, dtype=float)[None, :]
        return np.asarray(self.origin_mm, dtype=float) + ijk @ m.T

    def lps_to_index(self, lps) -> np.ndarray:
        """Continuous ITK (x, y, z) indices of LPS points, shape (..., 3)."""
        p = np.asarray(lps, dtype=float) - np.asarray(self.origin_mm, dtype=float)
        m = self.direction_matrix * np.asarray(self.spacing_mm, dtype=float)[None, :]
        return p @ np.linalg.inv(m).T

    def z_mm(self) -> np.ndarray:
        """LPS z (mm, + = superior) of the centre of every slice, shape (Z,)."""
        k = np.arange(self.size[2], dtype=float)
        cx, cy = (self.size[0] - 1) / 2.0, (self.size[1] - 1) / 2.0
        pts = np.stack([np.full_like(k, cx), np.full_like(k, cy), k], axis=-1)
        return self.index_to_lps(pts)[:, 2]

    def orientation_code(self) -> str:
        """Three-letter code of where the index axes point, as ITK's DICOMOrientImageFilter names it
        (``'LPS'`` for an identity direction, ``'RAS'`` for a prone-style flip of x and y)."""
        letters = {0: ("L", "R"), 1: ("P", "A"), 2: ("S", "I")}
        m = self.direction_matrix
        out = []
        for j in range(3):
            col = m[:, j]
            a = int(np.argmax(np.abs(col)))
            out.append(letters[a][0] if col[a] > 0 else letters[a][1])
        return "".join(out)

    def same_as(self, other: "Grid", tol_mm: float = 1e-3) -> bool:
        """True when two grids are the same within ``tol_mm`` (and 1e-4 in cosines)."""
        return (tuple(self.size) == tuple(other.size)
                and np.allclose(self.spacing_mm, other.spacing_mm, atol=tol_mm)
                and np.allclose(self.origin_mm, other.origin_mm, atol=tol_mm)
                and np.allclose(self.direction, other.direction, atol=1e-4))

    def to_dict(self) -> dict:
        return {"size": [int(s) for s in self.size],
                "spacing_mm": [float(s) for s in self.spacing_mm],
                "origin_mm": [float(s) for s in self.origin_mm],
                "direction": [float(s) for s in self.direction]}


@dataclass
class PhaseInfo:
    """One CT pass (phase) of a dynamic study.

    Attributes
    ----------
    index : int, order in time (0 = first pass)
    time_s : float, start of the pass (its first slice), seconds after the first pass began
    duration_s : float, first to last slice, s
    table_direction : str, ``'craniocaudal'`` or ``'caudocranial'``
    series_number : int or None
    source : str, where it came from (folder, file or series UID), for error messages
    resampled : bool, True when this pass was resampled onto the first pass's grid
    """

    index: int
    time_s: float
    duration_s: float = 0.0
    table_direction: str = "craniocaudal"
    series_number: int | None = None
    source: str = ""
    resampled: bool = False


@dataclass
class PhaseSeries:
    """A lazy dynamic study: metadata now, pixels of one pass when :meth:`phase` asks.

    Attributes
    ----------
    phases : list of PhaseInfo, in time order
    grid : Grid, the common grid (the first pass's); every pass is delivered on it
    slice_times_s : ndarray, shape (n_phases, Z), s
        Acquisition time of every slice of every pass, seconds after the first pass began.
    patient_position : str, DICOM PatientPosition (``'HFS'``, ``'HFP'``, ``'HFDR'``, ...) or ``''``
    skipped : list of dict, ``{"path": ..., "reason": ...}`` objects that were not passes
    study_uid : str
    notes : list of str, things the reader did that the report should say (resampling, ...)
    patient : dict, identifiers (PatientName, PatientID, StudyDate, ...); report.html hides them
        unless asked
    """

    phases: list
    grid: Grid
    slice_times_s: np.ndarray
    patient_position: str = ""
    skipped: list = field(default_factory=list)
    study_uid: str = ""
    notes: list = field(default_factory=list)
    patient: dict = field(default_factory=dict)
    _loader: Callable[[int], np.ndarray] | None = field(default=None, repr=False)
    _cache: dict = field(default_factory=dict, repr=False)
    cache_size: int = 2

    @property
    def n_phases(self) -> int:
        return len(self.phases)

    @property
    def times_s(self) -> np.ndarray:
        """Start time of each pass, shape (n_phases,), s."""
        return np.array([p.time_s for p in self.phases], dtype=float)

    def phase(self, i: int) -> np.ndarray:
        """Pixels of pass ``i`` on :attr:`grid`.

        Returns
        -------
        ndarray, shape (Z, Y, X), float32, HU
        """
        if not 0 <= i < self.n_phases:
            raise IndexError(f"phase {i} out of range 0..{self.n_phases - 1}")
        if i in self._cache:
            return self._cache[i]
        vol = self._loader(i)
        if self.cache_size > 0:
            while len(self._cache) >= self.cache_size:
                self._cache.pop(next(iter(self._cache)))
            self._cache[i] = vol
        return vol

    @classmethod
    def from_arrays(cls, volumes: Sequence[np.ndarray], grid: Grid, times_s,
                    slice_times_s=None, patient_position: str = "HFS",
                    table_directions: Sequence[str] | None = None) -> "PhaseSeries":
        """An in-memory series (phantoms, notebooks, tests).

        Parameters
        ----------
        volumes : sequence of ndarray, each shape (Z, Y, X), HU
        grid : Grid
        times_s : sequence of float, pass start times, s
        slice_times_s : ndarray, shape (n_phases, Z), s, optional (default: each pass at its start)
        """
        vols = [np.asarray(v, dtype=np.float32) for v in volumes]
        for k, v in enumerate(vols):
            if v.shape != grid.shape_zyx:
                raise InputError(f"phase {k}: shape {v.shape} does not match grid {grid.shape_zyx}")
        times = np.asarray(times_s, dtype=float)
        if len(times) != len(vols):
            raise InputError(f"{len(vols)} volumes but {len(times)} times")
        nz = grid.shape_zyx[0]
        if slice_times_s is None:
            slice_times_s = np.repeat(times[:, None], nz, axis=1)
        slice_times_s = np.asarray(slice_times_s, dtype=float)
        if slice_times_s.shape != (len(vols), nz):
            raise InputError(f"slice_times_s shape {slice_times_s.shape} != {(len(vols), nz)}")
        dirs = list(table_directions) if table_directions else ["craniocaudal"] * len(vols)
        phases = [PhaseInfo(index=k, time_s=float(times[k]),
                            duration_s=float(np.ptp(slice_times_s[k])),
                            table_direction=dirs[k], source=f"array {k}")
                  for k in range(len(vols))]
        return cls(phases=phases, grid=grid, slice_times_s=slice_times_s,
                   patient_position=patient_position, _loader=lambda i: vols[i], cache_size=0)


def read_series(inputs, times_s=None, study_uid: str | None = None) -> PhaseSeries:
    """Read a dynamic study (DICOM folders, volume files or a 4D NIfTI) lazily.

    Raises
    ------
    InputError
        With one line naming what is wrong and where.
    """
    raise NotImplementedError


def read_labelmap(path, grid: Grid) -> np.ndarray:
    """Read a vertebra label map (TotalSegmentator ``total`` ids) that must lie on ``grid``.

    Returns
    -------
    ndarray, shape (Z, Y, X), int16
    """
    raise NotImplementedError


def write_volume(path, array: np.ndarray, grid: Grid) -> None:
    """Write ``array`` (shape (Z, Y, X)) on ``grid`` to ``path`` (.nii.gz, .nrrd, .mha), atomically."""
    # minimal version (report engineer): SimpleITK image on the grid, temp file + os.replace
    import os
    import tempfile

    import SimpleITK as sitk

    arr = np.asarray(array)
    if arr.shape != grid.shape_zyx:
        raise InputError(f"{path}: array shape {arr.shape} does not match grid {grid.shape_zyx}")
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8)
    img = sitk.GetImageFromArray(np.ascontiguousarray(arr))
    img.SetSpacing([float(s) for s in grid.spacing_mm])
    img.SetOrigin([float(s) for s in grid.origin_mm])
    img.SetDirection([float(s) for s in grid.direction])
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    name = os.path.basename(path)
    ext = next((e for e in (".nii.gz", ".nii", ".nrrd", ".mha") if name.endswith(e)), "")
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=ext, dir=folder)
    os.close(fd)
    try:
        sitk.WriteImage(img, tmp, useCompression=True)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
