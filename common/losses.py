"""Losses: focal (binary, categorical), soft IoU, a weighted sum of losses, distillation losses.

The loss classes take probabilities (the models end with sigmoid or softmax) and clip them away
from 0 and 1 before any logarithm. Each class returns one value per sample from `call`, so Keras
applies sample weights and the reduction (by default the mean over the batch).
"""

import tensorflow as tf
import tf_keras as keras

EPSILON = 1e-7


def _align_binary(y_true, y_pred):
    """Cast to float32 and give a (B, H, W) mask the trailing channel of a (B, H, W, 1) output."""
    y_pred = tf.cast(y_pred, tf.float32)
    y_true = tf.cast(y_true, tf.float32)
    if (
        y_true.shape.rank is not None
        and y_pred.shape.rank is not None
        and y_true.shape.rank == y_pred.shape.rank - 1
    ):
        y_true = tf.expand_dims(y_true, -1)
    return y_true, y_pred


def mean_per_sample(values):
    """Average `values` over every axis but the first: one number per sample, shape (B,)."""
    values = tf.convert_to_tensor(values)
    if values.shape.rank is not None and values.shape.rank <= 1:
        return values
    return tf.reduce_mean(tf.reshape(values, (tf.shape(values)[0], -1)), axis=1)


def per_sample_loss(loss, y_true, y_pred):
    """One value per sample of `loss`, before any reduction or sample weighting.

    Args:
        loss: a `keras.losses.Loss` instance, a loss function, or a loss name.
        y_true: labels; a (B, H, W) mask is matched to a (B, H, W, 1) prediction.
        y_pred: predictions, first axis the batch.

    Returns:
        float32 tensor (B,): the loss values averaged over every axis but the batch.

    Example:
    ```python
    per_sample_loss("categorical_crossentropy", one_hot, probs)   # shape (B,)
    ```
    """
    loss = keras.losses.get(loss)
    y_pred = tf.convert_to_tensor(y_pred)
    if y_pred.shape.rank is not None and y_pred.shape[-1] == 1:
        y_true, y_pred = _align_binary(y_true, y_pred)
    # Loss.call gives the unreduced values; Loss.__call__ would reduce (and refuses to under a
    # distribution strategy unless its reduction is explicit).
    values = (
        loss.call(y_true, y_pred) if isinstance(loss, keras.losses.Loss) else loss(y_true, y_pred)
    )
    return mean_per_sample(tf.cast(values, tf.float32))


@keras.saving.register_keras_serializable(package="common")
class BinaryFocalLoss(keras.losses.Loss):
    """Binary focal loss on probabilities (Lin et al., https://arxiv.org/abs/1708.02002).

    Per element: `-alpha * y * (1 - p)^gamma * log(p) - (1 - alpha) * (1 - y) * p^gamma *
    log(1 - p)`, with `p` clipped to `[eps, 1 - eps]`; soft labels `y` in [0, 1] are allowed. `call`
    averages over the last axis like `keras.losses.binary_crossentropy`; a (B, H, W) mask is matched
    to a (B, H, W, 1) prediction.

    Args:
        alpha: float, weight of the positive class (1 - alpha for the negative). Defaults to `0.25`.
        gamma: float, focusing exponent; 0 gives alpha-weighted cross entropy. Defaults to `2.0`.
        epsilon: float, clipping of the probabilities. Defaults to `1e-7`.
        alpha_negative: float or None, weight of the negative class instead of `1 - alpha`
            (`alpha=1, alpha_negative=1`: no class weighting, the two-class softmax focal loss
            of a model whose positive probability is `p`). Defaults to `None`.
        name: str, loss name. Defaults to `"binary_focal_loss"`.
        **kwargs: `reduction` and other `keras.losses.Loss` arguments.

    Example:
    ```python
    loss = BinaryFocalLoss(alpha=0.25, gamma=2.0)
    loss(np.array([[1.0, 0.0]]), np.array([[0.9, 0.2]]))
    ```
    """

    def __init__(self, alpha=0.25, gamma=2.0, epsilon=EPSILON, alpha_negative=None,
                 name="binary_focal_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.alpha = float(alpha)
        self.gamma = float(gamma)
        self.epsilon = float(epsilon)
        self.alpha_negative = None if alpha_negative is None else float(alpha_negative)

    def call(self, y_true, y_pred):
        y_true, y_pred = _align_binary(y_true, y_pred)
        p = tf.clip_by_value(y_pred, self.epsilon, 1.0 - self.epsilon)
        alpha_negative = 1.0 - self.alpha if self.alpha_negative is None else self.alpha_negative
        positive = self.alpha * y_true * tf.pow(1.0 - p, self.gamma) * tf.math.log(p)
        negative = (
            alpha_negative * (1.0 - y_true) * tf.pow(p, self.gamma) * tf.math.log(1.0 - p)
        )
        return -tf.reduce_mean(positive + negative, axis=-1)

    def get_config(self):
        config = super().get_config()
        config.update(alpha=self.alpha, gamma=self.gamma, epsilon=self.epsilon,
                      alpha_negative=self.alpha_negative)
        return config


@keras.saving.register_keras_serializable(package="common")
class SoftIoULoss(keras.losses.Loss):
    """Soft IoU (Jaccard) loss on the positive-class probability of a segmentation.

    Per sample: `1 - (sum(y * p) + smooth) / (sum(y) + sum(p) - sum(y * p) + smooth)`, sums over
    all pixels. `y_true` is (B, H, W) or (B, H, W, 1) with values in [0, 1]; `y_pred` is
    (B, H, W, 1) probabilities. Options give paper 1's authors' form: `-log(IoU)` averaged over
    both classes (the negative class scored with `1 - y` and `1 - p`), sums pooled over the batch.

    Args:
        smooth: float, added to numerator and denominator so an empty mask predicted empty gives
            loss 0 and gradients stay finite. Defaults to `1.0` (the authors: 1e-7).
        form: "one_minus" (`1 - IoU`) or "neglog" (`-log(IoU)`). Defaults to `"one_minus"`.
        classes: "positive" (the positive class's IoU) or "both" (the mean of the loss of both
            classes). Defaults to `"positive"`.
        pooled: bool, sum over the whole batch (every sample gets the batch's value, so the mean
            over the batch is that value) instead of per sample. Defaults to `False`.
        name: str, loss name. Defaults to `"soft_iou_loss"`.
        **kwargs: `reduction` and other `keras.losses.Loss` arguments.

    Example:
    ```python
    loss = SoftIoULoss()
    loss(np.ones((2, 4, 4)), np.full((2, 4, 4, 1), 0.8))
    ```
    """

    def __init__(self, smooth=1.0, form="one_minus", classes="positive", pooled=False,
                 name="soft_iou_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        if form not in ("one_minus", "neglog") or classes not in ("positive", "both"):
            raise ValueError(f"SoftIoULoss: form must be one_minus or neglog and classes positive "
                             f"or both, got {form!r}, {classes!r}")
        self.smooth = float(smooth)
        self.form, self.classes, self.pooled = form, classes, bool(pooled)

    def _loss(self, y_true, y_pred):
        """The loss of one class, per sample (or the pooled value for each sample)."""
        batch = tf.shape(y_pred)[0]
        y_true = tf.reshape(y_true, (1 if self.pooled else batch, -1))
        y_pred = tf.reshape(y_pred, (1 if self.pooled else batch, -1))
        intersection = tf.reduce_sum(y_true * y_pred, axis=1)
        union = tf.reduce_sum(y_true, axis=1) + tf.reduce_sum(y_pred, axis=1) - intersection
        iou = (intersection + self.smooth) / (union + self.smooth)
        loss = 1.0 - iou if self.form == "one_minus" else -tf.math.log(iou)
        return tf.broadcast_to(loss, (batch,))

    def call(self, y_true, y_pred):
        y_true, y_pred = _align_binary(y_true, y_pred)
        loss = self._loss(y_true, y_pred)
        if self.classes == "both":
            loss = (loss + self._loss(1.0 - y_true, 1.0 - y_pred)) / 2.0
        return loss

    def get_config(self):
        config = super().get_config()
        config.update(smooth=self.smooth, form=self.form, classes=self.classes,
                      pooled=self.pooled)
        return config


@keras.saving.register_keras_serializable(package="common")
class WeightedSumLoss(keras.losses.Loss):
    """A weighted sum of losses, for example focal + soft IoU for segmentation.

    Each loss gives one value per sample (its per-element values averaged over all but the batch
    axis), and the result is `sum_i weights[i] * loss_i`, shape (B,).

    Args:
        losses: list of `keras.losses.Loss` instances or loss names (`"binary_crossentropy"`).
        weights: list of floats, one per loss. Defaults to all ones.
        name: str, loss name. Defaults to `"weighted_sum_loss"`.
        **kwargs: `reduction` and other `keras.losses.Loss` arguments.

    Example:
    ```python
    loss = WeightedSumLoss([BinaryFocalLoss(), SoftIoULoss()], weights=[1.0, 0.5])
    ```
    """

    def __init__(self, losses, weights=None, name="weighted_sum_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.losses = [keras.losses.get(loss) for loss in losses]
        if not self.losses:
            raise ValueError("WeightedSumLoss needs at least one loss")
        self.weights = [1.0] * len(self.losses) if weights is None else [float(w) for w in weights]
        if len(self.weights) != len(self.losses):
            raise ValueError(
                f"WeightedSumLoss: {len(self.losses)} losses but {len(self.weights)} weights"
            )

    def call(self, y_true, y_pred):
        total = 0.0
        for loss, weight in zip(self.losses, self.weights):
            total += weight * per_sample_loss(loss, y_true, y_pred)
        return total

    def get_config(self):
        config = super().get_config()
        config["losses"] = [keras.losses.serialize(loss) for loss in self.losses]
        config["weights"] = self.weights
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["losses"] = [keras.losses.deserialize(loss) for loss in config["losses"]]
        return cls(**config)


def distillation_kl(teacher_logits, student_logits, temperature=4.0):
    """Hinton knowledge-distillation loss (https://arxiv.org/abs/1503.02531), one value per sample.

    `T^2 * KL(softmax(teacher / T) || softmax(student / T))` over the last (class) axis. The T^2
    factor keeps the gradient scale independent of the temperature.

    Args:
        teacher_logits: float tensor (..., K). Log-probabilities work as logits: softmax is
            shift-invariant.
        student_logits: float tensor (..., K), same shape.
        temperature: float, softening temperature T > 0. Defaults to `4.0`.

    Returns:
        float32 tensor (...,): the loss of each sample (the class axis is summed).

    Example:
    ```python
    kd = distillation_kl(tf.math.log(teacher_probs), tf.math.log(student_probs), temperature=4.0)
    ```
    """
    t = tf.cast(teacher_logits, tf.float32) / temperature
    s = tf.cast(student_logits, tf.float32) / temperature
    teacher_log_probs = tf.nn.log_softmax(t, axis=-1)
    student_log_probs = tf.nn.log_softmax(s, axis=-1)
    kl = tf.reduce_sum(tf.exp(teacher_log_probs) * (teacher_log_probs - student_log_probs), axis=-1)
    return kl * (temperature**2)


def embedding_mse(teacher_embedding, student_embedding):
    """Mean squared difference between two embeddings, one value per sample.

    Args:
        teacher_embedding: float tensor (B, D).
        student_embedding: float tensor (B, D), same shape (project it first if sizes differ).

    Returns:
        float32 tensor (B,): the mean over the last axis of the squared difference.

    Example:
    ```python
    mse = embedding_mse(teacher_features, projection(student_features))
    ```
    """
    diff = tf.cast(teacher_embedding, tf.float32) - tf.cast(student_embedding, tf.float32)
    return tf.reduce_mean(tf.square(diff), axis=-1)
