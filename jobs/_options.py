"""The option groups the jobs' command lines share (Dask cluster, output state, reporting, catalogue).

Kept free of heavy imports, as :mod:`jobs._cli`: ``--help`` stays fast.
"""

from __future__ import annotations

import argparse

from jobs._cli import positive_int


def job_parser(prog: str, description: str, epilog: str) -> argparse.ArgumentParser:
    """A job's parser: its ``description`` and ``epilog`` printed as written (raw)."""
    return argparse.ArgumentParser(
        prog=prog,
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def add_dashboard_option(group) -> None:
    """``--dashboard-address``: where a local cluster's dashboard listens (default: this machine only)."""
    group.add_argument(
        "--dashboard-address",
        metavar="HOST:PORT",
        default="127.0.0.1:0",
        help="dashboard of the local cluster (default 127.0.0.1 on a free port: not reachable "
        "from other machines; e.g. 0.0.0.0:8787 to expose it, behind your own firewall)",
    )


def add_cluster_options(group, *, scheduler_help: str, workers_help: str, workers_default=None):
    """``--scheduler ADDRESS`` or ``--workers N`` (one of them) on ``group``.

    Parameters
    ----------
    group : argparse.ArgumentParser or argument group
        Where the options go.
    scheduler_help, workers_help : str
        The job's help texts of ``--scheduler`` and ``--workers``.
    workers_default : int, optional
        Default of ``--workers`` (None: the number of CPU cores).

    Returns
    -------
    argparse mutually exclusive group
        The group of the two options, for a job's further alternatives (``--gpus``).
    """
    where = group.add_mutually_exclusive_group()
    where.add_argument("--scheduler", metavar="ADDRESS", help=scheduler_help)
    where.add_argument(
        "--workers", type=positive_int, default=workers_default, metavar="N", help=workers_help
    )
    return where


def add_output_state_options(parser, *, resume_help: str, overwrite_help: str) -> None:
    """``--resume`` or ``--overwrite`` (one of them): what to do with an existing output.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        Where the options go.
    resume_help, overwrite_help : str
        The job's help texts of the two options.
    """
    state = parser.add_mutually_exclusive_group()
    state.add_argument("--resume", action="store_true", help=resume_help)
    state.add_argument("--overwrite", action="store_true", help=overwrite_help)


def add_reporting_options(
    group,
    *,
    report_help: str = "write a Dask performance report (HTML)",
    progress_help: str = "no progress bar",
    log_chunks: bool = False,
) -> None:
    """``--performance-report FILE``, ``--no-progress`` and, with ``log_chunks``, ``--log-chunks``.

    Parameters
    ----------
    group : argparse.ArgumentParser or argument group
        Where the options go.
    report_help, progress_help : str
        Help texts of ``--performance-report`` and ``--no-progress``.
    log_chunks : bool
        Also ``--log-chunks`` (see :func:`log_chunks_to_stderr`).
    """
    group.add_argument("--performance-report", metavar="FILE", help=report_help)
    group.add_argument("--no-progress", action="store_true", help=progress_help)
    if log_chunks:
        group.add_argument(
            "--log-chunks",
            action="store_true",
            help="one JSON line per chunk done or failed on stderr (for log collectors)",
        )


def add_catalogue_options(group, *, demo_catalogue: str, demo_out: str, out_metavar: str) -> None:
    """``--catalogue C.zarr`` and ``--out``: a catalogue job's input and output (default: the demo's).

    Parameters
    ----------
    group : argparse argument group
        Where the options go.
    demo_catalogue, demo_out : str
        The demo's catalogue and output, used without ``--catalogue`` / ``--out``.
    out_metavar : str
        Metavar of ``--out``.
    """
    group.add_argument(
        "--catalogue",
        metavar="C.zarr",
        help="input spectra catalogue (schema lamost2csst.spectra/1); default: build/reuse the demo "
        f"catalogue {demo_catalogue}",
    )
    group.add_argument(
        "--out",
        metavar=out_metavar,
        help=f"output store (must not exist unless --resume/--overwrite); default {demo_out} for the demo, "
        "required with --catalogue",
    )


def add_demo_chunk_options(group, *, n_demo: int, n_demo_help: str, chunk_note: str = "") -> None:
    """``--n-demo N`` (stars of the demo catalogue) and ``--chunk-stars N`` of a catalogue job.

    Parameters
    ----------
    group : argparse argument group
        Where the options go.
    n_demo : int
        Default of ``--n-demo``.
    n_demo_help : str
        Help text of ``--n-demo``.
    chunk_note : str
        Appended to the help text of ``--chunk-stars``.
    """
    group.add_argument("--n-demo", type=positive_int, default=n_demo, metavar="N", help=n_demo_help)
    group.add_argument(
        "--chunk-stars",
        type=positive_int,
        metavar="N",
        help="stars per output chunk = per task; default: the input's chunk size (on --resume: "
        "the existing output's)" + chunk_note,
    )


def parse_catalogue_args(parser, argv=None) -> argparse.Namespace:
    """A catalogue job's ``argv`` parsed: ``--out`` required with ``--catalogue``, the demo's replaced.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        The job's parser (its usage error exits with status 2).
    argv : list of str, optional
        The arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    argparse.Namespace
        The parsed command line; ``overwrite`` is set for the demo's default output.
    """
    args = parser.parse_args(argv)
    if args.catalogue is not None and args.out is None:
        parser.error("--out is required with --catalogue")
    if args.catalogue is None and args.out is None and not args.resume:
        args.overwrite = True  # the default demo output is the job's own: rerunning replaces it
    return args


def add_trouble_option(group) -> None:
    """``--lamost-trouble``: how the catalogue jobs treat LAMOST's trouble spots (one definition)."""
    group.add_argument(
        "--lamost-trouble",
        choices=("mask", "inflate", "keep"),
        default="mask",
        help="LAMOST's trouble spots, observed frame, before the rest-frame shift: sky-line residuals "
        "(5578.9, 5891.6, 5897.6, 6302.0, 6365.5 A vacuum, +-4 A) and the blue/red arm junction "
        "(5700-5900 A): mask them (default), inflate their errors x10 (changes sigma only), or keep "
        "them (as before this option); see docs/operations.md 'LAMOST trouble spots'",
    )
