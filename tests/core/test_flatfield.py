"""2D Legendre flat fits from normal equations: exact cases, additivity, statistical calibration;
the flat-cube algebra (clipping, self-calibration scales, error propagation, truth statistics)
on hand numbers."""

import numpy as np
import pytest

from lamost2csst.core.flatfield import (
    NormalEquations,
    PolynomialFit,
    add_star_sums,
    chunk_equations,
    clip_to_fit,
    design_matrix,
    evaluate,
    initial_scales,
    normal_equations,
    normalized_flat,
    polynomial_terms,
    ratios,
    reduced_chi2,
    rms_over_detector,
    scale_sums,
    solve,
    sum_by_star,
    truth_deviation,
    updated_scales,
    usable_observations,
)

SHAPE = (9232, 9216)  # (ny, nx) of a CSST detector


def test_terms_are_all_total_degrees_up_to_order():
    assert polynomial_terms(0) == [(0, 0)]
    assert polynomial_terms(2) == [(0, 0), (1, 0), (0, 1), (2, 0), (1, 1), (0, 2)]
    for order in range(5):
        assert len(polynomial_terms(order)) == (order + 1) * (order + 2) // 2
    with pytest.raises(ValueError):
        polynomial_terms(-1)


def test_design_matrix_is_legendre_on_the_normalized_detector():
    nx, ny = SHAPE[1], SHAPE[0]
    a = design_matrix([0, nx - 1, (nx - 1) / 2], [0, ny - 1, (ny - 1) / 2], order=2, shape=SHAPE)
    # columns: 1, P1(u), P1(v), P2(u), P1(u)P1(v), P2(v); P2(t) = (3 t^2 - 1) / 2
    np.testing.assert_allclose(a[0], [1, -1, -1, 1, 1, 1])
    np.testing.assert_allclose(a[1], [1, 1, 1, 1, 1, 1])
    np.testing.assert_allclose(a[2], [1, 0, 0, -0.5, 0, -0.5], atol=1e-12)
    with pytest.raises(ValueError, match="on the detector"):
        design_matrix([nx + 5], [10], order=1, shape=SHAPE)


@pytest.mark.parametrize("order", [1, 2, 3])
def test_noiseless_ratios_give_the_coefficients_back(order):
    rng = np.random.default_rng(order)
    n_obs, n_wave = 300, 7
    x, y = rng.uniform(0, SHAPE[1] - 1, n_obs), rng.uniform(0, SHAPE[0] - 1, n_obs)
    truth = rng.normal(0, 0.02, (n_wave, len(polynomial_terms(order))))
    truth[:, 0] = 1.0
    ratio = evaluate(truth, x, y, order=order, shape=SHAPE)
    fit = solve(
        normal_equations(design_matrix(x, y, order=order, shape=SHAPE), ratio, np.ones_like(ratio)),
        min_obs=10,
    )
    assert fit.fit.all()
    np.testing.assert_allclose(fit.coeffs, truth, atol=1e-12)
    np.testing.assert_allclose(fit.chi2, 0, atol=1e-9)


def test_blocks_add_up_to_the_whole():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(100, 6))
    r, w = rng.normal(size=(100, 4)), rng.uniform(1, 2, (100, 4))
    r[5, 1] = np.nan  # an unusable ratio counts nowhere
    whole = normal_equations(a, r, w)
    parts = normal_equations(a[:37], r[:37], w[:37]) + normal_equations(a[37:], r[37:], w[37:])
    for p, q in zip(parts, whole):
        np.testing.assert_allclose(p, q)
    np.testing.assert_array_equal(whole.n, [100, 99, 100, 100])


def test_errors_follow_the_covariance():
    """(c - c_true)^T C^-1 (c - c_true) is chi^2 with n_terms dof: its mean over wavelengths ~ n_terms."""
    rng = np.random.default_rng(42)
    order, n_obs, n_wave = 2, 400, 2000
    k = len(polynomial_terms(order))
    x, y = rng.uniform(0, SHAPE[1] - 1, n_obs), rng.uniform(0, SHAPE[0] - 1, n_obs)
    truth = np.zeros((n_wave, k))
    truth[:, 0] = 1.0
    truth[:, 1] = 0.01
    sigma = rng.uniform(0.005, 0.02, (n_obs, n_wave))
    ratio = evaluate(truth, x, y, order=order, shape=SHAPE) + rng.normal(size=sigma.shape) * sigma
    fit = solve(normal_equations(design_matrix(x, y, order=order, shape=SHAPE), ratio, sigma**-2), min_obs=10)
    d = fit.coeffs - truth
    mahalanobis = np.einsum("wk,wkl,wl->w", d, np.linalg.inv(fit.covariance), d)
    assert mahalanobis.mean() == pytest.approx(k, rel=0.05)  # sd of the mean: sqrt(2k/2000) = 0.055 -> 1.6 %
    assert fit.chi2.mean() == pytest.approx(n_obs - k, rel=0.01)


def test_too_few_or_degenerate_observations_are_unfit():
    rng = np.random.default_rng(1)
    x, y = rng.uniform(0, 9000, 8), rng.uniform(0, 9000, 8)
    ratio = np.ones((8, 2))
    fit = solve(
        normal_equations(design_matrix(x, y, order=2, shape=SHAPE), ratio, np.ones_like(ratio)), min_obs=20
    )
    assert not fit.fit.any() and np.isnan(fit.coeffs).all()
    line = np.linspace(0, 9000, 50)  # all stars on one line: the cross terms are undetermined
    fit = solve(
        normal_equations(design_matrix(line, line, order=2, shape=SHAPE), np.ones((50, 1)), np.ones((50, 1))),
        min_obs=10,
    )
    assert not fit.fit[0]
    empty = NormalEquations.zeros(3, 6)
    assert not solve(empty, min_obs=1).fit.any()


def test_reduced_chi2_divides_by_at_least_one_degree_of_freedom():
    fit = PolynomialFit(
        np.zeros((2, 3)), np.zeros((2, 3, 3)), np.array([10.0, 4.0]), np.array([8, 3]), np.array([True, True])
    )
    np.testing.assert_array_equal(reduced_chi2(fit, 3), [2.0, 4.0])  # 10 / (8 - 3), 4 / max(0, 1)


def test_clip_to_fit_zeroes_the_outliers_of_the_previous_fit():
    design = np.ones((3, 1))  # a constant surface: the model is c_0 at every observation
    ratio, weight = np.array([[1.0], [1.5], [1.05]]), np.full((3, 1), 100.0)  # z = |r - 1| * 10 = 0, 5, 0.5
    w, model, n = clip_to_fit(
        design, ratio, weight, coeffs=np.array([[1.0]]), sigma_scale=np.array([1.0]), kappa=3.0
    )
    np.testing.assert_array_equal(w, [[100.0], [0.0], [100.0]])
    np.testing.assert_array_equal(model, np.ones((3, 1)))
    assert n == 1
    w, _, n = clip_to_fit(
        design, ratio, weight, coeffs=np.array([[1.0]]), sigma_scale=np.array([2.0]), kappa=3.0
    )
    assert n == 0 and (w == 100).all()  # z / sigma_scale = 2.5 < 3
    already_unused = np.array([[100.0], [0.0], [100.0]])
    _, _, n = clip_to_fit(
        design, ratio, already_unused, coeffs=np.array([[1.0]]), sigma_scale=np.array([1.0]), kappa=3.0
    )
    assert n == 0  # a ratio of weight 0 is not counted as clipped
    # an unfit previous wavelength (NaN) clips nothing and models 0
    w, model, n = clip_to_fit(
        design, ratio, weight, coeffs=np.array([[np.nan]]), sigma_scale=np.array([np.nan]), kappa=3.0
    )
    assert n == 0 and (w == 100).all() and (model == 0).all()


def test_scale_sums_give_the_scale_that_fits_the_flat():
    # one observation formed with scale 2: ratios 2, 4 against flats 1, 2; its flux q = r * 2 = 4, 8
    # is 4 x the flat, so the updated scale must be 4
    ratio, weight, model = np.array([[2.0, 4.0]]), np.array([[1.0, 0.25]]), np.array([[1.0, 2.0]])
    num, den = scale_sums(ratio, weight, model, scale=np.array([2.0]))
    # w' = w / s^2 = 0.25, 0.0625: num = 0.25*4*1 + 0.0625*8*2 = 2, den = 0.25*1 + 0.0625*4 = 0.5
    np.testing.assert_allclose(num, [2.0])
    np.testing.assert_allclose(den, [0.5])
    num, den = scale_sums(np.array([[2.0, np.nan]]), np.array([[1.0, 0.25]]), model, scale=np.array([2.0]))
    np.testing.assert_allclose([num[0], den[0]], [0.25 * 4 * 1, 0.25])  # the NaN ratio is left out


def test_star_sums_add_up_per_star():
    ids, num, den = sum_by_star(np.array([5, 3, 5]), np.array([1.0, 2.0, 3.0]), np.array([4.0, 5.0, 6.0]))
    np.testing.assert_array_equal(ids, [3, 5])
    np.testing.assert_array_equal(num, [2.0, 4.0])
    np.testing.assert_array_equal(den, [5.0, 10.0])
    total = add_star_sums(
        (np.array([3]), np.array([1.0]), np.array([1.0])),
        (np.array([3, 7]), np.array([2.0, 5.0]), np.array([3.0, 1.0])),
    )
    for got, expected in zip(total, ([3, 7], [3.0, 5.0], [4.0, 1.0])):
        np.testing.assert_array_equal(got, expected)
    empty = (np.zeros(0, np.int64), np.zeros(0), np.zeros(0))
    assert all(part.size == 0 for part in add_star_sums(empty, empty))


def test_initial_scales_take_the_first_known_scale_else_the_median():
    ids, start = initial_scales(np.array([7, 3, 7, 9]), np.array([2.0, np.nan, 5.0, 4.0]))
    np.testing.assert_array_equal(ids, [3, 7, 9])
    np.testing.assert_array_equal(start, [3.0, 2.0, 4.0])  # star 3: median of 2 and 4
    _, start = initial_scales(np.array([1, 2]), np.array([np.nan, -1.0]))
    np.testing.assert_array_equal(start, [1.0, 1.0])


def test_updated_scales_keep_stars_without_an_estimate_and_the_median():
    current = (np.array([3, 7, 9]), np.array([1.0, 2.0, 3.0]))
    sums = (np.array([7, 9]), np.array([8.0, -1.0]), np.array([2.0, 1.0]))  # 7: 8/2 = 4; 9: negative, kept
    ids, new = updated_scales(current, sums)
    np.testing.assert_array_equal(ids, [3, 7, 9])
    # before rescaling [1, 4, 3] (median 3); rescaled to the current median 2
    np.testing.assert_allclose(new, [2 / 3, 8 / 3, 2.0])
    np.testing.assert_array_equal(current[1], [1.0, 2.0, 3.0])  # the input is not modified


def test_normalized_flat_and_its_first_order_error():
    # flat = (c0 + 0.5 c1) / c0 at a grid point with design row (1, 0.5); c = (2, 1)
    design = np.array([[1.0, 0.5]])
    coeffs = np.array([2.0, 1.0]).reshape(1, 1, 1, 2)
    cov = np.diag([0.01, 0.04]).reshape(1, 1, 1, 2, 2)
    flat, error, mean = normalized_flat(coeffs, cov, design)
    assert flat.shape == error.shape == (1, 1, 1, 1) and mean.shape == (1, 1, 1)
    assert flat.item() == pytest.approx(1.25) and mean.item() == 2.0
    # d flat / d c0 = -0.5 c1 / c0^2 = -0.125, d flat / d c1 = 0.5 / c0 = 0.25
    assert error.item() == pytest.approx(np.sqrt(0.125**2 * 0.01 + 0.25**2 * 0.04), rel=1e-12)
    flat, error, _ = normalized_flat(np.full((1, 1, 1, 2), np.nan), cov, design)
    assert np.isnan(flat).all() and np.isnan(error).all()  # unfit stays NaN


def test_rms_over_detector_ignores_nan():
    a = np.array([[[3.0, np.nan], [4.0, np.nan]], [[np.nan, np.nan], [np.nan, np.nan]]])
    rms = rms_over_detector(a)
    assert rms[0] == pytest.approx(np.sqrt((9 + 16) / 2)) and np.isnan(rms[1])


def test_truth_deviation_medians_over_fitted_wavelengths():
    true = np.ones((1, 3, 2, 2))
    fitted = true * np.array([1.01, 1.02, 1.5]).reshape(1, 3, 1, 1)  # deviations 1 %, 2 %, 50 %
    error = np.full(true.shape, 0.01) * np.array([1.0, 3.0, 9.0]).reshape(1, 3, 1, 1)
    fit = np.array([[True, True, False]])  # the 50 % wavelength is unfit: left out
    row = truth_deviation(fitted=fitted, true=true, flat_error=error, fit=fit)
    assert row == {"rms_deviation_median": 0.015, "predicted_rms_median": 0.02, "wavelengths_fit": 2}
    assert truth_deviation(fitted=fitted, true=true, flat_error=error, fit=np.zeros((1, 3), bool)) is None


def _observations(n_wave=3):
    """Six observations, one per rejection reason after the first (usable) one."""
    flux = np.ones((6, n_wave))
    flux[4] = np.nan  # no finite flux
    obs = {
        "obsid": np.arange(10, 16),
        "band": np.array(["GV", "GV", "GV", "GV", "GV", "GX"], dtype=object),
        "detector": np.array([1, 1, 1, 1, 1, 1]),
        "x": np.array([10.0, 10, 1e6, 10, 10, 10]),
        "y": np.full(6, 20.0),
        "flux": flux,
        "error": np.full((6, n_wave), 0.1),
    }
    found = np.array([True, False, True, True, True, True])  # 11: no prediction
    flags = np.array([0, 8])  # the flagged prediction is row 1 of the predictions read
    where = np.array([0, 0, 0, 0, 0, 0])
    scale = np.array([2.0, 2.0, 2.0, np.nan, 2.0, 2.0])  # 13: no scale
    return obs, found, flags, where, scale


def test_usable_observations_count_each_rejection_once():
    obs, found, flags, where, scale = _observations()
    usable, counts = usable_observations(obs, found=found, flags=flags, where=where, scale=scale)
    np.testing.assert_array_equal(usable, [True, False, False, False, False, False])
    assert counts == {
        "no_prediction": 1,
        "flagged_prediction": 0,
        "off_detector": 1,
        "no_scale": 1,
        "no_finite_flux": 1,
        "bad_band": 1,
    }
    where = np.array([1, 0, 0, 0, 0, 0])  # observation 0's prediction is the flagged one
    usable, counts = usable_observations(obs, found=found, flags=flags, where=where, scale=scale)
    assert not usable.any() and counts["flagged_prediction"] == 1


def test_chunk_equations_equal_the_direct_normal_equations():
    rng = np.random.default_rng(3)
    n, n_wave = 40, 3
    obs = {
        "obsid": np.repeat(np.arange(20), 2),
        "band": np.array(["GV", "GI"] * 20, dtype=object),
        "detector": np.tile([0, 0, 2, 2], 10),
        "x": rng.uniform(0, 9000, n),
        "y": rng.uniform(0, 9000, n),
        "flux": rng.uniform(1, 2, (n, n_wave)),
        "error": np.full((n, n_wave), 0.05),
    }
    sed, sigma = rng.uniform(1, 2, (n, n_wave)), np.full((n, n_wave), 0.01)
    kw = dict(
        found=np.ones(n, bool),
        flags=np.zeros(n, np.uint16),
        where=np.arange(n),
        sed=sed,
        sigma=sigma,
        scale=np.full(n, 1.5),
        order=1,
    )
    result = chunk_equations(obs, **kw)
    assert sorted(result["groups"]) == ["GI-0", "GI-2", "GV-0", "GV-2"] and result["clipped"] == 0
    assert result["star_sums"][0].size == 0  # no previous fits: no scale sums
    sel = (obs["band"] == "GI") & (obs["detector"] == 2)
    r, w = ratios(
        obs["flux"][sel], obs["error"][sel], scale=np.full(sel.sum(), 1.5), sed=sed[sel], sigma=sigma[sel]
    )
    direct = normal_equations(design_matrix(obs["x"][sel], obs["y"][sel], order=1, shape=SHAPE), r, w)
    for got, expected in zip(result["groups"]["GI-2"], direct):
        np.testing.assert_array_equal(got, expected)
    # against a previous fit of the constant surface 1 with sigma_scale 1e-6, every ratio is an outlier
    fits = {key: (np.array([[1.0, 0, 0]] * n_wave), np.full(n_wave, 1e-6)) for key in result["groups"]}
    clipped = chunk_equations(obs, **kw, fits=fits, self_calibrate=True)
    assert clipped["clipped"] == n * n_wave
    assert all((eq.n == 0).all() for eq in clipped["groups"].values())
    np.testing.assert_array_equal(clipped["star_sums"][0], np.arange(20))  # every star has (zero) sums
    assert (clipped["star_sums"][1] == 0).all()


def _survey_block(n=700, n_wave=6, seed=5):
    """A chunk of float32 observations of 2 groups (several blocks each), with unusable entries:
    NaN flux, a sed <= 0, an infinite error, a zero error and zero sigma, outliers."""
    rng = np.random.default_rng(seed)
    x, y = rng.uniform(0, SHAPE[1] - 1, n), rng.uniform(0, SHAPE[0] - 1, n)
    truth = np.array([1.0, 0.02, -0.01, 0.005, 0.0, 0.003])
    flat = design_matrix(x, y, order=2, shape=SHAPE) @ truth
    sed = rng.uniform(0.5, 2, (n // 2, n_wave)).astype(np.float32)
    where = rng.integers(0, n // 2, n)
    scale = rng.uniform(0.5, 3, n)
    error = rng.uniform(0.005, 0.02, (n, n_wave)) * scale[:, None] * sed[where]
    flux = flat[:, None] * scale[:, None] * sed[where] + rng.normal(size=error.shape) * error
    flux[rng.random(flux.shape) < 0.01] *= 1.5  # outliers for the clipping
    flux, error = flux.astype(np.float32), error.astype(np.float32)
    flux[3, 2] = np.nan
    sed[where[5], 1] = -1.0
    error[7, 4] = np.inf
    error[9, 0] = 0.0
    sigma = np.full(sed.shape, 0.002, np.float32)
    sigma[where[9], 0] = 0.0  # variance 0: unusable
    obs = {
        "obsid": where.astype(np.int64),  # one star per prediction row
        "band": np.array(["GV", "GI"] * (n // 2), dtype=object),
        "detector": np.full(n, 1),
        "x": x,
        "y": y,
        "flux": flux,
        "error": error,
    }
    kw = dict(
        found=np.ones(n, bool),
        flags=np.zeros(n // 2, np.uint16),
        where=where,
        sed=sed,
        sigma=sigma,
        scale=scale,
    )
    return obs, kw


def _whole_group(obs, kw, sel, fits=None, kappa=3.0):
    """The textbook path on a whole group at once: ratios, clip_to_fit, normal_equations."""
    a = design_matrix(obs["x"][sel], obs["y"][sel], order=2, shape=SHAPE)
    w_ = kw["where"][sel]
    r, w = ratios(
        obs["flux"][sel], obs["error"][sel], scale=kw["scale"][sel], sed=kw["sed"][w_], sigma=kw["sigma"][w_]
    )
    clipped = 0
    if fits is not None:
        w, _, clipped = clip_to_fit(a, r, w, coeffs=fits[0], sigma_scale=fits[1], kappa=kappa)
    return normal_equations(a, r, w), clipped, a, r, w


def test_blocked_chunk_sums_solve_to_the_lstsq_weighted_fit():
    """chunk_equations (blocks of BLOCK_OBS, compiled kernel where numba is there) -> solve equals
    numpy.linalg.lstsq of the weighted system sqrt(w) A c = sqrt(w) r over the usable ratios,
    with r = flux / (scale sed) and 1/w = (error / (scale sed))^2 + (r sigma)^2 written out here."""
    from lamost2csst.core.flatfield import BLOCK_OBS

    obs, kw = _survey_block()
    result = chunk_equations(obs, **kw, order=2)
    sel = (obs["band"] == "GI") & (obs["detector"] == 1)
    assert sel.sum() > 2 * BLOCK_OBS
    fit = solve(result["groups"]["GI-1"], min_obs=10)
    a = design_matrix(obs["x"][sel], obs["y"][sel], order=2, shape=SHAPE)
    model = kw["scale"][sel, None] * kw["sed"][kw["where"][sel]].astype(np.float64)
    r = obs["flux"][sel] / model
    var = (obs["error"][sel] / model) ** 2 + (r * kw["sigma"][kw["where"][sel]]) ** 2
    with np.errstate(divide="ignore"):
        w = 1 / var
    usable = np.isfinite(r) & np.isfinite(var) & (var > 0) & (model > 0)
    assert (~usable).sum() >= 4  # the NaN flux, the sed <= 0, the infinite and the zero variance
    for j in range(r.shape[1]):
        u = usable[:, j]
        sw = np.sqrt(w[u, j])
        coeffs, *_ = np.linalg.lstsq(a[u] * sw[:, None], r[u, j] * sw, rcond=None)
        np.testing.assert_allclose(fit.coeffs[j], coeffs, rtol=1e-9, atol=1e-12)
        assert fit.n[j] == u.sum()
        np.testing.assert_allclose(fit.chi2[j], np.sum(w[u, j] * (r[u, j] - a[u] @ coeffs) ** 2), rtol=1e-6)


@pytest.mark.parametrize("numpy_only", [False, True])
def test_blocked_chunk_sums_equal_the_whole_group_sums(numpy_only, monkeypatch):
    """Both block paths (compiled kernel, numpy) equal the textbook sums of the whole group, with
    clipping against a previous fit and the self-calibration's per-star sums, to round-off."""
    from lamost2csst.core import _flatfield_compiled, flatfield

    if not numpy_only and not _flatfield_compiled.AVAILABLE:
        pytest.skip("numba not installed")
    monkeypatch.setattr(flatfield, "_NUMPY_ONLY", numpy_only)
    obs, kw = _survey_block()
    first = chunk_equations(obs, **kw, order=2)
    fits = {}
    for key, eq in first["groups"].items():
        s = solve(eq, min_obs=10)
        fits[key] = (s.coeffs, np.sqrt(reduced_chi2(s, 6)))
    fits["GV-1"][1][2] = np.nan  # no sigma scale at one wavelength: nothing clipped there
    result = chunk_equations(obs, **kw, order=2, fits=fits, self_calibrate=True)
    total_clipped = 0
    for key, band in (("GV-1", "GV"), ("GI-1", "GI")):
        sel = (obs["band"] == band) & (obs["detector"] == 1)
        whole, clipped, a, r, w = _whole_group(obs, kw, sel, fits=fits[key])
        total_clipped += clipped
        for got, expected in zip(result["groups"][key], whole):
            np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-9)
        np.testing.assert_array_equal(result["groups"][key].n, whole.n)
    assert result["clipped"] == total_clipped > 0
    # the per-star sums against the previous fits, star by star
    ids, num, den = [], [], []
    for key, band in (("GV-1", "GV"), ("GI-1", "GI")):
        sel = (obs["band"] == band) & (obs["detector"] == 1)
        _, _, a, r, w = _whole_group(obs, kw, sel, fits=fits[key])
        model = a @ np.nan_to_num(fits[key][0]).T
        n_, d_ = scale_sums(r, w, model, scale=kw["scale"][sel])
        ids.append(obs["obsid"][sel]), num.append(n_), den.append(d_)
    expected = sum_by_star(np.concatenate(ids), np.concatenate(num), np.concatenate(den))
    np.testing.assert_array_equal(result["star_sums"][0], expected[0])
    for got, exp in zip(result["star_sums"][1:], expected[1:]):
        np.testing.assert_allclose(got, exp, rtol=1e-12)
