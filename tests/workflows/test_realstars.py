"""Real-star fine-tuning: folds by star, out-of-fold predictions, the discrepancy in the final card."""

import dataclasses
import json

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from lamost2csst.errors import InputError
from lamost2csst.workflows.realstars import RealStars, _validation_part, cross_validate_real_stars, star_folds


def test_star_folds_partition_the_stars_evenly_and_reproducibly():
    fold = star_folds(23, n_folds=5, seed=1)
    counts = np.bincount(fold)
    assert counts.sum() == 23 and counts.max() - counts.min() <= 1 and counts.size == 5
    assert np.array_equal(fold, star_folds(23, n_folds=5, seed=1))
    assert not np.array_equal(fold, star_folds(23, n_folds=5, seed=2))
    with pytest.raises(InputError, match="n_folds"):
        star_folds(3, n_folds=5)


def test_validation_part_is_a_seeded_fraction():
    val = _validation_part(40, fraction=0.15, seed=3)
    assert val.sum() == 6 and np.array_equal(val, _validation_part(40, fraction=0.15, seed=3))


@pytest.fixture(scope="module")
def small_real():
    """Grid test models standing in for a real library that covers only 3500-7500 A."""
    import lamost2csst
    from lamost2csst.core.grids import OUTPUT_WAVE
    from lamost2csst.io.training import gridded_library
    from lamost2csst.nn.inference import model_card
    from lamost2csst.workflows.evaluation import _keys

    ds = lamost2csst.load_grid()
    test_keys = set(_keys(model_card()["split"]["test"]))
    keys = _keys(np.stack([ds[k].values.astype(float) for k in ("teff", "logg", "feh", "alpha")], axis=1))
    ds = ds.isel(model=np.flatnonzero([k in test_keys for k in keys])[:12])
    g = gridded_library(ds)
    outside = (OUTPUT_WAVE < 3500) | (OUTPUT_WAVE > 7500)
    mask = g.target_mask | outside[None, :]
    lib = g.replace(
        flux_in=g.flux_in.astype("float32"),
        sed=np.where(mask, np.nan, g.sed).astype("float32"),
        target_mask=mask,
        teff=ds.teff.values.astype(float),
        flux_lamost=None,
    )
    names = np.array([f"star{i}" for i in range(len(lib))])
    params = np.stack([ds[k].values.astype(float) for k in ("teff", "logg", "feh")], axis=1)
    return RealStars(lib, names, params, {"library": "test"})


OPTS = {"discrepancy_options": {"min_values": 10, "min_stars": 3, "n_classes": 1}}


@pytest.mark.slow  # four short fine-tuning runs: ~5 min on 2 busy cores
def test_cross_validation_predicts_every_star_out_of_fold(small_real, tmp_path, monkeypatch):
    from lamost2csst.nn.inference import model_card
    from lamost2csst.nn.training import TrainConfig
    from lamost2csst.workflows import realstars

    seen = []
    real_fine_tune = realstars._fine_tune

    def spy(init, train_lib, val_lib, replay_lib, **kw):
        seen.append((kw["run_dir"].name, {float(t) for t in train_lib.teff}, len(val_lib)))
        return real_fine_tune(init, train_lib, val_lib, replay_lib, **kw)

    monkeypatch.setattr(realstars, "_fine_tune", spy)
    cfg = TrainConfig(epochs=1, batch_size=16, snrs=(50.0,), val_snrs=(100.0,), validate_every=1, replay=0.5)
    out = tmp_path / "cv"
    result = cross_validate_real_stars(
        out=out, config=cfg, n_folds=3, seed=4, real=small_real, val_fraction=0.2, **OPTS
    )
    fold = star_folds(12, n_folds=3, seed=4)
    assert [s[0] for s in seen] == ["fold-0", "fold-1", "fold-2", "final"]
    oof = np.load(out / "oof.npz")
    assert np.array_equal(oof["fold"], fold)
    # every star has out-of-fold residuals where it has truth, none outside its coverage
    assert np.all(np.isfinite(oof["residual"]) == ~small_real.library.target_mask)
    assert result["n_folds"] == 3 and set(result["folds"]) == set(small_real.names)
    card = model_card(out / "final" / "best.keras")
    assert len(card["sigma_sys"]["scale"]) == 574 and card["real_star_cv"]["n_folds"] == 3
    assert json.loads((out / "crossval.json").read_text())["seed"] == 4
    # a second call finds every run finished and trains nothing
    seen.clear()
    cross_validate_real_stars(
        out=out, config=cfg, n_folds=3, seed=4, real=small_real, val_fraction=0.2, **OPTS
    )
    assert [s[0] for s in seen] == ["fold-0", "fold-1", "fold-2", "final"]  # called, but returned at once


def test_a_rerun_keeps_the_recorded_stars_and_refuses_others(small_real, tmp_path):
    from lamost2csst.workflows.realstars import _run_stars

    first = _run_stars(tmp_path, small_real, seed=0)
    assert first is small_real
    assert json.loads((tmp_path / "stars.json").read_text())["names"] == list(small_real.names)
    assert _run_stars(tmp_path, small_real, seed=0) is small_real
    other = RealStars(small_real.library, small_real.names[::-1], small_real.params, {})
    with pytest.raises(InputError, match="other real stars"):
        _run_stars(tmp_path, other, seed=0)


def test_sigma_only_keeps_the_weights_and_covers_its_own_stars_nested(small_real, tmp_path):
    """--sigma-only: the final model is a byte copy of the initial one; its card's sigma_sys makes the
    total sigma cover the real stars (nested over folds) where the network's sigma alone does not."""
    from lamost2csst.nn.inference import default_model_path, model_card, model_discrepancy
    from lamost2csst.workflows.realstars import fit_model_discrepancy

    # the grid models stand in for real stars: give them a real-star-like 3 % error the network cannot know
    rng = np.random.default_rng(8)
    lib = small_real.library
    warped = lib.sed * (1 + 0.03 * rng.standard_normal(lib.sed.shape)).astype("float32")
    real = RealStars(lib.replace(sed=warped), small_real.names, small_real.params, {"library": "test"})
    opts = {"min_values": 10, "min_stars": 3, "n_classes": 1}  # 12 stars: too few for colour classes
    result = fit_model_discrepancy(out=tmp_path, n_folds=3, seed=1, real=real, discrepancy_options=opts)
    final = tmp_path / "final" / "best.keras"
    assert final.read_bytes() == default_model_path().read_bytes()
    assert model_card(final)["sha256"] == model_card()["sha256"]
    d = model_discrepancy(final)
    assert d.fitted.any() and np.all(d.scale == 1)  # floor only
    assert (
        0.01 < np.median(d.floor[d.fitted]) < 0.06
    )  # the planted 3 % scatter, per-bin quantiles of 12 stars
    for band in ("GU", "GV", "GI"):
        assert result["oof_within1sigma_net"][band] < 0.4
        assert 0.45 < result["oof_within1sigma_total_nested"][band] < 0.9


def test_real_stars_names_its_libraries():
    from lamost2csst.workflows.realstars import real_stars

    with pytest.raises(InputError, match="miles"):
        real_stars(("ngsl",))


def test_a_run_from_a_model_with_a_branch_starts_like_one_from_its_grid_network():
    """The branch is replaced by a fresh one seeded by the run's seed alone: starting from the
    shipped model (which has a branch) or from its grid network gives the same start."""
    from lamost2csst.nn.inference import load_model, model_card
    from lamost2csst.nn.model import ModelConfig, add_domain_input, grid_network
    from lamost2csst.workflows.realstars import _with_domain_input

    card = model_card()
    config = dataclasses.replace(ModelConfig.from_dict(card["model_config"]), domain_input=False)
    shipped = load_model()
    plain = grid_network(shipped, config) if shipped.inputs and len(shipped.inputs) == 3 else shipped
    with_branch = add_domain_input(plain, config)
    kernel, bias = with_branch.get_layer("fc_real_2").get_weights()
    with_branch.get_layer("fc_real_2").set_weights([kernel + 0.5, bias])  # a "trained" branch
    a, _ = _with_domain_input(plain, {**card["model_config"], "domain_input": False}, domain="real", seed=3)
    b, cfg = _with_domain_input(
        with_branch, {**card["model_config"], "domain_input": True}, domain="real", seed=3
    )
    assert cfg["domain_input"] is True
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)


def test_sigma_only_refuses_a_model_trained_on_the_same_library(small_real, tmp_path):
    """The shipped model's branch saw the MILES stars: their residuals would be in-sample."""
    from lamost2csst.workflows.realstars import fit_model_discrepancy

    as_miles = RealStars(small_real.library, small_real.names, small_real.params, {"library": "miles"})
    with pytest.raises(InputError, match="trained on miles stars"):
        fit_model_discrepancy(out=tmp_path, n_folds=3, seed=1, real=as_miles)
