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
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import xarray as xr
import zarr

from lamost2csst.core import LAMOST_WAVE
from lamost2csst.errors import InputError
from lamost2csst.io.readers import ReaderError, read_lamost
from lamost2csst.io.regions import write_region
from lamost2csst.io.spectra import DEFAULT_CHUNK_STARS, SCHEMA, compressor, validate_spectra
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


def _encoding(template: xr.Dataset, chunk_stars: int) -> dict:
    return {
        name: {
            "chunks": tuple(chunk_stars if d == "star" else template.sizes[d] for d in var.dims),
            "compressors": [compressor(1)],
        }
        for name, var in template.variables.items()
        if "star" in var.dims
    }


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
    from distributed import as_completed
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    out = os.path.abspath(os.fspath(out))
    files = find_lamost_files(inputs)
    if not files:
        raise InputError(f"no FITS files (*.fits, *.fits.gz, *.fit, *.fit.gz) in {inputs}")
    with output_lock(out, job="ingest_lamost", resume=False):
        exists = os.path.exists(out)
        resumed = 0
        if exists:
            old = _open_existing(out)
            chunk_stars = int(old.attrs.get("chunk_stars") or old["flux"].encoding["chunks"][0])
            old_files = np.asarray(old["file"].values, dtype=object)
            pending = _pending_ranges(out, old.sizes["star"], chunk_stars)
            if pending:
                resumed = _write_ranges(client, out, old_files, pending, progress=progress, desc="finish")
            known_files = set(old_files.tolist())
            known_obsid = dict(zip(old["obsid"].values.tolist(), old_files.tolist()))
            n_old = old.sizes["star"]
            rejects = {r["path"]: r for r in old.attrs.get("rejects", [])}
        else:
            chunk_stars = int(chunk_stars or DEFAULT_CHUNK_STARS)
            if chunk_stars < 1:
                raise InputError(f"chunk_stars must be a positive integer, got {chunk_stars}")
            known_files, known_obsid, n_old, rejects = set(), {}, 0, {}

        todo = [f for f in files if f not in known_files]
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

        added = 0
        if accepted:
            coords = [r["coords"] for r in accepted]
            template = _template(coords, chunk_stars)
            if exists:
                template.drop_vars("wave").to_zarr(
                    out,
                    append_dim="star",
                    compute=False,
                    zarr_format=3,
                    consolidated=False,
                    safe_chunks=False,
                )
            else:
                template.to_zarr(
                    out,
                    mode="w-",
                    compute=False,
                    zarr_format=3,
                    consolidated=False,
                    encoding=_encoding(template, chunk_stars),
                )
                markers_group(out)
            all_files = np.asarray(
                [*([] if not exists else old_files.tolist()), *(r["path"] for r in accepted)], dtype=object
            )
            ranges = _ranges_from(n_old, n_old + len(accepted), chunk_stars)
            added = _write_ranges(client, out, all_files, ranges, progress=progress, desc="write")
        elif not exists:
            raise InputError(
                f"none of the {len(files)} files could be read; first reason: "
                f"{next(iter(rejects.values()))['reason']}"
            )

        seconds = time.perf_counter() - t0
        group = zarr.open_group(out, mode="r+", zarr_format=3)
        n_total = int(group["flux"].shape[0])
        summary = {
            "job": "ingest_lamost",
            "out": out,
            "files_found": len(files),
            "files_already_ingested": len(files) - len(todo),
            "stars_added": int(added),
            "stars_resumed": int(resumed),
            "rejected": int(rejected_now),
            "rejects_total": len(rejects),
            "stars_total": n_total,
            "chunk_stars": int(chunk_stars),
            "seconds": round(seconds, 3),
            "files_per_second": round(len(todo) / seconds, 1) if seconds > 0 else 0.0,
        }
        group.attrs["rejects"] = sorted(rejects.values(), key=lambda r: r["path"])
        group.attrs["summary"] = summary
        return summary
