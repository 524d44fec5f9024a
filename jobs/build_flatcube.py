"""Job: the 3D flat-field cube from slitless observations and predicted SEDs, on Dask.

``python -m jobs.build_flatcube --help`` explains the fit, the options and the outputs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from jobs._cli import add_dashboard_option, positive_int

PROG = "python -m jobs.build_flatcube"
DEMO_DIR = os.path.join("outputs", "flatcube_demo")
DEMO_STARS = 3000

DESCRIPTION = """\
Fit the large-scale flat of every CSST slitless detector at every wavelength of the R=200
output grid from star-by-star flux ratios, observed / (scale * predicted SED), across
detector positions: per (band, detector, wavelength) a weighted least-squares 2D Legendre
polynomial in the normalized pixel position (--order, default 2), weights from the
observation error and the predicted sigma, --iterations fits with --kappa sigma clipping,
at least --min-stars observations per fit. Each star's absolute scale at 5526-5586 A is
taken from the observations' scale column, or, with --self-calibrate, fitted jointly with
the flats from the star's repeated observations (alternating least squares: flats given
the scales, scales given the flats; beyond the paper, which assumes known scales). Observations are joined with the predictions
(jobs.predict_catalogue's output) by obsid; only predictions with flags == 0 are used.

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
    p = argparse.ArgumentParser(prog=PROG, description=DESCRIPTION, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--observations", metavar="O.zarr", help="slitless observations (lamost2csst.slitless_observations/1)")
    p.add_argument("--predictions", metavar="P.zarr", help="predictions of jobs.predict_catalogue")
    p.add_argument("--out", metavar="C.zarr", help=f"the cube (default for the demo: {DEMO_DIR}/cube.zarr)")
    p.add_argument("--order", type=int, default=2, help="total degree of the 2D polynomial (default: %(default)s)")
    p.add_argument("--kappa", type=float, default=3.0, help="sigma-clipping threshold (default: %(default)s)")
    p.add_argument("--iterations", type=positive_int,
                   help="fits, with clipping between (default: 3; 10 with --self-calibrate)")
    p.add_argument("--self-calibrate", action="store_true",
                   help="fit each star's scale jointly with the flats from repeated observations (ubercal-style) "
                   "instead of trusting the observations' scale column; >= 3 observations per star advised")
    p.add_argument("--min-stars", type=positive_int, default=20, help="minimum observations per fit (default: %(default)s)")
    p.add_argument("--chunk-obs", type=positive_int, metavar="N", help="observations per task (default: the store's chunk)")
    p.add_argument("--resume", action="store_true", help="reuse the saved normal equations of an interrupted run")
    p.add_argument("--fits-dir", metavar="DIR",
                   help="also write aXe-style FITS flats, one file per band and detector (DIR/flat_<band>_<det>.fits)")
    p.add_argument("--fits-binning", type=positive_int, default=64, metavar="B",
                   help="FITS images keep every B-th detector pixel (default: %(default)s; 1 = full 9232 x 9216)")
    p.add_argument("--monte-carlo", action="store_true",
                   help="instead of building a cube: the Sect. 5 Monte Carlo of the calibration precision with the "
                   "demo's predicted SEDs (400 stars with S/N > 20, order 2; then vs stars, order, scale errors)")
    p.add_argument("--realizations", type=positive_int, default=20, help="Monte Carlo realizations (default: %(default)s)")
    p.add_argument("--plot", metavar="FILE.png", help="with --monte-carlo: plot the precision against the number of stars")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--scheduler", metavar="ADDRESS", help="attach to a running Dask scheduler")
    where.add_argument("--workers", type=positive_int, metavar="N", help="LocalCluster workers (default: CPU cores)")
    add_dashboard_option(p)
    p.add_argument("--performance-report", metavar="FILE", help="write a Dask performance report (HTML)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--log-chunks", action="store_true",
                   help="one JSON line per chunk done or failed on stderr (for log collectors)")
    return p


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
    """Catalogue -> predictions -> observations of the demo, built once under outputs/flatcube_demo."""
    import shutil

    from lamost2csst.io import write_spectra
    from lamost2csst.io.observations import simulate_observations, write_observations
    from lamost2csst.io.simulated import grid_catalogue
    from lamost2csst.parallel.predict import predict_catalogue

    obs_path = os.path.join(DEMO_DIR, "observations.zarr")
    pred_path = os.path.join(DEMO_DIR, "predictions.zarr")
    if os.path.exists(os.path.join(DEMO_DIR, "complete")):
        _log(f"reusing the demo inputs in {DEMO_DIR}")
        return obs_path, pred_path
    shutil.rmtree(DEMO_DIR, ignore_errors=True)
    os.makedirs(DEMO_DIR)
    _log(f"building the demo in {DEMO_DIR}: {DEMO_STARS} stars from the grid, their predictions, CSST observations")
    cat = grid_catalogue(DEMO_STARS, seed=3)
    cat_path = os.path.join(DEMO_DIR, "catalogue.zarr")
    write_spectra(cat, cat_path, chunk_stars=1024)
    predict_catalogue(cat_path, pred_path, client=client, progress=progress)
    obs, truth = simulate_observations(cat["sed_true"].values, cat["obsid"].values, n_exposures=3, seed=3)
    write_observations(obs, obs_path, truth=truth)
    open(os.path.join(DEMO_DIR, "complete"), "w").close()
    return obs_path, pred_path


PAPER_PRECISION = {"GU": 0.005, "GV": 0.0003, "GI": 0.0005}
MC_STAR_COUNTS = (100, 400, 1000, 10000, 100000)  # the precision-against-stars curve


def monte_carlo(args, client) -> dict:
    """The Sect. 5 Monte Carlo on the demo's predictions (stars with flags == 0 and S/N > 20)."""
    import xarray as xr

    from lamost2csst.core.calibration import monte_carlo_flat_precision
    from lamost2csst.parallel.runtime import worker_mapper

    _, predictions = _demo_inputs(client, not args.no_progress)
    pred = xr.open_zarr(predictions, consolidated=False)
    cat = xr.open_zarr(os.path.join(DEMO_DIR, "catalogue.zarr"), consolidated=False)
    keep = (pred.flags.values == 0) & (cat.snr_g.values > 20)
    pool = (pred.sed.values[keep], pred.sigma.values[keep], cat.sed_true.values[keep])
    _log(f"Monte Carlo: pool of {int(keep.sum())} demo stars with flags == 0 and S/N > 20")

    def case(**kw):
        res = monte_carlo_flat_precision(*pool, realizations=kw.pop("realizations", args.realizations), seed=0,
                                         mapper=worker_mapper(client), **kw)
        row = {**kw, **{band: round(r["median"], 6) for band, r in res.items()}}
        print(json.dumps(row), file=sys.stderr, flush=True)
        return row

    summary = {"job": "build_flatcube --monte-carlo", "pool_stars": int(keep.sum()), "paper": PAPER_PRECISION,
               "realizations": args.realizations,
               "baseline": case(n_stars=400, order=2),
               "vs_stars": [case(n_stars=n, order=2, realizations=max(2, args.realizations // (1 + n // 2000)))
                            for n in MC_STAR_COUNTS],
               "vs_order": [case(n_stars=400, order=o) for o in (1, 2, 3)],
               "order2_fit_of_cubic_flat": case(n_stars=400, order=2, max_order=3),
               "scale_error_1pct": case(n_stars=400, order=2, scale_error=0.01),
               "self_calibration": _self_calibration_case(client, predictions, keep, cat, args)}
    if args.plot:
        plot_precision(summary, args.plot)
        _log(f"plot: {args.plot}")
    print(json.dumps(summary), flush=True)
    return summary


def _self_calibration_case(client, predictions: str, keep, cat, args, n_stars: int = 400, exposures: int = 3) -> dict:
    """Known scales vs self-calibration, through the job itself: ``n_stars`` stars observed
    ``exposures`` times per band (self-calibration needs repeats), order 2; median over
    realizations of the per-band precision the job reports against the injected flat."""
    import tempfile

    import numpy as np

    from lamost2csst.io.observations import simulate_observations, write_observations
    from lamost2csst.parallel.flatcube import build_flatcube

    pool = np.flatnonzero(keep)
    rows = {"known": [], "self": []}
    realizations = max(2, min(args.realizations, 5))
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(realizations):
            pick = np.random.default_rng(100 + r).choice(pool, n_stars, replace=False)
            obs, truth = simulate_observations(cat.sed_true.values[pick], cat.obsid.values[pick],
                                               n_exposures=exposures, seed=100 + r, max_order=2)
            known_path, unknown_path = f"{tmp}/known-{r}.zarr", f"{tmp}/unknown-{r}.zarr"
            write_observations(obs, known_path, truth=truth)
            write_observations(obs.assign_coords(scale=("obs", np.full(obs.sizes["obs"], np.nan))), unknown_path,
                               truth=truth)
            for name, path, kw in (("known", known_path, {}), ("self", unknown_path, {"self_calibrate": True,
                                                                                      "iterations": 10})):
                s = build_flatcube(path, predictions, f"{tmp}/cube-{name}-{r}.zarr", client=client, order=2,
                                   min_stars=10, progress=False, **kw)
                rows[name].append({t["band"]: t["rms_deviation_median"] for t in s["truth"]})
    result = {"n_stars": n_stars, "exposures": exposures, "realizations": realizations}
    for name, values in rows.items():
        result[name] = {band: round(float(np.median([v[band] for v in values])), 6) for band in values[0]}
    print(json.dumps({"self_calibration": result}), file=sys.stderr, flush=True)
    return result


def plot_precision(summary: dict, path: str) -> None:
    """Precision per band against the number of stars (log-log), the paper's 400-star values marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    rows = summary["vs_stars"]
    stars = np.array([r["n_stars"] for r in rows], dtype=float)
    fig, ax = plt.subplots(figsize=(6, 4.2))
    for band, colour in (("GU", "tab:blue"), ("GV", "tab:green"), ("GI", "tab:red")):
        ax.plot(stars, [r[band] for r in rows], "o-", color=colour, label=f"{band}, shipped model")
        ax.plot([400], [summary["paper"][band]], "*", color=colour, markersize=12, markeredgecolor="k")
    ax.plot(stars, rows[0]["GV"] * np.sqrt(stars[0] / stars), ":", color="grey", label="1/sqrt(N) from 100 stars (GV)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("flux-standard stars per detector")
    ax.set_ylabel("flat precision (rms of fitted / true - 1)")
    ax.set_title("Sect. 5 Monte Carlo, order-2 2D polynomial (stars: the paper at 400)", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _export_fits(cube_path: str, fits_dir: str, binning: int) -> list[str]:
    import xarray as xr

    from lamost2csst.io.flatcube_fits import export_axe_fits

    cube = xr.open_zarr(cube_path, consolidated=False).load()
    os.makedirs(fits_dir, exist_ok=True)
    written = []
    for band in cube.band.values:
        for det in cube.detector.values:
            path = os.path.join(fits_dir, f"flat_{band}_{int(det)}.fits")
            try:
                export_axe_fits(cube, path, band=str(band), detector=int(det), binning=binning, overwrite=True)
            except ValueError as err:
                _log(f"no FITS for {band} detector {int(det)}: {err}")
                continue
            written.append(path)
    _log(f"{len(written)} aXe-style FITS flats in {fits_dir}")
    return written


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
    summary = build_flatcube(observations, predictions, out, client=client, order=args.order, kappa=args.kappa,
                             iterations=iterations, min_stars=args.min_stars, chunk_obs=args.chunk_obs,
                             resume=args.resume, self_calibrate=args.self_calibrate, progress=not args.no_progress)
    if args.fits_dir:
        summary["fits"] = _export_fits(out, args.fits_dir, args.fits_binning)
    print(json.dumps(summary), flush=True)
    return summary


def main(argv=None) -> dict:
    args = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if args.log_chunks:
        from jobs._cli import log_chunks_to_stderr

        log_chunks_to_stderr()
    from jobs._cli import run_cli

    return run_cli("build_flatcube", args, run, n_workers=args.workers)


if __name__ == "__main__":
    main()
