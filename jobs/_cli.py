"""Argument types shared by the job command lines (kept free of heavy imports: --help stays fast)."""

from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    """argparse type of options that count things (workers, stars per chunk, models)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


class UsageError(Exception):
    """Bad input of a job that is the user's to fix (reported as ``prog: error: ...``, exit 2)."""


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
    from lamost2csst.parallel import JobInputError
    from lamost2csst.parallel.storage import exists

    if exists(out) and not (resume or overwrite):
        raise JobInputError(f"output {out} already exists; pass --resume to finish it, --overwrite to replace it, "
                            "or choose another --out")


def add_dashboard_option(group) -> None:
    """``--dashboard-address``: where a local cluster's dashboard listens (default: this machine only)."""
    group.add_argument("--dashboard-address", metavar="HOST:PORT", default="127.0.0.1:0",
                       help="dashboard of the local cluster (default 127.0.0.1 on a free port: not reachable from "
                            "other machines; e.g. 0.0.0.0:8787 to expose it, behind your own firewall)")
