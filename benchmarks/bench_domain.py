"""Cost of the domain check per spectrum, beside the network's own forward pass, on one core.

Run from the repository root::

    python -m benchmarks.bench_domain              # 4,096 spectra
    python -m benchmarks.bench_domain --n 1024     # quicker

One process, one thread everywhere (BLAS via threadpoolctl, TensorFlow intra/inter-op 1: the
job's layout of one single-threaded worker per core), the same inputs for every case: grid
models observed through the survey job's input path at S/N 20-50. Cases, each the best of
``--repeat`` runs after a warm-up, in blocks of ``--block`` stars:

* ``domain check``: :func:`lamost2csst.core.domain.spectrum_color` of the observed spectra and
  :func:`lamost2csst.core.domain.estimate_domain` with the shipped model's templates (float32
  products), as the job runs them;
* ``domain check, float64``: the same check with its chi-square products in float64 (the
  alternative);
* ``network``: :func:`lamost2csst.nn.inference.predict` of the same inputs (batch = block).

Prints one JSON line per case and writes ``benchmarks/results/domain.json``.
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


def _inputs(n: int, seed: int):
    import lamost2csst
    from lamost2csst.core import LAMOST_WAVE, prepare_inputs
    from lamost2csst.core.simulate import C_KMS, draw_radial_velocities, observe_spectra

    grid = lamost2csst.load_grid()
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, grid.sizes["model"], n)
    z = draw_radial_velocities(n, rng) / C_KMS
    snr = rng.uniform(20, 50, n)
    clean = grid["flux_lamost"].values[pick]
    flux, ivar, mask = observe_spectra(clean, wave=LAMOST_WAVE, z=z, snr=snr, scale=np.ones(n), rng=rng)
    net = prepare_inputs(LAMOST_WAVE, flux, ivar=ivar, z=z, mask=mask)
    return net, (flux, mask, z)


def _chi2_float64(flux_b, error_b, usable, *, templates, floor):
    """The chi-square of :func:`lamost2csst.core.domain.template_chi2` in float64 (the alternative)."""
    w = np.where(usable, 1.0 / (error_b**2 + floor**2), 0.0)
    d = np.where(usable, flux_b - 1.0, 0.0)
    dt = np.asarray(templates, dtype=np.float64) - 1.0
    return (w * d * d).sum(axis=1)[:, None] - 2.0 * (w * d) @ dt.T + w @ (dt * dt).T


def _best(call, repeat: int) -> float:
    call()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return min(times)


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=4096, help="spectra (default %(default)s)")
    parser.add_argument("--block", type=int, default=1024, help="stars per block (default %(default)s)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per case (default %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="benchmarks/results/domain.json")
    args = parser.parse_args(argv)

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf
    from threadpoolctl import threadpool_limits

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    from lamost2csst.core import LAMOST_WAVE
    from lamost2csst.core.domain import estimate_domain, spectrum_color
    from lamost2csst.nn.inference import default_model_path, load_model, predict
    from lamost2csst.parallel.predict_tasks import domain_templates_for

    net, (flux, mask, z) = _inputs(args.n, args.seed)
    t0 = time.perf_counter()
    templates = domain_templates_for(str(default_model_path()))
    seconds_templates = time.perf_counter() - t0
    model = load_model()
    blocks = [slice(i, min(i + args.block, args.n)) for i in range(0, args.n, args.block)]

    def domain():
        for b in blocks:
            color = spectrum_color(LAMOST_WAVE, flux[b], mask=mask[b], z=z[b])
            estimate_domain(net.flux[b], net.error[b], mask=net.mask[b], templates=templates, color=color)

    def domain64():
        import lamost2csst.core.domain as kernel

        fast, kernel.template_chi2 = kernel.template_chi2, _chi2_float64
        try:
            domain()
        finally:
            kernel.template_chi2 = fast

    def network():
        predict(net.flux, net.error, mask=net.mask, model=model, batch_size=args.block)

    results = []
    with threadpool_limits(1):
        cases = (("domain check", domain), ("domain check, float64", domain64), ("network", network))
        for name, call in cases:
            seconds = _best(call, args.repeat)
            results.append({"case": name, "n": args.n, "us_per_spectrum": round(1e6 * seconds / args.n, 1)})
    network_us = results[-1]["us_per_spectrum"]
    for row in results:
        row["ratio_to_network"] = round(row["us_per_spectrum"] / network_us, 3)
        print(json.dumps(row))
    record = {
        "benchmark": "bench_domain",
        "command": " ".join(["python -m benchmarks.bench_domain", *(sys.argv[1:] if argv is None else argv)]),
        "date_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpus": os.cpu_count(),
        },
        "templates": {
            **templates.provenance,
            "n": int(templates.flux.shape[0]),
            "seconds_to_build": round(seconds_templates, 2),
        },
        "results": results,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=1) + "\n")
    return results


if __name__ == "__main__":
    main()
