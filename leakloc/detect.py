"""Defect detection: where contrast leaves the sac first, what kind of leak it is, how sure."""
from __future__ import annotations

from dataclasses import dataclass, field

KINDS = ("dural_tear", "nerve_root_sleeve", "csf_venous_fistula")
SIDES = ("ventral", "dorsal", "left", "right")


@dataclass
class Defect:
    """One probable dural defect (or a ranked candidate).

    Attributes
    ----------
    level : str, vertebra or interspace name (``'T7-T8'``)
    level_coord : float, level coordinate
    z_mm : float, LPS z of the defect, mm
    side : str, one of SIDES
    kind : str, one of KINDS
    onset_time_s : float, when extravasated contrast first appears there, s after the first pass
    confidence : float in [0, 1]
    delay_s : float, onset minus the local intrathecal arrival, s
    slice_index : int; yx : (y, x) voxel of the defect on that slice
    evidence : dict, the numbers behind the call
    """

    level: str
    level_coord: float
    z_mm: float
    side: str
    kind: str
    onset_time_s: float
    confidence: float
    delay_s: float = float("nan")
    slice_index: int = -1
    yx: tuple = (float("nan"), float("nan"))
    evidence: dict = field(default_factory=dict)

    def to_report(self) -> dict:
        """The ``report.json`` entry (schema ``leakloc.report/1``)."""
        return {"level": self.level, "z_mm": round(float(self.z_mm), 2), "side": self.side,
                "kind": self.kind, "onset_time_s": round(float(self.onset_time_s), 2),
                "confidence": round(float(self.confidence), 3)}
