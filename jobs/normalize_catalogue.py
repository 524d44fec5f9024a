"""Job: normalize a spectra catalogue into UaRA-net inputs on a Dask cluster.

``python -m jobs.normalize_catalogue --help`` explains the steps, options and outputs.
Tests call :func:`run` with their own client; :func:`main` parses the command line,
starts (or attaches to) the cluster and calls :func:`run`.
"""

from __future__ import annotations

import argparse
import os
import sys

from jobs._cli import positive_int, run_catalogue_job
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

# Heavy imports (xarray, dask, distributed) happen inside the functions so that --help is fast.

PROG = "python -m jobs.normalize_catalogue"
DEMO_CATALOGUE = os.path.join("outputs", "demo_catalogue.zarr")
DEMO_OUT = os.path.join("outputs", "demo_inputs.zarr")
DEMO_SEED = 0

DESCRIPTION = """\
Normalize LAMOST-like spectra into UaRA-net inputs, chunk by chunk, on a Dask cluster.

Input: a spectra catalogue, a Zarr store in the lamost2csst.spectra/1 schema (dims star
x wave; flux, ivar, mask; per-star obsid, ra, dec, z; see lamost2csst.io.spectra).
For every star, the normative steps of DESIGN.md (the numpy kernel
lamost2csst.core.prepare_inputs):
  0. LAMOST's trouble spots (sky-line residuals, the arm junction; observed frame) are
     masked as predict_catalogue does (--lamost-trouble), so the stored inputs are what
     that job feeds the network;
  1. rest frame: lambda_rest = lambda_obs / (1 + z), z per star (skipped when the
     catalogue's frame attribute is already "rest");
  2. cubic-convolution resampling (Keys, a = -1/2) onto INPUT_WAVE (2238 px,
     4000*exp(i/4000) A, vacuum, R=2000), inverse variances and masks propagated;
     uncovered pixels are masked (flux-conserving rebinning smooths LAMOST's barely
     sampled lines; EVALUATION.md);
  3. continuum normalization (paper Sect. 2.1): flux/continuum and error/continuum, the
     continuum being the centred moving average of 51 px.

One Dask task per chunk of stars. The output template (metadata and per-star
coordinates) is written first; each task then writes its chunk's region and, only after
that succeeded, the marker <out>/.markers/chunk-<index>.done. A stopped or failed run is
finished with --resume, which recomputes only the chunks without a marker.

Without --catalogue, a toy demo catalogue of --n-demo stars (an ANALYTIC STAND-IN:
Planck continua x Gaussian lines at vacuum wavelengths, Doppler shifts, Eq. 1 noise,
masked pixels; lamost2csst.io.demo) is built once at outputs/demo_catalogue.zarr
(relative to the current directory; reused when it holds the same demo) and the output
defaults to outputs/demo_inputs.zarr, which a rerun of the demo replaces.
"""

EPILOG = """\
outputs:
  OUT (Zarr v3, schema lamost2csst.network_input/1, readable with
      xarray.open_zarr(OUT, consolidated=False)): flux and error (float32, normalized,
      NaN where masked) and mask (bool, True = unusable) on dims (star, wave_in=2238);
      coordinate wave_in (rest-frame vacuum Angstrom); all per-star coordinates of the
      input (obsid, ra, dec, z, ...), same stars in the same order; provenance attrs
      (input store, package version, UTC time) and attrs['summary'].
  OUT/.markers/chunk-<index>.done: one JSON marker per finished chunk (for --resume).
  stdout: ONE JSON line, the summary: stars_in, stars_written, chunks_total,
      chunks_done, chunks_skipped, masked_pixel_fraction, stars_all_masked, stars_bad_z
      (no usable z: kept, fully masked), seconds,
      spectra_per_second, paths.
  stderr: the Dask dashboard address, a progress bar over chunks, messages.

exit status: 0 done; 2 bad input or output location (message on stderr, e.g. missing
store, wrong schema, existing output without --resume); 1 any other failure.

examples:
  python -m jobs.normalize_catalogue                                   # demo, 20000 stars
  python -m jobs.normalize_catalogue --catalogue dr6.zarr --out dr6_inputs.zarr --workers 8
  python -m jobs.normalize_catalogue --catalogue dr6.zarr --out dr6_inputs.zarr --resume \\
      --scheduler tcp://head-node:8786 --performance-report report.html
"""


def build_parser() -> argparse.ArgumentParser:
    parser = job_parser(PROG, DESCRIPTION, EPILOG)
    data = parser.add_argument_group("data")
    add_catalogue_options(data, demo_catalogue=DEMO_CATALOGUE, demo_out=DEMO_OUT, out_metavar="O.zarr")
    add_demo_chunk_options(
        data,
        n_demo=20_000,
        n_demo_help="number of stars of the demo catalogue, used only without --catalogue "
        "(default: %(default)s)",
        chunk_note="; multiples of the input chunk size read best",
    )
    add_trouble_option(data)
    add_output_state_options(
        parser,
        resume_help="finish an existing output made from the same input and chunking: chunks with a marker "
        "are skipped, the others (re)computed",
        overwrite_help="remove an existing output first "
        "(only a lamost2csst.network_input store is ever removed)",
    )
    cluster = parser.add_argument_group("cluster")
    add_cluster_options(
        cluster,
        scheduler_help="attach to a running Dask scheduler (e.g. tcp://host:8786) instead of starting a "
        "LocalCluster; the paths must be visible to its workers",
        workers_help="worker processes of the LocalCluster (default: number of CPU cores)",
    )
    cluster.add_argument(
        "--threads-per-worker",
        type=positive_int,
        default=1,
        metavar="T",
        help="threads per LocalCluster worker "
        "(default: %(default)s; the numpy kernel does not gain from threads)",
    )
    add_dashboard_option(cluster)
    add_reporting_options(
        parser.add_argument_group("reporting"),
        report_help="write a Dask performance report (HTML) of the run to FILE",
    )
    return parser


def parse_args(argv=None) -> argparse.Namespace:
    """The parsed command line (also for tests: ``run(parse_args([...]), client)``)."""
    return parse_catalogue_args(build_parser(), argv)


def _log(message: str) -> None:
    print(f"[normalize_catalogue] {message}", file=sys.stderr, flush=True)


def _demo_catalogue(path: str, n_star: int, client, *, progress: bool = True) -> str:
    """Build the demo catalogue at ``path`` once; reuse it when it holds the same demo."""
    from lamost2csst.parallel.demo import toy_demo_catalogue

    return toy_demo_catalogue(path, n_star=n_star, seed=DEMO_SEED, client=client, progress=progress, log=_log)


def _resolve(args) -> tuple[str | None, str]:
    """(catalogue or None for the demo, output path)."""
    return args.catalogue, args.out if args.out is not None else DEMO_OUT


def _preflight(args) -> None:
    """Cheap checks before a cluster is started, so that bad input fails at once (exit 2).

    The catalogue is only looked for here: the library opens it once and checks its schema.
    """
    from jobs._cli import check_output_location
    from lamost2csst.io.spectra import require_catalogue

    catalogue, out = _resolve(args)
    if catalogue is not None:
        require_catalogue(catalogue)
    check_output_location(out, resume=args.resume, overwrite=args.overwrite)


def run(args: argparse.Namespace, client) -> dict:
    """Run the job on ``client``; print the summary as one JSON line on stdout and return it.

    Raises :class:`lamost2csst.parallel.InputError` for bad input or output locations.
    """
    from lamost2csst.parallel import normalize_catalogue

    return run_catalogue_job(
        args,
        client,
        normalize_catalogue,
        demo=_demo_catalogue,
        demo_catalogue=DEMO_CATALOGUE,
        demo_out=DEMO_OUT,
        preflight=_preflight,
        log=_log,
        options=lambda: dict(lamost_trouble=args.lamost_trouble),
    )


def main(argv=None) -> dict:
    """Command-line entry point: returns the summary; bad input exits with status 2."""
    args = parse_args(argv)  # before any heavy import: --help answers at once
    from jobs._cli import run_cli

    if args.scheduler and args.threads_per_worker != 1:
        _log("--threads-per-worker applies to a LocalCluster only; ignored with --scheduler")
    return run_cli(
        "normalize_catalogue",
        args,
        run,
        preflight=_preflight,
        n_workers=args.workers,
        threads_per_worker=args.threads_per_worker,
    )


if __name__ == "__main__":
    main()
