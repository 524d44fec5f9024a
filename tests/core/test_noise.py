"""Noise injection of the paper's Eq. 1: F' = F + r F, r ~ N(0, 1/snr^2), error = F/snr."""

import numpy as np
import pytest

from lamost2csst.core.grids import INPUT_WAVE
from lamost2csst.core.noise import add_noise

N = INPUT_WAVE.size


def _clean(n_star, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return (rng.uniform(0.5, 5.0, size=(n_star, 1)) * rng.uniform(0.3, 1.0, size=(n_star, N))).astype(dtype)


@pytest.mark.parametrize("snr", [20.0, 80.0])
def test_relative_noise_has_std_one_over_snr(snr):
    flux = _clean(200)
    noisy, _ = add_noise(flux, snr=snr, rng=np.random.default_rng(7))
    r = ((noisy - flux) / flux).ravel()
    n = r.size
    sigma = 1.0 / snr
    se_std = sigma / np.sqrt(2 * n)  # standard error of a Gaussian standard deviation
    assert abs(r.std() - sigma) < 4 * se_std
    assert abs(r.mean()) < 4 * sigma / np.sqrt(n)
    # Gaussian: 68.27 % within 1 sigma (binomial standard error)
    frac = np.mean(np.abs(r) < sigma)
    assert abs(frac - 0.682689) < 4 * np.sqrt(0.682689 * 0.317311 / n)


def test_error_equals_flux_over_snr_exactly():
    flux = _clean(4)
    _, err = add_noise(flux, snr=20.0, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(err, flux / 20.0)


def test_per_star_snr_broadcasts():
    flux = _clean(300, seed=1)
    snr = np.repeat([10.0, 40.0, 160.0], 100)
    noisy, err = add_noise(flux, snr=snr, rng=np.random.default_rng(3))
    np.testing.assert_array_equal(err, flux / snr[:, None])
    r = (noisy - flux) / flux
    n = 100 * N
    for k, s in enumerate([10.0, 40.0, 160.0]):
        std = r[100 * k : 100 * (k + 1)].std()
        assert abs(std - 1 / s) < 4 * (1 / s) / np.sqrt(2 * n)


def test_per_star_snr_on_square_array():
    # (n_star, n_pixel) with n_star == n_pixel: one snr per spectrum takes precedence (documented)
    flux = np.ones((4, 4))
    snr = np.array([1.0, 2.0, 4.0, 8.0])
    _, err = add_noise(flux, snr=snr, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(err, np.repeat(1.0 / snr, 4).reshape(4, 4))


def test_per_pixel_snr_broadcasts():
    flux = np.ones((2, N))
    snr = np.linspace(10.0, 100.0, N)
    _, err = add_noise(flux, snr=snr, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(err, np.broadcast_to(1.0 / snr, (2, N)))


def test_same_seed_same_output_different_seed_different():
    flux = _clean(3)
    a, ea = add_noise(flux, snr=30.0, rng=np.random.default_rng(123))
    b, eb = add_noise(flux, snr=30.0, rng=np.random.default_rng(123))
    c, _ = add_noise(flux, snr=30.0, rng=np.random.default_rng(124))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(ea, eb)
    assert np.mean(a == c) < 1e-3


def test_independent_of_global_random_state():
    flux = _clean(2)
    # the legacy global state on purpose: reseeding and drawing from it must not change add_noise's output
    np.random.seed(1)  # noqa: NPY002 - the global state is what this test varies
    a, _ = add_noise(flux, snr=30.0, rng=np.random.default_rng(5))
    np.random.seed(2)  # noqa: NPY002 - (see above)
    np.random.standard_normal(10)  # noqa: NPY002 - advances the global state
    b, _ = add_noise(flux, snr=30.0, rng=np.random.default_rng(5))
    np.testing.assert_array_equal(a, b)


def test_input_not_modified_and_dtype_kept():
    flux = _clean(2, dtype=np.float32)
    before = flux.copy()
    noisy, err = add_noise(flux, snr=30.0, rng=np.random.default_rng(5))
    np.testing.assert_array_equal(flux, before)
    assert noisy.dtype == np.float32 and err.dtype == np.float32
    noisy64, _ = add_noise(np.ones((2, 10), np.int64), snr=30.0, rng=np.random.default_rng(5))
    assert noisy64.dtype == np.float64


@pytest.mark.parametrize("rng", [None, 42, np.random.RandomState(0), np.random])
def test_rng_must_be_generator(rng):
    with pytest.raises(TypeError, match="Generator"):
        add_noise(np.ones(10), snr=10.0, rng=rng)


@pytest.mark.parametrize("snr", [0.0, -5.0, np.nan, np.inf])
def test_bad_snr_raises(snr):
    with pytest.raises(ValueError, match="snr"):
        add_noise(np.ones(10), snr=snr, rng=np.random.default_rng(0))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_flux_raises(bad):
    flux = np.ones(10)
    flux[3] = bad
    with pytest.raises(ValueError, match="finite"):
        add_noise(flux, snr=10.0, rng=np.random.default_rng(0))
