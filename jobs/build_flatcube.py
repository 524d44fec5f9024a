"""Job: the 3D flat-field cube from slitless observations and predicted SEDs, on Dask.

``python -m jobs.build_flatcube --help`` explains the fit, the options and the outputs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from jobs._cli import positive_int, run_cli
from jobs._options import add_cluster_options, add_dashboard_option, add_reporting_options, job_parser

PROG = "python -m jobs.build_flatcube"
DEMO_DIR = os.path.join("outputs", "flatcube_demo")
DEMO_STARS = 3000
MC_STAR_COUNTS = (100, 400, 1000, 10000, 100000)  # the --monte-carlo precision-against-stars curve


def __getattr__(name):
    # the paper's values belong to the library; imported on first use, so that --help stays fast
    if name == "PAPER_PRECISION":
        from lamost2csst.parallel.flat_precision import PAPER_PRECISION

        return PAPER_PRECISION
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


DESCRIPTION = """\
Fit the large-scale flat of every CSST slitless detector at every wavelength of the R=200
output grid from star-by-star flux ratios, observed / (scale * predicted SED), across
detector positions: per (band, detector, wavelength) a weighted least-squares 2D Legendre
polynomial in the normalized pixel position (--order, default 2), weights from the
observation error and the predicted sigma, --iterations fits with --kappa sigma clipping,
at least --min-stars observations per fit. Each star's absolute scale at 5526-5586 A is
taken from the observations' scale column, or, with --self-calibrate, fitted jointly with
the flats from the star's repeated observations (alternating least squares: flats given
the scales, scales given the flats; beyond the paper, which assumes known scales).
Observations are joined with the predictions (jobs.predict_catalogue's output) by obsid;
only predictions with flags == 0 are used.

The work is a Dask tree reduction of normal equations: one task per chunk of observations
computes the small normal-equation matrices of its observations per (band, detector), the
workers add them pairwise, and only the sums reach the client (observations are never
gathered). Each chunk's matrices are saved under OUT/.work, so --resume reuses them.

Without --observations/--predictions, the demo: a catalogue of 3000 LAMOST-like stars
simulated from the shipped grid, their predictions by the shipped network, CSST observations
simulated with a known injected flat (jobs.simulate_observations' model), all under
outputs/flatcube_demo/, and the recovered flat is compared with the injected one.
"""

EPILOG = """\
outputs:
  OUT (Zarr v3, schema lamost2csst.flatcube/1; dims band, detector, wave_out, coeff, gy, gx):
      coeffs and covariance of the ratio surface per (band, detector, wavelength); flat, the
      surface normalized to mean 1 per wavelength on a 16 x 16 pixel grid, and flat_error
      (from the covariance); mean_response (throughput x mean flat); n_obs; fit (False:
      outside the band, too few stars, degenerate); chi2_dof; attrs: order, basis, terms,
      wavelength ranges, inputs, model hash of the predictions, summary.
  --fits-dir DIR: aXe-style FITS flats, DIR/flat_<band>_<detector>.fits: coefficient images
      a_i(x, y) of flat = sum_i a_i w^i, w = (lambda - WMIN) / (WMAX - WMIN), a_0 in the
      primary HDU, a_i in extension i (WMIN, WMAX, BINNING, MAXDEV in the primary header).
  stdout: ONE JSON line, the summary: observations in/used, rejected per reason
      (no_prediction, flagged_prediction, off_detector, no_scale, no_finite_flux,
      bad_band), ratios clipped, wavelengths fit/unfit, seconds and, with simulated
      observations, truth: per band the median over wavelengths of the rms deviation of the
      recovered flat from the injected one, next to the rms the covariance predicts.

exit status: 0 done; 2 bad input (message on stderr); 1 any other failure.

examples:
  python -m jobs.build_flatcube                                              # the demo
  python -m jobs.build_flatcube --observations obs.zarr --predictions pred.zarr --out cube.zarr --order 3
"""


def build_parser() -> argparse.ArgumentParser:
    p = job_parser(PROG, DESCRIPTION, EPILOG)
    _add_cube_options(p)
    _add_monte_carlo_options(p)
    add_cluster_options(
        p,
        scheduler_help="attach to a running Dask scheduler",
        workers_help="LocalCluster workers (default: CPU cores)",
    )
    add_dashboard_option(p)
    add_reporting_options(p, progress_help="no progress bars", log_chunks=True)
    return p


def _add_cube_options(p) -> None:
    """The options of the cube: inputs, output, the fit, chunking, resuming and the FITS export."""
    p.add_argument(
        "--observations", metavar="O.zarr", help="slitless observations (lamost2csst.slitless_observations/1)"
    )
    p.add_argument("--predictions", metavar="P.zarr", help="predictions of jobs.predict_catalogue")
    p.add_argument("--out", metavar="C.zarr", help=f"the cube (default for the demo: {DEMO_DIR}/cube.zarr)")
    p.add_argument(
        "--order", type=int, default=2, help="total degree of the 2D polynomial (default: %(default)s)"
    )
    p.add_argument("--kappa", type=float, default=3.0, help="sigma-clipping threshold (default: %(default)s)")
    p.add_argument(
        "--iterations",
        type=positive_int,
        help="fits, with clipping between (default: 3; 10 with --self-calibrate)",
    )
    p.add_argument(
        "--self-calibrate",
        action="store_true",
        help="fit each star's scale jointly with the flats from repeated observations (ubercal-style) "
        "instead of trusting the observations' scale column; >= 3 observations per star advised",
    )
    p.add_argument(
        "--min-stars",
        type=positive_int,
        default=20,
        help="minimum observations per fit (default: %(default)s)",
    )
    p.add_argument(
        "--chunk-obs",
        type=positive_int,
        metavar="N",
        help="observations per task (default: the store's chunk)",
    )
    p.add_argument(
        "--resume", action="store_true", help="reuse the saved normal equations of an interrupted run"
    )
    p.add_argument(
        "--fits-dir",
        metavar="DIR",
        help="also write aXe-style FITS flats, one file per band and detector (DIR/flat_<band>_<det>.fits)",
    )
    p.add_argument(
        "--fits-binning",
        type=positive_int,
        default=64,
        metavar="B",
        help="FITS images keep every B-th detector pixel (default: %(default)s; 1 = full 9232 x 9216)",
    )


def _add_monte_carlo_options(p) -> None:
    """``--monte-carlo`` (the Sect. 5 precision study) and its options."""
    p.add_argument(
        "--monte-carlo",
        action="store_true",
        help="instead of building a cube: the Sect. 5 Monte Carlo of the calibration precision with the "
        "demo's predicted SEDs (400 stars with S/N > 20, order 2; then vs stars, order, scale errors)",
    )
    p.add_argument(
        "--realizations",
        type=positive_int,
        default=20,
        help="Monte Carlo realizations (default: %(default)s)",
    )
    p.add_argument(
        "--plot",
        metavar="FILE.png",
        help="with --monte-carlo: plot the precision against the number of stars",
    )


def parse_args(argv=None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    given = [args.observations is not None, args.predictions is not None]
    if any(given) and not all(given):
        parser.error("--observations and --predictions go together (or neither, for the demo)")
    if all(given) and args.out is None:
        parser.error("--out is required with --observations/--predictions")
    return args


def _log(message: str) -> None:
    print(f"[build_flatcube] {message}", file=sys.stderr, flush=True)


def _demo_inputs(client, progress: bool) -> tuple[str, str]:
    """Catalogue -> predictions -> observations of the demo, built once under DEMO_DIR."""
    from lamost2csst.parallel.flat_precision import flatcube_demo_inputs

    return flatcube_demo_inputs(client, demo_dir=DEMO_DIR, n_stars=DEMO_STARS, progress=progress, log=_log)


def monte_carlo(args, client) -> dict:
    """The Sect. 5 Monte Carlo on the demo's predictions; the plot with --plot; print the summary."""
    from lamost2csst.parallel.flat_precision import flat_precision_study

    summary = flat_precision_study(
        client,
        demo_dir=DEMO_DIR,
        demo_stars=DEMO_STARS,
        star_counts=MC_STAR_COUNTS,
        realizations=args.realizations,
        progress=not args.no_progress,
        log=_log,
    )
    if args.plot:
        from lamost2csst.workflows.flat_precision import plot_precision

        plot_precision(summary, args.plot)
        _log(f"plot: {args.plot}")
    print(json.dumps(summary), flush=True)
    return summary


def run(args: argparse.Namespace, client) -> dict:
    """Run the job on ``client``; print the summary as one JSON line and return it."""
    import shutil

    if args.monte_carlo:
        return monte_carlo(args, client)

    from lamost2csst.parallel.flatcube import build_flatcube

    if args.observations is None:
        observations, predictions = _demo_inputs(client, not args.no_progress)
        out = args.out or os.path.join(DEMO_DIR, "cube.zarr")
        if args.out is None and not args.resume:
            shutil.rmtree(out, ignore_errors=True)  # the demo's own output
    else:
        observations, predictions, out = args.observations, args.predictions, args.out
    iterations = args.iterations or (10 if args.self_calibrate else 3)
    summary = build_flatcube(
        observations,
        predictions,
        out,
        client=client,
        order=args.order,
        kappa=args.kappa,
        iterations=iterations,
        min_stars=args.min_stars,
        chunk_obs=args.chunk_obs,
        resume=args.resume,
        self_calibrate=args.self_calibrate,
        progress=not args.no_progress,
    )
    if args.fits_dir:
        from lamost2csst.io.flatcube_fits import export_cube_fits

        summary["fits"] = export_cube_fits(out, args.fits_dir, binning=args.fits_binning, log=_log)
    print(json.dumps(summary), flush=True)
    return summary


def main(argv=None) -> dict:
    args = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return run_cli("build_flatcube", args, run, n_workers=args.workers)


if __name__ == "__main__":
    main()
