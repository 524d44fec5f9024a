"""Chunked, resumable catalogue jobs: star chunks, the output set-up, markers, the task loop.

The pattern every catalogue job follows (hats-import style):

1. the output *template* (metadata, per-star coordinates, empty arrays chunked along
   ``star``) is written before any pixel is computed;
2. one task per star chunk, shipped as integers and paths, reads its stars, computes,
   writes its region of the output, and only then writes the marker
   ``<out>/.markers/chunk-<index>.done`` (JSON, written atomically);
3. a rerun with ``resume`` skips the chunks that have a marker.

``<out>/.markers`` is an empty Zarr group, so that Zarr readers do not warn about an
unknown directory. The stores' templates and their region reads and writes are
:mod:`lamost2csst.io` (``read_region``, ``write_region``, ``empty_array`` and ``star_coords``
are re-exported here for old callers).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable

import numpy as np
import xarray as xr
import zarr

from lamost2csst.errors import InputError
from lamost2csst.io.regions import empty_array, read_region, star_coords, write_region, write_template
from lamost2csst.io.spectra import open_catalogue, star_chunk
from lamost2csst.io.storage import exists as storage_exists
from lamost2csst.parallel.runtime import open_own_store, read_json, remove_store

__all__ = [
    "MARKERS",
    "check_resumable",
    "chunk_ranges",
    "create_output",
    "empty_array",
    "existing_chunk_stars",
    "marker_path",
    "missing_chunks",
    "markers_group",
    "open_input",
    "prepare_output",
    "read_marker",
    "read_region",
    "run_chunk_tasks",
    "same_stars",
    "star_coords",
    "write_region",
]

MARKERS = ".markers"
#: One JSON line per chunk done or failed (``logging`` at INFO / ERROR); the jobs' ``--log-chunks``
#: sends them to stderr, a cluster's log collector can parse them.
LOG = logging.getLogger("lamost2csst.jobs")


def marker_path(out: str, index: int) -> str:
    return os.path.join(out, MARKERS, f"chunk-{index}.done")


def chunk_ranges(n_star: int, chunk_stars: int) -> list[tuple[int, int, int]]:
    """(index, start, stop) of each star chunk."""
    return [
        (i, start, min(start + chunk_stars, n_star)) for i, start in enumerate(range(0, n_star, chunk_stars))
    ]


def read_marker(out: str, index: int) -> dict | None:
    """The marker of a chunk, or None if it is missing or unreadable (then the chunk is redone)."""
    marker = read_json(marker_path(out, index))
    return marker if marker is not None and marker.get("index") == index else None


def markers_group(out: str) -> None:
    group = zarr.open_group(os.path.join(out, MARKERS), mode="a", zarr_format=3)
    group.attrs["description"] = (
        "resume markers of lamost2csst jobs: chunk-<index>.done (JSON) = chunk written"
    )


def create_output(template: xr.Dataset, out: str, chunk_stars: int) -> None:
    """Write the template's metadata and coordinates (no data) and the markers group."""
    write_template(template, out, chunk_stars)
    markers_group(out)


def existing_chunk_stars(out: str) -> int | None:
    try:
        return int(xr.open_zarr(out, consolidated=False).attrs["chunk_stars"])
    except Exception:  # noqa: BLE001 - anything unreadable is reported by the resume check
        return None


def run_chunk_tasks(
    client, task, chunks, *, out: str, desc: str, progress: bool, **kwargs
) -> tuple[dict, list]:
    """Run ``task(index, start, stop, **kwargs)`` for the chunks without a marker.

    Returns ``(markers, new)``: every chunk's marker by index (old and new) and the
    list of the markers of the chunks computed in this call. If a task fails, the chunks not yet started
    are cancelled and the error is raised; finished chunks keep their markers.
    """
    from distributed import as_completed
    from tqdm.auto import tqdm

    markers = {i: m for i, _, _ in chunks if (m := read_marker(out, i)) is not None}
    todo = [c for c in chunks if c[0] not in markers]
    futures, new = [], []
    if todo:
        index, start, stop = (list(column) for column in zip(*todo))
        futures = client.map(task, index, start, stop, pure=False, out=out, **kwargs)
    bar = tqdm(total=len(chunks), initial=len(markers), unit="chunk", desc=desc, disable=not progress)
    try:
        for future in as_completed(futures):
            try:
                marker = future.result()
            except Exception as err:
                LOG.error(
                    json.dumps(
                        {
                            "event": "chunk_failed",
                            "job": desc,
                            "key": str(future.key),
                            "error": f"{type(err).__name__}: {err}",
                        }
                    )
                )
                raise
            markers[marker["index"]] = marker
            new.append(marker)
            LOG.info(
                json.dumps(
                    {
                        "event": "chunk_done",
                        "job": desc,
                        "index": marker["index"],
                        "stars": marker.get("n_star"),
                        "seconds": marker.get("seconds"),
                        "host": marker.get("host"),
                    }
                )
            )
            bar.update(1)
    except BaseException:
        client.cancel(futures)
        raise
    finally:
        bar.close()
    return markers, new


def same_stars(old: xr.Dataset, template: xr.Dataset) -> bool:
    """True when two stores list the same obsid in the same order."""
    return bool(np.array_equal(old["obsid"].values, template["obsid"].values))


def check_resumable(
    out: str,
    template: xr.Dataset,
    chunk_stars: int,
    *,
    schema: str,
    variable: str,
    same_attrs: tuple[str, ...] = (),
) -> None:
    """Refuse to resume into a store that is not this run's output.

    The existing store must have ``schema``, the template's stars (same obsid, same order),
    ``variable`` chunked as ``(chunk_stars, width)`` and the same values of the attrs
    ``same_attrs`` (e.g. the model hash): otherwise finished chunks would be mixed with
    chunks of another input, chunking or model.
    """
    old = open_own_store(out, schema=schema, action="cannot resume into")
    problems = []
    n_star, width = template.sizes["star"], template[variable].shape[1]
    if old.sizes.get("star") != n_star:
        problems.append(f"it has {old.sizes.get('star')} stars, the input has {n_star}")
    elif variable not in old or tuple(old[variable].encoding.get("chunks") or ()) != (chunk_stars, width):
        chunks = old[variable].encoding.get("chunks") if variable in old else None
        problems.append(f"its {variable} chunks are {chunks}, this run uses ({chunk_stars}, {width})")
    elif not same_stars(old, template):
        problems.append("its obsid differ from the input's (another catalogue?)")
    for name in same_attrs:
        before, now = old.attrs.get(name), template.attrs.get(name)
        if before != now:
            shown = (
                f" ({str(before)[:12]} there, {str(now)[:12]} in this run)" if isinstance(now, str) else ""
            )
            problems.append(f"its {name} differs{shown}")
    if problems:
        raise InputError(
            f"cannot resume into {out}: it is not this run's output: "
            + "; ".join(problems)
            + ". Remove it or choose another output."
        )


def missing_chunks(out: str, n_star: int, chunk_stars: int) -> list[int]:
    """Indices of the chunks of a job's output that have no valid marker (not, or not fully, written)."""
    return [index for index, _, _ in chunk_ranges(n_star, chunk_stars) if read_marker(out, index) is None]


def open_input(catalogue: str) -> xr.Dataset:
    """The job's input catalogue, opened once (:func:`lamost2csst.io.spectra.open_catalogue`).

    Bad input raises :class:`lamost2csst.errors.InputError`, the jobs' exit-2 error.
    """
    return open_catalogue(catalogue)


def prepare_output(
    out: str,
    source: xr.Dataset,
    *,
    chunk_stars,
    resume: bool,
    overwrite: bool,
    schema: str,
    template: Callable[[int], xr.Dataset],
    variable: str,
    same_attrs: tuple[str, ...] = (),
) -> int:
    """Set up the output store of a job on catalogue ``source`` before any task runs; returns the chunk size.

    ``overwrite`` removes an existing store of ``schema`` first; an existing store without
    ``resume`` is refused. ``chunk_stars`` defaults to the existing output's (on resume) or
    the input's, at most its star count. ``template(chunk_stars)``
    builds the output Dataset: written as a new store, or checked against the existing one
    (:func:`check_resumable` with ``variable`` and ``same_attrs``).
    """
    if overwrite and storage_exists(out):
        remove_store(out, schema=schema)
    exists = storage_exists(out)
    if exists and not resume:
        raise InputError(
            f"output {out} already exists; pass resume=True (--resume) to finish it, or remove it first"
        )
    if chunk_stars is None:
        chunk_stars = (existing_chunk_stars(out) if exists else None) or star_chunk(source)
    if int(chunk_stars) != chunk_stars or chunk_stars < 1:
        raise InputError(f"chunk_stars must be a positive integer, got {chunk_stars!r}")
    chunk_stars = int(min(chunk_stars, source.sizes["star"]))
    output = template(chunk_stars)
    if exists:
        check_resumable(out, output, chunk_stars, schema=schema, variable=variable, same_attrs=same_attrs)
        markers_group(out)
    else:
        create_output(output, out, chunk_stars)
    return chunk_stars
