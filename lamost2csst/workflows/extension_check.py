"""How the real-star correction should continue beyond a real library's wavelengths, chosen on MILES alone.

The real-star branch (:mod:`lamost2csst.nn.model`) learns a correction only where its training
stars have targets (MILES: 3540-7410 A); beyond, a fixed rule carries it on
(:func:`lamost2csst.nn.model.extension_matrix`). :func:`extension_check` chooses the rule without
touching another library: the branch is trained, K-fold by star, on MILES with its targets cut
above ``cut`` (6600 A), and each rule's out-of-fold errors are measured where MILES still has
truth beyond the cut (6800-7350 A) - a rehearsal of the step from 7410 A to the GI band.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

__all__ = ["extension_check"]

#: Wavelengths (A) of the check: beyond the cut, inside MILES.
CHECK_WAVELENGTHS = (6800.0, 7000.0, 7200.0, 7350.0)


def extension_check(
    *,
    out,
    config,
    init=None,
    cut: float = 6600.0,
    wavelengths=CHECK_WAVELENGTHS,
    n_folds: int = 5,
    seed: int = 2024,
    eval_snr: float = 100.0,
    val_fraction: float = 0.15,
    threads: int | None = None,
    progress=None,
    command: str | None = None,
) -> dict:
    """Out-of-fold MILES errors beyond ``cut`` for every extension rule of the real-star branch.

    Parameters
    ----------
    out : path
        Run directory (as :func:`lamost2csst.workflows.realstars.cross_validate_real_stars`'s,
        resumable) and ``out/extension_check.json``.
    config : lamost2csst.nn.training.TrainConfig
        The branch's training (``domain="real"``, ``trainable="real"``).
    init : path, optional
        The model whose grid network gets the branch (default: the shipped model).
    cut : float
        MILES targets above this wavelength (A) are hidden from training.
    wavelengths : sequence of float
        Where the rules are compared (A; above ``cut``).
    n_folds, seed, eval_snr, val_fraction, threads, progress, command
        As for :func:`~lamost2csst.workflows.realstars.cross_validate_real_stars`.

    Returns
    -------
    dict
        The content of ``extension_check.json``: per rule, the errors at ``wavelengths``; and
        the same with all of MILES' wavelengths trained (the rules' target).
    """
    from lamost2csst.core.evaluation import wavelength_errors
    from lamost2csst.core.grids import OUTPUT_WAVE
    from lamost2csst.core.metrics import relative_residual
    from lamost2csst.errors import InputError
    from lamost2csst.nn.inference import load_model, predict
    from lamost2csst.nn.model import EXTENSIONS, extension_matrix
    from lamost2csst.nn.training import epoch_pairs
    from lamost2csst.workflows.realstars import (
        RealStars,
        covered_pixels,
        cross_validate_real_stars,
        real_stars,
        star_folds,
    )

    if config.trainable != "real":
        raise InputError("the extension check trains the real-star branch: config.trainable must be 'real'")
    if not min(wavelengths) > cut:
        raise InputError(f"the check's wavelengths must lie above the cut ({cut} A)")
    t0 = time.perf_counter()
    out = Path(out)
    full = real_stars(("miles",), seed=seed)
    lib = full.library
    hidden = lib.target_mask | (OUTPUT_WAVE > cut)[None, :]
    cut_lib = lib.replace(target_mask=hidden, sed=np.where(hidden, np.nan, lib.sed).astype(np.float32))
    cross_validate_real_stars(
        out=out,
        config=config,
        init=init,
        real=RealStars(cut_lib, full.names, full.params, full.info),
        n_folds=n_folds,
        seed=seed,
        eval_snr=eval_snr,
        val_fraction=val_fraction,
        threads=threads,
        progress=progress,
        command=command,
        extend="none",
    )
    folds = star_folds(len(lib), n_folds=n_folds, seed=seed)
    errors = {}
    for rule in EXTENSIONS:
        residual = np.full(lib.sed.shape, np.nan, np.float32)
        for k in range(n_folds):
            model = load_model(out / f"fold-{k}" / "best.keras", fresh=True)  # its extension is changed
            covered = covered_pixels(cut_lib.take(np.flatnonzero(folds != k)))
            model.get_layer("real_extend").set_matrix(extension_matrix(covered, extend=rule))
            test = np.flatnonzero(folds == k)
            data = epoch_pairs(lib.take(test), snrs=(eval_snr,), rng=np.random.default_rng([seed, 99]))
            sed, _ = predict(data.flux, data.error, model=model, domain="real")
            residual[test] = relative_residual(sed, data.sed, mask=data.target_mask)
        errors[rule] = wavelength_errors(residual, at=wavelengths)
    result = {
        "cut": cut,
        "wavelengths": list(wavelengths),
        "n_folds": n_folds,
        "seed": seed,
        "eval_snr": eval_snr,
        "stars": len(lib),
        "errors": errors,
        "command": command,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    (out / "extension_check.json").write_text(json.dumps(result, indent=1) + "\n")
    return result
