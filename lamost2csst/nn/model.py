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

Beyond the paper, ``domain_input``: a third input ``domain`` of shape (batch, 1), 0 for a
synthetic spectrum (the grid) and 1 for a real one (an empirical library, a survey), and a
real-star branch: ``FC_real 32`` on the last hidden layer of the SED head (``fc_3``) and
``FC_real 574`` to a correction ``delta`` of ln(SED), applied as ``sed * exp(domain * delta)``.
The network learns what synthetic spectra get wrong for real stars in that branch alone, with
everything else kept as trained on the grid, so the synthetic SED (``domain`` 0) stays exactly
what the grid taught: fine-tuning the whole network on real stars, with or without the domain
joined to every dense layer, made the grid test 2-4x worse (EVALUATION.md). ``FC_real 574``
starts at zero, so a network that just got the branch (:func:`add_domain_input`) predicts the
same at both values. Trained with a loss masked outside a library's coverage, ``delta`` learns
nothing at the wavelengths no real star of the training reached: there a fixed (non-trainable)
linear map ``real_extend`` carries the correction on from the covered pixels
(:func:`set_real_coverage`: the edge value, by default), so that the real SED has no step at
the edge of the library's coverage.
"""

from __future__ import annotations

import dataclasses
import json

import keras
import numpy as np
from keras import layers

from lamost2csst.nn.inference import DOMAINS, N_INPUT, N_OUTPUT, takes_domain
from lamost2csst.nn.layers import Extension, LogRatio, Offset, SubUnit

__all__ = [
    "DOMAINS",
    "EXTENSIONS",
    "ModelConfig",
    "add_domain_input",
    "build_uaranet",
    "extension_matrix",
    "grid_network",
    "set_real_coverage",
    "takes_domain",
]

#: How the real-star correction continues beyond the pixels a real library covers.
EXTENSIONS = ("constant", "linear", "none")

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
    domain_input: bool = False  # a third input "domain" (0 synthetic, 1 real) and the real-star branch
    real_layer: int = 32  # width of the real-star branch's hidden layer

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
    sed : keras tensor (batch, n_output)
        The ``sed`` output.
    hidden : keras tensor
        The last hidden layer (the input of the ``sed`` layer).
    """
    h = z
    for i, units in enumerate(config.sed_layers, start=1):
        if config.dropout > 0:
            h = layers.Dropout(config.dropout, name=f"dropout_{i}")(h)
        h = _dense(units, f"fc_{i}")(h)
    sed = layers.Dense(
        config.n_output, activation=config.sed_activation, kernel_initializer="he_normal", name="sed"
    )(h)
    return sed, h


def _real_branch(hidden, sed, domain, config: ModelConfig):
    """The real-star branch: ``sed * exp(domain * delta(hidden))`` (the output named ``sed_real``).

    Parameters
    ----------
    hidden : keras tensor
        The SED head's last hidden layer.
    sed : keras tensor (batch, n_output)
        The synthetic SED.
    domain : keras tensor (batch, 1)
        The ``domain`` input (0 synthetic, 1 real).
    config : ModelConfig
        Architecture.

    Returns
    -------
    keras tensor (batch, n_output)
    """
    h = _dense(config.real_layer, "fc_real_1")(hidden)
    delta = layers.Dense(config.n_output, kernel_initializer="zeros", name="fc_real_2")(h)
    delta = Extension(name="real_extend")(delta)
    factor = layers.Activation("exponential", name="real_factor")(
        layers.Multiply(name="real_delta")([delta, domain])
    )
    return layers.Multiply(name="sed_real")([sed, factor])


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
    """A fresh UaRA-net with inputs ``{"flux", "error"}`` (and ``"domain"``) and outputs ``{"sed", "sigma"}``.

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
    inputs = {"flux": flux, "error": error}
    z = _feature_branch(flux, config)
    sed, hidden = _sed_head(z, config)
    if config.domain_input:
        inputs["domain"] = keras.Input((1,), name="domain")
        sed = _real_branch(hidden, sed, inputs["domain"], config)
    sigma = _sigma_head(z, error, config)
    model = keras.Model(inputs=inputs, outputs={"sed": sed, "sigma": sigma}, name=name)
    _initialise_heads(model, config, sed_bias=sed_bias, sigma_init=sigma_init)
    return model


def add_domain_input(model, config: ModelConfig, *, seed: int | None = None):
    """A copy of the trained ``model`` with the ``domain`` input and the real-star branch.

    Every weight is copied; the branch's last layer starts at zero, so the copy's outputs equal
    ``model``'s for ``domain`` 0 and 1 until it is trained.

    Parameters
    ----------
    model : keras.Model
        A UaRA-net without the input.
    config : ModelConfig
        Its architecture (``domain_input`` False).
    seed : int, optional
        Keras' random state is set to it first, so that the branch's random start depends on it
        alone (not on what was built or loaded before in the process).

    Returns
    -------
    keras.Model
    """
    if takes_domain(model) or config.domain_input:
        raise ValueError("the model already has a domain input")
    if seed is not None:
        keras.utils.set_random_seed(seed)
    new = build_uaranet(dataclasses.replace(config, domain_input=True), name=model.name)
    for layer in new.layers:
        if layer.get_weights() and not layer.name.startswith(("fc_real_", "real_extend")):
            layer.set_weights(model.get_layer(layer.name).get_weights())
    return new


def grid_network(model, config: ModelConfig):
    """The grid-trained network inside a model with a real-star branch: a model without the
    ``domain`` input (``config.domain_input`` False) whose outputs equal ``model``'s at ``domain`` 0."""
    if not takes_domain(model) or config.domain_input:
        raise ValueError("grid_network needs a model with a real-star branch and its config without it")
    plain = build_uaranet(config, name=model.name)
    for layer in plain.layers:
        if layer.get_weights():
            layer.set_weights(model.get_layer(layer.name).get_weights())
    return plain


def extension_matrix(covered, *, extend: str = "constant", wave=None, span: float = 500.0) -> np.ndarray:
    """The ``real_extend`` kernel: ``delta_out = delta @ E`` for a library covering ``covered`` pixels.

    Parameters
    ----------
    covered : array_like of bool (n_output,)
        Pixels where the real stars of the training have targets (one contiguous range).
    extend : {"constant", "linear", "none"}
        Beyond the covered range: the value at its edge pixel; a straight line in wavelength
        through the edge pixel and the pixel ``span`` A inside it; or 0 (the synthetic SED).
    wave : array_like (n_output,), optional
        The output wavelengths (default ``OUTPUT_WAVE``).
    span : float
        Wavelength lever of the ``linear`` rule (A).

    Returns
    -------
    numpy.ndarray float32 (n_output, n_output)
    """
    from lamost2csst.core.grids import OUTPUT_WAVE

    covered = np.asarray(covered, bool)
    wave = OUTPUT_WAVE if wave is None else np.asarray(wave, float)
    if extend not in EXTENSIONS:
        raise ValueError(f"extend must be one of {EXTENSIONS}, got {extend!r}")
    if covered.shape != wave.shape:
        raise ValueError(f"covered has shape {covered.shape}, the output grid {wave.shape}")
    idx = np.flatnonzero(covered)
    if idx.size < 2 or idx[-1] - idx[0] + 1 != idx.size:
        raise ValueError("covered must be one contiguous range of at least two pixels")
    n = wave.size
    matrix = np.zeros((n, n), np.float32)
    matrix[idx, idx] = 1.0
    if extend == "none":
        return matrix
    for side, edge, outside in (
        ("blue", idx[0], np.arange(idx[0])),
        ("red", idx[-1], np.arange(idx[-1] + 1, n)),
    ):
        if not outside.size:
            continue
        if extend == "constant":
            matrix[edge, outside] = 1.0
            continue
        target = wave[edge] + (span if side == "blue" else -span)
        inner = idx[np.argmin(np.abs(wave[idx] - target))]
        t = (wave[outside] - wave[edge]) / (wave[edge] - wave[inner])  # delta = d_e + t (d_e - d_i)
        matrix[edge, outside] = 1.0 + t
        matrix[inner, outside] = -t
    return matrix


def set_real_coverage(model, covered, *, extend: str = "constant") -> None:
    """Set ``model``'s ``real_extend`` for a real library covering ``covered`` (:func:`extension_matrix`)."""
    model.get_layer("real_extend").set_matrix(extension_matrix(covered, extend=extend))
