"""Dask job: LAMOST LRS FITS files -> one spectra catalogue (Zarr), appendable and resumable.

Stages:

1. **list** the FITS files of the inputs (files or folders, searched recursively for
   ``*.fits``, ``*.fits.gz``, ``*.fit``, ``*.fit.gz``), sorted, each once;
2. **scan** (one task per batch of files): read each file with
   :func:`lamost2csst.io.read_lamost`; a file that cannot be read becomes a *reject* (path
   and reason), never a silent loss. Only the per-star header values come back;
3. **deduplicate**: files already in the store (same path) are skipped; a file whose
   OBSID is already in the store or earlier in this run is a reject;
4. **append** the accepted stars to the store's template (metadata and coordinates,
   in file order; the store is created on first use) and **write** their pixels, one task
   per star chunk of the store (chunks never shared between tasks), each followed by its
   marker ``.markers/ingest-<start>.done``.

Re-running on the same inputs adds nothing twice. A run that stopped between 4 and its
markers is finished first by the next run (the stars without a marker are re-read from
their ``file`` coordinate). Rejects are kept in the store's attrs (``rejects``: path,
reason, time) and replaced when a later run reads the file successfully.
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
from lamost2csst.io.regions import write_region, write_template
from lamost2csst.io.spectra import DEFAULT_CHUNK_STARS, SCHEMA, validate_spectra
from lamost2csst.parallel.chunks import MARKERS, empty_array, markers_group
from lamost2csst.parallel.locking import output_lock
from lamost2csst.parallel.runtime import read_json, write_json

__all__ = ["INGEST_SOURCE", "find_lamost_files", "ingest_lamost", "scan_files", "write_stars"]

INGEST_SOURCE = "LAMOST LRS FITS files ingested by lamost2csst.parallel.ingest"
PATTERNS = ("*.fits", "*.fits.gz", "*.fit", "*.fit.gz", "*.FITS", "*.FITS.GZ")
FILES_PER_SCAN_TASK = 256


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


def _star_values(ds: xr.Dataset) -> dict:
    return {
        name: ds[name].values[0].item() if ds[name].dtype.kind != "O" else str(ds[name].values[0])
        for name, var in ds.coords.items()
        if var.dims == ("star",)
    }


def scan_files(paths: list[str]) -> list[dict]:
    """One task of stage 2: ``{"path", "ok", "coords" | "reason"}`` per file (pixels are dropped)."""
    results = []
    for path in paths:
        try:
            ds = read_lamost(path)
        except ReaderError as err:
            results.append({"path": path, "ok": False, "reason": str(err)})
        except Exception as err:  # noqa: BLE001 - any unreadable file is a reject, never a crash
            results.append({"path": path, "ok": False, "reason": f"{type(err).__name__}: {err}"})
        else:
            results.append({"path": path, "ok": True, "coords": _star_values(ds)})
    return results


def _marker(out: str, start: int) -> str:
    return os.path.join(out, MARKERS, f"ingest-{start}.done")


def write_stars(start: int, stop: int, *, out: str, files: list[str]) -> dict:
    """One task of stage 4: read ``files`` (stars ``start:stop`` of ``out``) and write their pixels."""
    t0 = time.perf_counter()
    ds = read_lamost(files)
    write_region(out, start, stop, {name: ds[name].values for name in ("flux", "ivar", "mask")})
    marker = {
        "start": int(start),
        "stop": int(stop),
        "n_star": int(stop - start),
        "seconds": round(time.perf_counter() - t0, 4),
    }
    write_json(_marker(out, start), marker)
    return marker


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
    """What an ingest run starts from: the store's chunking, files, OBSIDs and rejects so far."""

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


def _scan(client, todo: list[str], *, files_per_task: int, progress: bool) -> dict:
    """Stage 2: :func:`scan_files` over ``todo`` in batches of ``files_per_task``; results by path.

    Parameters
    ----------
    client : distributed.Client
    todo : list of str
        The files not yet in the store.
    files_per_task : int
        Files per scan task.
    progress : bool
        A tqdm bar on stderr.

    Returns
    -------
    dict
        ``{path: result of scan_files}``.
    """
    from distributed import as_completed
    from tqdm.auto import tqdm

    batches = [todo[i : i + files_per_task] for i in range(0, len(todo), files_per_task)]
    futures = client.map(scan_files, batches, pure=False)
    scanned = {}
    with tqdm(total=len(todo), unit="file", desc="scan", disable=not progress) as bar:
        try:
            for future in as_completed(futures):
                for result in future.result():
                    scanned[result["path"]] = result
                    bar.update(1)
        except BaseException:
            client.cancel(futures)
            raise
    return scanned


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


def _append_accepted(client, out: str, accepted: list, state: _StoreState, *, progress: bool) -> int:
    """Stage 4: append the accepted stars to the store's template (creating it) and write their pixels.

    Parameters
    ----------
    client : distributed.Client
    out : str
        The catalogue.
    accepted : list of dict
        The accepted scan results, in file order.
    state : _StoreState
        The store before this run.
    progress : bool
        A tqdm bar on stderr.

    Returns
    -------
    int
        Stars written.
    """
    chunk_stars = state.chunk_stars
    coords = [r["coords"] for r in accepted]
    template = _template(coords, chunk_stars)
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
        write_template(template, out, chunk_stars)
        markers_group(out)
    all_files = np.asarray(
        [*([] if not state.exists else state.old_files.tolist()), *(r["path"] for r in accepted)],
        dtype=object,
    )
    ranges = _ranges_from(state.n_old, state.n_old + len(accepted), chunk_stars)
    return _write_ranges(client, out, all_files, ranges, progress=progress, desc="write")


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
        Files per scan task.

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
        scanned = _scan(client, todo, files_per_task=files_per_task, progress=progress)
        accepted, rejected_now = _sort_scanned(
            todo, scanned, known_obsid=state.known_obsid, rejects=state.rejects
        )
        added = 0
        if accepted:
            added = _append_accepted(client, out, accepted, state, progress=progress)
        elif not state.exists:
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
