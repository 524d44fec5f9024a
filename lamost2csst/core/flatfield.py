"""Large-scale flats from star-by-star flux ratios: weighted 2D polynomial fits per wavelength.

For one detector and one wavelength, each observation ``o`` of a star gives a ratio
``r_o = observed flux / (predicted SED * scale)`` at the spectrum's position ``(x_o, y_o)``.
The large-scale flat is the smooth surface

    r(x, y) = sum_{i + j <= order} c_ij P_i(u) P_j(v),   u = 2 x / (nx - 1) - 1,  v likewise,

with Legendre polynomials ``P`` (well conditioned on [-1, 1]; ``numpy.polynomial.legendre``).
The coefficients minimise ``sum_o w_o (r_o - A_o c)^2`` with ``w_o = 1 / var(r_o)``.

Everything is expressed through the *normal equations* ``(A^T W A) c = A^T W r``: they are
sums over observations, so a survey's observations are reduced block by block (a Dask tree
reduction adds the blocks' matrices) and never gathered in one place. All functions are
vectorized over wavelengths: ratios and weights are (n_obs, n_wave); the design matrix
(n_obs, n_terms) is shared by all wavelengths of a detector.

A chunk of observations (:func:`chunk_equations`) is reduced group by group in blocks of
:data:`BLOCK_OBS` observations whose (n_obs, n_wave) temporaries stay in the CPU caches:
the ratios, weights, clipping and per-star sums of a block in one pass (the numba kernel of
:mod:`._flatfield_compiled`, or numpy), then ``A^T W A`` (its distinct entries only) and
``A^T W r`` as two float64 matrix products.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numpy.polynomial import legendre

from lamost2csst.core import _flatfield_compiled as _kernel
from lamost2csst.core.grids import BANDS
from lamost2csst.core.slitless import DETECTOR_SHAPE, DETECTORS_PER_BAND

__all__ = [
    "GROUPS",
    "REJECT_REASONS",
    "NormalEquations",
    "PolynomialFit",
    "add_star_sums",
    "chunk_equations",
    "clip_to_fit",
    "design_matrix",
    "evaluate",
    "initial_scales",
    "normal_equations",
    "normalized_flat",
    "outliers",
    "polynomial_terms",
    "ratios",
    "reduced_chi2",
    "rms_over_detector",
    "scale_sums",
    "solve",
    "sum_by_star",
    "truth_deviation",
    "updated_scales",
    "usable_observations",
]

GROUPS = [(band, d) for band in BANDS for d in range(DETECTORS_PER_BAND)]  # (band, detector) of every fit
#: Observations per block of :func:`chunk_equations`: a block's (n_obs, n_wave) float64
#: temporaries (~0.6 MB each for 574 wavelengths) stay in the CPU caches.
BLOCK_OBS = 128
_NUMPY_ONLY = False  # True: the numpy path even where numba is available (tests compare the two)
REJECT_REASONS = (
    "no_prediction",
    "flagged_prediction",
    "off_detector",
    "no_scale",
    "no_finite_flux",
    "bad_band",
)


def polynomial_terms(order: int) -> list[tuple[int, int]]:
    """The (i, j) Legendre degrees of a total-degree-``order`` 2D polynomial, in a fixed order."""
    if int(order) != order or order < 0:
        raise ValueError(f"order must be a non-negative integer, got {order!r}")
    return [(i, d - i) for d in range(order + 1) for i in range(d, -1, -1)]


def _normalized(x, size: float) -> np.ndarray:
    return 2.0 * np.asarray(x, dtype=np.float64) / (size - 1.0) - 1.0


def design_matrix(x, y, *, order: int, shape: tuple[int, int]) -> np.ndarray:
    """Legendre design matrix (n_obs, n_terms) at pixel positions on a detector of ``shape = (ny, nx)``.

    ``x`` in 0..nx-1 and ``y`` in 0..ny-1 map to [-1, 1]; positions off the detector are
    refused (the caller flags them before).
    """
    ny, nx = shape
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"x and y must be 1-D arrays of the same length, got {x.shape} and {y.shape}")
    if np.any(~np.isfinite(x) | ~np.isfinite(y) | (x < 0) | (x > nx - 1) | (y < 0) | (y > ny - 1)):
        raise ValueError(f"positions must lie on the detector (0 <= x <= {nx - 1}, 0 <= y <= {ny - 1})")
    full = legendre.legvander2d(_normalized(x, nx), _normalized(y, ny), [order, order])
    index = [i * (order + 1) + j for i, j in polynomial_terms(order)]
    return full[:, index]


class NormalEquations(NamedTuple):
    """Sums over observations, per wavelength: they add up over blocks of observations."""

    ata: np.ndarray  # (n_wave, n_terms, n_terms)  A^T W A
    atr: np.ndarray  # (n_wave, n_terms)           A^T W r
    rtr: np.ndarray  # (n_wave,)                   r^T W r (for chi^2)
    n: np.ndarray  # (n_wave,)                     observations used

    def __add__(self, other: NormalEquations) -> NormalEquations:  # type: ignore[override]
        return NormalEquations(
            self.ata + other.ata, self.atr + other.atr, self.rtr + other.rtr, self.n + other.n
        )

    @classmethod
    def zeros(cls, n_wave: int, n_terms: int) -> NormalEquations:
        return cls(
            np.zeros((n_wave, n_terms, n_terms)),
            np.zeros((n_wave, n_terms)),
            np.zeros(n_wave),
            np.zeros(n_wave, np.int64),
        )


class _Sums:
    """Running sums of the normal equations of a (band, detector) over blocks of observations.

    ``A^T W A`` is symmetric: only its ``n_terms (n_terms + 1) / 2`` distinct entries are
    summed, as one matrix product ``(a_k a_l)_{k <= l}^T W`` per block, (n_pairs, n_obs) @
    (n_obs, n_wave), in float64; the full matrices are made once, by :meth:`equations`.
    """

    def __init__(self, n_wave: int, n_terms: int):
        self.k, self.l = np.triu_indices(n_terms)
        self.upper = np.zeros((self.k.size, n_wave))
        self.atr = np.zeros((n_terms, n_wave))
        self.rtr = np.zeros(n_wave)
        self.n = np.zeros(n_wave, np.int64)

    def add(self, a: np.ndarray, r: np.ndarray, w: np.ndarray, used: np.ndarray) -> None:
        """Add a block: design ``a`` (n_obs, n_terms); ``r``, ``w`` (n_obs, n_wave) float64, both
        0 where not ``used`` (no checks here)."""
        wr = w * r
        self.add_products(a, w, wr)
        self.rtr += np.einsum("ow,ow->w", wr, r)
        self.n += np.count_nonzero(used, axis=0)

    def add_products(self, a: np.ndarray, w: np.ndarray, wr: np.ndarray) -> None:
        """Add a block's ``A^T W A`` and ``A^T W r`` from ``w`` and ``wr = w r`` (0 where unused)."""
        self.upper += (a[:, self.k] * a[:, self.l]).T @ w
        self.atr += a.T @ wr

    def equations(self) -> NormalEquations:
        n_terms, n_wave = self.atr.shape
        ata = np.empty((n_wave, n_terms, n_terms))
        ata[:, self.k, self.l] = self.upper.T
        ata[:, self.l, self.k] = self.upper.T
        return NormalEquations(ata, self.atr.T.copy(), self.rtr.copy(), self.n.copy())


def normal_equations(design, ratio, weight) -> NormalEquations:
    """Normal equations of one block of observations.

    Parameters
    ----------
    design : array_like (n_obs, n_terms)
    ratio, weight : array_like (n_obs, n_wave)
        Ratios and their weights (inverse variances); a NaN ratio or a weight of 0 means
        "not used at this wavelength" (NaN weights are refused).
    """
    a = np.asarray(design, dtype=np.float64)
    r = np.asarray(ratio, dtype=np.float64)
    w = np.asarray(weight, dtype=np.float64)
    if r.shape != w.shape or r.ndim != 2 or a.shape != (r.shape[0], a.shape[-1]):
        raise ValueError(f"design {a.shape}, ratio {r.shape} and weight {w.shape} do not match")
    if np.any(np.isnan(w)) or np.any(w < 0):
        raise ValueError("weights must be >= 0 (use 0 for unusable ratios), not NaN or negative")
    used = np.isfinite(r) & (w > 0)
    sums = _Sums(r.shape[1], a.shape[1])
    sums.add(a, np.where(used, r, 0.0), np.where(used, w, 0.0), used)
    return sums.equations()


class PolynomialFit(NamedTuple):
    """Solutions per wavelength; NaN (and ``fit = False``) where a wavelength could not be fitted."""

    coeffs: np.ndarray  # (n_wave, n_terms)
    covariance: np.ndarray  # (n_wave, n_terms, n_terms)
    chi2: np.ndarray  # (n_wave,)
    n: np.ndarray  # (n_wave,)
    fit: np.ndarray  # (n_wave,) bool


def solve(eq: NormalEquations, *, min_obs: int) -> PolynomialFit:
    """Coefficients and their covariance ``(A^T W A)^-1`` per wavelength.

    A wavelength with fewer than ``max(min_obs, n_terms + 1)`` observations, or a singular
    system (stars all on a line, ...), is marked ``fit = False`` with NaN coefficients.
    """
    n_wave, n_terms = eq.atr.shape
    coeffs = np.full((n_wave, n_terms), np.nan)
    cov = np.full((n_wave, n_terms, n_terms), np.nan)
    chi2 = np.full(n_wave, np.nan)
    fit = eq.n >= max(int(min_obs), n_terms + 1)
    if fit.any():
        idx = np.flatnonzero(fit)
        ata = eq.ata[idx]
        # condition check before inverting: a singular system is "unfit", not a LinAlgError
        conditioned = np.linalg.cond(ata) < 1e12
        idx, ata = idx[conditioned], ata[conditioned]
        fit[:] = False
        fit[idx] = True
        if idx.size:
            inverse = np.linalg.inv(ata)
            c = np.einsum("wkl,wl->wk", inverse, eq.atr[idx])
            coeffs[idx], cov[idx] = c, inverse
            # r^T W r - c^T A^T W r: the weighted sum of squared residuals at the solution
            chi2[idx] = eq.rtr[idx] - np.einsum("wk,wk->w", c, eq.atr[idx])
    return PolynomialFit(coeffs, cov, chi2, eq.n.copy(), fit)


def ratios(flux, error, *, scale, sed, sigma) -> tuple[np.ndarray, np.ndarray]:
    """Flux ratios ``flux / (scale * sed)`` and their weights (inverse variances), (n_obs, n_wave).

    The variance adds the observation's error and the prediction's relative sigma:
    ``var = (error / (scale sed))^2 + (ratio sigma)^2``. Unusable entries (NaN flux, sed or
    sigma; sed <= 0; scale not finite or <= 0) get a NaN ratio and weight 0.
    """
    flux = np.asarray(flux, dtype=np.float64)
    model = np.asarray(scale, dtype=np.float64)[:, None] * np.asarray(sed, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = flux / model
        var = (np.asarray(error, dtype=np.float64) / model) ** 2 + (
            ratio * np.asarray(sigma, dtype=np.float64)
        ) ** 2
        usable = np.isfinite(ratio) & np.isfinite(var) & (var > 0) & (model > 0)
        weight = np.where(usable, 1.0 / var, 0.0)
    return np.where(usable, ratio, np.nan), weight


def _weighted(flux, error, *, scale, sed, sigma) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`ratios` of a block as ``(ratio, weight, used)``, float64, ratio 0 (not NaN) where unused.

    The same operations in the same order (the same numbers where used), in place where
    possible: a finite positive variance implies a finite ratio, so ``used`` is
    ``0 < var < inf & model > 0``.
    """
    model = np.multiply(sed, scale[:, None], dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        ratio = np.divide(flux, model, dtype=np.float64)
        var = np.divide(error, model, dtype=np.float64)
        np.multiply(var, var, out=var)
        term = np.multiply(ratio, sigma, dtype=np.float64)
        np.multiply(term, term, out=term)
        var += term
        used = (var > 0) & (var < np.inf) & (model > 0)
        weight = np.where(used, np.divide(1.0, var, out=var), 0.0)
    return np.where(used, ratio, 0.0), weight, used


def outliers(ratio, weight, model, *, kappa: float, sigma_scale) -> np.ndarray:
    """True where ``|ratio - model| sqrt(weight) > kappa * sigma_scale`` (sigma clipping).

    ``sigma_scale`` (n_wave,) is ``sqrt(chi2 / dof)`` of the previous fit: it rescales the
    weights when the errors are under- or over-estimated.
    """
    with np.errstate(invalid="ignore"):
        z = np.abs(np.asarray(ratio) - np.asarray(model)) * np.sqrt(np.asarray(weight))
        return z > kappa * np.asarray(sigma_scale)[None, :]


def evaluate(coeffs, x, y, *, order: int, shape: tuple[int, int]) -> np.ndarray:
    """The fitted surfaces at positions ``(x, y)``: (n_obs, n_wave) from coeffs (n_wave, n_terms)."""
    return design_matrix(x, y, order=order, shape=shape) @ np.asarray(coeffs, dtype=np.float64).T


def reduced_chi2(fit: PolynomialFit, n_terms: int) -> np.ndarray:
    """``chi2 / max(n - n_terms, 1)`` per wavelength (NaN where unfit)."""
    return fit.chi2 / np.maximum(fit.n - n_terms, 1)


def clip_to_fit(
    design, ratio, weight, *, coeffs, sigma_scale, kappa: float
) -> tuple[np.ndarray, np.ndarray, int]:
    """Weights with the outliers of a previous fit set to 0: ``(weight, model, n_clipped)``.

    ``coeffs`` (n_wave, n_terms) and ``sigma_scale`` (n_wave,) are the previous fit's
    coefficients and ``sqrt(chi2 / dof)``; NaN coefficients (unfit wavelengths) count as 0
    and a NaN ``sigma_scale`` clips nothing. ``model`` is the previous fit at the
    observations, ``n_clipped`` the usable ratios (weight > 0) that were clipped.
    """
    model = design @ np.nan_to_num(coeffs).T
    clip = outliers(ratio, weight, model, kappa=kappa, sigma_scale=np.nan_to_num(sigma_scale, nan=np.inf))
    return np.where(clip, 0.0, weight), model, int((clip & (weight > 0)).sum())


def scale_sums(ratio, weight, model, *, scale) -> tuple[np.ndarray, np.ndarray]:
    """Per observation, the sums that update a star's scale against the flats ``model``.

    With the scale-free ratio ``q = r s`` (``s`` the scale that formed ``r``) and its weight
    ``w' = w / s^2``, minimizing ``sum w' (q - s' R)^2`` over a star's ``s'`` gives
    ``s' = sum w' q R / sum w' R^2``: this returns the numerator and denominator terms
    ``(sum_wave w' q R, sum_wave w' R^2)`` of each observation (n_obs,) each.
    """
    s_now = scale[:, None]
    good = (weight > 0) & np.isfinite(model) & np.isfinite(ratio)
    wq = np.where(good, weight / s_now**2, 0.0)
    q, m = np.where(good, ratio * s_now, 0.0), np.where(good, model, 0.0)
    return (wq * q * m).sum(axis=1), (wq * m * m).sum(axis=1)


def sum_by_star(obsid, numerator, denominator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(sorted unique obsid, numerator sums, denominator sums)`` over the rows of each star."""
    ids, inverse = np.unique(obsid, return_inverse=True)
    return (ids, *(np.bincount(inverse, values, minlength=ids.size) for values in (numerator, denominator)))


def add_star_sums(a, b) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The sum of two ``(obsid, numerator, denominator)`` tables of :func:`sum_by_star`."""
    return sum_by_star(*(np.concatenate([a[i], b[i]]) for i in range(3)))


def initial_scales(obsid, scale) -> tuple[np.ndarray, np.ndarray]:
    """``(sorted obsid, scale)`` to start a self-calibration: each star's first scale where finite
    and > 0, else the median of those (1 when there is none)."""
    ids, first = np.unique(obsid, return_index=True)
    start = scale[first]
    good = np.isfinite(start) & (start > 0)
    start = np.where(good, start, np.median(start[good]) if good.any() else 1.0)
    return ids, start


def updated_scales(current, sums) -> tuple[np.ndarray, np.ndarray]:
    """New per-star scales ``numerator / denominator`` from summed :func:`scale_sums`.

    ``current`` is ``(sorted obsid, scale)``, ``sums`` ``(obsid, numerator, denominator)``
    (obsid among the current ones). Stars without a finite positive estimate keep their
    scale; the result is rescaled to the median of ``current`` (the global level is
    degenerate with the flats).
    """
    ids, values = current
    new = values.copy()
    pos = np.searchsorted(ids, sums[0])
    with np.errstate(invalid="ignore", divide="ignore"):
        estimate = sums[1] / sums[2]
    good = np.isfinite(estimate) & (estimate > 0)
    new[pos[good]] = estimate[good]
    new *= np.median(values) / np.median(new)
    return ids, new


def normalized_flat(coeffs, covariance, design) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The flat normalized to mean 1 over the detector, its 1-sigma error, and the mean response.

    Parameters
    ----------
    coeffs : ndarray (n_band, n_detector, n_wave, n_terms)
        Legendre coefficients of the ratio surfaces (NaN where unfit).
    covariance : ndarray (n_band, n_detector, n_wave, n_terms, n_terms)
    design : ndarray (n_grid, n_terms)
        :func:`design_matrix` at the grid points.

    Returns
    -------
    flat, flat_error : ndarray (n_band, n_detector, n_wave, n_grid)
        ``surface / c_0`` (the mean of a Legendre surface over the detector is its constant
        term) and its error to first order in the coefficients' errors.
    mean_response : ndarray (n_band, n_detector, n_wave)
        ``c_0``.
    """
    n_terms = design.shape[1]
    mean_response = coeffs[..., 0]
    surface = np.einsum("gk,bdwk->bdwg", design, coeffs)
    flat = surface / mean_response[..., None]
    jac = design[None, None, None] - flat[..., None] * np.eye(n_terms)[0]  # d(surface/c0)/dc * c0
    flat_error = np.sqrt(np.einsum("bdwgk,bdwkl,bdwgl->bdwg", jac, covariance, jac)) / np.abs(
        mean_response[..., None]
    )
    return flat, flat_error, mean_response


def rms_over_detector(a) -> np.ndarray:
    """RMS over the last two axes ignoring NaN; NaN where all are NaN (no warnings: thread-safe)."""
    finite = np.isfinite(a)
    count = finite.sum(axis=(-2, -1))
    total = np.where(finite, a, 0.0) ** 2
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, np.sqrt(total.sum(axis=(-2, -1)) / count), np.nan)


def truth_deviation(*, fitted, true, flat_error, fit) -> dict | None:
    """Recovered vs injected flat of one band, medians over the fitted wavelengths.

    ``fitted``, ``true``, ``flat_error`` are (detector, wave, gy, gx), ``fit`` (detector, wave).
    Returns ``{"rms_deviation_median", "predicted_rms_median", "wavelengths_fit"}``: the median
    of the rms over the detector of ``fitted / true - 1``, that of ``flat_error``, and the
    number of (detector, wavelength) fits with a finite deviation; None when there is none.
    """
    with np.errstate(invalid="ignore"):
        dev = fitted / true - 1.0
    rms = rms_over_detector(dev)
    pred_rms = rms_over_detector(flat_error)
    ok = fit & np.isfinite(rms)
    if not ok.any():
        return None
    return {
        "rms_deviation_median": round(float(np.median(rms[ok])), 6),
        "predicted_rms_median": round(float(np.median(pred_rms[ok])), 6),
        "wavelengths_fit": int(ok.sum()),
    }


def usable_observations(obs: dict, *, found, flags, where, scale) -> tuple[np.ndarray, dict]:
    """Which observations can enter a flat fit, and how many were rejected per reason.

    ``obs`` holds per-observation ``band`` (str), ``detector`` (int), ``x``, ``y`` and ``flux``
    (n_obs, n_wave); ``found`` marks the observations with a prediction, ``flags[where[i]]``
    is observation ``i``'s prediction flags, ``scale`` its star's scale. Each observation is
    counted once, under the first of :data:`REJECT_REASONS` that applies: no prediction,
    flagged prediction, off the detector, no finite positive scale, no finite flux, unknown
    band or detector.
    """
    counts = {reason: 0 for reason in REJECT_REASONS}
    usable = found.copy()
    counts["no_prediction"] = int((~found).sum())
    pred_ok = np.zeros(found.size, bool)
    pred_ok[found] = flags[where[found]] == 0
    counts["flagged_prediction"] = int((found & ~pred_ok).sum())
    usable &= pred_ok
    ny, nx = DETECTOR_SHAPE
    x, y = obs["x"].astype(np.float64), obs["y"].astype(np.float64)
    on_detector = np.isfinite(x) & np.isfinite(y) & (x >= 0) & (x <= nx - 1) & (y >= 0) & (y <= ny - 1)
    counts["off_detector"] = int((usable & ~on_detector).sum())
    usable &= on_detector
    has_scale = np.isfinite(scale) & (scale > 0)
    counts["no_scale"] = int((usable & ~has_scale).sum())
    usable &= has_scale
    finite = np.isfinite(obs["flux"]).any(axis=1)
    counts["no_finite_flux"] = int((usable & ~finite).sum())
    usable &= finite
    detector = obs["detector"]
    known = np.isin(obs["band"], list(BANDS)) & (detector >= 0) & (detector < DETECTORS_PER_BAND)
    counts["bad_band"] = int((usable & ~known).sum())
    usable &= known
    return usable, counts


def _group_equations(
    obs: dict, rows, inputs: dict, *, order: int, fits, kappa: float, self_calibrate: bool
) -> tuple[dict, int, tuple]:
    """Normal equations per (band, detector) of the usable ``rows``, clipped ratios, star sums.

    Each group is reduced in blocks of :data:`BLOCK_OBS` observations: ratios, weights,
    clipping and sums of a block are computed while its (n_obs, n_wave) arrays are in cache
    (by the compiled kernel of :mod:`._flatfield_compiled` where numba is available).
    ``inputs`` holds ``sed``, ``sigma``, ``where`` and ``scale`` (see :func:`chunk_equations`).
    """
    groups, clipped, sums = {}, 0, ([], [], [])
    compiled = _kernel.AVAILABLE and not _NUMPY_ONLY
    block = _compiled_block if compiled else _numpy_block
    # the compiled path's block arrays, allocated once per chunk: fresh large arrays per block
    # cost page faults (Dask workers return freed memory to the system at once)
    n_wave = obs["flux"].shape[1]
    inputs = {**inputs, "buffers": (np.empty((BLOCK_OBS, n_wave)), np.empty((BLOCK_OBS, n_wave)))}
    # the rows of each group (in row order), by one sort of the group numbers (index in GROUPS)
    band_number = {b: i for i, b in enumerate(BANDS)}
    number = np.fromiter((band_number[b] for b in obs["band"][rows]), np.int64, rows.size)
    number = number * DETECTORS_PER_BAND + obs["detector"][rows]
    by_group = np.argsort(number, kind="stable")
    bounds = np.searchsorted(number[by_group], np.arange(len(GROUPS) + 1))
    for g, (b, d) in enumerate(GROUPS):
        sel = rows[by_group[bounds[g] : bounds[g + 1]]]
        if not sel.size:
            continue
        key = f"{b}-{d}"
        a = design_matrix(obs["x"][sel], obs["y"][sel], order=order, shape=DETECTOR_SHAPE)
        acc = _Sums(n_wave, a.shape[1])
        previous = fits.get(key) if fits is not None else None
        if compiled and previous is not None:  # the kernel's form of the previous fit, once per group
            previous = (
                np.ascontiguousarray(np.nan_to_num(previous[0]).T),
                kappa * np.nan_to_num(previous[1], nan=np.inf),
            )
        for lo in range(0, sel.size, BLOCK_OBS):
            i = sel[lo : lo + BLOCK_OBS]
            n_clipped, star = block(
                obs,
                inputs,
                i,
                a[lo : lo + BLOCK_OBS],
                acc,
                previous=previous,
                kappa=kappa,
                scales=self_calibrate,
            )
            clipped += n_clipped
            if star is not None:
                for part, values in zip(sums, (obs["obsid"][i], *star)):
                    part.append(values)
        groups[key] = acc.equations()
    return groups, clipped, sums


def _numpy_block(obs, inputs, i, a, acc: _Sums, *, previous, kappa: float, scales: bool):
    """One block, numpy path: ``(n_clipped, (num, den) or None)``; the sums go into ``acc``."""
    where, scale = inputs["where"][i], inputs["scale"][i]
    r, w, used = _weighted(
        obs["flux"][i], obs["error"][i], scale=scale, sed=inputs["sed"][where], sigma=inputs["sigma"][where]
    )
    n_clipped, star = 0, None
    if previous is not None:
        coeffs, sigma_scale = previous
        w, model, n_clipped = clip_to_fit(a, r, w, coeffs=coeffs, sigma_scale=sigma_scale, kappa=kappa)
        used = w > 0
        if scales:
            star = scale_sums(r, w, model, scale=scale)
    acc.add(a, r, w, used)
    return n_clipped, star


def _compiled_block(obs, inputs, i, a, acc: _Sums, *, previous, kappa: float, scales: bool):  # noqa: ARG001
    """One block, compiled path (:func:`._flatfield_compiled.weigh_block`): as :func:`_numpy_block`.

    ``previous`` is ``(coefficients (n_terms, n_wave) with NaN as 0, kappa x sigma scale with
    NaN as inf)`` (``kappa`` is in it already).
    """
    n_wave = acc.rtr.size
    clip = previous is not None
    if clip:
        coeffs_t, limit = previous
    else:
        coeffs_t, limit = np.zeros((a.shape[1], n_wave)), np.full(n_wave, np.inf)
    w, wr = (buffer[: i.size] for buffer in inputs["buffers"])
    star = np.zeros((i.size, 2))
    flux, error = (np.ascontiguousarray(obs[k]) for k in ("flux", "error"))
    sed, sigma = (np.ascontiguousarray(inputs[k]) for k in ("sed", "sigma"))
    n_clipped = _kernel.weigh_block(
        flux,
        error,
        sed,
        sigma,
        i,
        inputs["where"],
        inputs["scale"],
        np.ascontiguousarray(a),
        coeffs_t,
        limit,
        clip,
        clip and scales,
        w,
        wr,
        acc.n,
        acc.rtr,
        star,
    )
    acc.add_products(a, w, wr)
    return int(n_clipped), ((star[:, 0], star[:, 1]) if clip and scales else None)


def chunk_equations(
    obs: dict,
    *,
    found,
    flags,
    where,
    sed,
    sigma,
    scale,
    order: int,
    fits=None,
    kappa: float = 3.0,
    self_calibrate: bool = False,
) -> dict:
    """The flat-fit sums of a block of observations: what a tree reduction adds up.

    Parameters
    ----------
    obs : dict
        Per observation: ``obsid``, ``band`` (str), ``detector`` (int), ``x``, ``y``, and
        ``flux``, ``error`` (n_obs, n_wave).
    found, flags, where, sed, sigma
        The observations' predictions: ``found`` marks those with one; ``sed[where[i]]``,
        ``sigma[where[i]]`` and ``flags[where[i]]`` are observation ``i``'s.
    scale : ndarray (n_obs,)
        The absolute scale of each observation's star.
    order : int
        Total degree of the 2D Legendre polynomial.
    fits : dict, optional
        ``{"<band>-<detector>": (coeffs, sigma_scale)}`` of the previous iteration: ratios
        more than ``kappa`` rescaled sigma from it get weight 0.
    self_calibrate : bool
        Also return the per-star sums of :func:`scale_sums` against the previous fits.

    Returns
    -------
    dict
        ``counts`` (rejections per :data:`REJECT_REASONS`), ``clipped``, ``groups``
        (:class:`NormalEquations` per ``"<band>-<detector>"``) and ``star_sums``
        (:func:`sum_by_star`; empty without self-calibration or previous fits).
    """
    usable, counts = usable_observations(obs, found=found, flags=flags, where=where, scale=scale)
    result = {
        "counts": counts,
        "clipped": 0,
        "groups": {},
        "star_sums": (np.zeros(0, np.int64), np.zeros(0), np.zeros(0)),
    }
    rows = np.flatnonzero(usable)
    if rows.size:
        x, y = (np.asarray(obs[k], dtype=np.float64) for k in ("x", "y"))
        result["groups"], result["clipped"], sums = _group_equations(
            {**obs, "x": x, "y": y},
            rows,
            {"sed": sed, "sigma": sigma, "where": where, "scale": np.asarray(scale, dtype=np.float64)},
            order=order,
            fits=fits,
            kappa=kappa,
            self_calibrate=self_calibrate,
        )
        if sums[0]:
            result["star_sums"] = sum_by_star(*(np.concatenate(part) for part in sums))
    return result
