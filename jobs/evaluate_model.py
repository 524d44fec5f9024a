"""Job: evaluate a UaRA-net model like Sects. 4.2-4.3 of the paper; tables (Markdown + JSON) and figures.

``python -m jobs.evaluate_model --help`` explains; :func:`run` is what tests call.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from jobs._cli import positive_int

PROG = "python -m jobs.evaluate_model"

DESCRIPTION = """\
Evaluate a UaRA-net model and write DIR/evaluation.md, DIR/evaluation.json and PNG figures.

grid test split (--grid-test, default on): the test models of the model's own training split
  (from its model card, or --split RUN/split.json), each at every SNR of --snrs with
  --realisations independent Eq. 1 noise draws (fixed --seed). Per SNR x Teff bin x band:
  typical error and offset (DESIGN.md: per pixel std / median of r over the stars of the bin,
  then the median over the band's pixels) and the calibration of sigma (fraction of
  |r|/sigma < 1, ideally 0.683; std of r/sigma, ideally 1). Figures like Figs. 2-5.

MILES verification (--miles): the MILES v9.1 stars of the sdss-mangadap package with
  5000 <= Teff <= 9750 K, screened by an out-of-fold GPR (Appendix B, RMSAE < --miles-rmsae);
  input: MILES degraded to R=2000 on INPUT_WAVE with Eq. 1 noise at --miles-snr, normalized;
  target: MILES degraded to R=200 and scaled, on the OUTPUT_WAVE pixels MILES covers
  (3500-7500 A). Errors at 3600/4500/5000/6000/7000 A (Sect. 4.3) and a figure like Fig. 11.
"""

EPILOG = """\
outputs: DIR/evaluation.md (also printed), DIR/evaluation.json, DIR/grid_residuals.png,
DIR/grid_calibration.png, DIR/miles_residuals.png (with --miles); stdout ends with one JSON
summary line.

examples:
  python -m jobs.evaluate_model --out eval/shipped --miles
  python -m jobs.evaluate_model --model runs/pretrain/best.keras --split runs/pretrain/split.json --out eval/run
"""

#: Sect. 4.2 / DESIGN.md: BOSZ test set typical errors (GU, GV, GI).
PAPER_GRID = {(6000, 20): (0.0425, 0.0025, 0.0029), (6000, 40): (0.0207, 0.0013, 0.0015),
              (6000, 80): (0.0151, 0.0011, 0.0011), (8000, 20): (0.0117, 0.0016, 0.0024),
              (8000, 40): (0.0064, 0.0008, 0.0014), (8000, 80): (0.0052, 0.0007, 0.0012)}
#: Sect. 4.3: MILES verification errors at 3600, 4500, 5000, 6000, 7000 A.
PAPER_MILES = (0.070, 0.022, 0.013, 0.010, 0.022)
BAND_NAMES = ("GU", "GV", "GI")


def float_list(text):
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if min(values) <= 0:
        raise argparse.ArgumentTypeError("SNRs must be positive")
    return values


def build_parser():
    p = argparse.ArgumentParser(prog=PROG, description=DESCRIPTION, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="a .keras model (default: the shipped model)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--grid", nargs="+", metavar="PATH", help="grid part stores (default: the shipped grid)")
    p.add_argument("--split", help="split.json of the training run (default: the split in the model card)")
    p.add_argument("--no-grid-test", dest="grid_test", action="store_false", help="skip the grid test split")
    p.add_argument("--snrs", type=float_list, default=(20.0, 40.0, 80.0), help="SNRs (default 20,40,80)")
    p.add_argument("--realisations", type=positive_int, default=10, help="noise draws per test model (default 10)")
    p.add_argument("--no-lamost-path", dest="lamost_path", action="store_false",
                   help="skip the grid test split observed through the survey job's input path (default: run it "
                   "too: each test model observed on LAMOST_WAVE at a disc + halo radial velocity with noise at "
                   "the S/N per LAMOST pixel, then rest frame, resampling and normalization as the job does)")
    p.add_argument("--miles", action="store_true", help="also run the MILES verification (Sect. 4.3)")
    p.add_argument("--miles-snr", type=float, default=100.0, help="SNR of the MILES inputs (default 100)")
    p.add_argument("--miles-rmsae", type=float, default=0.05, help="GPR screening threshold (default 0.05)")
    p.add_argument("--ensemble", nargs="+", metavar="MODEL.keras",
                   help="more members (same training data, other seeds): predictions are the ensemble mean "
                        "and sigma its total (aleatoric + epistemic) uncertainty (lamost2csst.nn.uncertainty)")
    p.add_argument("--ridge-baseline", action="store_true",
                   help="also evaluate a ridge regression trained on the same training models (the simple way)")
    p.add_argument("--seed", type=int, default=2024, help="seed of the evaluation noise")
    return p


def _training_split(model_path):
    """Training models of a model file: from its card, else from the ``split.json`` of its run directory."""
    from lamost2csst.nn.inference import model_card

    split = model_card(model_path).get("split")
    beside = Path(model_path).parent / "split.json"
    if split is None and beside.exists():
        split = json.loads(beside.read_text())
    return None if split is None else split["train"]


def _test_models(args, card):
    import numpy as np

    from lamost2csst.io.grid import load_grid

    if args.split:
        split = json.loads(Path(args.split).read_text())
    elif "split" in card:
        split = card["split"]
    else:
        raise SystemExit(f"{PROG}: error: the model card has no training split; pass --split RUN/split.json")
    if args.grid:
        import xarray as xr

        parts = [load_grid(p) for p in args.grid]
        ds = xr.concat(parts, dim="model") if len(parts) > 1 else parts[0]
    else:
        ds = load_grid()
    params = np.stack([ds[k].values.astype(float) for k in ("teff", "logg", "feh", "alpha")], axis=1)
    keys = [tuple(np.round(p, 4)) for p in params]
    wanted = {tuple(np.round(p, 4)) for p in split["test"]}
    keep = np.array([k in wanted for k in keys])
    if keep.sum() != len(wanted):
        raise SystemExit(f"{PROG}: error: {len(wanted) - keep.sum()} test models of the split are not in the grid")
    for member in args.ensemble or ():
        seen = _training_split(member)
        if seen is None:
            raise SystemExit(f"{PROG}: error: ensemble member {member} has neither a model card with its training "
                             "split nor a split.json beside it; cannot check that it never saw the test models")
        leaked = wanted & {tuple(np.round(p, 4)) for p in seen}
        if leaked:
            raise SystemExit(f"{PROG}: error: ensemble member {member} was trained on {len(leaked)} of the test "
                             "models; train members with the same --split-seed as the first model")
    trained = {tuple(np.round(p, 4)) for p in split["train"]}
    return ds.isel(model=np.flatnonzero(keep)), ds.isel(model=np.flatnonzero([k in trained for k in keys]))


class RidgeBaseline:
    """What a simple linear model achieves from the same training models: ridge regression from
    the normalized input (minus 1) to ln(SED), fitted on 10 noise draws of each training model
    at the training SNRs 20-40 (scikit-learn ``Ridge(alpha=1)``)."""

    def __init__(self, train_ds, *, seed):
        import numpy as np
        from sklearn.linear_model import Ridge

        from lamost2csst.io.training import gridded_library
        from lamost2csst.nn.training import LibraryArrays, epoch_pairs

        g = gridded_library(train_ds)
        lib = LibraryArrays(g.flux_in, g.input_mask, g.sed, g.target_mask, train_ds["teff"].values.astype(float))
        x, y = [], []
        for k in range(10):
            d = epoch_pairs(lib, snrs=(20.0, 25.0, 30.0, 35.0, 40.0), rng=np.random.default_rng([seed, 555, k]))
            x.append(d.flux - 1.0)
            y.append(np.log(d.sed))
        self.model = Ridge(alpha=1.0).fit(np.concatenate(x), np.concatenate(y))

    def __call__(self, flux):
        import numpy as np

        return np.exp(self.model.predict(flux - 1.0))


def _predict_any(model, flux, error):
    """(sed, sigma, sigma_aleatoric) of one model or of an ensemble (a list of models)."""
    from lamost2csst.nn.inference import predict
    from lamost2csst.nn.uncertainty import predict_ensemble

    if isinstance(model, list):
        out = predict_ensemble(flux, error, models=model)
        return out.sed, out.sigma, out.sigma_aleatoric
    sed, sigma = predict(flux, error, model=model)
    return sed, sigma, sigma


def sigma_summary(sed_true, target_mask, sed, sigma, aleatoric, snr):
    """Per SNR and band over all stars: fraction |r|/sigma < 1 with the total and with the aleatoric
    sigma, and the median aleatoric and epistemic sigma (epistemic = sqrt(total^2 - aleatoric^2),
    zero for a single model)."""
    import numpy as np

    from lamost2csst.core.grids import BANDS, OUTPUT_WAVE, band_pixels
    from lamost2csst.core.metrics import relative_residual

    r = relative_residual(sed, sed_true, mask=target_mask)
    epistemic = np.sqrt(np.maximum(sigma.astype(float) ** 2 - aleatoric.astype(float) ** 2, 0.0))
    rows = []
    for value in np.unique(snr):
        for band, lo_hi in BANDS.items():
            sel = band_pixels(OUTPUT_WAVE, lo_hi)
            rb = r[snr == value][:, sel]
            good = np.isfinite(rb)
            rows.append({"snr": float(value), "band": band,
                         "within1sigma": float(np.mean(np.abs(rb[good] / sigma[snr == value][:, sel][good]) < 1)),
                         "within1sigma_aleatoric": float(np.mean(np.abs(rb[good] / aleatoric[snr == value][:, sel][good])
                                                                 < 1)),
                         "median_sigma_aleatoric": float(np.median(aleatoric[snr == value][:, sel][good])),
                         "median_sigma_epistemic": float(np.median(epistemic[snr == value][:, sel][good]))})
    return rows


def grid_evaluation(model, ds, *, snrs, realisations, seed, baseline=None, input_path="direct"):
    """Predictions of ``model`` (or an ensemble) for the grid models of ``ds`` at each SNR x realisation.

    ``input_path`` as in :func:`lamost2csst.nn.training.epoch_pairs`: "direct" (the paper's
    test: Eq. 1 noise on the input grid) or "lamost" (observed, then the survey job's path).
    """
    import numpy as np

    from lamost2csst.core.evaluation import evaluation_rows
    from lamost2csst.io.training import gridded_library
    from lamost2csst.nn.training import LibraryArrays, epoch_pairs

    g = gridded_library(ds)
    lib = LibraryArrays(g.flux_in, g.input_mask, g.sed, g.target_mask, ds["teff"].values.astype(float),
                        ds["flux_lamost"].values if input_path == "lamost" else None)
    parts, baseline_seds = [], []
    for k in range(realisations):
        # the lamost path draws from its own streams: the direct path's numbers do not change with it
        key = [seed, k] if input_path == "direct" else [seed, k, 1]
        data = epoch_pairs(lib, snrs=snrs, rng=np.random.default_rng(key), input_path=input_path)
        if baseline is not None:
            baseline_seds.append(baseline(data.flux))
        sed, sigma, aleatoric = _predict_any(model, data.flux, data.error)
        parts.append((data.sed, data.target_mask, sed, sigma, lib.teff[data.star], data.snr, data.star, aleatoric))
    cat = [np.concatenate(x) for x in zip(*parts)]
    rows = evaluation_rows(*cat[:4], teff=cat[4], snr=cat[5], star_id=cat[6])
    if baseline is not None:
        base = np.concatenate(baseline_seds)
        base_rows = evaluation_rows(cat[0], cat[1], base, np.ones_like(base), teff=cat[4], snr=cat[5], star_id=cat[6])
        for row, b in zip(rows, base_rows):
            for band in ("GU", "GV", "GI"):
                row[f"ridge_error_{band}"] = b[f"error_{band}"]
    return rows, cat[:7], sigma_summary(cat[0], cat[1], cat[2], cat[3], cat[7], cat[5])


def branch_health(model, ds, *, seed, snr: float = 30.0) -> dict:
    """:func:`lamost2csst.nn.diagnostics.error_branch_response` on the test models at ``snr``."""
    import numpy as np

    from lamost2csst.io.training import gridded_library
    from lamost2csst.nn.diagnostics import error_branch_response
    from lamost2csst.nn.training import LibraryArrays, epoch_pairs

    g = gridded_library(ds)
    lib = LibraryArrays(g.flux_in, g.input_mask, g.sed, g.target_mask, ds["teff"].values.astype(float))
    data = epoch_pairs(lib, snrs=(snr,), rng=np.random.default_rng([seed, 7]))
    return {"snr": snr, **error_branch_response(model, data.flux, data.error)}


def miles_evaluation(model, *, snr, threshold, seed):
    import numpy as np

    from lamost2csst.core.evaluation import MILES_WAVELENGTHS, wavelength_errors
    from lamost2csst.core.gpr import screen_library
    from lamost2csst.core.grids import OUTPUT_WAVE
    from lamost2csst.core.metrics import relative_residual
    from lamost2csst.io.readers.mangadap import read_mangadap_miles
    from lamost2csst.io.training import gridded_library
    from lamost2csst.nn.training import LibraryArrays, epoch_pairs

    ds = read_mangadap_miles()
    teff, logg, feh = (ds[k].values.astype(float) for k in ("teff", "logg", "feh"))
    sel = (teff >= 5000) & (teff <= 9750) & np.isfinite(logg) & np.isfinite(feh)
    ds = ds.isel(star=np.flatnonzero(sel))
    g = gridded_library(ds)
    covered = ~g.target_mask.any(axis=0)  # the pixels every star covers (~3500-7500 A)
    params = np.stack([teff[sel], logg[sel], feh[sel]], axis=1)
    screen = screen_library(params, g.sed[:, covered], threshold=threshold, seed=seed)
    keep = screen.normal & ~g.input_mask.any(axis=1)
    lib = LibraryArrays(g.flux_in[keep], g.input_mask[keep], g.sed[keep], g.target_mask[keep], params[keep, 0])
    data = epoch_pairs(lib, snrs=(snr,), rng=np.random.default_rng([seed, 99]))
    sed, sigma, aleatoric = _predict_any(model, data.flux, data.error)
    r = relative_residual(sed, data.sed, mask=data.target_mask)
    z = r / sigma
    within = float(np.nanmean(np.abs(z) < 1) / np.mean(np.isfinite(z))) if np.isfinite(z).any() else float("nan")
    result = {"n_selected": int(sel.sum()), "n_screened_out": int((~screen.normal).sum()), "n_used": int(keep.sum()),
              "rmsae_threshold": threshold, "gpr_hyperparameters": screen.hyperparameters, "snr": snr,
              "errors": wavelength_errors(r, at=MILES_WAVELENGTHS), "within1sigma": within,
              "std_z": float(np.nanstd(z)),
              "within1sigma_aleatoric_only": float(np.mean(np.abs(r / aleatoric)[np.isfinite(r)] < 1)),
              "median_sigma_aleatoric": float(np.median(aleatoric[np.isfinite(r)])),
              "median_sigma_epistemic": float(np.median(np.sqrt(np.maximum(
                  sigma.astype(float) ** 2 - aleatoric.astype(float) ** 2, 0.0))[np.isfinite(r)]))}
    return result, (OUTPUT_WAVE, r, lib.teff)


def _markdown(card, grid_rows, miles, args) -> str:
    lines = ["# UaRA-net evaluation", ""]
    trained_on = ("grid models" if card.get("stage", "pretrain") == "pretrain"
                  else f"{card.get('library', 'empirical')} stars (fine-tuned from {card.get('init', '?')})")
    lines.append(f"model: `{args.model or 'shipped'}` (sha256 {card.get('sha256', '?')[:12]}), "
                 f"trained on {card.get('train_models', '?')} {trained_on}; command: `{' '.join(sys.argv)}`")
    if grid_rows:
        lines += ["", "## Grid test split vs the paper (Sect. 4.2, BOSZ test set)", "",
                  "Rows are models × noise realisations; `models` counts the distinct test models of the bin.", "",
                  "| Teff | SNR | models | GU ours | GU paper | GV ours | GV paper | GI ours | GI paper |"
                  + (" GU ridge | GV ridge | GI ridge |" if "ridge_error_GU" in grid_rows[0] else ""),
                  "|---:|---:|---:|---:|---:|---:|---:|---:|---:|" + ("---:|" * 3 if "ridge_error_GU" in grid_rows[0] else "")]
        for (teff, snr), paper in PAPER_GRID.items():
            row = next((r for r in grid_rows if r["teff_bin"] == teff and r["snr"] == snr), None)
            if row is None:
                lines.append(f"| {teff} | {snr} | 0 | – | {paper[0]} | – | {paper[1]} | – | {paper[2]} |")
                continue
            cells = " | ".join(f"{row[f'error_{b}']:.4f} | {p}" for b, p in zip(BAND_NAMES, paper))
            if "ridge_error_GU" in row:
                cells += " | " + " | ".join(f"{row[f'ridge_error_{b}']:.4f}" for b in BAND_NAMES)
            lines.append(f"| {teff} | {snr:g} | {row['n_distinct']} | {cells} |")
        lines += ["", "## Grid test split: every Teff bin (typical error / offset / fraction |r|/σ<1)", "",
                  "| SNR | Teff | models | " + " | ".join(f"{b} error | {b} offset | {b} in 1σ | {b} std(r/σ)"
                                                        for b in BAND_NAMES) + " |",
                  "|---:|---:|---:|" + "---:|" * 12]
        for r in grid_rows:
            cells = " | ".join(f"{r[f'error_{b}']:.4f} | {r[f'offset_{b}']:+.4f} | {r[f'within1sigma_{b}']:.3f} | "
                               f"{r[f'std_z_{b}']:.2f}" for b in BAND_NAMES)
            lines.append(f"| {r['snr']:g} | {r['teff_bin']:.0f} | {r['n_distinct']} | {cells} |")
    if miles:
        lines += ["", "## MILES verification (Sect. 4.3)", "",
                  f"{miles['n_used']} MILES stars used ({miles['n_selected']} with 5000-9750 K and parameters, "
                  f"{miles['n_screened_out']} screened out by GPR RMSAE ≥ {miles['rmsae_threshold']}), "
                  f"input SNR {miles['snr']:g}; fraction |r|/σ<1 = {miles['within1sigma']:.3f}, "
                  f"std(r/σ) = {miles['std_z']:.2f}", "",
                  "| λ (Å) | error ours | offset ours | error paper |", "|---:|---:|---:|---:|"]
        for e, p in zip(miles["errors"], PAPER_MILES):
            lines.append(f"| {e['wave']:.0f} | {e['error']:.4f} | {e['offset']:+.4f} | {p} |")
    return "\n".join(lines) + "\n"


def _resampling_method() -> str:
    from lamost2csst.core.inputs import DEFAULT_METHOD

    return DEFAULT_METHOD


def _lamost_path_markdown(direct_rows, direct_sigmas, lamost_rows, lamost_sigmas) -> str:
    """The grid test split through the survey job's input path, next to the direct (paper) path."""
    lines = ["", "## Grid test split through the survey job's input path (LAMOST-like observation)", "",
             "The same test models observed on LAMOST_WAVE at a disc + halo radial velocity (90 % N(0, 40), "
             f"10 % N(0, 150) km/s) with noise at the SNR per LAMOST pixel, then rest frame, resampling "
             f"('{_resampling_method()}') and normalization as `jobs.predict_catalogue` does; `direct` is the table "
             "above (Eq. 1 noise on the input grid). Typical error:", "",
             "| Teff | SNR | " + " | ".join(f"{b} direct | {b} LAMOST path" for b in BAND_NAMES) + " |",
             "|---:|---:|" + "---:|" * 6]
    for teff, snr in PAPER_GRID:
        pair = [next((r for r in rows if r["teff_bin"] == teff and r["snr"] == snr), None)
                for rows in (direct_rows, lamost_rows)]
        if None in pair:
            continue
        cells = " | ".join(f"{pair[0][f'error_{b}']:.4f} | {pair[1][f'error_{b}']:.4f}" for b in BAND_NAMES)
        lines.append(f"| {teff} | {snr} | {cells} |")
    lines += ["", "Fraction |r|/σ < 1 over all test models (ideal 0.683):", "",
              "| SNR | " + " | ".join(f"{b} direct | {b} LAMOST path" for b in BAND_NAMES) + " |",
              "|---:|" + "---:|" * 6]
    for snr in sorted({r["snr"] for r in lamost_sigmas}):
        cells = []
        for band in BAND_NAMES:
            for rows in (direct_sigmas, lamost_sigmas):
                row = next(r for r in rows if r["snr"] == snr and r["band"] == band)
                cells.append(f"{row['within1sigma']:.3f}")
        lines.append(f"| {snr:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _save(fig, path):
    import matplotlib.pyplot as plt

    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _figures(out, grid_cat, miles_arrays):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from lamost2csst.core.grids import OUTPUT_WAVE
    from lamost2csst.core.metrics import relative_residual, teff_bin

    files = []
    if grid_cat is not None:
        sed_true, tmask, sed, sigma, teff, snr, _ = grid_cat
        r = relative_residual(sed, sed_true, mask=tmask)
        bins = teff_bin(teff)
        snrs = np.unique(snr)
        fig, axes = plt.subplots(len(snrs), 2, figsize=(11, 2.6 * len(snrs)), sharex=True, squeeze=False)
        cmap = plt.get_cmap("coolwarm")
        centres = np.unique(bins)
        for i, s in enumerate(snrs):
            for c in centres:
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
        fig.suptitle("Grid test split: relative residuals per Teff bin (blue 5000 K → red 9750 K), like Figs. 2-3")
        fig.tight_layout()
        files.append(_save(fig, Path(out) / "grid_residuals.png"))

        fig, axes = plt.subplots(1, 3, figsize=(11, 3))
        z = r / sigma
        from lamost2csst.core.grids import BANDS, band_pixels

        x = np.linspace(-4, 4, 200)
        for ax, (band, lo_hi) in zip(axes, BANDS.items()):
            zb = z[:, band_pixels(OUTPUT_WAVE, lo_hi)]
            zb = zb[np.isfinite(zb)]
            ax.hist(np.clip(zb, -4, 4), bins=80, density=True, color="0.6")
            ax.plot(x, np.exp(-x**2 / 2) / np.sqrt(2 * np.pi), "k-", lw=1)
            ax.set_title(f"{band}: |r/σ|<1 for {np.mean(np.abs(zb) < 1):.3f}")
            ax.set_xlabel("r / σ")
        fig.tight_layout()
        files.append(_save(fig, Path(out) / "grid_calibration.png"))
    if miles_arrays is not None:
        wave, r, teff = miles_arrays
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
        files.append(_save(fig, Path(out) / "miles_residuals.png"))
    return files


def run(args) -> dict:
    from lamost2csst.nn.inference import default_model_path, load_model, model_card

    t0 = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = Path(args.model) if args.model else default_model_path()
    model = load_model(path)
    card = model_card(path)
    if args.ensemble:
        model = [model, *(load_model(p) for p in args.ensemble)]
    grid_rows, grid_cat, miles, miles_arrays, sigmas, branch = [], None, None, None, None, None
    lamost_rows, lamost_sigmas = [], None
    if args.grid_test:
        ds, train_ds = _test_models(args, card)
        branch = branch_health(model[0] if isinstance(model, list) else model, ds, seed=args.seed)
        baseline = RidgeBaseline(train_ds, seed=args.seed) if args.ridge_baseline else None
        grid_rows, grid_cat, sigmas = grid_evaluation(
            model, ds, snrs=args.snrs, realisations=args.realisations, seed=args.seed, baseline=baseline)
        if args.lamost_path and "flux_lamost" in ds:
            lamost_rows, _, lamost_sigmas = grid_evaluation(
                model, ds, snrs=args.snrs, realisations=args.realisations, seed=args.seed, input_path="lamost")
    if args.miles:
        miles, miles_arrays = miles_evaluation(model, snr=args.miles_snr, threshold=args.miles_rmsae, seed=args.seed)
    text = _markdown(card, grid_rows, miles, args)
    if lamost_rows:
        text += _lamost_path_markdown(grid_rows, sigmas, lamost_rows, lamost_sigmas)
    if branch:
        text += (f"\n## Uncertainty branch (FC'16 on the input errors)\n\n"
                 f"Test models at SNR {branch['snr']:g}: {branch['active_units']} of {branch['units']} units active "
                 f"(positive output for some star), {branch['active_fraction']:.3f} of unit-star pairs; input errors "
                 f"x{branch['factor']:g} change σ by a median factor {branch['sigma_ratio_median']:.4f} "
                 f"(1 exactly: σ ignores the stated errors) and the SED by at most "
                 f"{branch['sed_max_relative_change']:.1e}.\n")
    if args.ensemble and sigmas:
        text += ("\n## Ensemble: aleatoric and epistemic σ (the tables above use the total)\n\n"
                 "Over all test stars; σ relative, medians over the band's pixels and the stars.\n\n"
                 "| SNR | band | in 1σ (total) | in 1σ (aleatoric only) | median σ aleatoric | median σ epistemic |\n"
                 "|---:|---|---:|---:|---:|---:|\n"
                 + "".join(f"| {r['snr']:g} | {r['band']} | {r['within1sigma']:.3f} | {r['within1sigma_aleatoric']:.3f} "
                           f"| {r['median_sigma_aleatoric']:.4f} | {r['median_sigma_epistemic']:.4f} |\n" for r in sigmas))
    if args.ensemble and miles:
        text += (f"\nMILES, ensemble: fraction |r|/σ<1 {miles['within1sigma']:.3f} with the total σ, "
                 f"{miles['within1sigma_aleatoric_only']:.3f} with the aleatoric σ only; median σ aleatoric "
                 f"{miles['median_sigma_aleatoric']:.4f}, epistemic {miles['median_sigma_epistemic']:.4f}\n")
    aleatoric_calibration = ({f"snr{r['snr']:g}_{r['band']}": r["within1sigma_aleatoric"] for r in sigmas}
                             if args.ensemble and sigmas else None)
    (out / "evaluation.md").write_text(text)
    figures = _figures(out, grid_cat, miles_arrays)
    result = {"model": str(path), "sha256": card.get("sha256"), "ensemble": args.ensemble, "grid": grid_rows,
              "grid_within1sigma_aleatoric_only": aleatoric_calibration, "grid_sigma_summary": sigmas,
              "error_branch": branch,
              "grid_lamost_path": lamost_rows or None, "grid_lamost_path_sigma_summary": lamost_sigmas,
              "lamost_path_resampling": _resampling_method() if lamost_rows else None,
              "miles": miles,
              "paper_grid": {f"{t}K_snr{s}": v for (t, s), v in PAPER_GRID.items()}, "paper_miles": PAPER_MILES,
              "figures": [str(f) for f in figures], "seconds": round(time.perf_counter() - t0, 1)}
    (out / "evaluation.json").write_text(json.dumps(result, indent=1) + "\n")
    print(text)
    return {"out": str(out), "grid_rows": len(grid_rows), "miles_stars": miles["n_used"] if miles else 0,
            "seconds": result["seconds"]}


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    summary = run(args)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
