"""Fetching NWPU-RESISC45: `python -m rsic download --dest DIR`.

Cheng, Han and Lu, "Remote Sensing Image Scene Classification: Benchmark and State of the Art",
Proc. IEEE 105(10), 2017: 45 classes x 700 RGB images of 256x256 pixels. The archive comes from
torchgeo's mirror on Hugging Face, pinned to a commit and checked against its SHA-256 (`--url`
and `--sha256` point elsewhere, e.g. a local copy). It is downloaded resumably
(`DIR/downloads/*.part`: run the command again after an interruption), verified and unpacked into
DIR by common/download.py; then the folder holding the 45 class folders is looked for under DIR:
that is the `--data` folder of the other commands. Never imports TensorFlow.

`python -m rsic download --weights NAME[,NAME...]|all` fills the Keras cache (~/.keras/models)
with the backbones' no-top ImageNet weights (`download_weights`, through rsic.models, which does
import TensorFlow: `keras.utils.get_file` fetches them), for a machine that trains offline later.
"""

from pathlib import Path
from urllib.parse import urlparse

from common.download import fetch_files
from common.download import find_data_root as _find_data_root
from common.errors import DataError
from rsic.data import IMAGE_SUFFIXES
from rsic.sample import class_names

URL = ("https://hf.co/datasets/isaaccorley/resisc45/resolve/883edc0eee77b2c84225472f10f126e3ed83fa6e/"
       "NWPU-RESISC45.zip")
SHA256 = "beeecd0b63656290ae6d65cf7763185b0c1c4c54a753ef8088d6fba3faaf1f53"
HOMEPAGE = "https://gcheng-nwpu.github.io/#Datasets"
NUM_CLASSES = 45


def _class_folders(folder):
    """Names of the NWPU-RESISC45 class folders directly inside `folder`."""
    expected = set(class_names(NUM_CLASSES))
    return {child.name for child in folder.iterdir() if child.is_dir() and child.name in expected}


def find_data_root(dest):
    """The folder under `dest` (or `dest` itself) that holds the 45 class folders (what `--data` takes)."""
    return _find_data_root(
        dest,
        lambda folder: len(_class_folders(folder)) == NUM_CLASSES,
        "NWPU-RESISC45 layout (45 class folders such as airplane/, wetland/)",
    )


def count_images(root):
    """Number of images (by suffix, not decoded: `train` checks every one) under the class folders."""
    return sum(1 for path in Path(root).rglob("*") if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file())


def download(dest, *, url=URL, sha256=SHA256, quiet=False):
    """Download, verify and unpack NWPU-RESISC45 into `dest`; find its class folders.

    Args:
        dest: str or Path, the target folder (created; the archive is kept in dest/downloads/).
        url: archive URL (zip or tar). sha256: its expected hex digest (None: not checked).
        quiet: no progress line.

    Returns:
        (data set root Path, number of class folders, number of images).

    Raises:
        DataError: host unreachable, checksum mismatch, damaged archive or unknown layout (one line).
    """
    dest = Path(dest)
    filename = Path(urlparse(url).path).name or "NWPU-RESISC45.zip"
    try:
        fetch_files([{"url": url, "filename": filename, "sha256": sha256}], dest, quiet=quiet)
    except DataError as error:
        if "cannot reach the host" not in str(error):
            raise
        raise DataError(f"{error}; or get NWPU-RESISC45 from {HOMEPAGE} and unpack it into {dest}") from None
    root = find_data_root(dest)
    return root, NUM_CLASSES, count_images(root)


def weights_backbones(text):
    """Backbone names of `--weights`: "all" (every backbone of rsic.models.BACKBONES) or a comma list.

    Raises:
        ConfigError: an unknown name; the one line lists the known ones.
    """
    from common.errors import ConfigError
    from rsic.models import BACKBONES

    names = [name.strip() for name in str(text).split(",") if name.strip()]
    if [name.lower() for name in names] == ["all"]:
        return list(BACKBONES)
    known = {name.lower(): name for name in BACKBONES}
    unknown = [name for name in names if name.lower() not in known]
    if unknown or not names:
        raise ConfigError(f"--weights: unknown backbone {', '.join(map(repr, unknown)) or repr(text)}; known: "
                          f"all, {', '.join(BACKBONES)}")
    return [known[name.lower()] for name in names]


def download_weights(names, *, alpha=1.0, size=224, log=None):
    """Fetch the no-top ImageNet weights of backbones `names` into the Keras cache (or find them there).

    Args:
        names: backbone names (`weights_backbones`). alpha, size: MobileNet/MobileNetV2 width
            multiplier and input side, which pick their file (other backbones have one file).
        log: callable taking one line (default `common.runner.say`).

    Returns:
        list of the cached file Paths, in the order of `names`.

    Raises:
        DataError: a file cannot be downloaded (one line: file, URL, folder to put it in).
    """
    from common.cli import setup_tensorflow
    from rsic.models import BACKBONES, fetch_imagenet_weights

    setup_tensorflow()
    return [fetch_imagenet_weights(BACKBONES[name], alpha if BACKBONES[name].has_alpha else 1.0, size, log=log)
            for name in names]
