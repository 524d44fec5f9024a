"""Scaling of CSST-like SEDs by their mean flux at 5526-5586 A (paper Sect. 2.1)."""

from __future__ import annotations

import numpy as np

from lamost2csst.core._validate import as_float_array, check_last_axis
from lamost2csst.core.grids import OUTPUT_WAVE, SCALE_WINDOW

__all__ = ["SCALE_PIXELS", "scale_sed", "sed_scale"]

#: Pixels of ``OUTPUT_WAVE`` inside ``SCALE_WINDOW`` (inclusive).
SCALE_PIXELS = np.flatnonzero((OUTPUT_WAVE >= SCALE_WINDOW[0]) & (OUTPUT_WAVE <= SCALE_WINDOW[1]))


def sed_scale(sed) -> np.ndarray:
    """Mean of ``sed`` (..., 574) over the ``OUTPUT_WAVE`` pixels in 5526-5586 A, shape (...)."""
    sed = as_float_array(sed, name="sed")
    check_last_axis(sed, OUTPUT_WAVE.size, name="sed", grid="OUTPUT_WAVE")
    scale = sed[..., SCALE_PIXELS].mean(axis=-1)
    if not np.all(np.isfinite(scale)) or np.any(scale <= 0):
        raise ValueError(
            f"{int(np.sum(~(scale > 0)))} SEDs have a non-positive or non-finite mean flux at "
            f"{SCALE_WINDOW[0]:.0f}-{SCALE_WINDOW[1]:.0f} A and cannot be scaled"
        )
    return scale


def scale_sed(sed, error=None):
    """Divide SEDs (..., 574) by :func:`sed_scale`; with ``error``, return both scaled.

    The scale's own uncertainty is not propagated into ``error`` (it is a common factor
    of the whole SED, not a per-pixel error). Pixels outside the window are divided as
    they are: NaN (a pixel without data) stays NaN.
    """
    scale = sed_scale(sed)[..., None]
    scaled = np.asarray(sed) / scale
    if error is None:
        return scaled
    error = np.asarray(error)
    if error.shape != np.shape(sed):
        raise ValueError(f"error has shape {error.shape}, sed has {np.shape(sed)}; they must match")
    return scaled, error / scale
