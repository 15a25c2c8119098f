"""Landslide4Sense networks: three families (`model.family`).

`unet`: the official baseline's U-Net and our reading of the paper's improvements, each a switch:

* U-Net (`model.*` all off): the 5-level U-Net of the official baseline, filters
  64-128-256-512-512 times `model.width`, double 3x3 convolution + BatchNorm + ReLU per level, max
  pooling, bilinear up-sampling, skip concatenation, 1x1 convolution + sigmoid (about 17.3M
  parameters at width 1 with 14 inputs).
* `model.residual`: every double convolution becomes `common.layers.residual_conv_block`.
* `model.attention`: multi-head self-attention over the bottleneck's tokens (8x8 for 128x128).
* `model.multires`: three heads, from the decoder at 1/4, 1/2 and full resolution, up-sampled
  (bilinear) to full size. The training model stacks them, (B, H, W, 3), so one loss
  (`HeadSumLoss`) and one metric (`EnsembleF1`, logged as `f1`/`val_f1`) cover them; the
  inference model averages them, (B, H, W, 1).

`authors_unet`: paper 1's authors' U-Net baseline (docs/papers.md): filters
64-128-256-512-1024 times `model.width`, double 3x3 convolution + BatchNorm + LeakyReLU, max
pooling, nearest up-sampling, concatenation, `model.dropout`, a 1x1 two-class softmax (about 31.4M
parameters with 23 inputs).

`rau_net`: their RAU-Net (24,890,374 parameters with 23 inputs and 128 filters, squeeze-excitation):
a 3x3 stem, four [residual block -> 2x2 stride-2 convolution (SELU)] at a constant
`model.filters`, four [2x2 stride-2 transposed convolution (SELU) as wide as its input ->
concatenated skip -> residual block] (widths 2f, 3f, 4f, 5f), dropout, then one two-class softmax
head per `model.head_scales` entry: 2 = 3x3 stride-2 transposed convolution (64, ReLU), 1 = the
map itself, 0.5 = 3x3 stride-2 convolution (64, ReLU), each ending in a 1x1 softmax. Residual
block: (3x3 conv + BN + LeakyReLU) + (2x2 conv + BN + LeakyReLU), 3x3 conv + BN + LeakyReLU,
`model.block_attention` (none | se | triplane_mha), plus the block input. Their bottleneck block,
built but not connected, is left out (it holds no parameter of the model).

Both authors' families output the landslide probability (the softmax's second class). Their
training model packs every head into one (B, H, W, K) tensor at the input's size (`PackHeads`:
a 2x head as space-to-depth, 4 channels; a 1/2x head up-sampled by repetition), which
`MultiResolutionLoss` unpacks exactly and scores against the mask resized as the authors do
(nearest); the inference model outputs the 1x head or the average of all heads brought to 1x
(`model.inference_head`).
"""

import tensorflow as tf
import tf_keras as keras

from common.errors import ConfigError
from common.layers import (
    SELU,
    TriPlaneAttention,
    attention_block,
    residual_conv_block,
    squeeze_excitation,
)
from common.losses import BinaryFocalLoss, SoftIoULoss, WeightedSumLoss, per_sample_loss
from common.metrics import BinaryF1
from landslide.data import NUM_BANDS
from landslide.features import front, num_channels

FILTERS = (64, 128, 256, 512, 512)
AUTHORS_UNET_FILTERS = (64, 128, 256, 512, 1024)
LOSSES = ("ce", "focal", "iou", "focal_iou")
FAMILIES = ("unet", "authors_unet", "rau_net")
BLOCK_ATTENTIONS = ("none", "se", "triplane_mha")
HEAD_WIDTH = 64  # the RAU-Net's 2x and 1/2x head branches


def _block(x, filters, mid, model_cfg, name):
    """Two 3x3 convolutions (`mid`, then `filters` wide) + BatchNorm + ReLU, or with
    `model.residual` a `common.layers.residual_conv_block`."""
    if model_cfg["residual"]:
        return residual_conv_block(x, filters, name=name)
    for i, width in enumerate((mid, filters), start=1):
        x = keras.layers.Conv2D(width, 3, padding="same", use_bias=False, name=f"{name}_conv{i}")(x)
        x = keras.layers.BatchNormalization(name=f"{name}_bn{i}")(x)
        x = keras.layers.Activation("relu", name=f"{name}_relu{i}")(x)
    return x


def _head(x, scale, name):
    """1x1 convolution to one logit, up-sampled by `scale`, then sigmoid (float32 probabilities)."""
    x = keras.layers.Conv2D(1, 1, name=f"{name}_logits")(x)
    if scale > 1:
        x = keras.layers.UpSampling2D(scale, interpolation="bilinear", name=f"{name}_upsample")(x)
    return keras.layers.Activation("sigmoid", dtype="float32", name=name)(x)


def build_models(cfg, mean, std):
    """(training model: raw (B, H, W, 14) -> (B, H, W, heads) probabilities, inference model:
    -> (B, H, W, 1)) of a config, sharing every layer; the front (features.py) standardises with
    `mean`, `std` (14 + engineered bands long)."""
    model_cfg, size = cfg["model"], int(cfg["data"]["patch_size"])
    if size % 16:
        raise ConfigError(f"config key 'data.patch_size' must be a multiple of 16 (4 poolings), "
                          f"got {size}")
    channels = num_channels(cfg["features"])
    if len(mean) != channels or len(std) != channels:
        raise ConfigError(f"normalisation statistics have {len(mean)} channels, the model needs "
                          f"{channels}")
    family = model_cfg["family"]
    if family not in FAMILIES:
        raise ConfigError(f"config key 'model.family' must be one of {', '.join(FAMILIES)}, "
                          f"got {family!r}")
    inputs = keras.Input((size, size, NUM_BANDS), name="image")
    x = front(inputs, cfg, mean, std)
    if family == "authors_unet":
        training, inference = _authors_unet(inputs, x, model_cfg)
    elif family == "rau_net":
        training, inference = _rau_net(inputs, x, model_cfg)
    else:
        training, inference = _unet(inputs, x, model_cfg)
    # A short run (tests, the demo) needs faster-moving BatchNorm statistics than Keras' 0.99,
    # or inference uses statistics that are still mostly their initial values.
    for layer in training.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = float(model_cfg["bn_momentum"])
    return training, inference


def _unet(inputs, x, model_cfg):
    """Our U-Net family (module docstring) on the front's output `x`."""
    f = [max(1, round(filters * float(model_cfg["width"]))) for filters in FILTERS]
    skips = []
    for level, filters in enumerate(f[:4], start=1):
        x = _block(x, filters, filters, model_cfg, f"enc{level}")
        skips.append(x)
        x = keras.layers.MaxPooling2D(name=f"pool{level}")(x)
    x = _block(x, f[4], f[4], model_cfg, "bottleneck")
    if model_cfg["attention"]:
        x = attention_block(x, num_heads=int(model_cfg["attention_heads"]),
                            key_dim=int(model_cfg["attention_key_dim"]),
                            name="bottleneck_attention")
    # Decoder (filters, middle width): the middle convolution halves the concatenation.
    widths, decoder = [(f[2], (f[3] + f[4]) // 2), (f[1], f[2]), (f[0], f[1]), (f[0], f[0])], []
    for level, (filters, mid) in enumerate(widths, start=1):
        up = keras.layers.UpSampling2D(2, interpolation="bilinear", name=f"dec{level}_upsample")(x)
        x = keras.layers.Concatenate(name=f"dec{level}_concat")([skips[-level], up])
        x = _block(x, filters, mid, model_cfg, f"dec{level}")
        decoder.append(x)

    if not model_cfg["multires"]:
        training = inference = keras.Model(inputs, _head(x, 1, "mask"), name="landslide_unet")
    else:
        heads = [_head(decoder[1], 4, "head_quarter"), _head(decoder[2], 2, "head_half"),
                 _head(decoder[3], 1, "head_full")]
        stacked = keras.layers.Concatenate(name="heads", dtype="float32")(heads)
        training = keras.Model(inputs, stacked, name="landslide_unet_multires")
        inference = keras.Model(inputs, keras.layers.Average(name="mask", dtype="float32")(heads),
                                name="landslide_unet")
    return training, inference


def _conv_bn_leaky(x, filters, kernel_size, name):
    """Convolution (with bias, He-normal, as the authors') + BatchNorm + LeakyReLU (slope 0.3)."""
    x = keras.layers.Conv2D(filters, kernel_size, padding="same", kernel_initializer="he_normal",
                            name=f"{name}_conv")(x)
    x = keras.layers.BatchNormalization(name=f"{name}_bn")(x)
    return keras.layers.LeakyReLU(0.3, name=f"{name}_leaky")(x)


def _class_probability(x, name):
    """1x1 convolution to two logits, softmax, the landslide probability (B, H, W, 1)."""
    x = keras.layers.Conv2D(2, 1, name=f"{name}_logits")(x)
    x = keras.layers.Softmax(dtype="float32", name=f"{name}_softmax")(x)
    return TakeChannel(1, dtype="float32", name=name)(x)


def _authors_unet(inputs, x, model_cfg):
    """Paper 1's authors' U-Net (module docstring): one head, training = inference model."""
    f = [max(1, round(filters * float(model_cfg["width"]))) for filters in AUTHORS_UNET_FILTERS]
    skips = []
    for level, filters in enumerate(f, start=1):
        x = _conv_bn_leaky(x, filters, 3, f"enc{level}a")
        x = _conv_bn_leaky(x, filters, 3, f"enc{level}b")
        if level < len(f):
            skips.append(x)
            x = keras.layers.MaxPooling2D(name=f"pool{level}")(x)
    for level, filters in enumerate(reversed(f[:-1]), start=1):
        up = keras.layers.UpSampling2D(2, name=f"dec{level}_upsample")(x)
        x = keras.layers.Concatenate(name=f"dec{level}_concat")([up, skips[-level]])
        x = _conv_bn_leaky(x, filters, 3, f"dec{level}a")
        x = _conv_bn_leaky(x, filters, 3, f"dec{level}b")
    x = keras.layers.Dropout(float(model_cfg["dropout"]), name="dropout")(x)
    model = keras.Model(inputs, _class_probability(x, "mask"), name="landslide_authors_unet")
    return model, model


def _rau_block(x, filters, model_cfg, name):
    """The RAU-Net's residual block (module docstring); the input must be `filters` wide."""
    a = _conv_bn_leaky(x, filters, 3, f"{name}_a")
    b = _conv_bn_leaky(x, filters, 2, f"{name}_b")
    y = keras.layers.Add(name=f"{name}_sum")([a, b])
    y = _conv_bn_leaky(y, filters, 3, f"{name}_c")
    attention = model_cfg["block_attention"]
    if attention == "se":
        y = squeeze_excitation(y, name=f"{name}_se")
    elif attention == "triplane_mha":
        y = TriPlaneAttention(int(model_cfg["triplane_heads"]), int(model_cfg["triplane_key_dim"]),
                              name=f"{name}_triplane")(y)
    elif attention != "none":
        raise ConfigError(f"config key 'model.block_attention' must be one of "
                          f"{', '.join(BLOCK_ATTENTIONS)}, got {attention!r}")
    return keras.layers.Add(name=f"{name}_residual")([y, x])


def head_layout(model_cfg):
    """[(scale, weight)] of the RAU-Net's heads, checked: scales 2, 1 or 0.5, one weight each."""
    scales = [float(s) for s in model_cfg["head_scales"]]
    weights = [float(w) for w in model_cfg["head_weights"]]
    if not scales or any(s not in (2.0, 1.0, 0.5) for s in scales) or len(set(scales)) != len(scales):
        raise ConfigError(f"config key 'model.head_scales' must list distinct scales among 2, 1 "
                          f"and 0.5, got {model_cfg['head_scales']}")
    if len(weights) != len(scales) or any(w < 0 for w in weights):
        raise ConfigError(f"config key 'model.head_weights' must give one weight >= 0 per head "
                          f"scale ({len(scales)}), got {model_cfg['head_weights']}")
    return list(zip(scales, weights))


def _rau_net(inputs, x, model_cfg):
    """Paper 1's authors' RAU-Net (module docstring): (training model with packed heads,
    inference model)."""
    filters, size = int(model_cfg["filters"]), int(inputs.shape[1])
    layout = head_layout(model_cfg)
    if model_cfg["inference_head"] not in ("1x", "average"):
        raise ConfigError("config key 'model.inference_head' must be 1x or average, got "
                          f"{model_cfg['inference_head']!r}")
    if model_cfg["inference_head"] == "1x" and 1.0 not in dict(layout):
        raise ConfigError("config key 'model.inference_head' is 1x but model.head_scales has no 1")
    x = _conv_bn_leaky(x, filters, 3, "stem")
    skips = []
    for level in range(1, 5):
        x = _rau_block(x, filters, model_cfg, f"enc{level}")
        skips.append(x)
        x = keras.layers.Conv2D(filters, 2, strides=2, padding="same",
                                kernel_initializer="he_normal", name=f"down{level}")(x)
        x = SELU(name=f"down{level}_selu")(x)
    for level in range(1, 5):
        x = keras.layers.Conv2DTranspose(int(x.shape[-1]), 2, strides=2, padding="same",
                                         kernel_initializer="he_normal", name=f"up{level}")(x)
        x = SELU(name=f"up{level}_selu")(x)
        x = keras.layers.Concatenate(name=f"dec{level}_concat")([x, skips[-level]])
        x = _rau_block(x, int(x.shape[-1]), model_cfg, f"dec{level}")
    x = keras.layers.Dropout(float(model_cfg["dropout"]), name="dropout")(x)
    heads = []
    for scale, _ in layout:
        name = {2.0: "head_2x", 1.0: "head_1x", 0.5: "head_half"}[scale]
        branch = x
        if scale == 2.0:
            branch = keras.layers.Conv2DTranspose(HEAD_WIDTH, 3, strides=2, padding="same",
                                                  activation="relu", kernel_initializer="he_normal",
                                                  name=f"{name}_up")(x)
        elif scale == 0.5:
            branch = keras.layers.Conv2D(HEAD_WIDTH, 3, strides=2, padding="same", activation="relu",
                                         kernel_initializer="he_normal", name=f"{name}_down")(x)
        heads.append(_class_probability(branch, name))
    scales = [scale for scale, _ in layout]
    packed = heads[0] if scales == [1.0] else PackHeads(scales, size, name="heads",
                                                        dtype="float32")(heads)
    training = keras.Model(inputs, packed, name="landslide_rau_net")
    if model_cfg["inference_head"] == "1x":
        mask = heads[scales.index(1.0)]
    else:
        at_1x = [h if s == 1.0 else keras.layers.AveragePooling2D(2, name=f"avg_{i}")(h) if s == 2.0
                 else keras.layers.UpSampling2D(2, name=f"avg_{i}")(h)
                 for i, (h, s) in enumerate(zip(heads, scales))]
        mask = at_1x[0] if len(at_1x) == 1 else keras.layers.Average(name="mask_average",
                                                                       dtype="float32")(at_1x)
    if scales == [1.0]:
        return training, training
    return training, keras.Model(inputs, mask, name="landslide_rau_net_inference")


@keras.saving.register_keras_serializable(package="landslide")
class TakeChannel(keras.layers.Layer):
    """Channel `index` of a (B, H, W, C) map, kept as (B, H, W, 1)."""

    def __init__(self, index, **kwargs):
        super().__init__(**kwargs)
        self.index = int(index)

    def call(self, x):
        return x[..., self.index : self.index + 1]

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], 1)

    def get_config(self):
        return {**super().get_config(), "index": self.index}


@keras.saving.register_keras_serializable(package="landslide")
class PackHeads(keras.layers.Layer):
    """Heads of several resolutions (B, s*S, s*S, 1) packed losslessly at the input size S:
    s = 2 as space-to-depth (4 channels), s = 1 as is, s = 1/2 repeated 2x2 (1 channel); the
    channels are concatenated in `scales` order: (B, S, S, sum of 4 / 1 / 1)."""

    def __init__(self, scales, size, **kwargs):
        super().__init__(**kwargs)
        self.scales, self.size = [float(s) for s in scales], int(size)

    def call(self, heads):
        packed = []
        for scale, head in zip(self.scales, heads):
            if scale == 2.0:
                head = tf.nn.space_to_depth(head, 2)
            elif scale == 0.5:
                head = tf.repeat(tf.repeat(head, 2, axis=1), 2, axis=2)
            packed.append(head)
        return tf.concat(packed, axis=-1)

    def compute_output_shape(self, input_shape):
        channels = sum(4 if s == 2.0 else 1 for s in self.scales)
        return (input_shape[0][0], self.size, self.size, channels)

    def get_config(self):
        return {**super().get_config(), "scales": self.scales, "size": self.size}


def unpack_heads(y_pred, scales):
    """The heads `PackHeads` packed: a list of (B, s*S, s*S, 1) tensors, in `scales` order."""
    heads, start = [], 0
    for scale in scales:
        width = 4 if scale == 2.0 else 1
        head = y_pred[..., start : start + width]
        start += width
        if scale == 2.0:
            head = tf.nn.depth_to_space(head, 2)
        elif scale == 0.5:
            head = head[:, ::2, ::2]
        heads.append(head)
    return heads


def resize_mask(y_true, scale):
    """A (B, S, S, 1) mask at `scale` as the authors resize it (OpenCV nearest): 2 repeats each
    pixel 2x2, 1/2 keeps the even rows and columns."""
    if scale == 2.0:
        return tf.repeat(tf.repeat(y_true, 2, axis=1), 2, axis=2)
    if scale == 0.5:
        return y_true[:, ::2, ::2]
    return y_true


def base_loss(loss_cfg):
    """The per-head loss of the `loss:` config section (a Keras loss on landslide probabilities).

    focal: `focal_alpha` weighs the landslide class and 1 - alpha the background, or
    `focal_class_alpha` [background, landslide] gives both ([1, 1] = none, the authors). iou:
    `iou_form` one_minus (1 - IoU, per patch, smooth 1) or neglog (-log IoU pooled over the batch,
    eps 1e-7, the authors); `iou_classes` landslide or both (the mean over the two classes)."""
    name = loss_cfg["name"]
    if name not in LOSSES:
        raise ConfigError(f"config key 'loss.name' must be one of {', '.join(LOSSES)}, "
                          f"got {name!r}")
    class_alpha = [float(a) for a in loss_cfg["focal_class_alpha"]]
    if class_alpha and (len(class_alpha) != 2 or min(class_alpha) < 0):
        raise ConfigError("config key 'loss.focal_class_alpha' must be [] or two weights >= 0 "
                          f"[background, landslide], got {loss_cfg['focal_class_alpha']}")
    focal = BinaryFocalLoss(alpha=class_alpha[1] if class_alpha else float(loss_cfg["focal_alpha"]),
                            gamma=float(loss_cfg["focal_gamma"]),
                            alpha_negative=class_alpha[0] if class_alpha else None)
    form, classes = loss_cfg["iou_form"], loss_cfg["iou_classes"]
    if form not in ("one_minus", "neglog"):
        raise ConfigError(f"config key 'loss.iou_form' must be one_minus or neglog, got {form!r}")
    if classes not in ("landslide", "both"):
        raise ConfigError(f"config key 'loss.iou_classes' must be landslide or both, got {classes!r}")
    authors = form == "neglog"
    iou = SoftIoULoss(smooth=1e-7 if authors else 1.0, form=form, pooled=authors,
                      classes="both" if classes == "both" else "positive")
    if name == "focal_iou":
        weights = [float(loss_cfg["focal_weight"]), float(loss_cfg["iou_weight"])]
        return WeightedSumLoss([focal, iou], weights)
    return {"ce": keras.losses.BinaryCrossentropy(), "focal": focal, "iou": iou}[name]


@keras.saving.register_keras_serializable(package="landslide")
class MultiResolutionLoss(keras.losses.Loss):
    """A base `loss` on each head `PackHeads` packed, against the mask resized to the head's size
    (`resize_mask`), weighted and summed: y_true (B, S, S, 1), y_pred (B, S, S, K) -> (B,)."""

    def __init__(self, loss, scales, weights, name="multi_resolution_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.loss = keras.losses.get(loss)
        self.scales, self.weights = [float(s) for s in scales], [float(w) for w in weights]

    def call(self, y_true, y_pred):
        y_true = tf.cast(y_true, tf.float32)
        if y_true.shape.rank == 3:
            y_true = y_true[..., None]
        heads = [y_pred] if self.scales == [1.0] else unpack_heads(y_pred, self.scales)
        return tf.add_n([weight * per_sample_loss(self.loss, resize_mask(y_true, scale), head)
                         for scale, weight, head in zip(self.scales, self.weights, heads)])

    def get_config(self):
        return {**super().get_config(), "loss": keras.losses.serialize(self.loss),
                "scales": self.scales, "weights": self.weights}


@keras.saving.register_keras_serializable(package="landslide")
class PackedHeadF1(BinaryF1):
    """Landslide F1 of what the inference model predicts, from the packed heads: the 1x head, or
    the mean of all heads at 1x (`inference_head` "average"; a 2x head's 2x2 mean, a 1/2x head
    repeated). `two_class`: the mean of the background's and the landslide's F1 instead, pixels
    pooled (paper 1's F1, what the authors chose their epoch on)."""

    def __init__(self, scales=(1.0,), inference_head="1x", two_class=False, **kwargs):
        super().__init__(**kwargs)
        self.scales, self.inference_head = [float(s) for s in scales], inference_head
        self.two_class = bool(two_class)
        if self.two_class:
            self.pixels = self.add_weight(name="pixels", initializer="zeros", dtype=tf.float32)

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_pred, start, at_1x = tf.cast(y_pred, tf.float32), 0, []
        for scale in self.scales:
            width = 4 if scale == 2.0 else 1
            at_1x.append(tf.reduce_mean(y_pred[..., start : start + width], -1, keepdims=True))
            start += width
        if self.inference_head == "1x":
            mask = at_1x[self.scales.index(1.0)]
        else:
            mask = tf.add_n(at_1x) / len(at_1x)
        if self.two_class:  # unweighted pixel count: the background's true negatives follow
            self.pixels.assign_add(tf.cast(tf.size(mask), tf.float32))
        return super().update_state(y_true, mask, sample_weight)

    def result(self):
        landslide = super().result()
        if not self.two_class:
            return landslide
        tp, fp, fn = self.true_positives, self.false_positives, self.false_negatives
        tn = self.pixels - tp - fp - fn
        return (landslide + tf.math.divide_no_nan(2.0 * tn, 2.0 * tn + fp + fn)) / 2.0

    def get_config(self):
        return {**super().get_config(), "scales": self.scales,
                "inference_head": self.inference_head, "two_class": self.two_class}


@keras.saving.register_keras_serializable(package="landslide")
class HeadSumLoss(keras.losses.Loss):
    """A base `loss` (a Keras loss on probabilities, labels (B, H, W, 1)) applied to each head
    stacked on the last axis and summed: (B, H, W, K) -> (B,)."""

    def __init__(self, loss, name="head_sum_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.loss = keras.losses.get(loss)

    def call(self, y_true, y_pred):
        return tf.add_n([per_sample_loss(self.loss, y_true, y_pred[..., k : k + 1])
                         for k in range(y_pred.shape[-1])])

    def get_config(self):  # the base from_config passes the serialized loss to keras.losses.get
        return {**super().get_config(), "loss": keras.losses.serialize(self.loss)}


@keras.saving.register_keras_serializable(package="landslide")
class EnsembleF1(BinaryF1):
    """Landslide F1 of the average of the heads stacked on the last axis (what inference
    predicts)."""

    def update_state(self, y_true, y_pred, sample_weight=None):
        mean = tf.reduce_mean(tf.cast(y_pred, tf.float32), axis=-1, keepdims=True)
        return super().update_state(y_true, mean, sample_weight)


def compile_training_model(model, cfg, optimizer):
    """Compile `model` with the config's loss over its heads (summed for `unet`, weighted at each
    head's resolution for the authors' families) and the F1 of what inference predicts (for the
    authors' families also its two-class mean, `f1_mean`, paper 1's F1)."""
    m = cfg["model"]
    if m["family"] == "unet":
        loss, metrics = HeadSumLoss(base_loss(cfg["loss"])), [EnsembleF1(name="f1")]
    else:
        layout = head_layout(m) if m["family"] == "rau_net" else [(1.0, 1.0)]
        scales, weights = [s for s, _ in layout], [w for _, w in layout]
        loss = MultiResolutionLoss(base_loss(cfg["loss"]), scales, weights)
        metrics = [PackedHeadF1(scales, m["inference_head"], name="f1"),
                   PackedHeadF1(scales, m["inference_head"], two_class=True, name="f1_mean")]
    model.compile(optimizer=optimizer, loss=loss, metrics=metrics)
    return model
