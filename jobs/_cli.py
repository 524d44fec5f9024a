"""What the job command lines share: argument types, options and the CLI frame :func:`run_cli`.

Kept free of heavy imports (numpy, dask, TensorFlow load only when a job runs): ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import errno
import sys


def positive_int(text: str) -> int:
    """argparse type of options that count things (workers, stars per chunk, models)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def float_list(text: str) -> tuple[float, ...]:
    """argparse type of comma-separated positive numbers (SNRs): ``"20,40"`` -> ``(20.0, 40.0)``."""
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if not values or min(values) <= 0:
        raise argparse.ArgumentTypeError(f"expected positive numbers, got {text!r}")
    return values


def log_chunks_to_stderr() -> None:
    """``--log-chunks``: the jobs' per-chunk JSON lines (logger ``lamost2csst.jobs``) on stderr."""
    import logging
    import sys

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("lamost2csst.jobs")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def check_output_location(out: str, *, resume: bool, overwrite: bool) -> None:
    """Preflight of a job's output: an existing store needs ``--resume`` or ``--overwrite``.

    Only the cheap existence check; the job itself refuses an output another live job
    writes (``lamost2csst.parallel.locking``) and removes nothing but its own schema.
    """
    from lamost2csst.errors import InputError
    from lamost2csst.io.storage import exists

    if exists(out) and not (resume or overwrite):
        raise InputError(
            f"output {out} already exists; pass --resume to finish it, --overwrite to "
            "replace it, or choose another --out"
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


def check_catalogue_args(parser, args) -> None:
    """``--out`` is required with ``--catalogue``; the demo's own default output is overwritten.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        The job's parser (for its usage error, exit status 2).
    args : argparse.Namespace
        The parsed command line; ``args.overwrite`` is set for the demo's default output.
    """
    if args.catalogue is not None and args.out is None:
        parser.error("--out is required with --catalogue")
    if args.catalogue is None and args.out is None and not args.resume:
        args.overwrite = True  # the default demo output is the job's own: rerunning replaces it


def run_cli(
    prog: str,
    args,
    run,
    *,
    client: bool = True,
    preflight=None,
    n_workers=None,
    threads_per_worker: int = 1,
    gpus: bool = False,
    user_errors: tuple = (),
):
    """Run a job's ``run`` as a command line and return its summary.

    With ``client=True``, ``run(args, client)`` runs on a Dask client
    (:func:`lamost2csst.parallel.runtime.dask_client`: ``args.scheduler`` or a local cluster of
    ``n_workers``), the dashboard link is printed and ``args.performance_report`` honoured; with
    ``client=False``, ``run(args)`` runs in this process. ``preflight(args)`` runs first (cheap
    checks: a bad input fails before a cluster starts).

    The user's mistakes (:class:`lamost2csst.errors.InputError` and ``user_errors``) become
    ``python -m jobs.<prog>: error: ...`` on stderr and exit status 2; a full disk or quota
    (ENOSPC/EDQUOT, also from a worker) one line and exit status 1. Anything else propagates
    with its traceback.
    """
    from lamost2csst.errors import InputError

    try:
        if preflight is not None:
            preflight(args)
        if not client:
            return run(args)
        return _run_on_client(
            prog, args, run, n_workers=n_workers, threads_per_worker=threads_per_worker, gpus=gpus
        )
    except (InputError, *user_errors) as err:
        print(f"python -m jobs.{prog}: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    except OSError as err:
        if err.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        # A full disk (or quota) is not a bug: say so in one line, with where and what to do.
        where = f" ({err.filename})" if err.filename else ""
        again = "; chunks already finished are kept: rerun with --resume" if hasattr(args, "resume") else ""
        print(
            f"python -m jobs.{prog}: error: {err.strerror or 'no space left'}{where}: free space or write "
            f"the output elsewhere{again}",
            file=sys.stderr,
        )
        raise SystemExit(1) from None


def _run_on_client(prog: str, args, run, *, n_workers, threads_per_worker: int, gpus: bool):
    """``run(args, client)`` on the Dask client ``args`` asks for, with the dashboard link and report."""
    from lamost2csst.parallel.runtime import dask_client

    with dask_client(
        scheduler=getattr(args, "scheduler", None),
        n_workers=n_workers,
        threads_per_worker=threads_per_worker,
        gpus=gpus,
        dashboard_address=getattr(args, "dashboard_address", None) or "127.0.0.1:0",
    ) as dask:
        print(f"[{prog}] Dask dashboard: {dask.dashboard_link}", file=sys.stderr, flush=True)
        report = getattr(args, "performance_report", None)
        if not report:
            return run(args, dask)
        from distributed import performance_report

        with performance_report(filename=report):
            summary = run(args, dask)
        print(f"[{prog}] performance report: {report}", file=sys.stderr, flush=True)
        return summary
