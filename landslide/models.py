"""U-Net for Landslide4Sense and the paper's improvements, each a config switch.

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
"""

import tensorflow as tf
import tf_keras as keras

from common.errors import ConfigError
from common.layers import attention_block, residual_conv_block
from common.losses import BinaryFocalLoss, SoftIoULoss, WeightedSumLoss, per_sample_loss
from common.metrics import BinaryF1
from landslide.data import NUM_BANDS
from landslide.features import front, num_channels

FILTERS = (64, 128, 256, 512, 512)
LOSSES = ("ce", "focal", "iou", "focal_iou")


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
    f = [max(1, round(filters * float(model_cfg["width"]))) for filters in FILTERS]
    inputs = keras.Input((size, size, NUM_BANDS), name="image")
    x, skips = front(inputs, cfg["features"], mean, std), []
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
    # A short run (tests, the demo) needs faster-moving BatchNorm statistics than Keras' 0.99,
    # or inference uses statistics that are still mostly their initial values.
    for layer in training.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = float(model_cfg["bn_momentum"])
    return training, inference


def base_loss(loss_cfg):
    """The per-head loss of the `loss:` config section (a Keras loss on probabilities)."""
    name = loss_cfg["name"]
    if name not in LOSSES:
        raise ConfigError(f"config key 'loss.name' must be one of {', '.join(LOSSES)}, "
                          f"got {name!r}")
    focal = BinaryFocalLoss(alpha=float(loss_cfg["focal_alpha"]),
                            gamma=float(loss_cfg["focal_gamma"]))
    if name == "focal_iou":
        weights = [float(loss_cfg["focal_weight"]), float(loss_cfg["iou_weight"])]
        return WeightedSumLoss([focal, SoftIoULoss()], weights)
    return {"ce": keras.losses.BinaryCrossentropy(), "focal": focal, "iou": SoftIoULoss()}[name]


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
    """Compile `model` with the config's loss summed over heads and the ensemble F1 metric."""
    model.compile(optimizer=optimizer, loss=HeadSumLoss(base_loss(cfg["loss"])),
                  metrics=[EnsembleF1(name="f1")])
    return model
