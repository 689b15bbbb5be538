"""The laminectomy proposal."""
from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class Plan:
    """Levels to open, side and approach.

    levels : list of str, vertebrae to open (``['T7', 'T8']``)
    side : str, ``'left'``, ``'right'`` or ``'bilateral'``
    note : str, approach note
    uncertainty_levels : float, +/- levels
    """

    levels: list
    side: str
    note: str
    uncertainty_levels: float = 0.5

    def to_report(self) -> dict:
        return {"levels": list(self.levels), "side": self.side, "note": self.note,
                "uncertainty_levels": float(self.uncertainty_levels)}


_NOTES = {
    ("dural_tear", "ventral"): "ventral tear: transdural approach",
    ("dural_tear", "dorsal"): "dorsal tear: direct repair through the laminectomy",
    ("dural_tear", "left"): "lateral tear: hemilaminectomy, repair at the lateral dura",
    ("dural_tear", "right"): "lateral tear: hemilaminectomy, repair at the lateral dura",
    ("nerve_root_sleeve", None): "nerve-root sleeve leak: hemilaminectomy and foraminotomy, "
                                 "repair or ligation of the sleeve",
    ("csf_venous_fistula", None): "CSF-venous fistula: ligation of the draining vein at the nerve "
                                  "root (or transvenous embolization)",
}


def _vertebrae_covering(level_name: str, extra: int):
    from leakloc import levels as lv
    c = lv.coord_of(level_name)
    lo, hi = math.floor(c), math.ceil(c)
    lo, hi = max(0, lo - extra), min(len(lv.VERTEBRAE) - 1, hi + extra)
    return [lv.VERTEBRAE[i] for i in range(lo, hi + 1)]


def propose(defects, confidence_for_tight: float = 0.8):
    """Laminectomy proposal for the most probable defect.

    Parameters
    ----------
    defects : list of leakloc.detect.Defect, ranked (empty: no leak)

    Returns
    -------
    Plan or None
        The vertebrae above and below an interspace (or the vertebra itself), widened by one level
        on each side when the call is uncertain; ``side`` is the hemilaminectomy side for a
        lateral defect, ``bilateral`` for a midline one.
    """
    if not defects:
        return None
    d = defects[0]
    tight = d.confidence >= confidence_for_tight
    unc = 0.5 if tight else 1.0
    levels = _vertebrae_covering(d.level, 0 if tight else 1)
    side = d.side if d.side in ("left", "right") else "bilateral"
    note = _NOTES.get((d.kind, d.side)) or _NOTES.get((d.kind, None)) or "repair of the defect"
    if len(defects) > 1:
        others = ", ".join(x.level for x in defects[1:])
        note += f"; further defect(s) at {others} to inspect"
    return Plan(levels=levels, side=side, note=note, uncertainty_levels=unc)
