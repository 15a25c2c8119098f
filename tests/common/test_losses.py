import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from common.losses import (
    BinaryFocalLoss,
    SoftIoULoss,
    WeightedSumLoss,
    distillation_kl,
    embedding_mse,
    per_sample_loss,
)

RNG = np.random.default_rng(0)
MASK = (RNG.uniform(size=(2, 4, 5)) > 0.6).astype("float32")  # (B, H, W)
PROBS = RNG.uniform(0.01, 0.99, size=(2, 4, 5, 1)).astype("float32")  # (B, H, W, 1)


def _np_binary_focal(y, p, alpha, gamma):
    p = np.clip(p.astype(np.float64), 1e-7, 1 - 1e-7)
    pt = np.where(y == 1, p, 1 - p)
    at = np.where(y == 1, alpha, 1 - alpha)
    return -at * (1 - pt) ** gamma * np.log(pt)


def _np_soft_iou(y, p, smooth):
    y, p = y.reshape(len(y), -1), p.reshape(len(p), -1)
    inter = (y * p).sum(1)
    return 1 - (inter + smooth) / (y.sum(1) + p.sum(1) - inter + smooth)


@pytest.mark.parametrize("mask", [MASK, MASK[..., None]], ids=["BHW", "BHW1"])
def test_binary_focal_matches_numpy(mask):
    loss = BinaryFocalLoss(alpha=0.3, gamma=2.0)
    expected = _np_binary_focal(MASK[..., None], PROBS, 0.3, 2.0).mean()
    np.testing.assert_allclose(float(loss(mask, PROBS)), expected, rtol=1e-5)


def test_binary_focal_gamma0_is_weighted_cross_entropy_and_clips():
    y = np.array([[1.0, 0.0, 1.0]])
    p = np.array([[0.8, 0.3, 0.0]], "float32")  # p = 0 on a positive: clipped, finite
    value = float(BinaryFocalLoss(alpha=0.5, gamma=0.0)(y, p))
    expected = 0.5 * -(np.log(0.8) + np.log(0.7) + np.log(1e-7)) / 3
    np.testing.assert_allclose(value, expected, rtol=1e-4)
    # A confident correct prediction is down-weighted much more than a wrong one.
    focal = BinaryFocalLoss(alpha=0.5, gamma=2.0)
    assert float(focal([[1.0]], [[0.9]])) < 0.02 * float(focal([[1.0]], [[0.1]]))


@pytest.mark.parametrize("mask", [MASK, MASK[..., None]], ids=["BHW", "BHW1"])
def test_soft_iou_matches_numpy(mask):
    expected = _np_soft_iou(MASK, PROBS[..., 0], 1.0)
    np.testing.assert_allclose(
        SoftIoULoss().call(tf.constant(mask), tf.constant(PROBS)).numpy(), expected, rtol=1e-5
    )
    np.testing.assert_allclose(float(SoftIoULoss()(mask, PROBS)), expected.mean(), rtol=1e-5)


def test_soft_iou_extremes():
    ones = np.ones((1, 3, 3, 1), "float32")
    assert float(SoftIoULoss(smooth=1.0)(ones[..., 0], ones)) == pytest.approx(0.0)
    assert float(
        SoftIoULoss(smooth=1.0)(np.zeros((1, 3, 3)), np.zeros_like(ones))
    ) == pytest.approx(0.0)
    # Disjoint: intersection 0, union 9 -> 1 - 1/10.
    assert float(SoftIoULoss(smooth=1.0)(ones[..., 0], np.zeros_like(ones))) == pytest.approx(0.9)


def test_weighted_sum_matches_parts_and_accepts_names():
    focal, iou = BinaryFocalLoss(), SoftIoULoss()
    combined = WeightedSumLoss([focal, iou, "binary_crossentropy"], weights=[1.0, 0.5, 2.0])
    bce = keras.losses.binary_crossentropy(MASK[..., None], PROBS).numpy().mean()
    expected = float(focal(MASK, PROBS)) + 0.5 * float(iou(MASK, PROBS)) + 2.0 * bce
    np.testing.assert_allclose(float(combined(MASK, PROBS)), expected, rtol=1e-5)
    assert combined.call(tf.constant(MASK), tf.constant(PROBS)).shape == (2,)
    with pytest.raises(ValueError, match="weights"):
        WeightedSumLoss([focal, iou], weights=[1.0])


def test_per_sample_loss_sparse_labels():
    labels = np.array([0, 2])
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]], "float32")
    values = per_sample_loss("sparse_categorical_crossentropy", labels, probs).numpy()
    np.testing.assert_allclose(values, -np.log([0.7, 0.8]), rtol=1e-5)


def test_loss_configs_round_trip():
    losses = [
        BinaryFocalLoss(alpha=0.4, gamma=1.5),
        SoftIoULoss(smooth=2.0),
        WeightedSumLoss([BinaryFocalLoss(alpha=0.4), SoftIoULoss()], weights=[0.5, 0.5]),
    ]
    for loss in losses:
        clone = keras.losses.deserialize(keras.losses.serialize(loss))
        assert type(clone) is type(loss)
        assert clone.get_config() == loss.get_config()
    clone = keras.losses.deserialize(keras.losses.serialize(losses[-1]))
    np.testing.assert_allclose(float(clone(MASK, PROBS)), float(losses[-1](MASK, PROBS)), rtol=1e-6)


def test_loss_trains_and_saves_in_a_model(tmp_path):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4, 5, 2))
    outputs = keras.layers.Conv2D(1, 1, activation="sigmoid")(inputs)
    model = keras.Model(inputs, outputs)
    loss = WeightedSumLoss([BinaryFocalLoss(), SoftIoULoss()])
    model.compile(optimizer=keras.optimizers.Adam(0.1), loss=loss)
    x = np.random.default_rng(1).normal(size=(16, 4, 5, 2)).astype("float32")
    y = (x[..., 0] > 0).astype("float32")  # (B, H, W) masks against (B, H, W, 1) outputs
    history = model.fit(x, y, epochs=20, batch_size=16, verbose=0).history["loss"]
    assert history[-1] < 0.7 * history[0]
    model.save(tmp_path / "m.keras")
    reloaded = keras.models.load_model(tmp_path / "m.keras")
    assert isinstance(reloaded.loss, WeightedSumLoss)


def _np_kl(t_logits, s_logits, temperature):
    def softmax(z):
        e = np.exp(z - z.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)

    pt, ps = softmax(t_logits / temperature), softmax(s_logits / temperature)
    return temperature**2 * (pt * (np.log(pt) - np.log(ps))).sum(-1)


def test_distillation_kl_matches_numpy_and_is_shift_invariant():
    t, s = RNG.normal(size=(5, 4)), RNG.normal(size=(5, 4))
    for temperature in (1.0, 4.0):
        value = distillation_kl(t, s, temperature).numpy()
        np.testing.assert_allclose(value, _np_kl(t, s, temperature), rtol=1e-4, atol=1e-6)
    # Logits shifted per row (log-probabilities of the same softmax) give the same loss.
    shifted = distillation_kl(t + 3.0, s - 1.0, 4.0).numpy()
    np.testing.assert_allclose(shifted, _np_kl(t, s, 4.0), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(distillation_kl(t, t, 2.0).numpy(), 0.0, atol=1e-6)


def test_embedding_mse_matches_numpy():
    a, b = RNG.normal(size=(3, 6)), RNG.normal(size=(3, 6))
    np.testing.assert_allclose(embedding_mse(a, b).numpy(), ((a - b) ** 2).mean(1), rtol=1e-5)


def test_focal_per_class_alpha_and_the_authors_iou_by_hand():
    from common.losses import BinaryFocalLoss, SoftIoULoss

    y = np.array([[[1.0], [0.0]], [[0.0], [1.0]]], np.float32)  # 2 samples x 2 pixels
    p = np.array([[[0.8], [0.1]], [[0.3], [0.6]]], np.float32)
    # No class weighting: -(1 - p)^2 log p for landslide pixels, -p^2 log(1 - p) for background.
    focal = BinaryFocalLoss(alpha=1.0, alpha_negative=1.0, gamma=2.0).call(y, p).numpy()
    expected = np.array([-(0.2**2) * np.log(0.8) - 0.1**2 * np.log(0.9),
                         -(0.3**2) * np.log(0.7) - 0.4**2 * np.log(0.6)]) / 2
    np.testing.assert_allclose(focal.mean(axis=-1), expected, rtol=1e-5)
    weighted = BinaryFocalLoss(alpha=0.7, alpha_negative=0.2, gamma=0.0).call(y, p).numpy()
    np.testing.assert_allclose(weighted[0].mean(), -(0.7 * np.log(0.8) + 0.2 * np.log(0.9)) / 2, rtol=1e-5)
    # -log IoU of both classes, pooled over the batch: landslide I 1.4, U 2 + 1.8 - 1.4 = 2.4;
    # background I 0.9 + 0.7 = 1.6, U 2 + 2.2 - 1.6 = 2.6.
    iou = SoftIoULoss(smooth=1e-7, form="neglog", classes="both", pooled=True).call(y, p).numpy()
    np.testing.assert_allclose(iou, [(-np.log(1.4 / 2.4) - np.log(1.6 / 2.6)) / 2] * 2, rtol=1e-5)
    # 1 - IoU of the landslide class, per sample, smooth 1: (0.8 + 1) / (1 + 0.9 - 0.8 + 1).
    one_minus = SoftIoULoss().call(y, p).numpy()
    assert one_minus[0] == pytest.approx(1 - 1.8 / 2.1, rel=1e-5)
    restored = SoftIoULoss.from_config(SoftIoULoss(form="neglog", classes="both", pooled=True).get_config())
    assert (restored.form, restored.classes, restored.pooled) == ("neglog", "both", True)
