"""Files per second of ``ingest_lamost`` (LAMOST FITS -> catalogue), this tree against another.

Run from the repository root::

    git clone -q . /work/ingest_before && git -C /work/ingest_before checkout <commit>
    python -m benchmarks.bench_ingest --files 3000 --before /work/ingest_before

``--files`` stars of the demo catalogue (``grid_catalogue``) are exported as LAMOST LRS
files (``lamost2csst.io.lamost_export``): the first half in the DR1-7 image layout
(``.fits``), the second half in the DR8+ binary-table layout gzipped (``.fits.gz``), plus 3
unreadable files (rejects). Each timed run is a fresh process (``PYTHONPATH`` = the code
tree) that ingests all of them into a new catalogue on a LocalCluster of ``--workers``
single-threaded worker processes; runs of the two trees alternate (``--repeat`` times each)
so that both see the same machine load. Reported per run: the job's own ``seconds`` and
``files_per_second`` (files / seconds, the cluster's start excluded), per worker; the
medians and their ratio; and whether the two trees' catalogues hold the same values
(pixels, per-star coordinates, rejects). Prints one JSON line per run and the record;
writes ``benchmarks/results/ingest.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _make_files(folder: Path, n: int) -> int:
    """``n`` exported LAMOST files (half image, half gzipped table) and 3 bad ones; kept if present."""
    if (folder / "done.json").exists() and json.loads((folder / "done.json").read_text())["n"] == n:
        return n
    import numpy as np

    from lamost2csst.io.lamost_export import export_lamost
    from lamost2csst.io.simulated import grid_catalogue

    shutil.rmtree(folder, ignore_errors=True)
    for start in range(0, n, 1000):
        stop = min(start + 1000, n)
        cat = grid_catalogue(stop - start, seed=start)
        cat = cat.assign_coords(obsid=("star", 10_000_000 + start + np.arange(stop - start)))
        for i, (layout, gz) in enumerate((("image", False), ("table", True))):
            half = cat.isel(star=slice(i * cat.sizes["star"] // 2, (i + 1) * cat.sizes["star"] // 2))
            export_lamost(half, folder / f"{layout}-{start:07d}", layout=layout, gz=gz)
    good = sorted(folder.rglob("*.fits"))[0]
    (folder / "broken.fits").write_bytes(b"SIMPLE  =                    T" + b"\0" * 100)
    (folder / "truncated.fits").write_bytes(good.read_bytes()[:5000])
    shutil.copy(good, folder / "zz-same-obsid.fits")
    (folder / "done.json").write_text(json.dumps({"n": n}))
    return n


def _child(args) -> None:
    """One timed ingest in this process (the code tree is whatever ``lamost2csst`` imports)."""
    from distributed import Client, LocalCluster

    import lamost2csst
    from lamost2csst.parallel.ingest import ingest_lamost

    with (
        LocalCluster(
            n_workers=args.workers, threads_per_worker=1, host="127.0.0.1", dashboard_address=":0"
        ) as cluster,
        Client(cluster) as client,
    ):
        t0 = time.perf_counter()
        s = ingest_lamost([args.files_dir], args.store, client=client, progress=False)
        wall = time.perf_counter() - t0
    print(
        json.dumps(
            {
                "code": str(Path(lamost2csst.__file__).parents[1]),
                "files": s["files_found"],
                "stars_added": s["stars_added"],
                "rejected": s["rejected"],
                "workers": args.workers,
                "seconds": s["seconds"],
                "wall_seconds": round(wall, 3),
                "files_per_second": s["files_per_second"],
                "files_per_second_per_worker": round(s["files_per_second"] / args.workers, 1),
            }
        )
    )


def _run(tree: Path, files_dir: Path, store: Path, workers: int) -> dict:
    shutil.rmtree(store, ignore_errors=True)
    env = {**os.environ, "PYTHONPATH": str(tree)}
    cmd = [sys.executable, __file__, "--child", "--files-dir", str(files_dir), "--store", str(store)]
    done = subprocess.run(
        [*cmd, "--workers", str(workers)], env=env, capture_output=True, text=True, check=False
    )
    if done.returncode:
        raise SystemExit(f"run with {tree} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _same_values(a: Path, b: Path) -> bool:
    """The two catalogues hold the same stars, pixels, per-star coordinates and rejects."""
    import numpy as np
    import xarray as xr

    x, y = (xr.open_zarr(p, consolidated=False).load() for p in (a, b))
    if set(x.variables) != set(y.variables) or x.sizes != y.sizes:
        return False
    for name in x.variables:
        u, v = x[name].values, y[name].values
        if u.dtype != v.dtype or not (
            np.array_equal(u, v, equal_nan=True) if u.dtype.kind == "f" else np.array_equal(u, v)
        ):
            return False
    keep = ("path", "reason")
    return [{k: r[k] for k in keep} for r in x.attrs["rejects"]] == [
        {k: r[k] for k in keep} for r in y.attrs["rejects"]
    ]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--files", type=int, default=3000, help="exported LAMOST files (default: %(default)s)")
    p.add_argument("--before", type=Path, default=None, help="another code tree to time side by side")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--repeat", type=int, default=2, help="runs of each tree, alternating")
    p.add_argument("--workdir", type=Path, default=None, help="keep the files here (reused)")
    p.add_argument("--out", default="benchmarks/results/ingest.json")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--files-dir", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--store", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return _child(args)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench_ingest_"))
    files_dir = work / "fits"
    t0 = time.perf_counter()
    _make_files(files_dir, args.files)
    print(f"[bench_ingest] files ready in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    trees = {"after": REPO, **({"before": args.before.resolve()} if args.before else {})}
    runs = {name: [] for name in trees}
    for _ in range(args.repeat):
        for name, tree in sorted(trees.items(), key=lambda kv: kv[0] != "before"):
            row = {"code": name, "load_1min": round(os.getloadavg()[0], 2)}
            row.update(_run(tree, files_dir, work / f"{name}.zarr", args.workers))
            runs[name].append(row)
            print(json.dumps(row), flush=True)
    summary = {
        name: {
            "median_seconds": round(statistics.median(r["seconds"] for r in rows), 3),
            "median_files_per_second": round(statistics.median(r["files_per_second"] for r in rows), 1),
            "median_files_per_second_per_worker": round(
                statistics.median(r["files_per_second_per_worker"] for r in rows), 1
            ),
        }
        for name, rows in runs.items()
    }
    if "before" in runs:
        summary["after_over_before"] = round(
            summary["after"]["median_files_per_second"] / summary["before"]["median_files_per_second"], 2
        )
        summary["same_values"] = _same_values(work / "before.zarr", work / "after.zarr")
    record = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "command": " ".join(["python -m benchmarks.bench_ingest", *(argv or sys.argv[1:])]),
        "files": args.files,
        "trees": {name: str(tree) for name, tree in trees.items()},
        "runs": [r for rows in runs.values() for r in rows],
        "summary": summary,
    }
    print(json.dumps(summary))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=1) + "\n")
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
