"""GPR (Appendix A-C) on functions with known answers."""

import warnings

import numpy as np
import pytest

from lamost2csst.core.gpr import SpectrumGPR, fit_shared_kernel, screen_library


def _smooth_library(n=80, m=30, seed=0):
    rng = np.random.default_rng(seed)
    params = np.column_stack([rng.uniform(5000, 9750, n), rng.uniform(2, 5, n), rng.uniform(-2.5, 0.5, n)])
    x = np.linspace(0, 1, m)
    t = (params[:, :1] - 7000) / 2000
    spectra = 1 + 0.3 * t * (x - 0.5) + 0.05 * np.sin(3 * x) * params[:, 2:3] / 2 + 0.02 * params[:, 1:2] * x
    return params, spectra


def test_gpr_interpolates_a_smooth_function_of_the_parameters():
    params, spectra = _smooth_library()
    gp = SpectrumGPR().fit(params[:60], spectra[:60])
    pred, std = gp.predict(params[60:], return_std=True)
    assert np.max(np.abs(pred / spectra[60:] - 1)) < 0.01
    assert std.shape == (20,) and np.all(std >= 0)
    h = gp.hyperparameters
    assert set(h) == {"signal_std", "noise_std", "length_scale", "log_marginal_likelihood"}
    assert h["noise_std"] < 0.01  # noiseless data: the white-noise level goes down


def test_gpr_recovers_the_noise_level():
    params, spectra = _smooth_library(n=150, m=40, seed=1)
    noisy = spectra + np.random.default_rng(2).normal(0, 0.01, spectra.shape)
    gp = SpectrumGPR().fit(params, noisy)
    assert gp.hyperparameters["noise_std"] == pytest.approx(0.01, rel=0.15)


def test_screening_flags_the_corrupted_stars():
    params, spectra = _smooth_library(n=100)
    bad = [3, 40, 77]
    corrupted = spectra.copy()
    corrupted[bad] *= np.linspace(0.7, 1.3, spectra.shape[1])  # a wrong flux calibration
    result = screen_library(params, corrupted, threshold=0.05, n_folds=5)
    assert set(np.flatnonzero(~result.normal)) == set(bad)
    assert result.rmsae[bad].min() > 3 * result.rmsae[result.normal].max()
    assert len(result.hyperparameters) == 5


def test_bad_inputs_are_refused():
    params, spectra = _smooth_library(n=10)
    with pytest.raises(ValueError, match="NaN"):
        SpectrumGPR().fit(np.where(np.arange(10)[:, None] == 2, np.nan, params), spectra)
    with pytest.raises(ValueError, match="n_star"):
        SpectrumGPR().fit(params, spectra[:5])
    with pytest.raises(ValueError, match="positive"):
        screen_library(params, spectra - 5)
    with pytest.raises(RuntimeError, match="fit"):
        SpectrumGPR().predict(params)


def _hand_log_likelihood(z, y, length, signal_var, noise_var):
    """Eq. A10 summed over pixels, by Cholesky (scikit-learn's 1e-10 diagonal jitter included)."""
    d2 = np.sum((z[:, None] - z[None]) ** 2, axis=-1)
    k = signal_var * np.exp(-0.5 * d2 / length**2) + (noise_var + 1e-10) * np.eye(len(z))
    c = np.linalg.cholesky(k)
    w = np.linalg.solve(c, y)
    n, m = y.shape
    return -0.5 * np.sum(w**2) - m * np.sum(np.log(np.diag(c))) - 0.5 * n * m * np.log(2 * np.pi)


def _random_problem(seed):
    rng = np.random.default_rng(seed)
    n, m = int(rng.integers(30, 60)), int(rng.integers(2, 12))
    params = rng.uniform(size=(n, 3)) * [4000, 3, 3] + [5000, 1, -2]
    z = (params - params.mean(0)) / params.std(0)
    noise = [1e-3, 0.03, 0.2][seed % 3]
    spectra = 2 + 0.3 * np.tanh(z @ rng.normal(size=(3, m))) + rng.normal(0, noise, (n, m))
    return params, spectra


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_search_finds_at_least_the_likelihood_of_scikit_learns_restarted_optimizer(seed):
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel

    params, spectra = _random_problem(seed)
    gp = SpectrumGPR().fit(params, spectra)
    h = gp.hyperparameters
    z = (params - params.mean(0)) / params.std(0)
    y = spectra - spectra.mean(0)
    ours = _hand_log_likelihood(z, y, h["length_scale"], h["signal_std"] ** 2, h["noise_std"] ** 2)
    assert h["log_marginal_likelihood"] == pytest.approx(ours, rel=1e-9, abs=1e-6)
    _, _, _, searched = fit_shared_kernel(z, y)
    assert searched == pytest.approx(ours, rel=1e-9, abs=1e-6)  # the eigen-form likelihood is Eq. A10
    kernel = ConstantKernel(1.0, (1e-4, 1e4)) * RBF(1.0, (1e-2, 1e3)) + WhiteKernel(1e-4, (1e-12, 1.0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scikit-learn's convergence warnings at the bounds
        sk = GaussianProcessRegressor(kernel=kernel, n_restarts_optimizer=3, random_state=seed).fit(z, y)
    assert ours >= sk.log_marginal_likelihood_value_ - 1e-6 * abs(sk.log_marginal_likelihood_value_)


def test_predictions_are_the_gaussian_process_posterior_at_the_fitted_hyperparameters():
    params, spectra = _random_problem(1)
    gp = SpectrumGPR().fit(params[:-8], spectra[:-8])
    h = gp.hyperparameters
    mu, sd = params[:-8].mean(0), params[:-8].std(0)
    z, zt = (params[:-8] - mu) / sd, (params[-8:] - mu) / sd
    a, b, length = h["signal_std"] ** 2, h["noise_std"] ** 2, h["length_scale"]
    k = a * np.exp(-0.5 * np.sum((z[:, None] - z[None]) ** 2, -1) / length**2) + (b + 1e-10) * np.eye(len(z))
    ks = a * np.exp(-0.5 * np.sum((zt[:, None] - z[None]) ** 2, -1) / length**2)
    mean = spectra[:-8].mean(0)
    expected = ks @ np.linalg.solve(k, spectra[:-8] - mean) + mean
    expected_std = np.sqrt(a + b - np.einsum("ij,ji->i", ks, np.linalg.solve(k, ks.T)))
    pred, std = gp.predict(params[-8:], return_std=True)
    np.testing.assert_allclose(pred, expected, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(std, expected_std, rtol=1e-6)


def test_the_fit_is_deterministic_order_free_and_blas_thread_free():
    from threadpoolctl import threadpool_limits

    params, spectra = _random_problem(2)
    first = SpectrumGPR().fit(params, spectra)
    with threadpool_limits(limits=2, user_api="blas"):
        again = SpectrumGPR().fit(params, spectra)
    assert again.hyperparameters == first.hyperparameters  # bit for bit
    np.testing.assert_array_equal(again.predict(params), first.predict(params))
    order = np.random.default_rng(5).permutation(len(params))
    permuted = SpectrumGPR().fit(params[order], spectra[order])
    for key, value in first.hyperparameters.items():
        assert permuted.hyperparameters[key] == pytest.approx(value, rel=1e-5), key
    np.testing.assert_allclose(permuted.predict(params), first.predict(params), rtol=1e-7)


def test_a_start_near_a_worse_local_optimum_does_not_decide():
    params, spectra = _random_problem(0)
    best = SpectrumGPR().fit(params, spectra).hyperparameters
    for start in (0.02, 300.0):
        h = (
            SpectrumGPR(length_scale=start, signal_std=50.0, noise_std=0.5)
            .fit(params, spectra)
            .hyperparameters
        )
        assert h["log_marginal_likelihood"] == pytest.approx(best["log_marginal_likelihood"], rel=1e-9)


def test_n_restarts_is_deprecated():
    with pytest.warns(DeprecationWarning, match="n_restarts"):
        SpectrumGPR(n_restarts=2)
