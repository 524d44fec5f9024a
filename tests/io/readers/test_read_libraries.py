"""MILES, STELIB, BOSZ and NGSL readers on small files written in their layouts."""

import math

import numpy as np
import pytest
import xarray as xr
from astropy.io import fits
from reader_files import (
    bosz_arrays,
    write_bosz_ascii,
    write_bosz_fits,
    write_miles,
    write_ngsl,
    write_stelib,
)

from lamost2csst.core import air_to_vacuum
from lamost2csst.io import open_spectra, validate_spectra, write_spectra
from lamost2csst.io.readers import (
    STELIB_WAVE,
    ReaderError,
    parse_bosz_name,
    read_bosz,
    read_miles,
    read_miles_params,
    read_ngsl,
    read_stelib,
)
from lamost2csst.io.readers.miles import MASK_NO_DATA, MASK_NONFINITE, MASK_NONPOSITIVE

BOSZ_NAME = "amp00cp00op00t5750g45v20modrt0b2000rs"

# ------------------------------------------------------------------------------ MILES


def test_miles_air_to_vacuum_and_layout(tmp_path):
    flux = np.linspace(0.5, 1.5, 4300)
    flux[[0, 1]] = [0.0, np.nan]
    ds = read_miles(write_miles(tmp_path / "MILES_res2.50_star_m0042V.fits", flux=flux))
    validate_spectra(ds)
    air = 3540.5 + 0.9 * np.arange(4300)
    np.testing.assert_allclose(ds.wave.values, air_to_vacuum(air), rtol=0, atol=1e-9)
    assert ds.wave.values[0] == pytest.approx(3541.5118, abs=1e-3)  # +1.0 A at 3540 A
    assert ds.attrs["original_medium"] == "air" and "air_to_vacuum" in ds.attrs["wave_conversion"]
    assert ds.attrs["medium"] == "vacuum" and ds.attrs["frame"] == "rest" and ds.attrs["fwhm_angstrom"] == 2.5
    assert ds.attrs["resolution"] == pytest.approx(math.sqrt(ds.wave.values[0] * ds.wave.values[-1]) / 2.5)
    assert int(ds.obsid[0]) == 42 and ds.name.item() == "MILES_res2.50_star_m0042V"
    assert sorted(np.flatnonzero(ds.mask.values[0])) == [0, 1]
    assert (ds.ivar.values == 0).all() and "ivar_note" in ds.attrs
    assert np.isnan(ds.teff.values).all()


def test_miles_params_db(tmp_path):
    db = tmp_path / "MILES_params.db"
    db.write_text(
        "#MILES  Teff  log g   [Fe/H]\n#s????\n  0001  5000   4.50    -1.00\n  022.  7950   3.95     0.35\n"
        "  0407 99999   9999     9999\n  0078 13800   2.44     9999\n"
    )
    params = read_miles_params(db)
    assert params[1] == (5000.0, 4.5, -1.0) and params[221] == (7950.0, 3.95, 0.35)
    assert all(math.isnan(v) for v in params[407]) and math.isnan(params[78][2]) and params[78][0] == 13800
    files = [write_miles(tmp_path / f"MILES_res2.50_star_m{n:04d}V.fits", seed=n) for n in (1, 221, 9)]
    ds = read_miles(files, params=params)
    assert list(ds.obsid.values) == [1, 221, 9]
    np.testing.assert_array_equal(ds.teff.values, [5000.0, 7950.0, np.nan])
    np.testing.assert_array_equal(ds.feh.values, [-1.0, 0.35, np.nan])
    bad = tmp_path / "bad.db"
    bad.write_text("0001 5000 4.5\n")
    with pytest.raises(ReaderError, match="3 columns, expected 4"):
        read_miles_params(bad)


def test_miles_refusals(tmp_path):
    with pytest.raises(ReaderError, match=r"non-monotonic wavelengths: CDELT1 = -0.9"):
        read_miles(write_miles(tmp_path / "neg.fits", cdelt=-0.9))
    two_d = tmp_path / "2d.fits"
    fits.PrimaryHDU(np.ones((3, 100))).writeto(two_d)
    with pytest.raises(ReaderError, match=r"shape \(3, 100\).*1-D"):
        read_miles(two_d)
    nowcs = tmp_path / "nowcs.fits"
    fits.PrimaryHDU(np.ones(100)).writeto(nowcs)
    with pytest.raises(ReaderError, match="missing header key CRVAL1"):
        read_miles(nowcs)
    a = write_miles(tmp_path / "MILES_res2.50_star_m0001V.fits")
    b = write_miles(tmp_path / "MILES_res2.50_star_m0002V.fits", crval=3541.0)
    with pytest.raises(ReaderError, match="differs from that of.*pass wave=") as err:
        read_miles([a, b])
    assert err.value.path == str(b)


def test_miles_resampled_on_request(tmp_path):
    a = write_miles(tmp_path / "MILES_res2.50_star_m0001V.fits", flux=np.ones(4300))
    b = write_miles(tmp_path / "MILES_res2.50_star_m0002V.fits", crval=3541.0, flux=np.full(4300, 2.0))
    grid = np.arange(3600.0, 7300.0, 2.0)
    ds = read_miles([a, b], wave=grid)
    assert ds.sizes == {"star": 2, "wave": grid.size} and "resampled" in ds.attrs
    np.testing.assert_allclose(ds.flux.values[0], 1.0, rtol=1e-6)
    np.testing.assert_allclose(ds.flux.values[1], 2.0, rtol=1e-6)
    assert not ds.mask.values.any()


def test_miles_mask_reason_says_why_a_pixel_is_masked(tmp_path):
    flux = np.linspace(0.5, 1.5, 4300)
    flux[[10, 20, 30]] = [np.nan, 0.0, -2.0]
    ds = read_miles(write_miles(tmp_path / "MILES_res2.50_star_m0042V.fits", flux=flux))
    code = ds.mask_reason.values[0]
    assert ds.mask_reason.dtype == np.uint8 and ds.mask_reason.attrs["flag_masks"] == [1, 2, 4]
    assert {int(i): int(code[i]) for i in np.flatnonzero(code)} == {
        10: MASK_NONFINITE,
        20: MASK_NONPOSITIVE,
        30: MASK_NONPOSITIVE,
    }
    np.testing.assert_array_equal(ds.mask.values[0], code != 0)
    assert np.isnan(ds.flux.values[0, 10]) and ds.flux.values[0, 30] == -2.0  # the file's values, masked
    assert ds.attrs["unreadable_files"] == []


def test_miles_file_on_another_grid_is_skipped_on_request(tmp_path):
    files = [write_miles(tmp_path / f"MILES_res2.50_star_m{n:04d}V.fits", seed=n) for n in (1, 2, 3)]
    odd = write_miles(tmp_path / "MILES_res2.50_star_m0004V.fits", crval=3541.0)
    wide = write_miles(tmp_path / "MILES_res2.50_star_m0005V.fits", fwhm=3.0)
    ds = read_miles([*files, odd, wide], on_error="skip")
    assert list(ds.obsid.values) == [1, 2, 3]
    skipped = ds.attrs["unreadable_files"]
    assert skipped[0].startswith(f"{wide}: FWHM 3.0 A differs") and skipped[1].startswith(f"{odd}: its wave")
    with pytest.raises(ReaderError, match="FWHM 3.0 A differs"):
        read_miles([*files, wide])
    with pytest.raises(ReaderError, match="no grid is shared by most"):  # no majority: resample
        read_miles([files[0], odd], on_error="skip")


# ----------------------------------------------------------------------------- STELIB


def test_stelib_header_values_and_unknowns(tmp_path):
    f = write_stelib(tmp_path / "STELIB_v3.2_HD000001.fits", TEFF="-       ", LOG_G="-", FE_H=-0.5)
    ds = read_stelib(f)
    validate_spectra(ds)
    assert np.isnan(ds.teff.values[0]) and np.isnan(ds.logg.values[0]) and float(ds.feh[0]) == -0.5
    assert ds.spectype.item() == "G2V" and ds.name.item() == "HD000001" and float(ds.radvel[0]) == 12.5
    assert float(ds.mag_v[0]) == pytest.approx(7.0) and np.isnan(ds.mag_r.values[0])  # R = -99
    assert ds.attrs["flux_unit"] == "erg /s /cm2 /angstroms" and ds.attrs["original_medium"] == "air"
    air = 3199.78 + 0.99993 * np.arange(6700)
    np.testing.assert_allclose(ds.wave.values, air_to_vacuum(air), atol=1e-9)
    assert ds.mask.values[0, :50].all() and not ds.mask.values[0, 50:].any()  # zero flux = no data
    zeros = read_stelib(write_stelib(tmp_path / "STELIB_v3.2_Z.fits", U=0.0, B=0.0, V=0.0, R=0.0))
    assert all(np.isnan(zeros[k].values).all() for k in ("mag_u", "mag_b", "mag_v", "mag_r"))
    with pytest.raises(ReaderError, match="TEFF has non-numeric value 'hot'"):
        read_stelib(write_stelib(tmp_path / "STELIB_v3.2_bad.fits", TEFF="hot"))


def test_stelib_mask_reason_survives_the_resampling(tmp_path):
    """STELIB's zeros (no data) and NaNs keep their reason on the common grid; beyond the file: no data."""
    air = 3210.0 + np.arange(3000.0)
    flux = np.full(air.size, 1e-13)
    flux[1000:1010] = 0.0  # a gap, air 4210-4219 A
    flux[2000] = np.nan  # air 5210 A
    path = write_stelib(tmp_path / "STELIB_v3.2_G.fits", n=air.size, crval=air[0], cdelt=1.0, flux=flux)
    ds = read_stelib(path, wave=STELIB_WAVE)
    code, mask = ds.mask_reason.values[0], ds.mask.values[0]
    np.testing.assert_array_equal(mask, code != 0)
    vac = air_to_vacuum(air[[0, 1000, 1009, 2000, -1]])
    gap = (STELIB_WAVE > vac[1] - 1) & (STELIB_WAVE < vac[2] + 1)
    assert set(code[gap]) == {MASK_NONPOSITIVE} and gap.sum() in (11, 12)  # the 10 zeros, 1-A pixels
    assert set(code[np.abs(STELIB_WAVE - vac[3]) < 1]) == {MASK_NONFINITE}
    assert set(code[STELIB_WAVE > vac[4] + 1]) == {MASK_NO_DATA}  # beyond the file's grid
    assert set(code[STELIB_WAVE < vac[0] - 1]) == {MASK_NO_DATA}
    assert (code[(STELIB_WAVE > vac[0] + 1) & (STELIB_WAVE < vac[1] - 1)] == 0).all()


def test_stelib_grids_differ_so_many_need_a_common_grid(tmp_path):
    a = write_stelib(tmp_path / "STELIB_v3.2_A.fits", flux=np.full(6700, 1e-13))
    b = write_stelib(tmp_path / "STELIB_v3.2_B.fits", crval=3204.35, cdelt=1.0006, flux=np.full(6700, 2e-13))
    with pytest.raises(ReaderError, match="pass wave="):
        read_stelib([a, b])
    ds = read_stelib([a, b], wave=STELIB_WAVE)
    assert ds.sizes == {"star": 2, "wave": 6700}
    np.testing.assert_array_equal(ds.wave.values, STELIB_WAVE)
    good = ~ds.mask.values
    np.testing.assert_allclose(ds.flux.values[0][good[0]], 1e-13, rtol=1e-5)
    np.testing.assert_allclose(ds.flux.values[1][good[1]], 2e-13, rtol=1e-5)
    assert not ds.mask.values[0].any()  # A (3200.7-9901.0 A vacuum) covers the whole grid
    assert ds.mask.values[1, :5].all() and not ds.mask.values[1, 5:].any()  # B covers 3204.8-9910.6 A


# ------------------------------------------------------------------------------- BOSZ


KEYS = ("feh", "c_m", "alpha", "teff", "logg", "vturb", "vrot", "resolution")


@pytest.mark.parametrize(
    ("name", "values"),
    [
        ("amp00cp00op00t5750g45v20modrt0b2000rs.fits", (0.0, 0.0, 0.0, 5750.0, 4.5, 2.0, 0.0, 2000.0)),
        (
            "amm13cm03op03t3500g05v20modrt0b50000rs.asc.bz2",
            (-1.25, -0.25, 0.25, 3500.0, 0.5, 2.0, 0.0, 50000.0),
        ),
        (
            "amm08cp05om03t12000g40v20modrt0b300000rs.fits",
            (-0.75, 0.5, -0.25, 12000.0, 4.0, 2.0, 0.0, 300000.0),
        ),
        ("dir/amp05cp00op00t6000g35v20b500.fits", (0.5, 0.0, 0.0, 6000.0, 3.5, 2.0, math.nan, 500.0)),
    ],
)
def test_bosz_names(name, values):
    got = parse_bosz_name(name)
    np.testing.assert_array_equal([got[k] for k in KEYS], values)


def test_bosz_bad_name():
    with pytest.raises(ReaderError, match="cannot read BOSZ parameters"):
        parse_bosz_name("t5750g45.fits")


def test_bosz_fits_and_ascii_agree(tmp_path):
    wave, intensity, cont = bosz_arrays()
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    f = write_bosz_fits(tmp_path / "a" / f"{BOSZ_NAME}.fits", wave, intensity, cont)
    t = write_bosz_ascii(tmp_path / "b" / f"{BOSZ_NAME}.asc.bz2", wave, intensity, cont)
    a, b = read_bosz(f), read_bosz(t)
    validate_spectra(a)
    np.testing.assert_allclose(a.flux.values[0], np.float32(np.pi * intensity), rtol=1e-6)
    np.testing.assert_allclose(a.continuum.values[0], np.float32(np.pi * cont), rtol=1e-6)
    np.testing.assert_array_equal(a.wave.values, wave)
    assert (
        a.attrs["resolution"] == 2000.0
        and a.attrs["frame"] == "rest"
        and a.attrs["medium_assumed"] == "vacuum"
    )
    assert float(a.teff[0]) == 5750.0 and float(a.logg[0]) == 4.5 and float(a.alpha[0]) == 0.0
    assert "fits" in a.attrs["format"] and "ascii" in b.attrs["format"]
    np.testing.assert_allclose(b.wave.values, a.wave.values, rtol=1e-9)  # 6 decimals in the text
    np.testing.assert_allclose(b.flux.values, a.flux.values, rtol=1e-6)
    np.testing.assert_allclose(b.continuum.values, a.continuum.values, rtol=1e-6)
    second = write_bosz_fits(
        tmp_path / "a" / "amm10cp00op00t6000g40v20modrt0b2000rs.fits", wave, intensity, cont
    )
    both = read_bosz([f, second])
    assert list(both.feh.values) == [0.0, -1.0] and list(both.obsid.values) == [0, 1]
    write_spectra(both, tmp_path / "bosz.zarr")
    assert open_spectra(tmp_path / "bosz.zarr")["continuum"].shape == (2, wave.size)


def test_bosz_refusals_and_air(tmp_path):
    wave, intensity, cont = bosz_arrays()
    nocont = tmp_path / f"{BOSZ_NAME}.fits"
    cols = [
        fits.Column(name="Wavelength", format="D", array=wave),
        fits.Column(name="SpecificIntensity", format="D", array=intensity),
    ]
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(cols)]).writeto(nocont)
    with pytest.raises(ReaderError, match="lacks column.*Continuum"):
        read_bosz(nocont)
    (tmp_path / "b").mkdir()
    other = write_bosz_fits(
        tmp_path / "b" / "amp00cp00op00t5750g45v20modrt0b5000rs.fits", wave, intensity, cont
    )
    first = write_bosz_fits(tmp_path / "b" / f"{BOSZ_NAME}.fits", wave, intensity, cont)
    with pytest.raises(ReaderError, match="resolution b5000 differs"):
        read_bosz([first, other])
    air = read_bosz(first, medium="air")
    np.testing.assert_allclose(air.wave.values, air_to_vacuum(wave), atol=1e-9)
    assert air.attrs["original_medium"] == "air"


# ------------------------------------------------------------------------------- NGSL


def test_ngsl_layout(tmp_path):
    f = write_ngsl(tmp_path / "h_stis_ngsl_hd001835_v2.fits")
    ds = read_ngsl(f, params={"hd001835": {"teff": 5800, "logg": 4.4}})
    validate_spectra(ds)
    data = fits.getdata(f, 1)
    np.testing.assert_allclose(ds.ivar.values[0], (1 / data["STAT_ERR"] ** 2).astype(np.float32), rtol=1e-6)
    np.testing.assert_allclose(ds.sys_err.values[0], data["SYS_ERR"].astype(np.float32))
    np.testing.assert_array_equal(ds.wave.values, data["WAVELENGTH"])
    assert ds.name.item() == "hd001835" and ds.targname.item() == "HD 1"
    assert float(ds.teff[0]) == 5800 and float(ds.logg[0]) == 4.4 and np.isnan(ds.feh.values[0])
    assert ds.attrs["frame"] == "observed" and ds.attrs["medium_assumed"] == "vacuum"
    assert ds.attrs["flux_unit"] == "erg/s/cm^2/A" and ds.attrs["resolution"] == 1000.0
    assert not ds.mask.values.any()


def test_ngsl_masks_and_refusals(tmp_path):
    f = write_ngsl(tmp_path / "h_stis_ngsl_x_v2.fits")
    with fits.open(f, mode="update") as hdul:
        hdul[1].data["STAT_ERR"][3] = 0.0
        hdul[1].data["FLUX"][4] = np.nan
    ds = read_ngsl(f)
    assert sorted(np.flatnonzero(ds.mask.values[0])) == [3, 4] and ds.ivar.values[0, 3] == 0
    with pytest.raises(ReaderError, match="lacks column.*SYS_ERR"):
        read_ngsl(write_ngsl(tmp_path / "h_stis_ngsl_y_v2.fits", drop=("SYS_ERR",)))
    image = tmp_path / "h_stis_ngsl_z_v2.fits"
    fits.HDUList([fits.PrimaryHDU(np.ones(10))]).writeto(image)
    with pytest.raises(ReaderError, match="binary table in HDU 1"):
        read_ngsl(image)
    swapped = write_ngsl(tmp_path / "h_stis_ngsl_w_v2.fits")
    with fits.open(swapped, mode="update") as hdul:
        hdul[1].data["WAVELENGTH"][[10, 11]] = hdul[1].data["WAVELENGTH"][[11, 10]]
    with pytest.raises(ReaderError, match="non-monotonic"):
        read_ngsl(swapped)


def test_ngsl_many_on_a_common_grid_with_ivar(tmp_path):
    a = write_ngsl(tmp_path / "h_stis_ngsl_a_v2.fits", seed=1)
    b = write_ngsl(tmp_path / "h_stis_ngsl_b_v2.fits", seed=2)
    ds = read_ngsl([a, b])
    assert list(ds.name.values) == ["a", "b"]
    grid = np.arange(2000.0, 9000.0, 22.0)
    rebinned = read_ngsl([a, b], wave=grid)
    assert (rebinned.ivar.values > 0).all() and not rebinned.mask.values.any()
    xr.testing.assert_equal(rebinned.name, ds.name)
