"""Evaluation tables of predicted SEDs (paper Sects. 4.2-4.3): per SNR x Teff bin x band.

Pure numpy on arrays: the evaluation job feeds it predictions of any model on any test set.
"""

from __future__ import annotations

import numpy as np

from lamost2csst.core.grids import BANDS, OUTPUT_WAVE
from lamost2csst.core.metrics import band_statistics, calibration_statistics, relative_residual, teff_bin

__all__ = ["MILES_WAVELENGTHS", "evaluation_rows", "wavelength_errors"]

#: Wavelengths (A) at which Sect. 4.3 quotes the MILES verification errors.
MILES_WAVELENGTHS = (3600.0, 4500.0, 5000.0, 6000.0, 7000.0)


def evaluation_rows(sed_true, target_mask, sed_pred, sigma, *, teff, snr, star_id=None, wave=OUTPUT_WAVE,
                    bands=None, min_stars: int = 2) -> list[dict]:
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
        Keys ``snr``, ``teff_bin``, ``n_star`` (rows), ``n_distinct`` (with ``star_id``) and per band ``error_B``, ``offset_B``
        (DESIGN.md definitions), ``within1sigma_B`` (ideal 0.683) and ``std_z_B`` (ideal 1).
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
            rows.append({"snr": float(value), **row, **extra,
                         **{k: v for k, v in calib_rows[row["teff_bin"]].items() if k not in ("teff_bin", "n_star")}})
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
        out.append({"wave": float(lam), "pixel_wave": float(wave[j]), "n_star": int(col.size),
                    "error": float(np.std(col)) if col.size > 1 else float("nan"),
                    "offset": float(np.median(col)) if col.size else float("nan")})
    return out
