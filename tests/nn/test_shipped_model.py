"""The model shipped in the package: loads safely, and predicts unseen grid models as measured."""

import numpy as np
import pytest

pytest.importorskip("tensorflow")

import lamost2csst
from lamost2csst.core.grids import BANDS, OUTPUT_WAVE, band_pixels
from lamost2csst.nn.inference import default_model_path, model_card, model_hash


def test_shipped_model_file_and_card_agree():
    path = default_model_path()
    card = model_card(path)
    assert card["sha256"] == model_hash(path)
    assert card["stage"] == "pretrain" and card["split"]["test"]
    assert path.stat().st_size < 5_000_000  # float32 weights, no optimizer state


def test_shipped_model_predicts_its_test_models():
    """Test-split grid models (never trained on) at SNR 80: GV residuals at the 0.2 % level."""
    from lamost2csst.io.training import gridded_library
    from lamost2csst.nn.training import LibraryArrays, epoch_pairs

    card = model_card()
    ds = lamost2csst.load_grid()
    params = np.stack([ds[k].values for k in ("teff", "logg", "feh", "alpha")], axis=1)
    test = {tuple(np.round(p, 4)) for p in card["split"]["test"]}
    pick = np.flatnonzero([tuple(np.round(p, 4)) in test for p in params])[:12]
    g = gridded_library(ds.isel(model=pick))
    lib = LibraryArrays(g.flux_in, g.input_mask, g.sed, g.target_mask, ds.teff.values[pick])
    data = epoch_pairs(lib, snrs=(80.0,), rng=np.random.default_rng(0))
    sed, sigma = lamost2csst.predict(data.flux, data.error)
    r = (sed - data.sed) / data.sed
    gv = band_pixels(OUTPUT_WAVE, BANDS["GV"])
    # measured 2026-12-07 (this computation): 0.00175; seeds 0-4 give 0.0014-0.0018, all 506 test
    # models 0.0016. The bound leaves 1.7x headroom (other TF builds, BLAS summation orders).
    assert np.median(np.abs(r[:, gv])) < 0.003
    assert np.all(sigma > 0) and np.all(np.isfinite(sed))
