"""How well the domain check works: Teff estimates and ``OUTSIDE_DOMAIN`` rates on synthetic and real stars.

:func:`domain_evaluation` runs :func:`lamost2csst.check_domain`'s kernel
(:func:`lamost2csst.core.domain.estimate_domain` with the model's templates) on

* the grid's TEST split (models the network and the templates never saw), observed through
  the survey job's input path (:func:`lamost2csst.core.simulate.observe_spectra` on
  LAMOST_WAVE at a disc + halo radial velocity with Eq. 1 noise per LAMOST pixel, then
  :func:`lamost2csst.core.prepare_inputs` and the colour of the observed spectrum): the Teff
  estimate's bias and scatter per S/N, and the fraction flagged in the domain (5000-9750 K)
  and at its edge models (4750 and 10000 K, reported apart);
* the out-of-domain synthetic TEST set (:func:`lamost2csst.io.domain.load_domain_test_set`),
  the same way: the fraction flagged per Teff (must-show: >= 95 % at <= 4500 K and >= 11000 K);
* MILES (real stars of every Teff, catalogue Teff from the library; the input as in the
  paper's verification: R = 2000 on INPUT_WAVE with Eq. 1 noise), as a check on real spectra
  that the thresholds were NOT chosen on: the fraction flagged per catalogue Teff range.

:func:`domain_markdown` writes the tables of EVALUATION.md's "Domain check".
"""

from __future__ import annotations

import time

import numpy as np

from lamost2csst.core import INPUT_WAVE, LAMOST_WAVE, prepare_inputs
from lamost2csst.core.domain import check_spectra, domain_outside, spectrum_color
from lamost2csst.core.flags import FlagThresholds
from lamost2csst.core.simulate import C_KMS, draw_radial_velocities, observe_spectra

__all__ = ["MILES_TEFF_RANGES", "domain_evaluation", "domain_markdown"]

#: Catalogue-Teff ranges (K) of the MILES table: outside / grey zone / domain / grey zone / outside.
MILES_TEFF_RANGES = ((0, 4500), (4500, 5000), (5000, 9750), (9750, 11000), (11000, np.inf))


def _observed(ds, *, snr: float, realisations: int, seed: int):
    """Each model of ``ds`` observed ``realisations`` times at ``snr``: inputs (job's path), colours, Teff."""
    clean = np.repeat(ds["flux_lamost"].values, realisations, axis=0)
    teff = np.repeat(ds["teff"].values.astype(np.float64), realisations)
    n = clean.shape[0]
    rng = np.random.default_rng([seed, int(round(snr * 10))])
    z = draw_radial_velocities(n, rng) / C_KMS
    flux, ivar, mask = observe_spectra(
        clean, wave=LAMOST_WAVE, z=z, snr=np.full(n, snr), scale=np.ones(n), rng=rng
    )
    net = prepare_inputs(LAMOST_WAVE, flux, ivar=ivar, z=z, mask=mask)
    return net, spectrum_color(LAMOST_WAVE, flux, mask=mask, z=z), teff


def _teff_stats(estimate, true) -> dict:
    d = np.log(estimate / true)
    d = d[np.isfinite(d)]
    med = float(np.median(d))
    return {
        "bias": med,
        "scatter": float(1.4826 * np.median(np.abs(d - med))),
        "rms": float(np.sqrt(np.mean(d**2))),
    }


def _grid_test(templates, test_ds, *, snrs, realisations, seed, thresholds, raw: dict) -> dict:
    rows = {}
    for snr in snrs:
        net, color, teff = _observed(test_ds, snr=snr, realisations=realisations, seed=seed)
        est, outside = check_spectra(
            net.flux, net.error, mask=net.mask, color=color, templates=templates, thresholds=thresholds
        )
        domain = (teff >= 5000) & (teff <= 9750)
        raw[("domain", snr)] = (est.teff[domain], est.chi2[domain])
        pull = (est.teff - teff) / est.teff_error
        row = {
            "n_domain": int(domain.sum()),
            "flagged_domain": float(outside[domain].mean()),
            "teff_domain": _teff_stats(est.teff[domain], teff[domain]),
            "within_1sigma_domain": float(np.mean(np.abs(pull[domain]) < 1)),
            "chi2_domain_p50_p99": [float(np.percentile(est.chi2[domain], q)) for q in (50, 99)],
        }
        for edge in (4750.0, 10000.0):
            at = teff == edge
            if at.any():
                row[f"flagged_{edge:.0f}"] = float(outside[at].mean())
                row[f"n_{edge:.0f}"] = int(at.sum())
        rows[f"{snr:g}"] = row
    return rows


def _outside_test(templates, test_ds, *, snrs, realisations, seed, thresholds, raw: dict) -> dict:
    rows = {}
    for snr in snrs:
        net, color, teff = _observed(test_ds, snr=snr, realisations=realisations, seed=seed + 1)
        est, outside = check_spectra(
            net.flux, net.error, mask=net.mask, color=color, templates=templates, thresholds=thresholds
        )
        per_teff = {}
        for t in np.unique(teff):
            at = teff == t
            per_teff[f"{t:.0f}"] = {
                "n": int(at.sum()),
                "flagged": float(outside[at].mean()),
                "teff_median": float(np.median(est.teff[at])),
                "chi2_median": float(np.median(est.chi2[at])),
            }
        must = (teff <= 4500) | (teff >= 11000)
        raw[("outside", snr)] = (est.teff[must], est.chi2[must])
        rows[f"{snr:g}"] = {
            "n_must": int(must.sum()),
            "flagged_must": float(outside[must].mean()),
            "per_teff": per_teff,
        }
    return rows


#: Candidate ``domain_teff_range`` bounds of the threshold scan (K).
SCAN_LOW = (4750.0, 4875.0, 4950.0)
SCAN_HIGH = (9800.0, 9875.0, 10000.0, 10125.0, 10250.0)


def _scan(raw: dict, *, max_chi2: float) -> list[dict]:
    """Flag rates of each candidate range: in-domain (worst, S/N >= 20), must-flag (worst at S/N 20, 50)."""
    rows = []
    for lo in SCAN_LOW:
        for hi in SCAN_HIGH:
            rate = {}
            for (kind, snr), (teff, chi2) in raw.items():
                rate[kind, snr] = float(
                    domain_outside(teff, chi2, teff_range=(lo, hi), max_chi2=max_chi2).mean()
                )
            inside = [v for (k, snr), v in rate.items() if k == "domain" and snr >= 20]
            outside = [v for (k, snr), v in rate.items() if k == "outside" and snr in (20.0, 50.0)]
            rows.append(
                {
                    "low": lo,
                    "high": hi,
                    "flagged_domain_worst": max(inside, default=None),
                    "flagged_outside_worst": min(outside, default=None),
                }
            )
    return rows


def _miles(templates, *, snrs, seed, thresholds) -> dict:
    from lamost2csst.core.noise import add_noise
    from lamost2csst.core.normalization import normalize
    from lamost2csst.io.readers.mangadap import read_mangadap_miles
    from lamost2csst.io.training import gridded_library, usable_library

    ds, info = usable_library(read_mangadap_miles())
    g = gridded_library(ds)
    teff = ds["teff"].values.astype(np.float64)
    rows = {"stars": int(teff.size), "skipped": info.get("skipped", {})}
    for snr in snrs:
        rng = np.random.default_rng([seed, int(round(snr * 10)), 7])
        noisy, error = add_noise(g.flux_in, snr=np.full(teff.size, snr), rng=rng)
        flux, err = normalize(noisy, error)
        color = spectrum_color(INPUT_WAVE, noisy)
        est, outside = check_spectra(flux, err, color=color, templates=templates, thresholds=thresholds)
        table = {}
        for lo, hi in MILES_TEFF_RANGES:
            at = (teff >= lo) & (teff < hi)
            by_chi2 = est.chi2[at] > thresholds.max_domain_chi2
            table[f"{lo:g}-{hi:g}"] = {
                "n": int(at.sum()),
                "flagged": float(outside[at].mean()) if at.any() else None,
                "flagged_by_chi2": float(by_chi2.mean()) if at.any() else None,
            }
        domain = (teff >= 5000) & (teff < 9750)
        table["teff_domain"] = _teff_stats(est.teff[domain], teff[domain])
        rows[f"{snr:g}"] = table
    return rows


def domain_evaluation(
    *,
    model_path=None,
    snrs=(10.0, 20.0, 50.0, 100.0),
    realisations: int = 2,
    outside_realisations: int = 10,
    seed: int = 2024,
    thresholds: FlagThresholds | None = None,
    miles: bool = True,
) -> dict:
    """The domain check measured on the grid test split, the out-of-domain test set and MILES.

    Parameters
    ----------
    model_path : path, optional
        The model whose templates (its card's training split + the reference set) are used;
        default the shipped model.
    snrs : sequence of float
        S/N per LAMOST pixel (grid sets) or per INPUT_WAVE pixel (MILES).
    realisations, outside_realisations : int
        Noise draws per model of the grid test split / of the out-of-domain test set.
    seed : int
    thresholds : FlagThresholds, optional
        Default: the job's.
    miles : bool
        Also the MILES table (needs sdss-mangadap's MILES files).

    Returns
    -------
    dict
        ``grid_test``, ``outside_test`` and ``miles`` tables per S/N, ``thresholds``,
        ``templates`` (provenance) and ``seconds``.
    """
    from lamost2csst.io.domain import load_domain_test_set
    from lamost2csst.nn.inference import default_model_path, model_card
    from lamost2csst.parallel.predict_tasks import domain_templates_for
    from lamost2csst.workflows.evaluation import split_models

    t0 = time.perf_counter()
    thresholds = thresholds or FlagThresholds()
    path = str(default_model_path() if model_path is None else model_path)
    templates = domain_templates_for(path)
    test_ds, _ = split_models(model_card(path))
    raw = {}
    common = {"snrs": snrs, "seed": seed, "thresholds": thresholds, "raw": raw}
    result = {
        "model": path,
        "thresholds": thresholds.as_dict(),
        "templates": templates.provenance,
        "grid_test": _grid_test(templates, test_ds, realisations=realisations, **common),
        "outside_test": _outside_test(
            templates, load_domain_test_set(), realisations=outside_realisations, **common
        ),
    }
    result["scan"] = _scan(raw, max_chi2=thresholds.max_domain_chi2)
    if miles:
        result["miles"] = _miles(templates, snrs=snrs, seed=seed, thresholds=thresholds)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    return result


def _pct(x) -> str:
    return "–" if x is None else f"{100 * x:.1f} %"


def domain_markdown(result: dict) -> str:
    """The Markdown tables of a :func:`domain_evaluation` result."""
    th = result["thresholds"]
    lines = [
        "## Domain check (OUTSIDE_DOMAIN from the spectrum)",
        "",
        f"Thresholds: Teff estimate outside {th['domain_teff_range'][0]:g}-{th['domain_teff_range'][1]:g} K "
        f"or best-template reduced chi-square > {th['max_domain_chi2']:g}; error floor "
        f"{th['domain_error_floor']:g} per bin. Templates: {result['templates']}.",
        "",
        "Grid test split through the job's input path (ln Teff_est/Teff: median bias, robust scatter, rms):",
        "",
        "| S/N | in-domain stars | flagged | Teff bias | scatter | rms | abs pull < 1 | flagged 4750 K "
        "| flagged 10000 K |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for snr, row in result["grid_test"].items():
        t = row["teff_domain"]
        lines.append(
            f"| {snr} | {row['n_domain']} | {_pct(row['flagged_domain'])} | {t['bias']:+.4f} | "
            f"{t['scatter']:.4f} | {t['rms']:.4f} | {row['within_1sigma_domain']:.2f} | "
            f"{_pct(row.get('flagged_4750'))} | {_pct(row.get('flagged_10000'))} |"
        )
    snrs = list(result["outside_test"])
    teffs = list(result["outside_test"][snrs[0]]["per_teff"])
    lines += [
        "",
        "Out-of-domain synthetic test set (flagged fraction; median Teff estimate):",
        "",
        "| Teff (K) | " + " | ".join(f"S/N {s}" for s in snrs) + " |",
        "|---:|" + "---:|" * len(snrs),
    ]
    for t in teffs:
        cells = []
        for s in snrs:
            c = result["outside_test"][s]["per_teff"][t]
            cells.append(f"{_pct(c['flagged'])} ({c['teff_median']:.0f} K)")
        lines.append(f"| {t} | " + " | ".join(cells) + " |")
    lines.append(
        "| **<= 4500 or >= 11000** | "
        + " | ".join(f"**{_pct(result['outside_test'][s]['flagged_must'])}**" for s in snrs)
        + " |"
    )
    lines += [
        "",
        "Threshold scan (domain_teff_range candidates; in-domain: worst flagged fraction over S/N >= 20; "
        "must-flag (<= 4500 K or >= 11000 K): worst over S/N 20 and 50):",
        "",
        "| low (K) | high (K) | in-domain flagged | must-flag flagged |",
        "|---:|---:|---:|---:|",
    ]
    for row in result["scan"]:
        lines.append(
            f"| {row['low']:g} | {row['high']:g} | {_pct(row['flagged_domain_worst'])} | "
            f"{_pct(row['flagged_outside_worst'])} |"
        )
    if "miles" in result:
        miles = result["miles"]
        snrs = [s for s in miles if s not in ("stars", "skipped")]
        ranges = [r for r in miles[snrs[0]] if r != "teff_domain"]
        lines += [
            "",
            f"MILES, real stars ({miles['stars']} usable; catalogue Teff; NOT used to choose the "
            "thresholds): "
            "flagged fraction per catalogue Teff range (in brackets: by the chi-square criterion)",
            "",
            "| Teff (K) | stars | " + " | ".join(f"S/N {s}" for s in snrs) + " |",
            "|---|---:|" + "---:|" * len(snrs),
        ]
        for r in ranges:
            n = miles[snrs[0]][r]["n"]
            cells = (
                f"{_pct(miles[s][r]['flagged'])} ({_pct(miles[s][r].get('flagged_by_chi2'))})" for s in snrs
            )
            lines.append(f"| {r} | {n} | " + " | ".join(cells) + " |")
        lines.append(
            "| Teff bias / scatter (5000-9750 K) | | "
            + " | ".join(
                f"{miles[s]['teff_domain']['bias']:+.3f} / {miles[s]['teff_domain']['scatter']:.3f}"
                for s in snrs
            )
            + " |"
        )
    return "\n".join(lines) + "\n"
