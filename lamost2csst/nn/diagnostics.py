"""Health checks of a trained UaRA-net that its loss curve does not show.

:func:`error_branch_response` asks whether the uncertainty branch still uses its input: the
``FC'16`` layer on the input errors (Eq. 9) is a ReLU layer fed by 2238 positive values, and
training can drive every unit's pre-activation negative for all realistic inputs ("dead"
ReLUs, which then receive no gradient and never recover). σ is then computed
from the flux features ``Z`` alone and no longer follows the noise the caller states: the
network can only guess the S/N from the texture of the flux. The complete-grid model shipped
on 2026-11-26 is in that state (EVALUATION.md).
"""

from __future__ import annotations

import numpy as np

__all__ = ["error_branch_response"]


def error_branch_response(model, flux, error, *, mask=None, factor: float = 2.0, prediction=None) -> dict:
    """How the uncertainty branch responds to the stated input errors.

    Parameters
    ----------
    model : keras.Model
        A UaRA-net (with the ``fc_err_1`` layer of :func:`lamost2csst.nn.build_uaranet`).
    flux, error : array_like (n_star, 2238)
        Normalized input spectra and their errors (as for :func:`lamost2csst.predict`).
    mask : array_like of bool, optional
        Masked input pixels.
    factor : float
        The input errors are multiplied by this factor for the comparison.
    prediction : tuple of arrays, optional
        ``(sed, sigma)`` of ``predict(flux, error, mask=mask, model=model)`` when the caller
        already has them (a training validation), so that they are not computed again.

    Returns
    -------
    dict
        ``active_units`` (units of ``fc_err_1`` with a positive output for at least one
        star) and ``units``; ``active_fraction`` (fraction of unit-star pairs with a positive
        output); ``sigma_ratio_median`` (median over stars and pixels of
        sigma(error * factor) / sigma(error): 1.0 exactly when the branch is dead) and
        ``sed_max_relative_change`` (the SED should not depend on the errors at all).
    """
    import keras

    from lamost2csst.nn.inference import DOMAINS, network_inputs, predict, prepare_network_arrays

    if not factor > 0:
        raise ValueError(f"factor must be positive, got {factor!r}")
    net_flux, net_error = prepare_network_arrays(flux, error, mask=mask)
    branch = keras.Model(model.inputs, model.get_layer("fc_err_1").output)
    units = np.asarray(branch(network_inputs(model, net_flux, net_error, DOMAINS["real"]), training=False))
    sed, sigma = prediction if prediction is not None else predict(flux, error, mask=mask, model=model)
    sed_k, sigma_k = predict(flux, np.asarray(error) * factor, mask=mask, model=model)
    return {
        "units": int(units.shape[1]),
        "active_units": int((units > 0).any(axis=0).sum()),
        "active_fraction": float((units > 0).mean()),
        "factor": float(factor),
        "sigma_ratio_median": float(np.median(sigma_k / sigma)),
        "sed_max_relative_change": float(np.max(np.abs(sed_k / sed - 1))),
    }
