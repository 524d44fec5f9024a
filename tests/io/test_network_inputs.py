"""The network-inputs store: template, validation, open."""

import numpy as np
import pytest
import xarray as xr

from lamost2csst.core import INPUT_WAVE, LAMOST_WAVE
from lamost2csst.io.network_inputs import (
    NETWORK_INPUT_SCHEMA,
    network_input_template,
    open_network_inputs,
    validate_network_inputs,
)
from lamost2csst.io.regions import write_template
from lamost2csst.io.spectra import spectra_dataset


def catalogue(n=5):
    rng = np.random.default_rng(1)
    flux = rng.uniform(1, 2, (n, LAMOST_WAVE.size))
    return spectra_dataset(
        wave=LAMOST_WAVE,
        flux=flux,
        ivar=np.ones_like(flux),
        obsid=np.arange(10, 10 + n),
        ra=rng.uniform(0, 360, n),
        dec=rng.uniform(-30, 60, n),
        z=np.zeros(n),
        resolution=1800.0,
        frame="rest",
        source="test",
        snr_g=np.linspace(5, 50, n),
    )


def test_template_layout():
    cat = catalogue(5)
    ds = network_input_template(cat, chunk_stars=2, catalogue="cat.zarr")
    assert ds.attrs["schema"] == NETWORK_INPUT_SCHEMA == "lamost2csst.network_input/1"
    assert dict(ds.sizes) == {"star": 5, "wave_in": INPUT_WAVE.size}
    np.testing.assert_array_equal(ds["wave_in"].values, INPUT_WAVE)
    assert {n: ds[n].dtype for n in ("flux", "error", "mask")} == {
        "flux": np.float32,
        "error": np.float32,
        "mask": np.bool_,
    }
    assert ds["flux"].chunks == ((2, 2, 1), (INPUT_WAVE.size,))
    for name in ("obsid", "ra", "dec", "z", "snr_g"):  # per-star coordinates copied, in order
        np.testing.assert_array_equal(ds[name].values, cat[name].values)
    assert ds.attrs["input_store"] == "cat.zarr" and ds.attrs["input_frame"] == "rest"
    assert ds.attrs["input_resolution"] == 1800.0 and ds.attrs["chunk_stars"] == 2
    validate_network_inputs(ds)


@pytest.mark.parametrize(
    "corrupt, message",
    [
        (lambda ds: ds.assign_attrs(schema="lamost2csst.spectra/1"), "schema"),
        (lambda ds: ds.drop_vars("error"), "missing data variable 'error'"),
        (lambda ds: ds.assign(mask=ds["mask"].astype(np.uint8)), "mask has dtype uint8"),
        (lambda ds: ds.assign_coords(wave_in=ds["wave_in"].values * 1.001), "differs from INPUT_WAVE"),
        (lambda ds: ds.isel(wave_in=slice(0, 100)), "2238 pixels"),
    ],
)
def test_validation_names_the_problem(corrupt, message):
    ds = network_input_template(catalogue(3), chunk_stars=3)
    with pytest.raises(ValueError, match=message):
        validate_network_inputs(corrupt(ds))


def test_open_a_written_template_and_refuse_others(tmp_path):
    write_template(network_input_template(catalogue(4), chunk_stars=2), str(tmp_path / "n.zarr"), 2)
    ds = open_network_inputs(tmp_path / "n.zarr")
    assert ds["flux"].encoding["chunks"] == (2, INPUT_WAVE.size)
    np.testing.assert_array_equal(ds["obsid"].values, [10, 11, 12, 13])
    xr.Dataset({"x": ("a", np.arange(3))}).to_zarr(tmp_path / "x.zarr", zarr_format=3, consolidated=False)
    with pytest.raises(ValueError, match="not a lamost2csst network-inputs store"):
        open_network_inputs(tmp_path / "x.zarr")
    with pytest.raises(ValueError, match="cannot open"):
        open_network_inputs(tmp_path / "nothing.zarr")
