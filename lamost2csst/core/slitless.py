"""CSST slitless observations of stars with known SEDs: geometry, throughput, an injected flat, noise.

A numpy kernel for simulations (the survey's real extracted spectra replace it):

* geometry: 4 detectors per band (GU, GV, GI), each :data:`DETECTOR_SHAPE` = (9232, 9216)
  pixels (ny, nx); a spectrum's reference point ``(x, y)`` lies on one detector;
* throughput ``T(lambda)`` per band: a file (two columns, wavelength in A and throughput) or
  the documented smooth default :func:`default_throughput` (a flat-topped bump inside the
  band, peak 0.25 / 0.45 / 0.35 for GU / GV / GI -- a stand-in, not CSST's measured curves);
* the large-scale response ("the flat") :func:`injected_response`: smooth in ``x``, ``y`` and
  wavelength, a few per cent across a detector, different per detector;
* counts per ``OUTPUT_WAVE`` pixel ``N = scale * sed * T * flat * exposure`` (``sed`` scaled
  like ``scale_sed``; ``scale`` = counts/s per pixel at 5526-5586 A for T = 1), photon
  (Poisson, Gaussian approximation) and read noise: ``error = sqrt(N + n_read * read_noise^2)``.

The extracted flux is ``N / exposure`` (counts/s) with its error; pixels outside the band are NaN.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lamost2csst.core.grids import BANDS, OUTPUT_WAVE

__all__ = [
    "DETECTORS_PER_BAND",
    "DETECTOR_SHAPE",
    "default_throughput",
    "injected_response",
    "observe_slitless",
    "read_throughput",
]

DETECTOR_SHAPE = (9232, 9216)  #: (ny, nx) pixels of a CSST slitless detector
DETECTORS_PER_BAND = 4
_PEAK = {"GU": 0.25, "GV": 0.45, "GI": 0.35}


def default_throughput(band: str, wave=OUTPUT_WAVE) -> np.ndarray:
    """A smooth stand-in throughput: a flat-topped (super-Gaussian) bump inside ``band``, 0 outside."""
    lo, hi = BANDS[band]
    wave = np.asarray(wave, dtype=np.float64)
    centre, half = (lo + hi) / 2.0, (hi - lo) / 2.0
    t = _PEAK[band] * np.exp(-0.5 * ((wave - centre) / (0.75 * half)) ** 8)
    return np.where((wave >= lo) & (wave <= hi), t, 0.0)


def read_throughput(path, wave=OUTPUT_WAVE) -> np.ndarray:
    """Throughput from a two-column text file (wavelength in A, throughput), interpolated; 0 outside."""
    data = np.loadtxt(Path(path), ndmin=2)
    if data.shape[1] < 2 or data.shape[0] < 2:
        raise ValueError(f"{path}: expected two columns (wavelength [A], throughput) and >= 2 rows")
    w, t = data[:, 0], data[:, 1]
    if np.any(np.diff(w) <= 0) or np.any(~np.isfinite(t)) or np.any(t < 0) or np.any(t > 1):
        raise ValueError(f"{path}: wavelengths must increase and throughputs lie in [0, 1]")
    return np.interp(np.asarray(wave, dtype=np.float64), w, t, left=0.0, right=0.0)


def injected_response(
    x, y, *, band: str, detector: int, wave=OUTPUT_WAVE, amplitude: float = 0.03, max_order: int = 3
) -> np.ndarray:
    """The "true" large-scale flat (n_obs, n_wave) at positions ``(x, y)`` of a detector.

    ``1 + amplitude * (a1 u + a2 v + a3 u v + a4 (u^2 - 1/3) + a5 (v^2 - 1/3) + a6 u^2 v)``
    with ``u, v`` the positions normalized to [-1, 1] and coefficients ``a_k(lambda)`` that
    change smoothly over the band (fixed by ``band`` and ``detector``: deterministic). Its
    mean over the detector is 1 at every wavelength (the cubic term is odd in ``v``). The
    cubic term makes a 2nd-order fit imperfect by design, as a real flat would;
    ``max_order`` drops the terms of higher total degree (1: the plane only, 2: no cubic).
    """
    ny, nx = DETECTOR_SHAPE
    u = 2.0 * np.asarray(x, dtype=np.float64) / (nx - 1) - 1.0
    v = 2.0 * np.asarray(y, dtype=np.float64) / (ny - 1) - 1.0
    lo, hi = BANDS[band]
    t = (np.asarray(wave, dtype=np.float64) - lo) / (hi - lo)  # 0..1 over the band
    rng = np.random.default_rng([sum(map(ord, band)), int(detector)])
    base = rng.uniform(-1.0, 1.0, 6)
    slope = rng.uniform(-0.5, 0.5, 6)
    a = base[:, None] + slope[:, None] * np.sin(np.pi * t)[None, :]  # (6, n_wave)
    a[5] *= 0.2
    terms = np.stack([u, v, u * v, u**2 - 1.0 / 3.0, v**2 - 1.0 / 3.0, u**2 * v])  # (6, n_obs)
    degree = np.array([1, 1, 2, 2, 2, 3])
    a = a * (degree <= max_order)[:, None]
    return 1.0 + amplitude * terms.T @ a


def observe_slitless(
    sed,
    *,
    scale,
    throughput,
    flat,
    exposure,
    read_noise: float = 5.0,
    n_read: int = 10,
    rng: np.random.Generator,
):
    """Extracted slitless fluxes (counts/s) and errors of stars with SEDs ``sed`` (n_obs, n_wave).

    Parameters
    ----------
    sed : array_like (n_obs, n_wave)
        True SEDs scaled like ``scale_sed`` (1 at 5526-5586 A).
    scale : array_like (n_obs,)
        Counts per second per pixel at 5526-5586 A for throughput 1 (brightness).
    throughput : array_like (n_wave,)
        Band throughput; pixels with 0 are outside the band (NaN in the output).
    flat : array_like (n_obs, n_wave)
        The large-scale response at each observation's position.
    exposure : array_like (n_obs,)
        Seconds.
    read_noise, n_read : float, int
        Electrons per pixel read, and pixels read per spectral pixel (the extraction box).
    rng : numpy.random.Generator
    """
    sed = np.asarray(sed, dtype=np.float64)
    scale = np.asarray(scale, dtype=np.float64)[:, None]
    exposure = np.asarray(exposure, dtype=np.float64)[:, None]
    throughput = np.asarray(throughput, dtype=np.float64)[None, :]
    counts = scale * sed * throughput * np.asarray(flat, dtype=np.float64) * exposure
    if np.any(~np.isfinite(counts)) or np.any(counts < 0):
        raise ValueError("sed, scale, throughput, flat and exposure must be finite and non-negative")
    sigma = np.sqrt(counts + n_read * read_noise**2)
    noisy = counts + rng.standard_normal(counts.shape) * sigma
    inside = np.broadcast_to(throughput > 0, counts.shape)
    flux = np.where(inside, noisy / exposure, np.nan)
    error = np.where(inside, sigma / exposure, np.nan)
    return flux.astype(np.float32), error.astype(np.float32)
