"""LAMOST-like observations of rest-frame model spectra: Doppler shift, flux scale, Eq. 1 noise.

A per-block numpy kernel (no randomness of its own: the caller passes the generator).
"""

from __future__ import annotations

import numpy as np

from lamost2csst.core._validate import as_float_array, check_wave
from lamost2csst.core.doppler import check_redshift
from lamost2csst.core.noise import add_noise
from lamost2csst.core.resampling import resample

__all__ = ["observe_spectra"]


def observe_spectra(flux_rest, *, wave, z, snr, scale, rng: np.random.Generator):
    """Observed-frame noisy spectra of stars whose clean rest-frame spectra are ``flux_rest``.

    Parameters
    ----------
    flux_rest : array_like (n_star, n_pixel)
        Clean rest-frame flux densities on ``wave`` (finite).
    wave : array_like (n_pixel,)
        Vacuum wavelengths (A) of both the rest-frame input and the observed output.
    z : array_like (n_star,)
        Redshifts: the star's rest wavelength ``l`` is observed at ``l (1 + z)``.
    snr : array_like (n_star,)
        S/N per pixel of Eq. 1 noise (the same at every pixel of a star, as in the paper).
    scale : array_like (n_star,)
        Multiplies the flux (flux units of the "observation").
    rng : numpy.random.Generator

    Returns
    -------
    flux, ivar : numpy.ndarray float32 (n_star, n_pixel)
        Noisy observed flux and its inverse variance ``(snr / F)^2``; NaN and 0 on pixels
        whose rest wavelength the model does not cover after the shift.
    mask : numpy.ndarray bool (n_star, n_pixel)
        True on those uncovered pixels.
    """
    wave = check_wave(wave)
    flux_rest = as_float_array(flux_rest, name="flux_rest")
    if flux_rest.ndim != 2 or flux_rest.shape[1] != wave.size:
        raise ValueError(f"flux_rest must be (n_star, {wave.size}), got {flux_rest.shape}")
    n_star = flux_rest.shape[0]
    z = check_redshift(z, n_star=n_star)
    scale = np.asarray(scale, dtype=np.float64)
    if scale.shape != (n_star,) or not np.all(np.isfinite(scale) & (scale > 0)):
        raise ValueError(f"scale must be finite, > 0 and of shape ({n_star},)")
    # observed pixel at wave_obs sees rest wavelength wave_obs / (1 + z): "shift to the rest
    # frame" of the rest-frame model with the inverse redshift 1 / (1 + z) - 1
    shifted = resample(wave, flux_rest, wave_out=wave, z=1.0 / (1.0 + z) - 1.0, method="flux")
    mask = shifted.mask
    clean = np.where(mask, 1.0, shifted.flux * scale[:, None]).astype(np.float32)
    noisy, error = add_noise(clean, snr=np.asarray(snr, dtype=np.float64), rng=rng)
    ivar = (1.0 / error.astype(np.float64) ** 2).astype(np.float32)
    noisy[mask] = np.nan
    ivar[mask] = 0.0
    return noisy, ivar, mask
