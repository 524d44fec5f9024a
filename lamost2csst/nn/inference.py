"""Saving, loading and running UaRA-net: the one predict loop of the project.

Model files are Keras 3 ``.keras`` archives (JSON config + HDF5 weights; no pickle, no Lambda
layers) loaded with ``safe_mode=True``. Beside each ``NAME.keras`` a ``NAME.json`` model card
holds the training provenance (command, data, epochs, time, machine) and the model config,
and, once fitted on real stars, the model's discrepancy under the key ``"sigma_sys"``
(:meth:`lamost2csst.core.discrepancy.ModelDiscrepancy.to_dict`; :func:`model_discrepancy`).

:func:`predict` returns the total relative sigma, ``sigma = hypot(sigma_net, sigma_sys)``:
the network's own (aleatoric) ``sigma_net`` and the model discrepancy ``sigma_sys`` added in
quadrature (:mod:`lamost2csst.core.discrepancy`); ``return_parts=True`` gives all three.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from importlib import resources
from pathlib import Path
from typing import NamedTuple

import numpy as np

from lamost2csst.core.discrepancy import ModelDiscrepancy
from lamost2csst.core.grids import INPUT_WAVE, OUTPUT_WAVE
from lamost2csst.core.inputs import check_unmasked_pixels, fill_masked_pixels

__all__ = [
    "DISCREPANCY_KEY",
    "DOMAINS",
    "MASKED_ERROR",
    "SEDPrediction",
    "default_model_path",
    "load_model",
    "model_card",
    "model_discrepancy",
    "model_hash",
    "predict",
    "prepare_network_arrays",
    "save_model",
    "takes_domain",
    "write_model_card",
]

#: The values of a model's ``domain`` input (:attr:`lamost2csst.nn.model.ModelConfig.domain_input`):
#: what kind of spectrum a prediction is for. Real is what a survey observes.
DOMAINS = {"synthetic": 0.0, "real": 1.0}

#: The model card's key of the model discrepancy (``ModelDiscrepancy.to_dict()``).
DISCREPANCY_KEY = "sigma_sys"

#: Normalized 1-sigma error given to masked input pixels (their flux is set to the continuum, 1).
#: An error of 1 means "no information at this pixel"; pre-training shows the network such
#: pixels (random masked spans), so it learns to ignore them.
MASKED_ERROR = 1.0

#: Pixels of the network's input (on INPUT_WAVE) and output (on OUTPUT_WAVE).
N_INPUT = INPUT_WAVE.size
N_OUTPUT = OUTPUT_WAVE.size

#: Matmul/convolution precision of the JAX forward pass. "highest" is full float32: on an H200
#: the default (TF32) was 17 % faster but changed SEDs by up to 1.0 % (median 7e-5) against
#: the TensorFlow-CPU reference; "highest" agreed to 4e-6 (benchmarks/results/predict_device_h200.json).
JAX_MATMUL_PRECISION = "highest"


def default_model_path() -> Path:
    """The shipped model: ``lamost2csst/data/model/uaranet.keras``."""
    return Path(str(resources.files("lamost2csst") / "data" / "model" / "uaranet.keras"))


def _card_path(path: Path) -> Path:
    return path.with_suffix(".json")


def save_model(model, path, *, card: dict | None = None) -> Path:
    """Write ``model`` to ``path`` (``.keras``) and its model card beside it (``.json``)."""
    path = Path(path)
    if path.suffix != ".keras":
        raise ValueError(f"model files end in .keras, got {path.name!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.keras")
    model.save(tmp)
    os.replace(tmp, path)
    card = dict(card or {})
    card["sha256"] = model_hash(path)
    _card_path(path).write_text(json.dumps(card, indent=1, sort_keys=True, default=str) + "\n")
    return path


def write_model_card(path, card: dict) -> Path:
    """Write the card of the ``.keras`` file ``path`` (sha256 recomputed); the weights are not touched."""
    path = Path(path)
    card = {**card, "sha256": model_hash(path)}
    _card_path(path).write_text(json.dumps(card, indent=1, sort_keys=True, default=str) + "\n")
    return _card_path(path)


def model_hash(path) -> str:
    """SHA-256 of a model file (provenance of predictions)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def model_card(path=None) -> dict:
    """The model card (``.json`` beside the ``.keras`` file); empty if there is none."""
    path = Path(path) if path is not None else default_model_path()
    card = _card_path(path)
    return json.loads(card.read_text()) if card.exists() else {}


def model_discrepancy(path=None) -> ModelDiscrepancy:
    """The model discrepancy of the model at ``path`` (the shipped model when None), from its card.

    The card's ``"sigma_sys"`` entry (:meth:`ModelDiscrepancy.to_dict`), or
    :meth:`ModelDiscrepancy.none` when the card (or the card file) has none: then
    ``sigma_total == sigma_net``. Read once per process and card file (a changed card is read
    again), so a Dask worker reads it at its first task, like the model.

    Raises
    ------
    ValueError
        A malformed entry (missing fields, values out of range, a pixel count other than
        ``OUTPUT_WAVE``'s); the message names the card file.
    """
    path = Path(path) if path is not None else default_model_path()
    card = _card_path(path)
    if not card.exists():
        return ModelDiscrepancy.none(N_OUTPUT)
    return _discrepancy_cached(str(card.resolve()), card.stat().st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _discrepancy_cached(card: str, mtime_ns: int) -> ModelDiscrepancy:  # noqa: ARG001 - the cache key
    try:
        entry = json.loads(Path(card).read_text()).get(DISCREPANCY_KEY)
    except (ValueError, AttributeError) as err:
        raise ValueError(f"{card}: the model card is not a JSON object ({err})") from None
    if entry is None:
        return ModelDiscrepancy.none(N_OUTPUT)
    try:
        if not isinstance(entry, dict):
            raise ValueError(f"expected a JSON object, got {type(entry).__name__}")
        discrepancy = ModelDiscrepancy.from_dict(entry)
        if discrepancy.n_pixel != N_OUTPUT:
            raise ValueError(f"it has {discrepancy.n_pixel} pixels, OUTPUT_WAVE {N_OUTPUT}")
    except (ValueError, TypeError) as err:
        raise ValueError(
            f"{card}: malformed {DISCREPANCY_KEY!r} entry of the model card ({err}); it must hold "
            "lamost2csst.core.discrepancy.ModelDiscrepancy.to_dict()"
        ) from None
    for values in (discrepancy.scale, discrepancy.floor, discrepancy.fitted):
        values.setflags(write=False)  # shared by every caller in this process (the cache)
    return discrepancy


@functools.lru_cache(maxsize=4)
def _load_cached(path: str, mtime_ns: int):  # noqa: ARG001 - the lru_cache key: a changed file loads again
    import keras

    import lamost2csst.nn.layers  # noqa: F401  (registers the custom layers)

    try:
        return keras.saving.load_model(path, compile=False, safe_mode=True)
    except ValueError as err:
        if "safe_mode" in str(err) or "unsafe" in str(err).lower():
            raise ValueError(
                f"{path}: refusing to load a model file that carries Python code (Lambda layers or "
                f"pickled functions); lamost2csst loads models in Keras safe mode only ({err})"
            ) from None
        raise


def load_model(path=None, *, fresh: bool = False):
    """Load a UaRA-net ``.keras`` file (the shipped model when ``path`` is None).

    Loaded models are cached per process (one load per Dask worker); a file changed on disk
    is loaded again; ``fresh=True`` returns a new copy outside the cache (one to change).
    Files are loaded in Keras safe mode: a file that would run Python code (a ``Lambda``
    layer, a pickled function) raises ``ValueError`` instead.
    """
    path = Path(path) if path is not None else default_model_path()
    if not path.exists():
        hint = (
            " (the shipped model is missing: reinstall the package)" if path == default_model_path() else ""
        )
        raise FileNotFoundError(f"no model file at {path}{hint}")
    if path.suffix != ".keras":
        raise ValueError(f"expected a Keras 3 .keras model file, got {path.name!r}")
    if fresh:
        return _load_cached.__wrapped__(str(path.resolve()), path.stat().st_mtime_ns)
    return _load_cached(str(path.resolve()), path.stat().st_mtime_ns)


def takes_domain(model) -> bool:
    """Whether ``model`` has the ``domain`` input (:attr:`~lamost2csst.nn.model.ModelConfig.domain_input`)."""
    return any(getattr(t, "name", None) == "domain" for t in model.inputs)


def domain_value(domain: str | None) -> float:
    """The ``domain`` input for a prediction of kind ``domain`` (None: ``"real"``).

    Raises
    ------
    ValueError
        ``domain`` is not one of :data:`DOMAINS`.
    """
    if domain is None:
        domain = "real"
    if domain not in DOMAINS:
        raise ValueError(f"domain must be one of {sorted(DOMAINS)}, got {domain!r}")
    return DOMAINS[domain]


def network_inputs(model, flux, error, domain: float) -> dict:
    """The input dict of ``model``: ``flux``, ``error`` and, for a model that takes it, ``domain``."""
    inputs = {"flux": flux, "error": error}
    if takes_domain(model):
        inputs["domain"] = np.full((flux.shape[0], 1), domain, np.float32)
    return inputs


def prepare_network_arrays(norm_flux, norm_error, *, mask=None):
    """Validated float32 network inputs; masked pixels get flux 1 and error ``MASKED_ERROR``.

    Raises
    ------
    ValueError
        Wrong shapes, NaN/inf or non-positive errors on pixels that are not masked.
    """
    flux, error, mask = _checked_shapes(norm_flux, norm_error, mask)
    mask = np.zeros(flux.shape, bool) if mask is None else mask
    return fill_masked_pixels(flux, error, mask, masked_error=MASKED_ERROR)


def _checked_shapes(norm_flux, norm_error, mask):
    """``(flux, error, mask)`` as arrays after the shape and dtype checks (values are not checked;
    ``mask`` stays None when not given)."""
    flux = np.asarray(norm_flux)
    error = np.asarray(norm_error)
    for name, a in (("norm_flux", flux), ("norm_error", error)):
        if a.dtype.kind not in "fiu":
            raise ValueError(f"{name} must be numeric, got dtype {a.dtype}")
        if a.ndim != 2 or a.shape[1] != N_INPUT:
            raise ValueError(
                f"{name} has shape {a.shape}; expected (n_star, {N_INPUT}) on INPUT_WAVE "
                "(use lamost2csst.prepare_inputs to resample and normalize observed spectra)"
            )
    if flux.shape != error.shape:
        raise ValueError(f"norm_flux {flux.shape} and norm_error {error.shape} differ in shape")
    if mask is not None:
        mask = np.asarray(mask)
        if mask.dtype != bool or mask.shape != flux.shape:
            raise ValueError(
                f"mask must be a boolean array of shape {flux.shape}, got {mask.dtype} {mask.shape}"
            )
    return flux, error, mask


@functools.lru_cache(maxsize=8)
def _compiled_forward(model, backend=None):
    """``forward(flux, error, *, domain=1.0, pad_to=None) -> (sed, sigma)``, compiled for the backend.

    ``domain`` is the value of the model's ``domain`` input (ignored by a model without one).

    TensorFlow (the default): one ``tf.function``, TF32 off (full float32 on GPUs too). JAX
    (``KERAS_BACKEND=jax``, e.g. on a GPU machine without TensorFlow): one ``jax.jit`` of the
    model's stateless call at ``JAX_MATMUL_PRECISION``. Any other
    backend (or ``backend="eager"``): the plain call.
    """
    import keras

    backend = backend or keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_tensor_float_32_execution(False)  # see JAX_MATMUL_PRECISION

        @tf.function(reduce_retracing=True)
        def tf_forward(inputs):
            out = model(inputs, training=False)
            return out["sed"], out["sigma"]

        def forward(flux, error, *, domain=1.0, pad_to=None):  # noqa: ARG001 - tf.function retraces little
            s, e = tf_forward(network_inputs(model, flux, error, domain))
            return s.numpy(), e.numpy()

        forward.compiled = tf_forward  # for tests: experimental_get_tracing_count() counts traces
        return forward
    if backend == "jax":
        import jax

        @jax.jit
        def jax_forward(trainable, non_trainable, inputs):
            out, _ = model.stateless_call(trainable, non_trainable, inputs, training=False)
            return out["sed"], out["sigma"]

        precision = JAX_MATMUL_PRECISION

        def forward(flux, error, *, domain=1.0, pad_to=None):
            # jax.jit compiles once per input shape (on a GPU ~10-30 s each, autotuning
            # included): pad the batch to pad_to, or else to the next power of two (flux 1,
            # error 1: a valid, ignorable spectrum), so that the ragged last batches of a
            # survey's chunks reuse the compiled shape instead of compiling anew.
            n = flux.shape[0]
            size = pad_to if pad_to is not None and pad_to >= n else 1 << max(n - 1, 0).bit_length()
            if size != n:
                flux = np.concatenate([flux, np.ones((size - n, flux.shape[1]), flux.dtype)])
                error = np.concatenate([error, np.ones((size - n, error.shape[1]), error.dtype)])
            # the weights as they are now (a model changed after its first prediction is not stale)
            trainable = [v.value for v in model.trainable_variables]
            non_trainable = [v.value for v in model.non_trainable_variables]
            with jax.default_matmul_precision(precision):
                s, e = jax_forward(trainable, non_trainable, network_inputs(model, flux, error, domain))
            return np.asarray(s)[:n], np.asarray(e)[:n]

        forward.compiled = jax_forward  # for tests: jax_forward._cache_size() counts compilations

        return forward

    def forward(flux, error, *, domain=1.0, pad_to=None):  # noqa: ARG001
        out = model(network_inputs(model, flux, error, domain), training=False)
        return keras.ops.convert_to_numpy(out["sed"]), keras.ops.convert_to_numpy(out["sigma"])

    return forward


class SEDPrediction(NamedTuple):
    """What :func:`predict` returns with ``return_parts=True``; each float32 (n_star, 574).

    ``sigma = hypot(sigma_net, sigma_sys)`` (all relative: flux error = ``sigma * sed``).
    """

    sed: np.ndarray  #: SED on OUTPUT_WAVE, scaled like lamost2csst.scale_sed
    sigma: np.ndarray  #: total relative 1-sigma
    sigma_net: np.ndarray  #: the network's own (aleatoric) relative 1-sigma
    sigma_sys: np.ndarray  #: model discrepancy (0 where the model has none)


def predict(
    norm_flux,
    norm_error,
    *,
    mask=None,
    model=None,
    batch_size: int = 1024,
    discrepancy: ModelDiscrepancy | None = None,
    return_parts: bool = False,
    domain: str | None = None,
):
    """Predicted scaled SEDs and relative 1-sigma uncertainties for normalized spectra.

    Parameters
    ----------
    norm_flux, norm_error : array_like (n_star, 2238)
        Normalized rest-frame spectra on ``INPUT_WAVE`` and their 1-sigma errors (as
        :func:`lamost2csst.prepare_inputs` returns them).
    mask : array_like of bool (n_star, 2238), optional
        True where an input pixel has no data. Masked pixels are given flux 1 (the continuum)
        and error ``MASKED_ERROR``; NaN/inf on unmasked pixels is an error, never guessed.
    model : keras.Model or path, optional
        A loaded model or a ``.keras`` path; the shipped model by default.
    batch_size : int
        Spectra per forward pass (1024 is fastest on CPU).
    discrepancy : ModelDiscrepancy, optional
        The model discrepancy added in quadrature to the network's sigma
        (:mod:`lamost2csst.core.discrepancy`). By default, when ``model`` is None or a path:
        the one of that model's card (:func:`model_discrepancy`). When ``model`` is an
        already-loaded ``keras.Model`` its card is unknown, so the default is
        ``ModelDiscrepancy.none()`` (``sigma == sigma_net``): pass
        ``discrepancy=model_discrepancy(path)`` to apply the card's.
    return_parts : bool
        Return an :class:`SEDPrediction` ``(sed, sigma, sigma_net, sigma_sys)`` instead of
        ``(sed, sigma)``.
    domain : {"real", "synthetic"}, optional
        What the spectra are, for a model co-trained on real stars (one with a ``domain`` input,
        :attr:`~lamost2csst.nn.model.ModelConfig.domain_input`): ``"real"`` (the default; a
        survey's spectra) predicts the SED a real star of that spectrum has, ``"synthetic"`` the
        SED of the synthetic grid's star. A model without the input gives the same for both.

    Returns
    -------
    sed, sigma : numpy.ndarray float32 (n_star, 574)
        SED on ``OUTPUT_WAVE`` scaled like :func:`lamost2csst.scale_sed`, and its total
        relative 1-sigma uncertainty ``hypot(sigma_net, sigma_sys)`` (flux error =
        ``sigma * sed``). Without a discrepancy (``ModelDiscrepancy.none()``) ``sigma`` is the
        network's output, bit for bit.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if discrepancy is not None and not isinstance(discrepancy, ModelDiscrepancy):
        raise ValueError(f"discrepancy must be a ModelDiscrepancy, got {type(discrepancy).__name__}")
    value = domain_value(domain)
    flux, error, mask = _checked_shapes(norm_flux, norm_error, mask)
    check_unmasked_pixels(flux, error, mask)  # bad input is refused before any batch runs
    if model is None or isinstance(model, (str, os.PathLike)):
        if discrepancy is None:
            discrepancy = model_discrepancy(model)
        model = load_model(model)
    elif discrepancy is None:
        discrepancy = ModelDiscrepancy.none(N_OUTPUT)
    if discrepancy.n_pixel != N_OUTPUT:
        raise ValueError(f"the discrepancy has {discrepancy.n_pixel} pixels, OUTPUT_WAVE {N_OUTPUT}")
    parts = _network_output(
        model,
        flux,
        error,
        mask,
        batch_size=batch_size,
        discrepancy=discrepancy,
        parts=return_parts,
        domain=value,
    )
    return parts if return_parts else (parts.sed, parts.sigma)


def _network_output(
    model,
    flux,
    error,
    mask,
    *,
    batch_size: int,
    discrepancy: ModelDiscrepancy,
    parts: bool = True,
    domain: float = DOMAINS["real"],
) -> SEDPrediction:
    """The network's outputs for checked inputs, in batches of ``batch_size``.

    ``mask`` may be None (nothing masked). With ``parts=False`` only ``sed`` and ``sigma`` are
    kept (``sigma_net`` and ``sigma_sys`` are None): the outputs are the only arrays of the size
    of the call.

    Batch by batch: the masked pixels filled (:func:`prepare_network_arrays` of the batch), the
    forward pass, the discrepancy (its float64 arithmetic): copies and temporaries of one batch,
    not of the whole call (whose fresh pages cost more than the arithmetic); every step is
    elementwise per star, so the numbers do not depend on the batches.
    """
    n = flux.shape[0]
    kept = SEDPrediction(*(np.empty((n, N_OUTPUT), np.float32) if parts or i < 2 else None for i in range(4)))
    if n == 0:
        return kept
    none = bool(np.all(discrepancy.scale == 1) and not np.any(discrepancy.floor))
    forward = _compiled_forward(model)
    # every batch of one call has one shape where the backend pads (JAX): a call of >= batch_size
    # spectra uses the batch_size shape only; a smaller call the next power of two
    pad_to = min(batch_size, 1 << (n - 1).bit_length())
    for start in range(0, n, batch_size):
        rows = slice(start, min(start + batch_size, n))
        batch_mask = np.zeros((rows.stop - start, N_INPUT), bool) if mask is None else mask[rows]
        batch_flux, batch_error = fill_masked_pixels(
            flux[rows], error[rows], batch_mask, masked_error=MASKED_ERROR
        )
        sed, sigma_net = forward(batch_flux, batch_error, domain=domain, pad_to=pad_to)
        if none:  # sigma is the network's, bit for bit (and the float64 arithmetic is skipped)
            sigma, sigma_sys = sigma_net, 0.0
        else:  # colour classes: the predicted SED
            sigma, sigma_sys = discrepancy.sigma_parts(sigma_net, sed=sed)
        kept.sed[rows], kept.sigma[rows] = sed, sigma
        if parts:
            kept.sigma_net[rows], kept.sigma_sys[rows] = sigma_net, sigma_sys
    return kept
