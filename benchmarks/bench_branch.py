"""What the real-star branch costs in the forward pass: the shipped model (grid network + branch)
against its grid network alone, on the same inputs, in one process, side by side.

    python -m benchmarks.bench_branch --n 16384 --threads 1 --out benchmarks/results/branch_forward.json

Times ``lamost2csst.predict`` (batches of 1024, no model discrepancy) for the grid network
alone, the shipped model as real and as synthetic; best of ``--repeat`` runs each, interleaved.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from datetime import UTC, datetime

import numpy as np


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=16384, help="spectra per timed run")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--threads", type=int, default=1, help="TensorFlow threads")
    p.add_argument("--out", help="JSON file for the results")
    args = p.parse_args(argv)

    from lamost2csst.core.discrepancy import ModelDiscrepancy
    from lamost2csst.nn.inference import load_model, model_card, predict
    from lamost2csst.nn.model import ModelConfig, grid_network
    from lamost2csst.nn.setup import configure

    configure(threads=args.threads)
    shipped = load_model()
    config = ModelConfig.from_dict({**model_card()["model_config"], "domain_input": False})
    grid = grid_network(shipped, config)
    rng = np.random.default_rng(0)
    flux = (1 + 0.02 * rng.standard_normal((args.n, 2238))).astype(np.float32)
    error = np.full_like(flux, 0.02)
    none = ModelDiscrepancy.none()
    cases = {
        "grid network alone": lambda: predict(flux, error, model=grid, discrepancy=none),
        "shipped, real": lambda: predict(flux, error, model=shipped, discrepancy=none, domain="real"),
        "shipped, synthetic": lambda: predict(
            flux, error, model=shipped, discrepancy=none, domain="synthetic"
        ),
    }
    for run in cases.values():  # compile and warm
        run()
    best = {name: float("inf") for name in cases}
    for _ in range(args.repeat):
        for name, run in cases.items():
            t0 = time.perf_counter()
            run()
            best[name] = min(best[name], time.perf_counter() - t0)
    base = best["grid network alone"]
    rows = {
        name: {"us_per_spectrum": round(1e6 * t / args.n, 1), "ratio_to_grid_network": round(t / base, 3)}
        for name, t in best.items()
    }
    result = {
        "command": " ".join(["python -m benchmarks.bench_branch", *sys.argv[1:]]),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "processor": platform.processor()},
        "n": args.n,
        "threads": args.threads,
        "repeat": args.repeat,
        "results": rows,
    }
    print(json.dumps(result, indent=1))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
