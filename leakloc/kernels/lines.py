"""Sums of an image along straight lines (a discrete Radon transform of masked pixels).

Streak artefacts are thin straight lines across an axial slice; their amplitude along a line is
the mean of the pixels whose distance ``rho = x cos(theta) + y sin(theta)`` falls in one bin.
"""
from __future__ import annotations

import numpy as np

from leakloc.kernels import _checks
from leakloc.kernels._options import JIT_PARALLEL, njit, prange


@njit(**JIT_PARALLEL)
def _line_sums(images, mask, cos_a, sin_a, x0_mm, dx_mm, y0_mm, dy_mm, rho_min_mm, rho_step_mm,
               sums, counts):
    n_p, n_s, n_y, n_x = images.shape
    n_a = cos_a.shape[0]
    n_r = sums.shape[3]
    # bin position of pixel (j, i) in units of bins: r0 + j * inc_y + i * inc_x
    inc_x = np.empty(n_a)
    inc_y = np.empty(n_a)
    r0 = np.empty(n_a)
    for a in range(n_a):
        inc_x[a] = dx_mm * cos_a[a] / rho_step_mm
        inc_y[a] = dy_mm * sin_a[a] / rho_step_mm
        r0[a] = (x0_mm * cos_a[a] + y0_mm * sin_a[a] - rho_min_mm) / rho_step_mm + 0.5
    for s in prange(n_s):
        for j in range(n_y):
            for i in range(n_x):
                if mask[s, j, i] == 0:
                    continue
                # the bins of a pixel are the same in every image: found once, added P times
                for a in range(n_a):
                    r = int(np.floor(r0[a] + j * inc_y[a] + i * inc_x[a]))
                    if 0 <= r < n_r:
                        counts[s, a, r] += 1.0
                        for p in range(n_p):
                            sums[p, s, a, r] += images[p, s, j, i]


def line_sums(images, mask, angles_rad, origin_mm, step_mm, rho_min_mm, rho_step_mm, n_rho):
    """Sum and count of the masked pixels of each image along lines of every angle and offset.

    Pixel ``(s, j, i)`` sits at ``x = origin_mm[1] + i * step_mm[1]``,
    ``y = origin_mm[0] + j * step_mm[0]``; it adds to bin
    ``r = floor((x cos(a) + y sin(a) - rho_min_mm) / rho_step_mm + 0.5)`` of every angle ``a``
    (bins outside ``0 .. n_rho - 1`` are dropped). The ``P`` images share the mask, so each
    pixel's bins are found once for all of them.

    Parameters
    ----------
    images : ndarray of float32, shape (P, S, Y, X), C-contiguous; e.g. HU of S slabs of P passes
    mask : ndarray of uint8, shape (S, Y, X), C-contiguous; nonzero pixels count
    angles_rad : ndarray of float64, shape (A,); rad
    origin_mm : (float, float); y and x of pixel (0, 0), mm
    step_mm : (float, float); pixel spacing along y and x, mm (> 0)
    rho_min_mm : float; offset of bin 0, mm
    rho_step_mm : float; bin width, mm (> 0)
    n_rho : int; number of bins (>= 1)

    Returns
    -------
    sums : ndarray of float64, shape (P, S, A, n_rho); sum of the pixels of each line (HU)
    counts : ndarray of float64, shape (S, A, n_rho); number of pixels of each line
    """
    _checks.array("images", images, np.float32, 4)
    _checks.array("mask", mask, np.uint8, 3, images.shape[1:])
    _checks.array("angles_rad", angles_rad, np.float64, 1)
    n_rho = _checks.integer("n_rho", n_rho, 1)
    oy, ox = (_checks.real("origin_mm", v) for v in origin_mm)
    sy, sx = (_checks.real("step_mm", v, lo=1e-9) for v in step_mm)
    rho_min_mm = _checks.real("rho_min_mm", rho_min_mm)
    rho_step_mm = _checks.real("rho_step_mm", rho_step_mm, lo=1e-9)
    n_a = angles_rad.shape[0]
    sums = np.zeros((images.shape[0], images.shape[1], n_a, n_rho), np.float64)
    counts = np.zeros((images.shape[1], n_a, n_rho), np.float64)
    _line_sums(images, mask, np.cos(angles_rad), np.sin(angles_rad), ox, sx, oy, sy, rho_min_mm,
               rho_step_mm, sums, counts)
    return sums, counts
