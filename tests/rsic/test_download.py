"""`python -m rsic download` against a local HTTP server on 127.0.0.1 (never the internet)."""

import hashlib
import io
import zipfile

import pytest

from rsic import models
from rsic.download import find_data_root, weights_backbones
from rsic.sample import write_sample
from tests.cli_runner import run_in_process
from tests.fake_http import Server, make_zip
from tests.rsic.conftest import TASK


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    """A zip in the mirror's layout (NWPU-RESISC45/<class>/<name>.jpg): 45 classes x 2 small images."""
    root = write_sample(tmp_path_factory.mktemp("zip") / "NWPU-RESISC45", classes=45, per_class=2, size=16)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as handle:
        for path in sorted(root.rglob("*.jpg")):
            handle.write(path, path.relative_to(root.parent).as_posix())
    return buffer.getvalue()


def cli(argv, capsys):
    return run_in_process(TASK, argv, capsys)


def serve(data):
    server = Server({"/NWPU-RESISC45.zip": data})
    return server, f"{server.url}/NWPU-RESISC45.zip"


def test_download_unpacks_and_names_the_data_folder(archive, tmp_path, capsys):
    server, url = serve(archive)
    try:
        args = ["download", "--dest", tmp_path / "nwpu", "--url", url, "--sha256",
                hashlib.sha256(archive).hexdigest(), "--quiet"]
        code, out, _ = cli(args, capsys)
        root = tmp_path / "nwpu" / "NWPU-RESISC45"
        assert code == 0, out
        assert f"--data {root}" in out and "45 classes, 90 images" in out
        assert (root / "wetland" / "wetland_002.jpg").is_file()
        sent = server.sent
        assert cli(args, capsys)[0] == 0
        assert server.sent == sent  # verified archive kept: nothing downloaded again
    finally:
        server.close()


def test_corrupted_archive_is_rejected(archive, tmp_path, capsys):
    damaged = archive[:-200] + b"\0" * 200
    server, url = serve(damaged)
    try:
        code, _, err = cli(["download", "--dest", tmp_path, "--url", url, "--sha256",
                            hashlib.sha256(archive).hexdigest(), "--quiet"], capsys)
    finally:
        server.close()
    assert code == 2 and err.count("\n") == 1 and "checksum mismatch" in err
    assert not list((tmp_path / "downloads").glob("*.zip*")) and not (tmp_path / "NWPU-RESISC45").exists()


def test_unknown_layout_and_unreachable_host(tmp_path, capsys):
    other = make_zip({"images/a.jpg": b"not the layout"})
    server, url = serve(other)
    try:
        code, _, err = cli(["download", "--dest", tmp_path / "a", "--url", url, "--sha256",
                            hashlib.sha256(other).hexdigest(), "--quiet"], capsys)
        assert code == 2 and "no NWPU-RESISC45 layout" in err and "found: images" in err
    finally:
        server.close()
    code, _, err = cli(["download", "--dest", tmp_path / "b", "--url", url, "--quiet"], capsys)
    assert code == 2 and err.count("\n") == 1 and "cannot reach the host" in err and "NWPU-RESISC45" in err


def test_find_data_root_accepts_the_folder_itself(tmp_path):
    write_sample(tmp_path, classes=45, per_class=2, size=8)
    assert find_data_root(tmp_path) == tmp_path


def test_download_weights_fills_the_keras_cache(tmp_path, monkeypatch, capsys):
    """`download --weights A,B` without --dest: each file lands in the cache, hash-checked; no data set."""
    files = {"/MobileNetV2.h5": b"mobilenet v2 weights" * 100, "/NASNetMobile.h5": b"nasnet weights" * 100}
    server = Server(files)
    monkeypatch.setitem(models.IMAGENET_WEIGHTS, "MobileNetV2", (f"{server.url}/MobileNetV2.h5", None))
    monkeypatch.setitem(models.IMAGENET_WEIGHTS, "NASNetMobile", (
        f"{server.url}/NASNetMobile.h5", hashlib.md5(files["/NASNetMobile.h5"]).hexdigest()))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    monkeypatch.chdir(tmp_path)
    try:
        code, out, err = cli(["download", "--weights", "mobilenetv2,NASNetMobile", "--quiet"], capsys)
        cache = tmp_path / "keras_home" / "models"
        assert code == 0, err
        assert (cache / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5").read_bytes() == \
            files["/MobileNetV2.h5"]
        assert (cache / "nasnet_mobile_no_top.h5").read_bytes() == files["/NASNetMobile.h5"]
        assert f"ImageNet weights of 2 backbone(s) in {cache}" in out and "NWPU-RESISC45" not in out
        assert sorted(p.name for p in tmp_path.iterdir()) == ["keras_home"]  # no data set fetched
        sent = server.sent
        code, out, _ = cli(["download", "--weights", "NASNetMobile", "--alpha", "0.35"], capsys)
        assert code == 0 and server.sent == sent and "using cached ImageNet weights of NASNetMobile" in out
    finally:
        server.close()


def test_download_weights_names_checked(capsys):
    assert weights_backbones("all") == list(models.BACKBONES) and len(weights_backbones("all")) == 13
    code, _, err = cli(["download", "--weights", "MobileNet,ResNet9000"], capsys)
    assert code == 2 and err.count("\n") == 1
    assert "unknown backbone 'ResNet9000'" in err and "known: all, MobileNet, MobileNetV2, NASNetMobile" in err
    code, _, err = cli(["download"], capsys)
    assert code == 2 and err.count("\n") == 1 and "--dest is required" in err
