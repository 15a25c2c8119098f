"""The downloader against a local HTTP server on 127.0.0.1 (never the internet)."""

import hashlib
import json

import pytest

from common.download import download_file, extract_archive, fetch_files, zenodo_files
from common.errors import DataError
from tests.fake_http import Server, make_zip

ARCHIVE = make_zip({"TrainData/img/image_1.h5": b"x" * 5000, "TrainData/mask/mask_1.h5": b"y" * 3000})


@pytest.fixture
def server():
    md5 = hashlib.md5(ARCHIVE).hexdigest()
    record = {"files": [{"key": "data.zip", "size": len(ARCHIVE), "checksum": f"md5:{md5}", "links": {}}]}
    srv = Server({"/files/data.zip": ARCHIVE, "/bad.zip": ARCHIVE[:-10] + b"corrupted!"})
    record["files"][0]["links"]["self"] = f"{srv.url}/files/data.zip"
    srv.files["/api/records/42"] = json.dumps(record).encode()
    yield srv
    srv.close()


def test_zenodo_record_download_verify_extract(server, tmp_path):
    files = zenodo_files(42, api=f"{server.url}/api")
    assert files == [{"filename": "data.zip", "url": f"{server.url}/files/data.zip", "md5": hashlib.md5(ARCHIVE).hexdigest(), "size": len(ARCHIVE)}]
    fetch_files(files, tmp_path / "L4S", quiet=True)
    assert (tmp_path / "L4S/TrainData/img/image_1.h5").read_bytes() == b"x" * 5000
    sent = server.sent
    fetch_files(files, tmp_path / "L4S", quiet=True)  # second run: nothing downloaded again
    assert server.sent == sent


def test_partial_download_resumes(server, tmp_path):
    dest = tmp_path / "data.zip"
    (tmp_path / "data.zip.part").write_bytes(ARCHIVE[:1000])
    download_file(f"{server.url}/files/data.zip", dest, sha256=hashlib.sha256(ARCHIVE).hexdigest(), quiet=True)
    assert dest.read_bytes() == ARCHIVE
    assert server.sent == len(ARCHIVE) - 1000
    assert not (tmp_path / "data.zip.part").exists()


def test_corrupt_download_is_rejected_and_deleted(server, tmp_path):
    with pytest.raises(DataError, match="bad.zip: checksum mismatch"):
        download_file(f"{server.url}/bad.zip", tmp_path / "bad.zip", md5=hashlib.md5(ARCHIVE).hexdigest(), quiet=True)
    assert list(tmp_path.iterdir()) == []


def test_unreachable_host_and_missing_file(server, tmp_path):
    server_url = server.url
    with pytest.raises(DataError, match="HTTP 404"):
        download_file(f"{server_url}/nope.zip", tmp_path / "nope.zip", quiet=True)
    server.close()
    with pytest.raises(DataError, match="cannot reach the host"):
        download_file(f"{server_url}/files/data.zip", tmp_path / "x.zip", quiet=True)


def test_archive_escaping_its_folder_is_refused(tmp_path):
    evil = tmp_path / "evil.zip"
    evil.write_bytes(make_zip({"../outside.txt": b"no"}))
    with pytest.raises(DataError, match="outside"):
        extract_archive(evil, tmp_path / "out")
    assert not (tmp_path / "outside.txt").exists()
    (tmp_path / "junk.zip").write_bytes(b"not an archive")
    with pytest.raises(DataError, match="not a zip or tar archive"):
        extract_archive(tmp_path / "junk.zip", tmp_path / "out")


def test_a_failed_first_download_leaves_no_empty_folders(tmp_path):
    from common.download import fetch_files
    from common.errors import DataError

    dest = tmp_path / "data"
    with pytest.raises(DataError):
        fetch_files([{"url": "http://127.0.0.1:9/missing.zip", "filename": "missing.zip"}], dest, quiet=True)
    assert not dest.exists()
