"""Fetching Landslide4Sense from Zenodo record 10463239: `python -m landslide download --dest DIR`.

The record's files and md5 checksums come from Zenodo's REST API; every file is downloaded
resumably (`DIR/downloads/*.part`: run the command again after an interruption), verified and
unpacked into DIR (common/download.py); the folder under DIR holding `TrainData/img` is the
`--data` folder of the other commands. Never imports TensorFlow.
"""

from pathlib import Path

from common import download as fetch
from common.errors import DataError
from landslide import data as D

RECORD = "10463239"
DOI = "10.5281/zenodo.10463239"
PARTS = ("TrainData", "ValidData", "TestData")


def find_data_root(dest):
    """The folder under `dest` (or `dest` itself) holding `TrainData/img` (what `--data` takes)."""
    return fetch.find_data_root(dest, lambda folder: (folder / "TrainData" / "img").is_dir(),
                                "Landslide4Sense layout (TrainData/img/image_N.h5 with "
                                "TrainData/mask/mask_N.h5)")


def download(dest, *, record=RECORD, api=fetch.ZENODO_API, quiet=False):
    """Download, verify and unpack Landslide4Sense into `dest`, then check every training patch's
    header. Returns (data set root, dict part -> number of image_N.h5 files, 0 for a missing
    part); DataError (one line): unreachable host, checksum mismatch, damaged archive, layout."""
    dest = Path(dest)
    try:
        files = fetch.zenodo_files(record, api=api)
    except DataError as error:
        raise DataError(f"{error}; or download https://doi.org/{DOI} by hand and unpack it into "
                        f"{dest}") from None
    fetch.fetch_files(files, dest, quiet=quiet)
    root = find_data_root(dest)
    D.index_folder(root / "TrainData", masks=True)  # DataError naming the first bad file
    return root, {part: len(list((root / part / "img").glob("*.h5"))) for part in PARTS}
