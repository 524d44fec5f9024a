"""Inference speed of UaRA-net on this machine: ``lamost2csst.predict`` vs the alternatives.

Run from the repository root::

    python -m benchmarks.bench_predict                # 20,000 spectra, shipped model
    python -m benchmarks.bench_predict --n 5000 --model runs/x/best.keras

Every case runs in its own process (TensorFlow's thread pools are fixed at start-up) on the
same spectra (normalized grid spectra with Eq. 1 noise at SNR 20-40) and reports the best of
``--repeat`` timed runs after one warm-up call:

* ``predict``: the project's loop (one ``tf.function`` forward per batch), batch 256 / 1024 / 4096;
* ``keras_predict``: ``model.predict(..., batch_size=1024)`` (what a user would write);
* ``predict, 1 thread``: intra/inter-op threads 1 (one process per core is the Dask layout);
* ``2 x 1-thread processes``: two such processes at once on halves of the data (aggregate).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path


def _data(n, seed=0):
    import numpy as np

    import lamost2csst
    from lamost2csst.io.training import gridded_library
    from lamost2csst.nn.training import LibraryArrays, epoch_pairs

    ds = lamost2csst.load_grid()
    g = gridded_library(ds)
    lib = LibraryArrays(g.flux_in, g.input_mask, g.sed, g.target_mask, ds.teff.values)
    rng = np.random.default_rng(seed)
    star = rng.integers(0, len(lib), n)
    data = epoch_pairs(lib.take(star), snrs=(float(rng.choice([20, 30, 40])),), rng=rng)
    return data.flux, data.error


def _case(args):
    """Child process: time one case, print one JSON line."""
    threads = args.threads
    if threads:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    from lamost2csst.nn.inference import load_model, predict

    flux, error = _data(args.n, seed=args.seed)
    if args.half is not None:
        h = args.n // 2
        flux, error = (flux[:h], error[:h]) if args.half == 0 else (flux[h:], error[h:])
    model = load_model(args.model)
    if args.case == "keras_predict":

        def call():
            model.predict({"flux": flux, "error": error}, batch_size=1024, verbose=0)
    else:

        def call():
            predict(flux, error, model=model, batch_size=args.batch)

    call()  # warm-up: tracing
    best = min(_timed(call) for _ in range(args.repeat))
    print(
        json.dumps(
            {
                "case": args.case,
                "batch": args.batch,
                "threads": threads,
                "n": int(flux.shape[0]),
                "seconds": best,
                "spectra_per_s": flux.shape[0] / best,
            }
        )
    )


def _timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def _child(extra, args):
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.bench_predict",
        "--child",
        "--n",
        str(args.n),
        "--repeat",
        str(args.repeat),
        "--seed",
        str(args.seed),
        *extra,
    ]
    if args.model:
        cmd += ["--model", args.model]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=20000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model", default=None)
    p.add_argument("--out", default="benchmarks/results/predict.json")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--case", default="predict", help=argparse.SUPPRESS)
    p.add_argument("--batch", type=int, default=1024, help=argparse.SUPPRESS)
    p.add_argument("--threads", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--half", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        _case(args)
        return
    results = []
    plans = [
        ["--batch", "256"],
        ["--batch", "1024"],
        ["--batch", "4096"],
        ["--case", "keras_predict"],
        ["--batch", "1024", "--threads", "1"],
    ]
    for extra in plans:
        out, _ = _child(extra, args).communicate()
        results.append(json.loads(out.strip().splitlines()[-1]))
        print(results[-1], flush=True)
    pair = [_child(["--batch", "1024", "--threads", "1", "--half", str(h)], args) for h in (0, 1)]
    halves = [json.loads(proc.communicate()[0].strip().splitlines()[-1]) for proc in pair]
    slowest = max(h["seconds"] for h in halves)
    results.append(
        {
            "case": "2 x 1-thread processes",
            "batch": 1024,
            "threads": 1,
            "n": sum(h["n"] for h in halves),
            "seconds": slowest,
            "spectra_per_s": sum(h["n"] for h in halves) / slowest,
        }
    )
    print(results[-1])
    record = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "command": " ".join(["python -m benchmarks.bench_predict", *(argv or sys.argv[1:])]),
        "model": args.model or "shipped",
        "results": results,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
