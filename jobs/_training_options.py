"""The options both stages of :mod:`jobs.train_model` share (``pretrain`` and ``finetune``).

Kept free of heavy imports, as :mod:`jobs._cli`: ``--help`` stays fast.
"""

from __future__ import annotations

import math

from jobs._cli import float_list, positive_float, positive_int


def add_training_options(p, *, epochs, batch_size, lr_min, test_fraction, mask_augment) -> None:
    """The options of both stages: run directory, data, schedule, loss, split, threads, resume, export.

    Parameters
    ----------
    p : argparse.ArgumentParser
        The stage's parser.
    epochs, batch_size, lr_min, test_fraction, mask_augment
        The stage's defaults of ``--epochs``, ``--batch-size``, ``--lr-min``, ``--test-fraction``
        and ``--mask-augment``.
    """
    p.add_argument("--run-dir", required=True, help="directory for checkpoints, logs and the best model")
    p.add_argument(
        "--grid",
        nargs="+",
        metavar="PATH",
        help="grid part stores (default: the grid shipped in the package)",
    )
    p.add_argument("--epochs", type=positive_int, default=epochs, help=f"epochs (default {epochs})")
    p.add_argument(
        "--batch-size", type=positive_int, default=batch_size, help=f"spectra per step (default {batch_size})"
    )
    p.add_argument("--lr", type=positive_float, default=1e-3, help="initial learning rate (default 1e-3)")
    p.add_argument(
        "--lr-min",
        type=float,
        default=lr_min,
        help="learning rate at the last epoch, cosine decay (default %(default)s; none = constant)",
    )
    p.add_argument(
        "--snrs",
        type=float_list,
        default=(20.0, 25.0, 30.0, 35.0, 40.0),
        help="training SNRs (default 20,25,30,35,40)",
    )
    p.add_argument("--validate-every", type=positive_int, default=10, help="epochs between validations")
    p.add_argument(
        "--patience", type=int, default=0, help="validations without improvement before stopping (0: off)"
    )
    p.add_argument(
        "--minutes", type=positive_float, default=math.inf, help="wall-time cap of the training loop"
    )
    p.add_argument("--beta", type=float, default=0.0, help="beta-NLL exponent (default 0: Eq. 17)")
    p.add_argument(
        "--clipnorm",
        type=positive_float,
        default=None,
        metavar="C",
        help="clip each variable's gradient norm at C (Keras Adam clipnorm); default off, as in "
        "the paper. Measured: with 1.0 the uncertainty branch lost 14 of its 16 units within 25 "
        "epochs (EVALUATION.md); watch error_branch_active_units in history.jsonl",
    )
    p.add_argument(
        "--mask-augment",
        type=float,
        default=mask_augment,
        help="probability of a random masked span per training spectrum (default %(default)s)",
    )
    p.add_argument(
        "--test-fraction",
        type=float,
        default=test_fraction,
        help="fraction held out for validation/test (default %(default)s)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of split, initial weights and noise")
    p.add_argument(
        "--split-seed",
        type=int,
        default=None,
        help="seed of the train/test split alone (default: --seed); deep-ensemble members "
        "share one split (same --split-seed) and differ in --seed",
    )
    p.add_argument("--threads", type=positive_int, default=None, help="TensorFlow intra-op threads")
    p.add_argument("--resume", action="store_true", help="continue the run in --run-dir")
    p.add_argument("--export", metavar="PATH.keras", help="copy the best model (+ card) here at the end")
