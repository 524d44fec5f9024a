"""Training: split by model, epoch data, determinism, resume = uninterrupted run, it learns."""

import json

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from lamost2csst.core.grids import BANDS, OUTPUT_WAVE, band_pixels
from lamost2csst.nn.model import build_uaranet
from lamost2csst.nn.training import (
    LibraryArrays,
    TrainConfig,
    epoch_pairs,
    split_by_model,
    train,
    validation_metrics,
)


@pytest.fixture(scope="module")
def lib():
    import lamost2csst
    from lamost2csst.io.training import gridded_library

    ds = lamost2csst.load_grid().isel(model=slice(0, 24))
    g = gridded_library(ds)
    return LibraryArrays(
        g.flux_in.astype("float32"),
        g.input_mask,
        g.sed.astype("float32"),
        g.target_mask,
        ds.teff.values,
        ds.flux_lamost.values,
    )


def test_split_by_model_is_a_disjoint_3_to_1_partition():
    train_idx, test_idx = split_by_model(100, seed=5)
    assert len(test_idx) == 25 and len(train_idx) == 75
    assert set(train_idx).isdisjoint(test_idx) and set(train_idx) | set(test_idx) == set(range(100))
    again = split_by_model(100, seed=5)
    np.testing.assert_array_equal(again[1], test_idx)
    assert not np.array_equal(split_by_model(100, seed=6)[1], test_idx)
    with pytest.raises(ValueError):
        split_by_model(1)


def test_epoch_pairs_every_star_at_every_snr_with_eq1_noise(lib):
    data = epoch_pairs(lib, snrs=(20.0, 40.0), rng=np.random.default_rng(0))
    n = len(lib)
    assert data.flux.shape == (2 * n, 2238)
    np.testing.assert_array_equal(data.star, np.tile(np.arange(n), 2))
    np.testing.assert_array_equal(data.snr, np.repeat([20.0, 40.0], n))
    # normalized errors ~ 1/snr (error = F/snr divided by a continuum close to F)
    ratio = np.median(data.error[data.snr == 20]) / np.median(data.error[data.snr == 40])
    assert ratio == pytest.approx(2.0, rel=0.05)
    # fresh noise per rng, same noise for the same seed
    other = epoch_pairs(lib, snrs=(20.0, 40.0), rng=np.random.default_rng(1))
    same = epoch_pairs(lib, snrs=(20.0, 40.0), rng=np.random.default_rng(0))
    assert not np.array_equal(other.flux, data.flux)
    np.testing.assert_array_equal(same.flux, data.flux)


def test_epoch_pairs_through_the_lamost_path(lib):
    data = epoch_pairs(lib, snrs=(20.0, 40.0), rng=np.random.default_rng(0), input_path="lamost")
    direct = epoch_pairs(lib, snrs=(20.0, 40.0), rng=np.random.default_rng(0))
    n = len(lib)
    assert data.flux.shape == (2 * n, 2238) and np.isfinite(data.flux).all() and np.isfinite(data.error).all()
    np.testing.assert_array_equal(data.sed, direct.sed)  # the targets do not depend on the input path
    # S/N per LAMOST pixel: errors still scale as 1/snr, and are smaller than 1/snr on the
    # wider network pixels (each averages parts of two or three LAMOST pixels)
    e20, e40 = (np.median(data.error[data.snr == s]) for s in (20.0, 40.0))
    assert e20 / e40 == pytest.approx(2.0, rel=0.05)
    assert 1.1 < 1 / (20 * e20) < 1.5
    # clean flux: the noise-free spectra through the same path are close to the direct ones
    # (the path smooths line profiles a little; it does not shift or rescale them)
    assert np.median(np.abs(data.flux - direct.flux)) < 0.05
    same = epoch_pairs(lib, snrs=(20.0, 40.0), rng=np.random.default_rng(0), input_path="lamost")
    np.testing.assert_array_equal(same.flux, data.flux)
    with pytest.raises(ValueError, match="flux_lamost"):
        epoch_pairs(
            LibraryArrays(*tuple(lib)[:5]), snrs=(20.0,), rng=np.random.default_rng(0), input_path="lamost"
        )
    with pytest.raises(ValueError, match="input_path"):
        epoch_pairs(lib, snrs=(20.0,), rng=np.random.default_rng(0), input_path="slitless")
    with pytest.raises(ValueError, match="input_path"):
        TrainConfig(input_path="slitless")
    assert lib.take([0, 2]).flux_lamost.shape == (2, lib.flux_lamost.shape[1])
    assert LibraryArrays(*tuple(lib)[:5]).take([0]).flux_lamost is None


def test_mask_augmentation_fills_masked_pixels(lib):
    from lamost2csst.nn.inference import MASKED_ERROR

    data = epoch_pairs(lib, snrs=(30.0,), rng=np.random.default_rng(2), mask_augment=1.0, max_masked_span=50)
    filled = data.error == MASKED_ERROR
    assert filled.any(axis=1).mean() > 0.5
    assert np.all(data.flux[filled] == 1.0)


def test_validation_metrics_on_known_residuals():
    rng = np.random.default_rng(0)
    n = 4000
    true = np.ones((n, OUTPUT_WAVE.size))
    r = rng.normal(0.01, 0.02, true.shape)
    metrics = validation_metrics(
        true, np.zeros(true.shape, bool), true * (1 + r), np.full(true.shape, 0.02), snr=np.full(n, 20.0)
    )
    from scipy.stats import norm

    # r/sigma ~ N(0.5, 1): P(|r/sigma| < 1) = Phi(0.5) - Phi(-1.5)
    expected_within = norm.cdf(0.5) - norm.cdf(-1.5)
    for band in BANDS:
        assert metrics[f"error_snr20_{band}"] == pytest.approx(0.02, rel=0.05)
        assert metrics[f"offset_snr20_{band}"] == pytest.approx(0.01, abs=0.002)
        assert metrics[f"within1sigma_snr20_{band}"] == pytest.approx(expected_within, abs=0.01)
    assert band_pixels(OUTPUT_WAVE, BANDS["GU"]).any()


def _weights(model):
    return [w.copy() for w in model.get_weights()]


def _run(lib, tmp_path, name, resume=False, model=None, epochs=4, batch_size=32):
    cfg = TrainConfig(
        epochs=epochs, batch_size=batch_size, validate_every=2, snrs=(20.0, 40.0), seed=11, mask_augment=0.5
    )
    tr, te = split_by_model(len(lib), seed=0)
    sed0 = np.exp(np.mean(np.log(lib.sed[tr]), axis=0))
    import keras

    if model is None:
        keras.utils.set_random_seed(11)
        model = build_uaranet(sed_bias=sed0)
    return train(model, lib.take(tr), lib.take(te), config=cfg, run_dir=tmp_path / name, resume=resume)


def test_deterministic_and_resume_equals_uninterrupted(lib, tmp_path, monkeypatch):
    model_a, summary_a = _run(lib, tmp_path, "a")
    model_b, _ = _run(lib, tmp_path, "b")
    for wa, wb in zip(_weights(model_a), _weights(model_b)):
        np.testing.assert_array_equal(wa, wb)

    # Interrupt run c after its first validation (epoch 2) by failing in the progress hook.
    from lamost2csst.nn import training as training_module

    original = training_module.epoch_pairs
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:  # validation set + 2 epochs done, third epoch -> crash
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(training_module, "epoch_pairs", flaky)
    with pytest.raises(KeyboardInterrupt):
        _run(lib, tmp_path, "c")
    monkeypatch.setattr(training_module, "epoch_pairs", original)
    state = json.loads((tmp_path / "c" / "state.json").read_text())
    assert state["epoch"] == 2
    model_c, summary_c = _run(lib, tmp_path, "c", resume=True)
    assert summary_c["epoch"] == 4 and summary_c["passes"] == summary_a["passes"]
    for wa, wc in zip(_weights(model_a), _weights(model_c)):
        np.testing.assert_allclose(wa, wc, rtol=1e-5, atol=1e-6)
    history = [json.loads(line) for line in (tmp_path / "c" / "history.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [2, 4]


def test_epoch_noise_depends_on_seed_and_epoch_only(lib, tmp_path, monkeypatch):
    """The noisy spectra of every epoch are the same whatever the batch size (the "chunking" of training)."""
    from lamost2csst.nn import training as training_module

    original, seen = training_module.epoch_pairs, {}

    def recording(*args, **kwargs):
        data = original(*args, **kwargs)
        seen.setdefault(kwargs.get("mask_augment", 0.0) > 0 and "train" or "val", []).append(data)
        return data

    monkeypatch.setattr(training_module, "epoch_pairs", recording)
    runs = {}
    for batch_size in (8, 64):
        seen.clear()
        _run(lib, tmp_path, f"batch{batch_size}", epochs=2, batch_size=batch_size)
        runs[batch_size] = dict(seen)
    for kind in ("train", "val"):
        assert len(runs[8][kind]) == len(runs[64][kind]) == (2 if kind == "train" else 1)
        for a, b in zip(runs[8][kind], runs[64][kind]):
            for name in ("flux", "error", "sed", "target_mask"):
                np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    # and the two epochs differ (fresh Eq. 1 noise every epoch)
    assert not np.array_equal(runs[8]["train"][0].flux, runs[8]["train"][1].flux)


def test_refuses_to_overwrite_a_run_and_a_changed_config(lib, tmp_path):
    _run(lib, tmp_path, "d")
    with pytest.raises(FileExistsError):
        _run(lib, tmp_path, "d")
    tr, te = split_by_model(len(lib), seed=0)
    with pytest.raises(ValueError, match="different training config"):
        train(
            build_uaranet(),
            lib.take(tr),
            lib.take(te),
            config=TrainConfig(epochs=9),
            run_dir=tmp_path / "d",
            resume=True,
        )


def test_training_fits_a_few_stars(lib, tmp_path):
    """Optimization works end to end: a few stars are fit far better than by the start SED."""
    import keras

    from lamost2csst.nn.inference import predict

    keras.utils.set_random_seed(0)
    few = lib.take(np.arange(0, 24, 4))  # 6 stars, 5000-9000 K
    model = build_uaranet(sed_bias=np.exp(np.mean(np.log(few.sed), axis=0)))
    # ~500 steps of plateau (zero-kernel heads, the trunk finding features), then a fast fit (measured).
    cfg = TrainConfig(
        epochs=800,
        batch_size=6,
        validate_every=800,
        snrs=(100.0,),
        val_snrs=(100.0,),
        seed=0,
        mask_augment=0.0,
        learning_rate=2e-3,
        lr_min=2e-3,
    )
    val = epoch_pairs(few, snrs=(100.0,), rng=np.random.default_rng(1))
    before = validation_metrics(
        val.sed, val.target_mask, *predict(val.flux, val.error, model=model), snr=val.snr
    )
    model, _ = train(model, few, few, config=cfg, run_dir=tmp_path / "e")
    after = validation_metrics(
        val.sed, val.target_mask, *predict(val.flux, val.error, model=model), snr=val.snr
    )
    for band in BANDS:
        assert after[f"error_snr100_{band}"] < 0.5 * before[f"error_snr100_{band}"], (band, before, after)


def test_clipnorm_reaches_the_optimizer_and_history_tracks_the_error_branch(lib, tmp_path):
    import keras

    tr, te = split_by_model(len(lib), seed=0)
    cfg = TrainConfig(epochs=2, batch_size=32, validate_every=2, seed=0, clipnorm=0.5)
    model, _ = train(build_uaranet(), lib.take(tr), lib.take(te), config=cfg, run_dir=tmp_path / "clip")
    saved = keras.saving.load_model(tmp_path / "clip" / "checkpoint.keras", compile=True, safe_mode=True)
    assert saved.optimizer.clipnorm == 0.5
    (entry,) = [json.loads(line) for line in (tmp_path / "clip" / "history.jsonl").read_text().splitlines()]
    # the history records the error branch of the trained model on the validation spectra (one fixed
    # noise realisation per validation SNR, drawn from [seed, 1, 2, 3])
    from lamost2csst.nn.diagnostics import error_branch_response

    val = epoch_pairs(lib.take(te), snrs=cfg.val_snrs, rng=np.random.default_rng([cfg.seed, 1, 2, 3]))
    branch = error_branch_response(model, val.flux, val.error)
    assert entry["error_branch_active_units"] == branch["active_units"]
    assert entry["error_branch_sigma_ratio"] == pytest.approx(branch["sigma_ratio_median"], abs=1e-4)
    with pytest.raises(ValueError, match="clipnorm"):
        TrainConfig(clipnorm=0.0)


def test_training_through_the_lamost_path_records_it(lib, tmp_path):
    tr, te = split_by_model(len(lib), seed=0)
    cfg = TrainConfig(epochs=2, batch_size=32, validate_every=2, seed=0, input_path="lamost")
    _, summary = train(build_uaranet(), lib.take(tr), lib.take(te), config=cfg, run_dir=tmp_path / "lp")
    assert summary["epoch"] == 2 and summary["passes"] == 2 * 5 * len(tr)
    state = json.loads((tmp_path / "lp" / "state.json").read_text())
    assert state["config"]["input_path"] == "lamost"
    (entry,) = [json.loads(line) for line in (tmp_path / "lp" / "history.jsonl").read_text().splitlines()]
    assert np.isfinite(entry["val_nll"])


def test_a_run_started_before_a_setting_existed_still_resumes(lib, tmp_path):
    """A state.json without a newer TrainConfig field (e.g. clipnorm) resumes while it has its default."""
    _run(lib, tmp_path, "old")
    state_path = tmp_path / "old" / "state.json"
    state = json.loads(state_path.read_text())
    del state["config"]["clipnorm"]
    state_path.write_text(json.dumps(state))
    _, summary = _run(lib, tmp_path, "old", resume=True)
    assert summary["epoch"] == 4


def test_replay_draws_the_configured_rows_of_the_replay_library(lib, tmp_path):
    """Fine-tuning with replay: each epoch trains on (1 + replay) x the training rows; the replay
    rows come from the replay library at the replay SNRs, and the real rows keep the masked target."""
    from lamost2csst.nn.training import _replay_pairs

    real = lib.take(slice(0, 6))
    masked = real.target_mask.copy()
    masked[:, 300:] = True  # a real library that covers only part of the output grid
    real = real.replace(target_mask=masked, sed=np.where(masked, np.nan, real.sed).astype("float32"))
    grid = lib.take(slice(6, 24))
    cfg = TrainConfig(
        epochs=2, batch_size=16, validate_every=2, snrs=(30.0, 100.0), replay=0.5, replay_snrs=(20.0, 40.0)
    )
    rows = epoch_pairs(real, snrs=cfg.snrs, rng=np.random.default_rng(0)).flux.shape[0]
    rep = _replay_pairs(grid, rows, config=cfg, rng=np.random.default_rng(1))
    assert rep.flux.shape[0] == round(0.5 * rows) == 6
    assert sorted(np.unique(rep.snr)) == [20.0, 40.0]
    assert not rep.target_mask[:, 300:].all()  # the replay rows carry what the real stars lack
    _, summary = train(build_uaranet(), real, real, config=cfg, run_dir=tmp_path / "replay", replay_lib=grid)
    assert summary["passes"] == 2 * (rows + 6)
    with pytest.raises(ValueError, match="replay_lib"):
        train(build_uaranet(), real, real, config=cfg, run_dir=tmp_path / "none")
    with pytest.raises(ValueError, match="replay"):
        TrainConfig(replay=-1.0)


def test_real_branch_training_changes_the_branch_alone(lib, tmp_path):
    """Real-star rows carry domain 1; with trainable="real" every weight but the real-star
    branch's stays bit for bit (so the synthetic SED is the grid-trained one); a model without
    the domain input is refused."""
    from lamost2csst.nn.inference import predict
    from lamost2csst.nn.model import ModelConfig

    real = lib.take(slice(0, 6))
    cfg = TrainConfig(epochs=2, batch_size=4, validate_every=2, snrs=(30.0,), domain="real", trainable="real")
    data = epoch_pairs(real, snrs=(30.0,), rng=np.random.default_rng(0), domain="real")
    assert data.domain.tolist() == [1.0] * 6
    with pytest.raises(ValueError, match="domain input"):
        train(build_uaranet(), real, real, config=cfg, run_dir=tmp_path / "plain")
    model = build_uaranet(ModelConfig(domain_input=True))
    before = {layer.name: _weights(layer) for layer in model.layers if layer.get_weights()}
    synthetic0, _ = predict(data.flux, data.error, model=model, domain="synthetic")
    model, summary = train(model, real, real, config=cfg, run_dir=tmp_path / "both")
    assert summary["passes"] == 2 * 6
    for layer in model.layers:
        if layer.name not in before:
            continue
        same = all(np.array_equal(a, b) for a, b in zip(before[layer.name], layer.get_weights()))
        assert same != layer.name.startswith("fc_real_"), layer.name
    synthetic, _ = predict(data.flux, data.error, model=model, domain="synthetic")
    np.testing.assert_array_equal(synthetic, synthetic0)
    with pytest.raises(ValueError, match="domain must be one of"):
        TrainConfig(domain="grid")
    with pytest.raises(ValueError, match="trainable must be one of"):
        TrainConfig(trainable="heads")
