"""Reading dynamic CT myelography studies into a lazy :class:`PhaseSeries`.

SimpleITK and pydicom stay inside this module: everything it returns is numpy arrays and small
dataclasses. Arrays are in numpy order ``(Z, Y, X)``; sizes, spacings and origins in
:class:`Grid` are in ITK order ``(x, y, z)``, in patient LPS millimetres.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from leakloc import InputError

__all__ = ["Grid", "PhaseInfo", "PhaseSeries", "read_series", "read_labelmap", "write_volume",
           "require_dynamic", "InputError"]


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


# ---------------------------------------------------------------------------------------------
# Reading studies
# ---------------------------------------------------------------------------------------------

#: file name endings read as volume files (one pass each, or one 4D NIfTI)
VOLUME_EXTENSIONS = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
#: sidecar file read next to volume files (see :func:`read_series`)
SIDECAR_NAME = "times.json"
#: outside value when a pass is resampled onto the first pass's grid, HU
RESAMPLE_DEFAULT_HU = -1024.0

_DICOMDIR_UID = "1.2.840.10008.1.3.10"
_SR_PREFIX = "1.2.840.10008.5.1.4.1.1.88."
_SC_PREFIX = "1.2.840.10008.5.1.4.1.1.7"
_RAW_UID = "1.2.840.10008.5.1.4.1.1.66"
_PR_PREFIX = "1.2.840.10008.5.1.4.1.1.11."
_DOSE_SOP = {"1.2.840.10008.5.1.4.1.1.88.67": "dose report", "1.2.840.10008.5.1.4.1.1.88.68": "dose report"}


def require_dynamic(series: PhaseSeries) -> PhaseSeries:
    """Return ``series`` if it has at least two passes, else raise :class:`InputError`.

    ``leakloc info`` works with one pass; an analysis needs two or more.
    """
    if series.n_phases < 2:
        where = series.phases[0].source if series.phases else "the input"
        raise InputError(f"only {series.n_phases} pass found in {where}; a dynamic analysis "
                         "needs two or more passes")
    return series


def read_series(inputs, times_s=None, study_uid: str | None = None,
                cache_size: int = 2) -> PhaseSeries:
    """Read a dynamic study (DICOM folders, volume files or a 4D NIfTI) lazily.

    Only metadata is read here; :meth:`PhaseSeries.phase` reads one pass (float32 HU on
    ``series.grid``) and the cache keeps at most ``cache_size`` passes.

    Parameters
    ----------
    inputs : path or sequence of paths
        * DICOM: one folder (searched recursively) holding every pass, mixed or one sub-folder
          per pass, or several folders / files. Passes are series (SeriesInstanceUID), split by
          TemporalPositionIdentifier, or by AcquisitionNumber when one series holds the same
          slice positions several times. Passes are ordered by acquisition time
          (AcquisitionDate/Time, else ContentDate/Time, or FrameReferenceTime when every slice
          has one; else SeriesNumber). Slices are ordered along the slice normal. Localizers,
          structured / dose reports, secondary captures, DICOMDIR, non-DICOM files, series in
          another orientation and series of a few slices are skipped and listed in
          ``series.skipped``.
        * Volume files (``.nii``, ``.nii.gz``, ``.nrrd``, ``.nhdr``, ``.mha``, ``.mhd``): one file
          per pass, in time order as given (a folder: natural name order, or the sidecar's
          ``files``). Pass start times come from ``times_s`` or from a sidecar ``times.json`` next
          to the files::

              {"times_s": [0, 10, 21],                    # required without --times, s
               "files": ["p0.nii.gz", "p1.nii.gz", ...],  # optional: order of the files
               "slice_times_s": [[...], [...], ...],      # optional: (n_passes, Z) s, each
                                                          #   file's own slice order
               "table_directions": ["craniocaudal", ...], # optional
               "patient_position": "HFP"}                 # optional DICOM PatientPosition

        * One 4D NIfTI: passes along the 4th axis; times from ``times_s``, the sidecar, or the
          header time step (pixdim[4], xyzt_units).
    times_s : sequence of float, optional
        Pass start times, s (``--times``); they override the files' own times (per-slice
        offsets within a pass are kept).
    study_uid : str, optional
        StudyInstanceUID to read when a folder mixes studies (``--study``).
    cache_size : int
        Passes kept in memory.

    Returns
    -------
    PhaseSeries
        Every pass on the first pass's grid (LPS); passes on another grid are resampled with
        SimpleITK (linear, outside -1024 HU), flagged ``PhaseInfo.resampled`` and noted in
        ``series.notes``. ``slice_times_s`` has shape (n_passes, Z), s after the first pass
        began, in the grid's z order.

    Raises
    ------
    InputError
        With one line naming what is wrong and where.
    """
    paths = _as_paths(inputs)
    if times_s is not None:
        times_s = _check_times(times_s, "--times")
    volume_files, other_files, roots = [], [], []
    for path in paths:
        if not path.exists():
            raise InputError(f"input not found: {path}")
        if path.is_dir():
            files = sorted((f for f in path.rglob("*") if f.is_file() and not f.name.startswith(".")),
                           key=lambda f: _natural_key(str(f)))
            if not files:
                raise InputError(f"empty folder: {path}")
            roots.append(path)
            for f in files:
                if _is_volume_file(f):
                    volume_files.append(f)
                elif f.name.lower().endswith(".json"):
                    continue
                else:
                    other_files.append(f)
        elif _is_volume_file(path):
            roots.append(path.parent)
            volume_files.append(path)
        else:
            roots.append(path.parent)
            other_files.append(path)
    if other_files:
        series = _read_dicom(other_files, roots, times_s, study_uid, cache_size,
                             volume_files=volume_files)
    elif volume_files:
        explicit = all(not p.is_dir() for p in paths)
        series = _read_volumes(volume_files, paths, times_s, cache_size, explicit_order=explicit)
    else:
        raise InputError(f"no DICOM or volume files in {', '.join(map(str, paths))}")
    return series


def read_labelmap(path, grid: Grid) -> np.ndarray:
    """Read a vertebra label map (TotalSegmentator ``total`` ids) that must lie on ``grid``.

    Parameters
    ----------
    path : path
        Any SimpleITK-readable 3D image (.nii.gz, .nrrd, .mha).
    grid : Grid
        The study grid; the label map must match it (size, spacing, origin, direction).

    Returns
    -------
    ndarray, shape (Z, Y, X), int16
    """
    import SimpleITK as sitk

    path = Path(path)
    if not path.exists():
        raise InputError(f"label map not found: {path}")
    try:
        img = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise InputError(f"label map {path}: cannot read ({_one_line(exc)})") from None
    if img.GetDimension() != 3 or img.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"label map {path}: expected a 3D scalar image, got "
                         f"{img.GetDimension()}D with {img.GetNumberOfComponentsPerPixel()} components")
    lgrid = _grid_of(img)
    if not lgrid.same_as(grid, tol_mm=1e-2):
        raise InputError(f"label map {path} is on another grid (size {list(lgrid.size)}, spacing "
                         f"{_fmt_list(lgrid.spacing_mm)} mm, origin {_fmt_list(lgrid.origin_mm)} mm) "
                         f"than the study (size {list(grid.size)}, spacing "
                         f"{_fmt_list(grid.spacing_mm)} mm, origin {_fmt_list(grid.origin_mm)} mm)")
    arr = sitk.GetArrayFromImage(img)
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all() or not np.array_equal(arr, np.rint(arr)):
            raise InputError(f"label map {path}: labels must be whole numbers")
    if arr.size and (arr.min() < np.iinfo(np.int16).min or arr.max() > np.iinfo(np.int16).max):
        raise InputError(f"label map {path}: labels outside the int16 range")
    return arr.astype(np.int16)


def write_volume(path, array: np.ndarray, grid: Grid) -> None:
    """Write ``array`` on ``grid`` to ``path`` (.nii.gz, .nii, .nrrd, .mha), atomically.

    Parameters
    ----------
    path : path
        Output file; its extension picks the format. Written to a temporary file in the same
        folder, then moved into place (``os.replace``): the file is whole or absent.
    array : ndarray, shape (Z, Y, X)
        Voxel values; bool is stored as uint8.
    grid : Grid
        Geometry (LPS mm); NIfTI stores it as RAS in its header as usual (SimpleITK converts).
    """
    import SimpleITK as sitk

    path = Path(path)
    arr = np.asarray(array)
    if arr.shape != grid.shape_zyx:
        raise ValueError(f"array shape {arr.shape} does not match grid {grid.shape_zyx}")
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    img = sitk.GetImageFromArray(arr)
    _set_geometry(img, grid)
    ext = _volume_ext(path) or path.suffix
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp{ext}")
    try:
        sitk.WriteImage(img, str(tmp), True if ext in (".nii.gz", ".nrrd", ".mha") else False)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------

def _as_paths(inputs) -> list:
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    paths = [Path(p) for p in inputs]
    if not paths:
        raise InputError("no input given")
    return paths


def _natural_key(s: str):
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", s)]


def _volume_ext(path: Path) -> str:
    name = path.name.lower()
    for ext in VOLUME_EXTENSIONS:
        if name.endswith(ext):
            return ext
    return ""


def _is_volume_file(path: Path) -> bool:
    return bool(_volume_ext(path))


def _one_line(exc) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 200 else text[:197] + "..."


def _fmt_list(values) -> str:
    return "[" + ", ".join(f"{float(v):g}" for v in values) + "]"


def _check_times(times, what: str) -> np.ndarray:
    try:
        t = np.asarray([float(v) for v in times], dtype=float)
    except (TypeError, ValueError):
        raise InputError(f"{what}: times must be numbers in seconds, got {times!r}") from None
    if not np.isfinite(t).all():
        raise InputError(f"{what}: times must be finite, got {_fmt_list(t)}")
    if len(t) > 1 and np.any(np.diff(t) <= 0):
        k = int(np.nonzero(np.diff(t) <= 0)[0][0])
        raise InputError(f"{what}: times do not increase ({t[k]:g} s then {t[k + 1]:g} s at "
                         f"passes {k} and {k + 1})")
    return t


def _grid_of(img) -> Grid:
    return Grid(size=tuple(int(v) for v in img.GetSize()),
                spacing_mm=tuple(float(v) for v in img.GetSpacing()),
                origin_mm=tuple(float(v) for v in img.GetOrigin()),
                direction=tuple(float(v) for v in img.GetDirection()))


def _set_geometry(img, grid: Grid) -> None:
    img.SetSpacing([float(v) for v in grid.spacing_mm])
    img.SetOrigin([float(v) for v in grid.origin_mm])
    img.SetDirection([float(v) for v in grid.direction])


def _reference_image(grid: Grid):
    import SimpleITK as sitk

    ref = sitk.Image([int(v) for v in grid.size], sitk.sitkUInt8)
    _set_geometry(ref, grid)
    return ref


def _resample_to(vol: np.ndarray, src: Grid, dst: Grid) -> np.ndarray:
    """Resample ``vol`` (on ``src``) onto ``dst``: linear, outside -1024 HU, float32."""
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(np.ascontiguousarray(vol, dtype=np.float32))
    _set_geometry(img, src)
    out = sitk.Resample(img, _reference_image(dst), sitk.Transform(), sitk.sitkLinear,
                        RESAMPLE_DEFAULT_HU, sitk.sitkFloat32)
    return sitk.GetArrayFromImage(out)


def _finite_checked(loader, phases):
    """Wrap a pass loader: float32 (Z, Y, X) and an InputError naming the pass on NaN/inf."""
    def load(i: int) -> np.ndarray:
        vol = np.asarray(loader(i), dtype=np.float32)
        bad = ~np.isfinite(vol)
        if bad.any():
            raise InputError(f"pass {i} ({phases[i].source}): {int(bad.sum())} voxels are NaN or "
                             "infinite")
        return vol
    return load


def _slice_centres_along(grid: Grid, normal: np.ndarray) -> np.ndarray:
    """Position (mm) of every slice centre of ``grid`` along ``normal``, shape (Z,)."""
    k = np.arange(grid.size[2], dtype=float)
    cx, cy = (grid.size[0] - 1) / 2.0, (grid.size[1] - 1) / 2.0
    pts = grid.index_to_lps(np.stack([np.full_like(k, cx), np.full_like(k, cy), k], axis=-1))
    return pts @ normal


def _map_slice_times(ref: Grid, src: Grid, times_k: np.ndarray) -> np.ndarray:
    """Slice times of a pass on ``src`` (in ``src`` slice order) at the slices of ``ref``."""
    if src.same_as(ref):
        return np.asarray(times_k, dtype=float)
    normal = src.direction_matrix[:, 2]
    d_src = _slice_centres_along(src, normal)
    d_ref = _slice_centres_along(ref, normal)
    order = np.argsort(d_src)
    return np.interp(d_ref, d_src[order], np.asarray(times_k, dtype=float)[order])


def _table_direction(z_mm: np.ndarray, t_s: np.ndarray) -> str:
    """'craniocaudal' when the first-acquired slice is the most superior one (LPS z largest)."""
    t = np.asarray(t_s, dtype=float)
    z = np.asarray(z_mm, dtype=float)
    if t.size < 2 or np.ptp(t) <= 0:
        return "craniocaudal"
    first, last = int(np.argmin(t)), int(np.argmax(t))
    return "craniocaudal" if z[first] >= z[last] else "caudocranial"


def _finish(phases, grids, slice_times_k, ref_index_zs, times_override, *, notes, what):
    """Common tail: times relative to pass 0, overrides, table directions, resampling flags.

    ``slice_times_k[p]`` are absolute-or-relative seconds in pass ``p``'s own slice order (or
    None); returns the (n, Z) array on the reference grid.
    """
    ref = grids[0]
    n = len(phases)
    nz = ref.shape_zyx[0]
    have = all(t is not None for t in slice_times_k)
    if times_override is not None:
        if len(times_override) != n:
            raise InputError(f"--times gives {len(times_override)} times but {what} has {n} passes")
        rel = []
        for p in range(n):
            t = slice_times_k[p]
            off = (np.asarray(t, float) - float(np.min(t))) if t is not None else np.zeros(grids[p].size[2])
            rel.append(times_override[p] + off)
        slice_times_k = rel
    elif not have:
        if n > 1:
            raise InputError(f"{n} passes in {what} but no acquisition times; give pass start "
                             "times with --times 0,10,21,...")
        slice_times_k = [np.zeros(grids[0].size[2])]
    else:
        t0 = float(np.min(slice_times_k[0]))
        slice_times_k = [np.asarray(t, float) - t0 for t in slice_times_k]
    starts = np.array([float(np.min(t)) for t in slice_times_k])
    if n > 1 and np.any(np.diff(starts) <= 0):
        k = int(np.nonzero(np.diff(starts) <= 0)[0][0])
        raise InputError(f"pass times do not increase: {phases[k].source} starts at "
                         f"{starts[k]:g} s and {phases[k + 1].source} at {starts[k + 1]:g} s "
                         "(two reconstructions of one pass?)")
    out = np.empty((n, nz), dtype=float)
    for p, ph in enumerate(phases):
        g = grids[p]
        t = np.asarray(slice_times_k[p], dtype=float)
        z_own = _slice_centres_along(g, np.array([0.0, 0.0, 1.0]))
        if not ph.table_direction:
            ph.table_direction = _table_direction(z_own, t)
        ph.time_s = float(np.min(t))
        ph.duration_s = float(np.ptp(t))
        out[p] = _map_slice_times(ref, g, t)
        if p > 0 and not g.same_as(ref):
            ph.resampled = True
            notes.append(f"pass {p} ({ph.source}) was on another grid (size {list(g.size)}, spacing "
                         f"{_fmt_list(g.spacing_mm)} mm, origin {_fmt_list(g.origin_mm)} mm) and was "
                         "resampled onto pass 0's grid (linear, outside -1024 HU)")
    return out


# ---------------------------------------------------------------------------------------------
# volume files
# ---------------------------------------------------------------------------------------------

def _read_sidecar(folder: Path):
    path = folder / SIDECAR_NAME
    if not path.is_file():
        return None, path
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not valid JSON ({_one_line(exc)})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a JSON object with 'times_s'")
    return data, path


def _read_volumes(files, inputs, times_s, cache_size, explicit_order) -> PhaseSeries:
    import SimpleITK as sitk

    folder = inputs[0] if inputs[0].is_dir() else files[0].parent
    sidecar, sidecar_path = _read_sidecar(folder)
    if sidecar and not explicit_order and sidecar.get("files"):
        by_name = {f.name: f for f in files}
        try:
            files = [by_name[name] for name in sidecar["files"]]
        except KeyError as exc:
            raise InputError(f"{sidecar_path}: file {exc.args[0]!r} listed in 'files' not found "
                             f"in {folder}") from None
    elif not explicit_order:
        files = sorted(files, key=lambda f: _natural_key(f.name))
    infos = []
    for f in files:
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(f))
        try:
            reader.ReadImageInformation()
        except RuntimeError as exc:
            raise InputError(f"{f}: cannot read volume ({_one_line(exc)})") from None
        infos.append(reader)
    if len(files) == 1 and infos[0].GetDimension() == 4:
        return _read_4d(files[0], infos[0], times_s, sidecar, sidecar_path, cache_size)
    for f, r in zip(files, infos):
        if r.GetDimension() != 3 and not (r.GetDimension() == 4 and r.GetSize()[3] == 1):
            raise InputError(f"{f}: expected a 3D volume per pass, got {r.GetDimension()}D "
                             f"(one 4D NIfTI must be the only input)")
        if r.GetNumberOfComponents() != 1:
            raise InputError(f"{f}: expected a scalar volume, got {r.GetNumberOfComponents()} components")
    grids = [Grid(size=tuple(int(v) for v in r.GetSize()[:3]),
                  spacing_mm=tuple(float(v) for v in r.GetSpacing()[:3]),
                  origin_mm=tuple(float(v) for v in r.GetOrigin()[:3]),
                  direction=_direction3(r.GetDirection(), r.GetDimension())) for r in infos]
    n = len(files)
    what = f"{len(files)} volume files in {folder}"
    if times_s is None:
        if sidecar is not None and "times_s" in sidecar:
            times_s = _check_times(sidecar["times_s"], str(sidecar_path))
            if len(times_s) != n:
                raise InputError(f"{sidecar_path}: {len(times_s)} times for {n} volume files")
        elif n > 1:
            raise InputError(f"no pass times for {what}: give --times 0,10,21,... or a "
                             f"{SIDECAR_NAME} next to the files")
    elif len(times_s) != n:
        raise InputError(f"--times gives {len(times_s)} times but {what} has {n} passes")
    slice_times = [None] * n
    if sidecar is not None and sidecar.get("slice_times_s") is not None:
        st = sidecar["slice_times_s"]
        if len(st) != n:
            raise InputError(f"{sidecar_path}: slice_times_s has {len(st)} rows for {n} passes")
        for p in range(n):
            try:
                row = np.asarray(st[p], dtype=float)
            except (TypeError, ValueError):
                row = np.empty(0)
            if row.shape != (grids[p].size[2],) or not np.isfinite(row).all():
                raise InputError(f"{sidecar_path}: slice_times_s[{p}] needs {grids[p].size[2]} "
                                 f"finite times (slices of {files[p].name})")
            slice_times[p] = row
    elif times_s is not None:
        slice_times = [np.full(g.size[2], float(t)) for g, t in zip(grids, times_s)]
        times_s = None
    directions = (sidecar or {}).get("table_directions") or [""] * n
    if len(directions) != n or any(d not in ("", "craniocaudal", "caudocranial") for d in directions):
        raise InputError(f"{sidecar_path}: table_directions must list 'craniocaudal' or "
                         f"'caudocranial' for each of {n} passes")
    phases = [PhaseInfo(index=p, time_s=0.0, table_direction=directions[p], source=str(files[p]))
              for p in range(n)]
    notes: list = []
    st = _finish(phases, grids, slice_times, None, times_s, notes=notes, what=what)
    ref = grids[0]

    def load(i: int) -> np.ndarray:
        try:
            img = sitk.ReadImage(str(files[i]), sitk.sitkFloat32)
        except RuntimeError as exc:
            raise InputError(f"{files[i]}: cannot read volume ({_one_line(exc)})") from None
        if img.GetDimension() == 4:
            img = img[:, :, :, 0]
        vol = sitk.GetArrayFromImage(img)
        bad = _nifti_nonfinite(files[i])
        if bad:
            raise InputError(f"pass {i} ({phases[i].source}): {bad} voxels are NaN or infinite")
        if phases[i].resampled:
            vol = _resample_to(vol, grids[i], ref)
        return vol

    pos = str((sidecar or {}).get("patient_position", "") or "")
    return PhaseSeries(phases=phases, grid=ref, slice_times_s=st, patient_position=pos,
                       notes=notes, _loader=_finite_checked(load, phases), cache_size=cache_size)


def _direction3(direction, dim: int) -> tuple:
    d = np.asarray(direction, dtype=float).reshape(dim, dim)[:3, :3]
    return tuple(float(v) for v in d.ravel())


def _nifti_time_step_s(path: Path) -> float | None:
    """pixdim[4] of a NIfTI-1 header in seconds (xyzt_units), or None if not NIfTI-1.

    Read from the header itself because ITK turns a zero pixdim into 1.
    """
    import gzip

    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rb") as fp:
            hdr = fp.read(348)
    except OSError:
        return None
    if len(hdr) < 348:
        return None
    for endian in ("<", ">"):
        if int(np.frombuffer(hdr[0:4], f"{endian}i4")[0]) == 348:
            dt = float(np.frombuffer(hdr[92:96], f"{endian}f4")[0])
            units = hdr[123]
            return dt * {16: 1e-3, 24: 1e-6}.get(units & 0x38, 1.0)
    return None


def _nifti_nonfinite(path: Path, volume: int = 0) -> int:
    """Number of NaN / inf voxels in 3D volume ``volume`` of a float NIfTI-1 file (0 otherwise).

    ITK 5.4's NIfTI reader silently turns NaN and inf into 0 (fixed in ITK 6, ITK PR #6683),
    so the on-disk values are checked here.
    """
    import gzip

    name = path.name.lower()
    if not (name.endswith(".nii") or name.endswith(".nii.gz")):
        return 0
    opener = gzip.open if name.endswith(".gz") else open
    with opener(path, "rb") as fp:
        hdr = fp.read(348)
        if len(hdr) < 348:
            return 0
        for e in ("<", ">"):
            if int(np.frombuffer(hdr[0:4], f"{e}i4")[0]) == 348:
                break
        else:
            return 0
        dtype = {16: np.dtype(f"{e}f4"), 64: np.dtype(f"{e}f8")}.get(
            int(np.frombuffer(hdr[70:72], f"{e}i2")[0]))
        if dtype is None:
            return 0
        dim = np.frombuffer(hdr[40:56], f"{e}i2")
        nvox = int(np.prod([max(int(d), 1) for d in dim[1:4]]))
        offset = int(np.frombuffer(hdr[108:112], f"{e}f4")[0])
        fp.seek(offset + volume * nvox * dtype.itemsize)
        data = np.frombuffer(fp.read(nvox * dtype.itemsize), dtype=dtype)
    return int(np.count_nonzero(~np.isfinite(data)))


def _read_4d(path, info, times_s, sidecar, sidecar_path, cache_size) -> PhaseSeries:
    import SimpleITK as sitk

    size = info.GetSize()
    n = int(size[3])
    grid = Grid(size=tuple(int(v) for v in size[:3]),
                spacing_mm=tuple(float(v) for v in info.GetSpacing()[:3]),
                origin_mm=tuple(float(v) for v in info.GetOrigin()[:3]),
                direction=_direction3(info.GetDirection(), 4))
    if times_s is None and sidecar is not None and "times_s" in sidecar:
        times_s = _check_times(sidecar["times_s"], str(sidecar_path))
    if times_s is None:
        dt = _nifti_time_step_s(path)
        if dt is None:
            keys = info.GetMetaDataKeys()
            units = int(info.GetMetaData("xyzt_units")) if "xyzt_units" in keys else 0
            dt = float(info.GetSpacing()[3]) * {16: 1e-3, 24: 1e-6}.get(units & 0x38, 1.0)
        if n > 1 and not (np.isfinite(dt) and dt > 0):
            raise InputError(f"{path}: 4D NIfTI without a time step (pixdim[4] = {dt:g}); give "
                             "--times 0,10,21,...")
        times_s = np.arange(n) * dt
    if len(times_s) != n:
        raise InputError(f"{len(times_s)} times for the {n} passes of {path}")
    phases = [PhaseInfo(index=p, time_s=float(times_s[p]), source=f"{path} volume {p}")
              for p in range(n)]
    notes: list = []
    st = _finish(phases, [grid] * n, [np.full(grid.size[2], float(t)) for t in times_s], None,
                 None, notes=notes, what=str(path))
    pos = str((sidecar or {}).get("patient_position", "") or "")

    def load(i: int) -> np.ndarray:
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        reader.SetOutputPixelType(sitk.sitkFloat32)
        reader.SetExtractIndex([0, 0, 0, int(i)])
        reader.SetExtractSize([int(size[0]), int(size[1]), int(size[2]), 0])
        try:
            img = reader.Execute()
        except RuntimeError as exc:
            raise InputError(f"{path}: cannot read volume {i} ({_one_line(exc)})") from None
        bad = _nifti_nonfinite(path, i)
        if bad:
            raise InputError(f"pass {i} ({phases[i].source}): {bad} voxels are NaN or infinite")
        return sitk.GetArrayFromImage(img)

    return PhaseSeries(phases=phases, grid=grid, slice_times_s=st, patient_position=pos,
                       notes=notes, _loader=_finite_checked(load, phases), cache_size=cache_size)


# ---------------------------------------------------------------------------------------------
# DICOM
# ---------------------------------------------------------------------------------------------

@dataclass
class _Slice:
    path: Path
    study: str
    series: str
    series_number: int | None
    acquisition: int | None
    temporal: int | None
    ipp: np.ndarray
    iop: np.ndarray
    rows: int
    cols: int
    pixel_spacing: tuple
    time_s: float | None
    frame_ref_s: float | None
    patient_position: str
    has_pixels: bool
    transfer_syntax: str


def _int_or_none(v):
    try:
        return int(v) if v not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _tm_seconds(tm: str) -> float | None:
    s = str(tm or "").strip().replace(":", "")
    if not s:
        return None
    try:
        hh = int(s[0:2])
        mm = int(s[2:4]) if len(s) >= 4 else 0
        ss = float(s[4:]) if len(s) > 4 else 0.0
    except ValueError:
        return None
    return hh * 3600.0 + mm * 60.0 + ss


def _da_days(da: str) -> int | None:
    s = str(da or "").strip().replace(".", "").replace("-", "")
    try:
        return _dt.date(int(s[0:4]), int(s[4:6]), int(s[6:8])).toordinal()
    except (ValueError, IndexError):
        return None


def _acquired_s(ds) -> float | None:
    """Absolute acquisition time of a slice, s (days * 86400 + time of day)."""
    study_day = _da_days(ds.get("StudyDate", ""))
    study_tm = _tm_seconds(ds.get("StudyTime", ""))
    for date_kw, time_kw in (("AcquisitionDate", "AcquisitionTime"), ("ContentDate", "ContentTime")):
        tod = _tm_seconds(ds.get(time_kw, ""))
        if tod is None:
            continue
        day = _da_days(ds.get(date_kw, ""))
        if day is None:
            day = study_day if study_day is not None else 0
            if study_tm is not None and tod < study_tm - 3600.0:
                day += 1  # past midnight without a date of its own
        return day * 86400.0 + tod
    adt = str(ds.get("AcquisitionDateTime", "") or "").strip()
    if len(adt) >= 8:
        day = _da_days(adt[:8])
        tod = _tm_seconds(adt[8:].split("+")[0].split("-")[0]) or 0.0
        if day is not None:
            return day * 86400.0 + tod
    return None


def _skip_reason(ds) -> str | None:
    media = str(getattr(ds, "file_meta", {}).get("MediaStorageSOPClassUID", "") or "")
    sop = str(ds.get("SOPClassUID", "") or media)
    if media == _DICOMDIR_UID or sop == _DICOMDIR_UID or "DirectoryRecordSequence" in ds:
        return "DICOMDIR"
    if sop in _DOSE_SOP:
        return "dose report"
    if sop.startswith(_SR_PREFIX) or str(ds.get("Modality", "")) == "SR":
        return "structured report"
    if sop.startswith(_SC_PREFIX):
        return "secondary capture"
    if sop.startswith(_PR_PREFIX):
        return "presentation state"
    if sop == _RAW_UID:
        return "raw data"
    image_type = [str(v).upper() for v in (ds.get("ImageType", []) or [])]
    if "LOCALIZER" in image_type:
        return "localizer"
    modality = str(ds.get("Modality", "") or "")
    if modality not in ("", "CT"):
        return f"modality {modality}"
    if _int_or_none(ds.get("NumberOfFrames", 1)) not in (None, 1):
        return "multi-frame image (not supported)"
    if not all(k in ds for k in ("ImagePositionPatient", "ImageOrientationPatient", "Rows",
                                 "Columns", "PixelSpacing")):
        return "no image geometry"
    return None


def _rel(path: Path, roots) -> str:
    """``path`` relative to the first input folder holding it (else as is)."""
    for root in roots:
        try:
            return str(path.relative_to(root)) or "."
        except ValueError:
            continue
    return str(path)


def _scan_dicom(files, roots):
    """Metadata of every file (no pixels): (slices, skipped)."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    slices, skipped = [], []

    def rel(path: Path) -> str:
        return _rel(path, roots)

    for f in files:
        if f.name.upper() == "DICOMDIR":
            skipped.append({"path": rel(f), "reason": "DICOMDIR"})
            continue
        try:
            with open(f, "rb") as fp, warnings.catch_warnings():
                warnings.simplefilter("ignore")  # non-conformant values in real exports
                ds = pydicom.dcmread(fp, stop_before_pixels=True)
                has_pixels = fp.tell() < os.fstat(fp.fileno()).st_size
        except InvalidDicomError:
            skipped.append({"path": rel(f), "reason": "not DICOM"})
            continue
        except Exception as exc:  # noqa: BLE001 - a broken file is reported, not fatal
            skipped.append({"path": rel(f), "reason": f"unreadable DICOM ({_one_line(exc)})"})
            continue
        reason = _skip_reason(ds)
        if reason:
            skipped.append({"path": rel(f), "reason": reason})
            continue
        try:
            ipp = np.asarray([float(v) for v in ds.ImagePositionPatient], dtype=float)
            iop = np.asarray([float(v) for v in ds.ImageOrientationPatient], dtype=float)
            ps = tuple(float(v) for v in ds.PixelSpacing)
            if ipp.shape != (3,) or iop.shape != (6,) or len(ps) != 2:
                raise ValueError("wrong number of values")
        except (ValueError, TypeError) as exc:
            raise InputError(f"{f}: bad image geometry (ImagePositionPatient / "
                             f"ImageOrientationPatient / PixelSpacing: {_one_line(exc)})") from None
        frt = ds.get("FrameReferenceTime", None)
        try:
            frt = float(frt) / 1000.0 if frt not in (None, "") else None
        except (TypeError, ValueError):
            frt = None
        slices.append(_Slice(
            path=f, study=str(ds.get("StudyInstanceUID", "")), series=str(ds.get("SeriesInstanceUID", "")),
            series_number=_int_or_none(ds.get("SeriesNumber")),
            acquisition=_int_or_none(ds.get("AcquisitionNumber")),
            temporal=_int_or_none(ds.get("TemporalPositionIdentifier")),
            ipp=ipp, iop=iop, rows=int(ds.Rows), cols=int(ds.Columns), pixel_spacing=ps,
            time_s=_acquired_s(ds), frame_ref_s=frt,
            patient_position=str(ds.get("PatientPosition", "") or ""),
            has_pixels=has_pixels,
            transfer_syntax=str(getattr(ds, "file_meta", {}).get("TransferSyntaxUID", ""))))
        if not slices[-1].has_pixels:
            raise InputError(f"{f}: DICOM without pixel data (series {slices[-1].series_number})")
    return slices, skipped


def _normal(iop: np.ndarray) -> np.ndarray:
    n = np.cross(iop[:3], iop[3:])
    return n / (np.linalg.norm(n) or 1.0)


def _group_label(g) -> str:
    s = g[0]
    folder = s.path.parent
    label = f"series {s.series_number}" if s.series_number is not None else f"series {s.series}"
    if getattr(g, "split", None):
        label += f" {g.split}"
    return f"{label} in {folder}"


class _Group(list):
    split: str = ""


def _read_dicom(files, roots, times_s, study_uid, cache_size, volume_files=()) -> PhaseSeries:
    slices, skipped = _scan_dicom(files, roots)
    for f in volume_files:
        skipped.append({"path": str(f), "reason": "volume file next to DICOM files"})
    where = ", ".join(str(r) for r in dict.fromkeys(roots))
    if not slices:
        reasons = {}
        for s in skipped:
            reasons[s["reason"]] = reasons.get(s["reason"], 0) + 1
        summary = ", ".join(f"{v} {k}" for k, v in sorted(reasons.items(), key=lambda kv: -kv[1]))
        if set(reasons) == {"not DICOM"}:
            raise InputError(f"no DICOM files in {where} ({summary})")
        raise InputError(f"no CT image series in {where} ({summary})")
    # one study
    studies: dict = {}
    for s in slices:
        studies.setdefault(s.study, []).append(s)
    if study_uid is not None:
        if study_uid not in studies:
            raise InputError(f"study {study_uid} not found in {where}; studies there: "
                             + ", ".join(studies))
        for uid, ss in studies.items():
            if uid != study_uid:
                skipped.append({"path": _rel(ss[0].path.parent, roots), "reason":
                                f"another study ({uid}, {len(ss)} files)"})
        slices = studies[study_uid]
    elif len(studies) > 1:
        listing = "; ".join(f"{uid} ({len(ss)} files)" for uid, ss in studies.items())
        raise InputError(f"{len(studies)} studies mixed in {where}: {listing}; choose one with "
                         "--study UID")
    # passes: series, split by TemporalPositionIdentifier, or by AcquisitionNumber on repeats
    by_series: dict = {}
    for s in slices:
        by_series.setdefault(s.series, []).append(s)
    groups = []
    for uid, ss in by_series.items():
        tpis = {s.temporal for s in ss}
        acqs = {s.acquisition for s in ss}
        positions = {tuple(np.round(s.ipp, 2)) for s in ss}
        if len(tpis) > 1:
            key, name = (lambda s: s.temporal), "temporal position"
        elif len(acqs) > 1 and len(positions) < len(ss):
            key, name = (lambda s: s.acquisition), "acquisition"
        else:
            g = _Group(ss)
            groups.append(g)
            continue
        parts: dict = {}
        for s in ss:
            parts.setdefault(key(s), []).append(s)
        for k, part in parts.items():
            g = _Group(part)
            g.split = f"{name} {k}"
            groups.append(g)
    # orientation: the orientation with most slices wins; others are skipped
    def okey(iop):
        return tuple(np.round(iop, 2) + 0.0)
    counts: dict = {}
    for g in groups:
        for s in g:
            counts[okey(s.iop)] = counts.get(okey(s.iop), 0) + 1
    main = max(counts, key=counts.get)
    kept = []
    for g in groups:
        oris = {okey(s.iop) for s in g}
        if main not in oris:
            skipped.append({"path": _rel(g[0].path.parent, roots), "reason": f"orientation differs "
                            f"({_group_label(g)}, {len(g)} files)"})
        elif len(oris) > 1:
            raise InputError(f"{_group_label(g)} mixes image orientations "
                             f"(ImageOrientationPatient): cannot stack its slices")
        else:
            kept.append(g)
    biggest = max(len(g) for g in kept)
    min_slices = max(3, int(np.ceil(0.25 * biggest)))
    passes = []
    for g in kept:
        if len(g) < min_slices:
            skipped.append({"path": _rel(g[0].path.parent, roots), "reason": f"only {len(g)} slices "
                            f"({_group_label(g)})"})
        else:
            passes.append(g)
    # order passes in time
    use_frt = all(s.frame_ref_s is not None for g in passes for s in g)

    def stime(s):
        return s.frame_ref_s if use_frt else s.time_s

    def start(g):
        ts = [stime(s) for s in g]
        return min(ts) if all(t is not None for t in ts) else None

    starts = [start(g) for g in passes]
    if all(t is not None for t in starts):
        order = sorted(range(len(passes)), key=lambda i: (starts[i], passes[i][0].series_number or 0,
                                                          passes[i][0].acquisition or 0))
    else:
        order = sorted(range(len(passes)), key=lambda i: (passes[i][0].series_number or 0,
                                                          passes[i][0].acquisition or 0,
                                                          passes[i][0].temporal or 0))
    passes = [passes[i] for i in order]
    # geometry of each pass
    grids, phases, file_lists, slice_times = [], [], [], []
    for p, g in enumerate(passes):
        label = f"pass {p} ({_group_label(g)})"
        grid, ordered = _pass_geometry(g, label)
        grids.append(grid)
        file_lists.append([s.path for s in ordered])
        ts = [stime(s) for s in ordered]
        slice_times.append(np.asarray(ts, dtype=float) if all(t is not None for t in ts) else None)
        phases.append(PhaseInfo(index=p, time_s=0.0, table_direction="",
                                series_number=g[0].series_number,
                                source=_group_label(g)))
    notes: list = []
    st = _finish(phases, grids, slice_times, None, times_s, notes=notes, what=where)
    ref = grids[0]
    first = passes[0][0]

    def load(i: int) -> np.ndarray:
        vol = _read_dicom_pixels(file_lists[i], grids[i], f"pass {i} ({phases[i].source})")
        if phases[i].resampled:
            vol = _resample_to(vol, grids[i], ref)
        return vol

    patient = _patient_of(first.path)
    return PhaseSeries(phases=phases, grid=ref, slice_times_s=st,
                       patient_position=first.patient_position, skipped=skipped,
                       study_uid=first.study, notes=notes, patient=patient,
                       _loader=_finite_checked(load, phases), cache_size=cache_size)


def _patient_of(path: Path) -> dict:
    import pydicom

    ds = pydicom.dcmread(path, stop_before_pixels=True)
    return {k: str(ds.get(k, "") or "") for k in
            ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate",
             "StudyTime", "StudyDescription", "AccessionNumber", "InstitutionName")}


def _pass_geometry(g, label: str):
    """Grid of one pass and its slices sorted along the slice normal; InputError on gaps."""
    iop = g[0].iop
    normal = _normal(iop)
    d = np.array([s.ipp @ normal for s in g])
    order = np.argsort(d, kind="stable")
    ordered = [g[i] for i in order]
    d = d[order]
    for s in ordered:
        if (s.rows, s.cols) != (ordered[0].rows, ordered[0].cols):
            raise InputError(f"{label}: slices of different sizes ({s.path}: {s.rows}x{s.cols}, "
                             f"{ordered[0].path}: {ordered[0].rows}x{ordered[0].cols})")
        if not np.allclose(s.pixel_spacing, ordered[0].pixel_spacing, atol=1e-3):
            raise InputError(f"{label}: slices with different PixelSpacing ({s.path})")
    zs = np.array([s.ipp[2] for s in ordered])
    if len(d) > 1:
        gaps = np.diff(d)
        dup = np.nonzero(gaps < 1e-3)[0]
        if dup.size:
            k = int(dup[0])
            raise InputError(f"{label}: {dup.size} duplicated slice(s), e.g. at z = {zs[k]:.2f} mm "
                             f"({ordered[k].path.name} and {ordered[k + 1].path.name})")
        step = float(np.median(gaps))
        big = np.nonzero(gaps > 1.5 * step)[0]
        if big.size:
            k = int(big[0])
            raise InputError(f"{label}: missing slices, a gap of {gaps[k]:.2f} mm between z = "
                             f"{zs[k]:.2f} and {zs[k + 1]:.2f} mm (slice spacing {step:.2f} mm)")
        spacing_z = float((d[-1] - d[0]) / (len(d) - 1))
    else:
        spacing_z = 1.0
    row, col = iop[:3] / np.linalg.norm(iop[:3]), iop[3:] / np.linalg.norm(iop[3:])
    direction = np.stack([row, col, normal], axis=1)
    grid = Grid(size=(ordered[0].cols, ordered[0].rows, len(ordered)),
                spacing_mm=(float(ordered[0].pixel_spacing[1]), float(ordered[0].pixel_spacing[0]),
                            spacing_z),
                origin_mm=tuple(float(v) for v in ordered[0].ipp),
                direction=tuple(float(v) for v in direction.ravel()))
    return grid, ordered


def _read_dicom_pixels(files, grid: Grid, label: str) -> np.ndarray:
    """HU of one pass, shape (Z, Y, X) float32, slices in the given order."""
    import pydicom

    out = np.empty(grid.shape_zyx, dtype=np.float32)
    for k, f in enumerate(files):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds = pydicom.dcmread(f)
        except Exception as exc:  # noqa: BLE001
            raise InputError(f"{f}: cannot read DICOM ({label}): {_one_line(exc)}") from None
        if "PixelData" not in ds:
            raise InputError(f"{f}: DICOM without pixel data ({label})")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                arr = ds.pixel_array
        except Exception as exc:  # noqa: BLE001 - decoder plugins raise many types
            ts = getattr(ds.file_meta.get("TransferSyntaxUID", None), "name", "unknown")
            raise InputError(f"{f}: cannot decode pixel data ({ts}, {label}): "
                             f"{_one_line(exc)}") from None
        if arr.shape != out.shape[1:]:
            raise InputError(f"{f}: {arr.shape} pixels, expected {out.shape[1:]} ({label})")
        slope = float(ds.get("RescaleSlope", 1.0) or 1.0)
        intercept = float(ds.get("RescaleIntercept", 0.0) or 0.0)
        out[k] = arr.astype(np.float32) * np.float32(slope) + np.float32(intercept)
    return out


# ============================================================================================
# Motion between passes: rigid registration of each pass to the first (SimpleITK).
#
# Everything here works in *index space with spacing only*: origin 0, identity direction, so a
# point is ``p = index_xyz * spacing_mm`` (ITK (x, y, z) order, mm). Pass crops or full arrays,
# but fixed, moving and every later :func:`apply_rigid` call of one motion must use the same
# grid (same shape, same spacing, same crop offset): the transform is then the same physical
# rigid motion either way, only expressed about a different centre.
# ============================================================================================

import dataclasses  # noqa: E402  (motion section, appended)

__all__ += ["RigidMotion", "estimate_rigid", "apply_rigid", "needs_registration"]

_MOTION_RADIUS_MM = 60.0


@dataclass(frozen=True)
class RigidMotion:
    """A rigid (Euler 3D) transform mapping fixed-pass points to moving-pass points.

    ``moving(T(p)) ~ fixed(p)`` with ``T(p) = R (p - c) + c + t`` in index-space mm
    (origin 0, identity direction, ITK (x, y, z) order).

    Attributes
    ----------
    params : tuple of 6 float, ``(ax, ay, az, tx, ty, tz)``: rotations about x, y, z in rad
        (ITK Euler3D, ``R = Rz @ Ry @ Rx``) and translation in mm
    center_mm : tuple of 3 float, centre of rotation ``c`` (x, y, z) mm
    metric : float, final registration metric value (mean squares of clipped HU in the bone
        mask; NaN for :meth:`identity`)
    radius_mm : float, radius of the sphere around ``center_mm`` used by ``max_displacement_mm``
    """

    params: tuple
    center_mm: tuple
    metric: float = float("nan")
    radius_mm: float = _MOTION_RADIUS_MM

    @classmethod
    def identity(cls, center_mm=(0.0, 0.0, 0.0)) -> "RigidMotion":
        """No motion."""
        return cls(params=(0.0,) * 6, center_mm=tuple(float(v) for v in center_mm))

    @property
    def translation_mm(self) -> np.ndarray:
        """Translation ``t``, shape (3,), (x, y, z) mm."""
        return np.asarray(self.params[3:], dtype=float)

    @property
    def rotation_deg(self) -> np.ndarray:
        """Euler angles about x, y, z, shape (3,), degrees."""
        return np.degrees(np.asarray(self.params[:3], dtype=float))

    @property
    def rotation_matrix(self) -> np.ndarray:
        """``R``, shape (3, 3), acting on (x, y, z) column vectors."""
        ax, ay, az = (float(v) for v in self.params[:3])
        cx, sx, cy, sy, cz, sz = np.cos(ax), np.sin(ax), np.cos(ay), np.sin(ay), np.cos(az), np.sin(az)
        rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
        ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
        rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
        return rz @ ry @ rx

    @property
    def rotation_angle_deg(self) -> float:
        """Total rotation angle of ``R``, degrees."""
        c = (np.trace(self.rotation_matrix) - 1.0) / 2.0
        return float(np.degrees(np.arccos(np.clip(c, -1.0, 1.0))))

    def transform_points(self, points_mm) -> np.ndarray:
        """``T(p)`` of points, shape (..., 3) (x, y, z) mm -> same shape."""
        p = np.asarray(points_mm, dtype=float)
        c = np.asarray(self.center_mm, dtype=float)
        return (p - c) @ self.rotation_matrix.T + c + self.translation_mm

    def displacement_mm(self, points_mm) -> np.ndarray:
        """Length of ``T(p) - p`` at points, shape (..., 3) -> (...,), mm."""
        p = np.asarray(points_mm, dtype=float)
        return np.linalg.norm(self.transform_points(p) - p, axis=-1)

    @property
    def max_displacement_mm(self) -> float:
        """Largest displacement over a ``radius_mm`` sphere around ``center_mm``, mm.

        The single "how much did the patient move" number for reports.
        """
        n = 400  # Fibonacci sphere; the maximum over the ball lies on its surface
        k = np.arange(n) + 0.5
        phi = np.arccos(1.0 - 2.0 * k / n)
        th = np.pi * (1.0 + 5.0 ** 0.5) * k
        u = np.stack([np.cos(th) * np.sin(phi), np.sin(th) * np.sin(phi), np.cos(phi)], axis=-1)
        pts = np.asarray(self.center_mm, dtype=float) + self.radius_mm * u
        return float(max(self.displacement_mm(pts).max(), np.linalg.norm(self.translation_mm)))

    def for_crop(self, start_zyx, spacing_mm) -> "RigidMotion":
        """The same physical motion for a crop ``vol[z0:, y0:, x0:]`` of the grid it was found on.

        Index-space mm restart at the crop corner, so only the centre moves:
        ``c' = c - start * spacing``. Crop fixed and moving alike (with a margin larger than the
        motion, trimmed after :func:`apply_rigid`, or samples from outside the crop become
        ``default_hu``).

        Parameters
        ----------
        start_zyx : sequence of 3 int, (z0, y0, x0) voxel index of the crop corner
        spacing_mm : sequence of 3 float, ITK (x, y, z) mm
        """
        off = np.asarray(start_zyx, dtype=float)[::-1] * np.asarray(spacing_mm, dtype=float)
        return dataclasses.replace(self, center_mm=tuple(float(v) for v in
                                                         np.asarray(self.center_mm) - off))

    def _sitk(self):
        import SimpleITK as sitk

        tx = sitk.Euler3DTransform()
        tx.SetCenter([float(v) for v in self.center_mm])
        tx.SetParameters([float(v) for v in self.params])
        return tx


def _motion_image(arr, spacing_mm, what: str):
    import SimpleITK as sitk

    a = np.asarray(arr)
    if a.ndim != 3:
        raise InputError(f"motion: {what} must be a 3D (Z, Y, X) volume, got shape {a.shape}")
    if len(spacing_mm) != 3 or not all(float(s) > 0 for s in spacing_mm):
        raise InputError(f"motion: spacing_mm must be 3 positive (x, y, z) mm, got {spacing_mm}")
    img = sitk.GetImageFromArray(np.ascontiguousarray(a, dtype=np.float32))
    img.SetSpacing([float(s) for s in spacing_mm])
    return img


def _auto_shrink(shape_zyx, spacing_mm, target_mm: float, max_voxels: int) -> tuple:
    """Integer (x, y, z) shrink factors bringing voxels near ``target_mm`` and under ``max_voxels``."""
    size = np.array(shape_zyx[::-1], dtype=float)
    f = np.maximum(1, np.floor(target_mm / np.asarray(spacing_mm, dtype=float) + 0.25)).astype(int)
    while np.prod(np.ceil(size / f)) > max_voxels:
        f[np.argmin(np.asarray(spacing_mm) * f)] += 1
    f = np.minimum(f, np.maximum(1, size.astype(int) // 8))
    return tuple(int(v) for v in f)


def estimate_rigid(fixed: np.ndarray, moving: np.ndarray, spacing_mm, *, shrink=None,
                   bone_hu: float = 300.0, margin_mm: float = 4.0,
                   clip_hu=(-200.0, 1500.0), target_mm: float = 2.0,
                   max_voxels: int = 1_500_000, iterations: int = 120,
                   seed: int = 20240601, valid=None) -> RigidMotion:
    """Rigid motion of ``moving`` relative to ``fixed`` (two passes of one grid).

    Bone drives the fit: intensities are clipped to ``clip_hu`` and the metric (mean squares) is
    sampled only within ``margin_mm`` of fixed-pass bone (``fixed > bone_hu``), so contrast that
    fills the thecal sac in one pass and not the other barely pulls. Multi-resolution (shrink
    4, 2, 1 with smoothing 2, 1, 0 voxels) from a centred (GEOMETRY) identity start, on a volume
    first block-averaged to about ``target_mm`` voxels.

    Parameters
    ----------
    fixed, moving : ndarray, shape (Z, Y, X), HU, same shape
        Reference pass (usually the first) and the pass to align to it.
    spacing_mm : sequence of 3 float
        Voxel spacing, ITK (x, y, z) order, mm. Points are ``index * spacing`` (origin 0,
        identity direction): use the same grid/crop for :func:`apply_rigid`.
    shrink : tuple of 3 int, optional
        (x, y, z) block-averaging factors applied before registration; default chooses them
        from ``target_mm`` and ``max_voxels`` (e.g. (3, 3, 2) for 0.7 x 0.7 x 1 mm).
    bone_hu : float
        HU above which a fixed-pass voxel is bone for the metric mask.
    margin_mm : float
        Dilation of that mask, mm, so bone edges are sampled on both sides.
    clip_hu : (float, float)
        Intensity window applied to both passes before the metric.
    target_mm, max_voxels : float, int
        Automatic pre-shrink target voxel size (mm) and voxel budget.
    iterations : int
        Optimizer iterations per resolution level.
    seed : int
        Metric sampling seed (the result is reproducible).
    valid : ndarray of bool, shape (Z, Y, X), optional
        Voxels where both passes hold data (e.g. not filled in where a resampled pass did not
        reach); the metric ignores the others.

    Returns
    -------
    RigidMotion
        Maps fixed points to moving points; identity-ish (< 0.1 mm) when nothing moved.

    Raises
    ------
    InputError
        Shapes differ, not 3D, bad spacing.
    """
    import SimpleITK as sitk

    fixed = np.asarray(fixed)
    moving = np.asarray(moving)
    if fixed.shape != moving.shape:
        raise InputError(f"motion: moving shape {moving.shape} != fixed shape {fixed.shape}")
    fimg = _motion_image(fixed, spacing_mm, "fixed")
    mimg = _motion_image(moving, spacing_mm, "moving")
    f = _auto_shrink(fixed.shape, spacing_mm, target_mm, max_voxels) if shrink is None else \
        tuple(int(v) for v in shrink)
    if any(v > 1 for v in f):
        fimg, mimg = sitk.BinShrink(fimg, list(f)), sitk.BinShrink(mimg, list(f))
    sp = np.asarray(fimg.GetSpacing(), dtype=float)
    # Mask from the unclipped fixed pass: bone plus a margin.
    mask = sitk.BinaryThreshold(fimg, float(bone_hu), 1e9, 1, 0)
    rad = [max(1, int(round(margin_mm / s))) for s in sp]
    mask = sitk.BinaryDilate(mask, rad)
    if valid is not None:
        if np.shape(valid) != fixed.shape:
            raise InputError(f"motion: valid mask shape {np.shape(valid)} != {fixed.shape}")
        vimg = _motion_image(np.asarray(valid, np.float32), spacing_mm, "valid")
        if any(v > 1 for v in f):
            vimg = sitk.BinShrink(vimg, list(f))
        vmask = sitk.BinaryThreshold(vimg, 0.999, 2.0, 1, 0)
        both = sitk.And(mask, vmask)
        # (too little bone with data: all the voxels with data, never all the voxels)
        mask = both if int(sitk.GetArrayViewFromImage(both).sum()) >= 500 else vmask
        use_mask = True
    else:
        use_mask = int(sitk.GetArrayViewFromImage(mask).sum()) >= 500
    lo, hi = (float(v) for v in clip_hu)
    fimg = sitk.Clamp(fimg, sitk.sitkFloat32, lo, hi)
    mimg = sitk.Clamp(mimg, sitk.sitkFloat32, lo, hi)

    init = sitk.CenteredTransformInitializer(fimg, mimg, sitk.Euler3DTransform(),
                                             sitk.CenteredTransformInitializerFilter.GEOMETRY)
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMeanSquares()
    if use_mask:
        reg.SetMetricFixedMask(mask)
    n_vox = int(np.prod(fimg.GetSize()))
    pct = float(min(1.0, max(0.05, 200_000 / max(n_vox, 1))))
    reg.SetMetricSamplingStrategy(reg.RANDOM)
    reg.SetMetricSamplingPercentage(pct, int(seed))
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetOptimizerAsRegularStepGradientDescent(learningRate=2.0, minStep=1e-3,
                                                 numberOfIterations=int(iterations),
                                                 relaxationFactor=0.5,
                                                 gradientMagnitudeTolerance=1e-8)
    reg.SetOptimizerScalesFromPhysicalShift()
    levels = [s for s in (4, 2, 1) if min(fimg.GetSize()) // s >= 8] or [1]
    reg.SetShrinkFactorsPerLevel(levels)
    reg.SetSmoothingSigmasPerLevel([{4: 2.0, 2: 1.0, 1: 0.0}[s] for s in levels])
    reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOff()
    reg.SetInitialTransform(init, inPlace=True)
    try:
        reg.Execute(fimg, mimg)
    except RuntimeError as exc:
        raise InputError(f"motion: registration failed: {_one_line(exc)}") from None
    # Pre-shrink moves voxel centres: BinShrink keeps the physical centre of the first block
    # at origin + (f - 1) / 2 * spacing, so the image origin differs but physical points agree.
    return RigidMotion(params=tuple(float(v) for v in init.GetParameters()),
                       center_mm=tuple(float(v) for v in init.GetCenter()),
                       metric=float(reg.GetMetricValue()))


def apply_rigid(moving: np.ndarray, spacing_mm, motion: RigidMotion, *,
                default_hu: float = -1024.0, order: str = "linear") -> np.ndarray:
    """Resample ``moving`` onto the fixed grid with ``motion`` (from :func:`estimate_rigid`).

    Parameters
    ----------
    moving : ndarray, shape (Z, Y, X), HU
        The pass the motion was estimated for, on the same grid/crop.
    spacing_mm : sequence of 3 float
        ITK (x, y, z) spacing, mm (origin 0, identity direction).
    motion : RigidMotion
    default_hu : float
        Value outside the moving volume, HU.
    order : {'linear', 'nearest', 'bspline'}
        Interpolation.

    Returns
    -------
    ndarray, shape (Z, Y, X), float32, HU: ``out[p] = moving(T(p))``
    """
    import SimpleITK as sitk

    interp = {"linear": sitk.sitkLinear, "nearest": sitk.sitkNearestNeighbor,
              "bspline": sitk.sitkBSpline}.get(order)
    if interp is None:
        raise InputError(f"motion: unknown interpolation order {order!r} (linear, nearest, bspline)")
    img = _motion_image(moving, spacing_mm, "moving")
    if not any(float(v) for v in motion.params):
        return np.array(moving, dtype=np.float32, copy=True)
    out = sitk.Resample(img, img, motion._sitk(), interp, float(default_hu), sitk.sitkFloat32)
    return sitk.GetArrayFromImage(out)


def needs_registration(fixed: np.ndarray, moving: np.ndarray, spacing_mm, *,
                       bone_hu: float = 300.0, target_mm: float = 3.0) -> float:
    """Quick motion check: approximate mean bone-surface displacement, mm.

    Both passes are block-averaged to about ``target_mm`` voxels and thresholded at ``bone_hu``;
    the fixed bone the moving pass lost, ``|A \\ B|``, counts twice (a moved surface loses as
    much as it gains; contrast only ever adds bright voxels, so it does not count) and is divided
    by the fixed bone surface area. Measured on the phantoms: about 0.03 when nothing moved (also
    with the sac full of contrast), 0.13-0.45 for 0.5 mm / 0.3 degree motion, 0.85-2.0 for
    3 mm / 2 degrees: skip registration below 0.1. Contrast that *leaves* between the passes
    (bright in ``fixed`` only) also counts.

    Parameters
    ----------
    fixed, moving : ndarray, shape (Z, Y, X), HU, same shape
    spacing_mm : sequence of 3 float, ITK (x, y, z) mm
    bone_hu : float, bone threshold, HU
    target_mm : float, working voxel size, mm

    Returns
    -------
    float, mm (0.0 when the fixed pass has no bone)
    """
    import SimpleITK as sitk

    fixed = np.asarray(fixed)
    if np.asarray(moving).shape != fixed.shape:
        raise InputError(f"motion: moving shape {np.shape(moving)} != fixed shape {fixed.shape}")
    f = _auto_shrink(fixed.shape, spacing_mm, target_mm, 2_000_000)
    fi, mi = _motion_image(fixed, spacing_mm, "fixed"), _motion_image(moving, spacing_mm, "moving")
    if any(v > 1 for v in f):
        fi, mi = sitk.BinShrink(fi, list(f)), sitk.BinShrink(mi, list(f))
    sp = np.asarray(fi.GetSpacing(), dtype=float)
    a = sitk.GetArrayViewFromImage(fi) > bone_hu
    b = sitk.GetArrayViewFromImage(mi) > bone_hu
    face = {0: sp[0] * sp[1], 1: sp[0] * sp[2], 2: sp[1] * sp[2]}  # numpy axes z, y, x
    area = sum(float(np.count_nonzero(np.diff(a, axis=ax))) * face[ax] for ax in range(3))
    if area <= 0:
        return 0.0
    lost = float(np.count_nonzero(a & ~b)) * float(np.prod(sp))
    return 2.0 * lost / area
