"""The toy catalogue: deterministic, chunking-independent, schema-valid, physically consistent."""

import numpy as np
import pytest
import xarray as xr

from lamost2csst.core import LAMOST_WAVE
from lamost2csst.io import open_spectra, toy_catalogue, validate_spectra, write_spectra
from lamost2csst.io.demo import BLOCK_STARS, block_arrays, block_ranges, toy_block
from lamost2csst.io.spectra import precision_attrs

C_KMS = 299_792.458


@pytest.fixture(scope="module")
def cat():
    return toy_catalogue(300, seed=0)


def test_same_seed_same_data_other_seed_other_data():
    a, b = toy_catalogue(40, seed=3), toy_catalogue(40, seed=3)
    xr.testing.assert_identical(a, b)
    c = toy_catalogue(40, seed=4)
    assert not np.array_equal(a.flux.values, c.flux.values, equal_nan=True)
    assert not np.array_equal(a.teff.values, c.teff.values)


def test_any_prefix_equals_the_smaller_catalogue_across_blocks():
    big = toy_catalogue(BLOCK_STARS + 60, seed=1)
    for k in (1, 37, BLOCK_STARS, BLOCK_STARS + 1, BLOCK_STARS + 60):
        small = toy_catalogue(k, seed=1)
        head = big.isel(star=slice(0, k))
        xr.testing.assert_identical(head.drop_attrs(), small.drop_attrs())


def test_lazy_equals_eager_and_is_chunked_by_block():
    lazy = toy_catalogue(BLOCK_STARS + 10, seed=2, lazy=True)
    assert lazy.flux.chunks[0] == (BLOCK_STARS, 10)
    xr.testing.assert_identical(lazy.compute(), toy_catalogue(BLOCK_STARS + 10, seed=2))


def test_block_equals_catalogue_slice():
    part = toy_block(1, 5, seed=0)
    cat = toy_catalogue(BLOCK_STARS + 5, seed=0).isel(star=slice(BLOCK_STARS, None))
    np.testing.assert_array_equal(part["flux"], cat.flux.values)
    np.testing.assert_array_equal(part["z"], cat.z.values)


def test_schema_and_metadata(cat, tmp_path):
    validate_spectra(cat)
    assert cat.sizes == {"star": 300, "wave": LAMOST_WAVE.size}
    np.testing.assert_array_equal(cat.wave.values, LAMOST_WAVE)
    assert cat.attrs["frame"] == "observed"
    assert cat.attrs["flux_unit"] == "relative"
    assert cat.attrs["resolution"] == 1800.0
    assert "STAND-IN" in cat.attrs["source"]
    assert (cat.flux.dtype, cat.ivar.dtype, cat.mask.dtype) == (np.float32, np.float32, np.bool_)
    np.testing.assert_array_equal(cat.obsid.values, np.arange(1, 301))
    assert np.all((cat.teff >= 5000) & (cat.teff <= 9750))
    assert np.all((cat.snr_g >= 10) & (cat.snr_g <= 150))
    assert np.all((cat.ra >= 150) & (cat.ra <= 160)) and np.all((cat.dec >= 20) & (cat.dec <= 30))
    assert 20 / C_KMS < np.std(cat.z.values) < 80 / C_KMS
    write_spectra(cat, tmp_path / "toy.zarr", chunk_stars=128, precision=None)  # pixels bit for bit
    lossless = cat.assign_attrs(precision_attrs(None))
    xr.testing.assert_identical(open_spectra(tmp_path / "toy.zarr").compute(), lossless)


def test_masked_pixels_have_ivar_zero_and_nan_flux(cat):
    mask, flux, ivar = cat.mask.values, cat.flux.values, cat.ivar.values
    np.testing.assert_array_equal(np.isnan(flux), mask)
    assert np.all(ivar[mask] == 0)
    assert np.all(ivar[~mask] > 0) and np.all(np.isfinite(flux[~mask]))
    assert 0.002 < mask.mean() < 0.006


def test_some_stars_have_a_bad_block_of_20_pixels():
    mask = toy_catalogue(BLOCK_STARS, seed=0).mask.values
    # a run of 20 masked pixels: the 20-px moving sum reaches 20
    runs = np.lib.stride_tricks.sliding_window_view(mask, 20, axis=1).all(axis=-1).any(axis=1)
    assert 5 <= runs.sum() <= 50  # ~1 % of 2000 stars


def test_noise_follows_eq1(cat):
    # ivar = (snr / F)^2 and F' = F (1 + r / snr): F' sqrt(ivar) = snr + r, r ~ N(0, 1)
    ratio = cat.flux.values * np.sqrt(cat.ivar.values)
    np.testing.assert_allclose(np.nanmedian(ratio, axis=1), cat.snr_g.values, atol=0.15)
    np.testing.assert_allclose(np.nanstd(ratio - cat.snr_g.values[:, None], axis=1), 1.0, atol=0.1)


def test_halpha_minimum_sits_at_the_doppler_shifted_wavelength(cat):
    ln_wave, step = np.log(LAMOST_WAVE), np.log(10.0) * 1e-4
    best = np.argsort(cat.snr_g.values)[::-1][:10]
    for i in best:
        z, flux = cat.z.values[i], cat.flux.values[i]
        expected = np.log(6564.61 * (1 + z))
        near = np.flatnonzero(np.abs(ln_wave - expected) < 4e-4)
        j = near[np.nanargmin(flux[near])]
        assert abs(ln_wave[j] - expected) < step  # within a pixel
        k = np.arange(j - 2, j + 3)  # sub-pixel minimum from a parabola through 5 pixels
        c = np.polyfit(ln_wave[k] - ln_wave[j], flux[k], 2)
        minimum = ln_wave[j] - c[1] / (2 * c[0])
        assert abs(minimum - expected) < 0.25 * step
        if abs(z) * C_KMS > 30:  # the opposite shift is excluded
            assert abs(minimum - np.log(6564.61 * (1 - z))) > 0.5 * step


def _kernel(block, n_star, shared, seed, calls=None):
    if calls is not None:
        calls.append(block)
    first = block * 7 + np.arange(n_star)
    return {"star": (first + seed).astype(np.int64), "pair": np.stack([first, -first], axis=1) * shared}


def test_block_ranges_cover_the_stars_in_blocks():
    assert block_ranges(5, 2) == [(0, 0, 2), (1, 2, 4), (2, 4, 5)]
    assert block_ranges(4, 2) == [(0, 0, 2), (1, 2, 4)]
    assert block_ranges(1, 2000) == [(0, 0, 1)]


def test_block_arrays_lazy_equals_eager_with_one_kernel_call_per_block():
    import dask

    fields = {"star": (np.int64, ()), "pair": (np.float64, (2,))}
    eager = block_arrays(_kernel, 17, block_stars=7, fields=fields, args=(0.5, 100))
    # by hand: block b holds stars b*7 .. b*7+6 of which the last block has only 3
    np.testing.assert_array_equal(eager["star"], 100 + np.array([*range(7), *range(7, 14), *range(14, 17)]))
    np.testing.assert_array_equal(eager["pair"][:, 1], -0.5 * np.arange(17))
    calls = []
    lazy = block_arrays(
        _kernel, 17, block_stars=7, fields=fields, lazy=True, args=(dask.delayed(0.5), 100, calls)
    )
    assert lazy["star"].chunks == ((7, 7, 3),) and lazy["pair"].chunks == ((7, 7, 3), (2,))
    assert lazy["pair"].dtype == np.float64
    assert calls == []  # nothing computed yet
    star, pair = dask.compute(lazy["star"], lazy["pair"], scheduler="sync")
    assert sorted(calls) == [0, 1, 2]  # both fields from one kernel call per block
    np.testing.assert_array_equal(star, eager["star"])
    np.testing.assert_array_equal(pair, eager["pair"])


def test_lazy_catalogue_is_lazy_in_every_star_variable():
    """Coordinates too: the graph holds no per-star data (tests/parallel/test_demo_catalogues.py)."""
    lazy = toy_catalogue(BLOCK_STARS + 10, seed=2, lazy=True)
    star_variables = [name for name, var in lazy.variables.items() if "star" in var.dims]
    assert sorted(star_variables) == ["dec", "flux", "ivar", "mask", "obsid", "ra", "snr_g", "teff", "z"]
    for name in star_variables:
        assert lazy[name].chunks[0] == (BLOCK_STARS, 10), name
    # the values, dtypes and attributes: test_lazy_equals_eager_and_is_chunked_by_block
