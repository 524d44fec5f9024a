"""Synspec sampling vs accuracy: seconds per model against the error of the grid products.

Run from the repository root (needs gfortran; builds Synspec and the line lists on first use)::

    python -m benchmarks.bench_synthesis                        # cool + hot model, default cases
    python -m benchmarks.bench_synthesis --models hot --cases 0.05 0.1
    python -m benchmarks.bench_synthesis --models cool --out /tmp/cool.json   # one model per process

For each model - cool (Teff 5000 K, log g 4.5, [M/H] 0) and hot (9000 K, 4.0, 0) - Synspec is
run once with a fine reference setting (``CASES['ref']``: SPACE 0.0025 A everywhere, NFREQS
30, i.e. short intervals so that continuum edges are not smeared) and then with each case
of ``--cases`` (``CASES``: a step in A or a step schedule over air wavelength, and NFREQS;
None = Synspec's default 120). Every spectrum goes through
:func:`lamost2csst.synth.reduce_model`. Columns: Synspec wall-clock seconds (one core; the
sum over segments for a schedule), and the maximum over pixels of

* ``sed``: |sed / sed_ref - 1| (R=200 on OUTPUT_WAVE, scaled at 5526-5586 A), with the
  wavelength where it occurs and the maximum above 3500 A,
* ``norm``: |n / n_ref - 1| with n = normalize(flux_in) (R=2000 on INPUT_WAVE divided by
  its 51-px moving-average continuum), with its wavelength,

against the targets 0.2 % (sed) and 0.5 % (normalized flux_in). The table is printed and
written as JSON (``--out``, default ``benchmarks/results/synthesis.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from lamost2csst.core import INPUT_WAVE, OUTPUT_WAVE, normalize
from lamost2csst.synth import load_model, reduce_model, run_synspec
from lamost2csst.synth.build import cache_root, ensure_synspec
from lamost2csst.synth.linelists import ensure_linelists

MODELS = {"cool": (5000.0, 4.5, 0.0, 0.0), "hot": (9000.0, 4.0, 0.0, 0.0)}
TARGET_SED = 0.002
TARGET_NORM = 0.005
#: Synspec settings compared: label -> (step or step schedule [(upper air A, step), ...], NFREQS).
#: NFREQS None = Synspec's default (120 frequency points per interval).
UV3 = ((3300.0, 0.01), (4500.0, 0.02), (None, 0.05))
UV4 = ((3000.0, 0.005), (4000.0, 0.01), (5000.0, 0.02), (None, 0.05))
UV3B = ((3300.0, 0.01, 40), (4500.0, 0.02, 40), (None, 0.05, None))  # short intervals in the blue only
UV3C = ((3300.0, 0.01, 60), (4500.0, 0.02, 60), (None, 0.05, None))
CASES = {
    "ref": (0.0025, 30),
    "0.01": (0.01, None),
    "0.02": (0.02, None),
    "0.03": (0.03, None),
    "0.05": (0.05, None),
    "0.1": (0.1, None),
    "0.2": (0.2, None),
    "0.01/nf40": (0.01, 40),
    "0.02/nf40": (0.02, 40),
    "0.05/nf40": (0.05, 40),
    "uv3/nf40": (UV3, 40),
    "uv4/nf40": (UV4, 40),
    "uv4/nf30": (UV4, 30),
    "uv3b": (UV3B, None),
    "uv3c": (UV3C, None),
}
DEFAULT_CASES = [
    "0.01",
    "0.02",
    "0.05",
    "0.1",
    "0.2",
    "0.02/nf40",
    "0.05/nf40",
    "uv3/nf40",
    "uv4/nf40",
    "uv3b",
    "uv3c",
]


def _describe(step) -> str:
    if np.isscalar(step):
        return f"{step:g}"
    parts = []
    for entry in step:
        text = f"{entry[1]:g}" + (f"<{entry[0]:g}" if entry[0] is not None else "")
        if len(entry) > 2 and entry[2] is not None:
            text += f"(nf{entry[2]})"
        parts.append(text)
    return "/".join(parts)


def _metrics(red, ref) -> dict:
    n, _ = normalize(red["flux_in"])
    n_ref, _ = normalize(ref["flux_in"])
    r_sed = np.abs(red["sed"] / ref["sed"] - 1.0)
    r_norm = np.abs(n / n_ref - 1.0)
    return {
        "sed_max_rel": float(r_sed.max()),
        "sed_worst_A": float(OUTPUT_WAVE[np.argmax(r_sed)]),
        "sed_max_rel_above_3500A": float(r_sed[OUTPUT_WAVE > 3500].max()),
        "norm_in_max_rel": float(r_norm.max()),
        "norm_in_worst_A": float(INPUT_WAVE[np.argmax(r_norm)]),
        "flux_in_max_rel": float(np.max(np.abs(red["flux_in"] / ref["flux_in"] - 1.0))),
    }


def _run(model, case):
    step, nfreqs = CASES[case]
    res = run_synspec(model, step=step, nfreqs=nfreqs)
    return res, reduce_model(res.wave, res.flux)


def _reference(name, model, cache_dir):
    """(n_points, seconds, reduced products) of the reference run, cached as .npz (slow: 5-8 min)."""
    step, nfreqs = CASES["ref"]
    path = None
    if cache_dir:
        path = Path(cache_dir) / f"bench-ref-{name}-{step:g}-{nfreqs}.npz"
        if path.is_file():
            d = np.load(path)
            return (
                int(d["n_points"]),
                float(d["seconds"]),
                {k: d[k] for k in ("flux_in", "flux_lamost", "sed")},
            )
    res, red = _run(model, "ref")
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, n_points=res.wave.size, seconds=res.seconds, **red)
    return int(res.wave.size), float(res.seconds), red


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_synthesis", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS), default=["cool", "hot"])
    parser.add_argument("--cases", nargs="+", choices=[c for c in CASES if c != "ref"], default=DEFAULT_CASES)
    parser.add_argument("--out", default=os.path.join("benchmarks", "results", "synthesis.json"))
    parser.add_argument("--ref-cache", default=str(cache_root() / "bench"), metavar="DIR",
                        help="keep the reference products here and reuse them "
                             "(default %(default)s; '' = never)")  # fmt: skip
    args = parser.parse_args(argv)

    install = ensure_synspec(verbose=True)
    ensure_linelists(verbose=True)
    rows = []
    print(f"reference: step {CASES['ref'][0]} A, NFREQS {CASES['ref'][1]}; "
          f"targets: sed {100 * TARGET_SED:g} %, "
          f"normalized flux_in {100 * TARGET_NORM:g} % (max over pixels)")  # fmt: skip
    print(f"{'model':5s} {'case':10s} {'step (A)':24s} {'nfreqs':>6s} {'n_points':>9s} {'sec':>6s} "
          f"{'sed%':>6s} {'@A':>6s} {'sed%>3500':>9s} {'norm%':>6s} {'@A':>6s}  ok", flush=True)  # fmt: skip
    for name in args.models:
        model = load_model(*MODELS[name])
        n_ref, sec_ref, ref_red = _reference(name, model, args.ref_cache)
        rows.append({"model": name, "params": MODELS[name], "case": "ref", "step": _describe(CASES["ref"][0]),
                     "nfreqs": CASES["ref"][1], "n_points": n_ref, "seconds": round(sec_ref, 2)})  # fmt: skip
        print(f"{name:5s} {'ref':10s} {_describe(CASES['ref'][0]):24s} {CASES['ref'][1]!s:>6s} {n_ref:9d} "
              f"{sec_ref:6.1f}", flush=True)  # fmt: skip
        for case in args.cases:
            step, nfreqs = CASES[case]
            res, red = _run(model, case)
            m = _metrics(red, ref_red)
            ok = m["sed_max_rel"] <= TARGET_SED and m["norm_in_max_rel"] <= TARGET_NORM
            rows.append({"model": name, "params": MODELS[name], "case": case, "step": _describe(step),
                         "nfreqs": nfreqs, "n_points": int(res.wave.size), "seconds": round(res.seconds, 2),
                         **m, "meets_targets": ok})  # fmt: skip
            print(
                f"{name:5s} {case:10s} {_describe(step):24s} {nfreqs!s:>6s} {res.wave.size:9d} "
                f"{res.seconds:6.1f} "
                f"{100 * m['sed_max_rel']:6.3f} {m['sed_worst_A']:6.0f} "
                f"{100 * m['sed_max_rel_above_3500A']:9.3f} "
                f"{100 * m['norm_in_max_rel']:6.3f} {m['norm_in_worst_A']:6.0f}  {'yes' if ok else 'no'}",
                flush=True,
            )
    result = {
        "benchmark": "bench_synthesis",
        "created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"node": platform.node(), "processor": _cpu(), "cpus": os.cpu_count()},
        "synspec_build": install.info,
        "targets": {"sed_max_rel": TARGET_SED, "norm_in_max_rel": TARGET_NORM},
        "reference": {"step": CASES["ref"][0], "nfreqs": CASES["ref"][1]},
        "rows": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(f"written {args.out}")
    return rows


def _cpu() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":
    t0 = time.perf_counter()
    main()
    print(f"total {time.perf_counter() - t0:.0f} s")
