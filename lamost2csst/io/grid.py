"""The shipped synthetic grid: packing job outputs into package data, and loading them as one grid.

``jobs.synthesize_grid`` writes one chunk per model (so that tasks never share a chunk) and
keeps failed or pending models as NaN rows. :func:`pack_grid` turns such a store into a
compact part (only the synthesized models, one chunk per variable, Blosc-zstd float32)
under ``lamost2csst/data/grid/``; :func:`load_grid` concatenates every part into one
Dataset with dim ``model``:

* ``flux_in`` (model, wave_in): R=2000 F_lambda on ``INPUT_WAVE``, not normalized;
* ``flux_lamost`` (model, wave_lamost): R=2000 F_lambda on ``LAMOST_WAVE``;
* ``sed`` (model, wave_out): R=200 on ``OUTPUT_WAVE``, scaled at 5526-5586 A;
* coords ``teff``, ``logg``, ``feh`` ([M/H]), ``alpha`` ([alpha/M]).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from lamost2csst.io.spectra import compressor

__all__ = ["GRID_DIR", "GRID_SCHEMA", "load_grid", "pack_grid"]

GRID_SCHEMA = "lamost2csst.synthetic_grid/1"
GRID_DIR = Path(__file__).resolve().parent.parent / "data" / "grid"
_VARIABLES = ("flux_in", "flux_lamost", "sed")
_PARAMETERS = ("teff", "logg", "feh", "alpha")


def _open(store, *, chunks="auto") -> xr.Dataset:
    try:
        ds = xr.open_zarr(store, consolidated=False, chunks=chunks)
    except (FileNotFoundError, KeyError, ValueError) as err:
        raise ValueError(f"{store}: not a readable Zarr store ({err})") from None
    if ds.attrs.get("schema") != GRID_SCHEMA:
        raise ValueError(f"{store}: schema {ds.attrs.get('schema')!r}, expected {GRID_SCHEMA!r}")
    missing = [n for n in (*_VARIABLES, *_PARAMETERS) if n not in ds.variables]
    if missing:
        raise ValueError(f"{store}: missing {missing}")
    return ds


def pack_grid(store, out) -> int:
    """Write the synthesized models of a job store as one compact part; returns the model count."""
    ds = _open(store)
    ok = ds["ok"].values if "ok" in ds else np.all(np.isfinite(ds["sed"].values), axis=1)
    part = ds.isel(model=np.flatnonzero(ok)).load()
    if part.sizes["model"] == 0:
        raise ValueError(f"{store}: no synthesized model to pack")
    part = part.drop_vars([n for n in ("ok",) if n in part])
    part.attrs = {k: v for k, v in ds.attrs.items()}
    part.attrs["packed_from"] = str(store)
    encoding = {
        name: {"chunks": tuple(part.sizes[d] for d in part[name].dims), "compressors": [compressor(9, cname="zstd")]}
        for name in part.data_vars
    }
    part.to_zarr(out, mode="w-", zarr_format=3, consolidated=False, encoding=encoding)
    return int(part.sizes["model"])


def load_grid(path=None) -> xr.Dataset:
    """The synthetic grid as one in-memory Dataset (all parts under ``path``).

    Parameters
    ----------
    path : path-like, optional
        A directory of packed parts (``*.zarr``) or one store; default the grid shipped
        in the package (``lamost2csst/data/grid``).
    """
    path = GRID_DIR if path is None else Path(path)
    stores = [path] if (path / "zarr.json").exists() else sorted(path.glob("*.zarr"))
    if not stores:
        raise ValueError(f"no grid parts (*.zarr) in {path}; run jobs.synthesize_grid and pack_grid first")
    parts = []
    for store in stores:
        # chunks=None: plain reads, no Dask graph. Inside a Dask task (the lazy demo catalogue
        # loads the grid on each worker) a dask compute would start a worker client, which
        # in an in-process cluster changes the whole process's default scheduler.
        ds = _open(store, chunks=None)
        keep = [n for n in (*_VARIABLES, "seconds") if n in ds]
        parts.append(ds[keep].load())
    grid = xr.concat(parts, dim="model", coords="minimal", compat="override", join="exact", combine_attrs="drop")
    key = np.stack([grid[p].values for p in _PARAMETERS], axis=1)
    if np.unique(key, axis=0).shape[0] != key.shape[0]:
        raise ValueError(f"grid parts in {path} repeat some (teff, logg, feh, alpha) models")
    grid.attrs = {"schema": GRID_SCHEMA, "parts": [str(s) for s in stores], "n_model": int(grid.sizes["model"])}
    return grid
