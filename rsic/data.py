"""Folder-per-class scene images (NWPU-RESISC45 layout): listing, validation, splits, tf.data.

Data set layout (the layout of NWPU-RESISC45, UC Merced and AID)::

    <root>/
        airplane/
            airplane_001.jpg
            airplane_002.jpg
            ...
        airport/
            airport_001.jpg
        ...

- One sub-folder per class; the folder name is the class name. Classes are sorted by name and the
  class index is the position in that sorted list (saved as `labels.txt` in the run directory).
  Any number of classes >= 2.
- Images: `.jpg`, `.jpeg`, `.png`, `.tif`, `.tiff` (case-insensitive), any size; they are resized
  to the model's input size. Greyscale and RGBA/palette images are converted to RGB (the alpha
  channel is dropped) and a log line says how many. Other files in a class folder are ignored.
- NWPU-RESISC45 (Cheng et al., "Remote Sensing Image Scene Classification: Benchmark and State of
  the Art", Proc. IEEE 2017): 31,500 RGB images of 256x256 pixels, 45 classes x 700 images,
  0.2-30 m per pixel. `python -m rsic download --dest DIR` fetches it (rsic/download.py) and
  prints the folder that holds the 45 class folders: that is `--data`.
- Protocols of the papers: 10% or 20% of every class for training, the rest for testing
  (`data.train_ratio`). A split can also be given as a JSON file (`data.split_file`) with lists
  `train`, `test` and optionally `val` of paths relative to the root (`class/name.jpg`); the split
  used is always written to the run directory as `split.json` in that same format.

Every image is checked once with PIL before training (header and a full decode) so that a broken
file is reported by name as a `DataError`, never from inside TensorFlow. `skip_bad=True`
(`--skip-bad`) skips such files instead and lists them in a log line.
"""

import json
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from common.errors import DataError
from common.io import write_json, write_text

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff")
_TIFF_SUFFIXES = (".tif", ".tiff")


@dataclass
class ImageFolder:
    """A listed and validated image folder.

    Attributes:
        root: Path of the data set folder.
        class_names: list of str, sorted; index = class id.
        files: list of Path, every usable image.
        labels: int64 array (N,), class id of each file.
        skipped: list of (Path, reason) of broken images skipped with `skip_bad`.
        converted: dict mode -> count of images that are not plain RGB (converted on decode).
    """

    root: Path
    class_names: list
    files: list
    labels: np.ndarray
    skipped: list = field(default_factory=list)
    converted: dict = field(default_factory=dict)

    def relative(self, indices=None):
        """Posix paths relative to the root (`class/name.jpg`) of the files at `indices`."""
        indices = range(len(self.files)) if indices is None else indices
        return [self.files[i].relative_to(self.root).as_posix() for i in indices]


def list_classes(root):
    """Sorted class folder names under `root`; DataError when there are fewer than two."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: data folder not found")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(f"{root}: no class folders; expected <root>/<class>/<image>.jpg")
    if len(classes) < 2:
        raise DataError(f"{root}: only one class folder ({classes[0]}); a classifier needs at least 2")
    return classes


def check_image(path):
    """Open and fully decode one image with PIL.

    Args:
        path: Path of an image file.

    Returns:
        str, the PIL mode of the image ("RGB", "L", "RGBA", ...).

    Raises:
        DataError: the file cannot be read, is truncated, or has a mode that is not an image
            of 1, 3 or 4 channels.
    """
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as image:
                image.verify()  # header and structure, cheap
            with Image.open(path) as image:
                image.load()  # a full decode catches truncated data that verify() misses
                mode = image.mode
                size = image.size
    except Exception as error:  # PIL raises many types for a broken file
        raise DataError(f"{path}: unreadable or truncated image ({_one_line(error)})") from None
    if min(size) < 1:
        raise DataError(f"{path}: image has no pixels")
    if mode not in ("RGB", "L", "LA", "RGBA", "P", "PA", "I;16", "I", "1"):
        raise DataError(f"{path}: image mode {mode} cannot be converted to RGB")
    return mode


def scan_image_folder(root, *, skip_bad=False, log=print, workers=4):
    """List and validate every image of a folder-per-class data set.

    Args:
        root: str or Path of the data set folder (see the module docstring).
        skip_bad: bool; skip unreadable images (listed in a log line) instead of raising.
        log: callable(str) for progress lines.
        workers: int, threads that decode images for the check (PIL releases the GIL).

    Returns:
        ImageFolder.

    Raises:
        DataError: missing folder, fewer than two classes, a class folder without images, or an
            unreadable image (unless `skip_bad`).
    """
    root = Path(root)
    class_names = list_classes(root)
    files, labels = [], []
    for index, name in enumerate(class_names):
        images = sorted(
            p for p in (root / name).iterdir()
            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
        )
        if not images:
            raise DataError(
                f"{root / name}: class folder has no images ({', '.join(IMAGE_SUFFIXES)})"
            )
        files.extend(images)
        labels.extend([index] * len(images))

    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(_check_or_error, files))
    usable, usable_labels, skipped, converted = [], [], [], {}
    for path, label, (mode, error) in zip(files, labels, results):
        if error is not None:
            if not skip_bad:
                raise error
            skipped.append((path, str(error)))
            continue
        if mode != "RGB":
            converted[mode] = converted.get(mode, 0) + 1
        usable.append(path)
        usable_labels.append(label)
    if skipped:
        log(f"skipped {len(skipped)} unreadable image(s) (--skip-bad): "
            + ", ".join(str(p) for p, _ in skipped[:5]) + (" ..." if len(skipped) > 5 else ""))
    if converted:
        log("converting to RGB: " + ", ".join(f"{n} {mode} image(s)" for mode, n in sorted(converted.items()))
            + " (alpha dropped, grey replicated)")
    usable_labels = np.asarray(usable_labels, np.int64)
    for index, name in enumerate(class_names):
        if not np.any(usable_labels == index):
            raise DataError(f"{root / name}: class folder has no readable images")
    return ImageFolder(root, class_names, usable, usable_labels, skipped, converted)


def _check_or_error(path):
    try:
        return check_image(path), None
    except DataError as error:
        return None, error


def make_split(labels, train_ratio, *, val_ratio=0.0, seed=0):
    """A stratified, seeded split: per class, `train_ratio` of the images train, the rest test.

    Args:
        labels: int array (N,), class id of every image.
        train_ratio: float in (0, 1), share of each class used for training (papers: 0.1, 0.2).
        val_ratio: float in [0, 1), share of each class's training images held out for validation.
        seed: int.

    Returns:
        dict with int arrays "train", "val", "test" of indices into `labels` (sorted).
        Every class keeps at least one training and one test image.
    """
    if not 0.0 < train_ratio < 1.0:
        raise DataError(f"data.train_ratio must be in (0, 1), got {train_ratio}")
    if not 0.0 <= val_ratio < 1.0:
        raise DataError(f"data.val_ratio must be in [0, 1), got {val_ratio}")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    parts = {"train": [], "val": [], "test": []}
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        if len(members) < 2:
            raise DataError(f"class {label} has {len(members)} image; a split needs at least 2 per class")
        n_train = int(np.clip(round(train_ratio * len(members)), 1, len(members) - 1))
        n_val = int(round(val_ratio * n_train)) if n_train > 1 else 0
        n_val = min(n_val, n_train - 1)
        parts["val"].extend(members[:n_val])
        parts["train"].extend(members[n_val:n_train])
        parts["test"].extend(members[n_train:])
    return {name: np.sort(np.asarray(idx, np.int64)) for name, idx in parts.items()}


def read_split_file(path, folder):
    """Read a split JSON (lists `train`, `test`, optional `val` of root-relative paths).

    Args:
        path: str or Path of the JSON file.
        folder: ImageFolder the paths refer to.

    Returns:
        dict of int index arrays "train", "val", "test" into `folder.files`.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: split file not found")
    try:
        content = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: not valid JSON ({_one_line(error)})") from None
    if not isinstance(content, dict) or "train" not in content or "test" not in content:
        raise DataError(f"{path}: split file needs lists 'train' and 'test'")
    index = {name: i for i, name in enumerate(folder.relative())}
    parts = {}
    for name in ("train", "val", "test"):
        entries = content.get(name) or []
        missing = [e for e in entries if e not in index]
        if missing:
            raise DataError(f"{path}: '{missing[0]}' in '{name}' is not an image of {folder.root}")
        parts[name] = np.asarray(sorted(index[e] for e in entries), np.int64)
    if len(parts["train"]) == 0 or len(parts["test"]) == 0:
        raise DataError(f"{path}: 'train' and 'test' must not be empty")
    return parts


def write_split(run_dir, folder, split, **info):
    """Write `split.json` (the membership of every part) and `labels.txt` into `run_dir`."""
    run_dir = Path(run_dir)
    content = {"root": str(folder.root), "classes": list(folder.class_names), **info}
    for name in ("train", "val", "test"):
        content[name] = folder.relative(split[name])
    write_json(run_dir / "split.json", content)
    write_labels(run_dir / "labels.txt", folder.class_names)


def write_labels(path, class_names):
    """Write one class name per line, in class-index order."""
    write_text(path, "".join(f"{name}\n" for name in class_names))


def read_labels(path):
    """Class names from a `labels.txt`."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: labels file not found")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


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


def _one_line(error):
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__
