"""lamost2csst: LAMOST low-resolution spectra to CSST-like SEDs with per-pixel uncertainties.

The public API for notebooks and scripts. Wavelengths are vacuum Angstrom throughout.
"""

from lamost2csst._version import __version__
from lamost2csst.core import (
    BANDS,
    INPUT_WAVE,
    LAMOST_WAVE,
    OUTPUT_WAVE,
    add_noise,
    air_to_vacuum,
    band_statistics,
    continuum,
    degrade,
    degrade_error,
    normalize,
    prepare_inputs,
    relative_residual,
    resample,
    rmsae,
    scale_sed,
    shift_to_rest,
    vacuum_to_air,
)


def load_grid(path=None):
    """The shipped BOSZ-like synthetic grid as an xarray Dataset (see :mod:`lamost2csst.io.grid`)."""
    from lamost2csst.io.grid import load_grid as _load_grid  # xarray only when asked for

    return _load_grid(path)


def load_model(path=None):
    """The shipped UaRA-net (or the ``.keras`` file at ``path``); see :mod:`lamost2csst.nn.inference`."""
    from lamost2csst.nn.inference import load_model as _load_model  # TensorFlow only when asked for

    return _load_model(path)


def predict(
    norm_flux,
    norm_error,
    *,
    mask=None,
    model=None,
    batch_size: int = 1024,
    discrepancy=None,
    return_parts: bool = False,
    domain: str | None = None,
):
    """Predicted scaled SEDs and relative sigmas ``(sed, sigma)``, each (n, 574) float32.

    ``norm_flux``/``norm_error`` are normalized rest-frame spectra on ``INPUT_WAVE`` as
    :func:`prepare_inputs` returns them; ``mask`` marks pixels without data (given flux 1 and
    error ``lamost2csst.nn.MASKED_ERROR``); NaN/inf on unmasked pixels raise ``ValueError``.
    ``model`` is a loaded model or a path (default: the shipped model). ``sigma`` is the total
    ``hypot(sigma_net, sigma_sys)``: the network's own sigma and the model discrepancy of the
    model's card (none for an already-loaded model unless ``discrepancy`` is given);
    ``return_parts=True`` returns ``(sed, sigma, sigma_net, sigma_sys)``. ``domain``: for a model
    with a real-star branch, ``"real"`` (default: a survey's stars) or ``"synthetic"`` (the grid's
    SED). See :func:`lamost2csst.nn.inference.predict`.
    """
    from lamost2csst.nn.inference import predict as _predict

    return _predict(
        norm_flux,
        norm_error,
        mask=mask,
        model=model,
        batch_size=batch_size,
        discrepancy=discrepancy,
        return_parts=return_parts,
        domain=domain,
    )


def check_domain(norm_flux, norm_error, *, mask=None, color=None, model=None, thresholds=None):
    """Whether each spectrum lies in the network's training domain, judged from the spectrum alone.

    The same check as ``predict_catalogue`` runs for every star (:mod:`lamost2csst.core.domain`):
    a chi-square of the normalized input (as :func:`prepare_inputs` returns it) against the
    model's training models and reference models beyond its domain.

    Parameters
    ----------
    norm_flux, norm_error : array_like (n_star, 2238)
        Normalized rest-frame spectra on ``INPUT_WAVE`` and their 1-sigma errors.
    mask : array_like of bool (n_star, 2238), optional
        True where a pixel is unusable.
    color : array_like (n_star,), optional
        The spectra's colours, :func:`lamost2csst.core.domain.spectrum_color` of the observed
        (not normalized) spectra, as the job uses them: without them, hot stars (B type) are
        hard to tell from metal-poor A/F stars (see :mod:`lamost2csst.core.domain`).
    model : path, optional
        The ``.keras`` file whose training split (model card) gives the in-domain templates;
        default the shipped model.
    thresholds : lamost2csst.core.flags.FlagThresholds, optional
        ``domain_teff_range``, ``max_domain_chi2`` and ``domain_error_floor`` (defaults as the job's).

    Returns
    -------
    lamost2csst.core.domain.DomainEstimate, numpy.ndarray of bool
        ``(estimate, outside)``: per star the Teff estimate (K), its error, the best template's
        reduced chi-square and bins used (NaN without usable input), and True where the star
        is outside the domain (what sets ``OUTSIDE_DOMAIN`` without a catalogue Teff).
    """
    from lamost2csst.core.domain import check_spectra
    from lamost2csst.core.flags import FlagThresholds
    from lamost2csst.nn.inference import default_model_path
    from lamost2csst.parallel.predict_tasks import domain_templates_for

    templates = domain_templates_for(str(default_model_path() if model is None else model))
    estimate, outside = check_spectra(
        norm_flux,
        norm_error,
        mask=mask,
        color=color,
        templates=templates,
        thresholds=thresholds or FlagThresholds(),
    )
    return estimate, outside


def predict_catalogue(
    catalogue,
    out,
    *,
    client=None,
    model=None,
    chunk_stars=None,
    resume=False,
    progress=True,
    thresholds=None,
    batch_size: int = 1024,
) -> dict:
    """Predict SEDs, sigmas and quality flags for every star of a Zarr spectra catalogue into ``out``.

    What ``python -m jobs.predict_catalogue`` runs. ``client`` is a ``distributed.Client``;
    without one, a LocalCluster with one single-threaded worker per CPU core is started for
    the call. Returns the summary dict. See
    :func:`lamost2csst.parallel.predict.predict_catalogue` for every argument.
    """
    from lamost2csst.parallel.predict import predict_catalogue as _predict_catalogue

    kwargs = dict(
        model=model,
        chunk_stars=chunk_stars,
        resume=resume,
        progress=progress,
        thresholds=thresholds,
        batch_size=batch_size,
    )
    if client is not None:
        return _predict_catalogue(catalogue, out, client=client, **kwargs)
    from lamost2csst.parallel.runtime import dask_client

    with dask_client() as own_client:
        return _predict_catalogue(catalogue, out, client=own_client, **kwargs)


__all__ = [
    "BANDS",
    "INPUT_WAVE",
    "LAMOST_WAVE",
    "OUTPUT_WAVE",
    "__version__",
    "add_noise",
    "air_to_vacuum",
    "band_statistics",
    "check_domain",
    "continuum",
    "degrade",
    "degrade_error",
    "load_grid",
    "load_model",
    "normalize",
    "predict",
    "predict_catalogue",
    "prepare_inputs",
    "relative_residual",
    "resample",
    "rmsae",
    "scale_sed",
    "shift_to_rest",
    "vacuum_to_air",
]
