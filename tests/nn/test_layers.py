"""The sub-unit pieces against analytic expectations (Eqs. 4-6, the zero-padded shortcut)."""

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from lamost2csst.nn.layers import SoftThreshold, StridedZeroPadShortcut, SubUnit


def test_soft_threshold_eq6():
    m = np.array([[-3.0, -0.5, 0.0, 0.4, 2.0, 5.0]])
    tau = np.array([[1.0, 1.0, 1.0, 0.4, 0.5, 6.0]])
    out = np.asarray(SoftThreshold()([m, tau]))
    # |M| > tau: sgn(M)(|M| - tau); otherwise 0 (including |M| == tau)
    np.testing.assert_allclose(out, [[-2.0, 0.0, 0.0, 0.0, 1.5, 0.0]])


def test_shortcut_subsamples_and_zero_pads_channels():
    x = np.arange(2 * 7 * 3, dtype="float32").reshape(2, 7, 3)
    out = np.asarray(StridedZeroPadShortcut(channels=5, stride=2)(x))
    assert out.shape == (2, 4, 5)  # ceil(7/2) = 4, as a 'same' stride-2 convolution gives
    np.testing.assert_array_equal(out[..., :3], x[:, ::2, :])
    np.testing.assert_array_equal(out[..., 3:], 0.0)


def test_sub_unit_output_shape_and_identity_when_attention_saturates():
    unit = SubUnit(channels=8, kernel_size=3, stride=2)
    x = np.random.default_rng(0).normal(size=(3, 11, 4)).astype("float32")
    out = np.asarray(unit(x, training=False))
    assert out.shape == (3, 6, 8)
    # Make the attention map huge (tau >> |M|): Eq. 6 shrinks M to 0 and the unit is the shortcut.
    last = unit.attention[-1]
    kernel, bias = last.get_weights()
    last.set_weights([np.zeros_like(kernel), np.full_like(bias, 1e6)])
    out = np.asarray(unit(x, training=False))
    np.testing.assert_array_equal(out, np.asarray(StridedZeroPadShortcut(channels=8, stride=2)(x)))


def test_sub_unit_config_round_trip():
    unit = SubUnit(channels=16, kernel_size=3, stride=1, attention_activation="sigmoid", name="u")
    clone = SubUnit.from_config(unit.get_config())
    assert (clone.channels, clone.kernel_size, clone.stride, clone.attention_activation) == (
        16,
        3,
        1,
        "sigmoid",
    )
