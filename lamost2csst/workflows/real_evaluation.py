"""Real-star evaluation of a real-star fine-tuning run (:mod:`lamost2csst.workflows.realstars`).

:func:`real_star_evaluation` reads a run directory of ``python -m jobs.train_model real`` and
measures, against the model the run started from:

* MILES out-of-fold: each star predicted by the fold model that never saw it (direct path,
  Eq. 1 noise at the run's S/N), errors at the paper's wavelengths (Sect. 4.3);
* sigma coverage on those stars: the network's sigma alone, and the total sigma with the
  model discrepancy fitted nested (each fold's from the other folds' residuals), per band
  and per Teff range;
* STELIB as a cross-library test (never trained on, not used for sigma_sys): the final model
  against the initial one at 4500-9000 A, and the coverage of the final model's total sigma
  (where MILES does not reach, the discrepancy's stated extrapolation is what is tested).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from lamost2csst.errors import InputError
from lamost2csst.workflows.realstars import predict_real_stars

__all__ = ["CROSS_LIBRARY_WAVELENGTHS", "real_star_evaluation", "real_star_markdown", "real_star_figure"]

#: Wavelengths (A) of the cross-library comparison (STELIB reaches 9899 A).
CROSS_LIBRARY_WAVELENGTHS = (3600.0, 4500.0, 5000.0, 6000.0, 7000.0, 8000.0, 9000.0)
#: Teff ranges (K) in which the sigma coverage is checked separately.
TEFF_RANGES = ((5000.0, 6000.0), (6000.0, 7500.0), (7500.0, 9750.0))


def _coverage(residual, sigma, teff) -> dict:
    """Fraction |r|/sigma < 1 per band, over all stars and per Teff range."""
    from lamost2csst.core.grids import BANDS, OUTPUT_WAVE, band_pixels

    z = np.abs(np.asarray(residual, float) / np.asarray(sigma, float))
    out = {}
    for label, rows in [("all", np.ones(len(teff), bool))] + [
        (f"{lo:.0f}-{hi:.0f} K", (teff >= lo) & (teff < hi)) for lo, hi in TEFF_RANGES
    ]:
        per_band = {}
        for band, lo_hi in BANDS.items():
            zb = z[rows][:, band_pixels(OUTPUT_WAVE, lo_hi)]
            zb = zb[np.isfinite(zb)]
            per_band[band] = round(float(np.mean(zb < 1)), 4) if zb.size else None
        out[label] = {"n_star": int(rows.sum()), **per_band}
    return out


def _out_of_fold(run: Path, cv: dict):
    """The run's real stars in its order, and their out-of-fold residuals and network sigma."""
    from lamost2csst.workflows.realstars import _run_stars

    real = _run_stars(run, None, seed=cv["seed"])
    fold = np.array([cv["folds"][str(n)] for n in real.names])
    lib = real.library
    residual = np.full(lib.sed.shape, np.nan)
    sigma = np.full(lib.sed.shape, np.nan)
    sed = np.full(lib.sed.shape, np.nan)
    for k in range(cv["n_folds"]):
        rows = np.flatnonzero(fold == k)
        residual[rows], sigma[rows], _, sed[rows] = predict_real_stars(
            run / f"fold-{k}" / "best.keras", lib.take(rows), snr=cv["eval_snr"], seed=cv["seed"]
        )
    return real, fold, residual, sigma, sed


def real_star_evaluation(run, *, stelib: bool = True) -> tuple[dict, dict]:
    """Out-of-fold real-star errors, sigma coverage and the STELIB test of a real-star run.

    Parameters
    ----------
    run : path
        A run directory of ``python -m jobs.train_model real`` (``crossval.json``, ``stars.json``,
        ``fold-<k>/``, ``final/best.keras``).
    stelib : bool
        Also STELIB: out-of-fold when the run used it, else as a cross-library test of the final
        model and its sigma_sys.

    Returns
    -------
    result : dict
        JSON-ready numbers (see the module docstring).
    arrays : dict
        Residual arrays for :func:`real_star_figure`.
    """
    from lamost2csst.core.discrepancy import cross_fitted_sigma
    from lamost2csst.core.evaluation import MILES_WAVELENGTHS, PAPER_MILES, wavelength_errors
    from lamost2csst.nn.inference import model_discrepancy
    from lamost2csst.workflows.realstars import discrepancy_settings

    run = Path(run)
    if not (run / "crossval.json").exists():
        raise InputError(
            f"{run} has no crossval.json: is it a finished `python -m jobs.train_model real` run?"
        )
    cv = json.loads((run / "crossval.json").read_text())
    init, final = Path(cv["init"]), run / "final" / "best.keras"
    real, fold, residual, sigma, sed = _out_of_fold(run, cv)
    lib = real.library
    base_r, base_sigma, _, _ = predict_real_stars(
        init, lib, snr=cv["eval_snr"], seed=cv["seed"], domain="synthetic"
    )
    nested = cross_fitted_sigma(
        residual, sigma_net=sigma, fold=fold, sed=sed, **discrepancy_settings(len(lib))
    )
    in_stelib = np.char.startswith(real.names.astype(str), "stelib:")
    m = ~in_stelib
    if not m.any():  # a run without MILES: MILES is its cross-library test
        return _miles_cross_library(run, cv, real, residual, base_r, nested, base_sigma)
    result = {
        "run": str(run),
        "libraries": sorted({"stelib" if s else "miles" for s in in_stelib}),
        "miles": {
            "n_star": int(m.sum()),
            "n_folds": cv["n_folds"],
            "snr": cv["eval_snr"],
            "paper": PAPER_MILES,
            "out_of_fold": wavelength_errors(residual[m], at=MILES_WAVELENGTHS),
            "initial_model": wavelength_errors(base_r[m], at=MILES_WAVELENGTHS),
            "coverage_net": _coverage(residual[m], sigma[m], lib.teff[m]),
            "coverage_total_nested": _coverage(residual[m], nested[m], lib.teff[m]),
            "coverage_initial_model": _coverage(base_r[m], base_sigma[m], lib.teff[m]),
        },
    }
    arrays = {"miles": (residual[m], base_r[m])}
    if in_stelib.any():
        result["stelib"] = {
            "kind": "out-of-fold (in the run)",
            "n_star": int(in_stelib.sum()),
            "final_model": wavelength_errors(residual[in_stelib], at=CROSS_LIBRARY_WAVELENGTHS),
            "initial_model": wavelength_errors(base_r[in_stelib], at=CROSS_LIBRARY_WAVELENGTHS),
            "coverage_total": _coverage(residual[in_stelib], nested[in_stelib], lib.teff[in_stelib]),
            "coverage_initial_model": _coverage(
                base_r[in_stelib], base_sigma[in_stelib], lib.teff[in_stelib]
            ),
        }
        arrays["stelib"] = (residual[in_stelib], base_r[in_stelib])
    elif stelib:
        from lamost2csst.workflows.realstars import stelib_stars

        st = stelib_stars(seed=cv["seed"]).library
        r_final, _, total, _ = predict_real_stars(
            final, st, snr=cv["eval_snr"], seed=cv["seed"], discrepancy=model_discrepancy(final)
        )
        r_init, s_init, _, _ = predict_real_stars(
            init, st, snr=cv["eval_snr"], seed=cv["seed"], domain="synthetic"
        )
        result["stelib"] = {
            "kind": "cross-library (never trained on, not in sigma_sys)",
            "n_star": len(st),
            "final_model": wavelength_errors(r_final, at=CROSS_LIBRARY_WAVELENGTHS),
            "initial_model": wavelength_errors(r_init, at=CROSS_LIBRARY_WAVELENGTHS),
            "coverage_total": _coverage(r_final, total, st.teff),
            "coverage_initial_model": _coverage(r_init, s_init, st.teff),
        }
        arrays["stelib"] = (r_final, r_init)
    return result, arrays


def _miles_cross_library(
    run: Path, cv: dict, real, residual, base_r, nested, base_sigma
) -> tuple[dict, dict]:
    """A run on STELIB alone: STELIB out-of-fold, and MILES (never seen) judged by its final model."""
    from lamost2csst.core.evaluation import MILES_WAVELENGTHS, PAPER_MILES, wavelength_errors
    from lamost2csst.nn.inference import model_discrepancy
    from lamost2csst.workflows.realstars import miles_library

    init, final = Path(cv["init"]), run / "final" / "best.keras"
    miles = miles_library(seed=cv["seed"]).library
    r_final, s_final, total, _ = predict_real_stars(
        final, miles, snr=cv["eval_snr"], seed=cv["seed"], discrepancy=model_discrepancy(final)
    )
    r_init, s_init, _, _ = predict_real_stars(
        init, miles, snr=cv["eval_snr"], seed=cv["seed"], domain="synthetic"
    )
    lib = real.library
    result = {
        "run": str(run),
        "libraries": ["stelib"],
        "miles": {
            "kind": "cross-library (never trained on, not in sigma_sys)",
            "n_star": len(miles),
            "n_folds": cv["n_folds"],
            "snr": cv["eval_snr"],
            "paper": PAPER_MILES,
            "out_of_fold": wavelength_errors(r_final, at=MILES_WAVELENGTHS),
            "initial_model": wavelength_errors(r_init, at=MILES_WAVELENGTHS),
            "coverage_net": _coverage(r_final, s_final, miles.teff),
            "coverage_total_nested": _coverage(r_final, total, miles.teff),
            "coverage_initial_model": _coverage(r_init, s_init, miles.teff),
        },
        "stelib": {
            "kind": "out-of-fold (in the run)",
            "n_star": len(lib),
            "final_model": wavelength_errors(residual, at=CROSS_LIBRARY_WAVELENGTHS),
            "initial_model": wavelength_errors(base_r, at=CROSS_LIBRARY_WAVELENGTHS),
            "coverage_total": _coverage(residual, nested, lib.teff),
            "coverage_initial_model": _coverage(base_r, base_sigma, lib.teff),
        },
    }
    return result, {"miles": (r_final, r_init), "stelib": (residual, base_r)}


def _errors_table(rows_new, rows_old, paper=None) -> list[str]:
    head = "| λ (Å) | error fine-tuned | offset | error initial | offset |" + (" paper |" if paper else "")
    lines = [head, "|---:|---:|---:|---:|---:|" + ("---:|" if paper else "")]
    for i, (a, b) in enumerate(zip(rows_new, rows_old)):
        cells = f"| {a['wave']:.0f} | {a['error']:.4f} | {a['offset']:+.4f} "
        cells += f"| {b['error']:.4f} | {b['offset']:+.4f} |"
        lines.append(cells + (f" {paper[i]} |" if paper else ""))
    return lines


def _coverage_table(named: dict) -> list[str]:
    lines = ["| σ | stars | GU | GV | GI |", "|---|---:|---:|---:|---:|"]
    for label, cov in named.items():
        for teff, c in cov.items():
            cells = " | ".join("—" if c[b] is None else f"{c[b]:.3f}" for b in ("GU", "GV", "GI"))
            lines.append(f"| {label}, {teff} | {c['n_star']} | {cells} |")
    return lines


def real_star_markdown(result: dict) -> str:
    """The real-star section of ``evaluation.md``."""
    m = result["miles"]
    lines = [
        "",
        f"## Real stars: run {result['run']}",
        "",
        f"Libraries of the run: {', '.join(result.get('libraries', ['miles']))}. "
        f"MILES {m.get('kind', 'out-of-fold')} ({m['n_star']} stars, {m['n_folds']} folds by star, "
        f"input S/N {m['snr']:g}, direct path); initial model = the model the run started from, on the "
        "same stars and noise:",
        "",
        *_errors_table(m["out_of_fold"], m["initial_model"], paper=m["paper"]),
        "",
        "σ coverage, fraction |r|/σ < 1 (ideal 0.683):",
        "",
        *_coverage_table(
            {
                "fine-tuned, total (nested σ_sys)": m["coverage_total_nested"],
                "fine-tuned, network σ only": m["coverage_net"],
                "initial model": m["coverage_initial_model"],
            }
        ),
    ]
    if "stelib" in result:
        s = result["stelib"]
        lines += [
            "",
            f"STELIB, {s['kind']} ({s['n_star']} stars, not dereddened, like MILES); σ of the run's "
            "final model (nested σ_sys when out-of-fold):",
            "",
            *_errors_table(s["final_model"], s["initial_model"]),
            "",
            *_coverage_table(
                {"final, total σ": s["coverage_total"], "initial model": s["coverage_initial_model"]}
            ),
        ]
    return "\n".join(lines) + "\n"


def real_star_figure(arrays: dict, path) -> Path:
    """Median and 16-84 % band of real-star residuals against wavelength, fine-tuned vs initial."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lamost2csst.core.grids import OUTPUT_WAVE

    fig, axes = plt.subplots(len(arrays), 1, figsize=(8, 3.2 * len(arrays)), squeeze=False)
    for ax, (name, (new, old)) in zip(axes[:, 0], arrays.items()):
        for r, label, color in ((old, "initial model", "0.5"), (new, "fine-tuned", "C0")):
            with np.errstate(all="ignore"):
                lo, med, hi = np.nanpercentile(r, [16, 50, 84], axis=0)
            ax.fill_between(OUTPUT_WAVE, lo, hi, color=color, alpha=0.3, lw=0)
            ax.plot(OUTPUT_WAVE, med, color=color, label=label)
        ax.axhline(0, color="k", lw=0.5)
        ax.set_ylim(-0.2, 0.2)
        ax.set_ylabel(f"{name}: (pred - true)/true")
        ax.legend(loc="upper right")
    axes[-1, 0].set_xlabel("wavelength (vacuum Å)")
    path = Path(path)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
