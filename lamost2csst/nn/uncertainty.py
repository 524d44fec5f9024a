"""Epistemic uncertainty from a deep ensemble (Lakshminarayanan et al. 2017), beside UaRA-net's own sigma.

UaRA-net's sigma is aleatoric (Sect. 3.2: the noise of the input spectra); the paper names
epistemic uncertainty, which grows where training data are few, as its limit. A deep ensemble
is M networks trained alike from different seeds; for each SED pixel, with member predictions
``mu_i`` and relative sigmas ``s_i`` (flux errors ``s_i mu_i``), the ensemble's Gaussian
mixture has

    mean         mu  = mean_i mu_i
    aleatoric    A^2 = mean_i (s_i mu_i)^2
    epistemic    E^2 = mean_i (mu_i - mu)^2
    total        T^2 = A^2 + E^2

returned *relative* to ``mu`` like the model's own sigma.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from lamost2csst.nn.inference import load_model, predict

__all__ = ["EnsemblePrediction", "combine_members", "predict_ensemble"]


class EnsemblePrediction(NamedTuple):
    sed: np.ndarray  # (n, 574) ensemble mean, scaled
    sigma_aleatoric: np.ndarray  # (n, 574) relative
    sigma_epistemic: np.ndarray  # (n, 574) relative
    sigma: np.ndarray  # (n, 574) relative total


def combine_members(seds, sigmas) -> EnsemblePrediction:
    """Mixture moments of member predictions ``seds``, ``sigmas`` of shape (M, n, m)."""
    seds = np.asarray(seds, dtype=np.float64)
    sigmas = np.asarray(sigmas, dtype=np.float64)
    if seds.shape != sigmas.shape or seds.ndim != 3 or seds.shape[0] < 1:
        raise ValueError(f"seds {seds.shape} and sigmas {sigmas.shape} must both be (M >= 1, n, m)")
    mu = seds.mean(axis=0)
    aleatoric = np.sqrt(np.mean((sigmas * seds) ** 2, axis=0))
    epistemic = seds.std(axis=0)
    total = np.hypot(aleatoric, epistemic)
    f = np.float32
    return EnsemblePrediction(
        mu.astype(f), (aleatoric / mu).astype(f), (epistemic / mu).astype(f), (total / mu).astype(f)
    )


def predict_ensemble(
    norm_flux, norm_error, *, models, mask=None, batch_size: int = 1024
) -> EnsemblePrediction:
    """Predict with every member (loaded models or ``.keras`` paths) and combine them.

    The inputs are validated once, as :func:`lamost2csst.nn.inference.predict` does.
    """
    if len(models) < 2:
        raise ValueError(f"an ensemble needs at least 2 models, got {len(models)}")
    members = [load_model(m) if not hasattr(m, "predict") else m for m in models]
    outputs = [predict(norm_flux, norm_error, mask=mask, model=m, batch_size=batch_size) for m in members]
    return combine_members([o[0] for o in outputs], [o[1] for o in outputs])
