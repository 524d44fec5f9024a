"""GPR (Appendix A-C) on functions with known answers."""

import numpy as np
import pytest

from lamost2csst.core.gpr import SpectrumGPR, screen_library


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
