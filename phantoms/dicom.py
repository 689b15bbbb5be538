"""Write synthetic volumes as DICOM series the way CT scanners and PACS exports do (pydicom).

Used by the phantom writer (``leakloc phantom --format dicom``) and by the io tests. Each slice is
a CT Image Storage object with its own position, orientation, acquisition time and rescale; the
passes of a dynamic study go into one folder per pass, all mixed in one folder, or one series
holding every pass (AcquisitionNumber / TemporalPositionIdentifier).

Geometry: ``grid`` is a :class:`leakloc.io.Grid` (ITK order, LPS mm). Slice ``k`` of a volume
(numpy order (Z, Y, X)) is written at ``origin + k * spacing_z * direction[:, 2]`` with
ImageOrientationPatient = direction columns 0 (along a row, X) and 1 (down a column, Y). The grid
should be right-handed (``det(direction) = +1``) so that readers that sort slices along
``row x col`` keep the same slice order.
"""
from __future__ import annotations

import datetime as _dt
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (CTImageStorage, ExplicitVRLittleEndian, JPEG2000Lossless, RLELossless,
                         SecondaryCaptureImageStorage, generate_uid)

__all__ = ["write_dicom_series", "write_extra_objects", "COMPRESSIONS", "EXTRA_KINDS"]

#: compression name -> transfer syntax UID (encoders shipped with pydicom / pylibjpeg-openjpeg)
COMPRESSIONS = {None: ExplicitVRLittleEndian, "none": ExplicitVRLittleEndian,
                "jpeg2000": JPEG2000Lossless, "rle": RLELossless}

#: kinds of non-pass objects :func:`write_extra_objects` can write, and the reason a reader skips them
EXTRA_KINDS = ("localizer", "dose_sr", "secondary_capture", "dicomdir", "non_dicom",
               "sagittal", "few_slices")

_DOSE_SR = "1.2.840.10008.5.1.4.1.1.88.67"  # X-Ray Radiation Dose SR Storage
_MEDIA_DIR = "1.2.840.10008.1.3.10"  # Media Storage Directory Storage (DICOMDIR)


def _uid(*parts) -> str:
    return generate_uid(entropy_srcs=[str(p) for p in parts])


def _parse_clock(clock: str, date: str) -> _dt.datetime:
    base = _dt.datetime.strptime(date, "%Y%m%d")
    hh, mm, ss = int(clock[0:2]), int(clock[2:4]), float(clock[4:] or 0)
    return base + _dt.timedelta(hours=hh, minutes=mm, seconds=ss)


def _fmt(t: _dt.datetime) -> tuple[str, str]:
    return t.strftime("%Y%m%d"), t.strftime("%H%M%S.%f")


def _ds(x) -> str:
    """A DICOM DS string (at most 16 characters) for a float."""
    for digits in range(12, 0, -1):
        s = f"{float(x):.{digits}g}"
        if len(s) <= 16:
            return s
    return s


def _base_dataset(sop_class: str, sop_uid: str, *, study_uid: str, patient_name: str,
                  patient_id: str, study_date: str, study_time: str) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = "1.2.826.0.1.3680043.8.498.1"
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = study_uid
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "F"
    ds.StudyDate = study_date
    ds.StudyTime = study_time
    ds.StudyID = "1"
    ds.AccessionNumber = "LEAKLOC1"
    ds.StudyDescription = "DYNAMIC CT MYELOGRAPHY"
    ds.Manufacturer = "leakloc phantom"
    return ds


def _save(ds: Dataset, path: Path) -> None:
    """Write ``ds`` to ``path`` atomically (temp file in the same folder + os.replace)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    ds.save_as(tmp, enforce_file_format=True)
    os.replace(tmp, path)


def _set_pixels(ds: Dataset, hu: np.ndarray, *, unsigned: bool, intercept: float, slope: float,
                compression) -> None:
    stored = np.rint((np.asarray(hu, dtype=np.float64) - intercept) / slope)
    if unsigned:
        arr = np.clip(stored, 0, 65535).astype(np.uint16)
    else:
        arr = np.clip(stored, -32768, 32767).astype(np.int16)
    ds.Rows, ds.Columns = int(arr.shape[0]), int(arr.shape[1])
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0 if unsigned else 1
    ds.RescaleIntercept = _ds(intercept)
    ds.RescaleSlope = _ds(slope)
    ds.RescaleType = "HU"
    ds.WindowCenter = "400"
    ds.WindowWidth = "1800"
    ds.PixelData = arr.tobytes()
    key = compression.lower() if isinstance(compression, str) else compression
    if key not in COMPRESSIONS:
        raise ValueError(f"compression {compression!r} not one of {sorted(map(str, COMPRESSIONS))}")
    tsuid = COMPRESSIONS[key]
    if tsuid == JPEG2000Lossless and min(arr.shape) < 32:
        # pylibjpeg-openjpeg always uses 6 DWT resolutions: 2**5 = 32 pixels per side at least
        raise ValueError(f"jpeg2000 needs slices of at least 32 x 32 pixels, got {arr.shape}")
    if tsuid != ExplicitVRLittleEndian:
        ds.compress(tsuid, arr, generate_instance_uid=False)


def write_dicom_series(out_dir, volumes: Sequence[np.ndarray], grid, slice_times_s, *,
                       pass_start_clock: str = "101500.000000", study_date: str = "20261125",
                       patient_position: str = "HFS", series_numbers: Sequence[int] | None = None,
                       layout: str = "per_pass", unsigned: bool = True, intercept: float = -1024.0,
                       slope: float = 1.0, compression: str | None = None,
                       shuffle_names: bool = False, seed: int = 0, study_uid: str | None = None,
                       patient_name: str = "PHANTOM^LEAKLOC", patient_id: str = "LEAKLOC0001",
                       extra_objects: Sequence[str] = ()) -> list[Path]:
    """Write a dynamic study as CT Image Storage DICOM files, one pass at a time.

    Parameters
    ----------
    out_dir : path
        Folder to write into (created). Files already there are left alone.
    volumes : sequence of ndarray, each shape (Z, Y, X), float HU
        One volume per pass on ``grid``; may be lazy (``__getitem__`` computes the pass).
    grid : leakloc.io.Grid
        ITK-order geometry in LPS mm; should be right-handed.
    slice_times_s : array_like, shape (n_passes, Z), s
        Acquisition time of every slice, seconds after the first pass began, in grid z order.
    pass_start_clock : str
        DICOM TM of time 0 (``HHMMSS.ffffff``); clock times after midnight roll the date over.
    study_date : str
        DICOM DA of time 0.
    patient_position : str
        PatientPosition (0018,5100), e.g. ``'HFS'``, ``'HFP'``, ``'HFDR'``.
    series_numbers : sequence of int, optional
        SeriesNumber per pass (default 2, 3, 4, ...).
    layout : {'per_pass', 'mixed', 'one_series'}
        ``per_pass``: ``out_dir/pass_NN/`` one series per pass; ``mixed``: all files in ``out_dir``,
        one series per pass; ``one_series``: one series in ``out_dir`` holding every pass,
        told apart by AcquisitionNumber and TemporalPositionIdentifier.
    unsigned : bool
        Store uint16 (PixelRepresentation 0) or int16 (1).
    intercept, slope : float
        RescaleIntercept / RescaleSlope (HU = stored * slope + intercept).
    compression : {None, 'jpeg2000', 'rle'}
        Lossless transfer syntax (JPEG 2000 lossless via pylibjpeg-openjpeg, RLE via pydicom).
        JPEG 2000 needs slices of at least 32 x 32 pixels (openjpeg's 6 DWT resolutions).
    shuffle_names : bool
        Meaningless random file names (``seed``) instead of ``IM_<pass>_<slice>.dcm``.
    seed : int
        Seeds shuffled names and the UIDs (same seed, same UIDs).
    study_uid : str, optional
        StudyInstanceUID (default derived from ``seed``).
    patient_name, patient_id : str
    extra_objects : sequence of str
        Non-pass objects to add (see :data:`EXTRA_KINDS` and :func:`write_extra_objects`).

    Returns
    -------
    list of pathlib.Path
        Every file written, passes first, then the extra objects.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if layout not in ("per_pass", "mixed", "one_series"):
        raise ValueError(f"layout {layout!r} not one of per_pass, mixed, one_series")
    n = len(volumes)
    nz, ny, nx = grid.shape_zyx
    times = np.asarray(slice_times_s, dtype=float)
    if times.shape != (n, nz):
        raise ValueError(f"slice_times_s shape {times.shape} != {(n, nz)}")
    series_numbers = list(series_numbers) if series_numbers is not None else list(range(2, 2 + n))
    rng = np.random.default_rng(seed)
    study_uid = study_uid or _uid("study", seed, patient_id)
    for_uid = _uid("for", seed, study_uid)
    t0 = _parse_clock(pass_start_clock, study_date)
    sdate, stime = _fmt(t0)
    m = grid.direction_matrix
    row, col, normal = m[:, 0], m[:, 1], m[:, 2]
    origin = np.asarray(grid.origin_mm, dtype=float)
    sx, sy, sz = (float(s) for s in grid.spacing_mm)
    iop = [_ds(v) for v in (*row, *col)]
    one_uid = _uid("series", seed, study_uid, "all")
    names = rng.permutation(n * nz) if shuffle_names else None
    written: list[Path] = []
    for p in range(n):
        vol = np.asarray(volumes[p], dtype=np.float32)
        if vol.shape != (nz, ny, nx):
            raise ValueError(f"pass {p}: shape {vol.shape} != grid {(nz, ny, nx)}")
        series_uid = one_uid if layout == "one_series" else _uid("series", seed, study_uid, p)
        start = t0 + _dt.timedelta(seconds=float(times[p].min()))
        for k in range(nz):
            sop_uid = _uid("sop", seed, study_uid, p, k)
            ds = _base_dataset(CTImageStorage, sop_uid, study_uid=study_uid,
                               patient_name=patient_name, patient_id=patient_id,
                               study_date=sdate, study_time=stime)
            ds.Modality = "CT"
            ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
            ds.SeriesInstanceUID = series_uid
            ds.FrameOfReferenceUID = for_uid
            ds.PositionReferenceIndicator = ""
            ds.SeriesNumber = series_numbers[0] if layout == "one_series" else series_numbers[p]
            ds.SeriesDescription = ("DYNAMIC MYELO" if layout == "one_series"
                                    else f"DYNAMIC MYELO PASS {p + 1}")
            ds.AcquisitionNumber = p + 1
            if layout == "one_series":
                ds.TemporalPositionIdentifier = p + 1
                ds.NumberOfTemporalPositions = n
            ds.InstanceNumber = (p * nz if layout == "one_series" else 0) + k + 1
            sd, st = _fmt(start)
            ds.SeriesDate, ds.SeriesTime = sd, st
            at = t0 + _dt.timedelta(seconds=float(times[p, k]))
            ad, atm = _fmt(at)
            ds.AcquisitionDate, ds.AcquisitionTime = ad, atm
            ds.ContentDate, ds.ContentTime = ad, atm
            ds.PatientPosition = patient_position
            ds.KVP = "120"
            ds.SliceThickness = _ds(sz)
            ds.ImagePositionPatient = [_ds(v) for v in origin + k * sz * normal]
            ds.ImageOrientationPatient = iop
            ds.PixelSpacing = [_ds(sy), _ds(sx)]
            _set_pixels(ds, vol[k], unsigned=unsigned, intercept=intercept, slope=slope,
                        compression=compression)
            if shuffle_names:
                name = f"{int(names[p * nz + k]) * 7919 % 1000003:07d}{rng.integers(0, 16**4):04x}"
            else:
                name = f"IM_{p + 1:02d}_{k + 1:04d}.dcm"
            folder = out / f"pass_{p + 1:02d}" if layout == "per_pass" else out
            path = folder / name
            _save(ds, path)
            written.append(path)
    if extra_objects:
        written += write_extra_objects(out, grid, extra_objects, study_uid=study_uid,
                                       study_date=study_date, clock=pass_start_clock,
                                       patient_position=patient_position,
                                       patient_name=patient_name, patient_id=patient_id, seed=seed)
    return written


def write_extra_objects(out_dir, grid, kinds: Sequence[str] = EXTRA_KINDS, *,
                        study_uid: str | None = None, study_date: str = "20261125",
                        clock: str = "101400.000000", patient_position: str = "HFS",
                        patient_name: str = "PHANTOM^LEAKLOC", patient_id: str = "LEAKLOC0001",
                        seed: int = 0) -> list[Path]:
    """Write objects that are not passes, as a scanner export carries them.

    Parameters
    ----------
    out_dir : path
    grid : leakloc.io.Grid
        The study grid (the localizer and reformats are placed around it).
    kinds : sequence of str
        Any of :data:`EXTRA_KINDS`: ``localizer`` (a CT topogram, ImageType LOCALIZER),
        ``dose_sr`` (an X-Ray Radiation Dose SR, no pixels), ``secondary_capture`` (a screenshot),
        ``dicomdir`` (a file named DICOMDIR), ``non_dicom`` (a text file), ``sagittal`` (a
        3-slice sagittal reformat series), ``few_slices`` (a 2-slice axial series).
    study_uid : str, optional

    Returns
    -------
    list of pathlib.Path
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    study_uid = study_uid or _uid("study", seed, patient_id)
    t0 = _parse_clock(clock, study_date)
    sdate, stime = _fmt(t0)
    common = dict(study_uid=study_uid, patient_name=patient_name, patient_id=patient_id,
                  study_date=sdate, study_time=stime)
    nz, ny, nx = grid.shape_zyx
    m = grid.direction_matrix
    origin = np.asarray(grid.origin_mm, dtype=float)
    sx, sy, sz = (float(s) for s in grid.spacing_mm)
    written = []

    def ct_image(tag, series_number, image_type, rows_cols, ipp, iop, spacing, k=0):
        ds = _base_dataset(CTImageStorage, _uid("extra", seed, study_uid, tag, k), **common)
        ds.Modality = "CT"
        ds.ImageType = image_type
        ds.SeriesInstanceUID = _uid("extra-series", seed, study_uid, tag)
        ds.SeriesNumber = series_number
        ds.InstanceNumber = k + 1
        ds.AcquisitionDate, ds.AcquisitionTime = sdate, stime
        ds.ContentDate, ds.ContentTime = sdate, stime
        ds.PatientPosition = patient_position
        ds.ImagePositionPatient = [_ds(v) for v in ipp]
        ds.ImageOrientationPatient = [_ds(v) for v in iop]
        ds.PixelSpacing = [_ds(spacing[0]), _ds(spacing[1])]
        ds.SliceThickness = _ds(spacing[1])
        _set_pixels(ds, np.full(rows_cols, 0.0, dtype=np.float32), unsigned=True,
                    intercept=-1024.0, slope=1.0, compression=None)
        return ds

    for kind in kinds:
        if kind == "localizer":
            ds = ct_image("localizer", 1, ["ORIGINAL", "PRIMARY", "LOCALIZER"], (nz, nx),
                          origin + (nz - 1) * sz * m[:, 2],
                          (*m[:, 0], *(-m[:, 2])), (sz, sx))
            path = out / "scout" / "IM0001"
            _save(ds, path)
            written.append(path)
        elif kind == "dose_sr":
            ds = _base_dataset(_DOSE_SR, _uid("dose", seed, study_uid), **common)
            ds.Modality = "SR"
            ds.SeriesInstanceUID = _uid("dose-series", seed, study_uid)
            ds.SeriesNumber = 999
            ds.InstanceNumber = 1
            ds.ContentDate, ds.ContentTime = sdate, stime
            ds.ValueType = "CONTAINER"
            ds.ContinuityOfContent = "SEPARATE"
            path = out / "dose" / "SR000001"
            _save(ds, path)
            written.append(path)
        elif kind == "secondary_capture":
            ds = _base_dataset(SecondaryCaptureImageStorage, _uid("sc", seed, study_uid), **common)
            ds.Modality = "OT"
            ds.ConversionType = "WSD"
            ds.SeriesInstanceUID = _uid("sc-series", seed, study_uid)
            ds.SeriesNumber = 998
            ds.InstanceNumber = 1
            _set_pixels(ds, np.zeros((ny, nx), dtype=np.float32), unsigned=True, intercept=0.0,
                        slope=1.0, compression=None)
            del ds.RescaleType
            path = out / "SC000001"
            _save(ds, path)
            written.append(path)
        elif kind == "dicomdir":
            ds = _base_dataset(_MEDIA_DIR, _uid("dicomdir", seed, study_uid), **common)
            ds.FileSetID = "LEAKLOC"
            path = out / "DICOMDIR"
            _save(ds, path)
            written.append(path)
        elif kind == "non_dicom":
            path = out / "README.TXT"
            path.write_text("exported by a PACS; not a DICOM file\n")
            written.append(path)
        elif kind == "sagittal":
            for k in range(3):
                x = (nx // 2 - 1 + k) * sx
                ds = ct_image("sagittal", 90, ["DERIVED", "SECONDARY", "REFORMATTED"], (nz, ny),
                              origin + x * m[:, 0] + (nz - 1) * sz * m[:, 2],
                              (*m[:, 1], *(-m[:, 2])), (sz, sy), k=k)
                path = out / "sag" / f"SAG{k + 1:04d}"
                _save(ds, path)
                written.append(path)
        elif kind == "few_slices":
            for k in range(2):
                ds = ct_image("few", 91, ["ORIGINAL", "PRIMARY", "AXIAL"], (ny, nx),
                              origin + k * sz * m[:, 2], (*m[:, 0], *m[:, 1]), (sy, sx), k=k)
                path = out / "few" / f"FEW{k + 1:04d}"
                _save(ds, path)
                written.append(path)
        else:
            raise ValueError(f"unknown extra object {kind!r}; expected one of {EXTRA_KINDS}")
    return written
