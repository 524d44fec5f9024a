"""Evaluation tables of predicted SEDs (paper Sects. 4.2-4.3): per SNR x Teff bin x band.

Pure numpy on arrays: :mod:`lamost2csst.workflows.evaluation` feeds it predictions of any
model on any test set. Also the paper's own numbers that the evaluation tables quote.
"""

from __future__ import annotations

import numpy as np

from lamost2csst.core.grids import BANDS, OUTPUT_WAVE, band_pixels
from lamost2csst.core.metrics import band_statistics, calibration_statistics, relative_residual, teff_bin

__all__ = [
    "MILES_WAVELENGTHS",
    "PAPER_GRID",
    "PAPER_MILES",
    "epistemic_sigma",
    "evaluation_rows",
    "sigma_calibration",
    "sigma_summary",
    "wavelength_errors",
]

#: Wavelengths (A) at which Sect. 4.3 quotes the MILES verification errors.
MILES_WAVELENGTHS = (3600.0, 4500.0, 5000.0, 6000.0, 7000.0)
#: Sect. 4.2 / DESIGN.md: typical errors (GU, GV, GI) of the BOSZ test set per (Teff bin K, SNR).
PAPER_GRID = {
    (6000, 20): (0.0425, 0.0025, 0.0029),
    (6000, 40): (0.0207, 0.0013, 0.0015),
    (6000, 80): (0.0151, 0.0011, 0.0011),
    (8000, 20): (0.0117, 0.0016, 0.0024),
    (8000, 40): (0.0064, 0.0008, 0.0014),
    (8000, 80): (0.0052, 0.0007, 0.0012),
}
#: Sect. 4.3: MILES verification errors at :data:`MILES_WAVELENGTHS`.
PAPER_MILES = (0.070, 0.022, 0.013, 0.010, 0.022)


def evaluation_rows(
    sed_true,
    target_mask,
    sed_pred,
    sigma,
    *,
    teff,
    snr,
    star_id=None,
    wave=OUTPUT_WAVE,
    bands=None,
    min_stars: int = 2,
) -> list[dict]:
    """One row per (SNR, Teff bin): typical error, offset, and sigma calibration per band.

    Parameters
    ----------
    sed_true, sed_pred, sigma : array_like (n, m)
        True and predicted scaled SEDs and the predicted relative 1-sigma.
    target_mask : array_like of bool (n, m)
        Pixels without a true value.
    teff, snr : array_like (n,)
        Effective temperature and input SNR of every row.
    star_id : array_like (n,), optional
        Which star each row is (rows may be noise realisations of the same star): each row
        of the result then also counts its distinct stars (``n_distinct``).

    Returns
    -------
    list of dict
        Keys ``snr``, ``teff_bin``, ``n_star`` (rows), ``n_distinct`` (with ``star_id``) and per band
        ``error_B``, ``offset_B`` (DESIGN.md definitions), ``within1sigma_B`` (ideal 0.683) and
        ``std_z_B`` (ideal 1).
    """
    r = relative_residual(sed_pred, sed_true, mask=target_mask)
    sigma = np.asarray(sigma, dtype=np.float64)
    teff = np.asarray(teff, dtype=np.float64)
    snr = np.asarray(snr, dtype=np.float64)
    if snr.shape != teff.shape or snr.shape[0] != r.shape[0]:
        raise ValueError(f"teff {teff.shape} and snr {snr.shape} must both be (n_star={r.shape[0]},)")
    bands = BANDS if bands is None else bands
    rows = []
    for value in np.unique(snr):
        sel = snr == value
        stats = band_statistics(r[sel], wave=wave, teff=teff[sel], bands=bands, min_stars=min_stars)
        calib = calibration_statistics(r[sel], sigma[sel], wave=wave, teff=teff[sel], bands=bands)
        calib_rows = {row["teff_bin"]: row for row in calib.as_rows()}
        for row in stats.as_rows():
            extra = {}
            if star_id is not None:
                in_bin = sel & (teff_bin(teff) == row["teff_bin"])
                extra["n_distinct"] = int(np.unique(np.asarray(star_id)[in_bin]).size)
            calib_row = calib_rows[row["teff_bin"]]
            rows.append(
                {
                    "snr": float(value),
                    **row,
                    **extra,
                    **{k: v for k, v in calib_row.items() if k not in ("teff_bin", "n_star")},
                }
            )
    return rows


def wavelength_errors(residual, *, wave=OUTPUT_WAVE, at=MILES_WAVELENGTHS) -> list[dict]:
    """Error (std over stars) and offset (median) of relative residuals at the pixels nearest ``at``."""
    residual = np.asarray(residual, dtype=np.float64)
    wave = np.asarray(wave, dtype=np.float64)
    out = []
    for lam in at:
        j = int(np.argmin(np.abs(wave - lam)))
        col = residual[:, j]
        col = col[np.isfinite(col)]
        out.append(
            {
                "wave": float(lam),
                "pixel_wave": float(wave[j]),
                "n_star": int(col.size),
                "error": float(np.std(col)) if col.size > 1 else float("nan"),
                "offset": float(np.median(col)) if col.size else float("nan"),
            }
        )
    return out


def epistemic_sigma(total, aleatoric) -> np.ndarray:
    """Epistemic part ``sqrt(total**2 - aleatoric**2)`` of a total relative sigma, 0 where total <= aleatoric.

    For a single model total and aleatoric sigma are the same and the epistemic part is zero.
    """
    total = np.asarray(total)
    aleatoric = np.asarray(aleatoric)
    return np.sqrt(np.maximum(total.astype(float) ** 2 - aleatoric.astype(float) ** 2, 0.0))


def sigma_summary(
    sed_true, target_mask, sed_pred, sigma, *, aleatoric, snr, wave=OUTPUT_WAVE, bands=None
) -> list[dict]:
    """Per SNR and band over all stars: how the total and the aleatoric sigma describe the residuals.

    Parameters
    ----------
    sed_true, sed_pred : array_like (n, m)
        True and predicted scaled SEDs.
    target_mask : array_like of bool (n, m)
        Pixels without a true value (left out).
    sigma, aleatoric : array_like (n, m)
        Total and aleatoric predicted relative 1-sigma (the same for a single model).
    snr : array_like (n,)
        Input SNR of every row.

    Returns
    -------
    list of dict
        One row per (SNR, band): ``snr``, ``band``, ``within1sigma`` (fraction of ``|r|/sigma < 1``,
        ideal 0.683), ``within1sigma_aleatoric`` (the same with the aleatoric sigma) and the medians
        ``median_sigma_aleatoric`` and ``median_sigma_epistemic`` (:func:`epistemic_sigma`).
    """
    r = relative_residual(sed_pred, sed_true, mask=target_mask)
    sigma = np.asarray(sigma)
    aleatoric = np.asarray(aleatoric)
    snr = np.asarray(snr)
    epistemic = epistemic_sigma(sigma, aleatoric)
    rows = []
    for value in np.unique(snr):
        for band, lo_hi in (BANDS if bands is None else bands).items():
            sel = band_pixels(wave, lo_hi)
            rb = r[snr == value][:, sel]
            good = np.isfinite(rb)
            sb, ab, eb = (a[snr == value][:, sel][good] for a in (sigma, aleatoric, epistemic))
            rows.append(
                {
                    "snr": float(value),
                    "band": band,
                    "within1sigma": float(np.mean(np.abs(rb[good] / sb) < 1)),
                    "within1sigma_aleatoric": float(np.mean(np.abs(rb[good] / ab) < 1)),
                    "median_sigma_aleatoric": float(np.median(ab)),
                    "median_sigma_epistemic": float(np.median(eb)),
                }
            )
    return rows


def sigma_calibration(residual, *, sigma, aleatoric) -> dict:
    """Calibration of the total and the aleatoric sigma over all stars and pixels (the MILES check).

    Parameters
    ----------
    residual : array_like (n, m)
        Relative residuals, NaN where excluded.
    sigma, aleatoric : array_like (n, m)
        Total and aleatoric predicted relative 1-sigma.

    Returns
    -------
    dict
        ``within1sigma`` (fraction of finite ``z = r/sigma`` with ``|z| < 1``; NaN without any),
        ``std_z``, ``within1sigma_aleatoric_only`` (with the aleatoric sigma) and the medians
        ``median_sigma_aleatoric`` and ``median_sigma_epistemic`` over the finite residuals.
    """
    r = np.asarray(residual)
    sigma = np.asarray(sigma)
    aleatoric = np.asarray(aleatoric)
    z = r / sigma
    within = float("nan")
    if np.isfinite(z).any():
        within = float(np.nanmean(np.abs(z) < 1) / np.mean(np.isfinite(z)))
    return {
        "within1sigma": within,
        "std_z": float(np.nanstd(z)),
        "within1sigma_aleatoric_only": float(np.mean(np.abs(r / aleatoric)[np.isfinite(r)] < 1)),
        "median_sigma_aleatoric": float(np.median(aleatoric[np.isfinite(r)])),
        "median_sigma_epistemic": float(np.median(epistemic_sigma(sigma, aleatoric)[np.isfinite(r)])),
    }
