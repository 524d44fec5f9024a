"""reduce_model / bin_to_grid on analytic spectra, and the Synspec input writers (no Synspec run)."""

import numpy as np
import pytest

from lamost2csst.core import INPUT_WAVE, LAMOST_WAVE, OUTPUT_WAVE, SCALE_WINDOW, degrade
from lamost2csst.synth.synspec import (
    bin_to_grid,
    default_cutoff,
    reduce_model,
    synthesis_grid,
    write_fort55,
    write_tas,
)

H_CGS, C_CGS, K_CGS = 6.62607015e-27, 2.99792458e10, 1.380649e-16


def planck_flux(wave_a, teff):
    lam = wave_a * 1e-8
    return np.pi * 2 * H_CGS * C_CGS**2 / lam**5 / np.expm1(H_CGS * C_CGS / (lam * K_CGS * teff)) * 1e-8


def analytic(wave, teff=6000.0, depth=0.5, centre=6564.61, width=1.0):
    return planck_flux(wave, teff) * (1 - depth * np.exp(-0.5 * ((wave - centre) / width) ** 2))


def irregular_wave(seed=0):
    """Synspec-like irregular sampling, 2400.7-10703 A (vacuum), 0.001-0.05 A steps."""
    rng = np.random.default_rng(seed)
    steps = rng.uniform(0.001, 0.05, 400_000)
    wave = 2400.7 + np.concatenate([[0.0], np.cumsum(steps)])
    return wave[wave <= 10703.0]


def test_bin_to_grid_is_exact_for_linear_and_conserves_integral():
    wave = np.sort(np.random.default_rng(1).uniform(1000, 2000, 500))
    edges = np.linspace(1100, 1900, 81)
    np.testing.assert_allclose(
        bin_to_grid(wave, 3.0 + 0.01 * wave, edges), 3.0 + 0.01 * 0.5 * (edges[1:] + edges[:-1]), rtol=1e-12
    )
    flux = np.sin(wave / 30.0) + 2
    inside = (wave >= edges[0]) & (wave <= edges[-1])
    w = np.concatenate([[edges[0]], wave[inside], [edges[-1]]])
    f = np.interp(w, wave, flux)
    assert np.sum(bin_to_grid(wave, flux, edges) * np.diff(edges)) == pytest.approx(
        np.trapezoid(f, w), rel=1e-12
    )
    with pytest.raises(ValueError, match="beyond the spectrum"):
        bin_to_grid(wave, flux, np.linspace(900, 1500, 10))


def test_reduce_model_matches_direct_degradation():
    wave = irregular_wave()
    red = reduce_model(wave, analytic(wave))
    assert red["flux_in"].shape == INPUT_WAVE.shape
    assert red["flux_lamost"].shape == LAMOST_WAVE.shape
    assert red["sed"].shape == OUTPUT_WAVE.shape
    # reference: the same analytic spectrum sampled densely and regularly, degraded directly
    fine = np.exp(np.linspace(np.log(2401.0), np.log(10700.0), 1_500_000))
    ref_in = degrade(fine, analytic(fine), resolution=2000, wave_out=INPUT_WAVE)
    ref_sed = degrade(fine, analytic(fine), resolution=200, wave_out=OUTPUT_WAVE)
    ref_sed = ref_sed / ref_sed[(OUTPUT_WAVE >= SCALE_WINDOW[0]) & (OUTPUT_WAVE <= SCALE_WINDOW[1])].mean()
    np.testing.assert_allclose(red["flux_in"], ref_in, rtol=2e-4)
    np.testing.assert_allclose(red["sed"], ref_sed, rtol=2e-4)
    window = (OUTPUT_WAVE >= SCALE_WINDOW[0]) & (OUTPUT_WAVE <= SCALE_WINDOW[1])
    assert red["sed"][window].mean() == pytest.approx(1.0, rel=1e-12)
    # the line is where it was put (vacuum H alpha), with the R=2000 width
    near = (LAMOST_WAVE > 6500) & (LAMOST_WAVE < 6630)
    assert LAMOST_WAVE[near][
        np.argmin(red["flux_lamost"][near] / planck_flux(LAMOST_WAVE[near], 6000.0))
    ] == pytest.approx(6564.61, abs=1.0)


def test_reduce_model_rejects_short_or_bad_input():
    wave = np.linspace(3000, 9000, 100_000)
    with pytest.raises(ValueError, match="R=200 SED needs"):
        reduce_model(wave, analytic(wave))
    wave = irregular_wave()
    flux = analytic(wave)
    flux[1000] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        reduce_model(wave, flux)
    with pytest.raises(ValueError, match="increasing"):
        reduce_model(wave[::-1], analytic(wave))


def test_synthesis_grid_is_deterministic_and_covers_the_output():
    c1, e1 = synthesis_grid()
    c2, e2 = synthesis_grid()
    np.testing.assert_array_equal(e1, e2)
    assert e1[0] < 2402 and e1[-1] > 10700
    d = np.diff(np.log(e1))
    np.testing.assert_allclose(d, 1 / 200_000, rtol=1e-6)


def test_input_writers(tmp_path):
    write_fort55(
        tmp_path / "fort.55",
        (2400, 10700),
        step=0.05,
        cutoff=250,
        strength=1e-4,
        vmicro=2.0,
        molecular_units=(20,),
    )
    rows = [r.split("!")[0].split() for r in (tmp_path / "fort.55").read_text().splitlines()]
    assert rows[3][3] == "10"  # INLIST: ASCII line lists
    assert [float(x) for x in rows[5]] == [2400.0, 10700.0, 250.0, 0.0, 1e-4, 0.05]
    assert rows[6] == ["1", "20"] and float(rows[7][0]) == 2.0
    write_tas(tmp_path / "tas", 71, molecules=True)
    assert (tmp_path / "tas").read_text().split() == ["ND=", "71", "IFMOL=", "1", "TMOLIM=", "8000.0"]
    assert default_cutoff(5000, 4.5) == 250 and default_cutoff(3400, 5.0) == 1000


def test_missing_gfortran_message(monkeypatch, tmp_path):
    from lamost2csst.synth import build

    monkeypatch.setenv("LAMOST2CSST_CACHE", str(tmp_path))
    monkeypatch.setattr(build.shutil, "which", lambda name: None)
    assert build.synspec_dir() == tmp_path / f"synspec-{build.SYNSPEC_VERSION}"
    with pytest.raises(build.SynspecBuildError, match="apt-get install gfortran"):
        build.ensure_synspec()


def test_step_segments():
    from lamost2csst.synth.synspec import step_segments

    assert step_segments(0.05, (2400, 10700)) == [(2400.0, 10700.0, 0.05, None)]
    sched = ((3000, 0.005), (4000, 0.01, 40), (None, 0.05))
    assert step_segments(sched, (2400, 10700), 60) == [
        (2400.0, 3000.0, 0.005, 60),
        (3000.0, 4000.0, 0.01, 40),
        (4000.0, 10700.0, 0.05, 60),
    ]
    assert step_segments(sched, (3500, 3900)) == [(3500.0, 3900.0, 0.01, 40)]
    with pytest.raises(ValueError, match="does not reach"):
        step_segments(((3000, 0.01),), (2400, 10700))
    with pytest.raises(ValueError, match="> 0"):
        step_segments(0.0, (2400, 10700))
