"""Input checks shared by the core functions: every message says what to fix."""

from __future__ import annotations

import numpy as np


def as_float_array(a, *, name: str) -> np.ndarray:
    """``a`` as a floating array (float32 stays float32, integers become float64)."""
    a = np.asarray(a)
    if a.dtype.kind not in "fiu":
        raise ValueError(f"{name} must be a numeric array, got dtype {a.dtype}")
    if a.dtype.kind != "f":
        a = a.astype(np.float64)
    return a


def check_last_axis(a: np.ndarray, n_pixel: int, *, name: str, grid: str) -> None:
    if a.ndim == 0 or a.shape[-1] != n_pixel:
        raise ValueError(
            f"{name} has shape {a.shape}; its last axis must have {n_pixel} pixels "
            f"({grid}). Resample onto that grid first."
        )


def check_wave(wave, *, name: str = "wave") -> np.ndarray:
    """Finite, positive, strictly increasing wavelengths along the last axis (float64)."""
    wave = np.asarray(wave, dtype=np.float64)
    if wave.ndim not in (1, 2) or wave.shape[-1] < 2:
        raise ValueError(
            f"{name} must be (n_pixel,) or (n_star, n_pixel) with n_pixel >= 2, got {wave.shape}"
        )
    if not np.all(np.isfinite(wave)) or np.any(wave <= 0):
        raise ValueError(f"{name} must be finite and positive (vacuum Angstrom)")
    if np.any(np.diff(wave, axis=-1) <= 0):
        raise ValueError(f"{name} must be strictly increasing along its last axis")
    return wave


def raise_for_bad_values(
    n_nonfinite_ivar: int, n_negative_ivar: int, n_bad_flux: int, *, name: str = "flux"
) -> None:
    """The errors of :func:`good_pixels`, from counts (for kernels that count instead of raising)."""
    if n_nonfinite_ivar:
        raise ValueError("ivar contains NaN or inf; use ivar = 0 for pixels without information")
    if n_negative_ivar:
        raise ValueError(f"ivar contains {n_negative_ivar} negative values; inverse variances must be >= 0")
    if n_bad_flux:
        raise ValueError(
            f"{name} has {n_bad_flux} NaN/inf values on pixels marked usable; "
            "pass mask=True (or ivar=0) for those pixels"
        )


def good_pixels(flux: np.ndarray, *, mask=None, ivar=None, name: str = "flux") -> np.ndarray:
    """Boolean array of usable pixels, refusing data that are bad but not marked bad.

    A pixel is usable when it is not masked and (if ``ivar`` is given) ``ivar > 0``.
    Non-finite flux on a usable pixel, and negative or non-finite ``ivar`` anywhere, are
    errors: they would otherwise turn into silent wrong numbers downstream.
    """
    good = np.ones(flux.shape, dtype=bool)
    if mask is not None:
        mask = np.asarray(mask)
        if mask.shape != flux.shape:
            raise ValueError(f"mask has shape {mask.shape}, {name} has {flux.shape}; they must match")
        good &= ~mask.astype(bool)
    if ivar is not None:
        ivar = np.asarray(ivar)
        if ivar.shape != flux.shape:
            raise ValueError(f"ivar has shape {ivar.shape}, {name} has {flux.shape}; they must match")
        if not np.all(np.isfinite(ivar)):
            raise ValueError("ivar contains NaN or inf; use ivar = 0 for pixels without information")
        if np.any(ivar < 0):
            raise ValueError(
                f"ivar contains {int(np.sum(ivar < 0))} negative values; inverse variances must be >= 0"
            )
        good &= ivar > 0
    bad_values = good & ~np.isfinite(flux)
    if np.any(bad_values):
        raise ValueError(
            f"{name} has {int(bad_values.sum())} NaN/inf values on pixels marked usable; "
            "pass mask=True (or ivar=0) for those pixels"
        )
    return good
