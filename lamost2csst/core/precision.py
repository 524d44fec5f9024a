"""Precision-bounded rounding of spectra: drop the bits that lie far below each pixel's noise.

A catalogue's ``flux`` and ``ivar`` are float32 whose low mantissa bits carry nothing but
noise. Zeroing them (rounding, never truncating) leaves plain float32 values that any reader
reads unchanged, and that a lossless shuffle + compression codec stores in far fewer bytes.

Two kernels, both pure and elementwise on arrays of any shape:

* :func:`round_to_noise` rounds each flux to a multiple of the largest power of two
  ``step < 2 * fraction * sigma`` (``sigma = ivar**-0.5``), so that
  ``|stored - flux| <= fraction * sigma`` exactly at every pixel;
* :func:`round_mantissa` rounds a float32 to ``keep_bits`` explicit mantissa bits
  (round to nearest, ties to even): ``|stored - x| <= 2**-(keep_bits + 1) * |x|``. For
  ``ivar`` this moves ``sigma = ivar**-0.5`` by at most ``2**-(keep_bits + 2)`` of itself (to
  first order): 7 bits keep sigma within 0.1 %.

Non-finite values (NaN, inf) are kept bit for bit, and so are the flux of pixels without
information (``ivar <= 0`` or non-finite) and ivar's zeros and subnormals; rounding never
turns a finite value into an infinite one.
"""

from __future__ import annotations

import numpy as np

__all__ = ["round_mantissa", "round_spectra", "round_to_noise"]

_MANTISSA_BITS = 23  # explicit mantissa bits of float32
_EXPONENT_MASK = np.uint32(0x7F800000)
# A hair below 1: the step's power of two is taken from 2 * fraction * sigma computed in float64,
# whose own rounding (~1e-16) must never push the step above the bound.
_SAFETY = 1.0 - 1e-12


def round_to_noise(flux, *, ivar, fraction: float = 0.01) -> np.ndarray:
    """Flux rounded to a power-of-two step at most ``2 * fraction`` of its pixel's sigma.

    Parameters
    ----------
    flux : array_like
        Flux values (cast to float32).
    ivar : array_like
        Inverse variances, broadcastable to ``flux``; ``sigma = ivar**-0.5``.
    fraction : float
        The bound, as a fraction of sigma: ``|stored - flux| <= fraction * sigma`` at every
        pixel (``0 < fraction <= 0.5``; default 1 % of sigma).

    Returns
    -------
    numpy.ndarray of float32, the shape of ``flux``
        Each rounded flux ``k * 2**e`` (``e`` the largest integer with
        ``2**e < 2 * fraction * sigma``: a bound that is itself a power of two takes the next
        one down, so that float64 rounding of the bound never lets the error exceed it), a
        float32 whose low mantissa bits are zero; ties round to even. Kept
        bit for bit: pixels with non-finite flux, ``ivar <= 0`` or non-finite ``ivar``, those
        whose step is below the float32 spacing of the flux (nothing to drop), and the rare
        ones whose rounding would overflow float32.
    """
    if not 0 < fraction <= 0.5:
        raise ValueError(f"fraction must be in (0, 0.5], got {fraction!r}")
    flux32 = np.asarray(flux, dtype=np.float32)
    ivar64 = np.broadcast_to(np.asarray(ivar, dtype=np.float64), flux32.shape)
    flux64 = flux32.astype(np.float64)
    usable = np.isfinite(flux64) & np.isfinite(ivar64) & (ivar64 > 0)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        bound = np.where(usable, 2.0 * fraction * _SAFETY / np.sqrt(np.where(usable, ivar64, 1.0)), 0.0)
        _, exponent = np.frexp(bound)  # bound = m * 2**exponent, 0.5 <= m < 1
        step = np.ldexp(1.0, exponent - 1)  # the largest power of two <= bound
        # the float32 spacing of |flux| (its ulp); a step at or below it leaves nothing to drop
        spacing = np.spacing(np.abs(flux32)).astype(np.float64)
        coarse = usable & (bound > 0) & (step > spacing)
        safe_step = np.where(coarse, step, 1.0)
        rounded = (np.rint(flux64 / safe_step) * safe_step).astype(np.float32)
    keep = ~coarse | ~np.isfinite(rounded)
    return np.where(keep, flux32, rounded)


def round_mantissa(x, *, keep_bits: int) -> np.ndarray:
    """``x`` as float32 rounded to ``keep_bits`` explicit mantissa bits (to nearest, ties to even).

    Parameters
    ----------
    x : array_like
        Values (cast to float32).
    keep_bits : int
        Explicit mantissa bits kept, 0 to 23 (23 keeps every value).

    Returns
    -------
    numpy.ndarray of float32, the shape of ``x``
        Values whose ``23 - keep_bits`` low mantissa bits are zero, with
        ``|stored - x| <= 2**-(keep_bits + 1) * |x|``. NaN, inf, zeros and subnormals are
        kept bit for bit; a value whose rounding would overflow to inf is truncated instead
        (toward zero, still within the bound).
    """
    if not 0 <= int(keep_bits) <= _MANTISSA_BITS or int(keep_bits) != keep_bits:
        raise ValueError(f"keep_bits must be an integer in 0..{_MANTISSA_BITS}, got {keep_bits!r}")
    x32 = np.array(x, dtype=np.float32)  # a copy: the result never aliases the input
    drop = _MANTISSA_BITS - int(keep_bits)
    if drop == 0:
        return x32
    bits = x32.view(np.uint32)
    exponent = bits & _EXPONENT_MASK
    normal = (exponent != 0) & (exponent != _EXPONENT_MASK)  # not zero/subnormal, not inf/NaN
    low = np.uint32((1 << drop) - 1)
    half = np.uint32(1 << (drop - 1))
    odd = (bits >> np.uint32(drop)) & np.uint32(1)
    # adding (half - 1 + odd) carries into the kept bits exactly when the dropped part is above
    # one half, or equal to it with an odd last kept bit; a carry into the exponent is correct
    rounded = (bits + (half - np.uint32(1) + odd)) & ~low
    overflow = (rounded & _EXPONENT_MASK) == _EXPONENT_MASK
    rounded = np.where(overflow, bits & ~low, rounded)
    return np.where(normal, rounded, bits).view(np.float32)


def round_spectra(
    flux, *, ivar, mask=None, flux_fraction: float | None, ivar_bits: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """``(flux, ivar)`` rounded: flux within ``flux_fraction`` sigma, ivar to ``ivar_bits`` mantissa bits.

    (The catalogue writers' choice of the two is :data:`lamost2csst.io.spectra.DEFAULT_PRECISION`.)

    Parameters
    ----------
    flux, ivar : array_like, the same shape (e.g. (n_star, n_pixel))
        Flux and inverse variance; the flux's sigma is that of the given (unrounded) ivar.
    mask : array_like of bool, optional
        True where a pixel must not be used: its flux and ivar are kept bit for bit.
    flux_fraction : float or None
        :func:`round_to_noise`'s bound (``|stored - flux| <= flux_fraction * sigma``); None
        keeps the flux bit for bit.
    ivar_bits : int or None
        :func:`round_mantissa`'s ``keep_bits`` for ivar (relative error at most
        ``2**-(ivar_bits + 1)``); None keeps ivar bit for bit.

    Returns
    -------
    flux, ivar : numpy.ndarray of float32
    """
    flux32 = np.asarray(flux, dtype=np.float32)
    ivar32 = np.asarray(ivar, dtype=np.float32)
    if flux32.shape != ivar32.shape:
        raise ValueError(f"flux {flux32.shape} and ivar {ivar32.shape} must have the same shape")
    keep = (
        np.zeros(flux32.shape, bool)
        if mask is None
        else np.broadcast_to(np.asarray(mask, bool), flux32.shape)
    )
    out_flux = (
        flux32 if flux_fraction is None else round_to_noise(flux32, ivar=ivar32, fraction=flux_fraction)
    )
    out_ivar = ivar32 if ivar_bits is None else round_mantissa(ivar32, keep_bits=ivar_bits)
    return np.where(keep, flux32, out_flux), np.where(keep, ivar32, out_ivar)
