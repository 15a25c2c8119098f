"""Bad input at the command line, all tasks: one line naming the file or key, exit code 2,
and no partial output left behind. Plus a property-based test: random bytes fed to each loader
never raise anything but the project's own error type."""

import importlib
import shutil
import wave

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.errors import ProjectError
from common.task import task_by_name
from tests.cli_runner import run_in_process

TINY_LANDSLIDE = "configs/landslide/tiny.yaml"


def cli(task, argv, capsys):
    """Run `python -m TASK argv` in-process; return (exit code, stderr)."""
    code, _, err = run_in_process(task_by_name(task), argv, capsys)
    return code, err


def assert_one_line_error(code, err, *fragments):
    assert code == 2, err
    lines = [line for line in err.strip().splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert "Traceback" not in err


# --------------------------------------------------------------------------- landslide


@pytest.fixture(scope="module")
def landslide_sample(tmp_path_factory):
    from landslide.sample import write_sample

    root = tmp_path_factory.mktemp("l4s_bad") / "clean"
    write_sample(root, n=8, seed=0, scene=False)  # the scene is not what these tests break
    return root


def _h5(path, key, array):
    path.unlink(missing_ok=True)
    with h5py.File(path, "w") as handle:
        handle.create_dataset(key, data=array)


def _truncate(path):
    path.write_bytes(path.read_bytes()[:100])


def _wrong_key(path):
    _h5(path, "data", np.zeros((128, 128, 14), "float32"))


def _three_bands(path):
    _h5(path, "img", np.zeros((128, 128, 3), "float32"))


def _infinite(path):
    image = np.zeros((128, 128, 14), "float32")
    image[5, 5, 2] = np.inf
    _h5(path, "img", image)


def _mask_value_two(path):
    mask = np.zeros((128, 128), "uint8")
    mask[0, 0] = 2
    _h5(path, "mask", mask)


LANDSLIDE_CASES = [
    ("img/image_1.h5", _truncate, "not a readable HDF5 file"),
    ("img/image_1.h5", _wrong_key, "no dataset 'img'"),
    ("img/image_1.h5", _three_bands, "has 3 bands, expected 14"),
    ("img/image_1.h5", _infinite, "infinite values"),
    ("mask/mask_1.h5", _mask_value_two, "mask values must be 0 or 1"),
    ("mask/mask_1.h5", lambda p: p.unlink(), "no mask"),
]


@pytest.mark.parametrize("relative, damage, message", LANDSLIDE_CASES, ids=[c[2] for c in LANDSLIDE_CASES])
def test_landslide_bad_patches(landslide_sample, tmp_path, capsys, relative, damage, message):
    data = tmp_path / "data"
    shutil.copytree(landslide_sample, data)
    bad = data / "TrainData" / relative
    damage(bad)
    out = tmp_path / "run"
    code, err = cli("landslide", ["train", "--config", TINY_LANDSLIDE, "--data", data, "--out", out, "--set", "train.epochs=1"], capsys)
    assert_one_line_error(code, err, bad.name, message)
    assert not out.exists() or not any(out.iterdir()), sorted(p.name for p in out.iterdir())


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["model.widht=2"], "unknown config key 'model.widht'"),
        (["train.epochs=many"], "config key 'train.epochs' must be int"),
        (["train.lr=-0.01"], "config key 'train.lr' must be > 0"),
        (["train.lr"], "expected key=value"),
    ],
)
def test_bad_config_values(landslide_sample, tmp_path, capsys, overrides, message):
    argv = ["train", "--config", TINY_LANDSLIDE, "--data", landslide_sample, "--out", tmp_path / "run"]
    for item in overrides:
        argv += ["--set", item]
    code, err = cli("landslide", argv, capsys)
    assert_one_line_error(code, err, message)
    assert not (tmp_path / "run").exists()


def test_bad_config_file(landslide_sample, tmp_path, capsys):
    config = tmp_path / "mine.yaml"
    config.write_text("base: %s\nmodel:\n  residual: sometimes\n" % (importlib.import_module("pathlib").Path(TINY_LANDSLIDE).resolve()))
    code, err = cli("landslide", ["train", "--config", config, "--data", landslide_sample, "--out", tmp_path / "run"], capsys)
    assert_one_line_error(code, err, "mine.yaml", "model.residual", "true or false")


# --------------------------------------------------------------------------- asc


@pytest.fixture(scope="module")
def asc_sample(tmp_path_factory):
    from asc.sample import write_sample

    return write_sample(tmp_path_factory.mktemp("asc_bad") / "clean", per_class=2, seed=0)


def _write_wav(path, rate=44100, channels=1, frames=44100):
    path.unlink(missing_ok=True)
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(channels)
        handle.setsampwidth(2)
        handle.setframerate(rate)
        handle.writeframes(np.zeros(frames * channels, "<i2").tobytes())


def _first_wav(root):
    return sorted((root / "audio").glob("*.wav"))[0]


ASC_CASES = [
    ("empty wav", lambda root: _write_wav(_first_wav(root), frames=0), "empty audio file (0 samples)", True),
    ("8 kHz wav", lambda root: _write_wav(_first_wav(root), rate=8000, frames=8000), "sample rate 8000 Hz, expected 44100 Hz", True),
    ("zero-byte wav", lambda root: _first_wav(root).write_bytes(b""), "cannot read audio", True),
]


@pytest.mark.parametrize("name, damage, message, names_file", ASC_CASES, ids=[c[0] for c in ASC_CASES])
def test_asc_bad_audio(asc_sample, tmp_path, capsys, name, damage, message, names_file):
    data = tmp_path / "data"
    shutil.copytree(asc_sample, data)
    bad = _first_wav(data)
    damage(data)
    out = tmp_path / "features.h5"
    code, err = cli("asc", ["features", "--data", data, "--out", out], capsys)
    assert_one_line_error(code, err, bad.name, message)
    assert not out.exists()


def _drop_column(root):
    fold = root / "evaluation_setup" / "fold1_train.csv"
    rows = [line.split("\t") for line in fold.read_text().splitlines()]
    fold.write_text("\n".join(row[0] for row in rows) + "\n")


def _unknown_label(root):
    fold = root / "evaluation_setup" / "fold1_train.csv"
    lines = fold.read_text().splitlines()
    name = lines[1].split("\t")[0]
    lines[1] = f"{name}\tbeach"
    fold.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize(
    "damage, file_name, message",
    [(_drop_column, "fold1_train.csv", "missing column 'scene_label'"), (_unknown_label, "fold1_train.csv", "label 'beach' is not a known class")],
    ids=["missing column", "unknown label"],
)
def test_asc_bad_csv(asc_sample, tmp_path, capsys, damage, file_name, message):
    data = tmp_path / "data"
    shutil.copytree(asc_sample, data)
    damage(data)
    out = tmp_path / "run"
    code, err = cli("asc", ["train", "--config", "configs/asc/student.yaml", "--data", data, "--out", out, "--set", "train.epochs=1"], capsys)
    assert_one_line_error(code, err, file_name, message)
    assert not out.exists() or not any(out.iterdir())


def test_asc_stereo_is_mixed_down_and_said(asc_sample, tmp_path, capsys):
    from asc.data import ClipReport, read_wav

    path = tmp_path / "stereo.wav"
    _write_wav(path, channels=2)
    report = ClipReport()
    audio = read_wav(path, 44100, 1.0, report=report)
    assert audio.shape == (44100,) and report.mixed_down == [str(path)]


# --------------------------------------------------------------------------- rsic


@pytest.fixture(scope="module")
def rsic_sample(tmp_path_factory):
    from rsic.sample import write_sample

    return write_sample(tmp_path_factory.mktemp("rsic_bad") / "clean", classes=3, per_class=4, size=16)


def _rsic_truncate(root):
    path = root / "airport" / "airport_002.jpg"
    path.write_bytes(path.read_bytes()[:100])
    return path.name


def _rsic_not_an_image(root):
    (root / "airplane" / "notes.png").write_text("not a png")
    return "notes.png"


def _rsic_empty_class(root):
    (root / "empty_class").mkdir()
    return "empty_class"


def _rsic_one_image(root):
    for path in sorted((root / "airport").iterdir())[1:]:
        path.unlink()
    return "class 'airport'"


RSIC_CASES = [
    ("truncated jpg", _rsic_truncate, "unreadable or truncated image"),
    ("not an image", _rsic_not_an_image, "unreadable or truncated image"),
    ("empty class folder", _rsic_empty_class, "has no images"),
    ("class with one image", _rsic_one_image, "has 1 image; a split needs at least 2 per class"),
]


@pytest.mark.parametrize("name, damage, message", RSIC_CASES, ids=[c[0] for c in RSIC_CASES])
def test_rsic_bad_images(rsic_sample, tmp_path, capsys, name, damage, message):
    data = tmp_path / "data"
    shutil.copytree(rsic_sample, data)
    named = damage(data)
    out = tmp_path / "run"
    code, err = cli("rsic", ["train", "--config", "configs/rsic/tiny.yaml", "--data", data, "--out", out], capsys)
    assert_one_line_error(code, err, named, message)
    assert not out.exists() or not any(out.iterdir())


# --------------------------------------------------------------------------- every loader, random bytes

LOADERS = {
    "landslide image": lambda path: importlib.import_module("landslide.data").read_image(path),
    "landslide mask": lambda path: importlib.import_module("landslide.data").read_mask(path),
    "asc wav": lambda path: importlib.import_module("asc.data").read_wav(path, 44100, 1.0),
    "rsic image": lambda path: importlib.import_module("rsic.data").check_image(path),
    "config": lambda path: importlib.import_module("common.config").load_config(path, defaults={"a": 1}),
}


@pytest.mark.parametrize("loader", sorted(LOADERS))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload=st.one_of(st.binary(max_size=2048), st.just(b"\x89HDF\r\n\x1a\n" + b"\x00" * 64), st.just(b"RIFF\x00\x00\x00\x00WAVEfmt ")))
def test_random_bytes_only_raise_project_errors(tmp_path, loader, payload):
    path = tmp_path / "input.bin"
    path.write_bytes(payload)
    try:
        LOADERS[loader](path)
    except ProjectError as error:
        assert "\n" not in str(error)
