"""The spectra catalogue schema: construction, validation, Zarr v3 round trips."""

import numpy as np
import pytest
import xarray as xr
import zarr

from lamost2csst.core import LAMOST_WAVE
from lamost2csst.core.precision import round_spectra
from lamost2csst.io.spectra import (
    DEFAULT_PRECISION,
    SCHEMA,
    PixelPrecision,
    create_spectra_store,
    open_spectra,
    precision_attrs,
    spectra_dataset,
    store_precision,
    validate_spectra,
    write_spectra,
    write_spectra_region,
)


def make(n=10, seed=0, **extra):
    rng = np.random.default_rng(seed)
    flux = rng.uniform(1, 2, (n, LAMOST_WAVE.size)).astype(np.float32)
    ivar = rng.uniform(10, 20, flux.shape).astype(np.float32)
    ivar[:, 100] = 0.0
    flux[:, 100] = np.nan
    return spectra_dataset(
        wave=LAMOST_WAVE,
        flux=flux,
        ivar=ivar,
        obsid=np.arange(1, n + 1),
        ra=rng.uniform(0, 360, n),
        dec=rng.uniform(-30, 60, n),
        z=rng.normal(0, 1e-4, n),
        resolution=1800.0,
        snr_g=rng.uniform(10, 100, n),
        **extra,
    )


def test_dataset_layout_and_default_mask():
    ds = make(4)
    assert ds.attrs["schema"] == SCHEMA
    assert ds["flux"].dims == ("star", "wave") and ds["flux"].dtype == np.float32
    assert ds["mask"].dtype == bool
    assert ds["wave"].attrs == {"units": "Angstrom", "medium": "vacuum"}
    assert ds["ra"].attrs["units"] == "deg"
    # default mask: ivar == 0 or non-finite flux, nothing else
    expected = np.zeros((4, LAMOST_WAVE.size), bool)
    expected[:, 100] = True
    np.testing.assert_array_equal(ds["mask"].values, expected)


def test_zarr_round_trip_is_identical_and_chunked_by_star(tmp_path):
    ds = make(10)
    write_spectra(ds, tmp_path / "c.zarr", chunk_stars=4, precision=None)  # pixels bit for bit
    back = open_spectra(tmp_path / "c.zarr")
    assert back["flux"].chunks == ((4, 4, 2), (LAMOST_WAVE.size,))
    lossless = ds.assign_attrs(pixel_encoding=back.attrs["pixel_encoding"])
    assert "lossless" in back.attrs["pixel_encoding"] and store_precision(tmp_path / "c.zarr") is None
    xr.testing.assert_identical(back.load(), lossless)
    # a Zarr v3 store, readable by plain xarray, compressed with Blosc
    group = zarr.open_group(str(tmp_path / "c.zarr"), mode="r")
    assert group.metadata.zarr_format == 3
    codecs = [type(c).__name__ for c in group["flux"].metadata.codecs]
    assert "BloscCodec" in codecs
    xr.testing.assert_identical(xr.open_zarr(tmp_path / "c.zarr", consolidated=False).load(), lossless)


def bits(x):
    return np.asarray(x, dtype=np.float32).view(np.uint32)


@pytest.mark.parametrize("lazy", [False, True])
def test_default_write_stores_the_rounding_kernels_output(tmp_path, lazy):
    ds = make(10)
    flux, ivar = round_spectra(
        ds["flux"].values, ivar=ds["ivar"].values, mask=ds["mask"].values, flux_fraction=1e-5, ivar_bits=7
    )
    write_spectra(ds.chunk({"star": 3}) if lazy else ds, tmp_path / "c.zarr", chunk_stars=4)
    back = open_spectra(tmp_path / "c.zarr").load()
    np.testing.assert_array_equal(bits(back["flux"].values), bits(flux))  # NaN payloads too
    np.testing.assert_array_equal(bits(back["ivar"].values), bits(ivar))
    assert not np.array_equal(back["flux"].values, ds["flux"].values, equal_nan=True)  # it did round
    assert back.attrs["pixel_flux_fraction"] == 1e-5 and back.attrs["pixel_ivar_bits"] == 7
    assert store_precision(tmp_path / "c.zarr") == DEFAULT_PRECISION == PixelPrecision(1e-5, 7)
    group = zarr.open_group(str(tmp_path / "c.zarr"), mode="r")
    assert group["flux"].metadata.codecs[-1].shuffle.value == "bitshuffle"  # the rounded flux
    assert group["ivar"].metadata.codecs[-1].shuffle.value == "shuffle"
    rest = ["flux", "ivar"]  # everything else as given, attrs of the coordinates and variables too
    expected = ds.drop_vars(rest).assign_attrs(precision_attrs(DEFAULT_PRECISION))
    xr.testing.assert_identical(back.drop_vars(rest), expected)
    assert back["flux"].attrs == ds["flux"].attrs and back["ivar"].attrs == ds["ivar"].attrs
    coarse = PixelPrecision(flux_fraction=0.3, ivar_bits=2)
    write_spectra(ds, tmp_path / "coarse.zarr", precision=coarse)
    flux, ivar = round_spectra(
        ds["flux"].values, ivar=ds["ivar"].values, mask=ds["mask"].values, flux_fraction=0.3, ivar_bits=2
    )
    back = open_spectra(tmp_path / "coarse.zarr")
    np.testing.assert_array_equal(bits(back["flux"].values), bits(flux))
    np.testing.assert_array_equal(bits(back["ivar"].values), bits(ivar))
    assert store_precision(tmp_path / "coarse.zarr") == coarse


def test_write_refuses_to_overwrite(tmp_path):
    ds = make(3)
    write_spectra(ds, tmp_path / "c.zarr")
    with pytest.raises(FileExistsError):
        write_spectra(ds, tmp_path / "c.zarr")
    write_spectra(make(3, seed=1), tmp_path / "c.zarr", mode="w")
    assert not np.array_equal(open_spectra(tmp_path / "c.zarr")["ra"].values, ds["ra"].values)


def test_template_then_region_writes_equal_a_whole_write(tmp_path):
    ds = make(10)
    create_spectra_store(ds, tmp_path / "t.zarr", chunk_stars=4)
    # only metadata before the regions arrive: the right sizes, but not yet a valid catalogue
    empty = xr.open_zarr(tmp_path / "t.zarr", consolidated=False)
    assert dict(empty.sizes) == {"star": 10, "wave": LAMOST_WAVE.size}
    with pytest.raises(ValueError, match="duplicated"):
        open_spectra(tmp_path / "t.zarr")
    for start in (8, 0, 4):  # any order, one writer per chunk
        write_spectra_region(ds.isel(star=slice(start, start + 4)), tmp_path / "t.zarr", start=start)
    write_spectra(ds, tmp_path / "whole.zarr", chunk_stars=4)
    xr.testing.assert_identical(
        open_spectra(tmp_path / "t.zarr").load(), open_spectra(tmp_path / "whole.zarr").load()
    )
    # a template made lossless takes its regions bit for bit
    create_spectra_store(ds, tmp_path / "l.zarr", chunk_stars=4, precision=None)
    for start in (0, 4, 8):
        write_spectra_region(ds.isel(star=slice(start, start + 4)), tmp_path / "l.zarr", start=start)
    lossless = open_spectra(tmp_path / "l.zarr").load()
    xr.testing.assert_identical(lossless, ds.assign_attrs(pixel_encoding=lossless.attrs["pixel_encoding"]))


@pytest.mark.parametrize(
    "corrupt, message",
    [
        (lambda ds: ds.assign_attrs(schema="other"), "schema"),
        (lambda ds: ds.drop_vars("ivar"), "missing data variable 'ivar'"),
        (lambda ds: ds.drop_vars("z"), "missing per-star coordinate 'z'"),
        (lambda ds: ds.assign(flux=ds["flux"].astype(np.float64)), "flux has dtype float64"),
        (lambda ds: ds.assign_attrs(medium="air"), "convert wavelengths to vacuum"),
        (lambda ds: ds.assign_attrs(frame="sideways"), "frame"),
        (lambda ds: ds.assign_attrs(resolution=-1.0), "resolution"),
        (lambda ds: ds.assign_coords(obsid=("star", np.array([1, 1, 2, 3]))), "1 duplicated"),
        (lambda ds: ds.assign_coords(ra=("star", np.array([0.0, np.nan, 1.0, 2.0]))), "ra has non-finite"),
        (lambda ds: ds.assign_coords(wave=ds["wave"].values[::-1]), "strictly increasing"),
    ],
)
def test_validation_names_the_problem(corrupt, message):
    with pytest.raises(ValueError, match=message):
        validate_spectra(corrupt(make(4)))


def test_open_refuses_a_store_of_another_schema(tmp_path):
    xr.Dataset({"x": ("a", np.arange(3))}).to_zarr(tmp_path / "x.zarr", zarr_format=3, consolidated=False)
    with pytest.raises(ValueError, match="not a lamost2csst spectra catalogue"):
        open_spectra(tmp_path / "x.zarr")


def test_open_missing_store_says_so(tmp_path):
    with pytest.raises(ValueError, match="cannot open"):
        open_spectra(tmp_path / "nothing.zarr")


def test_open_catalogue_once_without_dask_and_its_chunk_size(tmp_path):
    from lamost2csst.io.spectra import open_catalogue, star_chunk

    write_spectra(make(10), tmp_path / "c.zarr", chunk_stars=4)
    ds = open_catalogue(tmp_path / "c.zarr")
    assert ds["flux"].chunks is None  # no dask graph: the job's tasks read their own rows
    assert star_chunk(ds) == 4
    write_spectra(make(3), tmp_path / "small.zarr", chunk_stars=4)
    assert star_chunk(open_catalogue(tmp_path / "small.zarr")) == 3  # at most the star count


def test_open_catalogue_says_what_is_wrong(tmp_path):
    from lamost2csst.errors import InputError
    from lamost2csst.io.spectra import open_catalogue, require_catalogue

    with pytest.raises(InputError, match="input catalogue .*nothing.zarr does not exist"):
        require_catalogue(tmp_path / "nothing.zarr")
    with pytest.raises(InputError, match="does not exist"):
        open_catalogue(tmp_path / "nothing.zarr")
    xr.Dataset({"x": ("a", np.arange(3))}).to_zarr(tmp_path / "x.zarr", zarr_format=3, consolidated=False)
    assert require_catalogue(tmp_path / "x.zarr") == str(tmp_path / "x.zarr")  # exists: nothing opened
    with pytest.raises(InputError, match="not a lamost2csst spectra catalogue"):
        open_catalogue(tmp_path / "x.zarr")
    write_spectra(make(3).isel(star=slice(0, 0)), tmp_path / "empty.zarr")
    with pytest.raises(InputError, match="holds no stars"):
        open_catalogue(tmp_path / "empty.zarr")
