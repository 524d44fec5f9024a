"""The network-inputs store: spectra ready for UaRA-net (rest frame, INPUT_WAVE, normalized).

Written by :func:`lamost2csst.parallel.normalize_catalogue`; schema
``lamost2csst.network_input/1``, Zarr v3, readable with plain
``xarray.open_zarr(store, consolidated=False)``::

    Dimensions:  (star: N, wave_in: 2238)
    Coordinates:
      * wave_in  (wave_in) float64  INPUT_WAVE: rest-frame vacuum A, R=2000
        obsid, ra, dec, z, ... (star)  copied from the input
    Data variables:
        flux   (star, wave_in) float32  flux / continuum (NaN where masked)
        error  (star, wave_in) float32  error / continuum (NaN where masked)
        mask   (star, wave_in) bool     True = pixel unusable
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import xarray as xr

from lamost2csst.core import INPUT_WAVE
from lamost2csst.core.inputs import DEFAULT_METHOD
from lamost2csst.io.regions import empty_array, star_coords

__all__ = [
    "INPUT_RESOLUTION",
    "NETWORK_INPUT_SCHEMA",
    "network_input_template",
    "open_network_inputs",
    "validate_network_inputs",
]

NETWORK_INPUT_SCHEMA = "lamost2csst.network_input/1"
INPUT_RESOLUTION = 2000.0
DATA_VARS = {"flux": np.float32, "error": np.float32, "mask": np.bool_}

_STEPS = (
    "1. shift to the rest frame, lambda_rest = lambda_obs / (1 + z) (input frame 'observed' only); "
    "2. cubic-convolution interpolation (Keys, a = -1/2) onto INPUT_WAVE (2238 px, 4000*exp(i/4000) A), "
    "inverse variances and masks propagated; "
    "3. continuum normalization (paper Sect. 2.1): flux / continuum and error / continuum, "
    "continuum = centred moving average of 51 px"
)


def network_input_template(ds: xr.Dataset, *, chunk_stars: int, catalogue: str = "") -> xr.Dataset:
    """The network-inputs Dataset of a catalogue with lazy, never-computed pixel arrays.

    ``ds`` is the (lazily opened) input catalogue; its per-star coordinates are loaded
    (they are small) and copied, the pixel arrays are dask placeholders chunked
    ``(chunk_stars, 2238)`` that ``to_zarr(compute=False)`` turns into empty arrays.
    """
    from lamost2csst._version import __version__

    shape = (ds.sizes["star"], INPUT_WAVE.size)
    dims = ("star", "wave_in")

    def empty(dtype):
        return empty_array(shape, dtype, chunk_stars)

    coords = {
        "wave_in": (
            "wave_in",
            np.asarray(INPUT_WAVE, dtype=np.float64),
            {
                "units": "Angstrom",
                "medium": "vacuum",
                "frame": "rest",
                "resolution": INPUT_RESOLUTION,
                "long_name": "rest-frame vacuum wavelength (INPUT_WAVE, 4000*exp(i/4000))",
            },
        )
    }
    coords.update(star_coords(ds))
    data_vars = {
        "flux": (
            dims,
            empty(np.float32),
            {"long_name": "continuum-normalized flux (flux / continuum)", "units": "1"},
        ),
        "error": (
            dims,
            empty(np.float32),
            {"long_name": "1-sigma error of the normalized flux", "units": "1"},
        ),
        "mask": (dims, empty(np.bool_), {"long_name": "True = pixel unusable (flux and error are NaN)"}),
    }
    attrs = {
        "schema": NETWORK_INPUT_SCHEMA,
        "title": "UaRA-net input spectra: rest frame, INPUT_WAVE, continuum-normalized",
        "medium": "vacuum",
        "frame": "rest",
        "resolution": INPUT_RESOLUTION,
        "steps": _STEPS,
        "input_resampling": DEFAULT_METHOD,
        "input_store": catalogue,
        "input_schema": ds.attrs.get("schema", ""),
        "input_frame": ds.attrs.get("frame", ""),
        "input_resolution": ds.attrs.get("resolution", float("nan")),
        "input_flux_unit": ds.attrs.get("flux_unit", ""),
        "input_source": ds.attrs.get("source", ""),
        "chunk_stars": int(chunk_stars),
        "lamost2csst_version": __version__,
        "created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "history": f"lamost2csst {__version__} parallel.normalize_catalogue",
    }
    return xr.Dataset(data_vars, coords=coords, attrs=attrs)


def validate_network_inputs(ds: xr.Dataset) -> xr.Dataset:
    """Check that ``ds`` follows the network-inputs schema; raise ValueError listing every problem.

    Only metadata is checked (schema, dims, the ``wave_in`` grid, variables and dtypes); no
    pixel is read.
    """
    problems = []
    if ds.attrs.get("schema") != NETWORK_INPUT_SCHEMA:
        problems.append(f"attrs['schema'] is {ds.attrs.get('schema')!r}, expected {NETWORK_INPUT_SCHEMA!r}")
    if "wave_in" not in ds.coords or ds.sizes.get("wave_in") != INPUT_WAVE.size:
        problems.append(f"missing coordinate 'wave_in' of {INPUT_WAVE.size} pixels (INPUT_WAVE)")
    elif not np.allclose(ds["wave_in"].values, INPUT_WAVE, rtol=1e-12, atol=0.0):
        problems.append("wave_in differs from INPUT_WAVE")
    for name, dtype in DATA_VARS.items():
        if name not in ds.data_vars:
            problems.append(f"missing data variable {name!r}")
        elif ds[name].dims != ("star", "wave_in"):
            problems.append(f"{name} has dims {ds[name].dims}, expected ('star', 'wave_in')")
        elif ds[name].dtype != dtype:
            problems.append(f"{name} has dtype {ds[name].dtype}, expected {np.dtype(dtype)}")
    if problems:
        raise ValueError("not a lamost2csst network-inputs store:\n  - " + "\n  - ".join(problems))
    return ds


def open_network_inputs(store, *, chunks=None) -> xr.Dataset:
    """Open a network-inputs store lazily (dask arrays on its chunks) and validate its schema."""
    try:
        ds = xr.open_zarr(store, consolidated=False, chunks=chunks if chunks is not None else {})
    except (FileNotFoundError, KeyError) as err:
        raise ValueError(f"cannot open {store!s} as a Zarr store: {err}") from err
    return validate_network_inputs(ds)
