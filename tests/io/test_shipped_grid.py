"""The shipped synthetic grid looks like stars (physics checks on a few models)."""

import numpy as np
import pytest

from lamost2csst.core import INPUT_WAVE, LAMOST_WAVE, OUTPUT_WAVE, normalize
from lamost2csst.io.grid import GRID_DIR, load_grid

pytestmark = pytest.mark.skipif(not any(GRID_DIR.glob("*.zarr")), reason="no grid shipped yet")

HC_OVER_K = 1.438776877e8  # A K


@pytest.fixture(scope="module")
def grid():
    return load_grid()


def model(grid, teff, logg=4.0, feh=0.0, alpha=0.0):
    sel = (
        np.isclose(grid.teff, teff)
        & np.isclose(grid.logg, logg)
        & np.isclose(grid.feh, feh)
        & np.isclose(grid.alpha, alpha)
    )
    if not sel.any():
        pytest.skip(f"model {teff}/{logg}/{feh}/{alpha} not in the shipped grid")
    return grid.isel(model=int(np.flatnonzero(np.asarray(sel))[0]))


def band_mean(wave, flux, lo, hi):
    sel = (wave >= lo) & (wave <= hi)
    return float(np.mean(flux[sel]))


def normalized(m):
    return normalize(m["flux_in"].values)[0]


def test_balmer_lines_deepen_from_5000_to_9000_k(grid):
    def h_beta_depth(teff):
        flux = normalized(model(grid, teff))
        near = np.abs(INPUT_WAVE - 4862.68) < 3
        return 1.0 - flux[near].min()

    depths = [h_beta_depth(t) for t in (5000, 7000, 9000)]
    assert depths[0] < depths[1] < depths[2]
    assert depths[2] > 0.3  # A stars: deep, broad Balmer lines


def test_h_alpha_sits_at_its_vacuum_wavelength(grid):
    m = model(grid, 9000)
    flux = m["flux_lamost"].values
    near = np.abs(LAMOST_WAVE - 6564.61) < 10
    centre = LAMOST_WAVE[near][np.argmin(flux[near])]
    assert abs(centre - 6564.61) < 1.5  # a LAMOST pixel is 1.5 A here; air would be 6562.8


def test_balmer_jump_grows_with_teff_beyond_the_planck_slope(grid):
    def jump(teff):
        sed = model(grid, teff)["sed"].values
        red, blue = band_mean(OUTPUT_WAVE, sed, 3900, 4050), band_mean(OUTPUT_WAVE, sed, 3450, 3600)
        planck = lambda w: w**-5 / np.expm1(HC_OVER_K / (w * teff))  # noqa: E731
        return np.log10(red / blue) - np.log10(planck(3975.0) / planck(3525.0))

    jumps = [jump(t) for t in (6000, 8000, 9000)]
    assert jumps[0] < jumps[1] < jumps[2]
    assert jumps[2] > 0.2  # dex: a strong Balmer discontinuity in A stars


def test_metal_lines_deepen_with_metallicity(grid):
    # a 51-px moving-average continuum averages the line blanketing away, so measure line
    # contrast (scatter of the normalized flux) and the depth of the Mg b triplet instead
    def lines(teff, feh):
        flux = normalized(model(grid, teff, feh=feh))
        band = (INPUT_WAVE > 5100) & (INPUT_WAVE < 5300)
        mgb = (INPUT_WAVE > 5165) & (INPUT_WAVE < 5190)
        return float(np.std(flux[band])), float(1.0 - flux[mgb].min())

    for teff in (5000, 6000):
        (scatter_poor, mgb_poor), (scatter_solar, mgb_solar) = lines(teff, -1.0), lines(teff, 0.0)
        assert scatter_solar > 1.3 * scatter_poor
        assert mgb_solar > mgb_poor + 0.05
    # and with falling Teff at fixed [M/H]
    assert lines(5000, 0.0)[1] > lines(6000, 0.0)[1]


def test_a_sunlike_sed_follows_its_planck_curve_in_the_red_and_is_blanketed_in_the_blue(grid):
    teff = 6000.0
    sed = model(grid, teff)["sed"].values
    planck = OUTPUT_WAVE**-5 / np.expm1(HC_OVER_K / (OUTPUT_WAVE * teff))
    window = (OUTPUT_WAVE >= 5526) & (OUTPUT_WAVE <= 5586)
    ratio = sed / (planck / planck[window].mean())
    red = (OUTPUT_WAVE > 6000) & (OUTPUT_WAVE < 10000)
    assert np.all(np.abs(ratio[red] - 1.0) < 0.2)
    assert band_mean(OUTPUT_WAVE, ratio, 3000, 4000) < 0.9  # line blanketing removes UV flux
