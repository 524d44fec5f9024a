"""One writer per output store: the ``<out>.lock`` file every writing job holds while it runs.

A job creates ``<out>.lock`` (JSON: job, pid, host, process start time, command, start
time) before it writes anything and removes it when it ends, failed or not. A second job
aimed at the same output is refused while the first is alive:

* the lock's process runs on this host → refused, even with ``resume`` (two writers would
  race on the same chunks); the message names the job, its pid and the lock file;
* the lock's process is gone (killed, machine rebooted: same host, no such process, or
  another process now holds that pid) → the lock is stale and is taken over, with a note
  on stderr (a killed job must be resumable without a manual step);
* the lock was written on another host, whose processes cannot be checked from here →
  refused unless ``resume`` (the user asserts that the other job is dead).

On a local disk the lock is created with ``O_CREAT | O_EXCL``: of two jobs started at the
same moment exactly one gets it. Object stores (``s3://``) have no exclusive create; there
the lock is a check followed by a put, which leaves a window of one round trip.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
from datetime import datetime, timezone

from lamost2csst.parallel.runtime import JobInputError

__all__ = ["lock_path", "output_lock"]


def lock_path(out: str) -> str:
    """The lock file of the output store ``out`` (a sibling: ``<out>.lock``)."""
    return out.rstrip("/") + ".lock"


def _process_start(pid: int) -> float | None:
    """Start time (epoch seconds) of process ``pid`` on this host, None if there is none."""
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return None


def _holder() -> dict:
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "process_start": _process_start(os.getpid()),
        "started_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": sys.argv,
    }


def _alive_here(lock: dict) -> bool:
    """True when the lock's process still runs on this host (pid reuse is told apart by start time)."""
    pid, recorded = lock.get("pid"), lock.get("process_start")
    if not isinstance(pid, int):
        return False
    start = _process_start(pid)
    if start is None:
        return False
    return recorded is None or abs(start - float(recorded)) < 1.0


def _describe(lock: dict) -> str:
    return (f"{lock.get('job', 'a job')} (pid {lock.get('pid')} on host {lock.get('host')}, "
            f"started {lock.get('started_utc')})")


def _create_local(path: str, payload: bytes) -> bool:
    """Exclusive create; False if the file exists."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "wb") as f:
        f.write(payload)
    return True


def _read_lock(path: str) -> dict:
    from lamost2csst.parallel.storage import read_bytes

    data = read_bytes(path)
    try:
        value = json.loads(data) if data is not None else {}
    except ValueError:
        value = {}
    return value if isinstance(value, dict) else {}


@contextlib.contextmanager
def output_lock(out: str, *, job: str, resume: bool):
    """Hold ``<out>.lock`` for the body of the ``with``; refuse if another live job holds it.

    Parameters
    ----------
    out : str
        The output store (local path or URL).
    job : str
        The job's name, recorded in the lock and quoted in the refusal.
    resume : bool
        Whether the caller resumes an interrupted run: allows taking over a lock written
        on another host (whose process cannot be checked from here).

    Raises
    ------
    JobInputError
        Another job that is (or may be) alive writes to ``out``.
    """
    from lamost2csst.parallel.storage import exists, is_url, write_bytes

    path = lock_path(out)
    mine = {"job": job, **_holder()}
    payload = json.dumps(mine).encode()
    for _attempt in range(2):
        if is_url(path):
            acquired = not exists(path)
            if acquired:
                write_bytes(path, payload)
        else:
            parent = os.path.dirname(os.path.abspath(path))
            os.makedirs(parent, exist_ok=True)
            acquired = _create_local(path, payload)
        if acquired:
            break
        held = _read_lock(path)
        if held.get("host") == socket.gethostname():
            if _alive_here(held):
                raise JobInputError(
                    f"output {out} is being written by {_describe(held)}; wait for it to end. "
                    f"If no such job runs any more, remove the lock file {path}")
            print(f"[lock] taking over the stale lock {path} of {_describe(held)}: that process is gone",
                  file=sys.stderr, flush=True)
        elif not resume:
            raise JobInputError(
                f"output {out} is locked by {_describe(held)}, on another host whose processes cannot be "
                f"checked from here; if that job is dead, pass --resume (resume=True) to take over, "
                f"or remove the lock file {path}")
        else:
            print(f"[lock] resume: taking over the lock {path} of {_describe(held)}", file=sys.stderr, flush=True)
        _remove(path)
    else:  # another job took the freed lock between our removal and our create
        raise JobInputError(f"output {out}: another job took the lock {path} at the same moment; retry later")
    try:
        yield path
    finally:
        held = _read_lock(path)
        if (held.get("pid"), held.get("host")) == (mine["pid"], mine["host"]):  # still ours: not taken over
            _remove(path)


def _remove(path: str) -> None:
    from lamost2csst.parallel.storage import is_url

    if is_url(path):
        import fsspec

        fs, p = fsspec.core.url_to_fs(path)
        with contextlib.suppress(FileNotFoundError):
            fs.rm(p)
        fs.invalidate_cache()
    else:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)
