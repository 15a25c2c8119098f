"""common.augment: mixup inside a batch (hand-computed), its ratio draws, the square crop layer
(in Keras and in TFLite). AugmentOff is tested in tests/landslide/test_models.py."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from common.augment import SquareCrop, check_mixup, mixup_batch, mixup_ratios
from common.errors import ConfigError

MIXUP = {"enabled": True, "ratio": "uniform", "low": 0.1, "high": 0.3, "alpha": 0.4,
         "keep_originals": True}


def test_mixup_keeps_originals_and_mixes_labels_exactly():
    # Four one-pixel images of grey 0, 10, 20, 30 and classes 0..3; ratios 0.2 and 0.3 for the two
    # pairs (0, 2) and (1, 3): each mixed image keeps that share of itself.
    x = tf.constant(np.array([0.0, 10.0, 20.0, 30.0], np.float32).reshape(4, 1, 1, 1))
    y = tf.constant(np.eye(4, dtype=np.float32))
    images, labels = mixup_batch(x, y, tf.constant([0.2, 0.3]))
    assert images.shape == (8, 1, 1, 1) and labels.shape == (8, 4)  # the batch doubles
    np.testing.assert_allclose(images.numpy().ravel(),
                               [0, 10, 20, 30,  # the originals first
                                0.2 * 0 + 0.8 * 20, 0.3 * 10 + 0.7 * 30,
                                0.2 * 20 + 0.8 * 0, 0.3 * 30 + 0.7 * 10], rtol=1e-6)
    np.testing.assert_allclose(labels.numpy()[:4], np.eye(4))
    np.testing.assert_allclose(labels.numpy()[4:], [[0.2, 0, 0.8, 0], [0, 0.3, 0, 0.7],
                                                    [0.8, 0, 0.2, 0], [0, 0.7, 0, 0.3]], rtol=1e-6)
    mixed_only, soft = mixup_batch(x, y, tf.constant([0.2, 0.3]), keep_originals=False)
    np.testing.assert_allclose(mixed_only.numpy(), images.numpy()[4:])
    np.testing.assert_allclose(soft.numpy(), labels.numpy()[4:])
    # An odd batch (the last one of an epoch): example i pairs with (i + 1) mod 3.
    odd, odd_labels = mixup_batch(x[:3], y[:3, :3], tf.constant([0.25, 0.5]), keep_originals=False)
    np.testing.assert_allclose(odd.numpy().ravel(), [0.25 * 0 + 0.75 * 10, 0.5 * 10 + 0.5 * 20,
                                                     0.25 * 20 + 0.75 * 0], rtol=1e-6)
    np.testing.assert_allclose(odd_labels.numpy(), [[0.25, 0.75, 0], [0, 0.5, 0.5], [0.75, 0, 0.25]])


def test_mixup_ratio_draws():
    seed = tf.constant([3, 4], tf.int64)
    uniform = mixup_ratios(4000, seed, MIXUP).numpy()
    assert 0.1 <= uniform.min() and uniform.max() <= 0.3
    # Stateless draws: the same numbers on any CPU; the mean of 4000 uniform(0.1, 0.3) draws is
    # 0.2 with a standard error of 0.001, so 0.01 leaves ten of them.
    assert abs(uniform.mean() - 0.2) < 0.01
    np.testing.assert_array_equal(uniform, mixup_ratios(4000, seed, MIXUP).numpy())
    beta = mixup_ratios(4000, seed, {**MIXUP, "ratio": "beta"}).numpy()
    # Beta(0.4, 0.4): mean 0.5, standard deviation 0.37 (error of the mean 0.006), U-shaped:
    # P(r < 0.1) = P(r > 0.9) = 0.26 or so.
    assert 0.0 <= beta.min() and beta.max() <= 1.0 and abs(beta.mean() - 0.5) < 0.03
    assert 0.2 < np.mean(beta < 0.1) < 0.32 and 0.2 < np.mean(beta > 0.9) < 0.32
    with pytest.raises(ConfigError, match="'data.augment.mixup.ratio' must be one of uniform, beta"):
        check_mixup({**MIXUP, "ratio": "gauss"})
    with pytest.raises(ConfigError, match="'data.augment.mixup.low'"):
        check_mixup({**MIXUP, "low": 0.5})
    with pytest.raises(ConfigError, match="'data.augment.mixup.alpha' must be > 0"):
        check_mixup({**MIXUP, "ratio": "beta", "alpha": 0})


def test_square_crop_random_in_training_centre_at_inference(tmp_path):
    image = np.arange(36, dtype=np.float32).reshape(1, 6, 6, 1)
    crop = SquareCrop(4)
    np.testing.assert_array_equal(crop(image).numpy()[0, :, :, 0], image[0, 1:5, 1:5, 0])
    windows = {(top, left): image[0, top:top + 4, left:left + 4, 0]
               for top in range(3) for left in range(3)}
    batch = np.repeat(image, 200, axis=0)
    seen = set()
    for out in crop(batch, training=True).numpy()[..., 0]:
        # every output is one of the nine windows; the top left pixel (6 * top + left) names it
        top, left = divmod(int(out[0, 0]), 6)
        np.testing.assert_array_equal(out, windows[(top, left)])
        seen.add((top, left))
    assert len(seen) == 9  # 200 draws from 9 equally likely windows: each missed with p < 1e-9
    assert SquareCrop.from_config(SquareCrop(4, "random").get_config()).test_crop == "random"
    with pytest.raises(ConfigError, match="'data.test_crop' must be one of center, random"):
        SquareCrop(4, "corner")

    # The exported model crops as Keras does at inference: a static slice TFLite runs.
    from common.tflite_runtime import TFLiteModel

    inputs = keras.Input((6, 6, 1))
    model = keras.Model(inputs, keras.layers.Flatten()(SquareCrop(4)(inputs)))
    path = tmp_path / "crop.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    np.testing.assert_array_equal(TFLiteModel(path).predict(image), model.predict(image, verbose=0))
    # A random test-time crop converts too (float draws: TFLite has no integer RANDOM_UNIFORM).
    model = keras.Model(inputs, keras.layers.Flatten()(SquareCrop(4, "random")(inputs)))
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    for out in TFLiteModel(path).predict(np.repeat(image, 20, axis=0)).reshape(20, 4, 4):
        np.testing.assert_array_equal(out, windows[divmod(int(out[0, 0]), 6)])
