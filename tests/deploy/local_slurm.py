"""A real one-node SLURM cluster for the deploy tests: deploy/slurm/local_cluster.sh, the recipe a
user reads, started and stopped (by its pid files) from Python; tests/deploy/conftest.py holds the
session fixture ``slurm``.

Where Debian's ``slurm-wlm`` and ``munge`` are not installed (``.ci/run`` installs them), or the
tests do not run as root (slurmd starts the jobs as their users), the SLURM tests are skipped with
that reason. The fixture installs nothing. Nothing may be left running afterwards: the daemons'
pids and every process started under the cluster (its ``SLURM_CONF`` in the process's environment:
the daemons, slurmstepd, job scripts, Dask workers) are checked, killed if alive, and reported.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RECIPE = REPO / "deploy" / "slurm" / "local_cluster.sh"
DAEMONS = ("slurmctld", "slurmd", "munge/munged")  # their pid files, relative to the cluster's folder
BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "sinfo", "scancel", "scontrol")
PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])  # the daemons live in sbin


def slurm_missing() -> str | None:
    """Why a local SLURM cannot run here, or None when it can."""
    missing = [name for name in BINARIES if shutil.which(name, path=PATH) is None]
    if missing:
        return f"SLURM not installed ({', '.join(missing)} missing; apt-get install -y slurm-wlm munge)"
    if os.geteuid() != 0:
        return "a local SLURM needs root (slurmd starts the jobs as their users)"
    return None


@dataclass
class LocalSlurm:
    """A running one-node cluster: its folder, ``slurm.conf`` and the commands the tests type."""

    folder: Path
    pids: dict  # the daemons' pids, by pid file
    start_seconds: float = 0.0  # from the recipe's start to the node idle

    @property
    def conf(self) -> Path:
        return self.folder / "slurm.conf"

    def env(self, **extra: str) -> dict:
        return {**os.environ, "PATH": PATH, "SLURM_CONF": str(self.conf), **extra}

    def run(self, *command, **kwargs) -> str:
        """A SLURM command (sinfo, sbatch, ...) on this cluster; its stdout."""
        done = subprocess.run(
            [str(c) for c in command], env=self.env(), capture_output=True, text=True, check=True, **kwargs
        )
        return done.stdout

    def sbatch(self, *arguments, cwd: Path, **env: str) -> str:
        """Submit a batch job from ``cwd`` (the submitter's environment plus ``env``); its job id."""
        command = ["sbatch", "--parsable", *(str(a) for a in arguments)]
        done = subprocess.run(command, cwd=cwd, env=self.env(**env), capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip().split(";")[0]

    def state(self, job: str) -> str:
        """The job's state (PENDING, RUNNING, COMPLETED, CANCELLED, FAILED, ...)."""
        text = self.run("scontrol", "show", "job", "--oneliner", job)
        return text.split("JobState=", 1)[1].split()[0]

    def times(self, job: str) -> dict:
        """SubmitTime, StartTime and EndTime of a job (scontrol's text, 1 s resolution)."""
        fields = dict(
            w.split("=", 1)
            for w in self.run("scontrol", "show", "job", "--oneliner", job).split()
            if "=" in w
        )
        return {key: fields[key] for key in ("SubmitTime", "StartTime", "EndTime")}

    def wait(self, job: str, *, timeout: float) -> str:
        """Wait until the job has left the queue (or ``timeout`` s: then cancel it); its final state."""
        deadline = time.monotonic() + timeout
        while self.run("squeue", "--noheader", "--jobs", job).strip():
            if time.monotonic() > deadline:
                self.run("scancel", job)
                pytest.fail(f"job {job} still in the queue after {timeout} s (cancelled)")
            time.sleep(0.25)
        return self.state(job)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pid(path: Path) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        return int(path.read_text().strip())
    return None


def start_slurm(folder: Path) -> LocalSlurm:
    """Start a one-node cluster in ``folder`` with the recipe (free ports); it is idle when this returns."""
    ports = [str(_free_port()), str(_free_port())]
    done = subprocess.run(
        [str(RECIPE), "start", str(folder), *ports],
        env={**os.environ, "PATH": PATH},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, f"{RECIPE.name} start failed:\n{done.stdout}\n{done.stderr}"
    pids = {name: _pid(folder / f"{name}.pid") for name in DAEMONS}
    assert all(pids.values()), pids
    return LocalSlurm(folder=folder, pids=pids)


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, which a container's init may never reap, counts as stopped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def processes_of(cluster: LocalSlurm) -> dict[int, str]:
    """Every live process started under the cluster: its ``SLURM_CONF`` in the process's environment."""
    needle = f"SLURM_CONF={cluster.conf}\0".encode()
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if needle in (entry / "environ").read_bytes() + b"\0" and _alive(int(entry.name)):
                found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()[:200]
    return found


def stop_slurm(cluster: LocalSlurm) -> dict[int, str]:
    """Stop the cluster with the recipe; then kill and return whatever it left running (pid: command)."""
    subprocess.run(
        [str(RECIPE), "stop", str(cluster.folder)],
        env={**os.environ, "PATH": PATH},
        capture_output=True,
        timeout=120,
    )
    left = {pid: name for name, pid in cluster.pids.items() if _alive(pid)}
    left.update(processes_of(cluster))
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return left
