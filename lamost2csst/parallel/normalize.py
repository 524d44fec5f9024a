"""Dask job: a spectra catalogue -> UaRA-net inputs (rest frame, INPUT_WAVE, normalized).

The per-block numpy kernel is :func:`lamost2csst.core.prepare_inputs`; this module only
orchestrates it over a catalogue that may not fit in memory:

1. open the input catalogue lazily and check its schema (:func:`open_spectra`);
2. write the output *template* (metadata, the per-star coordinates copied from the input
   and empty ``flux``/``error``/``mask`` arrays) before any pixel is computed;
3. one task per star chunk, shipped as (paths, chunk index): the task reads its stars,
   runs the kernel, writes its region of the output and only then writes the marker
   ``<out>/.markers/chunk-<index>.done``. A chunk written is a chunk done: a job that is
   stopped or crashes is finished by running it again with ``resume=True``, which skips
   the chunks that have a marker.

The output store (schema ``lamost2csst.network_input/1``, Zarr v3, readable with plain
``xarray.open_zarr(out, consolidated=False)``)::

    Dimensions:  (star: N, wave_in: 2238)
    Coordinates:
      * wave_in  (wave_in) float64  INPUT_WAVE: rest-frame vacuum A, R=2000
        obsid, ra, dec, z, ... (star)  copied from the input
    Data variables:
        flux   (star, wave_in) float32  flux / continuum (NaN where masked)
        error  (star, wave_in) float32  error / continuum (NaN where masked)
        mask   (star, wave_in) bool     True = pixel unusable

Markers live in ``<out>/.markers``, an empty Zarr group (so that Zarr readers do not
warn about an unknown directory); each marker is a small JSON file with the chunk's counts.
Paths must be visible to every worker under the same name (local disk for a
LocalCluster, a shared file system for a multi-node cluster).
"""

from __future__ import annotations

import os
import socket
import time
from datetime import datetime, timezone

import numpy as np
import xarray as xr
import zarr

from lamost2csst.core import INPUT_WAVE, prepare_inputs
from lamost2csst.core.inputs import DEFAULT_METHOD
from lamost2csst.io.spectra import open_spectra
from lamost2csst.parallel.chunks import (
    check_resumable,
    MARKERS,
    chunk_ranges,
    create_output,
    empty_array,
    existing_chunk_stars,
    marker_path,
    markers_group,
    run_chunk_tasks,
    star_coords,
)
from lamost2csst.parallel.locking import output_lock
from lamost2csst.parallel.runtime import JobInputError, remove_store, write_json

__all__ = [
    "MARKERS",
    "NETWORK_INPUT_SCHEMA",
    "JobInputError",
    "network_input_template",
    "normalize_catalogue",
    "normalize_chunk",
]

NETWORK_INPUT_SCHEMA = "lamost2csst.network_input/1"
INPUT_RESOLUTION = 2000.0

_STEPS = (
    "1. shift to the rest frame, lambda_rest = lambda_obs / (1 + z) (input frame 'observed' only); "
    "2. cubic-convolution interpolation (Keys, a = -1/2) onto INPUT_WAVE (2238 px, 4000*exp(i/4000) A), "
    "inverse variances and masks propagated; "
    "3. continuum normalization (paper Sect. 2.1): flux / continuum and error / continuum, "
    "continuum = centred moving average of 51 px"
)


def _path(p) -> str:
    from lamost2csst.parallel.storage import resolve

    return resolve(p)


def _open_input(catalogue: str) -> xr.Dataset:
    from lamost2csst.parallel.storage import exists

    if not exists(catalogue):
        raise JobInputError(f"input catalogue {catalogue} does not exist")
    try:
        ds = open_spectra(catalogue)
    except ValueError as err:  # not a Zarr store, or not the spectra schema
        raise JobInputError(f"input {catalogue}: {err}") from None
    if ds.sizes["star"] == 0:
        raise JobInputError(f"input catalogue {catalogue} holds no stars")
    return ds


def network_input_template(ds: xr.Dataset, *, chunk_stars: int, catalogue: str = "") -> xr.Dataset:
    """The output Dataset of :func:`normalize_catalogue` with lazy, never-computed pixel arrays.

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
        "flux": (dims, empty(np.float32), {"long_name": "continuum-normalized flux (flux / continuum)", "units": "1"}),
        "error": (dims, empty(np.float32), {"long_name": "1-sigma error of the normalized flux", "units": "1"}),
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
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "history": f"lamost2csst {__version__} parallel.normalize_catalogue",
    }
    return xr.Dataset(data_vars, coords=coords, attrs=attrs)


def normalize_chunk(index: int, start: int, stop: int, *, catalogue: str, out: str, observed: bool) -> dict:
    """One task: stars ``start:stop`` of ``catalogue`` -> the same region of ``out``, then the marker.

    Top-level and argument-light on purpose (paths and integers, no arrays): cheap to ship to
    any worker. Returns the chunk's marker (counts).
    """
    t0 = time.perf_counter()
    src = xr.open_zarr(catalogue, consolidated=False, chunks=None).isel(star=slice(start, stop))
    wave = src["wave"].values
    flux, ivar, mask = src["flux"].values, src["ivar"].values, src["mask"].values
    z = src["z"].values if observed else np.zeros(stop - start)
    # a star without a usable redshift (NaN, LAMOST's -9999) cannot be put in the rest
    # frame: it is kept, fully masked, and counted, rather than failing its whole chunk
    bad_z = ~np.isfinite(z) | (z <= -1.0)
    if bad_z.any():
        z = np.where(bad_z, 0.0, z)
        mask = mask | bad_z[:, None]
    res = prepare_inputs(wave, flux, ivar=ivar, z=z, mask=mask)
    dims = ("star", "wave_in")
    part = xr.Dataset({"flux": (dims, res.flux), "error": (dims, res.error), "mask": (dims, res.mask)})
    part.to_zarr(out, region={"star": slice(start, stop)}, mode="r+", zarr_format=3, consolidated=False)
    marker = {
        "index": int(index),
        "start": int(start),
        "stop": int(stop),
        "n_star": int(stop - start),
        "n_pixel": int(res.mask.size),
        "masked_pixels": int(res.mask.sum()),
        "stars_all_masked": int(res.mask.all(axis=1).sum()),
        "stars_bad_z": int(bad_z.sum()),
        "seconds": round(time.perf_counter() - t0, 4),
        "host": socket.gethostname(),
        "finished_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    write_json(marker_path(out, index), marker)  # atomic: a marker is either absent or complete
    return marker


def normalize_catalogue(catalogue, out, *, client, chunk_stars=None, resume=False, overwrite=False,
                        progress=True) -> dict:
    """Normalize a whole spectra catalogue into a ``lamost2csst.network_input/1`` Zarr store.

    Parameters
    ----------
    catalogue : path
        Zarr store in the spectra schema (:mod:`lamost2csst.io.spectra`).
    out : path
        Output Zarr store; must not exist unless ``resume`` is True.
    client : distributed.Client
        Where the chunk tasks run.
    chunk_stars : int, optional
        Stars per output chunk (= per task). Default: the input's star chunk size (when
        resuming, the existing output's). Multiples of the input chunk read most efficiently.
    resume : bool
        Finish an existing output: chunks with a marker are skipped. The existing store must
        have been made from the same input (same stars) with the same chunking.
    overwrite : bool
        Remove an existing output first (only a ``lamost2csst.network_input/1`` store).
    progress : bool
        Show a tqdm bar over chunks (on stderr).

    Returns
    -------
    dict
        Summary: ``stars_in``, ``stars_written`` (this run), ``chunks_total``, ``chunks_done``
        (computed and written in this run), ``chunks_skipped`` (had a marker),
        ``masked_pixel_fraction`` and ``stars_all_masked`` (over the whole output),
        ``seconds`` and ``spectra_per_second`` (this run), and the paths. It is also stored
        in the output's attrs as ``summary``.

    Raises
    ------
    JobInputError (a ValueError)
        Unreadable or wrong-schema input, an existing output without ``resume``, or an
        existing output that does not match the input.

    If a task fails, the chunks not yet started are cancelled and the task's error is
    raised; chunks already running may still finish and leave their markers. Either way
    ``resume=True`` recomputes exactly the chunks without a marker.
    """
    t0 = time.perf_counter()
    catalogue, out = _path(catalogue), _path(out)
    with output_lock(out, job="normalize_catalogue", resume=resume):
        ds = _open_input(catalogue)
        n_star = ds.sizes["star"]
        if overwrite and os.path.exists(out):
            remove_store(out, schema=NETWORK_INPUT_SCHEMA)
        exists = os.path.exists(out)
        if exists and not resume:
            raise JobInputError(
                f"output {out} already exists; pass resume=True (--resume) to finish it, or remove it first"
            )
        if chunk_stars is None:
            chunk_stars = (existing_chunk_stars(out) if exists else None) or ds.chunks["star"][0]
        if int(chunk_stars) != chunk_stars or chunk_stars < 1:
            raise JobInputError(f"chunk_stars must be a positive integer, got {chunk_stars!r}")
        chunk_stars = int(min(chunk_stars, n_star))
        template = network_input_template(ds, chunk_stars=chunk_stars, catalogue=catalogue)
        if exists:
            check_resumable(out, template, chunk_stars, schema=NETWORK_INPUT_SCHEMA, variable="flux",
                            same_attrs=("input_resampling",))
            markers_group(out)
        else:
            create_output(template, out, chunk_stars)

        chunks = chunk_ranges(n_star, chunk_stars)
        observed = ds.attrs.get("frame") == "observed"
        markers, new = run_chunk_tasks(
            client, normalize_chunk, chunks, out=out, desc="normalize", progress=progress,
            catalogue=catalogue, observed=observed,
        )
        stars_written = sum(m["n_star"] for m in new)

        seconds = time.perf_counter() - t0
        n_pixel = sum(m["n_pixel"] for m in markers.values())
        summary = {
            "job": "normalize_catalogue",
            "catalogue": catalogue,
            "out": out,
            "stars_in": int(n_star),
            "stars_written": int(stars_written),
            "chunk_stars": chunk_stars,
            "chunks_total": len(chunks),
            "chunks_done": len(new),
            "chunks_skipped": len(chunks) - len(new),
            "masked_pixel_fraction": (sum(m["masked_pixels"] for m in markers.values()) / n_pixel) if n_pixel else 0.0,
            "stars_all_masked": int(sum(m["stars_all_masked"] for m in markers.values())),
            "stars_bad_z": int(sum(m.get("stars_bad_z", 0) for m in markers.values())),
            "seconds": round(seconds, 3),
            "spectra_per_second": round(stars_written / seconds, 1) if seconds > 0 else 0.0,
        }
        zarr.open_group(out, mode="r+", zarr_format=3).attrs["summary"] = summary
        return summary
