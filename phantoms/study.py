"""A phantom study: grid, protocol, lazy passes, vertebra label map and ground truth."""
from __future__ import annotations

import dataclasses
import math
from functools import cached_property

import numpy as np
from scipy import ndimage

from leakloc import InputError
from leakloc.io import Grid, PhaseInfo, PhaseSeries
from leakloc.levels import TOTALSEG_ID, VERTEBRAE, index, name_of

from .model import N_VERT, SHAPES, Contrast, PhantomParams, Spine, render, shape_values

#: (row, column) direction cosines in LPS of the image axes for each patient position
ORIENTATIONS = {
    "HFS": ((1, 0, 0), (0, 1, 0)),
    "HFP": ((-1, 0, 0), (0, -1, 0)),
    "HFDR": ((0, 1, 0), (-1, 0, 0)),
    "HFDL": ((0, -1, 0), (1, 0, 0)),
    "FFS": ((-1, 0, 0), (0, 1, 0)),
    "FFP": ((1, 0, 0), (0, -1, 0)),
}

_NOTES = {
    "dural_tear": "ventral tear: transdural approach",
    "dural_tear_dorsal": "dorsal tear: direct repair through the laminectomy",
    "nerve_root_sleeve": "nerve-root sleeve leak: foraminal exposure and ligation/repair of the sleeve",
    "csf_venous_fistula": "CSF-venous fistula: ligation of the draining vein at the foramen",
}

_CHUNK_VOXELS = 400_000


def _rotation(ax, ay, az):
    cx, sx, cy, sy, cz, sz = (math.cos(ax), math.sin(ax), math.cos(ay), math.sin(ay),
                              math.cos(az), math.sin(az))
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


class Study:
    """A synthetic dynamic CT myelogram. Passes are rendered when asked (nothing is cached).

    Parameters
    ----------
    params : PhantomParams
    case : str or None, case library name
    figure : str, the review figure the case reproduces

    Attributes
    ----------
    grid : leakloc.io.Grid, ITK order, LPS
    times_s : ndarray (P,), pass start times, s after the first pass began
    slice_times_s : ndarray (P, Z), acquisition time of every slice, s
    table_directions : list of str, ``'craniocaudal'`` / ``'caudocranial'`` per pass
    patient_position : str, DICOM PatientPosition
    params : PhantomParams, as used (times shifted when there is no pre-contrast pass)
    """

    def __init__(self, params: PhantomParams, case: str | None = None, figure: str = "",
                 description: str = ""):
        p = params
        if p.patient_position not in ORIENTATIONS:
            raise InputError(f"phantom: unknown patient position {p.patient_position!r}")
        if p.shape not in SHAPES:
            raise InputError(f"phantom: unknown shape {p.shape!r} ({', '.join(SHAPES)})")
        starts = [float(s) for s in p.pass_starts_s]
        t_inj = float(p.injection_time_s)
        if not p.pre_contrast and len(starts) > 1 and starts[0] < t_inj:
            shift = starts[1]
            starts = [s - shift for s in starts[1:]]
            t_inj -= shift
        p = dataclasses.replace(p, pass_starts_s=tuple(starts), injection_time_s=t_inj)
        self.params = p
        self.case = case
        self.figure = figure
        self.description = description
        self.seed = p.seed
        self.spine = Spine(p)
        self.contrast = Contrast(p, self.spine)
        self.patient_position = p.patient_position
        self.grid = self._make_grid()
        self.times_s = np.array(starts, dtype=float)
        self.n_phases = len(starts)
        z = self.grid.z_mm()
        zt, zb = z.max(), z.min()
        frac_cc = (zt - z) / max(zt - zb, 1e-6)
        other = {"craniocaudal": "caudocranial", "caudocranial": "craniocaudal"}
        dirs, st = [], []
        d = p.first_direction
        for k in range(self.n_phases):
            dirs.append(d)
            frac = frac_cc if d == "craniocaudal" else 1.0 - frac_cc
            st.append(self.times_s[k] + p.pass_duration_s * frac)
            d = other[d]
        self.table_directions = dirs
        self.slice_times_s = np.array(st)
        self._motion = [self._pass_motion(k) for k in range(self.n_phases)]

    # -- geometry -------------------------------------------------------------------------------
    def _make_grid(self) -> Grid:
        p = self.params
        n, sp, dz, _ = shape_values(p)
        top, bot = index(p.coverage[0]), index(p.coverage[1])
        if bot < top:
            top, bot = bot, top
        z_hi = float(self.spine.z_of(top - 0.5)) + 4.0
        z_lo = float(self.spine.z_of(bot + 0.5)) - 4.0
        nz = int(math.ceil((z_hi - z_lo) / dz)) + 1
        zs = np.linspace(z_lo, z_hi, 50)
        xc, yc = self.spine.centre_xy(zs)
        fov = n * sp
        centre = np.array([float(np.mean(xc)), float(np.mean(yc)) - 0.12 * fov - 2.0])
        row, col = (np.array(a, dtype=float) for a in ORIENTATIONS[p.patient_position])
        normal = np.cross(row, col)
        half = (n - 1) / 2.0 * sp
        origin_xy = centre - row[:2] * half - col[:2] * half
        mid = (z_hi + z_lo) / 2.0
        span = (nz - 1) * dz
        oz = mid - normal[2] * span / 2.0
        direction = np.stack([row, col, normal], axis=1)
        self._centre_lps = np.array([centre[0], centre[1], mid])
        return Grid(size=(n, n, nz), spacing_mm=(sp, sp, dz),
                    origin_mm=(float(origin_xy[0]), float(origin_xy[1]), float(oz)),
                    direction=tuple(float(v) for v in direction.ravel()))

    def _pass_motion(self, k):
        p = self.params
        if k == 0 or (p.motion_mm <= 0 and p.motion_deg <= 0):
            return None
        rng = np.random.default_rng([p.seed, 7919, k])
        t = rng.uniform(-1, 1, 3) * p.motion_mm
        a = np.radians(rng.uniform(-1, 1, 3) * p.motion_deg)
        return _rotation(*a), t

    @property
    def z_range_mm(self):
        z = self.grid.z_mm()
        return float(z.min()), float(z.max())

    # -- pixels -------------------------------------------------------------------------------
    def _points(self, k0, k1, dk=0.0):
        g = self.grid
        nx, ny = g.size[0], g.size[1]
        kk, jj, ii = np.meshgrid(np.arange(k0, k1, dtype=float) + dk, np.arange(ny, dtype=float),
                                 np.arange(nx, dtype=float), indexing="ij")
        m = g.direction_matrix * np.asarray(g.spacing_mm, dtype=float)[None, :]
        o = np.asarray(g.origin_mm, dtype=float)
        x = o[0] + m[0, 0] * ii + m[0, 1] * jj + m[0, 2] * kk
        y = o[1] + m[1, 0] * ii + m[1, 1] * jj + m[1, 2] * kk
        z = o[2] + m[2, 0] * ii + m[2, 1] * jj + m[2, 2] * kk
        return x, y, z

    def _chunks(self):
        nz = self.grid.size[2]
        per = max(1, _CHUNK_VOXELS // (self.grid.size[0] * self.grid.size[1]))
        return [(k, min(k + per, nz)) for k in range(0, nz, per)]

    def phase(self, i: int) -> np.ndarray:
        """Pass ``i``, rendered now.

        Returns
        -------
        ndarray, shape (Z, Y, X), float32, HU
        """
        if not 0 <= i < self.n_phases:
            raise IndexError(f"phase {i} out of range 0..{self.n_phases - 1}")
        p = self.params
        _, _, _, nsub = shape_values(p)
        offsets = [0.0] if nsub <= 1 else list(np.linspace(-0.5, 0.5, nsub + 1)[:-1] + 0.5 / nsub)
        out = np.empty(self.grid.shape_zyx, dtype=np.float32)
        motion = self._motion[i]
        st = self.slice_times_s[i]
        for k0, k1 in self._chunks():
            acc = None
            t = np.broadcast_to(st[k0:k1, None, None], (k1 - k0,) + out.shape[1:])
            for dk in offsets:
                x, y, z = self._points(k0, k1, dk)
                if motion is not None:
                    rot, tr = motion
                    c = self._centre_lps
                    pts = np.stack([x - c[0] - tr[0], y - c[1] - tr[1], z - c[2] - tr[2]], axis=-1)
                    q = pts @ rot  # R^T applied to row vectors
                    x, y, z = q[..., 0] + c[0], q[..., 1] + c[1], q[..., 2] + c[2]
                hu = render(self.spine, self.contrast, x, y, z, t)
                acc = hu if acc is None else acc + hu
            out[k0:k1] = acc / len(offsets)
        if p.blur_vox > 0:
            out = ndimage.gaussian_filter(out, sigma=(0.0, p.blur_vox, p.blur_vox), mode="nearest")
        if p.streaks:
            self._add_streaks(out, i)
        if p.noise_hu > 0:
            for k in range(out.shape[0]):
                rng = np.random.default_rng([p.seed, 104729, i, k])
                out[k] += rng.standard_normal(out.shape[1:], dtype=np.float32) * np.float32(p.noise_hu)
        np.clip(out, -1024.0, 3071.0, out=out)
        return out

    def _add_streaks(self, out, i):
        p = self.params
        rng = np.random.default_rng([p.seed, 15485863, i])
        ny, nx = out.shape[1:]
        c = self.grid.lps_to_index(self._centre_lps)
        jj, ii = np.mgrid[0:ny, 0:nx].astype(np.float32)
        sp = float(self.grid.spacing_mm[0])
        for _ in range(3):
            th = rng.uniform(0, np.pi)
            amp = rng.uniform(25, 60) * rng.choice([-1.0, 1.0])
            d = (ii - c[0]) * np.sin(th) - (jj - c[1]) * np.cos(th)
            out += (amp * np.exp(-(d * sp / 1.5) ** 2)).astype(np.float32)[None]

    def series(self) -> PhaseSeries:
        """The study as a lazy :class:`leakloc.io.PhaseSeries` (each pass rendered when read)."""
        phases = [PhaseInfo(index=k, time_s=float(self.times_s[k]),
                            duration_s=float(np.ptp(self.slice_times_s[k])),
                            table_direction=self.table_directions[k], series_number=k + 2,
                            source=f"phantom {self.case or self.seed} pass {k}")
                  for k in range(self.n_phases)]
        return PhaseSeries(phases=phases, grid=self.grid, slice_times_s=self.slice_times_s.copy(),
                           patient_position=self.patient_position,
                           study_uid=f"phantom-{self.case or 'seed'}-{self.seed}",
                           _loader=self.phase, cache_size=0)

    @cached_property
    def _labels_index(self) -> np.ndarray:
        out = np.full(self.grid.shape_zyx, -1, dtype=np.int16)
        t0 = np.zeros(1)
        for k0, k1 in self._chunks():
            x, y, z = self._points(k0, k1)
            _, lab = render(self.spine, None, x, y, z, np.broadcast_to(t0, x.shape), with_labels=True)
            out[k0:k1] = lab
        return out

    @property
    def labelmap(self) -> np.ndarray:
        """Vertebra label map (bone of each vertebra), TotalSegmentator ``total`` ids, (Z, Y, X) int16."""
        idx = self._labels_index
        lut = np.zeros(N_VERT + 1, dtype=np.int16)
        for i, name in enumerate(VERTEBRAE):
            lut[i] = TOTALSEG_ID[name]
        return lut[idx]  # -1 -> lut[-1] = 0 (background)

    # -- truth --------------------------------------------------------------------------------
    def vertebrae_in_fov(self) -> list:
        """Indices of vertebrae whose body lies wholly inside the field of view, cranial first."""
        lo, hi = self.z_range_mm
        sp = self.spine
        return [i for i in range(N_VERT) if sp.body_bot_mm[i] >= lo - 1e-6 and sp.body_top_mm[i] <= hi + 1e-6]

    @property
    def top_vertebra(self) -> str:
        """Name of the most cranial vertebral body wholly in the field of view."""
        return VERTEBRAE[self.vertebrae_in_fov()[0]]

    def _level_times(self, i):
        sp, con = self.spine, self.contrast
        zl, zh = sp.level_z_range(i)
        zc = float(sp.z_of(i))
        intr = float(con.arrival_s(zc))
        epi, ven = math.inf, math.inf
        for info in con.defects:
            d = info["spec"]
            if d.kind == "dural_tear":
                a, b = max(zl, info["col_lo"]), min(zh, info["col_hi"])
                if a <= b:
                    dist = 0.0 if a <= info["z"] <= b else min(abs(a - info["z"]), abs(b - info["z"]))
                    epi = min(epi, info["onset"] + dist / info["u_flow"])
            elif d.kind == "nerve_root_sleeve":
                if zl <= info["z"] <= zh:
                    epi = min(epi, info["onset"])
            else:
                a, b = max(zl, info["z"] - 120.0), min(zh, info["z"] + 120.0)
                if a <= b:
                    dist = 0.0 if a <= info["z"] <= b else min(abs(a - info["z"]), abs(b - info["z"]))
                    ven = min(ven, info["onset"] + dist / 40.0)
        return (zl, zh), intr, epi, ven

    @cached_property
    def truth(self) -> dict:
        """Ground truth shaped like ``report.json`` (see SPEC.md) plus case, figure, params, seed."""
        con = self.contrast

        def r(v):
            return None if not math.isfinite(v) else round(float(v), 2)

        defects = []
        for info in sorted(con.defects, key=lambda d: d["onset"]):
            d = info["spec"]
            defects.append({"level": name_of(d.level_coord), "z_mm": round(info["z"], 2),
                            "side": d.side, "kind": d.kind, "onset_time_s": round(info["onset"], 2),
                            "level_coord": float(d.level_coord), "flow": d.flow,
                            "intrathecal_arrival_s": round(info["t_arrival"], 2)})
        lam = {"levels": [], "side": None, "note": "no leak: no surgery"}
        if defects:
            d0 = defects[0]
            name = d0["level"]
            lam_levels = name.split("-") if "-" in name else [name]
            side = d0["side"] if d0["side"] in ("left", "right") else "bilateral"
            key = d0["kind"] + ("_dorsal" if d0["kind"] == "dural_tear" and d0["side"] == "dorsal" else "")
            lam = {"levels": lam_levels, "side": side, "note": _NOTES[key]}
        levels = []
        for i in self.vertebrae_in_fov():
            (zl, zh), intr, epi, ven = self._level_times(i)
            levels.append({"name": VERTEBRAE[i], "z_range_mm": [round(zl, 2), round(zh, 2)],
                           "intrathecal_arrival_s": r(intr), "epidural_arrival_s": r(epi),
                           "venous_arrival_s": r(ven)})
        return {"schema": "leakloc.truth/1", "leak_detected": bool(defects), "defects": defects,
                "laminectomy": lam, "levels": levels,
                "phases": [{"index": k, "time_s": round(float(t), 3),
                            "table_direction": self.table_directions[k]}
                           for k, t in enumerate(self.times_s)],
                "inputs": {"n_phases": self.n_phases, "grid": list(self.grid.size),
                           "spacing_mm": list(self.grid.spacing_mm)},
                "top_vertebra": self.top_vertebra, "patient_position": self.patient_position,
                "injection_time_s": round(self.params.injection_time_s, 3),
                "case": self.case, "figure": self.figure, "description": self.description,
                "seed": self.seed, "params": _jsonable(dataclasses.asdict(self.params))}


def _jsonable(obj):
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    return obj
