"""Dask job: a spectra catalogue -> predicted CSST-like SEDs, sigmas and quality flags (Zarr).

:func:`predict_catalogue` builds the work: it opens the input once, writes the output
template (the predictions store, :mod:`lamost2csst.io.predictions`) first, registers the
worker set-up (:class:`lamost2csst.parallel.workers.TensorFlowSetup`: TensorFlow, the model
and its compiled forward pass once per worker process; the one-off cost shows in the
summary's ``seconds_setup``), then runs one task per output chunk
(:func:`lamost2csst.parallel.predict_tasks.predict_chunk`: read its stars,
:func:`~lamost2csst.parallel.predict_tasks.predict_block`, write its region, then its
marker; :mod:`lamost2csst.parallel.chunks`); ``resume=True`` skips the chunks with a
marker, and refuses a predictions store of another schema version (``/1`` had no
``sigma_net``/``sigma_sys``, ``/2`` no domain check) or one made with another model
discrepancy (the model card's
``sigma_sys``, recorded in the store's ``sigma_sys_sha256``). With true SEDs in the
catalogue (the demo) the summary reports the typical error
(:func:`lamost2csst.core.metrics.truth_table`).

The older names of this module (``PREDICTIONS_SCHEMA``, ``predictions_template``,
``predict_block``, ``predict_chunk``, ``TensorFlowSetup``, ``SNR_BINS``,
``truth_statistics``, ``truth_table``) stay importable from here.
"""

from __future__ import annotations

import os
import time

import zarr

from lamost2csst.core.flags import Flag, FlagThresholds
from lamost2csst.core.inputs import DEFAULT_TROUBLE, TROUBLE_MODES
from lamost2csst.core.metrics import SNR_BINS, truth_statistics, truth_table
from lamost2csst.errors import InputError
from lamost2csst.io.predictions import PREDICTIONS_SCHEMA, is_other_version, predictions_template
from lamost2csst.io.spectra import spectra_kind
from lamost2csst.io.storage import exists as storage_exists
from lamost2csst.io.storage import resolve
from lamost2csst.parallel.chunks import chunk_ranges, open_input, prepare_output, run_chunk_tasks
from lamost2csst.parallel.locking import output_lock
from lamost2csst.parallel.predict_tasks import (
    domain_templates_for,
    predict_block,
    predict_chunk,
    summed_truth,
)
from lamost2csst.parallel.runtime import release_freed_memory, remove_store
from lamost2csst.parallel.workers import TensorFlowSetup

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


def predict_catalogue(
    catalogue,
    out,
    *,
    client,
    model=None,
    chunk_stars=None,
    resume=False,
    overwrite=False,
    progress=True,
    thresholds: FlagThresholds | None = None,
    batch_size: int = 1024,
    lamost_trouble: str = DEFAULT_TROUBLE,
    spectra: str = "auto",
) -> dict:
    """Predict SEDs for every star of a spectra catalogue into a ``lamost2csst.predictions/3`` store.

    Each star gets ``sed``, the total ``sigma = hypot(sigma_net, sigma_sys)``, its parts (the
    network's ``sigma_net`` and the model discrepancy ``sigma_sys`` of the model's card, 0
    when the card has none), ``flags`` and the domain check of its spectrum
    (``teff_estimate``, ``teff_estimate_error``, ``domain_chi2``; they set ``OUTSIDE_DOMAIN``
    for stars without a finite catalogue ``teff``; :mod:`lamost2csst.io.predictions`).

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
        A ``.keras`` UaRA-net file visible to every worker (its model card beside it, with
        the model discrepancy, too); default the shipped model.
    chunk_stars : int, optional
        Stars per output chunk = per task; default the input's chunk size (on resume the
        existing output's).
    resume, overwrite : bool
        Finish an existing output of the same input, chunking, model, model discrepancy,
        thresholds and schema version; or remove an existing output first (only a
        ``lamost2csst.predictions`` store, of any version).
    progress : bool
        A tqdm bar over chunks on stderr.
    thresholds : FlagThresholds, optional
        Where the quality flags start.
    batch_size : int
        Spectra per forward pass of the network.
    lamost_trouble : {"mask", "inflate", "keep"}
        LAMOST's trouble spots (sky-line residuals, blue/red arm junction), treated in the
        observed frame before the rest-frame shift (:func:`lamost2csst.core.inputs.treat_trouble_spots`;
        docs/operations.md, "LAMOST trouble spots"): masked by default; "inflate" multiplies
        their errors by 10 (changes sigma only); "keep" gives the outputs of the job before the
        treatment existed. Other than "keep" it is recorded in the output's attrs
        (``input_trouble``; absent = "keep") and must match on resume. A rest-frame catalogue
        (``frame`` not "observed") is never treated.
    spectra : {"auto", "real", "synthetic"}
        What the catalogue's spectra are, for a model with a real-star branch (a ``domain``
        input, :mod:`lamost2csst.nn.model`): "real" predicts the SEDs of real stars (a survey),
        "synthetic" the synthetic grid's SEDs (simulated catalogues: the demo); "auto" takes the
        catalogue's ``spectra_kind`` attr (the demo and simulated catalogues say "synthetic"),
        and "real" where it has none. Recorded in the output's attrs (``input_spectra``) for such
        a model, and it must match on resume; a model without the input ignores it.

    Returns
    -------
    dict
        The summary (also in the output's attrs): ``stars_in``, ``stars_written`` (this
        run), ``ok``, ``flagged``, ``flag_counts``, chunk counts, ``seconds``,
        ``spectra_per_second``, where the tasks spent their time (``task_seconds_read``,
        ``_prepare``, ``_network``, ``_write``, summed over this run's chunks), the model hash
        and, when the input has true SEDs, ``truth`` (typical error per band and S/N bin)
        and, when the catalogue has grid parameters and the model card its training split,
        ``truth_heldout`` (the same for the stars of models the network was not trained on).

    Raises
    ------
    InputError (a ValueError)
        Bad input, an existing output without ``resume``, or one that does not match; another
        live job writing ``out`` (its lock ``<out>.lock``, :mod:`lamost2csst.parallel.locking`).
    """
    t0 = time.perf_counter()
    catalogue, out = resolve(catalogue), resolve(out)
    model_path = _checked_model(model, batch_size)
    thresholds = thresholds or FlagThresholds()
    if lamost_trouble not in TROUBLE_MODES:
        raise InputError(f"lamost_trouble must be one of {TROUBLE_MODES}, got {lamost_trouble!r}")
    if spectra not in SPECTRA_CHOICES:
        raise InputError(f"spectra must be one of {SPECTRA_CHOICES}, got {spectra!r}")
    with output_lock(out, job="predict_catalogue", resume=resume):
        return _predict_locked(
            client,
            catalogue,
            out,
            model_path=model_path,
            thresholds=thresholds,
            chunk_stars=chunk_stars,
            resume=resume,
            overwrite=overwrite,
            progress=progress,
            batch_size=batch_size,
            t0=t0,
            trouble=lamost_trouble,
            spectra=spectra,
        )


def _predict_locked(
    client,
    catalogue: str,
    out: str,
    *,
    model_path: str,
    thresholds: FlagThresholds,
    chunk_stars,
    resume: bool,
    overwrite: bool,
    progress: bool,
    batch_size: int,
    t0: float,
    trouble: str = DEFAULT_TROUBLE,
    spectra: str = "auto",
) -> dict:
    """The work of :func:`predict_catalogue` once it holds the output's lock: prepare, run, summarize.

    Parameters
    ----------
    client : distributed.Client
    catalogue, out : str
        The resolved input and output stores.
    model_path : str
        The checked model file.
    thresholds : FlagThresholds
    chunk_stars, resume, overwrite, progress, batch_size
        As for :func:`predict_catalogue`.
    t0 : float
        ``time.perf_counter()`` at the start of the job.
    trouble : str
        ``lamost_trouble`` of :func:`predict_catalogue`.
    spectra : str
        ``spectra`` of :func:`predict_catalogue`.

    Returns
    -------
    dict
        The summary, also stored in the output's attrs.
    """
    ds = open_input(catalogue)
    if spectra == "auto":
        spectra = spectra_kind(ds)
    if ds.attrs.get("frame") != "observed":
        trouble = "keep"  # the trouble spots are at observed wavelengths: a rest-frame catalogue has none
    chunk_stars, digest = _prepared_output(
        out,
        ds,
        catalogue=catalogue,
        model_path=model_path,
        thresholds=thresholds,
        chunk_stars=chunk_stars,
        resume=resume,
        overwrite=overwrite,
        trouble=trouble,
        spectra=spectra,
    )
    client.register_plugin(TensorFlowSetup(model_path, warm_batch=int(batch_size)))
    t_tasks = time.perf_counter()
    try:
        markers, new = run_chunk_tasks(
            client,
            predict_chunk,
            chunk_ranges(ds.sizes["star"], chunk_stars),
            out=out,
            desc="predict",
            progress=progress,
            catalogue=catalogue,
            model_path=model_path,
            observed=ds.attrs.get("frame") == "observed",
            thresholds=thresholds.as_dict(),
            forward_batch=int(batch_size),  # (client.map has its own batch_size)
            trouble=trouble,
            spectra=spectra,
        )
    finally:
        client.run(release_freed_memory, on_error="ignore")  # kept by the workers for the tasks
    summary = _summary(
        catalogue,
        out,
        model_path=model_path,
        model_hash=digest,
        n_star=ds.sizes["star"],
        chunk_stars=chunk_stars,
        markers=markers,
        new=new,
        seconds_setup=t_tasks - t0,
        seconds_tasks=time.perf_counter() - t_tasks,
    )
    summary.update(_truth_summary(out, markers))
    return _stored_summary(out, summary, seconds=time.perf_counter() - t0)


def _prepared_output(
    out: str,
    ds,
    *,
    catalogue: str,
    model_path: str,
    thresholds: FlagThresholds,
    chunk_stars,
    resume: bool,
    overwrite: bool,
    trouble: str = DEFAULT_TROUBLE,
    spectra: str = "real",
) -> tuple[int, str]:
    """Write (or check, on resume) the output's template; its chunk size and the model's hash.

    Parameters
    ----------
    out : str
        The output store.
    ds : xarray.Dataset
        The opened catalogue.
    catalogue, model_path : str
        The resolved catalogue and model file.
    thresholds : FlagThresholds
    chunk_stars, resume, overwrite
        As for :func:`predict_catalogue`.
    trouble : str
        ``lamost_trouble`` of :func:`predict_catalogue` (an attr only when not "keep").
    spectra : str
        "real" or "synthetic" (an attr ``input_spectra`` only for a model with a domain input).

    Returns
    -------
    chunk_stars : int
    model_hash : str
    """
    from lamost2csst.nn.inference import model_card, model_discrepancy, model_hash

    digest, card = model_hash(model_path), model_card(model_path)
    try:
        discrepancy = model_discrepancy(model_path)
    except ValueError as err:
        raise InputError(f"model {model_path}: {err}") from None
    _other_version(out, resume=resume, overwrite=overwrite)

    def template(n: int):
        output = predictions_template(
            ds,
            chunk_stars=n,
            catalogue=catalogue,
            model_path=model_path,
            model_hash=digest,
            model_card=card,
            thresholds=thresholds,
            discrepancy=discrepancy,
            domain_provenance=domain_templates_for(model_path).provenance,
        )
        if trouble != "keep":  # absent = "keep", as in the stores made before the option existed
            output.attrs["input_trouble"] = trouble
        if (card.get("model_config") or {}).get("domain_input"):
            output.attrs["input_spectra"] = spectra
        return output

    chunk_stars = prepare_output(
        out,
        ds,
        chunk_stars=chunk_stars,
        resume=resume,
        overwrite=overwrite,
        schema=PREDICTIONS_SCHEMA,
        template=template,
        variable="sed",
        same_attrs=(
            "model_hash",
            "sigma_sys_sha256",
            "flag_thresholds",
            "input_resampling",
            "input_trouble",
            "input_spectra",
        ),
    )
    return chunk_stars, digest


#: ``spectra`` of :func:`predict_catalogue` ("auto": :func:`lamost2csst.io.spectra.spectra_kind`).
SPECTRA_CHOICES = ("auto", "real", "synthetic")


def _other_version(out: str, *, resume: bool, overwrite: bool) -> None:
    """An existing predictions store of another schema version: removed (``overwrite``) or refused.

    Refused with ``resume``; without either, the existing store is refused anyway. Any other
    existing store is left to :func:`lamost2csst.parallel.chunks.prepare_output`.
    """
    if not storage_exists(out):
        return
    try:
        schema = zarr.open_group(out, mode="r", zarr_format=3).attrs.get("schema")
    except Exception:  # noqa: BLE001 - anything unreadable is reported by prepare_output
        return
    if not is_other_version(schema):
        return
    if overwrite:
        remove_store(out, schema=schema)
    elif resume:
        raise InputError(
            f"cannot resume into {out}: it is a {schema} store and this lamost2csst writes "
            f"{PREDICTIONS_SCHEMA} (sigma is the total, with sigma_net and sigma_sys beside it, and "
            "every star has the domain check's teff_estimate and domain_chi2); "
            "chunks of the two cannot be mixed. Write a new store (another output path), or rerun "
            "without --resume and with --overwrite to replace this one."
        )


def _checked_model(model, batch_size) -> str:
    """The model file's path (default: the shipped model), after the checks of the job's arguments."""
    from lamost2csst.nn.inference import default_model_path

    model_path = resolve(model) if model is not None else str(default_model_path())
    if not os.path.exists(model_path):
        raise InputError(f"model file {model_path} does not exist")
    if not model_path.endswith(".keras"):
        raise InputError(f"model file {model_path} is not a Keras 3 .keras file")
    if int(batch_size) != batch_size or batch_size < 1:
        raise InputError(f"batch_size must be a positive integer, got {batch_size!r}")
    return model_path


def _summary(
    catalogue: str,
    out: str,
    *,
    model_path: str,
    model_hash: str,
    n_star: int,
    chunk_stars: int,
    markers: dict,
    new: list,
    seconds_setup: float,
    seconds_tasks: float,
) -> dict:
    """The job's summary from the chunks' markers (all of them, and this run's); seconds set by the caller."""
    stars_written = sum(m["n_star"] for m in new)
    ok = sum(m["ok"] for m in markers.values())
    return {
        "job": "predict_catalogue",
        "catalogue": catalogue,
        "out": out,
        "model": model_path,
        "model_hash": model_hash,
        "stars_in": int(n_star),
        "stars_written": int(stars_written),
        "ok": int(ok),
        "flagged": int(n_star - ok),
        "flag_counts": {f.name: int(sum(m["flag_counts"][f.name] for m in markers.values())) for f in Flag},
        "chunk_stars": chunk_stars,
        "chunks_total": len(markers),
        "chunks_done": len(new),
        "chunks_skipped": len(markers) - len(new),
        "seconds": None,  # set by the caller, after the truth statistics
        "spectra_per_second": None,
        "seconds_setup": round(seconds_setup, 3),
        "seconds_tasks": round(seconds_tasks, 3),
        "task_seconds_read": round(sum(m["seconds_read"] for m in new), 3),
        "task_seconds_compute": round(sum(m["seconds_compute"] for m in new), 3),
        **{
            f"task_seconds_{part}": round(sum(m.get(f"seconds_{part}", 0.0) for m in new), 3)
            for part in ("prepare", "network", "domain", "write")
        },
        "worker_peak_rss_mb": max((m["peak_rss_mb"] for m in new), default=None),
    }


def _stored_summary(out: str, summary: dict, *, seconds: float) -> dict:
    """The summary with the run's seconds and rate, also stored in the output's attrs."""
    summary["seconds"] = round(seconds, 3)
    summary["spectra_per_second"] = round(summary["stars_written"] / seconds, 1) if seconds > 0 else 0.0
    zarr.open_group(out, mode="r+", zarr_format=3).attrs["summary"] = summary
    return summary


def _truth_summary(out: str, markers: dict) -> dict:
    """``truth`` (and ``truth_heldout``) rows of the summary when the catalogue has true SEDs."""
    truth = summed_truth(out, markers)
    if truth is None:
        return {}
    rows = {"truth": truth_table(truth["all"])}
    if truth["heldout"] is not None:
        rows["truth_heldout"] = truth_table(truth["heldout"])
        rows["truth_note"] = (
            "truth: all stars; truth_heldout: stars whose grid model was not in the "
            "network's training split (its model card)"
        )
    return rows
