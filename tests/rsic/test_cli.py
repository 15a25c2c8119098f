"""The command line end to end, in-process through `common.cli.run_cli` as `python -m rsic` runs it
(same parser and code path, no second TensorFlow start), and its exit code 2 on bad input."""

import csv
import json

import pytest

from tests.cli_runner import run_in_process
from tests.rsic.conftest import CONFIGS, TASK


def cli(*args, capsys=None):
    """Run `python -m rsic ARGS` in-process; returns the exit code."""
    return run_in_process(TASK, args, capsys)[0]


def test_cli_end_to_end(tmp_path, capsys):
    data, run = tmp_path / "data", tmp_path / "run"
    assert cli("sample", "--out", data, "--classes", "3", "--per-class", "8", "--size", "32") == 0
    assert sorted(p.name for p in data.iterdir()) == ["airplane", "airport", "baseball_diamond"]

    code, out, _ = run_in_process(TASK, ["train", "--config", "tiny.yaml", "--data", data, "--out", run,
                                         "--set", "train.epochs=1", "--set", "model.input_size=32"], capsys)
    assert code == 0 and "accuracy" in out and "on 9 test examples" in out
    assert "on train 12, val 3, test 9 (epoch chosen on val)" in out
    assert (run / "model.keras").is_file() and (run / "labels.txt").read_text().split()[0] == "airplane"
    assert (run / "confusion_matrix.csv").is_file() and (run / "training_curves.png").is_file()

    code, _, err = run_in_process(TASK, ["sample", "--out", tmp_path / "s", "--classes", "1"], capsys)
    assert code == 2 and err.strip().splitlines() == ["error: --classes must be at least 2, got 1"]

    assert cli("evaluate", "--run", run, "--out", tmp_path / "eval") == 0
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert 0.0 <= metrics["accuracy"] <= 1.0 and metrics["split"] == "test" and metrics["examples"] == 9
    assert (tmp_path / "eval" / "confusion_matrix.png").is_file()

    # Another data set with a subset of the classes: scored whole in the run's class order, beside
    # the run's own metrics.
    other = tmp_path / "other"
    (other / "airport").mkdir(parents=True)
    (other / "baseball_diamond").mkdir()
    for name in ("airport", "baseball_diamond"):
        for path in sorted((data / name).iterdir())[:3]:
            (other / name / path.name).write_bytes(path.read_bytes())
    assert cli("evaluate", "--run", run, "--data", other) == 0
    (written,) = run.glob("metrics_other_*.json")  # metrics_<folder>_<hash of its path>.json
    assert len(written.stem) == len("metrics_other_") + 8
    scores = json.loads(written.read_text())
    assert scores["examples"] == 6 and scores["split"] == "all"
    assert set(scores["per_class_accuracy"]) == {"airplane", "airport", "baseball_diamond"}

    # The export and `predict --tflite` run in tests/rsic/test_edge.py on the shared teacher.
    assert cli("predict", "--run", run, data / "airport", "--out", tmp_path / "p.csv") == 0
    with open(tmp_path / "p.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 8
    assert list(rows[0]) == ["file", "label", "probability", "airplane", "airport", "baseball_diamond"]
    assert all(r["label"] in ("airplane", "airport", "baseball_diamond") and 0 <= float(r["probability"]) <= 1
               for r in rows)


@pytest.mark.parametrize("args,message", [
    (["sample", "--out", "{tmp}/s", "--per-class", "1"], "--per-class must be at least 2"),
    (["train", "--data", "{tmp}/nowhere", "--out", "{tmp}/r"], "nowhere: data folder not found"),
    (["train", "--set", "model.bakbone=X", "--out", "{tmp}/r"], "unknown config key 'model.bakbone'"),
    (["evaluate", "--run", "{tmp}/not_a_run"], "not a run directory"),
    (["benchmark", "--config", "tiny.yaml", "--data", "{tmp}", "--out", "{tmp}/b", "--backbones", "MobileNetV2,ResNet9000"],
     "unknown backbone 'ResNet9000'"),
])
def test_bad_input_one_line_exit_2(args, message, tmp_path, capsys):
    code, _, err = run_in_process(TASK, [a.format(tmp=tmp_path) for a in args], capsys)
    assert code == 2
    err = err.strip()
    assert err.startswith("error: ") and message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "b").exists()


def test_class_with_one_image_is_named(tmp_path, capsys):
    from rsic.sample import write_sample

    data = write_sample(tmp_path / "data", classes=3, per_class=4, size=16)
    for path in sorted((data / "airport").iterdir())[1:]:
        path.unlink()
    code, _, err = run_in_process(TASK, ["train", "--config", "tiny.yaml", "--data", data, "--out", tmp_path / "r"],
                                  capsys)
    assert code == 2 and f"{data / 'airport'}: class 'airport' has 1 image" in err, err


def test_run_errors_exit_2(tmp_path, teacher_run, sample_dir, capsys):
    run_dir, _ = teacher_run
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    commands = [
        (["predict", "--run", str(run_dir), str(bad), "--out", str(tmp_path / "p.csv")],
         "broken.jpg: unreadable or truncated image"),
        (["train", "--config", str(CONFIGS / "tiny.yaml"), "--data", str(sample_dir), "--out", str(run_dir)],
         "already holds a run; use --overwrite"),
        (["export", "--run", str(run_dir), "--set", "export.mode=ptq", "--set", "export.size_budget_mb=0.01"],
         "MB ("),  # the message gives the model's size
    ]
    for args, message in commands:
        code, _, err = run_in_process(TASK, args, capsys)
        assert code == 2
        err = err.strip()
        assert err.startswith("error: ") and message in err and len(err.splitlines()) == 1, err
    assert "over the size budget of 0.01 MB" in err
    assert not (run_dir / "model_int8.tflite").exists()
    # --skip-bad: the broken file is skipped with one line, the good one predicted
    good = sorted((sample_dir / "beach").iterdir())[0]
    code, out, _ = run_in_process(TASK, ["predict", "--run", run_dir, bad, good, "--skip-bad", "--out",
                                         tmp_path / "p.csv"], capsys)
    assert code == 0 and "skipping unreadable image" in out and "1 predictions" in out


def test_summary_counts_without_weights(capsys):
    """Paper 3's EfficientNetB0 student (GAP -> dropout 0.4 -> 512 -> dropout 0.4 -> 45) at 256 px:
    published 4.7M (the trainable count). efficientnetb0.yaml asks for ImageNet weights: summary
    never downloads them (no network in tests: a download would fail)."""
    code, out, _ = run_in_process(TASK, ["summary", "--config", "efficientnetb0.yaml", "--set", "model.input_size=256",
                                         "--set", "model.dropout=0.4"], capsys)
    assert code == 0 and "4,728,528 parameters (4,686,505 trainable)" in out
    # MACs: EfficientNetB0's 0.39 G at 224 (its paper) x (256 / 224)^2, counted from the shapes.
    assert "0.503 GMACs per image, input 256x256x3 -> output 45" in out
    code, _, err = run_in_process(TASK, ["summary", "--config", "tiny.yaml", "--set", "model.cut_after=block_5_ad"],
                                  capsys)
    assert code == 2 and err.count("\n") == 1 and "did you mean 'block_5_add'" in err
