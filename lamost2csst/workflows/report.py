"""Markdown tables and figures of a model evaluation (:mod:`lamost2csst.workflows.evaluation`).

The tables set our numbers beside the paper's (:data:`lamost2csst.core.evaluation.PAPER_GRID`,
``PAPER_MILES``); the figures are like Figs. 2-5 (grid test split) and Fig. 11 (MILES).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lamost2csst.core.evaluation import PAPER_GRID, PAPER_MILES
from lamost2csst.core.grids import BANDS, OUTPUT_WAVE, band_pixels
from lamost2csst.core.inputs import DEFAULT_METHOD
from lamost2csst.core.metrics import relative_residual, teff_bin

__all__ = ["BAND_NAMES", "evaluation_markdown", "write_figures"]

BAND_NAMES = ("GU", "GV", "GI")


def _header(card, *, model_label, command) -> list[str]:
    stage = card.get("stage", "pretrain")
    if stage == "pretrain":
        trained_on = f"{card.get('train_models', '?')} grid models"
    elif stage == "finetune-real":
        real = card.get("real_library") or {}
        branch = (
            "a real-star branch" if (card.get("model_config") or {}).get("domain_input") else "fine-tuning"
        )
        n_grid = len((card.get("split") or {}).get("train", [])) or "?"
        trained_on = (
            f"{n_grid} grid models, then {branch} on {real.get('used', '?')} {real.get('library', 'real')} "
            f"stars (from the network sha256 {str(card.get('init_sha256', '?'))[:12]})"
        )
    else:
        trained_on = (
            f"{card.get('train_models', '?')} {card.get('library', 'empirical')} stars "
            f"(fine-tuned from {card.get('init', '?')})"
        )
    return [
        "# UaRA-net evaluation",
        "",
        f"model: `{model_label}` (sha256 {card.get('sha256', '?')[:12]}), "
        f"trained on {trained_on}; command: `{command}`",
    ]


def _paper_table(grid_rows) -> list[str]:
    ridge = "ridge_error_GU" in grid_rows[0]
    lines = [
        "",
        "## Grid test split vs the paper (Sect. 4.2, BOSZ test set)",
        "",
        "Rows are models × noise realisations; `models` counts the distinct test models of the bin.",
        "",
        "| Teff | SNR | models | GU ours | GU paper | GV ours | GV paper | GI ours | GI paper |"
        + (" GU ridge | GV ridge | GI ridge |" if ridge else ""),
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|" + ("---:|" * 3 if ridge else ""),
    ]
    for (teff, snr), paper in PAPER_GRID.items():
        row = next((r for r in grid_rows if r["teff_bin"] == teff and r["snr"] == snr), None)
        if row is None:
            lines.append(f"| {teff} | {snr} | 0 | – | {paper[0]} | – | {paper[1]} | – | {paper[2]} |")
            continue
        cells = " | ".join(f"{row[f'error_{b}']:.4f} | {p}" for b, p in zip(BAND_NAMES, paper))
        if "ridge_error_GU" in row:
            cells += " | " + " | ".join(f"{row[f'ridge_error_{b}']:.4f}" for b in BAND_NAMES)
        lines.append(f"| {teff} | {snr:g} | {row['n_distinct']} | {cells} |")
    return lines


def _bin_table(grid_rows) -> list[str]:
    lines = [
        "",
        "## Grid test split: every Teff bin (typical error / offset / fraction |r|/σ<1)",
        "",
        "| SNR | Teff | models | "
        + " | ".join(f"{b} error | {b} offset | {b} in 1σ | {b} std(r/σ)" for b in BAND_NAMES)
        + " |",
        "|---:|---:|---:|" + "---:|" * 12,
    ]
    for r in grid_rows:
        cells = " | ".join(
            f"{r[f'error_{b}']:.4f} | {r[f'offset_{b}']:+.4f} | "
            f"{r[f'within1sigma_{b}']:.3f} | {r[f'std_z_{b}']:.2f}"
            for b in BAND_NAMES
        )
        lines.append(f"| {r['snr']:g} | {r['teff_bin']:.0f} | {r['n_distinct']} | {cells} |")
    return lines


def _miles_table(miles) -> list[str]:
    lines = [
        "",
        "## MILES verification (Sect. 4.3)",
        "",
        f"{miles['n_used']} MILES stars used ({miles['n_selected']} with 5000-9750 K and parameters, "
        f"{miles['n_screened_out']} screened out by GPR RMSAE ≥ {miles['rmsae_threshold']}), "
        f"input SNR {miles['snr']:g}; fraction |r|/σ<1 = {miles['within1sigma']:.3f}, "
        f"std(r/σ) = {miles['std_z']:.2f}",
        *(
            [
                "",
                "**In-sample:** this model was fine-tuned on these MILES stars (`train_model real`); "
                "its honest MILES numbers are the out-of-fold ones (`--real-stars RUN`).",
            ]
            if miles.get("in_sample")
            else []
        ),
        "",
        "| λ (Å) | error ours | offset ours | error paper |",
        "|---:|---:|---:|---:|",
    ]
    for e, p in zip(miles["errors"], PAPER_MILES):
        lines.append(f"| {e['wave']:.0f} | {e['error']:.4f} | {e['offset']:+.4f} | {p} |")
    return lines


def _lamost_path_markdown(direct_rows, direct_sigmas, lamost_rows, lamost_sigmas) -> str:
    """The grid test split through the survey job's input path, next to the direct (paper) path."""
    lines = [
        "",
        "## Grid test split through the survey job's input path (LAMOST-like observation)",
        "",
        "The same test models observed on LAMOST_WAVE at a disc + halo radial velocity (90 % N(0, 40), "
        f"10 % N(0, 150) km/s) with noise at the SNR per LAMOST pixel, then rest frame, resampling "
        f"('{DEFAULT_METHOD}') and normalization as `jobs.predict_catalogue` does; `direct` is the "
        "table above (Eq. 1 noise on the input grid). Typical error:",
        "",
        "| Teff | SNR | " + " | ".join(f"{b} direct | {b} LAMOST path" for b in BAND_NAMES) + " |",
        "|---:|---:|" + "---:|" * 6,
    ]
    for teff, snr in PAPER_GRID:
        pair = [
            next((r for r in rows if r["teff_bin"] == teff and r["snr"] == snr), None)
            for rows in (direct_rows, lamost_rows)
        ]
        if None in pair:
            continue
        cells = " | ".join(f"{pair[0][f'error_{b}']:.4f} | {pair[1][f'error_{b}']:.4f}" for b in BAND_NAMES)
        lines.append(f"| {teff} | {snr} | {cells} |")
    lines += [
        "",
        "Fraction |r|/σ < 1 over all test models (ideal 0.683):",
        "",
        "| SNR | " + " | ".join(f"{b} direct | {b} LAMOST path" for b in BAND_NAMES) + " |",
        "|---:|" + "---:|" * 6,
    ]
    for snr in sorted({r["snr"] for r in lamost_sigmas}):
        cells = []
        for band in BAND_NAMES:
            for rows in (direct_sigmas, lamost_sigmas):
                row = next(r for r in rows if r["snr"] == snr and r["band"] == band)
                cells.append(f"{row['within1sigma']:.3f}")
        lines.append(f"| {snr:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _branch_markdown(branch) -> str:
    return (
        f"\n## Uncertainty branch (FC'16 on the input errors)\n\n"
        f"Test models at SNR {branch['snr']:g}: {branch['active_units']} of {branch['units']} units "
        f"active (positive output for some star), {branch['active_fraction']:.3f} of unit-star pairs; "
        f"input errors x{branch['factor']:g} change σ by a median factor "
        f"{branch['sigma_ratio_median']:.4f} "
        f"(1 exactly: σ ignores the stated errors) and the SED by at most "
        f"{branch['sed_max_relative_change']:.1e}.\n"
    )


def _ensemble_markdown(sigmas) -> str:
    return (
        "\n## Ensemble: aleatoric and epistemic σ (the tables above use the total)\n\n"
        "Over all test stars; σ relative, medians over the band's pixels and the stars.\n\n"
        "| SNR | band | in 1σ (total) | in 1σ (aleatoric only) | median σ aleatoric "
        "| median σ epistemic |\n"
        "|---:|---|---:|---:|---:|---:|\n"
        + "".join(
            f"| {r['snr']:g} | {r['band']} | {r['within1sigma']:.3f} "
            f"| {r['within1sigma_aleatoric']:.3f} | {r['median_sigma_aleatoric']:.4f} "
            f"| {r['median_sigma_epistemic']:.4f} |\n"
            for r in sigmas
        )
    )


def _ensemble_miles_markdown(miles) -> str:
    return (
        f"\nMILES, ensemble: fraction |r|/σ<1 {miles['within1sigma']:.3f} with the total σ, "
        f"{miles['within1sigma_aleatoric_only']:.3f} with the aleatoric σ only; median σ aleatoric "
        f"{miles['median_sigma_aleatoric']:.4f}, epistemic {miles['median_sigma_epistemic']:.4f}\n"
    )


def evaluation_markdown(card: dict, results, *, model_label: str, command: str, ensemble: bool) -> str:
    """The Markdown report (``evaluation.md``) of an evaluation's results.

    Parameters
    ----------
    card : dict
        The model card.
    results
        What :func:`lamost2csst.workflows.evaluation.evaluate_model` measured: attributes
        ``grid`` and ``lamost`` (``GridEvaluation`` or None), ``branch`` and ``miles`` (dict or None).
    model_label, command : str
        How the model and the command line are named in the header.
    ensemble : bool
        Add the aleatoric/epistemic tables of an ensemble.
    """
    grid_rows = results.grid.rows if results.grid else []
    sigmas = results.grid.sigma_summary if results.grid else None
    lines = _header(card, model_label=model_label, command=command)
    if grid_rows:
        lines += _paper_table(grid_rows) + _bin_table(grid_rows)
    if results.miles:
        lines += _miles_table(results.miles)
    text = "\n".join(lines) + "\n"
    if results.lamost and results.lamost.rows:
        text += _lamost_path_markdown(grid_rows, sigmas, results.lamost.rows, results.lamost.sigma_summary)
    if results.branch:
        text += _branch_markdown(results.branch)
    if ensemble and sigmas:
        text += _ensemble_markdown(sigmas)
    if ensemble and results.miles:
        text += _ensemble_miles_markdown(results.miles)
    return text


def _save(fig, path):
    import matplotlib.pyplot as plt

    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _residual_figure(arrays, path):
    """Median and std of the relative residuals per Teff bin, one row of panels per SNR (Figs. 2-3)."""
    import matplotlib.pyplot as plt

    r = relative_residual(arrays.sed, arrays.sed_true, mask=arrays.target_mask)
    bins, snr = teff_bin(arrays.teff), arrays.snr
    snrs = np.unique(snr)
    fig, axes = plt.subplots(len(snrs), 2, figsize=(11, 2.6 * len(snrs)), sharex=True, squeeze=False)
    cmap = plt.get_cmap("coolwarm")
    for i, s in enumerate(snrs):
        for c in np.unique(bins):
            sel = (snr == s) & (bins == c)
            if sel.sum() < 2:
                continue
            color = cmap((c - 5000) / 4750)
            axes[i, 0].plot(OUTPUT_WAVE, np.nanmedian(r[sel], axis=0), color=color, lw=0.8)
            axes[i, 1].plot(OUTPUT_WAVE, np.nanstd(r[sel], axis=0), color=color, lw=0.8)
        axes[i, 0].set_ylabel(f"SNR {s:g}\nmedian r")
        axes[i, 1].set_ylabel("std r")
        axes[i, 1].set_yscale("log")
    for ax in axes[-1]:
        ax.set_xlabel("wavelength (Å, vacuum)")
    fig.suptitle(
        "Grid test split: relative residuals per Teff bin (blue 5000 K → red 9750 K), like Figs. 2-3"
    )
    fig.tight_layout()
    return _save(fig, path)


def _calibration_figure(arrays, path):
    """Histograms of r/sigma per band against the unit normal."""
    import matplotlib.pyplot as plt

    r = relative_residual(arrays.sed, arrays.sed_true, mask=arrays.target_mask)
    fig, axes = plt.subplots(1, 3, figsize=(11, 3))
    z = r / arrays.sigma
    x = np.linspace(-4, 4, 200)
    for ax, (band, lo_hi) in zip(axes, BANDS.items()):
        zb = z[:, band_pixels(OUTPUT_WAVE, lo_hi)]
        zb = zb[np.isfinite(zb)]
        ax.hist(np.clip(zb, -4, 4), bins=80, density=True, color="0.6")
        ax.plot(x, np.exp(-(x**2) / 2) / np.sqrt(2 * np.pi), "k-", lw=1)
        ax.set_title(f"{band}: |r/σ|<1 for {np.mean(np.abs(zb) < 1):.3f}")
        ax.set_xlabel("r / σ")
    fig.tight_layout()
    return _save(fig, path)


def _miles_figure(miles_arrays, path):
    """Every MILES star's relative residual with their median and std (Fig. 11)."""
    import matplotlib.pyplot as plt

    wave, r, _ = miles_arrays
    fig, ax = plt.subplots(figsize=(9, 3.5))
    for row in r:
        ax.plot(wave, row, color="0.75", lw=0.4)
    ax.plot(wave, np.nanmedian(r, axis=0), "r-", label="median")
    ax.plot(wave, np.nanstd(r, axis=0), "b--", label="std")
    ax.set_xlim(3400, 7600)
    ax.set_ylim(-0.2, 0.2)
    ax.set_xlabel("wavelength (Å, vacuum)")
    ax.set_ylabel("relative residual")
    ax.legend()
    ax.set_title(f"MILES verification: {r.shape[0]} stars (like Fig. 11)")
    fig.tight_layout()
    return _save(fig, path)


def write_figures(out, *, grid_arrays=None, miles_arrays=None) -> list[Path]:
    """``grid_residuals.png`` and ``grid_calibration.png`` (given ``grid_arrays``, a ``GridArrays``)
    and ``miles_residuals.png`` (given the MILES ``(wave, residual, teff)``) in ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    files = []
    if grid_arrays is not None:
        files.append(_residual_figure(grid_arrays, Path(out) / "grid_residuals.png"))
        files.append(_calibration_figure(grid_arrays, Path(out) / "grid_calibration.png"))
    if miles_arrays is not None:
        files.append(_miles_figure(miles_arrays, Path(out) / "miles_residuals.png"))
    return files
