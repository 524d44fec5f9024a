"""Degradation of spectra to a lower spectral resolution with a Gaussian line-spread function.

Convention (DESIGN.md): the kernel is Gaussian in ln lambda with

    sigma = sqrt(1 / R_out**2 - 1 / R_in**2) / 2.3548      (R_in = infinity for models),

so that a line of negligible width comes out with FWHM = lambda / R_out. The input is
interpolated linearly onto a fine uniform ln lambda grid (step <= sigma / 8 and no coarser
than the input), convolved there, and sampled at the output pixel centres. The whole
chain is linear, so it is built once per (input grid, output grid, resolutions) as a sparse
matrix and applied to all spectra as one matrix product.

Near the ends of the input coverage the kernel is truncated and renormalized; output
pixels whose centre lies outside the input coverage are NaN. Kernels extend to +-5 sigma.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

import numpy as np
import scipy.sparse as sp

from lamost2csst.core._validate import as_float_array, check_wave, good_pixels

__all__ = ["FWHM_PER_SIGMA", "degradation_operator", "degrade", "degrade_error", "lsf_sigma"]

FWHM_PER_SIGMA = 2.3548  # 2 sqrt(2 ln 2), rounded as in the paper
_KERNEL_HALF_WIDTH = 5.0  # in sigma
_DENSE_LIMIT = 4_000_000  # operators with fewer elements are applied as dense BLAS products
_cache: OrderedDict = OrderedDict()


def lsf_sigma(resolution: float, input_resolution: float | None = None) -> float:
    """Gaussian sigma in ln lambda that takes ``input_resolution`` (None = infinite) to ``resolution``."""
    if not resolution > 0:
        raise ValueError(f"resolution must be > 0, got {resolution}")
    inv_in2 = 0.0
    if input_resolution is not None:
        if not input_resolution > resolution:
            raise ValueError(
                f"input_resolution ({input_resolution}) must exceed the target resolution "
                f"({resolution}): degradation cannot sharpen a spectrum"
            )
        inv_in2 = 1.0 / input_resolution**2
    return float(np.sqrt(1.0 / resolution**2 - inv_in2) / FWHM_PER_SIGMA)


def degradation_operator(wave, *, resolution, wave_out, input_resolution=None):
    """Sparse matrix (n_out, n_in) mapping spectra on ``wave`` to degraded ones on ``wave_out``.

    Rows of output pixels whose centre lies outside the input coverage are empty; the
    second return value flags them.

    Returns
    -------
    operator : scipy.sparse.csr_array, float64
    outside : ndarray of bool, (n_out,)
    """
    wave = check_wave(wave)
    wave_out = check_wave(wave_out, name="wave_out")
    if wave.ndim != 1 or wave_out.ndim != 1:
        raise ValueError("degrade needs one input grid shared by all spectra; resample per-star grids first")
    sigma = lsf_sigma(resolution, input_resolution)
    key = (_digest(wave), _digest(wave_out), sigma)
    if key in _cache:
        _cache.move_to_end(key)
        return _cache[key]
    ln_in = np.log(wave)
    step = min(np.diff(ln_in).min(), sigma / 8.0)
    n_fine = int(np.floor((ln_in[-1] - ln_in[0]) / step)) + 1
    ln_fine = ln_in[0] + step * np.arange(n_fine)

    # fine grid <- input: linear interpolation, two non-zeros per fine point
    k = np.clip(np.searchsorted(ln_in, ln_fine, side="right") - 1, 0, ln_in.size - 2)
    t = (ln_fine - ln_in[k]) / (ln_in[k + 1] - ln_in[k])
    rows = np.repeat(np.arange(n_fine), 2)
    interp = sp.csr_array(
        (np.column_stack([1.0 - t, t]).ravel(), (rows, np.column_stack([k, k + 1]).ravel())),
        shape=(n_fine, ln_in.size),
    )

    # output centres <- fine grid: Gaussian weights, renormalized where truncated by the ends
    ln_out = np.log(wave_out)
    half = int(np.ceil(_KERNEL_HALF_WIDTH * sigma / step))
    centre = np.rint((ln_out - ln_in[0]) / step).astype(np.int64)
    idx = centre[:, None] + np.arange(-half, half + 1)[None, :]
    inside = (idx >= 0) & (idx < n_fine)
    idx_c = np.clip(idx, 0, n_fine - 1)
    weight = np.exp(-0.5 * ((ln_fine[idx_c] - ln_out[:, None]) / sigma) ** 2) * inside
    outside = (ln_out < ln_in[0]) | (ln_out > ln_in[-1])
    weight[outside] = 0.0
    norm = weight.sum(axis=1, keepdims=True)
    weight = np.divide(weight, norm, out=np.zeros_like(weight), where=norm > 0)
    kernel = sp.csr_array(
        (weight.ravel(), (np.repeat(np.arange(ln_out.size), idx.shape[1]), idx_c.ravel())),
        shape=(ln_out.size, n_fine),
    )
    operator = (kernel @ interp).tocsr()
    operator.eliminate_zeros()
    result = (operator, outside)
    _cache[key] = result
    if len(_cache) > 8:
        _cache.popitem(last=False)
    return result


def _digest(a: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(a, dtype=np.float64).tobytes()).hexdigest()


def _apply(operator, values: np.ndarray) -> np.ndarray:
    """``values`` (n_star, n_in) -> (n_star, n_out) with the operator, dense BLAS when small."""
    n_out, n_in = operator.shape
    if n_out * n_in <= _DENSE_LIMIT:
        dense = operator.toarray().T.astype(values.dtype)
        return values @ dense
    return np.asarray((operator @ values.T).T, dtype=values.dtype)


def _prepare(wave, values, mask, *, name):
    values = as_float_array(values, name=name)
    single = values.ndim == 1
    values2 = values[None, :] if single else values
    if values2.ndim != 2 or values2.shape[1] != np.shape(wave)[-1]:
        raise ValueError(f"{name} has shape {values.shape}; its last axis must match wave ({np.shape(wave)[-1]})")
    mask2 = None if mask is None else (np.asarray(mask)[None, :] if single else np.asarray(mask))
    good = good_pixels(values2, mask=mask2, name=name)
    return single, values2, good


def _finish(operator, outside, out, good, single):
    bad = ~good
    if bad.any():
        touched = np.asarray((abs(operator) @ bad.T.astype(np.float64)).T) > 0
        out = np.where(touched, np.nan, out)
    out[:, outside] = np.nan
    return out[0] if single else out


def degrade(wave, flux, *, resolution, wave_out, input_resolution=None, mask=None):
    """Degrade spectra to ``resolution`` and sample them at the centres ``wave_out``.

    Parameters
    ----------
    wave : array_like, (n_in,)
        Input wavelengths (vacuum A), strictly increasing, shared by all spectra.
    flux : array_like, (n_in,) or (n_star, n_in)
    resolution : float
        Target resolving power R = lambda / FWHM.
    wave_out : array_like, (n_out,)
        Output pixel centres (vacuum A).
    input_resolution : float, optional
        Resolving power of the input; None for a model spectrum (infinite resolution).
    mask : array_like of bool, optional
        Unusable input pixels; output pixels whose kernel touches one are NaN.

    Returns
    -------
    ndarray, (n_out,) or (n_star, n_out)
        Degraded flux in the input precision (at least float32); NaN outside the input
        coverage and where the kernel touches masked input.
    """
    operator, outside = degradation_operator(
        wave, resolution=resolution, wave_out=wave_out, input_resolution=input_resolution
    )
    single, flux2, good = _prepare(wave, flux, mask, name="flux")
    dtype = np.result_type(flux2.dtype, np.float32)
    out = _apply(operator, np.where(good, flux2, 0.0).astype(dtype))
    return _finish(operator, outside, out, good, single)


def degrade_error(wave, error, *, resolution, wave_out, input_resolution=None, mask=None):
    """Propagate 1-sigma errors of independent input pixels through :func:`degrade`.

    ``error_out = sqrt(sum_i W_ji**2 error_i**2)`` with the weights ``W`` of the same
    operator. Neighbouring output pixels are correlated; that covariance is not returned.
    """
    operator, outside = degradation_operator(
        wave, resolution=resolution, wave_out=wave_out, input_resolution=input_resolution
    )
    single, err2, good = _prepare(wave, error, mask, name="error")
    if np.any(err2[good] < 0):
        raise ValueError("error contains negative values; 1-sigma errors must be >= 0")
    dtype = np.result_type(err2.dtype, np.float32)
    variance = np.where(good, err2, 0.0).astype(np.float64) ** 2
    out = np.sqrt(np.asarray((operator.multiply(operator) @ variance.T).T)).astype(dtype)
    return _finish(operator, outside, out, good, single)
