"""Papers 3 and 4's training recipe in rsic: mixup in the pipeline, rotation-only augmentation,
the four rotations of every image, the switch of the last epochs, soft-label losses and accuracy,
the head (dropout, L2, initialisation) and crops of the model's input out of larger images."""

import copy

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras
from PIL import Image

from common.errors import ConfigError
from rsic.config import DEFAULTS
from rsic.data import scan_image_folder
from rsic.features import load_images, make_dataset
from rsic.models import build_model, head_dense_options
from tests.rsic.conftest import TASK, tiny_config

MIXUP = {"enabled": True, "ratio": "uniform", "low": 0.1, "high": 0.3, "alpha": 0.4,
         "keep_originals": True}


def write_images(root, pictures):
    """PNGs (lossless) root/class_<label>/<i>.png of uint8 (S, S, 3) `pictures` [(label, array)]."""
    for i, (label, array) in enumerate(pictures):
        folder = root / f"class_{label}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(array).save(folder / f"{i:02d}.png")
    return scan_image_folder(root, log=lambda _: None)


@pytest.fixture
def greys(tmp_path):
    """8 flat grey 8x8 images, grey 20 * (i + 1), class i % 4: flips, rotations and resizes
    leave a flat image as it is, so a pixel names its image (and a mix its two images)."""
    return write_images(tmp_path / "greys", [(i % 4, np.full((8, 8, 3), 20 * (i + 1), np.uint8))
                                             for i in range(8)])


@pytest.fixture
def noise(tmp_path):
    """6 random 8x8 images, each its own class: no two rotations or flips of them coincide."""
    rng = np.random.default_rng(0)
    return write_images(tmp_path / "noise", [(i, rng.integers(0, 256, (8, 8, 3), np.uint8))
                                             for i in range(6)])


def test_mixup_doubles_each_batch_and_mixes_labels_with_the_drawn_ratio(greys):
    grey_class = {20 * (i + 1): i % 4 for i in range(8)}
    ds = make_dataset(greys.files, greys.labels, image_size=8, batch_size=4, training=True,
                      augment={"flip": True, "rot90": True, "crop": 1.0, "mixup": MIXUP},
                      num_classes=4, cache=True, seed=3)
    batches = [(x.numpy()[:, 0, 0, 0], y.numpy()) for x, y in ds]
    assert [len(x) for x, _ in batches] == [8, 8]  # two batches of 4, each doubled
    for values, labels in batches:
        originals = values[:4]
        np.testing.assert_allclose(labels[:4], np.eye(4)[[grey_class[v] for v in originals]])
        for i in range(4):  # mixed image i: ratio r of original i, 1 - r of original (i + 2) % 4
            own, other = originals[i], originals[(i + 2) % 4]
            ratio = (values[4 + i] - other) / (own - other)
            assert 0.1 - 1e-5 <= ratio <= 0.3 + 1e-5  # float32 pixels: 1e-5 of rounding
            expected = ratio * np.eye(4)[grey_class[own]] + (1 - ratio) * np.eye(4)[grey_class[other]]
            np.testing.assert_allclose(labels[4 + i], expected, atol=1e-5)
        # both images of a pair keep the same share of themselves (the authors' pairing)
        np.testing.assert_allclose((values[4] - originals[2]) / (originals[0] - originals[2]),
                                   (values[6] - originals[0]) / (originals[2] - originals[0]),
                                   atol=1e-5)


def orbit(image):
    return [np.rot90(image, k) for k in range(4)]


def in_orbit(image, originals):
    return any(np.array_equal(image, turned) for original in originals for turned in orbit(original))


def test_rotations_only_and_the_last_epochs_switch(noise):
    originals = load_images(noise.files, 8)
    rotate_only = {"flip": False, "rot90": True, "crop": 1.0}
    everything = {"flip": True, "rot90": True, "crop": 0.7}

    def images(augment, seed, switch=None):
        ds = make_dataset(noise.files, noise.labels, image_size=8, batch_size=6, training=True,
                          augment=augment, seed=seed, cache=True, switch=switch)
        return np.concatenate([x.numpy() for x, _ in ds])

    draws = np.concatenate([images(rotate_only, seed) for seed in range(4)])
    assert all(in_orbit(image, originals) for image in draws)
    turns = {next(k for k in range(4) for o in originals if np.array_equal(image, np.rot90(o, k)))
             for image in draws}
    assert turns == {0, 1, 2, 3}  # 24 draws of 4 equally likely turns: each missed with p < 1e-2
    assert not all(in_orbit(image, originals) for image in images(everything, 0))
    switch = tf.Variable(0)  # the last epochs (common.augment.AugmentOff): rotations remain
    assert all(in_orbit(image, originals) for image in images(everything, 0, switch))


@pytest.mark.parametrize("cache", [True, False])
def test_rot90_all_gives_every_image_in_its_four_rotations(noise, cache):
    originals = load_images(noise.files, 8)
    ds = make_dataset(noise.files, noise.labels, image_size=8, batch_size=5, training=True,
                      augment={"flip": False, "rot90": True, "rot90_all": True, "crop": 1.0},
                      cache=cache, seed=1)
    pairs = [(x, int(y)) for xb, yb in ds for x, y in zip(xb.numpy(), yb.numpy())]
    assert len(pairs) == 24  # 6 images x 4 rotations
    for label, original in enumerate(originals):  # each image once in each rotation, its label kept
        found = [x for x, y in pairs if y == label]
        assert len(found) == 4
        assert all(any(np.array_equal(x, turned) for x in found) for turned in orbit(original))
    # shuffled apart: the four rotations of an image are not all in one run of four
    assert [y for _, y in pairs] != sorted(y for _, y in pairs)


def test_recipe_labels_losses_and_accuracy(noise):
    cfg = tiny_config(noise.root, overrides=["data.augment.mixup.enabled=true", "train.loss=kl",
                                             "data.augment.rot90_all=true", "train.batch_size=4"])
    split = {"train": np.arange(6), "val": np.arange(3), "test": np.arange(3)}
    train, val, steps = TASK.datasets(cfg, noise, split)
    assert steps == 6  # 6 images x 4 rotations in batches of 4
    (x, y), (_, val_y) = next(iter(train)), next(iter(val))
    assert x.shape[0] == y.shape[0] == 8 and y.shape[1] == 6  # doubled, soft
    assert val_y.shape == (3, 6)  # one-hot: the same loss scores the validation split
    assert isinstance(TASK.label_loss(cfg), keras.losses.KLDivergence)
    plain = tiny_config(noise.root)
    assert isinstance(TASK.label_loss(plain), keras.losses.SparseCategoricalCrossentropy)
    mixed_ce = tiny_config(noise.root, overrides=["data.augment.mixup.enabled=true"])
    assert isinstance(TASK.label_loss(mixed_ce), keras.losses.CategoricalCrossentropy)

    # KL divergence and accuracy on soft labels, by hand: the model's probabilities are p.
    p = np.array([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.3, 0.3, 0.4], [0.5, 0.25, 0.25]], np.float32)
    labels = np.array([[0.8, 0.2, 0.0], [0.0, 0.3, 0.7], [0.2, 0.0, 0.8], [0.9, 0.1, 0.0]],
                      np.float32)  # argmax agrees on rows 0, 2 and 3
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Activation("softmax")(inputs))
    TASK.compile(model, cfg, keras.optimizers.Adam())
    loss, accuracy = model.evaluate(np.log(p), labels, verbose=0)
    kl = np.mean([sum(t * np.log(t / q) for t, q in zip(row, probs) if t > 0)
                  for row, probs in zip(labels, p)])
    assert loss == pytest.approx(kl, rel=1e-4) and accuracy == pytest.approx(0.75)


def test_head_dropout_l2_and_initialisation():
    cfg = copy.deepcopy(DEFAULTS["model"])
    cfg.update(backbone="MobileNetV2", alpha=0.35, input_size=32, embedding_dim=64, dropout=0.2,
               dense_l2=1e-5, head_init="truncated_normal")
    model = build_model(cfg, 5)
    names = [layer.name for layer in model.layers[-6:]]
    assert names == ["pool", "head_dropout", "embedding", "embedding_dropout", "logits", "probs"]
    assert model.get_layer("head_dropout").rate == model.get_layer("embedding_dropout").rate == 0.2
    weights = [*model.get_layer("embedding").get_weights(), *model.get_layer("logits").get_weights()]
    # L2 1e-5 on both kernels and both biases: 1e-5 * the sum of their squares, nothing else
    expected = 1e-5 * sum(float(np.sum(w.astype(np.float64) ** 2)) for w in weights)
    assert float(tf.add_n(model.losses)) == pytest.approx(expected, rel=1e-5)
    # truncated normal, stddev 0.1, cut at 2 stddev: the standard deviation of what is left is
    # 0.088; 112 x 64 kernel values estimate it to within 1%, so 0.08-0.096 has a wide margin
    kernel = weights[0]
    assert np.abs(kernel).max() <= 0.2 and 0.08 < kernel.std() < 0.096
    assert np.abs(weights[1]).max() <= 0.2 and weights[1].std() > 0.05  # biases drawn too
    assert head_dense_options({"head_init": "glorot", "dense_l2": 0.0}) == {}  # Keras' defaults
    with pytest.raises(ConfigError, match="'model.head_init' must be one of glorot, truncated_normal"):
        head_dense_options({**cfg, "head_init": "he"})


def test_model_crops_its_input_out_of_larger_images(noise):
    cfg = tiny_config(noise.root, overrides=["model.input_size=32", "data.image_size=40"])
    model, inference = TASK.build(cfg, noise, None, None)
    assert model is inference and model.input_shape == (None, 40, 40, 3)
    assert model.get_layer("crop").output_shape == (None, 32, 32, 3)
    images, _ = TASK.examples(cfg, noise, [0, 1])
    assert images.shape == (2, 40, 40, 3)  # evaluation, predict and export feed the image side
    assert "32px (crops of 40px)" in TASK.describe(cfg)
    for overrides, key in ((["data.image_size=24", "model.input_size=32"], "data.image_size"),
                           (["train.loss=mse"], "train.loss"),
                           (["data.test_crop=corner"], "data.test_crop"),
                           (["data.augment.mixup.ratio=normal"], "data.augment.mixup.ratio"),
                           (["data.augment.off_last_epochs=-1"], "data.augment.off_last_epochs")):
        with pytest.raises(ConfigError, match=f"config key '{key}"):
            tiny_config(noise.root, overrides=overrides)
