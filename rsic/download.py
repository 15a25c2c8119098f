"""`python -m rsic download`: NWPU-RESISC45 (rsic/data.py) into `--dest`, ImageNet weights.

The archive comes from torchgeo's mirror on Hugging Face, pinned to a commit and checked against
its SHA-256 (`--url`, `--sha256`: elsewhere, e.g. a local copy); common/download.py fetches it
resumably (run the command again after an interruption) and unpacks it. `--weights` fills the
Keras cache through rsic.models, the only part that imports TensorFlow.
"""

from pathlib import Path
from urllib.parse import urlparse

import common.download
from common.download import fetch_files
from common.errors import ConfigError, DataError
from rsic.data import IMAGE_SUFFIXES
from rsic.sample import class_names

URL = ("https://hf.co/datasets/isaaccorley/resisc45/resolve/"
       "883edc0eee77b2c84225472f10f126e3ed83fa6e/NWPU-RESISC45.zip")
SHA256 = "beeecd0b63656290ae6d65cf7763185b0c1c4c54a753ef8088d6fba3faaf1f53"
HOMEPAGE = "https://gcheng-nwpu.github.io/#Datasets"
NUM_CLASSES = 45


def find_data_root(dest):
    """The folder under `dest` (or `dest` itself) holding the 45 class folders (`--data`)."""
    expected = set(class_names(NUM_CLASSES))
    return common.download.find_data_root(dest, lambda folder: expected <= {p.name for p in folder.iterdir()
                                                             if p.is_dir()},
                           "NWPU-RESISC45 layout (45 class folders such as airplane/, wetland/)")


def download(dest, *, url=URL, sha256=SHA256, quiet=False):
    """Download, verify and unpack NWPU-RESISC45 into `dest` (the archive stays in
    dest/downloads/); returns (data set root, number of classes, number of images)."""
    dest = Path(dest)
    filename = Path(urlparse(url).path).name or "NWPU-RESISC45.zip"
    try:
        fetch_files([{"url": url, "filename": filename, "sha256": sha256}], dest, quiet=quiet)
    except DataError as error:
        if "cannot reach the host" not in str(error):
            raise
        raise DataError(f"{error}; or get NWPU-RESISC45 from {HOMEPAGE} and unpack it into "
                        f"{dest}") from None
    root = find_data_root(dest)
    # Counted by suffix, not decoded (`train` checks every image).
    images = sum(1 for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    return root, NUM_CLASSES, images


def weights_backbones(text):
    """Backbone names of `--weights`: "all" (rsic.models.BACKBONES) or a comma-separated list;
    an unknown name is a ConfigError listing the known ones."""
    from rsic.models import BACKBONES

    names = [name.strip() for name in str(text).split(",") if name.strip()]
    if [name.lower() for name in names] == ["all"]:
        return list(BACKBONES)
    known = {name.lower(): name for name in BACKBONES}
    unknown = [name for name in names if name.lower() not in known]
    if unknown or not names:
        unknown = ", ".join(map(repr, unknown)) or repr(text)
        raise ConfigError(f"--weights: unknown backbone {unknown}; known: all, "
                          + ", ".join(BACKBONES))
    return [known[name.lower()] for name in names]


def download_weights(names, *, alpha=1.0, size=224, log=None):
    """The Keras cache's no-top ImageNet weights files of backbones `names` (fetched when absent;
    `rsic.models.fetch_imagenet_weights`), in that order. `alpha` and `size` pick the
    MobileNet(V2) file; other backbones have one."""
    from common.cli import setup_tensorflow
    from rsic.models import BACKBONES, fetch_imagenet_weights

    setup_tensorflow()
    return [fetch_imagenet_weights(BACKBONES[name], alpha if BACKBONES[name].has_alpha else 1.0,
                                   size, log=log) for name in names]
