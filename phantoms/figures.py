"""Sagittal images of every pass of the library's cases (``docs/cases/<case>.png``).

Run ``python -m leakloc.phantoms.figures docs/cases [--shape medium] [--case NAME ...]``.
The section follows the canal centreline (curved sagittal reformat through the canal, straightened
along z), anterior to the left, cranial at the top, myelogram window.
"""
from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np
from scipy import ndimage


def sagittal(study, volume, half_width_mm=55.0, step_mm=None, lateral_mm=0.0):
    """Curved sagittal section through the canal of one pass.

    Parameters
    ----------
    study : Study
    volume : ndarray (Z, Y, X), HU
    half_width_mm : float, AP half-width of the section, mm
    lateral_mm : float, offset of the section to the patient's left, mm

    Returns
    -------
    image : ndarray (Z, W), HU, row 0 = most cranial slice, column 0 = most anterior
    extent : (left, right, bottom, top) in mm for imshow (AP mm relative to the canal, z mm)
    """
    g = study.grid
    z = g.z_mm()
    order = np.argsort(-z)
    step = step_mm or min(g.spacing_mm[0], g.spacing_mm[1])
    s = np.arange(-half_width_mm, half_width_mm + 1e-6, step)
    xc, yc = study.spine.centre_xy(z[order])
    pts = np.stack([np.broadcast_to(xc[:, None] + lateral_mm, (len(z), len(s))),
                    yc[:, None] + s[None, :],
                    np.broadcast_to(z[order][:, None], (len(z), len(s)))], axis=-1)
    idx = g.lps_to_index(pts)  # (..., 3) x, y, z
    coords = np.stack([idx[..., 2], idx[..., 1], idx[..., 0]], axis=0)
    img = ndimage.map_coordinates(volume, coords, order=1, mode="nearest")
    return img, (-half_width_mm, half_width_mm, float(z.min()), float(z.max()))


def case_figure(study, path, window=(-250.0, 1100.0)):
    """One PNG: a sagittal section of every pass side by side, with truth annotations."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = study.n_phases
    fig, axes = plt.subplots(1, n, figsize=(2.1 * n + 0.6, 7.2), squeeze=False)
    truth = study.truth
    for k in range(n):
        vol = study.phase(k)
        lat = 0.0
        img, ext = sagittal(study, vol, lateral_mm=lat)
        ax = axes[0, k]
        ax.imshow(img, cmap="gray", vmin=window[0], vmax=window[1], extent=ext, aspect="equal",
                  interpolation="bilinear")
        ax.set_title(f"pass {k}\nt = {study.times_s[k]:.1f} s\n{study.table_directions[k]}", fontsize=8)
        ax.set_xticks([])
        if k == 0:
            ax.set_ylabel("z (mm, LPS)")
            ax.tick_params(labelsize=7)
            for lv in truth["levels"]:
                zc = 0.5 * sum(lv["z_range_mm"])
                ax.text(ext[0] + 2, zc, lv["name"], color="yellow", fontsize=6, va="center")
        else:
            ax.set_yticks([])
        for d in truth["defects"]:
            if study.times_s[k] >= d["onset_time_s"] - 10:
                ax.annotate("", xy=(-12 if d["side"] == "ventral" else 12, d["z_mm"]),
                            xytext=(-35 if d["side"] == "ventral" else 35, d["z_mm"]),
                            arrowprops=dict(arrowstyle="->", color="red", lw=1.0))
    lab = "; ".join(f"{d['kind']} {d['level']} {d['side']} onset {d['onset_time_s']} s"
                    for d in truth["defects"]) or "no leak"
    fig.suptitle(f"{study.case} ({study.figure}): {study.description}\ntruth: {lab}; "
                 f"{study.patient_position}, anterior left", fontsize=8)
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".png", dir=path.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=110)
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def main(argv=None):
    from . import CASES, generate
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("out_dir")
    ap.add_argument("--shape", default="medium", choices=["small", "medium", "fine", "full"])
    ap.add_argument("--case", action="append", default=None)
    a = ap.parse_args(argv)
    for name in a.case or list(CASES):
        study = generate(case=name, shape=a.shape)
        p = case_figure(study, Path(a.out_dir) / f"{name}.png")
        print(f"wrote {p}")


if __name__ == "__main__":  # pragma: no cover
    main()
