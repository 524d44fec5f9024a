"""Simple models to compare a UaRA-net with: what a linear map achieves from the same training data."""

from __future__ import annotations

import numpy as np

from lamost2csst.nn.training import epoch_pairs

__all__ = ["RIDGE_SNRS", "RidgeBaseline"]

#: SNRs of the noise draws a :class:`RidgeBaseline` is fitted on (the paper's training SNRs).
RIDGE_SNRS = (20.0, 25.0, 30.0, 35.0, 40.0)


class RidgeBaseline:
    """Ridge regression from the normalized input (minus 1) to ln(SED) (scikit-learn ``Ridge``).

    Call it with normalized input fluxes ``(n, 2238)`` to get SEDs ``(n, 574)``.

    Parameters
    ----------
    flux : array_like (n, n_in)
        Normalized input fluxes (masked pixels filled, as the network sees them).
    sed : array_like (n, n_out)
        Their scaled SEDs (positive).
    alpha : float
        Ridge regularization strength.
    """

    def __init__(self, flux, sed, *, alpha: float = 1.0):
        from sklearn.linear_model import Ridge

        self.model = Ridge(alpha=alpha).fit(np.asarray(flux) - 1.0, np.log(sed))

    @classmethod
    def from_library(cls, lib, *, seed, draws: int = 10, snrs=RIDGE_SNRS) -> RidgeBaseline:
        """Fit on ``draws`` noise draws of each star of a training library at each of ``snrs``.

        ``lib`` is a training library (:class:`lamost2csst.core.pairs.GriddedLibrary` with
        ``teff``); draw ``k`` uses the generator ``default_rng([seed, 555, k])``.
        """
        x, y = [], []
        for k in range(draws):
            d = epoch_pairs(lib, snrs=snrs, rng=np.random.default_rng([seed, 555, k]))
            x.append(d.flux)
            y.append(d.sed)
        return cls(np.concatenate(x), np.concatenate(y))

    def __call__(self, flux) -> np.ndarray:
        return np.exp(self.model.predict(np.asarray(flux) - 1.0))
