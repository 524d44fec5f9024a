"""UaRA-net against Table 1 of the paper: layer output sizes and the parameter count."""

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
