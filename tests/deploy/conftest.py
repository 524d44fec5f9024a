"""The session's one-node SLURM cluster (tests/deploy/local_slurm.py, deploy/slurm/local_cluster.sh)."""

import time

import pytest
from local_slurm import slurm_missing, start_slurm, stop_slurm


@pytest.fixture(scope="session")
def slurm(tmp_path_factory):
    """A one-node SLURM cluster for the whole session (skipped with the reason where there is none)."""
    reason = slurm_missing()
    if reason:
        pytest.skip(reason)
    t0 = time.perf_counter()
    cluster = start_slurm(tmp_path_factory.mktemp("slurm"))
    cluster.start_seconds = time.perf_counter() - t0
    try:
        yield cluster
    finally:
        left = stop_slurm(cluster)
    assert not left, f"left running after the SLURM tests (now killed): {left}"
