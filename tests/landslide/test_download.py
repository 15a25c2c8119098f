"""`python -m landslide download` against a fake Zenodo on 127.0.0.1 (never the internet)."""

import hashlib
import io
import json
import zipfile

import pytest

from landslide.download import download, find_data_root
from landslide.sample import write_sample
from landslide.task import LandslideTask
from tests.cli_runner import run_in_process
from tests.fake_http import Server


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    """A zip in the real layout (Landslide4Sense/TrainData/img/image_N.h5, ...) of 4 sample patches."""
    root = tmp_path_factory.mktemp("zip") / "Landslide4Sense"
    write_sample(root, n=4, seed=1, patch_size=128, scene=False)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as handle:
        for path in sorted(root.rglob("*.h5")):
            handle.write(path, path.relative_to(root.parent).as_posix())
    return buffer.getvalue()


def zenodo(files):
    """A fake Zenodo serving `files` (name -> (bytes served, bytes the md5 is of)) as record 7."""
    server = Server({})
    entries = []
    for name, (served, listed) in files.items():
        server.files[f"/files/{name}"] = served
        entries.append({"key": name, "size": len(listed), "checksum": f"md5:{hashlib.md5(listed).hexdigest()}",
                        "links": {"self": f"{server.url}/files/{name}"}})
    server.files["/api/records/7"] = json.dumps({"files": entries}).encode()
    return server


def cli(argv, capsys):
    return run_in_process(LandslideTask(), argv, capsys)


def test_download_unpacks_checks_and_names_the_data_folder(archive, tmp_path, capsys):
    server = zenodo({"Landslide4Sense.zip": (archive, archive)})
    try:
        code, out, _ = cli(["download", "--dest", str(tmp_path / "l4s"), "--record", "7", "--api",
                            f"{server.url}/api", "--quiet"], capsys)
        root = tmp_path / "l4s" / "Landslide4Sense"
        assert code == 0
        assert f"--data {root}" in out and "4 labelled training patches, 2 valid, 2 test" in out
        assert (root / "TrainData" / "mask" / "mask_4.h5").is_file()
        sent = server.sent
        assert download(tmp_path / "l4s", record="7", api=f"{server.url}/api", quiet=True)[0] == root
        assert server.sent - sent == len(server.files["/api/records/7"])  # only the listing: the archive is kept
    finally:
        server.close()


def test_corrupted_archive_is_rejected(archive, tmp_path, capsys):
    damaged = archive[:-200] + b"\0" * 200
    server = zenodo({"Landslide4Sense.zip": (damaged, archive)})
    try:
        code, _, err = cli(["download", "--dest", str(tmp_path), "--record", "7", "--api", f"{server.url}/api",
                            "--quiet"], capsys)
    finally:
        server.close()
    assert code == 2 and err.count("\n") == 1 and "checksum mismatch" in err
    assert not list((tmp_path / "downloads").glob("*.zip*")) and not (tmp_path / "Landslide4Sense").exists()


def test_unknown_layout_and_unreachable_host(tmp_path, capsys):
    other = io.BytesIO()
    with zipfile.ZipFile(other, "w") as handle:
        handle.writestr("images/a.h5", b"not the layout")
    other = other.getvalue()
    server = zenodo({"other.zip": (other, other)})
    api = f"{server.url}/api"
    try:
        code, _, err = cli(["download", "--dest", str(tmp_path / "a"), "--record", "7", "--api", api, "--quiet"],
                           capsys)
        assert code == 2 and "no Landslide4Sense layout" in err and "found: images" in err
    finally:
        server.close()
    code, _, err = cli(["download", "--dest", str(tmp_path / "b"), "--record", "7", "--api", api], capsys)
    assert code == 2 and err.count("\n") == 1 and "cannot reach the host" in err and "zenodo.10463239" in err


def test_find_data_root_accepts_the_folder_itself(tmp_path):
    (tmp_path / "TrainData" / "img").mkdir(parents=True)
    assert find_data_root(tmp_path) == tmp_path
