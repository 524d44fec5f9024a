"""Training pairs from any library Dataset: the synthetic grid, MILES, STELIB, NGSL, BOSZ.

The same code path for all (:mod:`lamost2csst.core.pairs`): a spectra-schema Dataset
(as the readers return) is degraded to the network's grids with its own resolution
(``attrs["fwhm_angstrom"]`` for constant-FWHM libraries, else ``attrs["resolution"]``;
``attrs["resolution"] = inf`` or absent for models); a grid Dataset (``flux_in`` on
``wave_in`` and ``sed`` on ``wave_out``, from :func:`lamost2csst.load_grid`) is already there.
"""

from __future__ import annotations

import math

import numpy as np
import xarray as xr

from lamost2csst.core.grids import INPUT_WAVE, OUTPUT_WAVE
from lamost2csst.core.pairs import GriddedLibrary, TrainingPairs, library_to_grids, make_pairs
from lamost2csst.errors import InputError

__all__ = ["gridded_library", "read_library_params", "training_pairs"]


def gridded_library(ds: xr.Dataset, *, inputs: bool = True) -> GriddedLibrary:
    """Clean inputs (R=2000, ``INPUT_WAVE``) and scaled targets (R=200, ``OUTPUT_WAVE``) of a library.

    ``inputs=False`` makes the targets only (libraries coarser than R=2000, e.g. NGSL).
    """
    if "flux_in" in ds and "sed" in ds:  # a synthetic grid: already on the network's grids
        flux_in = ds["flux_in"].values
        sed = ds["sed"].values
        if flux_in.shape[-1] != INPUT_WAVE.size or sed.shape[-1] != OUTPUT_WAVE.size:
            raise ValueError(f"grid arrays {flux_in.shape} / {sed.shape} are not on INPUT_WAVE / OUTPUT_WAVE")
        return GriddedLibrary(
            flux_in,
            ~np.isfinite(flux_in),
            sed,
            ~np.isfinite(sed),
            input_coarser=np.zeros(INPUT_WAVE.size, bool),
        )
    for name in ("wave", "flux"):
        if name not in ds:
            raise ValueError(f"not a library Dataset: no {name!r} (expected the spectra schema or a grid)")
    if ds.attrs.get("frame", "rest") != "rest" and np.any(ds["z"].values != 0):
        raise ValueError("library spectra must be in the rest frame (frame='rest' or z = 0)")
    fwhm = ds.attrs.get("fwhm_angstrom")
    resolution = ds.attrs.get("resolution")
    options = {}
    if fwhm is not None:
        options["input_fwhm"] = float(fwhm)
    elif resolution is not None and math.isfinite(float(resolution)):
        options["input_resolution"] = float(resolution)
    mask = ds["mask"].values if "mask" in ds else None
    flux = ds["flux"].values
    if mask is not None:
        flux = np.where(mask, np.nan, flux)
    return library_to_grids(ds["wave"].values, flux, mask=mask, inputs=inputs, **options)


def training_pairs(ds: xr.Dataset, *, snr, rng: np.random.Generator) -> TrainingPairs:
    """Noisy normalized inputs at ``snr`` and scaled targets for every star of a library Dataset."""
    g = gridded_library(ds)
    return make_pairs(g.flux_in, g.sed, snr=snr, rng=rng, input_mask=g.input_mask, target_mask=g.target_mask)


def read_library_params(path) -> dict[str, dict[str, float]]:
    """Stellar parameters of a library's stars from a CSV file with columns ``name,teff,logg,feh``.

    Parameters
    ----------
    path : str or Path
        A CSV file, header line first (more columns are ignored).

    Returns
    -------
    dict
        ``{name: {"teff": ..., "logg": ..., "feh": ...}}``, names stripped and lower-cased
        (as :func:`lamost2csst.io.readers.read_ngsl` matches them).

    Raises
    ------
    InputError
        If the file is empty or lacks one of the four columns.
    """
    import csv

    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    need = {"name", "teff", "logg", "feh"}
    if not rows or not need <= set(rows[0]):
        raise InputError(f"{path}: expected a CSV with columns {sorted(need)}")
    return {r["name"].strip().lower(): {k: float(r[k]) for k in ("teff", "logg", "feh")} for r in rows}
