"""A real distributed run: `dask scheduler` + `dask worker` processes started with the CLIs users
use; the jobs attach with --scheduler and give the same outputs as a LocalCluster run."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from distributed import Client

from lamost2csst.io import write_spectra
from lamost2csst.io.observations import simulate_observations, write_observations
from lamost2csst.io.simulated import grid_catalogue

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
BIN = Path(sys.executable).parent


def _start(args, tmp_path, name):
    log = open(tmp_path / f"{name}.log", "w")
    return subprocess.Popen(
        args, cwd=tmp_path, env=ENV, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )


@pytest.fixture(scope="module")
def scheduler(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cluster")
    file = tmp / "scheduler.json"
    procs = [
        _start(
            [
                str(BIN / "dask"),
                "scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--dashboard-address",
                ":0",
                "--scheduler-file",
                str(file),
            ],
            tmp,
            "scheduler",
        )
    ]
    try:
        deadline = time.time() + 60
        while not file.exists() and time.time() < deadline:
            time.sleep(0.2)
        assert file.exists(), (tmp / "scheduler.log").read_text()
        procs.append(
            _start(
                [
                    str(BIN / "dask"),
                    "worker",
                    "--scheduler-file",
                    str(file),
                    "--nworkers",
                    "2",
                    "--nthreads",
                    "1",
                    "--no-dashboard",
                    "--local-directory",
                    str(tmp),
                ],
                tmp,
                "workers",
            )
        )
        with Client(scheduler_file=str(file), timeout=30) as client:
            client.wait_for_workers(2, timeout=90)
            address = client.scheduler.address
            assert len(client.scheduler_info()["workers"]) == 2
        yield address
    finally:
        for proc in reversed(procs):
            os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


def _job(module, *args, cwd):
    out = subprocess.run(
        [sys.executable, "-m", f"jobs.{module}", *map(str, args), "--no-progress"],
        cwd=cwd,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out


def test_predict_and_flatcube_on_a_two_process_cluster_equal_a_local_run(scheduler, tmp_path):
    demo = grid_catalogue(400, seed=12)
    write_spectra(demo, tmp_path / "cat.zarr", chunk_stars=100)
    _job(
        "predict_catalogue",
        "--catalogue",
        tmp_path / "cat.zarr",
        "--out",
        tmp_path / "remote.zarr",
        "--scheduler",
        scheduler,
        cwd=tmp_path,
    )
    _job(
        "predict_catalogue",
        "--catalogue",
        tmp_path / "cat.zarr",
        "--out",
        tmp_path / "local.zarr",
        "--workers",
        "2",
        cwd=tmp_path,
    )
    remote, local = (xr.open_zarr(tmp_path / f"{n}.zarr", consolidated=False) for n in ("remote", "local"))
    np.testing.assert_allclose(remote.sed.values, local.sed.values, rtol=2e-5, equal_nan=True)
    np.testing.assert_array_equal(remote.flags.values, local.flags.values)

    obs, truth = simulate_observations(demo.sed_true.values, demo.obsid.values, n_exposures=2, seed=1)
    write_observations(obs, tmp_path / "obs.zarr", truth=truth, chunk_obs=500)
    for name, where in (("cube-remote", ["--scheduler", scheduler]), ("cube-local", ["--workers", "2"])):
        _job(
            "build_flatcube",
            "--observations",
            tmp_path / "obs.zarr",
            "--predictions",
            tmp_path / "remote.zarr",
            "--out",
            tmp_path / f"{name}.zarr",
            "--min-stars",
            "10",
            *where,
            cwd=tmp_path,
        )
    a, b = (xr.open_zarr(tmp_path / f"{n}.zarr", consolidated=False) for n in ("cube-remote", "cube-local"))
    np.testing.assert_array_equal(a.fit.values, b.fit.values)
    assert a.fit.values.any()
    np.testing.assert_allclose(a.coeffs.values, b.coeffs.values, rtol=1e-9, equal_nan=True)
