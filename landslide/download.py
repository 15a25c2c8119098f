"""Fetching Landslide4Sense from Zenodo: `python -m landslide download --dest DIR`.

Record 10463239 (DOI 10.5281/zenodo.10463239): Ghorbanzadeh et al., "The Outcome of the 2022
Landslide4Sense Competition", IEEE TGRS 60, 2022. The record's file list and md5 checksums come
from Zenodo's REST API; every file is downloaded resumably (`DIR/downloads/*.part`, run the
command again after an interruption), verified, and unpacked into DIR (common/download.py).
Then the layout of landslide/data.py is looked for under DIR: the folder holding
`TrainData/img` is the `--data` folder of the other commands. Never imports TensorFlow.
"""

from pathlib import Path

from common.download import ZENODO_API, fetch_files, zenodo_files
from common.download import find_data_root as _find_data_root
from common.errors import DataError
from landslide import data as D

RECORD = "10463239"
DOI = "10.5281/zenodo.10463239"
PARTS = ("TrainData", "ValidData", "TestData")
def find_data_root(dest):
    """The folder under `dest` (or `dest` itself) that holds `TrainData/img` (what `--data` takes)."""
    return _find_data_root(
        dest,
        lambda folder: (folder / "TrainData" / "img").is_dir(),
        "Landslide4Sense layout (TrainData/img/image_N.h5 with TrainData/mask/mask_N.h5)",
    )


def check_layout(root):
    """Check the unpacked data set (every training patch's header) and count the patches.

    Returns:
        dict part name -> number of image_N.h5 files (0 for a part that is missing).
    """
    root = Path(root)
    D.index_folder(root / "TrainData", masks=True)  # DataError naming the first bad file
    return {part: len(list((root / part / "img").glob("*.h5"))) for part in PARTS}


def download(dest, *, record=RECORD, api=ZENODO_API, quiet=False):
    """Download, verify and unpack Landslide4Sense into `dest`; find and check its layout.

    Args:
        dest: str or Path, the target folder (created; archives are kept in dest/downloads/).
        record: Zenodo record id.
        api: Zenodo REST API base URL (a test points it at a local server).
        quiet: no progress lines.

    Returns:
        (data set root Path, dict part -> patch count).

    Raises:
        DataError: host unreachable, checksum mismatch, damaged archive or unknown layout (one line).
    """
    dest = Path(dest)
    try:
        files = zenodo_files(record, api=api)
    except DataError as error:
        raise DataError(f"{error}; or download https://doi.org/{DOI} by hand and unpack it into {dest}") from None
    fetch_files(files, dest, quiet=quiet)
    root = find_data_root(dest)
    return root, check_layout(root)
