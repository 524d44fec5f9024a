"""Where a star lies against the network's training domain, from its own normalized spectrum.

UaRA-net was trained on synthetic stars of 4750-10000 K; for an M dwarf or a B star its SED is
an extrapolation that looks like any other prediction. LAMOST files carry no Teff, so the
survey job judges each star from the spectrum the network sees: the normalized rest-frame
input on ``INPUT_WAVE`` (:func:`lamost2csst.core.prepare_inputs`), compared with noise-free
template spectra normalized the same way (the network's training models and reference
models beyond its domain, :mod:`lamost2csst.io.domain`).

The comparison is a chi-square on binned spectra: ``pixels_per_bin`` adjacent pixels are
averaged (a bin with any masked pixel is left out, so star and template bins always average
the same pixels), each bin's variance is the mean's noise plus ``floor**2`` (the level at
which a synthetic template cannot be expected to match a real star), and

    chi2_k = sum_b (x_b - t_kb)**2 / (e_b**2 + floor**2)

for every template ``k`` (no free scale: both are divided by their own continuum).

The continuum normalization removes the spectrum's slope, and with it most of what tells a
B star from a metal-poor A/F star: on the shipped grid, 12000-15000 K spectra match 7000-8000 K,
[M/H] = -2.5 templates to 0.5 % rms. So the star's colour is used too, one-sided:
:func:`spectrum_color` ``c = ln(mean F_lambda 4000-4500 A / mean F_lambda 6500-7000 A)`` (rest
frame) can only be made SMALLER (redder) than a template's by interstellar reddening, so a
template redder than the star by more than the flux calibration allows is penalized,

    chi2_k += ((c - c_k) / color_error)**2   where c > c_k,

and never the other way round: reddening never flags an in-domain star. From the total:

* ``teff``: the weighted mean of the templates' ln Teff with weights
  ``exp(-(chi2_k - chi2_min) / (2 s))``, ``s = max(1, chi2_min / n_bins)`` (a poor best fit
  widens the weights instead of trusting one template), and ``teff_error`` its weighted
  standard deviation, in quadrature with ``quantization`` (the templates' Teff spacing makes
  the estimate move in steps);
* ``chi2``: ``chi2_min / n_bins``, the reduced chi-square of the best template: a spectrum
  that no template resembles is outside the domain whatever its Teff estimate says.

:func:`domain_outside` turns the two into the ``OUTSIDE_DOMAIN`` decision
(:mod:`lamost2csst.core.flags`). All functions are per-block numpy kernels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

__all__ = [
    "COLOR_WINDOWS",
    "DEFAULT_COLOR_ERROR",
    "DEFAULT_FLOOR",
    "DEFAULT_PIXELS_PER_BIN",
    "DomainEstimate",
    "DomainTemplates",
    "bin_spectra",
    "check_spectra",
    "domain_outside",
    "estimate_domain",
    "spectrum_color",
    "template_chi2",
]

#: Adjacent ``INPUT_WAVE`` pixels averaged into one bin (~10.7 A at 5500 A, R ~ 500).
DEFAULT_PIXELS_PER_BIN = 8
#: Per-bin error floor in units of the normalized flux (a 1 % template mismatch).
DEFAULT_FLOOR = 0.01
#: Fewest usable bins for an estimate (fewer: NaN, and no decision from the spectrum).
MIN_BINS = 20
#: Rest-frame windows (vacuum A) of :func:`spectrum_color`: blue, red.
COLOR_WINDOWS = ((4000.0, 4500.0), (6500.0, 7000.0))
#: 1-sigma uncertainty of the colour from the relative flux calibration (5 % between the windows).
DEFAULT_COLOR_ERROR = 0.05
#: Fewest usable pixels (fraction of a window's pixels) for a colour.
MIN_COLOR_FRACTION = 0.5


class DomainEstimate(NamedTuple):
    """Per-star results of :func:`estimate_domain`, each (n_star,) float32 (NaN: no estimate).

    ``teff`` and ``teff_error`` in K; ``chi2`` the best template's reduced chi-square;
    ``n_bins`` (int32) the bins used.
    """

    teff: np.ndarray
    teff_error: np.ndarray
    chi2: np.ndarray
    n_bins: np.ndarray


@dataclass(frozen=True)
class DomainTemplates:
    """Binned, normalized, noise-free template spectra of known Teff.

    Parameters
    ----------
    flux : numpy.ndarray (n_template, n_bin)
        :func:`bin_spectra` of the normalized templates on ``INPUT_WAVE``.
    teff : numpy.ndarray (n_template,)
        Their effective temperatures (K).
    pixels_per_bin : int
        The binning ``flux`` was made with (the stars are binned the same way).
    quantization : float
        Typical relative Teff step between neighbouring templates over the domain
        (``ln`` units); added in quadrature to the estimate's error.
    color : numpy.ndarray (n_template,), optional
        :func:`spectrum_color` of the noise-free templates (None: no colour term).
    provenance : dict
        Where the templates came from (recorded in the predictions' attrs).
    """

    flux: np.ndarray
    teff: np.ndarray
    pixels_per_bin: int = DEFAULT_PIXELS_PER_BIN
    quantization: float = 0.0
    provenance: dict = field(default_factory=dict)
    color: np.ndarray | None = None

    def __post_init__(self):
        flux = np.asarray(self.flux, dtype=np.float64)
        teff = np.asarray(self.teff, dtype=np.float64)
        if flux.ndim != 2 or teff.shape != (flux.shape[0],):
            raise ValueError(
                f"flux (n_template, n_bin) and teff (n_template,) disagree: {flux.shape}, {teff.shape}"
            )
        if not (np.all(np.isfinite(flux)) and np.all(teff > 0)):
            raise ValueError("template flux must be finite and teff > 0")
        object.__setattr__(self, "flux", flux)
        object.__setattr__(self, "teff", teff)
        if self.color is not None:
            color = np.asarray(self.color, dtype=np.float64)
            if color.shape != teff.shape or not np.all(np.isfinite(color)):
                raise ValueError(f"color must be finite and of shape {teff.shape}, got {color.shape}")
            object.__setattr__(self, "color", color)


def spectrum_color(wave, flux, *, mask=None, z=0.0) -> np.ndarray:
    """``ln(mean flux 4000-4500 A / mean flux 6500-7000 A)`` in the rest frame, per star (NaN: unmeasurable).

    Parameters
    ----------
    wave : array_like (n_pixel,)
        Vacuum wavelengths (A) of the spectra, in their own frame.
    flux : array_like (n_star, n_pixel)
        F_lambda (any units: only the ratio counts).
    mask : array_like of bool (n_star, n_pixel), optional
        True where a pixel is unusable (also non-finite flux is left out).
    z : float or array_like (n_star,)
        Redshift: the windows are taken at ``(1 + z)`` times the rest wavelengths.

    Returns
    -------
    numpy.ndarray float64 (n_star,)
        NaN where a window has fewer than :data:`MIN_COLOR_FRACTION` of its pixels usable, or a
        non-positive mean.
    """
    wave = np.asarray(wave, dtype=np.float64)
    flux = np.asarray(flux)
    mask = None if mask is None else np.asarray(mask, dtype=bool)
    scale = 1.0 + np.broadcast_to(np.asarray(z, dtype=np.float64), (flux.shape[0],))
    scale = np.where(np.isfinite(scale), scale, np.nan)
    finite = scale[np.isfinite(scale)]
    means = []
    for lo, hi in COLOR_WINDOWS:
        # only the pixels that can fall in the window for some star (the rest are outside for all)
        span = (
            slice(*np.searchsorted(wave, [lo * finite.min(), hi * finite.max()], side="left"))
            if finite.size
            else slice(0, 0)
        )
        w, f = wave[span], flux[:, span]
        inside = (w >= lo * scale[:, None]) & (w < hi * scale[:, None])
        use = inside & np.isfinite(f)
        if mask is not None:
            use &= ~mask[:, span]
        n_use, n_in = use.sum(axis=1), inside.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(use, f, 0.0).sum(axis=1, dtype=np.float64) / n_use
            means.append(np.where((n_in > 0) & (n_use >= MIN_COLOR_FRACTION * n_in), mean, np.nan))
    positive = (means[0] > 0) & (means[1] > 0)  # NaN compares False
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(positive, np.log(np.where(positive, means[0] / means[1], 1.0)), np.nan)


def bin_spectra(flux, *, error=None, mask=None, pixels_per_bin: int = DEFAULT_PIXELS_PER_BIN):
    """Means of ``pixels_per_bin`` adjacent pixels (trailing pixels that do not fill a bin are dropped).

    Parameters
    ----------
    flux : array_like (n_star, n_pixel)
    error : array_like (n_star, n_pixel), optional
        1-sigma errors; the bin's error is that of the mean, ``sqrt(sum error**2) / m``.
    mask : array_like of bool (n_star, n_pixel), optional
        True where a pixel is unusable; a bin with any such pixel (or any non-finite value) is
        not usable.

    Returns
    -------
    flux_b, error_b : numpy.ndarray float64 (n_star, n_bin)
        ``error_b`` is None without ``error``; both NaN on unusable bins.
    usable : numpy.ndarray of bool (n_star, n_bin)
    """
    if pixels_per_bin < 1:
        raise ValueError(f"pixels_per_bin must be >= 1, got {pixels_per_bin}")
    flux = np.asarray(flux)
    if flux.ndim != 2:
        raise ValueError(f"flux must be (n_star, n_pixel), got shape {flux.shape}")
    n_star, n_pix = flux.shape
    n_bin = n_pix // pixels_per_bin
    cut = (slice(None), slice(0, n_bin * pixels_per_bin))
    shape = (n_star, n_bin, pixels_per_bin)
    bad = ~np.isfinite(flux[cut])
    if mask is not None:
        bad |= np.asarray(mask, dtype=bool)[cut]
    if error is not None:
        error = np.asarray(error)
        if error.shape != flux.shape:
            raise ValueError(f"error {error.shape} and flux {flux.shape} must have the same shape")
        with np.errstate(invalid="ignore"):
            bad |= ~(np.isfinite(error[cut]) & (error[cut] > 0))
    usable = ~bad.reshape(shape).any(axis=2)
    # a usable bin has no bad pixel: the sums need no zeroing (unusable bins become NaN);
    # the sums run in float64 whatever the input's precision
    with np.errstate(invalid="ignore", over="ignore"):
        flux_b = np.where(usable, flux[cut].reshape(shape).mean(axis=2, dtype=np.float64), np.nan)
        error_b = None
        if error is not None:
            var = np.square(error[cut], dtype=np.float64).reshape(shape).sum(axis=2)
            error_b = np.where(usable, np.sqrt(var) / pixels_per_bin, np.nan)
    return flux_b, error_b, usable


def template_chi2(flux_b, error_b, usable, *, templates: np.ndarray, floor: float = DEFAULT_FLOOR):
    """Chi-square of every star against every template, ``(n_star, n_template)`` float32.

    ``sum_b w_b (x_b - t_kb)**2`` with ``w_b = 1 / (error_b**2 + floor**2)`` on usable bins
    (0 elsewhere), as three matrix products in float32 (8x faster than float64 here, BENCHMARKS.md):
    the products are taken of the deviations from the continuum (1), which keeps the three
    terms small, so their sum loses no significant digits.
    """
    if not floor >= 0:
        raise ValueError(f"floor must be >= 0, got {floor}")
    with np.errstate(invalid="ignore", divide="ignore"):
        w = np.where(usable, 1.0 / (error_b**2 + floor**2), 0.0).astype(np.float32)
    d = np.where(usable, flux_b - 1.0, 0.0).astype(np.float32)
    dt = np.asarray(templates, dtype=np.float32) - np.float32(1.0)
    wd = w * d
    chi2 = (wd * d).sum(axis=1)[:, None] - 2.0 * (wd @ dt.T) + w @ (dt * dt).T
    return np.maximum(chi2, np.float32(0.0))


def estimate_domain(
    flux,
    error,
    *,
    mask=None,
    templates: DomainTemplates,
    floor: float = DEFAULT_FLOOR,
    color=None,
    color_error: float = DEFAULT_COLOR_ERROR,
) -> DomainEstimate:
    """Teff estimate, its error and the best template's reduced chi-square of each star.

    Parameters
    ----------
    flux, error : array_like (n_star, 2238)
        Normalized rest-frame input on ``INPUT_WAVE`` and its 1-sigma error (as
        :func:`lamost2csst.core.prepare_inputs` returns them; NaN where unusable).
    mask : array_like of bool (n_star, 2238), optional
        True where a pixel is unusable.
    templates : DomainTemplates
    floor : float
        Per-bin error floor (normalized flux units), see the module docstring.
    color : array_like (n_star,), optional
        :func:`spectrum_color` of the observed spectra (NaN: no colour term for that star;
        None: none at all). Needs ``templates.color``.
    color_error : float
        1-sigma of the colour (flux calibration), the scale of the one-sided penalty.

    Returns
    -------
    DomainEstimate
        NaN for stars with fewer than ``MIN_BINS`` usable bins.
    """
    flux_b, error_b, usable = bin_spectra(
        flux, error=error, mask=mask, pixels_per_bin=templates.pixels_per_bin
    )
    if flux_b.shape[1] != templates.flux.shape[1]:
        raise ValueError(
            f"spectra give {flux_b.shape[1]} bins, the templates have {templates.flux.shape[1]}: "
            "both must be on INPUT_WAVE"
        )
    n_star = flux_b.shape[0]
    n_bins = usable.sum(axis=1)
    out = {name: np.full(n_star, np.nan) for name in ("teff", "teff_error", "chi2")}
    rows = np.flatnonzero(n_bins >= MIN_BINS)
    if rows.size:
        chi2 = template_chi2(flux_b[rows], error_b[rows], usable[rows], templates=templates.flux, floor=floor)
        if color is not None:
            chi2 += _color_penalty(np.asarray(color, dtype=np.float64)[rows], templates, color_error)
        best = chi2.min(axis=1)
        reduced = best / n_bins[rows]
        stretch = np.maximum(1.0, reduced).astype(np.float32)
        weight = np.exp(-(chi2 - best[:, None]) / (2.0 * stretch[:, None]))
        weight /= weight.sum(axis=1, keepdims=True)
        # ln Teff about a central value: the weighted variance stays exact in float32
        centre = float(np.median(np.log(templates.teff)))
        ln_t = (np.log(templates.teff) - centre).astype(np.float32)
        mean = (weight @ ln_t).astype(np.float64)
        spread = np.sqrt(np.maximum((weight @ (ln_t * ln_t)).astype(np.float64) - mean**2, 0.0))
        teff = np.exp(centre + mean)
        out["teff"][rows] = teff
        out["teff_error"][rows] = teff * np.hypot(spread, templates.quantization)
        out["chi2"][rows] = reduced
    return DomainEstimate(
        *(out[name].astype(np.float32) for name in ("teff", "teff_error", "chi2")),
        n_bins=n_bins.astype(np.int32),
    )


def _color_penalty(color, templates: DomainTemplates, color_error: float) -> np.ndarray:
    """``((c - c_k) / color_error)**2`` where the star is bluer than template ``k`` (n_star, n_template)."""
    if templates.color is None:
        raise ValueError("a colour was given but the templates have none")
    if not color_error > 0:
        raise ValueError(f"color_error must be > 0, got {color_error}")
    excess = np.subtract.outer(color.astype(np.float32), np.asarray(templates.color, dtype=np.float32))
    np.fmax(excess, np.float32(0.0), out=excess)  # bluer templates (and a NaN colour): no penalty
    excess *= np.float32(1.0 / color_error)
    return np.square(excess, out=excess)


def check_spectra(flux, error, *, mask=None, color=None, templates: DomainTemplates, thresholds):
    """:func:`estimate_domain` with the settings of ``thresholds`` and its :func:`domain_outside` decision.

    ``thresholds`` is a :class:`lamost2csst.core.flags.FlagThresholds` (``domain_error_floor``,
    ``domain_color_error``, ``domain_teff_range``, ``max_domain_chi2``). Returns
    ``(estimate, outside)``.
    """
    estimate = estimate_domain(
        flux,
        error,
        mask=mask,
        templates=templates,
        floor=thresholds.domain_error_floor,
        color=color,
        color_error=thresholds.domain_color_error,
    )
    outside = domain_outside(
        estimate.teff,
        estimate.chi2,
        teff_range=thresholds.domain_teff_range,
        max_chi2=thresholds.max_domain_chi2,
    )
    return estimate, outside


def domain_outside(teff, chi2, *, teff_range, max_chi2) -> np.ndarray:
    """True where an estimate lies outside ``teff_range`` (K) or its reduced chi-square exceeds ``max_chi2``.

    NaN estimates (no spectrum to judge) give False: such stars carry ``NO_DATA`` or
    ``MASKED_PIXELS`` instead.
    """
    teff = np.asarray(teff, dtype=np.float64)
    chi2 = np.asarray(chi2, dtype=np.float64)
    lo, hi = teff_range
    with np.errstate(invalid="ignore"):
        return (teff < lo) | (teff > hi) | (chi2 > max_chi2)
