"""Dask job: slitless observations + predicted SEDs -> the 3D flat-field cube (Zarr).

Per (band, detector, wavelength), a weighted least-squares 2D Legendre polynomial of the flux
ratios ``observed / (scale * predicted SED)`` across detector positions
(:mod:`lamost2csst.core.flatfield`), with iterative sigma clipping.

How the work is laid out (nothing is gathered on one worker):

1. one task per chunk of observations reads its observations, joins them with their
   predictions by ``obsid``, forms ratios and weights and returns the *normal equations* of
   its observations per (band, detector) -- small matrices, whatever the number of
   observations; each task also saves them under ``<out>/.work/iter-<k>/chunk-<i>.npz``, so a
   rerun with ``resume=True`` reuses finished chunks;
2. a tree reduction on the workers adds the chunks' normal equations pairwise;
3. the client solves the small systems (coefficients, covariances); the next iteration's
   tasks receive the coefficients and leave out observations further than ``kappa`` sigma.

Observations that cannot be used are counted, never silently dropped: no prediction for the
obsid, a prediction with quality flags, a position off the detector, no known scale, no
finite flux. Wavelengths of a (band, detector) with fewer than ``min_stars`` observations are
marked unfit (``fit = False``, NaN coefficients).
"""

from __future__ import annotations

import json
import os
import time
from datetime import datetime, timezone

import numpy as np
import xarray as xr
import zarr

from lamost2csst.core.flatfield import (
    NormalEquations,
    design_matrix,
    normal_equations,
    outliers,
    polynomial_terms,
    ratios,
    solve,
)
from lamost2csst.core.grids import BANDS, OUTPUT_WAVE
from lamost2csst.core.slitless import DETECTOR_SHAPE, DETECTORS_PER_BAND
from lamost2csst.io.observations import OBSERVATIONS_SCHEMA, detector_grid, validate_observations
from lamost2csst.parallel.chunks import LOG, chunk_ranges, missing_chunks, read_region
from lamost2csst.parallel.locking import output_lock
from lamost2csst.parallel.runtime import JobInputError, peak_rss_mb

__all__ = ["FLATCUBE_SCHEMA", "build_flatcube", "flat_chunk"]

FLATCUBE_SCHEMA = "lamost2csst.flatcube/1"
GROUPS = [(band, d) for band in BANDS for d in range(DETECTORS_PER_BAND)]
REJECT_REASONS = ("no_prediction", "flagged_prediction", "off_detector", "no_scale", "no_finite_flux", "bad_band")


def _group_key(band: str, detector: int) -> str:
    return f"{band}-{detector}"


def _work_path(out: str, iteration: int, index: int) -> str:
    return os.path.join(out, ".work", f"iter-{iteration}", f"chunk-{index}.npz")


def _prediction_rows(predictions: str, obsid: np.ndarray, index: tuple[np.ndarray, np.ndarray]):
    """Rows of ``obsid`` in the predictions (-1 where absent) and the sed, sigma, flags of those rows."""
    sorted_obsid, order = index
    pos = np.clip(np.searchsorted(sorted_obsid, obsid), 0, max(sorted_obsid.size - 1, 0))
    found = sorted_obsid.size > 0
    found = found & (sorted_obsid[pos] == obsid) if sorted_obsid.size else np.zeros(obsid.size, bool)
    rows = np.where(found, order[pos], -1)
    unique = np.unique(rows[rows >= 0])
    group = zarr.open_group(predictions, mode="r")
    if unique.size:
        sed = group["sed"].get_orthogonal_selection((unique, slice(None)))
        sigma = group["sigma"].get_orthogonal_selection((unique, slice(None)))
        flags = group["flags"].get_orthogonal_selection(unique)
    else:
        sed = sigma = np.zeros((0, OUTPUT_WAVE.size), np.float32)
        flags = np.zeros(0, np.uint16)
    where = np.searchsorted(unique, np.maximum(rows, 0))
    return found, sed, sigma, flags, where


def flat_chunk(index: int, start: int, stop: int, *, observations: str, predictions: str, pred_index, order: int,
               out: str, iteration: int, fits: dict | None, kappa: float, star_scales=None) -> dict:
    """One task: the normal equations per (band, detector) of observations ``start:stop`` (+ counts).

    With ``star_scales`` (sorted obsid, scale: the self-calibration's current per-star
    scales) those replace the store's ``scale``, and the task also returns, per star, the
    sums that update its scale against the previous fits (``star_sums``).
    """
    path = _work_path(out, iteration, index)
    if os.path.exists(path):  # finished by an earlier run (resume)
        with np.load(path) as saved:
            return _unpack(dict(saved))
    obs = read_region(observations, start, stop, ("obsid", "band", "detector", "x", "y", "scale", "flux", "error"),
                      dim="obs")
    n = stop - start
    counts = {reason: 0 for reason in REJECT_REASONS}
    found, sed, sigma, flags, where = _prediction_rows(predictions, obs["obsid"], pred_index)
    usable = found.copy()
    counts["no_prediction"] = int((~found).sum())
    pred_ok = np.zeros(n, bool)
    pred_ok[found] = flags[where[found]] == 0
    counts["flagged_prediction"] = int((found & ~pred_ok).sum())
    usable &= pred_ok
    ny, nx = DETECTOR_SHAPE
    x, y = obs["x"].astype(np.float64), obs["y"].astype(np.float64)
    on_detector = np.isfinite(x) & np.isfinite(y) & (x >= 0) & (x <= nx - 1) & (y >= 0) & (y <= ny - 1)
    counts["off_detector"] = int((usable & ~on_detector).sum())
    usable &= on_detector
    if star_scales is not None:
        scale = _lookup(star_scales, obs["obsid"])
    else:
        scale = obs["scale"].astype(np.float64)
    has_scale = np.isfinite(scale) & (scale > 0)
    counts["no_scale"] = int((usable & ~has_scale).sum())
    usable &= has_scale
    flux = obs["flux"]
    finite = np.isfinite(flux).any(axis=1)
    counts["no_finite_flux"] = int((usable & ~finite).sum())
    usable &= finite
    band = np.array([str(b) for b in obs["band"]], dtype=object)  # vlen strings come back as StringDType
    detector = obs["detector"].astype(np.int64)
    known = np.isin(band, list(BANDS)) & (detector >= 0) & (detector < DETECTORS_PER_BAND)
    counts["bad_band"] = int((usable & ~known).sum())
    usable &= known
    result = {"counts": counts, "n_obs": n, "clipped": 0, "groups": {}, "peak_rss_mb": 0.0,
              "star_sums": (np.zeros(0, np.int64), np.zeros(0), np.zeros(0))}
    rows = np.flatnonzero(usable)
    sums_obsid, sums_num, sums_den = [], [], []
    if rows.size:
        ratio, weight = ratios(flux[rows], obs["error"][rows], scale=scale[rows], sed=sed[where[rows]],
                               sigma=sigma[where[rows]])
        for b, d in GROUPS:
            sel = (band[rows] == b) & (detector[rows] == d)
            if not sel.any():
                continue
            a = design_matrix(x[rows][sel], y[rows][sel], order=order, shape=DETECTOR_SHAPE)
            r, w = ratio[sel], weight[sel]
            key = _group_key(b, d)
            if fits is not None and key in fits:
                coeffs, sigma_scale = fits[key]
                model = a @ np.nan_to_num(coeffs).T
                clip = outliers(r, w, model, kappa=kappa, sigma_scale=np.nan_to_num(sigma_scale, nan=np.inf))
                result["clipped"] += int((clip & (w > 0)).sum())
                w = np.where(clip, 0.0, w)
                if star_scales is not None:
                    # scale-free ratio q = r * s; minimise sum w' (q - s' R)^2 over s' per star,
                    # w' = w / s^2 (the weight of q): s' = sum w' q R / sum w' R^2
                    s_now = scale[rows][sel][:, None]
                    good = (w > 0) & np.isfinite(model) & np.isfinite(r)
                    wq = np.where(good, w / s_now**2, 0.0)
                    q, m = np.where(good, r * s_now, 0.0), np.where(good, model, 0.0)
                    sums_obsid.append(obs["obsid"][rows][sel])
                    sums_num.append((wq * q * m).sum(axis=1))
                    sums_den.append((wq * m * m).sum(axis=1))
            result["groups"][key] = normal_equations(a, r, w)
        if sums_obsid:
            ids, inverse = np.unique(np.concatenate(sums_obsid), return_inverse=True)
            result["star_sums"] = (ids, np.bincount(inverse, np.concatenate(sums_num)),
                                   np.bincount(inverse, np.concatenate(sums_den)))
    result["peak_rss_mb"] = peak_rss_mb()
    _save(path, result)
    return result


def _lookup(table, obsid: np.ndarray) -> np.ndarray:
    """Values of ``table = (sorted obsid, values)`` at ``obsid`` (NaN where absent)."""
    keys, values = table
    pos = np.clip(np.searchsorted(keys, obsid), 0, max(keys.size - 1, 0))
    found = (keys[pos] == obsid) if keys.size else np.zeros(obsid.size, bool)
    return np.where(found, values[pos] if keys.size else np.nan, np.nan)


def _save(path: str, result: dict) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    arrays = {"n_obs": np.array(result["n_obs"]), "clipped": np.array(result["clipped"]),
              "peak_rss_mb": np.array(result["peak_rss_mb"])}
    arrays.update({f"count_{k}": np.array(v) for k, v in result["counts"].items()})
    for key, eq in result["groups"].items():
        arrays.update({f"{key}/{field}": getattr(eq, field) for field in NormalEquations._fields})
    arrays.update({f"star_sums_{i}": a for i, a in enumerate(result["star_sums"])})
    tmp = f"{path}.{os.getpid()}.tmp.npz"
    np.savez(tmp, **arrays)
    os.replace(tmp, path)  # a saved chunk is complete


def _unpack(saved: dict) -> dict:
    groups = {}
    for name in saved:
        if "/" in name and not name.startswith("star_sums"):
            key, field = name.split("/")
            groups.setdefault(key, {})[field] = saved[name]
    return {"n_obs": int(saved["n_obs"]), "clipped": int(saved["clipped"]),
            "peak_rss_mb": float(saved.get("peak_rss_mb", 0.0)),
            "counts": {k: int(saved[f"count_{k}"]) for k in REJECT_REASONS},
            "groups": {k: NormalEquations(**v) for k, v in groups.items()},
            "star_sums": tuple(saved[f"star_sums_{i}"] for i in range(3))}


def _add(a: dict, b: dict) -> dict:
    """Tree-reduction step: the sum of two chunk results."""
    groups = dict(a["groups"])
    for key, eq in b["groups"].items():
        groups[key] = groups[key] + eq if key in groups else eq
    ids = np.concatenate([a["star_sums"][0], b["star_sums"][0]])
    uniq, inverse = np.unique(ids, return_inverse=True)
    star_sums = (uniq, *(np.bincount(inverse, np.concatenate([a["star_sums"][i], b["star_sums"][i]]),
                                     minlength=uniq.size) for i in (1, 2)))
    return {"n_obs": a["n_obs"] + b["n_obs"], "clipped": a["clipped"] + b["clipped"],
            "peak_rss_mb": max(a["peak_rss_mb"], b["peak_rss_mb"]),
            "counts": {k: a["counts"][k] + b["counts"][k] for k in REJECT_REASONS}, "groups": groups,
            "star_sums": star_sums}


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
        pairs = [client.submit(_add, futures[i], futures[i + 1], pure=False, priority=100)
                 for i in range(0, len(futures) - 1, 2)]
        futures = pairs + ([futures[-1]] if len(futures) % 2 else [])  # the previous level is dropped here
    return futures.pop().result()


def _initial_scales(observations: str) -> tuple[np.ndarray, np.ndarray]:
    """(sorted obsid, scale) to start the self-calibration: the known scale where finite, else 1."""
    group = zarr.open_group(observations, mode="r")
    obsid, scale = group["obsid"][...], group["scale"][...].astype(np.float64)
    ids, first = np.unique(obsid, return_index=True)
    start = scale[first]
    good = np.isfinite(start) & (start > 0)
    start = np.where(good, start, np.median(start[good]) if good.any() else 1.0)
    return ids, start


def _updated_scales(current, sums) -> tuple[np.ndarray, np.ndarray]:
    """New per-star scales from the summed sums; stars without sums keep theirs; median kept."""
    ids, values = current
    new = values.copy()
    pos = np.searchsorted(ids, sums[0])
    with np.errstate(invalid="ignore", divide="ignore"):
        estimate = sums[1] / sums[2]
    good = np.isfinite(estimate) & (estimate > 0)
    new[pos[good]] = estimate[good]  # s' = sum w' q R / sum w' R^2: an absolute scale
    new *= np.median(values) / np.median(new)  # the global level is degenerate with the flats: fix it
    return ids, new


def _open_checked(observations: str, predictions: str) -> tuple[xr.Dataset, xr.Dataset]:
    for path, what in ((observations, "observations"), (predictions, "predictions")):
        if not os.path.exists(path):
            raise JobInputError(f"{what} store {path} does not exist")
    try:
        obs = validate_observations(xr.open_zarr(observations, consolidated=False))
    except ValueError as err:
        raise JobInputError(f"observations {observations}: {err}") from None
    pred = xr.open_zarr(predictions, consolidated=False)
    if pred.attrs.get("schema") != "lamost2csst.predictions/1":
        raise JobInputError(f"predictions {predictions}: schema is {pred.attrs.get('schema')!r}, expected "
                            "'lamost2csst.predictions/1' (the output of jobs.predict_catalogue)")
    if pred.sizes.get("wave_out") != obs.sizes.get("wave_out"):
        raise JobInputError("observations and predictions are not on the same wave_out grid")
    if "chunk_stars" in pred.attrs:  # written by the catalogue job: every chunk must be marked done
        missing = missing_chunks(predictions, pred.sizes["star"], int(pred.attrs["chunk_stars"]))
        if missing:
            raise JobInputError(
                f"predictions {predictions} are unfinished: {len(missing)} chunk(s) not written (first: "
                f"{missing[0]}); finish them with python -m jobs.predict_catalogue ... --out {predictions} --resume")
    return obs, pred


def _rms(a: np.ndarray) -> np.ndarray:
    """RMS over the last two axes ignoring NaN; NaN where all are NaN (no warnings: thread-safe)."""
    finite = np.isfinite(a)
    count = finite.sum(axis=(-2, -1))
    total = np.where(finite, a, 0.0) ** 2
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, np.sqrt(total.sum(axis=(-2, -1)) / count), np.nan)


def _truth_report(out_ds: xr.Dataset, observations: str) -> list[dict] | None:
    """Recovered flat vs the injected truth (group ``truth`` of a simulated observation store)."""
    try:
        truth = xr.open_zarr(observations, group="truth", consolidated=False).load()
    except Exception:  # noqa: BLE001 - no truth: real observations
        return None
    if truth.sizes.get("gy") != out_ds.sizes["gy"] or not np.allclose(truth.gy.values, out_ds.gy.values):
        return None
    rows = []
    for band in BANDS:
        fitted = out_ds.flat.sel(band=band).values  # (detector, wave, gy, gx)
        true = truth.flat.sel(band=band).values
        with np.errstate(invalid="ignore"):
            dev = fitted / true - 1.0
        rms = _rms(dev)  # (detector, wave)
        pred_rms = _rms(out_ds.flat_error.sel(band=band).values)
        ok = out_ds.fit.sel(band=band).values & np.isfinite(rms)
        if not ok.any():
            continue
        rows.append({"band": band, "rms_deviation_median": round(float(np.median(rms[ok])), 6),
                     "predicted_rms_median": round(float(np.median(pred_rms[ok])), 6),
                     "wavelengths_fit": int(ok.sum())})
    return rows


def build_flatcube(observations, predictions, out, *, client, order: int = 2, kappa: float = 3.0,
                   iterations: int = 3, min_stars: int = 20, chunk_obs: int | None = None, resume: bool = False,
                   grid_points: int = 16, self_calibrate: bool = False, progress: bool = True) -> dict:
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
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    observations, predictions, out = (os.path.abspath(os.fspath(p)) for p in (observations, predictions, out))
    if int(order) != order or order < 0:
        raise JobInputError(f"order must be a non-negative integer, got {order!r}")
    if iterations < 1 or kappa <= 0 or min_stars < 1:
        raise JobInputError("iterations >= 1, kappa > 0 and min_stars >= 1 are required")
    obs, pred = _open_checked(observations, predictions)
    with output_lock(out, job="build_flatcube", resume=resume):
        if os.path.exists(out) and not resume:
            raise JobInputError(f"output {out} already exists; pass resume=True (--resume) or remove it")
        n_obs = obs.sizes["obs"]
        chunk_obs = int(chunk_obs or obs["flux"].encoding.get("chunks", (n_obs,))[0] or n_obs)
        chunks = chunk_ranges(n_obs, chunk_obs)
        pred_obsid = pred["obsid"].values
        sort = np.argsort(pred_obsid, kind="stable")
        pred_index = client.scatter((pred_obsid[sort], sort), broadcast=True)
        for iteration in range(iterations):  # empty Zarr groups, so that Zarr readers accept the folders
            zarr.open_group(os.path.join(out, ".work", f"iter-{iteration}"), mode="a", zarr_format=3)
        zarr.open_group(os.path.join(out, ".work"), mode="a", zarr_format=3).attrs["description"] = (
            "saved normal equations of finished chunks (chunk-<i>.npz) per iteration, for --resume")

        fits, result, n_terms = None, None, len(polynomial_terms(order))
        star_scales = _initial_scales(observations) if self_calibrate else None
        for iteration in range(iterations):
            scales_arg = client.scatter(star_scales, broadcast=True) if star_scales is not None else None
            # the previous fits (~0.3 MB) once per worker, not embedded in every task's arguments
            # (thousands of queued tasks x 0.3 MB would grow with the number of chunks)
            fits_arg = client.scatter([fits], broadcast=True, hash=False)[0] if fits is not None else None
            bar = tqdm(total=len(chunks), unit="chunk", desc=f"flat fit {iteration + 1}/{iterations}",
                       disable=not progress)
            # the leaf futures are handed to the tree and not kept here: each chunk's matrices are
            # released as soon as they have been added (memory does not grow with the chunks)
            result = _tree_sum(client, [
                _with_progress(client.submit(flat_chunk, i, a, b, observations=observations, predictions=predictions,
                                             pred_index=pred_index, order=order, out=out, iteration=iteration,
                                             fits=fits_arg, kappa=kappa, star_scales=scales_arg, pure=False),
                               bar)
                for i, a, b in chunks])
            bar.close()
            solutions = {key: solve(eq, min_obs=min_stars) for key, eq in result["groups"].items()}
            if star_scales is not None and result["star_sums"][0].size:
                star_scales = _updated_scales(star_scales, result["star_sums"])
            fits = {key: (s.coeffs, np.sqrt(s.chi2 / np.maximum(s.n - n_terms, 1))) for key, s in solutions.items()}

        # the cube: coefficients, covariances, the normalized flat on a coarse grid, the mean response
        n_wave = OUTPUT_WAVE.size
        shape = (len(BANDS), DETECTORS_PER_BAND, n_wave)
        coeffs = np.full((*shape, n_terms), np.nan)
        cov = np.full((*shape, n_terms, n_terms), np.nan)
        n_used = np.zeros(shape, np.int64)
        fit = np.zeros(shape, bool)
        chi2_dof = np.full(shape, np.nan)
        for key, s in solutions.items():
            b, d = key.split("-")
            i, j = list(BANDS).index(b), int(d)
            coeffs[i, j], cov[i, j], n_used[i, j], fit[i, j] = s.coeffs, s.covariance, s.n, s.fit
            chi2_dof[i, j] = s.chi2 / np.maximum(s.n - n_terms, 1)
        gy, gx = detector_grid(grid_points)
        yy, xx = np.meshgrid(gy, gx, indexing="ij")
        design = design_matrix(xx.ravel(), yy.ravel(), order=order, shape=DETECTOR_SHAPE)  # (g*g, n_terms)
        mean_response = coeffs[..., 0]  # the mean of a Legendre surface over the detector is its constant term
        surface = np.einsum("gk,bdwk->bdwg", design, coeffs)
        flat = surface / mean_response[..., None]
        # 1-sigma of the normalized flat from the covariance (first order in the coefficients' errors)
        jac = design[None, None, None] - flat[..., None] * np.eye(n_terms)[0]  # d(surface/c0)/dc * c0
        flat_error = np.sqrt(np.einsum("bdwgk,bdwkl,bdwgl->bdwg", jac, cov, jac)) / np.abs(mean_response[..., None])
        cube_shape = (len(BANDS), DETECTORS_PER_BAND, n_wave, grid_points, grid_points)
        terms = polynomial_terms(order)
        summary_counts = result["counts"]
        used = int(result["n_obs"] - sum(summary_counts.values()))
        ds = xr.Dataset(
            {
                "coeffs": (("band", "detector", "wave_out", "coeff"), coeffs.astype(np.float64),
                           {"long_name": "Legendre coefficients of the flux-ratio surface (not normalized)"}),
                "covariance": (("band", "detector", "wave_out", "coeff", "coeff2"), cov,
                               {"long_name": "covariance of coeffs"}),
                "mean_response": (("band", "detector", "wave_out"), mean_response,
                                  {"long_name": "mean over the detector of the ratio surface (throughput x mean flat)"}),
                "flat": (("band", "detector", "wave_out", "gy", "gx"), flat.reshape(cube_shape).astype(np.float32),
                         {"long_name": "large-scale flat normalized to mean 1 per wavelength"}),
                "flat_error": (("band", "detector", "wave_out", "gy", "gx"),
                               flat_error.reshape(cube_shape).astype(np.float32),
                               {"long_name": "1-sigma of flat from the fit covariance"}),
                "n_obs": (("band", "detector", "wave_out"), n_used, {"long_name": "observations used in the fit"}),
                "fit": (("band", "detector", "wave_out"), fit,
                        {"long_name": "False: unfit (outside the band, too few stars, degenerate)"}),
                "chi2_dof": (("band", "detector", "wave_out"), chi2_dof),
            },
            coords={"band": ("band", np.array(list(BANDS), dtype=object)), "detector": ("detector", np.arange(DETECTORS_PER_BAND)),
                    "wave_out": ("wave_out", OUTPUT_WAVE, {"units": "Angstrom", "medium": "vacuum"}),
                    "coeff": ("coeff", np.arange(n_terms)), "coeff2": ("coeff2", np.arange(n_terms)),
                    "gy": ("gy", gy, {"units": "pixel"}), "gx": ("gx", gx, {"units": "pixel"})},
            attrs={"schema": FLATCUBE_SCHEMA, "order": int(order), "terms_ij": [list(t) for t in terms],
                   "basis": "P_i(u) P_j(v), Legendre, u = 2x/(nx-1)-1, v = 2y/(ny-1)-1",
                   "detector_shape": list(DETECTOR_SHAPE), "kappa": float(kappa), "iterations": int(iterations),
                   "min_stars": int(min_stars), "wavelength_ranges": {b: list(r) for b, r in BANDS.items()},
                   "observations": observations, "predictions": predictions,
                   "prediction_model_hash": pred.attrs.get("model_hash", ""),
                   "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds")},
        )
        summary = {
            "job": "build_flatcube", "out": out, "observations_in": int(result["n_obs"]), "observations_used": used,
            "rejected": summary_counts, "ratios_clipped_last_iteration": int(result["clipped"]),
            "wavelengths_fit": int(fit.sum()), "wavelengths_unfit_in_band": int(
                sum((~fit[i] & _in_band(b)[None, :]).sum() for i, b in enumerate(BANDS))),
            "order": int(order), "self_calibrated": bool(self_calibrate),
            "worker_peak_rss_mb": round(result["peak_rss_mb"], 1),
        }
        if star_scales is not None:
            ds["star_scale"] = (("star",), star_scales[1], {"long_name": "self-calibrated scale of each star"})
            ds = ds.assign_coords(star_obsid=("star", star_scales[0]))
            ds.attrs["self_calibrated"] = 1
        truth = _truth_report(ds, observations)
        if truth is not None:
            summary["truth"] = truth
        summary["seconds"] = round(time.perf_counter() - t0, 3)
        ds.attrs["summary"] = summary
        ds.to_zarr(out, mode="a" if resume else "w", zarr_format=3, consolidated=False)
        return summary


def _in_band(band: str) -> np.ndarray:
    lo, hi = BANDS[band]
    return (OUTPUT_WAVE >= lo) & (OUTPUT_WAVE <= hi)


__all__ += ["GROUPS", "OBSERVATIONS_SCHEMA"]
