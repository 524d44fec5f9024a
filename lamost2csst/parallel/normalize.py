"""Dask job: a spectra catalogue -> UaRA-net inputs (rest frame, INPUT_WAVE, normalized).

The per-block numpy kernel is :func:`lamost2csst.core.prepare_inputs`; the output store
(schema ``lamost2csst.network_input/1``) is :mod:`lamost2csst.io.network_inputs`. This
module only orchestrates the kernel over a catalogue that may not fit in memory:

1. open the input catalogue once and check its schema
   (:func:`lamost2csst.parallel.chunks.open_input`);
2. write the output *template* (metadata, the per-star coordinates copied from the input
   and empty ``flux``/``error``/``mask`` arrays) before any pixel is computed;
3. one task per star chunk, shipped as (paths, chunk index): the task reads its stars,
   runs the kernel, writes its region of the output and only then writes the marker
   ``<out>/.markers/chunk-<index>.done``. A chunk written is a chunk done: a job that is
   stopped or crashes is finished by running it again with ``resume=True``, which skips
   the chunks that have a marker.

Markers live in ``<out>/.markers``, an empty Zarr group (so that Zarr readers do not
warn about an unknown directory); each marker is a small JSON file with the chunk's counts.
Paths must be visible to every worker under the same name (local disk for a
LocalCluster, a shared file system for a multi-node cluster).
"""

from __future__ import annotations

import socket
import time
from datetime import UTC, datetime

import numpy as np
import zarr

from lamost2csst.core import prepare_inputs
from lamost2csst.core.inputs import DEFAULT_TROUBLE, TROUBLE_MODES, treat_trouble_spots
from lamost2csst.errors import InputError
from lamost2csst.io.network_inputs import INPUT_RESOLUTION, NETWORK_INPUT_SCHEMA, network_input_template
from lamost2csst.io.regions import read_region, write_region
from lamost2csst.io.storage import resolve
from lamost2csst.parallel.chunks import (
    MARKERS,
    chunk_ranges,
    marker_path,
    open_input,
    prepare_output,
    run_chunk_tasks,
)
from lamost2csst.parallel.locking import output_lock
from lamost2csst.parallel.runtime import write_json

__all__ = [
    "INPUT_RESOLUTION",
    "MARKERS",
    "NETWORK_INPUT_SCHEMA",
    "InputError",
    "network_input_template",
    "normalize_catalogue",
    "normalize_chunk",
]


def normalize_chunk(
    index: int, start: int, stop: int, *, catalogue: str, out: str, observed: bool, trouble: str = "keep"
) -> dict:
    """One task: stars ``start:stop`` of ``catalogue`` -> the same region of ``out``, then the marker.

    Top-level and argument-light on purpose (paths and integers, no arrays): cheap to ship to
    any worker. ``trouble``: LAMOST's trouble spots, treated in the observed frame before the
    shift exactly as ``predict_catalogue`` does. Returns the chunk's marker (counts).
    """
    t0 = time.perf_counter()
    src = read_region(catalogue, start, stop, ("wave", "flux", "ivar", "mask", "z"))
    wave, flux, ivar, mask = src["wave"], src["flux"], src["ivar"], src["mask"]
    z = src["z"] if observed else np.zeros(stop - start)
    # a star without a usable redshift (NaN, LAMOST's -9999) cannot be put in the rest
    # frame: it is kept, fully masked, and counted, rather than failing its whole chunk
    bad_z = ~np.isfinite(z) | (z <= -1.0)
    if bad_z.any():
        z = np.where(bad_z, 0.0, z)
        mask = mask | bad_z[:, None]
    if observed and trouble != "keep":
        ivar, mask = treat_trouble_spots(wave, ivar, mask, mode=trouble)
    res = prepare_inputs(wave, flux, ivar=ivar, z=z, mask=mask)
    write_region(out, start, stop, {"flux": res.flux, "error": res.error, "mask": res.mask})
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
        "finished_utc": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    write_json(marker_path(out, index), marker)  # atomic: a marker is either absent or complete
    return marker


def normalize_catalogue(
    catalogue,
    out,
    *,
    client,
    chunk_stars=None,
    resume=False,
    overwrite=False,
    progress=True,
    lamost_trouble: str = DEFAULT_TROUBLE,
) -> dict:
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
    lamost_trouble : {"mask", "inflate", "keep"}
        LAMOST's trouble spots in an observed-frame catalogue, as ``predict_catalogue``'s option of
        the same name (default masked), so that the stored inputs are what that job feeds the
        network; recorded as ``input_trouble`` (absent = "keep") and must match on resume.

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
    InputError (a ValueError)
        Unreadable or wrong-schema input, an existing output without ``resume``, or an
        existing output that does not match the input.

    If a task fails, the chunks not yet started are cancelled and the task's error is
    raised; chunks already running may still finish and leave their markers. Either way
    ``resume=True`` recomputes exactly the chunks without a marker.
    """
    t0 = time.perf_counter()
    if lamost_trouble not in TROUBLE_MODES:
        raise InputError(f"lamost_trouble must be one of {TROUBLE_MODES}, got {lamost_trouble!r}")
    catalogue, out = resolve(catalogue), resolve(out)
    with output_lock(out, job="normalize_catalogue", resume=resume):
        ds = open_input(catalogue)
        observed = ds.attrs.get("frame") == "observed"
        trouble = lamost_trouble if observed else "keep"  # at observed wavelengths only
        chunk_stars = prepare_output(
            out,
            ds,
            chunk_stars=chunk_stars,
            resume=resume,
            overwrite=overwrite,
            schema=NETWORK_INPUT_SCHEMA,
            template=lambda n: _with_trouble(
                network_input_template(ds, chunk_stars=n, catalogue=catalogue), trouble
            ),
            variable="flux",
            same_attrs=("input_resampling", "input_trouble"),
        )
        chunks = chunk_ranges(ds.sizes["star"], chunk_stars)
        markers, new = run_chunk_tasks(
            client,
            normalize_chunk,
            chunks,
            out=out,
            desc="normalize",
            progress=progress,
            catalogue=catalogue,
            observed=observed,
            trouble=trouble,
        )
        summary = _summary(
            catalogue,
            out,
            n_star=ds.sizes["star"],
            chunk_stars=chunk_stars,
            markers=markers,
            new=new,
            seconds=time.perf_counter() - t0,
        )
        zarr.open_group(out, mode="r+", zarr_format=3).attrs["summary"] = summary
        return summary


def _with_trouble(template, trouble: str):
    """The template with ``input_trouble`` in its attrs, unless "keep" (stores from before the option)."""
    if trouble != "keep":
        template.attrs["input_trouble"] = trouble
    return template


def _summary(
    catalogue: str, out: str, *, n_star: int, chunk_stars: int, markers: dict, new: list, seconds: float
) -> dict:
    """The job's summary from the chunks' markers (all of them, and this run's)."""
    stars_written = sum(m["n_star"] for m in new)
    n_pixel = sum(m["n_pixel"] for m in markers.values())
    return {
        "job": "normalize_catalogue",
        "catalogue": catalogue,
        "out": out,
        "stars_in": int(n_star),
        "stars_written": int(stars_written),
        "chunk_stars": chunk_stars,
        "chunks_total": len(markers),
        "chunks_done": len(new),
        "chunks_skipped": len(markers) - len(new),
        "masked_pixel_fraction": (
            sum(m["masked_pixels"] for m in markers.values()) / n_pixel if n_pixel else 0.0
        ),
        "stars_all_masked": int(sum(m["stars_all_masked"] for m in markers.values())),
        "stars_bad_z": int(sum(m.get("stars_bad_z", 0) for m in markers.values())),
        "seconds": round(seconds, 3),
        "spectra_per_second": round(stars_written / seconds, 1) if seconds > 0 else 0.0,
    }
