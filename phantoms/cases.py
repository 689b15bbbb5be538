"""The case library (figures of the seed review) and random phantoms across regimes."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from leakloc import InputError
from leakloc.levels import coord_of

from .model import DefectSpec, PhantomParams
from .study import Study


@dataclass(frozen=True)
class CaseSpec:
    """One library case: the figure it reproduces, what it shows, and its parameters."""

    name: str
    figure: str
    description: str
    params: dict = field(default_factory=dict)


def _tear(level, side="ventral", flow="slow", up=8.0, down=4.0, offset=0.0):
    return DefectSpec(kind="dural_tear", level_coord=coord_of(level), side=side, flow=flow,
                      collection_levels=(up, down), offset_mm=offset)


_C = [
    CaseSpec("fig6_t11", "Fig 6",
             "Ventral dural defect at T11 with a longitudinally extensive ventral epidural collection",
             dict(coverage=("T2", "L3"), defects=[_tear("T11", up=10.0, down=3.0)], seed=6)),
    CaseSpec("fig7_t5t6", "Fig 7",
             "T5-T6 ventral tear beside a partially calcified disc; cervicothoracic epidural collection",
             dict(coverage=("C3", "T10"), defects=[_tear("T5-T6", up=10.0, down=3.0)],
                  calcified_discs=[(coord_of("T5-T6"), 1.5)], seed=7)),
    CaseSpec("fig10d_t1t2", "Fig 10D",
             "Leak through a ventral dural tear at T1-T2 into a cervicothoracic epidural collection",
             dict(coverage=("C2", "T8"), defects=[_tear("T1-T2", up=6.0, down=6.0)], seed=104)),
    CaseSpec("fig10e_t7t8", "Fig 10E",
             "Ventral tear at T7-T8 with a calcified disc protrusion just caudal to the defect",
             dict(coverage=("T1", "L1"), defects=[_tear("T7-T8", up=9.0, down=4.0)],
                  calcified_discs=[(coord_of("T7-T8") + 0.12, -1.0)], seed=105)),
    CaseSpec("fig10f_t2t3_highflow", "Fig 10F",
             "High-flow leak through a ventral defect right of a bilobed spiculated osteophyte at T2-T3",
             dict(coverage=("C4", "T10"),
                  defects=[_tear("T2-T3", flow="high", up=5.0, down=8.0, offset=-3.0)],
                  osteophytes=[(coord_of("T2-T3") - 0.1, 1.5)], seed=106)),
    CaseSpec("fig4c_c7_pseudomeningocele", "Fig 4C/10B",
             "C7 pseudomeningocele (after a bilaminar C7 fracture) with a left nerve-root sleeve leak",
             dict(coverage=("C2", "T4"), patient_position="HFDL",
                  defects=[DefectSpec(kind="nerve_root_sleeve", level_coord=coord_of("C7"), side="left",
                                      pseudomeningocele=True)], seed=43)),
    CaseSpec("fig8_c7t1_avulsion", "Fig 8A/B",
             "C7-T1 root avulsion: right pseudomeningocele with a root-sleeve leak",
             dict(coverage=("C2", "T5"), patient_position="HFDR",
                  defects=[DefectSpec(kind="nerve_root_sleeve", level_coord=coord_of("C7-T1"),
                                      side="right", pseudomeningocele=True)], seed=8)),
    CaseSpec("cvf_t10_right", "CVF (type 3)",
             "Right T10 CSF-venous fistula draining into a paraspinal vein, no epidural collection",
             dict(coverage=("T4", "L3"), patient_position="HFDR",
                  defects=[DefectSpec(kind="csf_venous_fistula", level_coord=coord_of("T10"),
                                      side="right", fistula_delay_s=9.0)], seed=310)),
    CaseSpec("control_diverticula", "control",
             "No leak: meningeal diverticula that fill with the sac, and calcified discs",
             dict(coverage=("C7", "L3"), diverticula=[(coord_of("T4-T5"), "left"), (coord_of("T9-T10"), "right")],
                  calcified_discs=[(coord_of("T6-T7"), 0.0), (coord_of("T11-T12"), 2.0)], seed=900)),
    CaseSpec("control_sealed_collection", "control",
             "No leak: a sealed ventral epidural collection that never fills, calcified disc, supine",
             dict(coverage=("C5", "T12"), patient_position="HFS", sealed_collection=(4.0, 13.0),
                  calcified_discs=[(coord_of("T3-T4"), 0.0)], pre_contrast=False, seed=901)),
]

#: case name -> CaseSpec
CASES = {c.name: c for c in _C}

DEFAULT_CASE = "fig10e_t7t8"


def _params_for_case(name: str, overrides: dict) -> PhantomParams:
    if name not in CASES:
        raise InputError(f"phantom: unknown case {name!r}; see `leakloc phantom --list`")
    kw = dict(CASES[name].params)
    kw.update(overrides)
    return PhantomParams(**kw)


# --------------------------------------------------------------------------------------------
# random cases

def _weights_tear():
    """Level weights for ventral tears: 72 % upper thoracic, T1-T2 most common."""
    levels = np.arange(0.0, 23.5, 0.5)
    w = np.full(levels.shape, 0.2)
    w[(levels >= 6.5) & (levels <= 11.5)] = 3.0   # C7-T1 .. T5-T6
    w[levels == 7.5] = 8.0                          # T1-T2
    w[(levels > 11.5) & (levels <= 18.5)] = 0.9
    w[levels < 4] = 0.05
    return levels, w / w.sum()


def _weights_cvf():
    levels = np.arange(7.0, 21.0, 1.0)                 # T1..L2, mostly lower thoracic
    w = np.where((levels >= 13) & (levels <= 18), 3.0, 1.0)
    return levels, w / w.sum()


def random_params(seed: int, **overrides) -> PhantomParams:
    """A random phantom across regimes: kinds, levels, sides, flow, none, confounders, positions,
    coverage, protocol. Deterministic in ``seed``."""
    rng = np.random.default_rng([seed, 2024])
    u = rng.uniform
    regime = rng.uniform()
    defects = []
    n_def = 0 if regime < 0.2 else (2 if regime > 0.92 else 1)
    for _ in range(n_def):
        kind = rng.choice(["dural_tear", "nerve_root_sleeve", "csf_venous_fistula"], p=[0.55, 0.2, 0.25])
        flow = "high" if u() < 0.3 else "slow"
        if kind == "dural_tear":
            lv, w = _weights_tear()
            lc = float(rng.choice(lv, p=w))
            side = "ventral" if u() < 0.92 else "dorsal"
            defects.append(DefectSpec(kind=kind, level_coord=lc, side=side, flow=flow,
                                      collection_levels=(float(rng.integers(6, 12)), float(rng.integers(2, 6))),
                                      offset_mm=float(u(-3, 3))))
        elif kind == "nerve_root_sleeve":
            lc = float(rng.integers(4, 21)) + 0.5 * (u() < 0.5)
            side = "left" if u() < 0.5 else "right"
            defects.append(DefectSpec(kind=kind, level_coord=lc, side=side, flow=flow,
                                      pseudomeningocele=bool(u() < 0.25)))
        else:
            lv, w = _weights_cvf()
            lc = float(rng.choice(lv, p=w))
            side = "right" if u() < 0.72 else "left"
            delay = float(np.clip(rng.gamma(2.0, 4.5), 0.0, 30.0))
            defects.append(DefectSpec(kind=kind, level_coord=lc, side=side, flow=flow, fistula_delay_s=delay))
    # at most one dural tear collection per side; keep defects at least 3 levels apart
    kept = []
    for d in defects:
        if all(abs(d.level_coord - k.level_coord) >= 3 for k in kept):
            kept.append(d)
    defects = kept
    kinds = {d.kind for d in defects}
    sides = {d.side for d in defects}
    if sides & {"left", "right"} and "dural_tear" not in kinds:
        position = "HFDR" if "right" in sides or u() < 0.5 else "HFDL"
    else:
        position = str(rng.choice(["HFP", "HFP", "HFS", "FFP", "FFS"]))
    # coverage: whole spine, or a part that holds every defect
    lcs = [d.level_coord for d in defects] or [float(rng.integers(6, 19))]
    lo, hi = min(lcs), max(lcs)
    mode = u()
    if mode < 0.35:
        top, bot = 0, 24
    elif mode < 0.55 and hi <= 10:
        top, bot = 0, 12            # cervical / cervicothoracic only
    elif mode < 0.75 and lo >= 10:
        top, bot = 8, 24            # thoracolumbar only
    else:
        top = int(max(0, np.floor(lo) - rng.integers(3, 8)))
        bot = int(min(24, np.ceil(hi) + rng.integers(3, 8)))
    from leakloc.levels import VERTEBRAE
    starts = np.array([0.0, 12.0, 22.0, 33.0, 45.0, 120.0]) + np.r_[0.0, u(-1.5, 1.5, 5)]
    if u() < 0.3:
        starts = np.delete(starts, 4)
    p = dict(
        seed=int(seed), patient_position=position, coverage=(VERTEBRAE[top], VERTEBRAE[bot]),
        pre_contrast=bool(u() < 0.7), pass_starts_s=tuple(float(s) for s in starts),
        pass_duration_s=float(u(5.0, 10.0)), first_direction=str(rng.choice(["craniocaudal", "caudocranial"])),
        injection_time_s=float(u(8.5, 10.0)), injection_level=float(u(20.0, 22.5)),
        front_speed_mm_s=float(u(8.0, 16.0)), dispersion_mm2_s=float(u(15.0, 60.0)),
        peak_enhancement_hu=float(u(900.0, 1200.0)), far_enhancement_hu=float(u(300.0, 500.0)),
        mixing_time_s=float(u(20.0, 60.0)), defects=defects,
        kyphosis=float(u(0.6, 1.4)), scoliosis_mm=float(u(-12, 12)) if u() < 0.2 else 0.0,
        noise_hu=float(u(8.0, 25.0)), streaks=bool(u() < 0.3),
    )
    conf = u()
    if defects and conf < 0.5:
        d = defects[0]
        if u() < 0.6:
            p["calcified_discs"] = [(float(np.floor(d.level_coord) + 0.5 + 0.12), float(u(-2, 2)))]
        else:
            p["osteophytes"] = [(float(np.floor(d.level_coord) + 0.4), float(u(-2, 2)))]
    elif not defects and conf < 0.6:
        p["calcified_discs"] = [(float(rng.integers(top, max(top + 1, bot)) + 0.5), 0.0)]
    if u() < 0.3:
        lc = float(rng.integers(top, max(top + 1, bot))) + 0.5
        p["diverticula"] = [(min(lc, 23.5), str(rng.choice(["left", "right"])))]
    if not any(d.kind == "dural_tear" for d in defects) and u() < 0.15:
        a = float(rng.integers(top, max(top + 1, bot - 3)))
        p["sealed_collection"] = (a, a + 6.0)
    if u() < 0.25:
        p["motion_mm"], p["motion_deg"] = float(u(1.0, 4.0)), float(u(0.5, 2.5))
    p.update(overrides)
    params = PhantomParams(**p)
    # the last pass must come after every defect's onset
    study = Study(params)
    onsets = [d["onset"] for d in study.contrast.defects]
    if onsets and max(onsets) + 15.0 > study.times_s[-1]:
        last = max(onsets) + 25.0 - study.times_s[0] + (params.pass_starts_s[0] if params.pre_contrast else 0)
        st = list(params.pass_starts_s)
        shift = 0.0 if params.pre_contrast else st[1]
        st[-1] = max(st[-1], max(onsets) + 25.0 + shift)
        params = dataclasses.replace(params, pass_starts_s=tuple(st))
        del last
    return params


def generate(case: str | None = None, seed: int | None = None, **overrides) -> Study:
    """Make a phantom study.

    Parameters
    ----------
    case : str, optional
        A :data:`CASES` name. Without case and seed: :data:`DEFAULT_CASE`.
    seed : int, optional
        A random case across regimes (or, with ``case``, the noise/motion seed of that case).
    **overrides
        :class:`PhantomParams` fields, e.g. ``shape="medium"``, ``patient_position="HFS"``.

    Returns
    -------
    Study
    """
    if case is None and seed is not None:
        return Study(random_params(seed, **overrides), case=None, figure="random",
                     description=f"random phantom, seed {seed}")
    name = case or DEFAULT_CASE
    if seed is not None:
        overrides = dict(overrides, seed=int(seed))
    params = _params_for_case(name, overrides)
    spec = CASES[name]
    return Study(params, case=name, figure=spec.figure, description=spec.description)
