"""A fourth task in a few dozen lines runs every command through the common runner and CLI.

This is what docs/ARCHITECTURE.md, "Adding a task", walks through: a Task subclass that reads its
data (one .npz file), splits it, builds a two-layer classifier and predicts .npy files; common/
does the rest (run directory, split.json, labels.txt, metrics.json, int8 export with parity and
latency, the predictions CSV, the LiteRT path).
"""

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from common.config import EXPORT_DEFAULTS, TRAIN_DEFAULTS
from common.errors import DataError
from common.predictions import write_class_predictions
from common.runner import outputs, read_labels
from common.task import Task, carve_inner
from tests.cli_runner import run_in_process


class PointsTask(Task):
    """Is a point's first coordinate plus its second positive? 8 features per example."""

    name = "points"
    description = "two-class points"
    metric_name = "accuracy"
    reported_split = "test"

    defaults = {"data": {"root": ""}, "model": {"units": 16},
                "train": {**TRAIN_DEFAULTS, "epochs": 12, "batch_size": 16, "verbose": 0,
                          "monitor": "val_accuracy", "monitor_mode": "max"},
                "export": {**EXPORT_DEFAULTS, "mode": "ptq", "calibration_examples": 32}}

    def open_data(self, cfg):
        path = Path(cfg["data"]["root"]) / "points.npz"
        if not path.is_file():
            raise DataError(f"{path}: not found")
        return dict(np.load(path))

    def class_names(self, data):
        return ["negative", "positive"]

    def make_split(self, cfg, data):
        n = len(data["y"])
        train, test = list(range(n * 3 // 4)), list(range(n * 3 // 4, n))
        if cfg["train"]["select_on"] == "reported":  # the test split chooses the epoch
            return {"train": train, "test": test}
        train, val = carve_inner(train, 0.1, cfg["train"]["seed"])  # val chooses the epoch
        return {"train": train, "val": val, "test": test}

    def split_ids(self, data, split):
        return {name: [str(i) for i in items] for name, items in split.items()}

    def split_from_ids(self, data, ids):
        return {name: [int(i) for i in items] for name, items in ids.items()}

    def datasets(self, cfg, data, split):
        import tensorflow as tf

        x, y = self.examples(cfg, data, split["train"])
        batch = cfg["train"]["batch_size"]
        train = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x), seed=0).batch(batch)
        val = self.examples(cfg, data, split[self.selection_split(cfg)])
        return train, tf.data.Dataset.from_tensor_slices(val).batch(batch), None

    def build(self, cfg, data, split, run_dir):
        import tf_keras as keras

        inputs = keras.Input((8,))
        hidden = keras.layers.Dense(cfg["model"]["units"], activation="relu", name="embedding")(inputs)
        model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax", name="probs")(hidden))
        return model, model

    def label_loss(self, cfg):
        return "sparse_categorical_crossentropy"

    def examples(self, cfg, data, items):
        return data["x"][items], data["y"][items]

    def metric(self, labels, probs):
        return float(np.mean(np.argmax(probs, axis=1) == labels))

    def evaluate(self, model, cfg, data, items):
        x, y = self.examples(cfg, data, items)
        return {"accuracy": self.metric(y, outputs(model, x))}

    def predict(self, model, cfg, inputs, out):
        probs = outputs(model, np.stack([np.load(path) for path in inputs]))
        write_class_predictions(out, inputs, probs, self.class_names(None))
        return f"{len(inputs)} predictions -> {out}"

    def edge_predict(self, tflite_path, inputs, out):
        from common.tflite_runtime import TFLiteModel

        probs = TFLiteModel(tflite_path).predict(np.stack([np.load(path) for path in inputs]))
        write_class_predictions(out, inputs, probs, read_labels(Path(tflite_path).with_name("labels.txt")))
        return f"{len(inputs)} predictions -> {out}"

    def sample(self, out):
        x = np.random.default_rng(0).normal(size=(400, 8)).astype(np.float32)
        Path(out).mkdir(parents=True, exist_ok=True)
        np.savez(Path(out) / "points.npz", x=x, y=(x[:, 0] + x[:, 1] > 0).astype(np.int64))
        return f"wrote 400 points to {out}"


def test_a_fourth_task_runs_every_command(tmp_path, capsys):
    task, data, run = PointsTask(), tmp_path / "data", tmp_path / "run"
    assert run_in_process(task, ["sample", "--out", data], capsys)[0] == 0
    code, out, _ = run_in_process(task, ["train", "--data", data, "--out", run], capsys)
    assert code == 0 and "points: accuracy" in out
    metrics = json.loads((run / "metrics.json").read_text())
    # Chance is 0.5. The epoch is chosen on 30 inner points, not on these 100. Measured 0.85 at the
    # default seed 42 and 0.73-0.83 at train.seed 0-5, the same with AVX-512 (bfloat16) and AVX2-only
    # kernels (float32): the old bound 0.8 held for half the seeds. 0.65 is below every seed measured.
    assert metrics["accuracy"] > 0.65 and metrics["split"] == "test" and metrics["examples"] == 100
    split = json.loads((run / "split.json").read_text())
    assert split["test"][0] == "300" and split["select_on"] == "inner" and split["selection_split"] == "val"
    assert len(split["val"]) == 30 and len(split["train"]) == 270 and not set(split["val"]) & set(split["train"])
    assert (run / "labels.txt").read_text() == "negative\npositive\n"

    assert run_in_process(task, ["evaluate", "--run", run, "--split", "train"], capsys)[0] == 0
    assert json.loads((run / "metrics_train.json").read_text())["examples"] == 270

    code, out, _ = run_in_process(task, ["export", "--run", run], capsys)
    report = json.loads((run / "export_report.json").read_text())
    assert code == 0 and report["agreement"] >= 0.95 and report["quantization"] == "ptq"
    assert report["latency_ms"] > 0 and report["tflite_bytes"] < 10_000 and report["calibration_examples"] == 32

    inputs = []
    for i, point in enumerate(np.load(data / "points.npz")["x"][-5:]):
        inputs.append(tmp_path / f"p{i}.npy")
        np.save(inputs[-1], point)
    csv_path = tmp_path / "edge.csv"
    code, _, _ = run_in_process(task, ["predict", "--tflite", run / "model_int8.tflite", *inputs, "--out", csv_path],
                                capsys)
    rows = list(csv.reader(csv_path.open()))
    assert code == 0 and rows[0] == ["file", "label", "probability", "negative", "positive"] and len(rows) == 6
    code, _, err = run_in_process(task, ["predict", "--run", run, *inputs, "--out", csv_path], capsys)
    assert code == 2 and "use --overwrite" in err  # earlier predictions are never replaced silently


def test_auto_precision_learns_as_well_as_float32(tmp_path):
    """`train.precision: auto` (bfloat16 where the hardware has it) reaches float32's accuracy, and
    the saved model computes in float32 either way (exports and teachers want that graph)."""
    import tf_keras as keras

    from common import runner
    from common.train import load_run_model, resolve_precision

    task, data = PointsTask(), tmp_path / "data"
    task.sample(data)
    scores = {}
    for precision in ("float32", "mixed_bfloat16"):
        cfg = runner.load_task_config(task, None, [f"train.precision={precision}"], data)
        result = runner.train(task, cfg, tmp_path / precision)
        scores[precision] = result.metrics["accuracy"]
        assert {layer.dtype_policy.name for layer in load_run_model(result.run).layers} == {"float32"}
    assert keras.mixed_precision.global_policy().name == "float32"
    assert abs(scores["float32"] - scores["mixed_bfloat16"]) <= 0.05, scores
    assert resolve_precision({"precision": "auto"})[0] in ("float32", "mixed_bfloat16")


def test_select_on_decides_which_split_chooses_the_epoch(tmp_path, capsys):
    """The best epoch is the one whose validation accuracy is highest. Under `inner` that accuracy
    is over the 30 inner examples (multiples of 1/30) and the test split is only scored at the
    end; under `reported` it is over the 100 test examples and is exactly the reported score."""
    from common import runner

    task, data = PointsTask(), tmp_path / "data"
    task.sample(data)
    histories = {}
    for select_on in ("inner", "reported"):
        cfg = runner.load_task_config(task, None, [f"train.select_on={select_on}", "train.epochs=4"], data)
        result = runner.train(task, cfg, tmp_path / select_on)
        histories[select_on] = result.history["val_accuracy"]
        split = json.loads((result.run / "split.json").read_text())
        assert split["select_on"] == select_on and split["selection_split"] == task.selection_split(cfg)
    counts = {"inner": 30, "reported": 100}
    for select_on, accuracies in histories.items():
        assert all(abs(a * counts[select_on] - round(a * counts[select_on])) < 1e-4 for a in accuracies), accuracies
    assert split["splits"] == ["train", "test"] and len(split["train"]) == 300  # reported: all training points train
    assert max(histories["reported"]) == pytest.approx(result.metrics["accuracy"], abs=1e-6)

    code, _, err = run_in_process(task, ["train", "--data", data, "--out", tmp_path / "bad",
                                         "--set", "train.select_on=best"], capsys)
    assert code == 2 and err.strip() == "error: config key 'train.select_on' must be inner or reported, got 'best'"
    assert not (tmp_path / "bad").exists()


class FewPointsTask(PointsTask):
    """A data set too small to carve an inner split from (as rsic's with a few images per class)."""

    def make_split(self, cfg, data):
        return {"train": list(range(300)), "val": [], "test": list(range(300, 400))}


def test_too_small_for_an_inner_split_trains_choosing_on_the_training_examples(tmp_path, capsys):
    task, data, run = FewPointsTask(), tmp_path / "data", tmp_path / "run"
    task.sample(data)
    code, out, err = run_in_process(task, ["train", "--data", data, "--out", run, "--set", "train.epochs=1"], capsys)
    assert code == 0, err
    assert [line for line in out.splitlines() if line.startswith("warning: ")] == [
        "warning: the 'val' split that chooses the epoch is empty (too few examples); the epoch is chosen on "
        "the training examples instead (more data, or --set train.select_on=reported, avoids this)"]
    split = json.loads((run / "split.json").read_text())
    assert split["task"] == "points" and split["selection_split"] == "train" and split["val"] == []
    # The epoch-choosing accuracy is over the 300 training points: multiples of 1/300.
    history = np.genfromtxt(run / "history.csv", delimiter=",", names=True)
    assert all(abs(a * 300 - round(a * 300)) < 1e-4 for a in np.atleast_1d(history["val_accuracy"]))
