"""The edge runtime: `predict --tflite` through LiteRT matches the Keras predict and never imports TensorFlow.

One tiny student (log-Mel branch only, its own feature cache) is trained on the session's sample
data and exported (PTQ) once for this module: the shared teacher+student fixtures cost much more.
"""

import csv
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from asc import edge
from asc.config import load
from asc.task import AscTask
from common import runner
from common.errors import DataError
from common.export.tflm import parse_c_array
from tests.asc.conftest import CONFIGS, FAST
from tests.cli_runner import run_in_process

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def exported(sample_dir, tmp_path_factory):
    """(cfg, run dir) of a trained and exported single-branch student."""
    work = tmp_path_factory.mktemp("edge")
    # Calibrating on every training clip (60; 10 more choose the epoch) keeps int8 and float within a clip or two.
    overrides = [*FAST, "train.epochs=8", "export.calibration_examples=128", "features.kinds=[logmel]",
                 f"features.cache={work / 'logmel.h5'}"]  # fmt: skip
    cfg = load(CONFIGS / "student.yaml", overrides, sample_dir)
    runner.train(AscTask(), cfg, work / "run")
    report = runner.export(AscTask(), work / "run")
    assert report["calibration_examples"] == 60  # every training clip
    return cfg, work / "run"


def evaluate_wavs(sample_dir):
    with open(sample_dir / "evaluation_setup" / "fold1_evaluate.csv") as handle:
        return [str(sample_dir / row["filename"]) for row in csv.DictReader(handle, delimiter="\t")]


def test_tflite_predict_agrees_with_keras(exported, sample_dir, tmp_path):
    cfg, run = exported
    wavs = evaluate_wavs(sample_dir)
    runner.predict(AscTask(), wavs, tmp_path / "keras.csv", run=run)
    edge_labels = edge.predict(run / "model_int8.tflite", wavs, tmp_path / "edge.csv", say=lambda _: None)
    keras_rows = list(csv.DictReader((tmp_path / "keras.csv").open()))
    edge_rows = list(csv.DictReader((tmp_path / "edge.csv").open()))
    agree = sum(a["label"] == b["label"] for a, b in zip(keras_rows, edge_rows)) / len(wavs)
    assert len(wavs) == 30 and agree >= 0.9
    classes = (run / "labels.txt").read_text().split()
    assert list(keras_rows[0]) == list(edge_rows[0]) == ["file", "label", "probability", *classes]
    assert [r["file"] for r in edge_rows] == wavs and [(r["file"], r["label"]) for r in edge_rows] == edge_labels
    correct = sum(Path(f).name.split("-")[0] == label for f, label in edge_labels)
    assert correct / len(wavs) >= 0.5  # the int8 model learned the scenes (chance: 0.1)


def test_features_that_do_not_fit_the_model_are_an_error(exported, sample_dir, tmp_path):
    _, run = exported
    wrong = load(None)  # the default three spectrograms; the model takes log-Mel only
    with pytest.raises(DataError, match=r"takes input \(128, 87, 1\).*--config RUN"):
        edge.predict(run / "model_int8.tflite", evaluate_wavs(sample_dir)[:1], tmp_path / "p.csv", cfg=wrong)


def test_edge_cli_runs_without_tensorflow(exported, sample_dir, tmp_path):
    _, run = exported
    device = tmp_path / "device"  # what ships: the model, its labels and its config, no model.keras
    device.mkdir()
    for name in ("model_int8.tflite", "labels.txt", "config.yaml"):
        shutil.copy(run / name, device / name)
    wavs = tmp_path / "recordings"  # a folder of recordings, as a device would collect them
    wavs.mkdir()
    for wav in evaluate_wavs(sample_dir)[::6]:
        shutil.copy(wav, wavs)
    out = tmp_path / "preds.csv"
    script = (
        "import sys\n"
        "from asc.task import AscTask\n"
        "from common.cli import main\n"
        f"main(AscTask(), ['predict', '--tflite', {str(device / 'model_int8.tflite')!r}, {str(wavs)!r},"
        f" '--out', {str(out)!r}])\n"
        "assert 'tensorflow' not in sys.modules and 'tf_keras' not in sys.modules, 'TensorFlow was imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 5 and rows[0]["label"] in rows[0]
    assert f"asc: {out}: 5 predictions (model_int8.tflite, LiteRT int8)" in done.stdout

    # Another device folder without config.yaml: --config names the run the model came from.
    (device / "config.yaml").unlink()
    out2 = tmp_path / "preds2.csv"
    code, _, _ = run_in_process(AscTask(), ["predict", "--tflite", device / "model_int8.tflite", wavs,
                                            "--config", run, "--out", out2])
    assert code == 0 and out2.read_text() == out.read_text()


def test_predict_needs_a_model_and_names_a_missing_one(tmp_path, capsys):
    for argv, message in (
        (["predict", "a.wav", "--out", tmp_path / "p.csv"], "give either --run RUN"),
        (["predict", "--tflite", tmp_path / "none.tflite", "a.wav", "--out", tmp_path / "p.csv"], "none.tflite: TFLite model file not found"),
    ):  # fmt: skip
        code, _, err = run_in_process(AscTask(), argv, capsys)
        err = err.strip()
        assert code == 2 and message in err and "\n" not in err, err


def test_mcu_export_writes_the_frontend_beside_the_c_array(exported, tmp_path):
    import json

    _, run = exported
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    report = runner.export(AscTask(), copy, overrides=["export.target=mcu"])
    assert report["edge_reused"] is True  # the fixture's edge export is current: not redone
    mcu = report["mcu"]
    assert mcu["frontend"]["inside_model"] is False and "frontend.json" in mcu["frontend"]["files"]
    for name in ("model_int8_mcu.tflite", "model_int8.h", "frontend.h", "frontend.cc", "logmel_weights.npy"):
        assert (copy / name).is_file(), name
    frontend = json.loads((copy / "frontend.json").read_text())
    assert frontend["model_input"]["scale"] == mcu["input"]["scale"]
    assert json.loads((copy / "export_report.json").read_text())["mcu"]["frontend"] == mcu["frontend"]
    # The fully integer model: int8 at both ends, nothing float inside, run by TFLM as by LiteRT.
    assert mcu["input"]["dtype"] == mcu["output"]["dtype"] == "int8" and mcu["float_ops"] == []
    # TFLM against LiteRT on one int8 file: measured 1.0 on AVX-512 and AVX2-only kernels; 0.9 leaves room.
    assert mcu["output"]["shape"] == [1, 10] and mcu["agreement_litert"] >= 0.9, mcu
    assert 0 < mcu["arena_bytes"] <= mcu["arena_recommended_bytes"]
    assert mcu["flash_bytes"] == (copy / "model_int8_mcu.tflite").stat().st_size
    assert {t["name"]: t["fits"] for t in mcu["targets"]} == {"cortex-m4": True, "cortex-m7": True, "esp32-s3": True}
    # The C array holds the model's bytes, with its constants and op resolver, and compiles.
    source, header = (copy / "model_int8.cc").read_text(), (copy / "model_int8.h").read_text()
    assert parse_c_array(source) == (copy / "model_int8_mcu.tflite").read_bytes()
    assert f"#define MODEL_INT8_ARENA_SIZE {mcu['arena_recommended_bytes']}" in header
    assert f"#define MODEL_INT8_INPUT_ZERO_POINT {mcu['input']['zero_point']}" in header
    scale = float(re.search(r"MODEL_INT8_OUTPUT_SCALE ([0-9.e-]+)f", header).group(1))
    assert scale == pytest.approx(mcu["output"]["scale"])
    assert "(resolver).AddConv2D();" in header and (copy / "labels.txt").read_text().split()[0] in source
    if shutil.which("g++"):  # the generated C++ compiles
        subprocess.run(["g++", "-std=c++11", "-c", str(copy / "model_int8.cc"), "-o", str(tmp_path / "model.o")],
                       check=True, capture_output=True)


def test_gpu_and_weights8_targets_follow_keras(exported, tmp_path):
    from tests.export_checks import check_float_targets

    check_float_targets(AscTask(), exported[1], tmp_path)
