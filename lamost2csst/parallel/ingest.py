"""Dask job: LAMOST LRS FITS files -> one spectra catalogue (Zarr), appendable and resumable.

Stages (each FITS file is read once):

1. **list** the FITS files of the inputs (files or folders, searched recursively for
   ``*.fits``, ``*.fits.gz``, ``*.fit``, ``*.fit.gz``), sorted, each once; files already in
   the store (same path) are skipped;
2. **read** (one task per batch of files, :func:`read_files`): read each file with
   :func:`lamost2csst.io.readers.lamost.read_lamost_file`; a file that cannot be read becomes
   a *reject* (path and reason), never a silent loss. The pixels of the readable files stay
   on the worker; only the per-star header values come back to the client;
3. **deduplicate**: a file whose OBSID is already in the store or earlier in this run is a
   reject;
4. **append** the accepted stars to the store's template (metadata and coordinates,
   in file order; the store is created on first use) and **write** their pixels from the
   read batches that hold them, one task per star chunk of the store (chunks never shared
   between tasks), each followed by its marker ``.markers/ingest-<start>.done``.

Stages 2-4 run segment by segment (``files_per_segment`` files, default
:data:`FILES_PER_SEGMENT`): each segment is one append to the store, and the next segment is
read while the current one is written, so that the pixels held by the workers stay bounded
(two segments, ~35 kB per file) whatever the number of files.

Re-running on the same inputs adds nothing twice. A run that stopped between 4 and its
markers is finished first by the next run (the stars without a marker are re-read from
their ``file`` coordinate, :func:`write_stars`). Rejects are kept in the store's attrs
(``rejects``: path, reason, time) and replaced when a later run reads the file successfully.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import xarray as xr
import zarr

from lamost2csst.core import LAMOST_WAVE
from lamost2csst.errors import InputError
from lamost2csst.io.readers import ReaderError, read_lamost
from lamost2csst.io.readers.lamost import lamost_dataset, read_lamost_file
from lamost2csst.io.spectra import (
    DEFAULT_CHUNK_STARS,
    DEFAULT_PRECISION,
    SCHEMA,
    precision_attrs,
    validate_spectra,
    write_spectra_pixels,
    write_spectra_template,
)
from lamost2csst.parallel.chunks import MARKERS, empty_array, markers_group
from lamost2csst.parallel.locking import output_lock
from lamost2csst.parallel.runtime import read_json, write_json

__all__ = [
    "FILES_PER_SEGMENT",
    "INGEST_SOURCE",
    "find_lamost_files",
    "ingest_lamost",
    "read_files",
    "write_read_stars",
    "write_stars",
]

INGEST_SOURCE = "LAMOST LRS FITS files ingested by lamost2csst.parallel.ingest"
PATTERNS = ("*.fits", "*.fits.gz", "*.fit", "*.fit.gz", "*.FITS", "*.FITS.GZ")
FILES_PER_SCAN_TASK = 256
#: Files read per segment (one append to the store; the workers hold at most two segments' pixels).
FILES_PER_SEGMENT = 16_384
PIXELS = {"flux": np.float32, "ivar": np.float32, "mask": np.bool_}


def find_lamost_files(inputs) -> list[str]:
    """Absolute paths of the FITS files named by ``inputs`` (files, or folders searched recursively)."""
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    found = set()
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            for pattern in PATTERNS:
                found.update(str(p.resolve()) for p in path.rglob(pattern) if p.is_file())
        elif path.is_file():
            found.add(str(path.resolve()))
        else:
            raise InputError(f"input {item} is neither a file nor a folder")
    return sorted(found)


def _reason(err: Exception) -> str:
    return str(err) if isinstance(err, ReaderError) else f"{type(err).__name__}: {err}"


def _obsid_groups(rows: list[dict]) -> list[list[int]]:
    """Indices of ``rows`` in groups without a repeated OBSID: first occurrences, second ones, ..."""
    seen: dict = {}
    groups: list[list[int]] = []
    for i, row in enumerate(rows):
        k = seen.get(row["obsid"], 0)
        seen[row["obsid"]] = k + 1
        if k == len(groups):
            groups.append([])
        groups[k].append(i)
    return groups


def _dataset_values(rows: list[dict], paths: list[str]) -> tuple[list[dict], dict]:
    """Per-star coordinate values and pixel arrays of files with distinct OBSIDs, via one Dataset.

    The values are those of ``read_lamost(path)`` file by file (the same Dataset builder), as
    Python scalars (strings for object coordinates).
    """
    ds = lamost_dataset(rows, paths)
    columns = {
        name: [str(v) for v in var.values] if var.dtype.kind == "O" else var.values.tolist()
        for name, var in ds.coords.items()
        if var.dims == ("star",)
    }
    coords = [dict(zip(columns, values)) for values in zip(*columns.values())]
    return coords, {name: ds[name].values for name in PIXELS}


def _batch_values(rows: list[dict], paths: list[str], reasons: dict) -> tuple[list, dict]:
    """Coordinates (None for a file refused here, its reason put in ``reasons``) and pixels of ``rows``."""
    coords: list = [None] * len(rows)
    pixels = {name: np.empty((len(rows), LAMOST_WAVE.size), dtype) for name, dtype in PIXELS.items()}
    for group in _obsid_groups(rows):
        try:
            parts = [(group, *_dataset_values([rows[i] for i in group], [paths[i] for i in group]))]
        except Exception:  # noqa: BLE001 - one file spoils its group: each file on its own, as a scan
            parts = []
            for i in group:
                try:
                    parts.append(([i], *_dataset_values([rows[i]], [paths[i]])))
                except Exception as err:  # noqa: BLE001
                    reasons[paths[i]] = _reason(err)
        for index, values, arrays in parts:
            for j, i in enumerate(index):
                coords[i] = values[j]
            for name, array in arrays.items():
                pixels[name][index] = array
    return coords, pixels


def read_files(paths: list[str]) -> dict:
    """One task of stage 2: read each of ``paths`` once.

    Parameters
    ----------
    paths : list of str
        FITS files.

    Returns
    -------
    dict
        ``results``: per path, in order, ``{"path", "ok", "coords" | "reason"}`` (``coords``
        the per-star values that ``read_lamost(path)`` gives it); ``flux``, ``ivar``
        (float32) and ``mask`` (bool), (n_ok, n_wave): the pixels of the readable files, in
        order. An unreadable file is a result with ``ok = False``, never an exception.
    """
    rows, ok_paths, reasons = [], [], {}
    for path in paths:
        try:
            rows.append(read_lamost_file(path))
            ok_paths.append(path)
        except Exception as err:  # noqa: BLE001 - any unreadable file is a reject, never a crash
            reasons[path] = _reason(err)
    coords, pixels = _batch_values(rows, ok_paths, reasons)
    keep = [i for i, c in enumerate(coords) if c is not None]
    by_path = {ok_paths[i]: coords[i] for i in keep}
    results = [
        {"path": p, "ok": True, "coords": by_path[p]}
        if p in by_path
        else {"path": p, "ok": False, "reason": reasons[p]}
        for p in paths
    ]
    return {"results": results, **{name: array[keep] for name, array in pixels.items()}}


def read_results(batch: dict) -> list[dict]:
    """The ``results`` of a :func:`read_files` batch (what the client gathers; the pixels stay)."""
    return batch["results"]


def _marker(out: str, start: int) -> str:
    return os.path.join(out, MARKERS, f"ingest-{start}.done")


def _write_marked(out: str, start: int, stop: int, arrays: dict, t0: float) -> dict:
    write_spectra_pixels(out, start, stop, arrays)  # rounded as the store's attrs say (pixel_encoding)
    marker = {
        "start": int(start),
        "stop": int(stop),
        "n_star": int(stop - start),
        "seconds": round(time.perf_counter() - t0, 4),
    }
    write_json(_marker(out, start), marker)
    return marker


def write_stars(start: int, stop: int, *, out: str, files: list[str]) -> dict:
    """Resume task: read ``files`` again (stars ``start:stop`` of ``out``) and write their pixels."""
    t0 = time.perf_counter()
    ds = read_lamost(files)
    return _write_marked(out, start, stop, {name: ds[name].values for name in PIXELS}, t0)


def write_read_stars(start: int, stop: int, *, out: str, pieces: list) -> dict:
    """One task of stage 4: write stars ``start:stop`` of ``out`` from the read batches holding them.

    ``pieces`` is a list of ``(batch, rows)``: a :func:`read_files` result (a future, resolved
    by Dask) and the indices of its readable files that are, in order, these stars.
    """
    t0 = time.perf_counter()
    arrays = {name: np.concatenate([batch[name][rows] for batch, rows in pieces]) for name in PIXELS}
    return _write_marked(out, start, stop, arrays, t0)


def _template(coords: list[dict], chunk_stars: int) -> xr.Dataset:
    """The catalogue Dataset of the accepted stars with never-computed pixel arrays."""
    n = len(coords)
    shape = (n, LAMOST_WAVE.size)
    columns = {}
    for name in coords[0]:
        values = [c[name] for c in coords]
        columns[name] = np.array(values, dtype=object) if isinstance(values[0], str) else np.array(values)
    ds = xr.Dataset(
        {
            "flux": (
                ("star", "wave"),
                empty_array(shape, np.float32, chunk_stars),
                {"long_name": "flux density", "units": "relative"},
            ),
            "ivar": (
                ("star", "wave"),
                empty_array(shape, np.float32, chunk_stars),
                {"long_name": "inverse variance of flux"},
            ),
            "mask": (
                ("star", "wave"),
                empty_array(shape, np.bool_, chunk_stars),
                {"long_name": "True = pixel must not be used"},
            ),
        },
        coords={
            "wave": ("wave", np.asarray(LAMOST_WAVE), {"units": "Angstrom", "medium": "vacuum"}),
            **{name: ("star", values) for name, values in columns.items()},
        },
        attrs={
            "schema": SCHEMA,
            "medium": "vacuum",
            "resolution": 1800.0,
            "frame": "observed",
            "flux_unit": "relative (LAMOST relative flux calibration)",
            "source": INGEST_SOURCE,
            "reader": read_lamost.__module__,
            "chunk_stars": int(chunk_stars),
            **precision_attrs(DEFAULT_PRECISION),
        },
    )
    validate_spectra(ds, check_values=False)
    return ds


def _open_existing(out: str) -> xr.Dataset:
    try:
        ds = xr.open_zarr(out, consolidated=False)
    except Exception as err:  # noqa: BLE001
        raise InputError(f"{out} exists but is not a readable Zarr store ({err})") from None
    if ds.attrs.get("source") != INGEST_SOURCE:
        raise InputError(f"{out} exists but was not made by ingest_lamost; choose another --out")
    return ds


def _ranges_from(first: int, n_star: int, chunk_stars: int) -> list[tuple[int, int]]:
    """Star ranges from ``first`` to ``n_star`` that never cross a chunk boundary of the store."""
    ranges, start = [], first
    while start < n_star:
        stop = min((start // chunk_stars + 1) * chunk_stars, n_star)
        ranges.append((start, stop))
        start = stop
    return ranges


def _pending_ranges(out: str, n_star: int, chunk_stars: int) -> list[tuple[int, int]]:
    """Chunk-aligned ranges of the stars of an existing store that no marker covers (an interrupted run)."""
    covered = np.zeros(n_star, bool)
    for path in Path(out, MARKERS).glob("ingest-*.done"):
        marker = read_json(str(path))
        if marker is not None and path.name == f"ingest-{marker.get('start')}.done":
            covered[marker["start"] : marker["stop"]] = True
    ranges = []
    missing = np.flatnonzero(~covered)
    if missing.size:
        breaks = np.flatnonzero(np.diff(missing) > 1) + 1
        for run in np.split(missing, breaks):
            start, stop = int(run[0]), int(run[-1]) + 1
            ranges += [(a, b) for a, b in _ranges_from(start, stop, chunk_stars)]
    return ranges


def _write_ranges(client, out: str, files: np.ndarray, ranges, *, progress: bool, desc: str) -> int:
    from distributed import as_completed
    from tqdm.auto import tqdm

    futures = [
        client.submit(write_stars, a, b, out=out, files=list(files[a:b]), pure=False) for a, b in ranges
    ]
    written = 0
    with tqdm(total=len(futures), unit="chunk", desc=desc, disable=not progress) as bar:
        try:
            for future in as_completed(futures):
                written += future.result()["n_star"]
                bar.update(1)
        except BaseException:
            client.cancel(futures)
            raise
    return written


@dataclass
class _StoreState:
    """The store as an ingest run finds it (chunking, files, OBSIDs, rejects), updated segment by segment."""

    exists: bool
    chunk_stars: int
    old_files: np.ndarray | None
    resumed: int
    known_files: set
    known_obsid: dict
    n_old: int
    rejects: dict


def _store_state(client, out: str, chunk_stars: int | None, *, progress: bool) -> _StoreState:
    """The state of ``out`` before this run; an existing store's interrupted run is finished first.

    Parameters
    ----------
    client : distributed.Client
    out : str
        The catalogue (absolute path).
    chunk_stars : int or None
        Stars per chunk of a new store (an existing store keeps its own).
    progress : bool
        tqdm bars on stderr.

    Returns
    -------
    _StoreState
    """
    if not os.path.exists(out):
        chunk_stars = int(chunk_stars or DEFAULT_CHUNK_STARS)
        if chunk_stars < 1:
            raise InputError(f"chunk_stars must be a positive integer, got {chunk_stars}")
        return _StoreState(False, chunk_stars, None, 0, set(), {}, 0, {})
    old = _open_existing(out)
    chunk_stars = int(old.attrs.get("chunk_stars") or old["flux"].encoding["chunks"][0])
    old_files = np.asarray(old["file"].values, dtype=object)
    pending = _pending_ranges(out, old.sizes["star"], chunk_stars)
    resumed = 0
    if pending:
        resumed = _write_ranges(client, out, old_files, pending, progress=progress, desc="finish")
    return _StoreState(
        exists=True,
        chunk_stars=chunk_stars,
        old_files=old_files,
        resumed=resumed,
        known_files=set(old_files.tolist()),
        known_obsid=dict(zip(old["obsid"].values.tolist(), old_files.tolist())),
        n_old=old.sizes["star"],
        rejects={r["path"]: r for r in old.attrs.get("rejects", [])},
    )


def _submit_reads(client, batches: list[list[str]]) -> tuple[list, list]:
    """Stage 2 of one segment: the :func:`read_files` future of each batch, and of its results."""
    reads = client.map(read_files, batches, pure=False)
    return reads, [client.submit(read_results, future, pure=False) for future in reads]


def _gather_results(futures: list, bar) -> list[list[dict]]:
    """The results of each batch (in batch order), gathered as they complete."""
    from distributed import as_completed

    index = {future.key: i for i, future in enumerate(futures)}
    out: list = [None] * len(futures)
    for future in as_completed(futures):
        out[index[future.key]] = future.result()
        bar.update(len(out[index[future.key]]))
    return out


def _locate(batch_results: list[list[dict]]) -> tuple[dict, dict]:
    """``({path: result}, {path: (batch, row among the batch's readable files)})``."""
    scanned, where = {}, {}
    for b, results in enumerate(batch_results):
        row = 0
        for result in results:
            scanned[result["path"]] = result
            if result["ok"]:
                where[result["path"]] = (b, row)
                row += 1
    return scanned, where


def _pieces(reads: list, locations: list[tuple[int, int]]) -> list:
    """``[(read future, rows)]`` holding the stars at ``locations`` (batch, row), in order."""
    pieces: list = []
    for b, row in locations:
        if pieces and pieces[-1][0] == b:
            pieces[-1][1].append(row)
        else:
            pieces.append((b, [row]))
    return [(reads[b], np.asarray(rows)) for b, rows in pieces]


def _sort_scanned(todo: list[str], scanned: dict, *, known_obsid: dict, rejects: dict) -> tuple[list, int]:
    """Stage 3: the accepted scan results (file order) and the number rejected now.

    Parameters
    ----------
    todo : list of str
        The scanned files, in file order (the catalogue is deterministic).
    scanned : dict
        ``{path: result of scan_files}``.
    known_obsid : dict
        ``{obsid: path}`` of the store and of this run; updated with the accepted files.
    rejects : dict
        ``{path: reject}``; a reject is added per rejected file, removed per accepted one.

    Returns
    -------
    accepted : list of dict
    rejected_now : int
    """
    now = datetime.now(UTC).isoformat(timespec="seconds")
    accepted, rejected_now = [], 0
    for path in todo:  # file order, not completion order: the catalogue is deterministic
        result = scanned[path]
        if result["ok"]:
            obsid = result["coords"]["obsid"]
            if obsid in known_obsid:
                result = {
                    "path": path,
                    "ok": False,
                    "reason": f"{path}: OBSID {obsid} is already in the catalogue "
                    f"(from {known_obsid[obsid]})",
                }
            else:
                known_obsid[obsid] = path
                accepted.append(result)
                rejects.pop(path, None)
                continue
        rejects[path] = {"path": path, "reason": result["reason"], "utc": now}
        rejected_now += 1
    return accepted, rejected_now


def _append_template(out: str, accepted: list, state: _StoreState) -> None:
    """Stage 4, first half: append the accepted stars' coordinates to ``out`` (creating it)."""
    template = _template([r["coords"] for r in accepted], state.chunk_stars)
    if state.exists:
        template.drop_vars("wave").to_zarr(
            out,
            append_dim="star",
            compute=False,
            zarr_format=3,
            consolidated=False,
            safe_chunks=False,
        )
    else:
        write_spectra_template(template, out, state.chunk_stars)
        markers_group(out)
        state.exists = True


def _write_segment(client, out: str, reads: list, results: list, state: _StoreState, bar) -> tuple[int, int]:
    """Stages 3-4 of one read segment: ``(stars written, files rejected)``.

    Parameters
    ----------
    client : distributed.Client
    out : str
        The catalogue.
    reads : list of Future
        The segment's :func:`read_files` batches, in file order.
    results : list of list of dict
        Their results.
    state : _StoreState
        The store so far; updated (``exists``, ``n_old``, OBSIDs, rejects).
    bar : tqdm
        Stars written.

    Returns
    -------
    tuple of int
    """
    from distributed import wait

    scanned, where = _locate(results)
    files = [r["path"] for batch in results for r in batch]
    accepted, rejected_now = _sort_scanned(
        files, scanned, known_obsid=state.known_obsid, rejects=state.rejects
    )
    if not accepted:
        return 0, rejected_now
    _append_template(out, accepted, state)
    first = state.n_old
    locations = [where[r["path"]] for r in accepted]
    futures = [
        client.submit(
            write_read_stars,
            a,
            b,
            out=out,
            pieces=_pieces(reads, locations[a - first : b - first]),
            pure=False,
            priority=10,  # before the next segment's reads: the held pixels are released sooner
        )
        for a, b in _ranges_from(first, first + len(accepted), state.chunk_stars)
    ]
    state.n_old += len(accepted)
    wait(futures)
    written = sum(f.result()["n_star"] for f in futures)
    bar.update(written)
    return written, rejected_now


def _read_and_write(client, out: str, todo: list[str], state: _StoreState, **how) -> tuple[int, int]:
    """Stages 2-4 segment by segment, the next segment read while one is written.

    ``how``: ``files_per_task``, ``files_per_segment`` and ``progress``. Returns ``(stars
    added, files rejected)``.
    """
    from tqdm.auto import tqdm

    per_task = how["files_per_task"]
    batches = [todo[i : i + per_task] for i in range(0, len(todo), per_task)]
    per_segment = max(1, how["files_per_segment"] // per_task)
    segments = [batches[i : i + per_segment] for i in range(0, len(batches), per_segment)]
    added = rejected = 0
    quiet = not how["progress"]
    with (
        tqdm(total=len(todo), unit="file", desc="read", disable=quiet) as read_bar,
        tqdm(unit="star", desc="write", disable=quiet) as write_bar,
    ):
        pending = [_submit_reads(client, segments[0])] if segments else []
        try:
            for k in range(len(segments)):
                if k + 1 < len(segments):
                    pending.append(_submit_reads(client, segments[k + 1]))
                reads, result_futures = pending[0]
                results = _gather_results(result_futures, read_bar)
                n_added, n_rejected = _write_segment(client, out, reads, results, state, write_bar)
                added, rejected = added + n_added, rejected + n_rejected
                del pending[0], reads, result_futures  # this segment's pixels are released
        except BaseException:
            for reads, result_futures in pending:
                client.cancel([*reads, *result_futures])
            raise
    return added, rejected


def _store_summary(
    out: str, state: _StoreState, *, n_found: int, n_todo: int, added: int, rejected_now: int, t0: float
) -> dict:
    """The run's summary, stored with the rejects in the store's attrs.

    Parameters
    ----------
    out : str
        The catalogue.
    state : _StoreState
        The store before this run (its rejects updated by this run).
    n_found, n_todo : int
        Files found, and those not yet in the store.
    added, rejected_now : int
        Stars added and files rejected by this run.
    t0 : float
        ``time.perf_counter()`` at the start of the run.

    Returns
    -------
    dict
    """
    seconds = time.perf_counter() - t0
    group = zarr.open_group(out, mode="r+", zarr_format=3)
    n_total = int(group["flux"].shape[0])
    summary = {
        "job": "ingest_lamost",
        "out": out,
        "files_found": n_found,
        "files_already_ingested": n_found - n_todo,
        "stars_added": int(added),
        "stars_resumed": int(state.resumed),
        "rejected": int(rejected_now),
        "rejects_total": len(state.rejects),
        "stars_total": n_total,
        "chunk_stars": int(state.chunk_stars),
        "seconds": round(seconds, 3),
        "files_per_second": round(n_todo / seconds, 1) if seconds > 0 else 0.0,
    }
    group.attrs["rejects"] = sorted(state.rejects.values(), key=lambda r: r["path"])
    group.attrs["summary"] = summary
    return summary


def ingest_lamost(
    inputs,
    out,
    *,
    client,
    chunk_stars: int | None = None,
    progress: bool = True,
    files_per_task: int = FILES_PER_SCAN_TASK,
    files_per_segment: int = FILES_PER_SEGMENT,
) -> dict:
    """Ingest LAMOST LRS FITS files (both layouts) into the spectra catalogue ``out``.

    Parameters
    ----------
    inputs : path or list of paths
        FITS files and/or folders (searched recursively).
    out : path
        The catalogue (Zarr v3, schema ``lamost2csst.spectra/1`` on ``LAMOST_WAVE``);
        created if missing, else appended to (only a store made by this job).
    client : distributed.Client
    chunk_stars : int, optional
        Stars per chunk of a new store (default 4096); an existing store keeps its own.
    progress : bool
        tqdm bars on stderr.
    files_per_task : int
        Files per read task.
    files_per_segment : int
        Files read per append to the store (rounded down to whole read tasks, at least one);
        the workers hold the pixels of at most two segments (~35 kB per file).

    Returns
    -------
    dict
        Summary: files_found, files_already_ingested, stars_added, stars_resumed (finished
        from an interrupted run), rejected (this run) and rejects_total, stars_total,
        seconds, files_per_second; also stored in the store's attrs as ``summary``.
    """
    t0 = time.perf_counter()
    out = os.path.abspath(os.fspath(out))
    files = find_lamost_files(inputs)
    if not files:
        raise InputError(f"no FITS files (*.fits, *.fits.gz, *.fit, *.fit.gz) in {inputs}")
    with output_lock(out, job="ingest_lamost", resume=False):
        state = _store_state(client, out, chunk_stars, progress=progress)
        todo = [f for f in files if f not in state.known_files]
        added, rejected_now = _read_and_write(
            client,
            out,
            todo,
            state,
            files_per_task=files_per_task,
            files_per_segment=files_per_segment,
            progress=progress,
        )
        if not state.exists:
            raise InputError(
                f"none of the {len(files)} files could be read; first reason: "
                f"{next(iter(state.rejects.values()))['reason']}"
            )
        return _store_summary(
            out,
            state,
            n_found=len(files),
            n_todo=len(todo),
            added=added,
            rejected_now=rejected_now,
            t0=t0,
        )
