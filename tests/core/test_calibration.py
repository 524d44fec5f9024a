"""The Sect. 5 Monte Carlo: precision falls as 1/sqrt(stars) and grows with SED errors."""

import numpy as np
import pytest

from lamost2csst.core.calibration import band_medians, monte_carlo_flat_precision
from lamost2csst.io.grid import load_grid


@pytest.fixture(scope="module")
def pool():
    sed = load_grid().sed.values.astype(np.float64)[:200]
    return sed


def test_precision_scales_as_one_over_sqrt_stars(pool):
    sigma = np.full(pool.shape, 1e-4)
    small = monte_carlo_flat_precision(pool, sigma, pool, n_stars=100, realizations=6, seed=1)
    large = monte_carlo_flat_precision(pool, sigma, pool, n_stars=1600, realizations=6, seed=1)
    for band in ("GU", "GV", "GI"):
        assert small[band]["median"] / large[band]["median"] == pytest.approx(4.0, rel=0.3), band


def test_sed_errors_enter_the_precision(pool):
    rng = np.random.default_rng(0)
    exact = monte_carlo_flat_precision(pool, np.full(pool.shape, 1e-3), pool, n_stars=400, realizations=4)
    noisy_pred = pool * (1 + rng.normal(0, 0.05, pool.shape))
    noisy = monte_carlo_flat_precision(
        noisy_pred, np.full(pool.shape, 0.05), pool, n_stars=400, realizations=4
    )
    for band in ("GU", "GV", "GI"):
        assert noisy[band]["median"] > 2 * exact[band]["median"]
    with pytest.raises(ValueError, match="finite"):
        monte_carlo_flat_precision(pool * np.nan, pool, pool)


def test_band_medians_per_band_over_realizations():
    rows = [{"GU": 3.0, "GV": 1.0}, {"GU": 1.0, "GV": 5.0}, {"GU": 2.0, "GV": 2.0}, {"GU": 10.0, "GV": 4.0}]
    medians = band_medians(rows)
    assert medians == {"GU": 2.5, "GV": 3.0} and list(medians) == ["GU", "GV"]
