"""Air <-> vacuum conversion: published reference lines, round trips, the 2000 A convention."""

import numpy as np
import pytest

from lamost2csst.core.air_vacuum import air_to_vacuum, refractive_index_air, vacuum_to_air

# (air, vacuum, tolerance) in Angstrom: NIST Atomic Spectra Database / SDSS line lists.
REFERENCE_LINES = [
    pytest.param(6562.80, 6564.61, 0.01, id="H-alpha"),
    pytest.param(5889.950, 5891.583, 0.005, id="Na-D2"),
    pytest.param(5895.924, 5897.558, 0.005, id="Na-D1"),
    pytest.param(5006.843, 5008.240, 0.005, id="[OIII]5007"),
    pytest.param(3933.663, 3934.777, 0.005, id="CaII-K"),
    pytest.param(3968.468, 3969.591, 0.005, id="CaII-H"),
    pytest.param(8542.09, 8544.44, 0.01, id="CaII-8542"),
]


@pytest.mark.parametrize("air, vacuum, tol", REFERENCE_LINES)
def test_air_to_vacuum_reference_lines(air, vacuum, tol):
    assert float(air_to_vacuum(air)) == pytest.approx(vacuum, abs=tol)


@pytest.mark.parametrize("air, vacuum, tol", REFERENCE_LINES)
def test_vacuum_to_air_reference_lines(air, vacuum, tol):
    assert float(vacuum_to_air(vacuum)) == pytest.approx(air, abs=tol)


def test_round_trip_vacuum_air_vacuum():
    wave = np.linspace(2001.0, 11000.0, 9001)
    back = air_to_vacuum(vacuum_to_air(wave))
    assert np.max(np.abs(back - wave)) < 1e-6


def test_round_trip_air_vacuum_air():
    wave = np.linspace(2001.0, 11000.0, 9001)
    back = vacuum_to_air(air_to_vacuum(wave))
    assert np.max(np.abs(back - wave)) < 1e-6


def test_air_is_shorter_than_vacuum_by_about_n_minus_1():
    # standard air: n - 1 is 2.7e-4 .. 2.9e-4 over the optical range (shift ~1.4 A at 5000 A)
    wave = np.array([3000.0, 5000.0, 7000.0, 10000.0])
    rel = (wave - vacuum_to_air(wave)) / wave
    assert np.all((rel > 2.7e-4) & (rel < 2.95e-4))
    assert np.all(np.diff(rel) < 0)  # normal dispersion: n decreases towards the red
    n = refractive_index_air(wave)
    np.testing.assert_allclose(vacuum_to_air(wave), wave / n, rtol=1e-15)


@pytest.mark.parametrize("wave", [100.0, 1216.0, 1500.0, 1999.0, 1999.3])
def test_below_2000_unchanged(wave):
    assert float(vacuum_to_air(wave)) == wave
    assert float(air_to_vacuum(wave)) == wave


def test_arrays_keep_shape():
    wave = np.array([[1500.0, 5000.0], [6000.0, 9000.0]])
    assert vacuum_to_air(wave).shape == (2, 2)
    assert air_to_vacuum(wave).shape == (2, 2)
    assert vacuum_to_air(wave)[0, 0] == 1500.0


def test_list_input_is_accepted():
    out = air_to_vacuum([6562.80, 5889.95])
    assert out.shape == (2,)
    assert out[0] == pytest.approx(6564.61, abs=0.01)


@pytest.mark.parametrize("bad", [0.0, -5000.0, np.nan, np.inf])
@pytest.mark.parametrize("func", [air_to_vacuum, vacuum_to_air])
def test_invalid_wavelengths_raise(func, bad):
    with pytest.raises(ValueError, match="finite and positive"):
        func(np.array([5000.0, bad]))
