"""Dask job: slitless observations + predicted SEDs -> the 3D flat-field cube (Zarr).

Per (band, detector, wavelength), a weighted least-squares 2D Legendre polynomial of the flux
ratios ``observed / (scale * predicted SED)`` across detector positions
(:mod:`lamost2csst.core.flatfield`), with iterative sigma clipping.

How the work is laid out (nothing is gathered on one worker):

1. one task per chunk of observations reads its observations, joins them with their
   predictions by ``obsid``, forms ratios and weights and returns the *normal equations* of
   its observations per (band, detector) -- small matrices, whatever the number of
   observations; each task also saves them under ``<out>/.work/iter-<k>/chunk-<i>.npz``, so a
   rerun with ``resume=True`` reuses finished chunks. Each worker opens the observation
   arrays once per build and, when the predictions' ``sed`` and ``sigma`` fit in
   :data:`PREDICTIONS_CACHE_BYTES`, reads them once per build too (a chunk's stars are spread
   over the whole predictions store: read per task, nearly every prediction chunk would be
   decoded again by every task); during a build the workers keep the memory their tasks
   free for the next task instead of returning it at once (Dask's ``MALLOC_TRIM_THRESHOLD_``
   makes every large array fresh pages), and return it at the end; the workers' memory stays
   flat in the number of observations;
2. a tree reduction on the workers adds the chunks' normal equations pairwise;
3. the client solves the small systems (coefficients, covariances); the next iteration's
   tasks receive the coefficients and leave out observations further than ``kappa`` sigma.

Observations that cannot be used are counted, never silently dropped: no prediction for the
obsid, a prediction with quality flags, a position off the detector, no known scale, no
finite flux. Wavelengths of a (band, detector) with fewer than ``min_stars`` observations are
marked unfit (``fit = False``, NaN coefficients).

This module only decides where and when things run: every number (ratios, clipping, normal
equations, the self-calibration's scales, the flat's error propagation, the truth statistics)
is computed by :mod:`lamost2csst.core.flatfield`; the stores (the cube, its work area, the
inputs) are :mod:`lamost2csst.io.flatcube` and :mod:`lamost2csst.io.observations`.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from dataclasses import dataclass

import numpy as np
import xarray as xr
import zarr

from lamost2csst.core.flatfield import (
    GROUPS,
    REJECT_REASONS,
    add_star_sums,
    chunk_equations,
    design_matrix,
    initial_scales,
    normalized_flat,
    polynomial_terms,
    reduced_chi2,
    solve,
    truth_deviation,
    updated_scales,
)
from lamost2csst.core.grids import BANDS, OUTPUT_WAVE
from lamost2csst.core.slitless import DETECTOR_SHAPE, DETECTORS_PER_BAND
from lamost2csst.errors import InputError
from lamost2csst.io.flatcube import (
    FLATCUBE_SCHEMA,
    flatcube_dataset,
    load_partial,
    open_inputs,
    prediction_rows,
    prepare_work_area,
    save_partial,
    work_path,
    write_flatcube,
)
from lamost2csst.io.observations import OBSERVATIONS_SCHEMA, detector_grid, read_scales, read_truth
from lamost2csst.io.regions import read_region
from lamost2csst.io.storage import exists, resolve
from lamost2csst.parallel.chunks import LOG, chunk_ranges, missing_chunks
from lamost2csst.parallel.locking import output_lock
from lamost2csst.parallel.runtime import keep_freed_memory, peak_rss_mb, release_freed_memory

__all__ = ["FLATCUBE_SCHEMA", "build_flatcube", "flat_chunk"]


_NAMES = ("obsid", "band", "detector", "x", "y", "scale", "flux", "error")  # what a task reads
#: Largest predictions store (decoded ``sed`` + ``sigma``) that each worker keeps in memory during a
#: build, instead of reading in every task the prediction rows of its observations: those rows
#: are spread over the whole store, so each task would decode nearly all of its chunks.
PREDICTIONS_CACHE_BYTES = 512 * 2**20
_BUILD: dict = {}  # per worker process, the current build only: token, observation arrays, predictions
_BUILD_LOCK = threading.Lock()


def flat_chunk(
    index: int,
    start: int,
    stop: int,
    *,
    observations: str,
    predictions: str,
    pred_index,
    order: int,
    out: str,
    iteration: int,
    fits: dict | None,
    kappa: float,
    star_scales=None,
    build: tuple | None = None,
) -> dict:
    """One task: the normal equations per (band, detector) of observations ``start:stop`` (+ counts).

    With ``star_scales`` (sorted obsid, scale: the self-calibration's current per-star
    scales) those replace the store's ``scale``, and the task also returns, per star, the
    sums that update its scale against the previous fits (``star_sums``).

    With ``build = (token, n_star or None)`` (one token per build) the worker opens the
    observation arrays once for all its tasks of that build and, with ``n_star`` (the
    predictions' stars, when they fit :data:`PREDICTIONS_CACHE_BYTES`), reads the
    predictions' ``sed``, ``sigma`` and ``flags`` once; without it each task opens the
    store and reads the prediction rows it needs.
    """
    path = work_path(out, iteration, index)
    if os.path.exists(path):  # finished by an earlier run (resume)
        return load_partial(path, REJECT_REASONS)
    result = _chunk_result(
        start,
        stop,
        observations=observations,
        predictions=predictions,
        pred_index=pred_index,
        state=_build_state(observations, predictions, build) if build is not None else None,
        equations={"order": order, "fits": fits, "kappa": kappa},
        star_scales=star_scales,
    )
    save_partial(path, result)
    return result


def _chunk_result(
    start: int, stop: int, *, observations, predictions, pred_index, state, equations: dict, star_scales
) -> dict:
    """What :func:`flat_chunk` returns: reads, joins, :func:`chunk_equations` (``equations``: order,
    fits, kappa)."""
    if state is None:
        obs = read_region(observations, start, stop, _NAMES, dim="obs")
    else:
        obs = {name: array[start:stop] for name, array in state["arrays"].items()}
    # vlen strings come back as StringDType
    obs["band"] = np.array([str(b) for b in obs["band"]], dtype=object)
    obs["detector"] = obs["detector"].astype(np.int64)
    found, sed, sigma, flags, where = _prediction_rows(predictions, obs["obsid"], pred_index, state)
    scale = _lookup(star_scales, obs["obsid"]) if star_scales is not None else obs["scale"].astype(np.float64)
    result = {"n_obs": stop - start, "peak_rss_mb": 0.0}
    result.update(
        chunk_equations(
            obs,
            found=found,
            flags=flags,
            where=where,
            sed=sed,
            sigma=sigma,
            scale=scale,
            **equations,
            self_calibrate=star_scales is not None,
        )
    )
    result["peak_rss_mb"] = peak_rss_mb()
    return result


def _end_build() -> None:
    """On a worker, after a build: drop its state (:func:`_build_state`), release freed memory."""
    with _BUILD_LOCK:
        _BUILD.clear()
    release_freed_memory()


def _build_state(observations: str, predictions: str, build: tuple) -> dict:
    """This worker's state of build ``build = (token, n_star or None)``, made by its first task.

    ``arrays``: the observation store's arrays (:data:`_NAMES`, opened once: opening costs
    more than reading a task's rows of the small ones); ``predictions``: ``(sed, sigma,
    flags)`` of the whole predictions store, or None.
    """
    token, n_star = build
    with _BUILD_LOCK:
        if _BUILD.get("token") != token:
            _BUILD.clear()  # an earlier build's arrays are dropped first
            keep_freed_memory()
            group = zarr.open_group(observations, mode="r")
            arrays = {name: group[name] for name in _NAMES if name in group}
            stored = None
            if n_star is not None:
                stored = read_region(predictions, 0, n_star, ("sed", "sigma", "flags"), dim="star")
                stored = (stored["sed"], stored["sigma"], stored["flags"])
            _BUILD.update(token=token, arrays=arrays, predictions=stored)
        return dict(_BUILD)


def _prediction_rows(predictions: str, obsid: np.ndarray, index: tuple, state: dict | None):
    """:func:`lamost2csst.io.flatcube.prediction_rows`, from the worker's copy of the predictions if any.

    With the whole store in memory, ``sed``, ``sigma`` and ``flags`` are the store's arrays and
    ``where`` the store rows of the observations.
    """
    if state is None or state["predictions"] is None:
        return prediction_rows(predictions, obsid, index)
    sed, sigma, flags = state["predictions"]
    sorted_obsid, order = index
    pos = np.clip(np.searchsorted(sorted_obsid, obsid), 0, max(sorted_obsid.size - 1, 0))
    found = (sorted_obsid[pos] == obsid) if sorted_obsid.size else np.zeros(obsid.size, bool)
    return found, sed, sigma, flags, np.where(found, order[pos], 0)


def _lookup(table, obsid: np.ndarray) -> np.ndarray:
    """Values of ``table = (sorted obsid, values)`` at ``obsid`` (NaN where absent)."""
    keys, values = table
    pos = np.clip(np.searchsorted(keys, obsid), 0, max(keys.size - 1, 0))
    found = (keys[pos] == obsid) if keys.size else np.zeros(obsid.size, bool)
    return np.where(found, values[pos] if keys.size else np.nan, np.nan)


def _add(a: dict, b: dict) -> dict:
    """Tree-reduction step: the sum of two chunk results."""
    groups = dict(a["groups"])
    for key, eq in b["groups"].items():
        groups[key] = groups[key] + eq if key in groups else eq
    return {
        "n_obs": a["n_obs"] + b["n_obs"],
        "clipped": a["clipped"] + b["clipped"],
        "peak_rss_mb": max(a["peak_rss_mb"], b["peak_rss_mb"]),
        "counts": {k: a["counts"][k] + b["counts"][k] for k in REJECT_REASONS},
        "groups": groups,
        "star_sums": add_star_sums(a["star_sums"], b["star_sums"]),
    }


def _with_progress(future, bar):
    def done(f):
        bar.update(1)
        event = "chunk_done" if f.status == "finished" else "chunk_failed"
        log = LOG.info if event == "chunk_done" else LOG.error
        log(json.dumps({"event": event, "job": "build_flatcube", "key": str(f.key)}))

    future.add_done_callback(done)
    return future


def _tree_sum(client, futures):
    while len(futures) > 1:
        # priority: an addition runs as soon as its two inputs exist, before further chunks, so
        # that finished chunks' matrices do not pile up on the workers
        pairs = [
            client.submit(_add, futures[i], futures[i + 1], pure=False, priority=100)
            for i in range(0, len(futures) - 1, 2)
        ]
        futures = pairs + ([futures[-1]] if len(futures) % 2 else [])  # the previous level is dropped here
    return futures.pop().result()


def _open_checked(observations: str, predictions: str):
    """The observation and prediction stores, opened and checked (InputError naming what to fix)."""
    try:
        obs, pred = open_inputs(observations, predictions)
    except InputError as err:
        raise InputError(str(err)) from None
    if "chunk_stars" in pred.attrs:  # written by the catalogue job: every chunk must be marked done
        missing = missing_chunks(predictions, pred.sizes["star"], int(pred.attrs["chunk_stars"]))
        if missing:
            raise InputError(
                f"predictions {predictions} are unfinished: {len(missing)} chunk(s) not written (first: "
                f"{missing[0]}); finish them with python -m jobs.predict_catalogue ... --out {predictions} "
                "--resume"
            )
    return obs, pred


def _truth_report(cube, observations: str) -> list[dict] | None:
    """Recovered flat vs the injected truth (group ``truth`` of a simulated observation store)."""
    truth = read_truth(observations)
    if truth is None:
        return None
    if truth.sizes.get("gy") != cube.sizes["gy"] or not np.allclose(truth.gy.values, cube.gy.values):
        return None
    rows = []
    for band in BANDS:
        row = truth_deviation(
            fitted=cube.flat.sel(band=band).values,
            true=truth.flat.sel(band=band).values,
            flat_error=cube.flat_error.sel(band=band).values,
            fit=cube.fit.sel(band=band).values,
        )
        if row is not None:
            rows.append({"band": band, **row})
    return rows


@dataclass(frozen=True)
class _Settings:
    """What one cube build reads, writes and how it fits (the arguments of :func:`build_flatcube`)."""

    observations: str
    predictions: str
    out: str
    order: int
    kappa: float
    iterations: int
    min_stars: int
    self_calibrate: bool
    progress: bool

    @property
    def n_terms(self) -> int:
        return len(polynomial_terms(self.order))


def _fit_pass(
    client, settings: _Settings, chunks, predicted: dict, iteration: int, fits, star_scales
) -> dict:
    """One pass over the observations: the tree-summed chunk results of fit iteration ``iteration``.

    ``predicted``: ``index`` (the scattered sorted obsid and rows of the predictions) and
    ``build`` (see :func:`flat_chunk`).
    """
    from tqdm.auto import tqdm

    scales_arg = client.scatter(star_scales, broadcast=True) if star_scales is not None else None
    # the previous fits (~0.3 MB) once per worker, not embedded in every task's arguments
    # (thousands of queued tasks x 0.3 MB would grow with the number of chunks)
    fits_arg = client.scatter([fits], broadcast=True, hash=False)[0] if fits is not None else None
    bar = tqdm(
        total=len(chunks),
        unit="chunk",
        desc=f"flat fit {iteration + 1}/{settings.iterations}",
        disable=not settings.progress,
    )
    # the leaf futures are handed to the tree and not kept here: each chunk's matrices are
    # released as soon as they have been added (memory does not grow with the chunks)
    result = _tree_sum(
        client,
        [
            _with_progress(
                client.submit(
                    flat_chunk,
                    i,
                    a,
                    b,
                    observations=settings.observations,
                    predictions=settings.predictions,
                    pred_index=predicted["index"],
                    build=predicted["build"],
                    order=settings.order,
                    out=settings.out,
                    iteration=iteration,
                    fits=fits_arg,
                    kappa=settings.kappa,
                    star_scales=scales_arg,
                    pure=False,
                ),
                bar,
            )
            for i, a, b in chunks
        ],
    )
    bar.close()
    return result


def _fit(client, settings: _Settings, chunks, predicted: dict) -> tuple[dict, dict, tuple | None]:
    """The ``iterations`` fits: (solutions per group, the last pass's sums, the star scales or None)."""
    fits, result, solutions = None, None, {}
    star_scales = initial_scales(*read_scales(settings.observations)) if settings.self_calibrate else None
    for iteration in range(settings.iterations):
        result = _fit_pass(client, settings, chunks, predicted, iteration, fits, star_scales)
        solutions = {key: solve(eq, min_obs=settings.min_stars) for key, eq in result["groups"].items()}
        if star_scales is not None and result["star_sums"][0].size:
            star_scales = updated_scales(star_scales, result["star_sums"])
        fits = {key: (s.coeffs, np.sqrt(reduced_chi2(s, settings.n_terms))) for key, s in solutions.items()}
    return solutions, result, star_scales


def _cube_arrays(solutions: dict, settings: _Settings, design: np.ndarray) -> dict:
    """The cube's arrays from the solutions per group (NaN and ``fit = False`` where none)."""
    n_terms = settings.n_terms
    shape = (len(BANDS), DETECTORS_PER_BAND, OUTPUT_WAVE.size)
    coeffs = np.full((*shape, n_terms), np.nan)
    cov = np.full((*shape, n_terms, n_terms), np.nan)
    n_used = np.zeros(shape, np.int64)
    fit = np.zeros(shape, bool)
    chi2_dof = np.full(shape, np.nan)
    for key, s in solutions.items():
        b, d = key.split("-")
        i, j = list(BANDS).index(b), int(d)
        coeffs[i, j], cov[i, j], n_used[i, j], fit[i, j] = s.coeffs, s.covariance, s.n, s.fit
        chi2_dof[i, j] = reduced_chi2(s, n_terms)
    flat, flat_error, mean_response = normalized_flat(coeffs, cov, design)
    return {
        "coeffs": coeffs,
        "covariance": cov,
        "mean_response": mean_response,
        "flat": flat,
        "flat_error": flat_error,
        "n_obs": n_used,
        "fit": fit,
        "chi2_dof": chi2_dof,
    }


def _summary(settings: _Settings, result: dict, fit: np.ndarray) -> dict:
    counts = result["counts"]
    return {
        "job": "build_flatcube",
        "out": settings.out,
        "observations_in": int(result["n_obs"]),
        "observations_used": int(result["n_obs"] - sum(counts.values())),
        "rejected": counts,
        "ratios_clipped_last_iteration": int(result["clipped"]),
        "wavelengths_fit": int(fit.sum()),
        "wavelengths_unfit_in_band": int(
            sum((~fit[i] & _in_band(b)[None, :]).sum() for i, b in enumerate(BANDS))
        ),
        "order": int(settings.order),
        "self_calibrated": bool(settings.self_calibrate),
        "worker_peak_rss_mb": round(result["peak_rss_mb"], 1),
    }


def _build(
    client, settings: _Settings, obs, pred, chunk_obs, grid_points: int, t0: float
) -> tuple[xr.Dataset, dict]:
    """Fit and assemble the cube: ``(cube, summary)``."""
    chunks = chunk_ranges(obs.sizes["obs"], chunk_obs)
    pred_obsid = pred["obsid"].values
    sort = np.argsort(pred_obsid, kind="stable")
    small = pred["sed"].nbytes + pred["sigma"].nbytes <= PREDICTIONS_CACHE_BYTES
    predicted = {
        "index": client.scatter((pred_obsid[sort], sort), broadcast=True),
        # small enough: each worker reads the predictions once per build, not rows per task
        "build": (uuid.uuid4().hex, int(pred.sizes["star"]) if small else None),
    }
    prepare_work_area(settings.out, settings.iterations)
    try:
        solutions, result, star_scales = _fit(client, settings, chunks, predicted)
    finally:
        client.run(_end_build)  # the workers drop the build's arrays and free memory
    gy, gx = detector_grid(grid_points)
    yy, xx = np.meshgrid(gy, gx, indexing="ij")
    # the Legendre design matrix at the grid points, (g*g, n_terms)
    design = design_matrix(xx.ravel(), yy.ravel(), order=settings.order, shape=DETECTOR_SHAPE)
    arrays = _cube_arrays(solutions, settings, design)
    summary = _summary(settings, result, arrays["fit"])
    ds = flatcube_dataset(
        arrays,
        gy=gy,
        gx=gx,
        order=settings.order,
        kappa=settings.kappa,
        iterations=settings.iterations,
        min_stars=settings.min_stars,
        observations=settings.observations,
        predictions=settings.predictions,
        model_hash=pred.attrs.get("model_hash", ""),
        star_scales=star_scales,
    )
    truth = _truth_report(ds, settings.observations)
    if truth is not None:
        summary["truth"] = truth
    summary["seconds"] = round(time.perf_counter() - t0, 3)
    ds.attrs["summary"] = summary
    return ds, summary


def build_flatcube(
    observations,
    predictions,
    out,
    *,
    client,
    order: int = 2,
    kappa: float = 3.0,
    iterations: int = 3,
    min_stars: int = 20,
    chunk_obs: int | None = None,
    resume: bool = False,
    grid_points: int = 16,
    self_calibrate: bool = False,
    progress: bool = True,
) -> dict:
    """Fit the flat-field cube from observations and predictions into the Zarr store ``out``.

    Parameters
    ----------
    observations : path
        Slitless observations (:mod:`lamost2csst.io.observations`).
    predictions : path
        Output of ``predict_catalogue`` (joined by ``obsid``; only ``flags == 0`` are used).
    out : path
        The cube (schema ``lamost2csst.flatcube/1``); must not exist unless ``resume``.
    client : distributed.Client
    order : int
        Total degree of the 2D Legendre polynomial.
    kappa, iterations : float, int
        Sigma clipping: ``iterations`` fits, each leaving out observations more than
        ``kappa`` (rescaled) sigma from the previous fit.
    min_stars : int
        Fewer observations at a wavelength of a detector: unfit.
    chunk_obs : int, optional
        Observations per task (default: the store's chunk).
    resume : bool
        Reuse the saved normal equations of chunks finished by an earlier run.
    grid_points : int
        The flat is evaluated on a ``grid_points`` x ``grid_points`` pixel grid per detector.
    self_calibrate : bool
        Do not trust the observations' ``scale``: fit each star's scale jointly with the flats
        from its repeated observations (ubercal-style alternation: flats given the scales,
        then scales given the flats, ``iterations`` times; at least 3 observations per star
        are advisable). The scales start at the known ones where finite, else at 1, and are
        normalized to their starting median; the normalized flats do not depend on that
        global factor. The fitted scales are stored in the cube (``star_scale``).

    Returns
    -------
    dict
        The summary (also in the cube's attrs): observations in/used/rejected by reason,
        clipped, wavelengths fit, seconds, and ``truth`` when the observation store carries
        the injected flat.
    """
    t0 = time.perf_counter()
    observations, predictions, out = (resolve(p) for p in (observations, predictions, out))
    if int(order) != order or order < 0:
        raise InputError(f"order must be a non-negative integer, got {order!r}")
    if iterations < 1 or kappa <= 0 or min_stars < 1:
        raise InputError("iterations >= 1, kappa > 0 and min_stars >= 1 are required")
    settings = _Settings(
        observations, predictions, out, order, kappa, iterations, min_stars, self_calibrate, progress
    )
    obs, pred = _open_checked(observations, predictions)
    with output_lock(out, job="build_flatcube", resume=resume):
        if exists(out) and not resume:
            raise InputError(f"output {out} already exists; pass resume=True (--resume) or remove it")
        n_obs = obs.sizes["obs"]
        chunk_obs = int(chunk_obs or obs["flux"].encoding.get("chunks", (n_obs,))[0] or n_obs)
        ds, summary = _build(client, settings, obs, pred, chunk_obs, grid_points, t0)
        write_flatcube(ds, out, resume=resume)
        return summary


def _in_band(band: str) -> np.ndarray:
    lo, hi = BANDS[band]
    return (OUTPUT_WAVE >= lo) & (OUTPUT_WAVE <= hi)


__all__ += ["GROUPS", "OBSERVATIONS_SCHEMA"]
