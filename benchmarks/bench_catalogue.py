"""End-to-end speed of ``predict_catalogue`` (Zarr -> Zarr) against its limits, on this machine.

Run from the repository root::

    python -m benchmarks.bench_catalogue                  # 40,000 stars end to end
    python -m benchmarks.bench_catalogue --n 100000 --n-files 0 --workers 2   # issue 21's ratios

All cases in one run, on the same demo catalogue (LAMOST-like stars simulated from the
shipped grid, ``lamost2csst.io.simulated``), with the shipped model, for each worker count W:

* ``bare network``: the compiled forward pass alone
  (``lamost2csst.nn.inference._compiled_forward``, batches of 1024) on network arrays already
  prepared in memory, and ``public predict()``: ``lamost2csst.predict`` (input checks, masked
  pixels, the model card's discrepancy) on the same normalized spectra; both in W plain
  single-threaded processes at once (TensorFlow 1 thread each; each process prepares its share
  of the first ``--n-raw`` stars before the clock starts; best of ``--repeat``, the two cases
  alternating);
* ``predict_catalogue``: the job, from the Zarr catalogue to the Zarr output (reading,
  rest frame, resampling, normalization, network, domain check, flags, writing) on a
  LocalCluster of W single-threaded workers; its steady rate is
  ``stars / (seconds - seconds_setup)`` (the set-up: TensorFlow and the model in the workers,
  the output's template);
* ``simple per-file loop`` (``--n-files`` > 0): what a user would write without this package's
  jobs: for each LAMOST FITS file, ``read_lamost``, ``prepare_inputs``, ``model.predict``
  (Keras), in one process with TensorFlow's default threads (all cores).

Prints one line per case and writes ``benchmarks/results/catalogue.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path


def _raw_child(catalogue: str, start: int, stop: int, repeat: int) -> dict:
    """Child process (TensorFlow on 1 thread): prepare stars start:stop in memory (untimed), then
    time the bare forward pass and the public ``predict`` on them, alternating; best of ``repeat``."""
    import numpy as np

    from lamost2csst.nn.setup import configure

    configure(threads=1)
    import lamost2csst
    from lamost2csst.core.flags import FlagThresholds
    from lamost2csst.io.regions import read_region
    from lamost2csst.nn.inference import _compiled_forward, load_model, prepare_network_arrays
    from lamost2csst.parallel.predict_tasks import _prepared_block

    src = read_region(catalogue, start, stop, ("wave", "flux", "ivar", "mask", "z"))
    net, _, _ = _prepared_block(
        src["wave"], flux=src["flux"], ivar=src["ivar"], mask=src["mask"], z=src["z"], teff=None,
        thresholds=FlagThresholds(), observed=True, trouble="mask",
    )  # fmt: skip
    keep = np.isfinite(src["z"])  # the stars the job sends to the network
    flux, error, mask = net.flux[keep], net.error[keep], net.mask[keep]
    ready_flux, ready_error = prepare_network_arrays(flux, error, mask=mask)
    forward = _compiled_forward(load_model())
    n = int(keep.sum())

    def bare():
        for i in range(0, n, 1024):
            forward(ready_flux[i : i + 1024], ready_error[i : i + 1024])

    def public():
        lamost2csst.predict(flux, error, mask=mask)

    bare(), public()  # warm-up (tracing, the model card)
    best = {"bare": float("inf"), "public": float("inf")}
    for _ in range(repeat):
        for name, run in (("bare", bare), ("public", public)):
            t = time.perf_counter()
            run()
            best[name] = min(best[name], time.perf_counter() - t)
    return {"n": n, **best}


def _raw_cases(catalogue: Path, n_raw: int, workers: int, repeat: int) -> list[dict]:
    """The bare network and the public predict() in ``workers`` single-threaded processes at once."""
    per = n_raw // workers
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "benchmarks.bench_catalogue",
                "--child-raw",
                str(catalogue),
                str(i * per),
                str((i + 1) * per),
                str(repeat),
            ],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )  # fmt: skip
        for i in range(workers)
    ]
    parts = []
    for proc in procs:
        out, _ = proc.communicate()
        if proc.returncode:
            raise RuntimeError(f"a raw-predict child failed (exit {proc.returncode})")
        parts.append(json.loads(out.strip().splitlines()[-1]))
    n = sum(p["n"] for p in parts)
    return [
        {"case": case, "workers": workers, "n": n, "seconds": max(p[key] for p in parts)}
        for case, key in (("bare network (in memory)", "bare"), ("public predict() (in memory)", "public"))
    ]


def _simple_child(files: list[str]) -> dict:
    """Child process: the per-file loop a user would write (read, prepare, model.predict)."""
    import numpy as np

    from lamost2csst.core import prepare_inputs
    from lamost2csst.io import read_lamost
    from lamost2csst.nn.inference import load_model, prepare_network_arrays

    model = load_model()
    one = read_lamost(files[0])
    model.predict(
        {"flux": np.ones((1, 2238), np.float32), "error": np.ones((1, 2238), np.float32)}, verbose=0
    )
    t = time.perf_counter()
    n = 0
    for path in files:
        ds = read_lamost(path)
        z = ds.z.values
        if not np.isfinite(z[0]):
            continue
        net = prepare_inputs(ds.wave.values, ds.flux.values, ivar=ds.ivar.values, z=z, mask=ds.mask.values)
        flux, error = prepare_network_arrays(net.flux, net.error, mask=net.mask)
        model.predict({"flux": flux, "error": error}, verbose=0)
        n += 1
    del one
    return {"n": n, "seconds": time.perf_counter() - t}


def lamost_size_plan(
    results,
    *,
    bytes_per_star: float,
    gpu_rate: float,
    n_spectra: int = 20_000_000,
    disk_gb_per_s: float = 1.0,
    cores_per_gpu: int = 8,
    gpu_rate_source: str = "assumed",
) -> dict:
    """What a LAMOST-size run needs, from the measured per-core rates and a GPU network rate.

    Per star and per core, from the job run with the fewest workers: ``read`` (Zarr read +
    decompression) and ``prep`` (everything but the network: job compute time minus the network
    time per core of the raw case with as many workers; saved runs before 2026-12-07 call it
    ``raw predict``, later ones ``bare network``). On N GPUs the network runs at
    ``N * gpu_rate`` (``gpu_rate_source`` says where that rate comes from) while reading and
    preprocessing stay on ``cores_per_gpu`` CPU cores per GPU, and the shared file system
    delivers ``disk_gb_per_s``.
    """
    jobs = [r for r in results if r["case"].startswith("predict_catalogue")]
    job1 = min(jobs, key=lambda r: r["workers"])
    raw1 = next(
        r
        for r in results
        if r["case"].startswith(("raw predict", "bare network")) and r["workers"] == job1["workers"]
    )
    read_s = job1["task_seconds_read"] / job1["n"]
    net_s = raw1["workers"] / raw1["spectra_per_s"]
    prep_s = max(job1["task_seconds_compute"] / job1["n"] - net_s, 0.0)
    rows = []
    for n_gpu in (0, 1, 4, 8, 16):
        cores = cores_per_gpu * max(n_gpu, 1)
        cpu_rate = cores / (read_s + prep_s + (net_s if n_gpu == 0 else 0.0))
        rates = {
            "cpu (read + prep" + (" + network)" if n_gpu == 0 else ")"): cpu_rate,
            "disk": disk_gb_per_s * 1e9 / bytes_per_star,
        }
        if n_gpu:
            rates["gpu network"] = n_gpu * gpu_rate
        bound = min(rates, key=rates.get)
        rows.append(
            {
                "gpus": n_gpu,
                "cpu_cores": cores,
                "bound_by": bound,
                "spectra_per_s": round(rates[bound]),
                "hours_for_20M": round(n_spectra / rates[bound] / 3600, 2),
                **{f"rate_{k}": round(v) for k, v in rates.items()},
            }
        )
    return {
        "n_spectra": n_spectra,
        "bytes_per_star_on_disk": round(bytes_per_star),
        "input_tb": round(n_spectra * bytes_per_star / 1e12, 2),
        "per_core_seconds_per_star": {"read": read_s, "prep": prep_s, "network_cpu": net_s},
        "gpu_rate": gpu_rate,
        "gpu_rate_source": gpu_rate_source,
        "assumed_disk_gb_per_s": disk_gb_per_s,
        "cores_per_gpu": cores_per_gpu,
        "rows": rows,
    }


def _ratios(results: list[dict]) -> dict:
    """Issue 21's ratios per worker count, all from this run: the job's steady rate over the public
    predict() and the public predict() over the bare network; and the job over the per-file loop."""
    by = {(r["case"].split(" (")[0], r["workers"]): r for r in results}
    ratios = {}
    for workers in sorted({r["workers"] for r in results if r["case"].startswith("predict_catalogue")}):
        job, public = by[("predict_catalogue", workers)], by[("public predict()", workers)]
        bare = by[("bare network", workers)]
        ratios[f"{workers} workers: job steady / public predict()"] = round(
            job["steady_spectra_per_s"] / public["spectra_per_s"], 3
        )
        ratios[f"{workers} workers: job end to end / public predict()"] = round(
            job["spectra_per_s"] / public["spectra_per_s"], 3
        )
        ratios[f"{workers} workers: public predict() / bare network"] = round(
            public["spectra_per_s"] / bare["spectra_per_s"], 3
        )
        if ("simple per-file loop", 1) in by:
            ratios[f"{workers} workers: job / simple per-file loop"] = round(
                job["spectra_per_s"] / by[("simple per-file loop", 1)]["spectra_per_s"], 1
            )
    return ratios


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=40_000, help="stars of the end-to-end catalogue")
    p.add_argument(
        "--n-raw", type=int, default=20_000, help="stars of the in-memory cases (shared by the processes)"
    )
    p.add_argument(
        "--n-files", type=int, default=300, help="FITS files of the simple per-file loop (0: skip it)"
    )
    p.add_argument(
        "--workers",
        type=int,
        nargs="+",
        default=[1, 2],
        help="worker (= process) counts (default 1 2)",
    )
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--out", default="benchmarks/results/catalogue.json")
    p.add_argument(
        "--workdir", default=None, help="where the catalogue is written (default: a temporary folder)"
    )
    p.add_argument(
        "--gpu-rate",
        type=float,
        default=100_000.0,
        help="network throughput of one GPU (spectra/s) for the 20-million plan (default: an assumed "
        "100,000; measure it with benchmarks.bench_predict_device)",
    )
    p.add_argument("--gpu-rate-source", default="assumed", help="where --gpu-rate comes from (recorded)")
    p.add_argument(
        "--replan",
        metavar="RESULTS.json",
        help="only recompute the 20-million plan of a saved run (e.g. with a measured --gpu-rate) and "
        "store it in that file as lamost_size_plan",
    )
    p.add_argument("--child-simple", nargs="*", help=argparse.SUPPRESS)
    p.add_argument("--child-raw", nargs=4, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.replan:
        saved = json.loads(Path(args.replan).read_text())
        plan = lamost_size_plan(
            saved["results"],
            bytes_per_star=saved["lamost_size_plan"]["bytes_per_star_on_disk"],
            gpu_rate=args.gpu_rate,
            gpu_rate_source=args.gpu_rate_source,
        )
        for row in plan["rows"]:
            print(json.dumps(row))
        saved["lamost_size_plan"] = plan
        Path(args.replan).write_text(json.dumps(saved, indent=1) + "\n")
        return
    if args.child_raw is not None:
        catalogue, start, stop, repeat = args.child_raw
        print(json.dumps(_raw_child(catalogue, int(start), int(stop), int(repeat))))
        return
    if args.child_simple is not None:
        print(json.dumps(_simple_child(args.child_simple)))
        return

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from distributed import Client, LocalCluster

    from lamost2csst.io import write_spectra
    from lamost2csst.io.lamost_export import export_lamost
    from lamost2csst.io.simulated import BLOCK_STARS, grid_catalogue
    from lamost2csst.parallel.predict import predict_catalogue

    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench_catalogue_"))
    work.mkdir(parents=True, exist_ok=True)
    catalogue = work / "catalogue.zarr"
    results = []

    def record(case, workers, n, seconds, **extra):
        results.append(
            {
                "case": case,
                "workers": workers,
                "n": n,
                "seconds": round(seconds, 3),
                "spectra_per_s": round(n / seconds, 1),
                **extra,
            }
        )
        print(json.dumps(results[-1]), flush=True)

    with (
        LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address=":0") as cluster,
        Client(cluster) as client,
    ):
        if not catalogue.exists():
            with client.as_current():
                write_spectra(grid_catalogue(args.n, seed=1, lazy=True), catalogue, chunk_stars=BLOCK_STARS)

    for workers in args.workers:
        for row in _raw_cases(catalogue, args.n_raw, workers, args.repeat):
            record(row["case"], workers, row["n"], row["seconds"])
        with (
            LocalCluster(
                n_workers=workers, threads_per_worker=1, host="127.0.0.1", dashboard_address=":0"
            ) as cluster,
            Client(cluster) as client,
        ):
            out = work / f"pred-{workers}.zarr"
            shutil.rmtree(out, ignore_errors=True)
            s = predict_catalogue(catalogue, out, client=client, progress=False)
            steady = s["stars_written"] / (s["seconds"] - s["seconds_setup"])
            record(
                "predict_catalogue (Zarr -> Zarr)",
                workers,
                s["stars_written"],
                s["seconds"],
                steady_spectra_per_s=round(steady, 1),
                worker_peak_rss_mb=s["worker_peak_rss_mb"],
                seconds_setup=s["seconds_setup"],
                **{k: v for k, v in s.items() if k.startswith("task_seconds_")},
            )

    if args.n_files:
        files = export_lamost(grid_catalogue(args.n_files, seed=2), work / "fits", layout="image")
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
        proc = subprocess.run(
            [sys.executable, "-m", "benchmarks.bench_catalogue", "--child-simple", *files],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
        simple = json.loads(proc.stdout.strip().splitlines()[-1])
        record(
            "simple per-file loop (read_lamost, prepare_inputs, model.predict)",
            1,
            simple["n"],
            simple["seconds"],
        )

    ratios = _ratios(results)
    print(json.dumps(ratios))
    bytes_per_star = sum(f.stat().st_size for f in catalogue.rglob("*") if f.is_file()) / args.n
    plan = lamost_size_plan(
        results, bytes_per_star=bytes_per_star, gpu_rate=args.gpu_rate, gpu_rate_source=args.gpu_rate_source
    )
    for row in plan["rows"]:
        print(json.dumps(row))
    record_file = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "command": " ".join(["python -m benchmarks.bench_catalogue", *(argv or sys.argv[1:])]),
        "results": results,
        "ratios": ratios,
        "lamost_size_plan": plan,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record_file, indent=1) + "\n")
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
