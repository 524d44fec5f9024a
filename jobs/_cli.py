"""What the job command lines share: argument types, checks and the CLI frame :func:`run_cli`.

The option groups the jobs share are in :mod:`jobs._options`.

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


def positive_float(text: str) -> float:
    """argparse type of options that must be positive numbers (learning rate, minutes)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value}")
    return value


def non_negative_float(text: str) -> float:
    """argparse type of options that must be numbers >= 0 (e.g. a replay fraction)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {value}")
    return value


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


def run_catalogue_job(
    args, client, process, *, demo, demo_catalogue: str, demo_out: str, preflight, log, options=dict
) -> dict:
    """A catalogue job's ``run``: preflight, the demo catalogue if none is given, ``process``, summary.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed command line (``catalogue``, ``out``, ``n_demo``, ``chunk_stars``, ``resume``,
        ``overwrite``, ``no_progress``).
    client : distributed.Client
        Where the tasks run.
    process : callable
        The library's pipeline, ``process(catalogue, out, *, client, chunk_stars, resume,
        overwrite, progress, **options())``.
    demo : callable
        ``demo(demo_catalogue, n_demo, client, progress=...)`` builds (or reuses) the demo
        catalogue and returns its path.
    demo_catalogue, demo_out : str
        The demo's catalogue and default output.
    preflight : callable
        ``preflight(args)``: the job's cheap checks (bad input raises).
    log : callable
        ``log(message)``: the job's messages on stderr.
    options : callable
        ``options()``: the job's further keyword arguments of ``process``, made right before it runs.

    Returns
    -------
    dict
        The summary, also printed as one JSON line on stdout.
    """
    import json

    catalogue, out = args.catalogue, args.out if args.out is not None else demo_out
    preflight(args)
    if catalogue is None:
        catalogue = demo(demo_catalogue, args.n_demo, client, progress=not args.no_progress)
    log(f"{catalogue} -> {out}")
    summary = process(
        catalogue,
        out,
        client=client,
        chunk_stars=args.chunk_stars,
        resume=args.resume,
        overwrite=args.overwrite,
        progress=not args.no_progress,
        **options(),
    )
    print(json.dumps(summary), flush=True)
    return summary


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
    checks: a bad input fails before a cluster starts). With ``args.log_chunks``, the per-chunk
    JSON lines go to stderr (:func:`log_chunks_to_stderr`, before any worker starts).

    The user's mistakes (:class:`lamost2csst.errors.InputError` and ``user_errors``) become
    ``python -m jobs.<prog>: error: ...`` on stderr and exit status 2; a full disk or quota
    (ENOSPC/EDQUOT, also from a worker) one line and exit status 1. Anything else propagates
    with its traceback.
    """
    from lamost2csst.errors import InputError

    if getattr(args, "log_chunks", False):
        log_chunks_to_stderr()  # workers inherit it: no TensorFlow banner per worker
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
