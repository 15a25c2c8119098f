"""Downloads and archives that try to write outside their folder (issue 22, items 4 and 5).

Every malicious listing and archive is built here, in memory; the listing is served from
127.0.0.1 (tests/fake_http.py), never the internet. No assertion needs root: a device or FIFO
member is only a tar header, refused before anything is extracted.
"""

import hashlib
import io
import json
import stat
import tarfile
import zipfile

import pytest

from common.download import extract_archive, fetch_files, name_problem, zenodo_files
from common.errors import DataError
from tests.cli_runner import run_in_process
from tests.fake_http import Server, make_zip

PAYLOAD = make_zip({"TrainData/img/image_1.h5": b"x" * 100})


def _record(server, names):
    """A Zenodo record listing `names`, each served as PAYLOAD with its md5; counts from 0."""
    server.sent = 0
    md5 = hashlib.md5(PAYLOAD).hexdigest()
    server.files["/files/data.zip"] = PAYLOAD
    files = [{"key": name, "size": len(PAYLOAD), "checksum": f"md5:{md5}",
              "links": {"self": f"{server.url}/files/data.zip"}} for name in names]
    server.files["/api/records/9"] = json.dumps({"files": files}).encode()


@pytest.fixture(scope="module")
def server():  # one for the module: stopping a server takes 0.5 s
    srv = Server({})
    yield srv
    srv.close()


@pytest.mark.parametrize("name, problem", [
    ("../x.zip", "climbs out of the destination with '..'"),
    ("/tmp/x.zip", "is an absolute path"),
    ("C:x.zip", "starts with a drive letter"),
    ("..\\x.zip", "climbs out of the destination with '..'"),
    ("", "is empty"),
])
def test_listing_names_that_leave_the_destination_are_refused(server, tmp_path, name, problem):
    _record(server, ["data.zip", name])
    with pytest.raises(DataError) as refused:
        zenodo_files(9, api=f"{server.url}/api")
    assert str(refused.value) == (f"{server.url}/api/records/9: listed file name {name!r} {problem}; "
                                  "nothing was downloaded")
    listing_bytes = server.sent
    # fetch_files checks names of any list (rsic's URL-derived name, a task's own list) the same way.
    files = [{"url": f"{server.url}/files/data.zip", "filename": "data.zip"},
             {"url": f"{server.url}/files/data.zip", "filename": name}]
    with pytest.raises(DataError) as refused:
        fetch_files(files, tmp_path / "dest", quiet=True)
    assert str(refused.value).startswith(f"{server.url}/files/data.zip: file name {name!r} ")
    assert server.sent == listing_bytes and sorted(tmp_path.iterdir()) == []


def test_download_command_names_the_bad_listing_entry_and_exits_2(server, tmp_path, capsys):
    from landslide.task import LandslideTask

    _record(server, ["../../escaped.zip"])
    code, _, err = run_in_process(LandslideTask(), ["download", "--dest", tmp_path / "l4s", "--record", "9",
                                                    "--api", f"{server.url}/api", "--quiet"], capsys)
    assert code == 2
    assert err.strip().splitlines() == [
        f"error: {server.url}/api/records/9: listed file name '../../escaped.zip' climbs out of the "
        "destination with '..'; nothing was downloaded; or download "
        f"https://doi.org/10.5281/zenodo.10463239 by hand and unpack it into {tmp_path / 'l4s'}"]
    assert server.sent == len(server.files["/api/records/9"]) and list(tmp_path.rglob("*")) == []


def test_a_name_through_a_symlink_in_the_destination_is_refused(tmp_path):
    root = tmp_path / "dest"
    root.mkdir()
    (root / "link").symlink_to(tmp_path)  # a link already there, pointing out of dest
    assert name_problem("link/x.h5", root.resolve()) == f"would be written outside {root.resolve()}"
    assert name_problem("sub/x.h5", root.resolve()) is None


def _tar(tmp_path, members):
    """A .tar.gz of `members`: (TarInfo, bytes or None)."""
    path = tmp_path / "evil.tar.gz"
    with tarfile.open(path, "w:gz") as archive:
        for info, data in members:
            info.size = len(data or b"")
            archive.addfile(info, io.BytesIO(data) if data else None)
    return path


def _info(name, kind=tarfile.REGTYPE, mode=0o644, linkname=""):
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.linkname = kind, mode, linkname
    return info


@pytest.mark.parametrize("member, problem", [
    (_info("data/fifo", tarfile.FIFOTYPE), "is refused by the tar 'data' filter (SpecialFileError)"),
    (_info("data/tty", tarfile.CHRTYPE), "is refused by the tar 'data' filter (SpecialFileError)"),
    (_info("data/disk", tarfile.BLKTYPE), "is refused by the tar 'data' filter (SpecialFileError)"),
    (_info("../evil"), "climbs out of the destination with '..'"),
    (_info("/tmp/evil"), "is an absolute path"),
    (_info("data/etc", tarfile.SYMTYPE, linkname="/etc"), "is a link to '/etc'"),
    (_info("data/up", tarfile.SYMTYPE, linkname="../../.."), "is a link to '../../..'"),
    (_info("data/hard", tarfile.LNKTYPE, linkname="/etc/passwd"), "is a link to '/etc/passwd'"),
])
def test_tar_members_that_are_not_plain_data_are_refused_before_extracting(tmp_path, member, problem):
    # A good member first: it must not be extracted either (all members are checked first).
    archive = _tar(tmp_path, [(_info("data/good.txt"), b"good"), (member, b"" if member.isreg() else None)])
    with pytest.raises(DataError) as refused:
        extract_archive(archive, tmp_path / "out")
    assert str(refused.value) == f"{archive}: archive member {member.name!r} {problem}; nothing was extracted"
    assert list((tmp_path / "out").iterdir()) == []
    assert not (tmp_path / "evil").exists()


def test_tar_extraction_drops_setuid_and_keeps_dot_slash_members(tmp_path):
    archive = _tar(tmp_path, [(_info(".", tarfile.DIRTYPE, 0o755), None),
                              (_info("./bin/tool", mode=0o6755), b"#!/bin/sh\n")])
    extract_archive(archive, tmp_path / "out")
    mode = (tmp_path / "out/bin/tool").stat().st_mode
    assert (tmp_path / "out/bin/tool").read_bytes() == b"#!/bin/sh\n"
    assert not mode & (stat.S_ISUID | stat.S_ISGID) and mode & 0o700 == 0o700


def _zip(tmp_path, name, data=b"x", unix_mode=None):
    path = tmp_path / "evil.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("good.txt", b"good")
        info = zipfile.ZipInfo(name)
        if unix_mode is not None:
            info.external_attr = unix_mode << 16
        archive.writestr(info, data)
    return path


@pytest.mark.parametrize("name, unix_mode, problem", [
    ("../evil", None, "climbs out of the destination with '..'"),
    ("a/../../evil", None, "climbs out of the destination with '..'"),
    ("/etc/evil", None, "is an absolute path"),
    ("C:/evil", None, "starts with a drive letter"),
    ("etc", stat.S_IFLNK | 0o777, "is a symbolic link"),
    ("fifo", stat.S_IFIFO | 0o644, "is a special file (device, FIFO or socket)"),
])
def test_zip_members_that_escape_or_are_links_are_refused(tmp_path, name, unix_mode, problem):
    archive = _zip(tmp_path, name, b"/etc" if unix_mode else b"x", unix_mode)
    with pytest.raises(DataError) as refused:
        extract_archive(archive, tmp_path / "out")
    assert str(refused.value) == f"{archive}: archive member {name!r} {problem}; nothing was extracted"
    assert list((tmp_path / "out").iterdir()) == []


def test_plain_zip_still_extracts(tmp_path):
    archive = _zip(tmp_path, "sub/file.bin", b"payload", stat.S_IFREG | 0o644)
    extract_archive(archive, tmp_path / "out")
    assert (tmp_path / "out/sub/file.bin").read_bytes() == b"payload"
    assert (tmp_path / "out/good.txt").read_bytes() == b"good"
