"""Metrics: relative residual (Eq. 2), RMSAE (Eq. 3), Teff bins and per-band statistics (Sect. 4.2)."""

import math

import numpy as np
import pytest

from lamost2csst.core.grids import BANDS, OUTPUT_WAVE, band_pixels
from lamost2csst.core.metrics import (
    SNR_BINS,
    band_statistics,
    relative_residual,
    rmsae,
    teff_bin,
    truth_statistics,
    truth_table,
)

# ---------------------------------------------------------------- relative residual


def test_relative_residual_known_pair():
    pred = np.array([1.1, 0.9, 2.0, 5.0])
    true = np.array([1.0, 1.0, 4.0, 5.0])
    np.testing.assert_allclose(relative_residual(pred, true), [0.1, -0.1, -0.5, 0.0], atol=1e-15)


def test_relative_residual_mask_gives_nan_and_allows_bad_true():
    pred = np.array([[1.2, np.nan, 3.0]])
    true = np.array([[1.0, 0.0, 2.0]])
    out = relative_residual(pred, true, mask=np.array([[False, True, False]]))
    assert np.isnan(out[0, 1])
    np.testing.assert_allclose(out[0, [0, 2]], [0.2, 0.5], rtol=1e-14)


@pytest.mark.parametrize("bad_true", [0.0, -1.0, np.nan, np.inf])
def test_relative_residual_refuses_bad_true(bad_true):
    with pytest.raises(ValueError, match="true SED"):
        relative_residual(np.ones(3), np.array([1.0, bad_true, 1.0]))


def test_relative_residual_refuses_bad_prediction_and_shape():
    with pytest.raises(ValueError, match="predicted SED"):
        relative_residual(np.array([1.0, np.nan]), np.ones(2))
    with pytest.raises(ValueError, match="same shape"):
        relative_residual(np.ones(3), np.ones(4))


# ---------------------------------------------------------------- RMSAE


def test_rmsae_hand_computed():
    r = np.array([0.1, -0.2, 0.2, -0.1])
    assert float(rmsae(r)) == pytest.approx(math.sqrt((0.01 + 0.04 + 0.04 + 0.01) / 4), rel=1e-14)


def test_rmsae_ignores_nan_and_per_row():
    r = np.array([[0.3, np.nan, 0.4], [0.0, 0.0, 0.0], [np.nan, np.nan, np.nan]])
    out = rmsae(r)
    assert out[0] == pytest.approx(math.sqrt((0.09 + 0.16) / 2), rel=1e-14)
    assert out[1] == 0.0
    assert np.isnan(out[2])


def test_rmsae_axis():
    r = np.array([[3.0, 0.0], [4.0, 0.0]])
    np.testing.assert_allclose(rmsae(r, axis=0), [math.sqrt(12.5), 0.0])


def test_rmsae_of_constant_offset():
    # a uniform 2 % offset has RMSAE 0.02
    true = np.linspace(1.0, 2.0, 574)
    assert float(rmsae(relative_residual(1.02 * true, true))) == pytest.approx(0.02, rel=1e-12)


# ---------------------------------------------------------------- Teff bins


@pytest.mark.parametrize(
    "teff, centre",
    [
        (5875.0, 6000.0),
        (6000.0, 6000.0),
        (6124.9, 6000.0),
        (6125.0, 6250.0),
        (5874.9, 5750.0),
        (8000.0, 8000.0),
        (3500.0, 3500.0),
        (7874.99, 7750.0),
    ],
)
def test_teff_bin_edges(teff, centre):
    assert float(teff_bin(teff)) == centre


def test_teff_bin_vectorized():
    np.testing.assert_array_equal(teff_bin([5875.0, 6124.9, 6125.0]), [6000.0, 6000.0, 6250.0])


# ---------------------------------------------------------------- band statistics

A = {"GU": 0.04, "GV": 0.002, "GI": 0.003}  # per-pixel std over stars, per band
OFF = {"GU": 0.01, "GV": -0.001, "GI": 0.0005}  # per-pixel median over stars, per band


def _band_residuals(n_star, scale=1.0):
    """Residuals r[star, pixel] = offset(band) + (-1)^star a(band) on OUTPUT_WAVE.

    Pixels in only one band carry that band's values; the overlap pixels (4000-4200 and
    6200-6500 A, ~20 px each) carry values from the neighbouring band, a minority of each
    band's ~190-200 px, so the per-band median is the band's own value.
    """
    w = OUTPUT_WAVE
    region = np.where(w < 4100.0, "GU", np.where(w < 6350.0, "GV", "GI"))
    a = np.array([A[b] for b in region]) * scale
    off = np.array([OFF[b] for b in region]) * scale
    sign = np.where(np.arange(n_star) % 2 == 0, 1.0, -1.0)[:, None]
    return off[None, :] + sign * a[None, :]


def test_band_statistics_analytic():
    r6000 = _band_residuals(6)
    r8000 = _band_residuals(4, scale=0.5)
    single = _band_residuals(1)  # lone star in the 7000 K bin: left out (min_stars=2)
    residual = np.vstack([r6000, r8000, single])
    teff = np.array([5900.0, 6100.0, 5875.0, 6124.9, 6000.0, 5950.0, 7900.0, 8100.0, 8000.0, 7875.0, 7000.0])
    stats = band_statistics(residual, wave=OUTPUT_WAVE, teff=teff)
    np.testing.assert_array_equal(stats.teff_bin, [6000.0, 8000.0])
    np.testing.assert_array_equal(stats.n_star, [6, 4])
    assert stats.bands == ("GU", "GV", "GI")
    np.testing.assert_allclose(stats.typical_error[0], [A["GU"], A["GV"], A["GI"]], rtol=1e-12)
    np.testing.assert_allclose(stats.offset[0], [OFF["GU"], OFF["GV"], OFF["GI"]], rtol=1e-12)
    np.testing.assert_allclose(stats.typical_error[1], [0.5 * A[b] for b in ("GU", "GV", "GI")], rtol=1e-12)
    np.testing.assert_allclose(stats.offset[1], [0.5 * OFF[b] for b in ("GU", "GV", "GI")], rtol=1e-12)
    rows = stats.as_rows()
    assert rows[0]["teff_bin"] == 6000.0 and rows[0]["n_star"] == 6
    assert rows[0]["error_GV"] == pytest.approx(A["GV"], rel=1e-12)
    assert rows[1]["offset_GI"] == pytest.approx(0.5 * OFF["GI"], rel=1e-12)


def test_band_statistics_custom_bands_and_nan_pixels():
    wave = np.array([1.0, 2.0, 3.0, 4.0])
    # per pixel over 4 stars: values {-1, 1, -1, 1} * a_pixel + off_pixel
    a = np.array([1.0, 2.0, 3.0, 4.0])
    off = np.array([0.5, 0.5, 0.0, 0.0])
    sign = np.array([1.0, -1.0, 1.0, -1.0])[:, None]
    residual = off + sign * a
    residual[:, 3] = np.nan  # an all-NaN pixel is left out of the band median
    stats = band_statistics(
        residual,
        wave=wave,
        teff=np.full(4, 5000.0),
        bands={"blue": (1.0, 2.0), "red": (3.0, 4.0), "none": (9, 10)},
    )
    np.testing.assert_allclose(stats.typical_error[0, :2], [1.5, 3.0], rtol=1e-14)
    np.testing.assert_allclose(stats.offset[0, :2], [0.5, 0.0], atol=1e-15)
    assert np.isnan(stats.typical_error[0, 2]) and np.isnan(stats.offset[0, 2])


def test_band_statistics_std_is_over_stars_with_nan_stars_ignored():
    # per-pixel std over stars of {0, 0, 3, NaN}: population std of (0, 0, 3) = sqrt(2)
    residual = np.array([[0.0], [0.0], [3.0], [np.nan]])
    stats = band_statistics(residual, wave=np.array([5000.0]), teff=np.full(4, 6000.0), bands={"x": (0, 1e4)})
    assert stats.typical_error[0, 0] == pytest.approx(math.sqrt(2.0), rel=1e-14)
    assert stats.offset[0, 0] == 0.0


def test_band_statistics_shape_mismatch_raises():
    with pytest.raises(ValueError, match="must be"):
        band_statistics(np.zeros((3, 574)), wave=OUTPUT_WAVE, teff=np.zeros(4))
    with pytest.raises(ValueError, match="must be"):
        band_statistics(np.zeros((3, 573)), wave=OUTPUT_WAVE, teff=np.zeros(3))


def test_calibration_statistics_of_gaussian_residuals():
    from scipy.stats import norm

    from lamost2csst.core.metrics import calibration_statistics

    rng = np.random.default_rng(4)
    n = 3000
    teff = np.where(np.arange(n) < n // 2, 6000.0, 8000.0)
    sigma = np.full((n, OUTPUT_WAVE.size), 0.02)
    true_std = np.where(teff[:, None] == 6000.0, 0.02, 0.04)  # 8000 K: sigma too small by 2x
    residual = rng.normal(0, 1, sigma.shape) * true_std
    stats = calibration_statistics(residual, sigma, wave=OUTPUT_WAVE, teff=teff)
    np.testing.assert_array_equal(stats.teff_bin, [6000.0, 8000.0])
    np.testing.assert_allclose(stats.within_1sigma[0], norm.cdf(1) - norm.cdf(-1), atol=0.005)
    np.testing.assert_allclose(stats.within_1sigma[1], norm.cdf(0.5) - norm.cdf(-0.5), atol=0.005)
    np.testing.assert_allclose(stats.std_z[0], 1.0, rtol=0.01)
    np.testing.assert_allclose(stats.std_z[1], 2.0, rtol=0.01)
    one = calibration_statistics(residual[: n // 2], sigma[: n // 2], wave=OUTPUT_WAVE)
    assert np.isnan(one.teff_bin[0]) and one.n_star[0] == n // 2
    with pytest.raises(ValueError, match="sigma must be > 0"):
        calibration_statistics(residual, np.zeros_like(sigma), wave=OUTPUT_WAVE)


# ---------------------------------------------------------------- truth statistics (catalogue job summary)


def _truth_block():
    """Four stars, two pixels: two good stars at S/N 15, one flagged LOW_SNR, one NO_DATA."""
    from lamost2csst.core.flags import Flag

    sed = np.array([[1.5, 3.0], [0.5, 2.0], [1.25, np.nan], [np.nan, np.nan]], np.float32)
    sed_true = np.array([[1.0, 2.0]] * 4)
    sigma = np.array([[0.6, 0.4], [0.4, 0.1], [0.3, 0.3], [np.nan, np.nan]], np.float32)
    flags = np.array([0, 0, Flag.LOW_SNR, Flag.NO_DATA], np.uint16)
    snr = np.array([15.0, 15.0, 5.0, 50.0])
    return sed, sigma, flags, sed_true, snr


def test_truth_statistics_hand_numbers():
    # residuals r = sed / sed_true - 1: star 0 (0.5, 0.5), star 1 (-0.5, 0), star 2 (0.25, NaN), star 3 unused
    stats = truth_statistics(*_truth_block())
    assert set(stats) == {"n", "sum", "sumsq", "within"}
    assert all(v.shape == (6, 2) for v in stats.values())
    # group 1 = S/N 10-20: stars 0 and 1; within = |r| < sigma: (T, F) and (F, T)
    np.testing.assert_array_equal(stats["n"][1], [2, 2])
    np.testing.assert_allclose(stats["sum"][1], [0.0, 0.5], atol=1e-15)
    np.testing.assert_allclose(stats["sumsq"][1], [0.5, 0.25], rtol=1e-15)
    np.testing.assert_array_equal(stats["within"][1], [1, 1])
    # group 5 = predicted but flagged: star 2, its NaN pixel not counted
    np.testing.assert_array_equal(stats["n"][5], [1, 0])
    np.testing.assert_allclose(stats["sum"][5], [0.25, 0.0])
    np.testing.assert_allclose(stats["sumsq"][5], [0.0625, 0.0])
    np.testing.assert_array_equal(stats["within"][5], [1, 0])
    # the NO_DATA star (S/N 50, group 3) counts nowhere; the other groups stay empty
    for g in (0, 2, 3, 4):
        assert not any(stats[k][g].any() for k in stats)


@pytest.mark.parametrize(
    "snr, group", [(0.0, 0), (9.99, 0), (10.0, 1), (39.9, 2), (40.0, 3), (80.0, 4), (1e6, 4), (np.nan, 0)]
)
def test_truth_statistics_snr_bin_edges(snr, group):
    assert SNR_BINS == (0.0, 10.0, 20.0, 40.0, 80.0, np.inf)
    stats = truth_statistics(
        np.array([[2.0]], np.float32),
        np.array([[1.0]], np.float32),
        np.array([0], np.uint16),
        np.array([[1.0]]),
        np.array([snr]),
    )
    assert np.flatnonzero(stats["n"][:, 0]).tolist() == [group]


def test_truth_statistics_without_snr_put_good_stars_in_the_first_bin():
    sed, sigma, flags, sed_true, _ = _truth_block()
    stats = truth_statistics(sed, sigma, flags, sed_true)
    np.testing.assert_array_equal(stats["n"][:, 0], [2, 0, 0, 0, 0, 1])


def test_truth_statistics_add_up_over_chunks():
    rng = np.random.default_rng(3)
    sed_true = rng.uniform(1, 2, (40, 5))
    sed = (sed_true * rng.normal(1, 0.05, sed_true.shape)).astype(np.float32)
    sigma = np.full(sed.shape, 0.05, np.float32)
    flags = rng.choice(np.array([0, 0, 0, 8, 1], np.uint16), 40)
    snr = rng.uniform(0, 120, 40)
    whole = truth_statistics(sed, sigma, flags, sed_true, snr)
    parts = (slice(0, 17), slice(17, 40))
    halves = [truth_statistics(sed[s], sigma[s], flags[s], sed_true[s], snr[s]) for s in parts]
    for key in whole:
        np.testing.assert_allclose(halves[0][key] + halves[1][key], whole[key], rtol=1e-12, atol=1e-15)


def test_truth_table_hand_numbers():
    # group 2 (S/N 20-40): residuals (0, 0.1, 0.2) on every pixel -> mean 0.1, sample std 0.1, 2 of 3 within;
    # in the GV band's pixels twice that -> mean 0.2, std 0.2. Group 0 has one star: too few for its own row.
    n_wave = OUTPUT_WAVE.size
    stats = {k: np.zeros((6, n_wave)) for k in ("n", "sum", "sumsq", "within")}
    gv = band_pixels(OUTPUT_WAVE, BANDS["GV"])
    scale = np.where(gv, 2.0, 1.0)
    stats["n"][2], stats["sum"][2] = 3.0, 0.3 * scale
    stats["sumsq"][2], stats["within"][2] = 0.05 * scale**2, 2.0
    stats["n"][0], stats["sum"][0], stats["sumsq"][0], stats["within"][0] = 1.0, 0.0, 0.0, 1.0
    rows = {row["snr"]: row for row in truth_table(stats)}
    assert list(rows) == ["20-40", "all ok", "all predicted"]
    row = rows["20-40"]
    assert row["n_star"] == 3
    assert row["error_GU"] == row["error_GI"] == pytest.approx(0.1, abs=1e-12)
    assert row["error_GV"] == pytest.approx(0.2, abs=1e-12)
    assert row["offset_GU"] == pytest.approx(0.1) and row["offset_GV"] == pytest.approx(0.2)
    assert row["within_1sigma_GU"] == 0.667
    # "all ok" adds the lone group-0 star (r = 0): 4 stars (0, 0, 0.1, 0.2) -> mean 0.075, std sqrt(0.0091667)
    assert rows["all ok"]["n_star"] == 4
    expected = round(math.sqrt((0.05 - 4 * 0.075**2) / 3), 5)
    assert rows["all ok"]["error_GU"] == pytest.approx(expected, abs=1e-12)
    assert rows["all ok"]["within_1sigma_GU"] == 0.75
    assert rows["all predicted"] == {**rows["all ok"], "snr": "all predicted"}
