"""error_branch_response: tells a live uncertainty branch from a dead one."""

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from lamost2csst.nn.diagnostics import error_branch_response
from lamost2csst.nn.model import build_uaranet


def _model():
    import keras

    keras.utils.set_random_seed(4)
    m = build_uaranet(sed_bias=np.linspace(0.2, 1.5, 574))
    for name in ("sed", "fc_err_3"):  # non-zero heads: the outputs depend on their inputs
        layer = m.get_layer(name)
        kernel, bias = layer.get_weights()
        layer.set_weights([np.random.default_rng(1).normal(0, 0.05, kernel.shape).astype("float32"), bias])
    return m


def _inputs(n=6):
    rng = np.random.default_rng(2)
    flux = (1 + 0.03 * rng.standard_normal((n, 2238))).astype("float32")
    return flux, np.full(flux.shape, 0.03, "float32")


def test_a_live_branch_responds_to_the_errors_and_the_sed_never_does():
    from lamost2csst.nn.inference import predict

    model, (flux, error) = _model(), _inputs()
    report = error_branch_response(model, flux, error)
    # the caller's own prediction at the stated errors gives the same report
    assert error_branch_response(model, flux, error, prediction=predict(flux, error, model=model)) == report
    assert report["units"] == 16
    assert report["active_units"] > 0 and report["active_fraction"] > 0
    assert report["sigma_ratio_median"] != pytest.approx(1.0, abs=1e-4)
    assert report["sed_max_relative_change"] == 0.0  # the SED head sees only Z (Eqs. 7-8)


def test_a_dead_branch_is_reported_as_dead():
    m = _model()
    layer = m.get_layer("fc_err_1")
    kernel, bias = layer.get_weights()
    # every pre-activation = -50 * sum(errors) < 0 for positive errors: all ReLUs output 0
    layer.set_weights([np.full_like(kernel, -1.0), np.zeros_like(bias)])
    report = error_branch_response(m, *_inputs(), factor=3.0)
    assert (report["active_units"], report["active_fraction"]) == (0, 0.0)
    assert report["sigma_ratio_median"] == 1.0
    assert report["sed_max_relative_change"] == 0.0


def test_factor_must_be_positive():
    with pytest.raises(ValueError, match="factor"):
        error_branch_response(_model(), *_inputs(), factor=0.0)


def test_log_error_input_round_trips_and_keeps_the_branch_responsive(tmp_path):
    import keras

    from lamost2csst.nn.inference import load_model, predict, save_model
    from lamost2csst.nn.layers import LogRatio
    from lamost2csst.nn.model import LOG_ERROR_REFERENCE, ModelConfig

    x = np.array([[0.03, 0.06, 1e-9]], "float32")
    np.testing.assert_allclose(
        np.asarray(LogRatio(reference=0.03, floor=1e-6)(x)),
        [[0.0, np.log(2.0), np.log(1e-6 / 0.03)]],
        rtol=1e-6,
    )
    keras.utils.set_random_seed(5)
    m = build_uaranet(ModelConfig(error_input="log"), sed_bias=np.linspace(0.2, 1.5, 574))
    layer = m.get_layer("fc_err_3")
    kernel, bias = layer.get_weights()
    layer.set_weights([np.random.default_rng(1).normal(0, 0.05, kernel.shape).astype("float32"), bias])
    assert m.get_layer("error_log").reference == LOG_ERROR_REFERENCE
    flux, _ = _inputs()
    error = np.full_like(flux, 0.05)  # S/N 20 (at exactly the reference, 0.03, the log input is 0)
    report = error_branch_response(m, flux, error)
    assert report["active_units"] > 0 and report["sigma_ratio_median"] != pytest.approx(1.0, abs=1e-4)
    save_model(m, tmp_path / "log.keras")
    again = load_model(tmp_path / "log.keras")
    for a, b in zip(predict(flux, error, model=m), predict(flux, error, model=again)):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="error_input"):
        build_uaranet(ModelConfig(error_input="sqrt"))
