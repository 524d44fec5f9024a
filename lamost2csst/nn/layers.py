"""The UaRA-net building blocks (paper Sect. 3.1, Fig. 1a, Eqs. 4-6) as serializable Keras layers.

No Lambda layers: every layer here is registered with Keras so that a saved ``.keras``
file loads with ``safe_mode=True`` (no Python code executed from the file).
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers, ops

__all__ = ["Extension", "LogRatio", "Offset", "SoftThreshold", "StridedZeroPadShortcut", "SubUnit"]

_PACKAGE = "lamost2csst"


@keras.saving.register_keras_serializable(package=_PACKAGE)
class SoftThreshold(layers.Layer):
    """Eq. 6: ``sgn(M) (|M| - tau)`` where ``|M| > tau``, else 0, for inputs ``[M, tau]`` (tau >= 0)."""

    def call(self, inputs):
        m, tau = inputs
        return ops.sign(m) * ops.maximum(ops.abs(m) - tau, 0.0)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class Absolute(layers.Layer):
    """``|M|`` (the attention map of Eq. 4 is computed on the magnitude of the feature map)."""

    def call(self, inputs):
        return ops.abs(inputs)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class StridedZeroPadShortcut(layers.Layer):
    """The ResNet shortcut of Sect. 3.1: subsample by ``stride``, pad new channels with zeros.

    With ``padding="same"`` convolutions a stride-s unit maps width W to ceil(W/s); taking
    every s-th sample (``x[:, ::s]``) gives exactly that width, so no parameters are needed
    ("extra zero entries are padded when the dimensions of the next residual unit increase").
    """

    def __init__(self, *, channels: int, stride: int, **kwargs):
        super().__init__(**kwargs)
        self.channels = int(channels)
        self.stride = int(stride)

    def call(self, inputs):
        x = inputs[:, :: self.stride, :] if self.stride > 1 else inputs
        extra = self.channels - x.shape[-1]
        if extra > 0:
            x = ops.pad(x, [[0, 0], [0, 0], [0, extra]])
        return x

    def compute_output_shape(self, input_shape):
        width = input_shape[1]
        if width is not None:
            width = -(-width // self.stride)
        return (input_shape[0], width, max(self.channels, input_shape[-1]))

    def get_config(self):
        return {**super().get_config(), "channels": self.channels, "stride": self.stride}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class SubUnit(layers.Layer):
    """One residual shrinkage sub-unit ``(channels, kernel, stride)`` of Table 1 / Fig. 1a.

    Four convolutions, as Sect. 4.1 counts them: the feature convolution after BN and ReLU,
    ``M = Conv(ReLU(BN(x)))``, and the three sequential 1-D convolutions of the attention map
    ``M_c = Phi(|M|)`` (Eq. 4). The soft threshold is ``tau = M_c * |M|`` (Eq. 5) and the output
    is the shortcut plus the shrunk map ``M'`` (Eq. 6).

    ``attention_activation`` is the activation of the three attention convolutions: ``"relu"``
    as the paper states. With ReLU, ``M_c`` may exceed 1 and then ``tau > |M|`` switches the
    feature off entirely, which Eq. 6 allows.
    """

    def __init__(
        self,
        *,
        channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        attention_activation: str = "relu",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.channels = int(channels)
        self.kernel_size = int(kernel_size)
        self.stride = int(stride)
        self.attention_activation = attention_activation
        conv = dict(kernel_size=self.kernel_size, padding="same", kernel_initializer="he_normal")
        self.bn = layers.BatchNormalization(name="bn")
        self.relu = layers.ReLU(name="relu")
        self.conv = layers.Conv1D(self.channels, strides=self.stride, name="conv", **conv)
        self.absolute = Absolute(name="abs")
        self.attention = [
            layers.Conv1D(self.channels, activation=attention_activation, name=f"attention_{i}", **conv)
            for i in range(1, 4)
        ]
        self.threshold = layers.Multiply(name="tau")
        self.shrink = SoftThreshold(name="soft_threshold")
        self.shortcut = StridedZeroPadShortcut(channels=self.channels, stride=self.stride, name="shortcut")
        self.add = layers.Add(name="add")

    def build(self, input_shape):
        self.bn.build(input_shape)
        self.conv.build(input_shape)
        m_shape = self.conv.compute_output_shape(input_shape)
        shape = m_shape
        for conv in self.attention:
            conv.build(shape)
            shape = conv.compute_output_shape(shape)
        super().build(input_shape)

    def call(self, inputs, training=None):
        m = self.conv(self.relu(self.bn(inputs, training=training)))
        magnitude = self.absolute(m)
        mc = magnitude
        for conv in self.attention:
            mc = conv(mc)
        tau = self.threshold([mc, magnitude])
        return self.add([self.shortcut(inputs), self.shrink([m, tau])])

    def compute_output_shape(self, input_shape):
        return self.shortcut.compute_output_shape(input_shape)

    def get_config(self):
        return {
            **super().get_config(),
            "channels": self.channels,
            "kernel_size": self.kernel_size,
            "stride": self.stride,
            "attention_activation": self.attention_activation,
        }


@keras.saving.register_keras_serializable(package=_PACKAGE)
class LogRatio(layers.Layer):
    """``ln(max(x, floor) / reference)``: positive input errors mapped to values of both signs.

    The stated errors of all stars are nearly one vector times 1/S/N; after a linear rescaling
    every ReLU unit fed by them sees about ``(sum of its weights) * const / S/N + bias`` and dies
    at every S/N once that turns negative. On the log scale the input changes sign with S/N
    (``reference`` ~ the error at the middle of the training S/N), so a unit is live on one side
    of its own S/N threshold.
    """

    def __init__(self, *, reference: float, floor: float = 1e-6, **kwargs):
        super().__init__(**kwargs)
        if not reference > 0 or not floor > 0:
            raise ValueError("reference and floor must be positive")
        self.reference = float(reference)
        self.floor = float(floor)

    def call(self, inputs):
        return keras.ops.log(keras.ops.maximum(inputs, self.floor) / self.reference)

    def get_config(self):
        return {**super().get_config(), "reference": self.reference, "floor": self.floor}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class Offset(layers.Layer):
    """``x + offset``: a floor under the softplus sigma head so that sigma > 0 strictly."""

    def __init__(self, *, offset: float, **kwargs):
        super().__init__(**kwargs)
        self.offset = float(offset)

    def call(self, inputs):
        return inputs + self.offset

    def get_config(self):
        return {**super().get_config(), "offset": self.offset}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class Extension(layers.Layer):
    """A fixed sparse linear map ``y[:, j] = sum_k weight[k, j] * x[:, source[k, j]]`` (k < 2).

    The real-star correction beyond a library's coverage (:func:`lamost2csst.nn.model.extension_matrix`,
    whose columns have at most two non-zeros); ``source`` and ``weight`` are non-trainable
    weights (set with :meth:`set_matrix`), the identity until set.
    """

    def build(self, input_shape):
        n = int(input_shape[-1])
        self.source = self.add_weight(
            shape=(2, n), dtype="int32", initializer="zeros", trainable=False, name="source"
        )
        self.weight = self.add_weight(shape=(2, n), initializer="zeros", trainable=False, name="weight")
        self.set_matrix(np.eye(n, dtype=np.float32))

    def set_matrix(self, matrix) -> None:
        """Take the map from a dense (n, n) ``matrix`` with at most two non-zeros per column."""
        matrix = np.asarray(matrix, np.float32)
        n = matrix.shape[1]
        if matrix.shape != (n, n) or np.count_nonzero(matrix, axis=0).max(initial=0) > 2:
            raise ValueError(f"expected a square matrix with <= 2 non-zeros per column, got {matrix.shape}")
        source = np.zeros((2, n), np.int32)
        weight = np.zeros((2, n), np.float32)
        for j in range(n):
            rows = np.flatnonzero(matrix[:, j])
            source[: rows.size, j] = rows
            weight[: rows.size, j] = matrix[rows, j]
        self.source.assign(source)
        self.weight.assign(weight)

    def call(self, inputs):
        return (
            ops.take(inputs, self.source[0], axis=1) * self.weight[0]
            + ops.take(inputs, self.source[1], axis=1) * self.weight[1]
        )
