"""lamost2csst: LAMOST low-resolution spectra to CSST-like SEDs with per-pixel uncertainties.

The public API for notebooks and scripts. Wavelengths are vacuum Angstrom throughout.
"""

from lamost2csst.core import (
    BANDS,
    INPUT_WAVE,
    LAMOST_WAVE,
    OUTPUT_WAVE,
    add_noise,
    air_to_vacuum,
    band_statistics,
    continuum,
    degrade,
    degrade_error,
    normalize,
    prepare_inputs,
    relative_residual,
    resample,
    rmsae,
    scale_sed,
    shift_to_rest,
    vacuum_to_air,
)

__version__ = "0.1.0"


def load_grid(path=None):
    """The shipped BOSZ-like synthetic grid as an xarray Dataset (see :mod:`lamost2csst.io.grid`)."""
    from lamost2csst.io.grid import load_grid as _load_grid  # xarray only when asked for

    return _load_grid(path)

__all__ = [
    "BANDS",
    "INPUT_WAVE",
    "LAMOST_WAVE",
    "OUTPUT_WAVE",
    "__version__",
    "add_noise",
    "air_to_vacuum",
    "band_statistics",
    "continuum",
    "degrade",
    "degrade_error",
    "load_grid",
    "normalize",
    "prepare_inputs",
    "relative_residual",
    "resample",
    "rmsae",
    "scale_sed",
    "shift_to_rest",
    "vacuum_to_air",
]
