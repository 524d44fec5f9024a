"""Continuum (51-px centred moving average, truncated at the ends) and normalization (paper Sect. 2.1)."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lamost2csst.core.grids import INPUT_WAVE
from lamost2csst.core.normalization import continuum, normalize

N = INPUT_WAVE.size  # 2238
PIX = np.arange(N)


def brute_force_continuum(flux, mask=None, half=25):
    """Independent reference: explicit slice per pixel, masked pixels out of sum and count."""
    flux = np.asarray(flux, dtype=np.float64)
    good = np.ones(flux.shape, bool) if mask is None else ~np.asarray(mask, bool)
    out = np.full(flux.shape, np.nan)
    n = flux.shape[-1]
    for idx in np.ndindex(flux.shape[:-1]):
        for i in range(n):
            sl = slice(max(i - half, 0), min(i + half, n - 1) + 1)
            g = good[idx][sl]
            if g.any():
                out[idx + (i,)] = flux[idx][sl][g].sum() / g.sum()
    return out


# ---------------------------------------------------------------- linear spectrum


@pytest.mark.parametrize("a, b", [(100.0, 0.05), (3.0, -1e-3), (5e4, 7.3), (2e-17, 3e-20)])
def test_linear_spectrum_normalizes_to_one_float64(a, b):
    flux = a + b * PIX
    norm, err = normalize(flux)
    assert err is None
    assert norm.dtype == np.float64
    np.testing.assert_allclose(norm[25:2213], 1.0, rtol=0, atol=1e-12)


@pytest.mark.parametrize("a, b", [(100.0, 0.05), (3.0, -1e-3), (5e4, 7.3)])
def test_linear_spectrum_normalizes_to_one_float32(a, b):
    flux = (a + b * PIX).astype(np.float32)
    norm, _ = normalize(flux)
    assert norm.dtype == np.float32
    np.testing.assert_allclose(norm[25:2213], 1.0, rtol=0, atol=1e-6)


def test_linear_spectrum_edges_are_not_one():
    # At the ends the truncated window is one-sided: pixel 0 continuum = a + 12.5 b.
    a, b = 100.0, 0.05
    norm, _ = normalize(a + b * PIX)
    assert norm[0] == pytest.approx(a / (a + 12.5 * b), rel=1e-13)
    # last pixel: mean of the last 26 pixels = a + b (2237 - 12.5)
    assert norm[-1] == pytest.approx((a + b * 2237) / (a + b * (2237 - 12.5)), rel=1e-13)
    # pixel 24 has 24 px on its left: window 0..49, centre 24.5
    assert norm[24] == pytest.approx((a + 24 * b) / (a + 24.5 * b), rel=1e-13)
    assert norm[25] == pytest.approx(1.0, abs=1e-13)


# ---------------------------------------------------------------- edge rule by hand


@pytest.fixture
def random_flux():
    return np.random.default_rng(42).uniform(0.5, 2.0, size=N)


def test_edge_rule_hand_computed(random_flux):
    f = random_flux
    c = continuum(f)
    assert c[0] == pytest.approx(f[0:26].mean(), rel=1e-13)
    assert c[3] == pytest.approx(f[0:29].mean(), rel=1e-13)
    assert c[25] == pytest.approx(f[0:51].mean(), rel=1e-13)
    assert c[1000] == pytest.approx(f[975:1026].mean(), rel=1e-13)
    assert c[2212] == pytest.approx(f[2187:2238].mean(), rel=1e-13)
    assert c[2213] == pytest.approx(f[2188:2238].mean(), rel=1e-13)
    assert c[-1] == pytest.approx(f[-26:].mean(), rel=1e-13)


def test_edge_rule_with_masked_pixels_hand_computed(random_flux):
    f = random_flux.copy()
    mask = np.zeros(N, bool)
    mask[[1, 10, 28, 29, 40, 1000, 2230]] = True
    f[10] = np.nan  # masked NaN must be accepted
    c = continuum(f, mask=mask)
    # pixel 0: window 0..25 without 1 and 10 -> 24 pixels
    sl = f[0:26]
    keep = np.ones(26, bool)
    keep[[1, 10]] = False
    assert c[0] == pytest.approx(sl[keep].sum() / 24, rel=1e-13)
    # pixel 3: window 0..28 without 1, 10, 28 -> 26 pixels
    sl = f[0:29]
    keep = np.ones(29, bool)
    keep[[1, 10, 28]] = False
    assert c[3] == pytest.approx(sl[keep].sum() / 26, rel=1e-13)
    # pixel 1000: window 975..1025 without 1000 -> 50 pixels (value at a masked pixel is still defined)
    sl = f[975:1026]
    assert c[1000] == pytest.approx((sl.sum() - f[1000]) / 50, rel=1e-13)
    # last pixel: window 2212..2237 without 2230 -> 25 pixels
    sl = f[2212:2238]
    assert c[-1] == pytest.approx((sl.sum() - f[2230]) / 25, rel=1e-13)
    # far from masks: plain mean
    assert c[500] == pytest.approx(f[475:526].mean(), rel=1e-13)


def test_all_masked_window_gives_nan_continuum():
    f = np.ones(200)
    mask = np.zeros(200, bool)
    mask[50:150] = True  # pixel 100 has no usable pixel within +-25
    c = continuum(f, mask=mask)
    assert np.isnan(c[100])
    assert np.all(np.isnan(c[75:125]))
    assert np.all(np.isfinite(c[:75])) and np.all(np.isfinite(c[125:]))
    np.testing.assert_allclose(c[np.isfinite(c)], 1.0, rtol=1e-13)


def test_small_window_hand_computed():
    f = np.array([1.0, 2.0, 4.0, 8.0, 16.0])
    c = continuum(f, window=3)
    np.testing.assert_allclose(c, [1.5, 7 / 3, 14 / 3, 28 / 3, 12.0], rtol=1e-14)
    c = continuum(f, window=3, mask=np.array([False, False, True, False, False]))
    np.testing.assert_allclose(c, [1.5, 1.5, 5.0, 12.0, 12.0], rtol=1e-14)


@pytest.mark.parametrize("window", [0, -3, 50])
def test_bad_window_raises(window):
    with pytest.raises(ValueError, match="odd"):
        continuum(np.ones(100), window=window)


def test_continuum_is_vectorized_over_stars():
    rng = np.random.default_rng(1)
    f = rng.uniform(1.0, 3.0, size=(2, 3, 120))
    mask = rng.random(f.shape) < 0.2
    np.testing.assert_allclose(continuum(f, mask=mask), brute_force_continuum(f, mask), rtol=1e-12)


def test_continuum_dtypes():
    assert continuum(np.ones(60, np.float32)).dtype == np.float32
    assert continuum(np.ones(60, np.int64)).dtype == np.float64
    assert continuum(np.ones(60, np.float64)).dtype == np.float64


# ---------------------------------------------------------------- normalize


def test_normalize_error_is_divided_by_continuum(random_flux):
    f = random_flux
    e = 0.01 * f
    norm, nerr = normalize(f, e)
    assert norm[100] == pytest.approx(f[100] / f[75:126].mean(), rel=1e-13)
    assert nerr[100] == pytest.approx(e[100] / f[75:126].mean(), rel=1e-13)
    assert nerr[0] == pytest.approx(e[0] / f[0:26].mean(), rel=1e-13)


def test_normalize_multi_star():
    rng = np.random.default_rng(3)
    f = rng.uniform(1.0, 3.0, size=(3, N))
    norm, _ = normalize(f)
    assert norm.shape == (3, N)
    for k in range(3):
        assert norm[k, 0] == pytest.approx(f[k, 0] / f[k, :26].mean(), rel=1e-13)
        assert norm[k, 700] == pytest.approx(f[k, 700] / f[k, 675:726].mean(), rel=1e-13)


def test_normalize_masked_pixels_are_nan_and_excluded(random_flux):
    f = random_flux.copy()
    mask = np.zeros(N, bool)
    mask[[300, 301, 900]] = True
    f[300] = np.nan
    f[900] = np.inf
    e = np.full(N, 0.05)
    norm, nerr = normalize(f, e, mask=mask)
    assert np.all(np.isnan(norm[mask])) and np.all(np.isnan(nerr[mask]))
    assert np.all(np.isfinite(norm[~mask])) and np.all(np.isfinite(nerr[~mask]))
    sl = f[285:336]
    keep = np.ones(51, bool)
    keep[[15, 16]] = False  # pixels 300, 301
    assert norm[310] == pytest.approx(f[310] / sl[keep].mean(), rel=1e-13)


def test_infinite_error_acts_as_mask(random_flux):
    f = random_flux.copy()
    e = np.full(N, 0.05)
    e[[400, 2237]] = np.inf
    f[400] = np.nan  # no information there; must be accepted
    norm, nerr = normalize(f, e)
    assert np.isnan(norm[400]) and np.isnan(nerr[400])
    assert np.isnan(norm[2237]) and np.isnan(nerr[2237])
    assert np.isfinite(norm[[399, 401, 2236]]).all()
    sl = f[376:427]  # window of pixel 401, pixel 400 (NaN) left out of sum and count
    assert norm[401] == pytest.approx(f[401] / (np.nansum(sl) / 50), rel=1e-13)
    assert norm[2236] == pytest.approx(f[2236] / f[2211:2237].mean(), rel=1e-13)


def test_non_positive_continuum_gives_nan():
    f = np.ones(N)
    f[1000:1200] = -1.0
    norm, _ = normalize(f)
    assert np.all(np.isnan(norm[1050:1150]))  # continuum -1 there
    assert np.all(np.isfinite(norm[:900]))


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("n", [2237, 2239, 574])
def test_normalize_wrong_length_raises(n):
    with pytest.raises(ValueError, match="2238"):
        normalize(np.ones(n))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_unmasked_non_finite_flux_raises(bad):
    f = np.ones(N)
    f[123] = bad
    with pytest.raises(ValueError, match="NaN/inf"):
        normalize(f)
    with pytest.raises(ValueError, match="NaN/inf"):
        continuum(f)


@pytest.mark.parametrize("bad", [np.nan, -0.1])
def test_bad_error_raises(bad):
    e = np.full(N, 0.1)
    e[5] = bad
    with pytest.raises(ValueError, match="NaN or negative"):
        normalize(np.ones(N), e)


def test_mismatched_shapes_raise():
    with pytest.raises(ValueError, match="error has shape"):
        normalize(np.ones(N), np.ones((2, N)))
    mask = np.zeros((3, N), bool)
    mask[0, 7] = True
    with pytest.raises(ValueError, match="mask has shape"):
        normalize(np.ones((2, N)), mask=mask)
    with pytest.raises(ValueError):  # an all-False mask of the wrong shape is refused too
        normalize(np.ones((2, N)), mask=np.zeros((3, N), bool))


def test_non_numeric_flux_raises():
    with pytest.raises(ValueError, match="numeric"):
        normalize(np.array(["a"] * N))


# ---------------------------------------------------------------- properties


@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(
    n_star=st.integers(1, 5),
    n_pix=st.integers(10, 300),
    seed=st.integers(0, 2**32 - 1),
    mask_fraction=st.floats(0.0, 0.6),
)
def test_continuum_matches_brute_force(n_star, n_pix, seed, mask_fraction):
    rng = np.random.default_rng(seed)
    f = rng.uniform(0.1, 10.0, size=(n_star, n_pix))
    mask = rng.random(f.shape) < mask_fraction
    f[mask] = np.nan  # masked pixels may hold anything
    c = continuum(f, mask=mask)
    assert c.shape == f.shape
    expected = brute_force_continuum(f, mask)
    np.testing.assert_array_equal(np.isnan(c), np.isnan(expected))
    np.testing.assert_allclose(c, expected, rtol=1e-11)


@settings(max_examples=25, deadline=None, derandomize=True)
@given(n_star=st.integers(1, 5), seed=st.integers(0, 2**32 - 1), mask_fraction=st.floats(0.0, 0.5))
def test_normalize_nan_only_on_masked_pixels(n_star, seed, mask_fraction):
    rng = np.random.default_rng(seed)
    f = rng.uniform(0.1, 10.0, size=(n_star, N))
    mask = rng.random(f.shape) < mask_fraction
    norm, _ = normalize(f, mask=mask)
    assert norm.shape == f.shape
    assert np.all(np.isnan(norm[mask]))
    # an unmasked pixel is finite unless its whole window is masked (never, since it is itself usable)
    assert np.all(np.isfinite(norm[~mask]))
    assert np.all(norm[~mask] > 0)


@pytest.mark.parametrize("mask_shape", [(2237,), (3, 2238), (2238,)])
def test_normalize_refuses_mask_of_other_shape(mask_shape):
    flux = np.ones((2, 2238))
    with pytest.raises(ValueError, match="mask has shape"):
        normalize(flux, mask=np.zeros(mask_shape, bool))
