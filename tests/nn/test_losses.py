"""Eq. 17 and beta-NLL against numbers computed by hand."""

import math

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from lamost2csst.nn.losses import gaussian_nll  # noqa: E402

Y = np.array([[1.0, 2.0]])
MU = np.array([[1.1, 1.8]])
SIGMA = np.array([[0.1, 0.2]])
# r = (mu - y)/y = [0.1, -0.1]
TERM_1 = 0.01 / (2 * 0.01) + math.log(0.1) + math.log(1.0)  # -1.802585...
TERM_2 = 0.01 / (2 * 0.04) + math.log(0.2) + math.log(2.0)  # -0.791291...


def test_eq17_mean_of_pixel_terms():
    assert float(gaussian_nll(Y, MU, SIGMA)) == pytest.approx((TERM_1 + TERM_2) / 2, rel=1e-12)


def test_without_log_target():
    expected = (TERM_1 + TERM_2 - math.log(2.0)) / 2
    assert float(gaussian_nll(Y, MU, SIGMA, include_log_target=False)) == pytest.approx(expected, rel=1e-12)


def test_mask_and_nan_targets_do_not_count():
    assert float(gaussian_nll(Y, MU, SIGMA, mask=np.array([[False, True]]))) == pytest.approx(
        TERM_1, rel=1e-12
    )
    y_nan = np.array([[1.0, np.nan]])
    assert float(gaussian_nll(y_nan, MU, SIGMA)) == pytest.approx(TERM_1, rel=1e-12)


def test_all_masked_gives_zero_not_nan():
    assert float(gaussian_nll(Y, MU, SIGMA, mask=np.ones((1, 2), bool))) == 0.0


def test_beta_weights_terms_by_sigma_squared_to_beta():
    expected = (TERM_1 * 0.1 + TERM_2 * 0.2) / 2  # sigma^(2 * 0.5)
    assert float(gaussian_nll(Y, MU, SIGMA, beta=0.5)) == pytest.approx(expected, rel=1e-12)


def test_beta_one_gives_the_mean_an_mse_gradient():
    mu = tf.Variable(MU)
    sigma = tf.Variable(SIGMA)
    with tf.GradientTape() as tape:
        loss = gaussian_nll(Y, mu, sigma, beta=1.0)
    grad = tape.gradient(loss, mu).numpy()
    # d/dmu [r^2 / 2] / N with r = (mu - y)/y -> r / y / N, independent of sigma
    np.testing.assert_allclose(grad, [[0.1 / 1.0 / 2, -0.1 / 2.0 / 2]], rtol=1e-12)


def test_plain_nll_gradient_in_sigma():
    sigma = tf.Variable(SIGMA)
    with tf.GradientTape() as tape:
        loss = gaussian_nll(Y, MU, sigma)
    grad = tape.gradient(loss, sigma).numpy()
    # d/dsigma [r^2/(2 sigma^2) + log sigma] = -r^2/sigma^3 + 1/sigma
    r2 = 0.01
    expected = [[(-r2 / 0.1**3 + 1 / 0.1) / 2, (-r2 / 0.2**3 + 1 / 0.2) / 2]]
    np.testing.assert_allclose(grad, expected, rtol=1e-12, atol=1e-12)


def test_minimum_in_sigma_is_at_abs_r():
    sigmas = np.linspace(0.01, 0.5, 4901)[:, None]
    r = 0.07
    values = [float(gaussian_nll([[1.0]], [[1.0 + r]], [[s[0]]])) for s in sigmas[::50]]
    best = sigmas[::50][int(np.argmin(values)), 0]
    assert abs(best - r) <= 0.005


def test_negative_beta_refused():
    with pytest.raises(ValueError, match="beta"):
        gaussian_nll(Y, MU, SIGMA, beta=-0.5)
