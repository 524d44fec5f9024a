"""Noise injection of the paper's Eq. 1: ``F' = F + r * F`` with ``r ~ N(0, 1 / snr**2)``."""

from __future__ import annotations

import numpy as np

from lamost2csst.core._validate import as_float_array

__all__ = ["add_noise"]


def add_noise(flux, *, snr, rng: np.random.Generator):
    """Add Eq. 1 noise to clean spectra (before normalization).

    Parameters
    ----------
    flux : array_like, (..., n_pixel)
        Clean flux (finite).
    snr : float or array_like
        Signal-to-noise ratio per pixel; a scalar, or one value per spectrum (shape
        ``flux.shape[:-1]``), or anything broadcastable to ``flux``.
    rng : numpy.random.Generator
        Source of randomness (required: results depend only on it, never on global state).

    Returns
    -------
    noisy_flux, error : ndarray
        ``F + r * F`` and the 1-sigma error ``|F| / snr``, in the precision of ``flux``
        (at least float32).
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError("rng must be a numpy.random.Generator, e.g. numpy.random.default_rng(seed)")
    flux = as_float_array(flux, name="flux")
    if not np.all(np.isfinite(flux)):
        raise ValueError("flux must be finite to add noise; mask or drop bad pixels first")
    snr = np.asarray(snr, dtype=np.float64)
    if not np.all(np.isfinite(snr)) or np.any(snr <= 0):
        raise ValueError("snr must be finite and > 0")
    if snr.ndim and snr.shape == flux.shape[:-1]:
        snr = snr[..., None]
    dtype = np.result_type(flux.dtype, np.float32)
    error = (np.abs(flux) / snr).astype(dtype)
    r = rng.standard_normal(flux.shape, dtype=dtype)
    return (flux + r * error).astype(dtype), error
