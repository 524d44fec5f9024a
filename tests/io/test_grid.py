"""Packing job stores into grid parts and loading them as one grid."""

import numpy as np
import pytest
import xarray as xr

from lamost2csst.core import INPUT_WAVE, LAMOST_WAVE, OUTPUT_WAVE
from lamost2csst.io.grid import GRID_SCHEMA, load_grid, pack_grid


def job_store(path, teffs, ok):
    n = len(teffs)
    rng = np.random.default_rng(int(teffs[0]))

    def values(n_pix):
        a = rng.uniform(1, 2, (n, n_pix)).astype(np.float32)
        a[~np.asarray(ok)] = np.nan  # models not synthesized stay NaN in a job store
        return a

    ds = xr.Dataset(
        {
            "flux_in": (("model", "wave_in"), values(INPUT_WAVE.size)),
            "flux_lamost": (("model", "wave_lamost"), values(LAMOST_WAVE.size)),
            "sed": (("model", "wave_out"), values(OUTPUT_WAVE.size)),
            "ok": ("model", np.asarray(ok)),
            "seconds": ("model", np.full(n, 30.0, np.float32)),
        },
        coords={
            "teff": ("model", np.asarray(teffs, float)),
            "logg": ("model", np.full(n, 4.5)),
            "feh": ("model", np.zeros(n)),
            "alpha": ("model", np.zeros(n)),
            "wave_in": INPUT_WAVE, "wave_lamost": LAMOST_WAVE, "wave_out": OUTPUT_WAVE,
        },
        attrs={"schema": GRID_SCHEMA, "command": "test"},
    )
    ds.to_zarr(path, zarr_format=3, consolidated=False)
    return ds


def test_pack_keeps_only_synthesized_models_and_load_joins_parts(tmp_path):
    a = job_store(tmp_path / "job-a.zarr", [5000, 5250, 5500], [True, False, True])
    b = job_store(tmp_path / "job-b.zarr", [6000, 6250], [True, True])
    parts = tmp_path / "grid"
    assert pack_grid(tmp_path / "job-a.zarr", parts / "part-000.zarr") == 2
    assert pack_grid(tmp_path / "job-b.zarr", parts / "part-001.zarr") == 2
    grid = load_grid(parts)
    assert grid.sizes["model"] == 4
    np.testing.assert_array_equal(grid["teff"].values, [5000, 5500, 6000, 6250])
    np.testing.assert_array_equal(grid["sed"].values[:2], a["sed"].values[[0, 2]])
    np.testing.assert_array_equal(grid["flux_in"].values[2:], b["flux_in"].values)
    assert grid["flux_lamost"].dtype == np.float32
    assert not np.isnan(grid["sed"].values).any()


def test_overlapping_parts_are_refused(tmp_path):
    job_store(tmp_path / "a.zarr", [5000, 5250], [True, True])
    job_store(tmp_path / "b.zarr", [5250, 5500], [True, True])
    pack_grid(tmp_path / "a.zarr", tmp_path / "grid" / "p0.zarr")
    pack_grid(tmp_path / "b.zarr", tmp_path / "grid" / "p1.zarr")
    with pytest.raises(ValueError, match="repeat"):
        load_grid(tmp_path / "grid")


def test_errors_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match="no grid parts"):
        load_grid(tmp_path)
    xr.Dataset({"x": ("a", [1])}).to_zarr(tmp_path / "other.zarr", zarr_format=3, consolidated=False)
    with pytest.raises(ValueError, match="schema"):
        load_grid(tmp_path)
    job_store(tmp_path / "empty.zarr", [5000], [False])
    with pytest.raises(ValueError, match="no synthesized model"):
        pack_grid(tmp_path / "empty.zarr", tmp_path / "out.zarr")

