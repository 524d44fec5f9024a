"""One writer per output: a live job's lock refuses others; stale locks are taken over.

Creation is exclusive.
"""

import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest
import xarray as xr

from lamost2csst.errors import InputError
from lamost2csst.parallel.ingest import ingest_lamost
from lamost2csst.parallel.locking import lock_path, output_lock
from lamost2csst.parallel.normalize import normalize_catalogue
from lamost2csst.parallel.predict import PREDICTIONS_SCHEMA, predict_catalogue

HOLDER = textwrap.dedent("""
    import sys, time
    from lamost2csst.parallel.locking import output_lock
    with output_lock(sys.argv[1], job="holder", resume=False):
        print("locked", flush=True)
        time.sleep(120)
""")


@pytest.fixture
def held(tmp_path):
    """An output store path whose lock is held by a live process (killed at the end)."""
    out = str(tmp_path / "out.zarr")
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, out], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    yield out, proc
    proc.kill()
    proc.wait()


def test_a_live_holder_refuses_others_even_with_resume(held):
    out, proc = held
    for resume in (False, True):
        with pytest.raises(InputError, match=rf"being written by holder \(pid {proc.pid}.*{lock_path(out)}"):
            with output_lock(out, job="second", resume=resume):
                pass
    assert json.loads(open(lock_path(out)).read())["pid"] == proc.pid  # the holder's lock is untouched


def test_the_lock_of_a_killed_job_is_taken_over_and_released(held, capsys):
    out, proc = held
    proc.kill()
    proc.wait()
    with output_lock(out, job="second", resume=False) as path:
        assert json.loads(open(path).read())["pid"] == os.getpid()
    assert "stale lock" in capsys.readouterr().err
    assert not os.path.exists(lock_path(out))


def test_a_reused_pid_is_not_mistaken_for_the_holder(tmp_path):
    out = str(tmp_path / "out.zarr")
    # our own pid, but a process start time that is not ours: the holder died and the pid was reused
    with open(lock_path(out), "w") as f:
        json.dump({"job": "old", "pid": os.getpid(), "host": socket.gethostname(), "process_start": 1.0}, f)
    with output_lock(out, job="new", resume=False):
        pass


def test_a_lock_from_another_host_needs_resume(tmp_path):
    out = str(tmp_path / "out.zarr")
    lock = {
        "job": "predict_catalogue",
        "pid": 1,
        "host": "some-other-node",
        "started_utc": "2026-01-01T00:00:00",
    }
    with open(lock_path(out), "w") as f:
        json.dump(lock, f)
    with pytest.raises(InputError, match="another host.*pass --resume"):
        with output_lock(out, job="new", resume=False):
            pass
    with output_lock(out, job="new", resume=True):
        pass
    assert not os.path.exists(lock_path(out))


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.mark.parametrize("previous", [None, "killed job", "other host"])
def test_simultaneous_starts_give_exactly_one_writer(tmp_path, previous):
    """8 threads start at once, 5 rounds; with no lock before, or a stale one all try to take over."""
    n = 8
    for round_ in range(5):
        out = str(tmp_path / f"out{round_}.zarr")
        if previous is not None:
            pid, host = (
                (_dead_pid(), socket.gethostname()) if previous == "killed job" else (1, "some-other-node")
            )
            with open(lock_path(out), "w") as f:
                json.dump({"job": "old", "pid": pid, "host": host}, f)
        start, release = threading.Barrier(n), threading.Event()
        winners, refused = [], []

        def contender(i, *, start=start, out=out, winners=winners, release=release, refused=refused):
            start.wait()
            try:
                with output_lock(out, job=f"job{i}", resume=True):
                    winners.append(i)
                    release.wait(10)
            except InputError:
                refused.append(i)

        threads = [threading.Thread(target=contender, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 20
        while len(refused) < n - 1 and time.monotonic() < deadline:  # the winner holds the lock meanwhile
            time.sleep(0.01)
        release.set()
        for t in threads:
            t.join()
        assert len(winners) == 1 and len(refused) == n - 1, (round_, winners)
        assert not os.path.exists(lock_path(out))
        assert not [name for name in os.listdir(tmp_path) if name.endswith(".tmp")]


def test_the_lock_is_released_when_the_job_fails(tmp_path):
    out = str(tmp_path / "out.zarr")
    with pytest.raises(RuntimeError), output_lock(out, job="failing", resume=False):
        raise RuntimeError("the job broke")
    assert not os.path.exists(lock_path(out))


def test_jobs_refuse_an_output_another_job_writes(held, tmp_path):
    out, proc = held
    with pytest.raises(InputError, match="being written by holder"):
        predict_catalogue(str(tmp_path / "any.zarr"), out, client=None, resume=True)
    with pytest.raises(InputError, match="being written by holder"):
        normalize_catalogue(str(tmp_path / "any.zarr"), out, client=None, resume=True)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.fits").write_bytes(b"not read: the lock is checked first")
    with pytest.raises(InputError, match="being written by holder"):
        ingest_lamost([str(tmp_path / "in")], out, client=None)


def test_overwrite_never_removes_the_output_of_a_running_job(held, tmp_path):
    out, _ = held
    xr.Dataset({"sed": (("star",), np.zeros(3))}, attrs={"schema": PREDICTIONS_SCHEMA}).to_zarr(
        out, zarr_format=3, consolidated=False
    )
    with pytest.raises(InputError, match="being written by holder"):
        predict_catalogue(str(tmp_path / "any.zarr"), out, client=None, overwrite=True)
    assert xr.open_zarr(out, consolidated=False).attrs["schema"] == PREDICTIONS_SCHEMA


def test_a_file_system_without_flock_still_gives_the_lock(tmp_path, monkeypatch):
    """Lustre mounted without -o flock answers ENOSYS: the job must still run (exclusive create remains)."""
    import errno
    import fcntl

    def no_flock(fd, op):
        raise OSError(errno.ENOSYS, "Function not implemented")

    monkeypatch.setattr(fcntl, "flock", no_flock)
    out = str(tmp_path / "out.zarr")
    with output_lock(out, job="first", resume=False) as path:
        assert json.loads(open(path).read())["job"] == "first"
        with pytest.raises(InputError, match="being written by first"):
            with output_lock(out, job="second", resume=True):
                pass
    assert not os.path.exists(lock_path(out))


def test_private_files_left_by_a_killed_contender_are_cleaned_up(tmp_path):
    from lamost2csst.parallel.locking import STALE_PRIVATE_SECONDS

    out = str(tmp_path / "out.zarr")
    old, fresh = lock_path(out) + ".dead.tmp", lock_path(out) + ".young.tmp"
    for leftover in (old, fresh):
        with open(leftover, "w") as f:
            f.write("{}")
    then = time.time() - STALE_PRIVATE_SECONDS - 10
    os.utime(old, (then, then))
    with output_lock(out, job="test", resume=False):
        pass
    assert not os.path.exists(old)  # a killed contender's leftover
    assert os.path.exists(fresh)  # may belong to a live contender on a file system without flock
    assert not os.path.exists(lock_path(out))
