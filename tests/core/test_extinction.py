"""Reddening: the F99 curve's normalisation, E(B-V) recovery, dereddening round trip."""

import numpy as np
import pytest

pytest.importorskip("dust_extinction")

from lamost2csst.core.extinction import deredden, fit_ebv, reddening_curve
from lamost2csst.core.grids import OUTPUT_WAVE


def test_curve_is_normalised_to_e_b_minus_v():
    k = reddening_curve([4400.0, 5500.0])  # ~B and V effective wavelengths
    assert k[0] - k[1] == pytest.approx(1.0, abs=0.08)
    assert k[1] == pytest.approx(3.1, abs=0.15)  # A_V / E(B-V) = R_V


def test_fit_recovers_injected_reddening_at_any_scale():
    rng = np.random.default_rng(0)
    wave = OUTPUT_WAVE[(OUTPUT_WAVE > 3300) & (OUTPUT_WAVE < 9800)]
    model = np.exp(rng.normal(0, 0.3, (1, wave.size))) * np.ones((3, 1))
    ebv = np.array([0.0, 0.15, 0.6])
    observed = deredden(wave, model, -ebv) * np.array([[1.0], [3e-14], [42.0]])
    observed *= 1 + 0.003 * rng.standard_normal(observed.shape)
    np.testing.assert_allclose(fit_ebv(wave, observed, model), ebv, atol=0.003)
    # and dereddening with the fitted value restores the model's shape
    back = deredden(wave, observed, fit_ebv(wave, observed, model))
    ratio = back / model
    np.testing.assert_allclose(ratio / ratio.mean(axis=1, keepdims=True), 1.0, atol=0.02)


def test_masked_and_bad_pixels_are_ignored_and_too_few_give_nan():
    wave = OUTPUT_WAVE[100:400]
    model = np.ones((2, wave.size))
    observed = deredden(wave, model, np.array([-0.2, -0.2]))
    observed[0, :50] = -1.0  # non-positive: ignored
    mask = np.ones(observed.shape, bool)
    mask[0] = False
    mask[1, :2] = False  # 2 usable pixels only
    got = fit_ebv(wave, observed, model, mask=mask)
    assert got[0] == pytest.approx(0.2, abs=1e-9) and np.isnan(got[1])


def test_out_of_range_and_shape_errors():
    with pytest.raises(ValueError, match="1000-33000"):
        reddening_curve([500.0])
    with pytest.raises(ValueError, match="must be"):
        fit_ebv(OUTPUT_WAVE, np.ones((2, 574)), np.ones((3, 574)))
