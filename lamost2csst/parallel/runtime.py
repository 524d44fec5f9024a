"""What every job shares: the input-error type, atomic JSON markers, the Dask client.

* :data:`JobInputError`: the old name of :class:`lamost2csst.errors.InputError` (bad input or
  output locations; the CLIs turn it into its message and exit code 2, no traceback).
* :func:`write_json` / :func:`read_json`: resume markers. A marker is written to a
  temporary name and renamed, so it is either absent or complete; an unreadable marker
  reads as absent (its chunk is redone).
* :func:`keep_freed_memory` / :func:`release_freed_memory`: while a job's tasks run on a Dask
  worker, glibc keeps the memory they free for the next task instead of unmapping it.
* :func:`dask_client`: attach to ``scheduler`` or start a LocalCluster on 127.0.0.1
  (dashboard on 127.0.0.1 too: never exposed unless a user asks).

The command-line frame around a job (exit codes, messages) is ``jobs._cli.run_cli``: the
library does not know the command lines.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import sys

from lamost2csst.errors import InputError

__all__ = [
    "JobInputError",
    "dask_client",
    "keep_freed_memory",
    "open_own_store",
    "peak_rss_mb",
    "read_json",
    "release_freed_memory",
    "remove_store",
    "worker_mapper",
    "write_json",
]


#: The name of :class:`lamost2csst.errors.InputError` before there was one error type; kept for callers.
JobInputError = InputError


def write_json(path: str, value: dict) -> None:
    """Write ``value`` as JSON atomically (temporary file + rename; one put on object stores)."""
    from lamost2csst.io.storage import write_bytes

    write_bytes(path, json.dumps(value).encode())


def read_json(path: str) -> dict | None:
    """The JSON object at ``path``, or None when it is missing or unreadable."""
    from lamost2csst.io.storage import read_bytes

    data = read_bytes(path)
    if data is None:
        return None
    try:
        value = json.loads(data)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def peak_rss_mb() -> float:
    """Peak resident memory of this process's own address space so far, MB.

    Read from ``VmHWM`` of ``/proc/self/status`` on Linux. ``getrusage().ru_maxrss`` is not
    used there: Linux carries it across fork + exec, so a Dask worker spawned by a client
    holding 1.5 GB reports 1.5 GB before running anything (measured: a worker of 62 MB
    reported the 1,578 MB of its parent). Elsewhere ``ru_maxrss`` is the best there is
    (bytes on macOS, kB on other systems).
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024.0


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters
_GLIBC_MMAP_THRESHOLD = 128 * 1024  # glibc's default mmap threshold
_KEPT_BYTES = 256 * 2**20


def keep_freed_memory() -> None:
    """On a Dask worker, for a job's tasks: let glibc reuse the memory they free instead of unmapping it.

    Dask starts its worker processes with ``MALLOC_TRIM_THRESHOLD_=65536``, which also pins glibc's
    mmap threshold at 128 kB: every large array a task makes (a chunk's decoded pixels, its
    float64 temporaries, zarr's buffers) is then a new mapping whose pages fault on first touch,
    and TensorFlow's own buffers too (BENCHMARKS.md: 30 % of a flat-cube task's CPU; the predict
    task 1.9x slower). While a job runs both thresholds are 256 MiB: freed memory is kept for the
    next task, so a worker's memory stays at one task's working set whatever the number of stars.
    :func:`release_freed_memory` restores Dask's values. Without that environment variable (not a
    Dask worker process), or off glibc, nothing is changed.
    """
    libc = _glibc() if os.environ.get("MALLOC_TRIM_THRESHOLD_", "").isdigit() else None
    if libc is not None:
        libc.mallopt(_M_MMAP_THRESHOLD, _KEPT_BYTES)
        libc.mallopt(_M_TRIM_THRESHOLD, _KEPT_BYTES)


def release_freed_memory() -> None:
    """Undo :func:`keep_freed_memory` (on every worker at the end of a job) and return free memory."""
    trim = os.environ.get("MALLOC_TRIM_THRESHOLD_", "")
    libc = _glibc() if trim.isdigit() else None
    if libc is not None:
        libc.mallopt(_M_TRIM_THRESHOLD, int(trim))
        libc.mallopt(_M_MMAP_THRESHOLD, _GLIBC_MMAP_THRESHOLD)
        libc.malloc_trim(0)


def _glibc():
    """The C library when it is glibc (has ``mallopt`` and ``malloc_trim``), else None."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt, libc.malloc_trim  # noqa: B018
    except (OSError, AttributeError):
        return None
    return libc


def open_own_store(out: str, *, schema: str, action: str):
    """Open the existing Zarr store ``out`` lazily, refusing it unless it has ``schema``.

    ``action`` starts the error message ("cannot resume into", "--overwrite: refusing to remove").
    """
    import xarray as xr

    try:
        ds = xr.open_zarr(out, consolidated=False)
    except Exception as err:  # noqa: BLE001 - anything unreadable is not ours
        raise InputError(f"{action} {out}: not a readable Zarr store ({err})") from None
    if ds.attrs.get("schema") != schema:
        raise InputError(f"{action} {out}: its schema is {ds.attrs.get('schema')!r}, not {schema!r}")
    return ds


def remove_store(out: str, *, schema: str) -> None:
    """Delete the Zarr store ``out`` (for ``--overwrite``), but only if it has ``schema``.

    Refusing anything else keeps a mistyped path from deleting a user's data.
    """
    import shutil

    from lamost2csst.io.storage import is_url

    open_own_store(out, schema=schema, action="--overwrite: refusing to remove")
    print(f"--overwrite: removing {out}", file=sys.stderr, flush=True)
    if is_url(out):
        import fsspec

        fs, path = fsspec.core.url_to_fs(out)
        fs.rm(path, recursive=True)
        fs.invalidate_cache()
        type(fs).clear_instance_cache()  # zarr's own (async) instance must not see a stale listing
    else:
        shutil.rmtree(out)


@contextlib.contextmanager
def dask_client(
    *,
    scheduler: str | None = None,
    n_workers: int | None = None,
    threads_per_worker: int = 1,
    gpus: bool = False,
    dashboard_address: str = "127.0.0.1:0",
):
    """A ``distributed.Client``: attached to ``scheduler``, or on a new local cluster.

    ``gpus=True`` starts a dask-cuda ``LocalCUDACluster`` instead: one worker per visible
    GPU (``CUDA_VISIBLE_DEVICES`` selects them), ``n_workers`` ignored. The local
    cluster's dashboard listens on ``dashboard_address``: by default 127.0.0.1 on a free
    port, so that it is not exposed to the network unless asked (e.g. ``0.0.0.0:8787``).
    """
    from distributed import Client, LocalCluster

    if scheduler:
        try:
            client = Client(scheduler)
        except (OSError, ValueError) as err:  # unreachable (TimeoutError is an OSError) or malformed
            raise InputError(f"cannot connect to the Dask scheduler {scheduler}: {err}") from None
        with client:
            yield client
        return
    if gpus:
        try:
            from dask_cuda import LocalCUDACluster
        except ImportError:
            raise InputError(
                "--gpus needs dask-cuda and NVIDIA GPUs: pip install dask-cuda (and tensorflow[and-cuda]); "
                "without GPUs leave --gpus out"
            ) from None
        try:
            cluster = LocalCUDACluster(
                threads_per_worker=threads_per_worker, host="127.0.0.1", dashboard_address=dashboard_address
            )
        except Exception as err:  # noqa: BLE001 - e.g. pynvml.NVMLError_LibraryNotFound without a GPU
            raise InputError(
                f"--gpus: cannot start a dask-cuda cluster ({type(err).__name__}: {err}); "
                "is there an NVIDIA GPU and driver? Without GPUs leave --gpus out"
            ) from None
        with cluster, Client(cluster) as client:
            yield client
        return
    with (
        LocalCluster(
            n_workers=n_workers or os.cpu_count() or 1,
            threads_per_worker=threads_per_worker,
            host="127.0.0.1",
            dashboard_address=dashboard_address,
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


def worker_mapper(client):
    """A ``mapper(func, arrays, items)`` running ``func(*arrays, **item)`` per item on ``client``'s workers.

    The arrays are scattered once to every worker (fresh keys: a repeated identical scatter
    would race with the release of the previous one); results come back in item order.
    Used by :func:`lamost2csst.core.calibration.monte_carlo_flat_precision`.
    """

    def mapper(func, arrays, items):
        scattered = client.scatter(list(arrays), broadcast=True, hash=False)
        return client.gather([client.submit(func, *scattered, **item, pure=False) for item in items])

    return mapper
