"""The chi-square parameter match finds the grid model a star was made from."""

import numpy as np
import pytest

from lamost2csst.core.params import fit_parameters


def test_recovers_the_generating_model_despite_scale_noise_and_masks():
    import lamost2csst

    ds = lamost2csst.load_grid().isel(model=slice(0, 60))
    grid = ds.flux_in.values.astype(float)
    params = np.stack([ds[k].values for k in ("teff", "logg", "feh", "alpha")], axis=1)
    rng = np.random.default_rng(0)
    pick = np.array([3, 17, 42, 59])
    stars = grid[pick] * 7.5 * (1 + 0.002 * rng.standard_normal((4, grid.shape[1])))  # other units, noise
    mask = np.zeros(stars.shape, bool)
    mask[1, :300] = True
    stars[1, :300] = np.nan
    fit = fit_parameters(stars, grid, params, mask=mask)
    np.testing.assert_array_equal(fit.best, pick)
    np.testing.assert_array_equal(fit.params, params[pick])
    # unmasked stars: chi2 ~ the injected noise variance (0.002^2); the masked one also carries
    # the difference of continua near its mask edge (the grid's continuum uses all pixels)
    np.testing.assert_allclose(fit.chi2[[0, 2, 3]], 0.002**2, rtol=0.1)
    assert fit.chi2[1] < 1e-3


def test_refuses_bad_shapes_and_empty_stars():
    grid = np.ones((3, 50))
    with pytest.raises(ValueError, match="same pixels"):
        fit_parameters(np.ones((2, 40)), grid, np.zeros((3, 2)))
    with pytest.raises(ValueError, match="rows"):
        fit_parameters(np.ones((2, 50)), grid, np.zeros((4, 2)))
    with pytest.raises(ValueError, match="no usable"):
        fit_parameters(np.full((1, 50), np.nan), grid, np.zeros((3, 2)))
