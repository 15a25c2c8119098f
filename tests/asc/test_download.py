"""`python -m asc download` against a local HTTP server on 127.0.0.1 with a fake Zenodo record."""

import hashlib
import json

import pytest

from asc.download import download
from asc.task import AscTask
from common.errors import DataError
from tests.cli_runner import run_in_process
from tests.fake_http import Server, make_zip

TOP = "TAU-urban-acoustic-scenes-2022-mobile-development"
META = "filename\tscene_label\tidentifier\tsource_label\naudio/bus-lyon-1-0-a.wav\tbus\tlyon-1\ta\n"
AUDIO_ZIP = make_zip({f"{TOP}/audio/bus-lyon-1-0-a.wav": b"RIFF" + b"\0" * 400})
META_ZIP = make_zip({
    f"{TOP}/meta.csv": META.encode(),
    f"{TOP}/evaluation_setup/fold1_train.csv": b"filename\tscene_label\naudio/bus-lyon-1-0-a.wav\tbus\n",
})  # fmt: skip


def serve_record(files, md5s=None):
    """A server with a Zenodo record 6337421 listing `files` (name -> bytes) with their md5 (or `md5s`)."""
    server = Server({f"/files/{name}": data for name, data in files.items()})
    md5s = md5s or {name: hashlib.md5(data).hexdigest() for name, data in files.items()}
    entries = [
        {"key": name, "size": len(data), "checksum": f"md5:{md5s[name]}", "links": {"self": f"{server.url}/files/{name}"}}
        for name, data in files.items()
    ]
    server.files["/api/records/6337421"] = json.dumps({"files": entries}).encode()
    return server


def test_download_extracts_the_tau_layout_and_names_the_data_folder(tmp_path, capsys):
    server = serve_record({f"{TOP}.audio.1.zip": AUDIO_ZIP, f"{TOP}.meta.zip": META_ZIP})
    try:
        code, out, _ = run_in_process(AscTask(), ["download", "--dest", tmp_path / "tau", "--api", f"{server.url}/api"], capsys)
        assert code == 0
        data = tmp_path / "tau" / TOP
        assert f"asc: TAU Urban Acoustic Scenes 2022 Mobile is in {data}: 1 clips; use it with --data {data}" in out
        assert (data / "meta.csv").read_text() == META and (data / "audio/bus-lyon-1-0-a.wav").stat().st_size == 404
        sent = server.sent
        assert download(tmp_path / "tau", api=f"{server.url}/api", quiet=True, say=lambda _: None) == data
        assert server.sent - sent == len(server.files["/api/records/6337421"])  # the listing only, no archive
    finally:
        server.close()


def test_corrupted_archive_is_rejected(tmp_path, capsys):
    corrupted = AUDIO_ZIP[:-20] + b"corrupted bytes here"
    server = serve_record({f"{TOP}.audio.1.zip": corrupted}, md5s={f"{TOP}.audio.1.zip": hashlib.md5(AUDIO_ZIP).hexdigest()})
    try:
        code, _, err = run_in_process(AscTask(), ["download", "--dest", tmp_path, "--api", f"{server.url}/api"], capsys)
        assert code == 2
        err = err.strip().splitlines()[-1]  # after the progress line
        assert err.startswith("error: ") and "checksum mismatch" in err
        assert not list((tmp_path / "downloads").glob("*.zip*"))  # neither the archive nor a .part is kept
    finally:
        server.close()


def test_archive_without_the_tau_layout_is_an_error(tmp_path):
    server = serve_record({"other.zip": make_zip({"stuff/meta.csv": b"x", "stuff/audio/a.wav": b"y"})})
    try:
        with pytest.raises(DataError, match=r"no TAU 2022 Mobile folder \(meta.csv, audio/, evaluation_setup/\)"):
            download(tmp_path, api=f"{server.url}/api", quiet=True, say=lambda _: None)
    finally:
        server.close()


def test_unreachable_host_is_one_line_with_the_hand_download_hint(tmp_path, capsys):
    server = serve_record({"x.zip": AUDIO_ZIP})
    url = server.url
    server.close()
    code, _, err = run_in_process(AscTask(), ["download", "--dest", tmp_path / "tau", "--api", f"{url}/api"], capsys)
    err = err.strip()
    assert code == 2 and "cannot reach the host" in err and "\n" not in err
    # which files, from where, and where to put them
    assert f"download the zip files of https://zenodo.org/record/6337421 ({TOP}.*.zip) by hand" in err
    assert err.endswith(f"unpack them into {tmp_path / 'tau'}")
    assert not (tmp_path / "tau").exists()  # nothing left behind
