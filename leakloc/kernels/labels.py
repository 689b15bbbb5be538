"""Region ids from compartments, sectors and slice levels in one pass."""
from __future__ import annotations

import numpy as np

from leakloc.kernels import _checks
from leakloc.kernels._options import JIT, JIT_PARALLEL, njit, prange


@njit(**JIT)
def _label_slice(z, compartments, sectors, slice_level, n_levels, n_compartments, n_sectors, out):
    """Label slice ``z``; returns the number of invalid voxels."""
    ny = compartments.shape[1]
    nx = compartments.shape[2]
    lev = np.int64(slice_level[z])
    bad = 0
    if lev < 0 or lev >= n_levels:
        out[z] = -1
        if lev >= n_levels:
            bad = ny * nx
        return bad
    base = lev * n_compartments
    for y in range(ny):
        for x in range(nx):
            c = np.int64(compartments[z, y, x])
            s = np.int64(sectors[z, y, x])
            if c == 0:
                out[z, y, x] = -1
            elif c > n_compartments or s >= n_sectors:
                out[z, y, x] = -1
                bad += 1
            else:
                out[z, y, x] = (base + c - 1) * n_sectors + s
    return bad


@njit(**JIT)
def _label_serial(compartments, sectors, slice_level, n_levels, n_compartments, n_sectors, out,
                  n_bad):
    for z in range(compartments.shape[0]):
        n_bad[z] = _label_slice(z, compartments, sectors, slice_level, n_levels, n_compartments,
                                n_sectors, out)


@njit(**JIT_PARALLEL)
def _label_parallel(compartments, sectors, slice_level, n_levels, n_compartments, n_sectors, out,
                    n_bad):
    for z in prange(compartments.shape[0]):
        n_bad[z] = _label_slice(z, compartments, sectors, slice_level, n_levels, n_compartments,
                                n_sectors, out)


def label_regions(compartments, sectors, slice_level, n_levels, n_sectors=4, n_compartments=3,
                  parallel=True) -> np.ndarray:
    """Region id of every voxel: ``(level * n_compartments + (comp - 1)) * n_sectors + sector``.

    Parameters
    ----------
    compartments : ndarray of uint8, shape (Z, Y, X), C-contiguous; 0 = outside, 1..n_compartments
        (``leakloc.anatomy`` SAC, EPIDURAL, PARASPINAL)
    sectors : ndarray of uint8, shape (Z, Y, X), C-contiguous; 0..n_sectors-1
    slice_level : ndarray of int16, shape (Z,); level index of each slice, negative = none
    n_levels : int
    n_sectors : int, default 4
    n_compartments : int, default 3
    parallel : bool, split slices over Numba threads

    Returns
    -------
    ndarray of int32, shape (Z, Y, X); region id in ``[0, n_levels * n_compartments * n_sectors)``,
    -1 where the compartment is 0 or the slice has no level.

    Raises
    ------
    ValueError
        a slice level >= ``n_levels``, a compartment > ``n_compartments`` or a sector >=
        ``n_sectors`` (inside a labelled compartment).
    """
    _checks.array("compartments", compartments, np.uint8, 3)
    _checks.array("sectors", sectors, np.uint8, 3, compartments.shape)
    _checks.array("slice_level", slice_level, np.int16, 1, (compartments.shape[0],))
    n_levels = _checks.integer("n_levels", n_levels)
    n_sectors = _checks.integer("n_sectors", n_sectors, 1)
    n_compartments = _checks.integer("n_compartments", n_compartments, 1)
    if n_levels * n_compartments * n_sectors > np.iinfo(np.int32).max:
        raise ValueError("n_levels * n_compartments * n_sectors does not fit in int32")
    out = np.empty(compartments.shape, dtype=np.int32)
    n_bad = np.zeros(compartments.shape[0], dtype=np.int64)
    kernel = _label_parallel if parallel else _label_serial
    kernel(compartments, sectors, slice_level, n_levels, n_compartments, n_sectors, out, n_bad)
    if n_bad.sum():
        raise ValueError(f"label_regions: {int(n_bad.sum())} voxel(s) with a level >= n_levels, "
                         f"a compartment > {n_compartments} or a sector >= {n_sectors}")
    return out
