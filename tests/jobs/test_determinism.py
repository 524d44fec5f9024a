"""The same seed gives identical outputs with 1 or 2 workers and other chunk sizes.

Simulation (the demo catalogue, slitless observations) and the flat-cube Monte Carlo;
the training noise is in tests/nn/test_training.py (same data whatever the batch size).
"""

import numpy as np
import pytest
import xarray as xr
from distributed import Client, LocalCluster

from jobs import simulate_observations as simulate_job
from lamost2csst.core.calibration import monte_carlo_flat_precision
from lamost2csst.io.simulated import grid_catalogue
from lamost2csst.parallel.demo import write_with_progress
from lamost2csst.parallel.runtime import worker_mapper


@pytest.fixture(scope="module")
def two_workers(client):
    # depends on ``client`` so that it closes first: Dask clients restore the default-scheduler
    # config they replaced, which is only right when they close in reverse order of opening
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0") as cluster,
        Client(cluster) as c,
    ):
        yield c


def _load(path):
    return xr.open_zarr(path, consolidated=False).load()


def test_demo_catalogue_is_the_same_on_1_or_2_workers_and_any_chunking(client, two_workers, tmp_path):
    stores = []
    for c, chunk in ((client, 2048), (two_workers, 2048), (two_workers, 700)):
        path = tmp_path / f"cat-{len(stores)}.zarr"
        write_with_progress(
            grid_catalogue(5000, seed=3, lazy=True), path, client=c, chunk_stars=chunk, desc=""
        )
        stores.append(_load(path))
    for other in stores[1:]:
        xr.testing.assert_identical(stores[0], other)
    assert not np.array_equal(
        stores[0].flux.values, grid_catalogue(5000, seed=4).flux.values
    )  # the seed matters


def test_simulated_observations_do_not_depend_on_the_chunking(client, tmp_path, capsys):
    catalogue = tmp_path / "cat.zarr"
    write_with_progress(
        grid_catalogue(300, seed=5, lazy=True), catalogue, client=client, chunk_stars=2048, desc=""
    )
    outs = []
    for i, (chunk, seed) in enumerate(((100, 1), (700, 1), (100, 2))):
        out = tmp_path / f"obs-{i}.zarr"
        simulate_job.main(
            ["--catalogue", str(catalogue), "--out", str(out), "--seed", str(seed), "--chunk-obs", str(chunk)]
        )
        outs.append((_load(out), xr.open_zarr(out, group="truth", consolidated=False).load()))
    capsys.readouterr()
    xr.testing.assert_identical(outs[0][0].drop_attrs(), outs[1][0].drop_attrs())
    xr.testing.assert_identical(outs[0][1], outs[1][1])
    assert not np.array_equal(outs[0][0].flux.values, outs[2][0].flux.values, equal_nan=True)


def _dask_mapper(client, *, reverse=False):
    """The job's mapper; ``reverse`` submits the realizations in reverse order."""
    if not reverse:
        return worker_mapper(client)

    def mapper(func, arrays, items):
        return list(reversed(worker_mapper(client)(func, arrays, list(reversed(items)))))

    return mapper


def test_monte_carlo_is_the_same_serially_and_on_1_or_2_workers(client, two_workers):
    cat = grid_catalogue(300, seed=6)
    pool = cat.sed_true.values
    rng = np.random.default_rng(0)
    pred = pool * (1 + rng.normal(0, 0.01, pool.shape))
    sigma = np.full(pool.shape, 0.01)
    kwargs = {"n_stars": 100, "realizations": 4, "seed": 9}
    serial = monte_carlo_flat_precision(pred, sigma, pool, **kwargs)
    assert monte_carlo_flat_precision(pred, sigma, pool, mapper=_dask_mapper(client), **kwargs) == serial
    assert monte_carlo_flat_precision(pred, sigma, pool, mapper=_dask_mapper(two_workers), **kwargs) == serial
    assert (
        monte_carlo_flat_precision(
            pred, sigma, pool, mapper=_dask_mapper(two_workers, reverse=True), **kwargs
        )
        == serial
    )
    assert monte_carlo_flat_precision(pred, sigma, pool, **{**kwargs, "seed": 10}) != serial
