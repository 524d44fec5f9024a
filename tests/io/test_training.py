"""Training pairs from library Datasets: one code path for the grid and the empirical libraries."""

import numpy as np
import pytest
import xarray as xr

from lamost2csst.core import INPUT_WAVE, OUTPUT_WAVE
from lamost2csst.errors import InputError
from lamost2csst.io.training import gridded_library, read_library_params, training_pairs


def test_a_grid_dataset_goes_straight_to_the_pairs():
    n = 3
    grid = xr.Dataset(
        {
            "flux_in": (("model", "wave_in"), np.full((n, INPUT_WAVE.size), 2.0, np.float32)),
            "sed": (("model", "wave_out"), np.ones((n, OUTPUT_WAVE.size), np.float32)),
        },
        coords={"teff": ("model", [5000.0, 6000.0, 7000.0])},
    )
    g = gridded_library(grid)
    assert not g.input_mask.any() and not g.target_mask.any()
    pairs = training_pairs(grid, snr=40.0, rng=np.random.default_rng(0))
    assert pairs.flux.shape == (n, INPUT_WAVE.size) and pairs.sed.shape == (n, OUTPUT_WAVE.size)
    assert abs(np.nanmean(pairs.flux) - 1.0) < 2e-3


def test_a_library_in_the_observed_frame_is_refused():
    from lamost2csst.core import LAMOST_WAVE
    from lamost2csst.io.spectra import spectra_dataset

    ds = spectra_dataset(
        wave=LAMOST_WAVE,
        flux=np.ones((1, LAMOST_WAVE.size)),
        ivar=np.ones((1, LAMOST_WAVE.size)),
        obsid=[1],
        ra=[0.0],
        dec=[0.0],
        z=[1e-4],
        resolution=1800.0,
    )
    with pytest.raises(ValueError, match="rest frame"):
        gridded_library(ds)


def test_real_miles_stars_give_pairs_defined_where_miles_covers_the_kernel():
    pytest.importorskip("mangadap")
    from lamost2csst.io import read_mangadap_miles

    miles = read_mangadap_miles()
    pick = miles.isel(star=np.flatnonzero((miles.teff.values >= 5000) & (miles.teff.values <= 9750))[:20])
    pairs = training_pairs(pick, snr=40.0, rng=np.random.default_rng(0))
    # the input grid (4000-7000 A) lies inside MILES (3540-7410 A): defined everywhere
    assert not pairs.input_mask.any()
    # targets: defined in the middle, masked in the far UV and the red beyond MILES
    middle = (OUTPUT_WAVE > 3800) & (OUTPUT_WAVE < 7100)
    assert not pairs.target_mask[:, middle].any()
    assert pairs.target_mask[:, OUTPUT_WAVE < 3500].all() and pairs.target_mask[:, OUTPUT_WAVE > 7500].all()
    window = (OUTPUT_WAVE >= 5526) & (OUTPUT_WAVE <= 5586)
    np.testing.assert_allclose(pairs.sed[:, window].mean(axis=1), 1.0, rtol=1e-5)
    # A and F stars are bluer than G stars: scaled flux at 4000 A rises with Teff
    at_4000 = pairs.sed[:, np.argmin(np.abs(OUTPUT_WAVE - 4000))]
    teff = pick.teff.values
    assert np.corrcoef(teff, at_4000)[0, 1] > 0.7


def test_library_parameters_from_a_csv(tmp_path):
    path = tmp_path / "params.csv"
    path.write_text("name,teff,logg,feh,note\n HD 1 ,5770,4.44,0.0,sun\nhd2,9600,3.9,-0.5,\n")
    assert read_library_params(path) == {
        "hd 1": {"teff": 5770.0, "logg": 4.44, "feh": 0.0},
        "hd2": {"teff": 9600.0, "logg": 3.9, "feh": -0.5},
    }
    path.write_text("name,teff,logg\nhd2,9600,3.9\n")
    with pytest.raises(InputError, match="columns"):
        read_library_params(path)
