"""The laminectomy proposal."""
from __future__ import annotations

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
