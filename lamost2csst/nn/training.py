"""Training of UaRA-net (paper Sects. 3.3, 4.1): pre-training on a grid, fine-tuning on spectra.

Data: for every epoch, each training star is drawn at every SNR of ``snrs`` with fresh Eq. 1
noise (the paper's 5 SNRs x 41,219 BOSZ models = 206,095 spectra); the noise of epoch ``e``
comes from ``numpy.random.default_rng([seed, e])``, so a resumed run draws the same spectra
as an uninterrupted one. Validation uses one fixed noise realisation per SNR.

Optimizer: Adam (lr 1e-3, Sect. 4.1), cosine decay of the learning rate over ``epochs``
(to ``lr_min``), early stopping on the validation NLL (``patience`` validations), a wall-time
cap. The best model (lowest validation NLL) and a resumable checkpoint (model + optimizer
state + progress) are written to the run directory, with one JSON line per validation in
``history.jsonl``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np

from lamost2csst._provenance import machine_line
from lamost2csst.core.grids import BANDS, OUTPUT_WAVE, band_pixels
from lamost2csst.core.pairs import GriddedLibrary, make_pairs
from lamost2csst.errors import InputError
from lamost2csst.nn.inference import DOMAINS, takes_domain

__all__ = [
    "INPUT_PATHS",
    "LibraryArrays",
    "RunMismatchError",
    "TrainConfig",
    "epoch_pairs",
    "initial_model",
    "split_by_model",
    "train",
    "validation_metrics",
]


#: What a run trains: the whole network, or only the real-star branch of a model with the domain input.
TRAINABLE = ("all", "real")

#: How training inputs are made: Eq. 1 noise on INPUT_WAVE, or observed through the LAMOST path.
INPUT_PATHS = ("direct", "lamost")


#: A run directory that belongs to another run: the user's mistake, so the one error type
#: (:class:`lamost2csst.errors.InputError`); the old name is kept for callers.
RunMismatchError = InputError


#: The former name of the one library type, :class:`lamost2csst.core.pairs.GriddedLibrary`:
#: ``LibraryArrays(flux_in, input_mask, sed, target_mask, teff, flux_lamost=None)``.
LibraryArrays = GriddedLibrary


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Optimization settings (defaults: the paper's pre-training, with a small-grid batch)."""

    epochs: int = 3000
    batch_size: int = 256
    learning_rate: float = 1e-3
    lr_min: float = 1e-5
    snrs: tuple[float, ...] = (20.0, 25.0, 30.0, 35.0, 40.0)
    val_snrs: tuple[float, ...] = (20.0, 40.0)
    validate_every: int = 10
    patience: int = 0  # validations without improvement before stopping; 0 = never stop early
    max_minutes: float = math.inf
    beta: float = 0.0  # beta-NLL exponent (0 = Eq. 17)
    mask_augment: float = 0.25  # probability that a training spectrum gets a random masked span
    max_masked_span: int = 200
    seed: int = 0
    clipnorm: float | None = None  # Adam's per-variable gradient-norm clip (None = off, the paper)
    input_path: str = "direct"  # "direct": Eq. 1 noise on INPUT_WAVE (the paper); "lamost": see epoch_pairs
    replay: float = 0.0  # replay-library rows per training row in every epoch (fine-tuning with replay)
    replay_snrs: tuple[float, ...] = (20.0, 25.0, 30.0, 35.0, 40.0)
    replay_input_path: str = "lamost"
    domain: str = "synthetic"  # what the training library is (replay is the grid: synthetic); see model.py
    trainable: str = "all"  # "real": only the real-star branch trains (model.py), the rest stays

    def __post_init__(self):
        if self.epochs < 1 or self.batch_size < 1 or self.validate_every < 1:
            raise ValueError("epochs, batch_size and validate_every must be >= 1")
        if not self.learning_rate > 0 or not 0 <= self.lr_min <= self.learning_rate:
            raise ValueError("need learning_rate > 0 and 0 <= lr_min <= learning_rate")
        if not self.snrs or min(self.snrs) <= 0 or not self.val_snrs or min(self.val_snrs) <= 0:
            raise ValueError("snrs and val_snrs must be non-empty and positive")
        if self.clipnorm is not None and not self.clipnorm > 0:
            raise ValueError(f"clipnorm must be positive or None, got {self.clipnorm!r}")
        if not 0 <= self.mask_augment <= 1:
            raise ValueError("mask_augment is a probability in [0, 1]")
        if self.input_path not in INPUT_PATHS or self.replay_input_path not in INPUT_PATHS:
            raise ValueError(
                f"input_path and replay_input_path must be in {INPUT_PATHS}, "
                f"got {self.input_path!r}, {self.replay_input_path!r}"
            )
        if not self.replay >= 0 or not self.replay_snrs or min(self.replay_snrs) <= 0:
            raise ValueError("replay must be >= 0 and replay_snrs non-empty and positive")
        if self.domain not in DOMAINS:
            raise ValueError(f"domain must be one of {sorted(DOMAINS)}, got {self.domain!r}")
        if self.trainable not in TRAINABLE:
            raise ValueError(f"trainable must be one of {TRAINABLE}, got {self.trainable!r}")

    def learning_rate_at(self, epoch: int) -> float:
        """Cosine decay from ``learning_rate`` (epoch 0) to ``lr_min`` (last epoch)."""
        frac = min(epoch / max(self.epochs - 1, 1), 1.0)
        return self.lr_min + 0.5 * (self.learning_rate - self.lr_min) * (1 + math.cos(math.pi * frac))


def split_by_model(n_model: int, *, test_fraction: float = 0.25, seed: int = 0):
    """Indices of a random train/test split of the *models* (3:1 by default, Sect. 2.2).

    Splitting by model (not by noise realisation) keeps every noisy copy of a star on one
    side, so the test error measures generalisation to unseen stars.
    """
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    if n_model < 2:
        raise ValueError(f"need at least 2 models to split, got {n_model}")
    order = np.random.default_rng([seed, 7_919]).permutation(n_model)
    n_test = min(max(1, int(round(test_fraction * n_model))), n_model - 1)
    return np.sort(order[n_test:]), np.sort(order[:n_test])


def _mask_spans(shape, *, probability: float, max_span: int, rng: np.random.Generator) -> np.ndarray:
    """Random contiguous masked spans (bad columns, gaps, truncated ends) for augmentation."""
    n, m = shape
    mask = np.zeros(shape, bool)
    hit = np.flatnonzero(rng.random(n) < probability)
    if hit.size == 0:
        return mask
    length = rng.integers(1, max_span + 1, size=hit.size)
    start = rng.integers(-max_span // 2, m, size=hit.size)  # negative starts truncate the blue end
    cols = np.arange(m)
    lo = np.clip(start, 0, m)[:, None]
    hi = np.clip(start + length, 0, m)[:, None]
    mask[hit] = (cols >= lo) & (cols < hi)
    return mask


class EpochData(NamedTuple):
    """One epoch's network-ready spectra: :class:`~lamost2csst.core.pairs.TrainingPairs` after
    :func:`~lamost2csst.nn.inference.prepare_network_arrays` (masked input pixels filled, not NaN;
    the input mask folded into the error), with each row's SNR and library star."""

    flux: np.ndarray  # (k, 2238) float32, masked pixels filled
    error: np.ndarray
    sed: np.ndarray  # (k, 574) float32, NaN where masked
    target_mask: np.ndarray
    snr: np.ndarray  # (k,)
    star: np.ndarray  # (k,) index into the library
    domain: np.ndarray  # (k,) float32: the value of the network's domain input (DOMAINS)


def epoch_pairs(
    lib: GriddedLibrary,
    *,
    snrs,
    rng: np.random.Generator,
    mask_augment: float = 0.0,
    max_masked_span: int = 200,
    input_path: str = "direct",
    domain: str = "synthetic",
) -> EpochData:
    """Every star of ``lib`` at every SNR with fresh noise, normalized, ready for the network.

    ``input_path="direct"`` (the paper): Eq. 1 noise at S/N ``snr`` per pixel is added to
    the clean ``flux_in`` on ``INPUT_WAVE``, which is then normalized.

    ``input_path="lamost"``: each star is observed the way the survey job meets real data:
    ``flux_lamost`` (on ``LAMOST_WAVE``) Doppler shifted by a radial velocity of the disc +
    halo mixture, Eq. 1 noise at S/N ``snr`` per LAMOST pixel, then the job's own input
    path (rest frame, cubic-convolution resampling onto ``INPUT_WAVE``, normalization). The
    network then learns the line-profile smoothing and the correlated noise of that path
    (:func:`lamost2csst.core.simulate.observed_network_inputs`). Needs ``lib.flux_lamost``.

    ``domain`` (a key of :data:`~lamost2csst.nn.inference.DOMAINS`) is what ``lib`` is: every
    row's value of the network's ``domain`` input.
    """
    from lamost2csst.nn.inference import prepare_network_arrays

    if input_path not in INPUT_PATHS:
        raise ValueError(f"input_path must be one of {INPUT_PATHS}, got {input_path!r}")
    n = len(lib)
    snr = np.repeat(np.asarray(snrs, float)[None, :], n, axis=0).T.ravel()  # SNR-major
    star = np.tile(np.arange(n), len(snrs))
    if input_path == "direct":
        pairs = make_pairs(
            lib.flux_in[star],
            lib.sed[star],
            snr=snr,
            rng=rng,
            input_mask=lib.input_mask[star],
            target_mask=lib.target_mask[star],
        )
        flux, error, mask = pairs.flux, pairs.error, pairs.input_mask
        sed, target_mask = pairs.sed, pairs.target_mask
    else:
        from lamost2csst.core import LAMOST_WAVE
        from lamost2csst.core.simulate import C_KMS, draw_radial_velocities, observed_network_inputs

        if lib.flux_lamost is None:
            raise ValueError(
                "input_path='lamost' needs the library's clean spectra on LAMOST_WAVE "
                "(flux_lamost, as the synthetic grid has); empirical libraries have none"
            )
        z = draw_radial_velocities(star.size, rng) / C_KMS
        rest = lib.flux_lamost[star].astype(np.float64)
        rest /= np.median(rest, axis=1, keepdims=True)
        net = observed_network_inputs(rest, wave=LAMOST_WAVE, z=z, snr=snr, rng=rng)
        flux, error, mask = net.flux, net.error, net.mask | lib.input_mask[star]
        target_mask = lib.target_mask[star] | ~np.isfinite(lib.sed[star])
        sed = np.where(target_mask, np.nan, lib.sed[star])
    if mask_augment > 0:
        mask = mask | _mask_spans(mask.shape, probability=mask_augment, max_span=max_masked_span, rng=rng)
    flux, error = prepare_network_arrays(flux, error, mask=mask)
    rows = np.full(snr.size, DOMAINS[domain], np.float32)
    return EpochData(flux, error, sed.astype(np.float32), target_mask, snr, star, rows)


def validation_metrics(sed_true, target_mask, sed_pred, sigma, *, snr, wave=OUTPUT_WAVE) -> dict:
    """Per validation SNR and band: typical error and offset (all stars), and sigma calibration."""
    out = {}
    safe = np.where(target_mask, 1.0, sed_true)
    r = np.where(target_mask, np.nan, (sed_pred - safe) / safe)
    z = r / sigma
    for value in np.unique(snr):
        rows = snr == value
        for band, lo_hi in BANDS.items():
            sel = band_pixels(wave, lo_hi)
            rb, zb = r[rows][:, sel], z[rows][:, sel]
            key = f"snr{value:g}_{band}"
            with np.errstate(invalid="ignore"), warnings.catch_warnings():
                # pixels masked for every star (a library's coverage) are NaN columns: ignored
                warnings.simplefilter("ignore", RuntimeWarning)
                out[f"error_{key}"] = float(np.nanmedian(np.nanstd(rb, axis=0)))
                out[f"offset_{key}"] = float(np.nanmedian(np.nanmedian(rb, axis=0)))
                finite = np.isfinite(zb)
                within = np.mean(np.abs(zb[finite]) < 1) if finite.any() else math.nan
                out[f"within1sigma_{key}"] = float(within)
    return out


def initial_model(
    train_lib: GriddedLibrary, *, init=None, dropout: float = 0.0, error_input: str = "scale", seed: int = 0
):
    """The network a training run starts from: a fresh UaRA-net, or a copy of the model ``init``.

    Parameters
    ----------
    train_lib : GriddedLibrary
        The training stars: a fresh network starts from their geometric-mean SED (the heads'
        zero kernels make that its first prediction).
    init : str or Path, optional
        A ``.keras`` model whose weights and architecture are copied (not the cached model of
        :func:`lamost2csst.nn.inference.load_model`); None: a fresh network.
    dropout, error_input : float, str
        The :class:`~lamost2csst.nn.model.ModelConfig` of a fresh network.
    seed : int
        Keras' random state before a model is loaded.

    Returns
    -------
    model : keras.Model
    model_config : dict
        Its config (for the model card).
    provenance : dict
        ``init`` and ``init_sha256`` of a loaded model; empty for a fresh one.
    """
    if init is None:
        from lamost2csst.nn.model import ModelConfig, build_uaranet

        with np.errstate(invalid="ignore"):
            log_sed = np.log(np.where(train_lib.target_mask, np.nan, train_lib.sed))
            start_sed = np.exp(np.nanmean(log_sed, axis=0))
        model_config = ModelConfig(dropout=dropout, error_input=error_input)
        model = build_uaranet(model_config, sed_bias=start_sed)
        return model, json.loads(model_config.to_json()), {}
    import keras

    from lamost2csst.nn.inference import model_card

    init = Path(init)
    keras.utils.set_random_seed(seed)
    import lamost2csst.nn.layers  # noqa: F401  (registers the custom layers)

    model = keras.saving.load_model(init, compile=False, safe_mode=True)  # a fresh copy, not the cache
    init_card = model_card(init)
    return model, init_card.get("model_config"), {"init": str(init), "init_sha256": init_card.get("sha256")}


def train(
    model,
    train_lib: GriddedLibrary,
    val_lib: GriddedLibrary,
    *,
    config: TrainConfig,
    run_dir,
    resume: bool = False,
    progress: Callable | None = None,
    card: dict | None = None,
    replay_lib: GriddedLibrary | None = None,
):
    """Train ``model``; returns ``(model, summary)`` (summary also in ``run_dir/summary.json``).

    On resume the returned model is the one restored from the checkpoint.

    Parameters
    ----------
    model : keras.Model
        A UaRA-net (:func:`lamost2csst.nn.build_uaranet` or a loaded one for fine-tuning).
    train_lib, val_lib : GriddedLibrary
        Training and validation stars (clean inputs and scaled targets).
    config : TrainConfig
    run_dir : path
        Where ``checkpoint.keras``, ``best.keras``, ``state.json`` and ``history.jsonl`` go.
    resume : bool
        Continue from ``run_dir/checkpoint.keras`` (refused if the config differs).
    progress : callable, optional
        ``progress(epoch, n_epochs, info_dict)`` after every epoch (e.g. a tqdm update).
    card : dict, optional
        Extra provenance for the model card of ``best.keras``.
    replay_lib : GriddedLibrary, optional
        Fine-tuning with replay: every epoch also draws ``config.replay`` x (training rows)
        spectra of this library (e.g. the grid's training models while fine-tuning on real
        stars), through ``config.replay_input_path`` at ``config.replay_snrs``, so that what the
        training library does not cover (its wavelengths, its parameters) is not forgotten.
    """
    if config.replay > 0 and replay_lib is None:
        raise ValueError("config.replay > 0 needs a replay_lib")
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    config_json = json.loads(json.dumps(dataclasses.asdict(config)))
    model, optimizer, state = _start_or_resume(model, config, config_json, run_dir=run_dir, resume=resume)
    if (config.domain != "synthetic" or config.trainable == "real") and not takes_domain(model):
        raise ValueError(
            f"training on {config.domain} spectra (trainable={config.trainable!r}) needs a model with "
            "the domain input (lamost2csst.nn.model.add_domain_input)"
        )
    _set_trainable(model, config.trainable)
    train_step = _make_train_step(model, optimizer, beta=float(config.beta))

    val = epoch_pairs(
        val_lib,
        snrs=config.val_snrs,
        rng=np.random.default_rng([config.seed, 1, 2, 3]),
        input_path=config.input_path,
        domain=config.domain,
    )
    t_start = time.perf_counter() - state["seconds"]
    history = open(run_dir / "history.jsonl", "a")
    try:
        while state["epoch"] < config.epochs:
            info = _run_epoch(
                train_step, optimizer, train_lib, state, config=config, t_start=t_start, replay_lib=replay_lib
            )
            if _validate_if_due(
                model,
                val,
                info,
                state,
                config=config,
                config_json=config_json,
                run_dir=run_dir,
                history=history,
                card=card,
            ):
                break
            if progress is not None:
                progress(state["epoch"], config.epochs, info)
            if state["seconds"] > 60 * config.max_minutes:
                state["stopped"] = f"wall-time cap of {config.max_minutes} min"
                break
        else:
            state["stopped"] = state["stopped"] or "all epochs done"
    finally:
        history.close()
    return model, _finish_run(model, state, run_dir=run_dir)


def _finish_run(model, state: dict, *, run_dir: Path) -> dict:
    """Save the last checkpoint and state, write ``summary.json``; returns the summary.

    Parameters
    ----------
    model : keras.Model
        The trained model.
    state : dict
        The run's state (:func:`_start_or_resume`).
    run_dir : Path
        The run directory.

    Returns
    -------
    dict
        Epoch, passes, seconds, best validation NLL and epoch, and why training stopped.
    """
    model.save(run_dir / "checkpoint.keras")
    (run_dir / "state.json").write_text(json.dumps(state, indent=1))
    summary = {k: state[k] for k in ("epoch", "passes", "seconds", "best_val_nll", "best_epoch", "stopped")}
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def _set_trainable(model, which: str) -> None:
    """``which`` of :data:`TRAINABLE`: every layer trains, or the real-star branch alone (its fixed
    ``real_extend`` map never does)."""
    for layer in model.layers:
        layer.trainable = (
            which == "all" or layer.name.startswith("fc_real_")
        ) and layer.name != "real_extend"


def _make_train_step(model, optimizer, *, beta: float):
    """The compiled training step: one Adam step on the Gaussian NLL of a batch, returning the loss.

    Parameters
    ----------
    model : keras.Model
        The UaRA-net being trained.
    optimizer : keras.optimizers.Optimizer
        Its optimizer.
    beta : float
        The beta-NLL exponent (:func:`lamost2csst.nn.losses.gaussian_nll`).

    Returns
    -------
    callable
        ``train_step(flux, error, domain, sed, tmask)``, a ``tf.function`` (``domain`` (k,) is
        ignored by a model without the input).
    """
    import tensorflow as tf

    from lamost2csst.nn.losses import gaussian_nll

    with_domain = takes_domain(model)

    @tf.function(reduce_retracing=True)
    def train_step(flux, error, domain, sed, tmask):
        inputs = {"flux": flux, "error": error}
        if with_domain:
            inputs["domain"] = tf.reshape(domain, (-1, 1))
        with tf.GradientTape() as tape:
            out = model(inputs, training=True)
            loss = gaussian_nll(sed, out["sed"], out["sigma"], mask=tmask, beta=beta)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    return train_step


def _run_epoch(
    train_step,
    optimizer,
    train_lib: GriddedLibrary,
    state: dict,
    *,
    config: TrainConfig,
    t_start: float,
    replay_lib: GriddedLibrary | None = None,
) -> dict:
    """One training epoch: fresh noisy pairs, shuffled, one ``train_step`` per batch.

    Parameters
    ----------
    train_step : callable
        From :func:`_make_train_step`.
    optimizer : keras.optimizers.Optimizer
        Its learning rate is set for this epoch.
    train_lib : GriddedLibrary
        The training stars.
    state : dict
        The run's state: its ``epoch`` (0-based, it seeds the epoch's random draws) is the one
        trained; ``epoch``, ``passes`` and ``seconds`` are updated.
    config : TrainConfig
    t_start : float
        ``time.perf_counter()`` at the (possibly resumed) start of the run.
    replay_lib : GriddedLibrary, optional
        Replay library (:func:`train`); used when ``config.replay > 0``.

    Returns
    -------
    dict
        The epoch's info: epoch, passes, seconds, learning rate and mean loss.
    """
    epoch = state["epoch"]
    lr = config.learning_rate_at(epoch)
    optimizer.learning_rate.assign(lr)
    rng = np.random.default_rng([config.seed, epoch])
    data = epoch_pairs(
        train_lib,
        snrs=config.snrs,
        rng=rng,
        mask_augment=config.mask_augment,
        max_masked_span=config.max_masked_span,
        input_path=config.input_path,
        domain=config.domain,
    )
    if config.replay > 0:
        data = _concat_epochs(data, _replay_pairs(replay_lib, data.flux.shape[0], config=config, rng=rng))
    order = rng.permutation(data.flux.shape[0])
    losses = []
    for start in range(0, order.size, config.batch_size):
        idx = order[start : start + config.batch_size]
        losses.append(
            float(
                train_step(
                    data.flux[idx], data.error[idx], data.domain[idx], data.sed[idx], data.target_mask[idx]
                )
            )
        )
    state["epoch"] = epoch + 1
    state["passes"] += int(order.size)
    state["seconds"] = time.perf_counter() - t_start
    return {
        "epoch": epoch + 1,
        "passes": state["passes"],
        "seconds": round(state["seconds"], 1),
        "lr": lr,
        "loss": float(np.mean(losses)),
    }


def _replay_pairs(replay_lib: GriddedLibrary, n_train_rows: int, *, config: TrainConfig, rng) -> EpochData:
    """``config.replay * n_train_rows`` random replay stars, spread evenly over ``config.replay_snrs``."""
    n = int(round(config.replay * n_train_rows))
    pick = rng.choice(len(replay_lib), size=n, replace=n > len(replay_lib))
    parts = []
    for snr, rows in zip(config.replay_snrs, np.array_split(pick, len(config.replay_snrs)), strict=True):
        if rows.size:
            parts.append(
                epoch_pairs(
                    replay_lib.take(rows),
                    snrs=(snr,),
                    rng=rng,
                    mask_augment=config.mask_augment,
                    max_masked_span=config.max_masked_span,
                    input_path=config.replay_input_path,
                )
            )
    return _concat_epochs(*parts)


def _concat_epochs(*parts: EpochData) -> EpochData:
    """One :class:`EpochData` of the rows of ``parts`` (``star`` indexes each part's own library)."""
    return EpochData(*(np.concatenate([getattr(p, f) for p in parts]) for f in EpochData._fields))


def _validate_if_due(
    model,
    val: EpochData,
    info: dict,
    state: dict,
    *,
    config: TrainConfig,
    config_json: dict,
    run_dir: Path,
    history,
    card: dict | None,
) -> bool:
    """Validate after every ``validate_every``-th and the last epoch; True when training stops early.

    Parameters
    ----------
    model : keras.Model
        The model being trained.
    val : EpochData
        The fixed validation pairs.
    info : dict
        The epoch's info (validation metrics are added).
    state : dict
        The run's state (``stopped`` is set on an early stop).
    config : TrainConfig
    config_json : dict
        ``config`` as JSON, recorded in the model card.
    run_dir : Path
        The run directory.
    history : file
        The open ``history.jsonl``.
    card : dict or None
        Extra provenance for the model card of ``best.keras``.

    Returns
    -------
    bool
        Whether the patience ran out.
    """
    last = state["epoch"] == config.epochs or state["seconds"] > 60 * config.max_minutes
    if state["epoch"] % config.validate_every == 0 or last:
        _validate(
            model,
            val,
            info,
            state,
            run_dir=run_dir,
            history=history,
            card={**(card or {}), "training": config_json},
        )
        if config.patience and state["bad_validations"] >= config.patience:
            state["stopped"] = f"early stop: no better validation NLL in {config.patience} validations"
            return True
    return False


def _start_or_resume(model, config: TrainConfig, config_json: dict, *, run_dir: Path, resume: bool):
    """``(model, optimizer, state)``: restored from ``run_dir``'s checkpoint, or ``model`` compiled afresh.

    A resumed run must have the same config (settings added since it started count with their
    defaults); a fresh one refuses a directory that holds a previous run.
    """
    import keras

    state_path = run_dir / "state.json"
    ckpt_path = run_dir / "checkpoint.keras"
    if resume and ckpt_path.exists() and state_path.exists():
        state = json.loads(state_path.read_text())
        defaults = json.loads(json.dumps(dataclasses.asdict(TrainConfig())))
        stored = {**{k: v for k, v in defaults.items() if k not in state["config"]}, **state["config"]}
        if stored != config_json:
            raise InputError(
                f"{run_dir} was started with a different training config; use a new run directory"
            )
        model = keras.saving.load_model(ckpt_path, compile=True, safe_mode=True)
        return model, model.optimizer, state
    if (ckpt_path.exists() or (run_dir / "history.jsonl").exists()) and not resume:
        raise FileExistsError(f"{run_dir} holds a previous run; pass resume=True or choose a new directory")
    keras.utils.set_random_seed(config.seed)
    state = {
        "config": config_json,
        "epoch": 0,
        "passes": 0,
        "seconds": 0.0,
        "best_val_nll": None,
        "best_epoch": None,
        "bad_validations": 0,
        "stopped": None,
    }
    optimizer = keras.optimizers.Adam(learning_rate=config.learning_rate, clipnorm=config.clipnorm)
    model.compile(optimizer=optimizer)
    (run_dir / "history.jsonl").unlink(missing_ok=True)
    return model, optimizer, state


def _validate(model, val: EpochData, info: dict, state: dict, *, run_dir: Path, history, card: dict) -> None:
    """One validation: metrics into ``info`` and ``history``, the best model, checkpoint and state saved."""
    from lamost2csst.nn.diagnostics import error_branch_response
    from lamost2csst.nn.inference import predict, save_model
    from lamost2csst.nn.losses import gaussian_nll

    domain = next(k for k, v in DOMAINS.items() if v == val.domain[0]) if val.domain.size else None
    sed_pred, sigma = predict(val.flux, val.error, model=model, domain=domain)
    val_nll = float(gaussian_nll(val.sed, sed_pred, sigma, mask=val.target_mask))
    info["val_nll"] = val_nll
    info.update(validation_metrics(val.sed, val.target_mask, sed_pred, sigma, snr=val.snr))
    # dead ReLUs show here first
    branch = error_branch_response(model, val.flux, val.error, prediction=(sed_pred, sigma))
    info.update(
        error_branch_active_units=branch["active_units"],
        error_branch_sigma_ratio=round(branch["sigma_ratio_median"], 4),
    )
    if state["best_val_nll"] is None or val_nll < state["best_val_nll"]:
        state.update(best_val_nll=val_nll, best_epoch=state["epoch"], bad_validations=0)
        save_model(
            model,
            run_dir / "best.keras",
            card={
                **card,
                "epoch": state["epoch"],
                "passes": state["passes"],
                "seconds": state["seconds"],
                "val_nll": val_nll,
                "machine": machine_line(),
                "validation": info,
            },
        )
    else:
        state["bad_validations"] += 1
    history.write(json.dumps(info) + "\n")
    history.flush()
    model.save(run_dir / "checkpoint.keras")
    (run_dir / "state.json").write_text(json.dumps(state, indent=1))
