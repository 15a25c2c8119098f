"""`python -m asc paper2 --quick` (asc/paper.py): the table, resume, complexity, the exported model."""

import argparse
import json

import numpy as np
import pytest

from asc import paper
from asc.task import AscTask
from common import runner
from common.train import read_history
from tests.cli_runner import run_in_process


def _args(out, **changes):
    return argparse.Namespace(**{"data": None, "out": str(out), "teacher_config": None,
                                 "student_config": "student.yaml", "quick": True, "overrides": [], **changes})


def _crash_after_first_epoch():
    """Keras callback that kills training (SystemExit, like a killed process) after epoch 1."""
    import tf_keras as keras

    class Crash(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            raise SystemExit("simulated kill")

    return Crash()


def test_paper2_quick_table_resume_and_export(tmp_path, monkeypatch, capsys):
    out, task = tmp_path / "paper2", AscTask()
    # Stopped after the teacher (a killed command).
    assert paper.run(task, _args(out), max_steps=1) is False
    table = json.loads((out / "paper2.json").read_text())
    assert table["rows"][0]["accuracy"] is not None and table["rows"][1]["accuracy"] is None
    teacher_mtime = (out / "teacher" / "model.keras").stat().st_mtime_ns

    # The student killed after its first of two epochs: its resume state is on disk, no model.
    callbacks = AscTask.callbacks
    monkeypatch.setattr(AscTask, "callbacks", lambda self, *a: [*callbacks(self, *a), _crash_after_first_epoch()])
    with pytest.raises(SystemExit):
        paper.run(task, _args(out))
    assert (out / "student" / "checkpoints" / "backup").is_dir() and not (out / "student" / "model.keras").exists()
    monkeypatch.setattr(AscTask, "callbacks", callbacks)

    # The same command again: the teacher is not trained again, the student resumes at epoch 2.
    trained = []
    original = runner.train
    monkeypatch.setattr(runner, "train", lambda *a, **k: (trained.append((str(a[2]), k["resume"])), original(*a, **k))[1])
    assert paper.run(task, _args(out)) is True
    assert trained == [(str(out / "student"), True)]
    assert (out / "teacher" / "model.keras").stat().st_mtime_ns == teacher_mtime
    assert read_history(out / "student")["epoch"] == [0, 1]

    table = json.loads((out / "paper2.json").read_text())
    assert table["data"]["path"] == str((out / "data").resolve())
    counts = table["data"]["examples_per_split"]  # the teacher's split.json: train (and val), evaluate
    assert counts["evaluate"] == 30 and sum(counts.values()) == 100
    assert [row["model"] for row in table["rows"]] == ["teacher", "student (float)", "student (int8 TFLite)"]
    for row in table["rows"]:
        for key in ("accuracy", "groups_accuracy"):
            assert 0.0 <= row[key] <= 1.0
        assert row["log_loss"] > 0
        assert row["per_device"] and all(0.0 <= v <= 1.0 for v in row["per_device"].values())
    student_metrics = json.loads((out / "student" / "metrics.json").read_text())
    assert table["rows"][1]["accuracy"] == student_metrics["accuracy"]
    int8_metrics = json.loads((out / "student" / "metrics_int8.json").read_text())
    assert int8_metrics["model"] == "int8 tflite" and table["rows"][2]["accuracy"] == int8_metrics["accuracy"]
    assert table["rows"][1]["published"] == {"accuracy": 0.574, "groups_accuracy": 0.823, "macs": 29.27e6}
    assert table["baseline"]["accuracy"] == 0.429
    # student.yaml: the DCASE-sized student, within the limits (79,422 parameters, 17.1 M MACs).
    assert table["complexity"] == {"params": 79422, "macs": 17137920, "max_params": 128000, "max_macs": 30000000,
                                   "within_limits": True}
    markdown = (out / "paper2.md").read_text()
    assert "| student (float) |" in markdown and "57.4" in markdown and "82.3" in markdown and "42.9" in markdown
    assert "within the DCASE 2023 Task 1 limits" in markdown

    from common.tflite_runtime import TFLiteModel

    tflite_path = out / "student" / "model_int8.tflite"
    assert table["rows"][2]["bytes"] == tflite_path.stat().st_size
    probs = TFLiteModel(tflite_path).predict(np.zeros((1, 128, 87, 3), np.float32))
    assert probs.shape == (1, 10) and abs(float(probs.sum()) - 1.0) < 0.05

    # The table deleted: rebuilt from the runs, nothing trained; through the command line, exit code 0.
    (out / "paper2.md").unlink()
    code, said, _ = run_in_process(task, ["paper2", "--quick", "--out", out, "--student-config", "student.yaml"],
                                   capsys)
    assert code == 0 and f"asc: paper 2 done -> {out / 'paper2.md'}" in said
    assert len(trained) == 1
    assert (out / "paper2.md").read_text() == markdown


def test_paper2_needs_data_or_quick(tmp_path, capsys):
    code, _, err = run_in_process(AscTask(), ["paper2", "--out", tmp_path / "r"], capsys)
    assert code == 2
    assert err.strip() == "error: paper2: give --data DIR (the TAU 2022 development folder), or --quick for sample data"
