"""Evaluation rows from residuals with known statistics."""

import numpy as np
import pytest

from lamost2csst.core.evaluation import (
    epistemic_sigma,
    evaluation_rows,
    sigma_calibration,
    sigma_summary,
    wavelength_errors,
)
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


def test_sigma_summary_against_hand_computed_fractions():
    """r = 0.01 everywhere; half the stars have total sigma 0.02 (inside), half 0.005 (outside);
    aleatoric sigma 0.006 for all (r/aleatoric = 1.67: outside); epistemic = sqrt(total^2 - 0.006^2)."""
    n = 8
    true = np.ones((n, OUTPUT_WAVE.size))
    sed = true * 1.01
    total = np.where(np.arange(n)[:, None] < 4, 0.02, 0.005) * np.ones_like(true)
    aleatoric = np.full_like(true, 0.006)
    rows = sigma_summary(
        true, np.zeros(true.shape, bool), sed, total, aleatoric=aleatoric, snr=np.full(n, 20.0)
    )
    assert len(rows) == 3
    for row in rows:
        assert row["within1sigma"] == pytest.approx(0.5)
        assert row["within1sigma_aleatoric"] == 0.0
        assert row["median_sigma_aleatoric"] == pytest.approx(0.006)
        # median of 4 x sqrt(0.02^2 - 0.006^2) and 4 x 0 (total < aleatoric is clipped to zero epistemic)
        assert row["median_sigma_epistemic"] == pytest.approx(np.sqrt(0.02**2 - 0.006**2) / 2)


def test_sigma_summary_splits_by_snr_and_band_and_skips_masked_pixels():
    """Two SNRs: at SNR 20 every residual (0.01) is inside sigma 0.02, at SNR 40 outside sigma 0.005;
    masking every other pixel of the SNR 40 stars and giving it sigma 1 (inside) must not change that."""
    n = 4
    true = np.full((n, OUTPUT_WAVE.size), 2.0)
    sed = true * 0.99
    snr = np.array([20.0, 20.0, 40.0, 40.0])
    sigma = np.where(snr[:, None] == 20, 0.02, 0.005) * np.ones_like(true)
    mask = np.zeros(true.shape, bool)
    mask[2:, ::2] = True
    sigma[2:, ::2] = 1.0
    rows = sigma_summary(true, mask, sed, sigma, aleatoric=sigma, snr=snr)
    assert [(r["snr"], r["band"]) for r in rows] == [(s, b) for s in (20.0, 40.0) for b in ("GU", "GV", "GI")]
    for row in rows:
        assert row["within1sigma"] == row["within1sigma_aleatoric"] == (1.0 if row["snr"] == 20 else 0.0)
        assert row["median_sigma_aleatoric"] == (0.02 if row["snr"] == 20 else 0.005)
        assert row["median_sigma_epistemic"] == 0.0  # a single model: total = aleatoric


def test_epistemic_sigma_hand_numbers():
    total = np.array([0.05, 0.013, 0.002])
    aleatoric = np.array([0.03, 0.005, 0.004])
    np.testing.assert_allclose(epistemic_sigma(total, aleatoric), [0.04, 0.012, 0.0], rtol=1e-12, atol=1e-15)


def test_sigma_calibration_hand_numbers():
    """Four stars x two pixels, one residual undefined: z = r/sigma = 0.5, -2, 0.9 | 3, -0.1, (NaN), ..."""
    r = np.array([[0.01, -0.04], [0.009, np.nan], [0.03, -0.001], [0.0, 0.02]])
    sigma = np.full(r.shape, 0.02)
    sigma[1, 0] = 0.01  # z = 0.9
    sigma[2, 0] = 0.01  # z = 3
    sigma[2, 1] = 0.01  # z = -0.1
    aleatoric = np.full(r.shape, 0.012)
    out = sigma_calibration(r, sigma=sigma, aleatoric=aleatoric)
    z = np.array([0.5, -2.0, 0.9, 3.0, -0.1, 0.0, 1.0])  # the 7 finite ones
    assert out["within1sigma"] == pytest.approx(4 / 7)  # |z| < 1: 0.5, 0.9, -0.1, 0 (1.0 is not < 1)
    assert out["std_z"] == pytest.approx(np.std(z))
    # |r|/0.012 < 1 for 0.01, 0.009, 0.001, 0: 4 of 7
    assert out["within1sigma_aleatoric_only"] == pytest.approx(4 / 7)
    assert out["median_sigma_aleatoric"] == 0.012
    # epistemic sqrt(sigma^2 - 0.012^2): 0.016 for sigma 0.02 (4 of the 7), 0 for sigma 0.01 (3): median 0.016
    assert out["median_sigma_epistemic"] == pytest.approx(0.016)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # numpy's empty-slice warnings: NaN is the answer
def test_sigma_calibration_without_any_finite_residual_is_nan():
    r = np.full((2, 3), np.nan)
    out = sigma_calibration(r, sigma=np.ones_like(r), aleatoric=np.ones_like(r))
    assert np.isnan(out["within1sigma"])
