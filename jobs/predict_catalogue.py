"""Job: predict CSST-like SEDs with uncertainties for every star of a spectra catalogue, on Dask.

``python -m jobs.predict_catalogue --help`` explains the steps, options and outputs.
Tests call :func:`run` with their own client; :func:`main` parses the command line,
starts (or attaches to) the cluster and calls :func:`run`. Notebooks call
:func:`lamost2csst.predict_catalogue`.
"""

from __future__ import annotations

import argparse
import os
import sys

from jobs._cli import check_output_location, positive_int, run_catalogue_job, run_cli
from jobs._options import (
    add_catalogue_options,
    add_cluster_options,
    add_dashboard_option,
    add_demo_chunk_options,
    add_output_state_options,
    add_reporting_options,
    add_trouble_option,
    job_parser,
    parse_catalogue_args,
)

PROG = "python -m jobs.predict_catalogue"
DEMO_CATALOGUE = os.path.join("outputs", "demo_grid_catalogue.zarr")
DEMO_OUT = os.path.join("outputs", "demo_predictions.zarr")
DEMO_SEED = 0

DESCRIPTION = """\
Predict CSST-like SEDs (2500-10500 A, R=200) with per-pixel uncertainties for every star of
a LAMOST-like spectra catalogue with UaRA-net, chunk by chunk, on a Dask cluster.

Input: a spectra catalogue, a Zarr store in the lamost2csst.spectra/1 schema (dims star x
wave; flux, ivar, mask; per-star obsid, ra, dec, z), e.g. made by jobs.ingest_lamost.
For every chunk of stars (lamost2csst.parallel.predict_tasks.predict_block):
  1. pixels with NaN/inf flux or bad ivar that are not marked bad are masked (flagged);
     LAMOST's trouble spots, in the observed frame, are masked (--lamost-trouble);
  2. rest frame with the star's z; stars without a usable z get NO_DATA | BAD_Z;
  3. cubic-convolution resampling onto INPUT_WAVE (2238 px, R=2000; output attr
     input_resampling), continuum normalization (centred 51-px moving average, Sect. 2.1);
  4. UaRA-net (the model is loaded once per worker): SED scaled like scale_sed, and its
     relative 1-sigma uncertainty: sigma = hypot(sigma_net, sigma_sys), the network's own
     sigma and the model discrepancy of the model card (0 when the card has none);
  5. the domain check (lamost2csst.core.domain): the normalized input, binned to 8-px bins,
     against noise-free templates (the model's training models and reference models beyond
     its 4750-10000 K domain), with the spectrum's colour F(4000-4500 A)/F(6500-7000 A) as a
     one-sided term (a template redder than the star is penalized; reddening never flags):
     a Teff estimate with its error and the best template's reduced chi-square, stored per
     star (teff_estimate, teff_estimate_error, domain_chi2);
  6. quality flags (bitmask, see below).
Every input star appears exactly once in the output, in the input's order.

The output template is written first; each task writes its chunk's region and then the
marker <out>/.markers/chunk-<index>.done. A stopped or failed run is finished with
--resume, which computes only the chunks without a marker (and refuses an output made
with another input, chunking, model, model discrepancy or thresholds, or one of another
schema version, such as lamost2csst.predictions/1: write a new output or use --overwrite).

Without --catalogue, a demo catalogue of --n-demo LAMOST-like stars simulated from the
shipped synthetic grid (Doppler shifts, realistic S/N distribution, masked pixels, a few
injected faults; lamost2csst.io.simulated) is built once at outputs/demo_grid_catalogue.zarr
with the true SEDs beside it, and the summary then reports the typical error against them.
NOTE: the demo stars are drawn from all grid models, some of which the shipped model was
trained on (in-sample); the summary's truth_heldout covers only the stars of the other
models (the model card's training split), the fair measure.
"""

EPILOG = """\
flags (uint16 bitmask; 0 = nothing to report):
  1   NO_DATA          no usable input pixel in the rest frame: sed and sigma are NaN
  2   MASKED_PIXELS    more than --max-masked-fraction of the INPUT_WAVE pixels masked
  4   NONFINITE_INPUT  NaN/inf flux or bad ivar on pixels not marked bad (masked by the job)
  8   LOW_SNR          median S/N per pixel of the input spectrum below --min-snr
  16  BAD_Z            z missing (NaN, -9999) or |z| > --max-abs-z
  32  OUTSIDE_DOMAIN   outside the network's training domain. Where the catalogue gives a
                   finite teff: that teff outside 5000-9750 K (as before). Otherwise (e.g.
                   LAMOST files, which carry no Teff): the spectrum's own Teff estimate
                   outside --domain-teff-range, or no template resembles the spectrum
                   (domain_chi2 above --max-domain-chi2). The thresholds were chosen on
                   synthetic stars (EVALUATION.md, "Domain check": rates on the grid's test
                   split and on an out-of-domain test set). LAMOST's subclass, kept as a
                   star coordinate, is not used.
  64  UNCERTAIN        median network sigma (sigma_net) above --max-sigma

outputs:
  OUT (Zarr v3, schema lamost2csst.predictions/3, xarray.open_zarr(OUT, consolidated=False)):
      sed, sigma, sigma_net, sigma_sys (star, wave_out=574) float32, sigma (the total) =
      hypot(sigma_net, sigma_sys); flags (star) uint16; teff_estimate, teff_estimate_error
      (K) and domain_chi2 (star) float32; coordinate wave_out (vacuum A); all per-star
      coordinates of the input; attrs: flag meanings and thresholds, model path and sha256,
      the model discrepancy's provenance and sha256, the domain templates, input store,
      package version, time, summary.
  OUT/.markers/chunk-<index>.done: JSON marker per finished chunk (for --resume).
  stdout: ONE JSON line, the summary: stars_in, stars_written, ok, flagged, flag_counts,
      chunks_total/done/skipped, seconds, spectra_per_second, seconds_setup (worker start,
      model load and compilation) and seconds_tasks, task_seconds_read/_prepare/_network/
      _domain/_write (summed over the chunks: where the time goes), model_hash and, when the
      catalogue has true SEDs (the demo), truth: typical error per band (GU, GV, GI) per
      S/N bin = median over the band's pixels of the std over stars of sed/sed_true - 1.
  stderr: the Dask dashboard address, a progress bar over chunks, messages.

exit status: 0 done; 2 bad input or output location (message on stderr); 1 any other failure.

examples:
  python -m jobs.predict_catalogue                                   # demo, 100000 stars
  python -m jobs.predict_catalogue --n-demo 1000000 --out big.zarr
  python -m jobs.predict_catalogue --catalogue dr10.zarr --out dr10_sed.zarr --workers 16
  python -m jobs.predict_catalogue --catalogue dr10.zarr --out dr10_sed.zarr --gpus
  python -m jobs.predict_catalogue --catalogue dr10.zarr --out dr10_sed.zarr --resume \\
      --scheduler tcp://head-node:8786 --performance-report report.html
"""


def build_parser() -> argparse.ArgumentParser:
    parser = job_parser(PROG, DESCRIPTION, EPILOG)
    _add_data_options(parser.add_argument_group("data"))
    add_output_state_options(
        parser,
        resume_help="finish an existing output of the same input, chunking, model, model discrepancy, "
        "thresholds and schema version: chunks with a marker are skipped",
        overwrite_help="remove an existing output first (only a lamost2csst.predictions store is removed)",
    )
    flags = parser.add_argument_group("quality flags")
    for option, default, metavar, help_ in _FLAG_OPTIONS:
        flags.add_argument(option, type=float, default=default, metavar=metavar, help=help_)
    _add_domain_options(flags)
    _add_cluster_options(parser.add_argument_group("cluster"))
    add_reporting_options(parser.add_argument_group("reporting"), log_chunks=True)
    return parser


_FLAG_OPTIONS = (  # (option, default, metavar, help) of the quality-flag thresholds
    ("--min-snr", 10.0, "S", "LOW_SNR below this median S/N per pixel of the input spectrum, on its own "
     "pixels (default: %(default)s)"),
    ("--max-masked-fraction", 0.2, "F",
     "MASKED_PIXELS above this fraction of masked INPUT_WAVE pixels (default: %(default)s)"),
    ("--max-abs-z", 0.005, "Z", "BAD_Z above this |z| (default: %(default)s, 1500 km/s)"),
    ("--max-sigma", 0.1, "S", "UNCERTAIN above this median network sigma, sigma_net (default: %(default)s)"),
)  # fmt: skip


def _teff_range(text: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LOW,HIGH in K (e.g. 4875,9875), got {text!r}") from None
    return lo, hi


def _add_domain_options(flags) -> None:
    """The domain check's thresholds (defaults: those of FlagThresholds, chosen on synthetic sets)."""
    from lamost2csst.core.flags import FlagThresholds

    default = FlagThresholds()
    lo, hi = default.domain_teff_range
    flags.add_argument(
        "--domain-teff-range",
        type=_teff_range,
        default=default.domain_teff_range,
        metavar="LO,HI",
        help=f"OUTSIDE_DOMAIN (stars without a catalogue teff) when the spectrum's Teff estimate is "
        f"outside LO-HI K (default: {lo:g},{hi:g})",
    )
    flags.add_argument(
        "--max-domain-chi2",
        type=float,
        default=default.max_domain_chi2,
        metavar="X",
        help="OUTSIDE_DOMAIN (stars without a catalogue teff) when the best domain template's reduced "
        "chi-square is above X: no template resembles the spectrum (default: %(default)s)",
    )


def _add_data_options(data) -> None:
    """The "data" options: input catalogue, output, model, demo size, chunking and batch size."""
    add_catalogue_options(data, demo_catalogue=DEMO_CATALOGUE, demo_out=DEMO_OUT, out_metavar="P.zarr")
    data.add_argument(
        "--model",
        metavar="PATH.keras",
        help="UaRA-net model file visible to all workers (default: the shipped model)",
    )
    add_demo_chunk_options(
        data,
        n_demo=100_000,
        n_demo_help="stars of the demo catalogue, used only without --catalogue (default: %(default)s)",
    )
    data.add_argument(
        "--batch-size",
        type=positive_int,
        default=1024,
        metavar="N",
        help="spectra per forward pass of the network (default: %(default)s)",
    )
    add_trouble_option(data)
    data.add_argument(
        "--spectra",
        choices=("auto", "real", "synthetic"),
        default="auto",
        help="what the catalogue's spectra are, for a model with a real-star branch (the shipped "
        "one): 'real' predicts real stars' SEDs (LAMOST), 'synthetic' the synthetic grid's; "
        "'auto' (default) reads the catalogue's spectra_kind attr (the demo catalogues are "
        "synthetic; ingested LAMOST files and catalogues without it are real)",
    )


def _add_cluster_options(cluster) -> None:
    """The "cluster" options: scheduler, workers or GPUs, dashboard, threads per worker."""
    where = add_cluster_options(
        cluster,
        scheduler_help="attach to a running Dask scheduler (e.g. tcp://host:8786); paths must be visible "
        "to its workers",
        workers_help="worker processes of the LocalCluster (default: number of CPU cores; one "
        "1-thread TensorFlow per core was fastest here, see BENCHMARKS.md)",
    )
    where.add_argument(
        "--gpus",
        action="store_true",
        help="a dask-cuda LocalCUDACluster: one worker per visible GPU (needs dask-cuda)",
    )
    add_dashboard_option(cluster)
    cluster.add_argument(
        "--threads-per-worker",
        type=positive_int,
        default=1,
        metavar="T",
        help="threads per LocalCluster worker, also TensorFlow's thread count (default: %(default)s)",
    )


def parse_args(argv=None) -> argparse.Namespace:
    """The parsed command line (also for tests: ``run(parse_args([...]), client)``)."""
    return parse_catalogue_args(build_parser(), argv)


def _log(message: str) -> None:
    print(f"[predict_catalogue] {message}", file=sys.stderr, flush=True)


def _thresholds(args):
    from lamost2csst.core.flags import FlagThresholds
    from lamost2csst.errors import InputError

    try:
        return FlagThresholds(
            max_masked_fraction=args.max_masked_fraction,
            min_snr=args.min_snr,
            max_abs_z=args.max_abs_z,
            max_sigma=args.max_sigma,
            domain_teff_range=args.domain_teff_range,
            max_domain_chi2=args.max_domain_chi2,
        )
    except ValueError as err:
        raise InputError(f"flag thresholds: {err}") from None


def _demo_catalogue(path: str, n_star: int, client, *, progress: bool = True) -> str:
    from lamost2csst.parallel.demo import grid_demo_catalogue

    return grid_demo_catalogue(
        path, n_star=n_star, seed=DEMO_SEED, client=client, progress=progress, log=_log
    )


def _resolve(args) -> tuple[str | None, str]:
    return args.catalogue, args.out if args.out is not None else DEMO_OUT


def _preflight(args) -> None:
    """Cheap checks before a cluster starts, so that bad input fails at once (exit 2).

    The catalogue is only looked for here: the library opens it once and checks its schema.
    """
    from lamost2csst.errors import InputError
    from lamost2csst.io.spectra import require_catalogue

    catalogue, out = _resolve(args)
    if catalogue is not None:
        require_catalogue(catalogue)
    if args.model is not None and not os.path.isfile(args.model):
        raise InputError(f"model file {args.model} does not exist")
    check_output_location(out, resume=args.resume, overwrite=args.overwrite)
    _thresholds(args)


def run(args: argparse.Namespace, client) -> dict:
    """Run the job on ``client``; print the summary as one JSON line on stdout and return it."""
    from lamost2csst.parallel.predict import predict_catalogue

    return run_catalogue_job(
        args,
        client,
        predict_catalogue,
        demo=_demo_catalogue,
        demo_catalogue=DEMO_CATALOGUE,
        demo_out=DEMO_OUT,
        preflight=_preflight,
        log=_log,
        options=lambda: dict(
            model=args.model,
            thresholds=_thresholds(args),
            batch_size=args.batch_size,
            lamost_trouble=args.lamost_trouble,
            spectra=args.spectra,
        ),
    )


def main(argv=None) -> dict:
    """Command-line entry point: returns the summary; bad input exits with status 2."""
    args = parse_args(argv)  # before any heavy import: --help answers at once
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return run_cli(
        "predict_catalogue",
        args,
        run,
        preflight=_preflight,
        n_workers=args.workers,
        threads_per_worker=args.threads_per_worker,
        gpus=args.gpus,
    )


if __name__ == "__main__":
    main()
