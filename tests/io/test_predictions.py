"""The predictions store: template, validation, open."""

import numpy as np
import pytest
import xarray as xr

from lamost2csst.core import LAMOST_WAVE, OUTPUT_WAVE
from lamost2csst.core.discrepancy import ModelDiscrepancy
from lamost2csst.core.flags import Flag, FlagThresholds
from lamost2csst.io.predictions import (
    PREDICTIONS_SCHEMA,
    is_other_version,
    open_predictions,
    predictions_template,
    validate_predictions,
)
from lamost2csst.io.regions import read_region, write_region, write_template
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


def template(n=5, chunk_stars=2, thresholds=None, discrepancy=None, domain_provenance=None):
    return predictions_template(
        catalogue(n),
        chunk_stars=chunk_stars,
        catalogue="cat.zarr",
        model_path="m.keras",
        model_hash="abc123",
        model_card={"command": "train", "epoch": 7},
        thresholds=thresholds or FlagThresholds(),
        discrepancy=discrepancy,
        domain_provenance=domain_provenance,
    )


def test_template_layout():
    ds = template(5, chunk_stars=2, thresholds=FlagThresholds(min_snr=3.0))
    assert ds.attrs["schema"] == PREDICTIONS_SCHEMA == "lamost2csst.predictions/3"
    assert dict(ds.sizes) == {"star": 5, "wave_out": OUTPUT_WAVE.size}
    np.testing.assert_array_equal(ds["wave_out"].values, OUTPUT_WAVE)
    assert (ds["sed"].dtype, ds["sigma"].dtype, ds["flags"].dtype) == (np.float32, np.float32, np.uint16)
    for name in ("sigma_net", "sigma_sys"):
        assert (ds[name].dims, ds[name].dtype) == (("star", "wave_out"), np.float32)
        assert ds[name].chunks == ds["sed"].chunks
    assert "hypot(sigma_net, sigma_sys)" in ds["sigma"].attrs["long_name"]
    for name, units in (("teff_estimate", "K"), ("teff_estimate_error", "K"), ("domain_chi2", "1")):
        assert (ds[name].dims, ds[name].dtype, ds[name].attrs["units"]) == (("star",), np.float32, units)
        assert ds[name].chunks == ds["flags"].chunks
    # no discrepancy given: recorded as none
    assert ds.attrs["sigma_sys"]["provenance"] == {"kind": "none"}
    assert ds.attrs["sigma_sys"]["fitted_pixels"] == 0
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
        (lambda ds: ds.drop_vars("sigma_sys"), "missing data variable 'sigma_sys'"),
        (lambda ds: ds.drop_vars("teff_estimate"), "missing data variable 'teff_estimate'"),
        (lambda ds: ds.assign(domain_chi2=ds["flags"]), "domain_chi2 has dtype uint16"),
        (lambda ds: ds.assign(sigma_net=ds["sigma"].astype(np.float64)), "sigma_net has dtype float64"),
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


def _discrepancy(a, b, fitted=True):
    n = OUTPUT_WAVE.size
    return ModelDiscrepancy(np.full(n, a), np.full(n, b), np.full(n, fitted), {"libraries": ["MILES"]})


def test_the_discrepancy_is_recorded_in_the_attrs():
    ds = template(3, chunk_stars=3, discrepancy=_discrepancy(1.5, 0.02))
    assert ds.attrs["sigma_sys"]["provenance"] == {"libraries": ["MILES"]}
    assert (ds.attrs["sigma_sys"]["fitted_pixels"], ds.attrs["sigma_sys"]["pixels"]) == (574, 574)
    digest = ds.attrs["sigma_sys_sha256"]
    assert len(digest) == 64
    # the digest follows the numbers (and only the discrepancy)
    assert template(2, chunk_stars=1, discrepancy=_discrepancy(1.5, 0.02)).attrs["sigma_sys_sha256"] == digest
    assert template(3, chunk_stars=3, discrepancy=_discrepancy(1.5, 0.03)).attrs["sigma_sys_sha256"] != digest
    assert template(3, chunk_stars=3).attrs["sigma_sys_sha256"] != digest


def test_round_trip_keeps_the_three_sigmas_and_their_identity(tmp_path):
    """What a chunk writes reads back; sigma = hypot(sigma_net, sigma_sys) survives float32 storage."""
    d = _discrepancy(2.0, 0.01)
    out = str(tmp_path / "p.zarr")
    write_template(template(4, chunk_stars=2, discrepancy=d), out, 2)
    rng = np.random.default_rng(4)
    net = rng.uniform(0.001, 0.2, (4, OUTPUT_WAVE.size)).astype(np.float32)
    total, sys = d.sigma_parts(net)
    sed = rng.uniform(0.5, 2.0, net.shape).astype(np.float32)
    parts = {"sed": sed, "sigma": total, "sigma_net": net, "sigma_sys": sys}
    write_region(out, 0, 2, {k: v[:2] for k, v in parts.items()} | {"flags": np.zeros(2, np.uint16)})
    write_region(out, 2, 4, {k: v[2:] for k, v in parts.items()} | {"flags": np.ones(2, np.uint16)})
    ds = open_predictions(out)
    for name, values in parts.items():
        np.testing.assert_array_equal(ds[name].values, values)
    assert read_region(out, 1, 3, ("sigma_sys",))["sigma_sys"].shape == (2, OUTPUT_WAVE.size)
    got = {k: ds[k].values.astype(np.float64) for k in ("sigma", "sigma_net", "sigma_sys")}
    np.testing.assert_allclose(got["sigma"], np.hypot(got["sigma_net"], got["sigma_sys"]), rtol=1e-6)
    # independent hand numbers: a = 2, b = 0.01
    np.testing.assert_allclose(got["sigma"], np.sqrt(4 * got["sigma_net"] ** 2 + 1e-4), rtol=1e-6)
    assert ds.attrs["sigma_sys_sha256"] == template(1, discrepancy=d).attrs["sigma_sys_sha256"]


def test_the_domain_templates_are_recorded_in_the_attrs():
    provenance = {"grid_models": 1518, "reference_models": 80, "pixels_per_bin": 8}
    assert template(2, chunk_stars=2, domain_provenance=provenance).attrs["domain_templates"] == provenance
    assert template(2, chunk_stars=2).attrs["domain_templates"] == {}


_DOMAIN = ["teff_estimate", "teff_estimate_error", "domain_chi2"]


@pytest.mark.parametrize("version, lacks", [(1, ["sigma_net", "sigma_sys", *_DOMAIN]), (2, _DOMAIN)])
def test_an_older_store_is_refused_naming_both_versions(tmp_path, version, lacks):
    old = template(3, chunk_stars=3).drop_vars(lacks)
    old = old.assign_attrs(schema=f"lamost2csst.predictions/{version}")
    write_template(old, str(tmp_path / "old.zarr"), 3)
    with pytest.raises(
        ValueError, match=f"(?s)'lamost2csst.predictions/{version}'.*'lamost2csst.predictions/3'.*{lacks[0]}"
    ):
        open_predictions(tmp_path / "old.zarr")
    assert is_other_version("lamost2csst.predictions/1") and is_other_version("lamost2csst.predictions/2")
    assert not is_other_version(PREDICTIONS_SCHEMA)
    assert not is_other_version("lamost2csst.spectra/1") and not is_other_version(None)
