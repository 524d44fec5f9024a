"""The jobs' demo catalogues on a Dask client: small graphs, the eager catalogue's bytes, reuse."""

import io
import pickle
import warnings
from pathlib import Path

import dask
import numpy as np
import pytest
import xarray as xr
from distributed import Client, LocalCluster

from lamost2csst.errors import InputError
from lamost2csst.io import open_spectra, write_spectra
from lamost2csst.io.demo import BLOCK_STARS as TOY_BLOCK
from lamost2csst.io.demo import toy_catalogue
from lamost2csst.io.grid import load_grid
from lamost2csst.io.simulated import BLOCK_STARS as GRID_BLOCK
from lamost2csst.io.simulated import grid_arrays, grid_catalogue
from lamost2csst.io.spectra import round_pixels
from lamost2csst.parallel.demo import grid_demo_catalogue, toy_demo_catalogue

THRESHOLD = "distributed.admin.large-graph-warning-threshold"
BUILDERS = {"toy": (toy_catalogue, TOY_BLOCK), "grid": (grid_catalogue, GRID_BLOCK)}


def graph_bytes(collection) -> tuple[int, int]:
    """(pickled size of the collection's materialized graph, bytes of the numpy arrays in it)."""
    found = []

    class Counting(pickle.Pickler):
        def reducer_override(self, obj):
            if isinstance(obj, np.ndarray):
                found.append(obj.nbytes)
            return NotImplemented

    buffer = io.BytesIO()
    Counting(buffer, protocol=5).dump(dict(collection.__dask_graph__()))
    return buffer.tell(), sum(found)


def _files(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("kind", ["toy", "grid"])
def test_write_graph_of_a_million_star_demo_holds_no_star_data(kind, tmp_path):
    """Built, not computed. Before, the per-star coordinates went into this graph (48 and 92
    bytes a star: 48 and 92 MB) and the grid demo's SEDs too (4.6 MB)."""
    build, block = BUILDERS[kind]
    catalogue = build(1_000_000, lazy=True)
    delayed = write_spectra(catalogue, tmp_path / "big.zarr", chunk_stars=block, compute=False)
    size, array_bytes = graph_bytes(delayed)
    assert array_bytes < 50_000  # block numbers only (a 500-chunk range: 4 kB)
    assert size < 4_000_000  # ~500 blocks of tasks, well below Dask's 10 MB "large graph" warning


def test_another_grid_is_in_the_graph_once_whatever_the_number_of_stars(tmp_path):
    grid = load_grid()
    arrays = grid_arrays(grid)
    once = arrays.flux_lamost.nbytes + arrays.sed.nbytes + sum(p.nbytes for p in arrays.params.values())
    for n_star in (10, 3 * GRID_BLOCK):
        delayed = write_spectra(
            grid_catalogue(n_star, grid=grid, lazy=True),
            tmp_path / f"{n_star}.zarr",
            chunk_stars=GRID_BLOCK,
            compute=False,
        )
        _, array_bytes = graph_bytes(delayed)
        assert once <= array_bytes < once + 50_000


@pytest.mark.parametrize("kind", ["toy", "grid"])
def test_no_large_graph_warning_when_a_20000_star_demo_goes_to_a_cluster(kind, tmp_path):
    """The graph the demo job sends, under a threshold 20 times below Dask's 10 MB: before,
    20,000 stars sent 1 MB (toy) and 6.5 MB (grid). No workers: the graph is sent, not run."""
    build, block = BUILDERS[kind]
    catalogue = build(20_000, lazy=True)
    # before the cluster: write_spectra reads the coordinates (a compute that needs workers)
    delayed = write_spectra(catalogue, tmp_path / "demo.zarr", chunk_stars=block, mode="w", compute=False)
    with (
        LocalCluster(n_workers=0, processes=False, dashboard_address=":0") as cluster,
        Client(cluster) as c,
        dask.config.set({THRESHOLD: "500kB"}),
        warnings.catch_warnings(),
    ):
        warnings.filterwarnings("error", message="Sending large graph")
        future = c.compute(delayed)
        assert future.status == "pending"
        c.cancel(future)


def test_toy_demo_writes_the_eager_catalogues_bytes_and_is_reused(client, tmp_path):
    n = TOY_BLOCK + 37  # two blocks, the second ragged
    path, logged = tmp_path / "demo.zarr", []
    with warnings.catch_warnings(), dask.config.set({THRESHOLD: "500kB"}):
        warnings.filterwarnings("error", message="Sending large graph")
        assert toy_demo_catalogue(
            str(path), n_star=n, seed=4, client=client, progress=False, log=logged.append
        ) == str(path)
    assert logged == [f"building the demo catalogue {path}: {n} toy spectra (analytic stand-in), seed 4"]
    eager = tmp_path / "eager.zarr"
    write_spectra(toy_catalogue(n, seed=4), eager, chunk_stars=TOY_BLOCK)
    written = _files(path)
    assert len(written) > 10 and written == _files(eager)  # same layout, same bytes
    mtime = (path / "zarr.json").stat().st_mtime_ns
    toy_demo_catalogue(str(path), n_star=n, seed=4, client=client, progress=False, log=logged.append)
    assert logged[-1] == f"reusing the demo catalogue {path} ({n} stars)"
    assert (path / "zarr.json").stat().st_mtime_ns == mtime
    toy_demo_catalogue(str(path), n_star=50, seed=4, client=client, progress=False, log=logged.append)
    assert "holds another demo" in logged[-2] and open_spectra(path).sizes["star"] == 50


def test_grid_demo_is_the_eager_catalogue_and_a_foreign_store_is_kept(client, tmp_path):
    path, logged = tmp_path / "demo.zarr", []
    grid_demo_catalogue(str(path), n_star=300, seed=6, client=client, progress=False, log=logged.append)
    assert "300 LAMOST-like stars simulated from the shipped grid" in logged[0]
    # the eager catalogue as the writers store it (pixels within 1e-5 of sigma, lamost2csst.io.spectra)
    xr.testing.assert_identical(open_spectra(path).compute(), round_pixels(grid_catalogue(300, seed=6)))
    foreign = tmp_path / "foreign.zarr"
    write_spectra(toy_catalogue(5), foreign)
    with pytest.raises(InputError, match="not a demo catalogue of this job"):
        grid_demo_catalogue(str(foreign), n_star=300, seed=6, client=client, progress=False, log=print)
    assert open_spectra(foreign).sizes["star"] == 5
