"""Continuum estimate and normalization of the LAMOST-like input (paper Sect. 2.1).

The continuum at pixel i is the mean flux over the pixels ``i - 25 .. i + 25`` (a
centred window of 51 px); where fewer than 25 px exist on one side, the window keeps
all the pixels that exist on that side (it is truncated, not reflected). Masked pixels
are left out of every window's sum and count, so without masks this is exactly the
plain moving average of the paper.

Implemented as the ratio of two ``scipy.ndimage.uniform_filter1d`` running sums with
zero padding (``mode="constant"``): the padded zeros add nothing to the sum of good flux
nor to the count of good pixels, which is the edge rule.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import uniform_filter1d

from lamost2csst.core._validate import as_float_array, check_last_axis, good_pixels
from lamost2csst.core.grids import INPUT_WAVE

__all__ = ["CONTINUUM_WINDOW", "continuum", "normalize"]

CONTINUUM_WINDOW = 51


def continuum(flux, *, mask=None, window: int = CONTINUUM_WINDOW) -> np.ndarray:
    """Moving-average continuum along the last axis, with the truncated-window edge rule.

    Parameters
    ----------
    flux : array_like, (..., n_pixel)
    mask : array_like of bool, optional
        True where a pixel must not be used; NaN/inf flux must be masked.
    window : int
        Odd window length in pixels (51 in the paper).

    Returns
    -------
    ndarray
        Continuum in the precision of ``flux`` (at least float32); NaN where a window
        holds no usable pixel.
    """
    if window < 1 or window % 2 == 0:
        raise ValueError(f"window must be a positive odd number of pixels, got {window}")
    flux = as_float_array(flux, name="flux")
    good = good_pixels(flux, mask=mask)
    dtype = np.result_type(flux.dtype, np.float32)
    if good.all():
        values, counts = flux, None
    else:
        values = np.where(good, flux, 0.0).astype(dtype)
        counts = uniform_filter1d(good.astype(dtype), window, axis=-1, mode="constant", cval=0.0)
    sums = uniform_filter1d(values.astype(dtype, copy=False), window, axis=-1, mode="constant", cval=0.0)
    if counts is None:
        # window/len: the fraction of the 51 px that exist; analytic, shared by all spectra
        n = flux.shape[-1]
        i = np.arange(n)
        half = window // 2
        counts = ((np.minimum(i + half, n - 1) - np.maximum(i - half, 0) + 1) / window).astype(dtype)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / counts, np.nan).astype(dtype, copy=False)


def normalize(flux, error=None, *, mask=None, window: int = CONTINUUM_WINDOW):
    """Divide spectra on ``INPUT_WAVE`` by their continuum (paper Sect. 2.1).

    Parameters
    ----------
    flux : array_like, (..., 2238)
        Flux on ``INPUT_WAVE`` (rest frame, R=2000).
    error : array_like, optional
        1-sigma errors of ``flux``, same shape; ``inf`` marks a pixel without information.
    mask : array_like of bool, optional
        True where a pixel must not be used (kept out of the continuum).

    Returns
    -------
    norm_flux, norm_error : ndarray
        ``flux / continuum`` and ``error / continuum`` (``norm_error`` is None without
        ``error``). Masked pixels, and pixels whose continuum is not positive, are NaN in
        both: they carry no usable value.
    """
    flux = as_float_array(flux, name="flux")
    check_last_axis(flux, INPUT_WAVE.size, name="flux", grid="INPUT_WAVE")
    bad = np.zeros(flux.shape, bool) if mask is None else np.asarray(mask, dtype=bool)
    if bad.shape != flux.shape:
        raise ValueError(f"mask has shape {bad.shape}, flux has {flux.shape}; they must match")
    if error is not None:
        error = as_float_array(error, name="error")
        if error.shape != flux.shape:
            raise ValueError(f"error has shape {error.shape}, flux has {flux.shape}; they must match")
        if np.any(np.isnan(error)) or np.any(error < 0):
            raise ValueError("error contains NaN or negative values; use inf for pixels without information")
        bad = bad | np.isinf(error)
    cont = continuum(flux, mask=bad if bad.any() else None, window=window)
    unusable = bad | ~(cont > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        norm_flux = np.where(unusable, np.nan, flux / cont)
        norm_error = None if error is None else np.where(unusable, np.nan, error / cont)
    return norm_flux, norm_error
