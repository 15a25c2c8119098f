"""`python -m asc download`: TAU Urban Acoustic Scenes 2022 Mobile, development, from Zenodo.

The record (https://zenodo.org/record/6337421) holds the audio in 21 zip parts plus meta and doc
zips, about 30 GB in all. Each file is fetched resumably and checked against the md5 that Zenodo
publishes (`common.download`), then extracted; the result is one folder holding `meta.csv`,
`audio/` and `evaluation_setup/`, which is what `--data` takes. Running the command again skips
what is already there and resumes a broken download. Without network it fails in one line saying
which files to fetch by hand, from where, and where to unpack them.
"""

from pathlib import Path

from common.download import ZENODO_API, find_data_root
from common.errors import DataError

RECORD = "6337421"
TOP = "TAU-urban-acoustic-scenes-2022-mobile-development"  # the folder the zips unpack into


def find_data_folder(dest):
    """The folder under `dest` (or `dest` itself) that holds meta.csv, audio/ and evaluation_setup/."""
    def is_root(folder):
        return (folder / "meta.csv").is_file() and (folder / "audio").is_dir() and (folder / "evaluation_setup").is_dir()

    return find_data_root(dest, is_root, "TAU 2022 Mobile folder (meta.csv, audio/, evaluation_setup/)")


def download(dest, *, record=RECORD, api=ZENODO_API, quiet=False, say=print):
    """Download, verify (md5) and extract the Zenodo `record` into `dest`; returns the data folder.

    Args:
        dest: str or Path; archives go to `dest/downloads/`, their contents into `dest`.
        record: Zenodo record id (default: TAU Urban Acoustic Scenes 2022 Mobile, development).
        api: Zenodo REST API base URL.

    Returns:
        Path of the folder holding meta.csv, audio/ and evaluation_setup/ (give it as `--data`).
    """
    from common.download import fetch_files, zenodo_files

    dest = Path(dest)
    try:
        files = zenodo_files(record, api=api)
    except DataError as error:
        raise DataError(f"{error}; or download the zip files of https://zenodo.org/record/{record} "
                        f"({TOP}.*.zip) by hand and unpack them into {dest}") from None
    total = sum(f["size"] or 0 for f in files)
    if not quiet:
        say(f"Zenodo record {record}: {len(files)} files, {total / 1e9:.1f} GB -> {dest}")
    fetch_files(files, dest, quiet=quiet)
    return find_data_folder(dest)
