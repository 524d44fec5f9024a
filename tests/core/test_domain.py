"""The domain check's kernels against hand numbers and brute-force sums."""

import numpy as np
import pytest

from lamost2csst.core.domain import (
    MIN_BINS,
    DomainTemplates,
    bin_spectra,
    check_spectra,
    domain_outside,
    estimate_domain,
    spectrum_color,
    template_chi2,
)


def test_bin_spectra_averages_whole_bins_and_drops_bins_with_a_bad_pixel():
    flux = np.array([[1.0, 3.0, 2.0, 4.0, 5.0, 7.0, 9.0]])  # 7 px -> 3 bins of 2, the last pixel dropped
    error = np.array([[3.0, 4.0, 1.0, 1.0, 1.0, 1.0, 1.0]])
    mask = np.array([[False, False, False, False, True, False, False]])
    fb, eb, usable = bin_spectra(flux, error=error, mask=mask, pixels_per_bin=2)
    np.testing.assert_array_equal(usable, [[True, True, False]])
    np.testing.assert_allclose(fb[0, :2], [2.0, 3.0])
    np.testing.assert_allclose(eb[0, :2], [5.0 / 2, np.sqrt(2.0) / 2])  # error of the mean
    assert np.isnan(fb[0, 2]) and np.isnan(eb[0, 2])
    _, _, usable = bin_spectra(np.array([[1.0, np.nan, 1.0, 1.0]]), pixels_per_bin=2)
    np.testing.assert_array_equal(usable, [[False, True]])
    with pytest.raises(ValueError, match="pixels_per_bin"):
        bin_spectra(flux, pixels_per_bin=0)


def test_template_chi2_equals_the_direct_sum():
    rng = np.random.default_rng(3)
    x = 1.0 + 0.1 * rng.standard_normal((4, 30))
    e = 0.02 + 0.01 * rng.random((4, 30))
    usable = rng.random((4, 30)) > 0.2
    t = 1.0 + 0.1 * rng.standard_normal((5, 30))
    floor = 0.01
    xb, eb = np.where(usable, x, np.nan), np.where(usable, e, np.nan)
    got = template_chi2(xb, eb, usable, templates=t, floor=floor)
    for i in range(4):
        for k in range(5):
            u = usable[i]
            want = np.sum((x[i, u] - t[k, u]) ** 2 / (e[i, u] ** 2 + floor**2))
            assert got[i, k] == pytest.approx(want, rel=1e-5)  # float32 products


def _templates(teffs, n_bin=40, ppb=1, quantization=0.0):
    # template k: a line of depth proportional to k at bin k (distinct, known spectra)
    flux = np.ones((len(teffs), n_bin))
    for k in range(len(teffs)):
        flux[k, k] = 1.0 - 0.1 * (k + 1)
    teff = np.asarray(teffs, float)
    return DomainTemplates(flux=flux, teff=teff, pixels_per_bin=ppb, quantization=quantization)


def test_estimate_recovers_an_exact_template_and_a_zero_chi2():
    tmpl = _templates([4000.0, 6000.0, 9000.0])
    flux = tmpl.flux[[1, 2]]
    est = estimate_domain(flux, np.full(flux.shape, 1e-4), templates=tmpl, floor=0.0)
    np.testing.assert_allclose(est.teff, [6000.0, 9000.0], rtol=1e-6)
    np.testing.assert_allclose(est.chi2, 0.0, atol=1e-6)
    np.testing.assert_array_equal(est.n_bins, [40, 40])


def test_two_equally_good_templates_give_their_geometric_mean_and_half_the_log_spread():
    # the star sits half way between templates 0 and 1: equal chi2 for both, far from template 2
    tmpl = _templates([5000.0, 8000.0, 20000.0])
    star = 0.5 * (tmpl.flux[0] + tmpl.flux[1])
    # errors so that chi2 to templates 0 and 1 is 1 per template (tiny) and template 2 is far off
    est = estimate_domain(star[None, :], np.full((1, 40), 0.05), templates=tmpl, floor=0.0)
    assert est.teff[0] == pytest.approx(np.sqrt(5000.0 * 8000.0), rel=1e-4)
    # weights 1/2, 1/2 on ln T: standard deviation = half the difference of the logs
    assert est.teff_error[0] / est.teff[0] == pytest.approx(0.5 * np.log(8000.0 / 5000.0), rel=1e-3)


def test_quantization_adds_in_quadrature_and_a_poor_fit_widens_the_weights():
    tmpl = _templates([5000.0, 8000.0], quantization=0.03)
    est = estimate_domain(tmpl.flux[:1], np.full((1, 40), 1e-4), templates=tmpl, floor=0.0)
    assert est.teff_error[0] / est.teff[0] == pytest.approx(0.03, rel=1e-6)
    # a star unlike both: best reduced chi2 >> 1 stretches the weights (both templates count)
    odd = np.ones((1, 40))
    odd[0, 20:] = 1.5
    sharp = estimate_domain(odd, np.full((1, 40), 0.01), templates=_templates([5000.0, 8000.0]), floor=0.0)
    assert sharp.chi2[0] > 100
    assert 5000.0 < sharp.teff[0] < 8000.0


def test_too_few_usable_bins_give_nan_and_no_decision():
    tmpl = _templates([5000.0, 8000.0])
    mask = np.zeros((2, 40), bool)
    mask[1, : 40 - MIN_BINS + 1] = True  # one bin short of MIN_BINS
    est = estimate_domain(tmpl.flux, np.full((2, 40), 0.01), mask=mask, templates=tmpl)
    assert np.isfinite(est.teff[0]) and np.isnan(est.teff[1]) and np.isnan(est.chi2[1])
    assert est.n_bins[1] == MIN_BINS - 1
    outside = domain_outside(est.teff, est.chi2, teff_range=(5500.0, 9000.0), max_chi2=3.0)
    np.testing.assert_array_equal(outside, [True, False])  # 5000 K is below 5500; NaN is never flagged


def test_domain_outside_by_teff_or_by_chi2():
    outside = domain_outside(
        [4000.0, 6000.0, 6000.0, 12000.0], [1.0, 1.0, 5.0, 1.0], teff_range=(4750.0, 10250.0), max_chi2=3.0
    )
    np.testing.assert_array_equal(outside, [True, False, True, True])


def test_templates_and_spectra_must_agree_in_bins():
    tmpl = _templates([5000.0, 8000.0])
    with pytest.raises(ValueError, match="bins"):
        estimate_domain(np.ones((1, 50)), np.ones((1, 50)), templates=tmpl)
    with pytest.raises(ValueError, match="teff"):
        DomainTemplates(flux=np.ones((2, 5)), teff=[5000.0])


def test_spectrum_color_is_the_log_ratio_of_the_window_means_in_the_rest_frame():
    wave = np.arange(3900.0, 7100.0, 1.0)
    flux = np.where(wave < 5000, 3.0, 1.5)[None, :].repeat(2, axis=0)
    mask = np.zeros(flux.shape, bool)
    mask[1, (wave >= 4000) & (wave < 4400)] = True  # 80 % of the blue window masked: no colour
    got = spectrum_color(wave, flux, mask=mask)
    assert got[0] == pytest.approx(np.log(2.0)) and np.isnan(got[1])
    # a step at 4500 A, observed at z = 0.01: the rest-frame window 4000-4500 A is 4040-4545 A observed
    step = np.where(wave < 4500 * 1.01, 2.0, 1.0)[None, :]
    assert spectrum_color(wave, step, z=0.01)[0] == pytest.approx(np.log(2.0))
    assert spectrum_color(wave, step, z=0.0)[0] == pytest.approx(np.log(2.0))
    assert np.isnan(spectrum_color(wave, -step)[0])


def test_the_colour_penalty_is_one_sided():
    tmpl = DomainTemplates(
        flux=np.ones((2, 40)), teff=[6000.0, 12000.0], pixels_per_bin=1, color=np.array([1.0, 2.0])
    )
    flat = np.ones((3, 40))
    err = np.full((3, 40), 0.01)
    # equal line spectra: the colour decides; a star redder than both (reddened) is never penalized
    est = estimate_domain(flat, err, templates=tmpl, floor=0.0, color=[2.0, 1.0, 0.0], color_error=0.05)
    assert est.teff[0] == pytest.approx(12000.0, rel=1e-6)  # bluer than the 6000 K template by 20 sigma
    assert est.teff[1] == pytest.approx(np.sqrt(6000.0 * 12000.0), rel=1e-6)  # no penalty for either
    assert est.teff[2] == pytest.approx(np.sqrt(6000.0 * 12000.0), rel=1e-6)
    # the penalty is in the chi-square: a star bluer than every template has no good template
    blue = estimate_domain(flat[:1], err[:1], templates=tmpl, floor=0.0, color=[2.5], color_error=0.05)
    assert blue.chi2[0] == pytest.approx((0.5 / 0.05) ** 2 / 40, rel=1e-5)
    with pytest.raises(ValueError, match="templates have none"):
        estimate_domain(flat, err, templates=_templates([5000.0, 8000.0]), color=[1.0, 1.0, 1.0])


def test_check_spectra_is_the_estimate_and_its_decision_under_the_thresholds():
    from lamost2csst.core.flags import FlagThresholds

    tmpl = DomainTemplates(
        flux=np.ones((2, 40)), teff=[6000.0, 12000.0], pixels_per_bin=1, color=np.array([1.0, 2.0])
    )
    thresholds = FlagThresholds(domain_teff_range=(5000.0, 9000.0), domain_color_error=0.05)
    est, outside = check_spectra(
        np.ones((2, 40)), np.full((2, 40), 0.01), color=[2.0, 0.5], templates=tmpl, thresholds=thresholds
    )
    np.testing.assert_allclose(est.teff, [12000.0, np.sqrt(6000.0 * 12000.0)], rtol=1e-6)
    np.testing.assert_array_equal(outside, [True, False])  # 12000 K > 9000; 8485 K inside
