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
        spectra_kind  optional: "real" (a survey's stars; the default when absent) or
                    "synthetic" (simulated from the grid, as the demo catalogues), for a
                    model with a real-star branch (predict_catalogue --spectra auto)

Every pixel has a value: pixels without data carry ``mask=True`` and ``ivar=0`` (their
flux may be NaN). Stores are Zarr v3, chunked along ``star`` only (a chunk is a block
of whole spectra), compressed with Blosc/lz4 + byte shuffle (zstd level 5 was the
write bottleneck, see DESIGN.md; lz4 reads 3x faster than zstd level 1 at a 3 % lower
ratio, BENCHMARKS.md), readable with plain
``xarray.open_zarr(store, consolidated=False)``.

**Pixel precision.** By default the writers store ``flux`` and ``ivar`` rounded far below
the noise (:class:`PixelPrecision`, kernels in :mod:`lamost2csst.core.precision`): each
flux within 1e-5 of its pixel's sigma (``|stored - flux| <= 1e-5 / sqrt(ivar)``), each ivar
to 7 mantissa bits (relative error <= 2**-8, so sigma moves by <= ~0.2 %); masked pixels
and pixels without information are kept bit for bit. The flux bound is that tight because
the shipped network amplifies input changes up to ~300x for some stars (in units of its own
sigma): with it the predicted SEDs move by < 1 % of their sigma (at 1 % of the input sigma,
by up to 0.9 sigma). The stored values are plain float32 whose low mantissa bits are zero,
so every reader reads them as before; flux is stored with lz4 + *bit* shuffle (which stores
those zero bits in nearly nothing), ivar and mask with lz4 + byte shuffle: 14.4 instead of
23.9 kB per demo spectrum, decoded in ~1.8x the time (+5 us per spectrum and core; BENCHMARKS.md
"Catalogue bytes per spectrum"). The store's attrs
record it (``pixel_encoding``, ``pixel_flux_fraction``, ``pixel_ivar_bits``);
``precision=None`` keeps the pixels bit for bit and the codecs as before. Stores written
before carry no ``pixel_encoding`` (lossless) and are read as ever.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr
import zarr

from lamost2csst.core.precision import round_spectra
from lamost2csst.errors import InputError
from lamost2csst.io.regions import compressor, template_encoding, write_region, write_template
from lamost2csst.io.storage import exists, resolve

__all__ = [
    "DEFAULT_PRECISION",
    "SCHEMA",
    "PixelPrecision",
    "compressor",
    "create_spectra_store",
    "open_catalogue",
    "open_spectra",
    "precision_attrs",
    "require_catalogue",
    "round_arrays",
    "round_pixels",
    "spectra_dataset",
    "spectra_kind",
    "spectra_encoding",
    "store_precision",
    "star_chunk",
    "validate_spectra",
    "write_spectra",
    "write_spectra_pixels",
    "write_spectra_region",
    "write_spectra_template",
]

SCHEMA = "lamost2csst.spectra/1"
REQUIRED_STAR_COORDS = ("obsid", "ra", "dec", "z")
OPTIONAL_FLOAT_COORDS = ("z_err", "snr_u", "snr_g", "snr_r", "snr_i", "snr_z", "teff", "logg", "feh", "alpha")
DATA_VARS = {"flux": np.float32, "ivar": np.float32, "mask": np.bool_}
FRAMES = ("observed", "rest")
#: Values of the optional ``spectra_kind`` attr: a survey's real stars (the default) or simulated ones.
SPECTRA_KINDS = ("real", "synthetic")
DEFAULT_CHUNK_STARS = 4096


@dataclass(frozen=True)
class PixelPrecision:
    """How precisely a catalogue stores its pixels (see :func:`lamost2csst.core.precision.round_spectra`).

    Attributes
    ----------
    flux_fraction : float
        Each stored flux is within ``flux_fraction * sigma`` of the given one
        (``sigma = ivar**-0.5`` of the given ivar).
    ivar_bits : int
        Mantissa bits kept of each ivar: relative error at most ``2**-(ivar_bits + 1)``, so
        sigma moves by at most ~``2**-(ivar_bits + 2)`` of itself.
    """

    flux_fraction: float = 1e-5
    ivar_bits: int = 7


#: The writers' default: flux within 1e-5 of sigma, ivar to 7 bits (sigma within ~0.2 %).
DEFAULT_PRECISION = PixelPrecision()
#: Stars rounded at a time by :func:`round_arrays`.
ROUND_ROWS = 256

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


def spectra_kind(ds) -> str:
    """What a catalogue's spectra are: its ``spectra_kind`` attr, ``"real"`` where it has none.

    Raises
    ------
    InputError
        The attr holds something else than one of :data:`SPECTRA_KINDS`.
    """
    kind = ds.attrs.get("spectra_kind", "real")
    if kind not in SPECTRA_KINDS:
        raise InputError(f"the catalogue's spectra_kind attr is {kind!r}; expected one of {SPECTRA_KINDS}")
    return kind


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


def precision_attrs(precision: PixelPrecision | None) -> dict:
    """The store attrs that record a catalogue's pixel encoding (``precision=None``: lossless)."""
    if precision is None:
        return {"pixel_encoding": "flux and ivar float32 as given (lossless); Blosc lz4 + byte shuffle"}
    codec = "flux Blosc lz4 + bit shuffle, ivar and mask Blosc lz4 + byte shuffle"
    fraction, bits = float(precision.flux_fraction), int(precision.ivar_bits)
    text = (
        f"flux rounded to a power-of-two step within {fraction:g} sigma (|stored - flux| <= "
        f"{fraction:g} / sqrt(ivar)); ivar rounded to {bits} mantissa bits (relative error <= "
        f"2**-{bits + 1}); masked pixels and pixels with ivar <= 0 kept as given; {codec} "
        "(lamost2csst.core.precision.round_spectra)"
    )
    return {"pixel_encoding": text, "pixel_flux_fraction": fraction, "pixel_ivar_bits": bits}


def store_attrs_precision(attrs) -> PixelPrecision | None:
    """The pixel precision that a catalogue's attrs record; None (lossless) when none."""
    if "pixel_flux_fraction" not in attrs:
        return None
    return PixelPrecision(float(attrs["pixel_flux_fraction"]), int(attrs["pixel_ivar_bits"]))


def store_precision(store) -> PixelPrecision | None:
    """The pixel precision a catalogue store records in its attrs; None (lossless) when none."""
    return store_attrs_precision(zarr.open_group(str(store), mode="r").attrs)


def round_arrays(
    flux, ivar, mask, precision: PixelPrecision = DEFAULT_PRECISION
) -> tuple[np.ndarray, np.ndarray]:
    """``(flux, ivar)`` arrays as a catalogue written with ``precision`` stores them.

    Rounded :data:`ROUND_ROWS` stars at a time (bounded temporaries, whatever the size).
    """
    flux, ivar = np.asarray(flux, np.float32), np.asarray(ivar, np.float32)
    mask = np.zeros(flux.shape, bool) if mask is None else np.asarray(mask, bool)
    out_flux, out_ivar = np.empty_like(flux), np.empty_like(ivar)
    for start in range(0, flux.shape[0], ROUND_ROWS):
        rows = slice(start, start + ROUND_ROWS)
        out_flux[rows], out_ivar[rows] = round_spectra(
            flux[rows],
            ivar=ivar[rows],
            mask=mask[rows],
            flux_fraction=precision.flux_fraction,
            ivar_bits=precision.ivar_bits,
        )
    return out_flux, out_ivar


def spectra_encoding(template: xr.Dataset, chunk_stars: int, *, level: int = 1) -> dict:
    """Zarr encoding of a catalogue store: :func:`~lamost2csst.io.regions.template_encoding`,
    and bit shuffle for ``flux`` when its attrs record a rounding (:func:`precision_attrs`)."""
    encoding = template_encoding(template, chunk_stars, level=level)
    if "pixel_flux_fraction" in template.attrs and "flux" in encoding:
        encoding["flux"]["compressors"] = [compressor(level, shuffle="bitshuffle")]
    return encoding


def write_spectra_template(template: xr.Dataset, out: str, chunk_stars: int) -> None:
    """:func:`~lamost2csst.io.regions.write_template` of a catalogue, with :func:`spectra_encoding`."""
    write_template(template, out, chunk_stars, encoding=spectra_encoding(template, chunk_stars))


def round_pixels(ds: xr.Dataset, precision: PixelPrecision | None = DEFAULT_PRECISION) -> xr.Dataset:
    """A catalogue Dataset with its pixels as the writers store them under ``precision``.

    Lazy (dask-backed) datasets stay lazy: the rounding runs block by block when computed.
    The result's attrs record the encoding (:func:`precision_attrs`); ``precision=None``
    changes nothing but those attrs. A Dataset whose attrs already record ``precision`` (an
    opened store written with it) is not rounded again.
    """
    done = precision is not None and store_attrs_precision(ds.attrs) == precision
    ds = ds.drop_attrs(deep=False).assign_attrs(
        {k: v for k, v in ds.attrs.items() if not k.startswith("pixel_")} | precision_attrs(precision)
    )
    if precision is None or done:
        return ds
    flux, ivar = xr.apply_ufunc(
        round_arrays,
        ds["flux"],
        ds["ivar"],
        ds["mask"],
        kwargs={"precision": precision},
        output_core_dims=[[], []],
        dask="parallelized",
        output_dtypes=[np.float32, np.float32],
        keep_attrs=False,
    )
    # the variables' data only: their attrs, and the coordinates', stay those of ds
    return ds.assign(flux=ds["flux"].copy(data=flux.data), ivar=ds["ivar"].copy(data=ivar.data))


def write_spectra(
    ds: xr.Dataset,
    store,
    *,
    chunk_stars: int = DEFAULT_CHUNK_STARS,
    level: int = 1,
    mode: str = "w-",
    compute: bool = True,
    precision: PixelPrecision | None = DEFAULT_PRECISION,
):
    """Write a whole catalogue to a Zarr v3 store (computes dask-backed inputs).

    ``mode="w-"`` refuses to overwrite an existing store; pass ``mode="w"`` to replace it.
    With ``compute=False`` only the metadata is written and the dask ``Delayed`` that
    writes the arrays is returned (compute it, e.g. with ``client.compute``, to follow
    its progress); otherwise the store path is returned. ``precision`` rounds the pixels
    far below their noise (:class:`PixelPrecision`; default flux within 1e-5 of sigma);
    ``precision=None`` stores them bit for bit.
    """
    validate_spectra(ds)
    chunk_stars = max(1, min(chunk_stars, ds.sizes["star"]))
    ds = ds.chunk({"star": chunk_stars, "wave": -1}) if ds.chunks else ds
    ds = round_pixels(ds, precision)
    delayed = ds.to_zarr(
        store,
        mode=mode,
        zarr_format=3,
        consolidated=False,
        compute=compute,
        encoding=spectra_encoding(ds, chunk_stars, level=level),
    )
    return store if compute else delayed


def create_spectra_store(
    template: xr.Dataset,
    store,
    *,
    chunk_stars: int = DEFAULT_CHUNK_STARS,
    level: int = 1,
    precision: PixelPrecision | None = DEFAULT_PRECISION,
):
    """Write only the metadata (and the non-star coordinates) of a catalogue: the template.

    ``template`` is a full-size Dataset whose star-dimensioned variables may be lazy dask
    arrays; nothing of them is computed. Fill it afterwards with
    :func:`write_spectra_region`, chunk by chunk, from any process: the pixels are stored
    under the ``precision`` recorded here (:func:`write_spectra`; None: bit for bit).
    """
    validate_spectra(template, check_values=False)
    chunk_stars = max(1, min(chunk_stars, template.sizes["star"]))
    template = template.chunk({"star": chunk_stars}).assign_attrs(precision_attrs(precision))
    template.to_zarr(
        store,
        mode="w-",
        zarr_format=3,
        consolidated=False,
        compute=False,
        encoding=spectra_encoding(template, chunk_stars, level=level),
    )
    return store


def write_spectra_region(part: xr.Dataset, store, *, start: int) -> None:
    """Write the stars ``start .. start + len(part)`` of a store made by :func:`create_spectra_store`.

    ``start`` and the part's length should align with the store's star chunks so that
    concurrent writers never touch the same chunk. The pixels are stored under the
    precision the store records (:func:`write_spectra_pixels`).
    """
    stop = start + part.sizes["star"]
    arrays = {n: v.values for n, v in part.variables.items() if "star" in v.dims}
    write_spectra_pixels(str(store), start, stop, arrays)


def write_spectra_pixels(store: str, start: int, stop: int, arrays: dict) -> None:
    """Write rows ``start:stop`` of a catalogue store's arrays, pixels under the store's precision.

    ``arrays`` maps names to values (``flux``, ``ivar``, ``mask`` and any per-star
    arrays); ``flux`` and ``ivar`` are rounded as the store's attrs say
    (:func:`store_precision`; a store without them, e.g. one written before, bit for bit),
    then everything is written with :func:`lamost2csst.io.regions.write_region`.
    """
    precision = store_precision(store) if "flux" in arrays and "ivar" in arrays else None
    if precision is not None:
        flux, ivar = round_arrays(arrays["flux"], arrays["ivar"], arrays.get("mask"), precision)
        arrays = {**arrays, "flux": flux, "ivar": ivar}
    write_region(store, start, stop, arrays)


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
