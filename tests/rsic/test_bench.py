"""rsic.bench (`python -m rsic benchmark`): the table format, the best backbones, `best:RUN`, up-front
checks; and the paper configs that follow paper 3's table."""

import copy
import json
import shutil

import pytest

from common import runner
from common.errors import ConfigError, DataError
from common.train import read_history
from rsic import models
from rsic.bench import PAPER4_BACKBONES
from rsic.config import DEFAULTS
from rsic.paper import benchmark_markdown, run_benchmark
from tests.cli_runner import run_in_process
from tests.rsic.conftest import CONFIGS, TASK


def test_markdown_table():
    cfg = copy.deepcopy(DEFAULTS)
    rows = [
        {"backbone": "MobileNetV2", "params": 2_936_941, "accuracy": 0.8812, "int8_accuracy": 0.875,
         "tflite_bytes": 3_300_000, "latency_ms": 4.21, "paper_accuracy": 88.0, "note": ""},
        {"backbone": "ConvNeXtLarge", "params": 197_040_365, "accuracy": 0.95, "int8_accuracy": None,
         "tflite_bytes": None, "latency_ms": None, "paper_accuracy": 95.3, "note": "not exported"},
    ]
    table = benchmark_markdown(rows, cfg, out="runs/bench").splitlines()
    assert table[2].startswith("| backbone | params | accuracy %") and "| paper 3 % |" in table[2]
    assert table[4] == "| MobileNetV2 | 2.94M | 88.1 | 87.5 | 3.30 | 4.2 | 88.0 |  |"
    assert table[5] == "| ConvNeXtLarge | 197.04M | 95.0 | - | - | - | 95.3 | not exported |"
    assert table[7].startswith("Best: ConvNeXtLarge (95.0%; paper 3: 95.3%), by this run's validation accuracy")
    assert table[8].startswith("Best of paper 4's candidates (MobileNet, MobileNetV2, NASNetMobile, "
                               "EfficientNetB0): MobileNetV2 (88.1%; paper 3: 88.0%)")
    assert "--set model.backbone=best:runs/bench" in table[8]


def test_unknown_backbone_refused_before_any_work(tmp_path):
    cfg = copy.deepcopy(DEFAULTS)
    cfg["benchmark"]["backbones"] = ["MobileNetV2", "ResNet9000"]
    with pytest.raises(ConfigError, match="ResNet9000"):
        run_benchmark(TASK, cfg, tmp_path / "bench")
    assert not (tmp_path / "bench").exists()


def write_benchmark(folder, accuracies):
    """A hand-written OUT/benchmark.json: {backbone: test accuracy}."""
    rows = [{"backbone": name, "accuracy": accuracy, "params": 1_000_000 + i}
            for i, (name, accuracy) in enumerate(accuracies.items())]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "benchmark.json").write_text(json.dumps({"rows": rows}))
    return folder


def attention_backbone(folder):
    cfg = runner.load_task_config(TASK, "attention.yaml", [f"model.backbone=best:{folder}"])
    return cfg["model"]["backbone"]


def test_best_run_picks_the_best_of_paper4_candidates(tmp_path, capsys):
    bench = write_benchmark(tmp_path / "bench", {"ConvNeXtLarge": 0.95, "MobileNet": 0.90, "EfficientNetB0": 0.91,
                                                  "MobileNetV2": 0.88})
    assert attention_backbone(bench) == "EfficientNetB0"  # ConvNeXtLarge is more accurate, not a candidate
    assert "EfficientNetB0, the best of paper 4's candidates there (91.0% test accuracy)" in capsys.readouterr().out
    other = write_benchmark(tmp_path / "other", {"MobileNetV2": 0.7, "NASNetMobile": 0.8})
    assert attention_backbone(other) == "NASNetMobile"
    tie = write_benchmark(tmp_path / "tie", {"MobileNet": 0.8, "MobileNetV2": 0.8})
    assert attention_backbone(tie) == "MobileNet"  # the smaller model (fewer params) of two equal ones

    with pytest.raises(ConfigError, match=r"'model.backbone': .*nowhere is not a benchmark run \(no benchmark.json\)"):
        attention_backbone(tmp_path / "nowhere")
    large = write_benchmark(tmp_path / "large", {"ConvNeXtLarge": 0.95, "ResNet50": 0.9})
    with pytest.raises(ConfigError, match="holds none of MobileNet, MobileNetV2, NASNetMobile, EfficientNetB0 "
                                          r"\(it has ConvNeXtLarge, ResNet50\)"):
        attention_backbone(large)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "benchmark.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not a benchmark table"):
        attention_backbone(tmp_path / "broken")
    # On the command line: one line, exit 2, before any data is read.
    code, _, err = run_in_process(TASK, ["train", "--config", "attention.yaml", "--set", f"model.backbone=best:{large}",
                                         "--data", tmp_path, "--out", tmp_path / "run"], capsys)
    assert code == 2 and err.count("\n") == 1 and "holds none of" in err and not (tmp_path / "run").exists()


def test_paper_configs_follow_paper3():
    """Paper configs start from ImageNet; the tiny ones from scratch; the benchmark covers the whole
    table; the teacher is its top row; attention's default is paper 3's best of paper 4's candidates."""
    load = lambda name: runner.load_task_config(TASK, name)  # noqa: E731
    tiny = {"tiny.yaml", "tiny_student.yaml", "tiny_attention.yaml", "tiny_triplane.yaml", "tiny_teacher.yaml",
            "tiny_paper4.yaml"}
    for path in sorted(CONFIGS.glob("*.yaml")):
        assert load(path.name)["model"]["weights"] == (None if path.name in tiny else "imagenet"), path.name
    assert load("paper3.yaml")["benchmark"]["backbones"] == list(models.BACKBONES)
    assert load("mobilenetv2.yaml")["benchmark"]["backbones"] == DEFAULTS["benchmark"]["backbones"]
    assert len(DEFAULTS["benchmark"]["backbones"]) == 13
    published = {name: spec.paper_accuracy for name, spec in models.BACKBONES.items() if spec.paper_accuracy}
    assert len(published) == 12  # paper 3's table; NASNetMobile is paper 4's
    assert load("teacher.yaml")["model"]["backbone"] == max(published, key=published.get) == "ConvNeXtLarge"
    compact = {name: published[name] for name in PAPER4_BACKBONES if name in published}
    assert load("attention.yaml")["model"]["backbone"] == max(compact, key=compact.get) == "EfficientNetB0"


def test_benchmark_names_the_best(tmp_path, teacher_run, sample_dir, capsys):
    """Two tiny backbones through the command line: the table, the JSON, `best:OUT`. MobileNetV2 is
    the session's tiny teacher (a finished run in OUT is reused, as on a rerun); MobileNet trains 1 epoch."""
    out = tmp_path / "bench"
    shutil.copytree(teacher_run[0], out / "MobileNetV2")
    code, stdout, err = run_in_process(TASK, [
        "benchmark", "--config", "tiny.yaml", "--data", sample_dir, "--out", out, "--backbones", "MobileNetV2,MobileNet",
        "--set", "train.epochs=1", "--set", "train.precision=float32", "--set", "benchmark.export=false"], capsys)
    assert code == 0, err
    assert "MobileNetV2: finished run found, reusing it" in stdout
    summary = json.loads((out / "benchmark.json").read_text())
    rows = {row["backbone"]: row for row in summary["rows"]}
    assert list(rows) == ["MobileNetV2", "MobileNet"] and (out / "MobileNet" / "metrics.json").is_file()
    assert rows["MobileNetV2"]["accuracy"] == teacher_run[1]["accuracy"]
    assert rows["MobileNetV2"]["paper_accuracy"] == 88.0 and rows["MobileNet"]["paper_accuracy"] == 90.8
    assert all(0.0 <= row["accuracy"] <= 1.0 and row["params"] > 0 for row in rows.values())
    # Ranked on the inner validation split (the epoch each run kept), never on the reported test split.
    for name, row in rows.items():
        assert row["val_accuracy"] == max(read_history(out / name)["val_accuracy"])
    ranked = sorted(rows.values(), key=lambda row: (-row["val_accuracy"], row["params"]))
    assert summary["ranking"] == [row["backbone"] for row in ranked]
    assert summary["best"]["backbone"] == summary["best_paper4"]["backbone"] == ranked[0]["backbone"]
    assert summary["best"]["accuracy"] == ranked[0]["accuracy"] and summary["weights"] == "none"
    table = (out / "benchmark.md").read_text()
    assert f"Best: {ranked[0]['backbone']} ({100 * ranked[0]['accuracy']:.1f}%; paper 3: " in table
    assert "| 88.0 |" in table and "| 90.8 |" in table and f"Best: {ranked[0]['backbone']}" in stdout
    assert attention_backbone(out) == ranked[0]["backbone"]


def test_offline_benchmark_stops_before_training(tmp_path, monkeypatch):
    """ImageNet weights are fetched for every backbone first: without network, one line and no run."""
    monkeypatch.setitem(models.IMAGENET_WEIGHTS, "MobileNet", ("http://127.0.0.1:9/{file}", None))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    cfg = copy.deepcopy(DEFAULTS)
    cfg["data"]["root"] = str(tmp_path)
    cfg["model"]["weights"] = "imagenet"
    cfg["benchmark"]["backbones"] = ["MobileNet"]
    with pytest.raises(DataError, match=r"mobilenet_1_0_224_tf_no_top.h5: cannot download MobileNet's ImageNet "
                                        r"weights from http://127.0.0.1:9/mobilenet_1_0_224_tf_no_top.h5"):
        run_benchmark(TASK, cfg, tmp_path / "bench")
    assert not (tmp_path / "bench").exists()
