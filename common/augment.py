"""Training-time augmentation shared by the tasks: mixup inside a batch, a square crop layer, and
the switch that turns augmentation off for the last epochs.

- `mixup_batch` / `mixup_ratios`: mixup (Zhang et al., https://arxiv.org/abs/1710.09412) as the
  authors of papers 3 and 4 built it: each example of the first half of a batch is paired with the
  example half a batch later, both mixed images of a pair take the same ratio (each keeps that
  share of itself), and with `keep_originals` the originals stay in the batch, which doubles.
- `SquareCrop`: a model's first layer cropping (S, S) images to (size, size): a random window per
  image in training, the centre (or a random window) at inference, so that the exported model
  crops exactly as evaluation does.
- `AugmentOff`: sets a tf.Variable the training pipeline reads to 0 for the last N epochs.
"""

import tensorflow as tf
import tf_keras as keras

from common.errors import ConfigError

MIXUP_RATIOS = ("uniform", "beta")
TEST_CROPS = ("center", "random")


def check_mixup(mixup, key="data.augment.mixup"):
    """The mixup section `{enabled, ratio, low, high, alpha, keep_originals}`, checked
    (ConfigError naming the key)."""
    if mixup["ratio"] not in MIXUP_RATIOS:
        raise ConfigError(f"config key '{key}.ratio' must be one of {', '.join(MIXUP_RATIOS)}, "
                          f"got {mixup['ratio']!r}")
    low, high, alpha = float(mixup["low"]), float(mixup["high"]), float(mixup["alpha"])
    if mixup["ratio"] == "uniform" and not 0.0 <= low <= high <= 1.0:
        raise ConfigError(f"config key '{key}.low'/'{key}.high' must satisfy 0 <= low <= high <= 1, "
                          f"got {low} and {high}")
    if mixup["ratio"] == "beta" and alpha <= 0:
        raise ConfigError(f"config key '{key}.alpha' must be > 0, got {alpha}")
    return mixup


def mixup_ratios(n, seed, mixup):
    """`n` mixing ratios (float32 (n,)) drawn statelessly from `seed` (int64 (2,)): uniform in
    [low, high] or Beta(alpha, alpha), as the `mixup` section says."""
    if mixup["ratio"] == "uniform":
        return tf.random.stateless_uniform([n], seed, float(mixup["low"]), float(mixup["high"]))
    seeds = tf.random.experimental.stateless_split(seed, 2)
    a, b = (tf.random.stateless_gamma([n], seeds[i], float(mixup["alpha"])) for i in (0, 1))
    return a / (a + b + 1e-12)


def mixup_batch(images, targets, ratios, keep_originals=True):
    """Mix a batch with itself, the authors' way (papers 3 and 4).

    Example i is paired with example (i + B // 2) mod B (the batch is shuffled, so its halves are
    a random pairing); mixed example i is `r * x_i + (1 - r) * x_partner` with the ratio r of its
    pair: `ratios[i mod ceil(B / 2)]`, so both images of a pair keep the same share of themselves.

    Args:
        images: float (B, ...) batch. targets: float (B, C) one-hot (or soft) labels.
        ratios: float (ceil(B / 2),) share each mixed image keeps of its own example.
        keep_originals: True: the originals followed by the mixed images (2B); False: mixed only.

    Returns:
        (images, targets): (2B, ...) and (2B, C), or (B, ...) and (B, C).
    """
    n = tf.shape(images)[0]
    partner = (tf.range(n) + n // 2) % n
    own = tf.tile(tf.cast(ratios, images.dtype), [2])[:n]
    shape = tf.concat([[n], tf.ones([tf.rank(images) - 1], tf.int32)], 0)
    weight = tf.reshape(own, shape)
    mixed_x = weight * images + (1.0 - weight) * tf.gather(images, partner)
    label_weight = tf.cast(own, targets.dtype)[:, None]
    mixed_y = label_weight * targets + (1.0 - label_weight) * tf.gather(targets, partner)
    if not keep_originals:
        return mixed_x, mixed_y
    return tf.concat([images, mixed_x], 0), tf.concat([targets, mixed_y], 0)


@keras.saving.register_keras_serializable(package="common")
class SquareCrop(keras.layers.Layer):
    """Crops square images (B, S, S, C) to (B, size, size, C).

    Training: a random window per image (every offset 0..S-size equally likely). Inference: the
    centre window (`test_crop="center"`, deterministic), or a random one per image
    (`test_crop="random"`, papers 3 and 4's code). A centre crop is a static slice, which every
    TFLite runtime runs.

    Args:
        size: int, side of the crop in pixels (<= S).
        test_crop: str, "center" or "random": the window at inference.
        **kwargs: standard layer arguments (`name`, `dtype`, ...).

    Example:
    ```python
    image = keras.Input((256, 256, 3))
    x = SquareCrop(246)(image)        # (batch, 246, 246, 3)
    ```
    """

    def __init__(self, size, test_crop="center", **kwargs):
        super().__init__(**kwargs)
        if test_crop not in TEST_CROPS:
            raise ConfigError(f"config key 'data.test_crop' must be one of {', '.join(TEST_CROPS)}, "
                              f"got {test_crop!r}")
        self.size, self.test_crop = int(size), test_crop

    def call(self, inputs, training=None):
        side = inputs.shape[1]
        if side == self.size:
            return inputs
        if training or self.test_crop == "random":
            n = tf.shape(inputs)[0]
            # float draws, floored: TFLite has RANDOM_UNIFORM but no integer form of it
            offsets = tf.cast(tf.random.uniform([n, 2]) * (side - self.size + 1), tf.int32)
            offsets = tf.minimum(offsets, side - self.size)
            window = tf.range(self.size)
            rows = offsets[:, :1] + window  # (B, size)
            cols = offsets[:, 1:] + window
            cropped = tf.gather(inputs, rows, axis=1, batch_dims=1)
            return tf.gather(cropped, cols, axis=2, batch_dims=1)
        start = (side - self.size) // 2
        return inputs[:, start:start + self.size, start:start + self.size, :]

    def compute_output_shape(self, input_shape):
        return tf.TensorShape([input_shape[0], self.size, self.size, input_shape[3]])

    def get_config(self):
        return {**super().get_config(), "size": self.size, "test_crop": self.test_crop}


class AugmentOff(keras.callbacks.Callback):
    """Sets `switch` (a tf.Variable the training pipeline reads) to 0 for the last `last_epochs`
    of `epochs`, 1 before: at the end of the epoch before, since Keras opens the next epoch's
    input iterator (and its prefetch) before `on_epoch_begin`."""

    def __init__(self, switch, epochs, last_epochs):
        super().__init__()
        self.switch, self.first_off = switch, int(epochs) - int(last_epochs)

    def on_train_begin(self, logs=None):
        self.switch.assign(1)

    def on_epoch_begin(self, epoch, logs=None):  # a run resumed inside the last epochs
        if epoch >= self.first_off:
            self.switch.assign(0)

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 >= self.first_off:
            self.switch.assign(0)
