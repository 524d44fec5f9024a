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
