"""Interstellar reddening of library SEDs: a fitted E(B-V) against model SEDs, and its removal.

STELIB fluxes are *not* corrected for interstellar reddening (MILES and NGSL are). The
network's input is continuum-normalized, so reddening is invisible in the input but tilts the
target SED; fine-tuning on reddened targets would teach the network wrong SED slopes. Here
E(B-V) is fitted per star against a model SED of similar type (linear least squares of
``ln(F_obs / F_model) = c - 0.4 ln(10) E(B-V) k(lambda)`` over the covered pixels, the constant
``c`` absorbing the flux scale), with ``k = A(lambda)/E(B-V)`` of Fitzpatrick (1999), R_V = 3.1
(``dust_extinction``). The model supplies only the broad slope: line-scale differences
between star and model are left in the data.
"""

from __future__ import annotations

import numpy as np

__all__ = ["deredden", "fit_ebv", "reddening_curve"]

LN10_04 = 0.4 * np.log(10.0)


def reddening_curve(wave, *, r_v: float = 3.1) -> np.ndarray:
    """``k(lambda) = A(lambda) / E(B-V)`` of Fitzpatrick (1999) at vacuum wavelengths (A), 1000-33000 A."""
    import astropy.units as u
    from dust_extinction.parameter_averages import F99

    wave = np.asarray(wave, dtype=np.float64)
    if np.any(wave < 1000) or np.any(wave > 33000):
        raise ValueError("the F99 curve is defined for 1000-33000 A")
    return np.asarray(F99(Rv=r_v)(wave * u.AA)) * r_v


def fit_ebv(wave, flux_obs, flux_model, *, mask=None, r_v: float = 3.1) -> np.ndarray:
    """Least-squares E(B-V) of each observed SED relative to its model SED (any flux scales).

    Parameters
    ----------
    wave : array_like (m,)
    flux_obs, flux_model : array_like (n, m)
        Positive fluxes; pixels that are masked, non-finite or non-positive are ignored.
    mask : array_like of bool (n, m), optional

    Returns
    -------
    numpy.ndarray (n,)
        E(B-V) in mag (negative when the star is bluer than its model); NaN with fewer than
        3 usable pixels.
    """
    k = reddening_curve(wave, r_v=r_v)
    obs = np.asarray(flux_obs, dtype=np.float64)
    model = np.asarray(flux_model, dtype=np.float64)
    if obs.shape != model.shape or obs.ndim != 2 or obs.shape[1] != k.size:
        raise ValueError(f"flux_obs {obs.shape} and flux_model {model.shape} must be (n, {k.size})")
    with np.errstate(invalid="ignore", divide="ignore"):
        y = np.log(obs / model)
    use = np.isfinite(y)
    if mask is not None:
        use &= ~np.asarray(mask, bool)
    w = use.astype(np.float64)
    n = w.sum(axis=1)
    y = np.where(use, y, 0.0)
    # weighted simple regression of y on x = -0.4 ln10 k, per star, in closed form
    x = -LN10_04 * k
    sx, sy = w @ x, (w * y).sum(axis=1)
    sxx, sxy = w @ (x * x), (w * y) @ x
    with np.errstate(invalid="ignore", divide="ignore"):
        slope = (n * sxy - sx * sy) / (n * sxx - sx * sx)
    return np.where(n >= 3, slope, np.nan)


def deredden(wave, flux, ebv, *, r_v: float = 3.1) -> np.ndarray:
    """Flux corrected for E(B-V) (n,) of reddening: ``F * 10^(0.4 E(B-V) k(lambda))``."""
    k = reddening_curve(wave, r_v=r_v)
    ebv = np.asarray(ebv, dtype=np.float64)
    return np.asarray(flux) * np.exp(LN10_04 * ebv[:, None] * k[None, :])
