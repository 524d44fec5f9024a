"""Fixtures shared by the whole test tree."""

import pytest


@pytest.fixture(scope="module")
def client():
    """An in-process Dask cluster (one worker, two threads) for the jobs' ``run(args, client)``.

    Module-scoped: starting a cluster costs ~1 s, and the jobs leave nothing behind on it.
    """
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=":0") as cluster:
        with Client(cluster) as c:
            yield c
