"""The predict job's chunk task and the per-block function it calls.

* :func:`predict_block` is the per-block function on numpy arrays: sanitize the pixels,
  shift to the rest frame, resample onto ``INPUT_WAVE`` and normalize
  (:func:`lamost2csst.core.prepare_inputs`), run UaRA-net
  (:func:`lamost2csst.nn.inference.predict`, the project's one predict loop; the total
  ``sigma = hypot(sigma_net, sigma_sys)`` with the model discrepancy,
  :mod:`lamost2csst.core.discrepancy`) and set the quality flags
  (:mod:`lamost2csst.core.flags`; ``UNCERTAIN`` on the network's ``sigma_net``, the sigma
  its threshold was set on, so that a model discrepancy does not change the flag rates), and,
  given the domain check's templates, the spectrum's own Teff estimate and best-template
  chi-square (:func:`lamost2csst.core.domain.estimate_domain`), which set ``OUTSIDE_DOMAIN``
  for stars without a finite catalogue Teff (:func:`lamost2csst.core.flags.domain_flags`).
  It runs the same in a notebook;
* :func:`predict_chunk` is one task: read a chunk of stars, :func:`predict_block`, write the
  chunk's region of the predictions store (``sed``, ``sigma``, ``sigma_net``,
  ``sigma_sys``, ``flags``, ``teff_estimate``, ``teff_estimate_error``, ``domain_chi2``), then,
  when the catalogue has true SEDs, the chunk's truth
  statistics (:func:`lamost2csst.core.metrics.truth_statistics`, coverage on the total
  ``sigma``) beside its marker (``<out>/.markers/chunk-<index>.truth.npz``), then the
  marker. The model, its discrepancy (the model card's,
  :func:`lamost2csst.nn.inference.model_discrepancy`) and the domain templates
  (:func:`domain_templates_for`) are read once per worker process (cached), not per chunk.
  :func:`summed_truth` adds the chunks' statistics up.
"""

from __future__ import annotations

import functools
import io
import os
import socket
import time
from datetime import UTC, datetime

import numpy as np

from lamost2csst.core import OUTPUT_WAVE, prepare_inputs
from lamost2csst.core.domain import DomainTemplates, estimate_domain, spectrum_color
from lamost2csst.core.flags import (
    Flag,
    FlagThresholds,
    bad_redshift,
    domain_flags,
    input_flags,
    median_snr,
    output_flags,
    sanitize_pixels,
)
from lamost2csst.core.inputs import DEFAULT_TROUBLE, treat_trouble_spots
from lamost2csst.core.metrics import TRUTH_FIELDS, truth_statistics
from lamost2csst.io.regions import read_region, write_region
from lamost2csst.io.storage import read_bytes, write_bytes
from lamost2csst.parallel.chunks import marker_path
from lamost2csst.parallel.runtime import peak_rss_mb, write_json

__all__ = ["domain_templates_for", "predict_block", "predict_chunk", "summed_truth", "truth_path"]

#: What a task reads of the catalogue (names it lacks are left out).
_READ = ("wave", "flux", "ivar", "mask", "z", "teff", "logg", "feh", "alpha", "snr_g", "sed_true")
#: The per-pixel outputs of :func:`predict_block` (``SEDPrediction``'s fields).
_PARTS = ("sed", "sigma", "sigma_net", "sigma_sys")
#: The per-star outputs of the domain check (:func:`lamost2csst.core.domain.estimate_domain`).
_DOMAIN = {"teff_estimate": "teff", "teff_estimate_error": "teff_error", "domain_chi2": "chi2"}


def _prepared_block(
    wave, *, flux, ivar, mask, z, teff, thresholds: FlagThresholds, observed: bool, trouble: str
):
    """The network's inputs and the input flags of a block (the preparing part of :func:`predict_block`).

    Parameters
    ----------
    wave, flux, ivar, mask, z, teff, observed, trouble
        As for :func:`predict_block`.
    thresholds : FlagThresholds

    Returns
    -------
    net
        :func:`lamost2csst.core.prepare_inputs` of the sanitized pixels in the rest frame.
    flags : numpy.ndarray of uint16 (n_star,)
        :func:`lamost2csst.core.flags.input_flags`.
    color : numpy.ndarray (n_star,)
        :func:`lamost2csst.core.domain.spectrum_color` of the sanitized spectra (rest-frame windows).
    """
    flux, ivar, mask, nonfinite = sanitize_pixels(flux, ivar, mask)
    n_star = flux.shape[0]
    z = np.broadcast_to(np.asarray(z, dtype=np.float64), (n_star,))
    z_missing, z_implausible = bad_redshift(z, max_abs_z=thresholds.max_abs_z)
    mask |= z_missing[:, None]  # no rest frame: nothing of the spectrum is usable
    z_used = np.where(z_missing, 0.0, z) if observed else np.zeros(n_star)
    if trouble == "keep" or not observed:  # as the job was before the treatment (bit-identical)
        net = prepare_inputs(wave, flux, ivar=ivar, z=z_used, mask=mask)
    else:  # in the observed frame, before the shift; LOW_SNR stays on the file's own ivar
        ivar_net, mask_net = treat_trouble_spots(wave, ivar, mask, mode=trouble)
        net = prepare_inputs(wave, flux, ivar=ivar_net, z=z_used, mask=mask_net)
    flags = input_flags(
        net.mask,
        snr=median_snr(flux, ivar, mask),
        nonfinite=nonfinite,
        z_missing=z_missing,
        z_implausible=z_implausible,
        teff=teff,
        thresholds=thresholds,
    )
    return net, flags, spectrum_color(wave, flux, mask=mask, z=z_used)


def predict_block(
    wave,
    flux,
    ivar,
    mask,
    z,
    *,
    model,
    discrepancy=None,
    teff=None,
    thresholds: FlagThresholds | None = None,
    observed: bool = True,
    batch_size: int = 1024,
    timings: dict | None = None,
    trouble: str = DEFAULT_TROUBLE,
    domain: DomainTemplates | None = None,
    spectra: str = "real",
) -> dict[str, np.ndarray]:
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
    discrepancy : ModelDiscrepancy, optional
        Added in quadrature to the network's sigma. Default as in
        :func:`lamost2csst.nn.inference.predict`: the model card's for a path, none for a
        loaded model (pass ``model_discrepancy(path)`` with a loaded model).
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
    trouble : {"mask", "inflate", "keep"}
        LAMOST's trouble spots (sky-line residuals, arm junction; observed frame):
        :func:`lamost2csst.core.inputs.treat_trouble_spots` before the rest-frame shift; default
        :data:`~lamost2csst.core.inputs.DEFAULT_TROUBLE` ("mask"); "keep" leaves the pixels as they
        are. Only for observed-frame spectra: with ``observed=False`` nothing is treated.
    domain : DomainTemplates, optional
        Templates of the domain check (:func:`domain_templates_for`); None: no check (the
        domain outputs are NaN and ``OUTSIDE_DOMAIN`` comes from ``teff`` only).
    spectra : {"real", "synthetic"}
        What the spectra are, for a model with a real-star branch
        (:func:`lamost2csst.nn.inference.predict`'s ``domain``).

    Returns
    -------
    dict
        ``sed``, ``sigma`` (total), ``sigma_net``, ``sigma_sys`` float32 (n_star, 574), NaN
        for ``NO_DATA`` stars; ``flags`` uint16 (n_star,); ``input_masked_fraction``,
        ``teff_estimate``, ``teff_estimate_error`` (K) and ``domain_chi2`` float32 (n_star,).
    """
    from lamost2csst.nn.inference import predict

    t0 = time.perf_counter()
    thresholds = thresholds or FlagThresholds()
    net, flags, color = _prepared_block(
        wave,
        flux=flux,
        ivar=ivar,
        mask=mask,
        z=z,
        teff=teff,
        thresholds=thresholds,
        observed=observed,
        trouble=trouble,
    )
    n_star = flags.shape[0]
    rows = np.flatnonzero((flags & Flag.NO_DATA) == 0)
    t_prepared = time.perf_counter()
    kwargs = {
        "model": model,
        "discrepancy": discrepancy,
        "batch_size": batch_size,
        "return_parts": True,
        "domain": spectra,
    }
    if rows.size == n_star:  # the usual case: no copies
        out = predict(net.flux, net.error, mask=net.mask, **kwargs)._asdict()
        flags |= output_flags(out["sigma_net"], thresholds=thresholds)
    else:
        out = {name: np.full((n_star, OUTPUT_WAVE.size), np.nan, np.float32) for name in _PARTS}
        if rows.size:
            got = predict(net.flux[rows], net.error[rows], mask=net.mask[rows], **kwargs)._asdict()
            for name in _PARTS:
                out[name][rows] = got[name]
            flags[rows] |= output_flags(got["sigma_net"], thresholds=thresholds)
    t_network = time.perf_counter()
    checked = _domain_check(net, rows, color=color, domain=domain, teff=teff, thresholds=thresholds)
    flags |= checked.pop("flags")
    if timings is not None:
        timings.update(
            prepare=t_prepared - t0,
            network=t_network - t_prepared,
            domain=time.perf_counter() - t_network,
        )
    return {
        **out,
        **checked,
        "flags": flags,
        "input_masked_fraction": net.mask.mean(axis=1).astype(np.float32),
    }


def _domain_check(net, rows, *, color, domain, teff, thresholds: FlagThresholds) -> dict[str, np.ndarray]:
    """The domain outputs (NaN where not estimated) and the ``OUTSIDE_DOMAIN`` flags they give."""
    n_star = net.mask.shape[0]
    res = {name: np.full(n_star, np.nan, np.float32) for name in _DOMAIN}
    res["flags"] = np.zeros(n_star, np.uint16)
    if domain is None or rows.size == 0:
        return res
    est = estimate_domain(
        net.flux[rows],
        net.error[rows],
        mask=net.mask[rows],
        templates=domain,
        floor=thresholds.domain_error_floor,
        color=color[rows],
        color_error=thresholds.domain_color_error,
    )
    for name, field in _DOMAIN.items():
        res[name][rows] = getattr(est, field)
    res["flags"][rows] = domain_flags(
        est.teff, est.chi2, teff=None if teff is None else np.asarray(teff)[rows], thresholds=thresholds
    )
    return res


def truth_path(out: str, index: int) -> str:
    """Where chunk ``index`` keeps its truth statistics (beside its marker)."""
    return marker_path(out, index).replace(".done", ".truth.npz")


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


@functools.lru_cache(maxsize=4)
def domain_templates_for(model_path: str) -> DomainTemplates:
    """The domain check's templates for a model: its card's training models and the reference set (cached).

    See :func:`lamost2csst.io.domain.domain_templates`; a card without a split uses every grid model.
    """
    from lamost2csst.io.domain import domain_templates
    from lamost2csst.nn.inference import model_card

    train = (model_card(model_path).get("split") or {}).get("train")
    return domain_templates(train_keys=train or None)


def _held_out(src: dict, model_path: str) -> np.ndarray | None:
    """Stars whose (teff, logg, feh, alpha) is not a training model of the network (None: unknown)."""
    names = ("teff", "logg", "feh", "alpha")
    train = _training_models(model_path)
    if not train or not all(n in src for n in names):
        return None
    params = np.round(np.stack([src[n] for n in names], axis=1).astype(np.float64), 3)
    return np.array([tuple(row) not in train for row in params], dtype=bool)


def _write_truth(out: str, index: int, res: dict, src: dict, model_path: str) -> None:
    """The chunk's truth statistics (all stars, and the held-out ones when known) beside its marker."""
    args = (res["sed"], res["sigma"], res["flags"], src["sed_true"], src.get("snr_g"))
    stats = {f"all_{k}": v for k, v in truth_statistics(*args).items()}
    held = _held_out(src, model_path)
    if held is not None:
        snr = None if args[4] is None else args[4][held]
        held_stats = truth_statistics(*(a[held] for a in args[:4]), snr)
        stats.update({f"heldout_{k}": v for k, v in held_stats.items()})
    buffer = io.BytesIO()
    np.savez(buffer, **stats)
    write_bytes(truth_path(out, index), buffer.getvalue())


def predict_chunk(
    index: int,
    start: int,
    stop: int,
    *,
    catalogue: str,
    out: str,
    model_path: str,
    observed: bool,
    thresholds: dict,
    forward_batch: int,
    trouble: str = DEFAULT_TROUBLE,
    spectra: str = "real",
) -> dict:
    """One task: stars ``start:stop`` of ``catalogue`` -> the same region of ``out``, then the marker."""
    from lamost2csst.nn.inference import load_model, model_discrepancy

    t0 = time.perf_counter()
    src = read_region(catalogue, start, stop, _READ)
    thresholds = FlagThresholds.from_dict(thresholds)
    t_read = time.perf_counter()
    timings = {}
    res = predict_block(
        src["wave"],
        src["flux"],
        src["ivar"],
        src["mask"],
        src["z"],
        model=load_model(model_path),  # both cached per process: read at the worker's first task
        discrepancy=model_discrepancy(model_path),
        teff=src.get("teff"),
        thresholds=thresholds,
        observed=observed,
        batch_size=forward_batch,
        timings=timings,
        trouble=trouble,
        domain=domain_templates_for(model_path),
        spectra=spectra,
    )
    t_compute = time.perf_counter()
    write_region(out, start, stop, {name: res[name] for name in (*_PARTS, *_DOMAIN, "flags")})
    t_write = time.perf_counter()
    has_truth = "sed_true" in src
    if has_truth:
        _write_truth(out, index, res, src, model_path)
    flags = res["flags"]
    marker = {
        "index": int(index),
        "start": int(start),
        "stop": int(stop),
        "n_star": int(stop - start),
        "ok": int((flags == 0).sum()),
        "flag_counts": {f.name: int(((flags & f) != 0).sum()) for f in Flag},
        "truth": has_truth,
        "seconds": round(time.perf_counter() - t0, 4),
        "seconds_read": round(t_read - t0, 4),
        "seconds_compute": round(t_compute - t_read, 4),
        "seconds_prepare": round(timings["prepare"], 4),
        "seconds_network": round(timings["network"], 4),
        "seconds_domain": round(timings["domain"], 4),
        "seconds_write": round(t_write - t_compute, 4),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "finished_utc": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    write_json(marker_path(out, index), marker)  # last: a chunk with a marker is complete
    return marker


def summed_truth(out: str, markers: dict) -> dict | None:
    """Sums of the chunks' truth statistics: ``{"all": stats, "heldout": stats or None}`` (None: no truth)."""
    if not markers or not all(m.get("truth") for m in markers.values()):
        return None
    total = {}
    for index in markers:
        with np.load(io.BytesIO(read_bytes(truth_path(out, index)))) as part:
            for key in part.files:
                total[key] = total[key] + part[key] if key in total else part[key].copy()
    split = {
        prefix: {k: total[f"{prefix}_{k}"] for k in TRUTH_FIELDS}
        for prefix in ("all", "heldout")
        if f"{prefix}_n" in total
    }
    return {"all": split["all"], "heldout": split.get("heldout")}
