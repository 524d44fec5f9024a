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
            "wave_in": INPUT_WAVE,
            "wave_lamost": LAMOST_WAVE,
            "wave_out": OUTPUT_WAVE,
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


# ------------------------------------------------------------------- the grid store of a synthesis run

MODELS = {
    "teff": [5000.0, 5250.0, 5500.0],
    "logg": [4.5, 4.5, 4.0],
    "feh": [0.0, -1.0, 0.0],
    "alpha": [0.0, 0.4, 0.0],
}
PROVENANCE = {
    "command": "test",
    "settings": {"step_A": "0.05"},
    "versions": {},
    "machine": {},
    "created_utc": "now",
}


def new_store(path, models=MODELS, settings=None):
    from lamost2csst.io.grid import create_grid_store, grid_template

    attrs = {**PROVENANCE, "settings": settings or PROVENANCE["settings"]}
    template = grid_template(models, attrs=attrs)
    create_grid_store(template, str(path))
    return template


def test_template_layout():
    from lamost2csst.io.grid import grid_template

    t = grid_template(MODELS, attrs=PROVENANCE)
    assert list(t.attrs)[:2] == ["schema", "title"] and t.attrs["schema"] == GRID_SCHEMA
    assert t.attrs["command"] == "test" and t.attrs["failures"] == []
    assert t["flux_in"].shape == (3, INPUT_WAVE.size) and t["flux_lamost"].shape == (3, LAMOST_WAVE.size)
    assert t["sed"].shape == (3, OUTPUT_WAVE.size) and t["sed"].dtype == np.float32
    assert t["flux_in"].data.chunks[0] == (1, 1, 1)  # one chunk per model: tasks never share one
    np.testing.assert_array_equal(t["feh"].values, [0.0, -1.0, 0.0])
    assert t["teff"].dtype == np.float64 and not t["ok"].values.any() and np.isnan(t["seconds"].values).all()


def test_create_write_read_status_round_trip(tmp_path):
    from lamost2csst.io.grid import read_grid_parameters, write_grid_model, write_grid_status

    out = tmp_path / "sub" / "grid.zarr"  # the parent is made
    new_store(out)
    assert read_grid_parameters(str(out), 1) == (5250.0, 4.5, -1.0, 0.4)
    rng = np.random.default_rng(0)
    spectra = {
        "flux_in": rng.uniform(1, 2, INPUT_WAVE.size),  # float64: stored as float32
        "flux_lamost": rng.uniform(1, 2, LAMOST_WAVE.size),
        "sed": rng.uniform(1, 2, OUTPUT_WAVE.size),
    }
    write_grid_model(str(out), 2, spectra)
    write_grid_status(
        str(out),
        ok=np.array([False, False, True]),
        seconds=np.array([np.nan, np.nan, 3.5], np.float32),
        attrs={"summary": {"models_ok": 1}},
    )
    ds = xr.open_zarr(out, consolidated=False)
    for name, values in spectra.items():
        np.testing.assert_array_equal(ds[name].values[2], values.astype(np.float32))
        assert np.isnan(ds[name].values[:2]).all()
        assert ds[name].encoding["chunks"] == (1, values.size)
    np.testing.assert_array_equal(ds["ok"].values, [False, False, True])
    assert ds["seconds"].values[2] == np.float32(3.5)
    assert ds.attrs["summary"] == {"models_ok": 1} and ds.attrs["command"] == "test"


def test_resume_check_refuses_other_runs(tmp_path):
    from lamost2csst.errors import InputError
    from lamost2csst.io.grid import check_grid_resumable, grid_template

    out = str(tmp_path / "grid.zarr")
    template = new_store(out)
    check_grid_resumable(out, template)  # the same run: fine
    other = {**MODELS, "teff": [5000.0, 5250.0, 5750.0]}
    with pytest.raises(InputError, match="other models"):
        check_grid_resumable(out, grid_template(other, attrs=PROVENANCE))
    with pytest.raises(InputError, match="settings"):
        check_grid_resumable(out, grid_template(MODELS, attrs={**PROVENANCE, "settings": {"step_A": "0.1"}}))
    xr.Dataset({"x": ("a", [1])}).to_zarr(tmp_path / "other.zarr", zarr_format=3, consolidated=False)
    with pytest.raises(InputError, match="schema"):
        check_grid_resumable(str(tmp_path / "other.zarr"), template)
    with pytest.raises(InputError, match="not a readable Zarr store"):
        check_grid_resumable(str(tmp_path / "missing.zarr"), template)


def test_open_grid_store_and_model_keys(tmp_path):
    from lamost2csst.errors import InputError
    from lamost2csst.io.grid import grid_model_keys, open_grid_store

    assert grid_model_keys(tmp_path) == set()  # no grid: nothing to leave out
    job_store(tmp_path / "job.zarr", [5000, 5250.00001], [True, True])
    pack_grid(tmp_path / "job.zarr", tmp_path / "grid" / "part-000.zarr")
    assert grid_model_keys(tmp_path / "grid") == {(5000.0, 4.5, 0.0, 0.0), (5250.0, 4.5, 0.0, 0.0)}
    assert open_grid_store(tmp_path / "job.zarr").sizes["model"] == 2
    xr.Dataset({"x": ("a", [1])}).to_zarr(tmp_path / "other.zarr", zarr_format=3, consolidated=False)
    with pytest.raises(InputError, match="schema"):
        open_grid_store(tmp_path / "other.zarr")
