"""Runtime safety: local clusters listen on 127.0.0.1 only unless asked; no shell anywhere."""

import ast
from pathlib import Path

import numpy as np
import pytest

from lamost2csst.parallel import runtime
from lamost2csst.parallel.runtime import dask_client

PACKAGE = Path(__file__).resolve().parents[2] / "lamost2csst"
JOBS = PACKAGE.parent / "jobs"


def _dashboard_listens_on(client) -> set[str]:
    """The IP addresses the dashboard's port is bound to (from the kernel's socket table)."""
    import psutil

    port = client.scheduler_info()["services"]["dashboard"]
    return {
        c.laddr.ip
        for c in psutil.net_connections(kind="tcp")
        if c.status == psutil.CONN_LISTEN and c.laddr.port == port
    }


def test_local_cluster_and_dashboard_listen_on_localhost_by_default():
    with dask_client(n_workers=1) as client:
        assert client.scheduler.address.startswith("tcp://127.0.0.1:")
        assert _dashboard_listens_on(client) == {"127.0.0.1"}
        workers = client.scheduler_info()["workers"]
        assert workers and all(addr.startswith("tcp://127.0.0.1:") for addr in workers)


def test_dashboard_address_is_configurable():
    with dask_client(n_workers=1, dashboard_address="127.0.0.2:0") as client:
        assert _dashboard_listens_on(client) == {"127.0.0.2"}


def _calls(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            owner = (
                func.value.id if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) else ""
            )
            yield node, owner, name


@pytest.mark.parametrize("path", sorted([*PACKAGE.rglob("*.py"), *JOBS.rglob("*.py")]), ids=lambda p: p.name)
def test_no_shell_strings_anywhere(path):
    """Subprocesses (Synspec, gfortran builds, pip downloads) get argument lists; no shell, no os.system."""
    tree = ast.parse(path.read_text())
    for node, owner, name in _calls(tree):
        assert not (owner == "os" and name in ("system", "popen")), f"{path}:{node.lineno} uses os.{name}"
        if owner == "subprocess":
            for kw in node.keywords:
                assert not (kw.arg == "shell" and getattr(kw.value, "value", False)), (
                    f"{path}:{node.lineno} shell=True"
                )
            if node.args:
                assert not isinstance(node.args[0], (ast.Constant, ast.JoinedStr)), (
                    f"{path}:{node.lineno}: subprocess.{name} with a command string"
                )


def test_synspec_runs_in_a_private_temporary_directory():
    """Each Synspec run gets its own mkdtemp directory (mode 0700), removed afterwards."""
    source = (PACKAGE / "synth" / "synspec.py").read_text()
    tree = ast.parse(source)
    temp_calls = [
        (owner, name) for _, owner, name in _calls(tree) if name in ("mkdtemp", "mkstemp", "mktemp")
    ]
    assert ("tempfile", "mkdtemp") in temp_calls and ("tempfile", "mktemp") not in temp_calls
    runs = [node for node, owner, name in _calls(tree) if owner == "subprocess" and name == "run"]
    assert runs and all(any(kw.arg == "cwd" for kw in node.keywords) for node in runs)


PEAK_PARENT = """
import subprocess, sys
import numpy as np
ballast = np.ones(400 * 2**20 // 8)  # 400 MB, touched
child = "import numpy as np; from lamost2csst.parallel.runtime import peak_rss_mb; " \\
        "x = np.ones(int(sys.argv[1]) * 2**20 // 8); print(peak_rss_mb())"
for mb in (0, 300):
    out = subprocess.run([sys.executable, "-c", "import sys; " + child, str(mb)],
                         capture_output=True, text=True, check=True)
    print(out.stdout.strip())
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="Linux /proc only")
def test_peak_rss_is_the_process_own_not_inherited_from_its_parent():
    """A worker's peak must not include its parent's memory (ru_maxrss carries over fork + exec)."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", PEAK_PARENT], capture_output=True, text=True, check=True)
    idle, busy = (float(v) for v in out.stdout.split())
    assert idle < 200  # the parent held 400 MB when it started the child
    assert 300 <= busy < 300 + idle + 50  # the child's own 300 MB are seen


def test_freed_memory_is_kept_during_a_job_and_released_after(monkeypatch):
    """Under Dask's MALLOC_TRIM_THRESHOLD_ the tasks of a job reuse freed memory (no fresh pages to
    fault in per chunk); after the job a new array is a fresh mapping again (Dask's setting)."""
    import resource

    if runtime._glibc() is None:
        pytest.skip("not glibc")
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "65536")

    def faults_of_a_new_block() -> int:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        block = np.ones(2**23)  # 64 MiB, touched
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
        del block
        return faults

    runtime.keep_freed_memory()
    try:
        faults_of_a_new_block()  # the first task's arrays: fresh pages
        kept = faults_of_a_new_block()  # the next task's: the freed pages again
    finally:
        runtime.release_freed_memory()
    faults_of_a_new_block()
    fresh = faults_of_a_new_block()  # Dask's setting: every large array a new mapping
    assert fresh >= 16  # 64 MiB: 16,384 pages (32 where numpy gets huge pages)
    assert kept <= fresh // 8
