"""The domain check's templates and the shipped synthetic sets around the domain."""

import numpy as np
import pytest

import lamost2csst
from lamost2csst.core import normalize
from lamost2csst.io.domain import REFERENCE_DIR, domain_templates, load_domain_test_set
from lamost2csst.nn.inference import model_card


@pytest.fixture(scope="module")
def shipped():
    card = model_card()
    return card, domain_templates(train_keys=card["split"]["train"])


def test_templates_are_the_training_models_and_the_reference_set(shipped):
    card, t = shipped
    grid, reference = lamost2csst.load_grid(), lamost2csst.load_grid(REFERENCE_DIR)
    n_train = len(card["split"]["train"])
    assert t.flux.shape == (n_train + reference.sizes["model"], 2238 // 8)
    assert t.provenance["grid_models"] == n_train
    assert t.provenance["reference_models"] == reference.sizes["model"]
    # one training model, normalized and binned by hand
    key = np.round(card["split"]["train"][0], 3)
    at = np.flatnonzero(
        np.all(np.round(np.stack([grid[p].values for p in ("teff", "logg", "feh", "alpha")], 1), 3) == key, 1)
    )[0]
    norm, _ = normalize(grid.flux_in.values[at].astype(np.float64))
    by_hand = norm[: 279 * 8].reshape(279, 8).mean(axis=1)
    row = np.flatnonzero(np.isclose(t.teff, key[0]) & np.all(np.isclose(t.flux, by_hand, rtol=1e-12), axis=1))
    assert row.size == 1
    # no test-split model is a template
    test_keys = {tuple(k) for k in np.round(card["split"]["test"], 3)}
    assert not any(np.allclose(t.flux, f) for f in _binned(grid, test_keys)[:5])
    # the quantization: the median ln step of the grid's Teff values (250 K steps), / sqrt(12)
    teffs = np.unique(grid.teff.values)
    assert t.quantization == pytest.approx(np.median(np.diff(np.log(teffs))) / np.sqrt(12))


def _binned(grid, keys):
    params = np.round(np.stack([grid[p].values for p in ("teff", "logg", "feh", "alpha")], 1), 3)
    rows = [i for i, k in enumerate(map(tuple, params)) if k in keys]
    norm, _ = normalize(grid.flux_in.values[rows].astype(np.float64))
    return norm[:, : 279 * 8].reshape(len(rows), 279, 8).mean(axis=2)


def test_reference_and_test_sets_lie_outside_the_domain_and_do_not_overlap():
    reference, test = lamost2csst.load_grid(REFERENCE_DIR), load_domain_test_set()
    for ds in (reference, test):
        teff = ds.teff.values
        assert np.all((teff < 4750) | (teff > 10000))
        assert np.all(np.isfinite(ds.flux_in.values)) and np.all(np.isfinite(ds.flux_lamost.values))

    def keys(ds):
        return {tuple(k) for k in np.stack([ds[p].values for p in ("teff", "logg", "feh", "alpha")], 1)}

    assert not keys(reference) & keys(test)
    assert np.any(test.teff.values <= 4500) and np.any(test.teff.values >= 11000)


def test_unknown_training_models_are_refused():
    with pytest.raises(ValueError, match="1 training models of the model card are not in the grid"):
        domain_templates(train_keys=[[5000.0, 4.0, 0.0, 0.0], [1234.0, 4.0, 0.0, 0.0]])
