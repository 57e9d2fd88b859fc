"""The paper's building blocks as tf-keras layers.

Every layer keeps its configuration in ``__init__``, builds its sub-layers in
``build`` and round-trips through ``get_config``; all are registered under the
``segkit`` package so saved models load without ``custom_objects``.

Randomness: the only random op in the model is dropout (Transformer bottleneck,
including inside multi-head attention).  tf-keras' ``Dropout`` draws from an
op-level RNG whose state no checkpoint holds, so a resumed run diverges.
:class:`SeededDropout` instead draws *stateless* masks seeded by
``(layer seed, replica, call count)`` where the call count is a non-trainable
model variable, saved with the weights.  A run killed and resumed therefore draws
exactly the masks the uninterrupted run draws.
"""

from __future__ import annotations

from typing import Any

from segkit.train.backend import load

_B = load()
tf, keras = _B.tf, _B.keras
layers = keras.layers

__all__ = [
    "SeededDropout",
    "SeededMultiHeadAttention",
    "SqueezeExcite",
    "CBAM",
    "EfficientAttentionGate",
    "ResNeXtBlock",
    "PositionalEmbedding",
    "TransformerBlock",
    "TransformerBottleneck",
    "ConvBnReLU",
    "CUSTOM_OBJECTS",
]

_register = keras.saving.register_keras_serializable(package="segkit")

#: What ``gate_bias`` means for SE, CBAM and the attention gate.
GATE_BIAS_DOC = """Initial bias of the gate's sigmoid.  0 (Keras' zeros): each gate starts half open (× 0.5), so
SE → CBAM (channel, spatial) → attention gate hand a skip to the decoder at 1/16 of its size and the decoder
first learns without its skips; 3: each starts open (× 0.95) and learns where to close.  The blocks compute
the same function either way; only the starting point differs."""


def _bias(value: float) -> Any:
    return keras.initializers.Constant(float(value)) if value else "zeros"


@_register
class SeededDropout(layers.Layer):
    """Inverted dropout whose masks are a pure function of (seed, replica, call count).

    Parameters
    ----------
    rate:
        Fraction of units dropped while training.
    seed:
        Layer seed; give every dropout layer of a model its own.
    """

    def __init__(self, rate: float, seed: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"dropout rate must be in [0, 1), got {rate}.")
        self.rate = float(rate)
        self.seed = int(seed)

    def build(self, input_shape: Any) -> None:
        # One counter per layer, saved with the model's weights (and hence in every checkpoint).
        self.calls = self.add_weight(
            name="calls",
            shape=(),
            dtype="int64",
            initializer="zeros",
            trainable=False,
            synchronization=tf.VariableSynchronization.ON_WRITE,
            aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
        )
        super().build(input_shape)

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        if not training or self.rate == 0.0:
            return inputs
        count = self.calls.assign_add(1)
        ctx = tf.distribute.get_replica_context()
        replica = 0 if ctx is None else ctx.replica_id_in_sync_group
        replica = tf.cast(replica, tf.int64)
        seed = tf.stack([tf.constant(self.seed, tf.int64) * 1024 + replica, tf.cast(count, tf.int64)])
        uniform = tf.random.stateless_uniform(tf.shape(inputs), seed=seed, dtype=inputs.dtype)
        keep = tf.cast(uniform >= self.rate, inputs.dtype)
        return inputs * keep / (1.0 - self.rate)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}


@_register
class SeededMultiHeadAttention(layers.MultiHeadAttention):
    """``MultiHeadAttention`` whose attention-probability dropout is a :class:`SeededDropout`."""

    def __init__(self, *args: Any, seed: int = 0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.seed = int(seed)

    def _build_attention(self, rank: int) -> None:
        super()._build_attention(rank)
        self._dropout_layer = SeededDropout(self._dropout, seed=self.seed, name="attention_dropout")

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "seed": self.seed}


@_register
class ConvBnReLU(layers.Layer):
    """``Conv2D(k×k, same) → BatchNorm → ReLU`` (segmentation_models' decoder conv)."""

    def __init__(self, filters: int, kernel_size: int = 3, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.kernel_size = int(kernel_size)

    def build(self, input_shape: Any) -> None:
        self.conv = layers.Conv2D(self.filters, self.kernel_size, padding="same", use_bias=False,
                                  kernel_initializer="he_uniform", name="conv")
        self.bn = layers.BatchNormalization(name="bn")
        super().build(input_shape)

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        return tf.nn.relu(self.bn(self.conv(inputs), training=training))

    def compute_output_shape(self, input_shape: Any) -> Any:
        return tf.TensorShape(input_shape)[:-1].concatenate([self.filters])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "filters": self.filters, "kernel_size": self.kernel_size}


@_register
class SqueezeExcite(layers.Layer):
    """Squeeze-and-Excitation: ``X ⊙ σ(W₂ ReLU(W₁ GAP(X)))`` (Hu et al.).

    Parameters
    ----------
    ratio:
        Channel reduction of the first fully connected layer (the paper's r = 16).
    gate_bias:
        Initial bias of the sigmoid (see :data:`GATE_BIAS_DOC`).
    """

    def __init__(self, ratio: int = 16, gate_bias: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ratio = int(ratio)
        self.gate_bias = float(gate_bias)

    def build(self, input_shape: Any) -> None:
        channels = int(input_shape[-1])
        self.squeeze = layers.Dense(max(1, channels // self.ratio), activation="relu", name="squeeze")
        self.excite = layers.Dense(channels, activation="sigmoid", name="excite", bias_initializer=_bias(self.gate_bias))
        super().build(input_shape)

    def call(self, inputs: Any) -> Any:
        z = tf.reduce_mean(inputs, axis=[1, 2], keepdims=True)
        return inputs * self.excite(self.squeeze(z))

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "ratio": self.ratio, "gate_bias": self.gate_bias}


@_register
class CBAM(layers.Layer):
    """Convolutional Block Attention Module (Woo et al.): channel, then spatial attention.

    Channel attention: a shared MLP over the average- and max-pooled descriptors,
    summed, sigmoid.  Spatial attention: a k×k convolution over the channel-wise
    average and max maps, sigmoid.
    """

    def __init__(self, ratio: int = 16, kernel_size: int = 7, gate_bias: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ratio = int(ratio)
        self.kernel_size = int(kernel_size)
        self.gate_bias = float(gate_bias)

    def build(self, input_shape: Any) -> None:
        channels = int(input_shape[-1])
        self.mlp_hidden = layers.Dense(max(1, channels // self.ratio), activation="relu", name="mlp_hidden")
        # the MLP runs on two descriptors whose outputs are summed: half the bias each
        self.mlp_out = layers.Dense(channels, name="mlp_out", bias_initializer=_bias(self.gate_bias / 2))
        self.spatial = layers.Conv2D(1, self.kernel_size, padding="same", activation="sigmoid", name="spatial",
                                     bias_initializer=_bias(self.gate_bias))
        super().build(input_shape)

    def call(self, inputs: Any) -> Any:
        avg = tf.reduce_mean(inputs, axis=[1, 2], keepdims=True)
        mx = tf.reduce_max(inputs, axis=[1, 2], keepdims=True)
        channel = tf.sigmoid(self.mlp_out(self.mlp_hidden(avg)) + self.mlp_out(self.mlp_hidden(mx)))
        x = inputs * channel
        maps = tf.concat([tf.reduce_mean(x, axis=-1, keepdims=True), tf.reduce_max(x, axis=-1, keepdims=True)], -1)
        return x * self.spatial(maps)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "ratio": self.ratio, "kernel_size": self.kernel_size, "gate_bias": self.gate_bias}


@_register
class EfficientAttentionGate(layers.Layer):
    """Additive attention gate on a skip connection: ``Y = skip ⊙ ψ``.

    ``ψ = σ(Conv1×1→1(ReLU(Conv1×1(skip) + Conv1×1(gate))))``; called on
    ``[skip, gate]`` where the gating signal is the upsampled decoder feature at the
    skip's resolution.
    """

    def __init__(self, inter_channels: int, gate_bias: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.inter_channels = int(inter_channels)
        self.gate_bias = float(gate_bias)

    def build(self, input_shape: Any) -> None:
        self.theta = layers.Conv2D(self.inter_channels, 1, name="theta")
        self.phi = layers.Conv2D(self.inter_channels, 1, name="phi")
        self.psi = layers.Conv2D(1, 1, activation="sigmoid", name="psi", bias_initializer=_bias(self.gate_bias))
        super().build(input_shape)

    def call(self, inputs: Any) -> Any:
        skip, gate = inputs
        return skip * self.psi(tf.nn.relu(self.theta(skip) + self.phi(gate)))

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape[0]

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "inter_channels": self.inter_channels, "gate_bias": self.gate_bias}


@_register
class ResNeXtBlock(layers.Layer):
    """1×1 reduce → grouped 3×3 → 1×1 expand, plus a shortcut, then ReLU.

    Parameters
    ----------
    filters:
        Output channels.
    groups:
        Groups of the 3×3 convolution; ``0`` means depthwise (one group per channel,
        as the paper describes).
    bottleneck_ratio:
        Width of the 1×1 reduction relative to ``filters``.
    """

    def __init__(self, filters: int, groups: int = 0, bottleneck_ratio: float = 0.5, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.groups = int(groups)
        self.bottleneck_ratio = float(bottleneck_ratio)

    def build(self, input_shape: Any) -> None:
        width = max(1, int(self.filters * self.bottleneck_ratio))
        if self.groups:
            width = max(self.groups, width // self.groups * self.groups)
            self.grouped = layers.Conv2D(width, 3, padding="same", groups=self.groups, use_bias=False, name="grouped")
        else:
            self.grouped = layers.DepthwiseConv2D(3, padding="same", use_bias=False, name="grouped")
        self.reduce = layers.Conv2D(width, 1, use_bias=False, name="reduce")
        self.bn1 = layers.BatchNormalization(name="bn1")
        self.bn2 = layers.BatchNormalization(name="bn2")
        self.expand = layers.Conv2D(self.filters, 1, use_bias=False, name="expand")
        self.bn3 = layers.BatchNormalization(name="bn3")
        if int(input_shape[-1]) != self.filters:
            self.project = layers.Conv2D(self.filters, 1, use_bias=False, name="project")
            self.bn_project = layers.BatchNormalization(name="bn_project")
        else:
            self.project = None
        super().build(input_shape)

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        x = tf.nn.relu(self.bn1(self.reduce(inputs), training=training))
        x = tf.nn.relu(self.bn2(self.grouped(x), training=training))
        x = self.bn3(self.expand(x), training=training)
        shortcut = inputs if self.project is None else self.bn_project(self.project(inputs), training=training)
        return tf.nn.relu(x + shortcut)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return tf.TensorShape(input_shape)[:-1].concatenate([self.filters])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "filters": self.filters, "groups": self.groups,
                "bottleneck_ratio": self.bottleneck_ratio}


@_register
class PositionalEmbedding(layers.Layer):
    """Adds a learned position embedding (one vector per token) to a token sequence."""

    def build(self, input_shape: Any) -> None:
        self.embedding = self.add_weight(
            name="embedding", shape=(int(input_shape[-2]), int(input_shape[-1])),
            initializer=keras.initializers.TruncatedNormal(stddev=0.02), trainable=True)
        super().build(input_shape)

    def call(self, inputs: Any) -> Any:
        return inputs + self.embedding

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape


@_register
class TransformerBlock(layers.Layer):
    """Pre-norm Transformer encoder block.

    ``x + Drop(MHSA(LN(x)))`` then ``x + Drop(Dense(C)(Drop(act(Dense(hidden)(LN(x))))))``;
    attention probabilities are dropped too.  All dropout is :class:`SeededDropout`.
    """

    def __init__(self, heads: int = 8, hidden: int = 1024, dropout: float = 0.1, activation: str = "gelu",
                 seed: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.heads = int(heads)
        self.hidden = int(hidden)
        self.dropout = float(dropout)
        self.activation = str(activation)
        self.seed = int(seed)

    def build(self, input_shape: Any) -> None:
        width = int(input_shape[-1])
        if width % self.heads:
            raise ValueError(f"token width {width} is not divisible by {self.heads} heads.")
        s = self.seed * 8
        self.norm1 = layers.LayerNormalization(epsilon=1e-6, name="norm1")
        self.attention = SeededMultiHeadAttention(self.heads, width // self.heads, dropout=self.dropout,
                                                  seed=s + 1, name="attention")
        self.drop1 = SeededDropout(self.dropout, seed=s + 2, name="drop1")
        self.norm2 = layers.LayerNormalization(epsilon=1e-6, name="norm2")
        self.ffn_in = layers.Dense(self.hidden, activation=self.activation, name="ffn_in")
        self.drop2 = SeededDropout(self.dropout, seed=s + 3, name="drop2")
        self.ffn_out = layers.Dense(width, name="ffn_out")
        self.drop3 = SeededDropout(self.dropout, seed=s + 4, name="drop3")
        super().build(input_shape)

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        y = self.norm1(inputs)
        x = inputs + self.drop1(self.attention(y, y, training=training), training=training)
        y = self.ffn_out(self.drop2(self.ffn_in(self.norm2(x)), training=training))
        return x + self.drop3(y, training=training)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "heads": self.heads, "hidden": self.hidden, "dropout": self.dropout,
                "activation": self.activation, "seed": self.seed}


@_register
class TransformerBottleneck(layers.Layer):
    """The paper's bottleneck: an ``h×w×C`` map as ``h·w`` tokens through ``depth`` blocks.

    Tokens get a learned positional embedding, then ``depth`` pre-norm
    :class:`TransformerBlock` s, then a final LayerNorm, and are reshaped back to
    ``h×w×C``.  At 512² with ResNet-50 that is 1,024 tokens of width 1,024.
    """

    def __init__(self, depth: int = 4, heads: int = 8, hidden: int = 1024, dropout: float = 0.1,
                 activation: str = "gelu", seed: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.depth = int(depth)
        self.heads = int(heads)
        self.hidden = int(hidden)
        self.dropout = float(dropout)
        self.activation = str(activation)
        self.seed = int(seed)

    def build(self, input_shape: Any) -> None:
        _, h, w, c = (None if d is None else int(d) for d in input_shape)
        if h is None or w is None:
            raise ValueError("the Transformer bottleneck needs a fixed input size (its positional embedding "
                             "has one vector per token); set model.input_size.")
        self.grid = (h, w, c)
        self.position = PositionalEmbedding(name="position")
        self.blocks = [TransformerBlock(self.heads, self.hidden, self.dropout, self.activation,
                                        seed=self.seed * 64 + i + 1, name=f"block{i + 1}")
                       for i in range(self.depth)]
        self.norm = layers.LayerNormalization(epsilon=1e-6, name="norm")
        super().build(input_shape)

    def tokens(self, inputs: Any) -> Any:
        """The token sequence ``(batch, h·w, C)`` the blocks see."""
        h, w, c = self.grid
        return tf.reshape(inputs, [-1, h * w, c])

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        h, w, c = self.grid
        x = self.position(self.tokens(inputs))
        for block in self.blocks:
            x = block(x, training=training)
        return tf.reshape(self.norm(x), [-1, h, w, c])

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "depth": self.depth, "heads": self.heads, "hidden": self.hidden,
                "dropout": self.dropout, "activation": self.activation, "seed": self.seed}


CUSTOM_OBJECTS = {cls.__name__: cls for cls in (
    SeededDropout, SeededMultiHeadAttention, ConvBnReLU, SqueezeExcite, CBAM, EfficientAttentionGate,
    ResNeXtBlock, PositionalEmbedding, TransformerBlock, TransformerBottleneck)}
