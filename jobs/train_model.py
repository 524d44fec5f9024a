"""Job: train UaRA-net (paper Sects. 3.3, 4.1): ``pretrain`` on the synthetic grid, ``finetune`` on spectra.

``python -m jobs.train_model --help`` explains the stages; :func:`run` is what tests call.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys

from jobs._cli import non_negative_float, positive_float, positive_int
from jobs._training_options import add_training_options

PROG = "python -m jobs.train_model"

DESCRIPTION = """\
Train UaRA-net and write a run directory:

  RUN/best.keras + best.json   the model with the lowest validation NLL and its model card
  RUN/checkpoint.keras         model + optimizer state of the last validation (for --resume)
  RUN/state.json               progress (epoch, spectrum passes, seconds, best epoch)
  RUN/history.jsonl            one JSON line per validation: loss, val NLL, and per SNR and
                               band the typical error, offset and fraction of |r|/sigma < 1
  RUN/split.json               which models/stars are training and which are test
  RUN/summary.json             the final summary (also printed as one JSON line on stdout)

stages:
  pretrain   on the synthetic grid (lamost2csst.load_grid, or --grid PATH...): a 3:1
             train/test split BY MODEL (never by noise realisation), every training model at
             every SNR of --snrs with fresh Eq. 1 noise each epoch, validation on the test
             models at SNR 20 and 40 with fixed noise.
             --input-path lamost: instead of the paper's Eq. 1 noise on the network's input
             grid, every spectrum is observed the way the survey job meets LAMOST data
             (the model's flux_lamost Doppler shifted by a disc + halo radial velocity,
             noise at the S/N per LAMOST pixel, then the job's rest frame, resampling and
             normalization; lamost2csst.core.simulate.observed_network_inputs).
             --init MODEL: start from that model's weights and architecture instead of
             fresh ones (e.g. to adapt a grid model to --input-path lamost).
  finetune   from --init (default: the shipped model) on STELIB (sdss-mangadap, 3200-9899 A;
             the loss is masked on SED pixels outside its coverage): stars in --teff-range
             with parameters from their headers, or where a header lacks them from a chi-square
             match against the grid (lamost2csst.core.params); dereddened (STELIB is not: E(B-V)
             fitted against the SED of the best-matching grid model, F99, R_V = 3.1,
             lamost2csst.core.extinction; stars bluer than their model by E(B-V) < -0.05,
             or matched > 500 K from their catalogue Teff, are dropped); screened by an
             out-of-fold GPR
             (Appendix B, RMSAE < --screen-rmsae); 4:1 split by star; lr 1e-3 constant,
             batch 32, 200 epochs (Sect. 4.1).
             --library ngsl (for users with NGSL v2 files, as the paper): SED targets from the
             files (masked outside their coverage); R=2000 inputs generated from (Teff, log g,
             [Fe/H]) by a GPR trained on the GPR-screened MILES stars (Appendix C), since
             NGSL's own R~1000 is too low; NGSL screened at --screen-rmsae (paper: 0.068).

  real       from --init (default: the shipped model) on the MILES stars of the paper's test
             (sdss-mangadap, 5000-9750 K with parameters, GPR-screened, Appendix B) together
             with --replay grid training models per real row (through the survey job's input
             path, S/N 20-40), so that what MILES does not cover (below 3540 A, above 7410 A)
             is not forgotten; the loss is masked outside MILES. K-fold by star (--folds):
             each fold's stars are predicted at --eval-snr by a model that never saw them
             (RUN/fold-<k>/, RUN/oof.npz); the model discrepancy sigma_sys(lambda) is fitted
             to those out-of-fold residuals (lamost2csst.core.discrepancy); then the final
             model is trained on all folds (RUN/final/best.keras, its card carries sigma_sys
             and the out-of-fold numbers; RUN/crossval.json). Interrupted: run it again
             (finished folds are kept, a fold in progress resumes).
             --domain-input (how the shipped model is made): instead of fine-tuning the
             whole network, only a real-star branch is trained (a correction of ln SED,
             applied when the model's domain input says "real"; lamost2csst.nn.model), on
             --init's grid network, which stays as it is; no replay. Beyond the library's
             wavelengths the correction is carried on by --extend; --extension-check CUT
             chooses that rule on MILES alone.

Optimizer: Adam, learning rate --lr (paper: 1e-3) with cosine decay over --epochs to
--lr-min; the loss is Eq. 17 (Gaussian NLL of relative residuals; --beta for beta-NLL).
Deterministic from --seed (noise of epoch e from numpy default_rng([seed, e])); --resume
continues an interrupted run exactly where its last validation left it.
"""

EPILOG = """\
exit status: 0 done; 2 bad arguments (e.g. a run directory that holds another run); 1 other.

examples:
  python -m jobs.train_model pretrain --run-dir runs/pretrain --epochs 3000 --minutes 120
  python -m jobs.train_model pretrain --run-dir runs/pretrain --epochs 3000 --minutes 120 --resume
  python -m jobs.train_model pretrain --run-dir runs/try --epochs 50 --export my.keras
  python -m jobs.train_model finetune --run-dir runs/stelib --export stelib.keras
  python -m jobs.train_model real --run-dir runs/real-miles --threads 2
  python -m jobs.train_model real --run-dir runs/cv-branch --domain-input --threads 2
"""


def teff_range(text: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LO,HI in K, got {text!r}") from None
    if not 0 < lo < hi:
        raise argparse.ArgumentTypeError(f"expected 0 < LO < HI, got {text!r}")
    return lo, hi


def build_parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(prog=PROG, description=DESCRIPTION, epilog=EPILOG, formatter_class=fmt)
    stages = parser.add_subparsers(dest="stage", required=True, metavar="STAGE")
    pre = stages.add_parser(
        "pretrain",
        help="train on the synthetic grid",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=fmt,
    )
    add_training_options(pre, epochs=3000, batch_size=256, lr_min=1e-5, test_fraction=0.25, mask_augment=0.25)
    _add_pretrain_options(pre)
    fine = stages.add_parser(
        "finetune",
        help="fine-tune a model on empirical spectra (STELIB)",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=fmt,
    )
    add_training_options(fine, epochs=200, batch_size=32, lr_min=None, test_fraction=0.2, mask_augment=0.0)
    _add_finetune_options(fine)
    real = stages.add_parser(
        "real",
        help="fine-tune on MILES with grid replay, proven out-of-fold (K-fold by star), + sigma_sys",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=fmt,
    )
    add_training_options(real, epochs=50, batch_size=128, lr_min=1e-6, test_fraction=0.15, mask_augment=0.25)
    real.set_defaults(snrs=(30.0, 50.0, 100.0), lr=5e-4, validate_every=5)
    _add_real_options(real)
    return parser


def _add_real_options(real) -> None:
    """The options of ``real`` alone: initial model, folds, replay, evaluation S/N."""
    real.add_argument(
        "--init", metavar="MODEL.keras", help="model to start from (default: the shipped model)"
    )
    real.add_argument("--folds", type=positive_int, default=5, help="folds by star (default 5)")
    real.add_argument(
        "--fold-seed",
        type=int,
        default=2024,
        help="seed of the folds and of the evaluation noise (default 2024)",
    )
    real.add_argument(
        "--replay",
        type=non_negative_float,
        default=None,
        help="grid training models replayed per real-star row and epoch, through the survey job's "
        "input path at S/N 20-40 (default 0.2; 0 with --domain-input)",
    )
    real.add_argument(
        "--libraries",
        type=lambda text: tuple(t.strip() for t in text.split(",") if t.strip()),
        default=("miles",),
        help="real libraries, comma-separated, of: miles (405 GPR-screened stars), stelib (not "
        "dereddened, like MILES); default miles (STELIB then stays a cross-library test)",
    )
    real.add_argument(
        "--sigma-only",
        action="store_true",
        help="no fine-tuning: fit the model discrepancy sigma_sys of --init as it is to the real stars "
        "(which it never saw), coverage nested over --folds; RUN/final/best.keras is --init with "
        "sigma_sys in its card",
    )
    real.add_argument(
        "--domain-input",
        action="store_true",
        help="train only a real-star branch on top of --init (added if it has none, starting at "
        "zero): the model gets a domain input, predicts the synthetic SED exactly as --init at "
        "'synthetic' and the corrected one at 'real' (what predictions use by default); no "
        "replay is needed (nothing of --init changes), --replay must be 0",
    )
    real.add_argument(
        "--extend",
        choices=("constant", "linear", "none"),
        default="constant",
        help="with --domain-input: the real-star correction beyond the wavelengths the real stars "
        "cover: the value at the edge (default), a straight line through the last 500 A, or none "
        "(the synthetic SED, with a step at the edge)",
    )
    real.add_argument(
        "--extension-check",
        type=positive_float,
        metavar="CUT",
        help="with --domain-input: instead of the run, choose --extend on MILES alone: train the branch "
        "(K-fold) with MILES cut above CUT A (e.g. 6600) and write each rule's out-of-fold errors "
        "at 6800-7350 A to RUN/extension_check.json",
    )
    real.add_argument(
        "--eval-snr",
        type=positive_float,
        default=100.0,
        help="input S/N of the out-of-fold test (default 100)",
    )


def _add_pretrain_options(pre) -> None:
    """The options of ``pretrain`` alone: input path, initial model, dropout, error input."""
    pre.add_argument(
        "--input-path",
        choices=("direct", "lamost"),
        default="direct",
        help="how training inputs are made: 'direct' (Eq. 1 noise on the input grid, the paper) "
        "or 'lamost' (observed on LAMOST_WAVE at a radial velocity, then the survey job's input "
        "path; --snrs are then per LAMOST pixel)",
    )
    pre.add_argument(
        "--init",
        metavar="MODEL.keras",
        help="start from this model (weights and architecture; --dropout/--error-input are then its own)",
    )
    pre.add_argument(
        "--dropout", type=float, default=0.0, help="dropout before hidden FC layers (MC dropout)"
    )
    pre.add_argument(
        "--error-input",
        choices=("scale", "log"),
        default="scale",
        help="how the input errors enter the uncertainty branch: 'scale' (x50, as the shipped "
        "model) or 'log' (ln(error/0.03), values of both signs, so that its ReLUs cannot all "
        "die at every S/N)",
    )


def _add_finetune_options(fine) -> None:
    """The options of ``finetune`` alone: initial model, library, its stars and their screening."""
    fine.add_argument(
        "--init", metavar="MODEL.keras", help="model to start from (default: the shipped model)"
    )
    fine.add_argument(
        "--library",
        choices=["stelib", "ngsl"],
        default="stelib",
        help="stelib: the 255 STELIB stars of sdss-mangadap; ngsl: your NGSL v2 files",
    )
    fine.add_argument(
        "--ngsl", nargs="+", metavar="PATH", help="NGSL v2 FITS files or folders (--library ngsl)"
    )
    fine.add_argument(
        "--ngsl-params",
        metavar="CSV",
        help="CSV with columns name,teff,logg,feh (name as in h_stis_ngsl_<name>_v2.fits)",
    )
    fine.add_argument(
        "--teff-range",
        type=teff_range,
        default=(5000.0, 9750.0),
        help="Teff range of the stars used, LO,HI in K (default 5000,9750)",
    )
    fine.add_argument(
        "--no-deredden",
        dest="deredden",
        action="store_false",
        help="keep STELIB's reddened fluxes (default: fit E(B-V) against the grid and remove it)",
    )
    fine.add_argument(
        "--screen-rmsae",
        type=float,
        default=0.05,
        help="drop stars whose out-of-fold GPR RMSAE exceeds this (Appendix B; 0: no screening)",
    )


def run(args, *, progress=True) -> dict:
    """Run one stage from parsed arguments; returns the summary."""
    from lamost2csst.errors import InputError
    from lamost2csst.workflows.libraries import LibrarySpec
    from lamost2csst.workflows.training import run_training

    if args.stage == "real":
        return _run_real(args, progress=progress)
    if args.stage == "pretrain":
        library = LibrarySpec(kind="grid", grid_paths=args.grid)
    else:
        if args.library == "ngsl" and (not args.ngsl or not args.ngsl_params):
            raise InputError("--library ngsl needs --ngsl FILES... and --ngsl-params CSV")
        library = LibrarySpec(
            kind=args.library,
            grid_paths=args.grid,
            teff_range=args.teff_range,
            deredden=args.deredden,
            screen_rmsae=args.screen_rmsae,
            ngsl_files=args.ngsl,
            ngsl_params=args.ngsl_params,
        )
    config = _train_config(args, input_path=getattr(args, "input_path", "direct"))
    command = None
    if sys.argv[0].endswith("train_model.py"):
        command = " ".join([PROG, *map(shlex.quote, sys.argv[1:])])
    return run_training(
        stage=args.stage,
        run_dir=args.run_dir,
        config=config,
        library=library,
        test_fraction=args.test_fraction,
        split_seed=args.split_seed,
        init=args.init,
        dropout=getattr(args, "dropout", 0.0),
        error_input=getattr(args, "error_input", "scale"),
        threads=args.threads,
        resume=args.resume,
        export=args.export,
        progress=progress,
        command=command,
    )


def _train_config(args, **stage_settings):
    """The :class:`~lamost2csst.nn.training.TrainConfig` of the shared options, plus the stage's own."""
    from lamost2csst.nn.training import TrainConfig

    return TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        lr_min=args.lr if args.lr_min is None else args.lr_min,
        snrs=tuple(args.snrs),
        validate_every=args.validate_every,
        patience=args.patience,
        max_minutes=args.minutes,
        beta=args.beta,
        mask_augment=args.mask_augment,
        seed=args.seed,
        clipnorm=args.clipnorm,
        **stage_settings,
    )


def _run_real(args, *, progress) -> dict:
    """The ``real`` stage: :func:`lamost2csst.workflows.realstars.cross_validate_real_stars`."""
    from lamost2csst.workflows.realstars import cross_validate_real_stars

    config = _train_config(
        args,
        val_snrs=(args.eval_snr,),
        replay=(0.0 if args.domain_input else 0.2) if args.replay is None else args.replay,
        domain="real" if args.domain_input else "synthetic",
        trainable="real" if args.domain_input else "all",
    )

    def report(stage, epoch, n_epochs, info):
        if progress and (epoch % args.validate_every == 0 or epoch == n_epochs):
            print(
                f"{stage}: epoch {epoch}/{n_epochs} loss {info['loss']:.3f} {info['seconds']:.0f} s",
                file=sys.stderr,
            )

    common = {
        "out": args.run_dir,
        "init": args.init,
        "n_folds": args.folds,
        "seed": args.fold_seed,
        "eval_snr": args.eval_snr,
        "command": " ".join([PROG, *map(shlex.quote, sys.argv[1:])]),
    }
    if args.extension_check:
        from lamost2csst.workflows.extension_check import extension_check

        result = extension_check(
            **common,
            config=config,
            cut=args.extension_check,
            val_fraction=args.test_fraction,
            threads=args.threads,
            progress=report,
        )
        return {"cut": result["cut"], "errors": result["errors"], "seconds": result["seconds"]}
    if args.sigma_only:
        from lamost2csst.workflows.realstars import fit_model_discrepancy

        return _export_real(args, fit_model_discrepancy(**common, libraries=args.libraries))
    result = cross_validate_real_stars(
        **common,
        config=config,
        val_fraction=args.test_fraction,
        libraries=args.libraries,
        threads=args.threads,
        progress=report,
        extend=args.extend,
    )
    return _export_real(args, result)


def _export_real(args, result: dict) -> dict:
    """Copy the final model and its card to ``--export``; the summary line."""
    import shutil
    from pathlib import Path

    if args.export:
        best = Path(args.run_dir) / "final" / "best.keras"
        shutil.copyfile(best, args.export)
        shutil.copyfile(best.with_suffix(".json"), Path(args.export).with_suffix(".json"))
    keys = ("n_folds", "oof_errors", "oof_within1sigma_total_nested", "seconds")
    return {k: result[k] for k in keys}


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if not 0 < args.test_fraction < 1:
        build_parser().error("--test-fraction must be in (0, 1)")
    if getattr(args, "extension_check", None) and not args.domain_input:
        build_parser().error("--extension-check needs --domain-input (it tests the real-star branch)")
    if getattr(args, "domain_input", False) and args.replay:
        build_parser().error(
            "--replay must be 0 with --domain-input: "
            "the grid's (synthetic) rows leave the real-star branch unchanged"
        )
    from jobs._cli import run_cli

    try:
        summary = run_cli("train_model", args, run, client=False, user_errors=(FileExistsError,))
    except SystemExit as exit_:  # the user's mistake (2) or a full disk (1), already reported on stderr
        return exit_.code
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
