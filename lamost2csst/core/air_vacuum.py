"""Air <-> vacuum wavelength conversion.

Refractive index of standard air from Morton (2000, ApJS 130, 403, Eq. 8), the IAU
standard (Ciddor 1996 dispersion as fitted by Morton), also used by VALD and SDSS::

    s = 1e4 / lambda_vac   [1 / micron]
    n = 1 + 8.34254e-5 + 2.406147e-2 / (130 - s**2) + 1.5998e-4 / (38.9 - s**2)
    lambda_air = lambda_vac / n

``air_to_vacuum`` inverts this relation exactly by fixed-point iteration (not by a
second fitted formula), so a round trip is exact to floating-point precision.
By convention wavelengths below 2000 A (vacuum) are the same in both media; the
conversion therefore has a 0.65 A step at 2000 A, and values between 1999.35 and 2000 A
are ambiguous (read as air by ``air_to_vacuum``). Away from that step a round trip is
exact to ~1e-12 A.
"""

from __future__ import annotations

import numpy as np

__all__ = ["air_to_vacuum", "refractive_index_air", "vacuum_to_air"]

#: Below this vacuum wavelength (A) no conversion is applied (IAU convention).
VACUUM_LIMIT = 2000.0


def refractive_index_air(wave_vacuum: np.ndarray) -> np.ndarray:
    """Refractive index of standard air at vacuum wavelength(s) in Angstrom (Morton 2000)."""
    s2 = (1e4 / np.asarray(wave_vacuum, dtype=np.float64)) ** 2
    return 1.0 + 8.34254e-5 + 2.406147e-2 / (130.0 - s2) + 1.5998e-4 / (38.9 - s2)


def _check(wave) -> np.ndarray:
    wave = np.asarray(wave, dtype=np.float64)
    if not np.all(np.isfinite(wave)) or np.any(wave <= 0):
        raise ValueError("wavelengths must be finite and positive (Angstrom)")
    return wave


def vacuum_to_air(wave):
    """Convert vacuum wavelengths (A) to standard air; values below 2000 A are unchanged."""
    wave = _check(wave)
    return np.where(wave >= VACUUM_LIMIT, wave / refractive_index_air(wave), wave)


def air_to_vacuum(wave):
    """Convert standard-air wavelengths (A) to vacuum; exact inverse of :func:`vacuum_to_air`."""
    wave = _check(wave)
    vac = wave * refractive_index_air(wave)
    for _ in range(4):  # contraction factor ~1e-4 per step: 4 steps reach float64 precision
        vac = wave * refractive_index_air(vac)
    air_limit = VACUUM_LIMIT / refractive_index_air(VACUUM_LIMIT)
    return np.where(wave >= air_limit, vac, wave)
