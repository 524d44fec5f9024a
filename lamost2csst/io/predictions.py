"""The predictions store: predicted CSST-like SEDs, their sigmas and quality flags.

Written by :func:`lamost2csst.parallel.predict.predict_catalogue`; schema
``lamost2csst.predictions/3``, Zarr v3, readable with plain
``xarray.open_zarr(store, consolidated=False)``::

    Dimensions:  (star: N, wave_out: 574)
    Coordinates:
      * wave_out  (wave_out) float64  OUTPUT_WAVE: vacuum A, R=200
        obsid, ra, dec, z, ... (star)  copied from the input, same order
    Data variables:
        sed        (star, wave_out) float32  predicted SED, scaled like scale_sed (NaN: NO_DATA)
        sigma      (star, wave_out) float32  total relative 1-sigma (flux error = sigma*sed)
        sigma_net  (star, wave_out) float32  the network's own (aleatoric) relative 1-sigma
        sigma_sys  (star, wave_out) float32  model discrepancy: relative 1-sigma added in quadrature
        flags      (star) uint16             quality bitmask (lamost2csst.core.flags.Flag)
        teff_estimate        (star) float32  Teff (K) estimated from the normalized input spectrum
        teff_estimate_error  (star) float32  its 1-sigma uncertainty (K)
        domain_chi2          (star) float32  reduced chi-square of the best domain template

with ``sigma = hypot(sigma_net, sigma_sys)`` at every pixel (float32 round-off).
``sigma_net`` is what the network says about its own SED from the input's noise; it is
computed for synthetic stars and does not know how real stars differ from them.
``sigma_sys`` is the model discrepancy (:mod:`lamost2csst.core.discrepancy`:
``sigma**2 = (a*sigma_net)**2 + b**2`` per pixel), fitted on out-of-fold residuals of real
stars and kept in the model card; where the model has none, ``sigma_sys`` is 0 and
``sigma == sigma_net``. Use ``sigma`` as the SED's uncertainty (e.g. a flat-field weight).
The ``UNCERTAIN`` flag is set on ``sigma_net`` (its threshold was set on the network's sigma).
The attrs ``sigma_sys`` (the discrepancy's provenance, its fitted pixels) and
``sigma_sys_sha256`` record which discrepancy was applied. For a model with a real-star
branch (:mod:`lamost2csst.nn.model`) the attr ``input_spectra`` says which SED ``sed`` is:
``"real"`` (a real star's, the survey's case) or ``"synthetic"`` (the grid's; simulated
catalogues); absent for a model without the branch.

``teff_estimate``, ``teff_estimate_error`` and ``domain_chi2`` are the domain check of
:mod:`lamost2csst.core.domain` (NaN where the star has no usable input): a chi-square of the
star's normalized input against noise-free templates (the network's training models and
reference models beyond its 4750-10000 K domain), with the star's colour as a one-sided
term. Where the input catalogue has no finite ``teff``, they set the ``OUTSIDE_DOMAIN`` flag
(thresholds in the attrs ``flag_thresholds``: ``domain_teff_range``, ``max_domain_chi2``,
``domain_error_floor``, ``domain_color_error``); the attrs ``domain_templates`` record which
templates were used. A catalogue's ``subclass`` (LAMOST's spectral type, kept as a star
coordinate like every other one) is a hint only: nothing in the job uses it.

Version 1 had ``sigma`` only (= the network's sigma, ``sigma_net`` here), version 2 had no
domain check: such stores are still readable with xarray, but this package neither validates
nor resumes them.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime

import numpy as np
import xarray as xr

from lamost2csst.core import OUTPUT_WAVE
from lamost2csst.core.discrepancy import ModelDiscrepancy
from lamost2csst.core.flags import FLAG_MEANINGS, Flag, FlagThresholds
from lamost2csst.core.inputs import DEFAULT_METHOD
from lamost2csst.io.regions import empty_array, star_coords

__all__ = [
    "PREDICTIONS_SCHEMA",
    "SED_SCHEMAS",
    "discrepancy_attrs",
    "is_other_version",
    "open_predictions",
    "predictions_template",
    "validate_predictions",
]

PREDICTIONS_SCHEMA = "lamost2csst.predictions/3"
#: Versions whose ``sed``, total ``sigma`` and ``flags`` mean what they mean now: what a consumer of
#: the SEDs (``build_flatcube``) may read. /2 lacks only the domain check.
SED_SCHEMAS = ("lamost2csst.predictions/2", PREDICTIONS_SCHEMA)
DATA_VARS = {
    "sed": (("star", "wave_out"), np.float32),
    "sigma": (("star", "wave_out"), np.float32),
    "sigma_net": (("star", "wave_out"), np.float32),
    "sigma_sys": (("star", "wave_out"), np.float32),
    "flags": (("star",), np.uint16),
    "teff_estimate": (("star",), np.float32),
    "teff_estimate_error": (("star",), np.float32),
    "domain_chi2": (("star",), np.float32),
}
#: Long names and units of the domain check's per-star variables.
_DOMAIN_VARS = {
    "teff_estimate": ("Teff estimated from the normalized input spectrum (domain check)", "K"),
    "teff_estimate_error": ("1-sigma uncertainty of teff_estimate", "K"),
    "domain_chi2": ("reduced chi-square of the best domain-check template", "1"),
}
#: Long names of the per-pixel variables (also their attrs in the store).
_LONG_NAMES = {
    "sed": "predicted CSST-like SED, scaled like lamost2csst.scale_sed",
    "sigma": (
        "total relative 1-sigma uncertainty of sed, hypot(sigma_net, sigma_sys) (flux error = sigma * sed)"
    ),
    "sigma_net": "the network's own (aleatoric) relative 1-sigma uncertainty of sed",
    "sigma_sys": (
        "model discrepancy: relative 1-sigma added in quadrature to sigma_net (fitted on out-of-fold "
        "real-star residuals; 0 where the model has none)"
    ),
}


def is_other_version(schema) -> bool:
    """True for the schema of a predictions store of another version than :data:`PREDICTIONS_SCHEMA`."""
    prefix = PREDICTIONS_SCHEMA.rsplit("/", 1)[0] + "/"
    return isinstance(schema, str) and schema.startswith(prefix) and schema != PREDICTIONS_SCHEMA


def discrepancy_attrs(discrepancy: ModelDiscrepancy) -> dict:
    """The store attrs that record a model discrepancy: ``sigma_sys`` (provenance) and ``sigma_sys_sha256``.

    The digest is the SHA-256 of the discrepancy's JSON form (:meth:`ModelDiscrepancy.to_dict`,
    keys sorted): two runs applied the same discrepancy when their digests agree.
    """
    text = json.dumps(discrepancy.to_dict(), sort_keys=True, default=str)
    return {
        "sigma_sys": {
            "provenance": json.loads(json.dumps(discrepancy.provenance, default=str)),
            "fitted_pixels": int(np.count_nonzero(discrepancy.fitted)),
            "pixels": int(discrepancy.fitted.size),
            "rule": (
                "sigma**2 = (scale * sigma_net)**2 + floor**2 per pixel; "
                "sigma_sys**2 = sigma**2 - sigma_net**2"
            ),
        },
        "sigma_sys_sha256": hashlib.sha256(text.encode()).hexdigest(),
    }


def predictions_template(
    ds: xr.Dataset,
    *,
    chunk_stars: int,
    catalogue: str,
    model_path: str,
    model_hash: str,
    model_card: dict,
    thresholds: FlagThresholds,
    discrepancy: ModelDiscrepancy | None = None,
    domain_provenance: dict | None = None,
) -> xr.Dataset:
    """The predictions Dataset of catalogue ``ds`` with never-computed arrays (the job's template).

    ``discrepancy`` is the model discrepancy the job applies (recorded in the attrs by
    :func:`discrepancy_attrs`); None: ``ModelDiscrepancy.none()`` (``sigma_sys`` = 0).
    ``domain_provenance``: the domain templates' provenance
    (:attr:`lamost2csst.core.domain.DomainTemplates.provenance`), the attrs ``domain_templates``.
    """
    from lamost2csst._version import __version__

    n_star = ds.sizes["star"]
    dims = ("star", "wave_out")
    coords = {
        "wave_out": (
            "wave_out",
            np.asarray(OUTPUT_WAVE, dtype=np.float64),
            {
                "units": "Angstrom",
                "medium": "vacuum",
                "resolution": 200.0,
                "long_name": "vacuum wavelength (OUTPUT_WAVE, 2500*exp(i/400))",
            },
        )
    }
    coords.update(star_coords(ds))
    shape = (n_star, OUTPUT_WAVE.size)
    data_vars = {
        name: (dims, empty_array(shape, np.float32, chunk_stars), {"long_name": long_name, "units": "1"})
        for name, long_name in _LONG_NAMES.items()
    }
    data_vars["flags"] = (
        ("star",),
        empty_array((n_star,), np.uint16, chunk_stars),
        {
            "long_name": "quality bitmask (0 = nothing to report)",
            "flag_masks": [int(f) for f in Flag],
            "flag_meanings": " ".join(f.name for f in Flag),
        },
    )
    for name, (long_name, units) in _DOMAIN_VARS.items():
        data_vars[name] = (
            ("star",),
            empty_array((n_star,), np.float32, chunk_stars),
            {"long_name": long_name, "units": units},
        )
    attrs = {
        "schema": PREDICTIONS_SCHEMA,
        "title": "UaRA-net predictions: CSST-like SEDs with per-pixel uncertainties",
        "flags": {f.name: f"{int(f)}: {FLAG_MEANINGS[f]}" for f in Flag},
        "flag_thresholds": thresholds.as_dict(),
        "model_path": model_path,
        "model_hash": model_hash,
        "model_command": model_card.get("command", ""),
        "model_epoch": model_card.get("epoch", -1),
        **discrepancy_attrs(discrepancy if discrepancy is not None else ModelDiscrepancy.none()),
        "domain_templates": dict(domain_provenance or {}),
        "input_store": catalogue,
        "input_schema": ds.attrs.get("schema", ""),
        "input_frame": ds.attrs.get("frame", ""),
        "input_source": ds.attrs.get("source", ""),
        "input_resampling": DEFAULT_METHOD,
        "chunk_stars": int(chunk_stars),
        "lamost2csst_version": __version__,
        "created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "history": f"lamost2csst {__version__} parallel.predict_catalogue",
    }
    return xr.Dataset(data_vars, coords=coords, attrs=attrs)


def validate_predictions(ds: xr.Dataset) -> xr.Dataset:
    """Check that ``ds`` follows the predictions schema; raise ValueError listing every problem.

    Only metadata is checked (schema, the ``wave_out`` grid, variables, dims and dtypes). A store
    of another version of the schema (``lamost2csst.predictions/1``: no ``sigma_net`` or
    ``sigma_sys``; ``/2``: no ``teff_estimate``, ``teff_estimate_error``, ``domain_chi2``) is refused.
    """
    problems = []
    if ds.attrs.get("schema") != PREDICTIONS_SCHEMA:
        problems.append(f"attrs['schema'] is {ds.attrs.get('schema')!r}, expected {PREDICTIONS_SCHEMA!r}")
    if "wave_out" not in ds.coords or ds.sizes.get("wave_out") != OUTPUT_WAVE.size:
        problems.append(f"missing coordinate 'wave_out' of {OUTPUT_WAVE.size} pixels (OUTPUT_WAVE)")
    elif not np.allclose(ds["wave_out"].values, OUTPUT_WAVE, rtol=1e-12, atol=0.0):
        problems.append("wave_out differs from OUTPUT_WAVE")
    for name, (dims, dtype) in DATA_VARS.items():
        if name not in ds.data_vars:
            problems.append(f"missing data variable {name!r}")
        elif ds[name].dims != dims:
            problems.append(f"{name} has dims {ds[name].dims}, expected {dims}")
        elif ds[name].dtype != dtype:
            problems.append(f"{name} has dtype {ds[name].dtype}, expected {np.dtype(dtype)}")
    if problems:
        raise ValueError("not a lamost2csst predictions store:\n  - " + "\n  - ".join(problems))
    return ds


def open_predictions(store, *, chunks=None) -> xr.Dataset:
    """Open a predictions store lazily (dask arrays on its chunks) and validate its schema."""
    try:
        ds = xr.open_zarr(store, consolidated=False, chunks=chunks if chunks is not None else {})
    except (FileNotFoundError, KeyError) as err:
        raise ValueError(f"cannot open {store!s} as a Zarr store: {err}") from err
    return validate_predictions(ds)
