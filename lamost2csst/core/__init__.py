"""Pure numpy/scipy spectral core: arrays in, arrays out, vectorized over (n_star, n_pixel).

Nothing here imports dask, xarray or tensorflow; every function is a per-block kernel
that the parallel layer maps over chunks.
"""

from lamost2csst.core.air_vacuum import air_to_vacuum, vacuum_to_air
from lamost2csst.core.doppler import shift_to_rest
from lamost2csst.core.grids import (
    BANDS,
    INPUT_WAVE,
    LAMOST_WAVE,
    OUTPUT_WAVE,
    SCALE_WINDOW,
    band_pixels,
    log_wave_grid,
    pixel_edges,
)
from lamost2csst.core.inputs import NetworkInput, fill_masked_pixels, prepare_inputs
from lamost2csst.core.lsf import degrade, degrade_error, lsf_sigma
from lamost2csst.core.metrics import (
    BandStatistics,
    CalibrationStatistics,
    band_statistics,
    calibration_statistics,
    relative_residual,
    rmsae,
    teff_bin,
)
from lamost2csst.core.noise import add_noise
from lamost2csst.core.normalization import continuum, normalize
from lamost2csst.core.resampling import Resampled, resample
from lamost2csst.core.sed import scale_sed, sed_scale

__all__ = [
    "BANDS",
    "INPUT_WAVE",
    "LAMOST_WAVE",
    "OUTPUT_WAVE",
    "SCALE_WINDOW",
    "BandStatistics",
    "CalibrationStatistics",
    "NetworkInput",
    "Resampled",
    "add_noise",
    "air_to_vacuum",
    "band_pixels",
    "band_statistics",
    "calibration_statistics",
    "continuum",
    "degrade",
    "degrade_error",
    "fill_masked_pixels",
    "log_wave_grid",
    "lsf_sigma",
    "normalize",
    "pixel_edges",
    "prepare_inputs",
    "relative_residual",
    "resample",
    "rmsae",
    "scale_sed",
    "sed_scale",
    "shift_to_rest",
    "teff_bin",
    "vacuum_to_air",
]
