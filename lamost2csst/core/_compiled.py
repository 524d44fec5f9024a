"""Compiled (numba) kernels of the resampling onto the network grid from a log-uniform input grid.

The common survey case -- LAMOST's log-uniform grid, one redshift per star, onto
``INPUT_WAVE`` -- has no fixed linear operator (each star's pixel weights differ), and
done as numpy array passes it runs at ~2-5 % of the memory-bandwidth bound (see
BENCHMARKS.md). These kernels (flux-conserving rebinning, and cubic convolution followed
by the continuum normalization) compute the same quantities as the numpy reference path of
:mod:`lamost2csst.core.resampling` in one pass per star (float64 arithmetic, results cast
to the output precision); tests compare the two paths.

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

__all__ = [
    "AVAILABLE",
    "count_bad_unmasked",
    "fill_masked",
    "prepare_uniform",
    "prepare_uniform_cubic",
    "rebin_uniform",
]


def _check_row(
    s, flux, ivar, mask, with_ivar, with_mask, in_width, row_good, row_flux, row_var, problems
):  # pragma: no cover - compiled
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


def _rebin_row(
    shift_s,
    inv_stretch_s,
    base,
    dln,
    ratio,
    tolerance,
    n_taps,
    inv_out_width,
    row_good,
    row_flux,
    row_var,
    with_var,
    index,
    frac,
    valid,
    out_flux,
    out_var,
    out_mask,
):  # pragma: no cover
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


def _rebin_uniform(
    base,
    shift,
    dln,
    ratio,
    tolerance,
    n_taps,
    in_width,
    inv_out_width,
    inv_stretch,
    flux,
    ivar,
    mask,
    out_flux,
    out_var,
    out_mask,
):  # pragma: no cover - compiled
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
        _rebin_row(
            shift_s,
            inv_stretch_s,
            base,
            dln,
            ratio,
            tolerance,
            n_taps,
            inv_out_width,
            row_good,
            row_flux,
            row_var,
            with_ivar,
            index,
            frac,
            valid,
            out_flux[s],
            out_var[s] if with_ivar else out_flux[s],
            out_mask[s],
        )
    return problems


def _prepare_uniform(
    base,
    shift,
    dln,
    ratio,
    tolerance,
    n_taps,
    in_width,
    inv_out_width,
    inv_stretch,
    flux,
    ivar,
    mask,
    half_window,
    out_flux,
    out_error,
    out_mask,
):  # pragma: no cover - compiled
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
        _rebin_row(
            shift_s,
            inv_stretch_s,
            base,
            dln,
            ratio,
            tolerance,
            n_taps,
            inv_out_width,
            row_good,
            in_flux,
            in_var,
            True,
            index,
            frac,
            valid,
            row_flux,
            out_var,
            row_mask,
        )
        _normalize_row(
            row_flux,
            out_var,
            row_mask,
            half_window,
            prefix_flux,
            prefix_count,
            out_flux[s],
            out_error[s],
            out_mask[s],
        )
    return problems


def _normalize_row(
    row_flux, row_var, row_mask, half_window, prefix_flux, prefix_count, out_flux, out_error, out_mask
):  # pragma: no cover - compiled
    """Sect. 2.1 continuum normalization of one resampled star (flux, variance, mask) into ``out_*``."""
    n_out = row_flux.shape[0]
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
        out_mask[i] = unusable
        out_flux[i] = np.nan if unusable else row_flux[i] * inverse
        out_error[i] = np.nan if unusable else np.sqrt(row_var[i]) * inverse


def _keys(x):  # pragma: no cover - compiled
    """Keys' cubic convolution kernel, a = -1/2."""
    x = abs(x)
    if x <= 1.0:
        return (1.5 * x - 2.5) * x * x + 1.0
    if x < 2.0:
        return ((-0.5 * x + 2.5) * x - 4.0) * x + 2.0
    return 0.0


def _cubic_row(
    shift_s, base, tolerance, row_good, row_flux, row_var, position, out_flux, out_var, out_mask
):  # pragma: no cover - compiled
    """Keys cubic convolution (a = -1/2) of one star at the output centres ``base + shift_s``
    (input-centre index units); variances ``sum w**2 var``; the rules of ``_cubic_taps``."""
    n_src = row_good.shape[0]
    n_out = base.shape[0]
    last = n_src - 1
    # pass 1 (vectorizable): snapped positions
    for j in range(n_out):
        p = base[j] + shift_s
        nearest = np.floor(p + 0.5)
        position[j] = nearest if abs(p - nearest) < tolerance else p
    # the positions increase with j: the pixels whose four centres lie inside the grid are
    # one stretch lo <= j < hi; the others (at most a few at each end) take the general path
    lo = 0
    while lo < n_out and position[lo] < 1.0:
        lo += 1
    hi = n_out
    while hi > lo and position[hi - 1] >= last - 1.0:
        hi -= 1
    # pass 2 (the stretch): straight-line code, Catmull-Rom form of the kernel at 1 + t, t, 1 - t, 2 - t
    for j in range(lo, hi):
        p = position[j]
        i = int(p)
        t = p - i
        first = i - 1
        w0 = ((-0.5 * t + 1.0) * t - 0.5) * t
        w1 = (1.5 * t - 2.5) * t * t + 1.0
        w2 = ((-1.5 * t + 2.0) * t + 0.5) * t
        w3 = (0.5 * t - 0.5) * t * t
        # inside (0, 1) the four weights are all non-zero; at t = 0 only the centre tap counts
        bad = (not row_good[first + 1]) | (
            (t != 0.0) & ((not row_good[first]) | (not row_good[first + 2]) | (not row_good[first + 3]))
        )
        acc = (
            w0 * row_flux[first]
            + w1 * row_flux[first + 1]
            + w2 * row_flux[first + 2]
            + w3 * row_flux[first + 3]
        )
        acc_var = (
            w0 * w0 * row_var[first]
            + w1 * w1 * row_var[first + 1]
            + w2 * w2 * row_var[first + 2]
            + w3 * w3 * row_var[first + 3]
        )
        out_mask[j] = bad
        out_flux[j] = np.nan if bad else acc
        out_var[j] = 0.0 if bad else acc_var
    # the ends: taps moved inside the grid; covered only on an input centre
    for k in range(lo + n_out - hi):
        j = k if k < lo else hi + (k - lo)
        p = position[j]
        valid = (p >= 0.0) & (p <= last)
        p = min(max(p, 0.0), float(last))
        index = int(np.floor(p))
        first = min(max(index - 1, 0), last - 3)
        bad = not (valid and ((index >= 1 and index + 2 <= last) or p == index))
        acc = 0.0
        acc_var = 0.0
        for d in range(4):
            w = _keys(p - (first + d))
            bad |= (w != 0.0) & (not row_good[first + d])
            acc += w * row_flux[first + d]
            acc_var += w * w * row_var[first + d]
        out_mask[j] = bad
        out_flux[j] = np.nan if bad else acc
        out_var[j] = 0.0 if bad else acc_var


def _prepare_uniform_cubic(
    base, shift, tolerance, flux, ivar, mask, half_window, out_flux, out_error, out_mask
):  # pragma: no cover - compiled
    """Cubic-convolution resampling (flux and variance) then continuum normalization of each star.

    ``base`` are the output centres in input-centre index units before the shift, ``shift``
    (n_star,) or (1,) is ln(1 + z) in input pixels. Returns the bad-value counts of
    :func:`_check_row` (all 0 = valid input).
    """
    n_out, n_src = base.shape[0], flux.shape[1]
    ones = np.ones(n_src, np.float64)
    row_good = np.zeros(n_src, np.bool_)
    in_flux = np.zeros(n_src, np.float64)
    in_var = np.zeros(n_src, np.float64)
    row_flux = np.empty(n_out, np.float64)
    row_var = np.empty(n_out, np.float64)
    row_mask = np.empty(n_out, np.bool_)
    position = np.empty(n_out, np.float64)
    prefix_flux = np.zeros(n_out + 2 * half_window + 1, np.float64)
    prefix_count = np.zeros(n_out + 2 * half_window + 1, np.float64)
    problems = np.zeros(3, np.int64)
    with_mask = mask.shape[0] > 0
    for s in range(flux.shape[0]):
        _check_row(s, flux, ivar, mask, True, with_mask, ones, row_good, in_flux, in_var, problems)
        shift_s = shift[s] if shift.shape[0] > 1 else shift[0]
        _cubic_row(shift_s, base, tolerance, row_good, in_flux, in_var, position, row_flux, row_var, row_mask)
        _normalize_row(
            row_flux,
            row_var,
            row_mask,
            half_window,
            prefix_flux,
            prefix_count,
            out_flux[s],
            out_error[s],
            out_mask[s],
        )
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


def _count_bad_unmasked(flux, error, mask):  # pragma: no cover - compiled
    """The number of unmasked pixels with NaN/inf flux or error, or error <= 0 (the check of
    :func:`_fill_masked` without its outputs)."""
    n_bad = 0
    for s in range(flux.shape[0]):
        for i in range(flux.shape[1]):
            if not mask[s, i]:
                f = flux[s, i]
                e = error[s, i]
                n_bad += not (np.isfinite(f) and np.isfinite(e) and e > 0.0)
    return n_bad


_FLAGS = dict(
    nogil=True, cache=True, error_model="numpy", fastmath={"contract", "reassoc", "arcp", "nsz"}
)  # NaN semantics kept
if AVAILABLE:
    _check_row = numba.njit(**_FLAGS)(_check_row)
    _rebin_row = numba.njit(**_FLAGS)(_rebin_row)
    rebin_uniform = numba.njit(**_FLAGS)(_rebin_uniform)
    _normalize_row = numba.njit(**_FLAGS)(_normalize_row)
    _keys = numba.njit(**_FLAGS)(_keys)
    _cubic_row = numba.njit(**_FLAGS)(_cubic_row)
    prepare_uniform = numba.njit(**_FLAGS)(_prepare_uniform)
    prepare_uniform_cubic = numba.njit(**_FLAGS)(_prepare_uniform_cubic)
    fill_masked = numba.njit(**_FLAGS)(_fill_masked)
    count_bad_unmasked = numba.njit(**_FLAGS)(_count_bad_unmasked)
else:  # pragma: no cover
    rebin_uniform = prepare_uniform = prepare_uniform_cubic = fill_masked = count_bad_unmasked = None
