"""Vertebral level names, their order, and the TotalSegmentator ``total`` label ids.

The *level coordinate* is a float along the spine: vertebra ``VERTEBRAE[i]`` has its body centre
at ``i`` (C1 = 0, S1 = 24, increasing caudally) and the disc between ``i`` and ``i + 1`` is at
``i + 0.5``. A defect is named by rounding its level coordinate to the nearest half.
"""
from __future__ import annotations

import math

VERTEBRAE = (
    [f"C{i}" for i in range(1, 8)]
    + [f"T{i}" for i in range(1, 13)]
    + [f"L{i}" for i in range(1, 6)]
    + ["S1"]
)
INDEX = {name: i for i, name in enumerate(VERTEBRAE)}

#: TotalSegmentator ``total`` task: ids 26..50 are S1, L5, ..., L1, T12, ..., T1, C7, ..., C1.
TOTALSEG_ID = {name: 50 - i for i, name in enumerate(VERTEBRAE)}
TOTALSEG_NAME = {v: k for k, v in TOTALSEG_ID.items()}


def index(name: str) -> int:
    """Index of a vertebra name in :data:`VERTEBRAE` (``'C1'`` -> 0); ValueError if unknown."""
    key = name.strip().upper()
    if key not in INDEX:
        raise ValueError(f"unknown vertebra {name!r}; expected one of C1..C7, T1..T12, L1..L5, S1")
    return INDEX[key]


def interspace(upper: str, lower: str) -> str:
    """Name of the disc level between two adjacent vertebrae, e.g. ``'T7-T8'``."""
    return f"{upper}-{lower}"


def name_of(level_coord: float) -> str:
    """Name of the vertebra or interspace nearest a level coordinate.

    Parameters
    ----------
    level_coord : float
        Level coordinate (C1 = 0, one per vertebra, discs at halves).

    Returns
    -------
    str
        ``'T7'`` for a vertebra, ``'T7-T8'`` for an interspace.
    """
    if not math.isfinite(level_coord):
        raise ValueError("level coordinate is not finite")
    half = round(level_coord * 2) / 2
    half = min(max(half, 0.0), len(VERTEBRAE) - 1.0)
    i = int(math.floor(half))
    if half == i:
        return VERTEBRAE[i]
    return interspace(VERTEBRAE[i], VERTEBRAE[i + 1])


def coord_of(name: str) -> float:
    """Level coordinate of a vertebra (``'T7'``) or interspace (``'T7-T8'``) name."""
    if "-" in name:
        upper, lower = name.split("-", 1)
        a, b = index(upper), index(lower)
        if b != a + 1:
            raise ValueError(f"{name!r} is not an interspace of adjacent vertebrae")
        return a + 0.5
    return float(index(name))
