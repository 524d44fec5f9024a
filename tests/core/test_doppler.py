"""Rest-frame shift lambda_rest = lambda_obs / (1 + z)."""

import numpy as np
import pytest

from lamost2csst.core.doppler import check_redshift, shift_to_rest
from lamost2csst.core.grids import INPUT_WAVE


def test_scalar_z_hand_computed():
    out = shift_to_rest(np.array([6000.0, 6564.61]), 0.001)
    np.testing.assert_allclose(out, [6000.0 / 1.001, 6564.61 / 1.001], rtol=1e-15)
    assert out.shape == (2,)
    assert out[0] == pytest.approx(5994.005994005994, rel=1e-14)


def test_zero_redshift_is_identity():
    np.testing.assert_array_equal(shift_to_rest(INPUT_WAVE, 0.0), INPUT_WAVE)


def test_velocity_round_trip():
    # a line emitted at lambda0 and observed at lambda0 (1 + z) comes back to lambda0
    c = 299792.458
    z = -250.0 / c  # blueshifted star
    lam0 = 6564.61
    assert float(shift_to_rest(np.array([lam0 * (1 + z)]), z)[0]) == pytest.approx(lam0, rel=1e-15)


def test_per_star_z_gives_per_star_grids():
    z = np.array([0.0, 1e-3, -2e-3])
    out = shift_to_rest(INPUT_WAVE, z)
    assert out.shape == (3, INPUT_WAVE.size)
    for k in range(3):
        np.testing.assert_allclose(out[k], INPUT_WAVE / (1 + z[k]), rtol=1e-15)


@pytest.mark.parametrize("z", [-1.0, -1.5, np.nan, np.inf, -np.inf])
def test_unphysical_z_raises(z):
    with pytest.raises(ValueError, match="z "):
        shift_to_rest(INPUT_WAVE, z)


def test_unphysical_z_in_array_raises():
    with pytest.raises(ValueError, match="NaN/inf"):
        shift_to_rest(INPUT_WAVE, np.array([0.0, np.nan]))
    with pytest.raises(ValueError, match="> -1"):
        shift_to_rest(INPUT_WAVE, np.array([0.0, -1.0]))


def test_check_redshift_shapes():
    assert check_redshift(0.1).shape == ()
    assert check_redshift([0.1, 0.2], n_star=2).shape == (2,)
    with pytest.raises(ValueError, match="one value per star"):
        check_redshift([0.1, 0.2], n_star=3)
    with pytest.raises(ValueError, match="one value per star"):
        check_redshift(np.zeros((2, 2)))
