"""Anatomy from the study itself: canal centreline, compartments, sectors and vertebral levels.

Compartment and sector codes are the small integers below; arrays are numpy ``(Z, Y, X)``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# compartment codes (uint8)
OUTSIDE, SAC, EPIDURAL, PARASPINAL = 0, 1, 2, 3
COMPARTMENTS = ("sac", "epidural", "paraspinal")  # codes 1..3
# sector codes (uint8), in patient terms
VENTRAL, DORSAL, LEFT, RIGHT = 0, 1, 2, 3
SECTORS = ("ventral", "dorsal", "left", "right")


@dataclass
class Level:
    """One vertebra in the field of view.

    name : str, ``'T7'``; coord : float, level coordinate (see :mod:`leakloc.levels`);
    z_range_mm : (low, high) LPS z, mm; slices : (first, last) slice indices, inclusive
    """

    name: str
    coord: float
    z_range_mm: tuple
    slices: tuple


@dataclass
class Anatomy:
    """Where things are in one study.

    Attributes
    ----------
    centreline_yx : ndarray, shape (Z, 2), voxels; canal centre (y, x) on each slice, NaN outside
    compartments : ndarray, shape (Z, Y, X), uint8; OUTSIDE, SAC, EPIDURAL or PARASPINAL
    sectors : ndarray, shape (Z, Y, X), uint8; VENTRAL, DORSAL, LEFT or RIGHT around the centreline
    level_coord : ndarray, shape (Z,), float; level coordinate of each slice, NaN where unknown
    levels : list of Level, cranial first
    ventral_yx : ndarray, shape (2,); unit vector (y, x) in voxel space pointing ventral
    left_yx : ndarray, shape (2,); unit vector (y, x) in voxel space pointing to patient's left
    cranial_step : int, +1 when slice index increases cranially, else -1
    dependent : str, the side contrast layers on (``'ventral'`` prone, ``'dorsal'`` supine, ...)
    notes : list of str
    """

    centreline_yx: np.ndarray
    compartments: np.ndarray
    sectors: np.ndarray
    level_coord: np.ndarray
    levels: list
    ventral_yx: np.ndarray
    left_yx: np.ndarray
    cranial_step: int = 1
    dependent: str = "dorsal"
    notes: list = field(default_factory=list)
