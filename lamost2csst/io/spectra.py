"""The spectra catalogue schema: one xarray Dataset layout, stored as Zarr v3.

This module is the single place where the layout is defined. A catalogue holds many
spectra on ONE shared wavelength grid::

    <xarray.Dataset>
    Dimensions:  (star: N, wave: M)
    Coordinates:
      * wave     (wave)  float64   vacuum Angstrom (attrs: units, medium)
        obsid    (star)  int64     unique spectrum identifier (LAMOST OBSID)     [required]
        ra       (star)  float64   deg, ICRS                                    [required]
        dec      (star)  float64   deg, ICRS                                    [required]
        z        (star)  float64   redshift (LAMOST header Z; 0 = rest frame)   [required]
        z_err, snr_u, snr_g, snr_r, snr_i, snr_z, teff, logg, feh, ...         [optional]
    Data variables:
        flux     (star, wave) float32   flux density per unit wavelength
        ivar     (star, wave) float32   inverse variance of flux; 0 = no information
        mask     (star, wave) bool      True = pixel must not be used
    Attributes:
        schema      "lamost2csst.spectra/1"
        medium      "vacuum"
        resolution  resolving power R of the spectra (float)
        frame       "observed" (apply z) or "rest" (z already removed)
        flux_unit   e.g. "1e-17 erg s-1 cm-2 A-1" or "relative"
        source      provenance (free text)

Every pixel has a value: pixels without data carry ``mask=True`` and ``ivar=0`` (their
flux may be NaN). Stores are Zarr v3, chunked along ``star`` only (a chunk is a block
of whole spectra), compressed with Blosc/lz4 + byte shuffle (zstd level 5 was the
write bottleneck, see DESIGN.md; lz4 reads 3x faster than zstd level 1 at a 3 % lower
ratio, BENCHMARKS.md), readable with plain
``xarray.open_zarr(store, consolidated=False)``.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from lamost2csst.errors import InputError
from lamost2csst.io.regions import compressor, template_encoding, write_region
from lamost2csst.io.storage import exists, resolve

__all__ = [
    "SCHEMA",
    "compressor",
    "create_spectra_store",
    "open_catalogue",
    "open_spectra",
    "require_catalogue",
    "spectra_dataset",
    "star_chunk",
    "validate_spectra",
    "write_spectra",
    "write_spectra_region",
]

SCHEMA = "lamost2csst.spectra/1"
REQUIRED_STAR_COORDS = ("obsid", "ra", "dec", "z")
OPTIONAL_FLOAT_COORDS = ("z_err", "snr_u", "snr_g", "snr_r", "snr_i", "snr_z", "teff", "logg", "feh", "alpha")
DATA_VARS = {"flux": np.float32, "ivar": np.float32, "mask": np.bool_}
FRAMES = ("observed", "rest")
DEFAULT_CHUNK_STARS = 4096

_COORD_ATTRS = {
    "obsid": {"long_name": "spectrum identifier (LAMOST OBSID)"},
    "ra": {"units": "deg", "long_name": "right ascension (ICRS)"},
    "dec": {"units": "deg", "long_name": "declination (ICRS)"},
    "z": {"units": "1", "long_name": "redshift"},
    "z_err": {"units": "1", "long_name": "redshift uncertainty"},
    "teff": {"units": "K", "long_name": "effective temperature"},
    "logg": {"units": "dex", "long_name": "log surface gravity (cgs)"},
    "feh": {"units": "dex", "long_name": "[Fe/H] or [M/H]"},
    "alpha": {"units": "dex", "long_name": "[alpha/M]"},
}


def spectra_dataset(
    *,
    wave,
    flux,
    ivar,
    obsid,
    ra,
    dec,
    z,
    resolution: float,
    mask=None,
    frame: str = "observed",
    flux_unit: str = "relative",
    source: str = "",
    **star_coords,
) -> xr.Dataset:
    """Build a validated catalogue Dataset from numpy (or dask) arrays.

    ``mask`` defaults to ``ivar == 0 | ~isfinite(flux)``; extra keyword arguments become
    per-star coordinates (e.g. ``snr_g=...``, ``teff=...``).
    """
    flux = np.asarray(flux, dtype=np.float32) if not hasattr(flux, "dask") else flux.astype(np.float32)
    ivar = np.asarray(ivar, dtype=np.float32) if not hasattr(ivar, "dask") else ivar.astype(np.float32)
    if mask is None:
        mask = (ivar <= 0) | ~np.isfinite(flux)
    coords = {
        "wave": ("wave", np.asarray(wave, dtype=np.float64), {"units": "Angstrom", "medium": "vacuum"}),
        "obsid": ("star", np.asarray(obsid, dtype=np.int64)),
        "ra": ("star", np.asarray(ra, dtype=np.float64)),
        "dec": ("star", np.asarray(dec, dtype=np.float64)),
        "z": ("star", np.asarray(z, dtype=np.float64)),
    }
    for name, values in star_coords.items():
        coords[name] = ("star", np.asarray(values))
    ds = xr.Dataset(
        {
            "flux": (("star", "wave"), flux, {"long_name": "flux density", "units": flux_unit}),
            "ivar": (("star", "wave"), ivar, {"long_name": "inverse variance of flux"}),
            "mask": (("star", "wave"), mask.astype(bool), {"long_name": "True = pixel must not be used"}),
        },
        coords={k: v[:2] for k, v in coords.items()},
        attrs={
            "schema": SCHEMA,
            "medium": "vacuum",
            "resolution": float(resolution),
            "frame": frame,
            "flux_unit": flux_unit,
            "source": source,
        },
    )
    for name, spec in coords.items():
        ds[name].attrs.update(spec[2] if len(spec) > 2 else _COORD_ATTRS.get(name, {}))
    validate_spectra(ds)
    return ds


def validate_spectra(ds: xr.Dataset, *, check_values: bool = True) -> xr.Dataset:
    """Check that ``ds`` follows the catalogue schema; raise ValueError listing every problem.

    ``check_values`` also checks the per-star coordinates' values (unique obsid, finite
    positions), which reads them; pixel arrays are never read here.
    """
    problems = []
    if ds.attrs.get("schema") != SCHEMA:
        problems.append(f"attrs['schema'] is {ds.attrs.get('schema')!r}, expected {SCHEMA!r}")
    for dim in ("star", "wave"):
        if dim not in ds.dims:
            problems.append(f"missing dimension {dim!r}")
    if "wave" not in ds.coords:
        problems.append("missing coordinate 'wave' (vacuum Angstrom)")
    for name, dtype in DATA_VARS.items():
        if name not in ds.data_vars:
            problems.append(f"missing data variable {name!r}")
        elif ds[name].dims != ("star", "wave"):
            problems.append(f"{name} has dims {ds[name].dims}, expected ('star', 'wave')")
        elif ds[name].dtype != dtype:
            problems.append(f"{name} has dtype {ds[name].dtype}, expected {np.dtype(dtype)}")
    for name in REQUIRED_STAR_COORDS:
        if name not in ds.coords:
            problems.append(f"missing per-star coordinate {name!r}")
        elif ds[name].dims != ("star",):
            problems.append(f"{name} has dims {ds[name].dims}, expected ('star',)")
    if ds.attrs.get("medium") != "vacuum":
        problems.append(f"attrs['medium'] is {ds.attrs.get('medium')!r}; convert wavelengths to vacuum")
    if ds.attrs.get("frame") not in FRAMES:
        problems.append(f"attrs['frame'] is {ds.attrs.get('frame')!r}, expected one of {FRAMES}")
    resolution = ds.attrs.get("resolution")
    if not isinstance(resolution, (int, float)) or not resolution > 0:
        problems.append(f"attrs['resolution'] is {resolution!r}, expected a positive number")
    if not problems and check_values:
        wave = ds["wave"].values
        if wave.ndim != 1 or not np.all(np.isfinite(wave)) or np.any(np.diff(wave) <= 0) or np.any(wave <= 0):
            problems.append("wave must be finite, positive and strictly increasing")
        obsid = ds["obsid"].values
        if np.unique(obsid).size != obsid.size:
            problems.append(f"obsid has {obsid.size - np.unique(obsid).size} duplicated values")
        for name in ("ra", "dec"):
            if not np.all(np.isfinite(ds[name].values)):
                problems.append(f"{name} has non-finite values")
    if problems:
        raise ValueError("not a lamost2csst spectra catalogue:\n  - " + "\n  - ".join(problems))
    return ds


def write_spectra(
    ds: xr.Dataset,
    store,
    *,
    chunk_stars: int = DEFAULT_CHUNK_STARS,
    level: int = 1,
    mode: str = "w-",
    compute: bool = True,
):
    """Write a whole catalogue to a Zarr v3 store (computes dask-backed inputs).

    ``mode="w-"`` refuses to overwrite an existing store; pass ``mode="w"`` to replace it.
    With ``compute=False`` only the metadata is written and the dask ``Delayed`` that
    writes the arrays is returned (compute it, e.g. with ``client.compute``, to follow
    its progress); otherwise the store path is returned.
    """
    validate_spectra(ds)
    chunk_stars = max(1, min(chunk_stars, ds.sizes["star"]))
    ds = ds.chunk({"star": chunk_stars, "wave": -1}) if ds.chunks else ds
    delayed = ds.to_zarr(
        store,
        mode=mode,
        zarr_format=3,
        consolidated=False,
        compute=compute,
        encoding=template_encoding(ds, chunk_stars, level=level),
    )
    return store if compute else delayed


def create_spectra_store(
    template: xr.Dataset, store, *, chunk_stars: int = DEFAULT_CHUNK_STARS, level: int = 1
):
    """Write only the metadata (and the non-star coordinates) of a catalogue: the template.

    ``template`` is a full-size Dataset whose star-dimensioned variables may be lazy dask
    arrays; nothing of them is computed. Fill it afterwards with
    :func:`write_spectra_region`, chunk by chunk, from any process.
    """
    validate_spectra(template, check_values=False)
    chunk_stars = max(1, min(chunk_stars, template.sizes["star"]))
    template = template.chunk({"star": chunk_stars})
    template.to_zarr(
        store,
        mode="w-",
        zarr_format=3,
        consolidated=False,
        compute=False,
        encoding=template_encoding(template, chunk_stars, level=level),
    )
    return store


def write_spectra_region(part: xr.Dataset, store, *, start: int) -> None:
    """Write the stars ``start .. start + len(part)`` of a store made by :func:`create_spectra_store`.

    ``start`` and the part's length should align with the store's star chunks so that
    concurrent writers never touch the same chunk.
    """
    stop = start + part.sizes["star"]
    write_region(store, start, stop, {n: v.values for n, v in part.variables.items() if "star" in v.dims})


def open_spectra(store, *, chunks=None) -> xr.Dataset:
    """Open a catalogue lazily (dask arrays on the store's chunks) and validate its schema."""
    try:
        ds = xr.open_zarr(store, consolidated=False, chunks=chunks if chunks is not None else {})
    except (FileNotFoundError, KeyError) as err:
        raise ValueError(f"cannot open {store!s} as a Zarr store: {err}") from err
    return validate_spectra(ds)


def require_catalogue(path) -> str:
    """The catalogue's resolved path or URL; InputError when nothing is there (nothing is opened)."""
    path = resolve(path)
    if not exists(path):
        raise InputError(f"input catalogue {path} does not exist")
    return path


def open_catalogue(path) -> xr.Dataset:
    """A job's input catalogue, opened once: it exists, follows the schema and holds stars.

    Opened without dask (arrays are read on access; the jobs' tasks read their own rows with
    :func:`lamost2csst.io.regions.read_region`); :func:`star_chunk` is the store's chunk size.

    Raises
    ------
    lamost2csst.errors.InputError
        The store does not exist, is not a spectra catalogue, or holds no stars.
    """
    path = require_catalogue(path)
    try:
        ds = validate_spectra(xr.open_zarr(path, consolidated=False, chunks=None))
    except (FileNotFoundError, KeyError) as err:
        raise InputError(f"input {path}: cannot open {path!s} as a Zarr store: {err}") from None
    except ValueError as err:  # not the spectra schema
        raise InputError(f"input {path}: {err}") from None
    if ds.sizes["star"] == 0:
        raise InputError(f"input catalogue {path} holds no stars")
    return ds


def star_chunk(ds: xr.Dataset) -> int:
    """Stars per chunk of an opened catalogue store (its ``flux`` array's), at most its star count."""
    return int(min(ds["flux"].encoding["chunks"][0], ds.sizes["star"]))
