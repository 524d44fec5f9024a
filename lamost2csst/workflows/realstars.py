"""Real stars: fine-tuning on an empirical library with grid replay, proven out-of-fold (K-fold by star).

The synthetic grid teaches the network physics; a real library (MILES by default) teaches what
synthetic spectra get wrong. :func:`cross_validate_real_stars` measures a fine-tuning recipe
honestly and then makes the model to ship:

1. the library's stars are split into ``n_folds`` folds by star (seeded);
2. for every fold, the initial model is fine-tuned on the other folds together with replayed
   grid training models (:func:`lamost2csst.nn.training.train` with ``replay_lib``; the loss is
   masked outside the library's coverage), its best epoch chosen on a validation part of those
   folds, and the held-out fold is predicted: every star's residual is out-of-fold;
3. the model discrepancy (``sigma_sys``, :func:`lamost2csst.core.discrepancy.fit_discrepancy`)
   is fitted to all out-of-fold residuals; its coverage is measured nested (each fold's sigma
   from the residuals of the other folds);
4. the final model is fine-tuned the same way on all folds and its card carries the discrepancy.

With ``config.trainable == "real"`` (``train_model real --domain-input``, how the shipped model is
made) "fine-tuned" means: the initial model's grid network gets a fresh real-star branch
(:mod:`lamost2csst.nn.model`), and only that branch is trained, on the real stars as real
(``domain`` 1); the grid network, and so every synthetic SED, stays as it was.

Every fold's run directory is resumable; a finished fold is not trained again.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from lamost2csst.core.pairs import GriddedLibrary
from lamost2csst.errors import InputError

__all__ = [
    "REAL_TEFF_RANGE",
    "RealStars",
    "cross_validate_real_stars",
    "fit_model_discrepancy",
    "miles_library",
    "predict_real_stars",
    "real_stars",
    "star_folds",
    "stelib_stars",
]

#: How the model discrepancy is fitted here: the real stars are predicted at one input S/N, where
#: the scale of the network's sigma and the floor cannot be told apart, so only the floor is fitted;
#: in three colour classes of the predicted SED (real-star residuals depend on temperature).
DISCREPANCY_OPTIONS = {"fit_scale": False, "n_classes": 3}
#: ... but at least this many stars per colour class (fewer classes for a small library).
MIN_STARS_PER_CLASS = 50


def discrepancy_settings(n_star: int, extra: dict | None = None) -> dict:
    """:data:`DISCREPANCY_OPTIONS` for ``n_star`` stars (colour classes of >= 50 stars), then ``extra``."""
    options = {**DISCREPANCY_OPTIONS, **(extra or {})}
    options["n_classes"] = max(1, min(options["n_classes"], n_star // MIN_STARS_PER_CLASS))
    return options


#: Teff range (K) of the real stars used for fine-tuning and evaluation (the paper's, Sect. 4.3).
REAL_TEFF_RANGE = (5000.0, 9750.0)


@dataclass(frozen=True)
class RealStars:
    """A real library on the network's grids: the library, star names, parameters and provenance."""

    library: GriddedLibrary
    names: np.ndarray
    params: np.ndarray  # (n, 3) Teff, log g, [Fe/H]
    info: dict


def miles_library(stars=None, *, screen_rmsae: float = 0.05, seed: int = 2024) -> RealStars:
    """The MILES stars of the paper's test (Sect. 4.3): 5000-9750 K with parameters, GPR-screened.

    Parameters
    ----------
    stars : xarray.Dataset, optional
        MILES spectra (default: the 985 stars of sdss-mangadap).
    screen_rmsae : float
        Appendix B: stars whose out-of-fold GPR RMSAE is not below this are dropped (0: none).
    seed : int
        Seed of the screening's folds.
    """
    from lamost2csst.core.gpr import screen_library
    from lamost2csst.io.training import gridded_library

    if stars is None:
        from lamost2csst.io.readers.mangadap import read_mangadap_miles

        stars = read_mangadap_miles()
    params = np.stack([stars[k].values.astype(float) for k in ("teff", "logg", "feh")], axis=1)
    lo, hi = REAL_TEFF_RANGE
    sel = np.all(np.isfinite(params), axis=1) & (params[:, 0] >= lo) & (params[:, 0] <= hi)
    ds = stars.isel(star=np.flatnonzero(sel))
    g = gridded_library(ds)
    params = params[sel]
    info = {
        "library": "miles",
        "stars_read": int(stars.sizes["star"]),
        "in_teff_range_with_params": int(sel.sum()),
    }
    keep = ~g.input_mask.any(axis=1)
    info["incomplete_input"] = int((~keep).sum())
    if screen_rmsae > 0:
        covered = ~g.target_mask.any(axis=0)
        screen = screen_library(params, g.sed[:, covered], threshold=screen_rmsae, seed=seed)
        info.update(screened_out=int((keep & ~screen.normal).sum()), screen_rmsae=screen_rmsae)
        keep &= screen.normal
    idx = np.flatnonzero(keep)
    info["used"] = int(idx.size)
    lib = GriddedLibrary(
        g.flux_in[idx].astype(np.float32),
        g.input_mask[idx],
        g.sed[idx].astype(np.float32),
        g.target_mask[idx],
        params[idx, 0],
    )
    return RealStars(lib, ds["name"].values[idx].astype(str), params[idx], info)


def star_folds(n_star: int, *, n_folds: int = 5, seed: int = 2024) -> np.ndarray:
    """Fold label (0..n_folds-1) of every star: a seeded permutation, folds differ in size by <= 1."""
    if not 2 <= n_folds <= n_star:
        raise InputError(f"need 2 <= n_folds <= number of stars ({n_star}), got {n_folds}")
    return np.random.default_rng([seed, 5]).permutation(n_star) % n_folds


def stelib_stars(*, screen_rmsae: float = 0.05, seed: int = 2024) -> RealStars:
    """STELIB (sdss-mangadap) as real stars: 5000-9750 K, usable, GPR-screened, NOT dereddened (like MILES).

    Names are prefixed ``stelib:``; ``params`` holds Teff (log g and [Fe/H] NaN: not used here).
    """
    from lamost2csst.workflows.libraries import stelib_library

    lib, names, info = stelib_library(deredden=False, screen_rmsae=screen_rmsae, seed=seed)
    params = np.column_stack([lib.teff, np.full((len(lib), 2), np.nan)])
    return RealStars(lib, np.array([f"stelib:{n}" for n in names]), params, info)


#: The real libraries a run can use, by name.
LIBRARIES = {"miles": miles_library, "stelib": stelib_stars}


def real_stars(libraries=("miles",), *, screen_rmsae: float = 0.05, seed: int = 2024) -> RealStars:
    """The real stars of ``libraries`` (names of :data:`LIBRARIES`), concatenated in that order."""
    unknown = [name for name in libraries if name not in LIBRARIES]
    if unknown or not libraries:
        raise InputError(f"real libraries must be some of {sorted(LIBRARIES)}, got {list(libraries)}")
    parts = [LIBRARIES[name](screen_rmsae=screen_rmsae, seed=seed) for name in libraries]
    if len(parts) == 1:
        return parts[0]
    fields = GriddedLibrary._fields
    arrays = {}
    for f in fields:
        values = [getattr(p.library, f) for p in parts]
        if f == "input_coarser" or any(v is None for v in values):
            arrays[f] = values[0] if f == "input_coarser" else None
        else:
            arrays[f] = np.concatenate(values)
    library = GriddedLibrary(**arrays)
    info = {"library": "+".join(libraries), "libraries": {n: p.info for n, p in zip(libraries, parts)}}
    names = np.concatenate([p.names for p in parts])
    return RealStars(library, names, np.concatenate([p.params for p in parts]), info)


def _run_stars(out: Path, real: RealStars | None, *, seed: int, libraries=("miles",)) -> RealStars:
    """The run's real stars: recorded in ``out/stars.json`` on the first call, the same stars on a rerun.

    A rerun does not screen again (a changed screening must not move stars between folds of
    finished runs); a ``real`` library that differs from the recorded one is refused.
    """
    record = out / "stars.json"
    if record.exists():
        recorded = json.loads(record.read_text())
        names = recorded["names"]
        if real is None:
            real = real_stars(tuple(recorded.get("libraries", ["miles"])), screen_rmsae=0.0, seed=seed)
            where = {n: i for i, n in enumerate(real.names)}
            missing = [n for n in names if n not in where]
            if missing:
                raise InputError(
                    f"{len(missing)} stars of {record} are not in the library (e.g. {missing[0]})"
                )
            idx = np.array([where[n] for n in names])
            return RealStars(real.library.take(idx), real.names[idx], real.params[idx], recorded["info"])
        if list(real.names) != names:
            raise InputError(f"{out} was run with other real stars ({record}); use a new run directory")
        return real
    real = real_stars(tuple(libraries), seed=seed) if real is None else real
    record.write_text(
        json.dumps(
            {"names": [str(n) for n in real.names], "info": real.info, "libraries": list(libraries)}, indent=1
        )
        + "\n"
    )
    return real


def _validation_part(n: int, *, fraction: float, seed: int) -> np.ndarray:
    """Boolean mask of the training stars kept for choosing the best epoch (never the held-out fold)."""
    val = np.zeros(n, bool)
    val[np.random.default_rng([seed, 11]).permutation(n)[: max(1, int(round(fraction * n)))]] = True
    return val


def _grid_replay(init) -> GriddedLibrary:
    """The grid training models of the initial model's split (its test models stay unseen)."""
    from lamost2csst.nn.inference import model_card
    from lamost2csst.workflows.evaluation import evaluation_library, split_models

    _, train_ds = split_models(model_card(init))
    return evaluation_library(train_ds, lamost=True)


def _fine_tune(
    init,
    train_lib,
    val_lib,
    replay_lib,
    *,
    config,
    run_dir: Path,
    card: dict,
    progress,
    extend: str = "constant",
):
    """One fine-tuning run (resumed if it was interrupted); returns the path of its best model.

    A model given the real-star branch here has its correction carried beyond ``train_lib``'s
    coverage by the rule ``extend`` (:func:`lamost2csst.nn.model.set_real_coverage`).
    """
    from lamost2csst.nn.training import initial_model, train

    run_dir = Path(run_dir)
    best = run_dir / "best.keras"
    if (run_dir / "summary.json").exists() and best.exists():
        return best
    resume = (run_dir / "checkpoint.keras").exists()
    model, model_config, _ = initial_model(train_lib, init=init)  # a fresh copy of the initial model
    model, model_config = _with_domain_input(model, model_config, domain=config.domain, seed=config.seed)
    if config.trainable == "real":
        from lamost2csst.nn.model import set_real_coverage

        set_real_coverage(model, covered_pixels(train_lib), extend=extend)
        card = {**card, "real_extend": extend}
    train(
        model,
        train_lib,
        val_lib,
        config=config,
        run_dir=run_dir,
        resume=resume,
        card={**card, "model_config": model_config},
        replay_lib=replay_lib,
        progress=progress,
    )
    return best


#: A pixel counts as covered by a real library when at least this many of its training stars reach it.
MIN_COVERING_STARS = 5


def covered_pixels(lib: GriddedLibrary) -> np.ndarray:
    """Output pixels with a target in at least :data:`MIN_COVERING_STARS` stars of ``lib``."""
    return np.sum(~lib.target_mask, axis=0) >= min(MIN_COVERING_STARS, len(lib))


def _with_domain_input(model, model_config: dict | None, *, domain: str, seed: int = 0):
    """``(model, model_config)`` ready to train on ``domain`` spectra: for real stars, the initial
    model's grid network with a fresh real-star branch (its random start seeded by ``seed``
    alone, so a run from a model that already has a branch, e.g. the shipped one, starts where a
    run from its grid network does)."""
    from lamost2csst.nn.inference import takes_domain
    from lamost2csst.nn.model import ModelConfig, add_domain_input, grid_network

    if domain == "synthetic":
        return model, model_config
    if model_config is None:
        raise InputError("the initial model's card has no model_config: cannot add the real-star branch")
    config = dataclasses.replace(ModelConfig.from_dict(model_config), domain_input=False)
    if takes_domain(model):
        model = grid_network(model, config)
    model = add_domain_input(model, config, seed=seed)
    return model, {**model_config, "domain_input": True}


class RealStarPrediction(NamedTuple):
    """:func:`predict_real_stars`: relative residuals, the network's and the total sigma, the SEDs."""

    residual: np.ndarray
    sigma_net: np.ndarray
    sigma: np.ndarray
    sed: np.ndarray


def predict_real_stars(
    model_path, lib: GriddedLibrary, *, snr: float, seed: int, discrepancy=None, domain: str = "real"
):
    """Predict ``lib``'s stars at input S/N ``snr`` (Eq. 1 noise, ``default_rng([seed, 99])``, direct path).

    ``discrepancy`` (a :class:`~lamost2csst.core.discrepancy.ModelDiscrepancy`) makes ``sigma`` the
    total; without it ``sigma`` is the network's. ``domain="synthetic"`` asks a model with a
    real-star branch for its grid network's SED (what an initial model is compared as).
    Returns a :class:`RealStarPrediction`.
    """
    from lamost2csst.core.metrics import relative_residual
    from lamost2csst.nn.inference import load_model, predict
    from lamost2csst.nn.training import epoch_pairs

    data = epoch_pairs(lib, snrs=(snr,), rng=np.random.default_rng([seed, 99]))
    sed, sigma = predict(data.flux, data.error, model=load_model(model_path), domain=domain)
    total = sigma if discrepancy is None else discrepancy.sigma_parts(sigma, sed=sed)[0]
    return RealStarPrediction(relative_residual(sed, data.sed, mask=data.target_mask), sigma, total, sed)


def _save_oof(out: Path, real: RealStars, folds, *, residual, sigma_net, sed) -> None:
    """``out/oof.npz``: the out-of-fold residuals, network sigma and SEDs of the run's stars."""
    np.savez_compressed(
        out / "oof.npz",
        residual=residual,
        sigma_net=sigma_net,
        sed=sed,
        fold=folds,
        names=real.names,
        teff=real.library.teff,
    )


#: Keys of the initial model's card that describe it, not how it was trained (not copied as lineage).
_NOT_LINEAGE = ("sha256", "sigma_sys", "sigma_sys_command", "real_star_cv", "split", "init_training")


def cross_validate_real_stars(
    *,
    out,
    config,
    init=None,
    n_folds: int = 5,
    seed: int = 2024,
    eval_snr: float = 100.0,
    val_fraction: float = 0.15,
    real: RealStars | None = None,
    libraries=("miles",),
    discrepancy_options: dict | None = None,
    threads: int | None = None,
    progress=None,
    command: str | None = None,
    extend: str = "constant",
) -> dict:
    """K-fold fine-tuning on real stars with grid replay, the model discrepancy, and the final model.

    Parameters
    ----------
    out : path
        Run directory: ``fold-<k>/`` (one fine-tuning run per fold), ``oof.npz`` (out-of-fold
        residuals and network sigma at ``eval_snr``), ``final/best.keras`` (all folds; its card
        carries ``sigma_sys``), ``crossval.json`` (folds, errors, coverage).
    config : lamost2csst.nn.training.TrainConfig
        Fine-tuning settings (``input_path`` "direct" for a real library; ``replay`` > 0 with
        ``replay_input_path`` for the grid).
    init : path, optional
        The model fine-tuned (default: the shipped model); its grid split's training models are replayed.
    n_folds, seed : int
        Folds by star and their seed (also the seed of the evaluation noise).
    eval_snr : float
        Input S/N of the out-of-fold predictions (the paper's MILES test: 100).
    val_fraction : float
        Fraction of the training stars of each run kept for choosing its best epoch.
    real : RealStars, optional
        The real stars (default: :func:`real_stars` of ``libraries``).
    libraries : sequence of str
        Names of :data:`LIBRARIES` (default MILES alone).
    discrepancy_options : dict, optional
        Keyword arguments of :func:`lamost2csst.core.discrepancy.fit_discrepancy` (its defaults otherwise).
    threads : int, optional
        TensorFlow threads.
    progress : callable, optional
        ``progress(stage, epoch, n_epochs, info)``.
    command : str, optional
        The command line, recorded in the final model's card.
    extend : {"constant", "linear", "none"}
        With ``config.trainable == "real"``: how the real-star correction continues beyond the
        library's coverage (:func:`lamost2csst.nn.model.extension_matrix`).

    Returns
    -------
    dict
        The content of ``crossval.json``.
    """
    from lamost2csst.nn.inference import default_model_path, load_model, model_card, save_model
    from lamost2csst.nn.setup import configure

    t0 = time.perf_counter()
    configure(threads=threads)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    init = Path(init) if init else default_model_path()
    real = _run_stars(out, real, seed=seed, libraries=libraries)
    lib = real.library
    folds = star_folds(len(lib), n_folds=n_folds, seed=seed)
    replay = _grid_replay(init) if config.replay > 0 else None  # the grid observed anew: minutes
    init_card = model_card(init)
    card = {
        "stage": "finetune-real",
        "init": str(init),
        "init_sha256": init_card.get("sha256"),
        # how the initial network was trained on the grid (what the synthetic SED still is)
        "init_training": init_card.get("init_training")
        or {k: v for k, v in init_card.items() if k not in _NOT_LINEAGE},
        "real_library": real.info,
        "command": command,
        "split": init_card.get("split"),  # the grid models replayed are this split's training ones
    }
    residual = np.full((len(lib), lib.sed.shape[1]), np.nan, np.float32)
    sigma_net = np.full_like(residual, np.nan)
    sed = np.full_like(residual, np.nan)
    for k in range(n_folds):
        train_idx = np.flatnonzero(folds != k)
        val = _validation_part(train_idx.size, fraction=val_fraction, seed=seed + k)
        best = _fine_tune(
            init,
            lib.take(train_idx[~val]),
            lib.take(train_idx[val]),
            replay,
            config=config,
            run_dir=out / f"fold-{k}",
            card={**card, "fold": k, "n_folds": n_folds},
            progress=_stage_progress(progress, f"fold {k + 1}/{n_folds}"),
            extend=extend,
        )
        test = np.flatnonzero(folds == k)
        residual[test], sigma_net[test], _, sed[test] = predict_real_stars(
            best, lib.take(test), snr=eval_snr, seed=seed
        )
    base_r, base_sigma, _, _ = predict_real_stars(init, lib, snr=eval_snr, seed=seed, domain="synthetic")
    _save_oof(out, real, folds, residual=residual, sigma_net=sigma_net, sed=sed)
    val = _validation_part(len(lib), fraction=val_fraction, seed=seed + n_folds)
    final = _fine_tune(
        init,
        lib.take(~val),
        lib.take(val),
        replay,
        config=config,
        run_dir=out / "final",
        card={**card, "fold": "all"},
        progress=_stage_progress(progress, "final"),
        extend=extend,
    )
    discrepancy, result = _discrepancy_record(
        real,
        folds,
        residual=residual,
        sigma_net=sigma_net,
        sed=sed,
        initial=(base_r, base_sigma),
        run={"init": str(init), "fine_tuned": True, "n_folds": n_folds, "seed": seed, "eval_snr": eval_snr},
        options=discrepancy_options,
    )
    result["training"] = json.loads(json.dumps(config.__dict__, default=list))
    result["seconds"] = round(time.perf_counter() - t0, 1)
    final_card = {
        **model_card(final),
        "split": card["split"],
        "sigma_sys": discrepancy.to_dict(),
        "real_star_cv": result,
    }
    save_model(load_model(final), final, card=final_card)
    (out / "crossval.json").write_text(json.dumps(result, indent=1) + "\n")
    return result


def _discrepancy_record(real: RealStars, folds, *, residual, sigma_net, sed, initial, run: dict, options):
    """The discrepancy fitted on all out-of-fold residuals, and the run's record (``crossval.json``).

    ``initial`` is ``(residual, sigma)`` of the initial model on the same stars; ``run`` the
    run's settings (recorded first); coverage of the total sigma is nested (per fold, from the others).
    """
    from lamost2csst.core.discrepancy import cross_fitted_sigma, fit_discrepancy
    from lamost2csst.core.evaluation import MILES_WAVELENGTHS, PAPER_MILES, wavelength_errors

    options = discrepancy_settings(len(real.library), options)
    provenance = {
        "library": real.info.get("library"),
        "stars": len(real.library),
        "folds": run["n_folds"],
        "model": "fine-tuned" if run["fine_tuned"] else "not fine-tuned",
    }
    discrepancy = fit_discrepancy(residual, sigma_net=sigma_net, sed=sed, provenance=provenance, **options)
    nested = cross_fitted_sigma(residual, sigma_net=sigma_net, fold=folds, sed=sed, **options)
    result = {
        **run,
        "real_library": real.info,
        "folds": {str(n): int(f) for n, f in zip(real.names, folds)},
        "paper_miles": PAPER_MILES,
        "wavelengths": MILES_WAVELENGTHS,
        "oof_errors": wavelength_errors(residual),
        "init_errors": wavelength_errors(initial[0]),
        "oof_within1sigma_net": _within(residual, sigma_net),
        "oof_within1sigma_total_nested": _within(residual, nested),
        "init_within1sigma": _within(*initial),
    }
    return discrepancy, result


def _within(residual, sigma) -> dict:
    """Fraction of |r|/sigma < 1 per band (finite values only)."""
    from lamost2csst.core.grids import BANDS, OUTPUT_WAVE, band_pixels

    z = np.abs(np.asarray(residual, float) / np.asarray(sigma, float))
    outcome = {}
    for band, lo_hi in BANDS.items():
        zb = z[:, band_pixels(OUTPUT_WAVE, lo_hi)]
        zb = zb[np.isfinite(zb)]
        outcome[band] = round(float(np.mean(zb < 1)), 4) if zb.size else None
    return outcome


def _stage_progress(progress, stage: str):
    if progress is None:
        return None
    return lambda epoch, n_epochs, info: progress(stage, epoch, n_epochs, info)


def fit_model_discrepancy(
    *,
    out,
    init=None,
    n_folds: int = 5,
    seed: int = 2024,
    eval_snr: float = 100.0,
    real: RealStars | None = None,
    libraries=("miles",),
    discrepancy_options: dict | None = None,
    command: str | None = None,
) -> dict:
    """The model discrepancy of a model as it is (no fine-tuning), from real stars it never saw.

    ``init`` (default: the shipped model) predicts every real star at ``eval_snr``; the model
    discrepancy is fitted to all residuals (the model was trained on none of these stars, so
    they are out-of-sample); its coverage is measured nested over ``n_folds`` folds by star.
    ``out/final/best.keras`` is a byte copy of ``init`` whose card adds ``sigma_sys`` and
    ``real_star_cv``; ``out/crossval.json`` and ``out/oof.npz`` as in :func:`cross_validate_real_stars`
    (``fold-<k>`` models are not made: every fold is predicted by ``init``).
    """
    import shutil

    from lamost2csst.nn.inference import default_model_path, model_card, write_model_card

    t0 = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    init = Path(init) if init else default_model_path()
    seen = (model_card(init).get("real_library") or {}).get("library", "")
    used = str(real.info.get("library", "+".join(libraries))) if real is not None else "+".join(libraries)
    if seen and set(seen.split("+")) & set(used.split("+")):
        raise InputError(
            f"{init} was trained on {seen} stars: its residuals on {used} are in-sample and would "
            "give too small a sigma_sys; pass --init with a model that never saw them (or run "
            "without --sigma-only: the discrepancy is then fitted out-of-fold)"
        )
    real = _run_stars(out, real, seed=seed, libraries=libraries)
    folds = star_folds(len(real.library), n_folds=n_folds, seed=seed)
    residual, sigma_net, _, sed = predict_real_stars(init, real.library, snr=eval_snr, seed=seed)
    _save_oof(out, real, folds, residual=residual, sigma_net=sigma_net, sed=sed)
    discrepancy, result = _discrepancy_record(
        real,
        folds,
        residual=residual,
        sigma_net=sigma_net,
        sed=sed,
        initial=(residual, sigma_net),
        run={"init": str(init), "fine_tuned": False, "n_folds": n_folds, "seed": seed, "eval_snr": eval_snr},
        options=discrepancy_options,
    )
    result["seconds"] = round(time.perf_counter() - t0, 1)
    final = out / "final" / "best.keras"
    final.parent.mkdir(exist_ok=True)
    shutil.copyfile(init, final)
    card = {**model_card(init), "sigma_sys": discrepancy.to_dict(), "real_star_cv": result}
    card["sigma_sys_command"] = command
    write_model_card(final, card)
    for k in range(n_folds):  # every fold is predicted by the same, never fine-tuned model
        (out / f"fold-{k}").mkdir(exist_ok=True)
        shutil.copyfile(init, out / f"fold-{k}" / "best.keras")
    (out / "crossval.json").write_text(json.dumps(result, indent=1) + "\n")
    return result
