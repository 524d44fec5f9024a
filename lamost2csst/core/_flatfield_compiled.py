"""Compiled (numba) kernel of the flat fit's per-element work on a block of observations.

For each (observation, wavelength) of a block, :func:`weigh_block` forms the ratio and its
weight (:func:`lamost2csst.core.flatfield.ratios`), clips it against the previous fit
(:func:`~lamost2csst.core.flatfield.clip_to_fit`) and adds the per-star sums of the
self-calibration (:func:`~lamost2csst.core.flatfield.scale_sums`) in one pass over memory,
with the same float64 operations in the same order per element (sums over wavelengths and
observations are sequential here: they differ from numpy's by round-off). The matrix sums
``A^T W A`` and ``A^T W r`` are then matrix products (BLAS) of the weights it writes.

numba is optional (:data:`lamost2csst.core._compiled.AVAILABLE`; ``LAMOST2CSST_NO_NUMBA=1``
turns it off): without it :mod:`lamost2csst.core.flatfield` runs the numpy path, and the
tests compare the two. The kernel releases the GIL.
"""

from __future__ import annotations

import numpy as np

from lamost2csst.core._compiled import AVAILABLE, numba

__all__ = ["AVAILABLE", "weigh_block"]


def _weigh_block(
    flux,
    error,
    sed,
    sigma,
    rows,
    where,
    scale,
    design,
    coeffs,
    limit,
    clip,
    self_calibrate,
    w_out,
    wr_out,
    n,
    rtr,
    sums,
):  # pragma: no cover - compiled
    """Weights ``w_out`` and ``w r`` (``wr_out``, both 0 where unused) of observations ``rows``.

    ``flux``, ``error`` (n_obs, n_wave) and ``sed``, ``sigma`` (n_pred, n_wave) are read at
    ``rows`` and ``where[rows]``; ``scale`` at ``rows``. With ``clip``, ratios further than
    ``limit`` (kappa x sigma scale, inf where none) rescaled sigma from the previous fit
    ``design @ coeffs`` (coeffs (n_terms, n_wave), NaN set to 0) get weight 0; with
    ``self_calibrate`` also ``sums[o] = (sum w' q R, sum w' R^2)`` (see ``scale_sums``).
    Adds the used ratios to ``n`` and ``w r^2`` to ``rtr``; returns the number clipped.
    """
    n_wave = flux.shape[1]
    n_terms = design.shape[1]
    model = np.zeros(n_wave)
    n_clipped = 0
    for o in range(rows.size):
        i = rows[o]
        p = where[i]
        s = scale[i]
        w_row = w_out[o]
        wr_row = wr_out[o]
        # one branch-free loop over the wavelengths (the compiler vectorizes it)
        for j in range(n_wave):
            m = s * np.float64(sed[p, j])
            r = np.float64(flux[i, j]) / m
            t = np.float64(error[i, j]) / m
            u = r * np.float64(sigma[p, j])
            var = t * t + u * u
            ok = (var > 0.0) & (var < np.inf) & (m > 0.0)
            w_row[j] = 1.0 / var if ok else 0.0
            wr_row[j] = r if ok else 0.0  # the ratio for now
        if clip:
            for j in range(n_wave):
                model[j] = 0.0
            for k in range(n_terms):
                c = design[o, k]
                for j in range(n_wave):
                    model[j] += c * coeffs[k, j]
            for j in range(n_wave):
                w = w_row[j]
                out = (w > 0.0) & (np.abs(wr_row[j] - model[j]) * np.sqrt(w) > limit[j])
                n_clipped += 1 if out else 0
                w_row[j] = 0.0 if out else w
            if self_calibrate:
                num = 0.0
                den = 0.0
                for j in range(n_wave):
                    if w_row[j] > 0.0 and np.isfinite(model[j]):
                        wq = w_row[j] / s**2
                        num += wq * (wr_row[j] * s) * model[j]
                        den += wq * model[j] * model[j]
                sums[o, 0] = num
                sums[o, 1] = den
        for j in range(n_wave):
            w = w_row[j]
            wr = w * wr_row[j]
            used = w > 0.0
            wr = wr if used else 0.0
            rtr[j] += wr * (wr_row[j] if used else 0.0)
            n[j] += 1 if used else 0
            wr_row[j] = wr
    return n_clipped


if AVAILABLE:  # pragma: no branch
    weigh_block = numba.njit(cache=True, nogil=True, error_model="numpy")(_weigh_block)
else:  # pragma: no cover
    weigh_block = None
