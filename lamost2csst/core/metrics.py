"""Accuracy metrics of predicted SEDs (paper Eqs. 2-3, Sect. 4.2 statistics).

* relative residual ``r = (F_pred - F_true) / F_true`` (Eq. 2);
* RMSAE of a spectrum ``sqrt(mean(r**2))`` over its pixels (Eq. 3);
* per Teff bin and band: the "typical error" is, per pixel, the standard deviation of
  ``r`` over the stars of the bin, then the median over the band's pixels; the "offset"
  is the same with the median instead of the standard deviation. Teff bins are 250 K
  wide and centred on multiples of 250 K: the 6000 K bin is [5875, 6125) K.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lamost2csst.core._validate import as_float_array
from lamost2csst.core.flags import Flag
from lamost2csst.core.grids import BANDS, OUTPUT_WAVE, band_pixels

__all__ = [
    "SNR_BINS",
    "BandStatistics",
    "CalibrationStatistics",
    "band_statistics",
    "calibration_statistics",
    "relative_residual",
    "rmsae",
    "teff_bin",
    "truth_statistics",
    "truth_table",
]

TEFF_BIN_WIDTH = 250.0


def relative_residual(predicted, true, *, mask=None) -> np.ndarray:
    """``(predicted - true) / true`` (Eq. 2); NaN where ``mask`` is True.

    Unmasked ``true`` values must be finite and positive (SED fluxes): anything else is
    refused rather than turned into inf.
    """
    predicted = as_float_array(predicted, name="predicted")
    true = as_float_array(true, name="true")
    if predicted.shape != true.shape:
        raise ValueError(f"predicted {predicted.shape} and true {true.shape} must have the same shape")
    use = np.ones(true.shape, bool) if mask is None else ~np.asarray(mask, dtype=bool)
    if np.any(use & ~(np.isfinite(true) & (true > 0))):
        raise ValueError("true SED has non-positive or non-finite values on unmasked pixels; mask them")
    if np.any(use & ~np.isfinite(predicted)):
        raise ValueError("predicted SED has NaN/inf on unmasked pixels; mask them")
    safe_true = np.where(use, true, 1.0)
    return np.where(use, (predicted - true) / safe_true, np.nan)


def rmsae(residual, *, axis: int = -1) -> np.ndarray:
    """Root mean square of relative residuals over the pixels of each spectrum (Eq. 3), NaN ignored."""
    residual = np.asarray(residual)
    n = np.sum(np.isfinite(residual), axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.sqrt(np.nansum(residual**2, axis=axis) / n)


def teff_bin(teff) -> np.ndarray:
    """Centre of the 250 K Teff bin holding each ``teff`` (6000 K bin = [5875, 6125) K)."""
    teff = np.asarray(teff, dtype=np.float64)
    return TEFF_BIN_WIDTH * np.floor(teff / TEFF_BIN_WIDTH + 0.5)


@dataclass(frozen=True)
class BandStatistics:
    """Typical error and offset per Teff bin (rows) and band (columns)."""

    teff_bin: np.ndarray  # (n_bin,) K
    bands: tuple[str, ...]
    typical_error: np.ndarray  # (n_bin, n_band)
    offset: np.ndarray  # (n_bin, n_band)
    n_star: np.ndarray  # (n_bin,)

    def as_rows(self) -> list[dict]:
        """One dict per Teff bin, convenient for tables and JSON."""
        rows = []
        for i, t in enumerate(self.teff_bin):
            row = {"teff_bin": float(t), "n_star": int(self.n_star[i])}
            for j, band in enumerate(self.bands):
                row[f"error_{band}"] = float(self.typical_error[i, j])
                row[f"offset_{band}"] = float(self.offset[i, j])
            rows.append(row)
        return rows


def band_statistics(residual, *, wave, teff, bands=None, min_stars: int = 2) -> BandStatistics:
    """Typical error and offset of relative residuals per Teff bin and band.

    Parameters
    ----------
    residual : array_like, (n_star, n_pixel)
        Relative residuals (NaN = excluded pixel), e.g. of one SNR.
    wave : array_like, (n_pixel,)
        Wavelengths of the pixels (vacuum A).
    teff : array_like, (n_star,)
        Effective temperatures (K).
    bands : dict, optional
        Band name -> (lo, hi) A; default the CSST bands GU, GV, GI.
    min_stars : int
        Bins with fewer stars are left out (a standard deviation needs at least 2).
    """
    residual = as_float_array(residual, name="residual")
    wave = np.asarray(wave, dtype=np.float64)
    teff = np.asarray(teff, dtype=np.float64)
    if residual.ndim != 2 or residual.shape[1] != wave.size or residual.shape[0] != teff.size:
        raise ValueError(
            f"residual {residual.shape} must be (n_star={teff.size}, n_pixel={wave.size}) "
            "to match teff and wave"
        )
    bands = BANDS if bands is None else bands
    selections = [band_pixels(wave, lo_hi) for lo_hi in bands.values()]
    bins = teff_bin(teff)
    centres, counts = np.unique(bins[np.isfinite(bins)], return_counts=True)
    keep = counts >= min_stars
    centres, counts = centres[keep], counts[keep]
    error = np.full((centres.size, len(bands)), np.nan)
    offset = np.full_like(error, np.nan)
    for i, centre in enumerate(centres):  # a loop over Teff bins (tens), not over stars
        r = residual[bins == centre]
        with np.errstate(invalid="ignore"), _quiet_all_nan():
            std = np.nanstd(r, axis=0)
            med = np.nanmedian(r, axis=0)
            for j, sel in enumerate(selections):
                error[i, j] = np.nanmedian(std[sel])
                offset[i, j] = np.nanmedian(med[sel])
    return BandStatistics(centres, tuple(bands), error, offset, counts)


class _quiet_all_nan:
    """Silence numpy's 'All-NaN slice' warnings: all-NaN columns correctly give NaN."""

    def __enter__(self):
        import warnings

        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.filterwarnings("ignore", message="All-NaN slice", category=RuntimeWarning)
        warnings.filterwarnings("ignore", message="Degrees of freedom", category=RuntimeWarning)
        warnings.filterwarnings("ignore", message="Mean of empty slice", category=RuntimeWarning)

    def __exit__(self, *exc):
        return self._ctx.__exit__(*exc)


@dataclass(frozen=True)
class CalibrationStatistics:
    """How well a predicted relative sigma describes the residuals, per Teff bin and band.

    ``within_1sigma``: fraction of pixels with ``|r| / sigma < 1`` (0.683 for a calibrated
    Gaussian sigma); ``std_z``: standard deviation of ``r / sigma`` (1 when calibrated).
    """

    teff_bin: np.ndarray
    bands: tuple[str, ...]
    within_1sigma: np.ndarray  # (n_bin, n_band)
    std_z: np.ndarray  # (n_bin, n_band)
    n_star: np.ndarray

    def as_rows(self) -> list[dict]:
        rows = []
        for i, t in enumerate(self.teff_bin):
            row = {"teff_bin": float(t), "n_star": int(self.n_star[i])}
            for j, band in enumerate(self.bands):
                row[f"within1sigma_{band}"] = float(self.within_1sigma[i, j])
                row[f"std_z_{band}"] = float(self.std_z[i, j])
            rows.append(row)
        return rows


def calibration_statistics(residual, sigma, *, wave, teff=None, bands=None) -> CalibrationStatistics:
    """Calibration of a relative sigma against relative residuals, per Teff bin and band.

    Parameters
    ----------
    residual, sigma : array_like, (n_star, n_pixel)
        Relative residuals (NaN = excluded pixel) and predicted relative 1-sigma (> 0).
    wave : array_like, (n_pixel,)
    teff : array_like (n_star,), optional
        Without it all stars form one bin (``teff_bin`` NaN).
    """
    residual = as_float_array(residual, name="residual")
    sigma = as_float_array(sigma, name="sigma")
    wave = np.asarray(wave, dtype=np.float64)
    if residual.shape != sigma.shape or residual.ndim != 2 or residual.shape[1] != wave.size:
        raise ValueError(
            f"residual {residual.shape} and sigma {sigma.shape} must both be (n_star, {wave.size})"
        )
    use = np.isfinite(residual)
    if np.any(use & ~(sigma > 0)):
        raise ValueError("sigma must be > 0 wherever the residual is defined")
    z = np.where(use, residual / np.where(use, sigma, 1.0), np.nan)
    bands = BANDS if bands is None else bands
    selections = [band_pixels(wave, lo_hi) for lo_hi in bands.values()]
    if teff is None:
        bins = np.zeros(residual.shape[0])
        centres, counts = np.array([np.nan]), np.array([residual.shape[0]])
        groups = [np.ones(residual.shape[0], bool)]
    else:
        bins = teff_bin(teff)
        centres, counts = np.unique(bins[np.isfinite(bins)], return_counts=True)
        groups = [bins == c for c in centres]
    within = np.full((centres.size, len(bands)), np.nan)
    std_z = np.full_like(within, np.nan)
    for i, rows in enumerate(groups):
        for j, sel in enumerate(selections):
            zb = z[rows][:, sel]
            zb = zb[np.isfinite(zb)]
            if zb.size:
                within[i, j] = np.mean(np.abs(zb) < 1)
                std_z[i, j] = np.std(zb)
    return CalibrationStatistics(centres, tuple(bands), within, std_z, counts)


# ---------------------------------------------------------------- truth statistics of a catalogue job

#: S/N bins (edges) of the truth statistics; the last group holds predicted but flagged stars.
SNR_BINS = (0.0, 10.0, 20.0, 40.0, 80.0, np.inf)
SNR_LABELS = ("<10", "10-20", "20-40", "40-80", ">=80")
#: The sufficient statistics of :func:`truth_statistics`, in the order they are stored.
TRUTH_FIELDS = ("n", "sum", "sumsq", "within")


def truth_statistics(sed, sigma, flags, sed_true, snr=None) -> dict[str, np.ndarray]:
    """Sufficient statistics of the relative residual ``sed / sed_true - 1`` per S/N group.

    Groups 0..4 are the stars with ``flags == 0`` in the :data:`SNR_BINS` (by ``snr``; all
    in one bin by S/N when ``snr`` is None, see below), group 5 the predicted but flagged
    stars. Returns arrays (6, n_wave) ``n``, ``sum``, ``sumsq`` and ``within`` (count of
    ``|r| < sigma``), which add up over chunks.
    """
    n_group = len(SNR_BINS)  # 5 S/N bins + the flagged group
    with np.errstate(divide="ignore", invalid="ignore"):
        r = sed.astype(np.float64) / sed_true - 1.0
    if snr is None:
        snr = np.full(sed.shape[0], np.nan)
    group = np.clip(np.digitize(np.nan_to_num(np.asarray(snr, np.float64), nan=0.0), SNR_BINS[1:-1]), 0, 4)
    group = np.where(flags == 0, group, n_group - 1)
    predicted = (flags & Flag.NO_DATA) == 0
    good = np.isfinite(r) & predicted[:, None]
    r = np.where(good, r, 0.0)
    within = good & (np.abs(r) < sigma)
    stats = {name: np.zeros((n_group, sed.shape[1])) for name in TRUTH_FIELDS}
    for g in np.unique(group[predicted]):
        rows = predicted & (group == g)
        stats["n"][g] = good[rows].sum(axis=0)
        stats["sum"][g] = r[rows].sum(axis=0)
        stats["sumsq"][g] = (r[rows] ** 2).sum(axis=0)
        stats["within"][g] = within[rows].sum(axis=0)
    return stats


def truth_table(stats: dict[str, np.ndarray], *, wave=OUTPUT_WAVE) -> list[dict]:
    """Rows of typical error per band from summed :func:`truth_statistics`.

    Typical error of a band = median over its pixels of the standard deviation over stars
    of the relative residual (the paper's statistic, without Teff bins); ``offset`` the
    median of the mean residual; ``within_1sigma`` the median fraction with ``|r| < sigma``.
    """
    groups = [(label, [i]) for i, label in enumerate(SNR_LABELS)]
    groups += [("all ok", list(range(5))), ("all predicted", list(range(6)))]
    rows = []
    for label, members in groups:
        n = stats["n"][members].sum(axis=0)
        if n.max(initial=0) < 2:
            continue
        with np.errstate(divide="ignore", invalid="ignore"):
            mean = stats["sum"][members].sum(axis=0) / n
            std = np.sqrt(np.maximum(stats["sumsq"][members].sum(axis=0) / n - mean**2, 0.0) * n / (n - 1))
            within = stats["within"][members].sum(axis=0) / n
        row = {"snr": label, "n_star": int(n.max())}
        for band, lo_hi in BANDS.items():
            sel = band_pixels(wave, lo_hi)
            row[f"error_{band}"] = round(float(np.nanmedian(std[sel])), 5)
            row[f"offset_{band}"] = round(float(np.nanmedian(mean[sel])), 5)
            row[f"within_1sigma_{band}"] = round(float(np.nanmedian(within[sel])), 3)
        rows.append(row)
    return rows
