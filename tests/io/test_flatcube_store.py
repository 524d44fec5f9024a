"""The flat-cube store: the work area's saved chunk results, the predictions join, the cube's layout."""

import numpy as np
import pytest
import xarray as xr

from lamost2csst.core import BANDS, OUTPUT_WAVE
from lamost2csst.core.flatfield import NormalEquations
from lamost2csst.io import flatcube as store
from lamost2csst.io.observations import detector_grid

REASONS = ("no_prediction", "off_detector")


def test_a_saved_chunk_result_loads_back_equal(tmp_path):
    rng = np.random.default_rng(0)
    eq = NormalEquations(
        rng.normal(size=(4, 3, 3)), rng.normal(size=(4, 3)), rng.normal(size=4), np.array([5, 0, 2, 7])
    )
    result = {
        "n_obs": 11,
        "clipped": 2,
        "peak_rss_mb": 12.5,
        "counts": {"no_prediction": 3, "off_detector": 1},
        "groups": {"GV-1": eq},
        "star_sums": (np.array([4, 9]), np.array([1.5, 2.0]), np.array([3.0, 4.0])),
    }
    path = store.work_path(str(tmp_path), 1, 7)
    assert path == str(tmp_path / ".work" / "iter-1" / "chunk-7.npz")
    store.save_partial(path, result)
    assert [p.name for p in (tmp_path / ".work" / "iter-1").iterdir()] == ["chunk-7.npz"]  # no temporary left
    back = store.load_partial(path, REASONS)
    assert {k: back[k] for k in ("n_obs", "clipped", "peak_rss_mb", "counts")} == {
        k: result[k] for k in ("n_obs", "clipped", "peak_rss_mb", "counts")
    }
    assert list(back["groups"]) == ["GV-1"]
    for got, expected in zip(back["groups"]["GV-1"], eq):
        np.testing.assert_array_equal(got, expected)
    for got, expected in zip(back["star_sums"], result["star_sums"]):
        np.testing.assert_array_equal(got, expected)


def test_work_area_groups(tmp_path):
    store.prepare_work_area(str(tmp_path / "cube.zarr"), 2)
    for k in (0, 1):
        assert (tmp_path / "cube.zarr" / ".work" / f"iter-{k}" / "zarr.json").exists()


def test_prediction_rows_join_by_obsid(tmp_path):
    obsid = np.array([30, 10, 20])
    sed = np.arange(3 * OUTPUT_WAVE.size, dtype=np.float32).reshape(3, -1)
    xr.Dataset(
        {
            "sed": (("star", "wave_out"), sed),
            "sigma": (("star", "wave_out"), sed / 10),
            "flags": (("star",), np.array([0, 8, 0], np.uint16)),
        },
        coords={"obsid": ("star", obsid)},
    ).to_zarr(tmp_path / "p.zarr", zarr_format=3, consolidated=False)
    order = np.argsort(obsid)
    wanted = np.array([20, 99, 30, 20])  # 99 has no prediction
    found, got_sed, got_sigma, flags, where = store.prediction_rows(
        str(tmp_path / "p.zarr"), wanted, (obsid[order], order)
    )
    np.testing.assert_array_equal(found, [True, False, True, True])
    rows = {20: 2, 30: 0}  # store rows of the found obsid
    for i in (0, 2, 3):
        np.testing.assert_array_equal(got_sed[where[i]], sed[rows[wanted[i]]])
        np.testing.assert_array_equal(got_sigma[where[i]], sed[rows[wanted[i]]] / 10)
        assert flags[where[i]] == 0
    nothing = store.prediction_rows(str(tmp_path / "p.zarr"), np.array([1, 2]), (obsid[order], order))
    assert not nothing[0].any() and nothing[1].shape == (0, OUTPUT_WAVE.size)


def test_cube_layout_round_trip(tmp_path):
    shape = (len(BANDS), 4, OUTPUT_WAVE.size)
    n_terms, g = 3, 4
    rng = np.random.default_rng(1)
    arrays = {
        "coeffs": rng.normal(size=(*shape, n_terms)),
        "covariance": rng.normal(size=(*shape, n_terms, n_terms)),
        "mean_response": rng.normal(size=shape),
        "flat": rng.normal(size=(*shape, g * g)),
        "flat_error": rng.normal(size=(*shape, g * g)),
        "n_obs": np.zeros(shape, np.int64),
        "fit": np.ones(shape, bool),
        "chi2_dof": rng.normal(size=shape),
    }
    gy, gx = detector_grid(g)
    ds = store.flatcube_dataset(
        arrays,
        gy=gy,
        gx=gx,
        order=1,
        kappa=3.0,
        iterations=2,
        min_stars=20,
        observations="o",
        predictions="p",
        model_hash="h",
        star_scales=(np.array([5, 8]), np.array([1.0, 2.0])),
    )
    store.write_flatcube(ds, tmp_path / "c.zarr")
    cube = store.open_flatcube(tmp_path / "c.zarr")
    assert cube.attrs["schema"] == store.FLATCUBE_SCHEMA and cube.attrs["self_calibrated"] == 1
    assert cube.attrs["terms_ij"] == [[0, 0], [1, 0], [0, 1]]
    assert cube.flat.dims == ("band", "detector", "wave_out", "gy", "gx") and cube.flat.dtype == np.float32
    np.testing.assert_array_equal(cube.flat.values, arrays["flat"].reshape(*shape, g, g).astype(np.float32))
    np.testing.assert_array_equal(cube.coeffs.values, arrays["coeffs"])
    np.testing.assert_array_equal(cube.star_scale.values, [1.0, 2.0])
    np.testing.assert_array_equal(cube.star_obsid.values, [5, 8])
    xr.Dataset(attrs={"schema": "something else"}).to_zarr(
        tmp_path / "x.zarr", zarr_format=3, consolidated=False
    )
    with pytest.raises(ValueError, match="expected 'lamost2csst.flatcube/1'"):
        store.open_flatcube(tmp_path / "x.zarr")


def test_open_inputs_checks_both_stores(tmp_path):
    from lamost2csst.errors import InputError
    from lamost2csst.io.observations import simulate_observations, write_observations
    from lamost2csst.io.simulated import grid_catalogue

    cat = grid_catalogue(5, seed=1)
    obs, _ = simulate_observations(cat.sed_true.values, cat.obsid.values, n_exposures=1)
    write_observations(obs, tmp_path / "o.zarr")
    o, p = str(tmp_path / "o.zarr"), str(tmp_path / "p.zarr")
    with pytest.raises(InputError, match=f"predictions store {p} does not exist"):
        store.open_inputs(o, p)
    pred = xr.Dataset(
        {"sed": (("star", "wave_out"), cat.sed_true.values.astype(np.float32))},
        coords={"obsid": ("star", cat.obsid.values), "wave_out": OUTPUT_WAVE},
        attrs={"schema": "lamost2csst.predictions/2"},
    )
    pred.to_zarr(p, zarr_format=3, consolidated=False)
    got_obs, got_pred = store.open_inputs(o, p)
    assert got_obs.sizes["obs"] == obs.sizes["obs"] and got_pred.sizes["star"] == 5
    # /3 adds the domain check; /1's sigma was the network's alone
    for version, readable in ((1, False), (3, True)):
        other = str(tmp_path / f"p{version}.zarr")
        pred.assign_attrs(schema=f"lamost2csst.predictions/{version}").to_zarr(
            other, zarr_format=3, consolidated=False
        )
        if readable:
            assert store.open_inputs(o, other)[1].sizes["star"] == 5
        else:
            with pytest.raises(InputError, match="predictions/1'.*network's alone"):
                store.open_inputs(o, other)
    with pytest.raises(
        InputError,
        match="schema is 'lamost2csst.slitless_observations/1', expected one of 'lamost2csst.predictions/2', "
        "'lamost2csst.predictions/3'",
    ):
        store.open_inputs(o, o)
    with pytest.raises(InputError, match=f"observations {p}: not a lamost2csst slitless observation store"):
        store.open_inputs(p, p)
    pred.isel(wave_out=slice(0, 10)).to_zarr(tmp_path / "short.zarr", zarr_format=3, consolidated=False)
    with pytest.raises(InputError, match="not on the same wave_out grid"):
        store.open_inputs(o, str(tmp_path / "short.zarr"))
