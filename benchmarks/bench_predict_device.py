"""Throughput of ``lamost2csst.predict`` on the Keras backend and device at hand (e.g. a GPU).

GPU machines often carry JAX but not TensorFlow; ``lamost2csst.predict`` runs the same model
file under ``KERAS_BACKEND=jax`` (one ``jax.jit``), so the GPU rate of the survey's network can
be measured without TensorFlow. Two steps, from the repository root::

    # here (TensorFlow, CPU): 512 grid spectra at SNR 30 and the shipped model's predictions
    python -m benchmarks.bench_predict_device --make-inputs .device/predict_inputs.npz

    # on the device machine
    KERAS_BACKEND=jax python -m benchmarks.bench_predict_device --inputs .device/predict_inputs.npz \\
        --n 262144 --out benchmarks/results/predict_device.json

The measurement reports, per batch size, the best of ``--repeat`` timed runs of (a) the whole
``predict`` call (input validation + masked-pixel fill on the CPU, host-to-device copies, the
network, copies back) and (b) the network loop alone on prepared arrays; and how far the
predictions on this backend/device are from the TensorFlow-CPU reference (relative difference
of sed and sigma); on JAX at the matmul precision ``predict`` uses ("highest", full float32)
and at JAX's default (TF32 on recent GPUs).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np


def make_inputs(path: Path, *, n: int = 512, seed: int = 0) -> None:
    """Write ``n`` normalized grid spectra (SNR 30, Eq. 1 noise) and the shipped model's predictions."""
    import lamost2csst
    from lamost2csst.io.training import gridded_library
    from lamost2csst.nn.training import LibraryArrays, epoch_pairs

    ds = lamost2csst.load_grid()
    g = gridded_library(ds)
    lib = LibraryArrays(g.flux_in, g.input_mask, g.sed, g.target_mask, ds.teff.values)
    rng = np.random.default_rng(seed)
    data = epoch_pairs(lib.take(rng.integers(0, len(lib), n)), snrs=(30.0,), rng=rng)
    mask = np.zeros(data.flux.shape, bool)  # epoch_pairs fills masked pixels already
    sed, sigma = lamost2csst.predict(data.flux, data.error, mask=mask)
    path.parent.mkdir(parents=True, exist_ok=True)
    from lamost2csst.nn.inference import default_model_path, model_hash

    np.savez_compressed(
        path,
        flux=data.flux,
        error=data.error,
        mask=mask,
        sed=sed,
        sigma=sigma,
        model_hash=np.array(model_hash(default_model_path())),
    )
    print(f"wrote {path}: {n} spectra and the shipped model's predictions (TensorFlow, CPU)")


def _precisions(backend: str):
    """The JAX matmul precisions to measure (the backend's own on TensorFlow)."""
    return ["highest", "default"] if backend == "jax" else ["tensorflow"]


def _device_name(backend: str) -> str:
    if backend == "jax":
        import jax

        d = jax.devices()[0]
        return f"{d.platform}: {getattr(d, 'device_kind', d)}"
    return platform.processor() or platform.machine()


def _best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def measure(args) -> dict:
    import keras

    from lamost2csst.nn import inference
    from lamost2csst.nn.inference import _compiled_forward, load_model, predict, prepare_network_arrays

    backend = keras.backend.backend()
    ref = np.load(args.inputs)
    model = load_model(args.model)
    model_path = args.model or inference.default_model_path()
    ref_hash = str(ref["model_hash"]) if "model_hash" in ref else "unknown (made before hashes were stored)"
    if ref_hash != inference.model_hash(model_path):
        # the reference predictions came from another model: the differences below say nothing about precision
        print(
            f"WARNING: {args.inputs} holds the predictions of model {ref_hash}, not of {model_path}; "
            f"the *_rel_diff values compare two models: remake it with --make-inputs",
            file=sys.stderr,
            flush=True,
        )
    reps = -(-args.n // ref["flux"].shape[0])
    flux = np.tile(ref["flux"], (reps, 1))[: args.n]
    error = np.tile(ref["error"], (reps, 1))[: args.n]
    mask = np.tile(ref["mask"], (reps, 1))[: args.n]
    prepared = prepare_network_arrays(flux, error, mask=mask)
    results = []
    for precision in _precisions(backend):
        if backend == "jax":
            inference.JAX_MATMUL_PRECISION = precision
            _compiled_forward.cache_clear()
        sed, sigma = predict(ref["flux"], ref["error"], mask=ref["mask"], model=model)
        accuracy = {
            "sed_max_rel_diff": float(np.abs(sed / ref["sed"] - 1).max()),
            "sigma_max_rel_diff": float(np.abs(sigma / ref["sigma"] - 1).max()),
            "sed_median_rel_diff": float(np.median(np.abs(sed / ref["sed"] - 1))),
        }
        print(json.dumps({"precision": precision, **accuracy}), flush=True)
        forward = _compiled_forward(model)
        for batch in args.batches:

            def whole(batch=batch):
                predict(flux, error, mask=mask, model=model, batch_size=batch)

            def network(forward=forward, batch=batch):
                for start in range(0, args.n, batch):
                    forward(prepared[0][start : start + batch], prepared[1][start : start + batch])

            network()  # warm-up: compilation for this batch shape (and the remainder's)
            t_net = _best(network, args.repeat)
            t_all = _best(whole, args.repeat)
            row = {
                "precision": precision,
                "batch": batch,
                "n": args.n,
                "predict_spectra_per_s": round(args.n / t_all),
                "network_spectra_per_s": round(args.n / t_net),
                "predict_seconds": round(t_all, 3),
                "network_seconds": round(t_net, 3),
                **accuracy,
            }
            results.append(row)
            print(json.dumps(row), flush=True)
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "backend": backend,
        "device": _device_name(backend),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "keras": keras.__version__,
        "command": " ".join(["python -m benchmarks.bench_predict_device", *sys.argv[1:]]),
        "model": args.model or "shipped",
        "results": results,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--make-inputs", metavar="NPZ", type=Path, help="write the reference inputs and stop")
    p.add_argument(
        "--n-inputs", type=int, default=512, help="spectra in the reference inputs (--make-inputs)"
    )
    p.add_argument("--inputs", type=Path, default=Path(".device/predict_inputs.npz"))
    p.add_argument("--n", type=int, default=65536, help="spectra per timed run (the inputs, tiled)")
    p.add_argument("--batches", type=int, nargs="+", default=[1024, 4096, 16384, 65536])
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--model", default=None, help="model file (default: the shipped model)")
    p.add_argument("--out", type=Path, default=None, help="JSON record of the run")
    args = p.parse_args(argv)
    if args.make_inputs:
        make_inputs(args.make_inputs, n=args.n_inputs)
        return 0
    if not args.inputs.exists():
        p.error(f"{args.inputs} does not exist; make it first with --make-inputs {args.inputs}")
    record = measure(args)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(record, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
