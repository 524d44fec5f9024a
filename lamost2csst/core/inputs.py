"""The network input of UaRA-net from observed spectra: rest frame, INPUT_WAVE, normalized.

One per-block kernel chaining the normative steps of DESIGN.md: shift to the rest frame
with the star's z, flux-conserving resampling onto ``INPUT_WAVE`` (inverse variances and
masks propagated), and the Sect. 2.1 continuum normalization.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from lamost2csst.core.normalization import normalize
from lamost2csst.core.grids import INPUT_WAVE
from lamost2csst.core.resampling import resample

__all__ = ["NetworkInput", "prepare_inputs"]


class NetworkInput(NamedTuple):
    """Normalized flux and 1-sigma error on ``INPUT_WAVE``; ``mask`` True where both are NaN."""

    flux: np.ndarray
    error: np.ndarray
    mask: np.ndarray


def prepare_inputs(wave, flux, *, ivar, z, mask=None) -> NetworkInput:
    """Observed spectra (n_star, n_pixel) on ``wave`` -> normalized rest-frame spectra on ``INPUT_WAVE``.

    Parameters
    ----------
    wave : array_like, (n_pixel,) or (n_star, n_pixel)
        Observed vacuum wavelengths (A).
    flux, ivar : array_like, (n_star, n_pixel)
        Flux and inverse variance; ``ivar == 0`` marks pixels without information.
    z : float or array_like (n_star,)
        Redshift of each star (LAMOST ``Z``).
    mask : array_like of bool, optional
        True where an input pixel must not be used.

    Returns
    -------
    NetworkInput
        float32 (n_star, 2238) ``flux`` and ``error`` (NaN where unusable) and ``mask``.
        Pixels of ``INPUT_WAVE`` not covered by the shifted input are masked.
    """
    flux = np.asarray(flux)
    dtype = np.result_type(flux.dtype, np.float32)
    res = resample(wave, flux, wave_out=INPUT_WAVE, ivar=ivar, mask=mask, z=z, method="flux")
    with np.errstate(divide="ignore"):
        error = np.where(res.mask, np.inf, 1.0 / np.sqrt(res.ivar)).astype(dtype)
    norm_flux, norm_error = normalize(res.flux, error, mask=res.mask)
    unusable = ~np.isfinite(norm_flux) | ~np.isfinite(norm_error)
    return NetworkInput(norm_flux.astype(dtype, copy=False), norm_error.astype(dtype, copy=False), unusable)
