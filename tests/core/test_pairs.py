"""Training pairs: library -> network grids, Eq. 1 noise, normalization."""

import numpy as np
import pytest

from lamost2csst.core import INPUT_WAVE, OUTPUT_WAVE
from lamost2csst.core.lsf import FWHM_PER_SIGMA
from lamost2csst.core.pairs import MIN_COVERAGE, library_to_grids, make_pairs

HC_OVER_K = 1.438776877e8  # A K


def planck(wave, teff):
    return wave**-5 / np.expm1(HC_OVER_K / (wave * teff))


def model_grid(lo=2300.0, hi=10800.0, step=2e-5):
    return np.exp(np.arange(np.log(lo), np.log(hi), step))


def test_a_smooth_model_becomes_its_scaled_planck_curve():
    wave = model_grid()
    flux = np.stack([planck(wave, t) for t in (5000.0, 8000.0)])
    g = library_to_grids(wave, flux)
    assert not g.target_mask.any() and not g.input_mask.any()
    expected = np.stack([planck(OUTPUT_WAVE, t) for t in (5000.0, 8000.0)])
    window = (OUTPUT_WAVE >= 5526) & (OUTPUT_WAVE <= 5586)
    expected /= expected[:, window].mean(axis=1, keepdims=True)
    # a Gaussian of FWHM lambda/200 barely changes a Planck curve: second-order smoothing only
    np.testing.assert_allclose(g.sed, expected, rtol=2e-3)
    np.testing.assert_allclose(g.sed[:, window].mean(axis=1), 1.0, rtol=1e-12)


def test_a_partial_library_gets_a_target_mask_where_the_kernel_leaves_its_coverage():
    lo, hi = 3540.5, 7409.6  # MILES
    wave = np.exp(np.arange(np.log(lo), np.log(hi), 1.5e-4))
    flux = planck(wave, 6000.0)[None, :]
    g = library_to_grids(wave, flux, input_fwhm=2.5)
    sigma_ln = np.sqrt(np.maximum(1 / 200**2 - (2.5 / OUTPUT_WAVE) ** 2, 0)) / FWHM_PER_SIGMA
    far_inside = (OUTPUT_WAVE * np.exp(-4 * sigma_ln) > lo) & (OUTPUT_WAVE * np.exp(4 * sigma_ln) < hi)
    far_outside = (OUTPUT_WAVE * np.exp(-2 * sigma_ln) < lo) | (OUTPUT_WAVE * np.exp(2 * sigma_ln) > hi)
    assert not g.target_mask[0, far_inside].any()
    assert g.target_mask[0, far_outside].all()
    assert np.all(np.isnan(g.sed[0, g.target_mask[0]]))
    # the input grid 4000-7000 A lies inside MILES: fully defined, coarser than R=2000 in the blue
    assert not g.input_mask.any()
    np.testing.assert_array_equal(g.input_coarser, 2.5 / INPUT_WAVE > 1 / 2000)
    assert 0 < MIN_COVERAGE < 1


def test_a_library_without_the_scaling_window_is_refused():
    wave = np.exp(np.arange(np.log(6000), np.log(9000), 1e-4))
    with pytest.raises(ValueError, match="scaling window"):
        library_to_grids(wave, planck(wave, 6000.0)[None, :])


def test_make_pairs_noise_and_normalization():
    n = 400
    flux_in = np.full((n, INPUT_WAVE.size), 3.0)
    sed = np.ones((n, OUTPUT_WAVE.size))
    pairs = make_pairs(flux_in, sed, snr=50.0, rng=np.random.default_rng(1))
    inner = slice(100, -100)
    # a flat spectrum normalizes to 1 with relative noise 1/snr (continuum averages 51 px)
    assert np.mean(pairs.flux[:, inner]) == pytest.approx(1.0, abs=1e-3)
    assert np.std(pairs.flux[:, inner]) == pytest.approx(1 / 50, rel=0.05)
    assert np.median(pairs.error[:, inner]) == pytest.approx(1 / 50, rel=0.03)
    again = make_pairs(flux_in, sed, snr=50.0, rng=np.random.default_rng(1))
    np.testing.assert_array_equal(pairs.flux, again.flux)
    other = make_pairs(flux_in, sed, snr=50.0, rng=np.random.default_rng(2))
    assert not np.array_equal(pairs.flux, other.flux)


def test_make_pairs_carries_masks():
    flux_in = np.full((2, INPUT_WAVE.size), 1.0)
    flux_in[0, 500:510] = np.nan
    sed = np.ones((2, OUTPUT_WAVE.size))
    sed[1, :20] = np.nan
    pairs = make_pairs(flux_in, sed, snr=[20.0, 40.0], rng=np.random.default_rng(0))
    assert pairs.input_mask[0, 500:510].all() and not pairs.input_mask[1].any()
    assert np.isnan(pairs.flux[0, 500:510]).all() and np.isfinite(pairs.flux[1]).all()
    assert pairs.target_mask[1, :20].all() and not pairs.target_mask[0].any()


def test_targets_only_for_a_library_coarser_than_the_input():
    from lamost2csst.core.grids import INPUT_WAVE, OUTPUT_WAVE
    from lamost2csst.core.pairs import library_to_grids

    wave = np.linspace(1700.0, 10200.0, 6000)
    flux = np.ones((2, wave.size)) * (wave / 5000.0) ** -2
    with pytest.raises(ValueError, match="cannot sharpen"):
        library_to_grids(wave, flux, input_resolution=1000.0)
    g = library_to_grids(wave, flux, input_resolution=1000.0, inputs=False)
    assert g.input_mask.all() and np.isnan(g.flux_in).all() and g.flux_in.shape == (2, INPUT_WAVE.size)
    covered = ~g.target_mask[0]
    # a power law stays a power law at R=200; scaled to 1 at 5526-5586 A
    expected = (OUTPUT_WAVE / 5556.0) ** -2
    np.testing.assert_allclose(g.sed[0, covered], expected[covered], rtol=3e-3)


def test_a_gridded_library_selects_stars_and_keeps_its_pixel_flags():
    from lamost2csst.core.pairs import GriddedLibrary

    n = 5
    flux_in = np.arange(n * 4, dtype=np.float32).reshape(n, 4)
    sed = 10 + np.arange(n * 3, dtype=np.float32).reshape(n, 3)
    teff = 5000.0 + 500 * np.arange(n)
    coarser = np.array([True, False, False, True])
    lib = GriddedLibrary(flux_in, flux_in > 15, sed, sed > 20, teff, input_coarser=coarser)
    assert len(lib) == n and lib.flux_lamost is None
    part = lib.take([3, 1])
    assert len(part) == 2
    np.testing.assert_array_equal(part.flux_in, [[12, 13, 14, 15], [4, 5, 6, 7]])
    np.testing.assert_array_equal(part.input_mask, [[False] * 4, [False] * 4])
    np.testing.assert_array_equal(part.target_mask, [[False, False, True], [False, False, False]])
    np.testing.assert_array_equal(part.teff, [6500.0, 5500.0])
    assert part.input_coarser is coarser and part.flux_lamost is None  # per pixel, not per star
    np.testing.assert_array_equal(lib.take(teff > 6000).teff, [6500.0, 7000.0])
    # replace() swaps fields (the tuple's _replace would count stars, not fields)
    lamost = np.ones((n, 7))
    more = lib.replace(flux_lamost=lamost, teff=teff + 1)
    assert more.flux_lamost is lamost and more.sed is sed and more.input_coarser is coarser
    np.testing.assert_array_equal(more.take([4]).teff, [7001.0])
    np.testing.assert_array_equal(lib.teff, teff)  # the original is unchanged
