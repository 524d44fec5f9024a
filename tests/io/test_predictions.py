"""The predictions store: template, validation, open."""

import numpy as np
import pytest
import xarray as xr

from lamost2csst.core import LAMOST_WAVE, OUTPUT_WAVE
from lamost2csst.core.flags import Flag, FlagThresholds
from lamost2csst.io.predictions import (
    PREDICTIONS_SCHEMA,
    open_predictions,
    predictions_template,
    validate_predictions,
)
from lamost2csst.io.regions import write_template
from lamost2csst.io.spectra import spectra_dataset


def catalogue(n=5):
    rng = np.random.default_rng(2)
    flux = rng.uniform(1, 2, (n, LAMOST_WAVE.size))
    return spectra_dataset(
        wave=LAMOST_WAVE,
        flux=flux,
        ivar=np.ones_like(flux),
        obsid=np.arange(1, n + 1),
        ra=rng.uniform(0, 360, n),
        dec=rng.uniform(-30, 60, n),
        z=np.full(n, 1e-4),
        resolution=1800.0,
        source="test",
    )


def template(n=5, chunk_stars=2, thresholds=None):
    return predictions_template(
        catalogue(n),
        chunk_stars=chunk_stars,
        catalogue="cat.zarr",
        model_path="m.keras",
        model_hash="abc123",
        model_card={"command": "train", "epoch": 7},
        thresholds=thresholds or FlagThresholds(),
    )


def test_template_layout():
    ds = template(5, chunk_stars=2, thresholds=FlagThresholds(min_snr=3.0))
    assert ds.attrs["schema"] == PREDICTIONS_SCHEMA == "lamost2csst.predictions/1"
    assert dict(ds.sizes) == {"star": 5, "wave_out": OUTPUT_WAVE.size}
    np.testing.assert_array_equal(ds["wave_out"].values, OUTPUT_WAVE)
    assert (ds["sed"].dtype, ds["sigma"].dtype, ds["flags"].dtype) == (np.float32, np.float32, np.uint16)
    assert ds["sed"].chunks == ((2, 2, 1), (OUTPUT_WAVE.size,)) and ds["flags"].chunks == ((2, 2, 1),)
    np.testing.assert_array_equal(ds["obsid"].values, [1, 2, 3, 4, 5])
    assert ds["flags"].attrs["flag_masks"] == [int(f) for f in Flag]
    assert ds.attrs["flag_thresholds"]["min_snr"] == 3.0
    model = (ds.attrs["model_hash"], ds.attrs["model_command"], ds.attrs["model_epoch"])
    assert model == ("abc123", "train", 7)
    assert ds.attrs["input_frame"] == "observed" and ds.attrs["chunk_stars"] == 2
    validate_predictions(ds)


@pytest.mark.parametrize(
    "corrupt, message",
    [
        (lambda ds: ds.assign_attrs(schema="lamost2csst.network_input/1"), "schema"),
        (lambda ds: ds.drop_vars("sigma"), "missing data variable 'sigma'"),
        (lambda ds: ds.assign(flags=ds["flags"].astype(np.int32)), "flags has dtype int32"),
        (lambda ds: ds.assign(flags=ds["sed"]), "flags has dims"),
        (lambda ds: ds.isel(wave_out=slice(0, 10)), "574 pixels"),
    ],
)
def test_validation_names_the_problem(corrupt, message):
    with pytest.raises(ValueError, match=message):
        validate_predictions(corrupt(template(3, chunk_stars=3)))


def test_open_a_written_template_and_refuse_others(tmp_path):
    write_template(template(4, chunk_stars=2), str(tmp_path / "p.zarr"), 2)
    ds = open_predictions(tmp_path / "p.zarr")
    assert ds["sed"].encoding["chunks"] == (2, OUTPUT_WAVE.size)
    assert ds.attrs["input_store"] == "cat.zarr"
    xr.Dataset({"x": ("a", np.arange(3))}).to_zarr(tmp_path / "x.zarr", zarr_format=3, consolidated=False)
    with pytest.raises(ValueError, match="not a lamost2csst predictions store"):
        open_predictions(tmp_path / "x.zarr")
