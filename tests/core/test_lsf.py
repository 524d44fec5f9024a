"""Gaussian LSF degradation: sigma_ln = sqrt(1/R_out^2 - 1/R_in^2) / 2.3548 (DESIGN.md)."""

import math

import numpy as np
import pytest

from lamost2csst.core.grids import INPUT_WAVE, OUTPUT_WAVE, log_wave_grid
from lamost2csst.core.lsf import FWHM_PER_SIGMA, degrade, degrade_error, lsf_sigma

LAM0 = 6000.0
# fine model-like input: d ln(lambda) = 2e-6 over ~5800-6200 A (33,350 px)
FINE = log_wave_grid(5800.0, int(math.log(6200.0 / 5800.0) / 2e-6), ln_step=2e-6)
# fine output grid for measuring line shapes
MEASURE = np.arange(5960.0, 6040.0 + 1e-9, 0.05)


def gaussian_line(wave, lam0, sigma, depth):
    return 1.0 - depth * np.exp(-0.5 * ((wave - lam0) / sigma) ** 2)


def half_depth_fwhm(wave, flux):
    """FWHM of an absorption line by linear interpolation of the two half-depth crossings."""
    depth = 1.0 - flux
    i_min = int(np.argmax(depth))
    half = 0.5 * depth[i_min]
    left = i_min
    while depth[left] > half:
        left -= 1
    right = i_min
    while depth[right] > half:
        right += 1
    # crossings between (left, left+1) and (right-1, right)
    x_l = wave[left] + (half - depth[left]) * (wave[left + 1] - wave[left]) / (depth[left + 1] - depth[left])
    x_r = wave[right - 1] + (half - depth[right - 1]) * (wave[right] - wave[right - 1]) / (
        depth[right] - depth[right - 1]
    )
    return x_r - x_l


def equivalent_width(wave, flux):
    return np.trapezoid(1.0 - flux, wave)


# ---------------------------------------------------------------- the sigma convention


def test_lsf_sigma_values():
    assert lsf_sigma(2000.0) == pytest.approx(1 / 2000 / 2.3548, rel=1e-14)
    # R_in = 2000 -> R_out = 200: sqrt(1/200^2 - 1/2000^2) / 2.3548 = sqrt(2.475e-5) / 2.3548
    assert lsf_sigma(200.0, 2000.0) == pytest.approx(math.sqrt(2.475e-5) / 2.3548, rel=1e-14)
    assert FWHM_PER_SIGMA == pytest.approx(2 * math.sqrt(2 * math.log(2)), abs=1e-4)


@pytest.mark.parametrize("r_in", [2000.0, 1999.0, 100.0])
def test_input_resolution_not_above_target_raises(r_in):
    with pytest.raises(ValueError, match="must exceed"):
        lsf_sigma(2000.0, r_in)
    with pytest.raises(ValueError, match="must exceed"):
        degrade(
            INPUT_WAVE,
            np.ones(INPUT_WAVE.size),
            resolution=2000.0,
            wave_out=OUTPUT_WAVE,
            input_resolution=r_in,
        )


@pytest.mark.parametrize("r", [0.0, -200.0, np.nan])
def test_non_positive_resolution_raises(r):
    with pytest.raises(ValueError, match="resolution must be > 0"):
        lsf_sigma(r)


# ---------------------------------------------------------------- line widths and equivalent widths


@pytest.mark.parametrize("resolution", [2000.0, 5000.0])
def test_narrow_line_gets_fwhm_lambda_over_r_and_keeps_ew(resolution):
    sigma_line = 0.05  # A: FWHM 0.12 A, negligible against lambda/R (3 A or 1.2 A)
    depth = 0.6
    flux = gaussian_line(FINE, LAM0, sigma_line, depth)
    out = degrade(FINE, flux, resolution=resolution, wave_out=MEASURE)
    assert np.all(np.isfinite(out))
    fwhm = half_depth_fwhm(MEASURE, out)
    assert fwhm == pytest.approx(LAM0 / resolution, rel=0.02)
    ew_in = depth * sigma_line * math.sqrt(2 * math.pi)
    assert equivalent_width(MEASURE, out) == pytest.approx(ew_in, rel=0.005)
    # a Gaussian broadened by a Gaussian stays Gaussian: depth * sigma is conserved
    sigma_out = fwhm / (2 * math.sqrt(2 * math.log(2)))
    assert 1.0 - out.min() == pytest.approx(depth * sigma_line / sigma_out, rel=0.03)


def test_line_at_input_resolution_degraded_to_target():
    r_in, r_out = 10000.0, 2000.0
    sigma_line = LAM0 / r_in / (2 * math.sqrt(2 * math.log(2)))
    flux = gaussian_line(FINE, LAM0, sigma_line, 0.5)
    assert half_depth_fwhm(FINE, flux) == pytest.approx(LAM0 / r_in, rel=1e-4)  # the line itself
    out = degrade(FINE, flux, resolution=r_out, wave_out=MEASURE, input_resolution=r_in)
    assert half_depth_fwhm(MEASURE, out) == pytest.approx(LAM0 / r_out, rel=0.02)
    ew_in = 0.5 * sigma_line * math.sqrt(2 * math.pi)
    assert equivalent_width(MEASURE, out) == pytest.approx(ew_in, rel=0.005)
    # ignoring the input resolution would broaden the line too much: sqrt(1 + 1/25) - 1 = 2 %
    too_wide = degrade(FINE, flux, resolution=r_out, wave_out=MEASURE)
    assert half_depth_fwhm(MEASURE, too_wide) / (LAM0 / r_out) == pytest.approx(
        math.sqrt(1 + 1 / 25), rel=0.005
    )


def test_degrade_to_output_grid_from_input_grid():
    # R=2000 spectrum on INPUT_WAVE to R=200 on OUTPUT_WAVE: a line keeps its equivalent width
    lam0 = 5500.0
    sigma_line = lam0 / 2000 / 2.3548
    flux = gaussian_line(INPUT_WAVE, lam0, sigma_line, 0.5)
    out = degrade(INPUT_WAVE, flux, resolution=200.0, wave_out=OUTPUT_WAVE, input_resolution=2000.0)
    inside = (OUTPUT_WAVE >= INPUT_WAVE[0]) & (OUTPUT_WAVE <= INPUT_WAVE[-1])
    assert np.all(np.isfinite(out[inside])) and np.all(np.isnan(out[~inside]))
    # EW on the output pixels (width d_lambda = lambda / 400): sum (1 - f) d_lambda
    ew = np.sum((1.0 - out[inside]) * OUTPUT_WAVE[inside] / 400.0)
    assert ew == pytest.approx(0.5 * sigma_line * math.sqrt(2 * math.pi), rel=0.01)


# ---------------------------------------------------------------- constants, coverage, masks


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_constant_spectrum_stays_constant(dtype):
    flux = np.full((2, INPUT_WAVE.size), 3.5, dtype=dtype)
    out = degrade(INPUT_WAVE, flux, resolution=200.0, wave_out=OUTPUT_WAVE, input_resolution=2000.0)
    assert out.dtype == dtype
    inside = (OUTPUT_WAVE >= INPUT_WAVE[0]) & (OUTPUT_WAVE <= INPUT_WAVE[-1])
    tol = 1e-12 if dtype == np.float64 else 2e-6
    np.testing.assert_allclose(out[:, inside], 3.5, rtol=tol)  # up to the very ends (renormalized kernel)
    assert np.all(np.isnan(out[:, ~inside]))


def test_constant_spectrum_fine_grid_sparse_path():
    out = degrade(FINE, np.full(FINE.size, 2.0), resolution=2000.0, wave_out=MEASURE)
    np.testing.assert_allclose(out, 2.0, rtol=1e-12)


def test_linear_function_of_ln_lambda_is_unchanged_in_the_interior():
    # a symmetric kernel in ln(lambda) leaves a + b ln(lambda) unchanged away from the ends
    flux = 2.0 + 3.0 * np.log(INPUT_WAVE / 5000.0)
    wave_out = np.linspace(4300.0, 6700.0, 50)
    out = degrade(INPUT_WAVE, flux, resolution=500.0, wave_out=wave_out, input_resolution=2000.0)
    # (to 1e-7: the kernel is truncated at +-5 sigma on the fine grid, asymmetric by < 1 fine step)
    np.testing.assert_allclose(out, 2.0 + 3.0 * np.log(wave_out / 5000.0), rtol=1e-7)


def test_masked_input_touches_only_nearby_output():
    flux = np.ones(INPUT_WAVE.size)
    mask = np.zeros(INPUT_WAVE.size, bool)
    k = 1200
    mask[k] = True
    flux[k] = np.nan  # masked NaN accepted
    wave_out = log_wave_grid(4100.0, 3000, ln_step=1.7e-4)
    wave_out = wave_out[wave_out < 6900.0]
    out = degrade(INPUT_WAVE, flux, resolution=500.0, wave_out=wave_out, input_resolution=2000.0, mask=mask)
    sigma = lsf_sigma(500.0, 2000.0)
    dist = np.abs(np.log(wave_out / INPUT_WAVE[k]))
    assert np.all(np.isnan(out[dist < 3 * sigma]))
    far = dist > 5 * sigma + 2 / 4000.0  # beyond the +-5 sigma kernel plus the interpolation reach
    assert np.all(np.isfinite(out[far]))
    np.testing.assert_allclose(out[far], 1.0, rtol=1e-12)


def test_output_outside_input_is_nan():
    wave_out = np.array([3990.0, 4000.0, 5000.0, INPUT_WAVE[-1], 7000.0])
    out = degrade(
        INPUT_WAVE, np.ones(INPUT_WAVE.size), resolution=1000.0, wave_out=wave_out, input_resolution=2000.0
    )
    np.testing.assert_array_equal(np.isnan(out), [True, False, False, False, True])


def test_single_and_multi_star_shapes():
    f = np.ones(INPUT_WAVE.size)
    assert degrade(INPUT_WAVE, f, resolution=200.0, wave_out=OUTPUT_WAVE).shape == (574,)
    assert degrade(INPUT_WAVE, np.stack([f, f, f]), resolution=200.0, wave_out=OUTPUT_WAVE).shape == (3, 574)


# ---------------------------------------------------------------- errors


def test_degrade_error_analytic_white_noise():
    # input step 2e-6 << sigma/8, so the weights are the normalized Gaussian samples:
    # sum w^2 = step / (2 sqrt(pi) sigma) for a Gaussian of width sigma sampled at step
    e = 0.1
    sigma = lsf_sigma(2000.0)
    out = degrade_error(FINE, np.full(FINE.size, e), resolution=2000.0, wave_out=MEASURE)
    expected = e * math.sqrt(2e-6 / (2 * math.sqrt(math.pi) * sigma))
    np.testing.assert_allclose(out, expected, rtol=0.01)


def test_degrade_error_matches_monte_carlo():
    rng = np.random.default_rng(11)
    wave = log_wave_grid(5000.0, 300, ln_step=1e-4)
    err = rng.uniform(0.05, 0.2, size=wave.size)
    wave_out = log_wave_grid(5050.0, 40, ln_step=5e-4)
    predicted = degrade_error(wave, err, resolution=1000.0, wave_out=wave_out, input_resolution=10000.0)
    noise = rng.standard_normal((8000, wave.size)) * err
    realized = degrade(wave, 1.0 + noise, resolution=1000.0, wave_out=wave_out, input_resolution=10000.0)
    np.testing.assert_allclose(realized.std(axis=0), predicted, rtol=0.05)
    assert np.mean(realized.std(axis=0) / predicted) == pytest.approx(1.0, abs=0.015)


def test_degrade_error_negative_raises():
    e = np.full(INPUT_WAVE.size, 0.1)
    e[3] = -0.1
    with pytest.raises(ValueError, match="negative"):
        degrade_error(INPUT_WAVE, e, resolution=200.0, wave_out=OUTPUT_WAVE)


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_unmasked_non_finite_flux_raises(bad):
    f = np.ones(INPUT_WAVE.size)
    f[10] = bad
    with pytest.raises(ValueError, match="NaN/inf"):
        degrade(INPUT_WAVE, f, resolution=200.0, wave_out=OUTPUT_WAVE)


def test_wrong_length_and_bad_grids_raise():
    with pytest.raises(ValueError, match="must match wave"):
        degrade(INPUT_WAVE, np.ones(INPUT_WAVE.size - 1), resolution=200.0, wave_out=OUTPUT_WAVE)
    with pytest.raises(ValueError, match="strictly increasing"):
        degrade(INPUT_WAVE[::-1], np.ones(INPUT_WAVE.size), resolution=200.0, wave_out=OUTPUT_WAVE)
    with pytest.raises(ValueError, match="strictly increasing"):
        degrade(INPUT_WAVE, np.ones(INPUT_WAVE.size), resolution=200.0, wave_out=OUTPUT_WAVE[::-1])
    with pytest.raises(ValueError, match="one input grid"):
        degrade(
            np.stack([INPUT_WAVE, INPUT_WAVE]),
            np.ones((2, INPUT_WAVE.size)),
            resolution=200.0,
            wave_out=OUTPUT_WAVE,
        )
    with pytest.raises(ValueError, match="mask has shape"):
        degrade(
            INPUT_WAVE,
            np.ones(INPUT_WAVE.size),
            resolution=200.0,
            wave_out=OUTPUT_WAVE,
            mask=np.zeros(5, bool),
        )


def _fwhm(wave, depth):
    """FWHM of an absorption profile by linear interpolation of the half-depth crossings."""
    half = depth.max() / 2.0
    i = int(np.argmax(depth))
    left = np.flatnonzero(depth[:i] < half)[-1]
    right = i + np.flatnonzero(depth[i:] < half)[0]
    x_left = np.interp(half, [depth[left], depth[left + 1]], [wave[left], wave[left + 1]])
    x_right = np.interp(half, [depth[right], depth[right - 1]], [wave[right], wave[right - 1]])
    return x_right - x_left


def _broadened_line(centre, fwhm_angstrom):
    wave = np.exp(np.arange(np.log(centre - 60), np.log(centre + 60), 2e-6))
    sigma = fwhm_angstrom / FWHM_PER_SIGMA
    return wave, 1.0 - 0.5 * np.exp(-0.5 * ((wave - centre) / sigma) ** 2)


def test_input_fwhm_degrades_a_constant_fwhm_library_to_the_target_resolution():
    # a line already of FWHM 2.5 A (MILES) at 6000 A: R_in = 2400 > 2000, the result has FWHM 6000/2000
    wave, flux = _broadened_line(6000.0, 2.5)
    fine = np.exp(np.arange(np.log(5970), np.log(6030), 2e-6))
    out = degrade(wave, flux, resolution=2000, wave_out=fine, input_fwhm=2.5)
    assert _fwhm(fine, 1.0 - out) == pytest.approx(3.0, rel=0.02)
    from lamost2csst.core.lsf import degradation_operator

    assert not degradation_operator(wave, resolution=2000, wave_out=fine, input_fwhm=2.5).coarser.any()


def test_input_fwhm_coarser_than_target_is_flagged_and_not_smoothed_further():
    # at 4000 A a 2.5 A FWHM is R = 1600 < 2000: nothing to degrade, flagged
    from lamost2csst.core.lsf import degradation_operator

    wave, flux = _broadened_line(4000.0, 2.5)
    fine = np.exp(np.arange(np.log(3980), np.log(4020), 2e-6))
    op = degradation_operator(wave, resolution=2000, wave_out=fine, input_fwhm=2.5)
    assert op.coarser.all()
    out = degrade(wave, flux, resolution=2000, wave_out=fine, input_fwhm=2.5)
    assert _fwhm(fine, 1.0 - out) == pytest.approx(2.5, rel=0.01)


def test_coverage_is_the_kernel_fraction_inside_the_input():
    from lamost2csst.core.lsf import degradation_operator

    wave = np.exp(np.arange(np.log(5000), np.log(6000), 1e-5))
    sigma_angstrom = 5500.0 / 200 / FWHM_PER_SIGMA
    out_wave = np.array([wave[0], 5500.0, wave[-1]])
    op = degradation_operator(wave, resolution=200, wave_out=out_wave)
    assert op.coverage[1] == pytest.approx(1.0, abs=1e-6)
    # a centre on the first or last input pixel sees half of its Gaussian
    assert op.coverage[0] == pytest.approx(0.5, abs=0.01)
    assert op.coverage[2] == pytest.approx(0.5, abs=0.01)
    assert sigma_angstrom > 10  # the test is about a wide kernel
