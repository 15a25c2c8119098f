"""Images as the models take them: decode, resize, augment (tf.data), and arrays of examples.

Every model takes raw RGB (float32, 0-255) of its input size; its own preprocessing is a layer at
its front (rsic/models.py). Training resizes with `tf.image.resize(..., antialias=True)` and
rounds to 0-255 integers; rsic/edge.py does the same with PIL on a device without TensorFlow.

Example:
    ds = make_dataset(folder.files, folder.labels, image_size=64, batch_size=16, training=True,
                      augment={"flip": True, "rot90": True, "crop": 0.9})
"""

from pathlib import Path

import numpy as np

_TIFF_SUFFIXES = (".tif", ".tiff")


def make_dataset(files, labels, *, image_size, batch_size, training=False, augment=None,
                 seed=0, cache=False, shuffle_buffer=2048):
    """A batched tf.data pipeline of (image, label).

    Args:
        files: list of Path (validated images). labels: int array (N,).
        image_size: int, side of the square model input in pixels.
        batch_size: int.
        training: bool; shuffle (reshuffled every epoch) and augment.
        augment: dict with `flip` (bool, horizontal and vertical), `rot90` (bool, random
            multiples of 90 degrees) and `crop` (float in (0, 1]: smallest side of a random crop as
            a share of the image; 1 = no crop). None: no augmentation.
        seed: int; shuffling and augmentation are deterministic for a seed.
        cache: bool; keep the decoded, resized images in memory (small data sets).
        shuffle_buffer: int, shuffle buffer size in examples.

    Returns:
        tf.data.Dataset of (float32 (B, S, S, 3) raw RGB in [0, 255], int64 (B,)).
        The model does its own preprocessing (a layer at its front).
    """
    import tensorflow as tf

    paths = [str(p) for p in files]
    use_pil = any(Path(p).suffix.lower() in _TIFF_SUFFIXES for p in paths)
    labels = np.asarray(labels, np.int64)
    ds = tf.data.Dataset.from_tensor_slices((paths, labels))
    if training and not cache:
        ds = ds.shuffle(min(len(paths), 100_000), seed=seed, reshuffle_each_iteration=True)

    def load(path, label):
        image = _decode_pil(path) if use_pil else _decode_tf(path)
        image = tf.image.resize(image, (image_size, image_size), antialias=True)
        image = tf.cast(tf.clip_by_value(tf.round(image), 0.0, 255.0), tf.uint8)
        return image, label

    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if cache:
        ds = ds.cache()
        if training:
            ds = ds.shuffle(min(len(paths), shuffle_buffer), seed=seed, reshuffle_each_iteration=True)
    if training and augment:
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        ds = tf.data.Dataset.zip((ds, seeds))
        ds = ds.map(lambda example, s: (_augment(example[0], s, augment, image_size), example[1]),
                    num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.map(lambda image, label: (tf.cast(image, tf.float32), label))
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def load_images(files, image_size):
    """Decode and resize images into one array, as the data pipeline does (no augmentation).

    Returns:
        float32 array (N, S, S, 3) of raw RGB values in [0, 255].
    """
    ds = make_dataset(files, np.zeros(len(files), np.int64), image_size=image_size,
                      batch_size=64)
    batches = [x.numpy() for x, _ in ds]
    return np.concatenate(batches) if batches else np.zeros((0, image_size, image_size, 3), np.float32)


def _decode_tf(path):
    import tensorflow as tf

    data = tf.io.read_file(path)
    # channels=3 turns greyscale into RGB and drops alpha; expand_animations=False gives 3-D.
    image = tf.io.decode_image(data, channels=3, expand_animations=False, dtype=tf.uint8)
    image.set_shape([None, None, 3])
    return tf.cast(image, tf.float32)


def _decode_pil(path):
    import tensorflow as tf

    image = tf.numpy_function(_pil_rgb, [path], tf.float32, stateful=False)
    image.set_shape([None, None, 3])
    return image


def _pil_rgb(path):
    from PIL import Image

    with Image.open(path.decode() if isinstance(path, bytes) else str(path)) as image:
        return np.asarray(image.convert("RGB"), np.float32)


def _augment(image, seed, augment, image_size):
    """Flips, 90-degree rotations and a random crop, all stateless (seeded per example)."""
    import tensorflow as tf

    seed = tf.cast(seed, tf.int64)
    seeds = tf.random.experimental.stateless_split(seed, 4)
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
        top = (1.0 - side) * values[1]
        left = (1.0 - side) * values[2]
        box = tf.stack([top, left, top + side, left + side])[tf.newaxis]
        image = tf.image.crop_and_resize(
            tf.cast(image, tf.float32)[tf.newaxis], box, [0], (image_size, image_size)
        )[0]
        image = tf.cast(tf.clip_by_value(tf.round(image), 0.0, 255.0), tf.uint8)
    return image


def predict_probs(model, files, image_size, batch_size=32):
    """Class probabilities of a Keras model (or anything with `predict(x)`, e.g. a TFLiteModel)
    for image files.

    Returns:
        float32 array (N, num_classes).
    """
    ds = make_dataset(files, np.zeros(len(files), np.int64), image_size=image_size, batch_size=batch_size)
    if hasattr(model, "layers"):  # a Keras model: one predict call over the whole pipeline
        return np.asarray(model.predict(ds.map(lambda x, _: x), verbose=0), np.float32)
    outputs = [np.asarray(model.predict(x.numpy())) for x, _ in ds]
    return np.concatenate(outputs).astype(np.float32)
