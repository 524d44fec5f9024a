"""Job: train UaRA-net (paper Sects. 3.3, 4.1): ``pretrain`` on the synthetic grid, ``finetune`` on spectra.

``python -m jobs.train_model --help`` explains the stages; :func:`run` is what tests call.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import time
from pathlib import Path

from jobs._cli import UsageError, positive_int

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
"""


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value}")
    return value


def float_list(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if not values or min(values) <= 0:
        raise argparse.ArgumentTypeError(f"expected positive numbers, got {text!r}")
    return values


def _common_options(p, *, epochs, batch_size, lr_min, test_fraction, mask_augment):
    p.add_argument("--run-dir", required=True, help="directory for checkpoints, logs and the best model")
    p.add_argument("--grid", nargs="+", metavar="PATH",
                   help="grid part stores (default: the grid shipped in the package)")
    p.add_argument("--epochs", type=positive_int, default=epochs, help=f"epochs (default {epochs})")
    p.add_argument("--batch-size", type=positive_int, default=batch_size,
                   help=f"spectra per step (default {batch_size})")
    p.add_argument("--lr", type=positive_float, default=1e-3, help="initial learning rate (default 1e-3)")
    p.add_argument("--lr-min", type=float, default=lr_min,
                   help="learning rate at the last epoch, cosine decay (default %(default)s; none = constant)")
    p.add_argument("--snrs", type=float_list, default=(20.0, 25.0, 30.0, 35.0, 40.0),
                   help="training SNRs (default 20,25,30,35,40)")
    p.add_argument("--validate-every", type=positive_int, default=10, help="epochs between validations")
    p.add_argument("--patience", type=int, default=0,
                   help="validations without improvement before stopping (0: off)")
    p.add_argument("--minutes", type=positive_float, default=math.inf, help="wall-time cap of the training loop")
    p.add_argument("--beta", type=float, default=0.0, help="beta-NLL exponent (default 0: Eq. 17)")
    p.add_argument("--clipnorm", type=positive_float, default=None, metavar="C",
                   help="clip each variable's gradient norm at C (Keras Adam clipnorm); default off, as in the "
                   "paper. Measured: with 1.0 the uncertainty branch lost 14 of its 16 units within 25 epochs "
                   "(EVALUATION.md); watch error_branch_active_units in history.jsonl")
    p.add_argument("--mask-augment", type=float, default=mask_augment,
                   help="probability of a random masked span per training spectrum (default %(default)s)")
    p.add_argument("--test-fraction", type=float, default=test_fraction,
                   help="fraction held out for validation/test (default %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of split, initial weights and noise")
    p.add_argument("--split-seed", type=int, default=None,
                   help="seed of the train/test split alone (default: --seed); deep-ensemble members "
                        "share one split (same --split-seed) and differ in --seed")
    p.add_argument("--threads", type=positive_int, default=None, help="TensorFlow intra-op threads")
    p.add_argument("--resume", action="store_true", help="continue the run in --run-dir")
    p.add_argument("--export", metavar="PATH.keras", help="copy the best model (+ card) here at the end")


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
    pre = stages.add_parser("pretrain", help="train on the synthetic grid", description=DESCRIPTION,
                            epilog=EPILOG, formatter_class=fmt)
    _common_options(pre, epochs=3000, batch_size=256, lr_min=1e-5, test_fraction=0.25, mask_augment=0.25)
    pre.add_argument("--input-path", choices=("direct", "lamost"), default="direct",
                     help="how training inputs are made: 'direct' (Eq. 1 noise on the input grid, the paper) or "
                     "'lamost' (observed on LAMOST_WAVE at a radial velocity, then the survey job's input path; "
                     "--snrs are then per LAMOST pixel)")
    pre.add_argument("--init", metavar="MODEL.keras",
                     help="start from this model (weights and architecture; --dropout/--error-input are then its own)")
    pre.add_argument("--dropout", type=float, default=0.0, help="dropout before hidden FC layers (MC dropout)")
    pre.add_argument("--error-input", choices=("scale", "log"), default="scale",
                     help="how the input errors enter the uncertainty branch: 'scale' (x50, as the shipped model) or "
                     "'log' (ln(error/0.03), values of both signs, so that its ReLUs cannot all die at every S/N)")
    fine = stages.add_parser("finetune", help="fine-tune a model on empirical spectra (STELIB)",
                             description=DESCRIPTION, epilog=EPILOG, formatter_class=fmt)
    _common_options(fine, epochs=200, batch_size=32, lr_min=None, test_fraction=0.2, mask_augment=0.0)
    fine.add_argument("--init", metavar="MODEL.keras", help="model to start from (default: the shipped model)")
    fine.add_argument("--library", choices=["stelib", "ngsl"], default="stelib",
                      help="stelib: the 255 STELIB stars of sdss-mangadap; ngsl: your NGSL v2 files")
    fine.add_argument("--ngsl", nargs="+", metavar="PATH", help="NGSL v2 FITS files or folders (--library ngsl)")
    fine.add_argument("--ngsl-params", metavar="CSV",
                      help="CSV with columns name,teff,logg,feh (name as in h_stis_ngsl_<name>_v2.fits)")
    fine.add_argument("--teff-range", type=teff_range, default=(5000.0, 9750.0),
                      help="Teff range of the stars used, LO,HI in K (default 5000,9750)")
    fine.add_argument("--no-deredden", dest="deredden", action="store_false",
                      help="keep STELIB's reddened fluxes (default: fit E(B-V) against the grid and remove it)")
    fine.add_argument("--screen-rmsae", type=float, default=0.05,
                      help="drop stars whose out-of-fold GPR RMSAE exceeds this (Appendix B; 0: no screening)")
    return parser


def _grid_library(paths):
    import numpy as np

    from lamost2csst.io.grid import load_grid
    from lamost2csst.io.training import gridded_library
    from lamost2csst.nn.training import LibraryArrays

    if paths:
        import xarray as xr

        parts = [load_grid(p) for p in paths]
        ds = xr.concat(parts, dim="model") if len(parts) > 1 else parts[0]
    else:
        ds = load_grid()
    g = gridded_library(ds)
    lib = LibraryArrays(g.flux_in.astype(np.float32), g.input_mask, g.sed.astype(np.float32), g.target_mask,
                        ds["teff"].values.astype(float),
                        ds["flux_lamost"].values.astype(np.float32) if "flux_lamost" in ds else None)
    params = np.stack([ds[k].values.astype(float) for k in ("teff", "logg", "feh", "alpha")], axis=1)
    return lib, params


def _stelib_library(args):
    """STELIB stars (sdss-mangadap) in the Teff range, parameters from headers or a chi2 grid fit."""
    import numpy as np

    from lamost2csst.core.extinction import deredden, fit_ebv
    from lamost2csst.core.gpr import screen_library
    from lamost2csst.core.grids import INPUT_WAVE, OUTPUT_WAVE
    from lamost2csst.core.params import fit_parameters
    from lamost2csst.core.sed import scale_sed
    from lamost2csst.io.readers.mangadap import read_mangadap_stelib
    from lamost2csst.io.training import gridded_library
    from lamost2csst.nn.training import LibraryArrays

    ds = read_mangadap_stelib()
    # Stars without data around the SED scaling window cannot be scaled (Sect. 2.1): count, drop.
    wave = ds["wave"].values
    window = (wave > 5480) & (wave < 5630)
    scalable = ~ds["mask"].values[:, window].any(axis=1)
    n_read = int(ds.sizes["star"])
    ds = ds.isel(star=np.flatnonzero(scalable))
    g = gridded_library(ds)
    params = np.stack([ds[k].values.astype(float) for k in ("teff", "logg", "feh")], axis=1)
    source = np.where(np.all(np.isfinite(params), axis=1), "header", "chi2-grid-fit")
    usable = ~g.input_mask.all(axis=1)
    missing = (source != "header") & usable
    if missing.any():
        grid_lib, grid_params = _grid_library(args.grid)
        fit = fit_parameters(g.flux_in[missing], grid_lib.flux_in, grid_params[:, :3], mask=g.input_mask[missing])
        params[missing] = fit.params
    lo, hi = args.teff_range
    keep = usable & (params[:, 0] >= lo) & (params[:, 0] <= hi) & ~g.input_mask.any(axis=1)
    info = {"library": "stelib", "stars_read": n_read, "no_scale_window": int((~scalable).sum()),
            "in_teff_range": int(keep.sum()),
            "params_from_header": int((keep & (source == "header")).sum()),
            "params_from_chi2_fit": int((keep & (source != "header")).sum())}
    idx = np.flatnonzero(keep)
    flux_in, sed = g.flux_in[idx], g.sed[idx]
    if args.deredden:
        # STELIB is not dereddened: fit E(B-V) against the best-matching grid model's SED.
        grid_lib, grid_params = _grid_library(args.grid)
        match = fit_parameters(flux_in, grid_lib.flux_in, grid_params[:, :3])
        ebv = fit_ebv(OUTPUT_WAVE, sed, grid_lib.sed[match.best], mask=g.target_mask[idx])
        # A star bluer than its model (E(B-V) < -0.05) or matched to a model far from its catalogue
        # Teff (> 500 K; e.g. supergiants below the grid's log g 2) has no trustworthy reddening.
        consistent = np.isfinite(ebv) & (ebv >= -0.05)
        header = source[idx] == "header"
        consistent &= ~header | (np.abs(match.params[:, 0] - params[idx, 0]) <= 500)
        info["dropped_inconsistent_reddening"] = int((~consistent).sum())
        ebv = np.clip(ebv, 0.0, None)
        idx, flux_in, sed, ebv = idx[consistent], flux_in[consistent], sed[consistent], ebv[consistent]
        sed = scale_sed(np.where(g.target_mask[idx], np.nan, deredden(OUTPUT_WAVE, sed, ebv)))
        flux_in = deredden(INPUT_WAVE, flux_in, ebv)
        info["ebv_percentiles_10_50_90"] = [round(float(v), 3) for v in np.percentile(ebv, [10, 50, 90])]
    if args.screen_rmsae > 0:
        covered = ~g.target_mask[idx].any(axis=0)
        screen = screen_library(params[idx], sed[:, covered], threshold=args.screen_rmsae, seed=args.seed)
        info.update(screened_out=int((~screen.normal).sum()), screen_rmsae=args.screen_rmsae,
                    gpr_hyperparameters=screen.hyperparameters)
        idx, flux_in, sed = idx[screen.normal], flux_in[screen.normal], sed[screen.normal]
    lib = LibraryArrays(flux_in.astype(np.float32), g.input_mask[idx], sed.astype(np.float32),
                        g.target_mask[idx], params[idx, 0])
    names = ds["name"].values[idx].astype(str)
    return lib, names, info


def _read_params_csv(path):
    """``name,teff,logg,feh`` per line (header line first) -> {name: {teff, logg, feh}}."""
    import csv

    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    need = {"name", "teff", "logg", "feh"}
    if not rows or not need <= set(rows[0]):
        raise UsageError(f"{path}: expected a CSV with columns {sorted(need)}")
    return {r["name"].strip().lower(): {k: float(r[k]) for k in ("teff", "logg", "feh")} for r in rows}


def _miles_input_gpr(seed):
    """Appendix C: a GPR from (Teff, log g, [Fe/H]) to normalized R=2000 inputs, trained on MILES."""
    import numpy as np

    from lamost2csst.core.gpr import SpectrumGPR, screen_library
    from lamost2csst.core.normalization import normalize
    from lamost2csst.io.readers.mangadap import read_mangadap_miles
    from lamost2csst.io.training import gridded_library

    ds = read_mangadap_miles()
    params = np.stack([ds[k].values.astype(float) for k in ("teff", "logg", "feh")], axis=1)
    sel = np.all(np.isfinite(params), axis=1) & (params[:, 0] >= 5000) & (params[:, 0] <= 9750)
    ds = ds.isel(star=np.flatnonzero(sel))
    params = params[sel]
    g = gridded_library(ds)
    ok = ~g.input_mask.any(axis=1)
    covered = ~g.target_mask[ok].any(axis=0)
    screen = screen_library(params[ok], g.sed[ok][:, covered], threshold=0.05, seed=seed)  # Appendix B
    idx = np.flatnonzero(ok)[screen.normal]
    norm, _ = normalize(g.flux_in[idx])
    return SpectrumGPR(seed=seed).fit(params[idx], norm), int(idx.size)


def _ngsl_library(args):
    """NGSL stars: SED targets from the files, R=2000 inputs generated from parameters (Appendix C)."""
    import numpy as np

    from lamost2csst.core.gpr import screen_library
    from lamost2csst.io.readers.ngsl import read_ngsl
    from lamost2csst.io.training import gridded_library
    from lamost2csst.nn.training import LibraryArrays

    if not args.ngsl or not args.ngsl_params:
        raise UsageError("--library ngsl needs --ngsl FILES... and --ngsl-params CSV")
    files = []
    for item in args.ngsl:
        path = Path(item)
        files += sorted(path.glob("h_stis_ngsl_*_v2.fits")) if path.is_dir() else [path]
    if not files:
        raise UsageError(f"no h_stis_ngsl_*_v2.fits files in {args.ngsl}")
    params_by_name = _read_params_csv(args.ngsl_params)
    wave = 1700.0 * np.exp(np.arange(0, np.log(10200.0 / 1700.0), 1 / 5000.0))  # common vacuum grid
    ds = read_ngsl(files, params=params_by_name, wave=wave)
    params = np.stack([ds[k].values.astype(float) for k in ("teff", "logg", "feh")], axis=1)
    lo, hi = args.teff_range
    keep = np.all(np.isfinite(params), axis=1) & (params[:, 0] >= lo) & (params[:, 0] <= hi)
    info = {"library": "ngsl", "stars_read": int(ds.sizes["star"]), "in_teff_range_with_params": int(keep.sum())}
    ds, params = ds.isel(star=np.flatnonzero(keep)), params[keep]
    g = gridded_library(ds, inputs=False)  # NGSL (R~1000) gives targets only
    idx = np.arange(params.shape[0])
    if args.screen_rmsae > 0 and idx.size >= 5:
        covered = ~g.target_mask.any(axis=0)
        screen = screen_library(params, g.sed[:, covered], threshold=args.screen_rmsae, seed=args.seed)
        info.update(screened_out=int((~screen.normal).sum()), screen_rmsae=args.screen_rmsae)
        idx = idx[screen.normal]
    gpr, n_miles = _miles_input_gpr(args.seed)
    flux_in = gpr.predict(params[idx]).astype(np.float32)  # normalized, clean: Eq. 1 noise comes per epoch
    info.update(inputs="GPR(Teff, log g, [Fe/H]) trained on MILES (Appendix C)", gpr_miles_stars=n_miles,
                gpr_hyperparameters=gpr.hyperparameters)
    lib = LibraryArrays(flux_in, np.zeros(flux_in.shape, bool), g.sed[idx].astype(np.float32), g.target_mask[idx],
                        params[idx, 0])
    return lib, ds["name"].values[idx].astype(str), info


def run(args, *, progress=True) -> dict:
    """Run one stage from parsed arguments; returns the summary."""
    import numpy as np

    from lamost2csst.nn.model import ModelConfig, build_uaranet
    from lamost2csst.nn.training import RunMismatchError, TrainConfig, split_by_model, train

    run_dir = Path(args.run_dir)
    if args.threads:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    if args.stage == "pretrain":
        lib, params = _grid_library(args.grid)
        keys = [list(p) for p in params]
        columns, extra = ["teff", "logg", "feh", "alpha"], {}
    else:
        lib, names, extra = _stelib_library(args) if args.library == "stelib" else _ngsl_library(args)
        keys, columns = list(names), ["name"]
    split_seed = args.seed if args.split_seed is None else args.split_seed
    train_idx, test_idx = split_by_model(len(lib), test_fraction=args.test_fraction, seed=split_seed)
    split = {"columns": columns, "train": [keys[i] for i in train_idx], "test": [keys[i] for i in test_idx],
             "seed": split_seed, "test_fraction": args.test_fraction}
    split_path = run_dir / "split.json"
    if args.resume and split_path.exists():
        if json.loads(split_path.read_text()) != json.loads(json.dumps(split)):
            raise RunMismatchError(f"--resume with a different library or split than {split_path}")
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.lr,
                         lr_min=args.lr if args.lr_min is None else args.lr_min, snrs=tuple(args.snrs),
                         validate_every=args.validate_every, patience=args.patience, max_minutes=args.minutes,
                         beta=args.beta, mask_augment=args.mask_augment, seed=args.seed, clipnorm=args.clipnorm,
                         input_path=getattr(args, "input_path", "direct"))
    if config.input_path == "lamost" and lib.flux_lamost is None:
        raise UsageError("--input-path lamost needs a grid with flux_lamost (spectra on LAMOST_WAVE)")
    train_lib, test_lib = lib.take(train_idx), lib.take(test_idx)
    if args.stage == "pretrain" and not args.init:
        # Start from the geometric-mean training SED (the heads' zero kernels make that the first prediction).
        with np.errstate(invalid="ignore"):
            start_sed = np.exp(np.nanmean(np.log(np.where(train_lib.target_mask, np.nan, train_lib.sed)), axis=0))
        model_config = ModelConfig(dropout=args.dropout, error_input=args.error_input)
        model = build_uaranet(model_config, sed_bias=start_sed)
        model_config = json.loads(model_config.to_json())
    else:
        import keras

        from lamost2csst.nn.inference import default_model_path, model_card

        init = Path(args.init) if args.init else default_model_path()
        keras.utils.set_random_seed(args.seed)
        import lamost2csst.nn.layers  # noqa: F401  (registers the custom layers)

        model = keras.saving.load_model(init, compile=False, safe_mode=True)  # a fresh copy, not the cache
        init_card = model_card(init)
        model_config = init_card.get("model_config")
        extra["init"] = str(init)
        extra["init_sha256"] = init_card.get("sha256")

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=config.epochs, unit="epoch", file=sys.stderr, desc=args.stage)

    def on_epoch(epoch, n, info):
        if bar is not None:
            bar.n = epoch
            post = {"loss": f"{info['loss']:.3f}"}
            if "val_nll" in info:
                post.update(val=f"{info['val_nll']:.3f}", GU20=f"{info['error_snr20_GU']:.4f}",
                            GV20=f"{info['error_snr20_GV']:.4f}", GI20=f"{info['error_snr20_GI']:.4f}")
            bar.set_postfix(post, refresh=False)
            bar.refresh()

    run_dir.mkdir(parents=True, exist_ok=True)
    command = " ".join([PROG, *map(shlex.quote, sys.argv[1:])]) if sys.argv[0].endswith("train_model.py") else None
    card = {"stage": args.stage, "command": command, "library_size": len(lib), "train_models": len(train_lib),
            "test_models": len(test_lib), "model_config": model_config, "split": split, **extra}
    try:
        if not (args.resume and split_path.exists()):
            if (run_dir / "checkpoint.keras").exists() and not args.resume:
                raise FileExistsError(f"{run_dir} holds a previous run; pass --resume or choose a new --run-dir")
            split_path.write_text(json.dumps(split) + "\n")
        t0 = time.perf_counter()
        _, summary = train(model, train_lib, test_lib, config=config, run_dir=run_dir, resume=args.resume,
                           progress=on_epoch, card=card)
    finally:
        if bar is not None:
            bar.close()
    summary = {"stage": args.stage, "run_dir": str(run_dir), **summary, "train_models": len(train_lib),
               "test_models": len(test_lib), "wall_seconds_this_call": round(time.perf_counter() - t0, 1),
               **{k: v for k, v in extra.items() if k != "gpr_hyperparameters"}}
    if args.export:
        from lamost2csst.nn.inference import load_model, model_card, save_model

        best = run_dir / "best.keras"
        save_model(load_model(best), args.export, card=model_card(best))
        summary["exported"] = str(args.export)
    return summary


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if not 0 < args.test_fraction < 1:
        build_parser().error("--test-fraction must be in (0, 1)")
    from lamost2csst.nn.training import RunMismatchError

    try:
        summary = run(args)
    except (FileExistsError, RunMismatchError, UsageError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
