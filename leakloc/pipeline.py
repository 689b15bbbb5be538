"""The analysis as one call: io -> anatomy -> kernels -> kinetics/detect -> plan.

:class:`Analysis` is what report and plots take.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class LevelKinetics:
    """Per-vertebra timing (``report.json`` ``levels`` entry). Times are s after the first pass; NaN = never."""

    name: str
    z_range_mm: tuple
    intrathecal_arrival_s: float
    epidural_arrival_s: float
    venous_arrival_s: float = float("nan")

    def to_report(self) -> dict:
        def t(v):
            return None if not np.isfinite(v) else round(float(v), 2)
        return {"name": self.name, "z_range_mm": [round(float(self.z_range_mm[0]), 2),
                                                  round(float(self.z_range_mm[1]), 2)],
                "intrathecal_arrival_s": t(self.intrathecal_arrival_s),
                "epidural_arrival_s": t(self.epidural_arrival_s)}


@dataclass
class Analysis:
    """Everything one analysis found.

    Attributes
    ----------
    series : leakloc.io.PhaseSeries (metadata; pixels are not kept)
    anatomy : leakloc.anatomy.Anatomy
    times_s : ndarray, shape (P,), pass start times, s
    level_names : list of str, vertebrae in the field of view, cranial first (L of them)
    intrathecal_hu : ndarray, shape (L, P), mean enhancement of the sac per level and pass, HU
    extravasation_hu : ndarray, shape (L, P), high-percentile enhancement outside the sac, HU
    venous_hu : ndarray, shape (L, P), high-percentile enhancement of the paraspinal shell, HU
    stats : dict of ndarray, shape (L, 3, 4, P) per level x compartment x sector x pass:
        ``mean``, ``p95``, ``n_above``, ``count``
    levels : list of LevelKinetics
    defects : list of leakloc.detect.Defect, ranked (empty: no leak)
    candidates : list of leakloc.detect.Defect, every candidate considered, ranked
    plan : leakloc.plan.Plan or None
    extravasation_mask : ndarray, shape (Z, Y, X), uint8 (1 = extravasated contrast)
    arrival_s : ndarray, shape (Z, Y, X), float32, voxel arrival time (NaN = never)
    mip_sagittal_hu, mip_coronal_hu : ndarray, shape (P, Z, W), enhancement MIPs straightened
        along the centreline (W across the canal, ventral/left first)
    mip_width_mm : float, physical width W spans
    axial_hu : ndarray, shape (Y, X), HU, or None; the axial slice through the top defect at the first
        pass that shows the leak (``axial_phase``, ``axial_slice``); axial_enh_hu the same minus baseline
    motion_mm : list of float, rigid motion found per pass (0 for the first)
    timings_s : dict, seconds per stage
    warnings : list of str
    """

    series: object
    anatomy: object
    times_s: np.ndarray
    level_names: list
    intrathecal_hu: np.ndarray
    extravasation_hu: np.ndarray
    venous_hu: np.ndarray
    stats: dict
    levels: list
    defects: list
    candidates: list
    plan: object
    extravasation_mask: np.ndarray
    arrival_s: np.ndarray
    mip_sagittal_hu: np.ndarray
    mip_coronal_hu: np.ndarray
    mip_width_mm: float = 60.0
    axial_hu: np.ndarray | None = None
    axial_enh_hu: np.ndarray | None = None
    axial_phase: int = -1
    axial_slice: int = -1
    motion_mm: list = field(default_factory=list)
    timings_s: dict = field(default_factory=dict)
    warnings: list = field(default_factory=list)

    @property
    def leak_detected(self) -> bool:
        return len(self.defects) > 0


def analyze(series, levels_map=None, top_vertebra: str | None = None, progress=None) -> Analysis:
    """Analyse a dynamic study. See :class:`Analysis`."""
    raise NotImplementedError
