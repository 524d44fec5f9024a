"""Evaluation rows from residuals with known statistics."""

import numpy as np
import pytest

from lamost2csst.core.evaluation import evaluation_rows, wavelength_errors
from lamost2csst.core.grids import OUTPUT_WAVE


def test_rows_per_snr_and_teff_bin_recover_the_injected_scatter():
    rng = np.random.default_rng(0)
    n = 2000
    teff = np.tile([6000.0, 8000.0], n // 2)
    snr = np.repeat([20.0, 40.0], n // 2)
    scale = np.where(snr == 20, 0.02, 0.01)[:, None]
    true = np.exp(rng.normal(0, 0.3, (1, OUTPUT_WAVE.size))) * np.ones((n, 1))
    pred = true * (1 + 0.003 + scale * rng.standard_normal(true.shape))
    sigma = np.broadcast_to(scale, true.shape)
    mask = np.zeros(true.shape, bool)
    mask[:, :10] = True
    rows = evaluation_rows(true, mask, pred, sigma, teff=teff, snr=snr, star_id=np.arange(n) % 10)
    assert [(r["snr"], r["teff_bin"]) for r in rows] == [(20, 6000), (20, 8000), (40, 6000), (40, 8000)]
    for row in rows:
        expected = 0.02 if row["snr"] == 20 else 0.01
        assert row["n_star"] == 500 and row["n_distinct"] == 5  # ids 0,2,4,6,8 are 6000 K
        for band in ("GU", "GV", "GI"):
            assert row[f"error_{band}"] == pytest.approx(expected, rel=0.08)
            assert row[f"offset_{band}"] == pytest.approx(0.003, abs=0.15 * expected)
            assert row[f"std_z_{band}"] == pytest.approx(1.0, rel=0.05)
            assert row[f"within1sigma_{band}"] == pytest.approx(0.683, abs=0.03)


def test_wavelength_errors_pick_the_nearest_pixel():
    r = np.zeros((5, OUTPUT_WAVE.size))
    j = int(np.argmin(np.abs(OUTPUT_WAVE - 4500)))
    r[:, j] = [0.1, -0.1, 0.1, -0.1, 0.0]
    out = wavelength_errors(r, at=(4500.0, 6000.0))
    assert out[0]["pixel_wave"] == OUTPUT_WAVE[j]
    assert out[0]["error"] == pytest.approx(np.std([0.1, -0.1, 0.1, -0.1, 0.0]))
    assert out[0]["offset"] == 0.0 and out[1]["error"] == 0.0


def test_mismatched_lengths_refused():
    x = np.ones((3, OUTPUT_WAVE.size))
    with pytest.raises(ValueError, match="teff"):
        evaluation_rows(x, np.zeros(x.shape, bool), x, x, teff=np.ones(3), snr=np.ones(2))
