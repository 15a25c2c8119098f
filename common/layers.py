"""Shared building blocks: a residual convolution block, self-attention over 2-D feature maps,
squeeze-excitation, CBAM, the tri-plane attention of papers 1 and 4, and paper 3's weighted
sum of embeddings (its combined teacher).

The builders are functional: they take a Keras tensor and return one, made of standard Keras
layers (Conv2D, BatchNormalization, Activation, Add, Reshape, MultiHeadAttention,
LayerNormalization) so that tensorflow-model-optimization can quantize the convolutions. Every
layer they create is named after the block's `name`, so a model summary stays readable.
"""

import tensorflow as tf
import tf_keras as keras


@keras.saving.register_keras_serializable(package="common")
class PositionEmbedding(keras.layers.Layer):
    """Adds a learned position embedding to a sequence of tokens.

    Each of the `sequence_length` positions owns a trainable vector of the token size; the layer
    returns `inputs + embedding`. The sequence length and token size are read from the input shape,
    which must be static (only the batch size may be unknown).

    Args:
        initializer: str or keras initializer, how the embedding starts. Defaults to
            `"truncated_normal"` with standard deviation 0.02 as in ViT
            (https://arxiv.org/abs/2010.11929).
        **kwargs: standard layer arguments (`name`, `dtype`, ...).

    Example:
    ```python
    tokens = keras.Input((64, 32))      # (batch, sequence, channels)
    y = PositionEmbedding()(tokens)     # (batch, 64, 32)
    ```
    """

    def __init__(self, initializer=None, **kwargs):
        super().__init__(**kwargs)
        if initializer is None:
            initializer = keras.initializers.TruncatedNormal(stddev=0.02)
        self.initializer = keras.initializers.get(initializer)

    def build(self, input_shape):
        length, dim = input_shape[-2], input_shape[-1]
        if length is None or dim is None:
            raise ValueError(
                f"PositionEmbedding needs a static (sequence, channels) shape, got {input_shape}"
            )
        self.embedding = self.add_weight(
            name="embedding",
            shape=(int(length), int(dim)),
            initializer=self.initializer,
            trainable=True,
        )
        super().build(input_shape)

    def call(self, inputs):
        # Under a mixed precision policy the weight is float32 and the tokens may be bfloat16.
        return inputs + tf.cast(self.embedding, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config["initializer"] = keras.initializers.serialize(self.initializer)
        return config


def _block_name(name, prefix):
    """`name`, or a fresh unique name `prefix_N` when `name` is None."""
    if name is None:
        name = f"{prefix}_{keras.backend.get_uid(prefix)}"
    return name


def residual_conv_block(x, filters, kernel_size=3, activation="relu", name=None):
    """Two Conv-BatchNorm-activation layers with an identity (or 1x1 projection) shortcut.

    The ResNet basic block (https://arxiv.org/abs/1512.03385): `conv-bn-act-conv-bn`, added to the
    shortcut, then the activation. The shortcut is a 1x1 convolution with batch normalization when
    the channel count changes, the input itself otherwise. Spatial size is kept ("same" padding).

    Args:
        x: Keras tensor of shape (batch, H, W, C).
        filters: int, number of output channels.
        kernel_size: int, size of both convolutions. Defaults to `3`.
        activation: str, Keras activation name. Defaults to `"relu"`.
        name: str or None, prefix of every layer in the block (`{name}_conv1`, `{name}_bn1`, ...).
            Defaults to a unique `residual_block_N`.

    Returns:
        Keras tensor of shape (batch, H, W, filters).

    Example:
    ```python
    inputs = keras.Input((32, 32, 3))
    y = residual_conv_block(inputs, 16, name="enc1")   # (batch, 32, 32, 16)
    ```
    """
    name = _block_name(name, "residual_block")
    layers = keras.layers
    # Convolutions feed a BatchNormalization, which has its own shift: a bias would be redundant.
    y = layers.Conv2D(filters, kernel_size, padding="same", use_bias=False, name=f"{name}_conv1")(x)
    y = layers.BatchNormalization(name=f"{name}_bn1")(y)
    y = layers.Activation(activation, name=f"{name}_act1")(y)
    y = layers.Conv2D(filters, kernel_size, padding="same", use_bias=False, name=f"{name}_conv2")(y)
    y = layers.BatchNormalization(name=f"{name}_bn2")(y)
    shortcut = x
    if x.shape[-1] != filters:
        shortcut = layers.Conv2D(filters, 1, use_bias=False, name=f"{name}_proj")(x)
        shortcut = layers.BatchNormalization(name=f"{name}_proj_bn")(shortcut)
    y = layers.Add(name=f"{name}_add")([y, shortcut])
    return layers.Activation(activation, name=f"{name}_out")(y)


ATTENTION_NORMS = ("layer", "batch")


def attention_block(x, num_heads=4, key_dim=32, position_embedding=True, dropout=0.0, name=None,
                    kv_size=0, query_size=0, norm="layer"):
    """Multi-head self-attention over the H*W positions of a feature map, with a residual.

    The map is flattened to H*W tokens of C channels, optionally given a learned position
    embedding, passed through `MultiHeadAttention` (https://arxiv.org/abs/1706.03762), added to
    its input and normalized (post-norm), then reshaped back to a map. Cost grows with
    (H*W) x (keys): use it on small maps, or pool the keys and values (`kv_size`).

    Two options make the block cheap on an int8 edge runtime (LiteRT), where the (H*W)^2 score
    matrix, its softmax and LayerNormalization's RSQRT run outside XNNPACK:

    * `kv_size`: keys and values come from the (position-embedded) map average-pooled to about
      kv_size x kv_size (pool size H // kv_size, W // kv_size), as in the spatial-reduction
      attention of PVT (https://arxiv.org/abs/2102.12122); every position still queries the whole
      map. 0 (or a map no larger than kv_size) = keys and values at full resolution.
    * `query_size`: the map itself is average-pooled to about query_size x query_size before
      attention (fewer tokens everywhere); the output map is then that smaller size.
    * `norm="batch"`: BatchNormalization instead of LayerNormalization after the residual (as in
      LeViT, https://arxiv.org/abs/2104.01136): an affine MUL/ADD at inference, which int8 runs
      inside XNNPACK.

    Args:
        x: Keras tensor of shape (batch, H, W, C) with static H, W and C.
        num_heads: int, number of attention heads. Defaults to `4`.
        key_dim: int, size of each head's query and key. Defaults to `32`.
        position_embedding: bool, add a learned `PositionEmbedding` to the tokens. Defaults to
            `True`.
        dropout: float, dropout rate on the attention weights. Defaults to `0.0`.
        name: str or None, prefix of every layer in the block (`{name}_mha`, `{name}_norm`, ...).
            Defaults to a unique `attention_block_N`.
        kv_size: int >= 0, side of the pooled key/value map (see above). Defaults to `0` (none).
        query_size: int >= 0, side of the pooled query map (see above). Defaults to `0` (none).
        norm: "layer" or "batch", the normalization after the residual. Defaults to `"layer"`.

    Returns:
        Keras tensor of shape (batch, H', W', C): H' = H, W' = W unless `query_size` pools them
        (H' = H // (H // query_size)).

    Example:
    ```python
    inputs = keras.Input((8, 8, 64))
    y = attention_block(inputs, num_heads=2, key_dim=16, name="bottleneck_attn")  # (batch, 8, 8, 64)
    z = attention_block(keras.Input((28, 28, 64)), kv_size=7, norm="batch")     # (batch, 28, 28, 64)
    ```
    """
    name = _block_name(name, "attention_block")
    if len(x.shape) != 4 or None in tuple(x.shape[1:4]):
        raise ValueError(
            f"attention_block {name}: needs a (batch, H, W, C) input with static H, W, C, got {x.shape}"
        )
    if norm not in ATTENTION_NORMS:
        raise ValueError(f"attention_block {name}: norm must be one of {ATTENTION_NORMS}, got {norm!r}")
    if int(kv_size) < 0 or int(query_size) < 0:
        raise ValueError(f"attention_block {name}: kv_size and query_size must be >= 0")
    layers = keras.layers
    query_pool = _pool_size(x.shape[1:3], query_size)
    if query_pool != (1, 1):
        x = layers.AveragePooling2D(query_pool, name=f"{name}_query_pool")(x)
    height, width, channels = (int(d) for d in x.shape[1:4])
    # Reshape keeps the batch dimension out of its target, so any batch size works.
    tokens = layers.Reshape((height * width, channels), name=f"{name}_tokens")(x)
    if position_embedding:
        tokens = PositionEmbedding(name=f"{name}_pos")(tokens)
    context = tokens
    kv_pool = _pool_size((height, width), kv_size)
    if kv_pool != (1, 1):
        grid = layers.Reshape((height, width, channels), name=f"{name}_kv_grid")(tokens)
        grid = layers.AveragePooling2D(kv_pool, name=f"{name}_kv_pool")(grid)
        context = layers.Reshape((grid.shape[1] * grid.shape[2], channels), name=f"{name}_kv_tokens")(grid)
    attended = layers.MultiHeadAttention(
        num_heads=num_heads, key_dim=key_dim, dropout=dropout, name=f"{name}_mha"
    )(tokens, context)
    y = layers.Add(name=f"{name}_add")([tokens, attended])
    if norm == "layer":
        y = layers.LayerNormalization(epsilon=1e-6, name=f"{name}_norm")(y)
    else:
        y = layers.BatchNormalization(name=f"{name}_norm")(y)
    return layers.Reshape((height, width, channels), name=f"{name}_map")(y)


def _pool_size(hw, size):
    """Pool size (ph, pw) that brings a map of side(s) `hw` down to about `size` (0: (1, 1))."""
    size = int(size)
    if size <= 0:
        return (1, 1)
    return tuple(max(1, int(side) // size) for side in hw)


@keras.saving.register_keras_serializable(package="common")
class SELU(keras.layers.Layer):
    """SELU (Klambauer et al. 2017, https://arxiv.org/abs/1706.02515), written as
    scale * alpha * elu(x) + scale * (1 - alpha) * relu(x): the same function as
    `keras.activations.selu`, but one that int8 TFLite keeps. The converter lowers keras' selu to
    SELECT and EXP ops whose int8 form loses the activation (measured: RMSE of 10^3-10^5
    quantization steps on paper 1's RAU-Net); RELU, MUL and ADD run int8, and the converter keeps
    the ELU in float between QUANTIZE ops (about 1 quantization step of error).
    Shape in = shape out.
    """

    ALPHA = 1.6732632423543772
    SCALE = 1.0507009873554805

    def call(self, x):
        return (self.SCALE * self.ALPHA) * tf.nn.elu(x) + (self.SCALE * (1.0 - self.ALPHA)) * tf.nn.relu(x)

    def compute_output_shape(self, input_shape):
        return input_shape


def activation_layer(activation, name):
    """The layer of an activation name: `SELU` for "selu" (int8-friendly), else
    `keras.layers.Activation`."""
    if activation == "selu":
        return SELU(name=name)
    return keras.layers.Activation(activation, name=name)


def squeeze_excitation(x, ratio=0.5, hidden_activation="selu", name=None):
    """Squeeze-excitation (https://arxiv.org/abs/1709.01507) as paper 1's authors built it.

    Global average pool -> dense `C * ratio` (`hidden_activation`) -> dense C sigmoid -> the map's
    channels scaled by the result.

    Args:
        x: Keras tensor of shape (batch, H, W, C) with a static C.
        ratio: float, width of the hidden layer as a fraction of C. Defaults to `0.5`.
        hidden_activation: str, activation of the hidden layer. Defaults to `"selu"`.
        name: str or None, prefix of the block's layers. Defaults to a unique `se_N`.

    Returns:
        Keras tensor of the shape of `x`.

    Example:
    ```python
    y = squeeze_excitation(keras.Input((16, 16, 32)), name="enc1_se")   # (batch, 16, 16, 32)
    ```
    """
    name = _block_name(name, "se")
    channels = int(x.shape[-1])
    layers = keras.layers
    w = layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_pool")(x)
    w = layers.Dense(max(1, int(channels * ratio)), name=f"{name}_reduce")(w)
    w = activation_layer(hidden_activation, f"{name}_reduce_{hidden_activation}")(w)
    w = layers.Dense(channels, activation="sigmoid", name=f"{name}_expand")(w)
    return layers.Multiply(name=f"{name}_scale")([x, w])


@keras.saving.register_keras_serializable(package="common")
class TriPlaneAttention(keras.layers.Layer):
    """Tri-plane attention: self-attention on the three pooled planes of a feature map.

    The form of papers 1 and 4 (Le, Pham et al.; arXiv 2312.16717, 2211.02820). A map (B, H, W, C)
    is pooled over channels to an H x W plane (H tokens of W values), over width to H x C (H
    tokens of C) and over height to W x C (W tokens of C); each plane goes through its own
    multi-head self-attention (output as wide as its tokens) and a sigmoid, and scales the map by
    broadcasting; the output is the mean of the three scaled maps. Pooling is the mean (paper 1)
    or the mean plus the max (paper 4: the two pooled planes are added, not stacked, so the
    attention sizes and the parameter count are the same).

    Parameters: per plane 4 * num_heads * key_dim * d + 3 * num_heads * key_dim + d, with d the
    token width (W for the channel plane, C for the other two).

    Args:
        num_heads: int, attention heads of each plane. Defaults to `6` (paper 1).
        key_dim: int, size of each head's query and key. Defaults to `12` (paper 1).
        pooling: "mean" or "mean_max", how each plane is pooled. Defaults to `"mean"` (paper 1).
        **kwargs: other `keras.layers.Layer` arguments (`name`, `dtype`).

    Example:
    ```python
    y = TriPlaneAttention(num_heads=2, key_dim=4)(keras.Input((16, 16, 8)))   # (batch, 16, 16, 8)
    ```
    """

    PLANES = ("channels", "width", "height")
    POOLINGS = ("mean", "mean_max")

    def __init__(self, num_heads=6, key_dim=12, pooling="mean", **kwargs):
        super().__init__(**kwargs)
        if pooling not in self.POOLINGS:
            raise ValueError(f"TriPlaneAttention: pooling must be one of {self.POOLINGS}, got {pooling!r}")
        self.num_heads, self.key_dim, self.pooling = int(num_heads), int(key_dim), pooling
        # The sublayers follow this layer's dtype policy (a float32 copy of a mixed-precision
        # model rebuilds them float32 too).
        self.attention = {plane: keras.layers.MultiHeadAttention(
            self.num_heads, self.key_dim, dtype=self.dtype_policy, name=f"mha_{plane}")
            for plane in self.PLANES}

    def build(self, input_shape):
        if len(input_shape) != 4 or None in tuple(input_shape[1:]):
            raise ValueError(f"TriPlaneAttention {self.name}: needs a (batch, H, W, C) input with "
                             f"static H, W, C, got {tuple(input_shape)}")
        _, height, width, channels = (int(d) if d is not None else None for d in input_shape)
        tokens = {"channels": (height, width), "width": (height, channels),
                  "height": (width, channels)}
        for plane, layer in self.attention.items():
            shape = (None, *tokens[plane])
            layer._build_from_signature(tf.TensorShape(shape), tf.TensorShape(shape))
        super().build(input_shape)

    def call(self, x):
        x = tf.cast(x, self.compute_dtype)  # under mixed precision the gates are in it too
        planes = {plane: self._pool(x, axis) for plane, axis in zip(self.PLANES, (-1, 2, 1))}
        gates = {plane: tf.cast(tf.sigmoid(self.attention[plane](tokens, tokens)), x.dtype)
                 for plane, tokens in planes.items()}
        return (x * gates["channels"][..., None] + x * gates["width"][:, :, None, :]
                + x * gates["height"][:, None, :, :]) / 3.0

    def _pool(self, x, axis):
        if self.pooling == "mean":
            return tf.reduce_mean(x, axis=axis)
        return tf.reduce_mean(x, axis=axis) + tf.reduce_max(x, axis=axis)

    def macs(self, input_shape):
        """Multiply-accumulates of one example (common.complexity): each plane's attention, Q, K,
        V and output projections plus the two (tokens x tokens) products; the pooling and the
        gating count 0, as elementwise layers do there."""
        height, width, channels = (int(d) for d in input_shape[-3:])
        inner = self.num_heads * self.key_dim
        total = 0
        for tokens, dim in ((height, width), (height, channels), (width, channels)):
            total += 4 * tokens * dim * inner + 2 * tokens * tokens * inner
        return total

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "num_heads": self.num_heads, "key_dim": self.key_dim,
                "pooling": self.pooling}


@keras.saving.register_keras_serializable(package="common")
class ChannelMeanMax(keras.layers.Layer):
    """The mean and the max of a map over its channels, stacked: (B, H, W, C) -> (B, H, W, 2).

    CBAM's spatial descriptor (https://arxiv.org/abs/1807.06521). No weights.

    Example:
    ```python
    y = ChannelMeanMax()(keras.Input((8, 8, 16)))   # (batch, 8, 8, 2)
    ```
    """

    def call(self, x):
        return tf.concat([tf.reduce_mean(x, axis=-1, keepdims=True),
                          tf.reduce_max(x, axis=-1, keepdims=True)], axis=-1)

    def compute_output_shape(self, input_shape):
        return (*tuple(input_shape)[:-1], 2)


def cbam_block(x, ratio=0.125, kernel_size=7, name=None):
    """CBAM (Woo et al., https://arxiv.org/abs/1807.06521): channel, then spatial attention.

    Channel: the map's global average and global max (1 x 1 x C each) through one shared MLP
    (dense `C * ratio` ReLU -> dense C), added, sigmoid, channels scaled. Spatial: the mean and
    max over channels (H x W x 2) -> a `kernel_size` convolution to one sigmoid plane that scales
    every position. Parameters: 2 * C * hidden + hidden + C + 2 * kernel_size^2 + 1.

    Args:
        x: Keras tensor of shape (batch, H, W, C) with a static C.
        ratio: float, width of the MLP's hidden layer as a fraction of C. Defaults to `0.125`
            (reduction 8).
        kernel_size: int, side of the spatial convolution. Defaults to `7` (the CBAM paper).
        name: str or None, prefix of the block's layers. Defaults to a unique `cbam_N`.

    Returns:
        Keras tensor of the shape of `x`.

    Example:
    ```python
    y = cbam_block(keras.Input((16, 16, 64)), name="b5_cbam")   # (batch, 16, 16, 64)
    ```
    """
    name = _block_name(name, "cbam")
    channels = int(x.shape[-1])
    layers = keras.layers
    hidden = layers.Dense(max(1, int(channels * ratio)), activation="relu", name=f"{name}_reduce")
    expand = layers.Dense(channels, name=f"{name}_expand")
    mean = layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_avg")(x)
    peak = layers.GlobalMaxPooling2D(keepdims=True, name=f"{name}_max")(x)
    gate = layers.Add(name=f"{name}_channel_sum")([expand(hidden(mean)), expand(hidden(peak))])
    gate = layers.Activation("sigmoid", name=f"{name}_channel_gate")(gate)
    x = layers.Multiply(name=f"{name}_channel_scale")([x, gate])
    plane = ChannelMeanMax(name=f"{name}_pool")(x)
    plane = layers.Conv2D(1, kernel_size, padding="same", activation="sigmoid",
                          name=f"{name}_spatial_gate")(plane)
    return layers.Multiply(name=f"{name}_spatial_scale")([x, plane])


@keras.saving.register_keras_serializable(package="common")
class WeightedEmbeddingSum(keras.layers.Layer):
    """Fuses N embeddings of one size by trainable element-wise weights: f = sum_n e_n * w_n + b.

    Paper 3's combined teacher (Pham et al., ISPA 2023, arXiv 2302.13028): the 512-d embeddings
    of three frozen networks, one weight vector per network and one bias, all of the embedding's
    size; the fused vector is what the student imitates. Initialized as the authors' code does
    (random normal, stddev 0.05).

    Args:
        initializer: initializer of the weights w_n and the bias b. Defaults to `"random_normal"`.
        **kwargs: other `keras.layers.Layer` arguments (`name`, `dtype`).

    Input: a list of N >= 1 float tensors (B, D) of the same D. Output: (B, D).

    Example:
    ```python
    fused = WeightedEmbeddingSum(name="embedding")([emb_a, emb_b, emb_c])   # (batch, 512)
    ```
    """

    def __init__(self, initializer="random_normal", **kwargs):
        super().__init__(**kwargs)
        self.initializer = keras.initializers.get(initializer)

    def build(self, input_shape):
        listed = isinstance(input_shape, (list, tuple)) and len(input_shape) > 0 and all(
            isinstance(shape, (list, tuple, tf.TensorShape)) for shape in input_shape)
        shapes = [tuple(shape) for shape in input_shape] if listed else []
        if not shapes or any(len(shape) != 2 or shape[-1] is None for shape in shapes):
            raise ValueError(f"WeightedEmbeddingSum {self.name}: needs a list of (batch, D) inputs, "
                             f"got {input_shape}")
        sizes = sorted({int(shape[-1]) for shape in shapes})
        if len(sizes) > 1:
            raise ValueError(f"WeightedEmbeddingSum {self.name}: the embeddings differ in size "
                             f"({', '.join(map(str, sizes))}); they must be of one size")
        self.member_weights = self.add_weight(name="member_weights", shape=(len(shapes), sizes[0]),
                                              initializer=self.initializer, trainable=True)
        self.bias = self.add_weight(name="bias", shape=(sizes[0],), initializer=self.initializer,
                                    trainable=True)
        super().build(input_shape)

    def call(self, inputs):
        # A sum of element-wise products (MUL, ADD): ops every TFLite runtime has.
        terms = [tf.cast(e, self.compute_dtype) * self.member_weights[n] for n, e in enumerate(inputs)]
        return tf.add_n(terms) + self.bias

    def compute_output_shape(self, input_shape):
        return tf.TensorShape(input_shape[0])

    def get_config(self):
        return {**super().get_config(),
                "initializer": keras.initializers.serialize(self.initializer)}
