"""Losses as pure functions of tensors (paper Sect. 3.3).

The Gaussian negative log-likelihood of Eq. 17 on *relative* residuals
``r = (mu - y) / y`` with a relative 1-sigma ``sigma``::

    L = r^2 / (2 sigma^2) + log(sigma) + log(y)      (per pixel)

averaged over the unmasked target pixels. ``log(y)`` does not depend on the network; it is
kept (``include_log_target=True``) so that the value is the true NLL up to the constant
``log sqrt(2 pi)``, which makes losses of different data sets comparable.

beta-NLL (Seitzer et al. 2022, "On the pitfalls of heteroscedastic uncertainty estimation
with probabilistic neural networks") weights each pixel's term by ``stop_gradient(sigma^2)^beta``:
``beta = 0`` is the plain NLL, ``beta = 1`` gives the mean the gradient of a MSE. The weight
changes gradients only; with ``beta > 0`` the reported value is the weighted one.
"""

from __future__ import annotations

from keras import ops

__all__ = ["gaussian_nll"]


def gaussian_nll(y_true, mu, sigma, *, mask=None, beta: float = 0.0, include_log_target: bool = True):
    """Mean Gaussian NLL of relative residuals over unmasked pixels (paper Eq. 17).

    Parameters
    ----------
    y_true : tensor (n, m)
        Target SEDs (> 0 where not masked; any value, even NaN, where masked).
    mu : tensor (n, m)
        Predicted SEDs.
    sigma : tensor (n, m)
        Predicted relative 1-sigma (> 0).
    mask : tensor of bool (n, m), optional
        True where the target pixel is undefined and must not count.
    beta : float
        beta-NLL exponent (0: the paper's loss).
    include_log_target : bool
        Add ``log(y)`` as Eq. 17 writes it.

    Returns
    -------
    scalar tensor
        Sum of the per-pixel terms over unmasked pixels divided by their number.
    """
    if beta < 0:
        raise ValueError(f"beta must be >= 0, got {beta}")
    y_true = ops.convert_to_tensor(y_true)
    dtype = mu.dtype if hasattr(mu, "dtype") else "float32"
    y_true = ops.cast(y_true, dtype)
    mu = ops.cast(mu, dtype)
    sigma = ops.cast(sigma, dtype)
    if mask is None:
        valid = ops.isfinite(y_true)
    else:
        valid = ops.logical_and(ops.logical_not(ops.cast(mask, "bool")), ops.isfinite(y_true))
    safe_y = ops.where(valid, y_true, ops.ones_like(y_true))
    r = (mu - safe_y) / safe_y
    term = ops.square(r) / (2.0 * ops.square(sigma)) + ops.log(sigma)
    if include_log_target:
        term = term + ops.log(ops.abs(safe_y))
    if beta > 0:
        term = term * ops.stop_gradient(ops.power(ops.square(sigma), beta))
    weight = ops.cast(valid, dtype)
    total = ops.sum(ops.where(valid, term, ops.zeros_like(term)))
    return total / ops.maximum(ops.sum(weight), 1.0)
