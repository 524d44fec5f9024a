"""Fault injection on a real LocalCluster of worker processes.

* a worker process SIGKILLed in the middle of predict_catalogue / build_flatcube: the
  nanny restarts it, Dask reruns what was lost, and the output equals an undisturbed run;
* the build_flatcube job process itself SIGKILLed: ``--resume`` computes only the chunks
  whose normal equations were not saved, and the cube equals an undisturbed run.

(The same for predict_catalogue's own process is tests/jobs/test_predict_catalogue.py.)
"""

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from distributed import Client, LocalCluster

from jobs import build_flatcube as flatcube_job
from lamost2csst.io import write_spectra
from lamost2csst.io.observations import simulate_observations, write_observations
from lamost2csst.io.simulated import grid_catalogue
from lamost2csst.parallel.flatcube import build_flatcube
from lamost2csst.parallel.predict import predict_catalogue

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def processes(client):
    """Two single-threaded worker processes under nannies (a killed worker is restarted).

    Depends on ``client`` so that it closes first (Dask clients must close in reverse order
    of opening, or the default-scheduler config they restore is left pointing at a closed one).
    """
    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


def _count(folder: Path, pattern: str) -> int:
    return len(list(folder.glob(pattern))) if folder.exists() else 0


def _run_and_kill_a_worker(client, job, *, ready, timeout=240):
    """Run ``job()`` in a thread; once ``ready()`` SIGKILL one worker process; return (result, killed pid)."""
    result, errors = [], []
    thread = threading.Thread(target=lambda: _capture(job, result, errors))
    thread.start()
    deadline = time.time() + timeout
    while not ready() and thread.is_alive() and time.time() < deadline:
        time.sleep(0.005)
    assert thread.is_alive(), "the job ended before the worker could be killed: make it longer"
    pids = client.run(os.getpid)
    victim = pids[sorted(pids)[0]]
    os.kill(victim, signal.SIGKILL)
    thread.join(timeout)
    assert not errors, errors
    return result[0], victim, pids


def _capture(job, result, errors):
    try:
        result.append(job())
    except Exception as err:  # noqa: BLE001 - reported by the test
        errors.append(err)


def _workers_back(client, n=2, timeout=60):
    client.wait_for_workers(n, timeout=timeout)
    return client.run(os.getpid)


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory):
    path = tmp_path_factory.mktemp("faults") / "cat.zarr"
    write_spectra(grid_catalogue(8000, seed=21), path, chunk_stars=80)  # 100 chunks
    return path


def test_predict_catalogue_survives_a_killed_worker(processes, catalogue, tmp_path):
    reference = tmp_path / "reference.zarr"
    predict_catalogue(catalogue, reference, client=processes, progress=False)
    out = tmp_path / "disturbed.zarr"
    summary, victim, before = _run_and_kill_a_worker(
        processes,
        lambda: predict_catalogue(catalogue, out, client=processes, progress=False),
        ready=lambda: _count(out / ".markers", "chunk-*.done") >= 5,
    )
    assert summary["stars_in"] == 8000 and summary["chunks_done"] == summary["chunks_total"] == 100
    after = _workers_back(processes)
    assert victim not in after.values()  # the killed process is gone, its replacement works
    a, b = xr.open_zarr(out, consolidated=False), xr.open_zarr(reference, consolidated=False)
    np.testing.assert_array_equal(a.obsid.values, b.obsid.values)
    for name in ("sed", "sigma", "flags"):
        np.testing.assert_array_equal(a[name].values, b[name].values)


@pytest.fixture(scope="module")
def flat_inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("flat")
    cat = grid_catalogue(1200, seed=22)
    sed, obsid = cat.sed_true.values, cat.obsid.values
    obs, truth = simulate_observations(sed, obsid, n_exposures=3, seed=23)
    write_observations(obs, root / "obs.zarr", truth=truth, chunk_obs=60)
    pred = xr.Dataset(
        {
            "sed": (("star", "wave_out"), sed.astype(np.float32)),
            "sigma": (("star", "wave_out"), np.full(sed.shape, 0.01, np.float32)),
            "flags": (("star",), np.zeros(len(obsid), np.uint16)),
        },
        coords={"obsid": ("star", obsid), "wave_out": ("wave_out", cat.wave_out.values)},
        attrs={"schema": "lamost2csst.predictions/2"},
    )
    pred.to_zarr(root / "pred.zarr", zarr_format=3, consolidated=False)
    return root / "obs.zarr", root / "pred.zarr", obs.sizes["obs"]


def test_build_flatcube_survives_a_killed_worker(processes, flat_inputs, tmp_path):
    obs, pred, _ = flat_inputs
    build_flatcube(obs, pred, tmp_path / "reference.zarr", client=processes, progress=False)
    out = tmp_path / "disturbed.zarr"
    summary, _, _ = _run_and_kill_a_worker(
        processes,
        lambda: build_flatcube(obs, pred, out, client=processes, progress=False),
        ready=lambda: _count(out / ".work" / "iter-0", "chunk-*.npz") >= 3,
    )
    _workers_back(processes)
    a, b = (
        xr.open_zarr(out, consolidated=False),
        xr.open_zarr(tmp_path / "reference.zarr", consolidated=False),
    )
    for name in ("coeffs", "covariance", "n_obs", "flat"):
        np.testing.assert_array_equal(a[name].values, b[name].values)
    assert summary["observations_used"] == a.attrs["summary"]["observations_used"]


def test_killed_build_flatcube_resumes_to_the_undisturbed_cube(client, flat_inputs, tmp_path):
    obs, pred, n_obs = flat_inputs
    n_chunks = -(-n_obs // 60)
    base = ["--observations", str(obs), "--predictions", str(pred), "--no-progress"]
    reference = tmp_path / "reference.zarr"
    flatcube_job.run(flatcube_job.parse_args([*base, "--out", str(reference)]), client)

    out = tmp_path / "killed.zarr"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "jobs.build_flatcube", *base, "--out", str(out), "--workers", "1"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.time() + 240
        while (
            _count(out / ".work" / "iter-0", "chunk-*.npz") < 5
            and proc.poll() is None
            and time.time() < deadline
        ):
            time.sleep(0.005)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    saved_at_kill = _count(out / ".work" / "iter-0", "chunk-*.npz")
    assert 5 <= saved_at_kill < n_chunks, f"the kill came at {saved_at_kill} of {n_chunks} chunks"
    assert (tmp_path / "killed.zarr.lock").exists()  # the dead job's lock is left behind ...

    flatcube_job.run(flatcube_job.parse_args([*base, "--out", str(out), "--resume"]), client)
    assert not (tmp_path / "killed.zarr.lock").exists()  # ... and taken over by the resumed job
    a, b = xr.open_zarr(out, consolidated=False), xr.open_zarr(reference, consolidated=False)
    for name in ("coeffs", "covariance", "n_obs", "flat"):
        np.testing.assert_array_equal(a[name].values, b[name].values)
