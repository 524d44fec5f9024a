"""lamost2csst.workflows.evaluation on 16 shipped grid models, with stand-in predictors of known error."""

import json

import numpy as np
import pytest

from lamost2csst.errors import InputError
from lamost2csst.workflows import evaluation
from lamost2csst.workflows.evaluation import evaluation_library, grid_evaluation, split_models

PARAMS = ("teff", "logg", "feh", "alpha")


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    """16 models of the shipped grid, in memory and as a store."""
    import lamost2csst

    ds = lamost2csst.load_grid().isel(model=slice(0, 16)).load()
    path = tmp_path_factory.mktemp("grid") / "grid.zarr"
    ds.to_zarr(path, mode="w", consolidated=False)
    return ds, path


def _params(ds, index):
    return [[float(ds[k].values[i]) for k in PARAMS] for i in index]


def _predicting(monkeypatch, lib, n_snr, *, factor, sigma, aleatoric=None):
    """Replace the network by the truth times ``factor`` with constant sigma (rows in epoch_pairs' order)."""
    truth = np.tile(lib.sed, (n_snr, 1))

    def fake(model, flux, error, *, domain=None):
        assert domain in ("synthetic", "real")
        assert model == "stand-in" and flux.shape[0] == truth.shape[0]
        total = np.full(truth.shape, sigma, np.float32)
        alea = total if aleatoric is None else np.full(truth.shape, aleatoric, np.float32)
        return truth * factor, total, alea

    monkeypatch.setattr(evaluation, "predict_any", fake)
    return truth


def test_a_predictor_that_returns_the_truth_has_zero_error(grid, monkeypatch):
    ds = grid[0].isel(model=slice(0, 10))  # Teff 5000-9000 K, two models per 1000 K step
    lib = evaluation_library(ds)
    truth = _predicting(monkeypatch, lib, 2, factor=1.0, sigma=0.01)
    result = grid_evaluation(
        "stand-in",
        ds,
        snrs=(20.0, 40.0),
        realisations=3,
        seed=1,
        baseline=lambda flux: truth[: flux.shape[0]],
    )
    teffs = sorted(set(lib.teff))
    assert [(r["snr"], r["teff_bin"]) for r in result.rows] == [(s, t) for s in (20.0, 40.0) for t in teffs]
    for row in result.rows:
        assert row["n_star"] == 3 * 2 and row["n_distinct"] == 2  # 2 models per bin x 3 realisations
        for band in ("GU", "GV", "GI"):
            assert row[f"error_{band}"] == 0.0 and row[f"offset_{band}"] == 0.0
            assert row[f"ridge_error_{band}"] == 0.0
            assert row[f"within1sigma_{band}"] == 1.0 and row[f"std_z_{band}"] == 0.0
    assert result.arrays.sed.shape == (3 * 2 * 10, lib.sed.shape[1])
    np.testing.assert_array_equal(result.arrays.star, np.tile(np.arange(10), 6))
    np.testing.assert_array_equal(result.arrays.snr, np.tile(np.repeat([20.0, 40.0], 10), 3))
    summary = [
        (r["snr"], r["band"], r["within1sigma"], r["median_sigma_epistemic"]) for r in result.sigma_summary
    ]
    assert summary == [(s, b, 1.0, 0.0) for s in (20.0, 40.0) for b in ("GU", "GV", "GI")]


def test_a_predictor_two_percent_high_shows_the_offset_and_its_sigma_calibration(grid, monkeypatch):
    """r = +0.02 for every pixel: offset 0.02, error 0; sigma 0.01 never covers it, the ensemble's
    aleatoric part 0.006 neither; epistemic sqrt(0.01^2 - 0.006^2) = 0.008."""
    ds = grid[0].isel(model=slice(0, 10))
    lib = evaluation_library(ds, lamost=True)
    _predicting(monkeypatch, lib, 1, factor=np.float32(1.02), sigma=0.01, aleatoric=0.006)
    for path in ("direct", "lamost"):
        result = grid_evaluation("stand-in", ds, snrs=(30.0,), realisations=2, seed=3, input_path=path)
        for row in result.rows:
            for band in ("GU", "GV", "GI"):
                assert row[f"offset_{band}"] == pytest.approx(0.02, abs=1e-6)
                assert row[f"error_{band}"] == pytest.approx(0.0, abs=1e-6)
                assert row[f"within1sigma_{band}"] == 0.0
        for row in result.sigma_summary:
            assert row["within1sigma"] == row["within1sigma_aleatoric"] == 0.0
            assert row["median_sigma_aleatoric"] == pytest.approx(0.006)
            assert row["median_sigma_epistemic"] == pytest.approx(0.008, rel=1e-5)


def test_realisations_draw_fresh_noise_and_the_seed_fixes_it(grid, monkeypatch):
    ds = grid[0].isel(model=slice(0, 4))
    lib = evaluation_library(ds)
    inputs = []

    def recording(model, flux, error, *, domain=None):
        assert domain == "synthetic"  # the grid test asks for the grid's SED by default
        inputs.append(flux.copy())
        return lib.sed, lib.sed, lib.sed

    monkeypatch.setattr(evaluation, "predict_any", recording)
    grid_evaluation("stand-in", ds, snrs=(20.0,), realisations=2, seed=5)
    grid_evaluation("stand-in", ds, snrs=(20.0,), realisations=1, seed=5)
    grid_evaluation("stand-in", ds, snrs=(20.0,), realisations=1, seed=5, input_path="lamost")
    assert not np.array_equal(inputs[0], inputs[1])  # realisation 1 is another noise draw
    np.testing.assert_array_equal(inputs[0], inputs[2])  # same seed, same realisation 0
    assert not np.array_equal(inputs[2], inputs[3])  # the LAMOST path has its own input


def test_split_models_selects_the_split_from_the_card_or_a_split_file(grid, tmp_path):
    ds, path = grid
    split = {"test": _params(ds, [1, 5, 9]), "train": _params(ds, [0, 2, 3, 4, 6])}
    test, train = split_models({"split": split}, grid=[path])
    assert list(test["teff"].values) == list(ds["teff"].values[[1, 5, 9]])
    assert list(train["teff"].values) == list(ds["teff"].values[[0, 2, 3, 4, 6]])
    (tmp_path / "split.json").write_text(json.dumps({"test": split["train"], "train": split["test"]}))
    test, train = split_models({"split": split}, grid=[path], split=tmp_path / "split.json")  # the file wins
    assert test.sizes["model"] == 5 and train.sizes["model"] == 3


def test_split_models_refuses_what_the_user_must_fix(grid):
    ds, path = grid
    with pytest.raises(InputError, match="no training split"):
        split_models({}, grid=[path])
    missing = {"test": _params(ds, [1]) + [[4321.0, 4.0, 0.0, 0.0]], "train": _params(ds, [0])}
    with pytest.raises(InputError, match="1 test models of the split are not in the grid"):
        split_models({"split": missing}, grid=[path])
