"""LAMOST trouble spots (core.inputs): which observed pixels are treated, and how."""

import numpy as np
import pytest

from lamost2csst.core.air_vacuum import air_to_vacuum
from lamost2csst.core.inputs import (
    ARM_JUNCTION,
    LAMOST_SKY_LINES,
    SKY_LINE_HALF_WIDTH,
    treat_trouble_spots,
    trouble_pixels,
    trouble_windows,
)

# observed wavelengths around the windows [5574.9, 5582.9] ([O I] 5578.9 +- 4), the junction
# [5700, 5900] (Na D 5891.6 / 5897.6 inside it; 5897.6 + 4 = 5901.6 reaches past it) and
# [6298, 6306] ([O I] 6302.0 +- 4)
WAVE = np.array(
    [5574.85, 5574.95, 5578.9, 5582.85, 5582.95, 5699.95, 5700.05, 5899.95, 5901.55, 5901.65]
    + [6297.95, 6298.05, 6305.95, 6306.05]
)
HIT = np.array([0, 1, 1, 1, 0, 0, 1, 1, 1, 0, 0, 1, 1, 0], bool)


def test_the_sky_lines_are_the_vacuum_wavelengths_of_the_air_lines():
    air = [5577.339, 5889.950, 5895.924, 6300.304, 6363.776]  # [O I], Na D2, Na D1, [O I], [O I]
    np.testing.assert_allclose(LAMOST_SKY_LINES, air_to_vacuum(np.array(air)), atol=0.05)
    assert SKY_LINE_HALF_WIDTH == 4.0 and ARM_JUNCTION == (5700.0, 5900.0)


def test_windows_are_the_lines_plus_minus_the_half_width_then_the_junction():
    got = trouble_windows(sky_lines=(5000.0, 6000.0), half_width=2.5, junction=(5100.0, 5200.0))
    assert got == ((4997.5, 5002.5), (5997.5, 6002.5), (5100.0, 5200.0))
    assert trouble_windows(sky_lines=(), junction=None) == ()
    with pytest.raises(ValueError, match="half_width"):
        trouble_windows(half_width=-1.0)


def test_trouble_pixels_are_exactly_the_stated_ones():
    np.testing.assert_array_equal(trouble_pixels(WAVE), HIT)
    # one row per star, each on its own grid: the second star's grid is shifted off every window
    waves = np.stack([WAVE, WAVE - 30.0])
    np.testing.assert_array_equal(trouble_pixels(waves)[0], HIT)
    shifted = np.array([0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 0, 0, 0, 0], bool)  # 5869.95-5871.65: junction
    np.testing.assert_array_equal(trouble_pixels(waves)[1], shifted)


def test_inflate_divides_ivar_by_the_factor_squared_on_those_pixels_only():
    ivar = np.full((2, WAVE.size), 4.0, np.float32)
    ivar[1, 2] = 0.0  # a pixel without information stays without
    mask = np.zeros(ivar.shape, bool)
    mask[0, 0] = True
    out, out_mask = treat_trouble_spots(WAVE, ivar, mask, mode="inflate", inflation=10.0)
    expected = np.where(HIT, 0.04, 4.0).astype(np.float32)
    np.testing.assert_allclose(out[0], expected, rtol=1e-6)
    np.testing.assert_allclose(out[1], np.where(np.arange(WAVE.size) == 2, 0.0, expected), rtol=1e-6)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out_mask, mask)
    assert ivar[0, 1] == 4.0 and out_mask is not mask  # the inputs are not changed


def test_mask_sets_mask_and_zero_ivar_on_those_pixels_only():
    ivar = np.full((1, WAVE.size), 4.0)
    mask = np.zeros(ivar.shape, bool)
    mask[0, 0] = True
    out, out_mask = treat_trouble_spots(WAVE, ivar, mask, mode="mask")
    np.testing.assert_array_equal(out_mask[0], HIT | (np.arange(WAVE.size) == 0))
    np.testing.assert_array_equal(out[0], np.where(HIT, 0.0, 4.0))
    assert not mask[0, 1]


def test_keep_and_a_factor_of_one_change_nothing():
    ivar = np.random.default_rng(1).uniform(1.0, 2.0, (3, WAVE.size))
    same, mask = treat_trouble_spots(WAVE, ivar, mode="keep")
    np.testing.assert_array_equal(same, ivar)
    assert not mask.any() and mask.shape == ivar.shape
    one, _ = treat_trouble_spots(WAVE, ivar, mode="inflate", inflation=1.0)
    np.testing.assert_array_equal(one, ivar)


def test_bad_arguments_say_what_to_fix():
    ivar = np.ones((1, WAVE.size))
    with pytest.raises(ValueError, match="mode must be one of"):
        treat_trouble_spots(WAVE, ivar, mode="drop")
    with pytest.raises(ValueError, match="inflation"):
        treat_trouble_spots(WAVE, ivar, mode="inflate", inflation=0.5)
    with pytest.raises(ValueError, match="same"):
        treat_trouble_spots(WAVE, ivar, np.zeros((2, WAVE.size), bool), mode="mask")
