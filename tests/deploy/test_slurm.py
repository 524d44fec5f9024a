"""deploy/slurm/ end to end on a real one-node SLURM cluster (tests/deploy/conftest.py).

The sbatch script, dask-jobqueue's ``SLURMCluster`` configured by ``jobqueue.yaml``, and
``scancel`` followed by the same ``sbatch`` command (the script then adds ``--resume``) each give
predictions identical, bit for bit, to a LocalCluster run of the same catalogue: every chunk is
computed by the same code with one TensorFlow thread and the same batches on this machine's CPU.
The measured times are printed (``pytest -s``) for docs/operations.md.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import yaml
from local_slurm import processes_of, slurm_missing, start_slurm, stop_slurm

from lamost2csst.io import write_spectra
from lamost2csst.io.simulated import grid_catalogue

REPO = Path(__file__).resolve().parents[2]
SLURM_DIR = REPO / "deploy" / "slurm"
SBATCH = SLURM_DIR / "predict_catalogue.sbatch"
N_STAR, CHUNK = 600, 20
N_CHUNK = N_STAR // CHUNK
# one forward pass per chunk in every run; the workers' warm-up pass (TensorFlowSetup) is then small too
JOB_OPTIONS = ("--batch-size", str(CHUNK))
WORKERS = min(2, os.cpu_count() or 1)  # CPU workers (1 thread each) per SLURM job
# the script asks for 4 GPUs, 32 cores and 128 GB: a CPU node of this size says so on the command line
# (sbatch's options override the script's #SBATCH lines); --time bounds a job that hangs
SBATCH_OPTIONS = ("--gres=none", "--mem=0", f"--cpus-per-task={WORKERS}", "--time=10")
VARIABLES = ("sed", "sigma", "sigma_net", "sigma_sys", "flags")
JOB_TIMEOUT = 300  # s; a job takes ~20-60 s here


def _report(message: str) -> None:
    print(f"\n[slurm timing] {message}", file=sys.stderr)


@pytest.fixture(scope="module")
def catalogue(slurm, tmp_path_factory):
    """A small demo catalogue (600 stars in 30 chunks), on the file system the jobs see."""
    path = tmp_path_factory.mktemp("slurm-data") / "catalogue.zarr"
    write_spectra(grid_catalogue(N_STAR, seed=11), path, chunk_stars=CHUNK)
    return path


@pytest.fixture(scope="module")
def reference(catalogue):
    """The LocalCluster run as a user types it: one worker process with one thread, like the SLURM workers."""
    out = catalogue.parent / "reference.zarr"
    t0 = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "jobs.predict_catalogue", "--catalogue", str(catalogue), "--out", str(out)]
        + ["--workers", "1", "--threads-per-worker", "1", "--no-progress", *JOB_OPTIONS],
        cwd=catalogue.parent,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    _report(f"LocalCluster reference run: {time.perf_counter() - t0:.1f} s")
    return xr.open_zarr(out, consolidated=False).load()


def _assert_same_predictions(out: Path, reference: xr.Dataset) -> None:
    ds = xr.open_zarr(out, consolidated=False)
    np.testing.assert_array_equal(ds.obsid.values, reference.obsid.values)
    for name in VARIABLES:
        np.testing.assert_array_equal(ds[name].values, reference[name].values, err_msg=name)


def _summary(log: str) -> dict | None:
    """The job's summary: the JSON line of predict_catalogue in the job's log (None if there is none)."""
    for line in log.splitlines():
        if line.startswith('{"job": "predict_catalogue"'):
            return json.loads(line)
    return None


def _chunks_done(log: str) -> list[int]:
    """The chunk indices of the ``--log-chunks`` lines of a job's log."""
    return [
        json.loads(line)["index"] for line in log.splitlines() if line.startswith('{"event": "chunk_done"')
    ]


def _run_job(slurm, cwd: Path, *arguments) -> tuple[str, str, dict | None]:
    """``sbatch [SBATCH_OPTIONS] predict_catalogue.sbatch ARGUMENTS`` from ``cwd``: (job, state, log)."""
    job = slurm.sbatch(*SBATCH_OPTIONS, SBATCH, *arguments, cwd=cwd, LAMOST2CSST_VENV=sys.prefix)
    state = slurm.wait(job, timeout=JOB_TIMEOUT)
    return job, state, (cwd / f"lamost2csst-{job}.log").read_text()


def test_sbatch_script_predicts_like_a_local_cluster(slurm, catalogue, reference, tmp_path):
    out = tmp_path / "predictions.zarr"
    t0 = time.perf_counter()
    job, state, log = _run_job(slurm, tmp_path, catalogue, out, *JOB_OPTIONS)
    seconds = time.perf_counter() - t0
    assert state == "COMPLETED", log[-3000:]
    summary = _summary(log)
    assert summary is not None, log[-3000:]
    assert summary["stars_written"] == N_STAR and summary["chunks_done"] == N_CHUNK
    assert summary["out"] == str(out)
    # the job's own scheduler and CPU workers, started by the script under SLURM
    started = _log_times(log, "Scheduler at:")
    registered = _log_times(log, "Register worker")
    assert len(started) == 1 and len(registered) == WORKERS, log[-3000:]
    assert (tmp_path / f"dask-{job}" / "performance.html").exists()
    _assert_same_predictions(out, reference)
    times = slurm.times(job)
    submitted = datetime.fromisoformat(times["SubmitTime"])
    queued = (datetime.fromisoformat(times["StartTime"]) - submitted).total_seconds()
    _report(
        f"cluster start {slurm.start_seconds:.1f} s; sbatch job {seconds:.1f} s from submission to the end; "
        f"after submission: job started {queued:.0f} s, "
        f"scheduler up {(started[0] - submitted).total_seconds():.1f} s, {WORKERS} workers registered "
        f"{(registered[-1] - submitted).total_seconds():.1f} s; job's seconds_setup (workers, TensorFlow, "
        f"model) {summary['seconds_setup']:.1f} s; tasks {summary['seconds_tasks']:.1f} s"
    )


def _log_times(log: str, words: str) -> list[datetime]:
    """The times of Dask's log lines containing ``words`` (``2026-12-07 19:54:32,514 - ...``)."""
    lines = [line for line in log.splitlines() if words in line]
    return [datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f") for line in lines]


def test_dask_jobqueue_cluster_predicts_like_a_local_cluster(
    slurm, catalogue, reference, tmp_path, monkeypatch
):
    """SLURMCluster with deploy/slurm/jobqueue.yaml; the keywords are what a site changes."""
    dask = pytest.importorskip("dask")
    dask_jobqueue = pytest.importorskip("dask_jobqueue")
    from distributed import Client

    from lamost2csst import predict_catalogue

    monkeypatch.setenv("SLURM_CONF", str(slurm.conf))  # for the sbatch/scancel that dask-jobqueue runs
    monkeypatch.setenv("PATH", slurm.env()["PATH"])
    ours = yaml.safe_load((SLURM_DIR / "jobqueue.yaml").read_text())["jobqueue"]
    node_mb = int(slurm.run("sinfo", "--noheader", "--format=%m").split()[0].rstrip("+"))
    out = tmp_path / "predictions.zarr"
    # the configuration must be in effect while the cluster makes its jobs (scale), not only at its start
    with dask.config.set({"jobqueue": dask.config.merge(dask.config.get("jobqueue"), ours)}):
        cluster = dask_jobqueue.SLURMCluster(
            queue="debug",  # the local cluster's partition (jobqueue.yaml: "cpu")
            cores=WORKERS,
            processes=WORKERS,
            memory=f"{min(node_mb // 2, 8000)}MB",
            job_script_prologue=[f"source {sys.prefix}/bin/activate", "export TF_CPP_MIN_LOG_LEVEL=2"],
            log_directory=str(tmp_path / "logs"),
            scheduler_options={"dashboard_address": ":0"},
        )
        script = cluster.job_script()
        assert "#SBATCH -J lamost2csst-worker" in script and "--local-directory ${TMPDIR:-/tmp}" in script
        with cluster, Client(cluster) as client:
            t0 = time.perf_counter()
            cluster.scale(WORKERS)  # one SLURM job of WORKERS worker processes
            client.wait_for_workers(WORKERS, timeout=JOB_TIMEOUT)
            startup = time.perf_counter() - t0
            summary = predict_catalogue(catalogue, out, client=client, progress=False, batch_size=CHUNK)
            seconds = time.perf_counter() - t0
    assert summary["stars_written"] == N_STAR and summary["chunks_done"] == N_CHUNK
    _assert_same_predictions(out, reference)
    _report(
        f"dask-jobqueue: scale({WORKERS}) -> workers connected {startup:.1f} s; run done {seconds:.1f} s "
        f"(seconds_setup, model load: {summary['seconds_setup']:.1f} s)"
    )


def _markers(out: Path) -> dict[int, bytes]:
    """The resume markers of an output by chunk index (``.markers/chunk-<index>.done``): their bytes."""
    return {int(p.name[6:-5]): p.read_bytes() for p in (out / ".markers").glob("chunk-*.done")}


def test_scancel_then_the_same_command_resumes(slurm, catalogue, reference, tmp_path):
    """scancel mid-run; the same sbatch command resumes: every chunk once, the output as uninterrupted."""
    out = tmp_path / "predictions.zarr"
    arguments = (catalogue, out, *JOB_OPTIONS, "--log-chunks")
    first = slurm.sbatch(*SBATCH_OPTIONS, SBATCH, *arguments, cwd=tmp_path, LAMOST2CSST_VENV=sys.prefix)
    deadline = time.monotonic() + JOB_TIMEOUT
    while time.monotonic() < deadline and len(list(out.glob(".markers/chunk-*.done"))) < 3:
        assert slurm.run("squeue", "--noheader", "--jobs", first).strip(), "the job ended before the scancel"
        time.sleep(0.02)
    slurm.run("scancel", first)
    assert slurm.wait(first, timeout=60) == "CANCELLED"
    first_log = (tmp_path / f"lamost2csst-{first}.log").read_text()
    assert _summary(first_log) is None  # cancelled before its end
    killed = _markers(out)
    assert 3 <= len(killed) < N_CHUNK, f"the scancel came at {len(killed)} of {N_CHUNK} chunks"
    assert set(_chunks_done(first_log)) <= set(killed)  # a chunk is logged after its marker is written

    second, state, log = _run_job(slurm, tmp_path, *arguments)
    assert state == "COMPLETED", log[-3000:]
    summary = _summary(log)
    assert summary["chunks_skipped"] == len(killed) and summary["chunks_done"] == N_CHUNK - len(killed)
    redone = _chunks_done(log)  # every chunk without a marker, once; none of those with one
    assert sorted(redone) == sorted(set(range(N_CHUNK)) - set(killed))
    after = _markers(out)
    # the markers of the cancelled job are untouched (a marker holds its pid and finish time)
    assert sorted(after) == list(range(N_CHUNK)) and {i: after[i] for i in killed} == killed
    _assert_same_predictions(out, reference)
    _report(f"scancel after {len(killed)} of {N_CHUNK} chunks; the resumed job did {len(redone)}")


def test_stopping_the_cluster_leaves_nothing_running(tmp_path):
    """A second cluster with a running job: the recipe's stop ends the job and every daemon, by pid."""
    reason = slurm_missing()
    if reason:
        pytest.skip(reason)
    cluster = start_slurm(tmp_path / "cluster")
    try:
        job = cluster.sbatch("--gres=none", "--mem=0", "--wrap", "sleep 600", cwd=tmp_path)
        deadline = time.monotonic() + 60
        running = processes_of(cluster)
        while not any("sleep 600" in command for command in running.values()):
            assert time.monotonic() < deadline, f"job {job} is {cluster.state(job)} after 60 s: {running}"
            time.sleep(0.1)
            running = processes_of(cluster)
        assert set(cluster.pids.values()) <= set(running)  # the daemons carry the cluster's SLURM_CONF
    finally:
        left = stop_slurm(cluster)
    assert left == {}
    assert processes_of(cluster) == {}
