"""Figure content: level names on the spinal axis, the defect at the right level, sides in patient terms."""
from __future__ import annotations

import numpy as np
import pytest
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from fake_analysis import LEVELS, make_analysis
from leakloc import plots
from leakloc.plan import Plan


def _tick_labels(ax, axis="y"):
    ticks = ax.get_yticklabels() if axis == "y" else ax.get_xticklabels()
    return [t.get_text() for t in ticks]


def _gid(ax, gid, kind=None):
    arts = [a for a in ax.get_children() if a.get_gid() == gid]
    if kind is not None:
        arts = [a for a in arts if isinstance(a, kind)]
    return arts


def _display_y(ax, y):
    return ax.transData.transform((ax.get_xlim()[0], y))[1]


@pytest.fixture(scope="module")
def leak():
    return make_analysis()


@pytest.fixture(scope="module")
def prone_caudal():
    """Prone (RAS) grid whose slice index increases caudally."""
    return make_analysis(orientation="RAS", cranial_step=-1)


def test_level_time_map_names_and_defect(leak):
    axes = plots.plot_level_time_map(leak)
    assert len(axes) == 2
    assert _tick_labels(axes[0]) == LEVELS  # the right panel shares the spinal axis
    for ax in axes:
        assert ax.get_yticks().tolist() == [10.0, 11.0, 12.0, 13.0, 14.0, 15.0, 16.0]
        # cranial at the top: T4 is drawn above T10
        assert _display_y(ax, 10.0) > _display_y(ax, 16.0)
        marks = _gid(ax, "defect", Line2D)
        assert len(marks) == 1
        assert marks[0].get_ydata()[0] == pytest.approx(13.5)  # T7-T8 between T7 (13) and T8 (14)
        assert marks[0].get_xdata()[0] == pytest.approx(23.4)
        assert "(s)" in ax.get_xlabel()
    assert "level" in axes[0].get_ylabel()
    assert axes[0].get_title().startswith("intrathecal")
    assert axes[1].get_title().startswith("extravasated")


def test_level_time_map_single_panel_on_given_ax(leak):
    fig = Figure()
    ax = fig.add_subplot()
    out = plots.plot_level_time_map(leak, ax=ax, which="extravasation")
    assert out is ax
    assert _tick_labels(ax) == LEVELS


def test_level_time_map_no_leak_has_no_marker():
    axes = plots.plot_level_time_map(make_analysis(leak=False))
    assert all(not _gid(ax, "defect") for ax in axes)


def test_time_cells_leave_long_gaps_blank():
    edges, cols = plots._time_cells(np.array([0.0, 12.0, 22.0, 33.0, 45.0, 120.0]))
    assert cols.tolist() == [0, 1, 2, 3, 4, -1, 5]
    assert edges[:5].tolist() == [0.0, 12.0, 22.0, 33.0, 45.0]
    assert edges[6] == 120.0


def test_time_attenuation_curves(leak):
    ax = plots.plot_time_attenuation(leak)
    labels = [ln.get_label() for ln in ax.get_lines()]
    for name in ("T6", "T7", "T8", "T9"):
        assert f"{name} intrathecal" in labels and f"{name} epidural" in labels
    assert "T5 intrathecal" not in labels
    onset = _gid(ax, "defect", Line2D)
    assert len(onset) == 1 and onset[0].get_xdata()[0] == pytest.approx(23.4)
    # arrival times are marked: T7's intrathecal arrival at 19 s
    arr = _gid(ax, "arrival-intrathecal-T7", Line2D)
    assert len(arr) == 1 and arr[0].get_xdata()[0] == pytest.approx(19.0)
    assert "(s)" in ax.get_xlabel() and "(HU)" in ax.get_ylabel()


def test_time_attenuation_fistula_shows_venous():
    a = make_analysis(kind="csf_venous_fistula", side="right")
    ax = plots.plot_time_attenuation(a)
    labels = [ln.get_label() for ln in ax.get_lines()]
    assert "T7 venous" in labels and "T7 epidural" not in labels


@pytest.mark.parametrize("which", ["leak", "prone_caudal"])
def test_mips_levels_cranial_up_and_arrow(which, request):
    a = request.getfixturevalue(which)
    fig = plots.plot_mips(a)
    P = len(a.times_s)
    axes = [ax for ax in fig.axes if ax.get_title()]
    assert len(axes) == 2 * P
    first = axes[0]
    assert _tick_labels(first) == LEVELS
    ticks = dict(zip(_tick_labels(first), first.get_yticks()))
    assert _display_y(first, ticks["T4"]) > _display_y(first, ticks["T10"])  # cranial up
    for ax in axes:
        arrows = _gid(ax, "defect")
        p = int(ax.get_title().split("pass ")[1].split(",")[0])
        if p < 2:  # the leak is first visible in pass 2 (22 s + 7.9 s >= 23.4 s onset)
            assert arrows == []
        else:
            assert len(arrows) == 1
            assert arrows[0].xy[1] == pytest.approx(a.defects[0].z_mm)
            if ax.get_title().startswith("sagittal"):
                assert arrows[0].xy[0] == pytest.approx(-6.0)  # ventral = first columns = negative
    assert "mm" in axes[0].get_xlabel() and "mm" in axes[P].get_xlabel()


@pytest.mark.parametrize("orientation, vent_up, left_on_right", [("LPS", True, True), ("RAS", False, False)])
def test_axial_sides_in_patient_terms(orientation, vent_up, left_on_right):
    a = make_analysis(orientation=orientation)
    ax = plots.plot_axial(a)
    pos = {}
    for word in ("ventral", "dorsal", "left", "right"):
        (t,) = _gid(ax, f"orient-{word}")
        assert t.get_text() == word.upper()
        pos[word] = ax.transData.transform(t.get_position())  # display coords, y up
    assert (pos["ventral"][1] > pos["dorsal"][1]) == vent_up
    assert (pos["left"][0] > pos["right"][0]) == left_on_right
    (mark,) = _gid(ax, "defect", Line2D)
    # the defect is ventral of the canal centre: on the ventral half of the image
    ctr = ax.transData.transform((20.5, 16.5))
    assert (ax.transData.transform((mark.get_xdata()[0], mark.get_ydata()[0]))[1] > ctr[1]) == vent_up
    assert "mm" in ax.get_xlabel() and "mm" in ax.get_ylabel()
    assert "pass 2" in ax.get_title()


def test_axial_without_defect():
    ax = plots.plot_axial(make_analysis(leak=False))
    assert "no defect" in ax.texts[0].get_text()


def _lamina(ax, name, side):
    (r,) = _gid(ax, f"lamina-{name}-{side}")
    return r


def test_plan_highlights_levels_and_side(leak):
    ax = plots.plot_plan(leak)
    red = to_rgba(plots.PLAN_COLOR)
    for name in ("T7", "T8"):
        for side in ("left", "right"):
            assert _lamina(ax, name, side).get_facecolor() == pytest.approx(red)
    for name in ("T6", "T9"):
        assert _lamina(ax, name, "left").get_facecolor() != pytest.approx(red)
    (band,) = _gid(ax, "uncertainty")
    assert band.get_y() == pytest.approx(13.0)  # T7-T8 +/- 0.5 level
    assert band.get_y() + band.get_height() == pytest.approx(14.0)
    assert "T7" in _tick_labels(ax) and "T10" in _tick_labels(ax)
    assert _display_y(ax, 10.0) > _display_y(ax, 16.0)


def test_plan_one_side_only():
    a = make_analysis(kind="nerve_root_sleeve", side="left")
    a.plan = Plan(levels=["T8"], side="left", note="left nerve-root sleeve", uncertainty_levels=1.0)
    ax = plots.plot_plan(a)
    red = to_rgba(plots.PLAN_COLOR)
    assert _lamina(ax, "T8", "left").get_facecolor() == pytest.approx(red)
    assert _lamina(ax, "T8", "right").get_facecolor() != pytest.approx(red)
    assert _lamina(ax, "T7", "left").get_facecolor() != pytest.approx(red)


def test_plan_no_leak():
    ax = plots.plot_plan(make_analysis(leak=False))
    assert "no leak" in ax.get_title()
    assert not _gid(ax, "defect") and not _gid(ax, "uncertainty")


def test_every_axis_is_labelled(leak):
    for name, (_title, fn) in plots.FIGURES.items():
        out = fn(leak)
        fig = plots._figure_of(out)
        main = [ax for ax in fig.axes if ax.get_label() != "<colorbar>" and ax.get_title()]
        assert main, name
        assert any(ax.get_ylabel() for ax in main), name
        assert any(ax.get_xlabel() for ax in main), name


def test_save_figures(tmp_path, leak):
    seen = []
    paths = plots.save_figures(leak, tmp_path, progress=seen.append)
    assert set(paths) == set(plots.FIGURES)
    for p in paths.values():
        with open(p, "rb") as fh:
            assert fh.read(8) == b"\x89PNG\r\n\x1a\n"
    assert len(seen) == len(plots.FIGURES)
