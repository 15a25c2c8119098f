"""Training, distillation and evaluation on the sample data (one shared tiny teacher run)."""

import csv
import json
import shutil

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, confusion_matrix, recall_score

from common import runner
from common.errors import ConfigError
from common.train import load_run_model
from rsic.data import read_split_file, scan_image_folder
from rsic.features import predict_probs
from rsic.models import build_model
from rsic.task import classification_metrics
from tests.cli_runner import run_in_process
from tests.rsic.conftest import TASK, tiny_config


def test_tiny_model_learns_sample(teacher_run):
    run_dir, metrics = teacher_run
    assert metrics["accuracy"] > 0.6  # 5 classes: chance is 0.2
    for name in ("model.keras", "config.yaml", "split.json", "labels.txt", "history.csv", "metrics.json",
                 "confusion_matrix.csv", "confusion_matrix.png", "training_curves.png"):
        assert (run_dir / name).is_file(), name
    saved = json.loads((run_dir / "metrics.json").read_text())
    assert saved["accuracy"] == metrics["accuracy"] and saved["split"] == "test" and saved["examples"] == 80
    split = json.loads((run_dir / "split.json").read_text())
    assert split["select_on"] == "inner" and split["selection_split"] == "val" and len(split["val"]) == 25
    assert not set(split["val"]) & (set(split["train"]) | set(split["test"]))


def test_evaluation_matches_sklearn(teacher_run, sample_dir):
    run_dir, metrics = teacher_run
    folder = scan_image_folder(sample_dir)
    test = read_split_file(run_dir / "split.json", folder)["test"]  # a run's split.json is a split file
    probs = predict_probs(load_run_model(run_dir), [folder.files[i] for i in test], 64)
    y_true, y_pred = folder.labels[test], probs.argmax(1)
    assert metrics["accuracy"] == accuracy_score(y_true, y_pred)
    recall = recall_score(y_true, y_pred, average=None, labels=range(5), zero_division=0)
    assert np.allclose([metrics["per_class_accuracy"][n] for n in folder.class_names], recall)
    with open(run_dir / "confusion_matrix.csv") as handle:
        rows = list(csv.reader(handle))
    assert rows[0][1:] == folder.class_names
    table = np.array([[int(v) for v in row[1:]] for row in rows[1:]])
    np.testing.assert_array_equal(table, confusion_matrix(y_true, y_pred, labels=range(5)))


def test_classification_metrics_random_against_sklearn():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 300)
    probs = rng.dirichlet(np.ones(4), 300)
    metrics, matrix = classification_metrics(labels, probs, ["a", "b", "c", "d"])
    assert np.isclose(metrics["accuracy"], accuracy_score(labels, probs.argmax(1)))
    np.testing.assert_array_equal(matrix, confusion_matrix(labels, probs.argmax(1)))
    assert np.allclose(list(metrics["per_class_accuracy"].values()),
                       recall_score(labels, probs.argmax(1), average=None))


def test_split_file_honoured(teacher_run, sample_dir):
    run_dir, _ = teacher_run
    cfg = tiny_config(sample_dir, overrides=[f"data.split_file={run_dir / 'split.json'}", "data.train_ratio=0.1"])
    data = TASK.open_data(cfg)
    split = TASK.make_split(cfg, data)
    assert TASK.split_ids(data, split)["train"] == json.loads((run_dir / "split.json").read_text())["train"]


def test_distillation_moves_student_toward_teacher(teacher_run, sample_dir, tmp_path):
    teacher_dir, teacher_metrics = teacher_run
    # Half the demo's epochs: enough to show the pull toward the teacher, at half the cost.
    cfg = tiny_config(None, "tiny_student.yaml", ["train.epochs=3"])  # the data: the teacher's
    folder = scan_image_folder(sample_dir)
    test_files = [folder.files[i] for i in read_split_file(teacher_dir / "split.json", folder)["test"]]
    teacher_pred = predict_probs(load_run_model(teacher_dir), test_files, 64).argmax(1)
    untrained = build_model(cfg["model"], 5)
    before = np.mean(predict_probs(untrained, test_files, 64).argmax(1) == teacher_pred)

    metrics = runner.distill(TASK, cfg, tmp_path / "student", teacher_dir).metrics
    assert metrics["teacher_accuracy"] == teacher_metrics["accuracy"]
    assert metrics["teacher_agreement"] > before + 0.2, (before, metrics)
    assert metrics["accuracy"] > 0.4
    split = json.loads((tmp_path / "student" / "split.json").read_text())
    teacher_split = json.loads((teacher_dir / "split.json").read_text())
    assert all(split[k] == teacher_split[k] for k in ("train", "val", "test"))  # the teacher's split, its inner val
    assert split["teacher"] == str(teacher_dir.resolve())
    student = load_run_model(tmp_path / "student")
    assert student.get_layer("embedding").output_shape == (None, 64)  # the student itself, not the Distiller

    other = tiny_config(None, "tiny_student.yaml", ["model.input_size=32"])
    with pytest.raises(ConfigError, match="model.input_size.*32 differs from the teacher's 64"):
        runner.distill(TASK, other, tmp_path / "wrong", teacher_dir)
    assert not (tmp_path / "wrong").exists()


def test_ensemble_of_two_teachers_trains_a_student(teacher_run, sample_dir, tmp_path, capsys):
    first, _ = teacher_run
    second = runner.train(TASK, tiny_config(sample_dir, overrides=["train.epochs=1", "train.seed=1"]),
                          tmp_path / "second").run
    student = tmp_path / "student"
    code, _, err = run_in_process(TASK, ["distill", "--teacher", f"{first},{second}", "--config", "tiny_student.yaml",
                                         "--set", "train.epochs=1", "--out", student], capsys)
    assert code == 0, err
    split = json.loads((student / "split.json").read_text())
    assert split["teacher"] == str(first.resolve())  # the single-teacher key still names the first
    assert split["teachers"] == [str(first.resolve()), str(second.resolve())]
    metrics = runner.read_json(student / "metrics.json")
    log = list(csv.DictReader((student / "history.csv").open()))
    assert len(log) == 1 and float(log[0]["kd_loss"]) > 0 and np.isfinite(float(log[0]["loss"]))
    # The teacher metric is the ensemble's: the mean of the two teachers' probabilities.
    folder = scan_image_folder(sample_dir)
    test = read_split_file(first / "split.json", folder)["test"]
    files = [folder.files[i] for i in test]
    mean = sum(predict_probs(load_run_model(run), files, 64) for run in (first, second)) / 2
    assert metrics["teacher_accuracy"] == pytest.approx(np.mean(mean.argmax(1) == folder.labels[test]), abs=0.011)

    # A member trained on another split, or on other classes: one line naming its file, nothing written.
    moved = tmp_path / "other_split"
    shutil.copytree(second, moved)
    other = json.loads((moved / "split.json").read_text())
    other["train"], other["test"] = other["train"][1:], [other["train"][0], *other["test"]]
    (moved / "split.json").write_text(json.dumps(other))
    code, _, err = run_in_process(TASK, ["distill", "--teacher", f"{first},{moved}", "--config", "tiny_student.yaml",
                                         "--out", tmp_path / "wrong"], capsys)
    assert code == 2 and "\n" not in err.strip(), err
    assert f"{moved / 'split.json'}: its split differs from the first teacher's {first / 'split.json'}" in err
    relabelled = tmp_path / "other_labels"
    shutil.copytree(second, relabelled)
    (relabelled / "labels.txt").write_text("a\nb\nc\nd\ne\n")
    code, _, err = run_in_process(TASK, ["distill", "--teacher", f"{first},{relabelled}", "--config",
                                         "tiny_student.yaml", "--out", tmp_path / "wrong"], capsys)
    assert code == 2 and f"classes differ from the teacher's {relabelled / 'labels.txt'}" in err
    code, _, err = run_in_process(TASK, ["distill", "--teacher", f"{first},{first}", "--out", tmp_path / "wrong"], capsys)
    assert code == 2 and "is given twice" in err
    assert not (tmp_path / "wrong").exists()
