"""LAMOST LRS reader: the real DR6 file, both layouts, the common grid, masks, refusals."""

import numpy as np
import pytest
import xarray as xr
from astropy.io import fits
from reader_files import REAL_LAMOST, lamost_arrays, lamost_header, write_lamost

from lamost2csst.core import LAMOST_WAVE
from lamost2csst.io import ReaderError, open_spectra, read_lamost, validate_spectra, write_spectra
from lamost2csst.io.spectra import round_pixels

needs_real = pytest.mark.skipif(not REAL_LAMOST.exists(), reason=f"{REAL_LAMOST} not present")
PROVENANCE = ("file",)


def without_provenance(ds):
    ds = ds.drop_vars(PROVENANCE)
    ds.attrs = {k: v for k, v in ds.attrs.items() if k not in ("format", "source")}
    return ds


@needs_real
def test_real_dr6_file():
    ds = read_lamost(REAL_LAMOST)
    validate_spectra(ds)
    assert ds.sizes == {"star": 1, "wave": 3909}
    assert int(ds.obsid[0]) == 359910161
    assert float(ds.z[0]) == pytest.approx(-0.00017162, abs=1e-12)
    assert float(ds.z_err[0]) == pytest.approx(2.725e-5)
    assert float(ds.snr_g[0]) == pytest.approx(87.63)
    assert float(ds.snr_u[0]) == pytest.approx(25.39) and float(ds.snr_z[0]) == pytest.approx(119.56)
    assert float(ds.ra[0]) == pytest.approx(292.05872) and float(ds.dec[0]) == pytest.approx(43.925228)
    assert (
        ds["class"].item() == "STAR" and ds.subclass.item() == "F5" and ds.data_release.item() == "LAMOST DR6"
    )
    assert (
        ds.attrs["medium"] == "vacuum"
        and ds.attrs["frame"] == "observed"
        and ds.attrs["resolution"] == 1800.0
    )
    assert "image layout" in ds.attrs["format"] and ds.file.item() == str(REAL_LAMOST)
    np.testing.assert_array_equal(ds.wave.values, LAMOST_WAVE)
    rows = fits.getdata(REAL_LAMOST)
    np.testing.assert_allclose(ds.wave.values, rows[2], rtol=5e-7)  # the file's own float32 wavelengths
    np.testing.assert_array_equal(ds.flux.values[0], rows[0])
    np.testing.assert_array_equal(ds.ivar.values[0], rows[1])
    assert not ds.mask.values.any()  # ivar > 0 and ANDMASK == 0 everywhere in this file
    assert np.isnan(ds.teff.values).all() and np.isnan(ds.alpha.values).all()


@needs_real
def test_table_layout_of_the_real_arrays_gives_the_same_dataset(tmp_path):
    with fits.open(REAL_LAMOST) as hdul:
        rows, header = hdul[0].data.copy(), hdul[0].header.copy()
    for key in ("NAXIS1", "NAXIS2", "EXTNAME"):
        header.remove(key, ignore_missing=True)
    table = write_lamost(tmp_path / "spec-table.fits", rows, header, layout="table")
    image = read_lamost(REAL_LAMOST)
    from_table = read_lamost(table)
    assert "binary-table layout" in from_table.attrs["format"]
    xr.testing.assert_identical(without_provenance(image), without_provenance(from_table))


def test_both_layouts_gzipped_or_not_read_alike(tmp_path):
    rows = lamost_arrays()
    rows[3, 10] = 4  # ANDMASK bit
    files = [
        write_lamost(tmp_path / "a.fits", rows, layout="image"),
        write_lamost(tmp_path / "b.fits.gz", rows, layout="table", gz=True),
    ]
    one, two = (read_lamost(f) for f in files)
    xr.testing.assert_identical(without_provenance(one), without_provenance(two))
    assert one.mask.values[0, 10] and one.mask.values.sum() == 1


def test_many_files_on_the_common_grid_by_whole_pixel_offsets(tmp_path):
    n = LAMOST_WAVE.size
    plus3 = lamost_arrays(coeff0=3.5682 + 3e-4, seed=1)
    minus2 = lamost_arrays(n=n - 10, coeff0=3.5682 - 2e-4, seed=2)
    files = [
        write_lamost(tmp_path / "zero.fits", lamost_arrays(seed=0), lamost_header(OBSID=1)),
        write_lamost(
            tmp_path / "plus3.fits", plus3, lamost_header(coeff0=3.5682 + 3e-4, OBSID=2), layout="table"
        ),
        write_lamost(
            tmp_path / "minus2.fits.gz", minus2, lamost_header(coeff0=3.5682 - 2e-4, OBSID=3), gz=True
        ),
    ]
    ds = read_lamost(files)
    assert ds.sizes == {"star": 3, "wave": n}
    assert list(ds.obsid.values) == [1, 2, 3]
    assert "image layout" in ds.attrs["format"] and "binary-table layout" in ds.attrs["format"]
    flux, ivar, mask = ds.flux.values, ds.ivar.values, ds.mask.values
    # +3 px: grid pixels 0..2 padded, file pixel i on grid pixel i + 3, its last 3 pixels dropped
    assert mask[1, :3].all() and np.isnan(flux[1, :3]).all() and (ivar[1, :3] == 0).all()
    np.testing.assert_array_equal(flux[1, 3:], plus3[0, : n - 3])
    assert not mask[1, 3:].any()
    # -2 px and 10 px shorter: file pixels 0, 1 dropped, grid ends after n - 12 px of data
    np.testing.assert_array_equal(flux[2, : n - 12], minus2[0, 2:])
    assert mask[2, n - 12 :].all() and not mask[2, : n - 12].any()
    np.testing.assert_allclose(ds.wave.values[3:], plus3[2, : n - 3], rtol=5e-7)


def test_grid_offsets_inferred_from_wavelengths_without_coeff_keys(tmp_path):
    rows = lamost_arrays(coeff0=3.5682 + 5e-4)
    f = write_lamost(tmp_path / "nocoeff.fits", rows, lamost_header(drop=("COEFF0", "COEFF1")))
    ds = read_lamost(f)
    np.testing.assert_array_equal(ds.flux.values[0, 5:], rows[0, :-5])


@pytest.mark.parametrize(
    ("coeff0", "coeff1", "words"),
    [
        (3.5682 + 0.5e-4, 1e-4, "not a whole number of pixels"),
        (3.5682 + 1e-9, 1e-4, "not a whole number of pixels"),  # 1e-5 px: beyond the 1e-6 px tolerance
        (3.5682, 1.0001e-4, "COEFF1"),
    ],
)
def test_files_off_the_common_grid_are_refused(tmp_path, coeff0, coeff1, words):
    rows = lamost_arrays(coeff0=coeff0, coeff1=coeff1)
    f = write_lamost(tmp_path / "off.fits", rows, lamost_header(coeff0=coeff0, coeff1=coeff1))
    with pytest.raises(ReaderError, match=words) as err:
        read_lamost(f)
    assert str(f) in str(err.value)


def test_wavelength_row_must_agree_with_the_header_grid(tmp_path):
    rows = lamost_arrays(coeff0=3.5683)  # data one pixel redder than COEFF0 says
    f = write_lamost(tmp_path / "disagree.fits", rows, lamost_header(coeff0=3.5682))
    with pytest.raises(ReaderError, match="disagrees with COEFF0"):
        read_lamost(f)


def test_masks_and_bad_values(tmp_path):
    rows = lamost_arrays()
    rows[3, 5] = 1  # ANDMASK
    rows[4, 6] = 8  # ORMASK only: not masked
    rows[1, 7] = 0.0  # ivar 0
    rows[1, 8] = -1.0  # negative ivar
    rows[0, 9] = np.nan  # flux NaN
    rows[1, 11] = np.inf  # ivar inf
    rows[3, 12] = np.nan  # ANDMASK not a number
    ds = read_lamost(write_lamost(tmp_path / "m.fits", rows), bitmasks=True)
    assert sorted(np.flatnonzero(ds.mask.values[0])) == [5, 7, 8, 9, 11, 12]
    assert ds.andmask.values[0, 12] == -1
    assert ds.ivar.values[0, 8] == 0 and ds.ivar.values[0, 11] == 0
    assert ds.ivar.values[0, 5] == rows[1, 5]  # masked by ANDMASK, ivar kept
    assert ds.andmask.values[0, 5] == 1 and ds.ormask.values[0, 6] == 8


def test_old_sn_keys_and_sentinels(tmp_path):
    header = lamost_header(drop=("SNRU", "SNRG", "SNRR", "SNRI", "SNRZ"), SN_G=12.5, SN_R=-9999.0, Z=-9999.0)
    ds = read_lamost(write_lamost(tmp_path / "old.fits", header=header))
    assert float(ds.snr_g[0]) == 12.5
    assert np.isnan(ds.snr_r.values[0]) and np.isnan(ds.snr_u.values[0]) and np.isnan(ds.z.values[0])


@pytest.mark.parametrize("key", ["Z", "OBSID", "RA", "DEC"])
def test_missing_required_header_key(tmp_path, key):
    f = write_lamost(tmp_path / f"no{key}.fits", header=lamost_header(drop=(key,)))
    with pytest.raises(ReaderError, match=f"missing header key {key}") as err:
        read_lamost(f)
    assert err.value.path == str(f)


def test_air_wavelength_file_refused(tmp_path):
    with pytest.raises(ReaderError, match="VACUUM = F"):
        read_lamost(write_lamost(tmp_path / "air.fits", header=lamost_header(VACUUM=False)))


def test_non_numeric_header_value(tmp_path):
    f = write_lamost(tmp_path / "z.fits", header=lamost_header(Z="abc"))
    with pytest.raises(ReaderError, match="Z has non-numeric value"):
        read_lamost(f)


def test_wrong_layouts(tmp_path):
    four = write_lamost(tmp_path / "four.fits", lamost_arrays()[:4])
    with pytest.raises(ReaderError, match=r"shape \(4, 3909\).*\(5, N\)"):
        read_lamost(four)
    rows = lamost_arrays()
    names = ("X", "IVAR", "WAVELENGTH", "ANDMASK", "ORMASK")
    cols = [fits.Column(name=n, format="3909E", array=rows[i][None]) for i, n in enumerate(names)]
    noflux = tmp_path / "noflux.fits"
    fits.HDUList([fits.PrimaryHDU(header=lamost_header()), fits.BinTableHDU.from_columns(cols)]).writeto(
        noflux
    )
    with pytest.raises(ReaderError, match="lacks column.*FLUX") as err:
        read_lamost(noflux)
    assert str(noflux) in str(err.value)
    empty = tmp_path / "nodata.fits"
    fits.HDUList([fits.PrimaryHDU(header=lamost_header())]).writeto(empty)
    with pytest.raises(ReaderError, match="no spectrum"):
        read_lamost(empty)
    image_ext = tmp_path / "imageext.fits"
    fits.HDUList([fits.PrimaryHDU(header=lamost_header()), fits.ImageHDU(rows)]).writeto(image_ext)
    with pytest.raises(ReaderError, match="binary table in HDU 1"):
        read_lamost(image_ext)


def test_non_monotonic_wavelengths(tmp_path):
    rows = lamost_arrays()
    rows[2, [100, 101]] = rows[2, [101, 100]]
    with pytest.raises(ReaderError, match="non-monotonic wavelengths.*pixel 100"):
        read_lamost(write_lamost(tmp_path / "swap.fits", rows))


def test_duplicate_obsid_refused(tmp_path):
    a = write_lamost(tmp_path / "a.fits")
    b = write_lamost(tmp_path / "b.fits")
    with pytest.raises(ReaderError, match="OBSID 123456789 also in"):
        read_lamost([a, b])


def test_result_round_trips_through_zarr(tmp_path):
    files = [
        write_lamost(tmp_path / "a.fits"),
        write_lamost(tmp_path / "b.fits", header=lamost_header(OBSID=7)),
    ]
    ds = read_lamost(files)
    write_spectra(ds, tmp_path / "cat.zarr")
    back = open_spectra(tmp_path / "cat.zarr").compute()
    np.testing.assert_array_equal(back.flux.values, round_pixels(ds).flux.values)  # as the writer stores it
    assert list(back["class"].values) == ["STAR", "STAR"] and back.attrs["format"] == ds.attrs["format"]
