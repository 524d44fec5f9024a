"""LAMOST-like observations of rest-frame model spectra: Doppler shift, flux scale, Eq. 1 noise.

Per-block numpy kernels (no randomness of their own: the caller passes the generator):

* :func:`observe_spectra`: clean rest-frame spectra -> noisy observed-frame spectra;
* :func:`draw_radial_velocities`: the disc + halo radial-velocity mixture of the demo;
* :func:`observed_network_inputs`: both of the above, then back through the survey job's
  own input path (:func:`lamost2csst.core.inputs.prepare_inputs`: rest frame, resampling
  onto ``INPUT_WAVE`` with the job's method, normalization), i.e. what the network sees for a star
  that LAMOST observed, as opposed to the paper's Eq. 1 noise added on ``INPUT_WAVE`` itself.
"""

from __future__ import annotations

import numpy as np

from lamost2csst.core._validate import as_float_array, check_wave
from lamost2csst.core.doppler import check_redshift
from lamost2csst.core.noise import add_noise
from lamost2csst.core.resampling import resample

__all__ = ["draw_radial_velocities", "observe_spectra", "observed_network_inputs"]

#: Speed of light, km/s.
C_KMS = 299_792.458


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


def draw_radial_velocities(n: int, rng: np.random.Generator) -> np.ndarray:
    """Radial velocities (km/s) of ``n`` stars: 90 % N(0, 40) (disc), 10 % N(0, 150) (halo).

    The draw order (halo membership, then halo velocities, then disc velocities, each ``n``
    values) is part of the definition: :mod:`lamost2csst.io.simulated` relies on it.
    """
    halo = rng.random(n) < 0.10
    return np.where(halo, rng.normal(0.0, 150.0, n), rng.normal(0.0, 40.0, n))


def observed_network_inputs(flux_rest, *, wave, z, snr, rng: np.random.Generator):
    """Network inputs of stars observed the LAMOST way: observe at ``z``, then the job's input path.

    Parameters
    ----------
    flux_rest : array_like (n_star, n_pixel)
        Clean rest-frame spectra on ``wave`` (finite), e.g. the grid's ``flux_lamost``.
    wave : array_like (n_pixel,)
        Their vacuum wavelengths, also the observed grid (``LAMOST_WAVE``).
    z : array_like (n_star,)
        Redshifts of the observations (the job shifts back with the same ``z``).
    snr : array_like (n_star,)
        S/N per pixel of ``wave`` (per LAMOST pixel, not per ``INPUT_WAVE`` pixel).
    rng : numpy.random.Generator

    Returns
    -------
    lamost2csst.core.inputs.NetworkInput
        Normalized ``flux`` and ``error`` on ``INPUT_WAVE`` (NaN where unusable) and ``mask``.
    """
    from lamost2csst.core.inputs import prepare_inputs

    flux, ivar, uncovered = observe_spectra(
        flux_rest, wave=wave, z=z, snr=snr, scale=np.ones(len(flux_rest)), rng=rng
    )
    return prepare_inputs(wave, flux, ivar=ivar, z=z, mask=uncovered)
