"""Normative wavelength grids, bands and pixel geometry (DESIGN.md, "Normative numerical conventions")."""

import math

import numpy as np
import pytest

from lamost2csst.core import grids
from lamost2csst.core.grids import (
    BANDS,
    INPUT_WAVE,
    LAMOST_WAVE,
    OUTPUT_WAVE,
    SCALE_WINDOW,
    band_pixels,
    ln_step,
    log_wave_grid,
    pixel_edges,
)

# ---------------------------------------------------------------- normative grids


@pytest.mark.parametrize("i", [0, 1, 999, 1000, 2237])
def test_input_grid_definition(i):
    assert INPUT_WAVE.shape == (2238,)
    assert INPUT_WAVE.dtype == np.float64
    assert INPUT_WAVE[i] == pytest.approx(4000.0 * math.exp(i / 4000.0), rel=1e-14)


def test_input_grid_range_and_sampling():
    # 4000 A ... 4000 e^(2237/4000) = 6997.4 A: the paper's 4000-7000 A range.
    assert INPUT_WAVE[0] == 4000.0
    assert INPUT_WAVE[-1] == pytest.approx(6997.44, abs=0.01)
    # R = 2000 with 2 px per resolution element: (lambda / R) / d_lambda = 2.
    d_ln = np.diff(np.log(INPUT_WAVE))
    np.testing.assert_allclose(d_ln, 1 / 4000.0, rtol=1e-9)
    np.testing.assert_allclose((1 / 2000.0) / d_ln, 2.0, rtol=1e-9)


@pytest.mark.parametrize("j", [0, 1, 318, 573])
def test_output_grid_definition(j):
    assert OUTPUT_WAVE.shape == (574,)
    assert OUTPUT_WAVE[j] == pytest.approx(2500.0 * math.exp(j / 400.0), rel=1e-14)


def test_output_grid_range_and_sampling():
    assert OUTPUT_WAVE[0] == 2500.0
    assert OUTPUT_WAVE[-1] == pytest.approx(10472.8, abs=0.1)  # 2500 e^(573/400)
    d_ln = np.diff(np.log(OUTPUT_WAVE))
    np.testing.assert_allclose((1 / 200.0) / d_ln, 2.0, rtol=1e-9)  # R=200, 2 px / element


def test_lamost_grid_definition():
    assert LAMOST_WAVE.shape == (3909,)
    assert LAMOST_WAVE[0] == pytest.approx(10**3.5682, rel=1e-14)
    assert LAMOST_WAVE[-1] == pytest.approx(10 ** (3.5682 + 0.3908), rel=1e-13)
    # the LAMOST LRS range 3700-9100 A
    assert 3699 < LAMOST_WAVE[0] < 3701
    assert 9098 < LAMOST_WAVE[-1] < 9101
    np.testing.assert_allclose(np.diff(np.log10(LAMOST_WAVE)), 1e-4, rtol=1e-8)


@pytest.mark.parametrize("grid", [INPUT_WAVE, OUTPUT_WAVE, LAMOST_WAVE])
def test_module_grids_are_read_only(grid):
    with pytest.raises(ValueError):
        grid[0] = 1.0


def test_scale_window_and_bands_constants():
    assert SCALE_WINDOW == (5526.0, 5586.0)
    assert BANDS == {"GU": (2550.0, 4200.0), "GV": (4000.0, 6500.0), "GI": (6200.0, 10000.0)}


# ---------------------------------------------------------------- log_wave_grid


def test_log_wave_grid_values():
    w = log_wave_grid(1000.0, 4, ln_step=math.log(2.0))
    np.testing.assert_allclose(w, [1000.0, 2000.0, 4000.0, 8000.0], rtol=1e-14)


@pytest.mark.parametrize(
    "start, n, step",
    [(0.0, 10, 1e-3), (-5.0, 10, 1e-3), (1000.0, 1, 1e-3), (1000.0, 10, 0.0), (1000.0, 10, -1e-3)],
)
def test_log_wave_grid_rejects_bad_parameters(start, n, step):
    with pytest.raises(ValueError, match="log_wave_grid needs"):
        log_wave_grid(start, n, ln_step=step)


# ---------------------------------------------------------------- ln_step


def test_ln_step_of_log_grids():
    assert ln_step(INPUT_WAVE) == pytest.approx(1 / 4000.0, rel=1e-10)
    assert ln_step(OUTPUT_WAVE) == pytest.approx(1 / 400.0, rel=1e-10)
    assert ln_step(LAMOST_WAVE) == pytest.approx(1e-4 * math.log(10.0), rel=1e-8)


def test_ln_step_of_non_log_grids_is_none():
    assert ln_step(np.linspace(4000.0, 7000.0, 100)) is None  # linear in lambda
    assert ln_step(np.stack([INPUT_WAVE, INPUT_WAVE])) is None  # not 1-D
    assert ln_step(np.array([5000.0])) is None


# ---------------------------------------------------------------- pixel_edges


def test_pixel_edges_hand_computed_non_uniform():
    # inner edges = geometric means sqrt(100*400)=200, sqrt(400*900)=600;
    # outer edges mirror the first/last half pixel in ln: 100**2/200 = 50, 900**2/600 = 1350
    edges = pixel_edges(np.array([100.0, 400.0, 900.0]))
    np.testing.assert_allclose(edges, [50.0, 200.0, 600.0, 1350.0], rtol=1e-14)


def test_pixel_edges_of_log_grid_are_half_steps():
    s = 1e-3
    w = 5000.0 * np.exp(s * np.arange(10))
    expected = 5000.0 * np.exp(s * (np.arange(11) - 0.5))
    np.testing.assert_allclose(pixel_edges(w), expected, rtol=1e-14)
    # every pixel has the same width in ln(lambda)
    np.testing.assert_allclose(np.diff(np.log(pixel_edges(w))), s, rtol=1e-9)


def test_pixel_edges_two_dimensional():
    w = np.stack([INPUT_WAVE[:5], 2.0 * INPUT_WAVE[:5]])
    edges = pixel_edges(w)
    assert edges.shape == (2, 6)
    np.testing.assert_allclose(edges[1], 2.0 * edges[0], rtol=1e-14)
    # each centre lies strictly inside its pixel
    assert np.all(edges[:, :-1] < w) and np.all(w < edges[:, 1:])


# ---------------------------------------------------------------- band_pixels


def test_band_pixels_inclusive_limits():
    wave = np.array([2549.9, 2550.0, 3000.0, 4200.0, 4200.1])
    np.testing.assert_array_equal(band_pixels(wave, "GU"), [False, True, True, True, False])
    np.testing.assert_array_equal(band_pixels(wave, (3000.0, 4200.0)), [False, False, True, True, False])


def test_band_pixels_on_output_grid_counts():
    # number of OUTPUT_WAVE pixels inside [lo, hi]: j in [ceil(400 ln(lo/2500)), floor(400 ln(hi/2500))]
    for name, (lo, hi) in BANDS.items():
        j_lo = math.ceil(400 * math.log(lo / 2500.0))
        j_hi = math.floor(400 * math.log(hi / 2500.0))
        sel = band_pixels(OUTPUT_WAVE, name)
        np.testing.assert_array_equal(np.flatnonzero(sel), np.arange(j_lo, j_hi + 1))


def test_band_pixels_unknown_name():
    with pytest.raises(KeyError):
        band_pixels(OUTPUT_WAVE, "GX")


def test_grids_module_exports():
    for name in grids.__all__:
        assert hasattr(grids, name)
