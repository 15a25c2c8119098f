"""Images as the models take them: decode, resize, augment (tf.data), and arrays of examples.

Every model takes raw RGB (float32, 0-255) of its input size; its own preprocessing is a layer at
its front (rsic/models.py). Training resizes with `tf.image.resize(..., antialias=True)` and
rounds to 0-255 integers; rsic/edge.py does the same with PIL on a device without TensorFlow.
"""

import numpy as np

from rsic.data import load_rgb, tf_decodable


def make_dataset(files, labels, *, image_size, batch_size, training=False, augment=None,
                 seed=0, cache=False, shuffle_buffer=2048):
    """A batched tf.data pipeline of (float32 (B, S, S, 3) raw RGB in [0, 255], int64 (B,)).

    Args:
        files: list of Path (validated images). labels: int array (N,).
        image_size: int, side S of the square model input in pixels.
        training: bool; shuffle (reshuffled every epoch) and augment.
        augment: the `data.augment` section (rsic/config.py: flip, rot90, crop), or None.
        seed: int; shuffling and augmentation are deterministic for a seed.
        cache: bool; keep the decoded, resized images in memory (small data sets).
        shuffle_buffer: int, shuffle buffer size in examples (with `cache`).
    """
    import tensorflow as tf

    paths = [str(p) for p in files]
    # TIFF and anything else tf.io cannot decode (it reads JPEG, PNG, GIF and BMP only, judged by
    # content: a TIFF named .png too): decoded by PIL, the decoder `open_data` checked them with.
    use_pil = not all(tf_decodable(p) for p in paths)
    ds = tf.data.Dataset.from_tensor_slices((paths, np.asarray(labels, np.int64)))
    if training and not cache:
        ds = ds.shuffle(min(len(paths), 100_000), seed=seed, reshuffle_each_iteration=True)

    def load(path, label):
        if use_pil:
            image = tf.numpy_function(_pil_rgb, [path], tf.float32, stateful=False)
        else:  # channels=3: grey to RGB, alpha dropped; expand_animations=False: 3-D
            image = tf.cast(tf.io.decode_image(tf.io.read_file(path), channels=3,
                                               expand_animations=False, dtype=tf.uint8), tf.float32)
        image.set_shape([None, None, 3])
        return _to_uint8(tf.image.resize(image, (image_size, image_size), antialias=True)), label

    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if cache:
        ds = ds.cache()
        if training:
            ds = ds.shuffle(min(len(paths), shuffle_buffer), seed=seed,
                            reshuffle_each_iteration=True)
    if training and augment:
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        ds = tf.data.Dataset.zip((ds, seeds)).map(
            lambda example, s: (_augment(example[0], s, augment, image_size), example[1]),
            num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.map(lambda image, label: (tf.cast(image, tf.float32), label))
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def _pil_rgb(path):
    return np.asarray(load_rgb(path.decode() if isinstance(path, bytes) else str(path)), np.float32)


def _to_uint8(image):
    import tensorflow as tf

    return tf.cast(tf.clip_by_value(tf.round(image), 0.0, 255.0), tf.uint8)


def _augment(image, seed, augment, image_size):
    """Flips, 90-degree rotations and a random crop, all stateless (seeded per example)."""
    import tensorflow as tf

    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 4)
    if augment.get("flip", False):
        image = tf.image.stateless_random_flip_left_right(image, seeds[0])
        image = tf.image.stateless_random_flip_up_down(image, seeds[1])
    if augment.get("rot90", False):
        k = tf.random.stateless_uniform([], seeds[2], 0, 4, dtype=tf.int32)
        image = tf.image.rot90(image, k)
    crop = float(augment.get("crop", 1.0))
    if crop < 1.0:
        values = tf.random.stateless_uniform([3], seeds[3], 0.0, 1.0)
        side = crop + (1.0 - crop) * values[0]
        top, left = (1.0 - side) * values[1], (1.0 - side) * values[2]
        box = tf.stack([top, left, top + side, left + side])[tf.newaxis]
        image = _to_uint8(tf.image.crop_and_resize(tf.cast(image, tf.float32)[tf.newaxis], box,
                                                   [0], (image_size, image_size))[0])
    return image


def _images(files, image_size, batch_size):
    """Batches of the images of `files` (float32 (B, S, S, 3), 0-255), no augmentation."""
    ds = make_dataset(files, np.zeros(len(files), np.int64), image_size=image_size,
                      batch_size=batch_size)
    return ds.map(lambda x, _: x)


def load_images(files, image_size):
    """Decode and resize images into one float32 array (N, S, S, 3) of raw RGB in [0, 255], as
    the data pipeline does (no augmentation)."""
    batches = [x.numpy() for x in _images(files, image_size, 64)]
    return np.concatenate(batches) if batches else np.zeros((0, image_size, image_size, 3),
                                                            np.float32)


def predict_probs(model, files, image_size, batch_size=32):
    """Class probabilities (float32 (N, C)) of a Keras model, or anything with `predict(x)` such
    as a TFLiteModel, for image files."""
    images = _images(files, image_size, batch_size)
    if hasattr(model, "layers"):  # a Keras model: one predict call over the whole pipeline
        return np.asarray(model.predict(images, verbose=0), np.float32)
    return np.concatenate([np.asarray(model.predict(x.numpy())) for x in images]).astype(np.float32)
