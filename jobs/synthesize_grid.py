"""Job: synthesize a BOSZ-like grid (ATLAS9 + Synspec + linemake) into a Zarr store with Dask.

``python -m jobs.synthesize_grid --help`` explains the options and outputs. The pipeline is
:func:`lamost2csst.parallel.synthesis.synthesize_grid`; tests call :func:`run` with their own
client; :func:`main` parses the command line, starts (or attaches to) the cluster and calls
:func:`run`.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys

from jobs._cli import check_output_location, positive_int, run_cli
from jobs._grid_arguments import parse_part, parse_step, parse_values
from jobs._options import (
    add_cluster_options,
    add_dashboard_option,
    add_output_state_options,
    add_reporting_options,
    job_parser,
)

# Heavy imports (numpy, xarray, zarr, dask, distributed) happen inside the functions so that --help is fast.

PROG = "python -m jobs.synthesize_grid"

DESCRIPTION = """\
Synthesize stellar spectra of the Castelli-Kurucz ATLAS9 grid with Synspec and linemake
line lists (the BOSZ recipe; lamost2csst.synth), one Dask task per model, and store the
three products of every model in one Zarr store:

  flux_in     R=2000 on INPUT_WAVE (2238 px, 4000-7000 A), F_lambda, not normalized
  flux_lamost R=2000 on LAMOST_WAVE (3909 px, 3700-9100 A), F_lambda
  sed         R=200 on OUTPUT_WAVE (574 px, 2500-10500 A), scaled to mean 1 at 5526-5586 A

All wavelengths vacuum A. Models are the grid nodes selected by --teff/--logg/--feh/--alpha
(ranges a:b or a:b:step, inclusive, or comma lists); combinations that are not grid nodes
(e.g. hot stars at low log g) are counted as not_in_grid and left out. --n-random N keeps a
random subset of N of them (numpy Generator, --seed).

Each task runs Synspec in its own temporary directory, writes its model's rows of the
store and then the marker <out>/.markers/chunk-<i>.done; a model that fails leaves
<out>/.markers/chunk-<i>.failed with the reason instead and its rows stay NaN. --resume
skips models with a .done marker (failed ones are retried). At the end the store's
per-model variables ok and seconds and its attrs (failures with reasons, summary) are
rebuilt from all markers.

The first run builds Synspec (needs gfortran: apt-get install gfortran) and converts the
line lists into the cache ($LAMOST2CSST_CACHE or ~/.cache/lamost2csst).
"""

EPILOG = """\
outputs:
  OUT (Zarr v3, schema lamost2csst.synthetic_grid/1; xarray.open_zarr(OUT, consolidated=False)):
      dims model, wave_in (2238), wave_lamost (3909), wave_out (574);
      coords teff, logg, feh ([M/H]), alpha ([alpha/M]) (model); wave_in, wave_lamost, wave_out;
      flux_in, flux_lamost, sed: float32, NaN for models not (yet) synthesized;
      ok (bool): model synthesized; seconds (float32): Synspec wall time of the model;
      attrs: command, versions, settings, machine, seconds_per_model, failures
      (JSON list: teff, logg, feh, alpha, reason), summary.
  stdout: ONE JSON line, the summary.
  stderr: the Dask dashboard address, a progress bar over models, messages.

exit status: 0 done (also when some models failed: see failed in the summary);
2 bad arguments or output location; 1 any other failure.

examples:
  python -m jobs.synthesize_grid --out lamost2csst/data/grid/part-000.zarr --teff 5000:6000 --logg 4.5 --feh 0 --alpha 0
  python -m jobs.synthesize_grid --out part-001.zarr --n-random 200 --seed 1 --workers 2
  python -m jobs.synthesize_grid --out part-002.zarr --feh=-1.5:-0.5 --alpha 0.4 --teff 6000:7000
  python -m jobs.synthesize_grid --out part-001.zarr --n-random 200 --seed 1 --workers 2 --resume
"""  # noqa: E501 - the first example is one command line


def build_parser() -> argparse.ArgumentParser:
    from lamost2csst.synth.synspec import DEFAULT_NFREQS, DEFAULT_STEP, step_text

    p = job_parser(PROG, DESCRIPTION, EPILOG)
    grid_ = p.add_argument_group("models")
    grid_.add_argument("--out", required=True, metavar="O.zarr", help="output Zarr store")
    grid_.add_argument("--teff", type=lambda t: parse_values(t, name="teff"), default="5000:9750:250",
                       metavar="SPEC", help="Teff (K): a:b[:step] or list (default %(default)s)")  # fmt: skip
    grid_.add_argument("--logg", type=lambda t: parse_values(t, name="logg"), default="2.0:5.0",
                       metavar="SPEC",
                       help="log g (cgs) (default %(default)s: every node between)")  # fmt: skip
    grid_.add_argument("--feh", type=lambda t: parse_values(t, name="feh"), default="-2.5:0.5",
                       metavar="SPEC",
                       help="[M/H] (default %(default)s: every node between; write a range that "
                       "starts with a minus sign as --feh=-1.5:0)")  # fmt: skip
    grid_.add_argument("--alpha", type=lambda t: parse_values(t, name="alpha"), default="0,0.4",
                       metavar="SPEC", help="[alpha/M] (default %(default)s)")  # fmt: skip
    grid_.add_argument("--n-random", type=positive_int, metavar="N", help="keep a random subset of N models")
    grid_.add_argument(
        "--seed", type=int, default=0, help="seed of --n-random and --part (default %(default)s)"
    )
    grid_.add_argument(
        "--part",
        type=parse_part,
        metavar="K/N",
        help="keep part K of N (K = 0..N-1) of the selected models, dealt at random (--seed): "
        "parts are disjoint and together make the whole selection, so a grid can be "
        "synthesized part by part across machines or sessions",
    )
    grid_.add_argument(
        "--skip-shipped",
        action="store_true",
        help="leave out models already in the grid shipped with the package (lamost2csst.load_grid())",
    )
    synth = p.add_argument_group("synthesis")
    synth.add_argument("--step", type=parse_step, default=step_text(DEFAULT_STEP), metavar="STEP",
                       help="Synspec SPACE, largest spacing of frequency points in A, or a schedule "
                       "upper:step[:nfreqs],...,step over air wavelength, one Synspec run per segment "
                       "(default %(default)s; see benchmarks/bench_synthesis.py)")  # fmt: skip
    synth.add_argument("--nfreqs", type=positive_int, default=DEFAULT_NFREQS, metavar="N",
                       help="Synspec NFREQS for segments that do not set their own: frequency points per "
                       "interval, across which the continuum is interpolated linearly (default %(default)s "
                       "= Synspec's own, 120)")  # fmt: skip
    synth.add_argument("--workdir", metavar="DIR", help="parent of the per-model temporary directories "
                       "(default: the system temp dir; use a local disk)")  # fmt: skip
    add_output_state_options(p, resume_help="finish an existing store made with the same models "
                             "and settings: models with a .done marker are skipped",
                             overwrite_help="remove an existing store of this schema first")  # fmt: skip
    cluster = p.add_argument_group("cluster")
    add_cluster_options(cluster, scheduler_help="attach to a running Dask scheduler", workers_default=1,
                        workers_help="LocalCluster worker processes, one Synspec run each "
                        "(default %(default)s, so that the machine stays usable)")  # fmt: skip
    add_dashboard_option(cluster)
    add_reporting_options(p.add_argument_group("reporting"))
    return p


def parse_args(argv=None) -> argparse.Namespace:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.command = f"{PROG} {shlex.join(argv)}"
    return args


def _selection(args) -> dict:
    """The model selection options of :func:`lamost2csst.parallel.synthesis.synthesize_grid`."""
    names = ("teff", "logg", "feh", "alpha", "n_random", "seed", "part", "skip_shipped")
    return {name: getattr(args, name) for name in names}


def select_models(args):
    """(grid rows selected, number of requested combinations that are not grid nodes)."""
    from lamost2csst.parallel.synthesis import select_grid_models

    return select_grid_models(**_selection(args))


def run(args: argparse.Namespace, client) -> dict:
    """Run the job on ``client``; print the summary as one JSON line on stdout and return it."""
    from lamost2csst.parallel.synthesis import synthesize_grid

    summary = synthesize_grid(
        client=client,
        out=args.out,
        **_selection(args),
        step=args.step,
        nfreqs=args.nfreqs,
        workdir=args.workdir,
        resume=args.resume,
        overwrite=args.overwrite,
        command=args.command,
        progress=not args.no_progress,
    )
    print(json.dumps(summary), flush=True)
    return summary


def _preflight(args) -> None:
    """Fail fast, before a cluster starts: an existing output, an empty selection."""
    check_output_location(args.out, resume=args.resume, overwrite=args.overwrite)
    select_models(args)


def main(argv=None) -> dict:
    """Command-line entry point: returns the summary; bad input exits with status 2."""
    args = parse_args(argv)
    return run_cli("synthesize_grid", args, run, preflight=_preflight, n_workers=args.workers)


if __name__ == "__main__":
    main()
