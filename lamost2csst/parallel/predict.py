"""Dask job: a spectra catalogue -> predicted CSST-like SEDs, sigmas and quality flags (Zarr).

Two layers, as everywhere in this package:

* :func:`predict_block` is the per-block function on numpy arrays: sanitize the pixels,
  shift to the rest frame, resample onto ``INPUT_WAVE`` and normalize
  (:func:`lamost2csst.core.prepare_inputs`), run UaRA-net
  (:func:`lamost2csst.nn.inference.predict`, the project's one predict loop) and set the
  quality flags (:mod:`lamost2csst.core.flags`). It runs the same in a notebook;
* :func:`predict_catalogue` builds the work: the output template first, then one task per
  output chunk that reads its stars, calls :func:`predict_block`, writes its region and
  then its marker (:mod:`lamost2csst.parallel.chunks`); ``resume=True`` skips the chunks
  with a marker.

The model is loaded once per worker process: :class:`TensorFlowSetup` (a Dask worker
plugin) sets TensorFlow's threads to the worker's thread count (and memory growth on GPUs)
before TensorFlow starts, warms the per-process model cache of
:func:`lamost2csst.nn.inference.load_model`, which every task then hits, and compiles the
forward pass for the job's batch size once (a ``tf.function`` trace; under JAX on a GPU an
XLA compilation of several seconds), so that the tasks run at the steady rate and the
one-off cost shows in the summary's ``seconds_setup``.

The output store (schema ``lamost2csst.predictions/1``, Zarr v3)::

    Dimensions:  (star: N, wave_out: 574)
    Coordinates:
      * wave_out  (wave_out) float64  OUTPUT_WAVE: vacuum A, R=200
        obsid, ra, dec, z, ... (star)  copied from the input, same order
    Data variables:
        sed    (star, wave_out) float32  predicted SED, scaled like scale_sed (NaN: NO_DATA)
        sigma  (star, wave_out) float32  relative 1-sigma uncertainty (flux error = sigma*sed)
        flags  (star) uint16             quality bitmask (lamost2csst.core.flags.Flag)
"""

from __future__ import annotations

import functools
import io
import os
import socket
import time
from datetime import datetime, timezone

import numpy as np
import xarray as xr
import zarr
from distributed.diagnostics.plugin import WorkerPlugin

from lamost2csst.core import BANDS, OUTPUT_WAVE, band_pixels, prepare_inputs
from lamost2csst.core.inputs import DEFAULT_METHOD
from lamost2csst.core.flags import (
    FLAG_MEANINGS,
    Flag,
    FlagThresholds,
    bad_redshift,
    input_flags,
    median_snr,
    output_flags,
    sanitize_pixels,
)
from lamost2csst.parallel.chunks import (
    check_resumable,
    chunk_ranges,
    create_output,
    empty_array,
    existing_chunk_stars,
    marker_path,
    markers_group,
    read_region,
    run_chunk_tasks,
    star_coords,
    write_region,
)
from lamost2csst.parallel.normalize import _open_input
from lamost2csst.parallel.locking import output_lock
from lamost2csst.parallel.runtime import JobInputError, peak_rss_mb, remove_store, write_json
from lamost2csst.parallel.storage import exists as storage_exists
from lamost2csst.parallel.storage import read_bytes, resolve, write_bytes

__all__ = [
    "PREDICTIONS_SCHEMA",
    "SNR_BINS",
    "TensorFlowSetup",
    "predict_block",
    "predict_catalogue",
    "predict_chunk",
    "predictions_template",
    "truth_statistics",
    "truth_table",
]

PREDICTIONS_SCHEMA = "lamost2csst.predictions/1"
#: S/N bins (edges) of the truth statistics; the last group holds predicted but flagged stars.
SNR_BINS = (0.0, 10.0, 20.0, 40.0, 80.0, np.inf)
_SNR_LABELS = ("<10", "10-20", "20-40", "40-80", ">=80")
_TRUTH_FIELDS = ("n", "sum", "sumsq", "within")


def _path(p) -> str:
    return resolve(p)


def predict_block(wave, flux, ivar, mask, z, *, model, teff=None, thresholds: FlagThresholds | None = None,
                  observed: bool = True, batch_size: int = 1024, timings: dict | None = None) -> dict[str, np.ndarray]:
    """Predicted SEDs, sigmas and flags of a block of observed spectra (numpy in, numpy out).

    Parameters
    ----------
    wave : array_like (n_pixel,)
        Vacuum wavelengths of the spectra (A).
    flux, ivar : array_like (n_star, n_pixel)
    mask : array_like of bool (n_star, n_pixel) or None
    z : array_like (n_star,)
        Redshifts; NaN or <= -1 = unknown (the star gets ``NO_DATA | BAD_Z``).
    model : keras.Model or path
        UaRA-net (see :func:`lamost2csst.load_model`).
    teff : array_like (n_star,), optional
        Catalogue Teff for the ``OUTSIDE_DOMAIN`` flag.
    thresholds : FlagThresholds, optional
    observed : bool
        False when the spectra are already in the rest frame (z is then only checked).
    batch_size : int
        Spectra per forward pass.
    timings : dict, optional
        Filled with the seconds spent preparing the inputs (``prepare``: checks, rest frame,
        resampling, normalization, flags) and in the network (``network``).

    Returns
    -------
    dict
        ``sed``, ``sigma`` float32 (n_star, 574), NaN for ``NO_DATA`` stars; ``flags`` uint16
        (n_star,); ``input_masked_fraction`` float32 (n_star,).
    """
    from lamost2csst.nn.inference import N_OUTPUT, predict

    t0 = time.perf_counter()
    thresholds = thresholds or FlagThresholds()
    flux, ivar, mask, nonfinite = sanitize_pixels(flux, ivar, mask)
    n_star = flux.shape[0]
    z = np.broadcast_to(np.asarray(z, dtype=np.float64), (n_star,))
    z_missing, z_implausible = bad_redshift(z, max_abs_z=thresholds.max_abs_z)
    mask |= z_missing[:, None]  # no rest frame: nothing of the spectrum is usable
    z_used = np.where(z_missing, 0.0, z) if observed else np.zeros(n_star)
    net = prepare_inputs(wave, flux, ivar=ivar, z=z_used, mask=mask)
    flags = input_flags(net.mask, snr=median_snr(flux, ivar, mask), nonfinite=nonfinite, z_missing=z_missing,
                        z_implausible=z_implausible, teff=teff, thresholds=thresholds)
    sed = np.full((n_star, N_OUTPUT), np.nan, np.float32)
    sigma = np.full((n_star, N_OUTPUT), np.nan, np.float32)
    rows = np.flatnonzero((flags & Flag.NO_DATA) == 0)
    t_prepared = time.perf_counter()
    if rows.size == n_star:  # the usual case: no copies
        sed, sigma = predict(net.flux, net.error, mask=net.mask, model=model, batch_size=batch_size)
        flags |= output_flags(sigma, thresholds=thresholds)
    elif rows.size:
        sed[rows], sigma[rows] = predict(net.flux[rows], net.error[rows], mask=net.mask[rows], model=model,
                                         batch_size=batch_size)
        flags[rows] |= output_flags(sigma[rows], thresholds=thresholds)
    if timings is not None:
        timings.update(prepare=t_prepared - t0, network=time.perf_counter() - t_prepared)
    return {"sed": sed, "sigma": sigma, "flags": flags,
            "input_masked_fraction": net.mask.mean(axis=1).astype(np.float32)}


def truth_statistics(sed, sigma, flags, sed_true, snr=None) -> dict[str, np.ndarray]:
    """Sufficient statistics of the relative residual ``sed / sed_true - 1`` per S/N group.

    Groups 0..4 are the stars with ``flags == 0`` in the :data:`SNR_BINS` (by ``snr``; all
    in one bin by S/N when ``snr`` is None, see below), group 5 the predicted but flagged
    stars. Returns arrays (6, n_wave) ``n``, ``sum``, ``sumsq`` and ``within`` (count of
    ``|r| < sigma``), which add up over chunks.
    """
    n_group = len(SNR_BINS)  # 5 S/N bins + the flagged group
    with np.errstate(divide="ignore", invalid="ignore"):
        r = sed.astype(np.float64) / sed_true - 1.0
    if snr is None:
        snr = np.full(sed.shape[0], np.nan)
    group = np.clip(np.digitize(np.nan_to_num(np.asarray(snr, np.float64), nan=0.0), SNR_BINS[1:-1]), 0, 4)
    group = np.where(flags == 0, group, n_group - 1)
    predicted = (flags & Flag.NO_DATA) == 0
    good = np.isfinite(r) & predicted[:, None]
    r = np.where(good, r, 0.0)
    within = good & (np.abs(r) < sigma)
    stats = {name: np.zeros((n_group, sed.shape[1])) for name in _TRUTH_FIELDS}
    for g in np.unique(group[predicted]):
        rows = predicted & (group == g)
        stats["n"][g] = good[rows].sum(axis=0)
        stats["sum"][g] = r[rows].sum(axis=0)
        stats["sumsq"][g] = (r[rows] ** 2).sum(axis=0)
        stats["within"][g] = within[rows].sum(axis=0)
    return stats


def truth_table(stats: dict[str, np.ndarray], *, wave=OUTPUT_WAVE) -> list[dict]:
    """Rows of typical error per band from summed :func:`truth_statistics`.

    Typical error of a band = median over its pixels of the standard deviation over stars
    of the relative residual (the paper's statistic, without Teff bins); ``offset`` the
    median of the mean residual; ``within_1sigma`` the median fraction with ``|r| < sigma``.
    """
    groups = [(label, [i]) for i, label in enumerate(_SNR_LABELS)]
    groups += [("all ok", list(range(5))), ("all predicted", list(range(6)))]
    rows = []
    for label, members in groups:
        n = stats["n"][members].sum(axis=0)
        if n.max(initial=0) < 2:
            continue
        with np.errstate(divide="ignore", invalid="ignore"):
            mean = stats["sum"][members].sum(axis=0) / n
            std = np.sqrt(np.maximum(stats["sumsq"][members].sum(axis=0) / n - mean**2, 0.0) * n / (n - 1))
            within = stats["within"][members].sum(axis=0) / n
        row = {"snr": label, "n_star": int(n.max())}
        for band, lo_hi in BANDS.items():
            sel = band_pixels(wave, lo_hi)
            row[f"error_{band}"] = round(float(np.nanmedian(std[sel])), 5)
            row[f"offset_{band}"] = round(float(np.nanmedian(mean[sel])), 5)
            row[f"within_1sigma_{band}"] = round(float(np.nanmedian(within[sel])), 3)
        rows.append(row)
    return rows


def _truth_path(out: str, index: int) -> str:
    return marker_path(out, index).replace(".done", ".truth.npz")


class TensorFlowSetup(WorkerPlugin):
    """Dask worker plugin: TensorFlow threads (and GPU memory growth), then the model, once per worker.

    Register with ``client.register_plugin(TensorFlowSetup(model_path))``. ``threads``
    defaults to the worker's thread count. Setting threads fails harmlessly when
    TensorFlow is already running in that process (an in-process worker). ``warm_batch``:
    run one forward pass of that many spectra at set-up (compiles the shape that the
    tasks' full batches use); None skips it.
    """

    name = "lamost2csst-tensorflow"

    def __init__(self, model_path: str, *, threads: int | None = None, warm_batch: int | None = None):
        self.model_path = model_path
        self.threads = threads
        self.warm_batch = warm_batch

    def setup(self, worker=None):
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # no C++ banner per worker
        import keras

        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            threads = self.threads or (worker.state.nthreads if worker is not None else 1)
            try:
                tf.config.threading.set_intra_op_parallelism_threads(threads)
                tf.config.threading.set_inter_op_parallelism_threads(threads)
                for gpu in tf.config.list_physical_devices("GPU"):
                    tf.config.experimental.set_memory_growth(gpu, True)
            except RuntimeError:  # TensorFlow already initialized in this process
                pass
        from lamost2csst.nn.inference import N_INPUT, load_model, predict

        model = load_model(self.model_path)
        if self.warm_batch:
            flat = np.ones((self.warm_batch, N_INPUT), np.float32)
            predict(flat, 0.01 * flat, model=model, batch_size=self.warm_batch)

    def teardown(self, worker=None):
        pass


def predictions_template(ds: xr.Dataset, *, chunk_stars: int, catalogue: str, model_path: str, model_hash: str,
                         model_card: dict, thresholds: FlagThresholds) -> xr.Dataset:
    """The output Dataset of :func:`predict_catalogue` with never-computed arrays."""
    from lamost2csst._version import __version__

    n_star = ds.sizes["star"]
    dims = ("star", "wave_out")
    coords = {"wave_out": ("wave_out", np.asarray(OUTPUT_WAVE, dtype=np.float64),
                           {"units": "Angstrom", "medium": "vacuum", "resolution": 200.0,
                            "long_name": "vacuum wavelength (OUTPUT_WAVE, 2500*exp(i/400))"})}
    coords.update(star_coords(ds))
    shape = (n_star, OUTPUT_WAVE.size)
    data_vars = {
        "sed": (dims, empty_array(shape, np.float32, chunk_stars),
                {"long_name": "predicted CSST-like SED, scaled like lamost2csst.scale_sed", "units": "1"}),
        "sigma": (dims, empty_array(shape, np.float32, chunk_stars),
                  {"long_name": "relative 1-sigma uncertainty of sed (flux error = sigma * sed)", "units": "1"}),
        "flags": (("star",), empty_array((n_star,), np.uint16, chunk_stars),
                  {"long_name": "quality bitmask (0 = nothing to report)",
                   "flag_masks": [int(f) for f in Flag], "flag_meanings": " ".join(f.name for f in Flag)}),
    }
    attrs = {
        "schema": PREDICTIONS_SCHEMA,
        "title": "UaRA-net predictions: CSST-like SEDs with per-pixel uncertainties",
        "flags": {f.name: f"{int(f)}: {FLAG_MEANINGS[f]}" for f in Flag},
        "flag_thresholds": thresholds.as_dict(),
        "model_path": model_path,
        "model_hash": model_hash,
        "model_command": model_card.get("command", ""),
        "model_epoch": model_card.get("epoch", -1),
        "input_store": catalogue,
        "input_schema": ds.attrs.get("schema", ""),
        "input_frame": ds.attrs.get("frame", ""),
        "input_source": ds.attrs.get("source", ""),
        "input_resampling": DEFAULT_METHOD,
        "chunk_stars": int(chunk_stars),
        "lamost2csst_version": __version__,
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "history": f"lamost2csst {__version__} parallel.predict_catalogue",
    }
    return xr.Dataset(data_vars, coords=coords, attrs=attrs)


@functools.lru_cache(maxsize=4)
def _training_models(model_path: str) -> frozenset | None:
    """The rounded (teff, logg, feh, alpha) of the network's training models, from its card (None: unknown).

    Read on the worker from the model file's card: passing the list through ``client.map``
    kwargs broke Dask 2026.8's scheduler once the list grew past ~1,000 entries
    ("AssertionError: <TaskState 'train_models' processing>").
    """
    from lamost2csst.nn.inference import model_card

    train = (model_card(model_path).get("split") or {}).get("train")
    if not train:
        return None
    return frozenset(tuple(np.round(row, 3)) for row in np.asarray(train, dtype=np.float64))


def _held_out(src: dict, model_path: str) -> np.ndarray | None:
    """Stars whose (teff, logg, feh, alpha) is not a training model of the network (None: unknown)."""
    names = ("teff", "logg", "feh", "alpha")
    train = _training_models(model_path)
    if not train or not all(n in src for n in names):
        return None
    params = np.round(np.stack([src[n] for n in names], axis=1).astype(np.float64), 3)
    return np.array([tuple(row) not in train for row in params], dtype=bool)


def predict_chunk(index: int, start: int, stop: int, *, catalogue: str, out: str, model_path: str, observed: bool,
                  thresholds: dict, forward_batch: int) -> dict:
    """One task: stars ``start:stop`` of ``catalogue`` -> the same region of ``out``, then the marker."""
    from lamost2csst.nn.inference import load_model

    t0 = time.perf_counter()
    src = read_region(catalogue, start, stop,
                      ("wave", "flux", "ivar", "mask", "z", "teff", "logg", "feh", "alpha", "snr_g", "sed_true"))
    thresholds = FlagThresholds(**{**thresholds, "teff_range": tuple(thresholds["teff_range"])})
    t_read = time.perf_counter()
    timings = {}
    res = predict_block(src["wave"], src["flux"], src["ivar"], src["mask"], src["z"], model=load_model(model_path),
                        teff=src.get("teff"), thresholds=thresholds, observed=observed, batch_size=forward_batch,
                        timings=timings)
    t_compute = time.perf_counter()
    write_region(out, start, stop, {name: res[name] for name in ("sed", "sigma", "flags")})
    t_write = time.perf_counter()
    has_truth = "sed_true" in src
    if has_truth:
        args = (res["sed"], res["sigma"], res["flags"], src["sed_true"], src.get("snr_g"))
        stats = {f"all_{k}": v for k, v in truth_statistics(*args).items()}
        held = _held_out(src, model_path)
        if held is not None:
            stats.update({f"heldout_{k}": v for k, v in truth_statistics(*(a[held] for a in args[:4]),
                                                                         None if args[4] is None else args[4][held]).items()})
        buffer = io.BytesIO()
        np.savez(buffer, **stats)
        write_bytes(_truth_path(out, index), buffer.getvalue())
    flags = res["flags"]
    marker = {
        "index": int(index), "start": int(start), "stop": int(stop), "n_star": int(stop - start),
        "ok": int((flags == 0).sum()),
        "flag_counts": {f.name: int(((flags & f) != 0).sum()) for f in Flag},
        "truth": has_truth,
        "seconds": round(time.perf_counter() - t0, 4),
        "seconds_read": round(t_read - t0, 4),
        "seconds_compute": round(t_compute - t_read, 4),
        "seconds_prepare": round(timings["prepare"], 4),
        "seconds_network": round(timings["network"], 4),
        "seconds_write": round(t_write - t_compute, 4),
        "host": socket.gethostname(), "pid": os.getpid(),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "finished_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    write_json(marker_path(out, index), marker)  # last: a chunk with a marker is complete
    return marker


def _summed_truth(out: str, markers: dict) -> dict | None:
    """Sums of the chunks' truth statistics: ``{"all": stats, "heldout": stats or None}``."""
    if not markers or not all(m.get("truth") for m in markers.values()):
        return None
    total = {}
    for index in markers:
        with np.load(io.BytesIO(read_bytes(_truth_path(out, index)))) as part:
            for key in part.files:
                total[key] = total[key] + part[key] if key in total else part[key].copy()
    split = {prefix: {k: total[f"{prefix}_{k}"] for k in _TRUTH_FIELDS} for prefix in ("all", "heldout")
             if f"{prefix}_n" in total}
    return {"all": split["all"], "heldout": split.get("heldout")}


def predict_catalogue(catalogue, out, *, client, model=None, chunk_stars=None, resume=False, overwrite=False,
                      progress=True, thresholds: FlagThresholds | None = None, batch_size: int = 1024) -> dict:
    """Predict SEDs for every star of a spectra catalogue into a ``lamost2csst.predictions/1`` store.

    Parameters
    ----------
    catalogue : path
        Zarr store in the spectra schema (:mod:`lamost2csst.io.spectra`); stars with a
        ``sed_true`` variable (the demo catalogue) are compared against it.
    out : path
        Output Zarr store; must not exist unless ``resume``.
    client : distributed.Client
        Where the chunk tasks run (the model is loaded once per worker).
    model : path, optional
        A ``.keras`` UaRA-net file visible to every worker; default the shipped model.
    chunk_stars : int, optional
        Stars per output chunk = per task; default the input's chunk size (on resume the
        existing output's).
    resume : bool
        Finish an existing output of the same input, chunking, model and thresholds.
    overwrite : bool
        Remove an existing output first (only a ``lamost2csst.predictions/1`` store is removed).
    progress : bool
        A tqdm bar over chunks on stderr.
    thresholds : FlagThresholds, optional
        Where the quality flags start.
    batch_size : int
        Spectra per forward pass of the network.

    Returns
    -------
    dict
        The summary (also in the output's attrs): ``stars_in``, ``stars_written`` (this
        run), ``ok``, ``flagged``, ``flag_counts``, chunk counts, ``seconds``,
        ``spectra_per_second``, where the tasks spent their time (``task_seconds_read``,
        ``_prepare``, ``_network``, ``_write``, summed over this run's chunks), the model hash
        and, when the input has true SEDs,
        ``truth`` (typical error per band and S/N bin) and, when the catalogue has grid
        parameters and the model card its training split, ``truth_heldout`` (the same for
        the stars of models the network was not trained on).

    Raises
    ------
    JobInputError (a ValueError)
        Bad input, an existing output without ``resume``, or one that does not match;
        another live job writing ``out`` (its lock ``<out>.lock``, see
        :mod:`lamost2csst.parallel.locking`).
    """
    from lamost2csst.nn.inference import default_model_path, model_card, model_hash

    t0 = time.perf_counter()
    catalogue, out = _path(catalogue), _path(out)
    model_path = _path(model) if model is not None else str(default_model_path())
    if not os.path.exists(model_path):
        raise JobInputError(f"model file {model_path} does not exist")
    if not model_path.endswith(".keras"):
        raise JobInputError(f"model file {model_path} is not a Keras 3 .keras file")
    if int(batch_size) != batch_size or batch_size < 1:
        raise JobInputError(f"batch_size must be a positive integer, got {batch_size!r}")
    thresholds = thresholds or FlagThresholds()
    with output_lock(out, job="predict_catalogue", resume=resume):
        ds = _open_input(catalogue)
        n_star = ds.sizes["star"]
        if overwrite and storage_exists(out):
            remove_store(out, schema=PREDICTIONS_SCHEMA)
        exists = storage_exists(out)
        if exists and not resume:
            raise JobInputError(f"output {out} already exists; pass resume=True (--resume) to finish it, "
                                "or remove it first")
        if chunk_stars is None:
            chunk_stars = (existing_chunk_stars(out) if exists else None) or ds.chunks["star"][0]
        if int(chunk_stars) != chunk_stars or chunk_stars < 1:
            raise JobInputError(f"chunk_stars must be a positive integer, got {chunk_stars!r}")
        chunk_stars = int(min(chunk_stars, n_star))
        digest = model_hash(model_path)
        card = model_card(model_path)
        # per-star coordinates are read faster without dask (one read per coordinate)
        plain = xr.open_zarr(catalogue, consolidated=False, chunks=None)
        template = predictions_template(plain, chunk_stars=chunk_stars, catalogue=catalogue, model_path=model_path,
                                        model_hash=digest, model_card=card, thresholds=thresholds)
        if exists:
            check_resumable(out, template, chunk_stars, schema=PREDICTIONS_SCHEMA, variable="sed",
                            same_attrs=("model_hash", "flag_thresholds", "input_resampling"))
            markers_group(out)
        else:
            create_output(template, out, chunk_stars)

        client.register_plugin(TensorFlowSetup(model_path, warm_batch=int(batch_size)))
        t_tasks = time.perf_counter()
        markers, new = run_chunk_tasks(
            client, predict_chunk, chunk_ranges(n_star, chunk_stars), out=out, desc="predict", progress=progress,
            catalogue=catalogue, model_path=model_path, observed=ds.attrs.get("frame") == "observed",
            thresholds=thresholds.as_dict(), forward_batch=int(batch_size),  # (client.map has its own batch_size)
        )
        t_done = time.perf_counter()
        stars_written = sum(m["n_star"] for m in new)
        ok = sum(m["ok"] for m in markers.values())
        summary = {
            "job": "predict_catalogue",
            "catalogue": catalogue,
            "out": out,
            "model": model_path,
            "model_hash": digest,
            "stars_in": int(n_star),
            "stars_written": int(stars_written),
            "ok": int(ok),
            "flagged": int(n_star - ok),
            "flag_counts": {f.name: int(sum(m["flag_counts"][f.name] for m in markers.values())) for f in Flag},
            "chunk_stars": chunk_stars,
            "chunks_total": len(markers),
            "chunks_done": len(new),
            "chunks_skipped": len(markers) - len(new),
            "seconds": None,  # set below, after the truth statistics
            "spectra_per_second": None,
            "seconds_setup": round(t_tasks - t0, 3),
            "seconds_tasks": round(t_done - t_tasks, 3),
            "task_seconds_read": round(sum(m["seconds_read"] for m in new), 3),
            "task_seconds_compute": round(sum(m["seconds_compute"] for m in new), 3),
            **{f"task_seconds_{part}": round(sum(m.get(f"seconds_{part}", 0.0) for m in new), 3)
               for part in ("prepare", "network", "write")},
            "worker_peak_rss_mb": max((m["peak_rss_mb"] for m in new), default=None),
        }
        truth = _summed_truth(out, markers)
        if truth is not None:
            summary["truth"] = truth_table(truth["all"])
            if truth["heldout"] is not None:
                summary["truth_heldout"] = truth_table(truth["heldout"])
                summary["truth_note"] = ("truth: all stars; truth_heldout: stars whose grid model was not in the "
                                         "network's training split (its model card)")
        seconds = time.perf_counter() - t0
        summary["seconds"] = round(seconds, 3)
        summary["spectra_per_second"] = round(stars_written / seconds, 1) if seconds > 0 else 0.0
        zarr.open_group(out, mode="r+", zarr_format=3).attrs["summary"] = summary
        return summary

