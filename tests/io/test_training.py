"""Training pairs from library Datasets: one code path for the grid and the empirical libraries."""

from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from lamost2csst.core import INPUT_WAVE, OUTPUT_WAVE
from lamost2csst.errors import InputError
from lamost2csst.io.training import (
    gridded_library,
    read_library_params,
    training_pairs,
    usable_library,
    usable_stars,
)


def test_a_grid_dataset_goes_straight_to_the_pairs():
    n = 3
    grid = xr.Dataset(
        {
            "flux_in": (("model", "wave_in"), np.full((n, INPUT_WAVE.size), 2.0, np.float32)),
            "sed": (("model", "wave_out"), np.ones((n, OUTPUT_WAVE.size), np.float32)),
        },
        coords={"teff": ("model", [5000.0, 6000.0, 7000.0])},
    )
    g = gridded_library(grid)
    assert not g.input_mask.any() and not g.target_mask.any()
    pairs = training_pairs(grid, snr=40.0, rng=np.random.default_rng(0))
    assert pairs.flux.shape == (n, INPUT_WAVE.size) and pairs.sed.shape == (n, OUTPUT_WAVE.size)
    assert abs(np.nanmean(pairs.flux) - 1.0) < 2e-3


def test_a_library_in_the_observed_frame_is_refused():
    from lamost2csst.core import LAMOST_WAVE
    from lamost2csst.io.spectra import spectra_dataset

    ds = spectra_dataset(
        wave=LAMOST_WAVE,
        flux=np.ones((1, LAMOST_WAVE.size)),
        ivar=np.ones((1, LAMOST_WAVE.size)),
        obsid=[1],
        ra=[0.0],
        dec=[0.0],
        z=[1e-4],
        resolution=1800.0,
    )
    with pytest.raises(ValueError, match="rest frame"):
        gridded_library(ds)


def test_real_miles_stars_give_pairs_defined_where_miles_covers_the_kernel():
    pytest.importorskip("mangadap")
    from lamost2csst.io import read_mangadap_miles

    miles = read_mangadap_miles()
    pick = miles.isel(star=np.flatnonzero((miles.teff.values >= 5000) & (miles.teff.values <= 9750))[:20])
    pairs = training_pairs(pick, snr=40.0, rng=np.random.default_rng(0))
    # the input grid (4000-7000 A) lies inside MILES (3540-7410 A): defined everywhere
    assert not pairs.input_mask.any()
    # targets: defined in the middle, masked in the far UV and the red beyond MILES
    middle = (OUTPUT_WAVE > 3800) & (OUTPUT_WAVE < 7100)
    assert not pairs.target_mask[:, middle].any()
    assert pairs.target_mask[:, OUTPUT_WAVE < 3500].all() and pairs.target_mask[:, OUTPUT_WAVE > 7500].all()
    window = (OUTPUT_WAVE >= 5526) & (OUTPUT_WAVE <= 5586)
    np.testing.assert_allclose(pairs.sed[:, window].mean(axis=1), 1.0, rtol=1e-5)
    # A and F stars are bluer than G stars: scaled flux at 4000 A rises with Teff
    at_4000 = pairs.sed[:, np.argmin(np.abs(OUTPUT_WAVE - 4000))]
    teff = pick.teff.values
    assert np.corrcoef(teff, at_4000)[0, 1] > 0.7


def test_library_parameters_from_a_csv(tmp_path):
    path = tmp_path / "params.csv"
    path.write_text("name,teff,logg,feh,note\n HD 1 ,5770,4.44,0.0,sun\nhd2,9600,3.9,-0.5,\n")
    assert read_library_params(path) == {
        "hd 1": {"teff": 5770.0, "logg": 4.44, "feh": 0.0},
        "hd2": {"teff": 9600.0, "logg": 3.9, "feh": -0.5},
    }
    path.write_text("name,teff,logg\nhd2,9600,3.9\n")
    with pytest.raises(InputError, match="columns"):
        read_library_params(path)


# ------------------------------------------------------------------ usable real-library stars

READERS_DIR = Path(__file__).resolve().parent / "readers"
MILES_AIR = 3540.5 + 0.9 * np.arange(4300)
MILES_PARAMS = {n: (5800.0 + 100 * n, 4.2, -0.1) for n in range(1, 12) if n != 7}  # star 7: none


def _air_pixel(air):
    return int(round((air - 3540.5) / 0.9))


def _miles_flux(defect):
    """A smooth positive MILES-like spectrum, with one defect."""
    flux = 1.0 + 0.3 * np.sin(MILES_AIR / 50.0) + 1e-4 * (MILES_AIR - 3540.0)
    if defect == "nan":
        flux[_air_pixel(4500.0) : _air_pixel(4500.0) + 3] = np.nan  # in the input range
    elif defect == "nan_window":
        flux[_air_pixel(5556.0)] = np.inf
    elif defect == "nan_red":
        flux[_air_pixel(7300.0) : _air_pixel(7300.0) + 3] = np.nan  # beyond the input range: fine
    elif defect == "zeros":
        flux[_air_pixel(5000.0) : _air_pixel(5010.0)] = 0.0
    elif defect == "negative":
        flux[_air_pixel(6000.0) : _air_pixel(6050.0)] = -0.5
    elif defect == "all_zero":
        flux[:] = 0.0
    elif defect == "constant":
        flux[:] = 1.0
    return flux


#: MILES number -> defect (star 7 has no parameters, star 9's file is truncated)
MILES_STARS = {
    1: None,
    2: "nan",
    3: "zeros",
    4: "negative",
    5: "all_zero",
    6: "constant",
    7: None,
    8: "nan_red",
    9: None,
    10: "nan_window",
}


@pytest.fixture
def miles_files(tmp_path):
    import sys

    sys.path.insert(0, str(READERS_DIR))
    from reader_files import write_miles

    paths = {
        n: write_miles(tmp_path / f"MILES_res2.50_star_m{n:04d}V.fits", flux=_miles_flux(d))
        for n, d in MILES_STARS.items()
    }
    raw = paths[9].read_bytes()
    paths[9].write_bytes(raw[: len(raw) - 3000])  # truncated: unreadable
    return paths


def test_each_defective_miles_file_is_skipped_with_its_reason(miles_files):
    from lamost2csst.io.readers import read_miles

    ds = read_miles(list(miles_files.values()), params=MILES_PARAMS, on_error="skip")
    usable = usable_stars(ds)
    reasons = dict(zip(ds.obsid.values.tolist(), usable.reasons))
    assert reasons == {
        1: "",
        2: "nan_flux",
        3: "nonpositive_flux",
        4: "nonpositive_flux",
        5: "nonpositive_flux",
        6: "constant_flux",
        7: "missing_parameters",
        8: "",
        10: "nan_flux",
    }
    assert usable.counts == {
        "unreadable": 1,
        "nan_flux": 2,
        "nonpositive_flux": 3,
        "no_scale_window": 0,
        "input_gap": 0,
        "constant_flux": 1,
        "missing_parameters": 1,
    }
    assert usable.unreadable == [usable.unreadable[0]] and usable.unreadable[0].startswith(
        f"{miles_files[9]}:"
    )
    # without parameters required, star 7 is usable
    assert usable_stars(ds, params=()).reasons[list(ds.obsid.values).index(7)] == ""


def test_the_kept_stars_are_those_of_a_library_of_the_good_files_alone(miles_files):
    """Round trip: the usable stars' arrays equal those of the good files read alone."""
    from lamost2csst.io.readers import read_miles

    kept, info = usable_library(read_miles(list(miles_files.values()), params=MILES_PARAMS, on_error="skip"))
    assert (
        list(kept.obsid.values) == [1, 8] and info["stars_read"] == 9 and sum(info["skipped"].values()) == 8
    )
    assert info["unreadable_files"][0].startswith(str(miles_files[9]))
    g = gridded_library(kept)  # no error: every kept star has its scaling window
    alone = gridded_library(read_miles([miles_files[1]], params=MILES_PARAMS))
    same = {"rtol": 2e-6, "atol": 0}  # float32: one matrix product of 1 or 2 rows rounds differently
    np.testing.assert_allclose(g.flux_in[0], alone.flux_in[0], **same)
    np.testing.assert_allclose(g.sed[0], alone.sed[0], **same)
    np.testing.assert_array_equal(g.target_mask[0], alone.target_mask[0])
    assert not g.input_mask.any()
    # star 8 (NaN at 7300 A) has star 1's inputs and SED, less the SED pixels whose kernel meets the NaNs
    np.testing.assert_allclose(g.flux_in[1], alone.flux_in[0], **same)
    lost = g.target_mask[1] & ~alone.target_mask[0]
    assert lost.sum() > 0 and np.all(np.abs(OUTPUT_WAVE[lost] - 7302.0) < 80)  # R=200 kernel: sigma 15 A
    np.testing.assert_allclose(g.sed[1][~g.target_mask[1]], alone.sed[0][~g.target_mask[1]], **same)


def test_stars_without_the_scaling_window_or_the_input_range_are_skipped(tmp_path):
    """On a common grid: a file ending at 5400 A lacks the scaling window, one ending at 6700 A inputs."""
    import sys

    sys.path.insert(0, str(READERS_DIR))
    from reader_files import write_miles

    from lamost2csst.io.readers import read_miles

    flux = _miles_flux(None)
    paths = [
        write_miles(tmp_path / "MILES_res2.50_star_m0001V.fits", flux=flux),
        write_miles(tmp_path / "MILES_res2.50_star_m0002V.fits", n=2066, flux=flux[:2066]),  # to 5400 A
        write_miles(tmp_path / "MILES_res2.50_star_m0003V.fits", n=3500, flux=flux[:3500]),  # to 6690 A
    ]
    ds = read_miles(paths, params=MILES_PARAMS, wave=np.arange(3560.0, 7400.0, 1.0))
    assert list(usable_stars(ds).reasons) == ["", "no_scale_window", "input_gap"]
    # a library of targets only (NGSL) does not need the input range
    assert list(usable_stars(ds, inputs=False).reasons) == ["", "no_scale_window", ""]
    with pytest.raises(ValueError, match="scaling window"):
        gridded_library(ds)  # what the check spares the libraries


def test_nan_on_a_pixel_marked_good_is_a_defect_not_a_crash(miles_files):
    from lamost2csst.io.readers import read_miles

    ds = read_miles([miles_files[1], miles_files[8]], params=MILES_PARAMS)
    flux = ds.flux.values.copy()
    flux[1] = np.where(np.isfinite(flux[1]), flux[1], 1.0)
    flux[1, _air_pixel(7380.0)] = np.nan  # far from the input range, but the mask says good
    ds["flux"] = ds.flux.copy(data=flux)
    ds["mask"] = ds.mask.copy(data=np.zeros(flux.shape, bool))
    ds = ds.drop_vars("mask_reason")
    with pytest.raises(ValueError, match="NaN/inf values on pixels marked usable"):
        gridded_library(ds)
    assert list(usable_stars(ds).reasons) == ["", "nan_flux"]


def test_ngsl_stars_need_their_scaling_window_and_positive_seds(tmp_path):
    import sys

    from astropy.io import fits

    sys.path.insert(0, str(READERS_DIR))
    from reader_files import write_ngsl

    from lamost2csst.io.readers import read_ngsl

    def ngsl(name, column=None, where=None, value=None):
        path = write_ngsl(tmp_path / f"h_stis_ngsl_{name}_v2.fits", seed=1)
        if column:
            with fits.open(path, mode="update") as hdul:
                wave = hdul[1].data["WAVELENGTH"]
                hdul[1].data[column][(wave >= where[0]) & (wave <= where[1])] = value
        return path

    paths = [
        ngsl("good"),
        ngsl("nan", "FLUX", (5540, 5560), np.nan),
        ngsl("noerr", "STAT_ERR", (5540, 5560), 0.0),  # flagged bad by the file: no data
        ngsl("negative", "FLUX", (2600, 2800), -1e-13),  # unmasked, SED < 0 there
        ngsl("noise", "FLUX", (2700, 2711), -1e-14),  # one slightly negative pixel: SED still > 0
        ngsl("noparams"),
    ]
    params = {
        n: {"teff": 6000.0, "logg": 4.0, "feh": 0.0} for n in ("good", "nan", "noerr", "negative", "noise")
    }
    ds = read_ngsl(paths, params=params, wave=1700.0 * np.exp(np.arange(0, 1.78, 1 / 5000.0)))
    usable = usable_stars(ds, inputs=False)
    assert dict(zip(ds.name.values, usable.reasons)) == {
        "good": "",
        "nan": "nan_flux",
        "noerr": "no_scale_window",
        "negative": "nonpositive_flux",
        "noise": "",
        "noparams": "missing_parameters",
    }
