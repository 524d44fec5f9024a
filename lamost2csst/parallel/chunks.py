"""Chunked, resumable catalogue jobs: star chunks, the output template, markers, the task loop.

The pattern every catalogue job follows (hats-import style):

1. the output *template* (metadata, per-star coordinates, empty arrays chunked along
   ``star``) is written before any pixel is computed;
2. one task per star chunk, shipped as integers and paths, reads its stars, computes,
   writes its region of the output, and only then writes the marker
   ``<out>/.markers/chunk-<index>.done`` (JSON, written atomically);
3. a rerun with ``resume`` skips the chunks that have a marker.

``<out>/.markers`` is an empty Zarr group, so that Zarr readers do not warn about an
unknown directory.
"""

from __future__ import annotations

import json
import logging
import os

import dask.array as da
import numpy as np
import xarray as xr
import zarr

from lamost2csst.io.spectra import compressor
from lamost2csst.parallel.runtime import JobInputError, open_own_store, read_json

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
    return [(i, start, min(start + chunk_stars, n_star)) for i, start in enumerate(range(0, n_star, chunk_stars))]


def read_marker(out: str, index: int) -> dict | None:
    """The marker of a chunk, or None if it is missing or unreadable (then the chunk is redone)."""
    marker = read_json(marker_path(out, index))
    return marker if marker is not None and marker.get("index") == index else None


def markers_group(out: str) -> None:
    group = zarr.open_group(os.path.join(out, MARKERS), mode="a", zarr_format=3)
    group.attrs["description"] = "resume markers of lamost2csst jobs: chunk-<index>.done (JSON) = chunk written"


def empty_array(shape: tuple[int, ...], dtype, chunk_stars: int) -> da.Array:
    """A never-computed placeholder, chunked along the first (star) axis only."""
    return da.zeros(shape, dtype=dtype, chunks=(chunk_stars, *shape[1:]))


def star_coords(ds: xr.Dataset) -> dict[str, xr.Variable]:
    """The per-star coordinates of ``ds``, loaded (they are small), attrs kept."""
    return {name: xr.Variable("star", var.values, dict(var.attrs)) for name, var in ds.coords.items()
            if var.dims == ("star",)}


def _encoding(template: xr.Dataset, chunk_stars: int) -> dict:
    encoding = {}
    for name, var in template.variables.items():
        if "star" in var.dims:
            chunks = tuple(chunk_stars if d == "star" else template.sizes[d] for d in var.dims)
            encoding[name] = {"chunks": chunks, "compressors": [compressor(1)]}
    return encoding


def create_output(template: xr.Dataset, out: str, chunk_stars: int) -> None:
    """Write the template's metadata and coordinates (no data) and the markers group."""
    template.to_zarr(out, mode="w-", compute=False, zarr_format=3, consolidated=False,
                     encoding=_encoding(template, chunk_stars))
    markers_group(out)


def existing_chunk_stars(out: str) -> int | None:
    try:
        return int(xr.open_zarr(out, consolidated=False).attrs["chunk_stars"])
    except Exception:  # noqa: BLE001 - anything unreadable is reported by the resume check
        return None


def run_chunk_tasks(client, task, chunks, *, out: str, desc: str, progress: bool, **kwargs) -> tuple[dict, list]:
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
                LOG.error(json.dumps({"event": "chunk_failed", "job": desc, "key": str(future.key),
                                      "error": f"{type(err).__name__}: {err}"}))
                raise
            markers[marker["index"]] = marker
            new.append(marker)
            LOG.info(json.dumps({"event": "chunk_done", "job": desc, "index": marker["index"],
                                 "stars": marker.get("n_star"), "seconds": marker.get("seconds"),
                                 "host": marker.get("host")}))
            bar.update(1)
    except BaseException:
        client.cancel(futures)
        raise
    finally:
        bar.close()
    return markers, new


def read_region(store: str, start: int, stop: int, names, *, dim: str = "star") -> dict[str, np.ndarray]:
    """The arrays ``names`` of a Zarr store, rows ``start:stop`` of those along ``dim``.

    Plain Zarr reads (a task reads a few arrays of one chunk: xarray's store opening and
    decoding would cost more than the read itself). Arrays without a ``star`` dimension
    (``wave``) are read whole; names absent from the store are left out.
    """
    group = zarr.open_group(store, mode="r")
    out = {}
    for name in names:
        if name not in group:
            continue
        array = group[name]
        dims = array.metadata.dimension_names or ()
        out[name] = array[start:stop] if dims and dims[0] == dim else array[...]
    return out


def write_region(store: str, start: int, stop: int, arrays: dict[str, np.ndarray]) -> None:
    """Write rows ``start:stop`` of existing Zarr arrays (a task's own chunk region)."""
    group = zarr.open_group(store, mode="r+")
    for name, values in arrays.items():
        group[name][start:stop] = values


def same_stars(old: xr.Dataset, template: xr.Dataset) -> bool:
    """True when two stores list the same obsid in the same order."""
    return bool(np.array_equal(old["obsid"].values, template["obsid"].values))


def check_resumable(out: str, template: xr.Dataset, chunk_stars: int, *, schema: str, variable: str,
                    same_attrs: tuple[str, ...] = ()) -> None:
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
            shown = (f" ({str(before)[:12]} there, {str(now)[:12]} in this run)"
                     if isinstance(now, str) else "")
            problems.append(f"its {name} differs{shown}")
    if problems:
        raise JobInputError(f"cannot resume into {out}: it is not this run's output: " + "; ".join(problems)
                            + ". Remove it or choose another output.")


def missing_chunks(out: str, n_star: int, chunk_stars: int) -> list[int]:
    """Indices of the chunks of a job's output that have no valid marker (not, or not fully, written)."""
    return [index for index, _, _ in chunk_ranges(n_star, chunk_stars) if read_marker(out, index) is None]
