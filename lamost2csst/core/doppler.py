"""Rest-frame shift: ``lambda_rest = lambda_obs / (1 + z)`` (z from the LAMOST header ``Z``)."""

from __future__ import annotations

import numpy as np

__all__ = ["check_redshift", "shift_to_rest"]


def check_redshift(z, *, n_star: int | None = None) -> np.ndarray:
    """``z`` as float64, scalar or (n_star,), refusing values that are not physical redshifts."""
    z = np.asarray(z, dtype=np.float64)
    if z.ndim > 1 or (z.ndim == 1 and n_star is not None and z.shape[0] != n_star):
        raise ValueError(f"z must be a scalar or have one value per star ({n_star}), got shape {z.shape}")
    if not np.all(np.isfinite(z)):
        raise ValueError(
            f"z has {int(np.sum(~np.isfinite(z)))} NaN/inf values; flag those stars before shifting"
        )
    if np.any(z <= -1):
        raise ValueError("z must be > -1")
    return z


def shift_to_rest(wave, z) -> np.ndarray:
    """Rest-frame wavelengths of observed ``wave`` (n_pixel,) for redshift(s) ``z``.

    Returns (n_pixel,) for scalar ``z`` and (n_star, n_pixel) for ``z`` of shape (n_star,).
    Only the wavelengths change; resampling with ``resample(..., z=z)`` does the same
    without materialising one wavelength array per star.
    """
    wave = np.asarray(wave, dtype=np.float64)
    z = check_redshift(z)
    return wave / (1.0 + z[..., None]) if z.ndim == 1 else wave / (1.0 + z)
