"""The MILES and STELIB copies inside sdss-mangadap (skipped when the package is absent)."""

import importlib.util

import numpy as np
import pytest

from lamost2csst.core import air_to_vacuum
from lamost2csst.io import validate_spectra
from lamost2csst.io.readers import STELIB_WAVE, ReaderError, read_mangadap_miles, read_mangadap_stelib

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("mangadap") is None, reason="sdss-mangadap not installed (extra 'libraries')"
)


@pytest.fixture(scope="module")
def miles():
    return read_mangadap_miles()


def test_all_miles_stars_with_parameters(miles):
    validate_spectra(miles)
    assert miles.sizes == {"star": 984, "wave": 4300}
    np.testing.assert_allclose(
        miles.wave.values[[0, -1]], air_to_vacuum([3540.5, 3540.5 + 0.9 * 4299]), atol=1e-9
    )
    assert miles.attrs["original_medium"] == "air" and miles.attrs["fwhm_angstrom"] == 2.5
    obsid = miles.obsid.values
    assert obsid.min() == 1 and obsid.max() == 985 and 970 not in obsid
    assert int(miles.teff.isnull().sum()) == 3  # stars 407, 443, 445: no parameters
    assert int(miles.feh.isnull().sum()) == 39
    star = miles.sel(star=int(np.flatnonzero(obsid == 221)[0]))
    assert float(star.teff) == 7950.0 and float(star.logg) == 3.95  # the '022.' entry
    sun_like = miles.sel(star=int(np.flatnonzero(obsid == 1)[0]))
    assert np.isfinite(float(sun_like.teff))
    assert miles.mask.values.mean() < 1e-3


def test_omitted_star_on_request():
    ds = read_mangadap_miles(include_omitted=True)
    assert ds.sizes["star"] == 985 and 970 in ds.obsid.values


def test_all_stelib_stars_on_the_common_grid():
    ds = read_mangadap_stelib()
    validate_spectra(ds)
    assert ds.sizes == {"star": 255, "wave": STELIB_WAVE.size}
    np.testing.assert_array_equal(ds.wave.values, STELIB_WAVE)
    assert "resampled" in ds.attrs and ds.attrs["original_medium"] == "air"
    assert int(ds.teff.isnull().sum()) == 36 and int(ds.logg.isnull().sum()) == 48
    assert (ds.flux.values[~ds.mask.values] > 0).all()
    assert 0.1 < ds.mask.values.mean() < 0.3  # many stars stop at ~8100 A or have gaps
    with pytest.raises(ReaderError, match="pass wave="):
        read_mangadap_stelib(wave=None)
