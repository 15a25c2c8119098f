"""Folder-per-class scene images (NWPU-RESISC45 layout): listing, validation, splits.

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
  to the model's input size. Greyscale, CMYK and RGBA/palette images are converted to RGB (the
  alpha channel is dropped) and a log line says how many. The decoder follows the file's content,
  not its name (a TIFF named .png is decoded as a TIFF). Other files in a class folder are ignored.
- NWPU-RESISC45 (Cheng et al., "Remote Sensing Image Scene Classification: Benchmark and State of
  the Art", Proc. IEEE 2017): 31,500 RGB images of 256x256 pixels, 45 classes x 700 images,
  0.2-30 m per pixel. `python -m rsic download --dest DIR` fetches it (rsic/download.py) and
  prints the folder that holds the 45 class folders: that is `--data`.
- Protocols of the papers: 10% or 20% of every class for training, the rest for testing
  (`data.train_ratio`). A split can also be given as a JSON file (`data.split_file`) with lists
  `train`, `test` and optionally `val` of paths relative to the root (`class/name.jpg`); the split
  used is always written to the run directory as `split.json` in that same format.

Every image is decoded once with PIL before training, so that a broken file is reported by name
as a `DataError`, never from inside TensorFlow; `skip_bad=True` (`--skip-bad`) skips such files
and says so. No TensorFlow here (the edge path uses it); the tf.data pipeline is rsic/features.py.
"""

import json
import warnings
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.errors import DataError
from common.predictions import unique_files

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff")
# PIL modes convertible to RGB (CMYK: JPEGs from print workflows; TensorFlow's JPEG decoder and
# PIL both convert them).
_MODES = ("RGB", "L", "LA", "RGBA", "P", "PA", "I;16", "I", "1", "CMYK")
# The signatures by which tf.io.decode_image recognises a file (its content, never its name):
# JPEG, PNG, GIF, BMP. Anything else (TIFF, WebP, ... even when named .png) is decoded by PIL.
_TF_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG", b"GIF8", b"BM")


@dataclass
class ImageFolder:
    """A listed and validated image folder: `files` (Paths of every usable image), `labels`
    (int64 (N,) class ids), `class_names` (sorted; index = class id) under `root`."""

    root: Path
    class_names: list
    files: list
    labels: np.ndarray

    def relative(self, indices=None):
        """Posix paths relative to the root (`class/name.jpg`) of the files at `indices`."""
        indices = range(len(self.files)) if indices is None else indices
        return [self.files[i].relative_to(self.root).as_posix() for i in indices]


def _one_line(error):
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def load_rgb(path):
    """The image at `path` as an RGB PIL image (grey replicated, alpha dropped)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except Exception as error:  # PIL raises many types for a broken file
        raise DataError(f"{path}: unreadable or truncated image ({_one_line(error)})") from None


def check_image(path):
    """Open and fully decode one image with PIL; returns its mode ("RGB", "L", "RGBA", ...).

    Raises:
        DataError: the file cannot be read, is truncated, or is not an image of 1, 3 or 4 channels.
    """
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as image:
                image.verify()  # header and structure, cheap
            with Image.open(path) as image:
                image.load()  # a full decode catches truncated data that verify() misses
                mode, size = image.mode, image.size
    except Exception as error:  # PIL raises many types for a broken file
        raise DataError(f"{path}: unreadable or truncated image ({_one_line(error)})") from None
    if min(size) < 1:
        raise DataError(f"{path}: image has no pixels")
    if mode not in _MODES:
        raise DataError(f"{path}: image mode {mode} cannot be converted to RGB")
    return mode


def tf_decodable(path):
    """Whether TensorFlow's `decode_image` reads the image at `path`, judged by its first bytes as
    TensorFlow judges it (a TIFF named .png is not); the training pipeline decodes the others
    with PIL (rsic/features.py)."""
    with open(path, "rb") as handle:
        return handle.read(4).startswith(_TF_SIGNATURES)


def _check_or_error(path):
    try:
        return check_image(path)
    except DataError as error:
        return error


def check_images(files, skip_bad, workers=4):
    """{index: PIL mode} of the readable `files` (`check_image`, in threads: PIL releases the
    GIL). An unreadable file is left out under `skip_bad`, else its DataError is raised."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(_check_or_error, files))
    errors = [result for result in results if isinstance(result, DataError)]
    if errors and not skip_bad:
        raise errors[0]
    return {i: mode for i, mode in enumerate(results) if not isinstance(mode, DataError)}


def scan_image_folder(root, *, skip_bad=False, log=print):
    """The ImageFolder of a folder-per-class data set (the module docstring), every image
    checked; `skip_bad` skips unreadable ones (listed in a `log` line) instead of raising.

    Raises:
        DataError: missing folder, fewer than two classes, a class folder without images, or an
            unreadable image (unless `skip_bad`).
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: data folder not found")
    class_names = sorted(p.name for p in root.iterdir()
                         if p.is_dir() and not p.name.startswith("."))
    if not class_names:
        raise DataError(f"{root}: no class folders; expected <root>/<class>/<image>.jpg")
    if len(class_names) < 2:
        raise DataError(f"{root}: only one class folder ({class_names[0]}); "
                        "a classifier needs at least 2")
    files, labels = [], []
    for index, name in enumerate(class_names):
        images = sorted(p for p in (root / name).iterdir() if p.is_file()
                        and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
        if not images:
            raise DataError(f"{root / name}: class '{name}' has no images "
                            f"({', '.join(IMAGE_SUFFIXES)})")
        files += images
        labels += [index] * len(images)

    modes = check_images(files, skip_bad)
    skipped = [str(path) for i, path in enumerate(files) if i not in modes]
    if skipped:
        log(f"skipped {len(skipped)} unreadable image(s) (--skip-bad): "
            + ", ".join(skipped[:5]) + (" ..." if len(skipped) > 5 else ""))
    converted = sorted(Counter(mode for mode in modes.values() if mode != "RGB").items())
    if converted:
        log("converting to RGB: " + ", ".join(f"{n} {mode} image(s)" for mode, n in converted)
            + " (alpha dropped, grey replicated)")
    labels = np.asarray(labels, np.int64)[list(modes)]
    for index, name in enumerate(class_names):
        if not np.any(labels == index):
            raise DataError(f"{root / name}: class '{name}' has no readable images")
    return ImageFolder(root, class_names, [files[i] for i in modes], labels)


def make_split(labels, train_ratio, *, val_ratio=0.0, seed=0, class_names=None, root=None):
    """A stratified, seeded split of `labels` (N,): sorted index arrays "train", "val", "test".

    Per class, a share `train_ratio` in (0, 1) of the images trains (papers: 0.1, 0.2), of which
    a share `val_ratio` in [0, 1) is held out as "val"; the rest tests. Every class keeps at least
    one training and one test image. `class_names` and `root` name a class in messages.
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
            name = class_names[label] if class_names is not None else f"class {label}"
            where = f"{Path(root) / name}: " if root is not None and class_names is not None else ""
            raise DataError(f"{where}class '{name}' has {len(members)} image; "
                            "a split needs at least 2 per class")
        n_train = int(np.clip(round(train_ratio * len(members)), 1, len(members) - 1))
        n_val = min(int(round(val_ratio * n_train)), n_train - 1)
        parts["val"].extend(members[:n_val])
        parts["train"].extend(members[n_val:n_train])
        parts["test"].extend(members[n_train:])
    return {name: np.sort(np.asarray(idx, np.int64)) for name, idx in parts.items()}


def split_from_ids(folder, ids, source):
    """Index arrays into `folder.files` of root-relative paths (`class/name.jpg`) per split name
    (always with a "val" entry, empty when `ids` has none); `source` names the file in messages."""
    index = {name: i for i, name in enumerate(folder.relative())}
    parts = {}
    for name, entries in ids.items():
        missing = [e for e in entries or [] if e not in index]
        if missing:
            raise DataError(f"{source}: '{missing[0]}' in '{name}' is not an image of "
                            f"{folder.root}")
        parts[name] = np.asarray(sorted(index[e] for e in entries or []), np.int64)
    parts.setdefault("val", np.zeros(0, np.int64))
    return parts


def read_split_file(path, folder):
    """Index arrays "train", "val", "test" into `folder.files` from a split JSON (lists `train`,
    `test`, optional `val` of root-relative paths), e.g. a run's split.json."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: split file not found")
    try:
        content = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: not valid JSON ({_one_line(error)})") from None
    if not isinstance(content, dict) or "train" not in content or "test" not in content:
        raise DataError(f"{path}: split file needs lists 'train' and 'test'")
    parts = split_from_ids(folder, {name: content.get(name) for name in ("train", "val", "test")},
                           path)
    if len(parts["train"]) == 0 or len(parts["test"]) == 0:
        raise DataError(f"{path}: 'train' and 'test' must not be empty")
    return parts


def collect_images(inputs, *, skip_bad=False, log=print):
    """The readable image files of a list of files and folders (searched recursively, sorted
    within each folder), in the order given."""
    files = []
    for path in map(Path, inputs):
        if path.is_dir():
            found = sorted(p for p in path.rglob("*")
                           if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise DataError(f"{path}: folder has no images ({', '.join(IMAGE_SUFFIXES)})")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise DataError(f"{path}: no such file or folder")
    files = unique_files(files)  # a folder and a file in it: predicted once
    modes = check_images(files, skip_bad)
    for path in (path for i, path in enumerate(files) if i not in modes):
        log(f"skipping unreadable image {path} (--skip-bad)")
    usable = [files[i] for i in modes]
    if not usable:
        raise DataError("no readable images to predict")
    return usable
