"""The catalogue's pixel encoding on LAMOST-like demo stars: the stated bound, the bytes, the
predictions it leaves unchanged within 1 % of their sigma, and stores written before it."""

import numpy as np
import pytest
import xarray as xr
import zarr

import lamost2csst
from lamost2csst.core import prepare_inputs
from lamost2csst.core.flags import sanitize_pixels
from lamost2csst.io.regions import read_region, template_encoding
from lamost2csst.io.simulated import grid_catalogue
from lamost2csst.io.spectra import (
    DEFAULT_PRECISION,
    create_spectra_store,
    open_spectra,
    store_precision,
    write_spectra,
    write_spectra_region,
)

N_STAR = 400


@pytest.fixture(scope="module")
def demo():
    return grid_catalogue(N_STAR, seed=12)


@pytest.fixture(scope="module")
def stores(demo, tmp_path_factory):
    root = tmp_path_factory.mktemp("enc")
    write_spectra(demo, root / "rounded.zarr", chunk_stars=N_STAR)
    write_spectra(demo, root / "lossless.zarr", chunk_stars=N_STAR, precision=None)
    return root / "rounded.zarr", root / "lossless.zarr"


def bits(x):
    return np.asarray(x, dtype=np.float32).view(np.uint32)


def test_every_pixel_within_its_bound(demo, stores):
    stored = open_spectra(stores[0]).load()
    flux, ivar, mask = demo.flux.values, demo.ivar.values, demo.mask.values
    usable = ~mask & (ivar > 0)
    assert usable.mean() > 0.9 and mask.any()  # the demo has both kinds of pixels
    sigma = 1 / np.sqrt(ivar[usable].astype(np.float64))
    err = np.abs(stored.flux.values[usable].astype(np.float64) - flux[usable])
    assert np.all(err <= 1e-5 * sigma)  # DEFAULT_PRECISION.flux_fraction
    assert np.mean(err > 0) > 0.5  # most fluxes were rounded: the bound is what is kept
    rel = np.abs(stored.ivar.values[usable].astype(np.float64) / ivar[usable] - 1)
    assert np.all(rel <= 2.0**-8) and rel.max() > 0.5 * 2.0**-8
    np.testing.assert_array_equal(bits(stored.flux.values[mask]), bits(flux[mask]))  # NaN payloads too
    np.testing.assert_array_equal(bits(stored.ivar.values[mask]), bits(ivar[mask]))
    np.testing.assert_array_equal(stored.mask.values, mask)


def test_the_default_is_the_stated_bound():
    assert (DEFAULT_PRECISION.flux_fraction, DEFAULT_PRECISION.ivar_bits) == (1e-5, 7)


def test_a_rounded_store_written_again_is_not_rounded_twice(stores, tmp_path):
    opened = open_spectra(stores[0])
    write_spectra(opened, tmp_path / "again.zarr", chunk_stars=N_STAR)
    again = open_spectra(tmp_path / "again.zarr").load()
    np.testing.assert_array_equal(bits(again.flux.values), bits(opened.flux.values))
    np.testing.assert_array_equal(bits(again.ivar.values), bits(opened.ivar.values))
    # and written lossless, its attrs say so (no stale rounding attrs)
    write_spectra(opened, tmp_path / "lossless.zarr", precision=None)
    assert store_precision(tmp_path / "lossless.zarr") is None


def _bytes_per_spectrum(store, name):
    array = zarr.open_array(str(store / name), mode="r")
    return array.nbytes_stored() / array.shape[0]


def test_the_rounded_pixels_take_at_most_15900_bytes_per_spectrum(stores):
    """Target of issue 21: flux + ivar + mask at most 15,900 bytes per demo spectrum (23,860 lossless)."""
    rounded = sum(_bytes_per_spectrum(stores[0], n) for n in ("flux", "ivar", "mask"))
    lossless = sum(_bytes_per_spectrum(stores[1], n) for n in ("flux", "ivar", "mask"))
    assert rounded <= 15_900 < 22_000 < lossless
    assert rounded < 0.65 * lossless


def _predict(store, *, rows=slice(None)):
    """The shipped model's (sed, sigma) of a store's stars with a redshift (the job's first steps)."""
    arrays = read_region(str(store), 0, N_STAR, ["wave", "flux", "ivar", "mask", "z"])
    flux, ivar, mask, _ = sanitize_pixels(arrays["flux"], arrays["ivar"], arrays["mask"])
    has_z = np.isfinite(arrays["z"])
    net = prepare_inputs(
        arrays["wave"], flux[has_z], ivar=ivar[has_z], z=arrays["z"][has_z], mask=mask[has_z]
    )
    return lamost2csst.predict(net.flux[rows], net.error[rows], mask=net.mask[rows])


def test_predictions_move_by_less_than_one_percent_of_their_sigma(stores):
    sed, sigma = _predict(stores[1])
    sed_r, sigma_r = _predict(stores[0])
    moved = np.abs(sed_r.astype(np.float64) - sed) / sigma
    assert moved.shape[0] > 0.9 * N_STAR
    assert moved.max() < 0.01
    assert moved.max() > 0  # the inputs did change
    np.testing.assert_allclose(sigma_r, sigma, rtol=0.01)


def test_a_store_written_before_opens_and_predicts_unchanged(demo, stores, tmp_path):
    """A catalogue written by the code before the encoding (no pixel_encoding attr, lossless lz4)."""
    old = tmp_path / "old.zarr"
    demo.to_zarr(old, zarr_format=3, consolidated=False, encoding=template_encoding(demo, 128))
    assert "pixel_encoding" not in zarr.open_group(str(old), mode="r").attrs
    assert store_precision(old) is None
    xr.testing.assert_identical(open_spectra(old).load(), demo)
    sed, sigma = _predict(old, rows=slice(0, 40))
    sed_lossless, sigma_lossless = _predict(stores[1], rows=slice(0, 40))
    np.testing.assert_array_equal(sed, sed_lossless)
    np.testing.assert_array_equal(sigma, sigma_lossless)
    # a region written into a store without the attrs stays bit for bit (nothing rounds it)
    create_spectra_store(demo, tmp_path / "t.zarr", chunk_stars=128, precision=None)
    group = zarr.open_group(str(tmp_path / "t.zarr"), mode="r+")
    group.attrs.pop("pixel_encoding")  # as a template made before
    write_spectra_region(demo.isel(star=slice(0, 128)), tmp_path / "t.zarr", start=0)
    np.testing.assert_array_equal(bits(group["flux"][:128]), bits(demo.flux.values[:128]))
