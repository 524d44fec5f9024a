"""Resampling of spectra onto another wavelength grid, with inverse variances and masks.

Two methods, both vectorized over ``(n_star, n_pixel)``:

``"flux"`` (flux-conserving)
    Each output pixel is the average of the input flux density over the output pixel's
    extent, the input being constant within each input pixel (the rebinning of
    ``SpectRes``, Carnall 2017). Integrated flux ``sum(flux * d_lambda)`` is conserved
    over every stretch covered by whole output pixels. Pixel edges are the midpoints of
    the centres in ln lambda (see :func:`~lamost2csst.core.grids.pixel_edges`).
``"linear"``
    Linear interpolation in ln lambda between neighbouring input pixel centres.

Variances propagate as for independent input pixels: ``var_out = sum_i w_i**2 var_i``
with the weights ``w_i`` of the method (neighbouring output pixels that share an input
pixel become correlated; that covariance is not returned).

An output pixel is masked (``mask=True``, ``flux=NaN``, ``ivar=0``) when any input pixel
with non-zero weight is unusable (masked or ``ivar == 0``), or when the output pixel is
not entirely covered by the input grid. Nothing is extrapolated.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from lamost2csst.core._validate import as_float_array, check_wave, good_pixels
from lamost2csst.core.doppler import check_redshift
from lamost2csst.core.grids import pixel_edges

__all__ = ["Resampled", "resample"]

_EDGE_TOLERANCE = 1e-7  # in pixels: absorbs rounding when output and input edges coincide


class Resampled(NamedTuple):
    """Result of :func:`resample`: ``flux``, ``ivar`` (None if not given) and ``mask`` (True = bad)."""

    flux: np.ndarray
    ivar: np.ndarray | None
    mask: np.ndarray


def resample(wave, flux, *, wave_out, ivar=None, mask=None, z=None, method: str = "flux") -> Resampled:
    """Resample spectra onto ``wave_out``, optionally shifting them to the rest frame first.

    Parameters
    ----------
    wave : array_like, (n_pixel,) or (n_star, n_pixel)
        Input pixel centres, vacuum Angstrom, strictly increasing.
    flux : array_like, (n_pixel,) or (n_star, n_pixel)
        Flux densities per unit wavelength.
    wave_out : array_like, (n_out,)
        Output pixel centres, vacuum Angstrom, strictly increasing.
    ivar : array_like, optional
        Inverse variances of ``flux``; 0 marks a pixel without information.
    mask : array_like of bool, optional
        True where an input pixel must not be used.
    z : float or array_like (n_star,), optional
        Redshifts: the input is first shifted to the rest frame, ``wave / (1 + z)``.
    method : {"flux", "linear"}
        Flux-conserving rebinning or linear interpolation (see module docstring).

    Returns
    -------
    Resampled
        ``flux`` and ``ivar`` of shape (..., n_out) in the input's float precision (at
        least float32), and the boolean ``mask``; masked pixels have NaN flux and ivar 0.
    """
    if method not in ("flux", "linear"):
        raise ValueError(f"method must be 'flux' or 'linear', got {method!r}")
    wave = check_wave(wave)
    wave_out = check_wave(wave_out, name="wave_out")
    if wave_out.ndim != 1:
        raise ValueError("wave_out must be one grid (n_out,) shared by all stars")
    flux = as_float_array(flux, name="flux")
    single = flux.ndim == 1
    flux2 = flux[None, :] if single else flux
    if flux2.ndim != 2:
        raise ValueError(f"flux must be (n_pixel,) or (n_star, n_pixel), got shape {flux.shape}")
    n_star, n_src = flux2.shape
    if wave.shape[-1] != n_src or (wave.ndim == 2 and wave.shape[0] != n_star):
        raise ValueError(f"wave has shape {wave.shape} but flux has {flux.shape}; they must match")
    reshape = (lambda a: None if a is None else np.asarray(a)[None, :]) if single else (lambda a: a)
    ivar2 = reshape(ivar)
    good = good_pixels(flux2, mask=reshape(mask), ivar=ivar2)
    ln_shift = np.zeros((n_star, 1)) if z is None else np.broadcast_to(
        np.log1p(check_redshift(z, n_star=n_star if np.ndim(z) else None)), (n_star,))[:, None]

    if method == "flux":
        grid = np.log(pixel_edges(wave))
        query = np.log(pixel_edges(wave_out))[None, :] + ln_shift
    else:
        grid = np.log(wave)
        query = np.log(wave_out)[None, :] + ln_shift
    position = _fractional_position(grid, query)

    out_dtype = np.result_type(flux2.dtype, np.float32)
    f0 = np.where(good, flux2, 0.0).astype(np.float64)
    var = None if ivar2 is None else np.where(good, 1.0 / np.where(good, ivar2, 1.0), 0.0)
    kernel = _rebin if method == "flux" else _interpolate
    out, out_var, out_mask = kernel(position, f0, var, ~good)

    out_flux = np.where(out_mask, np.nan, out).astype(out_dtype)
    out_ivar = None
    if out_var is not None:
        with np.errstate(divide="ignore"):
            out_ivar = np.where(out_mask | (out_var <= 0), 0.0, 1.0 / out_var).astype(out_dtype)
    if single:
        return Resampled(out_flux[0], None if out_ivar is None else out_ivar[0], out_mask[0])
    return Resampled(out_flux, out_ivar, out_mask)


def _fractional_position(grid: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Fractional index of ``query`` (n_star, m) in the increasing ``grid`` (n,) or (n_star, n).

    Returns float64 (n_star, m) with NaN where a query lies outside the grid.
    """
    n = grid.shape[-1]
    if grid.ndim == 1:
        steps = np.diff(grid)
        step = steps.mean()
        if np.all(np.abs(steps - step) <= 1e-9 * np.abs(grid).max() + 1e-6 * step):
            pos = (query - grid[0]) / step
        else:
            pos = np.interp(query, grid, np.arange(n, dtype=np.float64), left=-1.0, right=n + 1.0)
    else:
        # One searchsorted for all stars: rows are moved apart by a constant offset so that
        # the flattened grid stays sorted.
        span = max(grid.max(), query.max()) - min(grid.min(), query.min()) + 1.0
        offset = np.arange(grid.shape[0])[:, None] * span
        flat = (grid + offset).ravel()
        idx = np.searchsorted(flat, (query + offset).ravel(), side="right").reshape(query.shape) - 1
        idx -= np.arange(grid.shape[0])[:, None] * n
        lo = np.clip(idx, 0, n - 2)
        g0 = np.take_along_axis(grid, lo, axis=1)
        g1 = np.take_along_axis(grid, lo + 1, axis=1)
        pos = lo + (query - g0) / (g1 - g0)
    pos = np.where((pos > -_EDGE_TOLERANCE) & (pos < 0), 0.0, pos)
    pos = np.where((pos > n - 1) & (pos < n - 1 + _EDGE_TOLERANCE), n - 1.0, pos)
    return np.where((pos >= 0) & (pos <= n - 1), pos, np.nan)


def _cumulative(a: np.ndarray) -> np.ndarray:
    out = np.zeros((a.shape[0], a.shape[1] + 1), dtype=np.float64 if a.dtype.kind == "f" else np.int64)
    np.cumsum(a, axis=1, out=out[:, 1:])
    return out


def _rebin(edges, f0, var, bad):
    """Flux-conserving rebinning; ``edges`` are output edges in input-edge index units."""
    n_src = f0.shape[1]
    take = np.take_along_axis
    valid = np.isfinite(edges)
    e = np.where(valid, edges, 0.0)
    k = np.clip(np.floor(e).astype(np.intp), 0, n_src - 1)  # input pixel holding each edge
    frac = e - k
    cum = take(_cumulative(f0), k, axis=1) + frac * take(f0, k, axis=1)
    width = np.diff(e, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.diff(cum, axis=1) / width
    k_left = k[:, :-1]
    k_right = np.maximum(np.ceil(e[:, 1:]).astype(np.intp) - 1, k_left)  # last input pixel touched
    n_bad = _cumulative(bad)
    touched_bad = take(n_bad, k_right + 1, axis=1) - take(n_bad, k_left, axis=1) > 0
    out_mask = ~(valid[:, :-1] & valid[:, 1:]) | touched_bad | ~(width > 0)
    out_var = None
    if var is not None:
        a, b = e[:, :-1], e[:, 1:]
        same = k_left == k_right
        w_left = np.where(same, b - a, k_left + 1 - a)
        w_right = np.where(same, 0.0, b - k_right)
        cum_var = _cumulative(var)
        inner = np.where(same, 0.0, take(cum_var, k_right, axis=1) - take(cum_var, k_left + 1, axis=1))
        total = w_left**2 * take(var, k_left, axis=1) + w_right**2 * take(var, k_right, axis=1) + inner
        with np.errstate(invalid="ignore", divide="ignore"):
            out_var = total / width**2
    return out, out_var, out_mask


def _interpolate(position, f0, var, bad):
    """Linear interpolation; ``position`` is in input-centre index units."""
    n_src = f0.shape[1]
    take = np.take_along_axis
    valid = np.isfinite(position)
    p = np.where(valid, position, 0.0)
    k = np.clip(np.floor(p).astype(np.intp), 0, n_src - 2)
    t = p - k
    out = (1.0 - t) * take(f0, k, axis=1) + t * take(f0, k + 1, axis=1)
    out_mask = ~valid | (take(bad, k, axis=1) & (t < 1.0)) | (take(bad, k + 1, axis=1) & (t > 0.0))
    out_var = None
    if var is not None:
        out_var = (1.0 - t) ** 2 * take(var, k, axis=1) + t**2 * take(var, k + 1, axis=1)
    return out, out_var, out_mask
