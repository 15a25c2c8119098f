"""landslide/models.py: every rung of the ladder builds, trains on sample data and its loss falls."""

import copy

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from common.config import load_config
from landslide.config import DEFAULTS
from landslide.features import num_channels
from landslide.models import (
    EnsembleF1,
    HeadSumLoss,
    base_loss,
    build_models,
    compile_training_model,
)
from landslide.sample import make_patch
from tests.landslide.conftest import ROOT

RUNGS = ["unet_ce", "features", "residual", "attention", "multires", "full"]


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(0)
    images, masks = zip(*(make_patch(rng, 64) for _ in range(4)))
    return np.nan_to_num(np.stack(images)), np.stack(masks)[..., None].astype(np.float32)


def tiny(rung):
    cfg = load_config(ROOT / "configs" / "landslide" / f"{rung}.yaml",
                      ["model.width=0.0625", "model.attention_heads=2", "model.attention_key_dim=8",
                       "data.patch_size=64", "model.bn_momentum=0.9"], defaults=DEFAULTS)
    return cfg


@pytest.mark.parametrize("rung", RUNGS)
def test_rung_builds_and_learns(rung, batch):
    keras.utils.set_random_seed(0)
    cfg = tiny(rung)
    channels = num_channels(cfg["features"])
    training, inference = build_models(cfg, [0.0] * channels, [1.0] * channels)
    heads = 3 if cfg["model"]["multires"] else 1
    assert training.output_shape == (None, 64, 64, heads)
    assert inference.output_shape == (None, 64, 64, 1)
    assert any("attention" in layer.name for layer in training.layers) == cfg["model"]["attention"]
    assert any(layer.name.endswith("_add") for layer in training.layers) == cfg["model"]["residual"]
    compile_training_model(training, cfg, keras.optimizers.Adam(0.01))
    training.run_eagerly = True  # a few steps: tracing the train step would cost more than it saves
    x, y = batch
    history = training.fit(x, y, batch_size=4, epochs=5, verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < losses[0], losses
    if heads == 3:
        stacked = training(x[:1]).numpy()
        np.testing.assert_allclose(inference(x[:1]).numpy()[..., 0], stacked.mean(axis=-1), atol=1e-6)


def test_full_size_parameter_counts():
    """The official U-Net as specified: about 17.3M parameters with 14 inputs."""
    cfg = copy.deepcopy(DEFAULTS)
    training, _ = build_models(cfg, [0.0] * 14, [1.0] * 14)
    assert training.count_params() == pytest.approx(17.3e6, rel=0.01)


def test_head_sum_loss_and_ensemble_f1():
    y = np.zeros((2, 8, 8, 1), np.float32)
    y[:, :4] = 1
    p = np.concatenate([np.full_like(y, 0.9) * y + 0.1, np.full_like(y, 0.2), y * 0.8 + 0.1], -1)
    base = keras.losses.BinaryCrossentropy()
    total = HeadSumLoss(base)(y, p).numpy()
    expected = sum(base(y, p[..., k : k + 1]).numpy() for k in range(3))
    assert total == pytest.approx(expected, rel=1e-5)
    metric = EnsembleF1()
    metric.update_state(y, p)
    mean = p.mean(-1, keepdims=True) > 0.5
    tp = (mean & (y > 0)).sum()
    assert metric.result().numpy() == pytest.approx(2 * tp / (mean.sum() + y.sum()))
    restored = HeadSumLoss.from_config(HeadSumLoss(base_loss({**DEFAULTS["loss"], "name": "focal_iou"})).get_config())
    assert restored(y, p).numpy() == pytest.approx(HeadSumLoss(base_loss({**DEFAULTS["loss"], "name": "focal_iou"}))(y, p).numpy())
    assert tf.reduce_all(tf.math.is_finite(restored(y, p)))


def test_bn_momentum_reaches_every_batchnorm():
    """unet_ce.yaml's BatchNorm momentum (PyTorch's 0.1 = Keras 0.9) is on every BatchNormalization
    of every rung, residual blocks and attention included, and of the inference model."""
    for rung in ("unet_ce", "full"):
        cfg = load_config(ROOT / "configs" / "landslide" / f"{rung}.yaml",
                          ["model.width=0.0625", "model.attention_heads=2", "model.attention_key_dim=8",
                           "data.patch_size=64"], defaults=DEFAULTS)
        assert cfg["model"]["bn_momentum"] == 0.9
        assert cfg["train"]["weight_decay"] == 5e-4 and cfg["train"]["weight_decay_mode"] == "l2"
        cfg["model"]["bn_momentum"] = 0.7  # neither Keras' default nor the config's
        channels = num_channels(cfg["features"])
        training, inference = build_models(cfg, [0.0] * channels, [1.0] * channels)
        for model in (training, inference):
            norms = [layer for layer in _all_layers(model) if isinstance(layer, keras.layers.BatchNormalization)]
            assert len(norms) >= 18 and {layer.momentum for layer in norms} == {0.7}, rung


def _all_layers(model):
    """Every layer of a model, those nested inside sub-models included."""
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)


def paper1(rung, overrides=()):
    return load_config(ROOT / "configs" / "landslide" / "paper1" / f"{rung}.yaml", list(overrides),
                       defaults=DEFAULTS)


def _counts(cfg):
    channels = num_channels(cfg["features"])
    training, inference = build_models(cfg, [0.0] * channels, [1.0] * channels)
    trainable = sum(int(np.prod(w.shape)) for w in training.trainable_weights)
    return channels, training.count_params(), trainable, training, inference


def test_paper1_networks_have_the_authors_parameter_counts():
    # Exact counts of the authors' Keras networks (../shared/docs/PAPERS.md, section 1).
    channels, total, trainable, training, inference = _counts(paper1("authors_logs"))
    assert (channels, total, trainable) == (23, 24_890_374, 24_876_294)
    assert training.output_shape == (None, 128, 128, 6)  # 2x head packed as 4 + 1x + 1/2x
    assert inference.output_shape == (None, 128, 128, 1)
    assert _counts(paper1("small"))[1] == 2_604_110  # their small RAU-Net, "2.6M" on the slides
    channels, total, _, training, _ = _counts(paper1("unet_ce"))
    assert (channels, total) == (14, 31_408_898)  # their U-Net, "31.4M"
    assert training.output_shape == (None, 128, 128, 1)


def test_packed_heads_unpack_exactly_and_the_loss_weighs_each_resolution():
    from landslide.models import MultiResolutionLoss, PackedHeadF1, PackHeads, unpack_heads

    rng = np.random.default_rng(0)
    heads = [rng.uniform(0.05, 0.95, (2, 8 * s, 8 * s, 1)).astype(np.float32) for s in (2, 1)]
    heads.append(rng.uniform(0.05, 0.95, (2, 4, 4, 1)).astype(np.float32))
    scales = [2.0, 1.0, 0.5]
    packed = PackHeads(scales, 8)([tf.constant(h) for h in heads])
    assert packed.shape == (2, 8, 8, 6)
    for head, back in zip(heads, unpack_heads(packed, scales)):
        np.testing.assert_array_equal(back.numpy(), head)
    mask = (rng.uniform(size=(2, 8, 8, 1)) > 0.7).astype(np.float32)
    masks = [mask.repeat(2, 1).repeat(2, 2), mask, mask[:, ::2, ::2]]  # OpenCV nearest resizes

    def bce(y, p):  # per sample, by hand
        return -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p), axis=(1, 2, 3))

    expected = sum(w * bce(y, p) for w, y, p in zip((0.25, 0.5, 0.25), masks, heads))
    loss = MultiResolutionLoss(keras.losses.BinaryCrossentropy(), scales, [0.25, 0.5, 0.25])
    np.testing.assert_allclose(loss.call(tf.constant(mask), packed).numpy(), expected, rtol=1e-4)
    # The F1 monitored is that of the 1x head (what inference predicts).
    metric = PackedHeadF1(scales, "1x")
    metric.update_state(mask, packed)
    tp = np.sum((heads[1] > 0.5) * mask)
    assert metric.result().numpy() == pytest.approx(2 * tp / (np.sum(heads[1] > 0.5) + mask.sum()))
    both = PackedHeadF1(scales, "1x", two_class=True)  # paper 1's F1: mean of the two classes' F1
    both.update_state(mask, packed)
    tn = np.sum((heads[1] <= 0.5) * (1 - mask))
    background = 2 * tn / (np.sum(heads[1] <= 0.5) + (1 - mask).sum())
    assert both.result().numpy() == pytest.approx((metric.result().numpy() + background) / 2, rel=1e-5)


def test_loss_keys_and_augment_off_callback():
    from common.augment import AugmentOff
    from common.errors import ConfigError

    loss = base_loss(paper1("full")["loss"])  # focal (no weighting) x 0.5 + -log IoU of both classes
    focal, iou = loss.losses
    assert (focal.alpha, focal.alpha_negative, loss.weights) == (1.0, 1.0, [0.5, 1.0])
    assert (iou.form, iou.classes, iou.pooled, iou.smooth) == ("neglog", "both", True, 1e-7)
    y = np.zeros((1, 4, 4, 1), np.float32)
    y[0, :2] = 1.0
    p = np.full((1, 4, 4, 1), 0.75, np.float32)
    # focal: landslide pixels 0.25^2 * -log 0.75, background 0.75^2 * -log 0.25, half each;
    # IoU: landslide 6 / (8 + 12 - 6), background 2 / (8 + 4 - 2).
    focal_value = (0.0625 * -np.log(0.75) + 0.5625 * -np.log(0.25)) / 2
    iou_value = (-np.log(6 / 14) - np.log(2 / 10)) / 2
    assert float(loss(y, p)) == pytest.approx(0.5 * focal_value + iou_value, rel=1e-5)
    with pytest.raises(ConfigError, match="loss.iou_form"):
        base_loss({**paper1("full")["loss"], "iou_form": "log"})
    switch = tf.Variable(1)
    callback = AugmentOff(switch, epochs=65, last_epochs=4)
    callback.on_train_begin()
    callback.on_epoch_end(59)
    assert int(switch.numpy()) == 1
    callback.on_epoch_end(60)  # epochs 61..64 (0-based), the last four, run without augmentation
    assert int(switch.numpy()) == 0
