"""Gaussian process regression of spectra from stellar parameters (paper Appendices A-C).

A squared-exponential kernel on z-scored (Teff, log g, [Fe/H]) plus white noise,
``K = sigma_f^2 exp(-|x - x'|^2 / 2 l^2) + sigma_n^2 delta`` (Eqs. A5-A6), one kernel shared
by all pixels, hyper-parameters by maximum marginal likelihood (Eq. A10; scikit-learn's
``GaussianProcessRegressor``). Two uses:

* screening (Appendix B): predict each star's R=200 SED from its parameters *out of fold*
  (k-fold: the star is not in the training set of its own prediction) and flag stars whose
  RMSAE (Eq. 3) exceeds a threshold (paper: 0.05 for MILES, 0.068 for NGSL);
* generation (Appendix C): normalized R=2000 inputs from parameters for a library whose
  own resolution is too low (NGSL), trained on one that has them (MILES).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lamost2csst.core.metrics import rmsae

__all__ = ["ScreeningResult", "SpectrumGPR", "screen_library"]


class SpectrumGPR:
    """Spectra (n, m) as a Gaussian process of stellar parameters (n, k), shared kernel.

    Parameters
    ----------
    length_scale, signal_std, noise_std : float
        Starting hyper-parameters (l, sigma_f, sigma_n of Eq. A5-A6), optimized on fit.
    n_restarts : int
        Extra optimizer restarts from random hyper-parameters (scikit-learn).
    seed : int
        Seed of those restarts.
    """

    def __init__(
        self,
        *,
        length_scale: float = 1.0,
        signal_std: float = 1.0,
        noise_std: float = 0.01,
        n_restarts: int = 2,
        seed: int = 0,
    ):
        self.length_scale = length_scale
        self.signal_std = signal_std
        self.noise_std = noise_std
        self.n_restarts = n_restarts
        self.seed = seed
        self._gp = None

    @staticmethod
    def _check(params, spectra=None):
        params = np.asarray(params, dtype=np.float64)
        if params.ndim != 2:
            raise ValueError(f"params must be (n_star, n_param), got {params.shape}")
        if not np.all(np.isfinite(params)):
            raise ValueError("params contain NaN/inf: select stars with known Teff, log g and [Fe/H] first")
        if spectra is None:
            return params, None
        spectra = np.asarray(spectra, dtype=np.float64)
        if spectra.ndim != 2 or spectra.shape[0] != params.shape[0]:
            raise ValueError(f"spectra {spectra.shape} must be (n_star={params.shape[0]}, n_pixel)")
        if not np.all(np.isfinite(spectra)):
            raise ValueError("spectra contain NaN/inf: restrict to pixels every star covers")
        return params, spectra

    def fit(self, params, spectra) -> SpectrumGPR:
        from sklearn.gaussian_process import GaussianProcessRegressor
        from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel

        params, spectra = self._check(params, spectra)
        if params.shape[0] < 3:
            raise ValueError(f"need at least 3 stars to fit a GPR, got {params.shape[0]}")
        self.param_mean_ = params.mean(axis=0)
        self.param_std_ = params.std(axis=0)
        self.param_std_[self.param_std_ == 0] = 1.0
        self.spectrum_mean_ = spectra.mean(axis=0)
        kernel = ConstantKernel(self.signal_std**2, (1e-4, 1e4)) * RBF(
            self.length_scale, (1e-2, 1e3)
        ) + WhiteKernel(self.noise_std**2, (1e-12, 1.0))
        self._gp = GaussianProcessRegressor(
            kernel=kernel, normalize_y=False, n_restarts_optimizer=self.n_restarts, random_state=self.seed
        )
        self._gp.fit(self._z(params), spectra - self.spectrum_mean_)
        return self

    def _z(self, params):
        return (params - self.param_mean_) / self.param_std_

    @property
    def hyperparameters(self) -> dict:
        """Fitted ``signal_std`` (sigma_f), ``noise_std`` (sigma_n), ``length_scale`` (l), log-likelihood."""
        if self._gp is None:
            raise RuntimeError("fit the GPR first")
        k = self._gp.kernel_
        return {
            "signal_std": float(np.sqrt(k.k1.k1.constant_value)),
            "noise_std": float(np.sqrt(k.k2.noise_level)),
            "length_scale": float(k.k1.k2.length_scale),
            "log_marginal_likelihood": float(self._gp.log_marginal_likelihood_value_),
        }

    def predict(self, params, *, return_std: bool = False):
        """Predicted spectra (n, m) for parameters (n, k); with ``return_std`` also their 1-sigma (n,)."""
        if self._gp is None:
            raise RuntimeError("fit the GPR first")
        params, _ = self._check(params)
        if return_std:
            mean, std = self._gp.predict(self._z(params), return_std=True)
            std = np.asarray(std)
            return mean + self.spectrum_mean_, (std[:, 0] if std.ndim == 2 else std)
        return self._gp.predict(self._z(params)) + self.spectrum_mean_


@dataclass(frozen=True)
class ScreeningResult:
    """Out-of-fold GPR screening of a library (Appendix B)."""

    rmsae: np.ndarray  # (n,) RMSAE of each star's out-of-fold prediction
    normal: np.ndarray  # (n,) bool: rmsae < threshold
    predicted: np.ndarray  # (n, m) out-of-fold predictions
    threshold: float
    hyperparameters: list  # per fold


def screen_library(
    params, spectra, *, threshold: float = 0.05, n_folds: int = 5, seed: int = 0
) -> ScreeningResult:
    """Flag abnormal spectra: RMSAE of relative residuals against an out-of-fold GPR prediction.

    Parameters
    ----------
    params : array_like (n, k)
        Stellar parameters, e.g. (Teff, log g, [Fe/H]).
    spectra : array_like (n, m)
        Scaled SEDs at R=200 on the pixels every star covers (all > 0).
    threshold : float
        RMSAE above which a star is abnormal (paper: 0.05 for MILES, 0.068 for NGSL).
    n_folds : int
        Folds of the out-of-fold prediction (each star predicted by a GPR that has not seen it).
    """
    params, spectra = SpectrumGPR._check(params, spectra)
    if np.any(spectra <= 0):
        raise ValueError("spectra must be positive (relative residuals divide by them)")
    n = params.shape[0]
    if not 2 <= n_folds <= n:
        raise ValueError(f"n_folds must be in [2, n_star={n}], got {n_folds}")
    fold = np.random.default_rng(seed).permutation(n) % n_folds
    predicted = np.empty_like(spectra)
    hypers = []
    for k in range(n_folds):
        test = fold == k
        gp = SpectrumGPR(seed=seed).fit(params[~test], spectra[~test])
        predicted[test] = gp.predict(params[test])
        hypers.append(gp.hyperparameters)
    r = (predicted - spectra) / spectra
    err = rmsae(r)
    return ScreeningResult(err, err < threshold, predicted, float(threshold), hypers)
