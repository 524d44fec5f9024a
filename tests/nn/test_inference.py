"""predict/load_model/save_model: validation of inputs, masked pixels, safe round trip."""

import json

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from lamost2csst.nn.inference import (
    MASKED_ERROR,
    load_model,
    model_card,
    model_hash,
    predict,
    prepare_network_arrays,
    save_model,
)
from lamost2csst.nn.model import build_uaranet


@pytest.fixture(scope="module")
def model():
    import keras

    keras.utils.set_random_seed(3)
    m = build_uaranet(sed_bias=np.linspace(0.2, 1.5, 574))
    # Non-zero head kernels so that the output depends on the input.
    for name in ("sed", "fc_err_3"):
        layer = m.get_layer(name)
        kernel, bias = layer.get_weights()
        layer.set_weights([np.random.default_rng(0).normal(0, 0.05, kernel.shape).astype("float32"), bias])
    return m


def _inputs(n=5, seed=0):
    rng = np.random.default_rng(seed)
    flux = (1 + 0.05 * rng.standard_normal((n, 2238))).astype("float32")
    error = np.full((n, 2238), 0.03, "float32")
    return flux, error


def test_predict_shapes_dtypes_and_positive_sigma(model):
    flux, error = _inputs()
    sed, sigma = predict(flux, error, model=model, batch_size=2)  # uneven last batch
    assert sed.shape == sigma.shape == (5, 574)
    assert sed.dtype == sigma.dtype == np.float32
    assert np.all(sigma > 0) and np.all(np.isfinite(sed))
    # Batching does not change results: the same rows alone give the same numbers.
    sed_one, sigma_one = predict(flux[3:4], error[3:4], model=model)
    np.testing.assert_allclose(sed_one[0], sed[3], rtol=1e-5)
    np.testing.assert_allclose(sigma_one[0], sigma[3], rtol=1e-5)


def test_masked_pixels_are_replaced_not_used(model):
    flux, error = _inputs(2)
    mask = np.zeros(flux.shape, bool)
    mask[:, 100:150] = True
    ref = predict(np.where(mask, 1.0, flux), np.where(mask, MASKED_ERROR, error), model=model)
    junk_flux = np.where(mask, np.nan, flux)
    junk_error = np.where(mask, -5.0, error)
    got = predict(junk_flux, junk_error, mask=mask, model=model)
    np.testing.assert_array_equal(got[0], ref[0])
    np.testing.assert_array_equal(got[1], ref[1])


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nonfinite_unmasked_input_is_an_error(model, bad):
    flux, error = _inputs(3)
    flux[1, 7] = bad
    with pytest.raises(ValueError, match="row 1"):
        predict(flux, error, model=model)


def test_nonpositive_error_is_an_error(model):
    flux, error = _inputs(2)
    error[0, 0] = 0.0
    with pytest.raises(ValueError, match="error <= 0"):
        predict(flux, error, model=model)


@pytest.mark.parametrize("shape", [(2238,), (3, 2000), (3, 2238, 1)])
def test_wrong_shapes_are_errors(model, shape):
    with pytest.raises(ValueError, match="INPUT_WAVE"):
        predict(np.ones(shape), np.ones(shape), model=model)


def test_mismatched_and_bad_mask():
    flux, error = _inputs(2)
    with pytest.raises(ValueError, match="differ"):
        prepare_network_arrays(flux, error[:1])
    with pytest.raises(ValueError, match="boolean"):
        prepare_network_arrays(flux, error, mask=np.zeros(flux.shape, int))


def test_empty_input_gives_empty_output(model):
    sed, sigma = predict(np.ones((0, 2238)), np.ones((0, 2238)), model=model)
    assert sed.shape == sigma.shape == (0, 574)


def test_save_load_round_trip_is_safe_and_exact(model, tmp_path):
    path = save_model(model, tmp_path / "m.keras", card={"note": "test"})
    card = model_card(path)
    assert card["note"] == "test" and card["sha256"] == model_hash(path)
    loaded = load_model(path)
    flux, error = _inputs(4, seed=1)
    a = predict(flux, error, model=model)
    b = predict(flux, error, model=path)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert load_model(path) is loaded  # cached per process
    fresh = load_model(path, fresh=True)  # a copy to change, outside the cache
    assert fresh is not loaded and load_model(path) is loaded
    for w_fresh, w_loaded in zip(fresh.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(w_fresh, w_loaded)
    # The archive holds JSON config + HDF5 weights only (no pickled Python objects).
    import zipfile

    names = set(zipfile.ZipFile(path).namelist())
    assert names <= {"config.json", "metadata.json", "model.weights.h5", "assets/"}
    assert "lambda" not in json.dumps(json.loads(zipfile.ZipFile(path).read("config.json"))).lower()


def test_a_model_file_carrying_code_is_refused(tmp_path, monkeypatch):
    """Safe loading: a .keras file with a Lambda layer (arbitrary Python) is never executed."""
    import keras

    ran = tmp_path / "the-lambda-ran"
    inputs = keras.Input((3,))
    # The code leaves a trace on disk whenever it runs (building the model runs it once).
    monkeypatch.setenv("LAMOST2CSST_TEST_TRACE", str(ran))
    outputs = keras.layers.Lambda(
        lambda x: (open(__import__("os").environ["LAMOST2CSST_TEST_TRACE"], "w").close(), x * 2.0)[1]
    )(inputs)
    path = tmp_path / "lambda.keras"
    keras.Model(inputs, outputs).save(path)
    ran.unlink()
    with pytest.raises(ValueError, match="refusing to load a model file that carries Python code"):
        load_model(path)
    with pytest.raises(ValueError, match="carries Python code"):
        predict(*_inputs(1, seed=0), model=path)
    assert not ran.exists()
    # The probe works: an unsafe load does run the file's code.
    keras.saving.load_model(path, safe_mode=False)
    assert ran.exists()


def test_load_model_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no model file"):
        load_model(tmp_path / "missing.keras")
    other = tmp_path / "weights.h5"
    other.write_bytes(b"x")
    with pytest.raises(ValueError, match=".keras"):
        load_model(other)


def test_compiled_and_numpy_network_arrays_agree(monkeypatch):
    from lamost2csst.core import _compiled
    from lamost2csst.nn.inference import MASKED_ERROR, prepare_network_arrays

    rng = np.random.default_rng(3)
    flux = rng.normal(1.0, 0.1, (5, 2238))
    error = rng.uniform(0.01, 0.1, (5, 2238))
    mask = rng.random((5, 2238)) < 0.1
    flux[mask] = np.nan
    fast = prepare_network_arrays(flux, error, mask=mask)
    monkeypatch.setattr(_compiled, "AVAILABLE", False)
    slow = prepare_network_arrays(flux, error, mask=mask)
    for a, b in zip(fast, slow):
        assert a.dtype == b.dtype == np.float32
        np.testing.assert_array_equal(a, b)
    assert (fast[0][mask] == 1).all() and (fast[1][mask] == MASKED_ERROR).all()


def test_compiled_forward_equals_the_plain_call(model):
    from lamost2csst.nn.inference import _compiled_forward

    flux, error = _inputs(7)
    compiled = _compiled_forward(model)(flux, error)
    eager = _compiled_forward(model, "eager")(flux, error)
    for a, b in zip(compiled, eager):
        assert isinstance(a, np.ndarray) and a.shape == (7, 574)
        np.testing.assert_allclose(a, b, rtol=1e-5)


def test_predict_under_the_jax_backend_equals_tensorflow(tmp_path):
    """KERAS_BACKEND=jax (GPU machines without TensorFlow) gives the same predictions."""
    import os
    import subprocess
    import sys

    pytest.importorskip("jax")
    flux, error = _inputs(9, seed=5)
    np.savez(tmp_path / "in.npz", flux=flux, error=error)
    # ragged batch sizes (a survey chunk's last batch) reuse a few compiled shapes (padding)
    code = (
        "import sys, numpy as np, keras; from lamost2csst.nn.inference import predict, load_model, "
        "_compiled_forward; d = np.load(sys.argv[1]); s, e = predict(d['flux'], d['error']); "
        "assert keras.backend.backend() == 'jax'; np.savez(sys.argv[2], sed=s, sigma=e); "
        "[predict(d['flux'][:k], d['error'][:k], batch_size=4) for k in range(1, 10)]; "
        "n = _compiled_forward(load_model()).compiled._cache_size(); assert n <= 4, n; "
        # weights changed after a first prediction are used (no stale compiled copy)
        "m = load_model(); w = m.get_weights(); s1, _ = predict(d['flux'][:2], d['error'][:2], model=m); "
        "m.set_weights([x * 0.9 for x in w]); s2, _ = predict(d['flux'][:2], d['error'][:2], model=m); "
        "m.set_weights(w); assert not np.allclose(s1, s2)"
    )
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "in.npz"), str(tmp_path / "out.npz")],
        env=env,
        check=True,
        timeout=300,
    )
    jax_out = np.load(tmp_path / "out.npz")
    sed, sigma = predict(flux, error)
    np.testing.assert_allclose(jax_out["sed"], sed, rtol=1e-5)
    np.testing.assert_allclose(jax_out["sigma"], sigma, rtol=1e-5)


# --- the model discrepancy: sigma = hypot(sigma_net, sigma_sys) ---------------------------------


def _discrepancy(a=2.0, b=0.01):
    from lamost2csst.core.discrepancy import ModelDiscrepancy

    return ModelDiscrepancy(np.full(574, a), np.full(574, b), np.ones(574, bool), {"kind": "test"})


def _card_with(tmp_path, model_file, entry):
    """A copy of ``model_file`` whose card holds ``entry`` under "sigma_sys"."""
    import shutil

    path = tmp_path / "m.keras"
    shutil.copy(model_file, path)
    path.with_suffix(".json").write_text(json.dumps({"note": "test", "sigma_sys": entry}))
    return path


@pytest.fixture(scope="module")
def model_file(model, tmp_path_factory):
    """The test model saved with a card that has no discrepancy."""
    return save_model(model, tmp_path_factory.mktemp("model") / "plain.keras", card={"note": "plain"})


def test_without_a_discrepancy_sed_and_sigma_are_the_networks_output_bit_for_bit(model, model_file):
    from lamost2csst.nn.inference import _compiled_forward

    flux, error = _inputs(6, seed=2)
    raw_sed, raw_sigma = _compiled_forward(model)(flux, error)  # the network itself, one batch
    for got in (predict(flux, error, model=model), predict(flux, error, model=model_file)):
        np.testing.assert_array_equal(got[0], raw_sed)
        np.testing.assert_array_equal(got[1], raw_sigma)
    parts = predict(flux, error, model=model, return_parts=True)
    np.testing.assert_array_equal(parts.sigma, raw_sigma)
    np.testing.assert_array_equal(parts.sigma_net, raw_sigma)
    assert parts.sigma_sys.dtype == np.float32 and np.all(parts.sigma_sys == 0)


def test_none_discrepancy_gives_sigma_net_and_zero_sigma_sys(model):
    from lamost2csst.core.discrepancy import ModelDiscrepancy

    flux, error = _inputs(3)
    out = predict(flux, error, model=model, discrepancy=ModelDiscrepancy.none(), return_parts=True)
    assert out._fields == ("sed", "sigma", "sigma_net", "sigma_sys")
    np.testing.assert_array_equal(out.sigma, out.sigma_net)
    np.testing.assert_array_equal(out.sigma_sys, np.zeros((3, 574), np.float32))


def test_a_discrepancy_adds_in_quadrature_and_leaves_the_sed_alone(model):
    flux, error = _inputs(4, seed=3)
    sed0, s = predict(flux, error, model=model)  # a loaded model: no discrepancy
    out = predict(flux, error, model=model, discrepancy=_discrepancy(2.0, 0.01), return_parts=True)
    np.testing.assert_array_equal(out.sed, sed0)
    np.testing.assert_array_equal(out.sigma_net, s)
    s = s.astype(np.float64)
    np.testing.assert_allclose(out.sigma, np.sqrt((2 * s) ** 2 + 0.01**2), rtol=1e-6)
    np.testing.assert_allclose(out.sigma_sys, np.sqrt(3 * s**2 + 0.01**2), rtol=1e-6)  # 4s^2+b^2-s^2
    np.testing.assert_allclose(out.sigma, np.hypot(out.sigma_net, out.sigma_sys), rtol=1e-6)
    assert {a.dtype for a in out} == {np.dtype(np.float32)}
    # the plain form returns the total
    sed, sigma = predict(flux, error, model=model, discrepancy=_discrepancy(2.0, 0.01))
    np.testing.assert_array_equal(sigma, out.sigma)
    empty = predict(np.ones((0, 2238)), np.ones((0, 2238)), model=model, return_parts=True)
    assert all(a.shape == (0, 574) for a in empty)


def test_predict_with_a_path_uses_the_cards_discrepancy(model, model_file, tmp_path):
    from lamost2csst.core.discrepancy import ModelDiscrepancy
    from lamost2csst.nn.inference import model_discrepancy

    d = _discrepancy(1.5, 0.02)
    path = _card_with(tmp_path, model_file, d.to_dict())
    read = model_discrepancy(path)
    np.testing.assert_array_equal(read.scale, 1.5)
    np.testing.assert_array_equal(read.floor, 0.02)
    assert read.provenance == {"kind": "test"}
    flux, error = _inputs(3, seed=4)
    by_path = predict(flux, error, model=path, return_parts=True)
    by_hand = predict(flux, error, model=model, discrepancy=d, return_parts=True)
    for a, b in zip(by_path, by_hand):
        np.testing.assert_array_equal(a, b)
    assert np.all(by_path.sigma > by_path.sigma_net)
    # an explicit discrepancy wins over the card's
    plain = predict(flux, error, model=path, discrepancy=ModelDiscrepancy.none())
    np.testing.assert_array_equal(plain[1], by_hand.sigma_net)
    # no card, or a card without the key: none
    assert model_discrepancy(model_file).provenance == {"kind": "none"}
    assert np.all(model_discrepancy(tmp_path / "no-card.keras").scale == 1)


@pytest.mark.parametrize(
    "entry, message",
    [
        ({"scale": [1.0] * 574, "fitted": [True] * 574}, "lacks"),
        ({"scale": [0.5] * 574, "floor": [0.0] * 574, "fitted": [True] * 574}, "scale >= 1"),
        ({"scale": [1.0] * 10, "floor": [0.0] * 10, "fitted": [True] * 10}, "10 pixels"),
        ([1.0, 0.0], "JSON object"),
    ],
)
def test_a_malformed_card_entry_raises_naming_the_card(model_file, tmp_path, entry, message):
    from lamost2csst.nn.inference import model_discrepancy

    path = _card_with(tmp_path, model_file, entry)
    with pytest.raises(ValueError, match=f"(?s)m.json: malformed 'sigma_sys'.*{message}"):
        model_discrepancy(path)
    with pytest.raises(ValueError, match="m.json: malformed"):
        predict(*_inputs(1), model=path)


def test_a_wrong_discrepancy_argument_is_an_error(model):
    with pytest.raises(ValueError, match="ModelDiscrepancy"):
        predict(*_inputs(1), model=model, discrepancy={"scale": 2.0})
    with pytest.raises(ValueError, match="574"):
        predict(*_inputs(1), model=model, discrepancy=_discrepancy().none(10))


def test_batches_do_not_change_the_colour_class_discrepancy(model):
    """The discrepancy is applied batch by batch: the numbers equal its formula on the whole call."""
    from lamost2csst.nn.inference import model_discrepancy

    shipped = model_discrepancy()  # the shipped card's: colour classes
    assert shipped.color_edges
    flux, error = _inputs(11, seed=5)
    flux[::3] *= np.linspace(0.6, 1.4, 2238, dtype=np.float32)  # other colours, other classes
    whole = predict(flux, error, model=model, discrepancy=shipped, return_parts=True, batch_size=1024)
    sigma, sigma_sys = shipped.sigma_parts(whole.sigma_net, sed=whole.sed)
    np.testing.assert_array_equal(whole.sigma, sigma)
    np.testing.assert_array_equal(whole.sigma_sys, sigma_sys)
    for batch_size in (1, 4):
        batched = predict(
            flux, error, model=model, discrepancy=shipped, return_parts=True, batch_size=batch_size
        )
        for a, b in zip(batched, whole):
            np.testing.assert_allclose(a, b, rtol=2e-5)  # the network's float32 round-off per batch shape


def test_bad_input_in_a_late_batch_is_refused_before_any_batch_runs(model, monkeypatch):
    import lamost2csst.nn.inference as inference

    flux, error = _inputs(9)
    flux[8, 100] = np.nan  # in the fifth batch of two
    calls = []
    real = inference._compiled_forward

    def counting(m, backend=None):
        forward = real(m, backend)
        return lambda *a, **k: calls.append(1) or forward(*a, **k)

    monkeypatch.setattr(inference, "_compiled_forward", counting)
    with pytest.raises(ValueError, match="row 8"):
        predict(flux, error, model=model, batch_size=2)
    assert calls == []
    flux[8, 100] = 1.0
    predict(flux, error, model=model, batch_size=2)
    assert len(calls) == 5  # the counter counts: five batches of <= 2
