"""Figures a surgeon can plan from, drawn from a :class:`leakloc.pipeline.Analysis`.

Every function takes the analysis and an optional matplotlib ``ax`` (or ``fig`` for the
multi-panel MIPs) and returns what it drew on, so the figures compose in notebooks. Without an
``ax`` a new :class:`matplotlib.figure.Figure` is made (no pyplot, no global state): save it with
``ax.figure.savefig(path)``.

Conventions, the same in every figure:

* cranial is at the top, whatever the slice order of the study (``anatomy.cranial_step``);
* the spinal axis carries vertebra names (``T7``) as tick labels;
* times are seconds after the first pass began, enhancements are HU above baseline;
* the defect is drawn in :data:`DEFECT_COLOR` and its artists carry ``gid='defect'`` (further
  defects ``gid='defect-other'``);
* sides are in patient terms (ventral, dorsal, left, right) from the direction cosines.
"""
from __future__ import annotations

import math

import numpy as np
from matplotlib import rc_context
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch, Rectangle

from leakloc import levels as lv

__all__ = ["STYLE", "plot_level_time_map", "plot_time_attenuation", "plot_mips", "plot_axial",
           "plot_plan", "FIGURES", "save_figures"]

#: one style for every figure
STYLE = {
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": False,
    "figure.dpi": 110,
    "savefig.dpi": 110,
    "image.interpolation": "nearest",
    "legend.fontsize": 8,
    "legend.frameon": False,
}
INTRATHECAL_CMAP = "viridis"
EXTRAV_CMAP = "magma"
ENH_CMAP = "inferno"
DEFECT_COLOR = "#00c8ff"
PLAN_COLOR = "#d62728"


# ----------------------------------------------------------------------------------- helpers
def _new_ax(ax, figsize):
    if ax is not None:
        return ax
    fig = Figure(figsize=figsize, layout="constrained")
    return fig.add_subplot(1, 1, 1)


def _level_coords(analysis) -> np.ndarray:
    """Level coordinate of each name in ``analysis.level_names`` (cranial first)."""
    return np.array([lv.coord_of(n) for n in analysis.level_names], dtype=float)


def _spine_axis_levels(ax, analysis, axis="y"):
    """Put vertebra names as ticks on a level-coordinate axis with cranial at the top."""
    coords = _level_coords(analysis)
    if axis == "y":
        ax.set_yticks(coords)
        ax.set_yticklabels(analysis.level_names)
        lo, hi = coords.min() - 0.5, coords.max() + 0.5
        ax.set_ylim(hi, lo)  # smaller coordinate = cranial = top
        ax.set_ylabel("vertebral level (cranial at top)")


def _defect_label(d) -> str:
    return f"{d.level} {d.side} {d.kind.replace('_', ' ')} ({d.confidence:.0%})"


def _finite(v) -> bool:
    try:
        return v is not None and math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def _level_z_mm(analysis):
    """Level names and centre LPS z (mm) from ``anatomy.levels``."""
    names, zc = [], []
    for lev in analysis.anatomy.levels:
        names.append(lev.name)
        zc.append(0.5 * (float(lev.z_range_mm[0]) + float(lev.z_range_mm[1])))
    return names, np.array(zc, dtype=float)


def _slice_z_mm(analysis) -> np.ndarray:
    return np.asarray(analysis.series.grid.z_mm(), dtype=float)


def _edges(centres: np.ndarray) -> np.ndarray:
    """Cell edges of monotonic centres (for pcolormesh)."""
    c = np.asarray(centres, dtype=float)
    if c.size == 1:
        return np.array([c[0] - 0.5, c[0] + 0.5])
    mid = 0.5 * (c[1:] + c[:-1])
    return np.concatenate([[c[0] - (mid[0] - c[0])], mid, [c[-1] + (c[-1] - mid[-1])]])


def _time_cells(times):
    """Cell edges (s) and the pass shown in each cell (-1 = gap) for a level x time map."""
    times = np.asarray(times, dtype=float)
    gaps = np.diff(times)
    typical = float(np.median(gaps)) if gaps.size else 10.0
    width = 1.5 * typical
    edges, cols = [float(times[0])], []
    for p, t in enumerate(times):
        nxt = float(times[p + 1]) if p + 1 < times.size else t + typical
        end = min(nxt, t + width)
        edges.append(end)
        cols.append(p)
        if end < nxt - 1e-9:
            edges.append(nxt)
            cols.append(-1)
    return np.array(edges), np.array(cols, dtype=int)


# ---------------------------------------------------------------------- 1. level x time map
def plot_level_time_map(analysis, ax=None, which: str = "both", vmax_hu: float | None = None):
    """Level x time map of intrathecal and extravasated contrast, the defect(s) marked.

    Parameters
    ----------
    analysis : leakloc.pipeline.Analysis
        Uses ``intrathecal_hu`` and ``extravasation_hu`` (shape (L, P), HU), ``times_s`` (P,), s,
        ``level_names`` (L,), ``defects``.
    ax : matplotlib Axes or sequence of two Axes, optional
        With ``which='both'`` a pair (intrathecal, extravasation); a single Axes for one map.
    which : ``'both'``, ``'intrathecal'`` or ``'extravasation'``
    vmax_hu : float, optional, colour scale top, HU

    Returns
    -------
    Axes, or a list of two Axes for ``which='both'``
    """
    with rc_context(STYLE):
        if which == "both":
            if ax is None:
                fig = Figure(figsize=(9.0, 4.2), layout="constrained")
                axes = list(fig.subplots(1, 2, sharey=True))
            else:
                axes = list(ax)
            _level_time_panel(analysis, axes[0], "intrathecal", vmax_hu)
            _level_time_panel(analysis, axes[1], "extravasation", vmax_hu)
            axes[1].set_ylabel("")
            return axes
        ax = _new_ax(ax, (4.8, 4.2))
        _level_time_panel(analysis, ax, which, vmax_hu)
        return ax


def _level_time_panel(analysis, ax, which, vmax_hu):
    times = np.asarray(analysis.times_s, dtype=float)
    coords = _level_coords(analysis)
    data = np.asarray(analysis.intrathecal_hu if which == "intrathecal" else analysis.extravasation_hu,
                      dtype=float)
    order = np.argsort(coords)
    data, c = data[order], coords[order]
    # time cells: a pass holds from its start until the next pass, at most 1.5 median gaps;
    # longer gaps are left blank (masked) rather than stretched
    t_edges, cols = _time_cells(times)
    data = np.where(np.asarray(cols)[None, :] >= 0, data[:, np.maximum(cols, 0)], np.nan)
    c_edges = _edges(c)
    finite = data[np.isfinite(data)]
    vmax = vmax_hu if vmax_hu is not None else (float(np.percentile(finite, 99)) if finite.size else 1.0)
    mesh = ax.pcolormesh(t_edges, c_edges, np.ma.masked_invalid(data),
                         cmap=INTRATHECAL_CMAP if which == "intrathecal" else EXTRAV_CMAP,
                         vmin=0.0, vmax=max(vmax, 1.0), shading="flat")
    cb = ax.figure.colorbar(mesh, ax=ax, shrink=0.85, pad=0.02)
    cb.set_label("enhancement (HU)")
    ax.set_xlabel("time after first pass (s)")
    ax.set_title("intrathecal contrast (sac)" if which == "intrathecal"
                 else "extravasated contrast (outside the sac)")
    for t in times:
        ax.axvline(t, color="white", lw=0.4, alpha=0.5)
    # arrival times per level as small ticks
    key = "intrathecal_arrival_s" if which == "intrathecal" else "epidural_arrival_s"
    arr_t, arr_c = [], []
    for lk in analysis.levels:
        v = getattr(lk, key, float("nan"))
        if _finite(v):
            arr_t.append(float(v))
            arr_c.append(lv.coord_of(lk.name))
    if arr_t:
        ax.plot(arr_t, arr_c, ls="none", marker="|", ms=9, mew=1.6, color="white",
                label="arrival")
    _spine_axis_levels(ax, analysis)
    ax.set_xlim(t_edges[0], t_edges[-1])
    for i, d in enumerate(analysis.defects):
        ax.plot([d.onset_time_s], [d.level_coord], ls="none", marker="o", ms=11 if i == 0 else 7,
                mfc="none", mec=DEFECT_COLOR, mew=2.0 if i == 0 else 1.2,
                gid="defect" if i == 0 else "defect-other",
                label=f"defect {d.level}" if i == 0 else None)
        if i < 3:  # name the three most probable; more would crowd the map
            ax.annotate(d.level, (d.onset_time_s, d.level_coord), xytext=(8, -8),
                        textcoords="offset points", color=DEFECT_COLOR, fontweight="bold",
                        gid="defect-label")
    if analysis.defects or arr_t:
        ax.legend(loc="lower right", labelcolor="white", frameon=True, facecolor="#333333",
                  edgecolor="none", framealpha=0.85)
    return ax


# ------------------------------------------------------------------ 2. time-attenuation curves
def plot_time_attenuation(analysis, ax=None, n_neighbours: int = 1):
    """Time-attenuation curves of the defect level and its neighbours, intrathecal vs epidural.

    For a CSF-venous fistula the paraspinal (venous) curve replaces the epidural one. With no
    defect, the level of the latest intrathecal arrival is shown with its neighbours.

    Parameters
    ----------
    analysis : leakloc.pipeline.Analysis
    ax : Axes, optional
    n_neighbours : int, levels shown on each side of the defect

    Returns
    -------
    Axes; x is time after the first pass (s), y is enhancement (HU).
    """
    with rc_context(STYLE):
        ax = _new_ax(ax, (6.4, 4.0))
        times = np.asarray(analysis.times_s, dtype=float)
        coords = _level_coords(analysis)
        d = analysis.defects[0] if analysis.defects else None
        venous = d is not None and d.kind == "csf_venous_fistula"
        centre = d.level_coord if d is not None else float(np.median(coords))
        dist = np.abs(coords - centre)
        chosen = [i for i in np.argsort(dist, kind="stable") if dist[i] <= n_neighbours + 0.5]
        chosen = sorted(chosen, key=lambda i: coords[i])  # cranial first
        colors = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2"]
        outside = analysis.venous_hu if venous else analysis.extravasation_hu
        out_word = "venous" if venous else "epidural"
        kin = {lk.name: lk for lk in analysis.levels}
        for j, i in enumerate(chosen):
            name = analysis.level_names[i]
            col = colors[j % len(colors)]
            ax.plot(times, analysis.intrathecal_hu[i], color=col, lw=1.8, marker="o", ms=3,
                    label=f"{name} intrathecal")
            ax.plot(times, outside[i], color=col, lw=1.8, ls="--", marker="s", ms=3,
                    label=f"{name} {out_word}")
            lk = kin.get(name)
            if lk is not None:
                a_it = lk.intrathecal_arrival_s
                a_out = lk.venous_arrival_s if venous else lk.epidural_arrival_s
                if _finite(a_it):
                    ax.axvline(a_it, color=col, lw=0.8, ls=":", gid=f"arrival-intrathecal-{name}")
                if _finite(a_out):
                    ax.axvline(a_out, color=col, lw=0.8, ls="-.", gid=f"arrival-{out_word}-{name}")
        if d is not None:
            ax.axvline(d.onset_time_s, color=DEFECT_COLOR, lw=2.0, gid="defect",
                       label=f"defect onset {d.level} {d.onset_time_s:.1f} s")
        ax.set_xlabel("time after first pass (s)")
        ax.set_ylabel("enhancement above baseline (HU)")
        ax.set_title(f"intrathecal (solid) vs {out_word} (dashed) at "
                     + (f"the defect {d.level}" if d else "mid field of view")
                     + "\narrival times: dotted (intrathecal), dash-dot (" + out_word + ")")
        ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5))
        shown = np.asarray(outside, dtype=float)[chosen] if chosen else np.zeros(1)
        shown = shown[np.isfinite(shown)]
        ax.set_ylim(bottom=min(0.0, float(shown.min())) if shown.size else 0.0)
        return ax


# ----------------------------------------------------------------------------- 3. MIPs
def plot_mips(analysis, fig=None, passes=None, vmax_hu: float | None = None):
    """Sagittal and coronal MIPs of the enhancement per pass, straightened along the canal.

    Parameters
    ----------
    analysis : leakloc.pipeline.Analysis
        ``mip_sagittal_hu`` / ``mip_coronal_hu`` shape (P, Z, W), HU; W spans ``mip_width_mm``
        (ventral / patient-left columns first).
    fig : Figure, optional; drawn on with a 2 x len(passes) grid of axes
    passes : sequence of int, optional, the passes to show (default all)
    vmax_hu : float, optional

    Returns
    -------
    Figure; ``fig.axes`` rows are sagittal then coronal, one column per pass. The y axis is LPS
    z (mm; cranial up) labelled with vertebra names, x is across the canal (mm).
    """
    with rc_context(STYLE):
        sag = np.asarray(analysis.mip_sagittal_hu, dtype=float)
        cor = np.asarray(analysis.mip_coronal_hu, dtype=float)
        P, Z, W = sag.shape
        passes = list(range(P)) if passes is None else list(passes)
        if fig is None:
            fig = Figure(figsize=(1.55 * len(passes) + 1.6, 8.4), layout="constrained")
        axes = fig.subplots(2, len(passes), sharex=True, sharey=True, squeeze=False)
        z = _slice_z_mm(analysis)
        half = 0.5 * float(analysis.mip_width_mm)
        z_edges = _edges(z)
        both = np.concatenate([sag[passes].ravel(), cor[passes].ravel()])
        both = both[np.isfinite(both)]
        vmax = vmax_hu if vmax_hu is not None else (float(np.percentile(both, 99.5)) if both.size else 1.0)
        names, zc = _level_z_mm(analysis)
        d = analysis.defects[0] if analysis.defects else None
        spacing = analysis.series.grid.spacing_mm
        mesh = None
        for row, (vol, view) in enumerate(((sag, "sagittal"), (cor, "coronal"))):
            for col, p in enumerate(passes):
                ax = axes[row, col]
                # slices are evenly spaced: imshow with an extent in mm (row 0 at z_edges[0])
                mesh = ax.imshow(np.ma.masked_invalid(vol[p]), cmap=ENH_CMAP, vmin=0.0,
                                 vmax=max(vmax, 1.0), origin="lower", aspect="auto",
                                 extent=(-half, half, z_edges[0], z_edges[-1]))
                ax.set_ylim(min(z_edges[0], z_edges[-1]), max(z_edges[0], z_edges[-1]))  # cranial up
                ax.set_xlim(-half, half)
                ax.set_title(f"{view}\npass {p}, {analysis.times_s[p]:.0f} s", fontsize=8)
                if d is not None and analysis.times_s[p] + _pass_duration(analysis, p) >= d.onset_time_s:
                    off = _defect_offset_mm(analysis, d, spacing)
                    x = off[0] if view == "sagittal" else off[1]
                    ax.annotate("", xy=(x, d.z_mm), xytext=(x + (0.42 * half if x <= 0 else -0.42 * half),
                                                             d.z_mm + 0.06 * abs(z_edges[-1] - z_edges[0])),
                                arrowprops=dict(arrowstyle="->", color=DEFECT_COLOR, lw=1.8), gid="defect")
                ax.xaxis.set_tick_params(labelbottom=True)
                if col == 0:
                    ax.set_xlabel("ventral \u2190 (mm) \u2192 dorsal" if view == "sagittal"
                                  else "left \u2190 (mm) \u2192 right")
        for row in range(2):
            ax0 = axes[row, 0]
            ax0.set_yticks(zc)
            ax0.set_yticklabels(names)
            ax0.set_ylabel("vertebral level (z in mm, cranial up)")
            sec = axes[row, -1].secondary_yaxis("right")
            sec.set_ylabel("LPS z (mm)")
        cb = fig.colorbar(mesh, ax=axes[:, -1].tolist(), shrink=0.6, pad=0.08)
        cb.set_label("enhancement (HU)")
        sup = "enhancement MIPs straightened along the canal"
        if d is not None:
            sup += f"; arrow: defect {d.level} ({d.side})"
        fig.suptitle(sup, fontsize=10)
        return fig


def _pass_duration(analysis, p) -> float:
    try:
        return float(analysis.series.phases[p].duration_s)
    except (AttributeError, IndexError, TypeError):
        return 0.0


def _defect_offset_mm(analysis, d, spacing_mm):
    """(sagittal, coronal) MIP column coordinate of the defect, mm from the canal centre.

    Sagittal columns run ventral -> dorsal, coronal columns patient left -> right.
    """
    an = analysis.anatomy
    k = int(d.slice_index)
    if not (0 <= k < len(an.centreline_yx)) or not all(_finite(v) for v in d.yx):
        return 0.0, 0.0
    c = np.asarray(an.centreline_yx[k], dtype=float)
    if not np.all(np.isfinite(c)):
        return 0.0, 0.0
    sy, sx = float(spacing_mm[1]), float(spacing_mm[0])
    dv = (np.asarray(d.yx, dtype=float) - c) * np.array([sy, sx])
    vent = np.asarray(an.ventral_yx, float) * np.array([sy, sx])
    left = np.asarray(an.left_yx, float) * np.array([sy, sx])
    vent /= np.linalg.norm(vent) or 1.0
    left /= np.linalg.norm(left) or 1.0
    return -float(dv @ vent), -float(dv @ left)


# ----------------------------------------------------------------------------- 4. axial
def plot_axial(analysis, ax=None, enh_threshold_hu: float = 100.0):
    """The axial slice through the defect at the first pass that shows the leak.

    Parameters
    ----------
    analysis : leakloc.pipeline.Analysis
        ``axial_hu`` / ``axial_enh_hu`` shape (Y, X), HU; ``axial_phase``, ``axial_slice``.
    ax : Axes, optional
    enh_threshold_hu : float, enhancement (HU) above which extravasated contrast is outlined

    Returns
    -------
    Axes in mm (x, y of the image grid), labelled ventral / dorsal / left / right in patient
    terms from ``anatomy.ventral_yx`` and ``anatomy.left_yx`` (text artists with
    ``gid='orient-ventral'`` etc.).
    """
    with rc_context(STYLE):
        ax = _new_ax(ax, (5.0, 4.6))
        if analysis.axial_hu is None:
            ax.text(0.5, 0.5, "no defect: no axial slice", ha="center", va="center",
                    transform=ax.transAxes)
            ax.set_xlabel("x (mm)")
            ax.set_ylabel("y (mm)")
            return ax
        img = np.asarray(analysis.axial_hu, dtype=float)
        ny, nx = img.shape
        sx, sy = (float(s) for s in analysis.series.grid.spacing_mm[:2])
        extent = (0.0, nx * sx, ny * sy, 0.0)
        im = ax.imshow(img, cmap="gray", vmin=-200.0, vmax=600.0, extent=extent)
        cb = ax.figure.colorbar(im, ax=ax, shrink=0.8, pad=0.02)
        cb.set_label("attenuation (HU, window -200..600)")
        if analysis.axial_enh_hu is not None:
            enh = np.asarray(analysis.axial_enh_hu, dtype=float)
            comp = None
            k = int(analysis.axial_slice)
            if 0 <= k < analysis.anatomy.compartments.shape[0]:
                comp = analysis.anatomy.compartments[k]
            mask = np.nan_to_num(enh) >= enh_threshold_hu
            if comp is not None:
                mask &= comp != 1  # outside the sac
            if mask.any():
                ys = (np.arange(ny) + 0.5) * sy
                xs = (np.arange(nx) + 0.5) * sx
                ax.contour(xs, ys, mask.astype(float), levels=[0.5], colors=[DEFECT_COLOR],
                           linewidths=1.2)
        # patient-direction labels at the image border
        cx, cy = nx * sx / 2.0, ny * sy / 2.0
        rad = 0.44 * min(nx * sx, ny * sy)
        vent = np.asarray(analysis.anatomy.ventral_yx, float) * np.array([sy, sx])
        left = np.asarray(analysis.anatomy.left_yx, float) * np.array([sy, sx])
        vent /= np.linalg.norm(vent) or 1.0
        left /= np.linalg.norm(left) or 1.0
        for word, vec in (("ventral", vent), ("dorsal", -vent), ("left", left), ("right", -left)):
            ax.text(cx + rad * vec[1], cy + rad * vec[0], word.upper(), color="yellow",
                    ha="center", va="center", fontsize=8, fontweight="bold", gid=f"orient-{word}",
                    bbox=dict(boxstyle="round,pad=0.15", fc="black", ec="none", alpha=0.6))
        for d in analysis.defects[:1]:
            if all(_finite(v) for v in d.yx):
                ax.plot([(d.yx[1] + 0.5) * sx], [(d.yx[0] + 0.5) * sy], ls="none", marker="o", ms=14,
                        mfc="none", mec=DEFECT_COLOR, mew=2.0, gid="defect",
                        label=f"defect {d.level} ({d.side})")
                ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12))
        p = int(analysis.axial_phase)
        z_txt = ""
        if 0 <= int(analysis.axial_slice) < analysis.series.grid.size[2]:
            z_txt = f", z {float(_slice_z_mm(analysis)[int(analysis.axial_slice)]):.1f} mm"
        t_txt = f", pass {p} at {analysis.times_s[p]:.0f} s" if 0 <= p < len(analysis.times_s) else ""
        lvl = f"{analysis.defects[0].level} " if analysis.defects else ""
        ax.set_title(f"axial {lvl}slice {int(analysis.axial_slice)}{z_txt}{t_txt}")
        ax.set_xlabel("image x (mm)")
        ax.set_ylabel("image y (mm)")
        return ax


# ------------------------------------------------------------------------ 5. planning diagram
def plot_plan(analysis, ax=None, margin_levels: int = 1):
    """Schematic spine, dorsal view, cranial at top: the laminectomy levels and side highlighted.

    Each vertebra is a body with a left and a right lamina (``Rectangle`` with
    ``gid='lamina-T7-left'``); the laminae to open are filled in :data:`PLAN_COLOR`; the
    uncertainty (``plan.uncertainty_levels``, +/- levels around the defect) is a shaded band
    (``gid='uncertainty'``); the defect is a marker (``gid='defect'``).

    Returns
    -------
    Axes; y is the level coordinate (vertebra names as ticks), x is schematic patient
    left/right seen from behind (no physical unit).
    """
    with rc_context(STYLE):
        ax = _new_ax(ax, (4.2, 6.2))
        coords = _level_coords(analysis)
        lo = int(coords.min()) - margin_levels
        hi = int(coords.max()) + margin_levels
        lo, hi = max(lo, 0), min(hi, len(lv.VERTEBRAE) - 1)
        plan = analysis.plan if analysis.defects else None
        open_levels = set(plan.levels) if plan is not None else set()
        side = plan.side if plan is not None else ""
        in_fov = set(analysis.level_names)
        for i in range(lo, hi + 1):
            name = lv.VERTEBRAE[i]
            alpha = 1.0 if name in in_fov else 0.35
            ax.add_patch(FancyBboxPatch((-0.45, i - 0.32), 0.9, 0.64, boxstyle="round,pad=0.02",
                                        fc="#e8e2d0", ec="#6b6350", lw=1.0, alpha=alpha,
                                        gid=f"body-{name}"))
            for lam_side, x0 in (("left", -1.35), ("right", 0.55)):
                hit = name in open_levels and side in (lam_side, "bilateral")
                ax.add_patch(Rectangle((x0, i - 0.28), 0.8, 0.56,
                                       fc=PLAN_COLOR if hit else "#f5f3ec",
                                       ec="#6b6350", lw=1.0, alpha=alpha,
                                       gid=f"lamina-{name}-{lam_side}"))
            ax.text(0.0, i, name, ha="center", va="center", fontsize=8, alpha=alpha)
        d = analysis.defects[0] if analysis.defects else None
        if d is not None:
            unc = float(plan.uncertainty_levels) if plan is not None else 0.5
            ax.axhspan(d.level_coord - unc, d.level_coord + unc, color=DEFECT_COLOR, alpha=0.18,
                       lw=0, gid="uncertainty", label=f"uncertainty \u00b1{unc:g} level")
            ax.plot([1.75], [d.level_coord], ls="none", marker="<", ms=12, color=DEFECT_COLOR,
                    gid="defect", label=f"defect {d.level} ({d.side})")
            ax.add_patch(Rectangle((0, 0), 0, 0, fc=PLAN_COLOR, label="laminae to open"))
            title = (f"laminectomy {', '.join(plan.levels)} ({plan.side})" if plan is not None
                     else f"defect {d.level}")
            ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=1)
        else:
            title = "no leak found: no laminectomy proposed"
        ax.set_title(title)
        ax.set_xlim(-1.8, 2.1)
        ax.set_ylim(hi + 0.7, lo - 0.7)
        ax.set_yticks(range(lo, hi + 1))
        ax.set_yticklabels([lv.VERTEBRAE[i] for i in range(lo, hi + 1)])
        ax.set_ylabel("vertebral level (cranial at top)")
        ax.set_xticks([-0.95, 0.0, 0.95])
        ax.set_xticklabels(["left\nlamina", "body", "right\nlamina"])
        ax.set_xlabel("dorsal view, patient left | right (schematic, no unit)")
        ax.set_aspect("auto")
        return ax


# ------------------------------------------------------------------------- all figures
#: file stem -> (title, function); the functions return Axes, a list of Axes or a Figure
FIGURES = {
    "level_time_map": ("Level x time map of contrast", plot_level_time_map),
    "time_attenuation": ("Time-attenuation curves at the defect", plot_time_attenuation),
    "mips": ("Enhancement MIPs per pass", plot_mips),
    "axial": ("Axial slice through the defect", plot_axial),
    "plan": ("Laminectomy planning diagram", plot_plan),
}


def _figure_of(obj):
    if isinstance(obj, Figure):
        return obj
    if isinstance(obj, (list, tuple)):
        return obj[0].figure
    return obj.figure


def save_figures(analysis, folder, progress=None) -> dict:
    """Draw every figure of :data:`FIGURES` and save it as ``folder/<name>.png``.

    Returns
    -------
    dict, name -> path of the PNG written
    """
    import os
    out = {}
    for name, (_title, fn) in FIGURES.items():
        fig = _figure_of(fn(analysis))
        path = os.path.join(folder, f"{name}.png")
        with rc_context(STYLE):
            fig.savefig(path, format="png", facecolor="white")
        out[name] = path
        if progress is not None:
            progress(f"figure {name}.png")
    return out
