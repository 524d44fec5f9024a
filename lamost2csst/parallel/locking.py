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

On a local disk the lock's whole content appears at once (written to a private file, then
hard-linked to ``<out>.lock``, which fails if the name exists), and the check-and-take-over
of a stale lock runs under an exclusive ``flock`` of the output's parent folder: of jobs
started at the same moment exactly one gets the lock, and none ever reads a half-written
one. Where the file system has no ``flock`` (Lustre without ``-o flock``), the take-over
runs unserialized; creation stays exclusive. Object stores (``s3://``) have no exclusive
create; there the lock is a check followed by a put, which leaves a window of one round trip.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import uuid
from datetime import UTC, datetime

from lamost2csst.errors import InputError

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
        "started_utc": datetime.now(UTC).isoformat(timespec="seconds"),
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
    return (
        f"{lock.get('job', 'a job')} (pid {lock.get('pid')} on host {lock.get('host')}, "
        f"started {lock.get('started_utc')})"
    )


def _create_local(path: str, payload: bytes, token: str) -> bool:
    """Exclusive create of a complete file; False if ``path`` exists.

    The content goes to a private file first and is hard-linked to ``path``, so a reader
    never sees an empty or half-written lock (an ``O_EXCL`` create followed by a write
    leaves such a window). Filesystems without hard links fall back to ``O_EXCL``.
    """
    private = f"{path}.{token}.tmp"
    with open(private, "wb") as f:
        f.write(payload)
    try:
        os.link(private, path)
        return True
    except FileExistsError:
        return False
    except OSError:  # no hard links here (some FUSE / SMB mounts)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
        return True
    finally:
        with contextlib.suppress(FileNotFoundError):  # removed as a leftover by a contender (no flock)
            os.remove(private)


STALE_PRIVATE_SECONDS = 300


def _remove_stale_private_files(path: str) -> None:
    """Remove ``<lock>.<token>.tmp`` files older than ``STALE_PRIVATE_SECONDS``.

    A contender lives in :func:`_create_local` for microseconds; its private file outlives it
    only when it was killed there (SIGKILL, power loss). Called under the folder mutex.
    """
    import glob
    import time

    for leftover in glob.glob(glob.escape(path) + ".*.tmp"):
        with contextlib.suppress(FileNotFoundError):
            if time.time() - os.path.getmtime(leftover) > STALE_PRIVATE_SECONDS:
                os.remove(leftover)


@contextlib.contextmanager
def _folder_mutex(path: str):
    """Exclusive ``flock`` of the folder holding ``path`` (local disks; no-op without fcntl).

    Serializes the read-check-take-over of stale locks between contenders, threads or
    processes: without it two jobs that both find a dead holder could both take over.
    """
    parent = os.path.dirname(os.path.abspath(path))
    try:
        import fcntl
    except ImportError:  # not POSIX: exclusive create only
        yield
        return
    fd = os.open(parent, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:  # no flock on this file system (Lustre without -o flock: ENOSYS; some NFS: ENOLCK)
            pass  # the hard-linked, complete lock file still makes creation exclusive
        yield
    finally:
        os.close(fd)  # closing releases the flock


def _read_lock(path: str) -> dict:
    from lamost2csst.io.storage import read_bytes

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
    InputError
        Another job that is (or may be) alive writes to ``out``.
    """
    from lamost2csst.io.storage import is_url

    path = lock_path(out)
    local = not is_url(path)
    if local:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)

    def mutex():
        return _folder_mutex(path) if local else contextlib.nullcontext()

    with mutex():
        mine = _acquire(out, path, job=job, resume=resume, local=local)
    try:
        yield path
    finally:
        with mutex():
            if _read_lock(path).get("token") == mine["token"]:  # still ours: not taken over
                _remove(path)


def _acquire(out: str, path: str, *, job: str, resume: bool, local: bool) -> dict:
    """Create the lock, taking over a stale one; the holder record written, or InputError."""
    from lamost2csst.io.storage import exists, write_bytes

    mine = {"job": job, "token": uuid.uuid4().hex, **_holder()}
    payload = json.dumps(mine).encode()
    if local:
        _remove_stale_private_files(path)
    for _attempt in range(2):
        if local:
            acquired = _create_local(path, payload, mine["token"])
        else:
            acquired = not exists(path)
            if acquired:
                write_bytes(path, payload)
        if acquired:
            return mine
        held = _read_lock(path)
        if held.get("host") == socket.gethostname():
            if _alive_here(held):
                raise InputError(
                    f"output {out} is being written by {_describe(held)}; wait for it to end. "
                    f"If no such job runs any more, remove the lock file {path}"
                )
            print(
                f"[lock] taking over the stale lock {path} of {_describe(held)}: that process is gone",
                file=sys.stderr,
                flush=True,
            )
        elif not resume:
            raise InputError(
                f"output {out} is locked by {_describe(held)}, on another host whose processes cannot be "
                f"checked from here; if that job is dead, pass --resume (resume=True) to take over, "
                f"or remove the lock file {path}"
            )
        else:
            print(
                f"[lock] resume: taking over the lock {path} of {_describe(held)}",
                file=sys.stderr,
                flush=True,
            )
        _remove(path)
    # another job took the freed lock between our removal and our create
    raise InputError(f"output {out}: another job took the lock {path} at the same moment; retry later")


def _remove(path: str) -> None:
    from lamost2csst.io.storage import is_url

    if is_url(path):
        import fsspec

        fs, p = fsspec.core.url_to_fs(path)
        with contextlib.suppress(FileNotFoundError):
            fs.rm(p)
        fs.invalidate_cache()
    else:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)
