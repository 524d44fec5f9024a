"""UaRA-net (paper Sect. 3, Fig. 1b, Table 1): a SED branch and an uncertainty branch.

SED branch: ``Conv(4,3,2)`` stem, six residual shrinkage sub-units
``(4,3,2) (4,3,1) (8,3,2) (8,3,1) (16,3,2) (16,3,1)``, BN + ReLU, global average pooling to the
latent ``Z`` (16, Eq. 7), then ``FC 100-200-300-574`` (Eq. 8) giving the scaled SED.
Uncertainty branch: ``FC'16`` on the input errors (Eq. 9), concatenated with ``Z`` (Eq. 10),
``FC'64`` and ``FC'574`` with softplus (Eq. 11) giving the relative 1-sigma of each SED pixel.
ReLU and He-normal initialisation throughout (Sect. 4.1).

Two choices the paper leaves open, fixed here and recorded in the model config:

* ``error_scale``: the normalized input errors (~0.01-0.05 at SNR 20-100) are multiplied by a
  constant (default 50) before ``FC'16`` so that they enter at order unity; a fixed rescaling,
  no parameters. ``error_input="log"`` instead feeds ``ln(error / 0.03)`` (values of both
  signs): with the linear input the shipped model's ``FC'16`` units all died in training
  (EVALUATION.md; :mod:`lamost2csst.nn.diagnostics`).
* ``sed_activation``: ``FC_4`` predicts ln(SED) and the output is its exponential (default).
  Scaled SEDs span two orders of magnitude in the GU band across 5000-9750 K; the loss is on
  *relative* residuals, and a linear head starting from the mean SED gives residuals of
  r ~ 10-100 for cool stars in the UV, whose r^2/sigma^2 blew training up (measured: NLL ~1e9
  after 40 epochs on the small grid). ``"linear"`` keeps the literal reading of Eq. 8.
* ``sed_bias``: the bias of ``FC_4`` may start at the mean training SED (in ln for the
  exponential head; the network then learns departures from the mean star); this changes the
  start point, not the architecture.
"""

from __future__ import annotations

import dataclasses
import json

import keras
import numpy as np
from keras import layers

from lamost2csst.nn.inference import N_INPUT, N_OUTPUT
from lamost2csst.nn.layers import LogRatio, Offset, SubUnit

__all__ = ["ModelConfig", "build_uaranet"]

LOG_ERROR_REFERENCE = 0.03  # a normalized input error at S/N ~33: ln(error / this) ~ +-1 over S/N 12-90


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Architecture hyper-parameters (defaults: Table 1 of the paper)."""

    n_input: int = N_INPUT
    n_output: int = N_OUTPUT
    stem: tuple[int, int, int] = (4, 3, 2)
    sub_units: tuple[tuple[int, int, int], ...] = (
        (4, 3, 2),
        (4, 3, 1),
        (8, 3, 2),
        (8, 3, 1),
        (16, 3, 2),
        (16, 3, 1),
    )
    sed_layers: tuple[int, ...] = (100, 200, 300)
    error_layer: int = 16
    joint_layer: int = 64
    attention_activation: str = "relu"
    error_scale: float = 50.0
    error_input: str = "scale"  # "scale": errors x error_scale (as trained so far); "log": ln(error / 0.03)
    sigma_floor: float = 1e-5
    dropout: float = 0.0  # > 0 enables MC dropout before every hidden FC layer (epistemic option)
    sed_activation: str = "exponential"  # "linear" is the literal reading of Eq. 8

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown model config keys {sorted(unknown)}; known: {sorted(known)}")
        d = dict(d)
        for key in ("stem",):
            if key in d:
                d[key] = tuple(d[key])
        if "sub_units" in d:
            d["sub_units"] = tuple(tuple(u) for u in d["sub_units"])
        if "sed_layers" in d:
            d["sed_layers"] = tuple(d["sed_layers"])
        return cls(**d)


def _dense(units, name, activation="relu"):
    return layers.Dense(units, activation=activation, kernel_initializer="he_normal", name=name)


def _feature_branch(flux, config: ModelConfig):
    """The latent ``Z`` of the SED branch: stem, residual sub-units, BN + ReLU, global average pool.

    Parameters
    ----------
    flux : keras tensor (batch, n_input)
        The ``flux`` input.
    config : ModelConfig
        Architecture.

    Returns
    -------
    keras tensor (batch, channels)
        The output of the ``gap`` layer.
    """
    x = layers.Reshape((config.n_input, 1), name="as_channels")(flux)
    channels, kernel, stride = config.stem
    x = layers.Conv1D(
        channels, kernel, strides=stride, padding="same", kernel_initializer="he_normal", name="stem"
    )(x)
    for i, (channels, kernel, stride) in enumerate(config.sub_units, start=1):
        x = SubUnit(
            channels=channels,
            kernel_size=kernel,
            stride=stride,
            attention_activation=config.attention_activation,
            name=f"sub_unit_{i}",
        )(x)
    x = layers.BatchNormalization(name="bn")(x)
    x = layers.ReLU(name="relu")(x)
    return layers.GlobalAveragePooling1D(name="gap")(x)


def _sed_head(z, config: ModelConfig):
    """The SED head on the latent ``z``: ``FC 100-200-300`` (optional dropout) and the ``sed`` layer.

    Parameters
    ----------
    z : keras tensor
        The latent of :func:`_feature_branch`.
    config : ModelConfig
        Architecture.

    Returns
    -------
    keras tensor (batch, n_output)
        The ``sed`` output.
    """
    h = z
    for i, units in enumerate(config.sed_layers, start=1):
        if config.dropout > 0:
            h = layers.Dropout(config.dropout, name=f"dropout_{i}")(h)
        h = _dense(units, f"fc_{i}")(h)
    return layers.Dense(
        config.n_output, activation=config.sed_activation, kernel_initializer="he_normal", name="sed"
    )(h)


def _sigma_head(z, error, config: ModelConfig):
    """The uncertainty branch: the input errors through ``FC'16``, joined with ``z``, to ``sigma``.

    Parameters
    ----------
    z : keras tensor
        The latent of :func:`_feature_branch`.
    error : keras tensor (batch, n_input)
        The ``error`` input.
    config : ModelConfig
        Architecture.

    Returns
    -------
    keras tensor (batch, n_output)
        The ``sigma`` output (softplus plus the floor).
    """
    if config.error_input == "scale":
        e = layers.Rescaling(config.error_scale, name="error_scale")(error)
    elif config.error_input == "log":
        e = LogRatio(reference=LOG_ERROR_REFERENCE, name="error_log")(error)
    else:
        raise ValueError(f"error_input must be 'scale' or 'log', got {config.error_input!r}")
    e = _dense(config.error_layer, "fc_err_1")(e)
    joint = layers.Concatenate(name="concat")([z, e])
    if config.dropout > 0:
        joint = layers.Dropout(config.dropout, name="dropout_err")(joint)
    joint = _dense(config.joint_layer, "fc_err_2")(joint)
    sigma = layers.Dense(
        config.n_output, activation="softplus", kernel_initializer="he_normal", name="fc_err_3"
    )(joint)
    return Offset(offset=config.sigma_floor, name="sigma")(sigma)


def _initialise_heads(model: keras.Model, config: ModelConfig, *, sed_bias, sigma_init: float) -> None:
    """Zero both heads' kernels and set their biases to the start point ``(sed_bias, sigma_init)``.

    Parameters
    ----------
    model : keras.Model
        A freshly built UaRA-net (changed in place).
    config : ModelConfig
        Its architecture.
    sed_bias : array_like (n_output,) or None
        The starting SED (the ``sed`` bias; its logarithm for the exponential head).
    sigma_init : float
        The starting relative sigma.
    """
    # Both heads start from a zero kernel, i.e. at exactly (sed_bias, sigma_init) for every
    # star: a He-normal last layer starts at SEDs off by factors of several (r^2 / sigma^2
    # ~ 1e5) and training spent its first thousands of steps undoing that (measured).
    sigma_layer = model.get_layer("fc_err_3")
    kernel_w, bias = sigma_layer.get_weights()
    start = max(sigma_init - config.sigma_floor, 1e-7)
    sigma_layer.set_weights([np.zeros_like(kernel_w), np.full_like(bias, np.log(np.expm1(start)))])
    sed_layer = model.get_layer("sed")
    kernel_w, bias = sed_layer.get_weights()
    sed_layer.set_weights([np.zeros_like(kernel_w), bias])
    if sed_bias is not None:
        layer = model.get_layer("sed")
        kernel_w, bias = layer.get_weights()
        sed_bias = np.asarray(sed_bias, dtype=bias.dtype)
        if sed_bias.shape != bias.shape:
            raise ValueError(f"sed_bias has shape {sed_bias.shape}, expected {bias.shape}")
        if config.sed_activation == "exponential":
            if not np.all(sed_bias > 0):
                raise ValueError("sed_bias must be positive (it is the starting SED; the head works in ln)")
            sed_bias = np.log(sed_bias)
        layer.set_weights([kernel_w, sed_bias])


def build_uaranet(
    config: ModelConfig | None = None, *, sed_bias=None, sigma_init: float = 0.05, name: str = "uaranet"
) -> keras.Model:
    """A fresh UaRA-net with inputs ``{"flux", "error"}`` and outputs ``{"sed", "sigma"}``.

    Parameters
    ----------
    config : ModelConfig, optional
        Architecture; Table 1 by default.
    sed_bias : array_like (n_output,), optional
        The SED the network starts from (e.g. the geometric mean of the training SEDs): the
        bias of ``FC_4`` (its logarithm for the exponential head).
    sigma_init : float
        The sigma head's bias starts where softplus gives this relative sigma, so that the
        first NLL steps are not dominated by ``r^2 / sigma^2`` with a tiny initial sigma.
    """
    if not sigma_init > 0:
        raise ValueError(f"sigma_init must be > 0, got {sigma_init}")
    config = config or ModelConfig()
    flux = keras.Input((config.n_input,), name="flux")
    error = keras.Input((config.n_input,), name="error")
    z = _feature_branch(flux, config)
    sed = _sed_head(z, config)
    sigma = _sigma_head(z, error, config)
    model = keras.Model(
        inputs={"flux": flux, "error": error}, outputs={"sed": sed, "sigma": sigma}, name=name
    )
    _initialise_heads(model, config, sed_bias=sed_bias, sigma_init=sigma_init)
    return model
