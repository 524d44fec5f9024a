"""Precision-bounded rounding: hand numbers, the stated bounds, and the values kept bit for bit."""

import numpy as np
import pytest

from lamost2csst.core.precision import round_mantissa, round_spectra, round_to_noise


def bits(x):
    return np.asarray(x, dtype=np.float32).view(np.uint32)


def f32(*values):
    return np.array(values, dtype=np.float32)


def test_round_to_noise_hand_numbers():
    # sigma 1: 2 * 1 % = 0.02 -> step 2**-6 = 0.015625; 1.234 / step = 78.98 -> 79 steps
    assert round_to_noise(f32(1.234), ivar=f32(1.0))[0] == 79 * 2.0**-6
    # sigma 3: 0.06 -> step 2**-5; -7.3 / step = -233.6 -> -234 steps; 10 is a multiple already
    out = round_to_noise(f32(-7.3, 10.0), ivar=f32(1 / 9, 1 / 9))
    np.testing.assert_array_equal(out, [-234 * 2.0**-5, 10.0])
    # fraction 0.3 of sigma 1: 0.6 -> step 2**-1; 2.3 -> 2.5 (error 0.2 <= 0.3)
    assert round_to_noise(f32(2.3), ivar=f32(1.0), fraction=0.3)[0] == 2.5
    # a bound that is exactly a power of two (0.5) takes the next one down: 2.3 -> 2.25
    assert round_to_noise(f32(2.3), ivar=f32(1.0), fraction=0.25)[0] == 2.25
    assert round_to_noise(f32(2.3), ivar=f32(1.0), fraction=0.25).dtype == np.float32


def test_round_to_noise_keeps_unusable_pixels_bit_for_bit():
    nan_payload = np.uint32(0x7FC00123).view(np.float32)
    flux = f32(1.5, 2.5, 3.5, np.inf, -np.inf, 0.7, 0.7, 0.7)
    flux[0] = nan_payload
    ivar = f32(1.0, 0.0, -4.0, 1.0, 1.0, np.nan, np.inf, 1e30)  # last: sigma 1e-15, below flux's spacing
    np.testing.assert_array_equal(bits(round_to_noise(flux, ivar=ivar)), bits(flux))


def test_round_to_noise_never_overflows():
    top = np.finfo(np.float32).max  # (2 - 2**-23) * 2**127; a step of 2**116 would round it to 2**128
    out = round_to_noise(f32(top, -top), ivar=np.array([1e-70, 1e-70]), fraction=0.5)
    np.testing.assert_array_equal(out, [top, -top])
    tiny = np.float32(1e-45)  # a subnormal flux rounds to zero at sigma 1 (error 1e-45)
    assert round_to_noise(f32(tiny), ivar=f32(1.0))[0] == 0.0


@pytest.mark.parametrize("fraction", [0.01, 0.05, 0.5])
def test_round_to_noise_bound_on_random_spectra(fraction):
    rng = np.random.default_rng(3)
    sigma = 10.0 ** rng.uniform(-4, 4, (50, 400))
    flux = (rng.normal(0, 1, sigma.shape) * 10.0 ** rng.uniform(-3, 5, sigma.shape)).astype(np.float32)
    ivar = (1 / sigma**2).astype(np.float32)
    out = round_to_noise(flux, ivar=ivar, fraction=fraction)
    sig = 1 / np.sqrt(ivar.astype(np.float64))
    err = np.abs(out.astype(np.float64) - flux)
    assert np.all(err <= fraction * sig)
    # the step is the largest power of two within the bound: at least half of it (never needlessly fine)
    step = 2.0 ** np.floor(np.log2(2 * fraction * sig * (1 - 1e-9)))
    coarse = step > np.spacing(np.abs(flux))
    assert coarse.mean() > 0.5
    np.testing.assert_array_equal(np.mod(out[coarse], step[coarse]), 0.0)
    np.testing.assert_array_equal(out[~coarse], flux[~coarse])


def reference_round_to_noise(flux, ivar, fraction):
    """The same rounding written plainly in float64: step 2**floor(log2(2 fraction sigma)), rint."""
    flux64, ivar64 = np.float32(flux).astype(np.float64), np.asarray(ivar, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        bound = 2 * fraction / np.sqrt(ivar64)
    step = 2.0 ** np.floor(np.log2(bound))
    out = (np.rint(flux64 / step) * step).astype(np.float32)
    keep = ~np.isfinite(step) | (step <= np.spacing(np.abs(np.float32(flux))))
    return np.where(keep, np.float32(flux), out), bound / step


def test_round_to_noise_equals_a_plain_float64_rounding():
    rng = np.random.default_rng(11)
    n = 200_000
    sigma = 10.0 ** rng.uniform(-6, 6, n)
    flux = rng.normal(0, 1, n) * 10.0 ** rng.uniform(-8, 8, n)
    flux[:1000] = np.round(flux[:1000] / 2**-8) * 2**-8 + 2**-9  # exact ties at sigma 2**-8 / 0.02
    sigma[:1000] = 2**-7 / 0.02 * 0.75
    flux[1000:1100] = rng.normal(0, 1e-40, 100)  # subnormals
    flux, ivar = flux.astype(np.float32), (1 / sigma**2).astype(np.float32)
    expected, ratio = reference_round_to_noise(flux, ivar, 0.01)
    away = ratio > 1 + 1e-5  # bounds within 1e-5 of a power of two take the next one down here
    assert away.mean() > 0.99
    got = round_to_noise(flux, ivar=ivar, fraction=0.01)
    np.testing.assert_array_equal(bits(got[away]), bits(expected[away]))
    assert np.any(got[:1000] != flux[:1000])


def test_round_to_noise_rejects_a_bad_fraction():
    for fraction in (0.0, -0.01, 0.6):
        with pytest.raises(ValueError, match="fraction"):
            round_to_noise(f32(1.0), ivar=f32(1.0), fraction=fraction)


def test_round_mantissa_hand_numbers():
    # keep 2 bits: 1.125 = 1.00|1b (tie, even) -> 1.0; 1.375 = 1.01|1b (tie, odd) -> 1.5;
    # 1.3 = 1.01|0011..b -> 1.25; 1.875 = 1.11|1b -> 2.0 (carry into the exponent)
    out = round_mantissa(f32(1.0, 1.125, 1.375, 1.3, -1.3, 1.875, 3e5), keep_bits=2)
    np.testing.assert_array_equal(out, [1.0, 1.0, 1.5, 1.25, -1.25, 2.0, 1.25 * 2.0**18])
    assert out.dtype == np.float32


def test_round_mantissa_keeps_special_values_and_never_overflows():
    nan_low = np.uint32(0x7F800001).view(np.float32)  # a NaN that masking would turn into inf
    x = f32(0.0, -0.0, 1e-40, -1e-42, np.inf, -np.inf, 0.0)
    x[-1] = nan_low
    np.testing.assert_array_equal(bits(round_mantissa(x, keep_bits=3)), bits(x))
    top = np.finfo(np.float32).max  # would round up to 2**128: truncated to 1.75 * 2**127 instead
    out = round_mantissa(f32(top, -top), keep_bits=2)
    np.testing.assert_array_equal(out, [1.75 * 2.0**127, -1.75 * 2.0**127])
    assert np.all(np.abs(out.astype(np.float64) - [top, -top]) <= 2.0**-3 * top)


@pytest.mark.parametrize("keep_bits", [0, 5, 7, 12])
def test_round_mantissa_bound_and_zero_bits(keep_bits):
    rng = np.random.default_rng(keep_bits)
    x = (rng.normal(0, 1, 20_000) * 10.0 ** rng.uniform(-30, 30, 20_000)).astype(np.float32)
    out = round_mantissa(x, keep_bits=keep_bits)
    rel = np.abs(out.astype(np.float64) - x) / np.abs(x.astype(np.float64))
    half = 2.0 ** -(keep_bits + 1)  # half a kept unit in the last place, relative to 1 <= mantissa < 2
    assert rel.max() <= half / (1 + half)  # the worst case: a mantissa just above 1 + half
    assert rel.max() > 0.9 * half / (1 + half)  # ... and it is reached, the bound is not loose
    assert np.all(bits(out) & np.uint32((1 << (23 - keep_bits)) - 1) == 0)
    x_again = np.array(x)
    round_mantissa(x, keep_bits=keep_bits)
    np.testing.assert_array_equal(bits(x), bits(x_again))  # the input is never changed


def test_round_mantissa_all_bits_and_bad_bits():
    x = f32(1.2345678, -3e-20)
    np.testing.assert_array_equal(bits(round_mantissa(x, keep_bits=23)), bits(x))
    for keep_bits in (-1, 24, 2.5):
        with pytest.raises(ValueError, match="keep_bits"):
            round_mantissa(x, keep_bits=keep_bits)


def test_round_spectra_keeps_masked_pixels_and_uses_the_given_ivar():
    flux = f32(1.234, 1.234, 1.234)
    ivar = f32(1.3, 1.3, 1.3)  # sigma 0.877: step 2**-6; ivar with 2 bits: 1.3 -> 1.25
    out_flux, out_ivar = round_spectra(
        flux, ivar=ivar, mask=[False, True, False], flux_fraction=0.01, ivar_bits=2
    )
    np.testing.assert_array_equal(out_flux, [79 * 2.0**-6, flux[1], 79 * 2.0**-6])
    np.testing.assert_array_equal(out_ivar, [1.25, ivar[1], 1.25])
    lossless = round_spectra(flux, ivar=ivar, flux_fraction=None, ivar_bits=None)
    np.testing.assert_array_equal(bits(lossless[0]), bits(flux))
    np.testing.assert_array_equal(bits(lossless[1]), bits(ivar))
    with pytest.raises(ValueError, match="same shape"):
        round_spectra(flux, ivar=ivar[:2], flux_fraction=0.01, ivar_bits=7)
