"""Per-star quality flags of predicted SEDs: a documented bitmask, and the kernels that set it.

Every star of a catalogue gets a prediction row; what can be trusted is said by ``flags``
(0 = nothing to report). The bits:

=====  ====================  ==============================================================
bit    name                  set when
=====  ====================  ==============================================================
1      ``NO_DATA``           no usable input pixel on ``INPUT_WAVE`` after the rest-frame
                             shift (all masked, no coverage, or no usable z): ``sed`` and
                             ``sigma`` are NaN
2      ``MASKED_PIXELS``     more than ``max_masked_fraction`` of the ``INPUT_WAVE`` pixels
                             are masked (also when the spectrum does not cover the range)
4      ``NONFINITE_INPUT``   the input had NaN/inf flux or NaN/inf/negative ivar on pixels not
                             marked bad; those pixels were masked before prediction
8      ``LOW_SNR``           median S/N per pixel of the input spectrum (its own pixels,
                             before resampling; comparable to LAMOST's SNRG) below ``min_snr``
16     ``BAD_Z``             z missing (NaN, LAMOST's -9999) or ``|z| > max_abs_z``; a missing
                             z also sets ``NO_DATA`` (the rest frame is unknown)
32     ``OUTSIDE_DOMAIN``    the star is outside the network's training domain: its catalogue
                             ``teff`` is outside ``teff_range`` where the catalogue gives a
                             finite one; otherwise judged from the spectrum itself
                             (:mod:`lamost2csst.core.domain`): the Teff estimate is outside
                             ``domain_teff_range`` or no template resembles the spectrum
                             (reduced chi-square above ``max_domain_chi2``)
64     ``UNCERTAIN``         the network's own median relative sigma over ``OUTPUT_WAVE`` is
                             above ``max_sigma``
=====  ====================  ==============================================================

The functions here are pure numpy kernels on blocks of stars.
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass

import numpy as np

__all__ = [
    "Flag",
    "FlagThresholds",
    "describe_flags",
    "domain_flags",
    "input_flags",
    "median_snr",
    "output_flags",
    "sanitize_pixels",
]


class Flag(enum.IntFlag):
    """Bits of the ``flags`` (star) variable of predictions; see the module docstring."""

    NO_DATA = 1
    MASKED_PIXELS = 2
    NONFINITE_INPUT = 4
    LOW_SNR = 8
    BAD_Z = 16
    OUTSIDE_DOMAIN = 32
    UNCERTAIN = 64


#: One line per bit, stored in the output's attrs so that a store explains itself.
FLAG_MEANINGS = {
    Flag.NO_DATA: "no usable input pixel on INPUT_WAVE in the rest frame: sed and sigma are NaN",
    Flag.MASKED_PIXELS: "more than max_masked_fraction of the INPUT_WAVE pixels masked or not covered",
    Flag.NONFINITE_INPUT: (
        "NaN/inf flux or NaN/inf/negative ivar on pixels not marked bad (masked by the job)"
    ),
    Flag.LOW_SNR: "median S/N per pixel of the input spectrum (own pixels, before resampling) below min_snr",
    Flag.BAD_Z: "z missing (NaN, -9999) or |z| > max_abs_z; a missing z also sets NO_DATA",
    Flag.OUTSIDE_DOMAIN: (
        "outside the network's training domain: catalogue teff outside teff_range where finite, else "
        "the spectrum's Teff estimate outside domain_teff_range or its best template's reduced "
        "chi-square above max_domain_chi2"
    ),
    Flag.UNCERTAIN: "median predicted relative sigma over OUTPUT_WAVE above max_sigma",
}


@dataclass(frozen=True)
class FlagThresholds:
    """Where the flags start; stored in the output's attrs.

    Defaults: at most 20 % masked input pixels (the network was trained with masked spans
    of up to ~10 %); median S/N 10 (below the paper's lowest test S/N of 20, and
    LAMOST's usual quality cut); ``|z| <= 0.005`` (1,500 km/s, far beyond Galactic stars);
    the training range of the shipped grid, 5000-9750 K; median sigma 0.1 (10 %).

    The domain check from the spectrum (stars without a finite catalogue ``teff``;
    :mod:`lamost2csst.core.domain`) flags a Teff estimate outside ``domain_teff_range`` or a
    best template's reduced chi-square above ``max_domain_chi2``, with ``domain_error_floor``
    added in quadrature to each bin's error and ``domain_color_error`` the scale of the
    one-sided colour penalty. Their defaults were chosen on the grid's test
    split and the out-of-domain synthetic test set (:mod:`lamost2csst.io.domain`), never on
    real stars: of the scanned ranges, 4875-9875 K (the midpoints between the domain's edges and
    the grid's 4750/10000 K edge models) flags the most out-of-domain stars while flagging
    <= 2 % of the in-domain ones at every S/N >= 20; the measured rates are in EVALUATION.md
    ("Domain check").
    """

    max_masked_fraction: float = 0.2
    min_snr: float = 10.0
    max_abs_z: float = 0.005
    teff_range: tuple[float, float] = (5000.0, 9750.0)
    max_sigma: float = 0.1
    domain_teff_range: tuple[float, float] = (4875.0, 9875.0)
    max_domain_chi2: float = 3.0
    domain_error_floor: float = 0.01
    domain_color_error: float = 0.05

    def __post_init__(self):
        problems = []
        if not 0.0 <= self.max_masked_fraction <= 1.0:
            problems.append(f"max_masked_fraction must be in [0, 1], got {self.max_masked_fraction}")
        for name in ("min_snr", "max_abs_z", "max_sigma", "max_domain_chi2", "domain_error_floor"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value >= 0):
                problems.append(f"{name} must be finite and >= 0, got {value}")
        for name in ("teff_range", "domain_teff_range"):
            lo, hi = getattr(self, name)
            if not lo < hi:
                problems.append(f"{name} must be (low, high) with low < high, got {getattr(self, name)}")
        if problems:
            raise ValueError("; ".join(problems))

    def as_dict(self) -> dict:
        d = asdict(self)
        d["teff_range"] = list(self.teff_range)
        d["domain_teff_range"] = list(self.domain_teff_range)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> FlagThresholds:
        """Inverse of :meth:`as_dict` (ranges given as lists)."""
        ranges = {k: tuple(d[k]) for k in ("teff_range", "domain_teff_range") if k in d}
        return cls(**{**d, **ranges})


def describe_flags(value: int) -> list[str]:
    """Names of the bits set in ``value`` (e.g. ``['NO_DATA', 'BAD_Z']``)."""
    return [flag.name for flag in Flag if int(value) & flag]


def sanitize_pixels(flux, ivar, mask=None):
    """Mask input pixels that are bad but not marked bad, and report which stars had any.

    Parameters
    ----------
    flux, ivar : array_like (n_star, n_pixel)
    mask : array_like of bool, optional
        True where a pixel is known bad.

    Returns
    -------
    flux, ivar, mask, nonfinite
        ``mask`` is a new array where every pixel with NaN/inf flux, NaN/inf ivar,
        negative ivar or ``ivar == 0`` is masked; ``ivar`` is a copy with 0 on the bad ones
        only when it had NaN/inf/negative values (else the input itself, as is ``flux``:
        flux values on masked pixels are never used); ``nonfinite`` (n_star,) is True
        for stars that had such a pixel outside the given mask (flag ``NONFINITE_INPUT``).
        Non-finite flux with ``ivar == 0`` (LAMOST writes NaN) is "no data": not an anomaly.
    """
    flux = np.asarray(flux)
    ivar = np.asarray(ivar)
    mask = np.zeros(flux.shape, bool) if mask is None else np.asarray(mask, dtype=bool)
    if not flux.shape == ivar.shape == mask.shape or flux.ndim != 2:
        raise ValueError(
            f"flux {flux.shape}, ivar {ivar.shape} and mask {mask.shape} must be equal 2-D shapes"
        )
    with np.errstate(invalid="ignore"):
        ivar_bad = ~(ivar >= 0) | (ivar == np.inf)  # NaN, negative or inf
        no_data = ivar == 0
        flux_nonfinite = ~np.isfinite(flux)
    nonfinite = ((ivar_bad | (flux_nonfinite & ~no_data)) & ~mask).any(axis=1)
    new_mask = mask | ivar_bad | no_data | flux_nonfinite
    if ivar_bad.any():
        ivar = np.where(ivar_bad, np.float32(0), ivar).astype(ivar.dtype, copy=False)
    return flux, ivar, new_mask, nonfinite


def bad_redshift(z, *, max_abs_z: float) -> tuple[np.ndarray, np.ndarray]:
    """(missing, implausible) per star: z NaN/inf or <= -1, and ``|z| > max_abs_z``."""
    z = np.asarray(z, dtype=np.float64)
    missing = ~np.isfinite(z) | (z <= -1.0)
    with np.errstate(invalid="ignore"):
        implausible = ~missing & (np.abs(z) > max_abs_z)
    return missing, implausible


def median_snr(flux, ivar, mask, *, stride: int = 8) -> np.ndarray:
    """Median S/N per pixel, ``|flux| sqrt(ivar)`` over the usable pixels of each star (NaN if none).

    Measured on the spectrum's own pixels: after resampling, neighbouring pixels share
    noise and the per-pixel S/N looks ~1.3x higher than it is (measured on LAMOST_WAVE ->
    INPUT_WAVE), so the threshold is applied before. Every ``stride``-th pixel is used
    (~490 of LAMOST's 3909: within 2 % of the all-pixel median on the demo catalogue, and
    8x cheaper).
    """
    sl = (slice(None), slice(None, None, stride))
    f, iv, m = np.asarray(flux)[sl], np.asarray(ivar)[sl], np.asarray(mask)[sl]
    with np.errstate(invalid="ignore"):
        snr = np.where(m, np.nan, np.abs(f) * np.sqrt(np.maximum(iv, 0)))
    return _row_nanmedian(snr)


def _row_nanmedian(a: np.ndarray) -> np.ndarray:
    """NaN-ignoring median of each row; NaN for rows without a finite value.

    All-NaN rows are left out instead of silencing numpy's warning: ``warnings`` filters
    are process-global and not thread-safe (Dask runs these kernels in threads).
    """
    out = np.full(a.shape[0], np.nan)
    some = ~np.isnan(a).all(axis=1)
    if some.any():
        out[some] = np.nanmedian(a[some], axis=1)
    return out


def input_flags(
    input_mask, *, snr, nonfinite, z_missing, z_implausible, teff=None, thresholds: FlagThresholds
) -> np.ndarray:
    """Flags known before prediction, from the network input of a block of stars.

    Parameters
    ----------
    input_mask : array_like of bool (n_star, n_in)
        True where the normalized input pixel is unusable.
    snr : array_like (n_star,)
        Median S/N per pixel of the input spectra (:func:`median_snr`).
    nonfinite, z_missing, z_implausible : array_like of bool (n_star,)
    teff : array_like (n_star,), optional
        Catalogue effective temperatures; NaN = unknown (not flagged).
    thresholds : FlagThresholds

    Returns
    -------
    numpy.ndarray of uint16 (n_star,)
    """
    input_mask = np.asarray(input_mask, dtype=bool)
    flags = np.zeros(input_mask.shape[0], np.uint16)
    no_data = input_mask.all(axis=1) | np.asarray(z_missing, bool)
    flags[no_data] |= np.uint16(Flag.NO_DATA)
    flags[input_mask.mean(axis=1) > thresholds.max_masked_fraction] |= np.uint16(Flag.MASKED_PIXELS)
    flags[np.asarray(nonfinite, bool)] |= np.uint16(Flag.NONFINITE_INPUT)
    flags[~no_data & ~(np.asarray(snr, dtype=np.float64) >= thresholds.min_snr)] |= np.uint16(Flag.LOW_SNR)
    flags[np.asarray(z_missing, bool) | np.asarray(z_implausible, bool)] |= np.uint16(Flag.BAD_Z)
    if teff is not None:
        teff = np.asarray(teff, dtype=np.float64)
        lo, hi = thresholds.teff_range
        with np.errstate(invalid="ignore"):
            flags[np.isfinite(teff) & ((teff < lo) | (teff > hi))] |= np.uint16(Flag.OUTSIDE_DOMAIN)
    return flags


def domain_flags(teff_estimate, domain_chi2, *, teff=None, thresholds: FlagThresholds) -> np.ndarray:
    """``OUTSIDE_DOMAIN`` from the spectrum's own domain check, for stars without a finite catalogue Teff.

    Parameters
    ----------
    teff_estimate, domain_chi2 : array_like (n_star,)
        :func:`lamost2csst.core.domain.estimate_domain`'s ``teff`` and ``chi2`` (NaN: no
        estimate, not flagged).
    teff : array_like (n_star,), optional
        Catalogue Teff: where finite, it decides (:func:`input_flags`) and the estimate is not used.
    thresholds : FlagThresholds

    Returns
    -------
    numpy.ndarray of uint16 (n_star,)
    """
    from lamost2csst.core.domain import domain_outside

    outside = domain_outside(
        teff_estimate,
        domain_chi2,
        teff_range=thresholds.domain_teff_range,
        max_chi2=thresholds.max_domain_chi2,
    )
    if teff is not None:
        outside &= ~np.isfinite(np.asarray(teff, dtype=np.float64))
    flags = np.zeros(outside.shape[0], np.uint16)
    flags[outside] |= np.uint16(Flag.OUTSIDE_DOMAIN)
    return flags


def output_flags(sigma, *, thresholds: FlagThresholds) -> np.ndarray:
    """``UNCERTAIN`` where the median predicted relative sigma exceeds ``max_sigma`` (uint16)."""
    sigma = np.asarray(sigma)
    finite = np.isfinite(sigma).all(axis=1)
    median = np.full(sigma.shape[0], np.nan)
    median[finite] = np.median(sigma[finite], axis=1)
    if not finite.all():
        median[~finite] = _row_nanmedian(sigma[~finite])
    flags = np.zeros(sigma.shape[0], np.uint16)
    flags[median > thresholds.max_sigma] |= np.uint16(Flag.UNCERTAIN)
    return flags
