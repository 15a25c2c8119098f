"""`python -m asc download`: TAU Urban Acoustic Scenes 2022 Mobile, development, from Zenodo.

The record (https://zenodo.org/record/6337421) holds the audio in 21 zip parts plus meta and doc
zips, about 30 GB in all. Each file is fetched resumably, checked against Zenodo's md5 and
extracted (`common.download`: run the command again to resume); the folder holding `meta.csv`,
`audio/` and `evaluation_setup/` is what `--data` takes. Without network it fails in one line
saying which files to fetch by hand and where to unpack them.
"""

from pathlib import Path

from common.download import ZENODO_API, fetch_files, find_data_root, zenodo_files
from common.errors import DataError

RECORD = "6337421"
TOP = "TAU-urban-acoustic-scenes-2022-mobile-development"  # the folder the zips unpack into


def download(dest, *, record=RECORD, api=ZENODO_API, quiet=False, say=print):
    """Download, verify (md5) and extract the Zenodo `record` into `dest` (archives in
    `dest/downloads/`); returns the folder holding meta.csv, audio/ and evaluation_setup/."""
    dest = Path(dest)
    try:
        files = zenodo_files(record, api=api)
    except DataError as error:
        raise DataError(f"{error}; or download the zip files of https://zenodo.org/record/{record} "
                        f"({TOP}.*.zip) by hand and unpack them into {dest}") from None
    if not quiet:
        say(f"Zenodo record {record}: {len(files)} files, "
            f"{sum(f['size'] or 0 for f in files) / 1e9:.1f} GB -> {dest}")
    fetch_files(files, dest, quiet=quiet)
    return find_data_root(dest, lambda d: (d / "meta.csv").is_file() and (d / "audio").is_dir()
                          and (d / "evaluation_setup").is_dir(),
                          "TAU 2022 Mobile folder (meta.csv, audio/, evaluation_setup/)")
