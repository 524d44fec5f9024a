"""One real Synspec run per model: does it look like a star? (slow: ~15-25 s per model)."""

import numpy as np
import pytest

from lamost2csst.core import LAMOST_WAVE, OUTPUT_WAVE

pytestmark = pytest.mark.slow

SIGMA_SB = 5.670374419e-5
H_CGS, C_CGS, K_CGS = 6.62607015e-27, 2.99792458e10, 1.380649e-16


def planck_flux(wave_a, teff):
    lam = wave_a * 1e-8
    return np.pi * 2 * H_CGS * C_CGS**2 / lam**5 / np.expm1(H_CGS * C_CGS / (lam * K_CGS * teff)) * 1e-8


@pytest.fixture(scope="module", params=[(9000.0, 4.0), (5000.0, 4.5)], ids=["hot", "cool"])
def star(request, synspec_ready):
    from lamost2csst.synth import reduce_model, run_synspec
    from lamost2csst.synth.atmospheres import load_model

    teff, logg = request.param
    res = run_synspec(load_model(teff, logg, 0.0, 0.0), step=0.1)
    return teff, res, reduce_model(res.wave, res.flux)


def test_coverage_and_units(star):
    teff, res, _ = star
    w, f = res.wave, res.flux
    assert np.all(np.diff(w) > 0) and np.all(np.isfinite(f)) and np.all(f >= 0)
    assert w[0] < 2401.5 and w[-1] > 10702  # vacuum equivalents of 2400-10700 A (air)
    # F_lambda = 4 pi H_lambda: the flux in the range is the blackbody's share of sigma T^4, give or take
    # line blanketing and the Balmer jump (about 10 %)
    share = np.trapezoid(planck_flux(w, teff), w) / (SIGMA_SB * teff**4)
    assert np.trapezoid(f, w) / (SIGMA_SB * teff**4) == pytest.approx(share, rel=0.15)


def test_halpha_at_its_vacuum_wavelength(star):
    teff, res, red = star
    w, f = res.wave, res.flux
    near = (w > 6560.0) & (w < 6569.0)
    assert w[near][np.argmin(f[near])] == pytest.approx(6564.61, abs=0.2)  # air would be 6562.80
    # still there at R=2000: a dip at H alpha relative to +-40 A
    lam = LAMOST_WAVE
    core = np.interp(6564.61, lam, red["flux_lamost"])
    side = np.interp([6520.0, 6610.0], lam, red["flux_lamost"]).mean()
    assert core < (0.75 if teff > 7000 else 0.95) * side


def test_sed_peaks_near_wien(star):
    teff, _, red = star
    peak = OUTPUT_WAVE[np.argmax(red["sed"])]
    wien = 2.897771955e7 / teff  # A, for F_lambda
    assert 0.7 * wien < peak < 1.4 * wien
    assert np.all(np.isfinite(red["sed"])) and np.all(red["sed"] > 0)


def test_balmer_lines_in_the_hot_star(star):
    teff, res, _ = star
    if teff < 7000:
        pytest.skip("weak Balmer lines in the cool star")
    w, f = res.wave, res.flux
    for line in (4862.68, 4341.69, 4102.89):  # H beta, gamma, delta (vacuum)
        near = (w > line - 3) & (w < line + 3)
        far = (np.abs(w - line) > 60) & (np.abs(w - line) < 80)
        assert f[near].min() < 0.5 * np.median(f[far])
