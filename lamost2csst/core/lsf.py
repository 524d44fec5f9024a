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
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp

from lamost2csst.core._validate import as_float_array, check_wave, good_pixels

__all__ = ["FWHM_PER_SIGMA", "LsfOperator", "degradation_operator", "degrade", "degrade_error", "lsf_sigma"]

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


class LsfOperator(NamedTuple):
    """A degradation as a linear operator, with what each output pixel can be trusted for."""

    matrix: sp.csr_array  # (n_out, n_in) float64
    outside: np.ndarray  # (n_out,) bool: centre outside the input coverage (row empty)
    coverage: np.ndarray  # (n_out,) fraction of the Gaussian weight inside the input coverage
    coarser: np.ndarray  # (n_out,) bool: the input is already coarser than the target there
    dense: np.ndarray | None = None  # float64 (n_in, n_out) copy for small operators

    def apply(self, values: np.ndarray) -> np.ndarray:
        """``values`` (n_star, n_in) -> (n_star, n_out) in the precision of ``values``."""
        if self.dense is not None:
            return values @ self.dense.astype(values.dtype, copy=False)
        return np.asarray((self.matrix @ values.T).T, dtype=values.dtype)


def degradation_operator(
    wave, *, resolution, wave_out, input_resolution=None, input_fwhm=None
) -> LsfOperator:
    """The degradation from ``wave`` to ``wave_out`` as a cached :class:`LsfOperator`.

    ``input_fwhm`` (Angstrom, constant in wavelength as for MILES or STELIB) gives each
    output pixel its own kernel, ``sigma_j**2 = (1/R**2 - (input_fwhm/lambda_j)**2) / 2.3548**2``.
    Where the input is already coarser than the target (``sigma_j**2 <= 0``) ``coarser``
    is True: such pixels are not at the target resolution. Kernels are never narrower
    than half an input pixel (there, and close to it, the result is an interpolation).
    """
    wave = check_wave(wave)
    wave_out = check_wave(wave_out, name="wave_out")
    if wave.ndim != 1 or wave_out.ndim != 1:
        raise ValueError("degrade needs one input grid shared by all spectra; resample per-star grids first")
    if input_fwhm is not None and input_resolution is not None:
        raise ValueError("give input_resolution or input_fwhm, not both")
    ln_in = np.log(wave)
    ln_out = np.log(wave_out)
    floor = 0.5 * np.diff(ln_in).min()
    if input_fwhm is None:
        sigma = np.full(ln_out.size, lsf_sigma(resolution, input_resolution))
        coarser = np.zeros(ln_out.size, bool)
    else:
        if not input_fwhm > 0:
            raise ValueError(f"input_fwhm must be > 0 Angstrom, got {input_fwhm}")
        variance = (1.0 / resolution**2 - (input_fwhm / wave_out) ** 2) / FWHM_PER_SIGMA**2
        coarser = variance <= 0.0
        sigma = np.sqrt(np.maximum(variance, floor**2))  # at least half an input pixel
    key = (_digest(wave), _digest(wave_out), _digest(sigma))
    if key in _cache:
        _cache.move_to_end(key)
        return _cache[key]
    step = min(np.diff(ln_in).min(), sigma.min() / 8.0)
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
    half = int(np.ceil(_KERNEL_HALF_WIDTH * sigma.max() / step))
    centre = np.rint((ln_out - ln_in[0]) / step).astype(np.int64)
    idx = centre[:, None] + np.arange(-half, half + 1)[None, :]
    inside = (idx >= 0) & (idx < n_fine)
    full = np.exp(-0.5 * ((ln_in[0] + step * idx - ln_out[:, None]) / sigma[:, None]) ** 2)
    full[np.abs(idx - centre[:, None]) * step > _KERNEL_HALF_WIDTH * sigma[:, None]] = 0.0
    weight = full * inside
    outside = (ln_out < ln_in[0]) | (ln_out > ln_in[-1])
    weight[outside] = 0.0
    norm = weight.sum(axis=1, keepdims=True)
    coverage = (norm[:, 0] / full.sum(axis=1)).clip(0.0, 1.0)
    weight = np.divide(weight, norm, out=np.zeros_like(weight), where=norm > 0)
    kernel = sp.csr_array(
        (
            weight.ravel(),
            (np.repeat(np.arange(ln_out.size), idx.shape[1]), np.clip(idx, 0, n_fine - 1).ravel()),
        ),
        shape=(ln_out.size, n_fine),
    )
    matrix = (kernel @ interp).tocsr()
    matrix.eliminate_zeros()
    dense = matrix.toarray().T if matrix.shape[0] * matrix.shape[1] <= _DENSE_LIMIT else None
    result = LsfOperator(matrix, outside, coverage, coarser, dense)
    _cache[key] = result
    if len(_cache) > 8:
        _cache.popitem(last=False)
    return result


def _digest(a: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(a, dtype=np.float64).tobytes()).hexdigest()


def _prepare(wave, values, mask, *, name):
    values = as_float_array(values, name=name)
    single = values.ndim == 1
    values2 = values[None, :] if single else values
    if values2.ndim != 2 or values2.shape[1] != np.shape(wave)[-1]:
        raise ValueError(
            f"{name} has shape {values.shape}; its last axis must match wave ({np.shape(wave)[-1]})"
        )
    mask2 = None if mask is None else (np.asarray(mask)[None, :] if single else np.asarray(mask))
    good = good_pixels(values2, mask=mask2, name=name)
    return single, values2, good


def _finish(op: LsfOperator, out, good, single):
    bad = ~good
    if bad.any():
        touched = np.asarray((abs(op.matrix) @ bad.T.astype(np.float64)).T) > 0
        out = np.where(touched, np.nan, out)
    out[:, op.outside] = np.nan
    return out[0] if single else out


def degrade(wave, flux, *, resolution, wave_out, input_resolution=None, input_fwhm=None, mask=None):
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
    input_fwhm : float, optional
        Instead of ``input_resolution``: the input's line-spread FWHM in Angstrom,
        constant in wavelength (MILES 2.5 A, STELIB 3.4 A); see :func:`degradation_operator`.
    mask : array_like of bool, optional
        Unusable input pixels; output pixels whose kernel touches one are NaN.

    Returns
    -------
    ndarray, (n_out,) or (n_star, n_out)
        Degraded flux in the input precision (at least float32); NaN outside the input
        coverage and where the kernel touches masked input.
    """
    op = degradation_operator(
        wave,
        resolution=resolution,
        wave_out=wave_out,
        input_resolution=input_resolution,
        input_fwhm=input_fwhm,
    )
    single, flux2, good = _prepare(wave, flux, mask, name="flux")
    dtype = np.result_type(flux2.dtype, np.float32)
    out = op.apply(np.where(good, flux2, 0.0).astype(dtype))
    return _finish(op, out, good, single)


def degrade_error(wave, error, *, resolution, wave_out, input_resolution=None, input_fwhm=None, mask=None):
    """Propagate 1-sigma errors of independent input pixels through :func:`degrade`.

    ``error_out = sqrt(sum_i W_ji**2 error_i**2)`` with the weights ``W`` of the same
    operator. Neighbouring output pixels are correlated; that covariance is not returned.
    """
    op = degradation_operator(
        wave,
        resolution=resolution,
        wave_out=wave_out,
        input_resolution=input_resolution,
        input_fwhm=input_fwhm,
    )
    single, err2, good = _prepare(wave, error, mask, name="error")
    if np.any(err2[good] < 0):
        raise ValueError("error contains negative values; 1-sigma errors must be >= 0")
    dtype = np.result_type(err2.dtype, np.float32)
    variance = np.where(good, err2, 0.0).astype(np.float64) ** 2
    out = np.sqrt(np.asarray((op.matrix.multiply(op.matrix) @ variance.T).T)).astype(dtype)
    return _finish(op, out, good, single)
