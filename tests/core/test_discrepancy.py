"""Model discrepancy: ML recovery of known (a, b), coverage, extrapolation rule, nested out-of-fold sigma."""

import json

import numpy as np
import pytest

from lamost2csst.core.discrepancy import ModelDiscrepancy, coverage, cross_fitted_sigma, fit_discrepancy
from lamost2csst.core.grids import OUTPUT_WAVE

#: A short piece of the output grid (12 bins of 8 pixels) keeps the fits fast.
WAVE96 = OUTPUT_WAVE[:96]
P1 = 0.6826894921370859  # P(|z| < 1) of a standard normal


def _draw(rng, n_star, n_pixel, a0, b0):
    """Network sigmas log-uniform in 0.002-0.05 (so a and b are both identifiable) and residuals."""
    s = np.exp(rng.uniform(np.log(0.002), np.log(0.05), (n_star, n_pixel)))
    a0 = np.broadcast_to(a0, (n_pixel,))
    b0 = np.broadcast_to(b0, (n_pixel,))
    return rng.normal(0.0, np.sqrt((a0 * s) ** 2 + b0**2)), s


def _fisher_sd(s, a0, b0):
    """Standard deviations of the ML estimates of (a**2, b**2) from the Fisher information.

    One value r ~ N(0, v), v = A s**2 + B: I = 1/2 sum g g^T / v**2 with g = (s**2, 1).
    """
    s2 = s.ravel() ** 2
    v = a0**2 * s2 + b0**2
    g = np.stack([s2, np.ones_like(s2)])
    info = 0.5 * (g / v) @ (g / v).T
    return np.sqrt(np.diag(np.linalg.inv(info)))


@pytest.fixture(scope="module")
def fitted_25():
    rng = np.random.default_rng(11)
    r, s = _draw(rng, 400, WAVE96.size, 2.5, 0.02)
    return fit_discrepancy(r, sigma_net=s, wave=WAVE96), s


def test_fit_recovers_known_scale_and_floor(fitted_25):
    model, s = fitted_25
    assert model.fitted.all()
    for k in range(12):
        cols = slice(8 * k, 8 * k + 8)
        sd_a2, sd_b2 = _fisher_sd(s[:, cols], 2.5, 0.02)
        a, b = model.scale[8 * k], model.floor[8 * k]
        assert np.all(model.scale[cols] == a) and np.all(model.floor[cols] == b)  # one value per bin
        assert abs(a**2 - 2.5**2) < 4.5 * sd_a2
        assert abs(b**2 - 0.02**2) < 4.5 * sd_b2


def test_fit_without_discrepancy_gives_a_1_and_b_0():
    rng = np.random.default_rng(12)
    r, s = _draw(rng, 400, WAVE96.size, 1.0, 0.0)
    model = fit_discrepancy(r, sigma_net=s, wave=WAVE96)
    sd_a2, sd_b2 = _fisher_sd(s[:, :8], 1.0, 0.0)
    assert np.all(model.scale**2 - 1 < 4.5 * sd_a2)
    assert np.all(model.floor**2 < 4.5 * sd_b2)
    assert np.all(model.scale >= 1) and np.all(model.floor >= 0)
    assert 4.5 * sd_b2 < 0.003**2  # the test can tell b = 0 from a floor of 0.3 %


def test_fitted_total_sigma_covers_fresh_draws(fitted_25):
    model, _ = fitted_25
    rng = np.random.default_rng(13)
    r, s = _draw(rng, 400, WAVE96.size, 2.5, 0.02)
    total, sys = model.sigma_parts(s)
    frac = np.mean(np.abs(r) < total)
    # binomial sd of 38,400 values is 0.0024; the fit's own error (12 bins, ~1.5 % in sigma) adds ~0.002
    assert abs(frac - P1) < 0.012
    assert np.mean(np.abs(r) < s) < 0.5  # the network's sigma alone does not cover


def test_extrapolation_and_gaps_follow_the_stated_rules():
    rng = np.random.default_rng(14)
    wave = OUTPUT_WAVE
    a0 = np.where(wave < 4200, 3.0, 1.5)
    b0 = np.where(wave > 6500, 0.01, 0.005)
    r, s = _draw(rng, 60, wave.size, a0, b0)
    has_data = (wave >= 3600) & (wave <= 7400) & ~((wave >= 5000) & (wave <= 5300))
    r[:, ~has_data] = np.nan
    model = fit_discrepancy(r, sigma_net=s, provenance={"library": "synthetic"})

    np.testing.assert_array_equal(model.fitted, has_data)
    inside = np.flatnonzero(has_data)
    blue, red = wave < 3600, wave > 7400
    near_blue = has_data & (wave <= wave[inside[0]] + 1000)
    near_red = has_data & (wave >= wave[inside[-1]] - 1000)
    for values in (model.scale, model.floor):
        np.testing.assert_array_equal(values[blue], values[near_blue].max())
        np.testing.assert_array_equal(values[red], values[near_red].max())
    # the blue edge lies where a0 = 3, the red one where b0 = 0.01: the maxima reflect that
    assert 2.7 < model.scale[0] < 3.3 and 0.008 < model.floor[-1] < 0.012
    # the gap 5000-5300 A: linear in ln(lambda) between the fitted pixels on either side
    gap = np.flatnonzero((wave >= 5000) & (wave <= 5300))
    lo, hi = gap[0] - 1, gap[-1] + 1
    t = (np.log(wave[gap]) - np.log(wave[lo])) / (np.log(wave[hi]) - np.log(wave[lo]))
    for values in (model.scale, model.floor):
        np.testing.assert_allclose(values[gap], (1 - t) * values[lo] + t * values[hi], rtol=1e-12)
    assert model.provenance["library"] == "synthetic"
    assert "1000 A" in model.provenance["extrapolation"]
    assert model.provenance["n_star"] == 60
    assert model.provenance["n_values"] == 60 * has_data.sum()


def test_fit_errors_say_what_is_wrong():
    rng = np.random.default_rng(15)
    r, s = _draw(rng, 20, WAVE96.size, 1.0, 0.0)
    with pytest.raises(ValueError, match="n_star, n_pixel"):
        fit_discrepancy(r, sigma_net=s[:, :-1], wave=WAVE96)
    with pytest.raises(ValueError, match="n_star, n_pixel"):
        fit_discrepancy(r, sigma_net=s)  # 96 pixels on the 574-pixel grid
    bad = s.copy()
    bad[3, 5] = 0.0
    with pytest.raises(ValueError, match="sigma_net is <= 0"):
        fit_discrepancy(r, sigma_net=bad, wave=WAVE96)
    r_masked = r.copy()
    r_masked[3, 5] = np.nan
    fit_discrepancy(r_masked, sigma_net=bad, wave=WAVE96)  # sigma <= 0 only where r is NaN: fine
    with pytest.raises(ValueError, match="no wavelength bin"):
        fit_discrepancy(r[:5], sigma_net=s[:5], wave=WAVE96)  # 5 stars < min_stars = 10


def test_sigma_parts_add_in_quadrature_and_keep_nan():
    model = ModelDiscrepancy(np.array([1.0, 2.0, 1.5]), np.array([0.0, 0.01, 0.03]), np.ones(3, bool))
    net = np.array([[0.01, 0.01, 0.02], [np.nan, 0.005, 0.0]], dtype=np.float32)
    total, sys = model.sigma_parts(net)
    assert total.dtype == np.float32 and sys.dtype == np.float32
    expected = np.sqrt((np.array([1.0, 2.0, 1.5]) * net.astype(float)) ** 2 + np.array([0, 0.01, 0.03]) ** 2)
    np.testing.assert_allclose(total, expected, rtol=1e-6)
    np.testing.assert_allclose(total, np.hypot(net, sys), rtol=1e-6)
    assert np.isnan(total[1, 0]) and np.isnan(sys[1, 0])
    assert np.all(total[np.isfinite(net)] >= net[np.isfinite(net)])
    assert sys[0, 0] == 0 and total[1, 2] == pytest.approx(0.03)
    none_total, none_sys = ModelDiscrepancy.none(3).sigma_parts(net)
    np.testing.assert_array_equal(none_total, net)


def test_model_validation_and_json_round_trip():
    with pytest.raises(ValueError, match="scale >= 1"):
        ModelDiscrepancy(np.array([0.9, 1.0]), np.zeros(2), np.ones(2, bool))
    with pytest.raises(ValueError, match="floor >= 0"):
        ModelDiscrepancy(np.ones(2), np.array([0.0, -0.1]), np.ones(2, bool))
    with pytest.raises(ValueError, match="one 1-D shape"):
        ModelDiscrepancy(np.ones(3), np.zeros(2), np.ones(3, bool))
    with pytest.raises(ValueError, match="pixels"):
        ModelDiscrepancy.none(4).sigma_parts(np.ones((2, 5)))
    with pytest.raises(ValueError, match="lacks"):
        ModelDiscrepancy.from_dict({"scale": [1.0]})
    model = ModelDiscrepancy(
        np.array([1.0, 1.2345678, 3.0]), np.array([0.0, 0.0123456789, 0.5]), [True, False, True], {"k": 5}
    )
    assert model.to_dict()["scale"][1] == 1.23457 and model.to_dict()["floor"][1] == 0.0123457
    back = ModelDiscrepancy.from_dict(json.loads(json.dumps(model.to_dict())))
    np.testing.assert_allclose(back.scale, model.scale, rtol=5e-6)  # 6 significant digits
    np.testing.assert_allclose(back.floor, model.floor, rtol=5e-6)
    np.testing.assert_array_equal(back.fitted, [True, False, True])
    assert back.provenance == {"k": 5}


def test_cross_fitted_sigma_never_uses_a_stars_own_residuals():
    rng = np.random.default_rng(16)
    fold = np.repeat(np.arange(5), 30)
    r, s = _draw(rng, fold.size, WAVE96.size, 1.5, 0.01)
    clean = np.sqrt((1.5 * s) ** 2 + 0.01**2)
    r[fold == 0] *= 30.0  # fold 0 is bad; its own sigma must not learn that
    ml = {"target_coverage": None}  # the likelihood alone reacts to fold 0's size, not just its rank
    total = cross_fitted_sigma(r, sigma_net=s, fold=fold, wave=WAVE96, **ml)
    ratio = total / clean
    assert 0.8 < np.median(ratio[fold == 0]) < 1.25  # fitted on folds 1-4 only: clean
    for k in range(1, 5):
        assert np.median(ratio[fold == k]) > 5  # their fits include fold 0
    alone = fit_discrepancy(r[fold != 0], sigma_net=s[fold != 0], wave=WAVE96, **ml)
    np.testing.assert_array_equal(total[fold == 0], alone.sigma_parts(s[fold == 0])[0])
    with pytest.raises(ValueError, match="one label per star"):
        cross_fitted_sigma(r, sigma_net=s, fold=fold[:-1], wave=WAVE96)
    with pytest.raises(ValueError, match="two folds"):
        cross_fitted_sigma(r, sigma_net=s, fold=np.zeros(fold.size, int), wave=WAVE96)


def test_coverage_per_band_hand_numbers():
    wave = OUTPUT_WAVE
    n_star = 4
    sigma = np.full((n_star, wave.size), 0.02)
    r = np.where(np.arange(n_star)[:, None] % 2 == 0, 0.01, 0.05) * np.ones(wave.size)  # half inside
    r[:, wave > 6200] = np.where(wave[wave > 6200] <= 6300, 0.001, np.nan)  # all inside, NaN above 6300
    out = coverage(r, sigma=sigma)
    # pixels of [lo, hi] on 2500 exp(j / 400): j = ceil(400 ln(lo/2500)) .. floor(400 ln(hi/2500))
    n_pix = {
        b: int(np.floor(400 * np.log(hi / 2500)) - np.ceil(400 * np.log(lo / 2500)) + 1)
        for b, (lo, hi) in {"GU": (2550, 4200), "GV": (4000, 6200)}.items()
    }
    n_gi = int(np.floor(400 * np.log(6300 / 2500)) - np.floor(400 * np.log(6200 / 2500)))
    assert out["GU"] == {"within1sigma": 0.5, "n_values": n_star * n_pix["GU"]}
    assert out["GI"] == {"within1sigma": 1.0, "n_values": n_star * n_gi}
    n_gv_half = n_star * n_pix["GV"]  # GV 4000-6500: half inside up to 6200, all inside above
    n_gv_all = n_star * n_gi
    assert out["GV"]["n_values"] == n_gv_half + n_gv_all
    assert out["GV"]["within1sigma"] == pytest.approx((n_gv_half / 2 + n_gv_all) / (n_gv_half + n_gv_all))
    only_blue = coverage(r, sigma=sigma, pixels=wave < 4000)
    assert np.isnan(only_blue["GI"]["within1sigma"]) and only_blue["GI"]["n_values"] == 0
    assert only_blue["GU"]["within1sigma"] == 0.5


def test_coverage_calibration_fixes_heavy_tails_that_the_likelihood_overcovers():
    """Student-t residuals (3 dof): the Gaussian ML sigma is too wide in the core (|r| < sigma for
    ~80 %); the calibrated one holds 0.683 on fresh draws of the same distribution."""
    from scipy import stats

    rng = np.random.default_rng(21)

    def draw(n):
        s = rng.uniform(0.005, 0.02, size=(n, WAVE96.size))
        return 0.02 * rng.standard_t(3, size=s.shape), s

    r, s = draw(400)
    fresh, s_fresh = draw(4000)
    ml = fit_discrepancy(r, sigma_net=s, wave=WAVE96, target_coverage=None)
    cal = fit_discrepancy(r, sigma_net=s, wave=WAVE96)
    within_ml = np.mean(np.abs(fresh) < ml.sigma_parts(s_fresh)[0])
    within_cal = np.mean(np.abs(fresh) < cal.sigma_parts(s_fresh)[0])
    # t(3) scaled to unit variance has P(|x| < 1) = 2 F(sqrt(3)) - 1 = 0.82 when sigma = std
    assert within_ml > 0.76 and 2 * stats.t.cdf(np.sqrt(3), 3) - 1 > 0.8
    assert abs(within_cal - 0.6827) < 0.02
    assert np.all(cal.scale >= 1) and "rescaled" in cal.provenance["coverage"]


def test_floor_only_is_the_conformal_quantile_of_the_excess_variance():
    rng = np.random.default_rng(5)
    s = np.full((300, WAVE96.size), 0.01)
    r = np.sqrt(0.01**2 + 0.03**2) * rng.standard_normal(s.shape)
    d = fit_discrepancy(r, sigma_net=s, wave=WAVE96, fit_scale=False)
    assert np.all(d.scale == 1) and "floor only" in d.provenance["kind"]
    cols = slice(0, 8)  # first bin: b^2 is the 0.6827 quantile of r^2 - s^2, by hand
    expected = np.sqrt(np.quantile(r[:, cols] ** 2 - s[:, cols] ** 2, 0.6827))
    np.testing.assert_allclose(d.floor[0], expected, rtol=1e-12)
    within = np.mean(np.abs(r) < d.sigma_parts(s)[0])
    assert abs(within - 0.6827) < 0.01


def _two_populations(rng, n):
    """Red stars (colour -0.5) with a 6 % discrepancy, blue ones (+0.5) with 1 %; sigma_net 0.005."""
    from lamost2csst.core.discrepancy import COLOR_WAVES

    blue = rng.random(n) < 0.5
    sed = np.ones((n, OUTPUT_WAVE.size))
    j = int(np.argmin(np.abs(OUTPUT_WAVE - COLOR_WAVES[0])))
    color = np.where(blue, 0.5, -0.5) + rng.uniform(-0.1, 0.1, n)
    sed[:, j - 1 : j + 2] = np.exp(color)[:, None]
    s = np.full(sed.shape, 0.005)
    b = np.where(blue, 0.01, 0.06)[:, None]
    r = np.sqrt(s**2 + b**2) * rng.standard_normal(sed.shape)
    return r, s, sed, blue


def test_colour_classes_cover_each_population_where_one_floor_cannot():
    from lamost2csst.core.discrepancy import sed_color

    rng = np.random.default_rng(30)
    r, s, sed, blue = _two_populations(rng, 400)
    np.testing.assert_array_equal(sed_color(sed) > 0, blue)  # ln F(4500)/F(6500), F(6500) = 1
    one = fit_discrepancy(r, sigma_net=s, fit_scale=False)
    two = fit_discrepancy(r, sigma_net=s, fit_scale=False, sed=sed, n_classes=2)
    assert two.floor.shape == (2, OUTPUT_WAVE.size) and len(two.color_edges) == 1
    assert abs(two.color_edges[0]) < 0.5  # between the two colours
    fr, fs, fsed, fblue = _two_populations(rng, 2000)
    for model, kw in ((one, {}), (two, {"sed": fsed})):
        total = model.sigma_parts(fs, **kw)[0]
        within = [np.mean(np.abs(fr[p]) < total[p]) for p in (fblue, ~fblue)]
        if model is one:  # one floor: blue stars over-covered, red ones under-covered
            assert within[0] > 0.9 and within[1] < 0.6
        else:
            assert all(abs(w - 0.6827) < 0.03 for w in within)
    with pytest.raises(ValueError, match="colour"):
        two.sigma_parts(fs)
    back = ModelDiscrepancy.from_dict(json.loads(json.dumps(two.to_dict())))
    assert back.color_edges == pytest.approx(two.color_edges, rel=1e-12)
    np.testing.assert_allclose(back.floor, two.floor, rtol=5e-6)
    nan_sed = fsed[:3].copy()
    nan_sed[:, :] = np.nan  # no colour: the largest floor of all classes
    np.testing.assert_allclose(
        two.sigma_parts(fs[:3], sed=nan_sed)[1], np.broadcast_to(two.floor.max(axis=0), (3, 574))
    )
