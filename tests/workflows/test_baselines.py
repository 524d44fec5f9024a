"""RidgeBaseline: recovers a linear map, and fits a training library reproducibly."""

import numpy as np
import pytest

from lamost2csst.core.grids import INPUT_WAVE, OUTPUT_WAVE
from lamost2csst.nn.training import epoch_pairs
from lamost2csst.workflows.baselines import RidgeBaseline


def test_a_linear_map_to_ln_sed_is_recovered():
    """ln(SED) = (flux - 1) W + b exactly: ridge (alpha 1) on 2000 noiseless pairs finds W and b."""
    rng = np.random.default_rng(1)
    w = rng.normal(0, 0.1, (20, 5))
    b = rng.normal(0, 0.5, 5)
    flux = 1 + rng.standard_normal((2000, 20))
    baseline = RidgeBaseline(flux, np.exp((flux - 1) @ w + b))
    # the ridge bias is ~alpha / n = 5e-4 of a coefficient; measured 1.4e-4
    np.testing.assert_allclose(baseline.model.coef_.T, w, atol=5e-4)
    np.testing.assert_allclose(baseline.model.intercept_, b, atol=5e-4)
    unseen = 1 + rng.standard_normal((50, 20))
    np.testing.assert_allclose(baseline(unseen), np.exp((unseen - 1) @ w + b), rtol=3e-3)  # measured 6e-4


@pytest.fixture(scope="module")
def library():
    import lamost2csst
    from lamost2csst.workflows.evaluation import evaluation_library

    return evaluation_library(lamost2csst.load_grid().isel(model=slice(0, 16)))


def test_from_library_fits_its_training_stars_better_than_unseen_ones(library):
    train = library.take(np.arange(12))
    baseline = RidgeBaseline.from_library(train, seed=1, draws=2, snrs=(1e5,))
    assert baseline.model.n_features_in_ == INPUT_WAVE.size
    clean = epoch_pairs(library, snrs=(1e5,), rng=np.random.default_rng(3))  # nearly noiseless inputs
    sed = baseline(clean.flux)
    assert sed.shape == (16, OUTPUT_WAVE.size) and np.all(sed > 0)
    error = np.median(np.abs(sed / clean.sed - 1), axis=1)
    # measured: median |r| 0.014 on the 12 training stars, 0.055 on the 4 others
    assert np.median(error[:12]) < 0.03
    assert np.median(error[12:]) > 2 * np.median(error[:12])


def test_from_library_is_fixed_by_its_seed(library):
    train = library.take(np.arange(6))
    fits = [RidgeBaseline.from_library(train, seed=s, draws=1, snrs=(20.0,)) for s in (4, 4, 5)]
    np.testing.assert_array_equal(fits[0].model.coef_, fits[1].model.coef_)
    assert not np.array_equal(fits[0].model.coef_, fits[2].model.coef_)
