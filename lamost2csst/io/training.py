"""Training pairs from any library Dataset: the synthetic grid, MILES, STELIB, NGSL, BOSZ.

The same code path for all (:mod:`lamost2csst.core.pairs`): a spectra-schema Dataset
(as the readers return) is degraded to the network's grids with its own resolution
(``attrs["fwhm_angstrom"]`` for constant-FWHM libraries, else ``attrs["resolution"]``;
``attrs["resolution"] = inf`` or absent for models); a grid Dataset (``flux_in`` on
``wave_in`` and ``sed`` on ``wave_out``, from :func:`lamost2csst.load_grid`) is already there.

Which real-library stars are usable decides :func:`usable_stars`, in one place for every
library (MILES, STELIB, NGSL) and every use (training, screening, evaluation). A star is
skipped, with the first of these reasons counted:

``unreadable``
    The file could not be read at all (the reader's ``on_error="skip"`` lists it in
    ``attrs["unreadable_files"]``; not a row of the Dataset).
``nan_flux``
    A non-finite flux value on a *needed* pixel (masked or not), or on any pixel the mask
    calls good (a value the file does not flag as bad).
``nonpositive_flux``
    A flux value <= 0 on a needed pixel (STELIB's "no data" zeros included), or a clean SED
    (R=200) <= 0 at a pixel built from unmasked values only.
``no_scale_window``
    The SED scaling window 5526-5586 A is not covered (outside the file's grid, or masked
    by the file itself, e.g. NGSL's STAT_ERR).
``input_gap``
    Likewise for the input range 4000-7000 A (libraries that give inputs).
``constant_flux``
    The unmasked flux is constant: peak-to-peak <= :data:`CONSTANT_RTOL` x |mean|.
``missing_parameters``
    A required stellar parameter (default Teff, log g, [Fe/H]) is not finite.

*Needed* pixels are the library pixels under the line-spread kernels of every input pixel
(``INPUT_WAVE`` at R=2000) and of the scaling-window SED pixels (R=200): exactly those that
:func:`gridded_library` would turn into a masked input or an unscalable SED. No masked
fraction is tolerated there (the libraries' inputs must be complete); outside them masked
pixels only mask the target (a masked loss), which is not a defect.
"""

from __future__ import annotations

import math
import warnings
from typing import NamedTuple

import numpy as np
import xarray as xr

from lamost2csst.core.grids import INPUT_WAVE, OUTPUT_WAVE
from lamost2csst.core.lsf import degradation_operator
from lamost2csst.core.pairs import (
    INPUT_RESOLUTION,
    MIN_COVERAGE,
    OUTPUT_RESOLUTION,
    GriddedLibrary,
    TrainingPairs,
    library_to_grids,
    make_pairs,
)
from lamost2csst.core.sed import SCALE_PIXELS
from lamost2csst.errors import InputError

__all__ = [
    "CONSTANT_RTOL",
    "SKIP_REASONS",
    "UsableStars",
    "gridded_library",
    "read_library_params",
    "training_pairs",
    "usable_library",
    "usable_stars",
]

#: Why a real-library star is skipped, in the order they are tried (the first one counts).
SKIP_REASONS = (
    "unreadable",
    "nan_flux",
    "nonpositive_flux",
    "no_scale_window",
    "input_gap",
    "constant_flux",
    "missing_parameters",
)
#: A spectrum whose unmasked flux varies by at most this fraction of its mean is constant.
CONSTANT_RTOL = 1e-6
#: ``mask_reason`` bits of the library readers (:mod:`lamost2csst.io.readers.miles`).
_NONFINITE, _NONPOSITIVE, _NO_DATA = 1, 2, 4


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
    mask = ds["mask"].values if "mask" in ds else None
    flux = ds["flux"].values
    if mask is not None:
        flux = np.where(mask, np.nan, flux)
    return library_to_grids(ds["wave"].values, flux, mask=mask, inputs=inputs, **_resolution_options(ds))


def _resolution_options(ds: xr.Dataset) -> dict:
    """The library's own resolution as :func:`~lamost2csst.core.lsf.degrade` options (none for models)."""
    fwhm = ds.attrs.get("fwhm_angstrom")
    resolution = ds.attrs.get("resolution")
    if fwhm is not None:
        return {"input_fwhm": float(fwhm)}
    if resolution is not None and math.isfinite(float(resolution)):
        return {"input_resolution": float(resolution)}
    return {}


class UsableStars(NamedTuple):
    """Which stars of a library Dataset are usable, and why the others are not (:func:`usable_stars`)."""

    keep: np.ndarray  # (n_star,) bool
    counts: dict  # reason -> stars (files, for "unreadable") skipped for it; every SKIP_REASONS key
    reasons: np.ndarray  # (n_star,) str: "" for a kept star, else its (first) reason
    unreadable: list  # "<path>: <problem>" of the files the reader could not read


def _pixel_reasons(ds: xr.Dataset) -> np.ndarray:
    """Per pixel (star, wave) uint8 bits: why a pixel is unusable (0 = usable).

    Masked pixels take the reader's ``mask_reason`` where it has one, else the value they
    hold (not finite, <= 0, else no data). Unmasked pixels get a bit only for a non-finite
    value (a defect the mask does not flag) or a value <= 0.
    """
    flux = ds["flux"].values
    mask = ds["mask"].values.astype(bool) if "mask" in ds else np.zeros(flux.shape, bool)
    with np.errstate(invalid="ignore"):
        from_values = np.where(np.isfinite(flux), np.where(flux <= 0, _NONPOSITIVE, 0), _NONFINITE)
    from_values = from_values.astype(np.uint8)
    code = from_values
    if "mask_reason" in ds:
        reader = ds["mask_reason"].values.astype(np.uint8)
        code = np.where(mask & (reader != 0), reader, from_values).astype(np.uint8)
    code[mask & (code == 0)] = _NO_DATA
    return code


def _flux_defects(ds: xr.Dataset, code: np.ndarray, *, inputs: bool) -> dict:
    """Per star (n_star,) bool of each flux reason of :data:`SKIP_REASONS` (see the module docstring)."""
    wave = ds["wave"].values
    options = _resolution_options(ds)
    op_out = degradation_operator(wave, resolution=OUTPUT_RESOLUTION, wave_out=OUTPUT_WAVE, **options)
    window = abs(op_out.matrix[SCALE_PIXELS]).sum(axis=0) > 0  # library pixels under the window
    needed_in = np.zeros(wave.size, bool)
    input_uncovered = False
    if inputs:
        op_in = degradation_operator(wave, resolution=INPUT_RESOLUTION, wave_out=INPUT_WAVE, **options)
        needed_in = abs(op_in.matrix).sum(axis=0) > 0
        input_uncovered = bool(np.any(op_in.coverage < MIN_COVERAGE))
    window_uncovered = bool(np.any(op_out.coverage[SCALE_PIXELS] < MIN_COVERAGE))
    needed = window | needed_in
    flux = ds["flux"].values
    unmasked = ~ds["mask"].values.astype(bool) if "mask" in ds else np.ones(flux.shape, bool)
    # the clean SED from the unmasked finite values, where no other value enters: <= 0 is a defect
    good = unmasked & np.isfinite(flux)
    sed = op_out.apply(np.where(good, flux, 0.0).astype(np.float64))
    touched = np.asarray((abs(op_out.matrix) @ (~good).T.astype(np.float64)).T) > 0
    defined = ~touched & (op_out.coverage >= MIN_COVERAGE)
    with warnings.catch_warnings(), np.errstate(invalid="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # stars without any usable pixel
        values = np.where(good, flux, np.nan)
        spread = np.nanmax(values, axis=1) - np.nanmin(values, axis=1)
        constant = spread <= CONSTANT_RTOL * np.abs(np.nanmean(values, axis=1))
    return {
        "nan_flux": ((code[:, needed] & _NONFINITE) != 0).any(axis=1)
        | (unmasked & ~np.isfinite(flux)).any(axis=1),
        "nonpositive_flux": ((code[:, needed] & _NONPOSITIVE) != 0).any(axis=1)
        | (defined & (sed <= 0)).any(axis=1),
        "no_scale_window": window_uncovered | ((code[:, window] & _NO_DATA) != 0).any(axis=1),
        "input_gap": input_uncovered | ((code[:, needed_in] & _NO_DATA) != 0).any(axis=1),
        "constant_flux": constant,
    }


def usable_stars(ds: xr.Dataset, *, inputs: bool = True, params=("teff", "logg", "feh")) -> UsableStars:
    """Which stars of a real library can be used, each other one with the reason it is skipped.

    The rule is in the module docstring: a star with a non-finite or non-positive value
    where the network's input or the SED scaling needs it, without coverage of the scaling
    window (or, with ``inputs``, of the input range), with a constant spectrum or without
    its parameters is skipped; the first reason of :data:`SKIP_REASONS` counts.

    Parameters
    ----------
    ds : xarray.Dataset
        Library spectra in the spectra schema, rest frame (as the readers return them;
        their ``mask_reason`` and ``attrs["unreadable_files"]`` are used when present).
    inputs : bool
        The library gives the network's R=2000 inputs (False for NGSL: targets only, so the
        input range is not needed).
    params : sequence of str
        Per-star coordinates that must be finite (``()``: none, e.g. when they are fitted).

    Returns
    -------
    UsableStars
        ``keep`` (n_star,) bool, ``counts`` (every reason of :data:`SKIP_REASONS`, zeros
        included; "unreadable" counts files), per-star ``reasons`` ("" where kept) and the
        ``unreadable`` files.
    """
    for name in ("wave", "flux"):
        if name not in ds:
            raise ValueError(f"not a library Dataset: no {name!r} (expected the spectra schema)")
    n = int(ds.sizes["star"])
    conditions = _flux_defects(ds, _pixel_reasons(ds), inputs=inputs)
    missing = np.zeros(n, bool)
    for name in params:
        values = ds[name].values.astype(float) if name in ds.variables else np.full(n, np.nan)
        missing |= ~np.isfinite(values)
    conditions["missing_parameters"] = missing
    reasons = np.full(n, "", dtype=object)
    for reason in SKIP_REASONS[1:]:
        reasons[(reasons == "") & conditions[reason]] = reason
    unreadable = [str(f) for f in ds.attrs.get("unreadable_files", [])]
    counts = {reason: int(np.sum(reasons == reason)) for reason in SKIP_REASONS}
    counts["unreadable"] = len(unreadable)
    return UsableStars(reasons == "", counts, reasons.astype(str), unreadable)


def usable_library(ds: xr.Dataset, **options) -> tuple[xr.Dataset, dict]:
    """The usable stars of ``ds`` (:func:`usable_stars` with ``options``) and what was skipped.

    Returns
    -------
    ds : xarray.Dataset
        The usable stars only (``gridded_library`` of it does not raise for the scaling
        window and, with ``inputs``, has no masked input pixel).
    info : dict
        ``stars_read`` (rows of ``ds``), ``skipped`` (reason -> count, every reason) and,
        when files were unreadable, ``unreadable_files``.
    """
    usable = usable_stars(ds, **options)
    info = {"stars_read": int(ds.sizes["star"]), "skipped": usable.counts}
    if usable.unreadable:
        info["unreadable_files"] = usable.unreadable
    return ds.isel(star=np.flatnonzero(usable.keep)), info


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
