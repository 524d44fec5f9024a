"""Speed and memory of the flat-cube reduction (``build_flatcube``) on this machine.

Run from the repository root::

    python -m benchmarks.bench_flatcube                      # 100,000 and 500,000 observations
    python -m benchmarks.bench_flatcube --sizes 100000 2000000

For each size, an observation store is simulated block by block (stars of a 10,000-star
pool observed repeatedly at random positions; ``lamost2csst.io.observations``) with a
predictions store for the pool, then ``build_flatcube`` (order 2, 3 iterations = 3 passes
over the observations) runs on a LocalCluster of 1 and of 2 single-threaded workers.
Reported: observation-passes per second (observations x iterations / seconds), the same per
CPU-second of the workers (their user + system time during the build: a rate per core that
does not depend on what else the machine runs), and the peak resident memory of the workers,
which must not grow with the number of observations. The code timed is the ``lamost2csst``
that Python imports: run the file as a script with ``PYTHONPATH=<another tree>`` (from
outside the repository) to time that tree on the same stores. Writes
``benchmarks/results/flatcube.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import numpy as np


def _stores(work: Path, n_obs: int, n_pool: int, block: int = 50_000):
    import xarray as xr
    import zarr

    from lamost2csst.core import OUTPUT_WAVE
    from lamost2csst.io.observations import simulate_observations, write_observations
    from lamost2csst.io.simulated import grid_catalogue

    cat = grid_catalogue(n_pool, seed=1)
    pred = work / "pred.zarr"
    if not pred.exists():
        xr.Dataset(
            {
                "sed": (("star", "wave_out"), cat.sed_true.values),
                "sigma": (("star", "wave_out"), np.full(cat.sed_true.shape, 0.01, np.float32)),
                "flags": (("star",), np.zeros(n_pool, np.uint16)),
            },
            coords={"obsid": ("star", cat.obsid.values), "wave_out": ("wave_out", OUTPUT_WAVE)},
            attrs={"schema": "lamost2csst.predictions/2"},
        ).to_zarr(pred, zarr_format=3, consolidated=False)
    obs_path = work / f"obs-{n_obs}.zarr"
    if obs_path.exists():
        return obs_path, pred
    per_star = 3  # bands; one exposure per call
    written = 0
    seed = 0
    while written < n_obs:
        n_star = min(block, n_obs - written) // per_star or 1
        pick = np.random.default_rng(seed).integers(0, n_pool, n_star)
        obs, _ = simulate_observations(
            cat.sed_true.values[pick], cat.obsid.values[pick], n_exposures=1, seed=seed
        )
        if written == 0:
            write_observations(obs, obs_path, chunk_obs=4096)
        else:
            obs.to_zarr(obs_path, append_dim="obs", zarr_format=3, consolidated=False)
        written += obs.sizes["obs"]
        seed += 1
    zarr.open_group(obs_path, mode="r+").attrs["n_obs"] = written
    return obs_path, pred


def _worker_memory():
    """(peak, current) resident memory of a worker process, MB."""
    import psutil

    from lamost2csst.parallel.runtime import peak_rss_mb

    return peak_rss_mb(), psutil.Process().memory_info().rss / 2**20


def _worker_cpu_seconds():
    """User + system CPU seconds of a worker process so far (all its threads)."""
    import psutil

    times = psutil.Process().cpu_times()
    return times.user + times.system


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[100_000, 500_000])
    p.add_argument("--pool", type=int, default=10_000)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="LocalCluster sizes to time")
    p.add_argument("--out", default="benchmarks/results/flatcube.json")
    p.add_argument("--workdir", default=None)
    args = p.parse_args(argv)
    from distributed import Client, LocalCluster

    import lamost2csst
    from lamost2csst.parallel.flatcube import build_flatcube

    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench_flatcube_"))
    work.mkdir(parents=True, exist_ok=True)
    results = []
    for n in args.sizes:
        obs, pred = _stores(work, n, args.pool)
        for workers in args.workers:
            with (
                LocalCluster(
                    n_workers=workers, threads_per_worker=1, host="127.0.0.1", dashboard_address=":0"
                ) as cluster,
                Client(cluster) as client,
            ):
                out = work / f"cube-{n}-{workers}.zarr"
                load = os.getloadavg()[0]
                shutil.rmtree(out, ignore_errors=True)
                cpu0 = client.run(_worker_cpu_seconds)
                s = build_flatcube(obs, pred, out, client=client, order=2, iterations=3, progress=False)
                cpu = sum(client.run(_worker_cpu_seconds).values()) - sum(cpu0.values())
                after = client.run(_worker_memory)
            row = {
                "observations": s["observations_in"],
                "workers": workers,
                "seconds": s["seconds"],
                "observation_passes_per_s": round(3 * s["observations_in"] / s["seconds"]),
                "observation_passes_per_s_per_worker": round(
                    3 * s["observations_in"] / s["seconds"] / workers
                ),
                "worker_cpu_seconds": round(cpu, 1),
                "observation_passes_per_cpu_second": round(3 * s["observations_in"] / cpu),
                "load_1min_before": round(load, 2),
                "worker_peak_rss_mb": round(max(v[0] for v in after.values()), 1),
                "worker_rss_after_mb": round(max(v[1] for v in after.values()), 1),
            }
            results.append(row)
            print(json.dumps(row), flush=True)
    record = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "command": " ".join(["python -m benchmarks.bench_flatcube", *(argv or sys.argv[1:])]),
        "code": str(Path(lamost2csst.__file__).parents[1]),
        "results": results,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=1) + "\n")
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
