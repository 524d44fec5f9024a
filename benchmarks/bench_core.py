"""Throughput of the spectral core on (n_star, n_pixel) float32 blocks, against the simple way.

Run from the repository root::

    python -m benchmarks.bench_core                 # 100,000 spectra, 2 threads
    python -m benchmarks.bench_core --n 20000       # quicker

Every case processes the same spectra in blocks of ``--block`` stars spread over
``--threads`` threads; every timing is the best of ``--repeat`` runs (as Dask's threaded
workers would; numpy releases the GIL), with BLAS limited to one thread per worker thread.
The "simple way" baselines are the
per-spectrum loops a user would write; they run on ``--loop-n`` spectra and are reported
as spectra per second, so the ratio is independent of n.

The memory-bandwidth bound of a case is ``bandwidth / bytes that must cross memory per
spectrum`` (inputs read once, outputs written once), with the bandwidth measured in the
same run as a two-thread ``numpy.copyto`` of 1 GB (bytes read + written).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter1d
from threadpoolctl import threadpool_limits

from lamost2csst.core import (
    INPUT_WAVE,
    LAMOST_WAVE,
    OUTPUT_WAVE,
    _compiled,
    degrade,
    lsf_sigma,
    normalize,
    prepare_inputs,
    resample,
)

C_KMS = 299_792.458


def make_spectra(n: int, *, seed: int = 0):
    """Smooth positive LAMOST-grid spectra with absorption lines, ivar, z (float32)."""
    rng = np.random.default_rng(seed)
    x = (LAMOST_WAVE - 6400.0) / 2700.0
    slope = rng.uniform(-0.8, 0.8, (n, 1)).astype(np.float32)
    curve = rng.uniform(-0.3, 0.3, (n, 1)).astype(np.float32)
    flux = (1.0 + slope * x + curve * x**2).astype(np.float32)
    for line in (4102.9, 4341.7, 4862.7, 5891.6, 6564.6, 8544.4):
        depth = rng.uniform(0.1, 0.6, (n, 1)).astype(np.float32)
        flux *= 1.0 - depth * np.exp(-0.5 * ((LAMOST_WAVE - line) / 3.0) ** 2).astype(np.float32)
    snr = rng.uniform(10, 100, (n, 1)).astype(np.float32)
    ivar = (snr / flux) ** 2
    flux += rng.standard_normal(flux.shape, dtype=np.float32) * flux / snr
    z = rng.normal(0.0, 50.0 / C_KMS, n)
    return flux, ivar.astype(np.float32), z


REPEAT = 3  # every timing is the best of REPEAT runs (set by --repeat)


def blocked(fn, n: int, *, block: int, threads: int) -> float:
    """Best seconds to run fn(slice) over all blocks of n stars on ``threads`` threads."""
    slices = [slice(s, min(s + block, n)) for s in range(0, n, block)]
    best = np.inf
    with threadpool_limits(limits=1, user_api="blas"):
        fn(slices[0])  # warm-up: operator caches, compilation, page faults of the output
        for _ in range(REPEAT):
            start = time.perf_counter()
            with ThreadPoolExecutor(threads) as pool:
                list(pool.map(fn, slices))
            best = min(best, time.perf_counter() - start)
    return best


def looped(fn, n_loop: int) -> float:
    """Best seconds of a per-spectrum loop over n_loop spectra."""
    fn(0)
    best = np.inf
    for _ in range(REPEAT):
        start = time.perf_counter()
        for i in range(n_loop):
            fn(i)
        best = min(best, time.perf_counter() - start)
    return best


def copy_bandwidth(threads: int) -> float:
    """Bytes per second read + written by numpy.copyto over 1 GB split on ``threads`` threads."""
    a = np.ones(2**28, np.float32)
    b = np.empty_like(a)
    parts = np.array_split(np.arange(a.size), threads)
    bounds = [(p[0], p[-1] + 1) for p in parts]
    np.copyto(b, a)
    best = np.inf
    for _ in range(3):
        start = time.perf_counter()
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(lambda lo_hi: np.copyto(b[lo_hi[0] : lo_hi[1]], a[lo_hi[0] : lo_hi[1]]), bounds))
        best = min(best, time.perf_counter() - start)
    return 2 * a.nbytes / best


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=100_000, help="spectra per case (default 100000)")
    parser.add_argument("--loop-n", type=int, default=2000, help="spectra for the per-spectrum baselines")
    parser.add_argument("--threads", type=int, default=2, help="worker threads (default 2)")
    parser.add_argument("--block", type=int, default=2048, help="stars per block (default 2048)")
    parser.add_argument(
        "--repeat", type=int, default=3, help="timings are the best of this many runs (default 3)"
    )
    parser.add_argument("--out", type=Path, default=None, help="JSON file for the results")
    args = parser.parse_args(argv)
    global REPEAT
    REPEAT = max(1, args.repeat)
    n, threads, block = args.n, args.threads, args.block

    t0 = time.perf_counter()
    flux, ivar, z = make_spectra(n)
    print(f"made {n} spectra of {LAMOST_WAVE.size} px in {time.perf_counter() - t0:.1f} s", flush=True)
    on_input = np.empty((n, INPUT_WAVE.size), np.float32)
    err_input = np.empty_like(on_input)
    bandwidth = copy_bandwidth(threads)
    print(
        f"compiled kernels (numba): {'yes' if _compiled.AVAILABLE else 'no (numpy reference path)'}",
        flush=True,
    )
    rows = []

    def record(case, ours_s, simple_s, simple_n, bytes_per_spectrum, note):
        ours = n / ours_s
        simple = simple_n / simple_s if simple_s else None
        bound = bandwidth / bytes_per_spectrum
        rows.append(
            {
                "case": case,
                "ours_spectra_per_s": ours,
                "simple_spectra_per_s": simple,
                "speedup": ours / simple if simple else None,
                "bandwidth_bound_spectra_per_s": bound,
                "fraction_of_bound": ours / bound,
                "note": note,
            }
        )
        print(json.dumps(rows[-1]), flush=True)

    # 1. resample LAMOST grid -> INPUT_WAVE, rest frame, flux-conserving, with ivar
    def ours_resample(s):
        r = resample(LAMOST_WAVE, flux[s], wave_out=INPUT_WAVE, ivar=ivar[s], z=z[s])
        on_input[s] = r.flux
        err_input[s] = np.where(r.mask, np.inf, 1.0 / np.sqrt(np.maximum(r.ivar, 1e-30)))

    def simple_resample(i):
        np.interp(INPUT_WAVE * (1.0 + z[i]), LAMOST_WAVE, flux[i])

    t_ours = blocked(ours_resample, n, block=block, threads=threads)
    t_simple = looped(simple_resample, args.loop_n)
    record(
        "resample (flux-conserving, z, ivar+mask)",
        t_ours,
        t_simple,
        args.loop_n,
        2 * 4 * LAMOST_WAVE.size + 2 * 4 * INPUT_WAVE.size + INPUT_WAVE.size,
        "simple = per-spectrum np.interp (linear, no errors, no masks)",
    )

    def ours_resample_flux(s):
        on_input[s] = resample(LAMOST_WAVE, flux[s], wave_out=INPUT_WAVE, z=z[s]).flux

    t_ours = blocked(ours_resample_flux, n, block=block, threads=threads)
    record(
        "resample (flux-conserving, z, flux only)",
        t_ours,
        t_simple,
        args.loop_n,
        4 * LAMOST_WAVE.size + 4 * INPUT_WAVE.size + INPUT_WAVE.size,
        "simple = per-spectrum np.interp (linear)",
    )

    # 2. normalize on INPUT_WAVE
    normed = np.empty_like(on_input)

    def ours_normalize(s):
        normed[s] = normalize(on_input[s])[0]

    def simple_normalize(i):
        f = on_input[i]
        counts = np.convolve(np.ones_like(f), np.ones(51), mode="same")
        f / (np.convolve(f, np.ones(51), mode="same") / counts)

    t_ours = blocked(ours_normalize, n, block=block, threads=threads)
    t_simple = looped(simple_normalize, args.loop_n)
    record(
        "normalize (window 51, edge rule)",
        t_ours,
        t_simple,
        args.loop_n,
        2 * 4 * INPUT_WAVE.size,
        "simple = per-spectrum np.convolve",
    )

    # 3. degrade INPUT_WAVE R=2000 -> OUTPUT_WAVE R=200
    degraded = np.empty((n, OUTPUT_WAVE.size), np.float32)

    def ours_degrade(s):
        degraded[s] = degrade(
            INPUT_WAVE, normed[s], resolution=200, input_resolution=2000, wave_out=OUTPUT_WAVE
        )

    sigma_px = lsf_sigma(200, 2000) * 4000.0  # INPUT_WAVE has d ln(lambda) = 1/4000

    def simple_degrade(i):
        smooth = gaussian_filter1d(normed[i], sigma_px, mode="nearest")
        np.interp(OUTPUT_WAVE, INPUT_WAVE, smooth, left=np.nan, right=np.nan)

    t_ours = blocked(ours_degrade, n, block=block, threads=threads)
    t_simple = looped(simple_degrade, args.loop_n)
    record(
        "degrade R=2000 -> R=200 onto OUTPUT_WAVE",
        t_ours,
        t_simple,
        args.loop_n,
        4 * INPUT_WAVE.size + 4 * OUTPUT_WAVE.size,
        "simple = per-spectrum gaussian_filter1d + np.interp (no edge renormalization)",
    )

    # 4. the network input: resample + normalize, the target case (>= 100,000 spectra/s)
    def ours_inputs(s):
        r = prepare_inputs(LAMOST_WAVE, flux[s], ivar=ivar[s], z=z[s])
        normed[s] = r.flux
        err_input[s] = r.error

    def simple_inputs(i):
        simple_resample(i)
        simple_normalize(i)

    t_ours = blocked(ours_inputs, n, block=block, threads=threads)
    t_simple = looped(simple_inputs, args.loop_n)
    record(
        "normalize + resample (prepare_inputs: z, ivar, masks; cubic, the default)",
        t_ours,
        t_simple,
        args.loop_n,
        2 * 4 * LAMOST_WAVE.size + 2 * 4 * INPUT_WAVE.size + INPUT_WAVE.size,
        "simple = per-spectrum np.interp + np.convolve, no errors",
    )

    def ours_inputs_rebin(s):
        r = prepare_inputs(LAMOST_WAVE, flux[s], ivar=ivar[s], z=z[s], method="flux")
        normed[s] = r.flux
        err_input[s] = r.error

    t_ours = blocked(ours_inputs_rebin, n, block=block, threads=threads)
    record(
        "normalize + resample (prepare_inputs: z, ivar, masks; method='flux')",
        t_ours,
        t_simple,
        args.loop_n,
        2 * 4 * LAMOST_WAVE.size + 2 * 4 * INPUT_WAVE.size + INPUT_WAVE.size,
        "simple = per-spectrum np.interp + np.convolve, no errors",
    )

    def ours_inputs_flux(s):
        r = resample(LAMOST_WAVE, flux[s], wave_out=INPUT_WAVE, z=z[s])
        normed[s] = normalize(r.flux, mask=r.mask)[0]

    t_ours = blocked(ours_inputs_flux, n, block=block, threads=threads)
    record(
        "normalize + resample (z, flux only)",
        t_ours,
        t_simple,
        args.loop_n,
        4 * LAMOST_WAVE.size + 4 * INPUT_WAVE.size + INPUT_WAVE.size,
        "simple = per-spectrum np.interp + np.convolve",
    )

    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.processor() or 'cpu'}",
        "python": platform.python_version(),
        "numpy": np.__version__,
        "n": n,
        "threads": threads,
        "block": block,
        "repeat": REPEAT,
        "numba": _compiled.AVAILABLE,
        "copy_bandwidth_GBps": bandwidth / 1e9,
        "rows": rows,
    }
    print()
    print(f"memory bandwidth (copy, read+write, {threads} threads): {bandwidth / 1e9:.1f} GB/s")
    print(
        "| case | ours (spectra/s) | simple way (spectra/s) | ratio "
        "| bandwidth bound (spectra/s) | ours / bound |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        simple = f"{r['simple_spectra_per_s']:,.0f}" if r["simple_spectra_per_s"] else "-"
        ratio = f"{r['speedup']:.1f}x" if r["speedup"] else "-"
        print(
            f"| {r['case']} | {r['ours_spectra_per_s']:,.0f} | {simple} | {ratio} | "
            f"{r['bandwidth_bound_spectra_per_s']:,.0f} | {r['fraction_of_bound']:.2f} |"
        )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
