"""Resampling of spectra onto another wavelength grid, with inverse variances and masks.

Three methods, all vectorized over ``(n_star, n_pixel)``:

``"flux"`` (flux-conserving)
    Each output pixel is the average of the input flux density over the output pixel's
    extent in wavelength, the input being constant within each input pixel (the
    rebinning of ``SpectRes``, Carnall 2017). Integrated flux ``sum(flux * d_lambda)``
    is conserved over every stretch covered by whole output pixels. Pixel edges are the
    midpoints of the centres in ln lambda (see :func:`~lamost2csst.core.grids.pixel_edges`).
``"linear"``
    Linear interpolation in ln lambda between neighbouring input pixel centres.
``"cubic"``
    Cubic convolution interpolation in ln lambda (Keys 1981, a = -1/2: four input
    centres, exact for quadratics, third-order accurate). The values are the spectrum
    sampled at the output centres, the convention of the network's input grid (DESIGN.md:
    degraded spectra are *sampled* at the pixel centres). For R = 2000 spectra at LAMOST's
    ~2 pixels per resolution element, flux-conserving rebinning or linear interpolation
    smooth the line profiles measurably; cubic convolution keeps them (EVALUATION.md).
    An output pixel whose four centres do not all lie inside the input grid is not
    covered (unless it falls exactly on an input centre). The kernel works in input-pixel
    index units: exact for quadratics in ln lambda on log-uniform grids (LAMOST's); on
    other grids it interpolates in the pixel index.

Variances propagate as for independent input pixels: ``var_out = sum_i w_i**2 var_i``
with the weights ``w_i`` of the method (neighbouring output pixels that share an input
pixel become correlated; that covariance is not returned).

An output pixel is masked (``mask=True``, ``flux=NaN``, ``ivar=0``) when any input pixel
with non-zero weight is unusable (masked or ``ivar == 0``), or when the output pixel is
not entirely covered by the input grid. Nothing is extrapolated. Positions within 1e-7
pixel of an input edge (or centre) are snapped onto it, so that grids which share edges
give exact weights of 0 and 1 (resampling a grid onto itself is the identity).

Two implementations give the same numbers: the flux method on a log-uniform input grid
(LAMOST's, any per-star z) runs in a compiled numba kernel (:mod:`._compiled`), as does
the cubic method inside :func:`lamost2csst.core.inputs.prepare_inputs`; every other case,
and every case without numba, runs as blocked numpy passes (the reference).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from lamost2csst.core import _compiled
from lamost2csst.core._validate import as_float_array, check_wave, good_pixels, raise_for_bad_values
from lamost2csst.core.doppler import check_redshift
from lamost2csst.core.grids import pixel_edges

__all__ = ["METHODS", "Resampled", "resample"]

#: Resampling methods of :func:`resample`.
METHODS = ("flux", "linear", "cubic")

_EDGE_TOLERANCE = 1e-7  # in pixels: absorbs rounding when output and input edges coincide
_BLOCK = 32  # stars per block: the 32 x n_out temporaries stay in L2 cache


class Resampled(NamedTuple):
    """Result of :func:`resample`: ``flux``, ``ivar`` (None if not given) and ``mask`` (True = bad)."""

    flux: np.ndarray
    ivar: np.ndarray | None
    mask: np.ndarray


def resample(wave, flux, *, wave_out, ivar=None, mask=None, z=None, method: str = "flux") -> Resampled:
    """Resample spectra onto ``wave_out``, optionally shifting them to the rest frame first.

    Parameters
    ----------
    wave : array_like, (n_pixel,) or (n_star, n_pixel)
        Input pixel centres, vacuum Angstrom, strictly increasing.
    flux : array_like, (n_pixel,) or (n_star, n_pixel)
        Flux densities per unit wavelength.
    wave_out : array_like, (n_out,)
        Output pixel centres, vacuum Angstrom, strictly increasing.
    ivar : array_like, optional
        Inverse variances of ``flux``; 0 marks a pixel without information.
    mask : array_like of bool, optional
        True where an input pixel must not be used.
    z : float or array_like (n_star,), optional
        Redshifts: the input is first shifted to the rest frame, ``wave / (1 + z)``.
    method : {"flux", "linear", "cubic"}
        Flux-conserving rebinning, linear or cubic-convolution interpolation (see module docstring).

    Returns
    -------
    Resampled
        ``flux`` and ``ivar`` of shape (..., n_out) in the input's float precision (at
        least float32), and the boolean ``mask``; masked pixels have NaN flux and ivar 0.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    args = checked_spectra(wave, flux, ivar=ivar, mask=mask, z=z)
    wave_out = check_wave(wave_out, name="wave_out")
    if wave_out.ndim != 1:
        raise ValueError("wave_out must be one grid (n_out,) shared by all stars")
    n_star = args.flux.shape[0]
    dtype = np.result_type(args.flux.dtype, np.float32)
    out = Resampled(
        np.empty((n_star, wave_out.size), dtype),
        None if args.ivar is None else np.empty((n_star, wave_out.size), dtype),
        np.empty((n_star, wave_out.size), bool),
    )
    setup = uniform_rebin(args.wave, wave_out, args.ln_shift) if method == "flux" else None
    if setup is not None:
        _rebin_uniform_compiled(setup, args.flux, args.ivar, args.mask, out=out)
    else:
        _resample_numpy(args, wave_out, method, out=out)
    if args.single:
        return Resampled(out.flux[0], None if out.ivar is None else out.ivar[0], out.mask[0])
    return out


def _resample_numpy(args, wave_out, method: str, *, out: Resampled) -> None:
    """Reference path: blocked tap sums as numpy array passes (any grids, both methods)."""
    n_star, ln_shift = args.flux.shape[0], args.ln_shift
    if method == "flux":
        grid, query = np.log(pixel_edges(args.wave)), np.log(pixel_edges(wave_out))
    else:
        grid, query = np.log(args.wave), np.log(wave_out)
    locate = _Locator(grid, query, ln_shift)
    if method == "flux":
        in_width = np.diff(np.exp(grid), axis=-1)  # input pixel widths, Angstrom (observed frame)
        ln_width = locate.uniform_step if locate.uniform_step is not None else np.diff(grid, axis=-1)
        out_width = np.diff(np.exp(query))  # output pixel widths, Angstrom (rest frame)

    def taps_for(rows: slice) -> _Taps:
        position, valid = locate(rows)
        if method == "linear":
            return _interpolation_taps(position, valid, out.flux.dtype)
        if method == "cubic":
            return _cubic_taps(position, valid, out.flux.dtype, last=locate.last)
        row_ln_width = ln_width if np.ndim(ln_width) < 2 else ln_width[rows]
        stretch = np.exp(ln_shift if ln_shift.shape[0] == 1 else ln_shift[rows])  # 1 + z
        return _rebin_taps(
            position, valid, out.flux.dtype, ln_width=row_ln_width, out_width=stretch * out_width
        )

    # one grid and one shift for all stars: the weights are computed once and broadcast
    shared = taps_for(slice(0, 1)) if grid.ndim == 1 and ln_shift.shape[0] == 1 else None
    for start in range(0, n_star, _BLOCK):  # blocks of stars keep the temporaries in cache
        rows = slice(start, min(start + _BLOCK, n_star))
        ivar = None if args.ivar is None else args.ivar[rows]
        good = good_pixels(args.flux[rows], mask=None if args.mask is None else args.mask[rows], ivar=ivar)
        _apply_taps(
            shared if shared is not None else taps_for(rows),
            args.flux[rows],
            ivar,
            good,
            scale=None if method != "flux" else (in_width if in_width.ndim == 1 else in_width[rows]),
            out_flux=out.flux[rows],
            out_ivar=None if out.ivar is None else out.ivar[rows],
            out_mask=out.mask[rows],
        )


class CheckedSpectra(NamedTuple):
    """Validated inputs of the resampling kernels, always 2-D (n_star, n_pixel)."""

    wave: np.ndarray
    flux: np.ndarray
    ivar: np.ndarray | None
    mask: np.ndarray | None
    ln_shift: np.ndarray  # ln(1 + z): (n_star, 1), or (1, 1) when shared by all stars
    single: bool  # the caller passed one spectrum (n_pixel,)


def checked_spectra(wave, flux, *, ivar=None, mask=None, z=None) -> CheckedSpectra:
    """Check shapes, wavelengths and redshifts of spectra to resample; messages say what to fix.

    Pixel values (NaN, negative ivar) are checked block by block by the kernels'
    callers with :func:`~lamost2csst.core._validate.good_pixels`.
    """
    wave = check_wave(wave)
    flux = as_float_array(flux, name="flux")
    single = flux.ndim == 1
    flux2 = flux[None, :] if single else flux
    if flux2.ndim != 2:
        raise ValueError(f"flux must be (n_pixel,) or (n_star, n_pixel), got shape {flux.shape}")
    n_star, n_src = flux2.shape
    if wave.shape[-1] != n_src or (wave.ndim == 2 and wave.shape[0] != n_star):
        raise ValueError(f"wave has shape {wave.shape} but flux has {flux.shape}; they must match")
    reshape = (lambda a: None if a is None else np.asarray(a)[None, :]) if single else (lambda a: a)
    ivar2, mask2 = reshape(ivar), reshape(mask)
    if mask2 is not None and np.shape(mask2) != flux2.shape:
        raise ValueError(f"mask has shape {np.shape(mask)}, flux has {flux.shape}; they must match")
    if ivar2 is not None and np.shape(ivar2) != flux2.shape:
        raise ValueError(f"ivar has shape {np.shape(ivar)}, flux has {flux.shape}; they must match")
    if z is None:
        ln_shift = np.zeros((1, 1))
    else:
        z = check_redshift(z, n_star=n_star if np.ndim(z) else None)
        per_star = z.ndim or wave.ndim == 2
        ln_shift = np.log1p(np.broadcast_to(z, (n_star,)))[:, None] if per_star else np.log1p(z)[None, None]
    return CheckedSpectra(wave, flux2, ivar2, mask2, ln_shift, single)


class UniformRebin(NamedTuple):
    """Arguments of the compiled kernels for a log-uniform input grid (see :mod:`._compiled`)."""

    base: np.ndarray  # output edges in input-edge index units, before the shift
    shift: np.ndarray  # (n_star,) or (1,): ln(1 + z) in input pixels
    dln: float  # input pixel width in ln lambda
    ratio: float  # dln / expm1(dln)
    n_taps: int  # input pixels an output pixel can touch
    in_width: np.ndarray  # input pixel widths, Angstrom
    inv_out_width: np.ndarray  # 1 / output pixel widths (rest frame), 1 / Angstrom
    inv_stretch: np.ndarray  # 1 / (1 + z), (n_star,) or (1,)

    def rows(self, rows: slice) -> tuple:
        """The kernel's leading arguments for a block of stars."""
        per_star = self.shift.shape[0] > 1
        return (
            self.base,
            self.shift[rows] if per_star else self.shift,
            self.dln,
            self.ratio,
            _EDGE_TOLERANCE,
            self.n_taps,
            self.in_width,
            self.inv_out_width,
            self.inv_stretch[rows] if per_star else self.inv_stretch,
        )


def uniform_rebin(wave, wave_out, ln_shift: np.ndarray) -> UniformRebin | None:
    """Set-up of the compiled flux-conserving kernels, or None (no numba, or a grid not log-uniform)."""
    if not _compiled.AVAILABLE or np.ndim(wave) != 1:
        return None
    grid, query = np.log(pixel_edges(wave)), np.log(pixel_edges(wave_out))
    locate = _Locator(grid, query, ln_shift)
    step = locate.uniform_step
    if step is None:
        return None
    shift = ln_shift[:, 0] / step
    # an output pixel spanning w input pixels touches at most ceil(w) + 1 of them
    n_taps = int(np.ceil(np.max(np.diff(locate.base)) * np.max(np.exp(ln_shift)))) + 1
    return UniformRebin(
        locate.base,
        shift,
        step,
        step / np.expm1(step),
        n_taps,
        np.diff(np.exp(grid)),
        1.0 / np.diff(np.exp(query)),
        np.exp(-ln_shift[:, 0]),
    )


class UniformCentres(NamedTuple):
    """Arguments of the compiled cubic kernel for a log-uniform input grid (see :mod:`._compiled`)."""

    base: np.ndarray  # output centres in input-centre index units, before the shift
    shift: np.ndarray  # (n_star,) or (1,): ln(1 + z) in input pixels

    def rows(self, rows: slice) -> tuple:
        """The kernel's leading arguments for a block of stars."""
        return self.base, self.shift[rows] if self.shift.shape[0] > 1 else self.shift, _EDGE_TOLERANCE


def uniform_centres(wave, wave_out, ln_shift: np.ndarray) -> UniformCentres | None:
    """Set-up of the compiled cubic kernel, or None (no numba, or a grid not log-uniform)."""
    if not _compiled.AVAILABLE or np.ndim(wave) != 1:
        return None
    locate = _Locator(np.log(wave), np.log(wave_out), ln_shift)
    if locate.uniform_step is None:
        return None
    return UniformCentres(locate.base, ln_shift[:, 0] / locate.uniform_step)


def _rebin_uniform_compiled(setup: UniformRebin, flux, ivar, mask, *, out: Resampled) -> None:
    """The flux method on a log-uniform input grid with the compiled kernel (same numbers)."""
    empty = np.empty((0, 0), flux.dtype)
    problems = _compiled.rebin_uniform(
        *setup.rows(slice(0, flux.shape[0])),
        flux,
        empty if ivar is None else np.ascontiguousarray(ivar),
        np.empty((0, 0), bool) if mask is None else np.ascontiguousarray(mask, dtype=bool),
        out.flux,
        empty if out.ivar is None else out.ivar,
        out.mask,
    )
    raise_for_bad_values(*problems)
    if out.ivar is not None:  # the kernel left variances: invert them, 0 where masked
        np.divide(1.0, out.ivar, out=out.ivar, where=out.ivar > 0)


class _Locator:
    """Fractional index of the query points (ln lambda) in the input grid, block by block.

    ``grid`` is (n,) or (n_star, n) in ln lambda, ``query`` (m,), ``ln_shift`` (n_star, 1)
    or (1, 1) is ``ln(1 + z)``. A call with a slice of stars returns the positions
    (float64, clipped into the grid) and whether each query point lies inside the grid.
    On a log-uniform 1-D grid the position is one addition per point.
    """

    def __init__(self, grid: np.ndarray, query: np.ndarray, ln_shift: np.ndarray):
        self.grid, self.query, self.ln_shift = grid, query, ln_shift
        self.last = grid.shape[-1] - 1
        self.uniform_step = None
        if grid.ndim == 1:
            step = (grid[-1] - grid[0]) / (grid.size - 1)
            # uniform if the straight line puts every node within 1e-9 pixel of its place
            if step > 0 and np.max(np.abs(grid - (grid[0] + step * np.arange(grid.size)))) <= 1e-9 * step:
                self.uniform_step = step
                self.base = (query - grid[0]) / step

    def __call__(self, rows: slice):
        shift = self.ln_shift if self.ln_shift.shape[0] == 1 else self.ln_shift[rows]
        n_rows = rows.stop - rows.start
        if self.uniform_step is not None:
            pos = self.base[None, :] + shift / self.uniform_step
        elif self.grid.ndim == 1:
            pos = np.interp(
                self.query[None, :] + shift,
                self.grid,
                np.arange(self.last + 1.0),
                left=-1.0,
                right=self.last + 1.0,
            )
        else:
            pos = _search_rows(self.grid[rows], self.query[None, :] + shift)
        if pos.shape[0] != n_rows:
            pos = np.repeat(pos, n_rows, axis=0)
        nearest = np.rint(pos)
        np.copyto(pos, nearest, where=np.abs(pos - nearest) < _EDGE_TOLERANCE)
        valid = (pos >= 0.0) & (pos <= self.last)
        np.clip(pos, 0.0, self.last, out=pos)
        return pos, valid


def _search_rows(grid: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Fractional index of ``query`` (n, m) in each row of the increasing ``grid`` (n, k).

    One searchsorted for all rows: the rows are moved apart by a constant offset so that
    the flattened grid stays sorted. Points outside a row's grid get -1 or k.
    """
    n, k = grid.shape
    query = np.broadcast_to(query, (n, query.shape[1]))
    span = max(grid.max(), query.max()) - min(grid.min(), query.min()) + 1.0
    offset = np.arange(n)[:, None] * span
    idx = np.searchsorted((grid + offset).ravel(), (query + offset).ravel(), side="right").reshape(
        query.shape
    )
    idx -= 1 + np.arange(n)[:, None] * k
    lo = np.clip(idx, 0, k - 2)
    g0 = np.take_along_axis(grid, lo, axis=1)
    g1 = np.take_along_axis(grid, lo + 1, axis=1)
    pos = lo + (query - g0) / (g1 - g0)
    pos[query < grid[:, :1]] = -1.0
    pos[query > grid[:, -1:]] = k
    return pos


class _Taps(NamedTuple):
    """Output pixel j = norm_j * sum_d weight[d]_j * input[first_j + d] (+ coverage flags)."""

    first: np.ndarray  # (n, m) intp: first input pixel of each output pixel
    weight: list  # D arrays (n, m) in the working precision
    norm: np.ndarray | None  # (n, m) factor applied to the sum, None for 1
    covered: np.ndarray  # (n, m) bool: output pixel fully inside the input grid


def _rebin_taps(edges: np.ndarray, valid: np.ndarray, dtype, *, ln_width, out_width) -> _Taps:
    """Overlaps of output pixels with input pixels, as fractions of each input pixel's width.

    ``edges`` are the output edges in input-edge index units (linear in ln lambda within
    each input pixel), ``ln_width`` the input pixels' widths in ln lambda (a scalar for a
    log-uniform grid), ``out_width`` the output widths in the input's frame (Angstrom).
    A fraction ``t`` of a pixel in ln lambda is ``expm1(t * dln) / expm1(dln)`` of it in
    lambda. With ``lo`` in [0, 1) and ``hi`` the output pixel's edges relative to its
    first input pixel, the overlap with input pixel ``first + d`` is ``min(hi, 1) - lo``
    for d = 0 and ``clip(hi - d, 0, 1)`` for d >= 1.
    """
    index = edges.astype(np.intp)  # edges >= 0: truncation is floor
    t = (edges - index).astype(dtype)  # in float64 first: positions reach thousands of pixels
    if np.ndim(ln_width) == 0:
        dln = dtype.type(ln_width)
    elif np.ndim(ln_width) == 1:
        dln = ln_width[np.minimum(index, ln_width.size - 1)].astype(dtype)
    else:
        dln = np.take_along_axis(ln_width, np.minimum(index, ln_width.shape[-1] - 1), axis=1).astype(dtype)
    frac = _ln_to_linear_fraction(t, dln)
    first = index[:, :-1]
    lo = frac[:, :-1]
    hi = np.subtract(index[:, 1:], first, dtype=dtype, casting="unsafe")
    hi += frac[:, 1:]
    n_taps = int(np.ceil(hi.max())) if hi.size else 1
    w0 = np.minimum(hi, dtype.type(1.0))
    w0 -= lo
    weight = [w0]
    for d in range(1, n_taps):  # taps (2-3 for pixels of similar size), not stars
        w = hi - dtype.type(d)
        np.clip(w, 0.0, 1.0, out=w)
        weight.append(w)
    covered = valid[:, :-1] & valid[:, 1:]
    norm = np.where(covered, 1.0 / out_width, 0.0).astype(dtype)
    return _Taps(first, weight, norm, covered)


def _ln_to_linear_fraction(t: np.ndarray, dln) -> np.ndarray:
    """``expm1(t * dln) / expm1(dln)``: the wavelength fraction of a pixel at ln fraction ``t``.

    For pixels narrower than 0.01 in ln lambda (all spectroscopic grids) a 4th-order
    series of ``expm1(x) / x`` is used, accurate to 1e-10 and much cheaper than ``expm1``.
    """
    if np.max(dln) > 0.01:
        return np.expm1(t * dln) / np.expm1(dln)
    x = t * dln
    series = x * (1.0 / 120.0) + (1.0 / 24.0)
    for c in (1.0 / 6.0, 0.5, 1.0):
        series *= x
        series += c
    ratio = dln / np.expm1(np.asarray(dln, dtype=np.float64))
    return (t * series * ratio.astype(t.dtype)).astype(t.dtype, copy=False)


def _interpolation_taps(position: np.ndarray, valid: np.ndarray, dtype) -> _Taps:
    """Linear interpolation between input centres; ``position`` in centre index units."""
    first = position.astype(np.intp)
    t = (position - first).astype(dtype)
    return _Taps(first, [1.0 - t, t], None, valid)


def _keys_kernel(x: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel with a = -1/2 at distances ``x`` (in pixels)."""
    x = np.abs(x)
    inner = (1.5 * x - 2.5) * x * x + 1.0
    outer = ((-0.5 * x + 2.5) * x - 4.0) * x + 2.0
    return np.where(x <= 1.0, inner, np.where(x < 2.0, outer, 0.0))


def _cubic_taps(position: np.ndarray, valid: np.ndarray, dtype, *, last: int) -> _Taps:
    """Cubic convolution over the four centres around ``position`` (centre index units).

    Near the ends the four taps are moved inside the grid and the pixel is marked not
    covered, unless it sits exactly on an input centre (then one tap has weight 1).
    """
    if last < 3:
        raise ValueError("cubic resampling needs at least 4 input pixels")
    index = np.floor(position).astype(np.intp)
    first = np.clip(index - 1, 0, last - 3)
    weight = [_keys_kernel(position - (first + d)).astype(dtype) for d in range(4)]
    on_centre = position == index
    covered = valid & ((index >= 1) & (index + 2 <= last) | on_centre)
    return _Taps(first, weight, None, covered)


def _apply_taps(taps: _Taps, flux, ivar, good, *, scale, out_flux, out_ivar, out_mask) -> None:
    """Weighted sums of the tapped input pixels, with variances and masks, written into ``out_*``.

    ``scale`` (input pixel widths, or None for 1) multiplies the inputs first: the flux
    method sums pixel integrals ``flux * d_lambda`` and divides by the output width.
    """
    n, n_src = flux.shape
    n_taps = len(taps.weight)
    dtype = out_flux.dtype
    all_good = bool(good.all())
    pad = np.zeros((n, n_src + n_taps), dtype)  # taps beyond the last pixel read zeros
    if all_good:
        pad[:, :n_src] = flux
    else:
        np.copyto(pad[:, :n_src], flux, where=good)
    if scale is not None:
        pad[:, :n_src] *= scale
    index = taps.first + (np.arange(n) * (n_src + n_taps))[:, None]
    flat = pad.ravel()
    tmp = np.empty(index.shape, dtype)

    def weighted_sum(square: bool, out: np.ndarray) -> None:
        for d, w in enumerate(taps.weight):
            flat[d:].take(index, out=tmp)  # the view offset by d saves an index addition
            np.multiply(tmp, w * w if square else w, out=tmp)
            if d:
                out += tmp
            else:
                out[...] = tmp
        if taps.norm is not None:
            out *= taps.norm * taps.norm if square else taps.norm

    weighted_sum(False, out_flux)
    np.logical_not(taps.covered, out=out_mask)
    if not all_good:
        bad = np.ones((n, n_src + n_taps), bool)
        bad[:, :n_src] = ~good
        flat_bad = bad.ravel()
        for d, w in enumerate(taps.weight):
            out_mask |= flat_bad[d:].take(index) & (w != 0)
    out_flux[out_mask] = np.nan
    if ivar is None:
        return
    with np.errstate(divide="ignore"):
        np.divide(1.0, ivar, out=pad[:, :n_src])  # variances
    if not all_good:
        pad[:, :n_src][~good] = 0.0
    if scale is not None:
        pad[:, :n_src] *= scale * scale
    weighted_sum(True, out_ivar)
    with np.errstate(divide="ignore"):
        np.reciprocal(out_ivar, out=out_ivar)
    out_ivar[out_mask | ~np.isfinite(out_ivar)] = 0.0
