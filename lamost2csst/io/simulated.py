"""A LAMOST-like catalogue simulated from the synthetic grid, with the true SEDs beside it.

The demo data of ``jobs.predict_catalogue``: real model spectra (the shipped ATLAS9 +
Synspec grid, ``flux_lamost`` on ``LAMOST_WAVE`` at R = 2000) observed the way LAMOST
observes stars, so that predictions can be checked against the known truth (``sed_true``).

Each star:

* a grid model drawn uniformly (with replacement) from the grid's models; its parameters
  are kept as coordinates ``teff, logg, feh, alpha`` and ``grid_model`` (index in the grid);
* radial velocity from a disc + halo mixture, 90 % N(0, 40 km/s) and 10 % N(0, 150 km/s);
  ``z = v / c``; the rest-frame spectrum is shifted to ``lambda (1 + z)`` and rebinned
  (flux-conserving) onto ``LAMOST_WAVE``; pixels the model does not reach are masked;
* S/N per pixel ``snr_g`` log-normal, median 30, 0.3 dex wide, clipped to 3..1000 (the
  shape of LAMOST LRS S/N distributions; ~5 % of stars below S/N 10); Eq. 1 noise;
* a flux scale ``10**U(1, 3.5)`` over the model's median (LAMOST relative fluxes);
* bad pixels: 0.2 % scattered, 3 % of stars with a masked run of 10-150 pixels, 0.5 % of
  stars with a failed blue arm (everything below 5900 A masked);
* fault injection, so that every flag of the job is exercised: 0.5 % of stars without a
  usable z (NaN, as the LAMOST reader turns -9999 into NaN) and 0.2 % with one NaN flux
  pixel that is not masked (``ivar`` left positive);
* sky positions uniform on the sphere in RA 0-360, Dec -10..+60 (the LAMOST sky);
  ``obsid = 1..n``.

The true SED (``sed_true``, (star, wave_out), the grid's ``sed`` scaled with ``scale_sed``)
is stored in the same store as a data variable, beside the spectra.

Randomness: stars come in blocks of :data:`BLOCK_STARS`; block ``b`` draws from three
child streams of ``numpy.random.SeedSequence([seed, b])`` (per-star parameters for the
whole block; the noise; the scattered bad pixels, each drawn in star order), so the
catalogue depends only on ``seed`` and the grid, and the first ``k`` stars of a larger
catalogue are the same catalogue.
"""

from __future__ import annotations

import functools
import hashlib
import math
from typing import NamedTuple

import numpy as np
import xarray as xr

from lamost2csst.core import LAMOST_WAVE, OUTPUT_WAVE
from lamost2csst.core.simulate import C_KMS, draw_radial_velocities, observe_spectra
from lamost2csst.io.demo import PIXEL_FIELDS, block_arrays, with_lazy_coords
from lamost2csst.io.spectra import spectra_dataset

__all__ = [
    "BLOCK_STARS",
    "SOURCE",
    "GridArrays",
    "grid_arrays",
    "grid_catalogue",
    "grid_digest",
    "simulate_block",
]

#: Stars per random block (part of the definition of the data).
BLOCK_STARS = 2048
RESOLUTION = 2000.0
SOURCE = (
    "lamost2csst.io.simulated.grid_catalogue: LAMOST-like observations of the synthetic "
    "ATLAS9+Synspec grid (Doppler shift, Eq. 1 noise, masked pixels); sed_true = the models' SEDs"
)
_BLUE_ARM_END = 5900.0


def grid_digest(grid: xr.Dataset) -> str:
    """A short hash of the grid's model parameters (a demo catalogue is tied to its grid)."""
    key = np.stack([grid[p].values.astype(np.float64) for p in ("teff", "logg", "feh", "alpha")], axis=1)
    return hashlib.sha256(np.ascontiguousarray(key).tobytes()).hexdigest()[:16]


def _block_parameters(seed: int, block: int, n_model: int) -> dict[str, np.ndarray]:
    """Per-star parameters of one whole block, in a fixed draw order."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, block]).spawn(3)[0])
    n = BLOCK_STARS
    model = rng.integers(0, n_model, n)
    rv = draw_radial_velocities(n, rng)
    snr = np.clip(10.0 ** rng.normal(math.log10(30.0), 0.3, n), 3.0, 1000.0)
    scale = 10.0 ** rng.uniform(1.0, 3.5, n)
    ra = rng.uniform(0.0, 360.0, n)
    sin_lo, sin_hi = np.sin(np.radians([-10.0, 60.0]))
    dec = np.degrees(np.arcsin(rng.uniform(sin_lo, sin_hi, n)))
    has_run = rng.random(n) < 0.03
    run_length = rng.integers(10, 151, n)
    run_start = rng.integers(0, LAMOST_WAVE.size - 150, n)
    blue_arm_failed = rng.random(n) < 0.005
    z_missing = rng.random(n) < 0.005
    nan_pixel = np.where(rng.random(n) < 0.002, rng.integers(0, LAMOST_WAVE.size, n), -1)
    return {
        "model": model,
        "z": rv / C_KMS,
        "snr": snr,
        "scale": scale,
        "ra": ra,
        "dec": dec,
        "has_run": has_run,
        "run_length": run_length,
        "run_start": run_start,
        "blue_arm_failed": blue_arm_failed,
        "z_missing": z_missing,
        "nan_pixel": nan_pixel,
    }


def simulate_block(
    block: int, n_star: int, *, flux_lamost: np.ndarray, seed: int = 0
) -> dict[str, np.ndarray]:
    """Pixels of the first ``n_star`` stars of block ``block`` (``flux``, ``ivar``, ``mask``)."""
    if not 1 <= n_star <= BLOCK_STARS:
        raise ValueError(f"a block holds 1..{BLOCK_STARS} stars, got {n_star}")
    par = {k: v[:n_star] for k, v in _block_parameters(seed, block, flux_lamost.shape[0]).items()}
    _, noise_seed, pixel_seed = np.random.SeedSequence([seed, block]).spawn(3)
    rest = flux_lamost[par["model"]].astype(np.float64)
    rest /= np.median(rest, axis=1, keepdims=True)
    flux, ivar, mask = observe_spectra(
        rest,
        wave=LAMOST_WAVE,
        z=par["z"],
        snr=par["snr"],
        scale=par["scale"],
        rng=np.random.default_rng(noise_seed),
    )
    column = np.arange(LAMOST_WAVE.size)[None, :]
    start, length = par["run_start"][:, None], par["run_length"][:, None]
    bad = par["has_run"][:, None] & (column >= start) & (column < start + length)
    bad |= par["blue_arm_failed"][:, None] & (LAMOST_WAVE[None, :] < _BLUE_ARM_END)
    bad |= np.random.default_rng(pixel_seed).random(flux.shape, dtype=np.float32) < 0.002
    mask |= bad
    flux[mask] = np.nan
    ivar[mask] = 0.0
    rows = np.flatnonzero(par["nan_pixel"] >= 0)
    flux[rows, par["nan_pixel"][rows]] = np.nan  # injected fault: NaN on a pixel said to be good
    ivar[rows, par["nan_pixel"][rows]] = 1.0
    mask[rows, par["nan_pixel"][rows]] = False
    return {"flux": flux, "ivar": ivar, "mask": mask}


class GridArrays(NamedTuple):
    """What every block of a grid catalogue needs from the grid (shared by all blocks, never per star)."""

    flux_lamost: np.ndarray  # (model, LAMOST_WAVE) float32, checked finite and positive
    sed: np.ndarray  # (model, OUTPUT_WAVE) float32
    params: dict  # teff, logg, feh, alpha -> (model,) float64


_GRID_PARAMETERS = ("teff", "logg", "feh", "alpha")
_COORDS = {
    **{name: (np.float64, ()) for name in ("ra", "dec", "z", "snr_g", "z_true", *_GRID_PARAMETERS)},
    "grid_model": (np.int32, ()),
}
_PIXELS = {**PIXEL_FIELDS, "sed_true": (np.float32, (OUTPUT_WAVE.size,))}


def grid_arrays(grid: xr.Dataset) -> GridArrays:
    """The arrays of ``grid`` that the blocks of :func:`grid_catalogue` use."""
    flux_lamost = np.asarray(grid["flux_lamost"].values, dtype=np.float32)
    if not np.all(np.isfinite(flux_lamost)) or np.any(flux_lamost <= 0):
        raise ValueError("the grid's flux_lamost must be finite and positive")
    return GridArrays(
        flux_lamost=flux_lamost,
        sed=np.asarray(grid["sed"].values, dtype=np.float32),
        params={p: grid[p].values.astype(np.float64) for p in _GRID_PARAMETERS},
    )


@functools.lru_cache(maxsize=1)
def _shipped_arrays() -> GridArrays:
    """The shipped grid's arrays, loaded once per process (by each Dask worker)."""
    from lamost2csst.io.grid import load_grid

    return grid_arrays(load_grid())


def _grid_coords(block: int, n_star: int, arrays: GridArrays | None, seed: int) -> dict[str, np.ndarray]:
    """Per-star coordinates of the first ``n_star`` stars of block ``block`` (no pixels: cheap)."""
    arrays = _shipped_arrays() if arrays is None else arrays
    par = {k: v[:n_star] for k, v in _block_parameters(seed, block, arrays.flux_lamost.shape[0]).items()}
    model = par["model"]
    return {
        "ra": par["ra"],
        "dec": par["dec"],
        "z": np.where(par["z_missing"], np.nan, par["z"]),
        "snr_g": par["snr"],
        "z_true": par["z"],
        **{p: arrays.params[p][model] for p in _GRID_PARAMETERS},
        "grid_model": model.astype(np.int32),
    }


def _grid_pixels(block: int, n_star: int, arrays: GridArrays | None, seed: int) -> dict[str, np.ndarray]:
    """Pixels and true SEDs of the first ``n_star`` stars of block ``block``."""
    arrays = _shipped_arrays() if arrays is None else arrays
    part = simulate_block(block, n_star, flux_lamost=arrays.flux_lamost, seed=seed)
    model = _block_parameters(seed, block, arrays.flux_lamost.shape[0])["model"][:n_star]
    return {**part, "sed_true": arrays.sed[model]}


def _shared(arrays: GridArrays, *, shipped: bool, lazy: bool):
    """What the blocks receive: the arrays (eager), nothing (lazy, shipped grid), or one delayed copy."""
    if not lazy:
        return arrays
    if shipped:
        return None  # each worker loads the shipped grid itself: the graph holds no grid data
    import dask

    return dask.delayed(arrays, pure=True, traverse=False)  # in the graph once, shared by every block


def grid_catalogue(
    n_star: int, *, seed: int = 0, grid: xr.Dataset | None = None, lazy: bool = False
) -> xr.Dataset:
    """A deterministic LAMOST-like catalogue of ``n_star`` stars observed from the grid.

    Parameters
    ----------
    n_star : int
        Number of stars.
    seed : int
        Root seed (block ``b`` uses ``SeedSequence([seed, b])``).
    grid : xarray.Dataset, optional
        The synthetic grid (default: :func:`lamost2csst.load_grid`, the shipped one; with
        ``lazy=True`` each Dask worker then loads it itself instead of receiving it).
    lazy : bool
        Every star-dimensioned variable as a dask array, one chunk per block, computed when
        written (:func:`lamost2csst.io.demo.block_arrays`). The graph holds no per-star
        data: with the shipped grid nothing but block numbers and the seed, with another
        grid also one copy of its arrays (:class:`GridArrays`), shared by all blocks.

    Returns
    -------
    xarray.Dataset
        The spectra schema (frame "observed", R = 2000) with the extra per-star coordinates
        ``snr_g, teff, logg, feh, alpha, grid_model, z_true`` and the data variable
        ``sed_true`` (star, wave_out). ``z`` is NaN for the stars without a usable z.
    """
    if int(n_star) != n_star or n_star < 1:
        raise ValueError(f"n_star must be a positive integer, got {n_star!r}")
    if int(seed) != seed or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    shipped = grid is None
    if shipped:
        from lamost2csst.io.grid import load_grid

        grid = load_grid()
    arrays = grid_arrays(grid)
    coord = block_arrays(_grid_coords, n_star, block_stars=BLOCK_STARS, fields=_COORDS, args=(arrays, seed))
    shared = _shared(arrays, shipped=shipped, lazy=lazy)
    blocks = {"block_stars": BLOCK_STARS, "lazy": lazy, "args": (shared, seed)}
    pixels = block_arrays(_grid_pixels, n_star, fields=_PIXELS, **blocks)
    ds = spectra_dataset(
        wave=LAMOST_WAVE,
        flux=pixels["flux"],
        ivar=pixels["ivar"],
        mask=pixels["mask"],
        obsid=np.arange(1, n_star + 1, dtype=np.int64),
        ra=coord["ra"],
        dec=coord["dec"],
        z=coord["z"],
        resolution=RESOLUTION,
        frame="observed",
        flux_unit="relative",
        source=SOURCE,
        snr_g=coord["snr_g"],
        z_true=coord["z_true"],
        **{p: coord[p] for p in _GRID_PARAMETERS},
        grid_model=coord["grid_model"],
    )
    ds["snr_g"].attrs.update(units="1", long_name="S/N per pixel (simulated: the same at all pixels)")
    ds["z_true"].attrs.update(units="1", long_name="true redshift (z is NaN where the 'survey' lost it)")
    ds["grid_model"].attrs.update(long_name="index of the model in the grid")
    ds = ds.assign_coords(wave_out=("wave_out", OUTPUT_WAVE, {"units": "Angstrom", "medium": "vacuum"}))
    sed_attrs = {"long_name": "true SED of the star (scale_sed)"}
    ds["sed_true"] = (("star", "wave_out"), pixels["sed_true"], sed_attrs)
    ds.attrs.update(
        demo_seed=int(seed),
        demo_block_stars=BLOCK_STARS,
        demo_n_star=int(n_star),
        demo_grid=grid_digest(grid),
        demo_grid_models=int(grid.sizes["model"]),
        spectra_kind="synthetic",
    )
    if lazy:
        lazy_coords = block_arrays(_grid_coords, n_star, fields=_COORDS, **blocks)
        ds = with_lazy_coords(ds, lazy_coords, block_stars=BLOCK_STARS)
    return ds
