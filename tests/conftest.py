"""Fixtures shared by the whole test tree, and the hypothesis profiles."""

import os

import pytest
from hypothesis import settings

# CI runs the property tests on a fixed sequence of examples (a red CI must be reproducible);
# HYPOTHESIS_PROFILE=explore draws fresh examples on every run, to look for new failures.
settings.register_profile("default", derandomize=True)
settings.register_profile("explore", derandomize=False, max_examples=1000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture(scope="module")
def client():
    """An in-process Dask cluster (one worker, two threads) for the jobs' ``run(args, client)``.

    Module-scoped: starting a cluster costs ~1 s, and the jobs leave nothing behind on it.
    """
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=":0") as cluster:
        with Client(cluster) as c:
            yield c
