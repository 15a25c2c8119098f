"""Landslide4Sense patches on disk: layout, validation, splits and the tf.data pipeline.

Landslide4Sense 2022 (Ghorbanzadeh et al., IEEE TGRS 2022, arXiv 2206.00515) is a benchmark for
landslide segmentation from multi-source satellite data.

Features:
    * 128 x 128 pixel patches, about 10 m per pixel, 14 bands (float): 0-11 Sentinel-2 B1-B12,
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

Where to get it: `python -m landslide download` (Zenodo; links in the official repository
https://github.com/iarai/Landslide4Sense-2022).
"""

import os
import re
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from common.errors import ConfigError, DataError
from common.io import atomic_path

NUM_BANDS = 14
PATCH_SIZE = 128
IMAGE_KEY = "img"
MASK_KEY = "mask"
NAN_FILL = 0.0  # a missing value becomes 0 (in the pipeline and in the model's first layer)
BAND_NAMES = [f"B{i}" for i in range(1, 13)] + ["slope", "DEM"]
# Official per-band statistics of Landslide4Sense (the challenge's baseline code).
OFFICIAL_MEAN = [-0.4914, -0.3074, -0.1277, -0.0625, 0.0439, 0.0803, 0.0644, 0.0802, 0.3000, 0.4082,
                 0.0823, 0.0516, 0.3338, 0.7819]
OFFICIAL_STD = [0.9325, 0.8775, 0.8860, 0.8869, 0.8857, 0.8418, 0.8354, 0.8491, 0.9061, 1.6072,
                0.8848, 0.9232, 0.9018, 1.2913]

# Engineered-band definitions, shared by the model's Keras front (landslide.features) and the
# numpy front that runs beside an exported model (landslide.edge): 0-based input channels.
B2, B3, B4, B8, B11, B12, SLOPE, DEM = 1, 2, 3, 7, 10, 11, 12, 13
RATIOS = {"ndvi": (B8, B4), "nbr": (B8, B12), "ndwi": (B3, B8), "b8_b11_index": (B8, B11)}
AUTHORS_EPS = 1e-8  # the authors' denominator clip
FEATURE_CHANNELS = {"rgb_minmax": 3}  # engineered channels per feature (1 where not listed)
FEATURE_OPTION_DEFAULTS = {"ratio": "floor", "box_blur_size": 10, "median_blur_size": 15}
GRAY_WEIGHTS = {B4: 0.299, B3: 0.587, B2: 0.114}
FLOOR_FRACTION = 0.05  # ratio divisor floor, as a fraction of std(a) + std(b)
SOBEL_X = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], np.float32)


def ratio_floor(band_scale, a, b):
    """The divisor floor of the ratio of bands a and b (0-based): FLOOR_FRACTION of their
    spreads `band_scale[a] + band_scale[b]`."""
    return max(FLOOR_FRACTION * (band_scale[a] + band_scale[b]), 1e-12)


@dataclass
class PatchFolder:
    """The patches of one folder: image files and, where labelled, their masks (same order)."""

    folder: Path
    images: list
    masks: list  # Path per image, or empty when unlabelled

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
            raise DataError(f"{self.folder}: split names patches that are not here: "
                            f"{', '.join(missing[:3])}")
        rows = [index[name] for name in names]
        masks = [self.masks[i] for i in rows] if self.masks else []
        return PatchFolder(self.folder, [self.images[i] for i in rows], masks)


def mask_name(image_name):
    """The mask file name of an image file name: image_7.h5 -> mask_7.h5 (X.h5 -> X.h5)."""
    match = re.match(r"^image_(.+)\.h5$", image_name)
    return f"mask_{match.group(1)}.h5" if match else image_name


def natural_key(path):
    """Sort image_2 before image_10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def labelled_folder(data):
    """The folder of labelled patches: `data/TrainData` or `data` itself (with img/)."""
    data = Path(data)
    if (data / "TrainData" / "img").is_dir():
        return data / "TrainData"
    if (data / "img").is_dir():
        return data
    if not data.exists():
        raise DataError(f"{data}: no such folder")
    raise DataError(f"{data}: no img/ folder (expected TrainData/img/image_N.h5 with "
                    "TrainData/mask/mask_N.h5, or img/ and mask/ directly)")


def index_folder(folder, *, masks=True, patch_size=PATCH_SIZE, check=True):
    """The PatchFolder of a folder holding `img/` (and `mask/` when `masks`), images in natural
    order. With `check`, every file's header is checked (readable HDF5, dataset, shape) but no
    pixel data is read (values are checked when a patch is read). DataError names the file."""
    folder = Path(folder)
    if not (folder / "img").is_dir():
        raise DataError(f"{folder}: no img/ folder")
    images = sorted((folder / "img").glob("*.h5"), key=natural_key)
    if not images:
        raise DataError(f"{folder / 'img'}: no image_*.h5 patches")
    mask_paths = [folder / "mask" / mask_name(path.name) for path in images] if masks else []
    for image, mask in zip(images, mask_paths):
        if not mask.is_file():
            raise DataError(f"{image}: no mask {mask}")
    for key, paths in ((IMAGE_KEY, images), (MASK_KEY, mask_paths)) if check else ():
        for path in paths:
            read_h5(path, key, patch_size, header_only=True)
    return PatchFolder(folder, images, mask_paths)


def image_files(paths):
    """The .h5 files named by `paths` (files, folders of them, folders with img/), natural order."""
    found = []
    for path in map(Path, paths):
        if path.is_file():
            found.append(path)
        elif path.is_dir():
            folder = path / "img" if (path / "img").is_dir() else path
            found.extend(sorted(folder.glob("*.h5"), key=natural_key))
        else:
            raise DataError(f"{path}: no such file or folder")
    if not found:
        raise DataError(f"{', '.join(map(str, paths))}: no .h5 patches")
    return found


def read_h5(path, key, patch_size=PATCH_SIZE, header_only=False):
    """The array of dataset `key` (IMAGE_KEY: (S, S, 14); MASK_KEY: (S, S) or (S, S, 1)) of an
    HDF5 patch, checked to exist, hold numbers and have that shape; None with `header_only`."""
    try:
        handle = h5py.File(path, "r")
    except OSError:
        raise DataError(f"{path}: not a readable HDF5 file") from None
    with handle:
        dataset = handle.get(key)
        if not isinstance(dataset, h5py.Dataset):
            found = ", ".join(sorted(handle.keys())) or "nothing"
            raise DataError(f"{path}: no dataset '{key}' (found: {found})")
        if not np.issubdtype(dataset.dtype, np.number):
            raise DataError(f"{path}: dataset '{key}' holds {dataset.dtype}, expected numbers")
        if np.issubdtype(dataset.dtype, np.complexfloating):  # float32 would drop the imaginary part
            raise DataError(f"{path}: dataset '{key}' holds complex numbers ({dataset.dtype}), "
                            "expected real ones")
        s, shape = patch_size, tuple(dataset.shape)
        if key == MASK_KEY:
            problem = shape not in ((s, s), (s, s, 1)) and f"has shape {shape}, expected ({s}, {s})"
        elif len(shape) != 3:
            problem = f"has shape {shape}, expected {(s, s, NUM_BANDS)}"
        elif shape[2] != NUM_BANDS:
            problem = f"has {shape[2]} bands, expected {NUM_BANDS}"
        else:
            problem = shape[:2] != (s, s) and f"is {shape[0]}x{shape[1]} pixels, expected {s}x{s}"
        if problem:
            raise DataError(f"{path}: '{key}' {problem}")
        return None if header_only else dataset[()]


def write_h5(path, key, array):
    """Write `array` as dataset `key` of a new HDF5 file, atomically and without timestamps (the
    same array gives the same bytes)."""
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w", libver="earliest", track_order=False) as handle:
            handle.create_dataset(key, data=array, track_times=False)


def read_image(path, patch_size=PATCH_SIZE):
    """One image patch: (float32 (S, S, 14) in the file's units with NaNs replaced by NAN_FILL,
    number of NaN values replaced). DataError: unreadable file, wrong key or shape, infinite
    values, or only NaNs."""
    image = np.asarray(read_h5(path, IMAGE_KEY, patch_size), np.float32)
    nan = np.isnan(image)
    if nan.all():
        raise DataError(f"{path}: '{IMAGE_KEY}' is all NaN")
    infinite = int(np.isinf(image).sum())
    if infinite:
        raise DataError(f"{path}: '{IMAGE_KEY}' holds {infinite} infinite values")
    image[nan] = NAN_FILL
    return image, int(nan.sum())


def read_mask(path, patch_size=PATCH_SIZE):
    """One mask patch, uint8 (S, S): 0 no landslide, 1 landslide. DataError: unreadable file,
    wrong key or shape, or other values."""
    mask = np.asarray(read_h5(path, MASK_KEY, patch_size)).reshape(patch_size, patch_size)
    bad = ~np.isin(mask, (0, 1))
    if bad.any():
        values = ", ".join(str(v) for v in np.unique(mask[bad])[:5])
        raise DataError(f"{path}: mask values must be 0 or 1, found {values}")
    return mask.astype(np.uint8)


def contiguous_fold(count, folds, fold):
    """Rows [start, stop) of paper 1's authors' fold `fold` (0-based; their fold fold + 1) of
    `count` naturally sorted patches: fold 0 is the last 1/folds, fold 1 the block before it, ...,
    the last fold the first block; bounds int(count * j / folds) as their code computes them."""
    return count * (folds - fold - 1) // folds, count * (folds - fold) // folds


def make_split(names, *, protocol="kfold", folds=5, fold=0, val_fraction=0.2, seed=0,
               fold_order="random"):
    """{"train": names, "val": names} of labelled patch names: `protocol` "kfold" (the paper:
    fold `fold` of `folds` validates; `fold_order` "random" (seeded) or "contiguous" (blocks of
    the names in natural order, `contiguous_fold`)) or "holdout" (a seeded `val_fraction`)."""
    names = list(names)
    order = np.random.default_rng(seed).permutation(len(names))
    if protocol == "kfold":
        if folds < 2 or not 0 <= fold < folds:
            raise ConfigError("config keys data.folds/data.fold: k-fold split needs folds >= 2 and "
                              f"0 <= fold < folds, got folds={folds}, fold={fold}")
        if len(names) < folds:
            raise DataError(f"{len(names)} labelled patches cannot make {folds} folds")
        if fold_order == "contiguous":
            rank = sorted(range(len(names)), key=lambda i: natural_key(Path(names[i])))
            val_rows = np.array(rank[slice(*contiguous_fold(len(names), folds, fold))])
        elif fold_order == "random":
            val_rows = np.array_split(order, folds)[fold]
        else:
            raise ConfigError("config key 'data.fold_order' must be contiguous or random, "
                              f"got {fold_order!r}")
    elif protocol == "holdout":
        if not 0 < val_fraction < 1:
            raise ConfigError("config key 'data.val_fraction': holdout split needs "
                              f"0 < val_fraction < 1, got {val_fraction}")
        val_rows = order[: min(len(names) - 1, max(1, round(len(names) * val_fraction)))]
    else:
        raise ConfigError(f"config key 'data.split' must be kfold or holdout, got {protocol!r}")
    val = set(val_rows.tolist())
    return {"train": [name for i, name in enumerate(names) if i not in val],
            "val": [names[i] for i in sorted(val)]}


# tf.numpy_function turns the DataError of a bad patch into a TensorFlow error; the reader leaves
# it here so that `reraise_data_errors` raises the one-line DataError itself.
_reader_errors = []


def _read_pair(image_path, mask_path, patch_size):
    size = int(patch_size)
    try:
        image, nan_count = read_image(image_path.decode(), size)
        mask = read_mask(mask_path.decode(), size) if mask_path else np.zeros((size,) * 2, np.uint8)
    except DataError as error:
        _reader_errors.append(error)
        raise
    return image, mask[..., None], np.int32(nan_count)


@contextmanager
def reraise_data_errors():
    """Context manager: a TensorFlow error caused by a bad patch is raised as its DataError."""
    import tensorflow as tf

    _reader_errors.clear()
    try:
        yield
    except tf.errors.OpError:
        if _reader_errors:
            raise _reader_errors.pop() from None
        raise


def dataset_bytes(count, patch_size=PATCH_SIZE):
    """Memory a cached data set of `count` patches takes (float32 image + uint8 mask)."""
    return count * patch_size * patch_size * (NUM_BANDS * 4 + 1)


def should_cache(count, patch_size=PATCH_SIZE, cache="auto", max_fraction=0.5):
    """Whether to cache `count` decoded patches in memory: `cache` "memory", "none" or "auto"
    (when they take under `max_fraction` of the available memory)."""
    if cache not in ("auto", "memory", "none"):
        raise ConfigError(f"config key 'data.cache' must be auto, memory or none, got {cache!r}")
    if cache != "auto":
        return cache == "memory"
    try:
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        available = 2**31
    return dataset_bytes(count, patch_size) < max_fraction * available


def read_dataset(patches, *, patch_size=PATCH_SIZE, shuffle_seed=None, cache=False):
    """Decoded patches of a PatchFolder, read in parallel, as an unbatched tf.data.Dataset of
    (float32 (S, S, 14) raw image with NaNs replaced, uint8 (S, S, 1) mask (zeros when
    unlabelled), int32 NaN count); `cache` keeps them in memory after the first pass;
    `shuffle_seed` shuffles the order each epoch (before reading, when not cached)."""
    import tensorflow as tf

    def read(image_path, mask_path):
        out = tf.numpy_function(_read_pair, [image_path, mask_path, patch_size],
                                [tf.float32, tf.uint8, tf.int32], stateful=False)
        shapes = [(patch_size, patch_size, NUM_BANDS), (patch_size, patch_size, 1), ()]
        return tuple(tf.ensure_shape(tensor, shape) for tensor, shape in zip(out, shapes))

    def decoded(ds):
        return ds.map(read, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

    masks = [str(path) for path in patches.masks] or [""] * len(patches.images)
    ds = tf.data.Dataset.from_tensor_slices(([str(path) for path in patches.images], masks))
    ds = decoded(ds).cache() if cache else ds
    if shuffle_seed is not None:
        ds = ds.shuffle(len(patches.images), seed=shuffle_seed, reshuffle_each_iteration=True)
    return ds if cache else decoded(ds)


def augment(image, mask, seed, *, flips=True, rotation_probability=0.75):
    """The same random flip and rotation of an image (H, W, C) and its mask (H, W, 1): a
    left-right flip with probability 1/2 (`flips`), then k x 90 degrees, k in 1..3, with
    `rotation_probability` (0.75, the default, is k uniform in 0..3: with flips, the 8 symmetries
    of the square); `seed`: stateless, int64 tensor of shape (2,)."""
    import tensorflow as tf

    channels = image.shape[-1]
    both = tf.concat([image, tf.cast(mask, image.dtype)], axis=-1)
    if flips:
        both = tf.image.stateless_random_flip_left_right(both, seed)
    if rotation_probability == 0.75:  # the same distribution as below, in one draw
        turns = tf.random.stateless_uniform([], seed[::-1], 0, 4, dtype=tf.int32)
    else:
        rotate = tf.random.stateless_uniform([], seed[::-1]) < rotation_probability
        turns = tf.where(rotate, tf.random.stateless_uniform([], seed + 1, 1, 4, dtype=tf.int32), 0)
    both = tf.image.rot90(both, turns)
    return both[..., :channels], tf.cast(both[..., channels:], mask.dtype)


def landslide_patches(patches, patch_size=PATCH_SIZE):
    """The patches of a PatchFolder whose mask has a landslide pixel (a PatchFolder)."""
    rows = [i for i, path in enumerate(patches.masks) if read_mask(path, patch_size).any()]
    return PatchFolder(patches.folder, [patches.images[i] for i in rows],
                       [patches.masks[i] for i in rows])


def cutmix(image, mask, seed, donors, cutmix_max, patch_size=PATCH_SIZE):
    """Paper 1's authors' landslide CutMix: 0..cutmix_max times (uniform), the landslide pixels of
    a random donor patch (`donors`: a PatchFolder of patches with landslides) replace those pixels
    of `image` (H, W, 14), and the mask becomes the OR of both; `seed` as in `augment`."""
    import tensorflow as tf

    images = tf.constant([str(path) for path in donors.images])
    masks = tf.constant([str(path) for path in donors.masks])
    pastes = tf.random.stateless_uniform([], seed + 2, 0, cutmix_max + 1, dtype=tf.int32)
    for k in range(cutmix_max):
        pick = tf.random.stateless_uniform([], seed + 3 + k, 0, len(donors.images), dtype=tf.int32)
        donor, donor_mask, _ = tf.numpy_function(_read_pair, [images[pick], masks[pick], patch_size],
                                                 [tf.float32, tf.uint8, tf.int32], stateful=False)
        paste = tf.logical_and(k < pastes, tf.reshape(donor_mask, tf.shape(mask)) > 0)
        image = tf.where(paste, tf.reshape(donor, tf.shape(image)), image)
        mask = tf.where(paste, tf.ones_like(mask), mask)
    return image, mask


def training_dataset(patches, *, batch_size, seed=0, shuffle=True, augment_data=True,
                     cache=False, patch_size=PATCH_SIZE, augment_cfg=None, switch=None):
    """Batched (x, y) for Keras: x raw (B, H, W, 14) float32 (NaNs replaced), y (B, H, W, 1)
    float32; `seed` seeds the shuffle order and the augmentation (both differ each epoch).
    `augment_cfg`: the config's `augment:` section (flips, rotation_probability, cutmix_max;
    default: flips and k x 90 degree rotations); `switch`: a tf.Variable, augmentation applies
    while it is 1 (`AugmentOff` clears it for the last epochs)."""
    import tensorflow as tf

    options = {"flips": True, "rotation_probability": 0.75, "cutmix_max": 0, **(augment_cfg or {})}
    ds = read_dataset(patches, patch_size=patch_size, shuffle_seed=seed if shuffle else None,
                      cache=cache)
    ds = ds.map(lambda image, mask, _: (image, tf.cast(mask, tf.float32)))
    if not augment_data:
        return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)
    cutmix_max = int(options["cutmix_max"])
    donors = landslide_patches(patches, patch_size) if cutmix_max > 0 else None
    cutmix_max = cutmix_max if donors and donors.images else 0

    def augmented(pair, s):
        image, mask = augment(*pair, s, flips=bool(options["flips"]),
                              rotation_probability=float(options["rotation_probability"]))
        if cutmix_max:
            image, mask = cutmix(image, mask, s, donors, cutmix_max, patch_size)
        if switch is None:
            return image, mask
        return tf.cond(switch > 0, lambda: (image, mask), lambda: pair)

    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
    ds = tf.data.Dataset.zip((ds, seeds)).map(augmented, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)
