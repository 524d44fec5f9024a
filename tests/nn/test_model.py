"""UaRA-net against Table 1 of the paper: layer output sizes and the parameter count."""

import json

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from lamost2csst.nn.model import ModelConfig, build_uaranet

# Table 1: (layer, output size) of the SED branch and of the uncertainty branch.
TABLE_1_SED = [
    ("stem", (1119, 4)),
    ("sub_unit_1", (560, 4)),
    ("sub_unit_2", (560, 4)),
    ("sub_unit_3", (280, 8)),
    ("sub_unit_4", (280, 8)),
    ("sub_unit_5", (140, 16)),
    ("sub_unit_6", (140, 16)),
    ("gap", (16,)),
    ("fc_1", (100,)),
    ("fc_2", (200,)),
    ("fc_3", (300,)),
    ("sed", (574,)),
]
TABLE_1_ERRORS = [("fc_err_1", (16,)), ("concat", (32,)), ("fc_err_2", (64,)), ("fc_err_3", (574,))]


def _dense_params(n_in, n_out):
    return n_in * n_out + n_out


def test_layer_shapes_follow_table_1(capsys):
    model = build_uaranet()
    rows = []
    for name, shape in TABLE_1_SED + TABLE_1_ERRORS:
        layer = model.get_layer(name)
        got = tuple(layer.output.shape[1:])
        rows.append(
            f"{name:12s} table {str(shape):12s} model {str(got):12s} params {layer.count_params():>8,d}"
        )
        assert got == shape, name
    rows.append(f"total parameters {model.count_params():,d}")
    with capsys.disabled():
        print("\nUaRA-net vs Table 1\n" + "\n".join(rows))


def test_parameter_count_from_first_principles():
    model = build_uaranet()
    fc = (
        _dense_params(16, 100)
        + _dense_params(100, 200)
        + _dense_params(200, 300)
        + _dense_params(300, 574)
        + _dense_params(2238, 16)
        + _dense_params(32, 64)
        + _dense_params(64, 574)
    )

    def conv(c_in, c_out, k=3):
        return k * c_in * c_out + c_out

    def sub_unit(c_in, c_out):  # BN (4 c_in) + feature conv + 3 attention convs
        return 4 * c_in + conv(c_in, c_out) + 3 * conv(c_out, c_out)

    convs = (
        conv(1, 4)
        + sub_unit(4, 4)
        + sub_unit(4, 4)
        + sub_unit(4, 8)
        + sub_unit(8, 8)
        + sub_unit(8, 16)
        + sub_unit(16, 16)
        + 4 * 16
    )
    assert model.count_params() == fc + convs
    assert 330_000 < model.count_params() < 345_000  # ~340k, as the Table 1 sizes imply


def test_heads_start_at_the_given_sed_and_sigma():
    bias = np.linspace(0.5, 2.0, 574)
    model = build_uaranet(sed_bias=bias, sigma_init=0.03)
    rng = np.random.default_rng(1)
    out = model(
        {
            "flux": rng.normal(1, 0.1, (4, 2238)).astype("float32"),
            "error": np.full((4, 2238), 0.02, "float32"),
        },
        training=False,
    )
    np.testing.assert_allclose(np.asarray(out["sed"]), np.broadcast_to(bias, (4, 574)), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(out["sigma"]), 0.03, rtol=1e-5)


def test_linear_head_option_and_bad_bias():
    model = build_uaranet(ModelConfig(sed_activation="linear"), sed_bias=np.full(574, -1.0))
    out = model({"flux": np.ones((1, 2238), "float32"), "error": np.full((1, 2238), 0.02, "float32")})
    np.testing.assert_allclose(np.asarray(out["sed"]), -1.0)
    with pytest.raises(ValueError, match="positive"):
        build_uaranet(sed_bias=np.zeros(574))
    with pytest.raises(ValueError, match="shape"):
        build_uaranet(sed_bias=np.ones(10))


def test_config_round_trip_and_unknown_keys():
    import json

    cfg = ModelConfig(dropout=0.1)
    assert ModelConfig.from_dict(json.loads(cfg.to_json())) == cfg
    with pytest.raises(ValueError, match="unknown"):
        ModelConfig.from_dict({"widht": 3})


def _spectra(n=6, seed=0):
    rng = np.random.default_rng(seed)
    flux = (1 + 0.02 * rng.standard_normal((n, 2238))).astype("float32")
    return flux, np.full_like(flux, 0.02)


def test_domain_input_adds_the_real_star_branch_only():
    from lamost2csst.nn.model import takes_domain

    plain = build_uaranet(ModelConfig())
    both = build_uaranet(ModelConfig(domain_input=True))
    assert not takes_domain(plain) and takes_domain(both)
    # fc_real_1 (300 -> 32) and fc_real_2 (32 -> 574) train; real_extend (2 x 574 sources and
    # weights) is fixed, the identity until a library's coverage is set
    assert both.count_params() - plain.count_params() == (300 * 32 + 32) + (32 * 574 + 574) + 2 * 2 * 574
    assert not both.get_layer("real_extend").trainable_weights
    x = np.random.default_rng(1).standard_normal((3, 574)).astype("float32")
    np.testing.assert_array_equal(np.asarray(both.get_layer("real_extend")(x)), x)
    assert ModelConfig(domain_input=True) == ModelConfig.from_dict(
        json.loads(ModelConfig(domain_input=True).to_json())
    )


def test_add_domain_input_keeps_the_predictions_at_both_values():
    from lamost2csst.nn.inference import predict
    from lamost2csst.nn.model import add_domain_input

    config = ModelConfig(error_input="log")
    plain = build_uaranet(config, sed_bias=np.linspace(0.5, 2.0, 574))
    for layer in ("sed", "fc_err_3"):  # heads away from their zero start, so the test can see a change
        kernel, bias = plain.get_layer(layer).get_weights()
        plain.get_layer(layer).set_weights([np.full_like(kernel, 1e-3), bias])
    both = add_domain_input(plain, config)
    flux, error = _spectra()
    sed0, sigma0 = predict(flux, error, model=plain)
    for domain in ("real", "synthetic"):
        sed, sigma = predict(flux, error, model=both, domain=domain)
        np.testing.assert_array_equal(sed, sed0)
        np.testing.assert_array_equal(sigma, sigma0)
    # a correction of +0.1 in ln(SED) from the branch: the real SED is exp(0.1) x the synthetic one
    kernel, bias = both.get_layer("fc_real_2").get_weights()
    both.get_layer("fc_real_2").set_weights([kernel, np.full_like(bias, 0.1)])
    real, sigma_real = predict(flux, error, model=both, domain="real")
    synthetic, _ = predict(flux, error, model=both, domain="synthetic")
    default, _ = predict(flux, error, model=both)
    np.testing.assert_array_equal(synthetic, sed0)
    np.testing.assert_allclose(real / synthetic, np.exp(0.1), rtol=1e-5)
    np.testing.assert_array_equal(default, real)
    np.testing.assert_array_equal(sigma_real, sigma0)
    from lamost2csst.nn.model import grid_network

    inner = grid_network(both, config)  # the grid network back, whatever the branch learnt
    np.testing.assert_array_equal(predict(flux, error, model=inner)[0], sed0)
    with pytest.raises(ValueError, match="already has a domain input"):
        add_domain_input(both, config)
    with pytest.raises(ValueError, match="needs a model with a real-star branch"):
        grid_network(plain, config)
    with pytest.raises(ValueError, match="domain must be one of"):
        predict(flux, error, model=both, domain="grid")


def test_extension_matrix_carries_the_correction_beyond_the_covered_range():
    from lamost2csst.nn.model import extension_matrix

    wave = np.linspace(3000.0, 9000.0, 61)  # 100 A pixels
    covered = (wave >= 4000) & (wave <= 7000)
    delta = np.where(covered, 0.001 * (wave - 5500) / 100, 0.0)  # a straight line where covered
    const = delta @ extension_matrix(covered, extend="constant", wave=wave)
    np.testing.assert_allclose(const[covered], delta[covered])
    np.testing.assert_allclose(const[wave > 7000], delta[wave == 7000][0])
    np.testing.assert_allclose(const[wave < 4000], delta[wave == 4000][0])
    line = delta @ extension_matrix(covered, extend="linear", wave=wave, span=500.0)
    np.testing.assert_allclose(line, 0.001 * (wave - 5500) / 100, atol=1e-9)  # the line continues
    from lamost2csst.nn.layers import Extension

    layer = Extension()
    layer.build((None, wave.size))
    layer.set_matrix(extension_matrix(covered, extend="linear", wave=wave, span=500.0))
    np.testing.assert_allclose(np.asarray(layer(delta[None, :].astype("float32")))[0], line, atol=1e-6)
    with pytest.raises(ValueError, match="non-zeros per column"):
        layer.set_matrix(np.ones((wave.size, wave.size)))
    none = delta @ extension_matrix(covered, extend="none", wave=wave)
    np.testing.assert_array_equal(none[~covered], 0.0)
    with pytest.raises(ValueError, match="contiguous"):
        extension_matrix(covered & (np.abs(wave - 5500) > 50), wave=wave)
    with pytest.raises(ValueError, match="extend must be one of"):
        extension_matrix(covered, extend="cubic", wave=wave)
