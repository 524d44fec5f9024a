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

LAMOST's known trouble spots (:func:`treat_trouble_spots`, docs/operations.md "LAMOST trouble
spots") are treated in the OBSERVED frame, before the rest-frame shift: the residuals of the
night-sky lines [O I] 5577, Na D 5890/5896, [O I] 6300/6364 (:data:`LAMOST_SKY_LINES`, vacuum)
within :data:`SKY_LINE_HALF_WIDTH`, and the blue/red arm junction :data:`ARM_JUNCTION`, are
kept as they are, error-inflated or masked.
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

__all__ = [
    "ARM_JUNCTION",
    "DEFAULT_METHOD",
    "DEFAULT_TROUBLE",
    "LAMOST_SKY_LINES",
    "SKY_LINE_HALF_WIDTH",
    "TROUBLE_INFLATION",
    "TROUBLE_MODES",
    "NetworkInput",
    "check_unmasked_pixels",
    "fill_masked_pixels",
    "prepare_inputs",
    "treat_trouble_spots",
    "trouble_pixels",
    "trouble_windows",
]

#: Resampling onto INPUT_WAVE used by the survey job (see :func:`prepare_inputs`).
DEFAULT_METHOD = "cubic"

#: Night-sky emission lines whose subtraction leaves residuals in LAMOST spectra, vacuum A in the
#: OBSERVED frame: [O I] 5577.34, Na D 5889.95 / 5895.92, [O I] 6300.30 / 6363.78 (air), converted
#: with :func:`lamost2csst.core.air_vacuum.air_to_vacuum` and rounded to 0.1 A.
LAMOST_SKY_LINES = (5578.9, 5891.6, 5897.6, 6302.0, 6365.5)
#: Half-width (A) of the window around each sky line: 1.3 FWHM of LAMOST's R = 1800 line-spread
#: function at 5579 A (FWHM 3.1 A, 2.4 pixels): +-3 sigma of a residual's profile.
SKY_LINE_HALF_WIDTH = 4.0
#: The blue/red arm junction (dichroic) of the LAMOST spectrographs, vacuum A, observed frame.
ARM_JUNCTION = (5700.0, 5900.0)
#: What :func:`treat_trouble_spots` can do with the trouble-spot pixels.
TROUBLE_MODES = ("keep", "inflate", "mask")
#: The survey job's treatment (``predict_catalogue``), chosen on MILES through LAMOST-like files
#: (docs/operations.md, "LAMOST trouble spots"): masking makes the SEDs independent of sky-line
#: residuals; inflating errors cannot change them (UaRA-net's errors feed only its sigma branch).
DEFAULT_TROUBLE = "mask"
#: Factor on the 1-sigma error of the trouble-spot pixels in mode "inflate" (ivar / factor**2).
TROUBLE_INFLATION = 10.0


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


def check_unmasked_pixels(flux: np.ndarray, error: np.ndarray, mask: np.ndarray | None) -> None:
    """Raise what :func:`fill_masked_pixels` raises for these arrays, without making its copies.

    For callers that fill batch by batch (``lamost2csst.predict``): bad input is refused before
    any batch is computed. Same 2-D shapes (checked by the caller; ``mask`` None: nothing
    masked); one compiled pass with numba, else numpy in blocks of rows.

    Raises
    ------
    ValueError
        NaN/inf flux or error, or error <= 0, on pixels that are not masked.
    """
    if _compiled.AVAILABLE and flux.size and mask is not None:
        bad = _compiled.count_bad_unmasked(
            np.ascontiguousarray(flux), np.ascontiguousarray(error), np.ascontiguousarray(mask)
        )
    else:
        bad = any(
            _has_bad_unmasked(
                flux[i : i + 1024], error[i : i + 1024], None if mask is None else mask[i : i + 1024]
            )
            for i in range(0, flux.shape[0], 1024)
        )
    if bad:
        _raise_for_bad_unmasked(flux, error, mask)


def _has_bad_unmasked(flux, error, mask) -> bool:
    return bool(_bad_unmasked(flux, error, mask).any())


def _bad_unmasked(flux, error, mask) -> np.ndarray:
    """True at unmasked pixels with NaN/inf flux or error, or error <= 0 (``mask`` None: none masked)."""
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(flux) | ~np.isfinite(error) | ~(error > 0)
    return bad if mask is None else bad & ~mask


def _raise_for_bad_unmasked(flux, error, mask) -> None:
    """Raise for NaN/inf flux or error, or error <= 0, on unmasked pixels (numpy path and message)."""
    bad = _bad_unmasked(flux, error, mask)
    if bad.any():
        stars = np.flatnonzero(bad.any(axis=1))
        raise ValueError(
            f"{int(bad.sum())} unmasked pixels in {stars.size} spectra (first: row {stars[0]}) have NaN/inf "
            "flux or error, or error <= 0; pass mask=True for them (e.g. NetworkInput.mask)"
        )


def trouble_windows(
    *,
    sky_lines=LAMOST_SKY_LINES,
    half_width: float = SKY_LINE_HALF_WIDTH,
    junction: tuple[float, float] | None = ARM_JUNCTION,
) -> tuple[tuple[float, float], ...]:
    """The observed-frame wavelength windows (vacuum A, inclusive) of LAMOST's trouble spots.

    ``(line - half_width, line + half_width)`` for every sky line, then the arm junction
    (``junction=None`` leaves it out; ``sky_lines=()`` leaves the sky lines out).
    """
    if not (np.isfinite(half_width) and half_width >= 0):
        raise ValueError(f"half_width must be finite and >= 0 (Angstrom), got {half_width}")
    windows = [(float(c) - half_width, float(c) + half_width) for c in sky_lines]
    if junction is not None:
        lo, hi = (float(v) for v in junction)
        if not lo <= hi:
            raise ValueError(f"junction must be (low, high) with low <= high, got {junction}")
        windows.append((lo, hi))
    return tuple(windows)


def trouble_pixels(wave, *, windows=None) -> np.ndarray:
    """Boolean array, the shape of ``wave``: pixels whose observed wavelength lies in a window.

    ``windows`` defaults to :func:`trouble_windows`; bounds are inclusive.
    """
    wave = np.asarray(wave, dtype=np.float64)
    windows = trouble_windows() if windows is None else windows
    hit = np.zeros(wave.shape, bool)
    for lo, hi in windows:
        hit |= (wave >= lo) & (wave <= hi)
    return hit


def treat_trouble_spots(
    wave, ivar, mask=None, *, mode: str, inflation: float = TROUBLE_INFLATION, windows=None
):
    """Inflate the errors of, or mask, the pixels of LAMOST's trouble spots (OBSERVED frame).

    Apply it to the observed spectra, before the rest-frame shift (:func:`prepare_inputs`):
    sky lines and the arm junction sit at fixed observed wavelengths.

    Parameters
    ----------
    wave : array_like, (n_pixel,) or (n_star, n_pixel)
        Observed vacuum wavelengths (A).
    ivar : array_like, (n_star, n_pixel)
        Inverse variances.
    mask : array_like of bool (n_star, n_pixel), optional
        True where a pixel must not be used (default: none).
    mode : {"keep", "inflate", "mask"}
        ``keep``: nothing changes (the inputs come back as arrays); ``inflate``: the 1-sigma
        error of the trouble pixels is multiplied by ``inflation`` (``ivar / inflation**2``);
        ``mask``: the trouble pixels are masked (``mask`` True, ``ivar`` 0).
    inflation : float
        Error factor of mode ``inflate`` (>= 1).
    windows : sequence of (low, high), optional
        The trouble spots (default :func:`trouble_windows`).

    Returns
    -------
    ivar : numpy.ndarray (n_star, n_pixel)
        In the precision of ``ivar`` (at least float32); a new array unless ``mode == "keep"``.
    mask : numpy.ndarray of bool (n_star, n_pixel)
    """
    if mode not in TROUBLE_MODES:
        raise ValueError(f"mode must be one of {TROUBLE_MODES}, got {mode!r}")
    if not (np.isfinite(inflation) and inflation >= 1):
        raise ValueError(f"inflation must be finite and >= 1, got {inflation}")
    ivar = np.asarray(ivar)
    if ivar.dtype.kind != "f":
        ivar = ivar.astype(np.float64)
    mask = np.zeros(ivar.shape, bool) if mask is None else np.asarray(mask, dtype=bool)
    if mask.shape != ivar.shape:
        raise ValueError(f"mask has shape {mask.shape}, ivar {ivar.shape}: they must be the same")
    if mode == "keep":
        return ivar, mask
    hit = np.broadcast_to(trouble_pixels(wave, windows=windows), ivar.shape)
    if mode == "inflate":
        factor = np.asarray(1.0 / float(inflation) ** 2, dtype=ivar.dtype)
        return np.where(hit, ivar * factor, ivar).astype(ivar.dtype, copy=False), mask.copy()
    return np.where(hit, 0, ivar).astype(ivar.dtype, copy=False), mask | hit
