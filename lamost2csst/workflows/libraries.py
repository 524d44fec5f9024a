"""Training libraries of UaRA-net: the synthetic grid, STELIB and NGSL (paper Sects. 2.2, 4.1, App. B, C).

Each builder returns a :class:`~lamost2csst.core.pairs.GriddedLibrary` in float32 (clean
inputs on ``INPUT_WAVE``, scaled SEDs on ``OUTPUT_WAVE``, each star's Teff), the key of
every star (its grid parameters or its name) and, for the empirical libraries, a summary
``info`` of what was kept and why:

- :func:`grid_library`: the shipped synthetic grid or grid part stores.
- :func:`stelib_library`: STELIB (sdss-mangadap) stars in a Teff range, parameters from their
  headers or a chi-square fit against the grid, dereddened against their best-matching grid
  model, screened by an out-of-fold GPR (Appendix B).
- :func:`ngsl_library`: NGSL v2 SED targets, with R=2000 inputs generated from the stars'
  parameters by a GPR trained on the screened MILES stars (:func:`miles_input_gpr`, Appendix C).
- :func:`training_library`: one of them from a :class:`LibrarySpec`.

The real libraries first go through :func:`lamost2csst.io.training.usable_library`: a star
with NaN or non-positive flux where it is needed, without the scaling window, with a
constant spectrum or without parameters (and a file that cannot be read) is skipped and
counted in ``info["skipped"]`` (reason -> stars), never used and never fatal to the library.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import NamedTuple

import numpy as np

from lamost2csst.core.pairs import GriddedLibrary
from lamost2csst.errors import InputError

__all__ = [
    "GRID_COLUMNS",
    "LibrarySpec",
    "TrainingLibrary",
    "grid_library",
    "miles_input_gpr",
    "ngsl_library",
    "stelib_library",
    "training_library",
]

#: The parameters that identify a model of the synthetic grid (the keys of its split).
GRID_COLUMNS = ("teff", "logg", "feh", "alpha")
#: STELIB/MILES stars are used in this Teff range by default (K; the paper's fine-tuning range).
DEFAULT_TEFF_RANGE = (5000.0, 9750.0)
#: Drop a STELIB star bluer than its grid match by more than this E(B-V) ...
MIN_EBV = -0.05
#: ... or matched more than this far (K) from its header Teff: its reddening is not trustworthy.
MAX_MATCH_TEFF_OFFSET = 500.0


@dataclasses.dataclass(frozen=True)
class LibrarySpec:
    """Which training library to assemble, and how.

    Attributes
    ----------
    kind : {"grid", "stelib", "ngsl"}
        The synthetic grid (pre-training), STELIB or NGSL (fine-tuning).
    grid_paths : tuple of str, optional
        Grid part stores (default: the grid shipped in the package); STELIB is fitted against it.
    teff_range : (float, float)
        Teff range (K) of the empirical stars used.
    deredden : bool
        STELIB: fit E(B-V) against the grid and remove it.
    screen_rmsae : float
        Drop stars whose out-of-fold GPR RMSAE exceeds this (0: no screening).
    ngsl_files : tuple of str, optional
        NGSL v2 FITS files or folders holding ``h_stis_ngsl_*_v2.fits`` files.
    ngsl_params : str, optional
        CSV file with columns ``name,teff,logg,feh`` (:func:`lamost2csst.io.training.read_library_params`).
    """

    kind: str = "grid"
    grid_paths: tuple[str, ...] | None = None
    teff_range: tuple[float, float] = DEFAULT_TEFF_RANGE
    deredden: bool = True
    screen_rmsae: float = 0.05
    ngsl_files: tuple[str, ...] | None = None
    ngsl_params: str | None = None

    def __post_init__(self):
        if self.kind not in ("grid", "stelib", "ngsl"):
            raise InputError(f"library kind must be 'grid', 'stelib' or 'ngsl', got {self.kind!r}")


class TrainingLibrary(NamedTuple):
    """A training library and how its stars are named in a run's ``split.json``."""

    library: GriddedLibrary
    keys: list  # per star: [teff, logg, feh, alpha] (grid) or its name
    columns: list[str]  # what the keys are
    info: dict  # provenance: stars read, kept, dropped and why


def training_library(spec: LibrarySpec, *, seed: int = 0) -> TrainingLibrary:
    """Assemble the library ``spec`` names; ``seed`` drives the GPR screening and the NGSL input GPR."""
    if spec.kind == "grid":
        lib, params = grid_library(paths=spec.grid_paths)
        return TrainingLibrary(lib, [list(p) for p in params], list(GRID_COLUMNS), {})
    options = dict(teff_range=spec.teff_range, screen_rmsae=spec.screen_rmsae, seed=seed)
    if spec.kind == "stelib":
        lib, names, info = stelib_library(grid_paths=spec.grid_paths, deredden=spec.deredden, **options)
    else:
        if not spec.ngsl_files or not spec.ngsl_params:
            raise InputError(
                "an NGSL library needs NGSL files and a parameter CSV (--ngsl FILES... and --ngsl-params CSV)"
            )
        lib, names, info = ngsl_library(files=spec.ngsl_files, params_csv=spec.ngsl_params, **options)
    return TrainingLibrary(lib, list(names), ["name"], info)


def grid_library(*, paths=None) -> tuple[GriddedLibrary, np.ndarray]:
    """The synthetic grid as a training library.

    Parameters
    ----------
    paths : sequence of str, optional
        Grid part stores, concatenated along ``model`` (default: the grid shipped in the package).

    Returns
    -------
    library : GriddedLibrary
        float32 ``flux_in``, ``sed`` and (where the grid has it) ``flux_lamost``; ``teff``.
    params : ndarray (n_model, 4)
        Each model's (Teff, log g, [Fe/H], [alpha/Fe]).
    """
    from lamost2csst.io.grid import load_grid
    from lamost2csst.io.training import gridded_library

    if paths:
        import xarray as xr

        parts = [load_grid(p) for p in paths]
        ds = xr.concat(parts, dim="model") if len(parts) > 1 else parts[0]
    else:
        ds = load_grid()
    g = gridded_library(ds)
    lib = g.replace(
        flux_in=g.flux_in.astype(np.float32),
        sed=g.sed.astype(np.float32),
        teff=ds["teff"].values.astype(float),
        flux_lamost=ds["flux_lamost"].values.astype(np.float32) if "flux_lamost" in ds else None,
    )
    params = np.stack([ds[k].values.astype(float) for k in GRID_COLUMNS], axis=1)
    return lib, params


def _stelib_parameters(g: GriddedLibrary, params, *, source, grid) -> None:
    """Fill the parameters of the stars without header values by a chi-square fit against the grid."""
    from lamost2csst.core.params import fit_parameters

    missing = source != "header"
    if missing.any():
        grid_lib, grid_params = grid()
        fit = fit_parameters(
            g.flux_in[missing], grid_lib.flux_in, grid_params[:, :3], mask=g.input_mask[missing]
        )
        params[missing] = fit.params


def _deredden_stelib(g: GriddedLibrary, idx, flux_in, sed, params, *, header, grid, info):
    """Fit each star's E(B-V) against the SED of its best-matching grid model and remove it.

    Returns the kept ``idx``, ``flux_in`` and ``sed`` (the SED rescaled after dereddening);
    stars with an untrustworthy reddening are dropped and counted in ``info``.
    """
    from lamost2csst.core.extinction import deredden, fit_ebv
    from lamost2csst.core.grids import INPUT_WAVE, OUTPUT_WAVE
    from lamost2csst.core.params import fit_parameters
    from lamost2csst.core.sed import scale_sed

    grid_lib, grid_params = grid()
    match = fit_parameters(flux_in, grid_lib.flux_in, grid_params[:, :3])
    ebv = fit_ebv(OUTPUT_WAVE, sed, grid_lib.sed[match.best], mask=g.target_mask[idx])
    # A star bluer than its model or matched to a model far from its catalogue Teff (e.g.
    # supergiants below the grid's log g 2) has no trustworthy reddening.
    consistent = np.isfinite(ebv) & (ebv >= MIN_EBV)
    consistent &= ~header | (np.abs(match.params[:, 0] - params[idx, 0]) <= MAX_MATCH_TEFF_OFFSET)
    info["dropped_inconsistent_reddening"] = int((~consistent).sum())
    ebv = np.clip(ebv, 0.0, None)
    idx, flux_in, sed, ebv = idx[consistent], flux_in[consistent], sed[consistent], ebv[consistent]
    sed = scale_sed(np.where(g.target_mask[idx], np.nan, deredden(OUTPUT_WAVE, sed, ebv)))
    flux_in = deredden(INPUT_WAVE, flux_in, ebv)
    info["ebv_percentiles_10_50_90"] = [round(float(v), 3) for v in np.percentile(ebv, [10, 50, 90])]
    return idx, flux_in, sed


def stelib_library(
    stars=None,
    *,
    grid_paths=None,
    teff_range=DEFAULT_TEFF_RANGE,
    deredden: bool = True,
    screen_rmsae: float = 0.05,
    seed: int = 0,
    fit_missing_params: bool = True,
) -> tuple[GriddedLibrary, np.ndarray, dict]:
    """STELIB stars in a Teff range as a training library (the paper's fine-tuning set, Sect. 4.1).

    Parameters
    ----------
    stars : xarray.Dataset, optional
        STELIB spectra in the spectra schema (default: the 255 stars of sdss-mangadap,
        :func:`lamost2csst.io.readers.read_mangadap_stelib`).
    grid_paths : sequence of str, optional
        Grid part stores for the chi-square parameter fits and the reddening fits (default: the shipped grid).
    teff_range : (float, float)
        Teff range (K) of the stars used.
    deredden : bool
        Fit E(B-V) against the SED of each star's best-matching grid model (F99, R_V = 3.1) and
        remove it; drop stars bluer than their model by E(B-V) < -0.05 or matched > 500 K from
        their header Teff.
    screen_rmsae : float
        Drop stars whose out-of-fold GPR RMSAE exceeds this (Appendix B); 0: no screening.
    seed : int
        Seed of the screening's folds and GPR.
    fit_missing_params : bool
        A star without Teff, log g or [Fe/H] in its header ('-') gets all three from a
        chi-square fit against the grid (counted in ``params_from_chi2_fit``); False: it is
        skipped as ``missing_parameters``.

    Returns
    -------
    library : GriddedLibrary
        float32 arrays; ``teff`` from the headers or the fits; target mask outside STELIB's coverage.
    names : ndarray of str
        The stars' names.
    info : dict
        Stars read; ``skipped``: reason -> stars not usable
        (:func:`lamost2csst.io.training.usable_stars`: NaN or zero flux where needed, no
        scaling window, constant flux, missing parameters; unreadable files, listed in
        ``unreadable_files``); usable stars in the Teff range, with parameters from headers or
        fits, dropped for their reddening, screened out; E(B-V) percentiles.
    """
    from lamost2csst.io.training import gridded_library

    if stars is None:
        from lamost2csst.io.readers.mangadap import read_mangadap_stelib

        stars = read_mangadap_stelib()
    ds, info = _usable("stelib", stars, params=() if fit_missing_params else ("teff", "logg", "feh"))
    g = gridded_library(ds)
    params = np.stack([ds[k].values.astype(float) for k in ("teff", "logg", "feh")], axis=1)
    source = np.where(np.all(np.isfinite(params), axis=1), "header", "chi2-grid-fit")
    grid = _lazy_grid(grid_paths)
    _stelib_parameters(g, params, source=source, grid=grid)
    lo, hi = teff_range
    keep = (params[:, 0] >= lo) & (params[:, 0] <= hi)
    info.update(
        in_teff_range=int(keep.sum()),
        params_from_header=int((keep & (source == "header")).sum()),
        params_from_chi2_fit=int((keep & (source != "header")).sum()),
    )
    idx = np.flatnonzero(keep)
    flux_in, sed = g.flux_in[idx], g.sed[idx]
    if deredden:
        idx, flux_in, sed = _deredden_stelib(
            g, idx, flux_in, sed, params, header=source[idx] == "header", grid=grid, info=info
        )
    lib, idx = _screened_stelib(g, idx, flux_in, sed, params, screen_rmsae=screen_rmsae, seed=seed, info=info)
    return lib, ds["name"].values[idx].astype(str), info


def _usable(library: str, stars, **options):
    """The usable stars of a real library and its ``info`` (library, stars_read, skipped, ...).

    Parameters
    ----------
    library : str
        The library's name (``info["library"]``, messages).
    stars : xarray.Dataset
        Its spectra, as a reader returns them.
    **options
        Of :func:`lamost2csst.io.training.usable_stars` (``inputs``, ``params``).

    Returns
    -------
    ds : xarray.Dataset
        The usable stars.
    info : dict

    Raises
    ------
    InputError
        No star is usable (the counts say why).
    """
    from lamost2csst.io.training import usable_library

    ds, info = usable_library(stars, **options)
    if ds.sizes["star"] == 0:
        raise InputError(f"no usable {library} star among {info['stars_read']}: skipped {info['skipped']}")
    return ds, {"library": library, **info}


def _lazy_grid(grid_paths):
    """A function returning :func:`grid_library` of ``grid_paths``, read on the first call only.

    Parameters
    ----------
    grid_paths : sequence of str or None
        Grid part stores (default: the shipped grid).

    Returns
    -------
    callable
        ``grid()`` -> ``(GriddedLibrary, params)``.
    """
    cache = {}

    def grid():
        if "grid" not in cache:
            cache["grid"] = grid_library(paths=grid_paths)
        return cache["grid"]

    return grid


def _screened_stelib(g: GriddedLibrary, idx, flux_in, sed, params, *, screen_rmsae, seed, info):
    """The GPR screening (if ``screen_rmsae > 0``) and the final float32 STELIB library.

    Parameters
    ----------
    g : GriddedLibrary
        All usable STELIB stars.
    idx : ndarray of int
        The stars kept so far (rows of ``g``).
    flux_in, sed : ndarray
        Their (dereddened) input spectra and SEDs.
    params : ndarray (n_star, 3)
        Teff, log g, [Fe/H] of all the stars of ``g``.
    screen_rmsae : float
        The screening threshold; 0: no screening.
    seed : int
        Seed of the screening's folds and GPR.
    info : dict
        The library's record (the screening's counts are added).

    Returns
    -------
    library : GriddedLibrary
    idx : ndarray of int
        The stars kept (rows of ``g``).
    """
    if screen_rmsae > 0:
        normal = _screen(
            params[idx],
            sed,
            g.target_mask[idx],
            threshold=screen_rmsae,
            seed=seed,
            info=info,
            hyperparameters=True,
        )
        idx, flux_in, sed = idx[normal], flux_in[normal], sed[normal]
    lib = GriddedLibrary(
        flux_in.astype(np.float32),
        g.input_mask[idx],
        sed.astype(np.float32),
        g.target_mask[idx],
        params[idx, 0],
    )
    return lib, idx


def _screen(params, sed, target_mask, *, threshold, seed, info=None, hyperparameters=False):
    """Appendix B: which stars an out-of-fold GPR predicts within RMSAE ``threshold`` (on common pixels)."""
    from lamost2csst.core.gpr import screen_library

    covered = ~target_mask.any(axis=0)
    screen = screen_library(params, sed[:, covered], threshold=threshold, seed=seed)
    if info is not None:
        info.update(screened_out=int((~screen.normal).sum()), screen_rmsae=threshold)
        if hyperparameters:
            info["gpr_hyperparameters"] = screen.hyperparameters
    return screen.normal


def miles_input_gpr(stars=None, *, seed: int = 0, info: dict | None = None):
    """Appendix C: a GPR from (Teff, log g, [Fe/H]) to normalized R=2000 inputs, trained on MILES.

    Parameters
    ----------
    stars : xarray.Dataset, optional
        MILES spectra (default: sdss-mangadap's, :func:`lamost2csst.io.readers.read_mangadap_miles`).
    seed : int
        Seed of the screening (Appendix B, RMSAE < 0.05) and of the GPR.
    info : dict, optional
        Receives ``miles_stars_read``, ``miles_skipped`` (reason -> stars not usable,
        :func:`lamost2csst.io.training.usable_stars`), ``miles_in_teff_range`` and
        ``miles_screened_out``.

    Returns
    -------
    gpr : lamost2csst.core.gpr.SpectrumGPR
        Fitted on the usable, screened stars with parameters in 5000-9750 K.
    n_stars : int
        How many MILES stars it was fitted on.
    """
    from lamost2csst.core.gpr import SpectrumGPR
    from lamost2csst.core.normalization import normalize
    from lamost2csst.io.training import gridded_library

    if stars is None:
        from lamost2csst.io.readers.mangadap import read_mangadap_miles

        stars = read_mangadap_miles()
    ds, usable = _usable("MILES", stars)
    teff = ds["teff"].values.astype(float)
    ds = ds.isel(star=np.flatnonzero((teff >= 5000) & (teff <= 9750)))
    params = np.stack([ds[k].values.astype(float) for k in ("teff", "logg", "feh")], axis=1)
    g = gridded_library(ds)
    normal = _screen(params, g.sed, g.target_mask, threshold=0.05, seed=seed)
    if info is not None:
        info.update(
            miles_stars_read=usable["stars_read"],
            miles_skipped=usable["skipped"],
            miles_in_teff_range=int(params.shape[0]),
            miles_screened_out=int((~normal).sum()),
        )
    norm, _ = normalize(g.flux_in[normal])
    return SpectrumGPR(seed=seed).fit(params[normal], norm), int(normal.sum())


def _ngsl_files(items) -> list[Path]:
    files = []
    for item in items:
        path = Path(item)
        files += sorted(path.glob("h_stis_ngsl_*_v2.fits")) if path.is_dir() else [path]
    if not files:
        raise InputError(f"no h_stis_ngsl_*_v2.fits files in {list(items)}")
    return files


def ngsl_library(
    *,
    files,
    params_csv,
    teff_range=DEFAULT_TEFF_RANGE,
    screen_rmsae: float = 0.068,
    seed: int = 0,
    miles=None,
) -> tuple[GriddedLibrary, np.ndarray, dict]:
    """NGSL v2 stars as a training library: SED targets from the files, inputs from a MILES GPR (App. C).

    NGSL's own resolution (R~1000) is too low for the network's R=2000 inputs: they are
    generated from each star's (Teff, log g, [Fe/H]) by :func:`miles_input_gpr`, clean and
    normalized (Eq. 1 noise comes per epoch).

    Parameters
    ----------
    files : sequence of str or Path
        NGSL v2 FITS files, or folders holding ``h_stis_ngsl_*_v2.fits`` files.
    params_csv : str or Path
        CSV with columns ``name,teff,logg,feh`` (name as in ``h_stis_ngsl_<name>_v2.fits``).
    teff_range : (float, float)
        Teff range (K) of the stars used.
    screen_rmsae : float
        Drop stars whose out-of-fold GPR RMSAE exceeds this (paper: 0.068); 0: no screening
        (also skipped with fewer than 5 stars).
    seed : int
        Seed of the screening and of the input GPR.
    miles : xarray.Dataset, optional
        The MILES stars of the input GPR (default: sdss-mangadap's).

    Returns
    -------
    library, names, info
        As :func:`stelib_library`; the input mask is all False (generated inputs). Files that
        cannot be read are skipped (``info["skipped"]["unreadable"]``, ``unreadable_files``);
        NGSL stars need only the scaling window and positive SEDs, not the input range;
        ``miles_*``: the input GPR's MILES stars (:func:`miles_input_gpr`).
    """
    from lamost2csst.io.readers.ngsl import read_ngsl
    from lamost2csst.io.training import gridded_library, read_library_params

    paths = _ngsl_files(files)
    params_by_name = read_library_params(params_csv)
    wave = 1700.0 * np.exp(np.arange(0, np.log(10200.0 / 1700.0), 1 / 5000.0))  # common vacuum grid
    stars = read_ngsl(paths, params=params_by_name, wave=wave, on_error="skip")
    ds, info = _usable("ngsl", stars, inputs=False)  # NGSL (R~1000) gives targets only
    params = np.stack([ds[k].values.astype(float) for k in ("teff", "logg", "feh")], axis=1)
    lo, hi = teff_range
    keep = (params[:, 0] >= lo) & (params[:, 0] <= hi)
    info["in_teff_range_with_params"] = int(keep.sum())
    ds, params = ds.isel(star=np.flatnonzero(keep)), params[keep]
    g = gridded_library(ds, inputs=False)
    idx = np.arange(params.shape[0])
    if screen_rmsae > 0 and idx.size >= 5:
        idx = idx[_screen(params, g.sed, g.target_mask, threshold=screen_rmsae, seed=seed, info=info)]
    gpr, n_miles = miles_input_gpr(miles, seed=seed, info=info)
    flux_in = gpr.predict(params[idx]).astype(np.float32)
    info.update(
        inputs="GPR(Teff, log g, [Fe/H]) trained on MILES (Appendix C)",
        gpr_miles_stars=n_miles,
        gpr_hyperparameters=gpr.hyperparameters,
    )
    lib = GriddedLibrary(
        flux_in,
        np.zeros(flux_in.shape, bool),
        g.sed[idx].astype(np.float32),
        g.target_mask[idx],
        params[idx, 0],
    )
    return lib, ds["name"].values[idx].astype(str), info
