"""SED scaling by the mean flux of the OUTPUT_WAVE pixels at 5526-5586 A (paper Sect. 2.1)."""

import math

import numpy as np
import pytest

from lamost2csst.core.grids import OUTPUT_WAVE
from lamost2csst.core.sed import SCALE_PIXELS, scale_sed, sed_scale

# Selected independently of the library: 5526 <= 2500 exp(j / 400) <= 5586 A.
J_LO = math.ceil(400 * math.log(5526 / 2500))
J_HI = math.floor(400 * math.log(5586 / 2500))
WINDOW = np.arange(J_LO, J_HI + 1)


def test_window_pixels_independent_selection():
    # 400 ln(5526/2500) = 317.27, 400 ln(5586/2500) = 321.59
    np.testing.assert_array_equal(WINDOW, [318, 319, 320, 321])
    sel = (OUTPUT_WAVE >= 5526.0) & (OUTPUT_WAVE <= 5586.0)
    np.testing.assert_array_equal(np.flatnonzero(sel), WINDOW)
    np.testing.assert_array_equal(SCALE_PIXELS, WINDOW)


def _sed(n_star=1, seed=0):
    rng = np.random.default_rng(seed)
    # a smooth SED times random positive wiggles, very different levels per star
    base = (OUTPUT_WAVE / 5500.0) ** -2.0
    level = 10.0 ** rng.uniform(-17, 3, size=(n_star, 1))
    return level * base * rng.uniform(0.8, 1.2, size=(n_star, OUTPUT_WAVE.size))


def test_scaled_sed_has_unit_mean_in_window():
    sed = _sed(5)
    scaled = scale_sed(sed)
    assert scaled.shape == sed.shape
    means = scaled[:, WINDOW].mean(axis=-1)
    np.testing.assert_allclose(means, 1.0, rtol=0, atol=4e-16)


def test_scale_value_hand_computed():
    sed = np.ones(OUTPUT_WAVE.size)
    sed[WINDOW] = [1.0, 2.0, 3.0, 6.0]
    sed[WINDOW[0] - 1] = 1000.0  # just outside the window: must not count
    sed[WINDOW[-1] + 1] = 1000.0
    assert float(sed_scale(sed)) == 3.0
    np.testing.assert_array_equal(scale_sed(sed), sed / 3.0)


def test_error_is_scaled_by_the_same_factor():
    sed = _sed(3, seed=1)
    err = 0.02 * sed
    scaled, scaled_err = scale_sed(sed, err)
    factor = sed[:, WINDOW].mean(axis=-1, keepdims=True)
    np.testing.assert_allclose(scaled, sed / factor, rtol=1e-15)
    np.testing.assert_allclose(scaled_err, err / factor, rtol=1e-15)
    np.testing.assert_allclose(scaled_err / scaled, 0.02, rtol=1e-14)


def test_batch_dimensions_and_float32():
    sed = _sed(6, seed=2).reshape(2, 3, -1)
    assert sed_scale(sed).shape == (2, 3)
    s32 = (sed / sed[..., WINDOW].mean(-1, keepdims=True)).astype(np.float32) * 7.0
    scaled = scale_sed(s32)
    assert scaled.dtype == np.float32
    np.testing.assert_allclose(scaled[..., WINDOW].mean(-1), 1.0, atol=1e-6)


@pytest.mark.parametrize("n", [573, 575, 2238])
def test_wrong_length_raises(n):
    with pytest.raises(ValueError, match="574"):
        scale_sed(np.ones(n))


@pytest.mark.parametrize("bad", [0.0, -1.0, np.nan, np.inf])
def test_non_positive_or_non_finite_window_raises(bad):
    sed = np.ones((2, OUTPUT_WAVE.size))
    sed[1, WINDOW] = bad
    with pytest.raises(ValueError, match="cannot be scaled"):
        scale_sed(sed)


def test_scale_sed_refuses_error_of_other_shape():
    sed = np.ones((2, OUTPUT_WAVE.size))
    with pytest.raises(ValueError, match="error has shape"):
        scale_sed(sed, np.ones(OUTPUT_WAVE.size))


def test_scale_sed_keeps_nan_outside_window_as_nan():
    sed = np.full(OUTPUT_WAVE.size, 4.0)
    sed[:10] = np.nan
    scaled = scale_sed(sed)
    assert np.all(np.isnan(scaled[:10]))
    np.testing.assert_allclose(scaled[10:], 1.0)
