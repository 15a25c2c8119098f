"""Evaluation metrics: confusion matrix and the scores derived from it, log loss, a Keras F1.

The numpy side (`ConfusionMatrix`, `per_class_scores`, `accuracy`, `log_loss`, and per image
`per_image_confusion`, `mean_iou_per_image`) accumulates over batches, so a whole test set never
has to sit in memory; its
results match scikit-learn with `zero_division=0`. `BinaryF1` is a streaming Keras metric used to
monitor segmentation training.
"""

import numpy as np
import tensorflow as tf
import tf_keras as keras


def _as_labels(values, num_classes, what):
    """`values` as a flat int64 array of labels in [0, num_classes); ValueError otherwise."""
    values = np.asarray(values)
    if values.dtype.kind == "f":
        if not np.all(np.isfinite(values)) or np.any(values != np.round(values)):
            raise ValueError(f"{what}: labels must be integers, got non-integral floats")
    elif values.dtype.kind not in "iub":
        raise ValueError(f"{what}: labels must be integers, got dtype {values.dtype}")
    values = values.astype(np.int64).ravel()
    if values.size and (values.min() < 0 or values.max() >= num_classes):
        raise ValueError(
            f"{what}: labels must be in [0, {num_classes - 1}], got values from {values.min()} to {values.max()}"
        )
    return values


class ConfusionMatrix:
    """A confusion matrix accumulated over batches of integer labels.

    `matrix[i, j]` counts samples (or pixels) of true class i predicted as class j, as in
    `sklearn.metrics.confusion_matrix`.

    Args:
        num_classes: int, the number of classes K; labels are 0 .. K-1.

    Example:
    ```python
    cm = ConfusionMatrix(2)
    cm.update(masks, (probs[..., 0] > 0.5).astype(int))   # any shape, same for both
    scores = per_class_scores(cm)
    ```
    """

    def __init__(self, num_classes):
        if int(num_classes) < 1:
            raise ValueError(f"ConfusionMatrix: num_classes must be >= 1, got {num_classes}")
        self.num_classes = int(num_classes)
        self.reset()

    def reset(self):
        """Forget everything accumulated so far."""
        self.matrix = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)

    def update(self, y_true, y_pred):
        """Add a batch: `y_true` and `y_pred` are integer label arrays of the same (any) shape.

        Raises:
            ValueError: the shapes differ, or a label is not an integer in [0, num_classes).
        """
        if np.shape(y_true) != np.shape(y_pred):
            raise ValueError(
                f"ConfusionMatrix.update: y_true shape {np.shape(y_true)} != y_pred shape {np.shape(y_pred)}"
            )
        k = self.num_classes
        true = _as_labels(y_true, k, "ConfusionMatrix.update y_true")
        pred = _as_labels(y_pred, k, "ConfusionMatrix.update y_pred")
        self.matrix += np.bincount(true * k + pred, minlength=k * k).reshape(k, k)
        return self


def _matrix(cm):
    matrix = cm.matrix if isinstance(cm, ConfusionMatrix) else np.asarray(cm)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"expected a square confusion matrix, got shape {matrix.shape}")
    return matrix.astype(np.float64)


def _divide(numerator, denominator):
    """numerator / denominator elementwise, 0 where the denominator is 0 (sklearn zero_division=0)."""
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    out = np.zeros(np.broadcast(numerator, denominator).shape)
    np.divide(numerator, denominator, out=out, where=denominator != 0)
    return out


def per_class_scores(cm):
    """Precision, recall, F1, IoU and support of each class.

    A score whose denominator is 0 (a class never predicted, or absent) is 0, as scikit-learn's
    `zero_division=0`.

    Args:
        cm: `ConfusionMatrix` or (K, K) array, rows true classes, columns predicted classes.

    Returns:
        dict of numpy arrays of shape (K,): `precision`, `recall`, `f1`, `iou` (float64 fractions in
        [0, 1]) and `support` (int64, the number of true samples of each class).

    Example:
    ```python
    scores = per_class_scores(cm)
    scores["f1"][1]        # F1 of class 1
    ```
    """
    matrix = _matrix(cm)
    tp = np.diag(matrix)
    fp = matrix.sum(axis=0) - tp
    fn = matrix.sum(axis=1) - tp
    return {
        "precision": _divide(tp, tp + fp),
        "recall": _divide(tp, tp + fn),
        "f1": _divide(2 * tp, 2 * tp + fp + fn),
        "iou": _divide(tp, tp + fp + fn),
        "support": (tp + fn).astype(np.int64),
    }


def per_image_confusion(y_true, y_pred, num_classes):
    """One confusion matrix per image of a batch of label maps.

    Args:
        y_true, y_pred: integer label arrays of the same shape (N, ...), the first axis the image.
        num_classes: int, the number of classes K.

    Returns:
        int64 array (N, K, K): `[n, i, j]` counts the pixels of image n of true class i predicted
        as class j. Its sum over the first axis is the pooled matrix (`ConfusionMatrix.matrix`).

    Example:
    ```python
    matrices = per_image_confusion(masks, (probs > 0.5).astype(int), 2)   # masks (N, H, W)
    mean_iou_per_image(matrices)
    ```
    """
    if np.shape(y_true) != np.shape(y_pred):
        raise ValueError(f"per_image_confusion: y_true shape {np.shape(y_true)} != y_pred shape {np.shape(y_pred)}")
    if np.ndim(y_true) < 1:
        raise ValueError("per_image_confusion: labels need a leading image axis")
    k, n = int(num_classes), np.shape(y_true)[0]
    true = _as_labels(y_true, k, "per_image_confusion y_true")
    pred = _as_labels(y_pred, k, "per_image_confusion y_pred")
    # One bincount for the whole batch: image n's pixels land in bins n*K*K .. (n+1)*K*K - 1.
    image = np.repeat(np.arange(n, dtype=np.int64), true.size // n if n else 0)
    counts = np.bincount((image * k + true) * k + pred, minlength=n * k * k)
    return counts.reshape(n, k, k)


def mean_iou_per_image(matrices):
    """Mean IoU computed within each image, then averaged over the images.

    Within an image, a class absent from both the mask and the prediction (IoU 0/0) is left out of
    that image's mean, so an image is not punished for a class it does not contain. With two
    classes this equals counting such a class as IoU 1: an image with no landslide pixel in mask or
    prediction has every pixel background in both, so its background IoU is 1 and its mean is 1
    either way. A class present in the mask or the prediction but not both counts 0.

    Args:
        matrices: array (N, K, K) of per-image confusion matrices (`per_image_confusion`).

    Returns:
        float in [0, 1]; 0.0 for no images.
    """
    matrices = np.asarray(matrices, dtype=np.float64)
    if matrices.ndim != 3 or matrices.shape[1] != matrices.shape[2]:
        raise ValueError(f"mean_iou_per_image: expected (N, K, K) matrices, got shape {matrices.shape}")
    if not len(matrices):
        return 0.0
    tp = np.diagonal(matrices, axis1=1, axis2=2)
    union = matrices.sum(axis=1) + matrices.sum(axis=2) - tp  # (N, K): true + predicted - both
    present = union > 0
    iou = _divide(tp, union)
    per_image = (iou * present).sum(axis=1) / np.maximum(present.sum(axis=1), 1)
    return float(per_image.mean())


def accuracy(cm):
    """Share of correct predictions (trace over total; 0 for an empty matrix).

    Args:
        cm: `ConfusionMatrix` or (K, K) array.

    Returns:
        float in [0, 1].
    """
    matrix = _matrix(cm)
    return float(_divide(np.trace(matrix), matrix.sum()))


def _log_loss_terms(y_true, probs, what):
    """Per-sample -log(p[true class]) with p clipped to [eps, 1 - eps] (float64 eps, like sklearn)."""
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2:
        raise ValueError(f"{what}: probs must be (N, K), got shape {probs.shape}")
    labels = _as_labels(y_true, probs.shape[1], f"{what} y_true")
    if labels.shape[0] != probs.shape[0]:
        raise ValueError(
            f"{what}: {labels.shape[0]} labels for {probs.shape[0]} rows of probabilities"
        )
    eps = np.finfo(np.float64).eps
    chosen = np.clip(probs[np.arange(labels.shape[0]), labels], eps, 1 - eps)
    return -np.log(chosen)


def log_loss(y_true, probs):
    """Mean negative log-likelihood of the true class (multi-class log loss, natural log).

    Args:
        y_true: int array (N,), class indices.
        probs: float array (N, K), predicted probabilities (rows summing to 1).

    Returns:
        float, equal to `sklearn.metrics.log_loss(y_true, probs, labels=range(K))`.

    Example:
    ```python
    log_loss([0, 2], [[0.8, 0.1, 0.1], [0.2, 0.2, 0.6]])   # about 0.367
    ```
    """
    terms = _log_loss_terms(y_true, probs, "log_loss")
    return float(terms.mean()) if terms.size else 0.0


@keras.saving.register_keras_serializable(package="common")
class BinaryF1(keras.metrics.Metric):
    """Streaming F1 of the positive class of a binary segmentation, for monitoring training.

    Accumulates true positives, false positives and false negatives over all pixels of all
    batches of an epoch; F1 = 2TP / (2TP + FP + FN), 0 when there are no positives at all.

    Args:
        threshold: float, a pixel is predicted positive when its probability is above it.
            Defaults to `0.5`.
        name: str, metric name (the logged key; `val_f1` on validation). Defaults to `"f1"`.
        **kwargs: other `keras.metrics.Metric` arguments.

    Example:
    ```python
    model.compile(optimizer="adam", loss=SoftIoULoss(), metrics=[BinaryF1()])
    # y_true (B, H, W) or (B, H, W, 1) in {0, 1}; y_pred (B, H, W, 1) probabilities
    ```
    """

    def __init__(self, threshold=0.5, name="f1", **kwargs):
        super().__init__(name=name, **kwargs)
        self.threshold = float(threshold)
        self.true_positives = self.add_weight(name="tp", initializer="zeros", dtype=tf.float32)
        self.false_positives = self.add_weight(name="fp", initializer="zeros", dtype=tf.float32)
        self.false_negatives = self.add_weight(name="fn", initializer="zeros", dtype=tf.float32)

    def update_state(self, y_true, y_pred, sample_weight=None):
        # Both flattened: (B, H, W) and (B, H, W, 1) hold the same pixels in the same order.
        y_true = tf.reshape(tf.cast(y_true, tf.float32), [-1]) > 0.5
        y_pred = tf.reshape(tf.cast(y_pred, tf.float32), [-1]) > self.threshold
        weight = tf.ones_like(y_true, tf.float32)
        if sample_weight is not None:
            # Per-pixel weights repeat once; per-sample weights repeat over their pixels.
            weight = tf.reshape(tf.cast(sample_weight, tf.float32), [-1])
            weight = tf.repeat(weight, tf.size(y_true) // tf.size(weight))

        def total(mask):
            return tf.reduce_sum(tf.where(mask, weight, 0.0))

        self.true_positives.assign_add(total(y_true & y_pred))
        self.false_positives.assign_add(total(~y_true & y_pred))
        self.false_negatives.assign_add(total(y_true & ~y_pred))

    def result(self):
        tp, fp, fn = self.true_positives, self.false_positives, self.false_negatives
        return tf.math.divide_no_nan(2.0 * tp, 2.0 * tp + fp + fn)

    def reset_state(self):
        for variable in self.variables:
            variable.assign(0.0)

    def get_config(self):
        config = super().get_config()
        config["threshold"] = self.threshold
        return config
