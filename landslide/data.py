"""Landslide4Sense patches on disk: layout, validation, splits and the tf.data pipeline.

Landslide4Sense 2022 (Ghorbanzadeh et al., IEEE TGRS 2022, arXiv 2206.00515) is a benchmark for
landslide segmentation from multi-source satellite data.

Features:
    * 128 x 128 pixel patches, about 10 m per pixel, 14 bands (float):
      0-11 Sentinel-2 B1-B12 (B1, B2, B3, B4, B5, B6, B7, B8, B9, B10, B11, B12),
      12 slope and 13 DEM (ALOS PALSAR).
    * TrainData: 3,799 patches with masks; ValidData: 245 and TestData: 800 patches without.
    * Classes in index order: 0 = no landslide, 1 = landslide (about 2% of the pixels).
    * The real images contain NaNs; they are replaced by 0 (and counted) when read.

On-disk layout (the official download; any folder with the same `img/` and `mask/` pairing works
too, so you can train on your own patches)::

    <root>/TrainData/img/image_1.h5     dataset "img",  shape (128, 128, 14), float
    <root>/TrainData/mask/mask_1.h5     dataset "mask", shape (128, 128), values 0/1
    <root>/ValidData/img/image_1.h5     no masks
    <root>/TestData/img/image_1.h5      no masks

An image `img/image_N.h5` is paired with `mask/mask_N.h5` (any other name `img/X.h5` with
`mask/X.h5`).

Where to get it: published on Zenodo and mirrored on Hugging Face; the links are in the official
repository https://github.com/iarai/Landslide4Sense-2022. It is never downloaded by this code. Cite: Ghorbanzadeh et al., "The Outcome of the 2022 Landslide4Sense
Competition", IEEE TGRS 60, 2022.
"""

import contextlib
import json
import logging
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from common.errors import ConfigError, DataError, RunDirError
from common.io import write_json

log = logging.getLogger(__name__)

NUM_BANDS = 14
PATCH_SIZE = 128
IMAGE_KEY = "img"
MASK_KEY = "mask"
NAN_FILL = 0.0  # a missing value becomes 0 (the same in the pipeline and in the model's first layer)
BAND_NAMES = [f"B{i}" for i in range(1, 13)] + ["slope", "DEM"]
# Official per-band statistics of Landslide4Sense (the challenge's baseline code).
OFFICIAL_MEAN = [-0.4914, -0.3074, -0.1277, -0.0625, 0.0439, 0.0803, 0.0644, 0.0802, 0.3000, 0.4082,
                 0.0823, 0.0516, 0.3338, 0.7819]
OFFICIAL_STD = [0.9325, 0.8775, 0.8860, 0.8869, 0.8857, 0.8418, 0.8354, 0.8491, 0.9061, 1.6072,
                0.8848, 0.9232, 0.9018, 1.2913]
SPLIT_FILE = "split.json"
_IMAGE_NAME = re.compile(r"^image_(.+)\.h5$")


@dataclass
class PatchFolder:
    """The patches of one folder: image files and, where labelled, their masks (same order)."""

    folder: Path
    images: list = field(default_factory=list)
    masks: list = field(default_factory=list)  # Path per image, or empty when unlabelled

    @property
    def names(self):
        """Image file names (image_N.h5), the keys of split.json."""
        return [path.name for path in self.images]

    @property
    def labelled(self):
        return bool(self.masks)

    def subset(self, names):
        """The patches whose image file names are in `names`, in that order."""
        index = {path.name: i for i, path in enumerate(self.images)}
        missing = [name for name in names if name not in index]
        if missing:
            raise DataError(f"{self.folder}: split names patches that are not here: {', '.join(missing[:3])}")
        rows = [index[name] for name in names]
        return PatchFolder(
            self.folder,
            [self.images[i] for i in rows],
            [self.masks[i] for i in rows] if self.masks else [],
        )


def mask_name(image_name):
    """The mask file name of an image file name: image_7.h5 -> mask_7.h5 (X.h5 -> X.h5)."""
    match = _IMAGE_NAME.match(image_name)
    return f"mask_{match.group(1)}.h5" if match else image_name


def natural_key(path):
    """Sort image_2 before image_10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def labelled_folder(data):
    """The folder of labelled patches under `data`: `data/TrainData` or `data` itself (with img/)."""
    data = Path(data)
    if (data / "TrainData" / "img").is_dir():
        return data / "TrainData"
    if (data / "img").is_dir():
        return data
    if not data.exists():
        raise DataError(f"{data}: no such folder")
    raise DataError(
        f"{data}: no img/ folder (expected TrainData/img/image_N.h5 with TrainData/mask/mask_N.h5, "
        "or img/ and mask/ directly)"
    )


def index_folder(folder, *, masks=True, patch_size=PATCH_SIZE, check=True):
    """List and check the patches of a folder holding `img/` (and `mask/` when `masks`).

    Every file's header is checked (readable HDF5, dataset key, shape); values are checked when
    the patch is read. Cheap: no pixel data is read.

    Args:
        folder: str or Path with `img/*.h5` (and `mask/*.h5`).
        masks: True to require a mask per image.
        patch_size: int, expected height and width in pixels.
        check: False to skip the per-file header checks.

    Returns:
        PatchFolder, images in natural order (image_2 before image_10).

    Raises:
        DataError: naming the file and the problem.
    """
    folder = Path(folder)
    img_dir = folder / "img"
    if not img_dir.is_dir():
        raise DataError(f"{folder}: no img/ folder")
    images = sorted(img_dir.glob("*.h5"), key=natural_key)
    if not images:
        raise DataError(f"{img_dir}: no image_*.h5 patches")
    mask_paths = []
    if masks:
        mask_paths = [folder / "mask" / mask_name(path.name) for path in images]
        for image, mask in zip(images, mask_paths):
            if not mask.is_file():
                raise DataError(f"{image}: no mask {mask}")
    if check:
        for image in images:
            check_image_header(image, patch_size)
        for mask in mask_paths:
            check_mask_header(mask, patch_size)
    return PatchFolder(folder, images, mask_paths)


def image_files(paths):
    """The image files named by `paths`: .h5 files, folders of them, or folders with img/.

    Returns:
        list of Path, natural order within each folder.
    """
    found = []
    for path in map(Path, paths):
        if path.is_file():
            found.append(path)
        elif (path / "img").is_dir():
            found.extend(sorted((path / "img").glob("*.h5"), key=natural_key))
        elif path.is_dir():
            found.extend(sorted(path.glob("*.h5"), key=natural_key))
        else:
            raise DataError(f"{path}: no such file or folder")
    if not found:
        raise DataError(f"{', '.join(map(str, paths))}: no .h5 patches")
    return found


def _open(path):
    try:
        return h5py.File(path, "r")
    except OSError:
        raise DataError(f"{path}: not a readable HDF5 file") from None


def _dataset(handle, path, key):
    if key not in handle or not isinstance(handle[key], h5py.Dataset):
        found = ", ".join(sorted(handle.keys())) or "nothing"
        raise DataError(f"{path}: no dataset '{key}' (found: {found})")
    dataset = handle[key]
    if not np.issubdtype(dataset.dtype, np.number):
        raise DataError(f"{path}: dataset '{key}' holds {dataset.dtype}, expected numbers")
    return dataset


def _check_image_shape(shape, path, patch_size):
    expected = (patch_size, patch_size, NUM_BANDS)
    if len(shape) != 3:
        raise DataError(f"{path}: '{IMAGE_KEY}' has shape {tuple(shape)}, expected {expected}")
    if shape[2] != NUM_BANDS:
        raise DataError(f"{path}: '{IMAGE_KEY}' has {shape[2]} bands, expected {NUM_BANDS}")
    if tuple(shape[:2]) != (patch_size, patch_size):
        raise DataError(
            f"{path}: '{IMAGE_KEY}' is {shape[0]}x{shape[1]} pixels, expected {patch_size}x{patch_size}"
        )


def _check_mask_shape(shape, path, patch_size):
    if tuple(shape) not in ((patch_size, patch_size), (patch_size, patch_size, 1)):
        raise DataError(f"{path}: '{MASK_KEY}' has shape {tuple(shape)}, expected ({patch_size}, {patch_size})")


def check_image_header(path, patch_size=PATCH_SIZE):
    """Check that `path` is an HDF5 file with dataset 'img' of shape (patch, patch, 14)."""
    with _open(path) as handle:
        _check_image_shape(_dataset(handle, path, IMAGE_KEY).shape, path, patch_size)


def check_mask_header(path, patch_size=PATCH_SIZE):
    """Check that `path` is an HDF5 file with dataset 'mask' of shape (patch, patch)."""
    with _open(path) as handle:
        _check_mask_shape(_dataset(handle, path, MASK_KEY).shape, path, patch_size)


def read_image(path, patch_size=PATCH_SIZE):
    """Read one image patch, NaNs replaced by NAN_FILL.

    Returns:
        (image float32 (patch, patch, 14) in the file's units, number of NaN values replaced).

    Raises:
        DataError: unreadable file, wrong key or shape, infinite values, or only NaNs.
    """
    with _open(path) as handle:
        dataset = _dataset(handle, path, IMAGE_KEY)
        _check_image_shape(dataset.shape, path, patch_size)
        image = np.asarray(dataset[()], dtype=np.float32)
    nan = np.isnan(image)
    nan_count = int(nan.sum())
    if nan_count == image.size:
        raise DataError(f"{path}: '{IMAGE_KEY}' is all NaN")
    infinite = int(np.isinf(image).sum())
    if infinite:
        raise DataError(f"{path}: '{IMAGE_KEY}' holds {infinite} infinite values")
    if nan_count:
        image[nan] = NAN_FILL
    return image, nan_count


def read_mask(path, patch_size=PATCH_SIZE):
    """Read one mask patch.

    Returns:
        uint8 array (patch, patch), values 0 (no landslide) and 1 (landslide).

    Raises:
        DataError: unreadable file, wrong key or shape, or values other than 0 and 1.
    """
    with _open(path) as handle:
        dataset = _dataset(handle, path, MASK_KEY)
        _check_mask_shape(dataset.shape, path, patch_size)
        mask = np.asarray(dataset[()]).reshape(patch_size, patch_size)
    bad = ~np.isin(mask, (0, 1))
    if bad.any():
        values = ", ".join(str(v) for v in np.unique(mask[bad])[:5])
        raise DataError(f"{path}: mask values must be 0 or 1, found {values}")
    return mask.astype(np.uint8)


# ---------------------------------------------------------------------------------------------
# Splits


def make_split(names, *, protocol="kfold", folds=5, fold=0, val_fraction=0.2, seed=0):
    """Split labelled patch names into training and validation sets, reproducibly.

    Args:
        names: list of image file names.
        protocol: "kfold" (the paper: k folds of a seeded permutation; fold `fold` validates)
            or "holdout" (a seeded `val_fraction` of the patches validates).
        folds, fold: int, number of folds and the validation fold (0-based) for "kfold".
        val_fraction: float in (0, 1) for "holdout".
        seed: int, seed of the permutation.

    Returns:
        dict with protocol, folds, fold, seed, val_fraction, train (names), val (names).
    """
    names = list(names)
    order = np.random.default_rng(seed).permutation(len(names))
    if protocol == "kfold":
        if folds < 2 or not 0 <= fold < folds:
            raise ConfigError(f"config keys data.folds/data.fold: k-fold split needs folds >= 2 and 0 <= fold < folds, got folds={folds}, fold={fold}")
        if len(names) < folds:
            raise DataError(f"{len(names)} labelled patches cannot make {folds} folds")
        parts = np.array_split(order, folds)
        val_rows = parts[fold]
    elif protocol == "holdout":
        if not 0 < val_fraction < 1:
            raise ConfigError(f"config key 'data.val_fraction': holdout split needs 0 < val_fraction < 1, got {val_fraction}")
        count = min(len(names) - 1, max(1, round(len(names) * val_fraction)))
        val_rows = order[:count]
    else:
        raise ConfigError(f"config key 'data.split' must be kfold or holdout, got {protocol!r}")
    val_set = set(val_rows.tolist())
    return {
        "protocol": protocol,
        "folds": folds,
        "fold": fold,
        "val_fraction": val_fraction,
        "seed": seed,
        "train": [names[i] for i in sorted(set(range(len(names))) - val_set)],
        "val": [names[i] for i in sorted(val_set)],
    }


def write_split(run_dir, split):
    """Write the split membership to RUN/split.json (atomically)."""
    write_json(Path(run_dir) / SPLIT_FILE, split)


def read_split(run_dir):
    """Read RUN/split.json."""
    path = Path(run_dir) / SPLIT_FILE
    if not path.is_file():
        raise RunDirError(f"{path}: no split file; was this run trained by `landslide train`?")
    return json.loads(path.read_text())


# ---------------------------------------------------------------------------------------------
# tf.data


class _ErrorSlot:
    """The DataError raised inside a tf.data reader, so callers can re-raise it as itself.

    tf.numpy_function turns Python exceptions into TensorFlow errors; `reraise_data_errors`
    turns them back into the project's one-line DataError.
    """

    lock = threading.Lock()
    error = None


def _read_pair(image_path, mask_path, patch_size):
    try:
        image, nan_count = read_image(image_path.decode(), int(patch_size))
        if mask_path:
            mask = read_mask(mask_path.decode(), int(patch_size))
        else:
            mask = np.zeros((patch_size, patch_size), np.uint8)
    except DataError as error:
        with _ErrorSlot.lock:
            _ErrorSlot.error = error
        raise
    return image, mask[..., None], np.int32(nan_count)


@contextlib.contextmanager
def reraise_data_errors():
    """Context manager: a TensorFlow error caused by a bad patch is raised as its DataError."""
    import tensorflow as tf

    with _ErrorSlot.lock:
        _ErrorSlot.error = None
    try:
        yield
    except tf.errors.OpError:
        with _ErrorSlot.lock:
            error, _ErrorSlot.error = _ErrorSlot.error, None
        if error is not None:
            raise error from None
        raise


def dataset_bytes(count, patch_size=PATCH_SIZE):
    """Memory a cached data set of `count` patches takes (float32 image + uint8 mask)."""
    return count * patch_size * patch_size * (NUM_BANDS * 4 + 1)


def should_cache(count, patch_size=PATCH_SIZE, cache="auto", max_fraction=0.5):
    """Whether to cache `count` decoded patches in memory.

    cache: "auto" (when they take under `max_fraction` of the available memory), "memory" or "none".
    """
    if cache == "memory":
        return True
    if cache == "none":
        return False
    if cache != "auto":
        raise ConfigError(f"config key 'data.cache' must be auto, memory or none, got {cache!r}")
    import os

    try:
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        available = 2**31
    return dataset_bytes(count, patch_size) < max_fraction * available


def read_dataset(patches, *, patch_size=PATCH_SIZE, shuffle_seed=None, cache=False):
    """Decoded patches as an unbatched tf.data.Dataset of (image, mask, nan_count).

    Files are read in parallel (tf.data map with AUTOTUNE); nothing is loaded eagerly. With
    `cache`, decoded patches stay in memory after the first pass.

    Args:
        patches: PatchFolder (unlabelled folders give all-zero masks).
        shuffle_seed: int to shuffle the file order each epoch (before reading, when not cached).
        cache: bool.

    Returns:
        Dataset of (float32 (patch, patch, 14) raw image with NaNs replaced,
        uint8 (patch, patch, 1) mask, int32 count of replaced NaNs).
    """
    import tensorflow as tf

    masks = [str(path) for path in patches.masks] if patches.masks else [""] * len(patches.images)
    ds = tf.data.Dataset.from_tensor_slices(([str(path) for path in patches.images], masks))
    if shuffle_seed is not None and not cache:
        ds = ds.shuffle(len(patches.images), seed=shuffle_seed, reshuffle_each_iteration=True)

    def read(image_path, mask_path):
        image, mask, nan_count = tf.numpy_function(
            _read_pair, [image_path, mask_path, patch_size], [tf.float32, tf.uint8, tf.int32], stateful=False
        )
        image.set_shape((patch_size, patch_size, NUM_BANDS))
        mask.set_shape((patch_size, patch_size, 1))
        nan_count.set_shape(())
        return image, mask, nan_count

    ds = ds.map(read, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if cache:
        ds = ds.cache()
        if shuffle_seed is not None:
            ds = ds.shuffle(len(patches.images), seed=shuffle_seed, reshuffle_each_iteration=True)
    return ds


def augment(image, mask, seed):
    """Random flip and 90-degree rotation (the 8 symmetries of the square), the same for both.

    Args:
        image: (H, W, C) float; mask: (H, W, 1); seed: int64 tensor of shape (2,), stateless.
    """
    import tensorflow as tf

    channels = image.shape[-1]
    both = tf.concat([image, tf.cast(mask, image.dtype)], axis=-1)
    both = tf.image.stateless_random_flip_left_right(both, seed)
    turns = tf.random.stateless_uniform([], seed[::-1], 0, 4, dtype=tf.int32)
    both = tf.image.rot90(both, turns)
    return both[..., :channels], tf.cast(both[..., channels:], mask.dtype)


def training_dataset(patches, *, batch_size, seed=0, shuffle=True, augment_data=True,
                     cache=False, patch_size=PATCH_SIZE):
    """Batched (x, y) for Keras: x raw (B, H, W, 14) float32 (NaNs replaced), y (B, H, W, 1) float32.

    Args:
        patches: PatchFolder with masks.
        batch_size: int.
        seed: int, seeds the shuffle order and the augmentation (both differ each epoch).
        shuffle, augment_data, cache: bool.
    """
    import tensorflow as tf

    ds = read_dataset(patches, patch_size=patch_size, shuffle_seed=seed if shuffle else None, cache=cache)
    ds = ds.map(lambda image, mask, _: (image, mask))
    if augment_data:
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        ds = tf.data.Dataset.zip((ds, seeds)).map(
            lambda pair, s: augment(pair[0], pair[1], s), num_parallel_calls=tf.data.AUTOTUNE
        )
    ds = ds.map(lambda image, mask: (image, tf.cast(mask, tf.float32)))
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)
