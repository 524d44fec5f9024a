"""The flat-field cube store (Zarr v3, schema ``lamost2csst.flatcube/1``) and its work area.

::

    <xarray.Dataset>
    Dimensions:  (band: 3, detector: 4, wave_out: 574, coeff: K, coeff2: K, gy: G, gx: G)
    Data variables:
        coeffs         (band, detector, wave_out, coeff)          Legendre coefficients of the ratio surface
        covariance     (band, detector, wave_out, coeff, coeff2)  their covariance
        mean_response  (band, detector, wave_out)                 mean of the surface over the detector
        flat           (band, detector, wave_out, gy, gx) f32     normalized flat (mean 1 per wavelength)
        flat_error     (band, detector, wave_out, gy, gx) f32     its 1-sigma from the covariance
        n_obs          (band, detector, wave_out) int64           observations used
        fit            (band, detector, wave_out) bool            False: unfit
        chi2_dof       (band, detector, wave_out)
        star_scale     (star)                                     self-calibrated scales (optional)
    Attributes:
        schema "lamost2csst.flatcube/1", order, terms_ij, basis, detector_shape, kappa,
        iterations, min_stars, wavelength_ranges, observations, predictions,
        prediction_model_hash, created_utc, summary

Beside the cube, ``<out>/.work/iter-<k>/chunk-<i>.npz`` keep the normal equations of the
chunks finished in fit iteration ``k`` (what a resumed run reuses); the folders are empty
Zarr groups, so that Zarr readers accept them. The module also reads the rows of the
predictions store that a chunk of observations needs (joined by ``obsid``).
"""

from __future__ import annotations

import os
from datetime import UTC, datetime

import numpy as np
import xarray as xr
import zarr

from lamost2csst.core.flatfield import NormalEquations, polynomial_terms
from lamost2csst.core.grids import BANDS, OUTPUT_WAVE
from lamost2csst.core.slitless import DETECTOR_SHAPE, DETECTORS_PER_BAND
from lamost2csst.errors import InputError
from lamost2csst.io.observations import open_observations
from lamost2csst.io.predictions import SED_SCHEMAS
from lamost2csst.io.storage import exists, resolve

__all__ = [
    "FLATCUBE_SCHEMA",
    "flatcube_dataset",
    "load_partial",
    "open_flatcube",
    "open_inputs",
    "prediction_rows",
    "prepare_work_area",
    "save_partial",
    "work_path",
    "write_flatcube",
]

FLATCUBE_SCHEMA = "lamost2csst.flatcube/1"


def open_inputs(observations: str, predictions: str) -> tuple[xr.Dataset, xr.Dataset]:
    """The observation and prediction stores of a cube, opened lazily and checked.

    Raises
    ------
    InputError
        A store does not exist, the observations do not follow their schema, the
        predictions are not of a version in :data:`lamost2csst.io.predictions.SED_SCHEMAS`
        (``lamost2csst.predictions/2`` or ``/3``), or the two have different
        ``wave_out`` grids.
    """
    for path, what in ((observations, "observations"), (predictions, "predictions")):
        if not exists(path):
            raise InputError(f"{what} store {path} does not exist")
    try:
        obs = open_observations(observations)
    except ValueError as err:
        raise InputError(f"observations {observations}: {err}") from None
    pred = xr.open_zarr(resolve(predictions), consolidated=False)
    if pred.attrs.get("schema") not in SED_SCHEMAS:
        raise InputError(
            f"predictions {predictions}: schema is {pred.attrs.get('schema')!r}, expected one of "
            f"{', '.join(map(repr, SED_SCHEMAS))} (the output of jobs.predict_catalogue; a /1 store's "
            "sigma is the network's alone: predict the catalogue again)"
        )
    if pred.sizes.get("wave_out") != obs.sizes.get("wave_out"):
        raise InputError("observations and predictions are not on the same wave_out grid")
    return obs, pred


def work_path(out: str, iteration: int, index: int) -> str:
    """Where chunk ``index`` of fit iteration ``iteration`` saves its normal equations."""
    return os.path.join(out, ".work", f"iter-{iteration}", f"chunk-{index}.npz")


def prepare_work_area(out: str, iterations: int) -> None:
    """Empty Zarr groups ``<out>/.work/iter-<k>`` for ``iterations`` fit iterations."""
    for iteration in range(iterations):
        zarr.open_group(os.path.join(out, ".work", f"iter-{iteration}"), mode="a", zarr_format=3)
    zarr.open_group(os.path.join(out, ".work"), mode="a", zarr_format=3).attrs["description"] = (
        "saved normal equations of finished chunks (chunk-<i>.npz) per iteration, for --resume"
    )


def save_partial(path: str, result: dict) -> None:
    """Save a chunk's result (counts, normal equations per group, star sums), atomically."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    arrays = {
        "n_obs": np.array(result["n_obs"]),
        "clipped": np.array(result["clipped"]),
        "peak_rss_mb": np.array(result["peak_rss_mb"]),
    }
    arrays.update({f"count_{k}": np.array(v) for k, v in result["counts"].items()})
    for key, eq in result["groups"].items():
        arrays.update({f"{key}/{field}": getattr(eq, field) for field in NormalEquations._fields})
    arrays.update({f"star_sums_{i}": a for i, a in enumerate(result["star_sums"])})
    tmp = f"{path}.{os.getpid()}.tmp.npz"
    np.savez(tmp, **arrays)
    os.replace(tmp, path)  # a saved chunk is complete


def load_partial(path: str, reasons) -> dict:
    """A chunk's result saved by :func:`save_partial`; ``reasons``: the names of its counts."""
    with np.load(path) as file:
        saved = dict(file)
    groups = {}
    for name in saved:
        if "/" in name and not name.startswith("star_sums"):
            key, field = name.split("/")
            groups.setdefault(key, {})[field] = saved[name]
    return {
        "n_obs": int(saved["n_obs"]),
        "clipped": int(saved["clipped"]),
        "peak_rss_mb": float(saved.get("peak_rss_mb", 0.0)),
        "counts": {k: int(saved[f"count_{k}"]) for k in reasons},
        "groups": {k: NormalEquations(**v) for k, v in groups.items()},
        "star_sums": tuple(saved[f"star_sums_{i}"] for i in range(3)),
    }


def prediction_rows(predictions: str, obsid: np.ndarray, index: tuple[np.ndarray, np.ndarray]):
    """The predictions of the stars ``obsid``: ``(found, sed, sigma, flags, where)``.

    ``index`` is ``(sorted obsid of the store, their rows)``. ``found`` marks the obsid with a
    prediction; ``sed``, ``sigma``, ``flags`` hold the distinct rows read, and ``where[i]``
    is the position in those of observation ``i``'s row (meaningful where ``found``).
    """
    sorted_obsid, order = index
    pos = np.clip(np.searchsorted(sorted_obsid, obsid), 0, max(sorted_obsid.size - 1, 0))
    found = sorted_obsid.size > 0
    found = found & (sorted_obsid[pos] == obsid) if sorted_obsid.size else np.zeros(obsid.size, bool)
    rows = np.where(found, order[pos], -1)
    unique = np.unique(rows[rows >= 0])
    group = zarr.open_group(predictions, mode="r")
    if unique.size:
        sed = group["sed"].get_orthogonal_selection((unique, slice(None)))
        sigma = group["sigma"].get_orthogonal_selection((unique, slice(None)))
        flags = group["flags"].get_orthogonal_selection(unique)
    else:
        sed = sigma = np.zeros((0, OUTPUT_WAVE.size), np.float32)
        flags = np.zeros(0, np.uint16)
    where = np.searchsorted(unique, np.maximum(rows, 0))
    return found, sed, sigma, flags, where


def _variables(arrays: dict, cube_shape: tuple[int, ...]) -> dict:
    return {
        "coeffs": (
            ("band", "detector", "wave_out", "coeff"),
            arrays["coeffs"].astype(np.float64),
            {"long_name": "Legendre coefficients of the flux-ratio surface (not normalized)"},
        ),
        "covariance": (
            ("band", "detector", "wave_out", "coeff", "coeff2"),
            arrays["covariance"],
            {"long_name": "covariance of coeffs"},
        ),
        "mean_response": (
            ("band", "detector", "wave_out"),
            arrays["mean_response"],
            {"long_name": "mean over the detector of the ratio surface (throughput x mean flat)"},
        ),
        "flat": (
            ("band", "detector", "wave_out", "gy", "gx"),
            arrays["flat"].reshape(cube_shape).astype(np.float32),
            {"long_name": "large-scale flat normalized to mean 1 per wavelength"},
        ),
        "flat_error": (
            ("band", "detector", "wave_out", "gy", "gx"),
            arrays["flat_error"].reshape(cube_shape).astype(np.float32),
            {"long_name": "1-sigma of flat from the fit covariance"},
        ),
        "n_obs": (
            ("band", "detector", "wave_out"),
            arrays["n_obs"],
            {"long_name": "observations used in the fit"},
        ),
        "fit": (
            ("band", "detector", "wave_out"),
            arrays["fit"],
            {"long_name": "False: unfit (outside the band, too few stars, degenerate)"},
        ),
        "chi2_dof": (("band", "detector", "wave_out"), arrays["chi2_dof"]),
    }


def flatcube_dataset(
    arrays: dict,
    *,
    gy,
    gx,
    order: int,
    kappa: float,
    iterations: int,
    min_stars: int,
    observations: str,
    predictions: str,
    model_hash: str,
    star_scales=None,
) -> xr.Dataset:
    """The cube as an in-memory Dataset (schema above).

    ``arrays`` holds ``coeffs``, ``covariance``, ``mean_response``, ``n_obs``, ``fit``,
    ``chi2_dof`` per (band, detector, wave_out) and ``flat``, ``flat_error`` per (band,
    detector, wave_out, gy * gx); ``star_scales`` (sorted obsid, scale) of a self-calibration.
    """
    n_terms = len(polynomial_terms(order))
    cube_shape = (len(BANDS), DETECTORS_PER_BAND, OUTPUT_WAVE.size, len(gy), len(gx))
    ds = xr.Dataset(
        _variables(arrays, cube_shape),
        coords={
            "band": ("band", np.array(list(BANDS), dtype=object)),
            "detector": ("detector", np.arange(DETECTORS_PER_BAND)),
            "wave_out": ("wave_out", OUTPUT_WAVE, {"units": "Angstrom", "medium": "vacuum"}),
            "coeff": ("coeff", np.arange(n_terms)),
            "coeff2": ("coeff2", np.arange(n_terms)),
            "gy": ("gy", gy, {"units": "pixel"}),
            "gx": ("gx", gx, {"units": "pixel"}),
        },
        attrs={
            "schema": FLATCUBE_SCHEMA,
            "order": int(order),
            "terms_ij": [list(t) for t in polynomial_terms(order)],
            "basis": "P_i(u) P_j(v), Legendre, u = 2x/(nx-1)-1, v = 2y/(ny-1)-1",
            "detector_shape": list(DETECTOR_SHAPE),
            "kappa": float(kappa),
            "iterations": int(iterations),
            "min_stars": int(min_stars),
            "wavelength_ranges": {b: list(r) for b, r in BANDS.items()},
            "observations": observations,
            "predictions": predictions,
            "prediction_model_hash": model_hash,
            "created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        },
    )
    if star_scales is not None:
        ds["star_scale"] = (("star",), star_scales[1], {"long_name": "self-calibrated scale of each star"})
        ds = ds.assign_coords(star_obsid=("star", star_scales[0]))
        ds.attrs["self_calibrated"] = 1
    return ds


def write_flatcube(ds: xr.Dataset, out, *, resume: bool = False) -> None:
    """Write the cube into ``out`` (beside an existing work area when ``resume``)."""
    ds.to_zarr(resolve(out), mode="a" if resume else "w", zarr_format=3, consolidated=False)


def open_flatcube(path) -> xr.Dataset:
    """The cube at ``path``, loaded; ``ValueError`` when it is not a ``lamost2csst.flatcube/1`` store."""
    cube = xr.open_zarr(resolve(path), consolidated=False).load()
    if cube.attrs.get("schema") != FLATCUBE_SCHEMA:
        raise ValueError(f"{path}: schema is {cube.attrs.get('schema')!r}, expected {FLATCUBE_SCHEMA!r}")
    return cube
