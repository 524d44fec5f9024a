"""A toy LAMOST-like catalogue for demos, tests and benchmarks of the catalogue jobs.

**Analytic stand-in.** Nothing here is a stellar model: the spectra are Planck continua
times Gaussian absorption lines. They exist only so that the Dask jobs can be run, tested
and timed end to end before the synthetic BOSZ-like grid (DESIGN.md, step 1) exists; they
must not be used to train or assess UaRA-net.

Each star (observed frame, vacuum wavelengths, on ``LAMOST_WAVE``):

* continuum: Planck ``B_lambda(Teff)`` of the rest wavelength, scaled to 1 at 5550 A
  (``Teff`` uniform in 5000-9750 K);
* lines: Gaussian absorption at the vacuum wavelengths of H-alpha..H-delta, Ca II K and H,
  Mg b and Na D, with depths and widths that vary smoothly with ``Teff`` (Balmer lines
  strongest near 9500 K, metal lines in cool stars); each Gaussian width includes the
  instrumental width of R = 1800 (``sigma = lambda / (2.3548 R)``), i.e. the spectra are
  already "degraded" to LAMOST resolution;
* Doppler shift: radial velocity ~ N(0, 50 km/s), ``z = v / c`` (coordinate ``z``),
  ``lambda_obs = lambda_rest (1 + z)``;
* noise as Eq. 1 of the paper: ``F' = F (1 + r)``, ``r ~ N(0, 1/snr^2)``, ``ivar =
  1 / (F/snr)^2`` with ``snr`` log-uniform in 10-150 (coordinate ``snr_g``);
* bad pixels: ~0.3 % of pixels at random, and ~1 % of stars with a bad block of 20
  adjacent pixels; they have ``mask=True``, ``ivar=0`` and NaN flux;
* sky positions uniform (per unit area) in RA 150-160 deg, Dec 20-30 deg; ``obsid = 1..n``.

Randomness: stars come in fixed blocks of :data:`BLOCK_STARS`; block ``b`` draws from
generators seeded by ``numpy.random.SeedSequence([seed, b])`` (one child stream for the
per-star parameters, drawn for the whole block, one for the noise and one for the bad
pixels, drawn star after star). Hence the catalogue depends only on ``seed``: it does not
depend on how it is chunked or computed, and ``toy_catalogue(k)`` equals the first ``k``
stars of ``toy_catalogue(n)`` for any ``k <= n``.

Blocks: :func:`block_arrays` builds the arrays of a catalogue block by block, eagerly or as
dask arrays whose graph holds no data, from a pure per-block numpy kernel; it is the one
builder of both demo catalogues (this one and :mod:`lamost2csst.io.simulated`).
"""

from __future__ import annotations

import math

import numpy as np
import xarray as xr

from lamost2csst.core import LAMOST_WAVE
from lamost2csst.core.simulate import C_KMS
from lamost2csst.io.spectra import spectra_dataset

__all__ = [
    "BLOCK_STARS",
    "PIXEL_FIELDS",
    "TOY_LINES",
    "TOY_RESOLUTION",
    "block_arrays",
    "block_ranges",
    "toy_block",
    "toy_catalogue",
    "with_lazy_coords",
]

#: Stars per random block. Part of the definition of the data: changing it changes the stars.
BLOCK_STARS = 2000
#: Resolving power of the toy spectra (LAMOST-like).
TOY_RESOLUTION = 1800.0

#: Vacuum wavelengths (A) of the toy absorption lines, by family.
TOY_LINES = {
    "balmer": (6564.61, 4862.68, 4341.69, 4102.89),  # H-alpha, H-beta, H-gamma, H-delta
    "ca_k": (3934.78,),
    "ca_h": (3969.59,),
    "mg_b": (5168.76, 5174.13, 5185.05),
    "na_d": (5891.58, 5897.56),
}

_HC_OVER_K = 1.438776877e8  # h c / k in Angstrom * K
_FWHM = 2.0 * math.sqrt(2.0 * math.log(2.0))
_TEFF_RANGE = (5000.0, 9750.0)
_SNR_RANGE = (10.0, 150.0)
_RV_SIGMA = 50.0  # km/s
_RA_RANGE = (150.0, 160.0)
_DEC_RANGE = (20.0, 30.0)
_BAD_PIXEL_FRACTION = 0.003
_BAD_BLOCK_STAR_FRACTION = 0.01
_BAD_BLOCK_PIXELS = 20
_Z_MARGIN = 0.003  # line windows cover |v| < 900 km/s
_WINDOW_SIGMAS = 8.0  # a Gaussian is < 1.3e-14 of its depth beyond 8 sigma

SOURCE = (
    "lamost2csst.io.demo.toy_catalogue: ANALYTIC STAND-IN (Planck continuum x Gaussian lines "
    "at vacuum wavelengths, R=1800, Eq.1-like noise), not stellar models; replace with the "
    "synthetic BOSZ-like grid when it exists"
)


def _line_shape(family: str, teff: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Depth (0..1) and intrinsic Gaussian sigma (A) of a line family, smooth in Teff."""
    hot = np.exp(-0.5 * ((teff - 9500.0) / 1800.0) ** 2)  # Balmer lines peak near A0
    cool = 1.0 / (1.0 + np.exp((teff - 6500.0) / 500.0))  # metal lines grow in cool stars
    if family == "balmer":
        return 0.25 + 0.40 * hot, 1.0 + 9.0 * hot
    if family == "ca_k":
        return 0.25 + 0.55 * cool, 1.0 + 1.5 * cool
    if family == "ca_h":
        return 0.20 + 0.50 * cool, 1.0 + 1.5 * cool
    if family == "mg_b":
        return 0.05 + 0.35 * cool, 0.5 + 0.3 * cool
    if family == "na_d":
        return 0.04 + 0.35 * cool, 0.4 + 0.3 * cool
    raise KeyError(family)


def _max_sigma(family: str, line: float) -> float:
    teff = np.linspace(*_TEFF_RANGE, 200)
    intrinsic = _line_shape(family, teff)[1].max()
    return float(math.hypot(intrinsic, line * (1 + _Z_MARGIN) / (_FWHM * TOY_RESOLUTION)))


def _block_parameters(seed: int, block: int) -> dict[str, np.ndarray]:
    """Per-star parameters of one whole block (BLOCK_STARS stars), in a fixed draw order."""
    stream = np.random.default_rng(np.random.SeedSequence([seed, block]).spawn(3)[0])
    n = BLOCK_STARS
    teff = stream.uniform(*_TEFF_RANGE, n)
    rv = stream.normal(0.0, _RV_SIGMA, n)
    snr = 10.0 ** stream.uniform(np.log10(_SNR_RANGE[0]), np.log10(_SNR_RANGE[1]), n)
    ra = stream.uniform(*_RA_RANGE, n)
    sin_lo, sin_hi = np.sin(np.radians(_DEC_RANGE))
    dec = np.degrees(np.arcsin(stream.uniform(sin_lo, sin_hi, n)))
    has_bad_block = stream.random(n) < _BAD_BLOCK_STAR_FRACTION
    bad_start = stream.integers(0, LAMOST_WAVE.size - _BAD_BLOCK_PIXELS, n)
    return {
        "teff": teff,
        "z": rv / C_KMS,
        "snr": snr,
        "ra": ra,
        "dec": dec,
        "has_bad_block": has_bad_block,
        "bad_start": bad_start,
    }


def _check_range(n_star: int, seed: int) -> None:
    if int(n_star) != n_star or n_star < 1:
        raise ValueError(f"n_star must be a positive integer, got {n_star!r}")
    if int(seed) != seed or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")


def toy_block(block: int, n_star: int = BLOCK_STARS, *, seed: int = 0) -> dict[str, np.ndarray]:
    """The first ``n_star`` stars of random block ``block``: per-star parameters and pixels.

    Returns a dict with per-star ``teff, z, snr, ra, dec`` (float64) and pixel arrays
    ``flux, ivar`` (float32) and ``mask`` (bool), shaped ``(n_star, LAMOST_WAVE.size)``.
    """
    if not 1 <= n_star <= BLOCK_STARS:
        raise ValueError(f"a block holds 1..{BLOCK_STARS} stars, got {n_star}")
    par = {k: v[:n_star] for k, v in _block_parameters(seed, block).items()}
    _, noise_ss, bad_ss = np.random.SeedSequence([seed, block]).spawn(3)
    teff, z = par["teff"][:, None], par["z"][:, None]
    wave_obs = LAMOST_WAVE[None, :]

    # Planck continuum of the rest wavelength, 1 at 5550 A.
    x = _HC_OVER_K / (wave_obs / (1.0 + z) * teff)
    x0 = _HC_OVER_K / (5550.0 * teff)
    flux = (5550.0 * (1.0 + z) / wave_obs) ** 5 * (np.expm1(x0) / np.expm1(x))

    # Gaussian absorption lines, each evaluated in its own pixel window only.
    for family, lines in TOY_LINES.items():
        depth, sigma_intrinsic = _line_shape(family, par["teff"])
        for line in lines:
            half = _WINDOW_SIGMAS * _max_sigma(family, line) + _Z_MARGIN * line
            lo, hi = np.searchsorted(LAMOST_WAVE, [line - half, line + half])
            centre = line * (1.0 + z)
            sigma = np.hypot(sigma_intrinsic[:, None], centre / (_FWHM * TOY_RESOLUTION))
            profile = np.exp(-0.5 * ((LAMOST_WAVE[lo:hi] - centre) / sigma) ** 2)
            flux[:, lo:hi] *= 1.0 - depth[:, None] * profile

    # Eq. 1 noise: F' = F + r F, r ~ N(0, 1/snr^2); error = F / snr.
    snr = par["snr"][:, None]
    r = np.random.default_rng(noise_ss).standard_normal(flux.shape, dtype=np.float32)
    ivar = ((snr / flux) ** 2).astype(np.float32)
    noisy = (flux * (1.0 + r / snr)).astype(np.float32)

    # Bad pixels: scattered ones and, for a few stars, a block of adjacent pixels.
    mask = np.random.default_rng(bad_ss).random(flux.shape, dtype=np.float32) < _BAD_PIXEL_FRACTION
    column = np.arange(LAMOST_WAVE.size)[None, :]
    start = par["bad_start"][:, None]
    mask |= par["has_bad_block"][:, None] & (column >= start) & (column < start + _BAD_BLOCK_PIXELS)
    noisy[mask] = np.nan
    ivar[mask] = 0.0
    return {
        **{k: par[k] for k in ("teff", "z", "snr", "ra", "dec")},
        "flux": noisy,
        "ivar": ivar,
        "mask": mask,
    }


#: The pixel arrays of a catalogue block: name -> (dtype, shape of one star).
PIXEL_FIELDS = {
    "flux": (np.float32, (LAMOST_WAVE.size,)),
    "ivar": (np.float32, (LAMOST_WAVE.size,)),
    "mask": (np.bool_, (LAMOST_WAVE.size,)),
}
_TOY_COORDS = {name: (np.float64, ()) for name in ("teff", "z", "snr_g", "ra", "dec")}


def block_ranges(n_star: int, block_stars: int) -> list[tuple[int, int, int]]:
    """``(block, start, stop)`` of the blocks of ``block_stars`` stars that cover ``n_star`` stars."""
    return [
        (block, block * block_stars, min((block + 1) * block_stars, n_star))
        for block in range(math.ceil(n_star / block_stars))
    ]


def block_arrays(
    kernel, n_star: int, *, block_stars: int, fields: dict, lazy: bool = False, args: tuple = ()
) -> dict:
    """Arrays of ``n_star`` stars made block by block by ``kernel``: the one builder of the demo catalogues.

    Parameters
    ----------
    kernel : callable
        ``kernel(block, n, *args)`` returns a dict of arrays of the first ``n`` stars of
        block ``block`` (first axis: star), holding at least the names of ``fields``. It
        must be pure: the stars depend only on the block number and ``args``.
    n_star, block_stars : int
        Number of stars; stars per block (the last block may be shorter).
    fields : dict
        ``name -> (dtype, shape of one star)`` of the arrays to return.
    lazy : bool
        If True, dask arrays with one chunk per block; each block calls ``kernel`` once,
        inside the graph (computing several of the arrays together shares that call). The
        graph then holds only the block numbers and ``args``: pass data every block needs
        as one ``dask.delayed`` object (in the graph once) or as ``None`` for data that
        each worker loads itself, never as arrays that grow with ``n_star``.

    Returns
    -------
    dict
        ``name -> array`` of ``n_star`` stars (numpy, or dask with ``lazy=True``).
    """
    ranges = block_ranges(n_star, block_stars)
    if not lazy:
        parts = [kernel(block, stop - start, *args) for block, start, stop in ranges]
        return {name: np.concatenate([part[name] for part in parts]) for name in fields}
    import dask.array as da

    # one task per block runs the kernel (its dict in a 1-element object chunk); one per block
    # and field picks the field: blockwise layers, so building a million-star graph is cheap
    parts = da.map_blocks(
        _run_block,
        da.arange(len(ranges), chunks=1),
        kernel,
        n_star,
        block_stars,
        *args,
        dtype=object,
        meta=np.empty(0, dtype=object),
    )
    sizes = tuple(stop - start for _, start, stop in ranges)
    return {
        name: parts.map_blocks(
            _pick,
            name,
            chunks=(sizes, *((n,) for n in tail)),
            new_axis=list(range(1, 1 + len(tail))) or None,
            dtype=dtype,
            meta=np.empty((0,) * (1 + len(tail)), dtype=dtype),
        )
        for name, (dtype, tail) in fields.items()
    }


def _run_block(index: np.ndarray, kernel, n_star: int, block_stars: int, *args) -> np.ndarray:
    block = int(index[0])
    part = np.empty(1, dtype=object)
    part[0] = kernel(block, min(block_stars, n_star - block * block_stars), *args)
    return part


def _pick(part: np.ndarray, name: str) -> np.ndarray:
    return part[0][name]


def with_lazy_coords(ds: xr.Dataset, coords: dict, *, block_stars: int) -> xr.Dataset:
    """``ds`` with its per-star coordinates replaced by the same values computed lazily.

    ``coords`` are dask arrays (e.g. from :func:`block_arrays`) of the coordinates' values;
    ``obsid`` (``1..n``) is added as a dask range. Names, order, dtypes and attributes of
    the coordinates are kept, so the Dataset writes the same store; its graph then holds no
    per-star data.
    """
    import dask.array as da

    n_star = ds.sizes["star"]
    coords = {**coords, "obsid": da.arange(1, n_star + 1, chunks=block_stars, dtype=np.int64)}
    return ds.assign_coords(
        {
            name: xr.Variable(("star",), values.astype(ds[name].dtype), dict(ds[name].attrs))
            for name, values in coords.items()
        }
    )


def _toy_coords(block: int, n_star: int, seed: int) -> dict[str, np.ndarray]:
    par = _block_parameters(seed, block)
    return {name: par["snr" if name == "snr_g" else name][:n_star] for name in _TOY_COORDS}


def _toy_pixels(block: int, n_star: int, seed: int) -> dict[str, np.ndarray]:
    part = toy_block(block, n_star, seed=seed)
    return {name: part[name] for name in PIXEL_FIELDS}


def toy_catalogue(n_star: int, *, seed: int = 0, lazy: bool = False) -> xr.Dataset:
    """A deterministic toy catalogue of ``n_star`` LAMOST-like spectra (analytic stand-in).

    See the module docstring for what the spectra are. The Dataset follows the spectra
    schema of :mod:`lamost2csst.io.spectra` (frame "observed", R = 1800, flux unit
    "relative") with the extra per-star coordinates ``snr_g`` and ``teff``.

    Parameters
    ----------
    n_star : int
        Number of stars; ``toy_catalogue(k, seed=s)`` is the first ``k`` stars of
        ``toy_catalogue(n, seed=s)`` for every ``k <= n``.
    seed : int
        Root seed; block ``b`` uses ``SeedSequence([seed, b])``.
    lazy : bool
        If True every star-dimensioned variable (pixels and per-star coordinates) is a
        dask array, one chunk per block of :data:`BLOCK_STARS` stars, computed only when
        written or loaded (use this for catalogues that do not fit in memory); the graph
        holds block numbers and the seed only, whatever ``n_star``. The coordinates are
        drawn by their own cheap tasks, so reading them does not simulate the pixels.
    """
    _check_range(n_star, seed)
    blocks = {"block_stars": BLOCK_STARS, "args": (seed,)}
    coords = block_arrays(_toy_coords, n_star, fields=_TOY_COORDS, **blocks)
    pixels = block_arrays(_toy_pixels, n_star, fields=PIXEL_FIELDS, lazy=lazy, **blocks)
    ds = spectra_dataset(
        wave=LAMOST_WAVE,
        **pixels,
        obsid=np.arange(1, n_star + 1, dtype=np.int64),
        ra=coords["ra"],
        dec=coords["dec"],
        z=coords["z"],
        resolution=TOY_RESOLUTION,
        frame="observed",
        flux_unit="relative",
        source=SOURCE,
        snr_g=coords["snr_g"],
        teff=coords["teff"],
    )
    ds["snr_g"].attrs.update(units="1", long_name="signal-to-noise ratio per pixel (toy: same at all pixels)")
    ds["teff"].attrs.update(units="K", long_name="effective temperature of the toy Planck continuum")
    ds.attrs.update(
        demo_seed=int(seed), demo_block_stars=BLOCK_STARS, demo_n_star=int(n_star), spectra_kind="synthetic"
    )
    if lazy:
        lazy_coords = block_arrays(_toy_coords, n_star, fields=_TOY_COORDS, lazy=True, **blocks)
        ds = with_lazy_coords(ds, lazy_coords, block_stars=BLOCK_STARS)
    return ds
