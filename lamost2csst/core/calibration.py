"""Monte Carlo of the flux-calibration precision of the flat cube (paper Sect. 5).

Following the paper (after Yuan et al. 2021): ``n_stars`` flux-standard stars with predicted
SEDs are observed once each at random positions of one detector per band; the large-scale
flat is fitted with a 2D polynomial per wavelength from the ratios observed / (scale x
predicted SED); the precision is the rms over the detector of (fitted flat / true flat - 1),
summarized per band as the median over the band's wavelengths and over realizations.

The stars' predicted SEDs carry their real errors: ``sed_pred`` and ``sigma_pred`` are the
network's outputs for stars whose true SEDs ``sed_true`` are known (the demo catalogue).
Everything here is numpy on arrays; a caller may pass a ``mapper`` that runs the
realizations elsewhere (the job: on its Dask workers), with identical results.
"""

from __future__ import annotations

import numpy as np

from lamost2csst.core.flatfield import design_matrix, normal_equations, ratios, solve
from lamost2csst.core.grids import BANDS
from lamost2csst.core.slitless import DETECTOR_SHAPE, default_throughput, injected_response, observe_slitless

__all__ = ["band_medians", "monte_carlo_flat_precision", "realization_rms"]


def realization_rms(
    sed_pred,
    sigma_pred,
    sed_true,
    *,
    band: str,
    realization: int,
    seed: int = 0,
    n_stars: int = 400,
    order: int = 2,
    mag_range=(12.0, 16.0),
    exposure: float = 150.0,
    amplitude: float = 0.03,
    max_order: int | None = None,
    scale_error: float = 0.0,
    grid_points: int = 16,
) -> np.ndarray:
    """One Monte Carlo realization in one band: the rms of (fitted / true flat - 1) per wavelength.

    Its random numbers come from ``numpy.random.default_rng([seed, band index, realization])``
    alone, so that realizations can run in any order, on any number of workers, with
    identical results. Arguments as :func:`monte_carlo_flat_precision`.
    """
    max_order = order if max_order is None else max_order
    rng = np.random.default_rng([seed, list(BANDS).index(band), realization])
    ny, nx = DETECTOR_SHAPE
    g = np.linspace(0, 1, grid_points)
    gy, gx = np.meshgrid(g * (ny - 1), g * (nx - 1), indexing="ij")
    grid_design = design_matrix(gx.ravel(), gy.ravel(), order=order, shape=DETECTOR_SHAPE)
    throughput = default_throughput(band)
    inside = throughput > 0
    truth = injected_response(
        gx.ravel(), gy.ravel(), band=band, detector=0, amplitude=amplitude, max_order=max_order
    )[:, inside]  # mean 1 over the detector, like c_00
    pool = sed_pred.shape[0]
    pick = rng.choice(pool, n_stars, replace=pool < n_stars)
    x, y = rng.uniform(0, nx - 1, n_stars), rng.uniform(0, ny - 1, n_stars)
    scale = 50.0 * 10.0 ** (-0.4 * (rng.uniform(*mag_range, n_stars) - 15.0))
    flat = injected_response(x, y, band=band, detector=0, amplitude=amplitude, max_order=max_order)
    flux, error = observe_slitless(
        sed_true[pick],
        scale=scale,
        throughput=throughput,
        flat=flat,
        exposure=np.full(n_stars, exposure),
        rng=rng,
    )
    known = scale * (1.0 + rng.normal(0.0, scale_error, n_stars)) if scale_error > 0 else scale
    r, w = ratios(
        flux[:, inside],
        error[:, inside],
        scale=known,
        sed=sed_pred[pick][:, inside],
        sigma=sigma_pred[pick][:, inside],
    )
    fit = solve(
        normal_equations(design_matrix(x, y, order=order, shape=DETECTOR_SHAPE), r, w), min_obs=order + 2
    )
    fitted = (grid_design @ fit.coeffs.T) / fit.coeffs[:, 0]
    return np.sqrt(np.mean((fitted / truth - 1.0) ** 2, axis=0))  # (n_wave_in_band,)


def _serial(func, pool, items):
    return [func(*pool, **item) for item in items]


def monte_carlo_flat_precision(
    sed_pred,
    sigma_pred,
    sed_true,
    *,
    n_stars: int = 400,
    order: int = 2,
    realizations: int = 20,
    seed: int = 0,
    mag_range=(12.0, 16.0),
    exposure: float = 150.0,
    amplitude: float = 0.03,
    max_order: int | None = None,
    scale_error: float = 0.0,
    grid_points: int = 16,
    mapper=None,
) -> dict[str, dict]:
    """Typical flat precision per band: ``{band: {"median", "p16", "p84", "n_wave"}}``.

    Parameters
    ----------
    sed_pred, sigma_pred, sed_true : array_like (n_pool, n_wave)
        Predictions (and their relative sigmas) and the true SEDs of a pool of stars; each
        realization draws ``n_stars`` of them (without replacement when the pool is large
        enough).
    n_stars, order, realizations : int
        Stars per fit, polynomial order, Monte Carlo realizations.
    seed : int
        Root seed; realization ``r`` of band ``b`` uses ``default_rng([seed, b, r])``.
    max_order : int, optional
        Highest total degree of the injected flat (default: ``order``, so that the fit can
        represent it and the result measures noise and SED errors, not model misfit).
    scale_error : float
        Relative error of each star's known absolute scale.
    mapper : callable, optional
        ``mapper(func, pool, items) -> list``: runs ``func(*pool, **item)`` for every item
        (one per band and realization), e.g. on Dask workers; default: a loop here. The
        result does not depend on the mapper.
    """
    sed_pred = np.asarray(sed_pred, dtype=np.float64)
    sigma_pred = np.asarray(sigma_pred, dtype=np.float64)
    sed_true = np.asarray(sed_true, dtype=np.float64)
    if not sed_pred.shape == sigma_pred.shape == sed_true.shape or sed_pred.ndim != 2:
        raise ValueError("sed_pred, sigma_pred and sed_true must be (n_pool, n_wave) arrays of one shape")
    if not np.all(np.isfinite(sed_pred) & np.isfinite(sigma_pred) & np.isfinite(sed_true)):
        raise ValueError("the pool must hold finite predictions, sigmas and true SEDs (drop flagged stars)")
    if int(realizations) != realizations or realizations < 1:
        raise ValueError(f"realizations must be a positive integer, got {realizations!r}")
    common = {
        "seed": seed,
        "n_stars": n_stars,
        "order": order,
        "mag_range": tuple(mag_range),
        "exposure": exposure,
        "amplitude": amplitude,
        "max_order": max_order,
        "scale_error": scale_error,
        "grid_points": grid_points,
    }
    items = [{"band": band, "realization": r, **common} for band in BANDS for r in range(realizations)]
    rms_all = (mapper or _serial)(realization_rms, (sed_pred, sigma_pred, sed_true), items)
    results = {}
    for i, band in enumerate(BANDS):
        rms = np.array(rms_all[i * realizations : (i + 1) * realizations])
        per_wave = np.nanmedian(rms, axis=0)
        results[band] = {
            "median": float(np.nanmedian(per_wave)),
            "p16": float(np.nanpercentile(rms, 16)),
            "p84": float(np.nanpercentile(rms, 84)),
            "n_wave": int(rms.shape[1]),
        }
    return results


def band_medians(rows) -> dict[str, float]:
    """Per band, the median over ``rows`` (dicts band -> value, e.g. one per realization), in the
    first row's band order."""
    return {band: float(np.median([row[band] for row in rows])) for band in rows[0]}
