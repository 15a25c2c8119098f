"""Fetching the public data sets: resumable HTTP downloads, checksums, safe extraction.

Only the explicit `download` commands use the network; nothing else in the project does.

- `download_file(url, dest, md5=..., sha256=...)` resumes a partial download (`dest.part`, HTTP
  Range requests), verifies the checksum and only then renames the file to `dest`.
- `zenodo_files(record)` lists a Zenodo record's files with their md5 checksums, as Zenodo's REST
  API publishes them, so checksums always come from the host.
- `extract_archive(path, dest)` unpacks zip and tar archives after checking every member: a name
  that is empty, absolute, starts with a drive letter, climbs out with `..` or resolves outside
  `dest` is refused, and so are links and special files (devices, FIFOs); tar members go through
  Python's `data` extraction filter (which also drops setuid/setgid bits).
- File names from a listing (a Zenodo record, a task's file list) pass the same name check before
  anything is downloaded (`destination_path`).
- `fetch_files(files, dest)` does all three for a list of files.

Every failure is a `DataError` with one line: the URL or file and the problem (for an unreachable
host, also what to do instead).
"""

import hashlib
import json
import re
import shutil
import stat
import sys
import tarfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from common.errors import DataError

ZENODO_API = "https://zenodo.org/api"
CHUNK_BYTES = 1 << 20


def download_file(url, dest, *, md5=None, sha256=None, timeout=60, quiet=False):
    """Download `url` to `dest`, resuming `dest.part` if present, and verify its checksum.

    Args:
        url: http(s) URL.
        dest: final path; it appears only once the whole file is there and verified.
        md5, sha256: expected hex digests (either or both; at least one is recommended).
        timeout: seconds to wait for the server.
        quiet: no progress line.

    Returns:
        dest as a Path. A file already at `dest` with the right checksum is kept as is.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.is_file() and checksum_ok(dest, md5, sha256):
        return dest
    part = dest.with_name(dest.name + ".part")
    offset = part.stat().st_size if part.is_file() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        if error.code == 416 and offset:  # the .part is already complete
            response = None
        else:
            raise DataError(f"{url}: the server answered HTTP {error.code} ({error.reason})") from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise DataError(
            f"{url}: cannot reach the host ({reason}); check the network, or download the file by hand into {dest.parent}"
        ) from None
    if response is not None:
        with response:
            resumed = offset and response.status == 206
            total = _total_size(response, offset if resumed else 0)
            with open(part, "ab" if resumed else "wb") as handle:
                done = offset if resumed else 0
                while chunk := response.read(CHUNK_BYTES):
                    handle.write(chunk)
                    done += len(chunk)
                    if not quiet:
                        _progress(dest.name, done, total)
        if not quiet:
            print(file=sys.stderr)
    if not checksum_ok(part, md5, sha256):
        part.unlink()
        raise DataError(f"{url}: checksum mismatch, the download is corrupt and was deleted; run the command again")
    part.replace(dest)
    return dest


def zenodo_files(record, api=ZENODO_API, timeout=60):
    """The files of a Zenodo record: list of dicts with `filename`, `url`, `md5`, `size`."""
    url = f"{api.rstrip('/')}/records/{record}"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            listing = json.load(response)
    except urllib.error.HTTPError as error:
        raise DataError(f"{url}: the server answered HTTP {error.code} ({error.reason})") from None
    except (urllib.error.URLError, OSError) as error:
        raise DataError(f"{url}: cannot reach the host ({getattr(error, 'reason', error)}); check the network") from None
    except json.JSONDecodeError:
        raise DataError(f"{url}: the answer is not the JSON record listing expected from Zenodo") from None
    files = []
    for entry in listing.get("files", []):
        algorithm, _, digest = entry.get("checksum", "").partition(":")
        name = entry.get("key", "")
        problem = name_problem(name)
        if problem:
            raise DataError(f"{url}: listed file name {name!r} {problem}; nothing was downloaded")
        files.append(
            {
                "filename": name,
                "url": (entry.get("links") or {}).get("self") or (entry.get("links") or {}).get("content"),
                "md5": digest if algorithm == "md5" else None,
                "size": entry.get("size"),
            }
        )
    if not files:
        raise DataError(f"{url}: the record lists no files")
    return files


def extract_archive(path, dest):
    """Unpack a .zip, .tar, .tar.gz or .tgz archive into `dest` (created if needed).

    Every member is checked before anything is written (`name_problem`; no links, devices or
    FIFOs); tar members are extracted through Python's `data` filter. A refused member is a
    DataError naming the archive and the member, and nothing of the archive is extracted.
    """
    path, dest = Path(path), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    root = dest.resolve()
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                for info in archive.infolist():
                    _refuse_member(path, info.filename, name_problem(info.filename, root)
                                   or _zip_type_problem(info))
                archive.extractall(dest)
        elif tarfile.is_tarfile(path):
            with tarfile.open(path) as archive:
                members = archive.getmembers()
                for member in members:
                    _refuse_member(path, member.name, name_problem(member.name, root)
                                   or _tar_type_problem(member, root))
                archive.extractall(dest, members=members, filter="data")
        else:
            raise DataError(f"{path}: not a zip or tar archive")
    except (zipfile.BadZipFile, tarfile.TarError, EOFError) as error:
        raise DataError(f"{path}: damaged archive ({error})") from None
    return dest


def name_problem(name, root=None):
    """What is wrong with a file name from a listing or an archive, or None when it is safe.

    A safe name is a non-empty relative path without `..`, a drive letter or a NUL byte
    (backslashes count as separators, as on Windows); with `root` (an absolute, resolved folder)
    it must also resolve, symbolic links already in `root` followed, to a path inside `root`.
    """
    if not isinstance(name, str) or not name.strip():
        return "is empty"
    if "\0" in name:
        return "holds a NUL byte"
    if re.match(r"[A-Za-z]:", name):
        return "starts with a drive letter"
    posix = name.replace("\\", "/")
    if posix.startswith("/"):
        return "is an absolute path"
    if ".." in posix.split("/"):
        return "climbs out of the destination with '..'"
    if root is not None:
        target = (Path(root) / posix).resolve()
        if target != root and root not in target.parents:
            return f"would be written outside {root}"
    return None


def destination_path(dest, name, source):
    """`dest / name` for a file name `name` that came from `source` (a listing URL, an archive),
    after `name_problem`; a DataError naming the name otherwise."""
    root = Path(dest).resolve()
    problem = name_problem(name, root) or (
        None if Path(str(name).replace("\\", "/")).name not in ("", ".") else "names no file")
    if problem:
        raise DataError(f"{source}: file name {name!r} {problem}; nothing was downloaded")
    return Path(dest) / name


def _refuse_member(archive, name, problem):
    if problem:
        raise DataError(f"{archive}: archive member {name!r} {problem}; nothing was extracted")


def _zip_type_problem(info):
    """Zip members keep their Unix file type in the high bits of `external_attr`; only plain
    files and folders are extracted (zipfile would write a link as a file holding its target)."""
    kind = stat.S_IFMT(info.external_attr >> 16)  # 0: no Unix type recorded (DOS, Python's writestr)
    if kind == stat.S_IFLNK:
        return "is a symbolic link"
    if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
        return "is a special file (device, FIFO or socket)"
    return None


def _tar_type_problem(member, root):
    """Links of any kind are refused (no data set needs them); everything else must pass the
    `data` filter: no devices or FIFOs, nothing absolute or outside `root`."""
    if member.issym() or member.islnk():
        return f"is a link to {member.linkname!r}"
    try:
        tarfile.data_filter(member, str(root))
    except tarfile.FilterError as error:
        return f"is refused by the tar 'data' filter ({type(error).__name__})"
    return None


def fetch_files(files, dest, *, extract=True, quiet=False):
    """Download (resumably, verified) and optionally extract each file into `dest`.

    Args:
        files: list of dicts with `url`, `filename` and optional `md5` / `sha256`.
        dest: target folder; archives go to `dest/downloads/` and are unpacked into `dest`.
    """
    dest = Path(dest)
    downloads = dest / "downloads"
    # Every name is checked before the first byte is fetched: a listing is all good or refused.
    targets = [destination_path(downloads, entry.get("filename", ""), entry.get("url") or "the file list")
               for entry in files]
    seen = {}
    for entry, target in zip(files, targets):
        if target.name in seen:
            raise DataError(f"{entry.get('url')}: file name {entry['filename']!r} is listed twice "
                            f"(also for {seen[target.name]}); nothing was downloaded")
        seen[target.name] = entry.get("url")
    created = [folder for folder in (dest, downloads) if not folder.exists()]
    for entry, target in zip(files, targets):
        try:
            target = download_file(entry["url"], target, md5=entry.get("md5"),
                                   sha256=entry.get("sha256"), quiet=quiet)
        except BaseException:
            # A failed first attempt leaves no empty folders behind (a partial file stays, to resume).
            for folder in reversed(created):
                if folder.is_dir() and not any(folder.iterdir()):
                    folder.rmdir()
            raise
        if extract and _is_archive(target):
            marker = downloads / f".{target.name}.extracted"
            if not marker.is_file():
                extract_archive(target, dest)
                marker.write_text("done\n")
        elif not _is_archive(target):
            shutil.copy2(target, dest / target.name)
    return dest


def find_data_root(dest, is_root, layout, max_depth=3):
    """The shallowest folder under `dest` (or `dest` itself) for which `is_root(folder)` holds.

    Archives often unpack into a folder of their own (DEST/NWPU-RESISC45/airplane/...), so the
    data set root is searched for up to `max_depth` levels down, skipping `downloads/`.

    Args:
        dest: the download folder.
        is_root: callable(Path) -> bool, whether a folder is the data set root.
        layout: words for the error message, e.g. "TrainData/img with TrainData/mask".

    Returns:
        Path of the data set root (what the task's `--data` takes).

    Raises:
        DataError: no such folder, naming what is in `dest` instead.
    """
    dest = Path(dest)
    level = [dest] if dest.is_dir() else []
    for _ in range(max_depth + 1):
        found = sorted(folder for folder in level if is_root(folder))
        if found:
            return found[0]
        level = sorted(child for folder in level for child in folder.iterdir() if child.is_dir() and child.name != "downloads")
    present = ", ".join(sorted(p.name for p in dest.iterdir() if p.name != "downloads")) if dest.is_dir() else ""
    raise DataError(
        f"{dest}: no {layout} after unpacking (found: {present or 'nothing'}); "
        "the download may be incomplete (run the command again) or not this data set"
    )


def _is_archive(path):
    name = path.name.lower()
    return name.endswith((".zip", ".tar", ".tar.gz", ".tgz"))


def checksum_ok(path, md5=None, sha256=None):
    """Whether the file at `path` has these hex digests (True when neither is given)."""
    if md5 is None and sha256 is None:
        return True
    digests = {"md5": hashlib.md5(), "sha256": hashlib.sha256()}
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            for digest in digests.values():
                digest.update(chunk)
    return (md5 is None or digests["md5"].hexdigest() == md5.lower()) and (
        sha256 is None or digests["sha256"].hexdigest() == sha256.lower()
    )


def _total_size(response, offset):
    length = response.headers.get("Content-Length")
    return int(length) + offset if length and length.isdigit() else None


def _progress(name, done, total):
    if total:
        print(f"\r{name}: {done / 1e6:.1f} / {total / 1e6:.1f} MB ({done / total:.0%})", end="", file=sys.stderr)
    else:
        print(f"\r{name}: {done / 1e6:.1f} MB", end="", file=sys.stderr)
