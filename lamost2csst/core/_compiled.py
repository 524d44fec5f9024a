"""Compiled (numba) kernel of the flux-conserving rebinning on a log-uniform input grid.

The common survey case -- LAMOST's log-uniform grid, one redshift per star, onto
``INPUT_WAVE`` -- has no fixed linear operator (each star's pixel weights differ), and
done as numpy array passes it runs at ~2-5 % of the memory-bandwidth bound (see
BENCHMARKS.md). This kernel computes exactly the same quantities as the numpy reference
path of :mod:`lamost2csst.core.resampling` in one pass per star (float64 arithmetic,
results cast to the output precision); a test compares the two paths.

numba is optional: without it (or with ``LAMOST2CSST_NO_NUMBA=1``) the numpy path runs.
The kernels release the GIL, so Dask's threads run them in parallel. They also check the
pixel values (the checks of :func:`~lamost2csst.core._validate.good_pixels`) and return
counts of bad values; the caller raises the same ValueError as the numpy path.
"""

from __future__ import annotations

import os

import numpy as np

try:  # pragma: no cover - exercised where numba is installed
    if os.environ.get("LAMOST2CSST_NO_NUMBA", "") not in ("", "0"):
        raise ImportError("disabled by LAMOST2CSST_NO_NUMBA")
    import numba

    AVAILABLE = True
except ImportError:  # pragma: no cover
    numba = None
    AVAILABLE = False

__all__ = ["AVAILABLE", "fill_masked", "prepare_uniform", "rebin_uniform"]


def _check_row(s, flux, ivar, mask, with_ivar, with_mask, in_width, row_good, row_flux, row_var,
               problems):  # pragma: no cover - compiled
    """Usable pixels of star ``s`` and their pixel integrals; counts bad values into ``problems``.

    ``row_flux = flux * d_lambda`` and ``row_var = var * d_lambda**2`` on usable pixels, 0
    elsewhere (the rows are longer than the spectrum: the padding stays 0 and unusable).
    problems: [non-finite ivar, negative ivar, non-finite flux on a usable pixel].
    Written without branches so that the compiler vectorizes it.
    """
    n_src = flux.shape[1]
    n_nonfinite = 0
    n_negative = 0
    n_bad_flux = 0
    for i in range(n_src):
        ok = True
        if with_mask:
            ok = not mask[s, i]
        width = in_width[i]
        if with_ivar:
            iv = np.float64(ivar[s, i])
            finite = np.isfinite(iv)
            n_nonfinite += not finite
            n_negative += iv < 0.0
            ok = ok & finite & (iv > 0.0)
            inverse = width * width / iv
            row_var[i] = inverse if ok else 0.0
        value = np.float64(flux[s, i])
        bad_flux = ok & (not np.isfinite(value))
        n_bad_flux += bad_flux
        ok = ok & (not bad_flux)
        row_good[i] = ok
        row_flux[i] = value * width if ok else 0.0
    problems[0] += n_nonfinite
    problems[1] += n_negative
    problems[2] += n_bad_flux


def _rebin_row(shift_s, inv_stretch_s, base, dln, ratio, tolerance, n_taps, inv_out_width, row_good, row_flux,
               row_var, with_var, index, frac, valid, out_flux, out_var, out_mask):  # pragma: no cover
    """Rebin one star's pixel integrals (from :func:`_check_row`) into ``out_*`` (variances)."""
    n_src = row_good.shape[0] - n_taps  # the rows carry n_taps unusable padding pixels
    n_edge = base.shape[0]
    last = float(n_src)
    # pass 1 (vectorizable): input pixel and wavelength fraction below each output edge
    for e in range(n_edge):
        p = base[e] + shift_s
        valid[e] = (p > -tolerance) & (p < last + tolerance)
        p = min(max(p, 0.0), last)
        nearest = np.floor(p + 0.5)
        p = nearest if abs(p - nearest) < tolerance else p  # snap onto coinciding input edges
        i = np.floor(p)
        t = p - i
        x = t * dln
        frac[e] = t * (1.0 + x * (0.5 + x * (1.0 / 6.0 + x * (1.0 / 24.0 + x * (1.0 / 120.0))))) * ratio
        index[e] = int(i)
    # pass 2: overlaps of each output pixel with its n_taps input pixels
    taps = 3 if n_taps == 3 else n_taps  # a literal 3 lets the compiler unroll the common case
    for j in range(n_edge - 1):
        ia = index[j]
        fa = frac[j]
        hi = (index[j + 1] - ia) + frac[j + 1]
        acc = 0.0
        acc_var = 0.0
        bad = not (valid[j] and valid[j + 1])
        for d in range(taps):  # fixed trip count, weights clipped to [0, 1], no branches
            w = min(max(min(hi - d, 1.0) - (fa if d == 0 else 0.0), 0.0), 1.0)
            i = ia + d
            bad |= (w > 0.0) & (not row_good[i])
            acc += w * row_flux[i]
            if with_var:
                acc_var += w * w * row_var[i]
        norm = inv_stretch_s * inv_out_width[j]
        out_mask[j] = bad
        out_flux[j] = np.nan if bad else acc * norm
        if with_var:
            out_var[j] = 0.0 if bad else acc_var * norm * norm


def _rebin_uniform(base, shift, dln, ratio, tolerance, n_taps, in_width, inv_out_width, inv_stretch, flux, ivar,
                   mask, out_flux, out_var, out_mask):  # pragma: no cover - compiled
    """Rebin every star; returns the bad-value counts of :func:`_check_row` (all 0 = valid)."""
    n_edge, n_src = base.shape[0], flux.shape[1]
    index = np.empty(n_edge, np.int64)
    frac = np.empty(n_edge, np.float64)
    valid = np.empty(n_edge, np.bool_)
    row_good = np.zeros(n_src + n_taps, np.bool_)
    row_flux = np.zeros(n_src + n_taps, np.float64)
    row_var = np.zeros(n_src + n_taps, np.float64)
    problems = np.zeros(3, np.int64)
    with_ivar, with_mask = ivar.shape[0] > 0, mask.shape[0] > 0
    for s in range(flux.shape[0]):
        _check_row(s, flux, ivar, mask, with_ivar, with_mask, in_width, row_good, row_flux, row_var, problems)
        shift_s = shift[s] if shift.shape[0] > 1 else shift[0]
        inv_stretch_s = inv_stretch[s] if inv_stretch.shape[0] > 1 else inv_stretch[0]
        _rebin_row(shift_s, inv_stretch_s, base, dln, ratio, tolerance, n_taps, inv_out_width, row_good, row_flux,
                   row_var, with_ivar, index, frac, valid, out_flux[s],
                   out_var[s] if with_ivar else out_flux[s], out_mask[s])
    return problems


def _prepare_uniform(base, shift, dln, ratio, tolerance, n_taps, in_width, inv_out_width, inv_stretch, flux, ivar,
                     mask, half_window, out_flux, out_error, out_mask):  # pragma: no cover - compiled
    """Rebin (flux and variance) then continuum-normalize each star, all in row buffers.

    Returns the bad-value counts of :func:`_check_row` (all 0 = valid input).
    """
    n_edge, n_src = base.shape[0], flux.shape[1]
    n_out = n_edge - 1
    index = np.empty(n_edge, np.int64)
    frac = np.empty(n_edge, np.float64)
    valid = np.empty(n_edge, np.bool_)
    row_good = np.zeros(n_src + n_taps, np.bool_)
    in_flux = np.zeros(n_src + n_taps, np.float64)
    in_var = np.zeros(n_src + n_taps, np.float64)
    row_flux = np.empty(n_out, np.float64)
    out_var = np.empty(n_out, np.float64)
    row_mask = np.empty(n_out, np.bool_)
    prefix_flux = np.zeros(n_out + 2 * half_window + 1, np.float64)
    prefix_count = np.zeros(n_out + 2 * half_window + 1, np.float64)
    problems = np.zeros(3, np.int64)
    with_mask = mask.shape[0] > 0
    for s in range(flux.shape[0]):
        _check_row(s, flux, ivar, mask, True, with_mask, in_width, row_good, in_flux, in_var, problems)
        shift_s = shift[s] if shift.shape[0] > 1 else shift[0]
        inv_stretch_s = inv_stretch[s] if inv_stretch.shape[0] > 1 else inv_stretch[0]
        _rebin_row(shift_s, inv_stretch_s, base, dln, ratio, tolerance, n_taps, inv_out_width, row_good, in_flux,
                   in_var, True, index, frac, valid, row_flux, out_var, row_mask)
        # window sums from prefix sums over zero-padded buffers: the serial part is one
        # cumulative loop, the per-pixel part vectorizes
        total = 0.0
        count = 0.0
        for k in range(n_out + 2 * half_window):
            p = k - half_window
            usable = (p >= 0) and (p < n_out) and (not row_mask[min(max(p, 0), n_out - 1)])
            total += row_flux[min(max(p, 0), n_out - 1)] if usable else 0.0
            count += 1.0 if usable else 0.0
            prefix_flux[k + 1] = total
            prefix_count[k + 1] = count
        width = 2 * half_window + 1
        for i in range(n_out):
            n_good = prefix_count[i + width] - prefix_count[i]
            continuum = (prefix_flux[i + width] - prefix_flux[i]) / n_good if n_good > 0.5 else 0.0
            unusable = row_mask[i] | (not (continuum > 0.0))
            inverse = 1.0 / continuum
            out_mask[s, i] = unusable
            out_flux[s, i] = np.nan if unusable else row_flux[i] * inverse
            out_error[s, i] = np.nan if unusable else np.sqrt(out_var[i]) * inverse
    return problems


def _fill_masked(flux, error, mask, masked_error, out_flux, out_error):  # pragma: no cover - compiled
    """Network arrays in one pass: masked pixels -> (1, masked_error); returns the number of
    unmasked pixels with NaN/inf flux or error, or error <= 0 (the caller raises)."""
    n_bad = 0
    for s in range(flux.shape[0]):
        for i in range(flux.shape[1]):
            if mask[s, i]:
                out_flux[s, i] = 1.0
                out_error[s, i] = masked_error
            else:
                f = flux[s, i]
                e = error[s, i]
                n_bad += not (np.isfinite(f) and np.isfinite(e) and e > 0.0)
                out_flux[s, i] = f
                out_error[s, i] = e
    return n_bad


_FLAGS = dict(nogil=True, cache=True, error_model="numpy", fastmath={"contract", "reassoc", "arcp", "nsz"})  # NaN semantics kept
if AVAILABLE:
    _check_row = numba.njit(**_FLAGS)(_check_row)
    _rebin_row = numba.njit(**_FLAGS)(_rebin_row)
    rebin_uniform = numba.njit(**_FLAGS)(_rebin_uniform)
    prepare_uniform = numba.njit(**_FLAGS)(_prepare_uniform)
    fill_masked = numba.njit(**_FLAGS)(_fill_masked)
else:  # pragma: no cover
    rebin_uniform = prepare_uniform = fill_masked = None
