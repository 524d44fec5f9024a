"""One-off check (2026-12-08): can one sigma_sys cover both MILES (out-of-fold) and STELIB (never seen)?

Run from the repository root after `python -m jobs.train_model real --run-dir runs/cv-branch
--domain-input --threads 2`: prints the coverage (fraction |r|/sigma < 1 per band) of
(1) the run's sigma_sys on MILES (nested) and on STELIB; (2) with a library-to-library term
b_lib(lambda) added in quadrature, fitted per 8-pixel bin as the conformal floor that brings
STELIB's residuals to 68.27 % (nested over 5 folds of STELIB stars for STELIB itself), on both.
"""

import numpy as np

from lamost2csst.core.discrepancy import coverage, cross_fitted_sigma, fit_discrepancy
from lamost2csst.core.grids import OUTPUT_WAVE
from lamost2csst.workflows.realstars import discrepancy_settings, predict_real_stars, star_folds, stelib_stars

RUN = "runs/cv-branch"


def library_floor(residual, sigma, *, bins=8, target=0.6827):
    """Per bin of ``bins`` pixels: the smallest b with a fraction ``target`` of |r| < hypot(sigma, b)."""
    grid = np.linspace(0.0, 0.3, 601)
    floor = np.zeros(residual.shape[1])
    for lo in range(0, residual.shape[1], bins):
        r, s = residual[:, lo : lo + bins].ravel(), sigma[:, lo : lo + bins].ravel()
        ok = np.isfinite(r) & np.isfinite(s)
        if ok.sum() >= 50:
            covered = [np.mean(np.abs(r[ok]) < np.hypot(s[ok], b)) for b in grid]
            floor[lo : lo + bins] = grid[min(np.searchsorted(covered, target), grid.size - 1)]
    return floor


def bands(cov):
    return {band: round(v["within1sigma"], 3) for band, v in cov.items()}


oof = np.load(f"{RUN}/oof.npz")
r, s, sed, fold = oof["residual"], oof["sigma_net"], oof["sed"], oof["fold"]
options = discrepancy_settings(len(r))
nested = cross_fitted_sigma(r, sigma_net=s, fold=fold, sed=sed, **options)
within = fit_discrepancy(r, sigma_net=s, sed=sed, provenance={}, **options)
stelib = stelib_stars()
p = predict_real_stars(f"{RUN}/final/best.keras", stelib.library, snr=100.0, seed=2024)
stelib_total = within.sigma_parts(p.sigma_net, sed=p.sed)[0]
print(
    "sigma_sys (MILES): MILES nested",
    bands(coverage(r, sigma=nested)),
    "STELIB",
    bands(coverage(p.residual, sigma=stelib_total)),
)
folds = star_folds(len(stelib.library), n_folds=5, seed=2024)
stelib_nested = np.full_like(p.residual, np.nan)
for k in range(5):
    b = library_floor(p.residual[folds != k], stelib_total[folds != k])
    stelib_nested[folds == k] = np.hypot(stelib_total[folds == k], b[None, :])
b_lib = library_floor(p.residual, stelib_total)
print(
    "with b_lib: MILES nested",
    bands(coverage(r, sigma=np.hypot(nested, b_lib[None, :]))),
    "STELIB nested",
    bands(coverage(p.residual, sigma=stelib_nested)),
)
print(
    "b_lib at 4500/6000/7000/8000/9000 A:",
    [round(float(b_lib[np.argmin(abs(OUTPUT_WAVE - w))]), 4) for w in (4500, 6000, 7000, 8000, 9000)],
)
