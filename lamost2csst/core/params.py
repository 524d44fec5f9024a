"""Stellar parameters of library stars that lack them: a chi-square match against a model grid.

Used where a fine-tuning library (STELIB) has no catalogue Teff / log g / [Fe/H] for a star.
The method is deliberately simple and documented: both the star and every grid model are
continuum-normalized (Sect. 2.1) on ``INPUT_WAVE`` at R=2000; chi-square with equal weights
over the star's usable pixels; the star gets the parameters of the best grid node (no
interpolation, so the precision is the grid step).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from lamost2csst.core.normalization import normalize

__all__ = ["ParameterFit", "fit_parameters"]


class ParameterFit(NamedTuple):
    best: np.ndarray  # (n,) index of the best grid model
    params: np.ndarray  # (n, k) its parameters
    chi2: np.ndarray  # (n,) mean squared difference over the used pixels


def fit_parameters(flux_in, grid_flux_in, grid_params, *, mask=None) -> ParameterFit:
    """Best-matching grid node for each star (chi-square of normalized R=2000 spectra).

    Parameters
    ----------
    flux_in : array_like (n, 2238)
        Stars at R=2000 on ``INPUT_WAVE`` (not normalized); NaN or ``mask`` where missing.
    grid_flux_in : array_like (g, 2238)
        Grid models likewise.
    grid_params : array_like (g, k)
        Parameters of the grid models.
    """
    flux = np.asarray(flux_in, dtype=np.float64)
    grid = np.asarray(grid_flux_in, dtype=np.float64)
    grid_params = np.asarray(grid_params, dtype=np.float64)
    if flux.ndim != 2 or grid.ndim != 2 or flux.shape[1] != grid.shape[1]:
        raise ValueError(f"flux_in {flux.shape} and grid_flux_in {grid.shape} must be 2-D on the same pixels")
    if grid_params.shape[0] != grid.shape[0]:
        raise ValueError(f"grid_params has {grid_params.shape[0]} rows for {grid.shape[0]} grid models")
    if not np.all(np.isfinite(grid)):
        raise ValueError("grid_flux_in must be finite")
    mask = ~np.isfinite(flux) if mask is None else (np.asarray(mask, bool) | ~np.isfinite(flux))
    if np.any(mask.all(axis=1)):
        raise ValueError("some stars have no usable pixel")
    star_norm, _ = normalize(np.where(mask, 1.0, flux), mask=mask)
    grid_norm, _ = normalize(grid)
    w = (~mask).astype(np.float64)
    s = np.where(mask, 0.0, star_norm)
    # sum_w (s - g)^2 = sum_w s^2 - 2 s.g + sum_w g^2, as matrix products (no star loop)
    chi2 = (np.sum(w * s**2, axis=1)[:, None] - 2 * s @ grid_norm.T + w @ (grid_norm**2).T) / w.sum(axis=1)[
        :, None
    ]
    best = np.argmin(chi2, axis=1)
    return ParameterFit(best, grid_params[best], chi2[np.arange(best.size), best])
