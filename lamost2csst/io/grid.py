"""The synthetic grid store: its schema, template, creation, resume check, region writes; packing and loading.

A grid store (schema ``lamost2csst.synthetic_grid/1``) is what
:func:`lamost2csst.parallel.synthesis.synthesize_grid` writes: :func:`grid_template`,
:func:`create_grid_store`, then one :func:`write_grid_model` per model (one chunk per model,
so that tasks never share a chunk) and :func:`write_grid_status` at the end; failed or
pending models stay NaN rows. :func:`check_grid_resumable` refuses to resume into another
run's store. :func:`pack_grid` turns such a store into a
compact part (only the synthesized models, one chunk per variable, Blosc-zstd float32)
under ``lamost2csst/data/grid/``; :func:`load_grid` concatenates every part into one
Dataset with dim ``model``:

* ``flux_in`` (model, wave_in): R=2000 F_lambda on ``INPUT_WAVE``, not normalized;
* ``flux_lamost`` (model, wave_lamost): R=2000 F_lambda on ``LAMOST_WAVE``;
* ``sed`` (model, wave_out): R=200 on ``OUTPUT_WAVE``, scaled at 5526-5586 A;
* coords ``teff``, ``logg``, ``feh`` ([M/H]), ``alpha`` ([alpha/M]).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import xarray as xr

from lamost2csst.errors import InputError
from lamost2csst.io.spectra import compressor

__all__ = [
    "GRID_DIR",
    "GRID_SCHEMA",
    "check_grid_resumable",
    "create_grid_store",
    "grid_model_keys",
    "grid_template",
    "load_grid",
    "open_grid_store",
    "pack_grid",
    "read_grid_parameters",
    "write_grid_model",
    "write_grid_status",
]

GRID_SCHEMA = "lamost2csst.synthetic_grid/1"
GRID_TITLE = "BOSZ-like synthetic spectra: ATLAS9 (Castelli-Kurucz) + Synspec + linemake"
GRID_DIR = Path(__file__).resolve().parent.parent / "data" / "grid"
_VARIABLES = ("flux_in", "flux_lamost", "sed")
_PARAMETERS = ("teff", "logg", "feh", "alpha")


def open_grid_store(store, *, chunks="auto") -> xr.Dataset:
    """Open a grid store lazily; :class:`~lamost2csst.errors.InputError` (a ValueError) if it is none."""
    try:
        ds = xr.open_zarr(store, consolidated=False, chunks=chunks)
    except (FileNotFoundError, KeyError, ValueError) as err:
        raise InputError(f"{store}: not a readable Zarr store ({err})") from None
    if ds.attrs.get("schema") != GRID_SCHEMA:
        raise InputError(f"{store}: schema {ds.attrs.get('schema')!r}, expected {GRID_SCHEMA!r}")
    missing = [n for n in (*_VARIABLES, *_PARAMETERS) if n not in ds.variables]
    if missing:
        raise InputError(f"{store}: missing {missing}")
    return ds


def grid_template(models, *, attrs: dict) -> xr.Dataset:
    """The grid store's Dataset with lazy, never-computed pixel arrays (NaN until written).

    Parameters
    ----------
    models : structured array or mapping
        Fields ``teff``, ``logg``, ``feh``, ``alpha`` (one value per model).
    attrs : dict
        Provenance (command, settings, versions, machine, created_utc), stored after
        ``schema`` and ``title``; ``failures`` starts empty.
    """
    import dask.array as da

    from lamost2csst.core import INPUT_WAVE, LAMOST_WAVE, OUTPUT_WAVE

    n = len(models["teff"])

    def empty(n_pix):
        return da.full((n, n_pix), np.nan, dtype=np.float32, chunks=(1, n_pix))

    flux_attrs = {"units": "erg s-1 cm-2 Angstrom-1", "quantity": "surface flux F_lambda = 4 pi H_lambda"}
    data = {
        "flux_in": (("model", "wave_in"), empty(INPUT_WAVE.size),
                    {**flux_attrs, "long_name": "R=2000 model flux on INPUT_WAVE (not normalized)"}),
        "flux_lamost": (("model", "wave_lamost"), empty(LAMOST_WAVE.size),
                        {**flux_attrs, "long_name": "R=2000 model flux on LAMOST_WAVE"}),
        "sed": (("model", "wave_out"), empty(OUTPUT_WAVE.size),
                {"units": "1", "long_name": "R=200 SED scaled to mean 1 at 5526-5586 A"}),
        "ok": (("model",), np.zeros(n, bool),
               {"long_name": "model synthesized (False: failed or not yet run)"}),
        "seconds": (("model",), np.full(n, np.nan, np.float32),
                    {"units": "s", "long_name": "Synspec wall time"}),
    }  # fmt: skip
    wave_attrs = {"units": "Angstrom", "medium": "vacuum"}
    coords = {
        "teff": ("model", np.asarray(models["teff"]).astype(np.float64),
                 {"units": "K", "long_name": "effective temperature"}),
        "logg": ("model", np.asarray(models["logg"]).astype(np.float64),
                 {"units": "dex (cgs)", "long_name": "log surface gravity"}),
        "feh": ("model", np.asarray(models["feh"]).astype(np.float64),
                {"units": "dex", "long_name": "[M/H]"}),
        "alpha": ("model", np.asarray(models["alpha"]).astype(np.float64),
                  {"units": "dex", "long_name": "[alpha/M]"}),
        "wave_in": ("wave_in", np.asarray(INPUT_WAVE), {**wave_attrs, "long_name": "INPUT_WAVE, R=2000"}),
        "wave_lamost": ("wave_lamost", np.asarray(LAMOST_WAVE),
                        {**wave_attrs, "long_name": "LAMOST_WAVE, R=2000"}),
        "wave_out": ("wave_out", np.asarray(OUTPUT_WAVE), {**wave_attrs, "long_name": "OUTPUT_WAVE, R=200"}),
    }  # fmt: skip
    attrs = {"schema": GRID_SCHEMA, "title": GRID_TITLE, **attrs, "failures": []}
    return xr.Dataset(data, coords=coords, attrs=attrs)


def create_grid_store(template: xr.Dataset, out: str) -> None:
    """Write the template's metadata and coordinates (no pixels) as a Zarr v3 store, one chunk per model."""
    encoding = {
        name: {"chunks": (1, template.sizes[template[name].dims[1]]), "compressors": [compressor(1)]}
        for name in _VARIABLES
    }
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    template.to_zarr(out, mode="w-", compute=False, zarr_format=3, consolidated=False, encoding=encoding)


def check_grid_resumable(out: str, template: xr.Dataset) -> None:
    """Refuse (:class:`~lamost2csst.errors.InputError`) to resume into a store of other models or settings."""
    try:
        old = xr.open_zarr(out, consolidated=False)
    except Exception as err:  # noqa: BLE001 - anything unreadable is not ours
        raise InputError(f"cannot resume into {out}: not a readable Zarr store ({err})") from None
    if old.attrs.get("schema") != GRID_SCHEMA:
        raise InputError(
            f"cannot resume into {out}: its schema is {old.attrs.get('schema')!r}, not {GRID_SCHEMA!r}"
        )
    problems = []
    if old.sizes.get("model") != template.sizes["model"] or not all(
        np.array_equal(old[c].values, template[c].values) for c in _PARAMETERS
    ):
        problems.append("it holds other models (different --teff/--logg/--feh/--alpha/--n-random/--seed)")
    elif old.attrs.get("settings") != template.attrs["settings"]:
        problems.append(f"its settings {old.attrs.get('settings')} differ from {template.attrs['settings']}")
    if problems:
        raise InputError(f"cannot resume into {out}: " + "; ".join(problems))


def read_grid_parameters(out: str, index: int) -> tuple[float, float, float, float]:
    """(teff, logg, feh, alpha) of model ``index`` of a grid store (plain Zarr reads)."""
    import zarr

    group = zarr.open_group(out, mode="r", zarr_format=3)
    return tuple(float(group[name][index]) for name in _PARAMETERS)


def write_grid_model(out: str, index: int, spectra: dict) -> None:
    """Write model ``index``'s rows of ``flux_in``, ``flux_lamost`` and ``sed`` (float32)."""
    import zarr

    group = zarr.open_group(out, mode="r+", zarr_format=3)
    for name in _VARIABLES:
        group[name][index, :] = spectra[name].astype(np.float32)


def write_grid_status(out: str, *, ok: np.ndarray, seconds: np.ndarray, attrs: dict) -> None:
    """Write the per-model ``ok`` and ``seconds`` and update the store's attrs (failures, summary...)."""
    import zarr

    group = zarr.open_group(out, mode="r+", zarr_format=3)
    group["ok"][:] = ok
    group["seconds"][:] = seconds
    for key, value in attrs.items():
        group.attrs[key] = value


def grid_model_keys(path=None) -> set[tuple[float, float, float, float]]:
    """(teff, logg, feh, alpha) of the models of a grid (default: shipped), rounded to 4 decimals.

    Empty when there is no grid.
    """
    try:
        grid = load_grid(path)
    except ValueError:
        return set()
    return {tuple(np.round(v, 4)) for v in zip(*(grid[p].values for p in _PARAMETERS))}


def pack_grid(store, out) -> int:
    """Write the synthesized models of a job store as one compact part; returns the model count."""
    ds = open_grid_store(store)
    ok = ds["ok"].values if "ok" in ds else np.all(np.isfinite(ds["sed"].values), axis=1)
    part = ds.isel(model=np.flatnonzero(ok)).load()
    if part.sizes["model"] == 0:
        raise ValueError(f"{store}: no synthesized model to pack")
    part = part.drop_vars([n for n in ("ok",) if n in part])
    part.attrs = {k: v for k, v in ds.attrs.items()}
    part.attrs["packed_from"] = str(store)
    encoding = {
        name: {
            "chunks": tuple(part.sizes[d] for d in part[name].dims),
            "compressors": [compressor(9, cname="zstd")],
        }
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
        ds = open_grid_store(store, chunks=None)
        keep = [n for n in (*_VARIABLES, "seconds") if n in ds]
        parts.append(ds[keep].load())
    grid = xr.concat(
        parts, dim="model", coords="minimal", compat="override", join="exact", combine_attrs="drop"
    )
    key = np.stack([grid[p].values for p in _PARAMETERS], axis=1)
    if np.unique(key, axis=0).shape[0] != key.shape[0]:
        raise ValueError(f"grid parts in {path} repeat some (teff, logg, feh, alpha) models")
    grid.attrs = {
        "schema": GRID_SCHEMA,
        "parts": [str(s) for s in stores],
        "n_model": int(grid.sizes["model"]),
    }
    return grid
