"""Images as the models take them: decode, resize, augment (tf.data), and arrays of examples.

Every model takes raw RGB (float32, 0-255) of its input size; its own preprocessing is a layer at
its front (rsic/models.py). Training resizes with `tf.image.resize(..., antialias=True)` and
rounds to 0-255 integers; rsic/edge.py does the same with PIL on a device without TensorFlow.
"""

import numpy as np

from rsic.data import load_rgb, tf_decodable


def image_side(cfg):
    """The side (pixels) images are resized to for a config: `data.image_size`, the model's input
    side (`model.input_size`) when 0. The model crops its input out of it (common.augment.SquareCrop)."""
    return int(cfg["data"].get("image_size") or 0) or int(cfg["model"]["input_size"])


def make_dataset(files, labels, *, image_size, batch_size, training=False, augment=None,
                 seed=0, cache=False, shuffle_buffer=2048, num_classes=0, switch=None):
    """A batched tf.data pipeline of (float32 (B, S, S, 3) raw RGB in [0, 255], labels).

    Args:
        files: list of Path (validated images). labels: int array (N,).
        image_size: int, side S of the square images in pixels.
        training: bool; shuffle (reshuffled every epoch) and augment.
        augment: the `data.augment` section (rsic/config.py: flip, rot90, rot90_all, crop, mixup),
            or None. With `rot90_all` an epoch holds every image in its four rotations (4N); with
            mixup a batch of B becomes 2B (`keep_originals`) mixed per common.augment.mixup_batch.
        seed: int; shuffling and augmentation are deterministic for a seed.
        cache: bool; keep the decoded, resized images in memory (small data sets).
        shuffle_buffer: int, shuffle buffer size in examples (with `cache`).
        num_classes: int; > 0: labels are float32 one-hot (B, num_classes) (soft under mixup),
            else int64 class ids (B,). Mixup needs them one-hot.
        switch: a tf.Variable or None; while it is 0 (common.augment.AugmentOff: the last epochs)
            flips, crops and mixup are off and only the rotations remain.
    """
    import tensorflow as tf

    augment = augment if training and augment else {}
    mixup = augment.get("mixup", {}) if augment else {}
    if mixup.get("enabled") and num_classes <= 0:
        raise ValueError("make_dataset: mixup needs one-hot labels (num_classes > 0)")
    rotate_all = bool(augment.get("rot90_all", False))
    paths = [str(p) for p in files]
    # TIFF and anything else tf.io cannot decode (it reads JPEG, PNG, GIF and BMP only, judged by
    # content: a TIFF named .png too): decoded by PIL, the decoder `open_data` checked them with.
    use_pil = not all(tf_decodable(p) for p in paths)
    labels = np.asarray(labels, np.int64)
    turns = np.zeros(len(paths), np.int32)
    if rotate_all and not cache:  # four entries per file, shuffled apart before any decoding
        paths, labels = paths * 4, np.tile(labels, 4)
        turns = np.repeat(np.arange(4, dtype=np.int32), len(files))
    ds = tf.data.Dataset.from_tensor_slices((paths, labels, turns))
    if training and not cache:
        ds = ds.shuffle(min(len(paths), 100_000), seed=seed, reshuffle_each_iteration=True)

    def load(path, label, turn):
        if use_pil:
            image = tf.numpy_function(_pil_rgb, [path], tf.float32, stateful=False)
        else:  # channels=3: grey to RGB, alpha dropped; expand_animations=False: 3-D
            image = tf.cast(tf.io.decode_image(tf.io.read_file(path), channels=3,
                                               expand_animations=False, dtype=tf.uint8), tf.float32)
        image.set_shape([None, None, 3])
        image = _to_uint8(tf.image.resize(image, (image_size, image_size), antialias=True))
        return image, label, turn

    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if cache:
        ds = ds.cache()
        if rotate_all:  # the cache holds each image once; its four rotations follow it
            ds = ds.flat_map(lambda image, label, _: tf.data.Dataset.from_tensor_slices(
                (tf.stack([image] * 4), tf.fill([4], label), tf.range(4, dtype=tf.int32))))
        if training:
            ds = ds.shuffle(min(len(paths) * (4 if rotate_all else 1), shuffle_buffer), seed=seed,
                            reshuffle_each_iteration=True)
    if rotate_all:
        ds = ds.map(lambda image, label, turn: (tf.image.rot90(image, turn), label, turn))
    ds = ds.map(lambda image, label, _: (image, label))
    if augment:
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        ds = tf.data.Dataset.zip((ds, seeds)).map(
            lambda example, s: (_augment(example[0], s, augment, image_size, switch), example[1]),
            num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

    def to_model(image, label):
        image = tf.cast(image, tf.float32)
        return image, (tf.one_hot(label, num_classes) if num_classes > 0 else label)

    ds = ds.map(to_model).batch(batch_size)
    if mixup.get("enabled"):
        from common.augment import check_mixup, mixup_batch, mixup_ratios

        check_mixup(mixup)
        pair_seeds = tf.data.Dataset.random(seed=seed + 1, rerandomize_each_iteration=True).batch(2)

        def mix(batch, pair_seed):
            x, y = batch

            def mixed():
                ratios = mixup_ratios((tf.shape(x)[0] + 1) // 2, pair_seed, mixup)
                return mixup_batch(x, y, ratios, bool(mixup["keep_originals"]))

            return mixed() if switch is None else tf.cond(switch > 0, mixed, lambda: (x, y))

        ds = tf.data.Dataset.zip((ds, pair_seeds)).map(mix, num_parallel_calls=tf.data.AUTOTUNE,
                                                       deterministic=True)
    return ds.prefetch(tf.data.AUTOTUNE)


def _pil_rgb(path):
    return np.asarray(load_rgb(path.decode() if isinstance(path, bytes) else str(path)), np.float32)


def _to_uint8(image):
    import tensorflow as tf

    return tf.cast(tf.clip_by_value(tf.round(image), 0.0, 255.0), tf.uint8)


def _augment(image, seed, augment, image_size, switch=None):
    """90-degree rotations, flips and a random crop, all stateless (seeded per example); while
    `switch` (a tf.Variable) is 0, the rotations only."""
    import tensorflow as tf

    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 4)
    if augment.get("rot90", False) and not augment.get("rot90_all", False):
        k = tf.random.stateless_uniform([], seeds[2], 0, 4, dtype=tf.int32)
        image = tf.image.rot90(image, k)

    def flip_and_crop(image):
        if augment.get("flip", False):
            image = tf.image.stateless_random_flip_left_right(image, seeds[0])
            image = tf.image.stateless_random_flip_up_down(image, seeds[1])
        crop = float(augment.get("crop", 1.0))
        if crop < 1.0:
            values = tf.random.stateless_uniform([3], seeds[3], 0.0, 1.0)
            side = crop + (1.0 - crop) * values[0]
            top, left = (1.0 - side) * values[1], (1.0 - side) * values[2]
            box = tf.stack([top, left, top + side, left + side])[tf.newaxis]
            image = _to_uint8(tf.image.crop_and_resize(tf.cast(image, tf.float32)[tf.newaxis], box,
                                                       [0], (image_size, image_size))[0])
        return image

    if switch is None:
        return flip_and_crop(image)
    return tf.cond(switch > 0, lambda: flip_and_crop(image), lambda: image)


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
