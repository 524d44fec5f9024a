"""The network input of UaRA-net from observed spectra: rest frame, INPUT_WAVE, normalized.

One per-block kernel chaining the normative steps of DESIGN.md: shift to the rest frame
with the star's z, resampling onto ``INPUT_WAVE`` (inverse variances and masks propagated),
and the Sect. 2.1 continuum normalization.

The resampling is cubic-convolution interpolation by default (:data:`DEFAULT_METHOD`): the
training inputs are R = 2000 spectra *sampled* at the ``INPUT_WAVE`` centres (DESIGN.md),
and LAMOST's ~2 pixels per resolution element are too few for flux-conserving rebinning
or linear interpolation to reproduce those samples: they smooth the line profiles. On the
grid test split observed through this path, the typical SED errors of 8000 K stars are
about half those with flux-conserving rebinning, and the fraction |r| < sigma rises from
0.45-0.56 to 0.61-0.67 (EVALUATION.md, "The survey job's input path").
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from lamost2csst.core import _compiled
from lamost2csst.core._validate import raise_for_bad_values
from lamost2csst.core.grids import INPUT_WAVE
from lamost2csst.core.normalization import CONTINUUM_WINDOW, normalize
from lamost2csst.core.resampling import (
    METHODS,
    UniformCentres,
    checked_spectra,
    resample,
    uniform_centres,
    uniform_rebin,
)

__all__ = ["DEFAULT_METHOD", "NetworkInput", "fill_masked_pixels", "prepare_inputs"]

#: Resampling onto INPUT_WAVE used by the survey job (see :func:`prepare_inputs`).
DEFAULT_METHOD = "cubic"


class NetworkInput(NamedTuple):
    """Normalized flux and 1-sigma error on ``INPUT_WAVE``; ``mask`` True where both are NaN."""

    flux: np.ndarray
    error: np.ndarray
    mask: np.ndarray


def prepare_inputs(wave, flux, *, ivar, z, mask=None, method: str | None = None) -> NetworkInput:
    """Observed spectra (n_star, n_pixel) on ``wave`` -> normalized rest-frame spectra on ``INPUT_WAVE``.

    Parameters
    ----------
    wave : array_like, (n_pixel,) or (n_star, n_pixel)
        Observed vacuum wavelengths (A).
    flux, ivar : array_like, (n_star, n_pixel)
        Flux and inverse variance; ``ivar == 0`` marks pixels without information.
    z : float or array_like (n_star,)
        Redshift of each star (LAMOST ``Z``).
    mask : array_like of bool, optional
        True where an input pixel must not be used.
    method : {"cubic", "flux", "linear"}, optional
        How the rest-frame spectrum is resampled onto ``INPUT_WAVE``
        (:func:`~lamost2csst.core.resampling.resample`); default :data:`DEFAULT_METHOD`.

    Returns
    -------
    NetworkInput
        float32 (n_star, 2238) ``flux`` and ``error`` (NaN where unusable) and ``mask``.
        Pixels of ``INPUT_WAVE`` not covered by the shifted input are masked.

    Notes
    -----
    On a log-uniform input grid (LAMOST's) with numba installed, a compiled kernel does
    both steps per star in one pass; otherwise :func:`resample` and :func:`normalize`
    run as numpy passes. Both give the same numbers (tested).
    """
    args = checked_spectra(wave, flux, ivar=ivar, mask=mask, z=z)
    if args.ivar is None:
        raise ValueError("ivar is required: the network input carries the error of every pixel")
    method = DEFAULT_METHOD if method is None else method
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if method == "flux":
        setup = uniform_rebin(args.wave, INPUT_WAVE, args.ln_shift)
    elif method == "cubic":
        setup = uniform_centres(args.wave, INPUT_WAVE, args.ln_shift)
    else:
        setup = None
    if setup is None:
        result = _prepare_numpy(args, method)
    else:
        result = _prepare_compiled(args, setup)
    if args.single:
        return NetworkInput(*(a[0] for a in result))
    return result


def _prepare_numpy(args, method: str) -> NetworkInput:
    """Reference path: :func:`resample`, then :func:`normalize`, as numpy array passes."""
    dtype = np.result_type(args.flux.dtype, np.float32)
    z = np.expm1(args.ln_shift[:, 0]) if args.ln_shift.shape[0] > 1 else float(np.expm1(args.ln_shift[0, 0]))
    res = resample(
        args.wave, args.flux, wave_out=INPUT_WAVE, ivar=args.ivar, mask=args.mask, z=z, method=method
    )
    with np.errstate(divide="ignore"):
        error = np.where(res.mask, np.inf, 1.0 / np.sqrt(res.ivar)).astype(dtype)
    norm_flux, norm_error = normalize(res.flux, error, mask=res.mask)
    unusable = ~np.isfinite(norm_flux) | ~np.isfinite(norm_error)
    return NetworkInput(norm_flux.astype(dtype, copy=False), norm_error.astype(dtype, copy=False), unusable)


def _prepare_compiled(args, setup) -> NetworkInput:
    """Fast path (log-uniform input grid, numba): resample and normalize each star in one pass."""
    n_star = args.flux.shape[0]
    dtype = np.result_type(args.flux.dtype, np.float32)
    out = NetworkInput(
        np.empty((n_star, INPUT_WAVE.size), dtype),
        np.empty((n_star, INPUT_WAVE.size), dtype),
        np.empty((n_star, INPUT_WAVE.size), bool),
    )
    kernel = (
        _compiled.prepare_uniform_cubic if isinstance(setup, UniformCentres) else _compiled.prepare_uniform
    )
    problems = kernel(
        *setup.rows(slice(0, n_star)),
        args.flux,
        np.ascontiguousarray(args.ivar),
        np.empty((0, 0), bool) if args.mask is None else np.ascontiguousarray(args.mask, dtype=bool),
        CONTINUUM_WINDOW // 2,
        out.flux,
        out.error,
        out.mask,
    )
    raise_for_bad_values(*problems)
    return out


def fill_masked_pixels(
    flux: np.ndarray, error: np.ndarray, mask: np.ndarray, *, masked_error: float
) -> tuple[np.ndarray, np.ndarray]:
    """float32 copies of ``flux`` and ``error`` with masked pixels set to flux 1 and error ``masked_error``.

    ``flux``, ``error`` and the boolean ``mask`` have the same 2-D shape (checked by the caller).
    With numba, one compiled pass; otherwise numpy (same numbers, tested).

    Raises
    ------
    ValueError
        NaN/inf flux or error, or error <= 0, on pixels that are not masked.
    """
    if _compiled.AVAILABLE and flux.size:
        out_flux, out_error = np.empty(flux.shape, np.float32), np.empty(flux.shape, np.float32)
        n_bad = _compiled.fill_masked(
            np.ascontiguousarray(flux),
            np.ascontiguousarray(error),
            np.ascontiguousarray(mask),
            np.float32(masked_error),
            out_flux,
            out_error,
        )
        if n_bad:
            _raise_for_bad_unmasked(flux, error, mask)
        return out_flux, out_error
    _raise_for_bad_unmasked(flux, error, mask)
    flux = np.where(mask, 1.0, flux).astype(np.float32)
    error = np.where(mask, masked_error, error).astype(np.float32)
    return flux, error


def _raise_for_bad_unmasked(flux, error, mask) -> None:
    """Raise for NaN/inf flux or error, or error <= 0, on unmasked pixels (numpy path and message)."""
    with np.errstate(invalid="ignore"):
        bad = ~mask & (~np.isfinite(flux) | ~np.isfinite(error) | ~(error > 0))
    if bad.any():
        stars = np.flatnonzero(bad.any(axis=1))
        raise ValueError(
            f"{int(bad.sum())} unmasked pixels in {stars.size} spectra (first: row {stars[0]}) have NaN/inf "
            "flux or error, or error <= 0; pass mask=True for them (e.g. NetworkInput.mask)"
        )
