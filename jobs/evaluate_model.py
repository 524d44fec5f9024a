"""Job: evaluate a UaRA-net model like Sects. 4.2-4.3 of the paper; tables (Markdown + JSON) and figures.

``python -m jobs.evaluate_model --help`` explains; the work is
:func:`lamost2csst.workflows.evaluation.evaluate_model`.
"""

from __future__ import annotations

import argparse
import json
import sys

from jobs._cli import float_list, positive_int, run_cli

PROG = "python -m jobs.evaluate_model"

DESCRIPTION = """\
Evaluate a UaRA-net model and write DIR/evaluation.md, DIR/evaluation.json and PNG figures.

grid test split (--grid-test, default on): the test models of the model's own training split
  (from its model card, or --split RUN/split.json), each at every SNR of --snrs with
  --realisations independent Eq. 1 noise draws (fixed --seed). Per SNR x Teff bin x band:
  typical error and offset (DESIGN.md: per pixel std / median of r over the stars of the bin,
  then the median over the band's pixels) and the calibration of sigma (fraction of
  |r|/sigma < 1, ideally 0.683; std of r/sigma, ideally 1). Figures like Figs. 2-5.

MILES verification (--miles): the MILES v9.1 stars of the sdss-mangadap package with
  5000 <= Teff <= 9750 K, screened by an out-of-fold GPR (Appendix B, RMSAE < --miles-rmsae);
  input: MILES degraded to R=2000 on INPUT_WAVE with Eq. 1 noise at --miles-snr, normalized;
  target: MILES degraded to R=200 and scaled, on the OUTPUT_WAVE pixels MILES covers
  (3500-7500 A). Errors at 3600/4500/5000/6000/7000 A (Sect. 4.3) and a figure like Fig. 11.

real stars (--real-stars RUN, a run of `python -m jobs.train_model real`): every MILES star of
  the run predicted by the fold model that never saw it (out-of-fold), errors at the paper's
  wavelengths next to the model the run started from; coverage of sigma (network sigma, and
  total sigma with the model discrepancy fitted nested: each fold's from the other folds) per
  band and Teff range; STELIB (never trained on) as a cross-library test of the final model
  at 3600-9000 A and of its total sigma. Figure: real_star_residuals.png.

domain check (--domain): the OUTSIDE_DOMAIN check from the spectrum (lamost2csst.core.domain)
  on the grid test split observed through the survey job's input path at S/N 10/20/50/100
  (Teff estimate bias, scatter, pull coverage; fraction of 5000-9750 K stars flagged), on the
  out-of-domain synthetic test set (lamost2csst/data/domain/test: fraction flagged per Teff)
  and on MILES stars of every Teff (real spectra, not used to choose the thresholds).
"""

EPILOG = """\
outputs: DIR/evaluation.md (also printed), DIR/evaluation.json, DIR/grid_residuals.png,
DIR/grid_calibration.png, DIR/miles_residuals.png (with --miles); stdout ends with one JSON
summary line.

examples:
  python -m jobs.evaluate_model --out eval/shipped --miles
"""
EPILOG += (
    "  python -m jobs.evaluate_model --model runs/pretrain/best.keras "
    "--split runs/pretrain/split.json --out eval/run\n"
)


def build_parser():
    p = argparse.ArgumentParser(
        prog=PROG,
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", help="a .keras model (default: the shipped model)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--grid", nargs="+", metavar="PATH", help="grid part stores (default: the shipped grid)")
    p.add_argument("--split", help="split.json of the training run (default: the split in the model card)")
    p.add_argument("--no-grid-test", dest="grid_test", action="store_false", help="skip the grid test split")
    p.add_argument("--snrs", type=float_list, default=(20.0, 40.0, 80.0), help="SNRs (default 20,40,80)")
    p.add_argument(
        "--realisations", type=positive_int, default=10, help="noise draws per test model (default 10)"
    )
    p.add_argument(
        "--no-lamost-path",
        dest="lamost_path",
        action="store_false",
        help="skip the grid test split observed through the survey job's input path "
        "(default: run it too: each test model observed on LAMOST_WAVE at a disc + halo radial "
        "velocity with noise at the S/N per LAMOST pixel, then rest frame, resampling and "
        "normalization as the job does)",
    )
    p.add_argument("--miles", action="store_true", help="also run the MILES verification (Sect. 4.3)")
    p.add_argument(
        "--real-stars",
        metavar="RUN",
        help="a run directory of `python -m jobs.train_model real`: also its out-of-fold MILES errors, "
        "sigma coverage (network sigma and total sigma with a nested sigma_sys) and the STELIB "
        "cross-library test, against the model the run started from",
    )
    p.add_argument("--miles-snr", type=float, default=100.0, help="SNR of the MILES inputs (default 100)")
    p.add_argument("--miles-rmsae", type=float, default=0.05, help="GPR screening threshold (default 0.05)")
    p.add_argument(
        "--ensemble",
        nargs="+",
        metavar="MODEL.keras",
        help="more members (same training data, other seeds): predictions are the ensemble mean "
        "and sigma its total (aleatoric + epistemic) uncertainty "
        "(lamost2csst.nn.uncertainty)",
    )
    p.add_argument(
        "--ridge-baseline",
        action="store_true",
        help="also evaluate a ridge regression trained on the same training models (the simple way)",
    )
    p.add_argument(
        "--domain",
        action="store_true",
        help="also evaluate the domain check (Teff estimate and OUTSIDE_DOMAIN rates; see above)",
    )
    p.add_argument(
        "--grid-domain",
        choices=("synthetic", "real"),
        default="synthetic",
        help="for a model co-trained on real stars (train_model real --domain-input): predict the "
        "grid test's spectra as synthetic (default: the synthetic SED, what the grid teaches) or "
        "as real (the SED of a real star with that spectrum); MILES is always predicted as real",
    )
    p.add_argument("--seed", type=int, default=2024, help="seed of the evaluation noise")
    return p


def run(args) -> dict:
    """Evaluate as ``args`` say (:func:`lamost2csst.workflows.evaluation.evaluate_model`), print the
    Markdown report and return the one-line summary."""
    from lamost2csst.workflows.evaluation import evaluate_model

    evaluation = evaluate_model(
        out=args.out,
        model_path=args.model,
        grid=args.grid,
        split=args.split,
        grid_test=args.grid_test,
        snrs=args.snrs,
        realisations=args.realisations,
        lamost_path=args.lamost_path,
        miles=args.miles,
        miles_snr=args.miles_snr,
        miles_rmsae=args.miles_rmsae,
        ensemble=args.ensemble,
        ridge_baseline=args.ridge_baseline,
        seed=args.seed,
        command=" ".join(sys.argv),
        real_stars=args.real_stars,
        domain=args.domain,
        grid_domain=args.grid_domain,
    )
    print(evaluation.text)
    return evaluation.summary()


def main(argv=None) -> int:
    """The command line: the user's mistakes end as one line on stderr and exit status 2."""
    args = build_parser().parse_args(argv)
    summary = run_cli("evaluate_model", args, run, client=False)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
