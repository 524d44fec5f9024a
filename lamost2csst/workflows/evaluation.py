"""Evaluate a UaRA-net like Sects. 4.2-4.3 of the paper: grid test split, MILES verification.

:func:`evaluate_model` does all of it and writes ``evaluation.md``, ``evaluation.json`` and the
figures (what ``python -m jobs.evaluate_model`` runs); the parts are usable alone:

* :func:`split_models` - the test and training models of a model's split in a grid;
* :func:`grid_evaluation` - predictions for test models at each SNR x noise realisation, on the
  paper's direct path or through the survey job's LAMOST input path, and their tables;
* :func:`branch_health` - does the uncertainty branch follow the stated input errors;
* :func:`miles_evaluation` - the MILES stars of Sect. 4.3.

The statistics are :mod:`lamost2csst.core.evaluation`; tables and figures
:mod:`lamost2csst.workflows.report`; the ridge baseline :mod:`lamost2csst.workflows.baselines`.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from lamost2csst.core.evaluation import (
    MILES_WAVELENGTHS,
    PAPER_GRID,
    PAPER_MILES,
    evaluation_rows,
    sigma_calibration,
    sigma_summary,
    wavelength_errors,
)
from lamost2csst.core.grids import OUTPUT_WAVE
from lamost2csst.core.inputs import DEFAULT_METHOD
from lamost2csst.core.metrics import relative_residual
from lamost2csst.errors import InputError
from lamost2csst.io.training import gridded_library
from lamost2csst.nn.training import LibraryArrays, epoch_pairs
from lamost2csst.workflows import report
from lamost2csst.workflows.baselines import RidgeBaseline

__all__ = [
    "PAPER_GRID",
    "PAPER_MILES",
    "Evaluation",
    "GridArrays",
    "GridEvaluation",
    "branch_health",
    "evaluate_model",
    "evaluation_library",
    "grid_evaluation",
    "miles_evaluation",
    "predict_any",
    "split_models",
]

#: Teff range (K) of the MILES stars used (Sect. 4.3).
MILES_TEFF_RANGE = (5000.0, 9750.0)


class GridArrays(NamedTuple):
    """Every prediction of a grid evaluation, one row per test model x SNR x realisation."""

    sed_true: np.ndarray  # (k, 574) scaled, NaN where masked
    target_mask: np.ndarray
    sed: np.ndarray  # (k, 574) predicted
    sigma: np.ndarray  # (k, 574) predicted relative 1-sigma (total for an ensemble)
    teff: np.ndarray  # (k,)
    snr: np.ndarray  # (k,)
    star: np.ndarray  # (k,) index of the test model


class GridEvaluation(NamedTuple):
    """What :func:`grid_evaluation` returns."""

    rows: list  # evaluation_rows per (SNR, Teff bin), with ridge_error_B columns given a baseline
    arrays: GridArrays
    sigma_summary: list  # core.evaluation.sigma_summary per (SNR, band)


def evaluation_library(ds, *, lamost: bool = False) -> LibraryArrays:
    """A grid Dataset as a library: clean inputs, scaled targets, Teff (and ``flux_lamost``)."""
    g = gridded_library(ds)
    return LibraryArrays(
        g.flux_in,
        g.input_mask,
        g.sed,
        g.target_mask,
        ds["teff"].values.astype(float),
        ds["flux_lamost"].values if lamost else None,
    )


def _keys(params) -> list[tuple]:
    return [tuple(np.round(p, 4)) for p in params]


def _load_split(split, card) -> dict:
    if split is not None:
        return split if isinstance(split, dict) else json.loads(Path(split).read_text())
    if "split" in card:
        return card["split"]
    raise InputError("the model card has no training split; pass --split RUN/split.json")


def _training_split(model_path):
    """Training models of a model file: from its card, else from the ``split.json`` of its run directory."""
    from lamost2csst.nn.inference import model_card

    split = model_card(model_path).get("split")
    beside = Path(model_path).parent / "split.json"
    if split is None and beside.exists():
        split = json.loads(beside.read_text())
    return None if split is None else split["train"]


def _check_members(ensemble, wanted: set) -> None:
    """Refuse an ensemble member that cannot show, or did not keep, the test models out of training."""
    for member in ensemble:
        seen = _training_split(member)
        if seen is None:
            raise InputError(
                f"ensemble member {member} has neither a model card with its training "
                "split nor a split.json beside it; cannot check that it never saw the test "
                "models"
            )
        leaked = wanted & set(_keys(seen))
        if leaked:
            raise InputError(
                f"ensemble member {member} was trained on {len(leaked)} of the test "
                "models; train members with the same --split-seed as the first model"
            )


def split_models(card: dict, *, grid=None, split=None, ensemble=()):
    """The test and the training models of a model's split, as two grid Datasets.

    Parameters
    ----------
    card : dict
        The model card (:func:`lamost2csst.nn.inference.model_card`); its ``split`` is used
        unless ``split`` is given.
    grid : list of path, optional
        Grid part stores (default: the shipped grid).
    split : path or dict, optional
        A training run's ``split.json`` (or its content).
    ensemble : sequence of path
        Further ensemble members: each must show (card or ``split.json`` beside it) that the
        test models were not among its training models.

    Raises
    ------
    InputError
        No split, test models missing from the grid, or an ensemble member that saw them.
    """
    from lamost2csst.io.grid import load_grid

    split = _load_split(split, card)
    if grid:
        import xarray as xr

        parts = [load_grid(p) for p in grid]
        ds = xr.concat(parts, dim="model") if len(parts) > 1 else parts[0]
    else:
        ds = load_grid()
    keys = _keys(np.stack([ds[k].values.astype(float) for k in ("teff", "logg", "feh", "alpha")], axis=1))
    wanted = set(_keys(split["test"]))
    keep = np.array([k in wanted for k in keys])
    if keep.sum() != len(wanted):
        raise InputError(f"{len(wanted) - keep.sum()} test models of the split are not in the grid")
    _check_members(ensemble, wanted)
    trained = set(_keys(split["train"]))
    return ds.isel(model=np.flatnonzero(keep)), ds.isel(model=np.flatnonzero([k in trained for k in keys]))


def predict_any(model, flux, error, *, domain: str | None = None):
    """``(sed, sigma, sigma_aleatoric)`` of one model or of an ensemble (a list of models).

    ``domain`` as in :func:`lamost2csst.nn.inference.predict` (ensemble members have no such input).
    """
    from lamost2csst.nn.inference import predict
    from lamost2csst.nn.uncertainty import predict_ensemble

    if isinstance(model, list):
        out = predict_ensemble(flux, error, models=model)
        return out.sed, out.sigma, out.sigma_aleatoric
    sed, sigma = predict(flux, error, model=model, domain=domain)
    return sed, sigma, sigma


def grid_evaluation(
    model, ds, *, snrs, realisations, seed, baseline=None, input_path="direct", domain: str = "synthetic"
) -> GridEvaluation:
    """Predictions of ``model`` (or an ensemble) for the grid models of ``ds`` at each SNR x realisation.

    ``input_path`` as in :func:`lamost2csst.nn.training.epoch_pairs`: "direct" (the paper's
    test: Eq. 1 noise on the input grid) or "lamost" (observed, then the survey job's path).
    Realisation ``k`` draws its noise from ``default_rng([seed, k])`` ("direct") or
    ``default_rng([seed, k, 1])`` ("lamost"). A ``baseline`` (a callable from normalized
    input flux to SED, e.g. :class:`RidgeBaseline`) sees the same inputs; its typical errors
    become the ``ridge_error_B`` columns of the rows. ``domain``: how a model co-trained on
    real stars (:func:`lamost2csst.nn.inference.predict`) sees the grid's spectra; synthetic, by default.
    """
    lib = evaluation_library(ds, lamost=input_path == "lamost")
    parts, baseline_seds = [], []
    for k in range(realisations):
        # the lamost path draws from its own streams: the direct path's numbers do not change with it
        key = [seed, k] if input_path == "direct" else [seed, k, 1]
        data = epoch_pairs(lib, snrs=snrs, rng=np.random.default_rng(key), input_path=input_path)
        if baseline is not None:
            baseline_seds.append(baseline(data.flux))
        sed, sigma, aleatoric = predict_any(model, data.flux, data.error, domain=domain)
        parts.append(
            (data.sed, data.target_mask, sed, sigma, lib.teff[data.star], data.snr, data.star, aleatoric)
        )
    cat = [np.concatenate(x) for x in zip(*parts)]
    arrays = GridArrays(*cat[:7])
    rows = evaluation_rows(*cat[:4], teff=arrays.teff, snr=arrays.snr, star_id=arrays.star)
    if baseline is not None:
        base = np.concatenate(baseline_seds)
        base_rows = evaluation_rows(
            arrays.sed_true,
            arrays.target_mask,
            base,
            np.ones_like(base),
            teff=arrays.teff,
            snr=arrays.snr,
            star_id=arrays.star,
        )
        for row, b in zip(rows, base_rows):
            for band in ("GU", "GV", "GI"):
                row[f"ridge_error_{band}"] = b[f"error_{band}"]
    sigmas = sigma_summary(
        arrays.sed_true, arrays.target_mask, arrays.sed, arrays.sigma, aleatoric=cat[7], snr=arrays.snr
    )
    return GridEvaluation(rows, arrays, sigmas)


def branch_health(model, ds, *, seed, snr: float = 30.0) -> dict:
    """:func:`lamost2csst.nn.diagnostics.error_branch_response` on the grid models of ``ds`` at ``snr``."""
    from lamost2csst.nn.diagnostics import error_branch_response

    lib = evaluation_library(ds)
    data = epoch_pairs(lib, snrs=(snr,), rng=np.random.default_rng([seed, 7]))
    return {"snr": snr, **error_branch_response(model, data.flux, data.error)}


def miles_evaluation(model, *, snr, threshold, seed):
    """The MILES verification of Sect. 4.3: ``(result dict, (OUTPUT_WAVE, residuals, teff))``.

    The MILES v9.1 stars of the sdss-mangadap package with Teff in :data:`MILES_TEFF_RANGE` and
    parameters, screened by an out-of-fold GPR (Appendix B, RMSAE < ``threshold``); inputs with
    Eq. 1 noise at ``snr``; errors at :data:`MILES_WAVELENGTHS` and the sigma calibration.
    """
    from lamost2csst.core.gpr import screen_library
    from lamost2csst.io.readers.mangadap import read_mangadap_miles

    ds = read_mangadap_miles()
    teff, logg, feh = (ds[k].values.astype(float) for k in ("teff", "logg", "feh"))
    sel = (teff >= MILES_TEFF_RANGE[0]) & (teff <= MILES_TEFF_RANGE[1]) & np.isfinite(logg) & np.isfinite(feh)
    ds = ds.isel(star=np.flatnonzero(sel))
    g = gridded_library(ds)
    covered = ~g.target_mask.any(axis=0)  # the pixels every star covers (~3500-7500 A)
    params = np.stack([teff[sel], logg[sel], feh[sel]], axis=1)
    screen = screen_library(params, g.sed[:, covered], threshold=threshold, seed=seed)
    keep = screen.normal & ~g.input_mask.any(axis=1)
    lib = LibraryArrays(
        g.flux_in[keep], g.input_mask[keep], g.sed[keep], g.target_mask[keep], params[keep, 0]
    )
    data = epoch_pairs(lib, snrs=(snr,), rng=np.random.default_rng([seed, 99]))
    sed, sigma, aleatoric = predict_any(model, data.flux, data.error, domain="real")
    r = relative_residual(sed, data.sed, mask=data.target_mask)
    result = {
        "n_selected": int(sel.sum()),
        "n_screened_out": int((~screen.normal).sum()),
        "n_used": int(keep.sum()),
        "rmsae_threshold": threshold,
        "gpr_hyperparameters": screen.hyperparameters,
        "snr": snr,
        "errors": wavelength_errors(r, at=MILES_WAVELENGTHS),
        **sigma_calibration(r, sigma=sigma, aleatoric=aleatoric),
    }
    return result, (OUTPUT_WAVE, r, lib.teff)


@dataclass
class Evaluation:
    """What :func:`evaluate_model` wrote: the Markdown ``text``, the JSON ``result`` and ``out``."""

    out: Path
    text: str
    result: dict

    def summary(self) -> dict:
        """The one-line summary the job prints last."""
        miles = self.result["miles"]
        return {
            "out": str(self.out),
            "grid_rows": len(self.result["grid"]),
            "miles_stars": miles["n_used"] if miles else 0,
            "seconds": self.result["seconds"],
        }


@dataclass
class _Results:
    """Everything one evaluation measured (the input of the report)."""

    grid: GridEvaluation | None = None
    lamost: GridEvaluation | None = None
    branch: dict | None = None
    miles: dict | None = None
    miles_arrays: tuple | None = None


def _load_models(model_path, ensemble):
    from lamost2csst.nn.inference import default_model_path, load_model, model_card

    path = Path(model_path) if model_path else default_model_path()
    model = load_model(path)
    card = model_card(path)
    if ensemble:
        model = [model, *(load_model(p) for p in ensemble)]
    return path, model, card


def _grid_results(
    model, card, *, grid, split, ensemble, snrs, realisations, lamost_path, ridge_baseline, seed, domain
) -> _Results:
    ds, train_ds = split_models(card, grid=grid, split=split, ensemble=ensemble or ())
    branch = branch_health(model[0] if isinstance(model, list) else model, ds, seed=seed)
    baseline = RidgeBaseline.from_library(evaluation_library(train_ds), seed=seed) if ridge_baseline else None
    direct = grid_evaluation(
        model, ds, snrs=snrs, realisations=realisations, seed=seed, baseline=baseline, domain=domain
    )
    lamost = None
    if lamost_path and "flux_lamost" in ds:
        lamost = grid_evaluation(
            model, ds, snrs=snrs, realisations=realisations, seed=seed, input_path="lamost", domain=domain
        )
    return _Results(grid=direct, lamost=lamost, branch=branch)


def _result_json(results: _Results, *, path, card, ensemble, figures, seconds) -> dict:
    grid, lamost, sigmas = results.grid, results.lamost, results.grid and results.grid.sigma_summary
    aleatoric = (
        {f"snr{r['snr']:g}_{r['band']}": r["within1sigma_aleatoric"] for r in sigmas}
        if ensemble and sigmas
        else None
    )
    return {
        "model": str(path),
        "sha256": card.get("sha256"),
        "ensemble": ensemble,
        "grid": grid.rows if grid else [],
        "grid_within1sigma_aleatoric_only": aleatoric,
        "grid_sigma_summary": sigmas,
        "error_branch": results.branch,
        "grid_lamost_path": (lamost.rows or None) if lamost else None,
        "grid_lamost_path_sigma_summary": lamost.sigma_summary if lamost else None,
        "lamost_path_resampling": DEFAULT_METHOD if lamost and lamost.rows else None,
        "miles": results.miles,
        "paper_grid": {f"{t}K_snr{s}": v for (t, s), v in PAPER_GRID.items()},
        "paper_miles": PAPER_MILES,
        "figures": [str(f) for f in figures],
        "seconds": seconds,
    }


def evaluate_model(
    *,
    out,
    model_path=None,
    grid=None,
    split=None,
    grid_test: bool = True,
    snrs=(20.0, 40.0, 80.0),
    realisations: int = 10,
    lamost_path: bool = True,
    miles: bool = False,
    miles_snr: float = 100.0,
    miles_rmsae: float = 0.05,
    ensemble=None,
    ridge_baseline: bool = False,
    seed: int = 2024,
    command: str | None = None,
    real_stars=None,
    domain: bool = False,
    grid_domain: str = "synthetic",
) -> Evaluation:
    """Evaluate a model and write ``out/evaluation.md``, ``out/evaluation.json`` and the PNG figures.

    Parameters
    ----------
    out : path
        Output directory (created).
    model_path : path, optional
        A ``.keras`` model (default: the shipped model).
    grid, split
        As :func:`split_models` (default: the shipped grid, the split in the model card).
    grid_test : bool
        Evaluate the grid test split (:func:`grid_evaluation` at ``snrs`` with ``realisations``
        noise draws, and :func:`branch_health`).
    lamost_path : bool
        Also the same test models through the survey job's input path (if the grid has ``flux_lamost``).
    miles : bool
        Also :func:`miles_evaluation` at ``miles_snr`` with GPR threshold ``miles_rmsae``.
    ensemble : list of path, optional
        More members: predictions are the ensemble mean, sigma its total uncertainty.
    ridge_baseline : bool
        Also a :class:`RidgeBaseline` fitted on the training models of the split.
    seed : int
        Seed of all noise draws.
    command : str, optional
        Command line named in the report (default: ``sys.argv``).
    real_stars : path, optional
        A run directory of ``python -m jobs.train_model real``: also its out-of-fold MILES numbers,
        sigma coverage and the STELIB cross-library test
        (:func:`lamost2csst.workflows.real_evaluation.real_star_evaluation`), a section of
        ``evaluation.md``, key ``real_stars`` of ``evaluation.json`` and ``real_star_residuals.png``.
    domain : bool
        Also the domain check (:func:`lamost2csst.workflows.domain_evaluation.domain_evaluation`:
        the grid test split, the out-of-domain test set and MILES), a section of
        ``evaluation.md`` and key ``domain`` of ``evaluation.json``.
    grid_domain : {"synthetic", "real"}
        How a model co-trained on real stars (one with a ``domain`` input) sees the grid test's
        spectra: ``"synthetic"`` asks for the synthetic SED (the test of what it learned from
        the grid), ``"real"`` for what it predicts for a real star with that spectrum. A model
        without the input gives the same for both. MILES is always predicted as real.

    Raises
    ------
    InputError
        See :func:`split_models`.
    """
    t0 = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path, model, card = _load_models(model_path, ensemble)
    results = _Results()
    if grid_test:
        results = _grid_results(
            model,
            card,
            grid=grid,
            split=split,
            ensemble=ensemble,
            snrs=snrs,
            realisations=realisations,
            lamost_path=lamost_path,
            ridge_baseline=ridge_baseline,
            seed=seed,
            domain=grid_domain,
        )
    if miles:
        results.miles, results.miles_arrays = miles_evaluation(
            model, snr=miles_snr, threshold=miles_rmsae, seed=seed
        )
        results.miles["in_sample"] = "real_star_cv" in card or card.get("stage") == "finetune-real"
    text, result = _write_evaluation(
        out, results, card, path=path, model_path=model_path, ensemble=ensemble, command=command, t0=t0
    )
    if real_stars:
        text, result = _add_real_stars(out, text, result, real_stars)
    if domain:
        text, result = _add_domain(out, text, result, model_path=model_path, seed=seed)
    return Evaluation(out, text, result)


def _add_domain(out: Path, text: str, result: dict, *, model_path, seed: int) -> tuple[str, dict]:
    """Append the domain check's evaluation to the report and the JSON."""
    from lamost2csst.workflows.domain_evaluation import domain_evaluation, domain_markdown

    domain = domain_evaluation(model_path=model_path, seed=seed)
    text += "\n" + domain_markdown(domain)
    (out / "evaluation.md").write_text(text)
    result["domain"] = domain
    (out / "evaluation.json").write_text(json.dumps(result, indent=1) + "\n")
    return text, result


def _add_real_stars(out: Path, text: str, result: dict, run) -> tuple[str, dict]:
    """Append the real-star evaluation of ``run`` to the report, the JSON and the figures."""
    from lamost2csst.workflows.real_evaluation import (
        real_star_evaluation,
        real_star_figure,
        real_star_markdown,
    )

    real, arrays = real_star_evaluation(run)
    text += real_star_markdown(real)
    (out / "evaluation.md").write_text(text)
    result["real_stars"] = real
    result["figures"].append(str(real_star_figure(arrays, out / "real_star_residuals.png")))
    (out / "evaluation.json").write_text(json.dumps(result, indent=1) + "\n")
    return text, result


def _write_evaluation(out: Path, results: _Results, card: dict, *, path, model_path, ensemble, command, t0):
    """Write ``evaluation.md``, the figures and ``evaluation.json``; returns ``(text, result)``.

    Parameters
    ----------
    out : Path
        The output directory.
    results : _Results
        The evaluations run.
    card : dict
        The model card.
    path : path
        The model evaluated (as :func:`_load_models` returns it).
    model_path : path or None
        The model asked for (None: the shipped one), named in the report.
    ensemble : list of path or None
        The further ensemble members.
    command : str or None
        Command line named in the report (default: ``sys.argv``).
    t0 : float
        ``time.perf_counter()`` at the start of the evaluation.

    Returns
    -------
    text : str
        The Markdown report.
    result : dict
        The contents of ``evaluation.json``.
    """
    text = report.evaluation_markdown(
        card,
        results,
        model_label=f"{model_path or 'shipped'}",
        command=" ".join(sys.argv) if command is None else command,
        ensemble=bool(ensemble),
    )
    (out / "evaluation.md").write_text(text)
    figures = report.write_figures(
        out, grid_arrays=results.grid and results.grid.arrays, miles_arrays=results.miles_arrays
    )
    ensemble = None if ensemble is None else [str(p) for p in ensemble]
    result = _result_json(
        results,
        path=path,
        card=card,
        ensemble=ensemble,
        figures=figures,
        seconds=round(time.perf_counter() - t0, 1),
    )
    (out / "evaluation.json").write_text(json.dumps(result, indent=1) + "\n")
    return text, result
