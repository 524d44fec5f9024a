"""The demo catalogue simulated from the grid: deterministic, lazy == eager, truth consistent."""

import numpy as np
import pytest
import xarray as xr

from lamost2csst.core.flags import sanitize_pixels
from lamost2csst.io import validate_spectra
from lamost2csst.io.grid import load_grid
from lamost2csst.io.simulated import BLOCK_STARS, grid_catalogue, grid_digest

N = BLOCK_STARS + 100  # two blocks, the second ragged


@pytest.fixture(scope="module")
def grid():
    return load_grid()


@pytest.fixture(scope="module")
def demo(grid):
    return grid_catalogue(N, seed=3, grid=grid)


def test_schema_and_truth_follow_the_grid(demo, grid):
    validate_spectra(demo)
    model = demo.grid_model.values
    np.testing.assert_array_equal(demo.sed_true.values, grid.sed.values[model])
    for p in ("teff", "logg", "feh", "alpha"):
        np.testing.assert_array_equal(demo[p].values, grid[p].values[model])
    assert demo.attrs["demo_grid"] == grid_digest(grid)
    assert demo.attrs["frame"] == "observed"


def test_prefix_and_lazy_equal_eager(demo, grid):
    small = grid_catalogue(50, seed=3, grid=grid)
    for name in ("flux", "ivar", "mask", "sed_true"):
        np.testing.assert_array_equal(small[name].values, demo[name].values[:50])
    lazy = grid_catalogue(N, seed=3, grid=grid, lazy=True)
    for name, var in lazy.variables.items():
        if "star" in var.dims:  # every per-star variable, coordinates included, one chunk per block
            assert var.chunks[0] == (BLOCK_STARS, 100), name
    xr.testing.assert_identical(lazy.compute(), demo)
    other = grid_catalogue(50, seed=4, grid=grid)
    assert not np.array_equal(other.flux.values, small.flux.values, equal_nan=True)


def test_lazy_catalogue_of_the_shipped_grid_equals_the_eager_one():
    """Without ``grid`` the blocks load the shipped grid themselves (on each Dask worker)."""
    lazy = grid_catalogue(150, seed=5, lazy=True)
    xr.testing.assert_identical(lazy.compute(), grid_catalogue(150, seed=5))


def test_observations_scatter_like_their_snr(demo, grid):
    # continuum-free check: the ratio of two neighbouring pixels of the same star varies by
    # sqrt(2)/snr (Eq. 1 noise is independent per pixel; the model is smooth on 1 pixel at R=2000 mostly)
    f = demo.flux.values.astype(np.float64)
    snr = demo.snr_g.values
    sel = (snr > 40) & (snr < 60)
    d = (f[sel, 1001:3001:2] / f[sel, 1000:3000:2]) - 1.0
    measured = np.nanmedian(np.abs(d - np.nanmedian(d, axis=1, keepdims=True)), axis=1) * 1.4826
    expected = np.sqrt(2) / snr[sel]
    assert np.median(measured / expected) == pytest.approx(1.0, abs=0.25)


def test_faults_are_injected_as_documented(demo):
    z, z_true = demo.z.values, demo.z_true.values
    missing = np.isnan(z)
    assert 0 < missing.sum() < 0.02 * N
    np.testing.assert_array_equal(z[~missing], z_true[~missing])
    assert np.all(np.isfinite(z_true))
    _, _, _, nonfinite = sanitize_pixels(demo.flux.values, demo.ivar.values, demo.mask.values)
    assert 0 < nonfinite.sum() < 0.01 * N
    velocity = z_true * 299792.458
    # the disc component, N(0, 40 km/s) cut at 2.5 sigma
    assert 30 < np.std(velocity[np.abs(velocity) < 100]) < 45


def test_bad_arguments(grid):
    with pytest.raises(ValueError, match="n_star"):
        grid_catalogue(0, grid=grid)
    with pytest.raises(ValueError, match="seed"):
        grid_catalogue(5, seed=-1, grid=grid)


def test_lazy_catalogue_on_an_in_process_cluster_leaves_the_process_config_alone(tmp_path):
    """Its blocks load the grid inside Dask tasks; a dask compute there (xarray's .load()) would
    start a worker client and, with in-process workers, change this process's default scheduler."""
    import dask
    from distributed import Client, LocalCluster

    from lamost2csst.io import write_spectra

    before = dask.config.get("scheduler", None)
    with (
        LocalCluster(n_workers=1, processes=False, dashboard_address=":0") as cluster,
        Client(cluster) as c,
        LocalCluster(n_workers=1, processes=False, dashboard_address=":0") as other,
        Client(other),
    ):
        with c.as_current():  # a second client is open, as in a notebook or a test session
            catalogue = grid_catalogue(100, seed=1, lazy=True)
            delayed = write_spectra(catalogue, tmp_path / "c.zarr", compute=False)
        c.compute(delayed).result()
    assert dask.config.get("scheduler", None) == before
