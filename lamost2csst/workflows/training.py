"""One training run of UaRA-net (paper Sects. 3.3, 4.1): library, split, model, training, export.

:func:`run_training` is what ``python -m jobs.train_model`` runs: it assembles the training
library (:mod:`lamost2csst.workflows.libraries`), splits it by model (or star), records the
split in ``RUN/split.json``, builds or loads the initial network and trains it with
:func:`lamost2csst.nn.training.train`.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from lamost2csst.errors import InputError
from lamost2csst.workflows.libraries import LibrarySpec, training_library

__all__ = ["run_training"]


def _split(n: int, keys, columns, *, test_fraction: float, seed: int, run_dir: Path, resume: bool):
    """Train/test indices and the ``split.json`` record; a resumed run must have the same split."""
    from lamost2csst.nn.training import split_by_model

    train_idx, test_idx = split_by_model(n, test_fraction=test_fraction, seed=seed)
    split = {
        "columns": columns,
        "train": [keys[i] for i in train_idx],
        "test": [keys[i] for i in test_idx],
        "seed": seed,
        "test_fraction": test_fraction,
    }
    split_path = run_dir / "split.json"
    if resume and split_path.exists():
        if json.loads(split_path.read_text()) != json.loads(json.dumps(split)):
            raise InputError(f"--resume with a different library or split than {split_path}")
    return train_idx, test_idx, split


def _progress_bar(stage: str, epochs: int):
    """A tqdm bar on stderr and the ``progress`` callback of :func:`~lamost2csst.nn.training.train` for it."""
    from tqdm.auto import tqdm

    bar = tqdm(total=epochs, unit="epoch", file=sys.stderr, desc=stage)

    def on_epoch(epoch, _n_epochs, info):
        bar.n = epoch
        post = {"loss": f"{info['loss']:.3f}"}
        if "val_nll" in info:
            post.update(
                val=f"{info['val_nll']:.3f}",
                GU20=f"{info['error_snr20_GU']:.4f}",
                GV20=f"{info['error_snr20_GV']:.4f}",
                GI20=f"{info['error_snr20_GI']:.4f}",
            )
        bar.set_postfix(post, refresh=False)
        bar.refresh()

    return bar, on_epoch


def run_training(
    *,
    stage: str,
    run_dir,
    config,
    library: LibrarySpec,
    test_fraction: float,
    split_seed: int | None = None,
    init=None,
    dropout: float = 0.0,
    error_input: str = "scale",
    threads: int | None = None,
    resume: bool = False,
    export=None,
    progress: bool = True,
    command: str | None = None,
) -> dict:
    """Train UaRA-net on a library and write a run directory; returns the run's summary.

    Parameters
    ----------
    stage : {"pretrain", "finetune"}
        Recorded in the model card and summary; ``"pretrain"`` without ``init`` builds a fresh network.
    run_dir : str or Path
        Where ``split.json`` and the files of :func:`lamost2csst.nn.training.train` go.
    config : lamost2csst.nn.training.TrainConfig
        Optimization settings; ``config.seed`` also seeds the split (unless ``split_seed``),
        the library's GPR screening and the loaded model's random state.
    library : LibrarySpec
        The training library (:func:`lamost2csst.workflows.libraries.training_library`).
    test_fraction : float
        Fraction of the stars (models) held out for validation, in (0, 1).
    split_seed : int, optional
        Seed of the train/test split alone (deep-ensemble members share it; default ``config.seed``).
    init : str or Path, optional
        Start from this model's weights and architecture (fine-tuning default: the shipped model).
    dropout, error_input : float, str
        :class:`lamost2csst.nn.model.ModelConfig` of a fresh network.
    threads : int, optional
        TensorFlow threads (:func:`lamost2csst.nn.setup.configure`).
    resume : bool
        Continue the run in ``run_dir`` (refused for another library, split or config).
    export : str or Path, optional
        Copy the best model and its card here at the end.
    progress : bool
        A progress bar on stderr.
    command : str, optional
        The command line, recorded in the model card.

    Raises
    ------
    InputError
        ``config.input_path == "lamost"`` with a library without ``flux_lamost``; an NGSL library
        without files or parameters.
        Also: ``resume`` with a different library, split or training config.
    FileExistsError
        ``run_dir`` holds a previous run and ``resume`` is False.
    """
    from lamost2csst.nn.setup import configure

    run_dir = Path(run_dir)
    configure(threads=threads)
    lib, train_lib, test_lib, split, extra = _library_and_split(
        library, config, test_fraction, split_seed, run_dir=run_dir, resume=resume
    )
    model, model_config = _initial_network(
        train_lib, stage, init, dropout=dropout, error_input=error_input, seed=config.seed, extra=extra
    )
    card = _run_card(lib, train_lib, test_lib, model_config, split, extra, stage=stage, command=command)
    summary = _train_and_summarize(
        model, train_lib, test_lib, stage, config, run_dir, resume, split, card, progress, extra
    )
    if export:
        summary["exported"] = _export_best(run_dir, export)
    return summary


def _library_and_split(
    library: LibrarySpec, config, test_fraction: float, split_seed, *, run_dir: Path, resume: bool
):
    """The training library and its train/test split (recorded for ``split.json``).

    Parameters
    ----------
    library : LibrarySpec
        The training library.
    config : lamost2csst.nn.training.TrainConfig
        ``config.seed`` seeds the library's GPR screening (and the split unless ``split_seed``);
        ``config.input_path`` is checked against the library.
    test_fraction : float
        Fraction of the stars (models) held out for validation.
    split_seed : int or None
        Seed of the split (default ``config.seed``).
    run_dir : Path
        The run directory (a resumed run's split is checked against its ``split.json``).
    resume : bool
        Whether the run is resumed.

    Returns
    -------
    lib, train_lib, test_lib : GriddedLibrary
        The whole library and its two parts.
    split : dict
        The split's record.
    extra : dict
        The library's provenance.
    """
    lib, keys, columns, extra = training_library(library, seed=config.seed)
    split_seed = config.seed if split_seed is None else split_seed
    train_idx, test_idx, split = _split(
        len(lib), keys, columns, test_fraction=test_fraction, seed=split_seed, run_dir=run_dir, resume=resume
    )
    if config.input_path == "lamost" and lib.flux_lamost is None:
        raise InputError("--input-path lamost needs a grid with flux_lamost (spectra on LAMOST_WAVE)")
    train_lib, test_lib = lib.take(train_idx), lib.take(test_idx)
    return lib, train_lib, test_lib, split, extra


def _initial_network(
    train_lib, stage: str, init, *, dropout: float, error_input: str, seed: int, extra: dict
):
    """The network the run starts from (fresh for pre-training, the shipped model for fine-tuning).

    Parameters
    ----------
    train_lib : GriddedLibrary
        The training stars (a fresh network starts from their mean SED).
    stage : {"pretrain", "finetune"}
        Without ``init``, ``"pretrain"`` builds a fresh network and ``"finetune"`` loads the shipped one.
    init : str or Path or None
        Start from this model instead.
    dropout, error_input : float, str
        :class:`lamost2csst.nn.model.ModelConfig` of a fresh network.
    seed : int
        The training seed.
    extra : dict
        The run's provenance; the model's is added to it.

    Returns
    -------
    model : keras.Model
    model_config : dict
        Its architecture.
    """
    from lamost2csst.nn.training import initial_model

    if not init:  # pre-training starts fresh, fine-tuning from the shipped model
        from lamost2csst.nn.inference import default_model_path

        init = None if stage == "pretrain" else default_model_path()
    model, model_config, provenance = initial_model(
        train_lib, init=init, dropout=dropout, error_input=error_input, seed=seed
    )
    extra.update(provenance)
    return model, model_config


def _run_card(lib, train_lib, test_lib, model_config: dict, split: dict, extra: dict, *, stage: str, command):
    """The provenance of the run for the model card of ``best.keras``.

    Parameters
    ----------
    lib, train_lib, test_lib : GriddedLibrary
        The whole library and its training and validation parts (their sizes are recorded).
    model_config : dict
        The architecture.
    split : dict
        The split's record.
    extra : dict
        The library's and the initial model's provenance.
    stage : str
    command : str or None
        The command line.

    Returns
    -------
    dict
    """
    return {
        "stage": stage,
        "command": command,
        "library_size": len(lib),
        "train_models": len(train_lib),
        "test_models": len(test_lib),
        "model_config": model_config,
        "split": split,
        **extra,
    }


def _train_and_summarize(
    model, train_lib, test_lib, stage: str, config, run_dir: Path, resume: bool, split, card, progress, extra
) -> dict:
    """Train (with a progress bar if asked) and return the run's summary.

    Parameters
    ----------
    model : keras.Model
        The initial network.
    train_lib, test_lib : GriddedLibrary
        Training and validation stars.
    stage : str
        Recorded in the summary.
    config : lamost2csst.nn.training.TrainConfig
    run_dir : Path
    resume : bool
    split : dict
        The split's record (``split.json``).
    card : dict
        Provenance for the model card.
    progress : bool
        A progress bar on stderr.
    extra : dict
        The run's provenance (all but the GPR hyper-parameters go into the summary).

    Returns
    -------
    dict
        The summary of :func:`run_training`.
    """
    bar = _progress_bar(stage, config.epochs) if progress else None
    t0 = time.perf_counter()
    summary = _train_run(
        model,
        train_lib,
        test_lib,
        config=config,
        run_dir=run_dir,
        resume=resume,
        split=split,
        card=card,
        progress=bar,
    )
    return {
        "stage": stage,
        "run_dir": str(run_dir),
        **summary,
        "train_models": len(train_lib),
        "test_models": len(test_lib),
        "wall_seconds_this_call": round(time.perf_counter() - t0, 1),
        **{k: v for k, v in extra.items() if k != "gpr_hyperparameters"},
    }


def _export_best(run_dir: Path, export) -> str:
    """Copy the run's best model and its card to ``export``; returns ``str(export)``."""
    from lamost2csst.nn.inference import load_model, model_card, save_model

    best = run_dir / "best.keras"
    save_model(load_model(best), export, card=model_card(best))
    return str(export)


def _train_run(
    model, train_lib, test_lib, *, config, run_dir: Path, resume: bool, split: dict, card: dict, progress
) -> dict:
    """Write ``split.json`` (refusing a previous run's directory) and train; the training summary.

    ``progress`` is None or the ``(bar, callback)`` of :func:`_progress_bar` (the bar is closed here).
    """
    from lamost2csst.nn.training import train

    run_dir.mkdir(parents=True, exist_ok=True)
    split_path = run_dir / "split.json"
    bar, on_epoch = progress if progress is not None else (None, None)
    try:
        if not (resume and split_path.exists()):
            if (run_dir / "checkpoint.keras").exists() and not resume:
                raise FileExistsError(
                    f"{run_dir} holds a previous run; pass --resume or choose a new --run-dir"
                )
            split_path.write_text(json.dumps(split) + "\n")
        _, summary = train(
            model,
            train_lib,
            test_lib,
            config=config,
            run_dir=run_dir,
            resume=resume,
            progress=on_epoch,
            card=card,
        )
    finally:
        if bar is not None:
            bar.close()
    return summary
