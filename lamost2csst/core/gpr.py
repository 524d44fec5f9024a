"""Gaussian process regression of spectra from stellar parameters (paper Appendices A-C).

A squared-exponential kernel on z-scored (Teff, log g, [Fe/H]) plus white noise,
``K = sigma_f^2 exp(-|x - x'|^2 / 2 l^2) + sigma_n^2 delta`` (Eqs. A5-A6), one kernel shared
by all pixels of the mean-subtracted spectra, hyper-parameters by maximum marginal likelihood
(Eq. A10) summed over the pixels. Two uses:

* screening (Appendix B): predict each star's R=200 SED from its parameters *out of fold*
  (k-fold: the star is not in the training set of its own prediction) and flag stars whose
  RMSAE (Eq. 3) exceeds a threshold (paper: 0.05 for MILES, 0.068 for NGSL);
* generation (Appendix C): normalized R=2000 inputs from parameters for a library whose
  own resolution is too low (NGSL), trained on one that has them (MILES).

The hyper-parameters are found deterministically (no random restarts): for a length scale l
the correlation matrix ``R(l) = U diag(lambda) U^T`` is diagonalized once, after which the
log-likelihood of all m pixels, with ``Q = U^T Y`` and ``q_i = sum_j Q_ij^2``,

``L = -1/2 sum_i q_i / v_i - m/2 sum_i log v_i - n m/2 log 2 pi``,
``v_i = sigma_f^2 lambda_i + sigma_n^2 + alpha``,

is maximized over (sigma_f, sigma_n) at the cost of a sum over n terms (``alpha`` = 1e-10 is
scikit-learn's diagonal jitter, kept so that L is scikit-learn's own). The outer search over
log l is a fixed grid refined by a bounded Brent search around its best point. Prediction is
scikit-learn's ``GaussianProcessRegressor`` with the kernel fixed at the optimum. BLAS runs on
one thread inside :meth:`SpectrumGPR.fit` and :meth:`SpectrumGPR.predict`, so the result does not
depend on the machine's thread count.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize, minimize_scalar

from lamost2csst.core.metrics import rmsae

__all__ = ["ScreeningResult", "SpectrumGPR", "fit_shared_kernel", "screen_library"]

LENGTH_SCALE_BOUNDS = (1e-2, 1e3)  # l, on z-scored parameters
SIGNAL_VARIANCE_BOUNDS = (1e-4, 1e4)  # sigma_f^2
NOISE_VARIANCE_BOUNDS = (1e-12, 1.0)  # sigma_n^2
JITTER = 1e-10  # scikit-learn's default ``alpha``, added to the kernel diagonal
N_LENGTH_GRID = 16  # log-spaced length scales of the coarse search (3 per decade)


def _loglik_per_value(log_ab, lam, q, m):
    """L / (n m) and its gradient in (log sigma_f^2, log sigma_n^2), for eigenvalues ``lam``."""
    a, b = np.exp(log_ab)
    v = a * lam + b + JITTER
    nm = lam.size * m
    value = -0.5 * np.sum(q / v) - 0.5 * m * np.sum(np.log(v)) - 0.5 * nm * np.log(2 * np.pi)
    w = 0.5 * q / v**2 - 0.5 * m / v
    return value / nm, np.array([a * np.sum(w * lam), b * np.sum(w)]) / nm


def _best_signal_noise(lam, q, m, start):
    """(sigma_f^2, sigma_n^2, L) maximizing L at one length scale (R's eigenvalues ``lam``)."""
    bounds = np.log([SIGNAL_VARIANCE_BOUNDS, NOISE_VARIANCE_BOUNDS])
    ratio = np.logspace(-10, 2, 25)[:, None]  # sigma_n^2 / sigma_f^2, sigma_f^2 at its optimum for it
    a = np.maximum(np.sum(q / (lam + ratio), axis=1) / (lam.size * m), SIGNAL_VARIANCE_BOUNDS[0])
    candidates = np.vstack([np.log(start), np.log(np.column_stack([a, a * ratio[:, 0]]))])
    candidates = np.clip(candidates, bounds[:, 0], bounds[:, 1])
    v = np.exp(candidates[:, :1]) * lam + np.exp(candidates[:, 1:]) + JITTER
    values = -0.5 * np.sum(q / v, axis=1) - 0.5 * m * np.sum(np.log(v), axis=1)  # L up to a constant
    res = minimize(
        lambda x: tuple(-t for t in _loglik_per_value(x, lam, q, m)),
        candidates[int(np.argmax(values))],
        jac=True,
        method="L-BFGS-B",
        bounds=bounds,
        options={"ftol": 1e-15, "gtol": 1e-10, "maxiter": 500},
    )
    a, b = np.exp(res.x)
    return float(a), float(b), float(-res.fun * lam.size * m)


def _profile(log_l, d2, factor, m, start):
    """(sigma_f^2, sigma_n^2, L) at length scale exp(log_l), L maximized over the other two."""
    lam, u = np.linalg.eigh(np.exp(-0.5 * d2 * np.exp(-2.0 * log_l)))
    q = np.sum((u.T @ factor) ** 2, axis=1)  # sum over pixels of (U^T Y)^2
    return _best_signal_noise(np.clip(lam, 0.0, None), q, m, start)


def fit_shared_kernel(z, y, *, start=(1.0, 1.0, 1e-4)):
    """Maximum-likelihood (l, sigma_f^2, sigma_n^2) of the shared kernel, found deterministically.

    A grid of :data:`N_LENGTH_GRID` log-spaced l over :data:`LENGTH_SCALE_BOUNDS` (plus
    ``start``'s), a bounded Brent search between the neighbours of its best point; at each l,
    (sigma_f^2, sigma_n^2) by L-BFGS-B from the best of a fixed set of candidates. No random draws.

    Parameters
    ----------
    z : array_like (n, k)
        Z-scored stellar parameters.
    y : array_like (n, m)
        Mean-subtracted spectra.
    start : tuple of float
        (l, sigma_f^2, sigma_n^2), one more candidate of the searches.

    Returns
    -------
    tuple of float
        (l, sigma_f^2, sigma_n^2, log marginal likelihood summed over the m pixels).
    """
    z, y = np.asarray(z, dtype=np.float64), np.asarray(y, dtype=np.float64)
    d2 = np.sum((z[:, None, :] - z[None, :, :]) ** 2, axis=-1)
    p, s, _ = np.linalg.svd(y, full_matrices=False)
    factor, m = p * s, y.shape[1]  # F F^T = Y Y^T with min(n, m) columns
    lo, hi = np.log(LENGTH_SCALE_BOUNDS)
    lo_ab, hi_ab = zip(SIGNAL_VARIANCE_BOUNDS, NOISE_VARIANCE_BOUNDS, strict=True)
    ab0 = np.clip(start[1:], lo_ab, hi_ab)
    grid = np.linspace(lo, hi, N_LENGTH_GRID)
    points = np.append(grid, np.clip(np.log(start[0]), lo, hi))
    values = [_profile(t, d2, factor, m, ab0)[2] for t in points]
    best = float(points[int(np.argmax(values))])
    res = minimize_scalar(  # between the coarse grid's neighbours of the best point
        lambda t: -_profile(t, d2, factor, m, ab0)[2],
        bounds=(grid[grid < best - 1e-9].max(initial=lo), grid[grid > best + 1e-9].min(initial=hi)),
        method="bounded",
        options={"xatol": 1e-6},
    )
    best = float(res.x) if -res.fun > max(values) else best
    a, b, loglik = _profile(best, d2, factor, m, ab0)
    return float(np.exp(best)), a, b, loglik


def _one_blas_thread():
    """A context in which BLAS uses one thread (results then do not depend on the thread count)."""
    from threadpoolctl import threadpool_limits  # a scikit-learn dependency

    return threadpool_limits(limits=1, user_api="blas")


class SpectrumGPR:
    """Spectra (n, m) as a Gaussian process of stellar parameters (n, k), shared kernel.

    Parameters
    ----------
    length_scale, signal_std, noise_std : float
        Starting hyper-parameters (l, sigma_f, sigma_n of Eq. A5-A6): one more candidate of the
        deterministic search of :func:`fit_shared_kernel`, which decides unless they are better.
    n_restarts : int, optional
        Deprecated and unused: the search needs no random restarts (a value warns).
    seed : int
        Unused by the fit (nothing is random); kept for compatibility.
    """

    def __init__(
        self,
        *,
        length_scale: float = 1.0,
        signal_std: float = 1.0,
        noise_std: float = 0.01,
        n_restarts: int | None = None,
        seed: int = 0,
    ):
        if n_restarts is not None:
            warnings.warn(
                "SpectrumGPR(n_restarts=) is unused: the hyper-parameter search is deterministic",
                DeprecationWarning,
                stacklevel=2,
            )
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
        """Maximum-likelihood hyper-parameters (:func:`fit_shared_kernel`), then the GP on all stars."""
        from sklearn.gaussian_process import GaussianProcessRegressor
        from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel

        params, spectra = self._check(params, spectra)
        if params.shape[0] < 3:
            raise ValueError(f"need at least 3 stars to fit a GPR, got {params.shape[0]}")
        self.param_mean_ = params.mean(axis=0)
        self.param_std_ = params.std(axis=0)
        self.param_std_[self.param_std_ == 0] = 1.0
        self.spectrum_mean_ = spectra.mean(axis=0)
        z, y = self._z(params), spectra - self.spectrum_mean_
        start = (self.length_scale, self.signal_std**2, self.noise_std**2)
        with _one_blas_thread():
            length, signal, noise, _ = fit_shared_kernel(z, y, start=start)
            kernel = ConstantKernel(signal, SIGNAL_VARIANCE_BOUNDS) * RBF(
                length, LENGTH_SCALE_BOUNDS
            ) + WhiteKernel(noise, NOISE_VARIANCE_BOUNDS)
            self._gp = GaussianProcessRegressor(
                kernel=kernel, alpha=JITTER, optimizer=None, normalize_y=False
            )
            self._gp.fit(z, y)
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
        with _one_blas_thread():
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
    seed : int
        Seed of the fold assignment (``default_rng(seed).permutation(n) % n_folds``), the only
        random step: the GPR fits are deterministic, so a seed gives the same stars everywhere.
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
        gp = SpectrumGPR().fit(params[~test], spectra[~test])
        predicted[test] = gp.predict(params[test])
        hypers.append(gp.hyperparameters)
    r = (predicted - spectra) / spectra
    err = rmsae(r)
    return ScreeningResult(err, err < threshold, predicted, float(threshold), hypers)
