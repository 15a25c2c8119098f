import numpy as np
import pytest
import tf_keras as keras
from sklearn import metrics as skm

from common.metrics import (
    BinaryF1,
    ConfusionMatrix,
    accuracy,
    log_loss,
    mean_iou_per_image,
    per_class_scores,
    per_image_confusion,
)


def _batches(seed, num_classes, shape=(3, 4, 5), count=3):
    """Batches of labels with structure: predictions right 60% of the time."""
    rng = np.random.default_rng(seed)
    for _ in range(count):
        true = rng.integers(0, num_classes, size=shape)
        pred = np.where(
            rng.uniform(size=shape) < 0.6, true, rng.integers(0, num_classes, size=shape)
        )
        yield true, pred


@pytest.mark.parametrize("num_classes", [2, 5])
def test_confusion_matrix_scores_match_sklearn(num_classes):
    cm = ConfusionMatrix(num_classes)
    batches = list(_batches(num_classes, num_classes))
    for true, pred in batches:
        cm.update(true, pred)
    true = np.concatenate([t.ravel() for t, _ in batches])
    pred = np.concatenate([p.ravel() for _, p in batches])
    labels = list(range(num_classes))
    np.testing.assert_array_equal(cm.matrix, skm.confusion_matrix(true, pred, labels=labels))

    scores = per_class_scores(cm)
    precision, recall, f1, support = skm.precision_recall_fscore_support(
        true, pred, labels=labels, zero_division=0
    )
    np.testing.assert_allclose(scores["precision"], precision)
    np.testing.assert_allclose(scores["recall"], recall)
    np.testing.assert_allclose(scores["f1"], f1)
    np.testing.assert_array_equal(scores["support"], support)
    np.testing.assert_allclose(
        scores["iou"], skm.jaccard_score(true, pred, labels=labels, average=None)
    )
    assert accuracy(cm) == pytest.approx(skm.accuracy_score(true, pred))


def test_zero_division_gives_zero_like_sklearn():
    true = np.array([0, 0, 1, 1])
    pred = np.array([0, 0, 0, 0])  # class 1 never predicted, class 2 absent everywhere
    cm = ConfusionMatrix(3).update(true, pred)
    scores = per_class_scores(cm)
    expected = skm.precision_recall_fscore_support(true, pred, labels=[0, 1, 2], zero_division=0)
    for key, value in zip(("precision", "recall", "f1", "support"), expected):
        np.testing.assert_allclose(scores[key], value)
    np.testing.assert_allclose(scores["iou"], [0.5, 0.0, 0.0])
    empty = ConfusionMatrix(2)
    assert accuracy(empty) == 0.0


def test_confusion_matrix_reset_and_bad_input():
    cm = ConfusionMatrix(3)
    cm.update(np.array([[0, 1], [2, 2]]), np.array([[0, 1], [2, 1]]))
    assert cm.matrix.sum() == 4 and cm.matrix[2, 1] == 1
    cm.update(np.array([1.0, 2.0]), np.array([1, 2], dtype=np.uint8))  # integral floats are labels
    assert cm.matrix.sum() == 6
    cm.reset()
    assert cm.matrix.sum() == 0 and cm.matrix.shape == (3, 3)
    with pytest.raises(ValueError, match=r"\[0, 2\]"):
        cm.update(np.array([0, 3]), np.array([0, 1]))
    with pytest.raises(ValueError, match=r"\[0, 2\]"):
        cm.update(np.array([0, 1]), np.array([-1, 1]))
    with pytest.raises(ValueError, match="shape"):
        cm.update(np.array([0, 1]), np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="integers"):
        cm.update(np.array([0.5]), np.array([0]))
    assert cm.matrix.sum() == 0  # a refused batch adds nothing


def test_log_loss_matches_sklearn():
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(30, 4)) * 2
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    probs[0] = [1.0, 0.0, 0.0, 0.0]  # a confident miss: clipped, finite
    labels = rng.integers(0, 4, size=30)
    labels[0] = 2
    expected = skm.log_loss(labels, y_proba=probs, labels=[0, 1, 2, 3])
    assert log_loss(labels, probs) == pytest.approx(expected, rel=1e-9)
    with pytest.raises(ValueError, match="labels"):
        log_loss([4], probs[:1])
    with pytest.raises(ValueError, match="rows"):
        log_loss([0, 1], probs[:1])


@pytest.mark.parametrize("channel", [False, True], ids=["BHW", "BHW1"])
def test_binary_f1_streams_like_sklearn(channel):
    rng = np.random.default_rng(4)
    metric = BinaryF1(threshold=0.4)
    trues, preds = [], []
    for _ in range(3):
        mask = (rng.uniform(size=(2, 6, 6)) > 0.7).astype("float32")
        probs = np.clip(mask[..., None] * 0.5 + rng.uniform(size=(2, 6, 6, 1)) * 0.6, 0, 1).astype(
            "float32"
        )
        metric.update_state(mask[..., None] if channel else mask, probs)
        trues.append(mask.ravel())
        preds.append((probs.ravel() > 0.4).astype(int))
    expected = skm.f1_score(np.concatenate(trues), np.concatenate(preds))
    assert 0.2 < expected < 0.95
    assert float(metric.result()) == pytest.approx(expected, rel=1e-6)
    metric.reset_state()
    assert float(metric.result()) == 0.0


def test_binary_f1_config_and_training_monitor():
    metric = BinaryF1(threshold=0.3, name="val_like")
    clone = BinaryF1.from_config(metric.get_config())
    assert clone.threshold == 0.3 and clone.name == "val_like"
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4, 4, 2))
    model = keras.Model(inputs, keras.layers.Conv2D(1, 1, activation="sigmoid")(inputs))
    model.compile(
        optimizer=keras.optimizers.Adam(0.1), loss="binary_crossentropy", metrics=[BinaryF1()]
    )
    x = np.random.default_rng(5).normal(size=(16, 4, 4, 2)).astype("float32")
    y = (x[..., 0] > 0).astype("float32")
    history = model.fit(x, y, validation_data=(x, y), epochs=10, batch_size=8, verbose=0).history
    assert "f1" in history and "val_f1" in history
    assert history["val_f1"][-1] > 0.9


def test_per_image_confusion_and_mean_iou_per_image():
    # Three 2x4 images: A finds one of two landslide pixels; B has no landslide in mask or
    # prediction; C has none in the mask and one false alarm.
    masks = np.zeros((3, 2, 4), np.int64)
    preds = np.zeros((3, 2, 4), np.int64)
    masks[0, 0, :2] = 1
    preds[0, 0, 0] = 1
    preds[2, 1, 3] = 1
    matrices = per_image_confusion(masks, preds, 2)
    np.testing.assert_array_equal(matrices, [[[6, 0], [1, 1]], [[8, 0], [0, 0]], [[7, 1], [0, 0]]])
    np.testing.assert_array_equal(matrices.sum(axis=0), ConfusionMatrix(2).update(masks, preds).matrix)
    # A: (1/2 + 6/7) / 2; B: background IoU 1, landslide 0/0 left out -> 1; C: (0 + 7/8) / 2.
    assert mean_iou_per_image(matrices) == pytest.approx((19 / 28 + 1 + 7 / 16) / 3, abs=1e-12)
    assert mean_iou_per_image(matrices[1:2]) == 1.0
    assert mean_iou_per_image(np.zeros((0, 2, 2))) == 0.0
    # Three classes: class 2 absent from image 0 is left out of its mean, not counted 0 or 1.
    three = per_image_confusion([[0, 0, 1, 1], [2, 2, 0, 1]], [[0, 1, 1, 1], [2, 0, 0, 1]], 3)
    assert mean_iou_per_image(three) == pytest.approx(((1 / 2 + 2 / 3) / 2 + (1 / 2 + 1 + 1 / 2) / 3) / 2)
    with pytest.raises(ValueError, match="shape"):
        per_image_confusion(masks, preds[:2], 2)
    with pytest.raises(ValueError, match=r"\(N, K, K\)"):
        mean_iou_per_image(np.zeros((2, 2)))
