"""Synthetic dynamic CT myelograms with a ground truth.

>>> from leakloc.phantoms import generate, CASES, Study, write_study
>>> study = generate(case="fig10e_t7t8")      # or generate(seed=123); kwargs override params
>>> vol = study.phase(1)                        # (Z, Y, X) float32 HU, rendered on demand
"""
from .model import DefectSpec, PhantomParams
from .study import Study
from .cases import CASES, DEFAULT_CASE, CaseSpec, generate, random_params

__all__ = ["generate", "CASES", "DEFAULT_CASE", "CaseSpec", "Study", "write_study", "PhantomParams",
           "DefectSpec", "random_params"]


def write_study(study, out_dir, fmt="dicom", compression=None, **kwargs):
    """Write a study (passes, truth.json, levels.nii.gz); see :func:`leakloc.phantoms.writers.write_study`."""
    from .writers import write_study as _w
    return _w(study, out_dir, fmt=fmt, compression=compression, **kwargs)
