"""2D Legendre flat fits from normal equations: exact cases, additivity, statistical calibration."""

import numpy as np
import pytest

from lamost2csst.core.flatfield import (
    NormalEquations,
    design_matrix,
    evaluate,
    normal_equations,
    polynomial_terms,
    solve,
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
    fit = solve(normal_equations(design_matrix(x, y, order=order, shape=SHAPE), ratio, np.ones_like(ratio)),
                min_obs=10)
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
    fit = solve(normal_equations(design_matrix(x, y, order=2, shape=SHAPE), ratio, np.ones_like(ratio)),
                min_obs=20)
    assert not fit.fit.any() and np.isnan(fit.coeffs).all()
    line = np.linspace(0, 9000, 50)  # all stars on one line: the cross terms are undetermined
    fit = solve(normal_equations(design_matrix(line, line, order=2, shape=SHAPE), np.ones((50, 1)),
                                 np.ones((50, 1))), min_obs=10)
    assert not fit.fit[0]
    empty = NormalEquations.zeros(3, 6)
    assert not solve(empty, min_obs=1).fit.any()
