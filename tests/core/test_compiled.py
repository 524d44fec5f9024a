"""The compiled (numba) kernels give the same numbers as the numpy reference path."""

import numpy as np
import pytest

from lamost2csst.core import INPUT_WAVE, LAMOST_WAVE, OUTPUT_WAVE, _compiled, prepare_inputs, resample
from lamost2csst.core.resampling import uniform_centres, uniform_rebin

pytestmark = pytest.mark.skipif(not _compiled.AVAILABLE, reason="numba not installed")


def spectra(n=40, dtype=np.float32, seed=3):
    rng = np.random.default_rng(seed)
    x = (LAMOST_WAVE - 6400.0) / 2700.0
    flux = (1.0 + rng.uniform(-0.5, 0.5, (n, 1)) * x) * (
        1.0 - 0.5 * np.exp(-0.5 * ((LAMOST_WAVE - 6564.6) / 3.0) ** 2)
    )
    flux = (flux * rng.uniform(0.9, 1.1, flux.shape)).astype(dtype)
    ivar = rng.uniform(50.0, 200.0, flux.shape).astype(dtype)
    mask = rng.random(flux.shape) < 0.01
    flux[mask] = np.nan
    ivar[rng.random(flux.shape) < 0.005] = 0.0
    ivar[0, 1000:1300] = 0.0  # a dead stretch
    z = rng.normal(0.0, 3e-4, n)
    z[1] = -0.08  # far enough to uncover the blue end of INPUT_WAVE
    return flux, ivar, mask, z


def both_paths(monkeypatch, fn):
    compiled = fn()
    monkeypatch.setattr(_compiled, "AVAILABLE", False)
    reference = fn()
    monkeypatch.setattr(_compiled, "AVAILABLE", True)
    return compiled, reference


def test_the_fast_path_is_taken_for_the_lamost_grid():
    irregular = np.sort(np.random.default_rng(0).uniform(4000, 8000, 100))
    for setup in (uniform_rebin, uniform_centres):
        assert setup(LAMOST_WAVE, INPUT_WAVE, np.zeros((1, 1))) is not None
        assert setup(irregular, INPUT_WAVE, np.zeros((1, 1))) is None


@pytest.mark.parametrize("dtype, rtol", [(np.float32, 2e-5), (np.float64, 1e-10)])
@pytest.mark.parametrize("per_star_z", [True, False])
def test_resample_matches_numpy_reference(monkeypatch, dtype, rtol, per_star_z):
    flux, ivar, mask, z = spectra(dtype=dtype)
    zz = z if per_star_z else 1e-4
    fast, ref = both_paths(
        monkeypatch, lambda: resample(LAMOST_WAVE, flux, wave_out=INPUT_WAVE, ivar=ivar, mask=mask, z=zz)
    )
    np.testing.assert_array_equal(fast.mask, ref.mask)
    assert fast.mask.any() and not fast.mask.all()
    assert fast.flux.dtype == ref.flux.dtype == dtype
    np.testing.assert_allclose(fast.flux, ref.flux, rtol=rtol, equal_nan=True)
    np.testing.assert_allclose(fast.ivar, ref.ivar, rtol=rtol * 10)


def test_resample_to_a_coarser_grid_matches(monkeypatch):
    # many input pixels per output pixel: more taps than for INPUT_WAVE
    flux, ivar, mask, z = spectra(dtype=np.float64)
    fast, ref = both_paths(
        monkeypatch, lambda: resample(LAMOST_WAVE, flux, wave_out=OUTPUT_WAVE, ivar=ivar, mask=mask, z=z)
    )
    np.testing.assert_array_equal(fast.mask, ref.mask)
    np.testing.assert_allclose(fast.flux, ref.flux, rtol=1e-10, equal_nan=True)
    np.testing.assert_allclose(fast.ivar, ref.ivar, rtol=1e-9)


@pytest.mark.parametrize("method", ["cubic", "flux"])
@pytest.mark.parametrize("dtype, rtol", [(np.float32, 5e-5), (np.float64, 1e-9)])
def test_prepare_inputs_matches_numpy_reference(monkeypatch, dtype, rtol, method):
    flux, ivar, mask, z = spectra(dtype=dtype)
    fast, ref = both_paths(
        monkeypatch, lambda: prepare_inputs(LAMOST_WAVE, flux, ivar=ivar, z=z, mask=mask, method=method)
    )
    np.testing.assert_array_equal(fast.mask, ref.mask)
    assert fast.mask[1, 0] and not fast.mask[2].all()
    np.testing.assert_allclose(fast.flux, ref.flux, rtol=rtol, equal_nan=True)
    np.testing.assert_allclose(fast.error, ref.error, rtol=rtol, equal_nan=True)


def test_fast_path_refuses_bad_values_like_the_reference():
    flux, ivar, mask, z = spectra()
    flux[3, 10] = np.nan  # not masked, ivar > 0
    ivar[3, 10] = 1.0
    mask[3, 10] = False
    with pytest.raises(ValueError, match="NaN/inf values on pixels marked usable"):
        prepare_inputs(LAMOST_WAVE, flux, ivar=ivar, z=z, mask=mask)
    ivar[3, 10] = -1.0
    with pytest.raises(ValueError, match="negative"):
        resample(LAMOST_WAVE, flux, wave_out=INPUT_WAVE, ivar=ivar, mask=mask, z=z)


def test_cubic_on_the_input_grid_itself_masks_only_the_masked_pixel(monkeypatch):
    """Spectra already on INPUT_WAVE at z = 0: every output sits on an input centre (weight 1),
    so a masked pixel masks only itself, in both paths."""
    rng = np.random.default_rng(4)
    flux = rng.uniform(0.9, 1.1, (3, INPUT_WAVE.size))
    ivar = np.full(flux.shape, 100.0)
    mask = np.zeros(flux.shape, bool)
    mask[0, 500] = mask[1, 0] = mask[2, -1] = True
    fast, ref = both_paths(monkeypatch, lambda: prepare_inputs(INPUT_WAVE, flux, ivar=ivar, z=0.0, mask=mask))
    np.testing.assert_array_equal(fast.mask, mask)
    np.testing.assert_array_equal(ref.mask, mask)
    np.testing.assert_allclose(fast.flux, ref.flux, rtol=1e-12, equal_nan=True)


def test_fill_masked_pixels_on_hand_numbers_both_paths(monkeypatch):
    from lamost2csst.core import fill_masked_pixels

    flux = np.array([[0.5, np.nan, 2.0], [1.5, 0.25, np.inf]])
    error = np.array([[0.1, 0.2, -1.0], [0.3, 0.05, 0.4]])
    mask = np.array([[False, True, True], [False, False, True]])
    expected_flux = np.array([[0.5, 1.0, 1.0], [1.5, 0.25, 1.0]], np.float32)
    expected_error = np.array([[0.1, 7.0, 7.0], [0.3, 0.05, 7.0]], np.float32)
    paths = both_paths(monkeypatch, lambda: fill_masked_pixels(flux, error, mask, masked_error=7.0))
    for out_flux, out_error in paths:
        assert out_flux.dtype == out_error.dtype == np.float32
        np.testing.assert_array_equal(out_flux, expected_flux)
        np.testing.assert_array_equal(out_error, expected_error)
    monkeypatch.undo()
    unmasked_bad = mask.copy()
    unmasked_bad[0, 2] = False  # error -1 on an unmasked pixel
    for available in (True, False):
        monkeypatch.setattr(_compiled, "AVAILABLE", available)
        with pytest.raises(ValueError, match=r"1 unmasked pixels in 1 spectra \(first: row 0\)"):
            fill_masked_pixels(flux, error, unmasked_bad, masked_error=7.0)


def test_check_unmasked_pixels_refuses_what_fill_refuses_both_paths(monkeypatch):
    from lamost2csst.core.inputs import check_unmasked_pixels

    flux = np.ones((2100, 4))  # over two of the numpy path's blocks of 1024 rows
    error = np.full((2100, 4), 0.1)
    mask = np.zeros((2100, 4), bool)
    flux[5, 0], mask[5, 0] = np.nan, True  # masked: fine
    error[7, 1], mask[7, 1] = -1.0, True
    for available in (True, False):
        monkeypatch.setattr(_compiled, "AVAILABLE", available)
        check_unmasked_pixels(flux, error, mask)  # nothing to refuse
        with pytest.raises(ValueError, match=r"2 unmasked pixels in 2 spectra \(first: row 5\)"):
            check_unmasked_pixels(flux, error, None)  # no mask: the two masked pixels count
        for row, col, array, value in ((2050, 3, flux, np.inf), (1500, 2, error, 0.0), (3, 1, flux, np.nan)):
            bad = array.copy()
            bad[row, col] = value
            args = (bad, error, mask) if array is flux else (flux, bad, mask)
            with pytest.raises(ValueError, match=rf"1 unmasked pixels in 1 spectra \(first: row {row}\)"):
                check_unmasked_pixels(*args)
