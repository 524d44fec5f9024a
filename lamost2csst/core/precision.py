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
# A hair below 1: the step's power of two is taken from 2 * fraction * sigma computed in float32,
# whose own rounding (<= ~2e-7 relative) must never push the step above the bound.
_SAFETY = 1.0 - 1e-6


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
        ``2**e < (1 - 1e-6) * 2 * fraction * sigma``: a bound within 1e-6 above a power of two
        takes the next one down, so that the float32 rounding of the bound never lets the
        error exceed it), a
        float32 whose low mantissa bits are zero; ties round to even. Kept
        bit for bit: pixels with non-finite flux, ``ivar <= 0`` or non-finite ``ivar``, those
        whose step is below the float32 spacing of the flux (nothing to drop), and the rare
        ones whose rounding would overflow float32.
    """
    if not 0 < fraction <= 0.5:
        raise ValueError(f"fraction must be in (0, 0.5], got {fraction!r}")
    flux32 = np.ascontiguousarray(flux, dtype=np.float32)
    ivar = np.asarray(ivar)
    work = np.float64 if ivar.dtype == np.float64 else np.float32  # float64 ivar may hold sigma > 1e19
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        # 2 * fraction * sigma, a hair low (float32 sqrt, division and cast: <= 2e-7 relative error);
        # inf for ivar = 0, NaN for ivar < 0 or NaN, 0 for ivar = inf: all left out below
        bound = (work(2.0 * fraction * _SAFETY) / np.sqrt(ivar.astype(work, copy=False))).astype(np.float32)
    bound = np.broadcast_to(bound, flux32.shape)
    bits = flux32.view(np.uint32)
    flux_exp = ((bits >> 23) & 0xFF).astype(np.int32)
    step_exp = ((bound.view(np.uint32) >> 23) & 0xFF).astype(np.int32)  # the step is 2**(step_exp - 127)
    usable = (flux_exp != 255) & (step_exp != 0) & (step_exp != 255)
    # mantissa bits below the step: the flux is m * 2**(max(flux_exp, 1) - 150) with an integer m
    drop = step_exp - np.maximum(flux_exp, 1) + 23
    out = bits.copy()
    in_bits = usable & (drop > 0) & (drop <= 23)
    d = np.where(in_bits, drop, 1).astype(np.uint32)
    # round half to even on the bit pattern: a carry into the exponent is the right result; the
    # parity of the last kept bit is the implicit leading 1 when all 23 stored bits are dropped
    odd = np.where((d == 23) & (flux_exp != 0), np.uint32(1), (bits >> d) & np.uint32(1))
    rounded = (bits + (np.uint32(1) << (d - np.uint32(1))) - np.uint32(1) + odd) & ~((np.uint32(1) << d) - 1)
    in_bits &= ((rounded >> 23) & 0xFF) != 255  # would overflow to inf: kept
    np.copyto(out, rounded, where=in_bits)
    tiny = np.flatnonzero(usable & (drop > 23))  # |flux| below the step: 0 or one step, in float64
    if tiny.size:
        step = np.ldexp(1.0, step_exp.ravel()[tiny] - 127)
        values = np.rint(flux32.ravel()[tiny].astype(np.float64) / step) * step
        out.ravel()[tiny] = values.astype(np.float32).view(np.uint32)
    return out.view(np.float32)


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
