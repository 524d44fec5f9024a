"""Job: LAMOST LRS FITS files (both layouts) -> a spectra catalogue (Zarr) on Dask.

``python -m jobs.ingest_lamost --help`` explains the steps, options and outputs.
"""

from __future__ import annotations

import argparse
import json
import sys

from jobs._cli import positive_int
from jobs._options import add_cluster_options, add_dashboard_option, add_reporting_options, job_parser

PROG = "python -m jobs.ingest_lamost"

DESCRIPTION = """\
Read LAMOST low-resolution (LRS) FITS files, DR1-7 image layout and DR8+ binary-table
layout (gzipped or not), into one spectra catalogue (Zarr v3, schema lamost2csst.spectra/1)
on the common LAMOST log-wavelength grid (LAMOST_WAVE, 3909 px, vacuum), in parallel on
Dask. The output is the input of jobs.predict_catalogue.

  1. list the files of INPUT (files, or folders searched recursively for *.fits, *.fits.gz,
     *.fit, *.fit.gz), sorted, each once;
  2. skip files already in the store (same path); read each of the others once (tasks of
     --files-per-task files): a file that cannot be read (corrupt, truncated, missing
     header keys, air wavelengths, off-grid, ...) is recorded in the store's rejects with
     its path and reason, and counted; it is never dropped silently;
  3. a file whose OBSID is already in the store, or earlier in this run, is a reject;
  4. append the accepted stars (header values as per-star coordinates: obsid, ra, dec, z,
     z_err, snr_u..snr_z, class, subclass, data_release, file) in file order, and write
     their pixels (kept by the workers since step 2) chunk by chunk, each chunk followed
     by a marker.
Steps 2-4 run in segments of --files-per-segment files, one append each; the next segment
is read while one is written. Re-running on the same inputs adds nothing twice;
re-running after new files arrived adds only them; a run that was stopped is finished by
the next run.
"""

EPILOG = """\
outputs:
  OUT (Zarr v3, lamost2csst.spectra/1; xarray.open_zarr(OUT, consolidated=False)):
      flux, ivar (float32) and mask (bool) on (star, wave); per-star coordinates from the
      headers (LAMOST's -9999 become NaN); attrs 'rejects' (path, reason, utc per file)
      and 'summary'.
  stdout: ONE JSON line, the summary: files_found, files_already_ingested, stars_added,
      stars_resumed, rejected (this run), rejects_total, stars_total, seconds,
      files_per_second.
  stderr: the Dask dashboard address, progress bars, messages.

exit status: 0 done (even with rejects: see the summary); 2 bad input (no such path, no
FITS file, no readable file, OUT not made by this job); 1 any other failure.

examples:
  python -m jobs.ingest_lamost /data/lamost/dr10/fits --out dr10.zarr --workers 8
  python -m jobs.ingest_lamost new_night/ --out dr10.zarr          # adds only new files
"""


def build_parser() -> argparse.ArgumentParser:
    parser = job_parser(PROG, DESCRIPTION, EPILOG)
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="LAMOST LRS FITS files and/or folders")
    parser.add_argument(
        "--out", required=True, metavar="CATALOGUE.zarr", help="the catalogue to create or append to"
    )
    parser.add_argument(
        "--chunk-stars",
        type=positive_int,
        default=4096,
        metavar="N",
        help="stars per chunk of a new catalogue (default: %(default)s; an existing one keeps its own)",
    )
    parser.add_argument(
        "--files-per-task",
        type=positive_int,
        default=256,
        metavar="N",
        help="files per read task (default: %(default)s)",
    )
    parser.add_argument(
        "--files-per-segment",
        type=positive_int,
        default=16384,
        metavar="N",
        help="files read per append to the catalogue; the workers hold the pixels of two "
        "segments, ~35 kB per file (default: %(default)s)",
    )
    add_cluster_options(
        parser,
        scheduler_help="attach to a running Dask scheduler",
        workers_help="worker processes of the LocalCluster (default: number of CPU cores)",
    )
    add_dashboard_option(parser)
    add_reporting_options(parser, progress_help="no progress bars")
    return parser


def parse_args(argv=None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def _preflight(args) -> None:
    from lamost2csst.parallel.ingest import find_lamost_files

    find_lamost_files(args.inputs)  # a missing path fails before a cluster starts


def run(args: argparse.Namespace, client) -> dict:
    """Run the job on ``client``; print the summary as one JSON line and return it."""
    from lamost2csst.parallel.ingest import ingest_lamost

    summary = ingest_lamost(
        args.inputs,
        args.out,
        client=client,
        chunk_stars=args.chunk_stars,
        progress=not args.no_progress,
        files_per_task=args.files_per_task,
        files_per_segment=args.files_per_segment,
    )
    if summary["rejected"]:
        print(
            f"[ingest_lamost] {summary['rejected']} file(s) rejected: see attrs['rejects'] of {args.out}",
            file=sys.stderr,
        )
    print(json.dumps(summary), flush=True)
    return summary


def main(argv=None) -> dict:
    args = parse_args(argv)
    from jobs._cli import run_cli

    return run_cli("ingest_lamost", args, run, preflight=_preflight, n_workers=args.workers)


if __name__ == "__main__":
    main()
