"""The slitless observation schema and its simulation."""

import numpy as np
import pytest
import xarray as xr

from lamost2csst.io.observations import (
    open_observations,
    read_scales,
    read_truth,
    simulate_observation_store,
    simulate_observations,
    validate_observations,
    write_observations,
)
from lamost2csst.io.simulated import grid_catalogue


@pytest.fixture(scope="module")
def stars():
    cat = grid_catalogue(50, seed=5)
    return cat.sed_true.values, cat.obsid.values


def test_every_star_every_band_every_exposure(stars):
    sed, obsid = stars
    obs, truth = simulate_observations(sed, obsid, n_exposures=4, seed=1)
    validate_observations(obs)
    assert obs.sizes["obs"] == 50 * 3 * 4
    for band in ("GU", "GV", "GI"):
        ids, counts = np.unique(obs.obsid.values[obs.band.values == band], return_counts=True)
        np.testing.assert_array_equal(ids, np.sort(obsid))
        assert (counts == 4).all()
    np.testing.assert_array_equal(obs.scale.values, obs.scale_true.values)
    assert truth.flat.shape == (3, 4, 574, 16, 16)
    assert np.nanmean(truth.flat.values) == pytest.approx(1.0, abs=2e-3)


def test_scale_errors_and_determinism(stars):
    sed, obsid = stars
    a, _ = simulate_observations(sed, obsid, n_exposures=1, seed=2, scale_error=0.02)
    b, _ = simulate_observations(sed, obsid, n_exposures=1, seed=2, scale_error=0.02)
    np.testing.assert_array_equal(a.flux.values, b.flux.values)
    rel = a.scale.values / a.scale_true.values - 1
    assert 0.01 < np.std(rel) < 0.03


def test_schema_problems_are_listed(stars, tmp_path):
    sed, obsid = stars
    obs, truth = simulate_observations(sed, obsid, n_exposures=1)
    with pytest.raises(ValueError, match="missing per-observation coordinate 'x'"):
        validate_observations(obs.drop_vars("x"))
    write_observations(obs, tmp_path / "o.zarr", truth=truth, chunk_obs=40)
    with pytest.raises(FileExistsError, match="already contains data"):
        write_observations(obs, tmp_path / "o.zarr")  # never overwrites
    with pytest.raises(ValueError, match="one obsid per star"):
        simulate_observations(sed, obsid[:3])


def test_store_readers(stars, tmp_path):
    sed, obsid = stars
    obs, truth = simulate_observations(sed, obsid, n_exposures=1, scale_error=0.1)
    write_observations(obs, tmp_path / "with.zarr", truth=truth)
    write_observations(obs, tmp_path / "without.zarr")
    opened = open_observations(tmp_path / "with.zarr")
    np.testing.assert_array_equal(opened.obsid.values, obs.obsid.values)
    ids, scale = read_scales(tmp_path / "with.zarr")
    np.testing.assert_array_equal(ids, obs.obsid.values)
    assert scale.dtype == np.float64
    np.testing.assert_array_equal(scale, obs.scale.values)
    np.testing.assert_array_equal(read_truth(tmp_path / "with.zarr").flat.values, truth.flat.values)
    assert read_truth(tmp_path / "without.zarr") is None  # real observations carry no truth
    xr.Dataset({"flux": (("obs", "wave_out"), np.zeros((2, 3)))}).to_zarr(
        tmp_path / "bad.zarr", zarr_format=3, consolidated=False
    )
    with pytest.raises(ValueError, match="missing per-observation coordinate 'obsid'"):
        open_observations(tmp_path / "bad.zarr")


def test_simulate_observation_store_from_a_catalogue(tmp_path):
    from lamost2csst.errors import InputError
    from lamost2csst.io import write_spectra

    cat = grid_catalogue(12, seed=3)
    cat["z"].values[2] = np.nan  # no usable z: left out
    write_spectra(cat, tmp_path / "cat.zarr")
    result = simulate_observation_store(
        tmp_path / "cat.zarr", tmp_path / "o.zarr", n_stars=5, n_exposures=2, seed=4
    )
    assert result == {"out": str(tmp_path / "o.zarr"), "stars": 5, "observations": 5 * 2 * 3}
    rows = [0, 1, 3, 4, 5]
    direct, truth = simulate_observations(
        cat.sed_true.values[rows], cat.obsid.values[rows], n_exposures=2, seed=4
    )
    stored = open_observations(tmp_path / "o.zarr")
    np.testing.assert_array_equal(stored.flux.values, direct.flux.values)
    np.testing.assert_array_equal(read_truth(tmp_path / "o.zarr").flat.values, truth.flat.values)
    assert stored.attrs["catalogue"] == str(tmp_path / "cat.zarr")
    with pytest.raises(InputError, match="already exists"):
        simulate_observation_store(tmp_path / "cat.zarr", tmp_path / "o.zarr")
    with pytest.raises(InputError, match="expects BAND=FILE"):
        simulate_observation_store(tmp_path / "cat.zarr", tmp_path / "p.zarr", throughput_files=["GX=t.txt"])
    write_spectra(cat.drop_vars("sed_true"), tmp_path / "nosed.zarr")
    with pytest.raises(InputError, match="has no sed_true"):
        simulate_observation_store(tmp_path / "nosed.zarr", tmp_path / "p.zarr")
    assert not (tmp_path / "p.zarr").exists()
