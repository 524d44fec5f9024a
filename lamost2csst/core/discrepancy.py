"""Model discrepancy: the part of a real star's SED error that the network's own sigma does not know.

The network's sigma is aleatoric: it describes the noise of the input and what the synthetic
library leaves undetermined, not how real stars differ from the synthetic ones. Like The
Cannon's per-pixel model variance, the total relative uncertainty of a predicted SED pixel is

    sigma_total(lambda)**2 = (a(lambda) * sigma_net)**2 + b(lambda)**2,    a >= 1, b >= 0,

with ``a`` and ``b`` fitted by maximum likelihood to out-of-fold residuals of real stars
(:func:`fit_discrepancy`). ``a >= 1`` means the network's sigma is never shrunk, so the added
part ``sigma_sys = sqrt(sigma_total**2 - sigma_net**2)`` is real: ``sigma_total = hypot(sigma_net,
sigma_sys)``. Where no real library covers a pixel, ``a`` and ``b`` are a stated, conservative
extrapolation (``fitted`` is False there).

:func:`cross_fitted_sigma` gives every real star a total sigma fitted without its own residuals
(nested out-of-fold), and :func:`coverage` the fraction ``|r| / sigma < 1`` per band that
measures it honestly (0.683 for a calibrated Gaussian sigma).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import minimize

from lamost2csst.core._validate import as_float_array, check_wave
from lamost2csst.core.grids import BANDS, OUTPUT_WAVE, band_pixels
from lamost2csst.core.metrics import calibration_statistics

__all__ = [
    "COLOR_WAVES",
    "ModelDiscrepancy",
    "coverage",
    "cross_fitted_sigma",
    "fit_discrepancy",
    "sed_color",
]

#: Defaults of :func:`fit_discrepancy` (see its docstring for why).
BIN_WIDTH = 8
MIN_VALUES = 50
MIN_STARS = 10
EDGE_WIDTH = 1000.0
TARGET_COVERAGE = 0.6827


@dataclass(frozen=True)
class ModelDiscrepancy:
    """Per output pixel (and per colour class of the predicted SED): the scale ``a`` of the network's
    sigma and the added floor ``b``.

    Attributes
    ----------
    scale : ndarray (n_pixel,) or (n_class, n_pixel)
        ``a(lambda) >= 1``.
    floor : ndarray (n_pixel,) or (n_class, n_pixel)
        ``b(lambda) >= 0`` (relative flux).
    fitted : ndarray of bool, the shape of ``scale``
        True where fitted on real-star residuals, False where extrapolated.
    provenance : dict
        How it was fitted (libraries, stars, folds, the extrapolation rule).
    color_edges : tuple of float
        With ``n_class > 1``: the ``n_class - 1`` inner edges of the classes in the colour
        :func:`sed_color` of the predicted SED (a temperature proxy known for every star, with or
        without a catalogue Teff); class ``k`` holds colours in ``[edge[k-1], edge[k])``.
    """

    scale: np.ndarray
    floor: np.ndarray
    fitted: np.ndarray
    provenance: dict = field(default_factory=dict)
    color_edges: tuple = ()

    def __post_init__(self):
        scale = np.asarray(self.scale, dtype=np.float64)
        floor = np.asarray(self.floor, dtype=np.float64)
        fitted = np.asarray(self.fitted, dtype=bool)
        edges = tuple(float(e) for e in self.color_edges)
        ndim = 2 if edges else 1
        if not (scale.ndim == ndim and scale.shape == floor.shape == fitted.shape):
            raise ValueError(
                f"scale {scale.shape}, floor {floor.shape}, fitted {fitted.shape}: need one "
                f"{'(n_class, n_pixel)' if edges else '1-D'} shape"
            )
        if edges and (scale.shape[0] != len(edges) + 1 or np.any(np.diff(edges) <= 0)):
            raise ValueError(f"{scale.shape[0]} classes need {scale.shape[0] - 1} increasing color_edges")
        if not (np.all(np.isfinite(scale)) and np.all(np.isfinite(floor))):
            raise ValueError("scale and floor must be finite at every pixel")
        if np.any(scale < 1) or np.any(floor < 0):
            raise ValueError("need scale >= 1 (the network's sigma is never shrunk) and floor >= 0")
        object.__setattr__(self, "scale", scale)
        object.__setattr__(self, "floor", floor)
        object.__setattr__(self, "fitted", fitted)
        object.__setattr__(self, "color_edges", edges)

    @property
    def n_pixel(self) -> int:
        return self.scale.shape[-1]

    @classmethod
    def none(cls, n_pixel: int = OUTPUT_WAVE.size) -> ModelDiscrepancy:
        """No discrepancy: ``sigma_total == sigma_net`` (a model without a fitted one)."""
        return cls(np.ones(n_pixel), np.zeros(n_pixel), np.zeros(n_pixel, bool), {"kind": "none"})

    def sigma_parts(self, sigma_net, *, sed=None) -> tuple[np.ndarray, np.ndarray]:
        """``(sigma_total, sigma_sys)`` for network sigmas ``(n_star, n_pixel)``; float32 like the input.

        ``sigma_total = hypot(sigma_net, sigma_sys)``; NaN in ``sigma_net`` stays NaN. With colour
        classes the predicted ``sed`` (same shape) chooses each star's class; a star whose colour
        is not finite gets the largest ``a`` and ``b`` of all classes (the conservative choice).
        """
        sigma_net = np.asarray(sigma_net)
        if sigma_net.shape[-1] != self.n_pixel:
            raise ValueError(f"sigma_net has {sigma_net.shape[-1]} pixels, the discrepancy {self.n_pixel}")
        a, b = self.scale, self.floor
        if self.color_edges:
            if sed is None:
                raise ValueError("this discrepancy depends on the SED's colour: pass the predicted sed")
            color = sed_color(np.asarray(sed).reshape(-1, self.n_pixel)).reshape(sigma_net.shape[:-1])
            cls = np.searchsorted(np.asarray(self.color_edges), np.nan_to_num(color, nan=0.0), side="right")
            a = np.where(np.isfinite(color)[..., None], a[cls], a.max(axis=0))
            b = np.where(np.isfinite(color)[..., None], b[cls], b.max(axis=0))
        net = sigma_net.astype(np.float64)
        total = np.sqrt((a * net) ** 2 + b**2)
        sys = np.sqrt(np.maximum(total**2 - net**2, 0.0))
        dtype = sigma_net.dtype if np.issubdtype(sigma_net.dtype, np.floating) else np.float64
        return total.astype(dtype), sys.astype(dtype)

    def to_dict(self) -> dict:
        """JSON-ready: lists of floats (rounded to 6 significant digits) and the provenance."""

        def rounded(x):
            return np.vectorize(lambda v: float(f"{v:.6g}"), otypes=[float])(x).tolist()

        out = {
            "scale": rounded(self.scale),
            "floor": rounded(self.floor),
            "fitted": self.fitted.tolist(),
            "provenance": self.provenance,
        }
        if self.color_edges:
            out["color_edges"] = list(self.color_edges)
        return out

    @classmethod
    def from_dict(cls, d: dict) -> ModelDiscrepancy:
        """Inverse of :meth:`to_dict`; a clear error for a malformed entry."""
        missing = {"scale", "floor", "fitted"} - set(d)
        if missing:
            raise ValueError(f"model discrepancy entry lacks {sorted(missing)}")
        return cls(
            np.asarray(d["scale"]),
            np.asarray(d["floor"]),
            np.asarray(d["fitted"]),
            d.get("provenance", {}),
            tuple(d.get("color_edges", ())),
        )


#: The colour of a predicted SED that sorts stars into discrepancy classes: ln F(4500 A) / F(6500 A).
COLOR_WAVES = (4500.0, 6500.0)


def sed_color(sed, *, wave=OUTPUT_WAVE) -> np.ndarray:
    """``ln(F(4500 A) / F(6500 A))`` of SEDs ``(n_star, n_pixel)``, each the mean of the 3 nearest pixels.

    A temperature proxy every prediction has (hotter stars: larger); NaN where the SED is not
    finite and positive there.
    """
    sed = np.asarray(sed, dtype=np.float64)
    wave = np.asarray(wave, dtype=np.float64)
    out = []
    for lam in COLOR_WAVES:
        j = int(np.argmin(np.abs(wave - lam)))
        out.append(sed[:, max(j - 1, 0) : j + 2].mean(axis=1))
    with np.errstate(divide="ignore", invalid="ignore"):
        color = np.log(out[0] / out[1])
    return np.where(np.isfinite(color), color, np.nan)


# ---------------------------------------------------------------- maximum-likelihood fit


def _check_pair(residual, sigma, wave, *, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """float64 ``(residual, sigma, wave)``; errors for shapes and for sigma <= 0 where r is finite."""
    residual = as_float_array(residual, name="residual").astype(np.float64)
    sigma = as_float_array(sigma, name=name).astype(np.float64)
    wave = check_wave(wave)
    if residual.ndim != 2 or residual.shape != sigma.shape or wave.shape != (residual.shape[1],):
        raise ValueError(
            f"residual {residual.shape}, {name} {sigma.shape} and wave {wave.shape}: need "
            f"(n_star, n_pixel), (n_star, n_pixel) and (n_pixel,) with the same n_star and n_pixel"
        )
    use = np.isfinite(residual)
    bad = int(np.count_nonzero(use & ~(np.isfinite(sigma) & (sigma > 0))))
    if bad:
        raise ValueError(
            f"{name} is <= 0 or not finite at {bad} values where the residual is finite; "
            f"set the residual to NaN there or give a positive {name}"
        )
    return residual, sigma, wave


def _nll(x, r2, s2, s_ref2):
    """Mean Gaussian negative log-likelihood (x2, no constant), gradient; ``x = (a**2, b**2 / s_ref2)``.

    The variance ``v = a**2 s**2 + b**2`` is linear in these parameters, so the gradient does not
    vanish at ``b = 0`` (it would in ``b`` itself) and both are of order one.
    """
    v = x[0] * s2 + x[1] * s_ref2
    w = (v - r2) / (v * v) / r2.size
    value = float(np.mean(r2 / v + np.log(v)))
    return value, np.array([np.sum(w * s2), np.sum(w) * s_ref2])


def _fit_bin(r: np.ndarray, s: np.ndarray) -> tuple[float, float]:
    """ML ``(a, b)`` of ``r ~ N(0, (a s)**2 + b**2)``, a >= 1, b >= 0, from two deterministic starts.

    The starts are the two one-component solutions (all in ``a`` with ``b = 0``; ``a = 1`` with
    ``b**2`` the excess variance); SLSQP with bounds on ``(a**2, b**2 / median(s)**2)`` (for two
    parameters it is as exact as L-BFGS-B and, unlike it, not slowed by BLAS threads); the better
    end point is kept.
    """
    r2, s2 = r * r, s * s
    s_ref2 = float(np.median(s2))
    starts = (
        (max(1.0, float(np.mean(r2 / s2))), 0.0),
        (1.0, max(float(np.mean(r2) - np.mean(s2)), 0.0) / s_ref2),
    )
    best = None
    for x0 in starts:
        res = minimize(
            _nll,
            np.array(x0),
            args=(r2, s2, s_ref2),
            jac=True,
            method="SLSQP",
            bounds=[(1.0, None), (0.0, None)],
            options={"ftol": 1e-12, "maxiter": 500},
        )
        if best is None or res.fun < best.fun:
            best = res
    return float(np.sqrt(max(best.x[0], 1.0))), float(np.sqrt(max(best.x[1], 0.0) * s_ref2))


def _edge_value(values: np.ndarray, wave: np.ndarray, fitted: np.ndarray, edge: int, width: float) -> float:
    """Maximum of ``values`` over the fitted pixels within ``width`` A of the fitted pixel ``edge``."""
    near = fitted & (np.abs(wave - wave[edge]) <= width)
    return float(np.max(values[near]))


def fit_discrepancy(
    residual,
    *,
    sigma_net,
    wave=OUTPUT_WAVE,
    bin_width: int = BIN_WIDTH,
    min_values: int = MIN_VALUES,
    min_stars: int = MIN_STARS,
    edge_width: float = EDGE_WIDTH,
    target_coverage: float | None = TARGET_COVERAGE,
    fit_scale: bool = True,
    sed=None,
    n_classes: int = 1,
    provenance: dict | None = None,
) -> ModelDiscrepancy:
    """Fit ``sigma_total**2 = (a sigma_net)**2 + b**2`` per wavelength bin to real-star residuals.

    Parameters
    ----------
    residual : array_like (n_star, n_pixel)
        Out-of-fold relative residuals ``r = (pred - true) / true`` of real stars; NaN where a star
        has no truth (outside its library's coverage, masked pixels).
    sigma_net : array_like (n_star, n_pixel)
        The network's relative 1-sigma for the same predictions; must be > 0 wherever r is finite.
    wave : array_like (n_pixel,)
        Pixel wavelengths (vacuum A), increasing; the output grid by default.
    bin_width : int
        Adjacent pixels per bin (the last bin may be shorter). Default 8: on the output grid
        (``d ln lambda = 1/400``) 2 % in lambda (~100 A at 5000 A, 4 resolution elements), narrow
        enough to follow the blue-edge rise of the error, wide enough for ~8 values per star.
    min_values, min_stars : int
        A bin is fitted only with at least ``min_values`` finite residuals from at least ``min_stars``
        distinct stars (defaults 50 and 10). Residuals of one star are correlated across a bin, so
        the number of stars, not of values, sets how well ``a`` and ``b`` are known.
    edge_width : float
        Width (A) of the edge window of the extrapolation rule below (default 1000 A).
    target_coverage : float or None
        After the maximum-likelihood fit, rescale each bin's sigma so that this fraction of its
        residuals has ``|r| < sigma_total`` (default 0.6827, the Gaussian 1-sigma fraction; a
        split-conformal calibration of the likelihood's shape). Real-star residuals have heavy
        tails, which the Gaussian likelihood pays for with a too wide core; None: no rescaling.
    fit_scale : bool
        False: ``a = 1`` everywhere and only the floor ``b`` is fitted (with ``target_coverage``:
        ``b**2`` = that quantile of ``r**2 - sigma_net**2``, a conformal floor). Use it when the
        residuals come from one input S/N: ``a`` and ``b`` are then not separable (``sigma_net``
        hardly varies), and a large ``a`` fitted there would blow up sigma at other S/N.
    sed : array_like (n_star, n_pixel), optional
        The predicted SEDs of the same stars; needed with ``n_classes > 1``.
    n_classes : int
        Fit the stars in this many classes of :func:`sed_color` of their predicted SED (equal
        numbers of stars; a temperature proxy), each class by the rules here. The residuals of
        real stars depend on their temperature; a single floor over- and under-covers by class.
    provenance : dict, optional
        Added to the result's provenance (libraries, folds, model name ...).

    Returns
    -------
    ModelDiscrepancy
        ``scale`` ``a``, ``floor`` ``b`` and ``fitted`` per pixel.

    Notes
    -----
    Per fitted bin, ``a >= 1`` and ``b >= 0`` minimize ``sum(r**2 / v + log v)``,
    ``v = (a s)**2 + b**2``, over its finite values (Gaussian maximum likelihood; SLSQP with
    bounds from two deterministic starts). A few catastrophic stars raise ``b``: that is the
    conservative side. Per pixel:

    * ``fitted`` is True where the pixel's bin is fitted and the pixel itself has finite residuals
      of at least ``min_stars`` stars; such a pixel gets its bin's ``(a, b)`` (piecewise constant,
      no smoothing: each value is what the data of its bin support);
    * a pixel between the first and the last fitted pixel that is not fitted (an internal gap)
      gets ``a`` and ``b`` linearly interpolated in ln lambda between the nearest fitted pixels on
      either side; ``fitted`` is False there;
    * below the first (above the last) fitted pixel, ``a`` and ``b`` are each the maximum over the
      fitted pixels within ``edge_width`` A of that first (last) fitted pixel; ``fitted`` is False.
      The error of a real star grows towards a library's edges, so the largest value near the edge
      is the conservative stand-in for wavelengths no real library covers.

    The rules are written into ``provenance`` (``"bins"``, ``"gaps"``, ``"extrapolation"``).
    """
    if int(n_classes) > 1:
        return _fit_classes(
            residual,
            sigma_net=sigma_net,
            sed=sed,
            n_classes=int(n_classes),
            provenance=provenance,
            wave=wave,
            bin_width=bin_width,
            min_values=min_values,
            min_stars=min_stars,
            edge_width=edge_width,
            target_coverage=target_coverage,
            fit_scale=fit_scale,
        )
    residual, sigma, wave = _check_pair(residual, sigma_net, wave, name="sigma_net")
    if int(bin_width) < 1 or int(min_values) < 1 or int(min_stars) < 1 or not edge_width >= 0:
        raise ValueError("need bin_width >= 1, min_values >= 1, min_stars >= 1 and edge_width >= 0")
    bin_width = int(bin_width)
    n_star, n_pixel = residual.shape
    use = np.isfinite(residual)
    starts = np.arange(0, n_pixel, bin_width)
    values_per_bin = np.add.reduceat(use.sum(axis=0), starts)
    stars_per_bin = np.add.reduceat(use, starts, axis=1).astype(bool).sum(axis=0)
    bin_ok = (values_per_bin >= min_values) & (stars_per_bin >= min_stars)
    if not bin_ok.any():
        raise ValueError(
            f"no wavelength bin of {bin_width} pixels has >= {min_values} finite residuals from "
            f">= {min_stars} stars (most: {values_per_bin.max()} values, {stars_per_bin.max()} stars); "
            "give more real stars or lower min_values / min_stars"
        )
    a_bin = np.ones(starts.size)
    b_bin = np.zeros(starts.size)
    for k in np.flatnonzero(bin_ok):
        cols = slice(starts[k], starts[k] + bin_width)
        good = use[:, cols]
        if not fit_scale:
            a_bin[k], b_bin[k] = _floor_only(residual[:, cols][good], sigma[:, cols][good], target_coverage)
            continue
        a_bin[k], b_bin[k] = _fit_bin(residual[:, cols][good], sigma[:, cols][good])
        if target_coverage is not None:
            a_bin[k], b_bin[k] = _to_coverage(
                residual[:, cols][good], sigma[:, cols][good], a_bin[k], b_bin[k], target=target_coverage
            )
    pixel_bin = np.arange(n_pixel) // bin_width
    fitted = bin_ok[pixel_bin] & (use.sum(axis=0) >= min_stars)
    if not fitted.any():
        raise ValueError(
            f"no pixel has finite residuals of >= {min_stars} stars inside a fitted bin; "
            "give more real stars or lower min_stars"
        )
    scale, floor = _assign(a_bin[pixel_bin], b_bin[pixel_bin], wave, fitted, edge_width)
    info = {
        "kind": (
            "maximum likelihood, sigma_total^2 = (a sigma_net)^2 + b^2, a >= 1, b >= 0"
            if fit_scale
            else "floor only, sigma_total^2 = sigma_net^2 + b^2"
        ),
        "n_star": int(np.count_nonzero(use[:, bin_ok[pixel_bin]].any(axis=1))),
        "n_values": int(np.count_nonzero(use[:, bin_ok[pixel_bin]])),
        "n_bins_fitted": int(np.count_nonzero(bin_ok)),
        "fitted_range_A": [float(wave[fitted][0]), float(wave[fitted][-1])],
        "bins": (
            f"{bin_width} adjacent pixels per bin; fitted with >= {min_values} finite residuals from "
            f">= {min_stars} stars; a pixel is fitted when its bin is and >= {min_stars} stars have a "
            "residual there; fitted pixels take their bin's (a, b), no smoothing"
        ),
        "gaps": "unfitted pixels between fitted ones: linear interpolation in ln lambda",
        "coverage": (
            "none (maximum likelihood only)"
            if target_coverage is None
            else f"each bin rescaled: a fraction {target_coverage:g} of its residuals has |r| < sigma_total"
        ),
        "extrapolation": (
            f"below/above the fitted range: a and b each the maximum over the fitted pixels within "
            f"{float(edge_width):g} A of the first/last fitted pixel"
        ),
    }
    info.update(provenance or {})
    return ModelDiscrepancy(scale, floor, fitted, info)


def _fit_classes(residual, *, sigma_net, sed, n_classes: int, provenance, **options) -> ModelDiscrepancy:
    """:func:`fit_discrepancy` per colour class of equal numbers of stars; the classes stacked."""
    if sed is None:
        raise ValueError("n_classes > 1 needs the predicted sed of every star (its colour picks the class)")
    residual = np.asarray(residual)
    color = sed_color(sed, wave=options["wave"])
    if not np.all(np.isfinite(color)):
        raise ValueError(
            f"{int((~np.isfinite(color)).sum())} stars have no finite SED colour at {COLOR_WAVES} A"
        )
    edges = np.quantile(color, np.arange(1, n_classes) / n_classes)
    cls = np.searchsorted(edges, color, side="right")
    counts = np.bincount(cls, minlength=n_classes)
    if counts.min() < options["min_stars"]:
        raise ValueError(
            f"colour classes hold {counts.tolist()} stars; need >= min_stars each: fewer classes"
        )
    parts = []
    for k in range(n_classes):
        rows = cls == k
        parts.append(fit_discrepancy(residual[rows], sigma_net=np.asarray(sigma_net)[rows], **options))
    info = {
        **parts[0].provenance,
        "classes": (
            f"{n_classes} classes of ln F(4500)/F(6500) of the predicted SED, equal numbers of stars; "
            "each fitted alone"
        ),
        "per_class": [{"n_star": int((cls == k).sum()), **p.provenance} for k, p in enumerate(parts)],
        **(provenance or {}),
    }
    return ModelDiscrepancy(
        np.stack([p.scale for p in parts]),
        np.stack([p.floor for p in parts]),
        np.stack([p.fitted for p in parts]),
        info,
        tuple(edges),
    )


def _floor_only(r: np.ndarray, s: np.ndarray, target: float | None) -> tuple[float, float]:
    """``(1, b)``: ``b**2`` = the ``target`` quantile of ``r**2 - s**2`` (without one: its mean)."""
    excess = r**2 - s**2
    b2 = np.mean(excess) if target is None else np.quantile(excess, target)
    return 1.0, float(np.sqrt(max(b2, 0.0)))


def _to_coverage(r: np.ndarray, s: np.ndarray, a: float, b: float, *, target: float) -> tuple[float, float]:
    """``(a, b)`` scaled by one factor so that a fraction ``target`` of ``|r| < sigma_total``; a >= 1 kept.

    The factor is the ``target`` quantile of ``|r| / sigma_total``. Where it would take ``a`` below
    1, ``a = 1`` and ``b**2`` is the ``target`` quantile of ``r**2 - s**2`` (0 if negative).
    """
    if not 0 < target < 1:
        raise ValueError(f"target_coverage must be in (0, 1), got {target}")
    c = float(np.quantile(np.abs(r) / np.sqrt((a * s) ** 2 + b**2), target))
    if c * a >= 1:
        return c * a, c * b
    return 1.0, float(np.sqrt(max(np.quantile(r**2 - s**2, target), 0.0)))


def _assign(a, b, wave, fitted, edge_width) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel ``(a, b)``: fitted values, gaps interpolated in ln lambda, edges by the maximum rule."""
    lw = np.log(wave)
    first, last = np.flatnonzero(fitted)[[0, -1]]
    out = []
    for v in (a, b):
        v = np.interp(lw, lw[fitted], v[fitted])
        v[:first] = _edge_value(v, wave, fitted, first, edge_width)
        v[last + 1 :] = _edge_value(v, wave, fitted, last, edge_width)
        out.append(v)
    return out[0], out[1]


# ---------------------------------------------------------------- honest coverage on real stars


def cross_fitted_sigma(residual, *, sigma_net, fold, sed=None, **fit_kwargs) -> np.ndarray:
    """Nested out-of-fold total sigma: each fold's stars get a discrepancy fitted on the other folds.

    Parameters
    ----------
    residual, sigma_net : array_like (n_star, n_pixel)
        As in :func:`fit_discrepancy` (out-of-fold residuals of real stars and the network's sigma).
    fold : array_like of int (n_star,)
        Fold label of every star (at least two distinct labels).
    sed : array_like (n_star, n_pixel), optional
        Predicted SEDs (for ``n_classes > 1``).
    **fit_kwargs
        Passed to :func:`fit_discrepancy` (``wave``, ``bin_width``, ``n_classes``, ...).

    Returns
    -------
    ndarray (n_star, n_pixel), float64
        ``sigma_total`` of every star from :meth:`ModelDiscrepancy.sigma_parts` of the discrepancy
        fitted without its fold, so no star's sigma uses its own residual; NaN where
        ``sigma_net`` is NaN. Measure it with :func:`coverage`.
    """
    residual, sigma, _ = _check_pair(
        residual, sigma_net, fit_kwargs.get("wave", OUTPUT_WAVE), name="sigma_net"
    )
    fold = np.asarray(fold)
    if fold.shape != (residual.shape[0],):
        raise ValueError(f"fold has shape {fold.shape}; need one label per star ({residual.shape[0]},)")
    labels = np.unique(fold)
    if labels.size < 2:
        raise ValueError("cross_fitted_sigma needs at least two folds")
    total = np.full(residual.shape, np.nan)
    for k in labels:
        held = fold == k
        train_sed = None if sed is None else np.asarray(sed)[~held]
        model = fit_discrepancy(residual[~held], sigma_net=sigma[~held], sed=train_sed, **fit_kwargs)
        total[held] = model.sigma_parts(sigma[held], sed=None if sed is None else np.asarray(sed)[held])[0]
    return total


def coverage(residual, *, sigma, wave=OUTPUT_WAVE, bands=None, pixels=None) -> dict:
    """Fraction of finite values with ``|r| / sigma < 1`` per band (0.683 for a calibrated sigma).

    A thin layer over :func:`lamost2csst.core.metrics.calibration_statistics` (which computes the
    fraction) that adds the number of values per band and an optional pixel selection.

    Parameters
    ----------
    residual, sigma : array_like (n_star, n_pixel)
        Relative residuals (NaN = no value) and relative 1-sigma (> 0 where r is finite).
    wave : array_like (n_pixel,)
    bands : dict, optional
        ``{name: (lo, hi)}`` in A; :data:`lamost2csst.core.grids.BANDS` (GU, GV, GI) by default.
    pixels : array_like of bool (n_pixel,), optional
        Count only these pixels, e.g. ``ModelDiscrepancy.fitted`` for a band's covered part.

    Returns
    -------
    dict
        ``{band: {"within1sigma": fraction (NaN without values), "n_values": int}}``.
    """
    residual, sigma, wave = _check_pair(residual, sigma, wave, name="sigma")
    if pixels is not None:
        pixels = np.asarray(pixels, dtype=bool)
        if pixels.shape != wave.shape:
            raise ValueError(f"pixels has shape {pixels.shape}; need ({wave.size},)")
        residual = np.where(pixels, residual, np.nan)
    bands = BANDS if bands is None else bands
    stats = calibration_statistics(residual, sigma, wave=wave, bands=bands)
    out = {}
    for j, (band, lo_hi) in enumerate(bands.items()):
        n = int(np.count_nonzero(np.isfinite(residual[:, band_pixels(wave, lo_hi)])))
        out[band] = {"within1sigma": float(stats.within_1sigma[0, j]), "n_values": n}
    return out
