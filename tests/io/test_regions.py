"""Templates and the one region reader/writer of the star-chunked stores."""

import hashlib

import numpy as np
import xarray as xr

from lamost2csst.core import INPUT_WAVE, LAMOST_WAVE
from lamost2csst.io.network_inputs import network_input_template
from lamost2csst.io.regions import read_region, write_region, write_template
from lamost2csst.io.spectra import spectra_dataset


def catalogue(n=6):
    rng = np.random.default_rng(4)
    flux = rng.uniform(1, 2, (n, LAMOST_WAVE.size))
    return spectra_dataset(
        wave=LAMOST_WAVE,
        flux=flux,
        ivar=np.ones_like(flux),
        obsid=np.arange(n),
        ra=np.zeros(n),
        dec=np.zeros(n),
        z=np.zeros(n),
        resolution=1800.0,
    )


def chunk_bytes(store):
    """sha256 of every stored chunk file (metadata left out)."""
    return {
        str(p.relative_to(store)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(store.rglob("*"))
        if p.is_file() and p.name != "zarr.json"
    }


def test_region_writes_store_what_xarray_region_writes_store(tmp_path):
    """write_region (plain Zarr) replaced xarray's region writes: the same bytes on disk."""
    rng = np.random.default_rng(5)
    flux = rng.normal(1, 0.1, (6, INPUT_WAVE.size)).astype(np.float32)
    mask = rng.uniform(size=flux.shape) < 0.1
    flux[mask] = np.nan
    error = np.where(mask, np.nan, 0.01).astype(np.float32)
    template = network_input_template(catalogue(6), chunk_stars=4)
    for name in ("a", "b"):
        write_template(template, str(tmp_path / name), 4)
    dims = ("star", "wave_in")
    for start, stop in ((4, 6), (0, 4)):
        rows = slice(start, stop)
        part = {"flux": flux[rows], "error": error[rows], "mask": mask[rows]}
        xr.Dataset({name: (dims, values) for name, values in part.items()}).to_zarr(
            tmp_path / "a", region={"star": rows}, mode="r+", zarr_format=3, consolidated=False
        )
        write_region(str(tmp_path / "b"), start, stop, part)
    expected = chunk_bytes(tmp_path / "a")
    assert sum(k.split("/")[0] in ("flux", "error", "mask") for k in expected) == 6  # 3 arrays x 2 chunks
    assert chunk_bytes(tmp_path / "b") == expected


def test_read_region_rows_whole_arrays_and_absent_names(tmp_path):
    cat = catalogue(6)
    cat.to_zarr(tmp_path / "c.zarr", zarr_format=3, consolidated=False)
    got = read_region(str(tmp_path / "c.zarr"), 2, 5, ("flux", "wave", "obsid", "sed_true"))
    assert sorted(got) == ["flux", "obsid", "wave"]
    np.testing.assert_array_equal(got["flux"], cat["flux"].values[2:5])
    np.testing.assert_array_equal(got["obsid"], [2, 3, 4])
    np.testing.assert_array_equal(got["wave"], LAMOST_WAVE)  # no star dimension: whole
